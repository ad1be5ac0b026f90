# -*- test-case-name: tests.test_countedlog -*-
"""One log line for a burst of like events, however long the burst.

Some events can come by the ten thousand (a login storm refused with 0x0018,
a client resending IMs, a flood of refused messages), and a log line costs as
much as handling one of them: the first after a quiet spell is logged with
its details, the next ones are counted, by reason, into one line every
``interval`` seconds while they go on. Nothing is lost: ``flush(final=True)``
writes what is counted when the listener stops.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger


class CountedLog:
    def __init__(
        self, log: Logger, clock: IReactorTime, summary: str, interval: float = 10.0
    ) -> None:
        self.log = log
        self.clock = clock
        #: What the counted line says before the counts, e.g. "IMs dropped".
        self.summary = summary
        self.interval = interval
        self.counts: Counter[str] = Counter()
        self._call: IDelayedCall | None = None

    def note(self, reason: str, format: str, **fields: object) -> None:
        """One event: logged with ``format`` and ``fields`` when it starts a
        burst, otherwise counted under ``reason``."""
        if self._call is None:
            self.log.info(
                format + "; more like it are counted every {interval:.0f} s",
                interval=self.interval,
                **fields,
            )
            self._call = self.clock.callLater(self.interval, self.flush)
        else:
            self.counts[reason] += 1

    def flush(self, final: bool = False) -> None:
        """Write what was counted since the last line; while events go on,
        count for another interval. ``final``: leave no timer behind."""
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
        if not self.counts:
            return
        counts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))
        self.counts.clear()
        self.log.info(
            "{summary} since the last such line: {counts}", summary=self.summary, counts=counts
        )
        if not final:
            self._call = self.clock.callLater(self.interval, self.flush)
