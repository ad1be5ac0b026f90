"""
Tests for aimserver.store.motd: the IMotdStore contract (the digest of the
MOTD each user was last shown, gone with the account), on the memory store,
the SQLite store and the account cache in front of each.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from aimserver.store.cache import CachedUserStore
from aimserver.store.interfaces import IMotdStore, StoreError
from aimserver.store.memory import MemoryUserStore
from aimserver.store.sqlite import SQLiteUserStore
from tests.test_store import StoreContractMixin, open_inline


class MotdStoreContractMixin(StoreContractMixin):
    def test_provides_motd_store(self) -> None:
        self.assertTrue(verifyObject(IMotdStore, self.store))

    def test_seen_by_any_spelling(self) -> None:
        """Nothing shown at first; a digest recorded under one spelling is
        read under any; the next one replaces it."""
        self.add("Bob Smith")
        self.assertIsNone(self.ok(self.store.get_motd_seen("bobsmith")))
        self.assertTrue(self.ok(self.store.set_motd_seen("BOB SMITH", "0a1b")))
        self.assertEqual(self.ok(self.store.get_motd_seen("bobsmith")), "0a1b")
        self.assertTrue(self.ok(self.store.set_motd_seen("bobsmith", "ffff")))
        self.assertEqual(self.ok(self.store.get_motd_seen("Bob Smith")), "ffff")

    def test_no_account(self) -> None:
        self.assertFalse(self.ok(self.store.set_motd_seen("Nobody", "0a1b")))
        self.assertIsNone(self.ok(self.store.get_motd_seen("Nobody")))

    def test_bad_digest(self) -> None:
        self.add("Bob Smith")
        for digest in ("", "XYZ", "0" * 65, "0a 1b", 5):
            self.fails(self.store.set_motd_seen("bobsmith", digest), StoreError)  # type: ignore[arg-type]
        self.assertIsNone(self.ok(self.store.get_motd_seen("bobsmith")))

    def test_gone_with_the_account(self) -> None:
        self.add("Bob Smith")
        self.ok(self.store.set_motd_seen("bobsmith", "0a1b"))
        self.ok(self.store.delete_account("bobsmith"))
        self.add("Bob Smith")
        self.assertIsNone(self.ok(self.store.get_motd_seen("bobsmith")))


class MemoryMotdStoreTests(MotdStoreContractMixin, SynchronousTestCase):
    def make_store(self) -> MemoryUserStore:
        return MemoryUserStore(self.clock)


class SQLiteMotdStoreTests(MotdStoreContractMixin, SynchronousTestCase):
    def make_store(self) -> SQLiteUserStore:
        store = open_inline(self.mktemp(), self.clock)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        return store


class CachedMotdStoreTests(MotdStoreContractMixin, SynchronousTestCase):
    def make_store(self) -> CachedUserStore:
        return CachedUserStore(MemoryUserStore(self.clock), self.clock)
