# -*- test-case-name: tests.test_stats_history -*-
"""The last hour of the server's headline numbers, for the status page's
sparklines (``GET /stats/history``).

A sample every ``interval`` seconds (10 by default), at most ``window``
of them (an hour's): a bounded deque, read by the API and never written
anywhere else. Counters (IMs routed, sign-ons) are kept as totals; the page
draws their rate from consecutive samples, so a missed tick distorts
nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
from twisted.application.internet import TimerService
from twisted.internet.interfaces import IReactorTime

INTERVAL = 10.0
WINDOW = 360


@attrs.frozen
class Sample:
    """What the server was doing at one moment."""

    time: float
    users_online: int
    sessions: int
    messages_routed: int
    signons: int
    refusals: int
    reactor_lag_ms: float

    #: The JSON field names of ``as_row``, in order.
    FIELDS = (
        "time",
        "users_online",
        "sessions",
        "messages_routed",
        "signons",
        "refusals",
        "reactor_lag_ms",
    )

    def as_row(self) -> list[Any]:
        return [getattr(self, name) for name in self.FIELDS]


def sample_server(server: Any) -> Sample:
    """One sample of a live ``AimServer``: one walk of the registry."""
    per_user = server.registry.sessions_per_user()
    refusals = server.refusals()
    return Sample(
        time=round(server.clock.seconds(), 3),
        users_online=sum(per_user.values()),
        sessions=sum(n * users for n, users in per_user.items()),
        messages_routed=server.icbm.routed,
        signons=server.sessions.signons,
        refusals=sum(refusals.values()),
        reactor_lag_ms=round(server.reactor_lag.worst() * 1000, 1),
    )


class StatsHistory(TimerService):
    """A service: ``twistd`` starts and stops it with the others."""

    def __init__(
        self,
        sample: Callable[[], Sample],
        clock: IReactorTime,
        interval: float = INTERVAL,
        window: int = WINDOW,
    ) -> None:
        super().__init__(interval, self._tick)
        self.clock = clock
        self.sample = sample
        self.samples: deque[Sample] = deque(maxlen=window)

    @property
    def interval(self) -> float:
        """Seconds between samples (takes effect at the next start)."""
        return float(self.step)

    @interval.setter
    def interval(self, seconds: float) -> None:
        self.step = seconds

    def _tick(self) -> None:
        self.samples.append(self.sample())

    def as_json(self) -> dict[str, Any]:
        """The kept samples, oldest first, then one taken now: the page's
        last point is always current, even between ticks."""
        rows = [s.as_row() for s in self.samples]
        rows.append(self.sample().as_row())
        return {
            "interval_seconds": self.interval,
            "fields": list(Sample.FIELDS),
            "samples": rows,
        }
