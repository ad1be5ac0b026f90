# -*- test-case-name: tests.test_store_history -*-
"""
:class:`~aimserver.store.interfaces.IHistoryStore`, in memory and in SQLite:
each account's conversation history (gone with the account), so that every
device shows the same conversation.

SQLite keeps an account's entries in chunks (``history_chunks``): a row holds
up to :data:`CHUNK_ENTRIES` entries of one owner as a JSON array of ``[id,
peer, outgoing, text, at]``, oldest first, and beside it what the pruning
needs (``count``, ``oldest_at``, ``newest_at``; ``last_id`` for the next
id), which an index covers. Why: the browser client records two entries per
IM, in batches, and a row per entry (a b-tree insert, two TEXT-keyed index
inserts, a foreign key check and pruning deletes for each) cost more CPU
than the rest of the IM. Now a batch costs a few statements in all, about one
row write per owner (an INSERT, or an append to its small newest chunk) and,
once that owner's history is full, the rewrite of the one chunk the pruning
cuts into and the DELETE of those it passes. The pruning decides from the
covered columns: the write path decodes no entry but those of a chunk it
cuts.

An entry's id is one more than the highest id held, over every account (1
when there is none), as SQLite gives an ``INTEGER PRIMARY KEY``: the ids of a
batch follow its order, whoever the owner, so a chunk's ids need not be
contiguous. Pruning never removes the entry just recorded, so only
:meth:`clear_history` and a deleted account can remove the highest id, and
then the next entry may take it again. The memory store hands out ids the
same way, so that both stores answer alike.

A peer is compared by its normalized name, which the chunks do not keep: a
read by peer decodes the owner's chunks newest first and stops once it has
``limit`` matches. An owner's history is as long as the caller's pruning
lets it grow.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import attrs
import orjson
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from aimserver.store._base import MemoryBase, SQLiteBase, existing_account, fired
from aimserver.store.interfaces import (
    MAX_HISTORY_PEER_BYTES,
    MAX_HISTORY_TEXT_BYTES,
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

CHUNK_ENTRIES = 64
"""The most entries a chunk holds: a batch brings an owner's new entries in
chunks of at most this many (and the v14 migration cut the v13 entries into
chunks of 64). A chunk the pruning cuts into costs a rewrite of up to this
many entries, spread over the entries that made it."""

APPEND_ENTRIES = 16
"""New entries are appended to the owner's newest chunk only if it then
holds at most this many (and at most :data:`CHUNK_ENTRIES`); otherwise they
start chunks of their own. An append rewrites the chunk, so an owner who gets
an entry or two per batch keeps small chunks (one IM must not rewrite
kilobytes), while a busy owner's batch is one INSERT."""

#: An entry as a chunk keeps it, in its JSON array: ``[id, peer, outgoing
#: (0 or 1), text, at]``.
_Entry = list[Any]
_ID, _PEER, _OUTGOING, _TEXT, _AT = range(5)

#: What the pruning knows of a chunk without reading its entries:
#: ``(id, count, oldest_at, newest_at)``.
_Chunk = tuple[int, int, int, int]

#: The latest time :func:`check_history_entry` takes (SQLite's INTEGER).
_AT_MAX = 2**63 - 1


class _Summary(NamedTuple):
    """An owner's history, as far as recording needs to know it first."""

    total: int
    """How many entries it holds."""
    oldest_at: int
    """The oldest ``at`` among them."""
    newest_id: int
    """Its newest chunk..."""
    newest_count: int
    """... and how many entries that holds."""


@attrs.define
class _Plan:
    """What recording an owner's new entries does to its chunks."""

    new: list[_Entry]
    """The new entries that stay (the pruning may take some at once), oldest
    first."""
    drop: list[int] = attrs.Factory(list)
    """Chunks to delete: wholly past the limit, or wholly too old."""
    cut: list[tuple[int, int, int]] = attrs.Factory(list)
    """Chunks to rewrite, as ``(id, within, cutoff)``: keeping the ``within``
    newest of their entries, less those whose ``at`` is before ``cutoff``."""
    append_to: int | None = None
    """The newest chunk, if :attr:`new` is to be appended to it."""


def _history_entry(entry: _Entry) -> HistoryEntry:
    entry_id, peer, outgoing, text, at = entry
    return HistoryEntry(peer, bool(outgoing), text, at, entry_id)


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


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
    entry = [_next_id(conn), peer, int(outgoing), text, at]
    _record(conn, {normalized: [entry]}, limit, keep_seconds)


def _add_history_many(
    conn: sqlite3.Connection,
    entries: Sequence[tuple[str, str, bool, str, int]],
    limit: int,
    keep_seconds: int,
) -> int:
    check_history_pruning(limit, keep_seconds)
    by_owner = _new_entries(conn, entries, limit, keep_seconds)
    _record(conn, by_owner, limit, keep_seconds)
    return sum(len(new) for new in by_owner.values())


def _next_id(conn: sqlite3.Connection) -> int:
    """One more than the highest entry id held (1 for none), through the
    index on ``last_id``."""
    (highest,) = conn.execute("SELECT max(last_id) FROM history_chunks").fetchone()
    return (highest or 0) + 1


def _new_entries(
    conn: sqlite3.Connection,
    entries: Sequence[tuple[str, str, bool, str, int]],
    limit: int,
    keep_seconds: int,
) -> dict[str, list[_Entry]]:
    """
    The batch's entries that can be recorded, by normalized owner, each with
    its id: the ids follow the highest held, in batch order (whoever the
    owner). An entry out of bounds or of no account is skipped; whether an
    owner exists is asked once per spelling.
    """
    next_id = _next_id(conn)
    by_owner: dict[str, list[_Entry]] = {}
    #: Owner as given -> its list in ``by_owner``, or None if no such account.
    lists: dict[str, list[_Entry] | None] = {}
    for owner, peer, outgoing, text, at in entries:
        if not _plain(peer, outgoing, text, at):
            try:
                check_history_entry(peer, outgoing, text, at, limit, keep_seconds)
            except StoreError:
                continue
        if owner in lists:
            found = lists[owner]
        else:
            found = lists[owner] = _owner_list(conn, owner, by_owner)
        if found is not None:
            found.append([next_id, peer, 1 if outgoing else 0, text, at])
            next_id += 1
    return by_owner


def _plain(peer: object, outgoing: object, text: object, at: object) -> bool:
    """
    Whether :func:`check_history_entry` surely takes this entry, found
    without calling it (a batch checks thousands): a peer and text of type
    str in ASCII (their UTF-8 sizes are their lengths) within the sizes, a
    bool direction, a time of type int within bounds. ``False`` says nothing:
    the entry then gets the full check.
    """
    return (
        type(peer) is str
        and type(text) is str
        and type(outgoing) is bool
        and type(at) is int
        and peer.isascii()
        and text.isascii()
        and 0 < len(peer) <= MAX_HISTORY_PEER_BYTES
        and len(text) <= MAX_HISTORY_TEXT_BYTES
        and 0 <= at <= _AT_MAX
    )


def _owner_list(
    conn: sqlite3.Connection, owner: str, by_owner: dict[str, list[_Entry]]
) -> list[_Entry] | None:
    """The list in ``by_owner`` of account ``owner`` (a new one if it has
    none yet), or ``None`` if there is no such account."""
    try:
        normalized = existing_account(conn, owner)
    except StoreError:
        return None
    return by_owner.setdefault(normalized, [])


def _record(
    conn: sqlite3.Connection, by_owner: dict[str, list[_Entry]], limit: int, keep_seconds: int
) -> None:
    """
    Add each owner's new entries (oldest first, not empty), then prune its
    history once, by the age of the last of them (which always stays). A
    few statements for the whole batch, each carrying every owner's rows,
    and one per owner whose history is to be pruned (which reads the few
    chunks that are).
    """
    if not by_owner:
        return
    summaries = _summaries(conn, list(by_owner))
    plans = [
        (normalized, _plan(conn, normalized, new, summaries.get(normalized), limit, keep_seconds))
        for normalized, new in by_owner.items()
    ]
    _cut_chunks(conn, [cut for _, plan in plans for cut in plan.cut])
    conn.executemany(
        "DELETE FROM history_chunks WHERE id = ?",
        [(chunk_id,) for _, plan in plans for chunk_id in plan.drop],
    )
    _append_to_chunks(conn, [plan for _, plan in plans if plan.append_to is not None])
    _insert_chunks(
        conn, [(normalized, plan.new) for normalized, plan in plans if plan.append_to is None]
    )


def _summaries(conn: sqlite3.Connection, owners: list[str]) -> dict[str, _Summary]:
    """The summary of each owner's history (none if it is empty), summed by
    SQLite over the index, which covers the columns: no entry is read."""
    rows = conn.execute(
        "SELECT g.normalized, g.total, g.oldest_at, c.id, c.count FROM ("
        "SELECT normalized, sum(count) AS total, min(oldest_at) AS oldest_at, max(id) AS newest"
        " FROM history_chunks WHERE normalized IN (SELECT value FROM json_each(?))"
        " GROUP BY normalized) AS g JOIN history_chunks AS c ON c.id = g.newest",
        (_dumps(owners),),
    )
    return {normalized: _Summary(*summary) for normalized, *summary in rows}


def _plan(
    conn: sqlite3.Connection,
    normalized: str,
    new: list[_Entry],
    summary: _Summary | None,
    limit: int,
    keep_seconds: int,
) -> _Plan:
    """
    How to add an owner's new entries, then keep its ``limit`` newest
    entries (the new ones being the newest) less those before the cutoff.
    Only if some must go are its chunks read, oldest first, and only as far
    as needed. The new entries are appended to the newest chunk if it stays
    whole and stays small (:data:`APPEND_ENTRIES`).
    """
    cutoff = new[-1][_AT] - keep_seconds
    plan = _Plan(new=[entry for entry in new[-limit:] if entry[_AT] >= cutoff])
    if summary is None:
        return plan
    excess = len(new) + summary.total - limit  # how many of the oldest are past the limit
    aged = summary.oldest_at < cutoff
    if excess > 0 or aged:
        cursor = conn.execute(
            "SELECT id, count, oldest_at, newest_at FROM history_chunks"
            " WHERE normalized = ? ORDER BY id",
            (normalized,),
        )
        try:
            _plan_pruning(plan, cursor, excess, cutoff, aged)
        finally:
            cursor.close()
    touched = summary.newest_id in plan.drop or any(
        chunk_id == summary.newest_id for chunk_id, _, _ in plan.cut
    )
    room = min(APPEND_ENTRIES, CHUNK_ENTRIES) - summary.newest_count
    if not touched and len(plan.new) <= room:
        plan.append_to = summary.newest_id
    return plan


def _plan_pruning(
    plan: _Plan, chunks: Iterable[_Chunk], excess: int, cutoff: int, aged: bool
) -> None:
    """
    Plan the pruning of an owner's chunks, given oldest first: ``excess`` of
    its oldest entries are past the limit, and if it is ``aged`` some are
    before ``cutoff``. A chunk wholly past the limit or wholly too old is
    dropped, one partly so is cut; once past the limit, and unless some
    entry is too old, the rest are not read.
    """
    for chunk_id, count, oldest_at, newest_at in chunks:
        if excess <= 0 and not aged:
            break
        within = count - max(excess, 0)  # its newest entries within the limit
        excess -= count
        if within <= 0 or newest_at < cutoff:
            plan.drop.append(chunk_id)
        elif within < count or oldest_at < cutoff:
            plan.cut.append((chunk_id, within, cutoff))


def _stats(entries: list[_Entry]) -> tuple[int, int, int, int]:
    """What a chunk of ``entries`` (not empty, oldest first) keeps beside
    them: ``count, oldest_at, newest_at, last_id``."""
    ats = [entry[_AT] for entry in entries]
    return len(entries), min(ats), max(ats), entries[-1][_ID]


def _cut_chunks(conn: sqlite3.Connection, cuts: list[tuple[int, int, int]]) -> None:
    """Rewrite each chunk keeping its ``within`` newest entries that are not
    before ``cutoff``, or delete it if none is left: one read for all."""
    if not cuts:
        return
    how = {chunk_id: (within, cutoff) for chunk_id, within, cutoff in cuts}
    rows = conn.execute(
        "SELECT id, entries FROM history_chunks WHERE id IN (SELECT value FROM json_each(?))",
        (_dumps(list(how)),),
    ).fetchall()
    rewritten: list[tuple[Any, ...]] = []
    emptied: list[tuple[int]] = []
    for chunk_id, text in rows:
        within, cutoff = how[chunk_id]
        entries = [entry for entry in orjson.loads(text)[-within:] if entry[_AT] >= cutoff]
        if entries:
            rewritten.append((*_stats(entries), _dumps(entries), chunk_id))
        else:
            emptied.append((chunk_id,))
    conn.executemany(
        "UPDATE history_chunks SET count = ?, oldest_at = ?, newest_at = ?, last_id = ?,"
        " entries = ? WHERE id = ?",
        rewritten,
    )
    conn.executemany("DELETE FROM history_chunks WHERE id = ?", emptied)


def _append_to_chunks(conn: sqlite3.Connection, plans: list[_Plan]) -> None:
    """Append new entries to chunks' JSON arrays inside SQLite, without
    decoding them: the closing bracket becomes a comma, then comes the new
    array without its opening bracket (the JSON has no raw NUL, before which
    ``length`` would stop)."""
    conn.executemany(
        "UPDATE history_chunks SET count = count + ?, oldest_at = min(oldest_at, ?),"
        " newest_at = max(newest_at, ?), last_id = ?,"
        " entries = substr(entries, 1, length(entries) - 1) || ',' || ?"
        " WHERE id = ?",
        [(*_stats(plan.new), _dumps(plan.new)[1:], plan.append_to) for plan in plans],
    )


def _insert_chunks(conn: sqlite3.Connection, new: list[tuple[str, list[_Entry]]]) -> None:
    """New chunks for each owner's new entries, at most :data:`CHUNK_ENTRIES`
    to a chunk, in order (so that the chunk ids follow the entry ids)."""
    size = CHUNK_ENTRIES
    conn.executemany(
        "INSERT INTO history_chunks"
        " (normalized, count, oldest_at, newest_at, last_id, entries)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (normalized, *_stats(part), _dumps(part))
            for normalized, entries in new
            for part in (entries[first : first + size] for first in range(0, len(entries), size))
        ],
    )


def _recent_history(
    conn: sqlite3.Connection, owner: str, peer: str | None, limit: int
) -> list[HistoryEntry]:
    """Decode the owner's chunks newest first, only until ``limit`` entries
    (with that peer, if one is given) are found."""
    key = check_history_query(peer, limit)
    found: list[_Entry] = []  # newest first
    cursor = conn.execute(
        "SELECT entries FROM history_chunks WHERE normalized = ? ORDER BY id DESC",
        (normalize(owner),),
    )
    try:
        for (text,) in cursor:
            entries = orjson.loads(text)
            if key is not None:
                entries = [entry for entry in entries if normalize(entry[_PEER]) == key]
            found.extend(reversed(entries))
            if len(found) >= limit:
                break
    finally:
        cursor.close()
    return [_history_entry(entry) for entry in reversed(found[:limit])]


def _clear_history(conn: sqlite3.Connection, owner: str) -> int:
    normalized = normalize(owner)
    (count,) = conn.execute(
        "SELECT coalesce(sum(count), 0) FROM history_chunks WHERE normalized = ?", (normalized,)
    ).fetchone()
    conn.execute("DELETE FROM history_chunks WHERE normalized = ?", (normalized,))
    return int(count)


@implementer(IHistoryStore)
class SQLiteHistoryStore(SQLiteBase):
    """The ``history_chunks`` table."""

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
