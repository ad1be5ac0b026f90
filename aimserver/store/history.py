# -*- test-case-name: tests.test_store_history -*-
"""
:class:`~aimserver.store.interfaces.IHistoryStore`, in memory and in SQLite:
each account's conversation history (gone with the account), so that every
device shows the same conversation.

SQLite keeps an account's entries in chunks (``history_chunks``): a row holds
up to :data:`CHUNK_ENTRIES` entries of one owner as a JSON array of ``[peer,
outgoing, text, at]``, oldest first, and beside it what the pruning needs
(``count``, ``oldest_at``, ``newest_at``) and ``last_id``, the id of its
last entry, which an index covers. Why: the browser client records two
entries per IM, in batches, and a row per entry (a b-tree insert, two
TEXT-keyed index inserts, a foreign key check and pruning deletes for each)
cost more CPU than the rest of the IM. Now a batch costs a few statements in
all, about one row write per owner (an INSERT, or an append to its small
newest chunk) and, once that owner's history is full, a smaller ``count``
for the one chunk the limit cuts into (it is *trimmed*) and the DELETE of
those it passes. The pruning decides from the covered columns: the write
path decodes no entry but those of a chunk with some too old (rare), which
it rewrites.

A chunk's entries are the last ``count`` of those in its array that are not
``null``: a trimmed chunk still holds the ones before, never read, until it
goes or is rewritten, so an owner's history takes less than a chunk more
than its limit (schema v17). Why not rewrite it: decoding and encoding
kilobytes per owner and batch was a seventh of the history's cost (bench
S13). ``oldest_at`` and ``newest_at`` are those of every entry the array
holds, so they bound the live ones: a bound that is off only sends the
chunk the slower way (a rewrite), which makes them exact again.

Ids count an owner's entries, so a chunk keeps none: the entry at position
``i`` of an array of ``n`` has id ``last_id - (n - 1 - i)``. Pruning keeps
the positions: a rewrite cuts an array's oldest entries off its front, and
an entry it drops from the middle (too old, after a clock stepped back)
becomes ``null``, which ``count`` does not count. Why no id per entry:
building a list per entry to hold it cost as much as the rest of a batch's
Python (bench S13). A batch brings each owner's records as their fields one
after another; they become the tuples a chunk's JSON is made from only when
that chunk is written, 64 at a time (a tuple per IM waiting for its batch
kept the garbage collector busy).

A peer is compared by its normalized name, which the chunks do not keep: a
read by peer decodes the owner's chunks newest first and stops once it has
``limit`` matches. An owner's history is as long as the caller's pruning
lets it grow.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
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
    HistoryRecord,
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
        #: Normalized owner -> its entries, oldest (lowest id) first, and the
        #: id its last recorded entry had; dropped when the history is gone.
        self._history: dict[str, list[HistoryEntry]] = {}
        self._last_history_id: dict[str, int] = {}

    def _drop_user_data(self, normalized: str) -> None:
        self._history.pop(normalized, None)
        self._last_history_id.pop(normalized, None)
        super()._drop_user_data(normalized)

    def _append(self, normalized: str, record: HistoryRecord) -> None:
        peer, outgoing, text, at = record
        entry_id = self._last_history_id.get(normalized, 0) + 1
        self._last_history_id[normalized] = entry_id
        self._history.setdefault(normalized, []).append(
            HistoryEntry(peer, outgoing, text, at, entry_id)
        )

    def _prune(self, normalized: str, limit: int, cutoff: int) -> None:
        """Keep the ``limit`` newest, less those before ``cutoff``; the
        newest always stays (its ``at`` made the cutoff)."""
        *kept, newest = self._history[normalized][-limit:]
        self._history[normalized] = [e for e in kept if e.at >= cutoff] + [newest]

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
            self._append(normalized, (peer, outgoing, text, at))
            self._prune(normalized, limit, at - keep_seconds)

        return fired(add)

    def add_history_many(
        self, batch: Mapping[str, Sequence[object]], limit: int, keep_seconds: int
    ) -> Deferred[int]:
        def add_many() -> int:
            check_history_pruning(limit, keep_seconds)
            last_at: dict[str, int] = {}
            added = 0
            for owner, records in batch.items():
                try:
                    normalized = self._existing(owner)
                except (StoreError, TypeError, AttributeError):
                    continue
                fields, _ = _valid_records(records)
                for record in _entries_of(fields):
                    self._append(normalized, record)  # type: ignore[arg-type]
                    last_at[normalized] = record[_AT]  # type: ignore[index]
                    added += 1
            for normalized, at in last_at.items():
                self._prune(normalized, limit, at - keep_seconds)
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
        normalized = normalize(owner)
        self._last_history_id.pop(normalized, None)
        return defer.succeed(len(self._history.pop(normalized, [])))


# --- records, as a batch brings them --------------------------------------------

#: A record's fields, and an entry's in a chunk's JSON array (the same order).
_PEER, _OUTGOING, _TEXT, _AT = range(4)
_at = itemgetter(_AT)

#: The latest time :func:`check_history_entry` takes (SQLite's INTEGER).
_AT_MAX = 2**63 - 1


def _valid_records(fields: object) -> tuple[list[Any], bool]:
    """
    Of records given as their fields one after another (``peer, outgoing,
    text, at, peer, ...``), the fields of those :func:`check_history_entry`
    takes, in order, and whether their times never go back (then a chunk's
    oldest and newest are its first and last: no pass over it). Nothing if
    they are not a sequence of whole records. A batch holds thousands, so
    it is first checked a column (a slice) at a time with builtins
    (:func:`_plainly_valid`): the usual batch costs no Python call per
    record. Only if that says no is each record checked on its own.
    """
    try:
        fields = list(fields)  # type: ignore[call-overload]
    except TypeError:
        return [], True
    if len(fields) % 4:
        return [], True
    peers, outgoing, texts, ats = fields[0::4], fields[1::4], fields[2::4], fields[3::4]
    try:
        ordered = ats == sorted(ats)
    except TypeError:
        ordered = False
    if fields and _plainly_valid(peers, outgoing, texts, ats, ordered):
        return fields, ordered
    valid: list[Any] = []
    for first in range(0, len(fields), 4):
        record = fields[first : first + 4]
        if _valid_record(record):
            valid += record
    ats = valid[3::4]
    return valid, ats == sorted(ats)


def _valid_record(record: object) -> bool:
    if type(record) not in (tuple, list) or len(record) != 4:  # type: ignore[arg-type]
        return False
    try:
        check_history_entry(*record, 1, 0)  # type: ignore[misc]
    except StoreError:
        return False
    return True


_BOOL = {bool}
_INT = {int}


def _plainly_valid(
    peers: Sequence[object],
    outgoing: Sequence[object],
    texts: Sequence[object],
    ats: Sequence[object],
    ordered: bool = False,
) -> bool:
    """
    Whether :func:`check_history_entry` surely takes every record whose
    fields these columns hold (not empty): ASCII peers within their size,
    texts within theirs (a text of at most a quarter of the bytes in
    characters fits whatever they are, if it encodes at all), bool
    directions, times of type int within bounds. ``False`` says nothing:
    the records then get the full check.

    As few passes as may be, each a builtin's: joining a column is one
    that fails on anything but str, and the joined text answers for all
    (ASCII, and if all of it fits, each does); a batch names few peers, so
    each is looked at once. Lengths are taken with ``str.__len__``. If the
    times are ``ordered`` (in order: never going back), the first and last
    are the bounds.
    """
    try:
        names = "".join(peers)  # type: ignore[arg-type]
        joined = "".join(texts)  # type: ignore[arg-type]
    except TypeError:
        return False
    if not (
        names.isascii()
        and set(map(type, outgoing)) == _BOOL
        and set(map(type, ats)) == _INT
        and (ats[0] if ordered else min(ats)) >= 0  # type: ignore[operator, type-var]
        and (ats[-1] if ordered else max(ats)) <= _AT_MAX  # type: ignore[operator, type-var]
        and all(
            type(peer) is str and 0 < str.__len__(peer) <= MAX_HISTORY_PEER_BYTES
            for peer in set(peers)
        )
    ):
        return False
    if joined.isascii():
        return (
            len(joined) <= MAX_HISTORY_TEXT_BYTES
            or max(map(str.__len__, texts)) <= MAX_HISTORY_TEXT_BYTES  # type: ignore[arg-type]
        )
    return all(map(_text_fits, texts))


def _text_fits(text: str) -> bool:
    if str.isascii(text):
        return str.__len__(text) <= MAX_HISTORY_TEXT_BYTES
    try:
        return len(str.encode(text)) <= MAX_HISTORY_TEXT_BYTES
    except UnicodeEncodeError:
        return False


# --- SQLite operations --------------------------------------------------------

CHUNK_ENTRIES = 64
"""The most entries (positions, ``null`` included) a chunk holds: a batch
brings an owner's new entries in chunks of at most this many (and the v14
migration cut the v13 entries into chunks of 64). A chunk the pruning cuts
into costs a rewrite of up to this many entries, spread over the entries that
made it."""

APPEND_ENTRIES = 16
"""New entries are appended to the owner's newest chunk only if it then
holds at most this many (and at most :data:`CHUNK_ENTRIES`); otherwise they
start chunks of their own. An append rewrites the chunk, so an owner who gets
an entry or two per batch keeps small chunks (one IM must not rewrite
kilobytes), while a busy owner's batch is one INSERT."""

#: An entry as a chunk's JSON array holds it (a record, or ``None`` where the
#: pruning took one from the middle).
_Entry = Sequence[Any] | None

#: What the pruning knows of a chunk without reading its entries:
#: ``(id, count, oldest_at, newest_at)``.
_Chunk = tuple[int, int, int, int]


class _Summary(NamedTuple):
    """An owner's history, as far as recording needs to know it first."""

    total: int
    """How many entries it holds."""
    oldest_at: int
    """The oldest ``at`` among them."""
    newest_id: int
    """Its newest chunk..."""
    newest_size: int
    """... how many positions that holds..."""
    last_id: int
    """... and the id of its last entry, the owner's last recorded."""


@attrs.define
class _Plan:
    """What recording an owner's new entries does to its chunks."""

    new: Sequence[Any]
    """The new entries, oldest first, less those the pruning takes at once
    (off the front, or ``None`` in their place): their fields one after
    another (``peer, outgoing, text, at, peer, ...``) if :attr:`flat`,
    else a list of entries (after an age cut, rare)."""
    last_id: int
    """The id of the last of them."""
    drop: list[int] = attrs.Factory(list)
    """Chunks to delete: wholly past the limit, or wholly too old."""
    cut: list[tuple[int, int, int]] = attrs.Factory(list)
    """Chunks to rewrite, as ``(id, within, cutoff)``: keeping the ``within``
    newest of their entries, less those whose ``at`` is before ``cutoff``."""
    trim: list[tuple[int, int]] = attrs.Factory(list)
    """Chunks to keep fewer of, as ``(count, id)``: only their ``count``
    newest entries are theirs from now on (no rewrite)."""
    ordered: bool = False
    """Whether :attr:`new` holds no ``None`` and no time in it goes back."""
    cutoff: int = 0
    """Entries before this time go."""
    whole: bool = True
    """Whether :attr:`new` is every new entry (none cut off its front)."""
    excess: int = 0
    """How many of the oldest entries are past the limit."""
    aged: bool = False
    """Whether some stored entry is before :attr:`cutoff`."""
    append_to: int | None = None
    """The newest chunk, if :attr:`new` is to be appended to it."""
    flat: bool = True

    @property
    def count(self) -> int:
        """How many positions :attr:`new` holds."""
        return len(self.new) // 4 if self.flat else len(self.new)

    def entries(self, first: int, stop: int) -> list[_Entry]:
        """The new entries at positions ``first`` to ``stop``, as a chunk's
        JSON holds them. Made a chunk at a time: a batch's thousands of
        entries never exist as objects all at once (the garbage collector
        would look at each, bench S13)."""
        if not self.flat:
            return self.new[first:stop]  # type: ignore[return-value]
        return _entries_of(self.new[4 * first : 4 * stop])


def _entries_of(fields: Sequence[Any]) -> list[_Entry]:
    """Entries from their fields one after another."""
    return list(zip(fields[0::4], fields[1::4], fields[2::4], fields[3::4], strict=True))


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def _stats(entries: Sequence[_Entry], ordered: bool = False) -> tuple[int, int, int]:
    """``count, oldest_at, newest_at`` of a chunk's entries (one at least
    not ``None``): from the first and last if they are ``ordered`` (none is
    ``None``, no time goes back), else by builtins alone, unless some are
    ``None``."""
    if ordered:
        return len(entries), entries[0][_AT], entries[-1][_AT]  # type: ignore[index]
    try:
        ats = list(map(_at, entries))  # type: ignore[arg-type]
    except TypeError:
        ats = [entry[_AT] for entry in entries if entry is not None]
    return len(ats), min(ats), max(ats)


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
    _record(conn, {normalized: ([peer, outgoing, text, at], True)}, limit, keep_seconds)


def _add_history_many(
    conn: sqlite3.Connection,
    batch: Mapping[str, Sequence[object]],
    limit: int,
    keep_seconds: int,
) -> int:
    check_history_pruning(limit, keep_seconds)
    by_owner: dict[str, tuple[list[Any], bool]] = {}
    keys = _account_keys(conn, batch)
    for owner, records in batch.items():
        normalized = keys.get(owner)
        if normalized is None:
            continue
        valid, ordered = _valid_records(records)
        if not valid:
            continue
        earlier = by_owner.get(normalized)
        if earlier is not None:  # two spellings of one owner
            before, was_ordered = earlier
            ordered = ordered and was_ordered and before[-1] <= valid[_AT]
            valid = before + valid
        by_owner[normalized] = valid, ordered
    _record(conn, by_owner, limit, keep_seconds)
    return sum(len(fields) for fields, _ in by_owner.values()) // 4


def _account_keys(conn: sqlite3.Connection, owners: Iterable[object]) -> dict[str, str]:
    """Each owner (a screen name) whose account exists -> its normalized
    name: one query for a batch's hundred owners, not one each. A screen
    name is ASCII: any other owner has no account."""
    keys: dict[str, str] = {}
    for owner in owners:
        if type(owner) is str and owner.isascii():
            keys[owner] = normalize(owner)
    existing = {
        normalized
        for (normalized,) in conn.execute(
            "SELECT normalized FROM accounts WHERE normalized IN (SELECT value FROM json_each(?))",
            (_dumps(list(set(keys.values()))),),
        )
    }
    return {owner: key for owner, key in keys.items() if key in existing}


def _record(
    conn: sqlite3.Connection,
    by_owner: dict[str, tuple[list[Any], bool]],
    limit: int,
    keep_seconds: int,
) -> None:
    """
    Add each owner's new entries (their fields one after another, oldest
    first, not empty), then prune its history once, by the age of the last
    of them (which always stays). A few statements for the whole batch,
    each carrying every owner's rows, and one read per owner whose history
    is to be pruned.
    """
    if not by_owner:
        return
    summaries = _summaries(conn, list(by_owner))
    plans = {
        normalized: _plan(new, ordered, summaries.get(normalized), limit, keep_seconds)
        for normalized, (new, ordered) in by_owner.items()
    }
    _plan_pruning_all(conn, plans)
    for normalized, plan in plans.items():
        _choose_append(plan, summaries.get(normalized))
    _cut_chunks(conn, [cut for plan in plans.values() for cut in plan.cut])
    conn.executemany(
        "DELETE FROM history_chunks WHERE id = ?",
        [(chunk_id,) for plan in plans.values() for chunk_id in plan.drop],
    )
    conn.executemany(
        "UPDATE history_chunks SET count = ? WHERE id = ?",
        [trim for plan in plans.values() for trim in plan.trim],
    )
    _append_to_chunks(conn, [plan for plan in plans.values() if plan.append_to is not None])
    _insert_chunks(
        conn, [(normalized, plan) for normalized, plan in plans.items() if plan.append_to is None]
    )


def _summaries(conn: sqlite3.Connection, owners: list[str]) -> dict[str, _Summary]:
    """The summary of each owner's history (none if it is empty), summed by
    SQLite over the index, which covers the columns but the newest chunk's
    size (one JSON length per owner)."""
    rows = conn.execute(
        "SELECT g.normalized, g.total, g.oldest_at, c.id, json_array_length(c.entries),"
        " c.last_id FROM ("
        "SELECT normalized, sum(count) AS total, min(oldest_at) AS oldest_at, max(id) AS newest"
        " FROM history_chunks WHERE normalized IN (SELECT value FROM json_each(?))"
        " GROUP BY normalized) AS g JOIN history_chunks AS c ON c.id = g.newest",
        (_dumps(owners),),
    )
    return {normalized: _Summary(*summary) for normalized, *summary in rows}


def _plan(
    fields: list[Any],
    ordered: bool,
    summary: _Summary | None,
    limit: int,
    keep_seconds: int,
) -> _Plan:
    """
    How to add an owner's new entries (their fields one after another),
    then keep its ``limit`` newest entries (the new ones being the newest)
    less those before the cutoff: what the pruning has to take
    (:func:`_plan_pruning_all` finds where).
    """
    added = len(fields) // 4
    cutoff = fields[-1] - keep_seconds
    last_id = (summary.last_id if summary is not None else 0) + added
    if added > limit:
        fields = fields[-4 * limit :]
    plan = _Plan(new=fields, last_id=last_id, ordered=ordered, cutoff=cutoff)
    if (fields[_AT] if ordered else min(fields[_AT::4])) < cutoff:
        plan.new = _without_old(_entries_of(fields), cutoff)
        plan.flat = plan.ordered = False  # some are None
    plan.whole = plan.count == added
    if summary is not None:
        # How many of the oldest are past the limit: every new entry counts,
        # the ones too old to stay too (the age is applied after the limit).
        plan.excess = added + summary.total - limit
        plan.aged = summary.oldest_at < cutoff
    return plan


def _plan_pruning_all(conn: sqlite3.Connection, plans: dict[str, _Plan]) -> None:
    """
    Find the chunks each owner's pruning drops or cuts, from the columns the
    index covers, oldest first, reading only as far as needed. One query an
    owner: one for all of them, with a window function to sum the counts,
    took SQLite longer (temporary b-trees to sort) than a hundred of these.
    """
    for normalized, plan in plans.items():
        if plan.excess <= 0 and not plan.aged:
            continue
        cursor = conn.execute(
            "SELECT id, count, oldest_at, newest_at FROM history_chunks"
            " WHERE normalized = ? ORDER BY id",
            (normalized,),
        )
        try:
            _plan_pruning(plan, cursor, plan.excess, plan.cutoff, plan.aged)
        finally:
            cursor.close()


def _choose_append(plan: _Plan, summary: _Summary | None) -> None:
    """Append the new entries to the owner's newest chunk if the pruning
    leaves it whole and it stays small (:data:`APPEND_ENTRIES`)."""
    if summary is None:
        return
    touched = summary.newest_id in plan.drop or any(
        chunk_id == summary.newest_id for chunk_id, _, _ in plan.cut
    )
    room = min(APPEND_ENTRIES, CHUNK_ENTRIES) - summary.newest_size
    # Appended, the new entries must follow the chunk's last position for
    # position: not if the pruning cut some off their front.
    if not touched and plan.whole and plan.count <= room:
        plan.append_to = summary.newest_id


def _without_old(entries: Sequence[_Entry], cutoff: int) -> list[_Entry]:
    """``entries`` (oldest first, the last not before ``cutoff``) less those
    before ``cutoff``: cut off the front, ``None`` in their place after it,
    so that the rest keep their positions (their ids)."""
    kept = [entry if entry is not None and entry[_AT] >= cutoff else None for entry in entries]
    first = next(i for i, entry in enumerate(kept) if entry is not None)
    return kept[first:]


def _plan_pruning(
    plan: _Plan, chunks: Iterable[_Chunk], excess: int, cutoff: int, aged: bool
) -> None:
    """
    Plan the pruning of an owner's chunks, given oldest first: ``excess`` of
    its oldest entries are past the limit, and if it is ``aged`` some are
    before ``cutoff``. A chunk wholly past the limit or wholly too old is
    dropped, one partly too old is cut, one only partly past the limit is
    trimmed; once past the limit, and unless some entry is too old, the
    rest are not read.
    """
    for chunk_id, count, oldest_at, newest_at in chunks:
        if excess <= 0 and not aged:
            break
        within = count - max(excess, 0)  # its newest entries within the limit
        excess -= count
        if within <= 0 or newest_at < cutoff:
            plan.drop.append(chunk_id)
        elif oldest_at < cutoff:
            plan.cut.append((chunk_id, within, cutoff))
        elif within < count:
            plan.trim.append((within, chunk_id))


def _cut(entries: list[_Entry], within: int, cutoff: int) -> list[_Entry]:
    """A chunk's ``entries`` less all but the ``within`` newest that are
    there (not ``None``) and less those before ``cutoff``, positions kept
    (empty if none is left)."""
    start = len(entries)
    while within and start:
        start -= 1
        within -= entries[start] is not None
    kept = entries[start:]
    if any(entry is not None and entry[_AT] < cutoff for entry in kept):
        kept = [entry if entry is not None and entry[_AT] >= cutoff else None for entry in kept]
    first = next((i for i, entry in enumerate(kept) if entry is not None), len(kept))
    return kept[first:]


def _cut_chunks(conn: sqlite3.Connection, cuts: list[tuple[int, int, int]]) -> None:
    """Rewrite each chunk as :func:`_cut` says, or delete it if none of its
    entries is left: one read for all. ``last_id`` stays: the entries left
    keep their positions from the end."""
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
        entries = _cut(orjson.loads(text), *how[chunk_id])
        if entries:
            rewritten.append((*_stats(entries), _dumps(entries), chunk_id))
        else:
            emptied.append((chunk_id,))
    conn.executemany(
        "UPDATE history_chunks SET count = ?, oldest_at = ?, newest_at = ?, entries = ?"
        " WHERE id = ?",
        rewritten,
    )
    conn.executemany("DELETE FROM history_chunks WHERE id = ?", emptied)


def _append_to_chunks(conn: sqlite3.Connection, plans: list[_Plan]) -> None:
    """Append new entries to chunks' JSON arrays inside SQLite, without
    decoding them: the closing bracket becomes a comma, then comes the new
    array without its opening bracket (the JSON has no raw NUL, before which
    ``length`` would stop). The new entries follow the chunk's last in id,
    as the chunk is the owner's newest."""
    conn.executemany(
        "UPDATE history_chunks SET count = count + ?, oldest_at = min(oldest_at, ?),"
        " newest_at = max(newest_at, ?), last_id = ?,"
        " entries = substr(entries, 1, length(entries) - 1) || ',' || ?"
        " WHERE id = ?",
        [_appended(plan, plan.entries(0, plan.count)) for plan in plans],
    )


def _appended(plan: _Plan, entries: list[_Entry]) -> tuple[Any, ...]:
    return (*_stats(entries, plan.ordered), plan.last_id, _dumps(entries)[1:], plan.append_to)


def _insert_chunks(conn: sqlite3.Connection, new: list[tuple[str, _Plan]]) -> None:
    """New chunks for each owner's new entries, at most :data:`CHUNK_ENTRIES`
    to a chunk, in order (so that the chunk ids follow the entry ids). A
    chunk whose entries the pruning took all of is not written."""
    size = CHUNK_ENTRIES
    rows: list[tuple[Any, ...]] = []
    for normalized, plan in new:
        last = plan.count
        for first in range(0, last, size):
            part = plan.entries(first, first + size)
            end = plan.last_id - (last - first - len(part))
            if part[0] is None:  # a chunk starts with an entry: cut the front
                part = part[next((i for i, e in enumerate(part) if e is not None), len(part)) :]
            if part:
                rows.append((normalized, *_stats(part, plan.ordered), end, _dumps(part)))
    conn.executemany(
        "INSERT INTO history_chunks"
        " (normalized, count, oldest_at, newest_at, last_id, entries)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )


def _recent_history(
    conn: sqlite3.Connection, owner: str, peer: str | None, limit: int
) -> list[HistoryEntry]:
    """Decode the owner's chunks newest first, only until ``limit`` entries
    (with that peer, if one is given) are found; of each, its ``count``
    newest (a trimmed chunk holds older ones that are no longer there)."""
    key = check_history_query(peer, limit)
    found: list[HistoryEntry] = []  # newest first
    cursor = conn.execute(
        "SELECT last_id, count, entries FROM history_chunks WHERE normalized = ? ORDER BY id DESC",
        (normalize(owner),),
    )
    try:
        for last_id, count, text in cursor:
            entries = orjson.loads(text)
            first_id = last_id - len(entries) + 1
            for i in range(len(entries) - 1, -1, -1):
                if not count:
                    break
                entry = entries[i]
                if entry is None:
                    continue
                count -= 1
                if key is not None and normalize(entry[_PEER]) != key:
                    continue
                peer_name, outgoing, entry_text, at = entry
                found.append(HistoryEntry(peer_name, bool(outgoing), entry_text, at, first_id + i))
                if len(found) == limit:
                    return found[::-1]
    finally:
        cursor.close()
    return found[::-1]


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
        self, batch: Mapping[str, Sequence[object]], limit: int, keep_seconds: int
    ) -> Deferred[int]:
        # A copy of the mapping: the caller may add to it once this returns.
        # The records are validated and copied on the DB thread.
        return self._call(_add_history_many, dict(batch), limit, keep_seconds)

    def recent_history(
        self, owner: str, peer: str | None, limit: int
    ) -> Deferred[list[HistoryEntry]]:
        return self._call(_recent_history, owner, peer, limit, write=False)

    def clear_history(self, owner: str) -> Deferred[int]:
        return self._call(_clear_history, owner)
