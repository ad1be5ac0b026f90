"""Sign-on and sign-off lines: one log event per reactor turn."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.sessionlog import SessionLog


class SessionLogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.clock = Clock()
        self.log = SessionLog(self.clock)

    def texts(self) -> list[str]:
        return [formatEvent(e) for e in self.events if "sessionlog" in str(e.get("log_namespace"))]

    def test_a_lone_record_is_one_line_at_the_end_of_the_turn(self) -> None:
        self.log.signed_on("Alice", "10.0.0.1:5000", 7, 0x01, "AIM 5.1")
        self.assertEqual(self.texts(), [])
        self.clock.advance(0)
        self.assertEqual(
            self.texts(), ["Alice signed on from 10.0.0.1:5000 (instance 7, flags 0x01, AIM 5.1)"]
        )

    def test_records_of_one_turn_share_one_event(self) -> None:
        """Each record keeps its own line, under a count."""
        self.log.signed_on("Alice", "10.0.0.1:5000", 7, 0x01, "AIM 5.1")
        self.log.signed_off("Bob", 8)
        self.log.signed_off("Carol", 9)
        self.clock.advance(0)
        [text] = self.texts()
        self.assertEqual(
            text.splitlines(),
            [
                "3 sign-ons and sign-offs:",
                "Alice signed on from 10.0.0.1:5000 (instance 7, flags 0x01, AIM 5.1)",
                "Bob signed off (instance 8)",
                "Carol signed off (instance 9)",
            ],
        )
        self.log.signed_off("Dave", 10)
        self.clock.advance(0)
        self.assertEqual(self.texts()[-1], "Dave signed off (instance 10)")

    def test_records_are_structured_fields(self) -> None:
        """A lone record carries its fields; a turn's several, each as a dict."""
        self.log.signed_on("Alice", "10.0.0.1:5000", 7, 0x01, "AIM 5.1")
        self.clock.advance(0)
        [event] = [e for e in self.events if "sessionlog" in str(e.get("log_namespace"))]
        self.assertEqual(
            {k: event[k] for k in ("event", "screen_name", "peer", "instance", "flags", "client")},
            {
                "event": "signed on",
                "screen_name": "Alice",
                "peer": "10.0.0.1:5000",
                "instance": 7,
                "flags": 1,
                "client": "AIM 5.1",
            },
        )
        self.log.signed_off("Bob", 8)
        self.log.signed_off("Carol", 9)
        self.clock.advance(0)
        batch = [e for e in self.events if "records" in e][-1]
        self.assertEqual(
            batch["records"],
            [
                {"event": "signed off", "screen_name": "Bob", "instance": 8},
                {"event": "signed off", "screen_name": "Carol", "instance": 9},
            ],
        )

    def test_flush_writes_at_once_and_leaves_no_timer(self) -> None:
        """At shutdown nothing recorded is lost and no call stays pending."""
        self.log.signed_off("Bob", 8)
        self.log.flush()
        self.assertEqual(self.texts(), ["Bob signed off (instance 8)"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.log.flush()
        self.assertEqual(len(self.texts()), 1)

    def test_after_stop_each_record_is_written_at_once(self) -> None:
        """At shutdown the listener stops first and the sessions still online
        are disconnected after it, when the reactor runs no more turns: their
        sign-off lines are written at once, with no timer."""
        self.log.signed_on("Alice", "10.0.0.1:5000", 7, 0x01, "AIM 5.1")
        self.log.stop()
        self.assertEqual(len(self.texts()), 1)
        self.log.signed_off("Alice", 7)
        self.assertEqual(self.texts()[-1], "Alice signed off (instance 7)")
        self.assertEqual(self.clock.getDelayedCalls(), [])
