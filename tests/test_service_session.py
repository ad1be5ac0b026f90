"""The session service (``aimserver.services.session``): a connection of any
kind signs a session on through it with a fake writer and no FLAP, the
observers hear every attach, client-ready and departure, and refusals are
answered without a session left behind."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from aimserver.registry import MULTICONN_LEGACY
from aimserver.services.session import Attached, SignOnRefused
from aimserver.wire.codes import FoodGroup
from tests.fakes import result_of
from tests.fakes_services import FakeConnection, ServiceWorld


class Recorder:
    """An observer that keeps what it was told, in order."""

    def __init__(self, events: list[tuple[str, int]]) -> None:
        self.events = events

    def session_attached(self, session) -> None:
        self.events.append(("attached", session.instance_id))

    def session_online(self, session) -> None:
        self.events.append(("online", session.instance_id))

    def session_gone(self, user, session) -> None:
        self.events.append(("gone", session.instance_id))


class OnlineOnly:
    """Observers implement only what they need."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def session_online(self, session) -> None:
        self.seen.append(session.instance_id)


class SessionServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = ServiceWorld()
        self.sessions = self.world.sessions
        self.events: list[tuple[str, int]] = []
        self.sessions.observe(Recorder(self.events))
        self.world.account("Alice")

    def cookie(self, flags: int = 0x01, service: int = 1, instance=None) -> bytes:
        return self.world.cookies.issue(
            screen_name="Alice",
            instance_id=instance or self.world.registry.new_instance_id(),
            multiconn_flags=flags,
            service=service,
            client_id="a browser, say",
        )

    def sign_on(self, cookie: bytes, connection: FakeConnection) -> Attached:
        attached = self.sessions.sign_on(cookie, (1, 0x18), connection, "198.51.100.7:40000")
        return result_of(attached) if isinstance(attached, defer.Deferred) else attached

    def test_a_connection_without_flap_signs_on(self) -> None:
        """A fake writer is all a connection kind needs: the session is
        attached with the cookie's client id and the peer's address, comes
        online at client-ready, and is gone when its connection is."""
        writer = FakeConnection("browser")
        attached = self.sign_on(self.cookie(), writer)
        session = attached.session
        self.assertEqual(attached.service, FoodGroup.OSERVICE)
        self.assertIs(session.connection, writer)
        self.assertEqual((session.client_id, session.ip), ("a browser, say", "198.51.100.7"))
        self.assertIs(self.world.registry.user_of(session).instances[session.instance_id], session)
        self.sessions.client_ready(session)
        self.assertTrue(session.online)
        self.sessions.connection_lost(session, writer)
        self.assertNotIn("alice", self.world.registry.users)
        self.assertEqual([kind for kind, _ in self.events], ["attached", "online", "gone"])

    def test_observers_hear_displacement(self) -> None:
        """A legacy login displaces the session: the old one is told to go
        (signed on elsewhere) and observers hear it gone before the new one
        is attached."""
        old_writer = FakeConnection("old")
        old = self.sign_on(self.cookie(), old_writer).session
        new = self.sign_on(self.cookie(MULTICONN_LEGACY), FakeConnection("new")).session
        self.assertEqual(old_writer.disconnects, [0x0001])
        self.assertEqual(
            self.events,
            [
                ("attached", old.instance_id),
                ("gone", old.instance_id),
                ("attached", new.instance_id),
            ],
        )

    def test_observers_implement_what_they_need(self) -> None:
        online = OnlineOnly()
        self.sessions.observe(online)
        session = self.sign_on(self.cookie(), FakeConnection()).session
        self.sessions.client_ready(session)
        self.sessions.client_ready(session)
        self.assertEqual(online.seen, [session.instance_id])

    def test_a_failing_observer_does_not_stop_the_others(self) -> None:
        class Broken:
            def session_online(self, session) -> None:
                raise RuntimeError("bug in one service")

        online = OnlineOnly()
        self.sessions.observe(Broken())
        self.sessions.observe(online)
        session = self.sign_on(self.cookie(), FakeConnection()).session
        self.sessions.client_ready(session)
        self.assertEqual(online.seen, [session.instance_id])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_service_connection_joins_its_session(self) -> None:
        session = self.sign_on(self.cookie(), FakeConnection()).session
        service = FakeConnection("alerts")
        attached = self.sign_on(self.cookie(service=0x18, instance=session.instance_id), service)
        self.assertEqual(attached, Attached(session, 0x18))
        self.assertEqual(session.secondary, [service])
        self.sessions.connection_lost(session, service)
        self.assertEqual(session.secondary, [])
        self.assertIn("alice", self.world.registry.users)

    def test_refusals_leave_nothing_behind(self) -> None:
        """A replayed cookie, a cookie for a service this listener does not
        serve, an account suspended meanwhile: refused, no session."""
        cookie = self.cookie()
        self.sign_on(cookie, FakeConnection())
        self.assertRaises(SignOnRefused, self.sign_on, cookie, FakeConnection())
        self.assertRaises(
            SignOnRefused,
            self.sessions.sign_on,
            self.cookie(service=0x0E),
            (1, 0x18),
            FakeConnection(),
            "198.51.100.7:1",
        )
        result_of(self.world.store.set_suspended("Alice", True))
        failure = self.assertRaises(SignOnRefused, self.sign_on, self.cookie(), FakeConnection())
        self.assertEqual(failure.tlvs, ())
        self.assertEqual(len(self.world.registry.get("Alice").instances), 1)

    def test_closed_connection_is_not_attached(self) -> None:
        """A connection that closed while its account was read gets no session."""
        writer = FakeConnection()
        writer.closing = True
        self.assertRaises(SignOnRefused, self.sign_on, self.cookie(), writer)
        self.assertNotIn("alice", self.world.registry.users)

    def test_redirect_only_for_services_it_runs(self) -> None:
        session = self.sign_on(self.cookie(), FakeConnection()).session
        self.assertIsNone(self.sessions.redirect(session, 0x0D))
