# -*- test-case-name: tests.test_store_history -*-
"""
:class:`~aimserver.store.interfaces.IHistoryStore`, in memory and in SQLite:
each account's conversation history (``history``, rows gone with the
account), so that every device shows the same conversation.

An entry's id is what SQLite gives an ``INTEGER PRIMARY KEY``: one more than
the highest id in the table (1 in an empty one). Pruning never removes the
entry just recorded, so only :meth:`clear_history` and a deleted account can
remove the highest id, and then the next entry may take it again. The memory
store hands out ids the same way, so that both stores answer alike.

A peer is compared by its normalized name, which the table does not keep: a
read by peer walks the owner's entries newest first (through the index on
``(normalized, id)``) and stops at the ``limit``-th match. An owner's history
is as long as the caller's pruning lets it grow.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from aimserver.store._base import MemoryBase, SQLiteBase, existing_account, fired
from aimserver.store.interfaces import (
    HistoryEntry,
    IHistoryStore,
    StoreError,
    check_history_entry,
    check_history_pruning,
    check_history_query,
)
from aimserver.wire.screenname import normalize

__all__ = ["MemoryHistoryStore", "SQLiteHistoryStore"]


@implementer(IHistoryStore)
class MemoryHistoryStore(MemoryBase):
    def __init__(self, clock: IReactorTime | None = None) -> None:
        super().__init__(clock)
        #: Normalized owner -> its entries, oldest (lowest id) first; never empty.
        self._history: dict[str, list[HistoryEntry]] = {}
        #: The highest id any entry has (0 for none): the next one follows it.
        self._last_history_id = 0

    def _drop_user_data(self, normalized: str) -> None:
        if self._history.pop(normalized, None):
            self._history_removed()
        super()._drop_user_data(normalized)

    def _history_removed(self) -> None:
        """Whole histories are gone: the next id follows the highest left, as
        in SQLite (each list ends with its highest id)."""
        self._last_history_id = max(
            (entries[-1].id for entries in self._history.values()), default=0
        )

    def add_history(
        self,
        owner: str,
        peer: str,
        outgoing: bool,
        text: str,
        at: int,
        limit: int,
        keep_seconds: int,
    ) -> Deferred[None]:
        def add() -> None:
            check_history_entry(peer, outgoing, text, at, limit, keep_seconds)
            normalized = self._existing(owner)
            self._last_history_id += 1
            entry = HistoryEntry(peer, outgoing, text, at, self._last_history_id)
            entries = [*self._history.get(normalized, ()), entry]
            cutoff = at - keep_seconds
            # The new entry is the newest and not too old: the list stays non-empty.
            self._history[normalized] = [e for e in entries[-limit:] if e.at >= cutoff]

        return fired(add)

    def add_history_many(
        self, entries: Sequence[tuple[str, str, bool, str, int]], limit: int, keep_seconds: int
    ) -> Deferred[int]:
        def add_many() -> int:
            check_history_pruning(limit, keep_seconds)
            last_at: dict[str, int] = {}
            added = 0
            for owner, peer, outgoing, text, at in entries:
                try:
                    check_history_entry(peer, outgoing, text, at, limit, keep_seconds)
                    normalized = self._existing(owner)
                except StoreError:
                    continue
                self._last_history_id += 1
                entry = HistoryEntry(peer, outgoing, text, at, self._last_history_id)
                self._history.setdefault(normalized, []).append(entry)
                last_at[normalized] = at
                added += 1
            for normalized, at in last_at.items():
                cutoff = at - keep_seconds
                kept = self._history[normalized][-limit:]
                newest = kept[-1]
                self._history[normalized] = [e for e in kept[:-1] if e.at >= cutoff] + [newest]
            return added

        return fired(add_many)

    def recent_history(
        self, owner: str, peer: str | None, limit: int
    ) -> Deferred[list[HistoryEntry]]:
        def recent() -> list[HistoryEntry]:
            key = check_history_query(peer, limit)
            entries = self._history.get(normalize(owner), [])
            if key is not None:
                entries = [e for e in entries if normalize(e.peer) == key]
            return entries[-limit:]

        return fired(recent)

    def clear_history(self, owner: str) -> Deferred[int]:
        entries = self._history.pop(normalize(owner), [])
        if entries:
            self._history_removed()
        return defer.succeed(len(entries))


# --- SQLite operations --------------------------------------------------------


def _history_entry(row: tuple[Any, ...]) -> HistoryEntry:
    """An entry from a row of ``peer, outgoing, text, at, id``."""
    peer, outgoing, text, at, entry_id = row
    return HistoryEntry(peer, bool(outgoing), text, at, entry_id)


def _add_history(
    conn: sqlite3.Connection,
    owner: str,
    peer: str,
    outgoing: bool,
    text: str,
    at: int,
    limit: int,
    keep_seconds: int,
) -> None:
    check_history_entry(peer, outgoing, text, at, limit, keep_seconds)
    normalized = existing_account(conn, owner)
    cursor = conn.execute(
        "INSERT INTO history (normalized, peer, outgoing, text, at) VALUES (?, ?, ?, ?, ?)",
        (normalized, peer, int(outgoing), text, at),
    )
    _prune(conn, normalized, at - keep_seconds, limit, keep=cursor.lastrowid or 0)


def _add_history_many(
    conn: sqlite3.Connection,
    entries: Sequence[tuple[str, str, bool, str, int]],
    limit: int,
    keep_seconds: int,
) -> int:
    check_history_pruning(limit, keep_seconds)
    last: dict[str, tuple[int, int]] = {}
    added = 0
    for owner, peer, outgoing, text, at in entries:
        try:
            check_history_entry(peer, outgoing, text, at, limit, keep_seconds)
            normalized = existing_account(conn, owner)
        except StoreError:
            continue
        cursor = conn.execute(
            "INSERT INTO history (normalized, peer, outgoing, text, at) VALUES (?, ?, ?, ?, ?)",
            (normalized, peer, int(outgoing), text, at),
        )
        last[normalized] = (at, cursor.lastrowid or 0)
        added += 1
    for normalized, (at, newest) in last.items():
        _prune(conn, normalized, at - keep_seconds, limit, keep=newest)
    return added


def _prune(conn: sqlite3.Connection, normalized: str, cutoff: int, limit: int, keep: int) -> None:
    """Past the limit: every id up to that of the (limit + 1)-th newest (none
    if there are fewer: the comparison with NULL holds for no row). Too old:
    any row but ``keep`` (the newest), whatever its place. Two statements,
    each through its index: one with OR would read every entry of the owner."""
    conn.execute(
        "DELETE FROM history WHERE normalized = ?1 AND id <= ("
        "SELECT id FROM history WHERE normalized = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        (normalized, limit),
    )
    conn.execute(
        "DELETE FROM history WHERE normalized = ? AND at < ? AND id <> ?",
        (normalized, cutoff, keep),
    )


def _recent_history(
    conn: sqlite3.Connection, owner: str, peer: str | None, limit: int
) -> list[HistoryEntry]:
    key = check_history_query(peer, limit)
    query = "SELECT peer, outgoing, text, at, id FROM history WHERE normalized = ? ORDER BY id DESC"
    if key is None:
        rows = conn.execute(query + " LIMIT ?", (normalize(owner), limit)).fetchall()
    else:
        cursor = conn.execute(query, (normalize(owner),))
        rows = []
        try:
            for row in cursor:
                if normalize(row[0]) == key:
                    rows.append(row)
                    if len(rows) == limit:
                        break
        finally:
            cursor.close()
    return [_history_entry(row) for row in reversed(rows)]


def _clear_history(conn: sqlite3.Connection, owner: str) -> int:
    cursor = conn.execute("DELETE FROM history WHERE normalized = ?", (normalize(owner),))
    return cursor.rowcount


@implementer(IHistoryStore)
class SQLiteHistoryStore(SQLiteBase):
    """The ``history`` table."""

    def add_history(
        self,
        owner: str,
        peer: str,
        outgoing: bool,
        text: str,
        at: int,
        limit: int,
        keep_seconds: int,
    ) -> Deferred[None]:
        return self._call(_add_history, owner, peer, outgoing, text, at, limit, keep_seconds)

    def add_history_many(
        self, entries: Sequence[tuple[str, str, bool, str, int]], limit: int, keep_seconds: int
    ) -> Deferred[int]:
        return self._call(_add_history_many, list(entries), limit, keep_seconds)

    def recent_history(
        self, owner: str, peer: str | None, limit: int
    ) -> Deferred[list[HistoryEntry]]:
        return self._call(_recent_history, owner, peer, limit, write=False)

    def clear_history(self, owner: str) -> Deferred[int]:
        return self._call(_clear_history, owner)
