"""
Tests for aimserver.store.history: the IHistoryStore contract (each
account's conversation history, read newest-last, pruned by count and by age
as it grows, gone with the account), run against the memory store, the
SQLite store (file and ``:memory:``, with chunks of several sizes) and the
account cache in front of one; then the memory and SQLite stores side by
side on random runs and across chunk boundaries, the chunks themselves
checked; and what only the SQLite file promises (a reopen keeps the history;
what is pruned leaves the file).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from aimserver.store import history as history_store
from aimserver.store.cache import CachedUserStore
from aimserver.store.interfaces import (
    MAX_HISTORY_LIMIT,
    MAX_HISTORY_PEER_BYTES,
    MAX_HISTORY_TEXT_BYTES,
    HistoryEntry,
    IHistoryStore,
    NoSuchAccount,
    StoreError,
    check_history_entry,
)
from aimserver.store.memory import MemoryUserStore
from aimserver.store.sqlite import SQLiteUserStore
from tests.test_store import NOW, StoreContractMixin, contract_settings, open_inline

#: Keep everything: more entries and more seconds than any test adds.
ALL = 10_000
FOREVER = 10**9


def grouped(flat: list[tuple[str, str, bool, str, int]]) -> dict[str, list[object]]:
    """A batch as add_history_many takes it, from ``(owner, peer, outgoing,
    text, at)`` in order: by owner as spelled, owners in first-seen order,
    each owner's records as their fields one after another."""
    batch: dict[str, list[object]] = {}
    for owner, *record in flat:
        batch.setdefault(owner, []).extend(record)
    return batch


def summary(entries: list[HistoryEntry]) -> list[tuple[str, bool, str, int]]:
    """What an entry says, without the id the store chose."""
    return [(e.peer, e.outgoing, e.text, e.at) for e in entries]


class HistoryStoreContractMixin(StoreContractMixin):
    """The IHistoryStore contract."""

    def record(
        self,
        owner: str,
        peer: str,
        text: str,
        at: int = NOW,
        outgoing: bool = True,
        limit: int = ALL,
        keep_seconds: int = FOREVER,
    ) -> None:
        self.assertIsNone(
            self.ok(self.store.add_history(owner, peer, outgoing, text, at, limit, keep_seconds))
        )

    def recent(self, owner: str, peer: str | None = None, limit: int = 100) -> list[HistoryEntry]:
        return self.ok(self.store.recent_history(owner, peer, limit))

    def test_provides_history_store(self) -> None:
        """The store provides every IHistoryStore method."""
        self.assertTrue(verifyObject(IHistoryStore, self.store))

    def test_many_at_once_as_if_one_by_one(self) -> None:
        """add_history_many records each owner's entries as add_history
        would, in order (an owner's spellings one after the other), prunes
        each owner once (to its limit and age, the newest kept), and skips
        entries of no account or out of bounds, or not entries at all,
        without losing the others."""
        self.add("alice")
        self.add("bob")
        self.record("alice", "bob", "old", NOW - 1000)
        batch: dict[Any, Any] = {
            "alice": ["bob", True, "one", NOW, "bob", True, "x" * 9000, NOW],
            "nobody": ["bob", True, "lost", NOW],
            "bob": ["alice", False, "one", NOW, "alice", 1, "not a bool", NOW],
            "ALICE": ["carol", False, "two", NOW + 1, "bob", True, "three", NOW + 2],
            "carol": ["alice", False, "no time", NOW, "alice", False],
            "dave": 5,
            5: ["bob", True, "no owner", NOW],
        }
        for name in ("carol", "dave"):
            self.add(name)
        self.assertEqual(self.ok(self.store.add_history_many(batch, 2, 500)), 4)
        self.assertEqual([e.text for e in self.recent("alice")], ["two", "three"])
        self.assertEqual([e.text for e in self.recent("bob")], ["one"])
        # Not whole records, not a sequence: nothing of them.
        self.assertEqual(self.recent("carol"), [])
        self.assertEqual(self.recent("dave"), [])
        # The age, from the owner's last entry of the batch: "older" goes.
        self.record("bob", "alice", "older", NOW - 1000)
        self.ok(self.store.add_history_many({"bob": ["x", True, "new", NOW]}, 10, 500))
        self.assertEqual([e.text for e in self.recent("bob")], ["one", "new"])
        self.assertEqual(self.ok(self.store.add_history_many({}, 10, 0)), 0)
        self.assertEqual(self.ok(self.store.add_history_many({"bob": []}, 10, 0)), 0)
        self.fails(self.store.add_history_many(batch, 0, 10), StoreError)
        self.assertEqual(len(self.recent("alice")), 2)

    def test_recorded_in_order_oldest_first(self) -> None:
        """Entries come back as recorded, oldest first, under any spelling of
        the owner's name, with the peer as it was given and increasing ids."""
        self.add("Alice")
        self.record("A LICE", "Bob Smith", "hi bob", NOW, outgoing=True)
        self.record("alice", "bobsmith", "hi alice", NOW + 1, outgoing=False)
        self.record("Alice", "Carol", "and carol", NOW + 2, outgoing=True)
        entries = self.recent("alice")
        self.assertEqual(
            summary(entries),
            [
                ("Bob Smith", True, "hi bob", NOW),
                ("bobsmith", False, "hi alice", NOW + 1),
                ("Carol", True, "and carol", NOW + 2),
            ],
        )
        ids = [e.id for e in entries]
        self.assertEqual(ids, sorted(set(ids)))
        self.assertEqual(self.recent("ALICE"), entries)

    def test_order_is_recording_order_not_time(self) -> None:
        """An entry recorded later comes later, whatever its time says (a
        clock stepping back does not reorder a conversation)."""
        self.add("alice")
        self.record("alice", "bob", "first", NOW)
        self.record("alice", "bob", "second", NOW - 100)
        self.assertEqual([e.text for e in self.recent("alice")], ["first", "second"])

    def test_newest_up_to_limit(self) -> None:
        """A read gives the ``limit`` newest entries, still oldest first."""
        self.add("alice")
        for n in range(5):
            self.record("alice", "bob", f"m{n}", NOW + n)
        self.assertEqual([e.text for e in self.recent("alice", limit=2)], ["m3", "m4"])
        self.assertEqual([e.text for e in self.recent("alice", limit=1)], ["m4"])
        self.assertEqual(len(self.recent("alice", limit=MAX_HISTORY_LIMIT)), 5)

    def test_peer_filter(self) -> None:
        """A read about one peer gives only the conversation with that peer,
        whatever the spelling on either side, up to ``limit`` of its newest."""
        self.add("alice")
        self.record("alice", "Bob Smith", "b1")
        self.record("alice", "Carol", "c1")
        self.record("alice", "BOBSMITH", "b2", outgoing=False)
        self.record("alice", "carol", "c2")
        self.record("alice", "bob smith", "b3")
        self.assertEqual([e.text for e in self.recent("alice", "bobsmith")], ["b1", "b2", "b3"])
        self.assertEqual([e.text for e in self.recent("alice", "B O B Smith", 2)], ["b2", "b3"])
        self.assertEqual([e.text for e in self.recent("alice", "CAROL", 1)], ["c2"])
        self.assertEqual(self.recent("alice", "dave"), [])
        self.assertEqual(
            [e.peer for e in self.recent("alice", "Bob Smith")],
            ["Bob Smith", "BOBSMITH", "bob smith"],
        )

    def test_histories_are_separate(self) -> None:
        """Each account has its own history, its ids counting its own entries."""
        self.add("alice")
        self.add("bob")
        self.record("alice", "bob", "to bob", outgoing=True)
        self.record("bob", "alice", "to bob", outgoing=False)
        self.record("bob", "carol", "to carol")
        alice, bob = self.recent("alice"), self.recent("bob")
        self.assertEqual(summary(alice), [("bob", True, "to bob", NOW)])
        self.assertEqual(
            summary(bob), [("alice", False, "to bob", NOW), ("carol", True, "to carol", NOW)]
        )
        self.assertEqual([e.id for e in alice], [1])
        self.assertEqual([e.id for e in bob], [1, 2])

    def test_text_kept_exactly(self) -> None:
        """Any text comes back as it was: empty, multi-line, NULs, beyond the
        BMP, up to MAX_HISTORY_TEXT_BYTES of UTF-8."""
        self.add("alice")
        texts = [
            "",
            "line\nline\r\n\ttab",
            "nul\x00inside",
            "emoji \U0001f600 and \u00e9",
            "x" * MAX_HISTORY_TEXT_BYTES,
            "\u00e9" * (MAX_HISTORY_TEXT_BYTES // 2),
            "<b>html</b> & 'quotes' \"\" %s {}",
        ]
        for text in texts:
            self.record("alice", "bob", text)
        self.assertEqual([e.text for e in self.recent("alice")], texts)

    def test_pruned_to_limit(self) -> None:
        """After each add, only the owner's ``limit`` newest entries stay:
        the history of another account is not touched, and a later add with
        a higher limit does not bring the dropped back."""
        self.add("alice")
        self.add("bob")
        self.record("bob", "alice", "bob's")
        for n in range(5):
            self.record("alice", "bob", f"m{n}", NOW + n, limit=3)
        self.assertEqual([e.text for e in self.recent("alice")], ["m2", "m3", "m4"])
        self.record("alice", "bob", "m5", NOW + 5, limit=10)
        self.assertEqual([e.text for e in self.recent("alice")], ["m2", "m3", "m4", "m5"])
        self.record("alice", "carol", "m6", NOW + 6, limit=1)
        self.assertEqual([e.text for e in self.recent("alice")], ["m6"])
        self.assertEqual([e.text for e in self.recent("bob")], ["bob's"])

    def test_limit_counts_every_peer(self) -> None:
        """The limit is on the whole history, not per conversation."""
        self.add("alice")
        self.record("alice", "bob", "b", limit=2)
        self.record("alice", "carol", "c", limit=2)
        self.record("alice", "dave", "d", limit=2)
        self.assertEqual(self.recent("alice", "bob"), [])
        self.assertEqual([e.text for e in self.recent("alice")], ["c", "d"])

    def test_pruned_by_age(self) -> None:
        """An add drops the owner's entries older than ``at - keep_seconds``
        (an entry exactly that old stays), whatever their place; the new one
        always stays, even with ``keep_seconds`` 0."""
        self.add("alice")
        self.add("bob")
        self.record("bob", "alice", "old but bob's", NOW - 1000)
        self.record("alice", "bob", "later", NOW + 50)
        self.record("alice", "bob", "oldest", NOW - 100)
        self.record("alice", "bob", "edge", NOW - 60)
        self.record("alice", "bob", "now", NOW, keep_seconds=60)
        self.assertEqual([e.text for e in self.recent("alice")], ["later", "edge", "now"])
        self.record("alice", "bob", "past", NOW - 10, keep_seconds=0)
        self.assertEqual([e.text for e in self.recent("alice")], ["later", "now", "past"])
        self.record("alice", "bob", "future", NOW + 100, keep_seconds=0)
        self.assertEqual([e.text for e in self.recent("alice")], ["future"])
        self.assertEqual([e.text for e in self.recent("bob")], ["old but bob's"])

    def test_oversize_text_refused_nothing_changed(self) -> None:
        """A text over MAX_HISTORY_TEXT_BYTES of UTF-8 (however few
        characters) is refused: nothing is recorded and nothing pruned."""
        self.add("alice")
        self.record("alice", "bob", "kept 1", NOW)
        self.record("alice", "bob", "kept 2", NOW)
        before = self.recent("alice")
        for text in (
            "x" * (MAX_HISTORY_TEXT_BYTES + 1),
            "\u00e9" * (MAX_HISTORY_TEXT_BYTES // 2) + "x",
            "\U0001f600" * (MAX_HISTORY_TEXT_BYTES // 4 + 1),
        ):
            d = self.store.add_history("alice", "bob", True, text, NOW + FOREVER, 1, 0)
            self.fails(d, StoreError)
        self.assertEqual(self.recent("alice"), before)

    def test_bad_arguments_refused_nothing_changed(self) -> None:
        """A peer that is not 1 to MAX_HISTORY_PEER_BYTES of UTF-8, a
        direction that is not a bool, a text that is not a str (or has no
        UTF-8 form), a negative or non-integer time, limit or age are
        refused, and nothing changes."""
        self.add("alice")
        self.record("alice", "bob", "kept", NOW)
        before = self.recent("alice")
        good: dict[str, Any] = {
            "peer": "bob",
            "outgoing": True,
            "text": "hi",
            "at": NOW + 1,
            "limit": 1,
            "keep_seconds": 0,
        }
        bad: dict[str, tuple[Any, ...]] = {
            "peer": ("", "x" * (MAX_HISTORY_PEER_BYTES + 1), None, b"bob", "\ud800"),
            "outgoing": (1, 0, None, "yes"),
            "text": (None, b"hi", 5, "lone \udc80 surrogate"),
            "at": (-1, True, 1.5, "1", None, 2**63),
            "limit": (0, -1, True, 2.0, "3", None, 2**63),
            "keep_seconds": (-1, True, 1.5, None, 2**63),
        }
        for name, values in bad.items():
            for value in values:
                args = {**good, name: value}
                self.fails(self.store.add_history("alice", **args), StoreError)
        self.assertEqual(self.recent("alice"), before)
        # The bounds themselves are accepted.
        self.record("alice", "p" * MAX_HISTORY_PEER_BYTES, "edge", 0, limit=2**63 - 1)
        self.assertEqual(self.recent("alice")[-1].peer, "p" * MAX_HISTORY_PEER_BYTES)

    def test_unknown_account(self) -> None:
        """Recording for a missing account is NoSuchAccount and keeps
        nothing; its history reads empty and clears nothing."""
        self.fails(self.store.add_history("nobody", "bob", True, "hi", NOW, 10, 60), NoSuchAccount)
        self.add("nobody")
        self.assertEqual(self.recent("nobody"), [])
        self.ok(self.store.delete_account("nobody"))
        self.assertEqual(self.recent("ghost"), [])
        self.assertEqual(self.recent("ghost", "bob"), [])
        self.assertEqual(self.ok(self.store.clear_history("ghost")), 0)

    def test_deleted_account_history_gone(self) -> None:
        """A deleted account's history is gone; a new account of that name
        starts with none; what others recorded about it stays theirs."""
        self.add("Alice")
        self.add("bob")
        self.record("alice", "bob", "from alice")
        self.record("bob", "Alice", "to bob", outgoing=False)
        self.assertTrue(self.ok(self.store.delete_account("ALICE")))
        self.assertEqual(self.recent("alice"), [])
        self.add("alice")
        self.assertEqual(self.recent("alice"), [])
        self.assertEqual([e.text for e in self.recent("bob", "alice")], ["to bob"])

    def test_clear_history(self) -> None:
        """Clearing deletes all of the owner's entries and says how many;
        others' stay; the history then starts again, from id 1."""
        self.add("alice")
        self.add("bob")
        for n in range(3):
            self.record("alice", "bob", f"m{n}")
        self.record("bob", "alice", "bob's")
        self.assertEqual(self.ok(self.store.clear_history("A Lice")), 3)
        self.assertEqual(self.recent("alice"), [])
        self.assertEqual(self.ok(self.store.clear_history("alice")), 0)
        (kept,) = self.recent("bob")
        self.assertEqual(kept.id, 1)
        self.record("alice", "bob", "again")
        (again,) = self.recent("alice")
        self.assertEqual(again.id, 1)

    def test_bad_read_refused(self) -> None:
        """A read takes a limit from 1 to MAX_HISTORY_LIMIT, and a peer that
        is a str or None."""
        self.add("alice")
        self.record("alice", "bob", "hi")
        for limit in (0, -1, MAX_HISTORY_LIMIT + 1, True, 2.0, "3", None):
            self.fails(self.store.recent_history("alice", None, limit), StoreError)
            self.fails(self.store.recent_history("alice", "bob", limit), StoreError)
            self.fails(self.store.recent_history("nobody", None, limit), StoreError)
        for peer in (b"bob", 5):
            self.fails(self.store.recent_history("alice", peer, 10), StoreError)
        self.assertEqual(len(self.recent("alice", limit=MAX_HISTORY_LIMIT)), 1)

    @contract_settings(max_examples=60)
    @given(st.data())
    def test_model(self, data: st.DataObject) -> None:
        """Any run of adds, reads, clears and account deletions gives the
        answers of a plain model of the contract, ids included, and leaves
        the model's histories, to which the model's ids come next."""
        store = self.make_store()
        model = HistoryModel()
        for name in ACCOUNTS:
            self.ok(store.create_account(name, "secret"))
        for op in [*data.draw(history_ops), *closing_ops]:
            self.assertEqual(outcome(apply(store, op)), model.apply(op), op)


# --- the model, and random runs -------------------------------------------------

ACCOUNTS = ("alice", "Bob Smith")
owners = st.sampled_from(["alice", "ALICE", "bobsmith", "Bob Smith", "nobody"])
peers = st.sampled_from(["Carol", "carol", "C AROL", "dave", "Bob Smith", "alice"])
#: The longest text, in two-byte characters.
LONGEST = "\u00e9" * (MAX_HISTORY_TEXT_BYTES // 2)
#: Mostly short texts; now and then the longest, or one too long.
history_texts = st.sampled_from(["short"] * 8 + ["longest", "too long"]).flatmap(
    lambda kind: (
        st.text(max_size=8)
        if kind == "short"
        else st.just(LONGEST if kind == "longest" else LONGEST + "x")
    )
)
adds = st.tuples(
    st.just("add"),
    owners,
    peers,
    st.booleans(),
    history_texts,
    # Few times and ages, close together: entries on the edge of the age.
    st.integers(-4, 4).map(lambda n: NOW + n),
    st.integers(0, 5),
    st.integers(0, 4),
)
#: A batch of entries, of any owner, at times close together.
batches = st.lists(
    st.tuples(
        owners, peers, st.booleans(), history_texts, st.integers(-4, 4).map(lambda n: NOW + n)
    ),
    max_size=12,
)
adds_many = st.tuples(st.just("add_many"), batches, st.integers(0, 8), st.integers(0, 4))
#: Each kind of op, adds the most often.
op_kinds: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "add": adds,
    "add_many": adds_many,
    "recent": st.tuples(st.just("recent"), owners, st.one_of(st.none(), peers), st.integers(0, 6)),
    "clear": st.tuples(st.just("clear"), owners),
    "recreate": st.tuples(st.just("recreate"), owners),
}
history_ops = st.lists(
    st.sampled_from(
        ["add"] * 4 + ["add_many"] * 3 + ["recent"] * 2 + ["clear", "recreate"]
    ).flatmap(op_kinds.get),
    min_size=5,
    max_size=40,
)
#: What ends every run: an add for each account (the next id shows), then
#: each whole history.
closing_ops = [
    *(("add", name, "carol", True, "last", NOW, ALL, FOREVER) for name in ACCOUNTS),
    *(("recent", name, None, MAX_HISTORY_LIMIT) for name in ACCOUNTS),
]


def outcome(d: Deferred[Any]) -> tuple[str, Any]:
    """What a fired Deferred came to: ``("ok", result)`` or ``("error", type)``."""
    results: list[Any] = []
    d.addBoth(results.append)
    (result,) = results
    if isinstance(result, Failure):
        return ("error", result.type)
    return ("ok", result)


def apply(store: Any, op: tuple[Any, ...]) -> Deferred[Any]:
    """Run one op of :data:`history_ops`; ``recreate`` deletes the account
    and creates it again (an unknown name stays unknown)."""
    kind, owner, *args = op
    if kind == "add_many":
        return store.add_history_many(grouped(owner), *args)
    if kind == "add":
        return store.add_history(owner, *args)
    if kind == "recent":
        return store.recent_history(owner, *args)
    if kind == "clear":
        return store.clear_history(owner)

    def create_again(existed: bool) -> bool:
        if existed:
            store.create_account(owner, "secret")
        return existed

    return store.delete_account(owner).addCallback(create_again)


def name_key(name: str) -> str:
    """The model's own normalization of a screen name."""
    return name.replace(" ", "").lower()


class HistoryModel:
    """The contract in a few lines."""

    def __init__(self) -> None:
        self.histories: dict[str, list[HistoryEntry]] = {name_key(name): [] for name in ACCOUNTS}
        self.last_ids: dict[str, int] = {}

    def apply(self, op: tuple[Any, ...]) -> tuple[str, Any]:
        if op[0] == "add_many":
            return self.add_many(*op[1:])
        kind, owner, *args = op
        key = name_key(owner)
        history = self.histories.get(key)
        if kind == "add":
            peer, outgoing, text, at, limit, keep_seconds = args
            if len(text.encode()) > MAX_HISTORY_TEXT_BYTES or limit < 1:
                return ("error", StoreError)
            if history is None:
                return ("error", NoSuchAccount)
            entry = HistoryEntry(peer, outgoing, text, at, self.next_id(key))
            kept = [*history, entry][-limit:]
            self.histories[key] = [e for e in kept if e.at >= at - keep_seconds]
            return ("ok", None)
        if kind == "recent":
            peer, limit = args
            if limit < 1:
                return ("error", StoreError)
            entries = history or []
            if peer is not None:
                entries = [e for e in entries if name_key(e.peer) == name_key(peer)]
            return ("ok", entries[-limit:])
        if kind == "clear":
            if history is None:
                return ("ok", 0)
            self.histories[key] = []
            self.last_ids.pop(key, None)
            return ("ok", len(history))
        if history is not None:
            self.histories[key] = []
            self.last_ids.pop(key, None)
        return ("ok", history is not None)

    def next_id(self, key: str) -> int:
        """The id of the owner's next entry: its count of entries recorded
        since its history was last gone."""
        self.last_ids[key] = self.last_ids.get(key, 0) + 1
        return self.last_ids[key]

    def add_many(
        self, batch: list[tuple[str, str, bool, str, int]], limit: int, keep_seconds: int
    ) -> tuple[str, Any]:
        """Each entry as one add, skipping those that would fail, an owner's
        spellings one after the other, but each owner pruned once, at the
        end, by the time of its last entry."""
        if limit < 1:
            return ("error", StoreError)
        added = 0
        last_at: dict[str, int] = {}
        for owner, fields in grouped(batch).items():
            key = name_key(owner)
            for first in range(0, len(fields), 4):
                peer, outgoing, text, at = fields[first : first + 4]
                if len(text.encode()) > MAX_HISTORY_TEXT_BYTES or key not in self.histories:  # type: ignore[attr-defined]
                    continue
                entry = HistoryEntry(peer, outgoing, text, at, self.next_id(key))  # type: ignore[arg-type]
                self.histories[key].append(entry)
                last_at[key] = at  # type: ignore[assignment]
                added += 1
        for key, at in last_at.items():
            kept = self.histories[key][-limit:]
            self.histories[key] = [e for e in kept if e.at >= at - keep_seconds]
        return ("ok", added)


class MemoryHistoryStoreTests(HistoryStoreContractMixin, SynchronousTestCase):
    def make_store(self) -> MemoryUserStore:
        return MemoryUserStore(self.clock)

    def test_deleted_account_history_leaves_memory(self) -> None:
        """A deleted or cleared account's history is no longer held at all."""
        self.add("alice")
        self.add("bob")
        self.record("alice", "bob", "hi")
        self.record("bob", "alice", "hi")
        self.ok(self.store.delete_account("alice"))
        self.ok(self.store.clear_history("bob"))
        self.assertEqual(self.store._history, {})


def chunk_sizes(case: SynchronousTestCase, chunk: int, append: int) -> None:
    """Make the SQLite store's chunks small for the rest of the test, so that
    few entries cross their boundaries."""
    case.patch(history_store, "CHUNK_ENTRIES", chunk)
    case.patch(history_store, "APPEND_ENTRIES", append)


def check_chunks(case: SynchronousTestCase, conn: sqlite3.Connection) -> None:
    """What the SQLite store's chunks must be: not empty, none bigger than
    CHUNK_ENTRIES, no null at either end but the newest entry's chunk's
    last, each column beside the entries true to them (the nulls not
    counted; a trimmed chunk's entries are its ``count`` newest, and its
    times those of all it holds), and each owner's chunks
    in increasing id order (chunk id order), none overlapping."""
    rows = conn.execute(
        "SELECT normalized, count, oldest_at, newest_at, last_id, entries"
        " FROM history_chunks ORDER BY normalized, id"
    ).fetchall()
    last: dict[str, int] = {}
    for normalized, count, oldest_at, newest_at, last_id, text in rows:
        entries = orjson.loads(text)
        there = [entry for entry in entries if entry is not None]
        case.assertTrue(0 < count <= len(there), rows)
        live = there[-count:]
        case.assertLessEqual(len(entries), history_store.CHUNK_ENTRIES)
        case.assertIsNotNone(entries[0])
        # Bounds of the live entries' times: exact for the entries there.
        case.assertEqual(oldest_at, min(entry[3] for entry in there))
        case.assertEqual(newest_at, max(entry[3] for entry in there))
        case.assertTrue(all(len(entry) == 4 and type(entry[1]) is bool for entry in live))
        case.assertLess(last.get(normalized, 0), last_id - len(entries) + 1)
        last[normalized] = last_id


class SQLiteHistoryStoreTests(HistoryStoreContractMixin, SynchronousTestCase):
    """On a file, with chunks of at most 3 entries, appended to up to 2."""

    def make_store(self) -> SQLiteUserStore:
        chunk_sizes(self, 3, 2)
        store = open_inline(self.mktemp(), self.clock)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.addCleanup(lambda: check_chunks(self, store._conn))
        return store

    def test_writes_through_group_commit(self) -> None:
        """Adds and clears go through the store's one write path (group
        commit) as writes; reads as reads."""
        self.add("alice")
        calls: list[tuple[str, bool]] = []
        real = self.store.committer.submit

        def spy(op: Any, *args: Any, write: bool = True) -> Deferred[Any]:
            calls.append((op.__name__, write))
            return real(op, *args, write=write)

        self.patch(self.store.committer, "submit", spy)
        self.record("alice", "bob", "hi")
        self.recent("alice")
        self.recent("alice", "bob")
        self.ok(self.store.clear_history("alice"))
        self.assertEqual(
            calls,
            [
                ("_add_history", True),
                ("_recent_history", False),
                ("_recent_history", False),
                ("_clear_history", True),
            ],
        )


class InMemorySQLiteHistoryStoreTests(HistoryStoreContractMixin, SynchronousTestCase):
    """On ``:memory:``, with chunks of the size the server uses."""

    def make_store(self) -> SQLiteUserStore:
        store = open_inline(":memory:", self.clock)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.addCleanup(lambda: check_chunks(self, store._conn))
        return store


class CachedHistoryStoreTests(HistoryStoreContractMixin, SynchronousTestCase):
    """The account cache forwards the role untouched (to a store whose
    chunks hold one entry each)."""

    def make_store(self) -> CachedUserStore:
        chunk_sizes(self, 1, 1)
        store = open_inline(":memory:", self.clock)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        return CachedUserStore(store, self.clock)

    def test_forwarded_not_wrapped(self) -> None:
        """The cache's methods of this role are the wrapped store's own."""
        for name in IHistoryStore.names():
            self.assertEqual(getattr(self.store, name), getattr(self.store.store, name))


class MemoryMatchesSQLiteTests(SynchronousTestCase):
    """The memory store is the reference: on any run, SQLite answers the same."""

    @contract_settings(max_examples=100)
    @given(history_ops, st.integers(1, 4), st.integers(1, 4))
    def test_same_answers(self, ops: list[tuple[Any, ...]], chunk: int, append: int) -> None:
        """The same run of adds (one or a batch at a time), reads, clears and
        account deletions on both stores gives the same answers, step by step
        (ids included), and leaves the same histories, to which the same ids
        come next, whatever the size of the chunks (batches and histories
        are bigger than they); the chunks stay true to their entries."""
        memory = MemoryUserStore()
        sqlite = open_inline(":memory:")
        sizes = history_store.CHUNK_ENTRIES, history_store.APPEND_ENTRIES
        history_store.CHUNK_ENTRIES, history_store.APPEND_ENTRIES = chunk, append
        try:
            for store in (memory, sqlite):
                for name in ACCOUNTS:
                    self.successResultOf(store.create_account(name, "secret"))
            for op in [*ops, *closing_ops]:
                self.assertEqual(outcome(apply(sqlite, op)), outcome(apply(memory, op)), op)
                check_chunks(self, sqlite._conn)
        finally:
            history_store.CHUNK_ENTRIES, history_store.APPEND_ENTRIES = sizes
            self.successResultOf(sqlite.stop())

    @contract_settings(max_examples=300)
    @given(
        st.one_of(st.text(max_size=4), st.just("p" * 256), st.none(), st.binary(max_size=2)),
        st.one_of(st.booleans(), st.integers(0, 1), st.none()),
        st.one_of(
            st.text(max_size=8),
            st.sampled_from(["x" * 8000, "x" * 8001, "\u00e9" * 4000, "\ud800"]),
            st.none(),
            st.integers(),
        ),
        st.one_of(st.integers(-2, 2**64), st.booleans(), st.floats(), st.none()),
    )
    def test_quick_check_never_takes_what_the_full_check_refuses(
        self, peer: Any, outgoing: Any, text: Any, at: Any
    ) -> None:
        """The SQLite store's quick yes for the usual batch is never given
        to a batch with an entry check_history_entry refuses."""
        columns = ["bob", peer], [True, outgoing], ["hi", text], [NOW, at]
        try:
            ordered = [NOW, at] == sorted([NOW, at])
        except TypeError:
            ordered = False
        for told in {False, ordered}:
            if history_store._plainly_valid(*columns, told):
                check_history_entry(peer, outgoing, text, at, 1, 0)
        valid, _ = history_store._valid_records(["bob", True, "hi", NOW, peer, outgoing, text, at])
        if len(valid) == 8:
            check_history_entry(peer, outgoing, text, at, 1, 0)


class SQLiteHistoryChunkTests(SynchronousTestCase):
    """
    The chunks behind the SQLite store at their boundaries, with the sizes
    the server uses: batches bigger than a chunk, many small ones, pruning
    that cuts inside a chunk, by count and by age. The memory store, given
    the same, must answer the same; the chunks must stay true to their
    entries and as few as promised.
    """

    def setUp(self) -> None:
        self.memory = MemoryUserStore()
        self.sqlite = open_inline(":memory:")
        self.addCleanup(lambda: self.successResultOf(self.sqlite.stop()))
        for store in (self.memory, self.sqlite):
            for name in ("alice", "bob"):
                self.successResultOf(store.create_account(name, "secret"))

    def add_many(self, batch: list[tuple[str, str, bool, str, int]], limit: int, keep: int) -> None:
        """Record ``batch`` in both stores, which must then hold the same."""
        added = [
            self.successResultOf(store.add_history_many(grouped(batch), limit, keep))
            for store in (self.memory, self.sqlite)
        ]
        self.assertEqual(added[0], added[1])
        for name in ("alice", "bob"):
            self.assertEqual(
                self.successResultOf(self.sqlite.recent_history(name, None, MAX_HISTORY_LIMIT)),
                self.successResultOf(self.memory.recent_history(name, None, MAX_HISTORY_LIMIT)),
            )
        check_chunks(self, self.sqlite._conn)

    def sizes(self, owner: str) -> list[int]:
        """The number of entries in each of ``owner``'s chunks, oldest first."""
        rows = self.sqlite._conn.execute(
            "SELECT count FROM history_chunks WHERE normalized = ? ORDER BY id", (owner,)
        )
        return [count for (count,) in rows]

    def test_batch_bigger_than_a_chunk(self) -> None:
        """A batch brings an owner's entries in chunks of CHUNK_ENTRIES, the
        last one less, its ids counting its entries; the next small batch
        starts a chunk of its own rather than fill a big one."""
        batch = [
            ("alice" if n % 4 else "bob", f"peer{n % 3}", n % 2 == 0, f"m{n}", NOW + n)
            for n in range(200)
        ]
        self.add_many(batch, ALL, FOREVER)
        self.assertEqual(self.sizes("alice"), [64, 64, 22])
        self.assertEqual(self.sizes("bob"), [50])
        alice = self.successResultOf(self.sqlite.recent_history("alice", None, 1000))
        self.assertEqual([e.id for e in alice], list(range(1, 151)))
        self.add_many([("alice", "bob", True, "one more", NOW + 200)], ALL, FOREVER)
        self.assertEqual(self.sizes("alice"), [64, 64, 22, 1])

    def test_many_small_batches(self) -> None:
        """Entries a few at a time are appended to the owner's newest chunk
        until it would hold more than APPEND_ENTRIES, then start another."""
        for n in range(40):
            batch = [("alice", "bob", True, f"a{n}.{k}", NOW + n) for k in range(n % 3 + 1)]
            self.add_many([*batch, ("bob", "alice", False, f"b{n}", NOW + n)], ALL, FOREVER)
        self.assertTrue(all(size <= history_store.APPEND_ENTRIES for size in self.sizes("alice")))
        self.assertEqual(sum(self.sizes("alice")), 79)
        self.assertEqual(self.sizes("bob"), [16, 16, 8])

    def test_pruning_cuts_inside_a_chunk(self) -> None:
        """Past the limit, whole chunks go and the oldest left is cut inside;
        the chunks stay about limit / chunk size in number."""
        for n in range(30):
            batch = [("alice", "bob", True, f"m{n}.{k}", NOW + n) for k in range(37)]
            self.add_many([*batch, ("bob", "alice", False, f"b{n}", NOW + n)], 100, FOREVER)
            self.assertEqual(sum(self.sizes("alice")), min(37 * (n + 1), 100))
        self.assertLessEqual(len(self.sizes("alice")), 4)
        for n in range(30):
            self.add_many([("alice", "bob", True, f"s{n}", NOW + 30 + n)], 10, FOREVER)
        self.assertLessEqual(len(self.sizes("alice")), 3)

    def test_trimmed_chunk_is_only_its_newest(self) -> None:
        """Past the limit, the chunk it cuts into is trimmed, not rewritten:
        its older entries stay in its JSON but are never read again (by
        any peer), and new ones appended to it count on from there."""
        self.add_many(
            [("alice", f"peer{n % 2}", True, f"m{n}", NOW + n) for n in range(10)], ALL, FOREVER
        )
        self.add_many([("alice", "peer0", False, "new", NOW + 10)], 8, FOREVER)
        (positions, count) = self.sqlite._conn.execute(
            "SELECT json_array_length(entries), count FROM history_chunks WHERE normalized = ?",
            ("alice",),
        ).fetchone()
        self.assertEqual((positions, count), (11, 8))
        for peer in ("peer0", "peer1"):
            self.assertEqual(
                self.successResultOf(self.sqlite.recent_history("alice", peer, 100)),
                self.successResultOf(self.memory.recent_history("alice", peer, 100)),
            )
        texts = [
            e.text for e in self.successResultOf(self.sqlite.recent_history("alice", None, 100))
        ]
        self.assertEqual(texts, [f"m{n}" for n in range(3, 10)] + ["new"])

    def test_pruning_by_age_inside_chunks(self) -> None:
        """Entries too old are dropped wherever they are, in the middle of
        chunks too (a clock that stepped back), the chunks left rewritten."""
        times = [NOW + (n * 37) % 100 for n in range(150)]
        self.add_many(
            [("alice", "bob", True, f"m{n}", at) for n, at in enumerate(times)], ALL, FOREVER
        )
        self.add_many([("alice", "bob", True, "now", NOW + 60)], ALL, 30)
        kept = self.successResultOf(self.sqlite.recent_history("alice", None, 1000))
        self.assertEqual(len(kept), sum(1 for at in times if at >= NOW + 30) + 1)
        self.add_many([("alice", "bob", True, "later", NOW + 1000)], ALL, 0)
        self.assertEqual(self.sizes("alice"), [1])


class SQLiteHistoryFileTests(SynchronousTestCase):
    """What only a file-backed store promises."""

    def rows(self, path: str) -> int:
        """How many entries the file holds: in the JSON of its chunks."""
        conn = sqlite3.connect(path)
        try:
            return conn.execute(
                "SELECT coalesce(sum(json_array_length(entries)), 0) FROM history_chunks"
            ).fetchone()[0]
        finally:
            conn.close()

    def open(self, path: str) -> SQLiteUserStore:
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        return store

    def test_reopen_keeps_history(self) -> None:
        """The history survives closing and reopening (a restart), and the
        ids go on from where they were."""
        path = self.mktemp()
        store = open_inline(path)
        self.successResultOf(store.create_account("alice", "secret"))
        self.successResultOf(store.add_history("alice", "Bob", True, "hi", NOW, 10, 60))
        self.successResultOf(store.add_history("alice", "Bob", False, "hey", NOW + 1, 10, 60))
        before = self.successResultOf(store.recent_history("alice", None, 10))
        self.successResultOf(store.stop())

        store = self.open(path)
        self.assertEqual(self.successResultOf(store.recent_history("alice", "bob", 10)), before)
        self.successResultOf(store.add_history("alice", "Bob", True, "more", NOW + 2, 10, 60))
        after = self.successResultOf(store.recent_history("alice", None, 10))
        self.assertEqual(after[:2], before)
        self.assertGreater(after[2].id, before[1].id)

    def test_pruned_entries_leave_the_file(self) -> None:
        """Storage stays bounded: however many adds, the file holds the
        owner's ``limit`` entries and, in the chunk the limit cuts into,
        fewer than a chunk's more (trimmed: never read again, gone with the
        chunk), and none past the age."""
        path = self.mktemp()
        store = self.open(path)
        self.successResultOf(store.create_account("alice", "secret"))
        for n in range(300):
            self.successResultOf(store.add_history("alice", "bob", True, "x", NOW + n, 7, 3600))
            self.assertLess(self.rows(path), 7 + history_store.CHUNK_ENTRIES)
        self.assertEqual(len(self.successResultOf(store.recent_history("alice", None, 100))), 7)
        for n in range(3):
            batch = grouped([("alice", "bob", True, f"{n}.{k}", NOW + 300 + n) for k in range(100)])
            self.successResultOf(store.add_history_many(batch, 150, 3600))
            self.assertLess(self.rows(path), 150 + history_store.CHUNK_ENTRIES)
        self.successResultOf(store.add_history("alice", "bob", True, "x", NOW + 10_000, 7, 3600))
        self.assertEqual(self.rows(path), 1)

    def test_deleted_account_rows_leave_the_file(self) -> None:
        """Deleting an account removes its chunks (the cascade); others' stay."""
        path = self.mktemp()
        store = self.open(path)
        for name in ("alice", "bob"):
            self.successResultOf(store.create_account(name, "secret"))
            for _ in range(3):
                self.successResultOf(store.add_history(name, "carol", True, "x", NOW, 10, 60))
        self.assertTrue(self.successResultOf(store.delete_account("alice")))
        self.assertEqual(self.rows(path), 3)
        self.assertEqual(self.successResultOf(store.clear_history("bob")), 3)
        self.assertEqual(self.rows(path), 0)


class SQLiteHistoryThreadTests(TestCase):
    """The real thing: the operations on the dedicated DB thread."""

    @inlineCallbacks
    def test_round_trip(self) -> Any:
        """An add, a read and a clear run on the DB thread and come back."""
        store = SQLiteUserStore.open(self.mktemp())
        store.start()
        self.addCleanup(store.stop)
        yield store.create_account("alice", "secret")
        d = store.add_history("alice", "Bob", True, "hi", NOW, 10, 60)
        self.assertNoResult(d)
        yield d
        (entry,) = yield store.recent_history("ALICE", "bob", 10)
        self.assertEqual(summary([entry]), [("Bob", True, "hi", NOW)])
        self.assertEqual((yield store.clear_history("alice")), 1)
