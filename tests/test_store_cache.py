"""The account cache in front of the store: the same contract, and fewer lookups."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aimserver.store.cache import ACCOUNT_WRITERS, CachedUserStore
from aimserver.store.interfaces import USER_STORE_ROLES, Account
from aimserver.store.memory import MemoryUserStore
from tests.test_store import UserStoreContractMixin, open_inline


class CachedMemoryStoreTests(UserStoreContractMixin, SynchronousTestCase):
    """The whole IUserStore contract holds through the cache."""

    def make_store(self) -> CachedUserStore:
        return CachedUserStore(MemoryUserStore(self.clock), self.clock)


class CachedSQLiteStoreTests(UserStoreContractMixin, SynchronousTestCase):
    def make_store(self) -> CachedUserStore:
        store = open_inline(self.mktemp(), self.clock)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        return CachedUserStore(store, self.clock)


class CountingStore(MemoryUserStore):
    def __init__(self, clock: Any) -> None:
        super().__init__(clock)
        self.lookups = 0

    def get_account(self, screen_name: str) -> Deferred[Any]:
        self.lookups += 1
        return super().get_account(screen_name)


class CacheBehaviourTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.backing = CountingStore(self.clock)
        self.successResultOf(self.backing.create_account("Alice", "secret"))
        self.store = CachedUserStore(self.backing, self.clock, ttl=10)

    def test_repeated_lookups_hit_the_store_once(self) -> None:
        """The three lookups of one sign-on cost one store round trip."""
        for name in ("Alice", "alice", "A L I C E"):
            self.assertEqual(
                self.successResultOf(self.store.get_account(name)).screen_name, "Alice"
            )
        self.assertEqual(self.backing.lookups, 1)

    def test_entries_expire(self) -> None:
        """After the TTL the store is asked again, so another process's change
        (the admin CLI) takes effect."""
        self.successResultOf(self.store.get_account("Alice"))
        self.successResultOf(self.backing.set_suspended("Alice", True))
        self.assertFalse(self.successResultOf(self.store.get_account("Alice")).suspended)
        self.clock.advance(10)
        self.assertTrue(self.successResultOf(self.store.get_account("Alice")).suspended)

    def test_writes_through_the_cache_take_effect_at_once(self) -> None:
        """Suspending, warning or deleting through this store is seen by the
        next lookup."""
        self.successResultOf(self.store.get_account("Alice"))
        self.successResultOf(self.store.set_suspended("Alice", True))
        self.assertTrue(self.successResultOf(self.store.get_account("Alice")).suspended)
        self.successResultOf(self.store.set_warning("alice", 300, 5))
        self.assertEqual(self.successResultOf(self.store.get_account("Alice")).warning_level, 300)
        self.successResultOf(self.store.delete_account("Alice"))
        self.assertIsNone(self.successResultOf(self.store.get_account("Alice")))

    def test_unknown_names_are_not_cached(self) -> None:
        """A name created elsewhere right after a failed lookup can sign on."""
        self.assertIsNone(self.successResultOf(self.store.get_account("Bob")))
        self.successResultOf(self.backing.create_account("Bob", "secret"))
        self.assertIsNotNone(self.successResultOf(self.store.get_account("Bob")))

    def test_peek_sees_only_fresh_cached_accounts(self) -> None:
        """peek_account answers from the cache without a lookup: nothing before
        the first get, the account until the TTL or a write, never a guess."""
        self.assertIsNone(self.store.peek_account("Alice"))
        self.successResultOf(self.store.get_account("Alice"))
        self.assertEqual(self.store.peek_account("A L I C E").screen_name, "Alice")
        self.assertEqual(self.backing.lookups, 1)
        self.clock.advance(10)
        self.assertIsNone(self.store.peek_account("Alice"))
        self.successResultOf(self.store.get_account("Alice"))
        self.successResultOf(self.store.set_suspended("Alice", True))
        self.assertIsNone(self.store.peek_account("Alice"))

    def test_bounded(self) -> None:
        """The cache never holds more than max_entries accounts."""
        store = CachedUserStore(self.backing, self.clock, max_entries=3)
        for i in range(10):
            self.successResultOf(self.backing.create_account(f"User{i}", "secret"))
            self.successResultOf(store.get_account(f"User{i}"))
        self.assertEqual(len(store._accounts), 3)


class HeldStore(MemoryUserStore):
    """Lookups answer only when the test says so, and are recorded."""

    def __init__(self, clock: Any) -> None:
        super().__init__(clock)
        self.calls: list[tuple[str, Any]] = []
        self.held: list[tuple[Deferred[Any], Any]] = []

    def get_account(self, screen_name: str) -> Deferred[Any]:
        self.calls.append(("one", screen_name))
        d: Deferred[Any] = Deferred()
        self.held.append((d, super().get_account(screen_name)))
        return d

    def get_accounts(self, screen_names: Any) -> Deferred[Any]:
        self.calls.append(("many", sorted(screen_names)))
        d: Deferred[Any] = Deferred()
        self.held.append((d, super().get_accounts(screen_names)))
        return d

    def answer(self) -> None:
        d, real = self.held.pop(0)
        real.chainDeferred(d)

    def fail(self) -> None:
        d, _ = self.held.pop(0)
        d.errback(RuntimeError("database gone"))


class BatchedLookupTests(SynchronousTestCase):
    """After a restart every sign-on misses the cache: misses that arrive
    while a lookup is out go to the store together."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.backing = HeldStore(self.clock)
        for name in ("Alice", "Bob", "Carol"):
            self.successResultOf(self.backing.create_account(name, "secret"))
        self.store = CachedUserStore(self.backing, self.clock)

    def test_misses_during_a_lookup_go_as_one_batch(self) -> None:
        first = self.store.get_account("alice")
        waiting = [self.store.get_account(n) for n in ("Bob", "bob", "carol", "nobody")]
        self.assertEqual(self.backing.calls, [("one", "alice")])
        self.backing.answer()
        self.assertEqual(self.successResultOf(first).screen_name, "Alice")
        self.assertEqual(self.backing.calls[1], ("many", ["bob", "carol", "nobody"]))
        self.assertNoResult(waiting[0])
        self.backing.answer()
        results = [self.successResultOf(d) for d in waiting]
        self.assertEqual(
            [r.screen_name if r else None for r in results], ["Bob", "Bob", "Carol", None]
        )
        # Found ones are cached now; the next lookup of a miss goes alone again.
        self.assertEqual(self.store.peek_account("carol").screen_name, "Carol")
        self.store.get_account("nobody")
        self.assertEqual(self.backing.calls[-1], ("one", "nobody"))

    def test_a_failed_batch_fails_its_waiters_only(self) -> None:
        self.store.get_account("alice")
        bob = self.store.get_account("bob")
        self.backing.answer()
        self.backing.fail()
        self.failureResultOf(bob, RuntimeError)
        carol = self.store.get_account("carol")
        self.backing.answer()
        self.assertEqual(self.successResultOf(carol).screen_name, "Carol")

    def test_batches_are_bounded(self) -> None:
        from aimserver.store.cache import MAX_BATCH

        self.store.get_account("alice")
        waiting = [self.store.get_account(f"ghost{i}") for i in range(MAX_BATCH + 5)]
        self.backing.answer()
        self.assertEqual(len(self.backing.calls[1][1]), MAX_BATCH)
        self.backing.answer()
        self.assertEqual(len(self.backing.calls[2][1]), 5)
        self.backing.answer()
        self.assertEqual([self.successResultOf(d) for d in waiting], [None] * (MAX_BATCH + 5))


ALICE = Account("Alice", "key", bytes(16), bytes(16))
#: The methods the cache defines itself; it makes every other one from the roles.
CACHE_READS = {"get_account", "peek_account", "get_accounts", "list_accounts"}


class RecordingStore:
    """Any method at all: records its name and arguments and answers with a
    fired Deferred of its name (of Alice, for get_account)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        def method(*args: Any) -> Deferred[Any]:
            self.calls.append((name, args))
            return succeed(ALICE if name == "get_account" else name)

        return method


class DelegationTests(SynchronousTestCase):
    """The cache forwards every role method it does not define, whatever the
    role declares: these tests go through the interfaces, so a method added
    to a role is covered without a change to the cache or to them."""

    def setUp(self) -> None:
        self.backing = RecordingStore()
        self.store = CachedUserStore(self.backing, Clock())
        self.successResultOf(self.store.get_account("alice"))

    def methods(self, account_writers: bool) -> list[str]:
        return [
            name
            for role in USER_STORE_ROLES
            if (role in ACCOUNT_WRITERS) == account_writers
            for name in role.names()
            if name not in CACHE_READS
        ]

    def test_other_roles_go_straight_through(self) -> None:
        """A method of a role the cache has nothing to do with is the wrapped
        store's own: same arguments, same result, cached accounts kept."""
        names = self.methods(account_writers=False) + ["get_accounts", "list_accounts"]
        for name in names:
            self.assertEqual(self.successResultOf(getattr(self.store, name)("x", 1, b"2")), name)
            self.assertEqual(self.backing.calls[-1], (name, ("x", 1, b"2")))
        self.assertEqual(self.store.peek_account("alice"), ALICE)

    def test_account_writes_forget_the_account(self) -> None:
        """A method of an account-writing role (accounts, warning levels) goes
        to the wrapped store and drops the account it names from the cache."""
        names = self.methods(account_writers=True)
        self.assertIn("set_warning", names)
        for name in names:
            self.successResultOf(self.store.get_account("alice"))
            self.assertEqual(self.store.peek_account("ALICE"), ALICE)
            self.assertEqual(self.successResultOf(getattr(self.store, name)("A lice", 7)), name)
            self.assertEqual(self.backing.calls[-1], (name, ("A lice", 7)))
            self.assertIsNone(self.store.peek_account("alice"))

    def test_forwarded_methods_are_the_wrapped_stores(self) -> None:
        """Nothing stands between a caller and the wrapped store's method (and
        verifyObject sees its real signature)."""
        backing = MemoryUserStore()
        store = CachedUserStore(backing, Clock())
        for name in self.methods(account_writers=False):
            self.assertEqual(getattr(store, name), getattr(backing, name))
