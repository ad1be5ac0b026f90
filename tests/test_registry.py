# -*- test-case-name: tests.test_registry -*-
"""The registry: who is signed on, the multisession policy at sign-on, the
watcher index and fan-out (MULTISESSION.md §1, §3, §5)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from aimserver.registry import (
    MULTICONN_LEGACY,
    MULTICONN_MULTI,
    MULTICONN_SINGLE,
    ISessionConnection,
    TooManySessions,
    UserRegistry,
)
from aimserver.services.events import BuddyArrived
from aimserver.store.interfaces import Account
from tests.fakes_services import FakeConnection

FLAGS = (MULTICONN_LEGACY, MULTICONN_MULTI, MULTICONN_SINGLE)


def account(screen_name: str = "Alice") -> Account:
    return Account(
        screen_name=screen_name, auth_key="k", weak_md5=b"\0" * 16, strong_md5=b"\0" * 16
    )


def attach(registry: UserRegistry, flags: int, name: str = "Alice", now: float = 100.0):
    connection = FakeConnection(name)
    instance, displaced = registry.add_instance(
        account(name),
        connection,
        instance_id=registry.new_instance_id(),
        multiconn_flags=flags,
        client_id="client",
        ip="192.0.2.1",
        now=now,
    )
    return instance, displaced


class FakeConnectionTests(SynchronousTestCase):
    def test_provides_session_connection(self) -> None:
        """The fake stands in for a BOS connection wherever the registry needs one."""
        self.assertTrue(verifyObject(ISessionConnection, FakeConnection()))


class MultisessionPolicyTests(SynchronousTestCase):
    """Who stays signed on when the same screen name signs on again."""

    def check(self, existing: int | None, new: int, joins: bool) -> None:
        registry = UserRegistry(max_sessions=5)
        old = None
        if existing is not None:
            old, displaced = attach(registry, existing, now=100.0)
            self.assertEqual(displaced, [])
        instance, displaced = attach(registry, new, now=200.0)
        user = registry.get("alice")
        assert user is not None
        if joins:
            self.assertEqual(displaced, [])
            expected = [old, instance] if old is not None else [instance]
            self.assertEqual(list(user.instances.values()), expected)
            self.assertEqual(user.signon_time, 100.0 if old is not None else 200.0)
        else:
            self.assertEqual(displaced, [old])
            assert old is not None
            self.assertTrue(old.closed)
            self.assertEqual(list(user.instances.values()), [instance])
            # Everyone watching saw the user leave: the sign-on time is new.
            self.assertEqual(user.signon_time, 200.0)
        self.assertIs(registry.user_of(instance), user)

    def test_first_session_always_joins(self) -> None:
        """With nobody signed on, any client just signs on."""
        for new in FLAGS:
            self.check(None, new, joins=True)

    def test_multi_joins_multi(self) -> None:
        """A multi-capable client joins an existing multi-capable session."""
        self.check(MULTICONN_MULTI, MULTICONN_MULTI, joins=True)

    def test_legacy_login_displaces_everyone(self) -> None:
        """A legacy client (0x00) signs every existing session off."""
        for existing in FLAGS:
            self.check(existing, MULTICONN_LEGACY, joins=False)

    def test_single_login_displaces_everyone(self) -> None:
        """A client that wants a single session (0x03) signs every existing session off."""
        for existing in FLAGS:
            self.check(existing, MULTICONN_SINGLE, joins=False)

    def test_multi_login_displaces_legacy_and_single(self) -> None:
        """A multi-capable client cannot share with a legacy or single-session one:
        it replaces them."""
        self.check(MULTICONN_LEGACY, MULTICONN_MULTI, joins=False)
        self.check(MULTICONN_SINGLE, MULTICONN_MULTI, joins=False)

    def test_legacy_displaces_all_multi_sessions(self) -> None:
        """Every one of several multi-capable sessions is displaced by a legacy login."""
        registry = UserRegistry()
        olds = [attach(registry, MULTICONN_MULTI)[0] for _ in range(3)]
        instance, displaced = attach(registry, MULTICONN_LEGACY)
        self.assertEqual(displaced, olds)
        self.assertEqual(list(registry.get("Alice").instances.values()), [instance])

    def test_instance_ids_are_unique(self) -> None:
        """Each session gets its own instance id, beyond the screen name."""
        registry = UserRegistry()
        ids = {registry.new_instance_id() for _ in range(100)}
        self.assertEqual(len(ids), 100)

    def test_lookup_ignores_case_and_spaces(self) -> None:
        """A user is found by any spelling of the screen name."""
        registry = UserRegistry()
        attach(registry, MULTICONN_MULTI, name="Bob Smith")
        self.assertIs(registry.get("BOBSMITH"), registry.get("bob smith"))
        self.assertIsNotNone(registry.get("b o b s m i t h"))


class MaxSessionsTests(SynchronousTestCase):
    def test_too_many_multi_sessions(self) -> None:
        """A multi-capable login beyond the limit is refused and changes nothing."""
        registry = UserRegistry(max_sessions=2)
        first, _ = attach(registry, MULTICONN_MULTI)
        second, _ = attach(registry, MULTICONN_MULTI)
        self.assertRaises(TooManySessions, attach, registry, MULTICONN_MULTI)
        self.assertRaises(TooManySessions, registry.check_login, account(), MULTICONN_MULTI)
        self.assertEqual(list(registry.get("alice").instances.values()), [first, second])
        self.assertFalse(first.closed or second.closed)

    def test_displacing_logins_are_never_refused(self) -> None:
        """At the limit, a legacy or single-session login still signs on,
        replacing every existing session."""
        for flags in (MULTICONN_LEGACY, MULTICONN_SINGLE):
            registry = UserRegistry(max_sessions=2)
            olds = [attach(registry, MULTICONN_MULTI)[0] for _ in range(2)]
            registry.check_login(account(), flags)
            instance, displaced = attach(registry, flags)
            self.assertEqual(displaced, olds)
            self.assertEqual(list(registry.get("alice").instances.values()), [instance])

    def test_under_the_limit(self) -> None:
        """Up to the limit, multi-capable logins all join."""
        registry = UserRegistry(max_sessions=3)
        for _ in range(3):
            attach(registry, MULTICONN_MULTI)
        self.assertEqual(len(registry.get("alice").instances), 3)

    @given(st.lists(st.sampled_from(FLAGS), max_size=30), st.integers(1, 4))
    def test_policy_invariants(self, logins: list[int], max_sessions: int) -> None:
        """Whatever sequence of clients signs on: never more than the limit,
        and several sessions only when all are multi-capable."""
        registry = UserRegistry(max_sessions=max_sessions)
        for flags in logins:
            try:
                attach(registry, flags)
            except TooManySessions:
                self.assertEqual(flags, MULTICONN_MULTI)
            user = registry.get("alice")
            assert user is not None
            sessions = list(user.instances.values())
            self.assertLessEqual(len(sessions), max_sessions)
            self.assertGreaterEqual(len(sessions), 1)
            if len(sessions) > 1:
                self.assertTrue(all(s.multiconn_flags == MULTICONN_MULTI for s in sessions))
            self.assertFalse(any(s.closed for s in sessions))


class DetachTests(SynchronousTestCase):
    def test_detach_is_idempotent(self) -> None:
        """Signing a session off twice is harmless: the second time is a no-op."""
        registry = UserRegistry()
        first, _ = attach(registry, MULTICONN_MULTI)
        second, _ = attach(registry, MULTICONN_MULTI)
        user = registry.get("alice")
        self.assertIs(registry.detach(first), user)
        self.assertTrue(first.closed)
        self.assertIsNone(registry.detach(first))
        self.assertEqual(list(user.instances.values()), [second])
        self.assertIsNone(registry.user_of(first))

    def test_user_removed_with_last_session(self) -> None:
        """The user stays while any session is left and goes with the last one;
        the caller still gets it to announce the departure."""
        registry = UserRegistry()
        first, _ = attach(registry, MULTICONN_MULTI)
        second, _ = attach(registry, MULTICONN_MULTI)
        user = registry.detach(first)
        self.assertIs(registry.get("alice"), user)
        self.assertIs(registry.detach(second), user)
        self.assertIsNone(registry.get("alice"))
        self.assertEqual(list(registry), [])

    def test_displaced_instance_detach_is_no_op(self) -> None:
        """A displaced session closing later does not touch the new sign-on."""
        registry = UserRegistry()
        old, _ = attach(registry, MULTICONN_LEGACY)
        new, _ = attach(registry, MULTICONN_LEGACY)
        self.assertIsNone(registry.detach(old))
        self.assertIs(registry.user_of(new), registry.get("alice"))

    def test_detach_closes_service_connections(self) -> None:
        """Service connections opened by a session close with it."""
        registry = UserRegistry()
        session, _ = attach(registry, MULTICONN_MULTI)
        service = FakeConnection("alert")
        session.secondary.append(service)
        registry.detach(session)
        self.assertEqual(service.disconnects, [None])
        self.assertEqual(session.secondary, [])


class WatcherIndexTests(SynchronousTestCase):
    def test_watch_returns_only_new_buddies(self) -> None:
        """Adding a buddy twice does not count twice."""
        registry = UserRegistry()
        session, _ = attach(registry, MULTICONN_MULTI)
        self.assertEqual(registry.watch(session, ["bob", "carol"]), ["bob", "carol"])
        self.assertEqual(registry.watch(session, ["bob", "dave"]), ["dave"])
        self.assertEqual(session.buddies, {"bob", "carol", "dave"})
        self.assertEqual(registry.watchers["bob"], {session})

    def test_watching_sessions_are_online_only(self) -> None:
        """Only sessions that finished signing on hear about their buddies."""
        registry = UserRegistry()
        ready, _ = attach(registry, MULTICONN_MULTI)
        pending, _ = attach(registry, MULTICONN_MULTI)
        ready.online = True
        registry.watch(ready, ["bob"])
        registry.watch(pending, ["bob"])
        self.assertEqual(registry.watching_sessions("bob"), [ready])
        self.assertEqual(registry.watching_sessions("nobody"), [])

    def test_unwatch_cleans_up(self) -> None:
        """Removing the last watcher of a user forgets the user in the index."""
        registry = UserRegistry()
        first, _ = attach(registry, MULTICONN_MULTI)
        second, _ = attach(registry, MULTICONN_MULTI)
        registry.watch(first, ["bob"])
        registry.watch(second, ["bob"])
        registry.unwatch(first, ["bob", "never-added"])
        self.assertEqual(registry.watchers["bob"], {second})
        self.assertEqual(first.buddies, set())
        registry.unwatch(second, ["bob"])
        self.assertNotIn("bob", registry.watchers)

    def test_detach_cleans_up(self) -> None:
        """A session that signs off stops watching, and empty entries go away."""
        registry = UserRegistry()
        first, _ = attach(registry, MULTICONN_MULTI)
        second, _ = attach(registry, MULTICONN_MULTI)
        registry.watch(first, ["bob", "carol"])
        registry.watch(second, ["bob"])
        registry.detach(first)
        self.assertEqual(registry.watchers, {"bob": {second}})
        self.assertEqual(first.buddies, set())
        registry.detach(second)
        self.assertEqual(registry.watchers, {})

    def test_displacement_cleans_up(self) -> None:
        """Displaced sessions stop watching too."""
        registry = UserRegistry()
        old, _ = attach(registry, MULTICONN_MULTI)
        registry.watch(old, ["bob"])
        attach(registry, MULTICONN_LEGACY)
        self.assertEqual(registry.watchers, {})


class DeliveryTests(SynchronousTestCase):
    def test_broken_connection_is_skipped(self) -> None:
        """One dead connection is logged and skipped; the others still get the push."""
        registry = UserRegistry()
        sessions = [attach(registry, MULTICONN_MULTI)[0] for _ in range(3)]
        sessions[1].connection.broken = True
        event = BuddyArrived(b"payload")
        count = registry.deliver(sessions, event)
        self.assertEqual(count, 2)
        self.assertEqual(sessions[0].connection.events, [event])
        self.assertEqual(sessions[2].connection.events, [event])
        self.assertEqual(len(self.flushLoggedErrors(ConnectionError)), 1)

    def test_fan_out_fires_with_count(self) -> None:
        """The Deferred form of delivery fires once every write is queued."""
        registry = UserRegistry()
        sessions = [attach(registry, MULTICONN_MULTI)[0] for _ in range(2)]
        event = BuddyArrived(b"x")
        self.assertEqual(self.successResultOf(registry.fan_out(sessions, event)), 2)
        self.assertEqual(self.successResultOf(registry.fan_out([], event)), 0)
