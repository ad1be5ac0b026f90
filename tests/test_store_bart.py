"""
Tests for aimserver.store.bart_items: the IBartStore contract (buddy icons
kept once per MD5, each account owning its latest uploads), run against the
memory store, the SQLite store (file and ``:memory:``) and the account cache
in front of each; then what only the SQLite file promises (a reopen keeps
the icons; what is dropped leaves the file).
"""

from __future__ import annotations

import hashlib
import sqlite3

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from aimserver.store.cache import CachedUserStore
from aimserver.store.interfaces import (
    MAX_BART_ITEM_BYTES,
    MAX_BART_ITEMS_PER_ACCOUNT,
    IBartStore,
    NoSuchAccount,
    StoreError,
)
from aimserver.store.memory import MemoryUserStore
from aimserver.store.sqlite import SQLiteUserStore
from tests.test_store import NOW, StoreContractMixin, contract_settings, open_inline

ICON = b"GIF89a icon of alice"
OTHER = b"GIF89a another icon"


def md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


def icon(n: int) -> bytes:
    return b"GIF89a icon number %d" % n


# A model run: (account, which of a few icons) uploads.
uploads = st.lists(st.tuples(st.sampled_from(["alice", "bob"]), st.integers(0, 11)), max_size=30)


class BartStoreContractMixin(StoreContractMixin):
    """The IBartStore contract."""

    def test_provides_bart_store(self) -> None:
        """The store provides every IBartStore method."""
        self.assertTrue(verifyObject(IBartStore, self.store))

    def test_upload_is_kept_by_its_md5(self) -> None:
        """An upload answers with the MD5 of its data, under which the bytes
        come back whole; the uploader owns it, under any spelling of its name."""
        self.add("Alice")
        digest = self.ok(self.store.add_bart_item("A LICE", ICON, NOW))
        self.assertEqual(digest, md5(ICON))
        self.assertEqual(self.ok(self.store.get_bart_item(digest)), ICON)
        self.assertTrue(self.ok(self.store.has_bart_item(digest)))
        self.assertEqual(self.ok(self.store.list_bart_items("alice")), [digest])

    def test_every_byte_value_kept(self) -> None:
        """Data is binary: every byte value, up to MAX_BART_ITEM_BYTES."""
        self.add("alice")
        for data in (bytes(range(256)), b"\x00", b"\xff" * MAX_BART_ITEM_BYTES):
            digest = self.ok(self.store.add_bart_item("alice", data, NOW))
            self.assertEqual(self.ok(self.store.get_bart_item(digest)), data)

    def test_unknown_hash(self) -> None:
        """Any hash nobody uploaded, of any length, is not found."""
        self.add("alice")
        self.ok(self.store.add_bart_item("alice", ICON, NOW))
        for digest in (md5(OTHER), b"", b"\x02\x01\xd2\x04\x72", b"x" * 300):
            self.assertIsNone(self.ok(self.store.get_bart_item(digest)))
            self.assertFalse(self.ok(self.store.has_bart_item(digest)))

    def test_hash_must_be_bytes(self) -> None:
        for digest in ("abc", None, 5):
            self.fails(self.store.get_bart_item(digest), StoreError)
            self.fails(self.store.has_bart_item(digest), StoreError)

    def test_same_bytes_shared(self) -> None:
        """Two accounts uploading the same bytes share one item, owned by both."""
        self.add("alice")
        self.add("bob")
        first = self.ok(self.store.add_bart_item("alice", ICON, NOW))
        second = self.ok(self.store.add_bart_item("bob", ICON, NOW + 1))
        self.assertEqual(first, second)
        self.assertEqual(self.ok(self.store.list_bart_items("alice")), [first])
        self.assertEqual(self.ok(self.store.list_bart_items("bob")), [first])

    def test_newest_first_and_reupload_moves_to_front(self) -> None:
        """Owned items are listed newest upload first; uploading one again
        makes it the newest (whatever ``now`` says)."""
        self.add("alice")
        a = self.ok(self.store.add_bart_item("alice", icon(1), NOW))
        b = self.ok(self.store.add_bart_item("alice", icon(2), NOW))
        c = self.ok(self.store.add_bart_item("alice", icon(3), NOW - 50))
        self.assertEqual(self.ok(self.store.list_bart_items("alice")), [c, b, a])
        self.ok(self.store.add_bart_item("alice", icon(1), NOW - 100))
        self.assertEqual(self.ok(self.store.list_bart_items("alice")), [a, c, b])

    def test_oldest_dropped_past_the_allowance(self) -> None:
        """An upload past MAX_BART_ITEMS_PER_ACCOUNT drops the oldest, which
        nobody else owns, so it is gone."""
        self.add("alice")
        hashes = [
            self.ok(self.store.add_bart_item("alice", icon(n), NOW + n))
            for n in range(MAX_BART_ITEMS_PER_ACCOUNT + 1)
        ]
        owned = self.ok(self.store.list_bart_items("alice"))
        self.assertEqual(owned, hashes[::-1][:MAX_BART_ITEMS_PER_ACCOUNT])
        self.assertIsNone(self.ok(self.store.get_bart_item(hashes[0])))
        self.assertFalse(self.ok(self.store.has_bart_item(hashes[0])))
        self.assertEqual(self.ok(self.store.get_bart_item(hashes[1])), icon(1))

    def test_dropped_item_kept_while_another_owns_it(self) -> None:
        """Alice's dropping an upload Bob owns too leaves it to Bob."""
        self.add("alice")
        self.add("bob")
        shared = self.ok(self.store.add_bart_item("alice", ICON, NOW))
        self.ok(self.store.add_bart_item("bob", ICON, NOW))
        for n in range(MAX_BART_ITEMS_PER_ACCOUNT):
            self.ok(self.store.add_bart_item("alice", icon(n), NOW))
        self.assertNotIn(shared, self.ok(self.store.list_bart_items("alice")))
        self.assertEqual(self.ok(self.store.get_bart_item(shared)), ICON)

    def test_refused_data_changes_nothing(self) -> None:
        """Empty, too big or non-bytes data is refused and nothing changes."""
        self.add("alice")
        kept = self.ok(self.store.add_bart_item("alice", ICON, NOW))
        for data in (b"", b"x" * (MAX_BART_ITEM_BYTES + 1), "text", None):
            self.fails(self.store.add_bart_item("alice", data, NOW), StoreError)
        self.assertEqual(self.ok(self.store.list_bart_items("alice")), [kept])
        self.assertFalse(self.ok(self.store.has_bart_item(md5(b"x" * (MAX_BART_ITEM_BYTES + 1)))))

    def test_unknown_account(self) -> None:
        """Uploading for a missing account is NoSuchAccount and keeps nothing;
        its list is empty."""
        self.fails(self.store.add_bart_item("nobody", ICON, NOW), NoSuchAccount)
        self.assertFalse(self.ok(self.store.has_bart_item(md5(ICON))))
        self.assertEqual(self.ok(self.store.list_bart_items("nobody")), [])

    def test_delete_account(self) -> None:
        """A deleted account owns nothing: what it alone owned is gone, what
        another owns stays, and a new account of that name starts empty."""
        self.add("alice")
        self.add("bob")
        mine = self.ok(self.store.add_bart_item("alice", ICON, NOW))
        shared = self.ok(self.store.add_bart_item("alice", OTHER, NOW))
        self.ok(self.store.add_bart_item("bob", OTHER, NOW))
        self.ok(self.store.delete_account("alice"))
        self.assertIsNone(self.ok(self.store.get_bart_item(mine)))
        self.assertFalse(self.ok(self.store.has_bart_item(mine)))
        self.assertEqual(self.ok(self.store.get_bart_item(shared)), OTHER)
        self.add("alice")
        self.assertEqual(self.ok(self.store.list_bart_items("alice")), [])
        # Uploaded again, it is back.
        self.assertEqual(self.ok(self.store.add_bart_item("alice", ICON, NOW)), mine)
        self.assertEqual(self.ok(self.store.get_bart_item(mine)), ICON)

    @contract_settings(max_examples=40)
    @given(uploads)
    def test_model(self, run: list[tuple[str, int]]) -> None:
        """Any sequence of uploads leaves each account owning its latest
        distinct uploads (at most MAX_BART_ITEMS_PER_ACCOUNT, newest first),
        and exactly the items someone owns readable."""
        store = self.make_store()
        for name in ("alice", "bob"):
            self.ok(store.create_account(name, "secret"))
        owned: dict[str, list[bytes]] = {"alice": [], "bob": []}
        for name, n in run:
            digest = md5(icon(n))
            self.assertEqual(self.ok(store.add_bart_item(name, icon(n), NOW)), digest)
            mine = [digest] + [h for h in owned[name] if h != digest]
            owned[name] = mine[:MAX_BART_ITEMS_PER_ACCOUNT]
        for name, hashes in owned.items():
            self.assertEqual(self.ok(store.list_bart_items(name)), hashes)
        live = set(owned["alice"]) | set(owned["bob"])
        for n in range(12):
            found = self.ok(store.get_bart_item(md5(icon(n))))
            self.assertEqual(found, icon(n) if md5(icon(n)) in live else None)


class MemoryBartStoreTests(BartStoreContractMixin, SynchronousTestCase):
    def make_store(self) -> MemoryUserStore:
        return MemoryUserStore(self.clock)

    def test_deleted_account_items_leave_memory(self) -> None:
        """What only a deleted account owned is no longer held at all."""
        self.add("alice")
        self.add("bob")
        self.ok(self.store.add_bart_item("alice", ICON, NOW))
        self.ok(self.store.add_bart_item("alice", OTHER, NOW))
        self.ok(self.store.add_bart_item("bob", OTHER, NOW))
        self.ok(self.store.delete_account("alice"))
        self.assertEqual(set(self.store._bart_items), {md5(OTHER)})


class SQLiteBartStoreTests(BartStoreContractMixin, SynchronousTestCase):
    def make_store(self) -> SQLiteUserStore:
        store = open_inline(self.mktemp(), self.clock)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        return store


class InMemorySQLiteBartStoreTests(BartStoreContractMixin, SynchronousTestCase):
    def make_store(self) -> SQLiteUserStore:
        store = open_inline(":memory:", self.clock)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        return store


class CachedBartStoreTests(BartStoreContractMixin, SynchronousTestCase):
    """The account cache forwards the role untouched."""

    def make_store(self) -> CachedUserStore:
        store = open_inline(":memory:", self.clock)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        return CachedUserStore(store, self.clock)

    def test_forwarded_not_wrapped(self) -> None:
        """The cache's methods of this role are the wrapped store's own."""
        for name in IBartStore.names():
            self.assertEqual(getattr(self.store, name), getattr(self.store.store, name))


class SQLiteBartFileTests(SynchronousTestCase):
    """What only a file-backed store promises."""

    def rows(self, path: str, table: str) -> int:
        conn = sqlite3.connect(path)
        try:
            return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        finally:
            conn.close()

    def test_reopen_keeps_icons(self) -> None:
        """Icons and who owns them, in order, survive closing and reopening:
        a restart keeps every icon."""
        path = self.mktemp()
        store = open_inline(path)
        self.successResultOf(store.create_account("alice", "secret"))
        first = self.successResultOf(store.add_bart_item("alice", OTHER, NOW))
        digest = self.successResultOf(store.add_bart_item("alice", ICON, NOW))
        self.successResultOf(store.stop())

        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.assertEqual(self.successResultOf(store.get_bart_item(digest)), ICON)
        self.assertEqual(self.successResultOf(store.list_bart_items("alice")), [digest, first])
        # The order goes on from where it was.
        self.successResultOf(store.add_bart_item("alice", OTHER, NOW))
        self.assertEqual(self.successResultOf(store.list_bart_items("alice")), [first, digest])

    def test_dropped_items_leave_the_file(self) -> None:
        """Storage stays bounded: however many uploads, the file holds at most
        MAX_BART_ITEMS_PER_ACCOUNT items and ownerships for one account."""
        path = self.mktemp()
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.successResultOf(store.create_account("alice", "secret"))
        for n in range(3 * MAX_BART_ITEMS_PER_ACCOUNT):
            self.successResultOf(store.add_bart_item("alice", icon(n), NOW))
        self.assertEqual(self.rows(path, "bart_items"), MAX_BART_ITEMS_PER_ACCOUNT)
        self.assertEqual(self.rows(path, "bart_owners"), MAX_BART_ITEMS_PER_ACCOUNT)

    def test_deleted_account_items_leave_the_file(self) -> None:
        """Deleting an account removes the items it alone owned, and its
        ownerships; an item another account owns stays, owned by it."""
        path = self.mktemp()
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        for name in ("alice", "bob"):
            self.successResultOf(store.create_account(name, "secret"))
        for n in range(3):
            self.successResultOf(store.add_bart_item("alice", icon(n), NOW))
        self.successResultOf(store.add_bart_item("alice", OTHER, NOW))
        self.successResultOf(store.add_bart_item("bob", OTHER, NOW))
        self.assertTrue(self.successResultOf(store.delete_account("alice")))
        self.assertEqual(self.rows(path, "bart_items"), 1)
        self.assertEqual(self.rows(path, "bart_owners"), 1)
        self.assertEqual(self.successResultOf(store.get_bart_item(md5(OTHER))), OTHER)
        self.assertEqual(self.successResultOf(store.list_bart_items("bob")), [md5(OTHER)])

    def test_one_row_per_hash(self) -> None:
        """The same bytes from two accounts are one item row."""
        path = self.mktemp()
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        for name in ("alice", "bob"):
            self.successResultOf(store.create_account(name, "secret"))
            self.successResultOf(store.add_bart_item(name, ICON, NOW))
        self.assertEqual(self.rows(path, "bart_items"), 1)
        self.assertEqual(self.rows(path, "bart_owners"), 2)
