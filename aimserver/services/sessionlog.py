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

_SIGNED_ON = (
    "{screen_name} signed on from {peer} (instance {instance}, flags {flags:#04x}, {client})"
)
_SIGNED_OFF = "{screen_name} signed off (instance {instance})"


class SessionLog:
    """Records are structured events (``event``, ``screen_name``,
    ``instance``, ...; a turn's several records as ``records``), so a JSON
    log observer or the management API reads fields, not text."""

    log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        #: ``(format, fields)`` of each record this turn.
        self._pending: list[tuple[str, dict[str, object]]] = []
        self._write_call: IDelayedCall | None = None
        #: After the listener stopped (shutdown): the reactor may run no more
        #: turns, so each record is written at once.
        self.stopped = False

    def signed_on(
        self, screen_name: str, peer: str, instance: int, flags: int, client: str
    ) -> None:
        self._record(
            _SIGNED_ON,
            event="signed on",
            screen_name=screen_name,
            peer=peer,
            instance=instance,
            flags=flags,
            client=client,
        )

    def signed_off(self, screen_name: str, instance: int) -> None:
        self._record(_SIGNED_OFF, event="signed off", screen_name=screen_name, instance=instance)

    def _record(self, format: str, **fields: object) -> None:
        self._pending.append((format, fields))
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
        records, self._pending = self._pending, []
        if len(records) == 1:
            format, fields = records[0]
            self.log.info(format, **fields)
        elif records:
            self.log.info(
                "{count} sign-ons and sign-offs:\n{lines}",
                count=len(records),
                lines="\n".join(format.format(**fields) for format, fields in records),
                records=[fields for _, fields in records],
            )
