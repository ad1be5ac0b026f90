# -*- test-case-name: tests.test_store -*-
"""
The embedded default :class:`~aimserver.store.interfaces.IUserStore`: one
SQLite file. This module is its core (schema, migrations, connections,
transactions, the DB thread) and the store made of one mixin per role; each
role's mixin and operations live in the role's module
(:mod:`~aimserver.store.accounts`, ...).

The work is done by module-level synchronous ``_op(conn, ...)`` functions,
one per public method, each run inside :func:`transact`. The server runs them
on one dedicated DB thread, through one connection, whatever the role
(sqlite3 connections must not be shared between threads, and SQLite must
never block the reactor); the ``aimserver user`` CLI calls the very same
functions on its own connection. Both can use the file at once: it is in WAL
mode and writers wait up to :data:`BUSY_TIMEOUT` seconds.

Schema files live in ``schema/``: ``v<N>.sql`` creates version N from
nothing, ``upgrade-to-v<N>.sql`` goes from N-1 to N. :func:`connect` creates,
upgrades (after a backup) or refuses a database.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
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

from aimserver.store.accounts import SQLiteAccountStore
from aimserver.store.bart_items import SQLiteBartStore
from aimserver.store.chat_rooms import SQLiteChatRoomStore
from aimserver.store.directory import SQLiteDirectoryStore
from aimserver.store.feedbags import SQLiteFeedbagStore
from aimserver.store.group_commit import GroupCommitter, run_batch
from aimserver.store.history import SQLiteHistoryStore
from aimserver.store.interfaces import IUserStore, StoreError
from aimserver.store.motd import SQLiteMotdStore
from aimserver.store.offline_messages import SQLiteOfflineMessageStore
from aimserver.store.server_secrets import SQLiteSecretStore, _get_or_create_secret
from aimserver.store.warning_levels import SQLiteWarningStore

__all__ = [
    "BUSY_TIMEOUT",
    "SCHEMA_VERSION",
    "SQLiteUserStore",
    "SchemaError",
    "StoreService",
    "check_writable",
    "connect",
    "transact",
]

SCHEMA_VERSION = 17
"""The schema version this code reads and writes."""

BUSY_TIMEOUT = 5.0
"""Seconds a connection waits for another process's write lock."""

START_ROOM = 4 * 1024 * 1024
"""Bytes the server must be able to write next to its database to start: a
write-ahead log as long as it grows before SQLite checkpoints it (1,000
pages of 4 KiB)."""

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


def check_writable(path: str, room: int = START_ROOM) -> None:
    """
    Refuse, before SQLite opens it, a database the server could read but not
    write. SQLite would open it, and then fail each write as it comes, long
    after start-up (a failed open also leaves -wal and -shm files behind).
    Leaves nothing: the file is opened for writing and closed, and the room
    is tried with a scratch file beside it, removed at once.

    :raises SchemaError: the file may not be written (its mode, a read-only
        mount), its directory may not be written (SQLite keeps its log
        there), or ``room`` bytes do not fit beside it (a full disk, a
        file-size limit).
    """
    if path == ":memory:":
        return
    if os.path.exists(path):
        try:
            os.close(os.open(path, os.O_RDWR))
        except OSError as e:
            raise SchemaError(f"cannot write to database {path}: {e.strerror}") from e
    directory = os.path.dirname(path) or "."
    try:
        fd, scratch = tempfile.mkstemp(
            prefix=os.path.basename(path) + ".", suffix=".room", dir=directory
        )
    except OSError as e:
        raise SchemaError(f"cannot write to database {path}: {directory}: {e.strerror}") from e
    try:
        chunk = bytes(64 * 1024)
        written = 0
        while written < room:
            # A short write is followed by one that fails (ENOSPC, EFBIG).
            written += os.write(fd, chunk[: room - written])
        os.fsync(fd)
    except OSError as e:
        raise SchemaError(
            f"no room to write database {path}: {e.strerror} (the disk is full,"
            " or a file-size limit applies)"
        ) from e
    finally:
        os.close(fd)
        os.unlink(scratch)


def _check_intact(conn: sqlite3.Connection, path: str) -> None:
    """
    Read every page once (``PRAGMA quick_check``, about 2 ms a megabyte), so
    that a database damaged where opening it does not look is refused now,
    not when a sign-on or an IM reads that page hours later.

    :raises SchemaError: the file is not a database, or is damaged.
    """
    try:
        rows = conn.execute("PRAGMA quick_check(1)").fetchall()
    except sqlite3.DatabaseError as e:
        raise SchemaError(f"not an aimserver database ({e})") from e
    if rows != [("ok",)]:
        found = " ".join(str(rows[0][0]).split())
        raise SchemaError(
            f"{path} is corrupt (database disk image is malformed: {found}): restore a backup"
        )


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


def connect(path: str, *, create: bool = True, check_intact: bool = True) -> sqlite3.Connection:
    """
    Open the database at ``path`` ready for the ``_op`` functions: created at
    the latest schema if missing (and ``create`` is true), upgraded one
    version at a time after a backup if older, refused if newer. Blocks: call
    it at start-up or from the CLI, never from a running reactor.

    ``":memory:"`` gives a private in-memory database.

    ``check_intact``: read every page first (``PRAGMA quick_check``, about
    2 ms a megabyte) and refuse a damaged file. The server's start-up does,
    so that damage is found then and not when a sign-on reads that page
    hours later; the admin CLI, run again and again against a live file,
    does not (on a file of gigabytes it would take seconds a command), and
    meets damage where SQLite does, as an error of the command.

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
        if check_intact:
            _check_intact(conn, path)
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
    back if it raises (the server's batches and this share
    :func:`~aimserver.store.group_commit.run_batch`). A write transaction
    takes the write lock up front (``BEGIN IMMEDIATE``), so waiting for
    another writer uses the busy timeout instead of failing halfway. sqlite3
    errors come out as :class:`StoreError`.
    """
    ((ok, value),) = run_batch(conn, [(op, args, write)])
    if not ok:
        value.raiseException()
    return value  # type: ignore[no-any-return]


# --- the store ---------------------------------------------------------------


@implementer(IUserStore)
class SQLiteUserStore(
    SQLiteAccountStore,
    SQLiteWarningStore,
    SQLiteFeedbagStore,
    SQLiteOfflineMessageStore,
    SQLiteSecretStore,
    SQLiteDirectoryStore,
    SQLiteBartStore,
    SQLiteChatRoomStore,
    SQLiteMotdStore,
    SQLiteHistoryStore,
):
    """
    :class:`IUserStore` over one SQLite file, every operation of every role
    through one connection on one DB thread (:meth:`_call`).

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
        # On the DB thread, a turn's operations start together at its end;
        # an inline runner (tests) runs each at once.
        schedule = None if pool is None else (lambda f: clock.callLater(0, f))
        #: Every operation goes through it: one transaction per batch.
        self.committer = GroupCommitter(run, conn, schedule)

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
        # After the queued work, on the thread that owns the connection.
        d = self.committer.idle().addCallback(lambda _: self._run(self._conn.close))
        if pool is not None:

            def stop_pool(result: object) -> object:
                pool.stop()
                return result

            d.addBoth(stop_pool)
        return d

    def _call(self, op: Callable[..., _T], *args: Any, write: bool = True) -> Deferred[_T]:
        if self._closed:
            return defer.fail(StoreError("the store is closed"))
        return self.committer.submit(op, *args, write=write)

    def _now(self) -> int:
        return int(self._clock.seconds())

    def latency(self) -> float:
        """The slowest of the latest batches of store calls, in seconds
        (queued to answered on the DB thread, commit included)."""
        return max(self.committer.recent_seconds, default=0.0)

    def outside_writes(self) -> Deferred[int]:
        """A number that changes when another process (the admin CLI) has
        committed to the database since the last call (SQLite's
        ``data_version``; this store's own writes leave it alone)."""
        return self._call(_data_version, write=False)


def _data_version(conn: sqlite3.Connection) -> int:
    (version,) = conn.execute("PRAGMA data_version").fetchone()
    return int(version)


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
