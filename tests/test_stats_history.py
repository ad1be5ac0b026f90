"""The status page's history (``aimserver.api.history``): a bounded hour of
samples on a timer, with the current moment always last."""

from __future__ import annotations

import itertools

from twisted.internet.task import Clock
from twisted.trial import unittest

from aimserver.api.history import Sample, StatsHistory


def counting_sampler(clock: Clock) -> tuple[list[int], object]:
    taken: list[int] = []
    counter = itertools.count()

    def sample() -> Sample:
        n = next(counter)
        taken.append(n)
        return Sample(clock.seconds(), n, 2 * n, 10 * n, n, 0, 0.5)

    return taken, sample


class StatsHistoryTests(unittest.SynchronousTestCase):
    def test_samples_on_a_timer_and_now_last(self) -> None:
        clock = Clock()
        taken, sample = counting_sampler(clock)
        history = StatsHistory(sample, clock, interval=10.0)
        history.startService()
        self.assertEqual(len(history.samples), 1)  # one at start
        clock.advance(10)
        clock.advance(10)
        clock.advance(4)
        answer = history.as_json()
        self.assertEqual(answer["interval_seconds"], 10.0)
        self.assertEqual(answer["fields"][:3], ["time", "users_online", "sessions"])
        self.assertEqual([row[0] for row in answer["samples"]], [0, 10, 20, 24])
        self.assertEqual(answer["samples"][-1][1:4], [3, 6, 30])
        history.stopService()
        clock.advance(100)
        self.assertEqual(len(taken), 4)  # stopped: no more ticks

    def test_an_hour_at_most(self) -> None:
        clock = Clock()
        _, sample = counting_sampler(clock)
        history = StatsHistory(sample, clock, interval=10.0, window=360)
        history.startService()
        self.addCleanup(history.stopService)
        clock.pump([10.0] * 1000)
        self.assertEqual(len(history.samples), 360)
        self.assertEqual(history.samples[0].time, 10_000 - 3590)
        self.assertEqual(len(history.as_json()["samples"]), 361)

    def test_rows_follow_fields(self) -> None:
        row = Sample(1.5, 2, 3, 4, 5, 6, 7.5).as_row()
        self.assertEqual(
            dict(zip(Sample.FIELDS, row, strict=True)),
            {
                "time": 1.5,
                "users_online": 2,
                "sessions": 3,
                "messages_routed": 4,
                "signons": 5,
                "refusals": 6,
                "reactor_lag_ms": 7.5,
            },
        )
