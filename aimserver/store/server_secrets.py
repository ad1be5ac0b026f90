# -*- test-case-name: tests.test_store -*-
"""
:class:`~aimserver.store.interfaces.ISecretStore`, in memory and in SQLite:
server-wide random secrets that survive restarts (the cookie HMAC key).
"""

from __future__ import annotations

import secrets
import sqlite3

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from aimserver.store._base import MemoryBase, SQLiteBase, fired
from aimserver.store.interfaces import ISecretStore, StoreError, check_secret_request

__all__ = ["MemorySecretStore", "SQLiteSecretStore"]


def _check_size(name: str, value: bytes, size: int) -> bytes:
    if len(value) != size:
        raise StoreError(f"secret {name!r} exists with {len(value)} bytes, not {size}")
    return value


@implementer(ISecretStore)
class MemorySecretStore(MemoryBase):
    def __init__(self, clock: IReactorTime | None = None) -> None:
        super().__init__(clock)
        self._secrets: dict[str, bytes] = {}

    def get_or_create_secret(self, name: str, size: int) -> Deferred[bytes]:
        def get_or_create() -> bytes:
            check_secret_request(name, size)
            return _check_size(
                name, self._secrets.setdefault(name, secrets.token_bytes(size)), size
            )

        return fired(get_or_create)


def _get_or_create_secret(conn: sqlite3.Connection, name: str, size: int) -> bytes:
    check_secret_request(name, size)
    conn.execute(
        "INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)",
        (name, secrets.token_bytes(size)),
    )
    (value,) = conn.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
    return _check_size(name, bytes(value), size)


@implementer(ISecretStore)
class SQLiteSecretStore(SQLiteBase):
    """The ``secrets`` table."""

    def get_or_create_secret(self, name: str, size: int) -> Deferred[bytes]:
        return self._call(_get_or_create_secret, name, size)
