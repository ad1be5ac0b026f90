# -*- test-case-name: tests.test_store -*-
"""
:class:`~aimserver.store.interfaces.IWarningStore`, in memory and in SQLite.

A role of its own because one consumer (the warning service) writes it and
needs nothing else; the level itself is two fields of the account record
(``accounts.warning_level``, ``accounts.warning_updated_at``), read back
with the account.
"""

from __future__ import annotations

import sqlite3

from twisted.internet.defer import Deferred
from zope.interface import implementer

from aimserver.store._base import MemoryBase, SQLiteBase, fired
from aimserver.store.interfaces import IWarningStore, check_warning
from aimserver.wire.screenname import normalize

__all__ = ["MemoryWarningStore", "SQLiteWarningStore"]


@implementer(IWarningStore)
class MemoryWarningStore(MemoryBase):
    def set_warning(self, screen_name: str, level: int, at: int) -> Deferred[bool]:
        def change() -> bool:
            kept = check_warning(level, at)
            return self._replace(screen_name, warning_level=kept, warning_updated_at=at)

        return fired(change)


def _set_warning(conn: sqlite3.Connection, screen_name: str, level: int, at: int) -> bool:
    level = check_warning(level, at)
    cursor = conn.execute(
        "UPDATE accounts SET warning_level = ?, warning_updated_at = ? WHERE normalized = ?",
        (level, at, normalize(screen_name)),
    )
    return cursor.rowcount > 0


@implementer(IWarningStore)
class SQLiteWarningStore(SQLiteBase):
    def set_warning(self, screen_name: str, level: int, at: int) -> Deferred[bool]:
        return self._call(_set_warning, screen_name, level, at)
