# -*- test-case-name: tests.test_admin_cli -*-
"""
The ``aimserver`` command: account and public chat room administration on the
SQLite database.

    aimserver user add NAME [PASSWORD] [--bot] [--db PATH]
    aimserver user passwd NAME [PASSWORD] [--db PATH]
    aimserver user set NAME --bot|--no-bot [--db PATH]
    aimserver user delete|suspend|unsuspend NAME [--db PATH]
    aimserver user list [--db PATH]
    aimserver room add|delete NAME [--db PATH]
    aimserver room list [--db PATH]
    aimserver console hash-password [PASSWORD]
    aimserver server broadcast TEXT [--to NAME] [--api URL] [--token TOKEN]
    aimserver server motd [TEXT] [--api URL] [--token TOKEN]

A bot account (``--bot``) is a service bot: the server exempts it from rate
limits and warnings. A public room is one of exchange 5, kept until deleted;
any case and spacing of its name names it. ``console hash-password`` prints
the ``[manhole] password_hash`` of a console password (it needs no database).

It works whether or not the server is running: it opens its own connection
(the file is in WAL mode, writers wait for each other) and calls the same
synchronous operations the server runs on its DB thread. A server that is
running sees the change at its next lookup.

Exit status: 0 done, 1 refused (unknown user or room, name taken, invalid name
or password, too many rooms, unusable database), 2 bad usage.
"""

from __future__ import annotations

import getopt
import getpass as _getpass
import sqlite3
import sys
import time
from collections.abc import Callable
from typing import IO, Any, NoReturn

from twisted.python import usage

import aimserver
from aimserver.store import accounts, chat_rooms
from aimserver.store import sqlite as db
from aimserver.store.interfaces import InvalidScreenName, StoreError, check_public_room
from aimserver.wire.screenname import is_account_name

__all__ = ["main", "run"]

_DEFAULT_DB = "aimserver.sqlite"

_GetPass = Callable[[str], str]


class _Exit(Exception):  # noqa: N818 (a signal, not an error)
    """``--help`` or ``--version``: print ``text`` on stdout and exit 0."""

    def __init__(self, text: str) -> None:
        self.text = text


class _Options(usage.Options):
    """
    Base for every level: ``--help`` and ``--version`` are reported to
    :func:`run` (usage.Options would print to the real stdout and exit).
    """

    synopsis = ""

    def getSynopsis(self) -> str:
        """``Usage: aimserver user add NAME ...``: the command words, then ours."""
        words = ["aimserver"]
        options: usage.Options = self
        while options.parent is not None:
            options = options.parent
            words.insert(1, options.subCommand)
        return f"Usage: {' '.join(words)} {self.synopsis}".rstrip()

    def opt_help(self) -> NoReturn:
        """Display this help and exit."""
        raise _Exit(str(self))

    opt_h = opt_help

    def opt_version(self) -> NoReturn:
        """Display the aimserver version and exit."""
        raise _Exit(f"aimserver {_version()}")


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _LeafOptions(_Options):
    """
    A leaf command: takes its options also after the positional arguments
    (``user add bob --db x``), which getopt alone refuses.
    """

    def parseOptions(self, options: list[str] | None = None) -> None:
        if options is not None:
            options = self._options_first(options)
        super().parseOptions(options)
        for key, value in self.items():
            if isinstance(value, str) and not _is_text(value):
                # Bytes the locale could not decode (Python keeps them as
                # surrogates): no name, password or path is made of them,
                # and the database could not even be asked about them.
                raise usage.UsageError(
                    f"{key} is not text: it has bytes that are not UTF-8 ({value!r})"
                )

    def _options_first(self, argv: list[str]) -> list[str]:
        """Move options ahead of positional arguments; ``--`` still ends options."""
        try:
            opts, args = getopt.gnu_getopt(argv, self.shortOpt, self.longOpt)
        except getopt.GetoptError as e:
            raise usage.UsageError(str(e)) from None
        ordered: list[str] = []
        for opt, value in opts:
            takes_value = (
                f"{opt[2:]}=" in self.longOpt
                if opt.startswith("--")
                else f"{opt[1]}:" in self.shortOpt
            )
            ordered.extend([opt, value] if takes_value else [opt])
        return [*ordered, "--", *args]


class _CommandOptions(_LeafOptions):
    """A command on the database: ``--db``."""

    optParameters = [
        ["db", "d", _DEFAULT_DB, "The SQLite database file."],
    ]


class _NameOptions(_CommandOptions):
    def parseArgs(self, name: str) -> None:
        self["name"] = name


class _NamePasswordOptions(_CommandOptions):
    def parseArgs(self, name: str, password: str | None = None) -> None:
        self["name"] = name
        self["password"] = password


class AddOptions(_NamePasswordOptions):
    synopsis = "NAME [PASSWORD] [--bot] [--db PATH]"
    longdesc = "Register a screen name. Without PASSWORD, it is prompted for (or read from stdin)."
    optFlags = [
        ["bot", None, "Make it a bot account (no rate limits or warnings)."],
    ]


class PasswdOptions(_NamePasswordOptions):
    synopsis = "NAME [PASSWORD] [--db PATH]"
    longdesc = "Set a new password (and a new auth key: old captured logins stop working)."


class SetOptions(_NameOptions):
    synopsis = "NAME --bot|--no-bot [--db PATH]"
    longdesc = "Change an account's settings."
    optFlags = [
        ["bot", None, "Make it a bot account (no rate limits or warnings)."],
        ["no-bot", None, "Make it an ordinary account again."],
    ]

    def postOptions(self) -> None:
        if self["bot"] == self["no-bot"]:
            raise usage.UsageError("give exactly one of --bot and --no-bot")


class DeleteOptions(_NameOptions):
    synopsis = "NAME [--db PATH]"
    longdesc = "Delete an account and its buddy list."


class SuspendOptions(_NameOptions):
    synopsis = "NAME [--db PATH]"
    longdesc = "Refuse logins for an account, keeping its data."


class UnsuspendOptions(_NameOptions):
    synopsis = "NAME [--db PATH]"
    longdesc = "Allow a suspended account to log in again."


class ListOptions(_CommandOptions):
    synopsis = "[--db PATH]"
    longdesc = "List the accounts, one per line."


class RoomAddOptions(_NameOptions):
    synopsis = "NAME [--db PATH]"
    longdesc = "Create a public chat room (exchange 5). Quote a NAME with spaces."


class RoomDeleteOptions(_NameOptions):
    synopsis = "NAME [--db PATH]"
    longdesc = "Delete a public chat room (its name in any case and spacing)."


class RoomListOptions(_CommandOptions):
    synopsis = "[--db PATH]"
    longdesc = "List the public chat rooms, one per line."


class _GroupOptions(_Options):
    """Options whose subcommand is required (``aimserver user``, ``room``, ...)."""

    synopsis = "COMMAND [options]"

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("missing command")


class HashPasswordOptions(_Options):
    synopsis = "[PASSWORD]"
    longdesc = (
        "Print the hash of a console password for [manhole] password_hash."
        " Without PASSWORD, it is prompted for (or read from stdin)."
    )

    def parseArgs(self, password: str | None = None) -> None:
        self["password"] = password


class UserOptions(_GroupOptions):
    synopsis = "COMMAND [options]"
    longdesc = "Manage accounts."
    subCommands = [
        ["add", None, AddOptions, "Register a screen name."],
        ["delete", None, DeleteOptions, "Delete an account."],
        ["list", None, ListOptions, "List the accounts."],
        ["passwd", None, PasswdOptions, "Change a password."],
        ["set", None, SetOptions, "Change an account's settings (bot or not)."],
        ["suspend", None, SuspendOptions, "Suspend an account."],
        ["unsuspend", None, UnsuspendOptions, "Reinstate a suspended account."],
    ]


class RoomOptions(_GroupOptions):
    synopsis = "COMMAND [options]"
    longdesc = "Manage the public chat rooms."
    subCommands = [
        ["add", None, RoomAddOptions, "Create a public chat room."],
        ["delete", None, RoomDeleteOptions, "Delete a public chat room."],
        ["list", None, RoomListOptions, "List the public chat rooms."],
    ]


class ConsoleOptions(_GroupOptions):
    synopsis = "COMMAND [options]"
    longdesc = "Set up the admin console (the manhole over SSH)."
    subCommands = [
        ["hash-password", None, HashPasswordOptions, "Hash a console password."],
    ]


class _ServerCommandOptions(_LeafOptions):
    """A command for the running server, through its management API."""

    optParameters = [
        ["api", "a", "http://127.0.0.1:8080", "The server's management API."],
        ["token", "t", None, "Its [api] token, if it has one."],
    ]


class BroadcastOptions(_ServerCommandOptions):
    synopsis = "TEXT [--to NAME] [--api URL] [--token TOKEN]"
    longdesc = "Send a system message to every session of everyone, or of one user."
    optParameters = [["to", None, None, "Only this user's sessions."]]

    def parseArgs(self, text: str) -> None:
        self["text"] = text


class MotdOptions(_ServerCommandOptions):
    synopsis = "[TEXT] [--api URL] [--token TOKEN]"
    longdesc = (
        "Show the message of the day, or set it (until the server restarts: keep it in"
        " [motd] text). An empty TEXT removes it."
    )

    def parseArgs(self, text: str | None = None) -> None:
        self["text"] = text


class ServerOptions(_GroupOptions):
    longdesc = "Act on the running server, through its management API."
    subCommands = [
        ["broadcast", None, BroadcastOptions, "Send a system message."],
        ["motd", None, MotdOptions, "Show or set the message of the day."],
    ]


class Options(_GroupOptions):
    synopsis = "COMMAND [options]"
    longdesc = (
        "Administer an aimserver database."
        " Run 'aimserver user --help', 'aimserver room --help',"
        " 'aimserver server --help' or 'aimserver console --help' for the commands."
    )
    subCommands = [
        ["console", None, ConsoleOptions, "Set up the admin console."],
        ["room", None, RoomOptions, "Manage the public chat rooms."],
        ["server", None, ServerOptions, "Act on the running server (broadcast, MOTD)."],
        ["user", None, UserOptions, "Manage accounts."],
    ]


def _innermost(options: usage.Options) -> usage.Options:
    while getattr(options, "subOptions", None) is not None:
        options = options.subOptions
    return options


def _read_password(stdin: IO[str], getpass: _GetPass) -> str:
    """
    Ask twice on a terminal (a typo would lock the user out); otherwise read
    one line, so that scripts can pipe it in without exposing it in ``ps``.
    """
    if stdin.isatty():
        first = getpass("Password: ")
        if getpass("Password (again): ") != first:
            raise StoreError("the passwords do not match")
        return first
    line = stdin.readline()
    if not line:
        raise StoreError("no password on stdin")
    return line.rstrip("\r\n")


def _open(options: usage.Options, create: bool = False) -> sqlite3.Connection:
    # No page-by-page check: the server's start-up makes it (db.connect).
    return db.connect(options["db"], create=create, check_intact=False)


def _in_db(options: usage.Options, op: Callable[..., Any], *args: Any, create: bool = False) -> Any:
    conn = _open(options, create)
    try:
        return db.transact(conn, op, *args)
    finally:
        conn.close()


class _Command:
    """The context a command runs in: its options and where to talk."""

    def __init__(
        self, options: usage.Options, stdin: IO[str], stdout: IO[str], getpass: _GetPass
    ) -> None:
        self.options = options
        self.stdin = stdin
        self.stdout = stdout
        self.getpass = getpass

    def say(self, line: str) -> None:
        self.stdout.write(line + "\n")

    def password(self) -> str:
        given = self.options["password"]
        return given if given is not None else _read_password(self.stdin, self.getpass)


def _missing(name: str) -> StoreError:
    return StoreError(f"no such user: {name}")


def _user_add(cmd: _Command) -> None:
    name = cmd.options["name"]
    if not is_account_name(name):
        # Checked again when stored; checked here so a typo fails before the prompt.
        raise InvalidScreenName(f"invalid or reserved screen name: {name!r}")
    password = cmd.password()
    bot = bool(cmd.options["bot"])
    now = int(time.time())
    account = _in_db(cmd.options, accounts._create_account, name, password, now, bot, create=True)
    cmd.say(f"added {account.screen_name}{' (bot)' if account.bot else ''}")


def _user_passwd(cmd: _Command) -> None:
    name = cmd.options["name"]
    conn = _open(cmd.options)
    try:
        # Check the name before prompting, so a typo fails fast.
        if db.transact(conn, accounts._get_account, name, write=False) is None:
            raise _missing(name)
        password = cmd.password()
        if not db.transact(conn, accounts._set_password, name, password):
            raise _missing(name)
    finally:
        conn.close()
    cmd.say(f"password changed for {name}")


def _user_delete(cmd: _Command) -> None:
    name = cmd.options["name"]
    if not _in_db(cmd.options, accounts._delete_account, name):
        raise _missing(name)
    cmd.say(f"deleted {name}")


def _set_suspended(cmd: _Command, suspended: bool) -> None:
    name = cmd.options["name"]
    if not _in_db(cmd.options, accounts._set_suspended, name, suspended):
        raise _missing(name)
    cmd.say(f"{'suspended' if suspended else 'unsuspended'} {name}")


def _user_set(cmd: _Command) -> None:
    name = cmd.options["name"]
    bot = bool(cmd.options["bot"])
    if not _in_db(cmd.options, accounts._set_bot, name, bot):
        raise _missing(name)
    cmd.say(f"{name} is now {'a bot' if bot else 'not a bot'}")


def _user_list(cmd: _Command) -> None:
    for account in _in_db(cmd.options, accounts._list_accounts):
        marks = [("bot", account.bot), ("suspended", account.suspended)]
        cmd.say(" ".join([account.screen_name, *(mark for mark, on in marks if on)]))


def _room_add(cmd: _Command) -> None:
    name = cmd.options["name"]
    now = int(time.time())
    # Checked again when stored; checked here so a typo creates no database.
    check_public_room(name, now)
    room = _in_db(cmd.options, chat_rooms._create_public_room, name, now, create=True)
    cmd.say(f"added room {room.name}")


def _room_delete(cmd: _Command) -> None:
    name = cmd.options["name"]
    if not _in_db(cmd.options, chat_rooms._delete_public_room, name):
        raise StoreError(f"no such room: {name}")
    cmd.say(f"deleted room {name}")


def _room_list(cmd: _Command) -> None:
    for room in _in_db(cmd.options, chat_rooms._list_public_rooms):
        cmd.say(room.name)


_USER_COMMANDS: dict[str, Callable[[_Command], None]] = {
    "add": _user_add,
    "delete": _user_delete,
    "list": _user_list,
    "passwd": _user_passwd,
    "set": _user_set,
    "suspend": lambda cmd: _set_suspended(cmd, True),
    "unsuspend": lambda cmd: _set_suspended(cmd, False),
}

_ROOM_COMMANDS: dict[str, Callable[[_Command], None]] = {
    "add": _room_add,
    "delete": _room_delete,
    "list": _room_list,
}


def _console_hash_password(cmd: _Command) -> None:
    # Here, not at the top: it loads twisted.conch, which the others need not.
    from aimserver.manhole import hash_password

    password = cmd.password()
    if not password:
        raise StoreError("the password is empty")
    cmd.say(hash_password(password))


_CONSOLE_COMMANDS: dict[str, Callable[[_Command], None]] = {
    "hash-password": _console_hash_password,
}


def _call_api(cmd: _Command, method: str, path: str, body: Any = None) -> Any:
    """One request to the running server's API; its JSON answer (or None)."""
    import json
    import urllib.error
    import urllib.request

    url = cmd.options["api"].rstrip("/") + path
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method)
    if cmd.options["token"]:
        request.add_header("Authorization", f"Bearer {cmd.options['token']}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            content = response.read()
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read())["error"]
        except (ValueError, KeyError, TypeError):
            message = e.reason
        raise StoreError(f"the server refused: {message} ({e.code})") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise StoreError(f"no server answering at {cmd.options['api']}: {reason}") from None
    return json.loads(content) if content else None


def _server_broadcast(cmd: _Command) -> None:
    body = {"text": cmd.options["text"]}
    if cmd.options["to"]:
        body["to"] = cmd.options["to"]
    answer = _call_api(cmd, "POST", "/broadcast", body)
    cmd.say(f"sent to {answer['sessions']} sessions of {answer['users']} users")


def _server_motd(cmd: _Command) -> None:
    if cmd.options["text"] is None:
        cmd.say(_call_api(cmd, "GET", "/motd")["text"])
        return
    _call_api(cmd, "PUT", "/motd", {"text": cmd.options["text"]})
    cmd.say("message of the day set" if cmd.options["text"] else "message of the day removed")


_SERVER_COMMANDS: dict[str, Callable[[_Command], None]] = {
    "broadcast": _server_broadcast,
    "motd": _server_motd,
}

_COMMANDS = {
    "console": _CONSOLE_COMMANDS,
    "room": _ROOM_COMMANDS,
    "server": _SERVER_COMMANDS,
    "user": _USER_COMMANDS,
}


def run(
    argv: list[str],
    stdout: IO[str],
    stderr: IO[str],
    *,
    stdin: IO[str] | None = None,
    getpass: _GetPass | None = None,
) -> int:
    """
    Run one ``aimserver`` command line.

    :param stdin: where a missing password is read from (default
        ``sys.stdin``); prompted for with ``getpass`` if it is a terminal.
    :return: the exit status: 0 done, 1 refused, 2 bad usage.
    """
    options = Options()
    try:
        options.parseOptions(argv)
    except _Exit as exit_:
        stdout.write(f"{exit_.text}\n")
        return 0
    except usage.UsageError as e:
        stderr.write(f"{_innermost(options)}\n")
        stderr.write(f"aimserver: {e}\n")
        return 2
    command = _Command(
        _innermost(options),
        stdin if stdin is not None else sys.stdin,
        stdout,
        getpass if getpass is not None else _getpass.getpass,
    )
    try:
        _COMMANDS[options.subCommand][options.subOptions.subCommand](command)
    except StoreError as e:
        stderr.write(f"aimserver: {e}\n")
        return 1
    except (EOFError, KeyboardInterrupt):
        stderr.write("aimserver: interrupted\n")
        return 1
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aimserver")
    except PackageNotFoundError:
        return getattr(aimserver, "__version__", "unknown")


def main() -> NoReturn:
    """The console script."""
    sys.exit(run(sys.argv[1:], sys.stdout, sys.stderr))
