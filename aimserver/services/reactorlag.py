# -*- test-case-name: tests.test_reactorlag -*-
"""How late the reactor runs a timer: the one number that says whether
everything the server does in its thread keeps up (for /metrics)."""

from __future__ import annotations

from collections import deque

from twisted.application.internet import TimerService
from twisted.internet.interfaces import IReactorTime

INTERVAL = 1.0
#: Samples kept: the last minute's.
WINDOW = 60


class ReactorLag(TimerService):
    """A service: ``twistd`` starts and stops it with the others."""

    def __init__(self, clock: IReactorTime, interval: float = INTERVAL) -> None:
        super().__init__(interval, self._tick)
        self.clock = clock
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=WINDOW)
        self._expected: float | None = None

    def startService(self) -> None:
        self._expected = None
        super().startService()

    def _tick(self) -> None:
        now = self.clock.seconds()
        if self._expected is not None:
            self.samples.append(max(0.0, now - self._expected))
        self._expected = now + self.interval

    def worst(self) -> float:
        """The worst lateness of the last minute, in seconds (0 before any)."""
        return max(self.samples, default=0.0)
