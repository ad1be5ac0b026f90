"""Tests for the ``aimserver`` command (aimserver.admin.cli)."""

from __future__ import annotations

import io
import os
import sqlite3
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from aimserver import manhole
from aimserver.admin import cli
from aimserver.config import load_config
from aimserver.store import accounts as accounts_store
from aimserver.store import chat_rooms as chat_rooms_store
from aimserver.store import interfaces
from aimserver.store import sqlite as sqlite_store
from aimserver.store.credentials import check_roasted_password, roast
from aimserver.store.interfaces import Account, PublicRoom
from aimserver.store.sqlite import SCHEMA_VERSION, connect, transact
from aimserver.wire.roomname import MAX_ROOM_NAME_LENGTH


class TTY(io.StringIO):
    """A stdin that claims to be a terminal, so the CLI prompts with getpass."""

    def isatty(self) -> bool:
        return True


class Prompts:
    """A getpass stand-in answering from a list and recording the prompts."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.answers.pop(0)


class CLITestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.db = self.mktemp()

    def run_cli(self, *argv: str, stdin: io.StringIO | None = None, getpass=None):
        """Run the command; returns ``(status, stdout, stderr)``."""
        stdout, stderr = io.StringIO(), io.StringIO()
        status = cli.run(
            list(argv),
            stdout,
            stderr,
            stdin=stdin if stdin is not None else io.StringIO(""),
            getpass=getpass if getpass is not None else Prompts(),
        )
        return status, stdout.getvalue(), stderr.getvalue()

    def user(self, *argv: str, **kwargs):
        return self.run_cli("user", *argv, "--db", self.db, **kwargs)

    def room(self, *argv: str, **kwargs):
        return self.run_cli("room", *argv, "--db", self.db, **kwargs)

    def rooms(self) -> list[PublicRoom]:
        conn = connect(self.db, create=False)
        try:
            return transact(conn, chat_rooms_store._list_public_rooms)
        finally:
            conn.close()

    def account(self, name: str) -> Account | None:
        conn = connect(self.db, create=False)
        try:
            return transact(conn, accounts_store._get_account, name)
        finally:
            conn.close()

    def assert_password(self, name: str, password: str) -> None:
        account = self.account(name)
        assert account is not None
        self.assertTrue(check_roasted_password(account, roast(password.encode())))

    def assert_refused(self, result: tuple[int, str, str], message: str) -> None:
        """Status 1, nothing on stdout, and one line on stderr containing ``message``."""
        status, out, err = result
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err.count("\n"), 1, err)
        self.assertIn(message, err)

    def assert_usage_error(self, result: tuple[int, str, str], message: str) -> None:
        """Status 2, the usage on stderr, then the reason."""
        status, out, err = result
        self.assertEqual((status, out), (2, ""))
        self.assertIn("Usage: aimserver", err)
        self.assertIn(message, err)


class AddTests(CLITestCase):
    def test_add(self) -> None:
        """``user add NAME PASSWORD`` registers the name in its display form."""
        self.assertEqual(self.user("add", "Bob Smith", "secret"), (0, "added Bob Smith\n", ""))
        self.assertEqual(self.account("bobsmith").screen_name, "Bob Smith")
        self.assert_password("bobsmith", "secret")

    def test_add_creates_database(self) -> None:
        """The first add creates the database file at the latest schema."""
        self.assertFalse(os.path.exists(self.db))
        self.user("add", "alice", "secret")
        conn = sqlite3.connect(self.db)
        self.assertEqual(conn.execute("SELECT version FROM version").fetchone()[0], SCHEMA_VERSION)
        conn.close()

    def test_options_anywhere(self) -> None:
        """--db and -d work before or after the arguments; -- protects a dash password."""
        db = self.mktemp()
        self.assertEqual(self.run_cli("user", "add", "-d", db, "alice", "secret")[0], 0)
        self.assertEqual(self.run_cli("user", "add", "--db", db, "--", "bob", "-secret")[0], 0)
        self.db = db
        self.assert_password("alice", "secret")
        self.assert_password("bob", "-secret")

    def test_password_from_stdin(self) -> None:
        """Without PASSWORD and not on a terminal, one line of stdin is the password."""
        result = self.user("add", "alice", stdin=io.StringIO("pass word\nignored\n"))
        self.assertEqual(result[0], 0)
        self.assert_password("alice", "pass word")

    def test_password_from_stdin_crlf(self) -> None:
        """A Windows line ending is not part of the password."""
        self.user("add", "alice", stdin=io.StringIO("secret\r\n"))
        self.assert_password("alice", "secret")

    def test_password_stdin_empty(self) -> None:
        """No line on stdin is refused, and nothing is registered."""
        self.assert_refused(self.user("add", "alice"), "no password")
        self.assertFalse(os.path.exists(self.db))

    def test_password_prompted(self) -> None:
        """On a terminal the password is asked twice with getpass."""
        prompts = Prompts("secret", "secret")
        self.assertEqual(self.user("add", "alice", stdin=TTY(), getpass=prompts)[0], 0)
        self.assertEqual(len(prompts.prompts), 2)
        self.assert_password("alice", "secret")

    def test_password_prompt_mismatch(self) -> None:
        """Two different answers are refused; nothing is registered."""
        result = self.user("add", "alice", stdin=TTY(), getpass=Prompts("secret", "secreT"))
        self.assert_refused(result, "do not match")
        self.assertFalse(os.path.exists(self.db))

    def test_interrupted_prompt(self) -> None:
        """Ctrl-C or Ctrl-D at the prompt ends with status 1 and no traceback."""

        def interrupted(prompt: str) -> str:
            raise KeyboardInterrupt()

        self.assert_refused(self.user("add", "alice", stdin=TTY(), getpass=interrupted), "")

    def test_add_not_bot(self) -> None:
        """An account added without --bot is not a bot."""
        self.user("add", "alice", "secret")
        self.assertFalse(self.account("alice").bot)

    def test_add_bot(self) -> None:
        """``--bot`` (before or after the arguments) registers a bot account."""
        self.assertEqual(
            self.user("add", "Help Bot", "secret", "--bot"), (0, "added Help Bot (bot)\n", "")
        )
        self.assertTrue(self.account("helpbot").bot)
        self.assert_password("helpbot", "secret")
        self.assertEqual(self.user("add", "--bot", "bot2", stdin=io.StringIO("secret\n"))[0], 0)
        self.assertTrue(self.account("bot2").bot)
        self.assert_password("bot2", "secret")

    def test_add_bot_refused(self) -> None:
        """A refused bot add registers nothing and leaves an existing account alone."""
        self.user("add", "alice", "secret")
        self.assert_refused(self.user("add", "ALICE", "other1", "--bot"), "already registered")
        self.assertFalse(self.account("alice").bot)
        self.assert_refused(self.user("add", "bot", "abc", "--bot"), "4-16 characters")
        self.assertIsNone(self.account("bot"))

    def test_add_exists(self) -> None:
        """A name taken in any case/spacing is refused."""
        self.user("add", "Bob Smith", "secret")
        self.assert_refused(self.user("add", "BOBSMITH", "other1"), "already registered")
        self.assert_password("bobsmith", "secret")

    def test_add_invalid_name(self) -> None:
        """An invalid screen name is refused, before any password prompt."""
        self.assert_refused(self.user("add", "no_underscores", "secret"), "invalid")
        self.assert_refused(self.user("add", "AOL System Msg", "secret"), "reserved")
        prompts = Prompts()
        self.assert_refused(self.user("add", "1abc", stdin=TTY(), getpass=prompts), "invalid")
        self.assertEqual(prompts.prompts, [])

    def test_add_invalid_password(self) -> None:
        """A password outside 4-16 characters is refused."""
        self.assert_refused(self.user("add", "alice", "abc"), "4-16 characters")
        self.assertIsNone(self.account("alice"))

    def test_default_database(self) -> None:
        """Without --db the file is aimserver.sqlite in the current directory."""
        directory = self.mktemp()
        os.mkdir(directory)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(directory)
        self.assertEqual(self.run_cli("user", "add", "alice", "secret")[0], 0)
        self.assertTrue(os.path.exists("aimserver.sqlite"))


class ListTests(CLITestCase):
    def test_list(self) -> None:
        """One account per line, by normalized name, suspended ones marked."""
        for name in ("zed", "Bob Smith", "alice"):
            self.user("add", name, "secret")
        self.user("suspend", "zed")
        self.assertEqual(self.user("list"), (0, "alice\nBob Smith\nzed suspended\n", ""))

    def test_list_bots(self) -> None:
        """Bot accounts are marked ``bot`` after the name, before ``suspended``."""
        for name in ("zed", "Help Bot", "alice"):
            self.user("add", name, "secret")
        self.user("set", "help bot", "--bot")
        self.user("set", "zed", "--bot")
        self.user("suspend", "zed")
        self.assertEqual(self.user("list"), (0, "alice\nHelp Bot bot\nzed bot suspended\n", ""))

    def test_no_page_by_page_check(self) -> None:
        """The CLI does not read the whole file first (PRAGMA quick_check,
        2 ms a MB): the server's start-up does, and still refuses damage."""
        self.user("add", "alice", "secret")
        read: list[str] = []

        def check(conn: sqlite3.Connection, path: str) -> None:
            read.append(path)
            raise sqlite_store.SchemaError(f"{path} is corrupt")

        self.patch(sqlite_store, "_check_intact", check)
        self.assertEqual(self.user("list"), (0, "alice\n", ""))
        self.assertEqual(self.user("add", "bob", "secret")[0], 0)
        self.assertEqual(read, [])
        self.assertRaises(sqlite_store.SchemaError, sqlite_store.SQLiteUserStore.open, self.db)
        self.assertEqual(read, [self.db])

    def test_list_empty(self) -> None:
        """An empty database lists nothing."""
        self.user("add", "alice", "secret")
        self.user("delete", "alice")
        self.assertEqual(self.user("list"), (0, "", ""))

    def test_list_no_database(self) -> None:
        """Commands other than add do not create a database where there is none."""
        self.assert_refused(self.user("list"), "no database at")
        self.assertFalse(os.path.exists(self.db))


class PasswdTests(CLITestCase):
    def setUp(self) -> None:
        super().setUp()
        self.user("add", "alice", "secret")

    def test_passwd(self) -> None:
        """The new password works and the old one does not."""
        self.assertEqual(
            self.user("passwd", "ALICE", "newpass"), (0, "password changed for ALICE\n", "")
        )
        self.assert_password("alice", "newpass")
        account = self.account("alice")
        self.assertFalse(check_roasted_password(account, roast(b"secret")))

    def test_passwd_prompted(self) -> None:
        """Without PASSWORD on a terminal, it is asked twice."""
        result = self.user("passwd", "alice", stdin=TTY(), getpass=Prompts("newpass", "newpass"))
        self.assertEqual(result[0], 0)
        self.assert_password("alice", "newpass")

    def test_passwd_unknown(self) -> None:
        """An unknown user is refused before any prompt."""
        prompts = Prompts()
        self.assert_refused(
            self.user("passwd", "bob", stdin=TTY(), getpass=prompts), "no such user"
        )
        self.assertEqual(prompts.prompts, [])

    def test_passwd_invalid(self) -> None:
        """An invalid new password is refused and the old one keeps working."""
        self.assert_refused(self.user("passwd", "alice", "x" * 17), "4-16 characters")
        self.assert_password("alice", "secret")


class DeleteTests(CLITestCase):
    def test_delete(self) -> None:
        """``user delete`` removes the account."""
        self.user("add", "alice", "secret")
        self.assertEqual(self.user("delete", "Alice"), (0, "deleted Alice\n", ""))
        self.assertIsNone(self.account("alice"))

    def test_delete_unknown(self) -> None:
        """Deleting an unknown user is refused."""
        self.user("add", "alice", "secret")
        self.assert_refused(self.user("delete", "bob"), "no such user: bob")


class UndecodableArgumentTests(CLITestCase):
    def test_bytes_that_are_not_utf8_are_a_usage_error(self) -> None:
        """``aimserver user delete $'\\xff\\xfe'``: the shell hands Python
        bytes it keeps as surrogates, which no database call could take.
        Every command says so (status 2) instead of a traceback, and nothing
        changes."""
        self.user("add", "alice", "secret")
        bad = b"\xff\xfe".decode("utf-8", "surrogateescape")
        for argv in (
            ("delete", bad),
            ("suspend", bad),
            ("unsuspend", bad),
            ("passwd", bad, "newpass"),
            ("set", bad, "--bot"),
            ("add", "bob", bad),
        ):
            status, out, err = self.user(*argv)
            self.assertEqual(status, 2, argv)
            self.assertIn("not text: it has bytes that are not UTF-8", err, argv)
        status, out, err = self.run_cli("user", "delete", "alice", "--db", self.db + bad)
        self.assertEqual(status, 2)
        self.assertIn("db is not text", err)
        self.assertIsNotNone(self.account("alice"))
        self.assertIsNone(self.account("bob"))


class SuspendTests(CLITestCase):
    def setUp(self) -> None:
        super().setUp()
        self.user("add", "alice", "secret")

    def test_suspend_unsuspend(self) -> None:
        """Suspension is recorded, then lifted; the password is kept."""
        self.assertEqual(self.user("suspend", "alice"), (0, "suspended alice\n", ""))
        self.assertTrue(self.account("alice").suspended)
        self.assertEqual(self.user("unsuspend", "alice"), (0, "unsuspended alice\n", ""))
        self.assertFalse(self.account("alice").suspended)
        self.assert_password("alice", "secret")

    def test_unknown(self) -> None:
        """Suspending or unsuspending an unknown user is refused."""
        self.assert_refused(self.user("suspend", "bob"), "no such user")
        self.assert_refused(self.user("unsuspend", "bob"), "no such user")


class SetTests(CLITestCase):
    def setUp(self) -> None:
        super().setUp()
        self.user("add", "alice", "secret")
        self.user("add", "bob", "secret")

    def test_set_bot(self) -> None:
        """``--bot`` makes the account a bot, ``--no-bot`` an ordinary one again;
        the password, suspension and other accounts are untouched."""
        self.user("suspend", "alice")
        self.assertEqual(self.user("set", "ALICE", "--bot"), (0, "ALICE is now a bot\n", ""))
        self.assertTrue(self.account("alice").bot)
        self.assertTrue(self.account("alice").suspended)
        self.assertFalse(self.account("bob").bot)
        self.assertEqual(self.user("set", "alice", "--bot")[0], 0)
        self.assertTrue(self.account("alice").bot)
        self.assertEqual(self.user("set", "--no-bot", "alice"), (0, "alice is now not a bot\n", ""))
        self.assertFalse(self.account("alice").bot)
        self.assertTrue(self.account("alice").suspended)
        self.assert_password("alice", "secret")

    def test_set_unknown(self) -> None:
        """Setting an unknown user is refused."""
        self.assert_refused(self.user("set", "carol", "--bot"), "no such user: carol")
        self.assert_refused(self.user("set", "carol", "--no-bot"), "no such user: carol")

    def test_set_no_database(self) -> None:
        """``set`` does not create a database where there is none."""
        self.db = self.mktemp()
        self.assert_refused(self.user("set", "alice", "--bot"), "no database at")
        self.assertFalse(os.path.exists(self.db))

    def test_set_needs_one_flag(self) -> None:
        """Neither or both of --bot and --no-bot is a usage error; nothing changes."""
        self.user("set", "bob", "--bot")
        self.assert_usage_error(self.user("set", "alice"), "exactly one of --bot and --no-bot")
        self.assert_usage_error(
            self.user("set", "bob", "--bot", "--no-bot"), "exactly one of --bot and --no-bot"
        )
        self.assertFalse(self.account("alice").bot)
        self.assertTrue(self.account("bob").bot)

    def test_set_arguments(self) -> None:
        """A missing name or an extra argument is a usage error."""
        self.assert_usage_error(self.user("set", "--bot"), "Wrong number of arguments")
        self.assert_usage_error(self.user("set", "a", "b", "--bot"), "Wrong number of arguments")

    def test_set_help(self) -> None:
        """``user set --help`` shows both flags."""
        status, out, err = self.run_cli("user", "set", "--help")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("Usage: aimserver user set NAME --bot|--no-bot", out)
        self.assertIn("--no-bot", out)


class RoomTests(CLITestCase):
    def test_add(self) -> None:
        """``room add NAME`` creates the room (and the database) under the
        name as room_name spells it, and says so."""
        self.assertFalse(os.path.exists(self.db))
        before = int(time.time())
        self.assertEqual(self.room("add", "  Chess   Club "), (0, "added room Chess Club\n", ""))
        (room,) = self.rooms()
        self.assertEqual(room.name, "Chess Club")
        self.assertTrue(before <= room.created_at <= time.time(), room)

    def test_add_exists(self) -> None:
        """A name with the key of an existing room is refused; the room stays."""
        self.room("add", "Chess Club")
        self.assert_refused(self.room("add", "CHESS CLUB"), "room already exists: CHESS CLUB")
        self.assertEqual([room.name for room in self.rooms()], ["Chess Club"])

    def test_add_invalid_name(self) -> None:
        """A name rooms may not have is refused with the reason; nothing is
        created, not even the database."""
        for name, reason in (
            ("", "must not be empty"),
            ("50%", "no '%'"),
            ("x" * (MAX_ROOM_NAME_LENGTH + 1), f"at most {MAX_ROOM_NAME_LENGTH}"),
        ):
            self.assert_refused(self.room("add", name), "invalid room name")
            self.assert_refused(self.room("add", name), reason)
        self.assertFalse(os.path.exists(self.db))

    def test_add_too_many(self) -> None:
        """Past MAX_PUBLIC_ROOMS a new room is refused."""
        self.patch(interfaces, "MAX_PUBLIC_ROOMS", 1)
        self.room("add", "Chess")
        self.assert_refused(self.room("add", "Go"), "at most 1")
        self.assertEqual([room.name for room in self.rooms()], ["Chess"])

    def test_delete(self) -> None:
        """``room delete`` removes the room named in any spelling."""
        self.room("add", "Chess Club")
        self.room("add", "Go")
        self.assertEqual(
            self.room("delete", " chess  CLUB"), (0, "deleted room  chess  CLUB\n", "")
        )
        self.assertEqual([room.name for room in self.rooms()], ["Go"])

    def test_delete_missing(self) -> None:
        """Deleting a room that does not exist (or could not) is refused."""
        self.room("add", "Chess")
        self.assert_refused(self.room("delete", "Go"), "no such room: Go")
        self.assert_refused(self.room("delete", "50%"), "no such room: 50%")
        self.assertEqual(len(self.rooms()), 1)

    def test_list(self) -> None:
        """One room per line, as created, sorted by key."""
        for name in ("zebra", "Beta", "alpha"):
            self.room("add", name)
        self.assertEqual(self.room("list"), (0, "alpha\nBeta\nzebra\n", ""))
        self.room("delete", "beta")
        self.assertEqual(self.room("list"), (0, "alpha\nzebra\n", ""))

    def test_list_empty(self) -> None:
        """A database with accounts but no rooms lists nothing."""
        self.user("add", "alice", "secret")
        self.assertEqual(self.room("list"), (0, "", ""))

    def test_no_database(self) -> None:
        """Commands other than add do not create a database where there is none."""
        self.assert_refused(self.room("list"), "no database at")
        self.assert_refused(self.room("delete", "Chess"), "no database at")
        self.assertFalse(os.path.exists(self.db))

    def test_rooms_and_users_apart(self) -> None:
        """A room and an account may share a name; deleting one leaves the other."""
        self.user("add", "chess", "secret")
        self.room("add", "chess")
        self.user("delete", "chess")
        self.assertEqual(self.room("list"), (0, "chess\n", ""))

    def test_usage(self) -> None:
        """``room`` alone, an unknown room command, or a wrong number of
        arguments is a usage error; a name with a leading dash needs ``--``."""
        self.assert_usage_error(self.run_cli("room"), "missing command")
        self.assert_usage_error(self.run_cli("room", "frob"), "Unknown command: frob")
        self.assert_usage_error(self.room("add"), "Wrong number of arguments")
        self.assert_usage_error(self.room("add", "a", "b"), "Wrong number of arguments")
        self.assert_usage_error(self.room("delete"), "Wrong number of arguments")
        self.assert_usage_error(self.room("list", "x"), "Wrong number of arguments")
        self.assert_usage_error(self.room("add", "-x"), "x")
        self.assertFalse(os.path.exists(self.db))
        self.assertEqual(self.run_cli("room", "add", "--db", self.db, "--", "-x")[0], 0)
        self.assertEqual(self.room("list"), (0, "-x\n", ""))

    def test_help(self) -> None:
        """``room --help`` lists the room commands, ``room add --help`` its usage."""
        status, out, err = self.run_cli("room", "--help")
        self.assertEqual((status, err), (0, ""))
        for command in ("add", "delete", "list"):
            self.assertIn(command, out)
        status, out, err = self.run_cli("room", "add", "--help")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("Usage: aimserver room add NAME [--db PATH]", out)
        status, out, err = self.run_cli("--help")
        self.assertIn("room", out)


class DatabaseErrorTests(CLITestCase):
    def test_newer_database(self) -> None:
        """A database from a newer aimserver is refused with one line, untouched."""
        self.user("add", "alice", "secret")
        conn = sqlite3.connect(self.db)
        conn.execute("UPDATE version SET version = ?", (SCHEMA_VERSION + 1,))
        conn.commit()
        conn.close()
        self.assert_refused(self.user("list"), "newer aimserver")

    def test_not_a_database(self) -> None:
        """A file that is not a database is refused with one line."""
        with open(self.db, "wb") as f:
            f.write(b"garbage" * 1000)
        self.assert_refused(self.user("add", "alice", "secret"), "not a database")


class UsageTests(CLITestCase):
    def test_no_command(self) -> None:
        """No command at all is a usage error."""
        self.assert_usage_error(self.run_cli(), "missing command")

    def test_no_user_command(self) -> None:
        """``user`` alone is a usage error showing the user commands."""
        self.assert_usage_error(self.run_cli("user"), "missing command")

    def test_unknown_command(self) -> None:
        """Unknown commands are usage errors."""
        self.assert_usage_error(self.run_cli("frob"), "Unknown command: frob")
        self.assert_usage_error(self.run_cli("user", "frob"), "Unknown command: frob")

    def test_wrong_arguments(self) -> None:
        """Missing or extra arguments are usage errors."""
        self.assert_usage_error(self.user("add"), "Wrong number of arguments")
        self.assert_usage_error(self.user("add", "a", "b", "c"), "Wrong number of arguments")
        self.assert_usage_error(self.user("delete"), "Wrong number of arguments")
        self.assert_usage_error(self.user("list", "x"), "Wrong number of arguments")
        self.assertFalse(os.path.exists(self.db))

    def test_unknown_option(self) -> None:
        """Unknown options are usage errors."""
        self.assert_usage_error(self.user("list", "--nope"), "nope")
        self.assert_usage_error(self.user("passwd", "alice", "--bot"), "bot")
        self.assert_usage_error(self.user("add", "alice", "secret", "--no-bot"), "no-bot")
        self.assert_usage_error(self.run_cli("user", "list", "--db"), "db")

    def test_help(self) -> None:
        """--help prints the usage of that command on stdout and succeeds."""
        status, out, err = self.run_cli("user", "add", "--help")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("Usage: aimserver user add NAME [PASSWORD]", out)
        self.assertIn("--db", out)
        status, out, err = self.run_cli("--help")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("user", out)

    def test_version(self) -> None:
        """--version prints the aimserver version."""
        status, out, err = self.run_cli("--version")
        self.assertEqual((status, err), (0, ""))
        self.assertTrue(out.startswith("aimserver "))

    def test_main(self) -> None:
        """The console script exits with run()'s status."""
        self.patch(sys, "argv", ["aimserver", "--version"])
        self.patch(sys, "stdout", io.StringIO())
        exited = self.assertRaises(SystemExit, cli.main)
        self.assertEqual(exited.code, 0)
        self.patch(sys, "argv", ["aimserver"])
        self.patch(sys, "stderr", io.StringIO())
        exited = self.assertRaises(SystemExit, cli.main)
        self.assertEqual(exited.code, 2)


class ConsoleTests(CLITestCase):
    def setUp(self) -> None:
        super().setUp()
        self.patch(manhole, "HASH_ITERATIONS", 1000)

    def test_hash_password(self) -> None:
        """hash-password prints a hash of the password, given, prompted for
        (twice) or read from stdin, that [manhole] password_hash accepts."""
        for argv, stdin in (
            (["s3cret pass"], None),
            ([], TTY("")),
            ([], io.StringIO("s3cret pass\n")),
        ):
            status, out, err = self.run_cli(
                "console",
                "hash-password",
                *argv,
                stdin=stdin,
                getpass=Prompts("s3cret pass", "s3cret pass"),
            )
            self.assertEqual((status, err), (0, ""))
            encoded = out.strip()
            self.assertTrue(encoded.startswith("pbkdf2_sha256$1000$"), encoded)
            self.assertTrue(manhole.check_password(b"s3cret pass", encoded))
            self.assertEqual(
                load_config(None, {"manhole.password_hash": encoded}).manhole.password_hash,
                encoded,
            )
        self.assertFalse(os.path.exists("aimserver.sqlite"))

    def test_hash_password_refusals(self) -> None:
        """Mismatched prompts or an empty password print no hash."""
        self.assert_refused(
            self.run_cli("console", "hash-password", stdin=TTY(""), getpass=Prompts("a", "b")),
            "do not match",
        )
        self.assert_refused(
            self.run_cli("console", "hash-password", stdin=io.StringIO("\n")), "empty"
        )
        self.assert_usage_error(self.run_cli("console"), "missing command")
