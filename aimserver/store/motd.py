# -*- test-case-name: tests.test_store_motd -*-
"""
:class:`~aimserver.store.interfaces.IMotdStore`, in memory and in SQLite:
the digest of the MOTD each user was last shown (``motd_seen``, one row per
account, gone with it).
"""

from __future__ import annotations

import sqlite3

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from aimserver.store._base import MemoryBase, SQLiteBase, fired
from aimserver.store.interfaces import IMotdStore, check_motd_digest
from aimserver.wire.screenname import normalize

__all__ = ["MemoryMotdStore", "SQLiteMotdStore"]


@implementer(IMotdStore)
class MemoryMotdStore(MemoryBase):
    def __init__(self, clock: IReactorTime | None = None) -> None:
        super().__init__(clock)
        #: Normalized name -> the digest of the MOTD it was last shown.
        self._motd_seen: dict[str, str] = {}

    def get_motd_seen(self, screen_name: str) -> Deferred[str | None]:
        return fired(lambda: self._motd_seen.get(normalize(screen_name)))

    def set_motd_seen(self, screen_name: str, digest: str) -> Deferred[bool]:
        def record() -> bool:
            check_motd_digest(digest)
            key = normalize(screen_name)
            if key not in self._accounts:
                return False
            self._motd_seen[key] = digest
            return True

        return fired(record)

    def _drop_user_data(self, normalized: str) -> None:
        self._motd_seen.pop(normalized, None)
        super()._drop_user_data(normalized)


def _get_motd_seen(conn: sqlite3.Connection, screen_name: str) -> str | None:
    row = conn.execute(
        "SELECT digest FROM motd_seen WHERE normalized = ?", (normalize(screen_name),)
    ).fetchone()
    return None if row is None else row[0]


def _set_motd_seen(conn: sqlite3.Connection, screen_name: str, digest: str) -> bool:
    check_motd_digest(digest)
    key = normalize(screen_name)
    if conn.execute("SELECT 1 FROM accounts WHERE normalized = ?", (key,)).fetchone() is None:
        return False
    conn.execute(
        "INSERT INTO motd_seen (normalized, digest) VALUES (?, ?)"
        " ON CONFLICT (normalized) DO UPDATE SET digest = excluded.digest",
        (key, digest),
    )
    return True


@implementer(IMotdStore)
class SQLiteMotdStore(SQLiteBase):
    """The ``motd_seen`` table."""

    def get_motd_seen(self, screen_name: str) -> Deferred[str | None]:
        return self._call(_get_motd_seen, screen_name, write=False)

    def set_motd_seen(self, screen_name: str, digest: str) -> Deferred[bool]:
        return self._call(_set_motd_seen, screen_name, digest)
