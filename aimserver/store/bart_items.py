# -*- test-case-name: tests.test_store_bart -*-
"""
:class:`~aimserver.store.interfaces.IBartStore`, in memory and in SQLite:
buddy icons kept once per MD5 of their data, and each account's
:data:`~aimserver.store.interfaces.MAX_BART_ITEMS_PER_ACCOUNT` latest uploads.

"Newest" is the order of the uploads (an upload of what the account already
owns moves it to the front), not ``now``: a clock stepping back cannot make
a fresh upload the oldest. In SQLite that order is the ``bart_owners`` rowid,
taken anew by each upload.

An item nobody owns is never read, and is removed as soon as that happens:
when an upload past the allowance drops it, or when the account that alone
owned it is deleted (``drop_owned_bart_items``, which the SQLite account
deletion runs; the memory store's ``_drop_user_data``).

Each item keeps the BART type of the upload that stored it. Listed by type,
the most recently stored item comes first: the order the items were stored
in, which an upload of what is already stored leaves alone (in SQLite, the
``bart_items`` rowid; in memory, the order of the items' dictionary).
"""

from __future__ import annotations

import hashlib
import sqlite3
from itertools import islice

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from aimserver.store._base import MemoryBase, SQLiteBase, existing_account, fired
from aimserver.store.interfaces import (
    MAX_BART_ITEMS_PER_ACCOUNT,
    IBartStore,
    check_bart_hash,
    check_bart_item,
    check_bart_type,
    check_search_limit,
)
from aimserver.wire.bart import TYPE_BUDDY_ICON
from aimserver.wire.screenname import normalize

__all__ = ["MemoryBartStore", "SQLiteBartStore", "bart_hash", "drop_owned_bart_items"]


def bart_hash(data: bytes) -> bytes:
    """The key of an item: the MD5 of its data, as clients compute it (not for security)."""
    return hashlib.md5(data, usedforsecurity=False).digest()


@attrs.frozen
class _Item:
    """A stored item: its type is that of the upload that stored it."""

    bart_type: int
    data: bytes


@implementer(IBartStore)
class MemoryBartStore(MemoryBase):
    def __init__(self, clock: IReactorTime | None = None) -> None:
        super().__init__(clock)
        #: Hash -> item, in the order they were stored.
        self._bart_items: dict[bytes, _Item] = {}
        #: Normalized name -> the hashes it owns, oldest upload first.
        self._bart_owners: dict[str, dict[bytes, None]] = {}

    def _drop_user_data(self, normalized: str) -> None:
        for digest in self._bart_owners.pop(normalized, {}):
            self._forget_unowned(digest)
        super()._drop_user_data(normalized)

    def _forget_unowned(self, digest: bytes) -> None:
        if not any(digest in owned for owned in self._bart_owners.values()):
            self._bart_items.pop(digest, None)

    def add_bart_item(
        self, screen_name: str, data: bytes, now: int, bart_type: int = TYPE_BUDDY_ICON
    ) -> Deferred[bytes]:
        def add() -> bytes:
            normalized = self._existing(screen_name)
            check_bart_item(data)
            check_bart_type(bart_type)
            digest = bart_hash(data)
            self._bart_items.setdefault(digest, _Item(bart_type, data))
            owned = self._bart_owners.setdefault(normalized, {})
            owned.pop(digest, None)
            owned[digest] = None
            while len(owned) > MAX_BART_ITEMS_PER_ACCOUNT:
                oldest = next(iter(owned))
                del owned[oldest]
                self._forget_unowned(oldest)
            return digest

        return fired(add)

    def get_bart_item(self, digest: bytes) -> Deferred[bytes | None]:
        def get() -> bytes | None:
            check_bart_hash(digest)
            item = self._bart_items.get(digest)
            return None if item is None else item.data

        return fired(get)

    def has_bart_item(self, digest: bytes) -> Deferred[bool]:
        def has() -> bool:
            check_bart_hash(digest)
            return digest in self._bart_items

        return fired(has)

    def list_bart_items(self, screen_name: str) -> Deferred[list[bytes]]:
        owned = self._bart_owners.get(normalize(screen_name), {})
        return defer.succeed(list(reversed(owned)))

    def list_bart_items_by_type(self, bart_type: int, limit: int) -> Deferred[list[bytes]]:
        def list_by_type() -> list[bytes]:
            check_bart_type(bart_type)
            check_search_limit(limit)
            newest_first = reversed(self._bart_items.items())
            return list(
                islice((h for h, item in newest_first if item.bart_type == bart_type), limit)
            )

        return fired(list_by_type)


# --- SQLite operations --------------------------------------------------------

_OWNED = "EXISTS (SELECT 1 FROM bart_owners AS o WHERE o.hash = bart_items.hash)"


def _add_bart_item(
    conn: sqlite3.Connection, screen_name: str, data: bytes, now: int, bart_type: int
) -> bytes:
    normalized = existing_account(conn, screen_name)
    check_bart_item(data)
    check_bart_type(bart_type)
    digest = bart_hash(data)
    # An item already stored keeps its type and its place (rowid).
    conn.execute(
        "INSERT INTO bart_items (hash, data, created_at, bart_type) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (hash) DO NOTHING",
        (digest, data, now, bart_type),
    )
    # Deleted and inserted again, so that its rowid makes it the newest.
    conn.execute("DELETE FROM bart_owners WHERE normalized = ? AND hash = ?", (normalized, digest))
    conn.execute(
        "INSERT INTO bart_owners (normalized, hash, uploaded_at) VALUES (?, ?, ?)",
        (normalized, digest, now),
    )
    dropped = [
        bytes(row[0])
        for row in conn.execute(
            "SELECT hash FROM bart_owners WHERE normalized = ?"
            " ORDER BY rowid DESC LIMIT -1 OFFSET ?",
            (normalized, MAX_BART_ITEMS_PER_ACCOUNT),
        )
    ]
    if dropped:
        conn.executemany(
            "DELETE FROM bart_owners WHERE normalized = ? AND hash = ?",
            [(normalized, h) for h in dropped],
        )
        conn.executemany(
            f"DELETE FROM bart_items WHERE hash = ? AND NOT {_OWNED}",
            [(h,) for h in dropped],
        )
    return digest


def drop_owned_bart_items(conn: sqlite3.Connection, normalized: str) -> None:
    """Before the account ``normalized`` is deleted: remove the items it
    alone owns (their ownerships go with them, by cascade); its ownerships
    of shared ones go with the account."""
    conn.execute(
        "DELETE FROM bart_items WHERE hash IN"
        " (SELECT hash FROM bart_owners WHERE normalized = ?1)"
        " AND NOT EXISTS (SELECT 1 FROM bart_owners AS o"
        " WHERE o.hash = bart_items.hash AND o.normalized <> ?1)",
        (normalized,),
    )


def _get_bart_item(conn: sqlite3.Connection, digest: bytes) -> bytes | None:
    check_bart_hash(digest)
    row = conn.execute(
        f"SELECT data FROM bart_items WHERE hash = ? AND {_OWNED}", (digest,)
    ).fetchone()
    return None if row is None else bytes(row[0])


def _has_bart_item(conn: sqlite3.Connection, digest: bytes) -> bool:
    check_bart_hash(digest)
    row = conn.execute(f"SELECT 1 FROM bart_items WHERE hash = ? AND {_OWNED}", (digest,))
    return row.fetchone() is not None


def _list_bart_items(conn: sqlite3.Connection, screen_name: str) -> list[bytes]:
    rows = conn.execute(
        "SELECT hash FROM bart_owners WHERE normalized = ? ORDER BY rowid DESC",
        (normalize(screen_name),),
    )
    return [bytes(digest) for (digest,) in rows]


def _list_bart_items_by_type(conn: sqlite3.Connection, bart_type: int, limit: int) -> list[bytes]:
    check_bart_type(bart_type)
    check_search_limit(limit)
    # Read through bart_items_by_type, whose entries end with the rowid: no sort.
    rows = conn.execute(
        f"SELECT hash FROM bart_items WHERE bart_type = ? AND {_OWNED} ORDER BY rowid DESC LIMIT ?",
        (bart_type, limit),
    )
    return [bytes(digest) for (digest,) in rows]


@implementer(IBartStore)
class SQLiteBartStore(SQLiteBase):
    """The ``bart_items`` and ``bart_owners`` tables."""

    def add_bart_item(
        self, screen_name: str, data: bytes, now: int, bart_type: int = TYPE_BUDDY_ICON
    ) -> Deferred[bytes]:
        return self._call(_add_bart_item, screen_name, data, now, bart_type)

    def get_bart_item(self, digest: bytes) -> Deferred[bytes | None]:
        return self._call(_get_bart_item, digest, write=False)

    def has_bart_item(self, digest: bytes) -> Deferred[bool]:
        return self._call(_has_bart_item, digest, write=False)

    def list_bart_items(self, screen_name: str) -> Deferred[list[bytes]]:
        return self._call(_list_bart_items, screen_name, write=False)

    def list_bart_items_by_type(self, bart_type: int, limit: int) -> Deferred[list[bytes]]:
        return self._call(_list_bart_items_by_type, bart_type, limit, write=False)
