# -*- test-case-name: tests.test_store -*-
"""
The embedded default :class:`~aimserver.store.interfaces.IUserStore`: one
SQLite file.

The work is done by module-level synchronous ``_op(conn, ...)`` functions,
one per public method, each run inside :func:`transact`. The server runs them
on one dedicated DB thread (sqlite3 connections must not be shared between
threads, and SQLite must never block the reactor); the ``aimserver user`` CLI
calls the very same functions on its own connection. Both can use the file at
once: it is in WAL mode and writers wait up to :data:`BUSY_TIMEOUT` seconds.

Schema files live in ``schema/``: ``v<N>.sql`` creates version N from
nothing, ``upgrade-to-v<N>.sql`` goes from N-1 to N. :func:`connect` creates,
upgrades (after a backup) or refuses a database.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from importlib import resources
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from aimserver.passwords import Credentials, new_credentials
from aimserver.store.interfaces import (
    MAX_FEEDBAG_ITEMS,
    Account,
    AccountExists,
    Feedbag,
    FeedbagItem,
    InvalidScreenName,
    IUserStore,
    NoSuchAccount,
    OfflineMessage,
    StoreError,
    check_credentials,
    check_feedbag_item,
    check_offline_message,
    check_offline_quota,
    check_secret_request,
    check_up_to_id,
    check_warning,
)
from aimserver.wire.screenname import is_valid_screen_name, normalize

__all__ = [
    "BUSY_TIMEOUT",
    "SCHEMA_VERSION",
    "SQLiteUserStore",
    "SchemaError",
    "StoreService",
    "connect",
    "transact",
]

SCHEMA_VERSION = 5
"""The schema version this code reads and writes."""

BUSY_TIMEOUT = 5.0
"""Seconds a connection waits for another process's write lock."""

_log = Logger()
_T = TypeVar("_T")
_Runner = Callable[..., Deferred[Any]]


class SchemaError(StoreError):
    """
    The file cannot be used: not an aimserver database, written by a newer
    aimserver, or an upgrade failed (the file is then left as it was).
    """


# --- schema and migrations ------------------------------------------------


_SCHEMA_FILE = re.compile(r"v(\d+)\.sql")


def _schema_dir() -> resources.abc.Traversable:
    return resources.files("aimserver.store").joinpath("schema")


def _schema_text(name: str) -> str | None:
    """The text of ``schema/<name>``, or ``None`` if there is no such file."""
    resource = _schema_dir().joinpath(name)
    try:
        return resource.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _base_version() -> int:
    """The newest ``v<N>.sql`` at or below :data:`SCHEMA_VERSION`: where a new DB starts."""
    matches = (_SCHEMA_FILE.fullmatch(entry.name) for entry in _schema_dir().iterdir())
    usable = [int(m.group(1)) for m in matches if m and int(m.group(1)) <= SCHEMA_VERSION]
    if not usable:
        raise SchemaError("no schema file to create a database from")
    return max(usable)


def _statements(script: str) -> Iterator[str]:
    """
    Split a schema script into statements, so that it can run inside a
    transaction we control (``executescript`` would commit it first).
    """
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""


def _run_script(conn: sqlite3.Connection, name: str) -> None:
    script = _schema_text(name)
    if script is None:
        raise SchemaError(f"missing schema file {name}")
    for statement in _statements(script):
        conn.execute(statement)


def _schema_version(conn: sqlite3.Connection) -> int:
    """The version recorded in the database (raises if it is not ours)."""
    try:
        row = conn.execute("SELECT version FROM version").fetchone()
    except sqlite3.Error as e:
        raise SchemaError(f"not an aimserver database ({e})") from e
    if row is None or not isinstance(row[0], int):
        raise SchemaError("not an aimserver database (no version recorded)")
    return row[0]


def _create_schema(conn: sqlite3.Connection) -> None:
    """Build the latest schema in an empty database: base file, then upgrades."""
    base = _base_version()
    _run_script(conn, f"v{base}.sql")
    conn.execute("INSERT INTO version (version) VALUES (?)", (base,))
    for version in range(base + 1, SCHEMA_VERSION + 1):
        _upgrade_step(conn, version)


def _upgrade_step(conn: sqlite3.Connection, to_version: int) -> None:
    """
    Apply ``upgrade-to-v<to_version>.sql`` if the database is one version
    below. Checked inside the transaction, so a second process upgrading at
    the same moment does no harm.
    """
    current = _schema_version(conn)
    if current >= to_version:
        return
    if current != to_version - 1:
        raise SchemaError(f"cannot upgrade from version {current} to {to_version}")
    _run_script(conn, f"upgrade-to-v{to_version}.sql")
    conn.execute("UPDATE version SET version = ?", (to_version,))


def _backup(conn: sqlite3.Connection, path: str, version: int) -> str:
    """
    Copy the database to ``<path>.v<version>.bak`` (or ``.bak.1``, ... if
    that exists: an old backup is never overwritten). The copy holds
    password-equivalent digests, so it is created readable by the owner only.
    """
    base = f"{path}.v{version}.bak"
    for n in range(1000):
        target = base if n == 0 else f"{base}.{n}"
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        except OSError as e:
            raise SchemaError(f"cannot back up {path} before upgrading it: {e}") from e
        os.close(fd)
        try:
            _copy_database(conn, target)
        except (OSError, sqlite3.Error) as e:
            with contextlib.suppress(OSError):
                os.unlink(target)
            raise SchemaError(f"cannot back up {path} before upgrading it: {e}") from e
        return target
    raise SchemaError(f"too many backups named {base}.*; remove some")


def _copy_database(conn: sqlite3.Connection, target: str) -> None:
    """A consistent copy through SQLite (a file copy could miss a -wal file)."""
    destination = sqlite3.connect(target)
    try:
        conn.backup(destination)
    finally:
        destination.close()


def _upgrade(conn: sqlite3.Connection, path: str) -> None:
    """Bring an existing database to :data:`SCHEMA_VERSION`, or refuse it."""
    version = _schema_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"{path} has schema version {version}, but this aimserver only knows"
            f" versions up to {SCHEMA_VERSION}: run a newer aimserver, or restore a backup"
        )
    if version == SCHEMA_VERSION:
        return
    backup = _backup(conn, path, version)
    _log.info(
        "backed up {path} (schema v{version}) to {backup}",
        path=path,
        version=version,
        backup=backup,
    )
    for step in range(version + 1, SCHEMA_VERSION + 1):
        _log.info("upgrading {path} to schema v{step}", path=path, step=step)
        try:
            transact(conn, _upgrade_step, step)
        except SchemaError:
            raise
        except StoreError as e:
            raise SchemaError(
                f"upgrading {path} to schema v{step} failed, it is still at v{step - 1}: {e}"
            ) from e


# --- connections and transactions -----------------------------------------


def _open(path: str) -> sqlite3.Connection:
    """
    Open a connection with the settings every user of the file needs:
    synchronous=FULL (a killed server loses no committed account), foreign
    keys (a deleted account takes its feedbag and offline messages along), a
    busy timeout (the CLI
    and the server share the file), and transactions that we begin ourselves
    (``isolation_level=None``). WAL is switched on by :func:`connect`.
    """
    try:
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as e:
        raise SchemaError(f"cannot open database {path}: {e}") from e
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.Error as e:
        conn.close()
        raise SchemaError(f"cannot open database {path}: {e}") from e
    return conn


def _enable_wal(conn: sqlite3.Connection, path: str) -> None:
    """Write-ahead logging: readers never block the writer, so the CLI and server coexist."""
    try:
        conn.execute("PRAGMA journal_mode = WAL")
    except sqlite3.Error as e:
        raise SchemaError(f"cannot open database {path}: {e}") from e


def _create_atomically(path: str) -> None:
    """
    Create a database at the latest schema in a temporary file next to
    ``path``, then rename it into place: a crash leaves no half-made file.
    ``mkstemp`` makes it readable by the owner only.
    """
    directory = os.path.dirname(path) or "."
    try:
        fd, temp = tempfile.mkstemp(
            prefix=os.path.basename(path) + ".", suffix=".new", dir=directory
        )
    except OSError as e:
        raise SchemaError(f"cannot create database {path}: {e}") from e
    os.close(fd)
    try:
        # Still a rollback journal while building, so that the closed file
        # is complete on its own when renamed (no -wal file to carry along).
        conn = _open(temp)
        try:
            transact(conn, _create_schema)
        finally:
            conn.close()
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _log.info("created database {path} at schema v{version}", path=path, version=SCHEMA_VERSION)


def connect(path: str, *, create: bool = True) -> sqlite3.Connection:
    """
    Open the database at ``path`` ready for the ``_op`` functions: created at
    the latest schema if missing (and ``create`` is true), upgraded one
    version at a time after a backup if older, refused if newer. Blocks: call
    it at start-up or from the CLI, never from a running reactor.

    ``":memory:"`` gives a private in-memory database.

    :raises SchemaError: see :class:`SchemaError`.
    :raises StoreError: no file at ``path`` and ``create`` is false.
    """
    if path == ":memory:":
        conn = _open(path)
        transact(conn, _create_schema)
        return conn
    if not os.path.exists(path):
        if not create:
            raise StoreError(f"no database at {path}")
        _create_atomically(path)
    # WAL only once the version is known to be ours: switching the journal
    # mode rewrites the header of a file we may be about to refuse.
    conn = _open(path)
    try:
        _upgrade(conn, path)
        _enable_wal(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def transact(
    conn: sqlite3.Connection,
    op: Callable[..., _T],
    *args: Any,
    write: bool = True,
) -> _T:
    """
    Run ``op(conn, *args)`` in one transaction: commit if it returns, roll
    back if it raises. A write transaction takes the write lock up front
    (``BEGIN IMMEDIATE``), so waiting for another writer uses the busy timeout
    instead of failing halfway. sqlite3 errors come out as :class:`StoreError`.
    """
    try:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    except sqlite3.Error as e:
        raise StoreError(f"database error: {e}") from e
    try:
        result = op(conn, *args)
        conn.execute("COMMIT")
    except BaseException as e:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        if isinstance(e, sqlite3.Error):
            raise StoreError(f"database error: {e}") from e
        raise
    return result


# --- operations: one per IUserStore method, run inside transact() ----------

_ACCOUNT_COLUMNS = (
    "screen_name, auth_key, weak_md5, strong_md5, suspended, created_at,"
    " warning_level, warning_updated_at, bot"
)


def _account(row: tuple[Any, ...]) -> Account:
    screen_name, auth_key, weak, strong, suspended, created_at, warning, warned_at, bot = row
    return Account(
        screen_name=screen_name,
        auth_key=auth_key,
        weak_md5=bytes(weak),
        strong_md5=bytes(strong),
        suspended=bool(suspended),
        created_at=created_at,
        warning_level=warning,
        warning_updated_at=warned_at,
        bot=bool(bot),
    )


def _get_account(conn: sqlite3.Connection, screen_name: str) -> Account | None:
    row = conn.execute(
        f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE normalized = ?",
        (normalize(screen_name),),
    ).fetchone()
    return None if row is None else _account(row)


#: Names per query of get_accounts (SQLite allows 32,766 parameters; a
#: smaller IN list keeps each statement quick).
_ACCOUNTS_PER_QUERY = 500


def _get_accounts(conn: sqlite3.Connection, screen_names: Sequence[str]) -> dict[str, Account]:
    keys = sorted({normalize(name) for name in screen_names})
    found: dict[str, Account] = {}
    for start in range(0, len(keys), _ACCOUNTS_PER_QUERY):
        chunk = keys[start : start + _ACCOUNTS_PER_QUERY]
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT normalized, {_ACCOUNT_COLUMNS} FROM accounts WHERE normalized IN ({marks})",
            chunk,
        )
        for row in rows:
            found[row[0]] = _account(tuple(row)[1:])
    return found


def _create_account(
    conn: sqlite3.Connection, screen_name: str, password: str, now: int, bot: bool = False
) -> Account:
    """``bot`` is for the CLI (``user add --bot``); :meth:`SQLiteUserStore.create_account`
    never passes it."""
    _check_name(screen_name)
    return _insert_account(conn, screen_name, new_credentials(password), now, bot)


def _create_account_with_credentials(
    conn: sqlite3.Connection, screen_name: str, credentials: Credentials, now: int
) -> Account:
    _check_name(screen_name)
    check_credentials(credentials)
    return _insert_account(conn, screen_name, credentials, now)


def _check_name(screen_name: str) -> None:
    if not is_valid_screen_name(screen_name):
        raise InvalidScreenName(f"invalid screen name: {screen_name!r}")


def _insert_account(
    conn: sqlite3.Connection,
    screen_name: str,
    credentials: Credentials,
    now: int,
    bot: bool = False,
) -> Account:
    if _get_account(conn, screen_name) is not None:
        raise AccountExists(f"screen name already registered: {screen_name}")
    account = Account(
        screen_name=screen_name,
        auth_key=credentials.auth_key,
        weak_md5=credentials.weak_md5,
        strong_md5=credentials.strong_md5,
        created_at=now,
        bot=bool(bot),
    )
    try:
        conn.execute(
            f"INSERT INTO accounts (normalized, {_ACCOUNT_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                account.normalized,
                account.screen_name,
                account.auth_key,
                account.weak_md5,
                account.strong_md5,
                int(account.suspended),
                account.created_at,
                account.warning_level,
                account.warning_updated_at,
                int(account.bot),
            ),
        )
    except sqlite3.IntegrityError as e:
        raise AccountExists(f"screen name already registered: {screen_name}") from e
    return account


def _delete_account(conn: sqlite3.Connection, screen_name: str) -> bool:
    # Foreign keys cascade to feedbag_items, feedbag_meta and offline_messages.
    cursor = conn.execute("DELETE FROM accounts WHERE normalized = ?", (normalize(screen_name),))
    return cursor.rowcount > 0


def _list_accounts(conn: sqlite3.Connection) -> list[Account]:
    rows = conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY normalized")
    return [_account(row) for row in rows]


def _set_password(conn: sqlite3.Connection, screen_name: str, password: str) -> bool:
    credentials = new_credentials(password)
    cursor = conn.execute(
        "UPDATE accounts SET auth_key = ?, weak_md5 = ?, strong_md5 = ? WHERE normalized = ?",
        (
            credentials.auth_key,
            credentials.weak_md5,
            credentials.strong_md5,
            normalize(screen_name),
        ),
    )
    return cursor.rowcount > 0


def _set_suspended(conn: sqlite3.Connection, screen_name: str, suspended: bool) -> bool:
    cursor = conn.execute(
        "UPDATE accounts SET suspended = ? WHERE normalized = ?",
        (int(suspended), normalize(screen_name)),
    )
    return cursor.rowcount > 0


def _set_bot(conn: sqlite3.Connection, screen_name: str, bot: bool) -> bool:
    cursor = conn.execute(
        "UPDATE accounts SET bot = ? WHERE normalized = ?",
        (int(bool(bot)), normalize(screen_name)),
    )
    return cursor.rowcount > 0


def _set_warning(conn: sqlite3.Connection, screen_name: str, level: int, at: int) -> bool:
    level = check_warning(level, at)
    cursor = conn.execute(
        "UPDATE accounts SET warning_level = ?, warning_updated_at = ? WHERE normalized = ?",
        (level, at, normalize(screen_name)),
    )
    return cursor.rowcount > 0


def _get_feedbag(conn: sqlite3.Connection, screen_name: str) -> Feedbag:
    normalized = normalize(screen_name)
    rows = conn.execute(
        "SELECT name, group_id, item_id, class_id, attributes FROM feedbag_items"
        " WHERE normalized = ? ORDER BY group_id, item_id",
        (normalized,),
    )
    items = tuple(
        FeedbagItem(name=name, group_id=g, item_id=i, class_id=c, attributes=bytes(attributes))
        for name, g, i, c, attributes in rows
    )
    meta = conn.execute(
        "SELECT last_modified FROM feedbag_meta WHERE normalized = ?", (normalized,)
    ).fetchone()
    return Feedbag(items=items, last_modified=0 if meta is None else meta[0])


def _existing(conn: sqlite3.Connection, screen_name: str) -> str:
    """The normalized name of an account that must exist."""
    normalized = normalize(screen_name)
    row = conn.execute("SELECT 1 FROM accounts WHERE normalized = ?", (normalized,)).fetchone()
    if row is None:
        raise NoSuchAccount(f"no such account: {screen_name}")
    return normalized


def _touch_feedbag(conn: sqlite3.Connection, normalized: str, now: int) -> None:
    conn.execute(
        "INSERT INTO feedbag_meta (normalized, last_modified) VALUES (?, ?)"
        " ON CONFLICT (normalized) DO UPDATE SET last_modified = excluded.last_modified",
        (normalized, now),
    )


def _upsert_feedbag_items(
    conn: sqlite3.Connection, screen_name: str, items: Sequence[FeedbagItem], now: int
) -> None:
    normalized = _existing(conn, screen_name)
    for item in items:
        check_feedbag_item(item)
    conn.executemany(
        "INSERT OR REPLACE INTO feedbag_items"
        " (normalized, group_id, item_id, class_id, name, attributes)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (normalized, item.group_id, item.item_id, item.class_id, item.name, item.attributes)
            for item in items
        ],
    )
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM feedbag_items WHERE normalized = ?", (normalized,)
    ).fetchone()
    if count > MAX_FEEDBAG_ITEMS:
        raise StoreError(f"a feedbag holds at most {MAX_FEEDBAG_ITEMS} items")
    _touch_feedbag(conn, normalized, now)


def _delete_feedbag_items(
    conn: sqlite3.Connection, screen_name: str, keys: Sequence[tuple[int, int]], now: int
) -> None:
    normalized = _existing(conn, screen_name)
    conn.executemany(
        "DELETE FROM feedbag_items WHERE normalized = ? AND group_id = ? AND item_id = ?",
        [(normalized, group_id, item_id) for group_id, item_id in keys],
    )
    _touch_feedbag(conn, normalized, now)


_MESSAGE_COLUMNS = "id, recipient, sender, cookie, channel, tlvs, sent_at"


def _offline_message(row: tuple[Any, ...]) -> OfflineMessage:
    message_id, recipient, sender, cookie, channel, tlvs, sent_at = row
    return OfflineMessage(
        message_id=message_id,
        recipient=recipient,
        sender=sender,
        cookie=bytes(cookie),
        channel=channel,
        tlvs=bytes(tlvs),
        sent_at=sent_at,
    )


def _store_offline_message(
    conn: sqlite3.Connection,
    recipient: str,
    sender: str,
    cookie: bytes,
    channel: int,
    tlvs: bytes,
    sent_at: int,
) -> OfflineMessage:
    normalized = _existing(conn, recipient)
    check_offline_message(sender, cookie, channel, tlvs, sent_at)
    sender_key = normalize(sender)
    # Counted and inserted in this one (write) transaction, so no other message
    # slips in between. Each query reads only the rows it counts, through an
    # index, and the caps keep those few: length() reads a BLOB's size from the
    # row header, not its bytes.
    inbox = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(length(tlvs)), 0) FROM offline_messages WHERE recipient = ?",
        (normalized,),
    ).fetchone()
    from_sender = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(length(tlvs)), 0) FROM offline_messages"
        " WHERE recipient = ? AND sender_key = ?",
        (normalized, sender_key),
    ).fetchone()
    check_offline_quota(recipient, sender, len(tlvs), inbox, from_sender)
    cursor = conn.execute(
        "INSERT INTO offline_messages"
        " (recipient, sender, sender_key, cookie, channel, tlvs, sent_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (normalized, sender, sender_key, cookie, channel, tlvs, sent_at),
    )
    message_id = cursor.lastrowid
    assert message_id is not None
    return OfflineMessage(
        message_id=message_id,
        recipient=normalized,
        sender=sender,
        cookie=cookie,
        channel=channel,
        tlvs=tlvs,
        sent_at=sent_at,
    )


def _count_offline_messages(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT recipient, COUNT(*) FROM offline_messages GROUP BY recipient")
    return {recipient: count for recipient, count in rows}


def _get_offline_messages(conn: sqlite3.Connection, recipient: str) -> list[OfflineMessage]:
    rows = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM offline_messages WHERE recipient = ? ORDER BY id",
        (normalize(recipient),),
    )
    return [_offline_message(row) for row in rows]


def _delete_offline_messages(conn: sqlite3.Connection, recipient: str, up_to_id: int) -> int:
    cursor = conn.execute(
        "DELETE FROM offline_messages WHERE recipient = ? AND id <= ?",
        (normalize(recipient), check_up_to_id(up_to_id)),
    )
    return cursor.rowcount


def _get_or_create_secret(conn: sqlite3.Connection, name: str, size: int) -> bytes:
    check_secret_request(name, size)
    conn.execute(
        "INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)",
        (name, secrets.token_bytes(size)),
    )
    (value,) = conn.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
    value = bytes(value)
    if len(value) != size:
        raise StoreError(f"secret {name!r} exists with {len(value)} bytes, not {size}")
    return value


# --- the store ---------------------------------------------------------------


@implementer(IUserStore)
class SQLiteUserStore:
    """
    :class:`IUserStore` over one SQLite file, every operation on one DB thread.

    Make it with :meth:`open`. The thread runs between :meth:`start` and
    :meth:`stop` (or :class:`StoreService`); calls made before :meth:`start`
    wait for it.
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        conn: sqlite3.Connection,
        clock: Any,
        run: _Runner,
        pool: ThreadPool | None,
    ) -> None:
        self.path = path
        self._conn = conn
        self._clock = clock
        self._run = run
        self._pool = pool
        self._closed = False

    @classmethod
    def open(cls, path: str, reactor: Any = None, *, run: _Runner | None = None) -> SQLiteUserStore:
        """
        Open (create, upgrade) the database synchronously: meant for start-up,
        before the reactor runs.

        :param reactor: supplies ``seconds()`` (for ``created_at``) and, unless
            ``run`` is given, the thread hand-off; the global reactor if ``None``.
        :param run: ``(f, *args) -> Deferred`` that runs ``f`` where the
            connection may be used. Default: a one-thread pool. Tests pass
            ``defer.maybeDeferred`` to run inline.
        :raises SchemaError: see :func:`connect`.
        """
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        conn = connect(path)
        pool = None
        if run is None:
            pool = ThreadPool(1, 1, name="aimserver-db")
            run = partial(deferToThreadPool, reactor, pool)
        cls.log.info("opened database {path}", path=path)
        return cls(path, conn, reactor, run, pool)

    def startup_secret(self, name: str, size: int) -> bytes:
        """
        :meth:`get_or_create_secret`, synchronously, for start-up code that
        needs the secret before the reactor runs (the cookie key).

        :raises StoreError: the DB thread is already running (it owns the
            connection then), or as :meth:`get_or_create_secret`.
        """
        if self._closed or (self._pool is not None and self._pool.started):
            raise StoreError("startup_secret() is only for before start()")
        return transact(self._conn, _get_or_create_secret, name, size)

    def start(self) -> None:
        """Start the DB thread (a no-op when an inline runner was given)."""
        if self._pool is not None and not self._pool.started:
            self._pool.start()

    def stop(self) -> Deferred[None]:
        """
        Refuse new calls, let the pending ones finish, close the connection,
        and stop the DB thread.

        :return: fires once the connection is closed. Calls made before
            :meth:`start` are dropped (never fire) if the thread never ran.
        """
        if self._closed:
            return defer.succeed(None)
        self._closed = True
        self.log.info("closing database {path}", path=self.path)
        pool = self._pool
        if pool is not None and not pool.started:
            self._conn.close()
            return defer.succeed(None)
        # Queued behind the pending work, on the thread that owns the connection.
        d = self._run(self._conn.close)
        if pool is not None:

            def stop_pool(result: object) -> object:
                pool.stop()
                return result

            d.addBoth(stop_pool)
        return d

    def _call(self, op: Callable[..., _T], *args: Any, write: bool = True) -> Deferred[_T]:
        if self._closed:
            return defer.fail(StoreError("the store is closed"))
        return self._run(partial(transact, write=write), self._conn, op, *args)

    def _now(self) -> int:
        return int(self._clock.seconds())

    def get_account(self, screen_name: str) -> Deferred[Account | None]:
        return self._call(_get_account, screen_name, write=False)

    def get_accounts(self, screen_names: Sequence[str]) -> Deferred[dict[str, Account]]:
        return self._call(_get_accounts, list(screen_names), write=False)

    def peek_account(self, screen_name: str) -> Account | None:
        return None

    def create_account(self, screen_name: str, password: str) -> Deferred[Account]:
        return self._call(_create_account, screen_name, password, self._now())

    def create_account_with_credentials(
        self, screen_name: str, credentials: Credentials
    ) -> Deferred[Account]:
        return self._call(_create_account_with_credentials, screen_name, credentials, self._now())

    def delete_account(self, screen_name: str) -> Deferred[bool]:
        return self._call(_delete_account, screen_name)

    def list_accounts(self) -> Deferred[list[Account]]:
        return self._call(_list_accounts, write=False)

    def set_password(self, screen_name: str, password: str) -> Deferred[bool]:
        return self._call(_set_password, screen_name, password)

    def set_suspended(self, screen_name: str, suspended: bool) -> Deferred[bool]:
        return self._call(_set_suspended, screen_name, suspended)

    def set_bot(self, screen_name: str, bot: bool) -> Deferred[bool]:
        return self._call(_set_bot, screen_name, bot)

    def set_warning(self, screen_name: str, level: int, at: int) -> Deferred[bool]:
        return self._call(_set_warning, screen_name, level, at)

    def get_feedbag(self, screen_name: str) -> Deferred[Feedbag]:
        return self._call(_get_feedbag, screen_name, write=False)

    def upsert_feedbag_items(
        self, screen_name: str, items: Sequence[FeedbagItem], now: int
    ) -> Deferred[None]:
        # Snapshot in the reactor thread: the caller may reuse its list.
        return self._call(_upsert_feedbag_items, screen_name, tuple(items), now)

    def delete_feedbag_items(
        self, screen_name: str, keys: Sequence[tuple[int, int]], now: int
    ) -> Deferred[None]:
        return self._call(_delete_feedbag_items, screen_name, tuple(keys), now)

    def store_offline_message(
        self, recipient: str, sender: str, cookie: bytes, channel: int, tlvs: bytes, sent_at: int
    ) -> Deferred[OfflineMessage]:
        return self._call(_store_offline_message, recipient, sender, cookie, channel, tlvs, sent_at)

    def count_offline_messages(self) -> Deferred[dict[str, int]]:
        return self._call(_count_offline_messages, write=False)

    def get_offline_messages(self, recipient: str) -> Deferred[list[OfflineMessage]]:
        return self._call(_get_offline_messages, recipient, write=False)

    def delete_offline_messages(self, recipient: str, up_to_id: int) -> Deferred[int]:
        return self._call(_delete_offline_messages, recipient, up_to_id)

    def get_or_create_secret(self, name: str, size: int) -> Deferred[bytes]:
        return self._call(_get_or_create_secret, name, size)


class StoreService(Service):
    """Runs a :class:`SQLiteUserStore`'s DB thread while the application runs."""

    def __init__(self, store: SQLiteUserStore) -> None:
        self.store = store

    def startService(self) -> None:
        super().startService()
        self.store.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.store.stop()
