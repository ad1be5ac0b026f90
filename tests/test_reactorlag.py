"""The reactor-lag probe: how late a 1-second timer runs, worst of the last minute."""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from aimserver.services.reactorlag import WINDOW, ReactorLag


class ReactorLagTests(unittest.SynchronousTestCase):
    def test_lateness_is_measured_and_forgotten_after_a_minute(self) -> None:
        clock = task.Clock()
        lag = ReactorLag(clock)
        self.assertEqual(lag.worst(), 0.0)
        lag.startService()
        clock.advance(1.0)
        self.assertEqual(lag.worst(), 0.0)
        clock.advance(1.25)  # the timer ran 0.25 s late
        self.assertAlmostEqual(lag.worst(), 0.25)
        for _ in range(WINDOW):
            clock.advance(1.0)
        self.assertEqual(lag.worst(), 0.0)
        lag.stopService()
        self.assertFalse(clock.getDelayedCalls())
