"""One log line for a burst of like events (``aimserver.services.countedlog``)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.countedlog import CountedLog


class CountedLogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict] = []
        self.clock = Clock()
        self.counted = CountedLog(Logger(observer=self.events.append), self.clock, "IMs dropped")

    def test_first_logged_the_rest_counted_per_interval(self) -> None:
        self.counted.note("resends", "dropped one from {who}", who="Alice")
        for _ in range(3):
            self.counted.note("resends", "dropped one from {who}", who="Alice")
        self.counted.note("too big", "refused one from {who}", who="Bob")
        self.assertEqual(len(self.events), 1)
        self.assertEqual(self.events[0]["who"], "Alice")
        self.clock.advance(10)
        self.assertEqual(self.events[1]["counts"], "3 resends, 1 too big")
        self.assertEqual(self.events[1]["summary"], "IMs dropped")
        # Still counting for another interval while events go on...
        self.counted.note("resends", "dropped one from {who}", who="Alice")
        self.assertEqual(len(self.events), 2)
        self.clock.advance(10)
        self.assertEqual(self.events[2]["counts"], "1 resends")
        # ...and a quiet interval ends the burst: the next one is logged whole.
        self.clock.advance(10)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.counted.note("resends", "dropped one from {who}", who="Carol")
        self.assertEqual(self.events[3]["who"], "Carol")

    def test_final_flush_writes_the_counts_and_leaves_no_timer(self) -> None:
        self.counted.note("resends", "dropped one")
        self.counted.note("resends", "dropped one")
        self.counted.flush(final=True)
        self.assertEqual(self.events[-1]["counts"], "1 resends")
        self.assertEqual(self.clock.getDelayedCalls(), [])
