"""
Tests for aimserver.store.history: the IHistoryStore contract (each
account's conversation history, read newest-last, pruned by count and by age
as it grows, gone with the account), run against the memory store, the
SQLite store (file and ``:memory:``) and the account cache in front of one;
then the memory and SQLite stores side by side on random runs, and what only
the SQLite file promises (a reopen keeps the history; what is pruned leaves
the file).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from aimserver.store.cache import CachedUserStore
from aimserver.store.interfaces import (
    MAX_HISTORY_LIMIT,
    MAX_HISTORY_PEER_BYTES,
    MAX_HISTORY_TEXT_BYTES,
    HistoryEntry,
    IHistoryStore,
    NoSuchAccount,
    StoreError,
)
from aimserver.store.memory import MemoryUserStore
from aimserver.store.sqlite import SQLiteUserStore
from tests.test_store import NOW, StoreContractMixin, contract_settings, open_inline

#: Keep everything: more entries and more seconds than any test adds.
ALL = 10_000
FOREVER = 10**9


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
        """add_history_many records each entry as add_history would, in
        order, prunes each owner once (to its limit and age, the newest
        kept), and skips entries of no account or out of bounds without
        losing the others."""
        self.add("alice")
        self.add("bob")
        self.record("alice", "bob", "old", NOW - 1000)
        batch = [
            ("alice", "bob", True, "one", NOW),
            ("nobody", "bob", True, "lost", NOW),
            ("bob", "alice", False, "one", NOW),
            ("alice", "bob", True, "x" * 9000, NOW),
            ("ALICE", "carol", False, "two", NOW + 1),
            ("alice", "bob", True, "three", NOW + 2),
        ]
        self.assertEqual(self.ok(self.store.add_history_many(batch, 2, 500)), 4)
        self.assertEqual([e.text for e in self.recent("alice")], ["two", "three"])
        self.assertEqual([e.text for e in self.recent("bob")], ["one"])
        # The age, from the owner's last entry of the batch: "older" goes.
        self.record("bob", "alice", "older", NOW - 1000)
        self.ok(self.store.add_history_many([("bob", "x", True, "new", NOW)], 10, 500))
        self.assertEqual([e.text for e in self.recent("bob")], ["one", "new"])
        self.assertEqual(self.ok(self.store.add_history_many([], 10, 0)), 0)
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
        """Each account has its own history; ids are unique across them."""
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
        ids = [e.id for e in alice + bob]
        self.assertEqual(len(set(ids)), 3)
        self.assertLess(alice[0].id, bob[0].id)

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
        others' stay; the history then starts again with higher ids than any
        entry held."""
        self.add("alice")
        self.add("bob")
        for n in range(3):
            self.record("alice", "bob", f"m{n}")
        self.record("bob", "alice", "bob's")
        self.assertEqual(self.ok(self.store.clear_history("A Lice")), 3)
        self.assertEqual(self.recent("alice"), [])
        self.assertEqual(self.ok(self.store.clear_history("alice")), 0)
        (kept,) = self.recent("bob")
        self.record("alice", "bob", "again")
        (again,) = self.recent("alice")
        self.assertGreater(again.id, kept.id)

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
#: Each kind of op, adds the most often.
op_kinds: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "add": adds,
    "recent": st.tuples(st.just("recent"), owners, st.one_of(st.none(), peers), st.integers(0, 6)),
    "clear": st.tuples(st.just("clear"), owners),
    "recreate": st.tuples(st.just("recreate"), owners),
}
history_ops = st.lists(
    st.sampled_from(["add"] * 6 + ["recent"] * 2 + ["clear", "recreate"]).flatmap(op_kinds.get),
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
    """The contract in a few lines, ids as SQLite gives an INTEGER PRIMARY
    KEY: one more than the highest held."""

    def __init__(self) -> None:
        self.histories: dict[str, list[HistoryEntry]] = {name_key(name): [] for name in ACCOUNTS}

    def apply(self, op: tuple[Any, ...]) -> tuple[str, Any]:
        kind, owner, *args = op
        key = name_key(owner)
        history = self.histories.get(key)
        if kind == "add":
            peer, outgoing, text, at, limit, keep_seconds = args
            if len(text.encode()) > MAX_HISTORY_TEXT_BYTES or limit < 1:
                return ("error", StoreError)
            if history is None:
                return ("error", NoSuchAccount)
            held = [e.id for entries in self.histories.values() for e in entries]
            entry = HistoryEntry(peer, outgoing, text, at, max(held, default=0) + 1)
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
            return ("ok", len(history))
        if history is not None:
            self.histories[key] = []
        return ("ok", history is not None)


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


class SQLiteHistoryStoreTests(HistoryStoreContractMixin, SynchronousTestCase):
    def make_store(self) -> SQLiteUserStore:
        store = open_inline(self.mktemp(), self.clock)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
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
    def make_store(self) -> SQLiteUserStore:
        store = open_inline(":memory:", self.clock)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        return store


class CachedHistoryStoreTests(HistoryStoreContractMixin, SynchronousTestCase):
    """The account cache forwards the role untouched."""

    def make_store(self) -> CachedUserStore:
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
    @given(history_ops)
    def test_same_answers(self, ops: list[tuple[Any, ...]]) -> None:
        """The same run of adds, reads, clears and account deletions on both
        stores gives the same answers, step by step (ids included), and
        leaves the same histories, to which the same ids come next."""
        memory = MemoryUserStore()
        sqlite = open_inline(":memory:")
        try:
            for store in (memory, sqlite):
                for name in ACCOUNTS:
                    self.successResultOf(store.create_account(name, "secret"))
            for op in [*ops, *closing_ops]:
                self.assertEqual(outcome(apply(sqlite, op)), outcome(apply(memory, op)), op)
        finally:
            self.successResultOf(sqlite.stop())


class SQLiteHistoryFileTests(SynchronousTestCase):
    """What only a file-backed store promises."""

    def rows(self, path: str) -> int:
        conn = sqlite3.connect(path)
        try:
            return conn.execute("SELECT COUNT(*) FROM history").fetchone()[0]
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
        """Storage stays bounded: however many adds, the file holds at most
        ``limit`` rows for the owner, and none past the age."""
        path = self.mktemp()
        store = self.open(path)
        self.successResultOf(store.create_account("alice", "secret"))
        for n in range(30):
            self.successResultOf(store.add_history("alice", "bob", True, "x", NOW + n, 7, 3600))
        self.assertEqual(self.rows(path), 7)
        self.successResultOf(store.add_history("alice", "bob", True, "x", NOW + 10_000, 7, 3600))
        self.assertEqual(self.rows(path), 1)

    def test_deleted_account_rows_leave_the_file(self) -> None:
        """Deleting an account removes its rows (the cascade); others' stay."""
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
