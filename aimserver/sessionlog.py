# -*- test-case-name: tests.test_sessionlog -*-
"""The sign-on and sign-off lines, one log event per reactor turn.

A line through Twisted's text log observer costs 35-50 us (formatting, a
timestamp, a write): at a thousand sign-ons a second the two lines of each
sign-on/off were ~7 % of the server's CPU. Records from one reactor turn
share one event: a lone record reads as before, several are written as one
line each under a count. Nothing is held past the turn, so timestamps stay
exact and nothing waits for a timer.
"""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger


class SessionLog:
    log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._pending: list[str] = []
        self._write_call: IDelayedCall | None = None
        #: After the listener stopped (shutdown): the reactor may run no more
        #: turns, so each record is written at once.
        self.stopped = False

    def signed_on(
        self, screen_name: str, peer: str, instance: int, flags: int, client: str
    ) -> None:
        self._record(
            f"{screen_name} signed on from {peer} (instance {instance}, flags {flags:#04x},"
            f" {client})"
        )

    def signed_off(self, screen_name: str, instance: int) -> None:
        self._record(f"{screen_name} signed off (instance {instance})")

    def _record(self, line: str) -> None:
        self._pending.append(line)
        if self.stopped:
            self.flush()
        elif self._write_call is None:
            self._write_call = self.clock.callLater(0, self.flush)

    def stop(self) -> None:
        """Write what is pending, and from now on every record at once: at
        shutdown the sessions still online are disconnected after the
        listener stops, and no later turn would write their lines."""
        self.stopped = True
        self.flush()

    def flush(self) -> None:
        """Write what was recorded (at the end of the turn, or at shutdown)."""
        if self._write_call is not None:
            if self._write_call.active():
                self._write_call.cancel()
            self._write_call = None
        lines, self._pending = self._pending, []
        if len(lines) == 1:
            self.log.info("{line}", line=lines[0])
        elif lines:
            self.log.info(
                "{count} sign-ons and sign-offs:\n{lines}", count=len(lines), lines="\n".join(lines)
            )
