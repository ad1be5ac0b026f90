"""
Tests for aimserver.store.bart_items: the IBartStore contract (buddy icons
kept once per MD5 with the type of their first upload, each account owning
its latest uploads, items listed by type), run against the
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
    MAX_SEARCH_LIMIT,
    IBartStore,
    NoSuchAccount,
    StoreError,
)
from aimserver.store.memory import MemoryUserStore
from aimserver.store.sqlite import SQLiteUserStore
from aimserver.wire.bart import TYPE_BUDDY_ICON, TYPE_SMALL_BUDDY_ICON
from tests.test_store import NOW, StoreContractMixin, contract_settings, open_inline

ICON = b"GIF89a icon of alice"
OTHER = b"GIF89a another icon"


def md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


def icon(n: int) -> bytes:
    return b"GIF89a icon number %d" % n


# A model run: (account, which of a few icons, as which type) uploads.
uploads = st.lists(
    st.tuples(st.sampled_from(["alice", "bob"]), st.integers(0, 11), st.sampled_from([0, 1, 7])),
    max_size=30,
)
#: Not a u16, or not an int: refused as a BART type.
BAD_TYPES = (-1, 0x10000, True, 1.0, "1", None)


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

    def test_type_of_the_first_upload_kept(self) -> None:
        """An item is listed under the type of the upload that stored it: the
        same bytes uploaded again under another type, by anyone, stay where
        they are; without a type, an upload is a buddy icon."""
        self.add("alice")
        self.add("bob")
        small = self.ok(self.store.add_bart_item("alice", ICON, NOW, TYPE_SMALL_BUDDY_ICON))
        self.assertEqual(self.ok(self.store.add_bart_item("bob", ICON, NOW + 1, 1)), small)
        self.ok(self.store.add_bart_item("alice", ICON, NOW + 2, TYPE_BUDDY_ICON))
        big = self.ok(self.store.add_bart_item("bob", OTHER, NOW))
        self.ok(self.store.add_bart_item("alice", OTHER, NOW, TYPE_SMALL_BUDDY_ICON))
        self.assertEqual(self.ok(self.store.list_bart_items_by_type(0, 10)), [small])
        self.assertEqual(self.ok(self.store.list_bart_items_by_type(1, 10)), [big])
        self.assertEqual(self.ok(self.store.get_bart_item(small)), ICON)

    def test_any_u16_type_kept(self) -> None:
        """Every u16 is a type the store keeps and lists (the BART service
        decides which it accepts)."""
        self.add("alice")
        for n, bart_type in enumerate((0, 2, 0x7F, 0xFFFF)):
            digest = self.ok(self.store.add_bart_item("alice", icon(n), NOW, bart_type))
            self.assertEqual(self.ok(self.store.list_bart_items_by_type(bart_type, 1)), [digest])
        self.assertEqual(self.ok(self.store.list_bart_items_by_type(3, MAX_SEARCH_LIMIT)), [])

    def test_listed_by_type_newest_first_up_to_limit(self) -> None:
        """One type's items are listed most recently stored first (whatever
        ``now`` says, and an upload of a stored item does not move it), at
        most ``limit`` of them, across every account."""
        self.add("alice")
        self.add("bob")
        a = self.ok(self.store.add_bart_item("alice", icon(1), NOW, 1))
        self.ok(self.store.add_bart_item("alice", icon(2), NOW, 0))
        b = self.ok(self.store.add_bart_item("bob", icon(3), NOW - 50, 1))
        c = self.ok(self.store.add_bart_item("alice", icon(4), NOW - 100, 1))
        self.ok(self.store.add_bart_item("bob", icon(1), NOW + 100, 1))
        self.assertEqual(self.ok(self.store.list_bart_items_by_type(1, 10)), [c, b, a])
        self.assertEqual(self.ok(self.store.list_bart_items_by_type(1, 2)), [c, b])
        self.assertEqual(self.ok(self.store.list_bart_items_by_type(1, 1)), [c])

    def test_unowned_items_not_listed(self) -> None:
        """An item nobody owns any longer, dropped past the allowance or with
        its only owner, is not listed; stored anew, it takes its new type."""
        self.add("alice")
        self.add("bob")
        first = self.ok(self.store.add_bart_item("alice", icon(0), NOW, 0))
        for n in range(1, MAX_BART_ITEMS_PER_ACCOUNT + 1):
            self.ok(self.store.add_bart_item("alice", icon(n), NOW, 1))
        self.assertEqual(self.ok(self.store.list_bart_items_by_type(0, 10)), [])
        mine = self.ok(self.store.add_bart_item("bob", ICON, NOW, 0))
        self.assertEqual(self.ok(self.store.list_bart_items_by_type(0, 10)), [mine])
        self.ok(self.store.delete_account("bob"))
        self.assertEqual(self.ok(self.store.list_bart_items_by_type(0, 10)), [])
        self.ok(self.store.add_bart_item("alice", icon(0), NOW, 2))
        self.assertEqual(self.ok(self.store.list_bart_items_by_type(2, 10)), [first])
        self.assertNotIn(first, self.ok(self.store.list_bart_items_by_type(1, 10)))

    def test_refused_type_changes_nothing(self) -> None:
        """A type that is not a u16 int is refused and nothing changes: the
        data is not stored, and the account's uploads stay as they were."""
        self.add("alice")
        kept = self.ok(self.store.add_bart_item("alice", ICON, NOW))
        for bart_type in BAD_TYPES:
            self.fails(self.store.add_bart_item("alice", OTHER, NOW, bart_type), StoreError)
            self.fails(self.store.add_bart_item("alice", ICON, NOW, bart_type), StoreError)
        self.assertFalse(self.ok(self.store.has_bart_item(md5(OTHER))))
        self.assertEqual(self.ok(self.store.list_bart_items("alice")), [kept])
        self.assertEqual(self.ok(self.store.list_bart_items_by_type(1, 10)), [kept])

    def test_refused_listing(self) -> None:
        """Listing takes a u16 type and a limit from 1 to MAX_SEARCH_LIMIT."""
        self.add("alice")
        self.ok(self.store.add_bart_item("alice", ICON, NOW))
        for bart_type in BAD_TYPES:
            self.fails(self.store.list_bart_items_by_type(bart_type, 10), StoreError)
        for limit in (0, -1, MAX_SEARCH_LIMIT + 1, True, 2.0, "3", None):
            self.fails(self.store.list_bart_items_by_type(1, limit), StoreError)

    @contract_settings(max_examples=40)
    @given(uploads)
    def test_model(self, run: list[tuple[str, int, int]]) -> None:
        """Any sequence of uploads leaves each account owning its latest
        distinct uploads (at most MAX_BART_ITEMS_PER_ACCOUNT, newest first),
        exactly the items someone owns readable, and each listed under the
        type it was stored with, most recently stored first."""
        store = self.make_store()
        for name in ("alice", "bob"):
            self.ok(store.create_account(name, "secret"))
        owned: dict[str, list[bytes]] = {"alice": [], "bob": []}
        #: Hash -> type, in the order the items were stored.
        stored: dict[bytes, int] = {}
        for name, n, bart_type in run:
            digest = md5(icon(n))
            self.assertEqual(self.ok(store.add_bart_item(name, icon(n), NOW, bart_type)), digest)
            stored.setdefault(digest, bart_type)
            mine = [digest] + [h for h in owned[name] if h != digest]
            owned[name] = mine[:MAX_BART_ITEMS_PER_ACCOUNT]
            live = set(owned["alice"]) | set(owned["bob"])
            stored = {h: t for h, t in stored.items() if h in live}
        for name, hashes in owned.items():
            self.assertEqual(self.ok(store.list_bart_items(name)), hashes)
        for n in range(12):
            found = self.ok(store.get_bart_item(md5(icon(n))))
            self.assertEqual(found, icon(n) if md5(icon(n)) in stored else None)
        for bart_type in (0, 1, 7):
            expected = [h for h, t in reversed(stored.items()) if t == bart_type]
            self.assertEqual(self.ok(store.list_bart_items_by_type(bart_type, 12)), expected)


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

    def test_reopen_keeps_types(self) -> None:
        """Each item's type, and the order items were stored in, survive
        closing and reopening."""
        path = self.mktemp()
        store = open_inline(path)
        self.successResultOf(store.create_account("alice", "secret"))
        small = self.successResultOf(store.add_bart_item("alice", OTHER, NOW, 0))
        older = self.successResultOf(store.add_bart_item("alice", icon(1), NOW, 1))
        newer = self.successResultOf(store.add_bart_item("alice", icon(2), NOW, 1))
        self.successResultOf(store.stop())

        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.assertEqual(self.successResultOf(store.list_bart_items_by_type(0, 5)), [small])
        self.assertEqual(self.successResultOf(store.list_bart_items_by_type(1, 5)), [newer, older])

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
