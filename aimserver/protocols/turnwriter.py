# -*- test-case-name: tests.test_protocol_turnwriter -*-
"""What the connections write during one reactor turn goes out at its end,
one ``send()`` per connection, straight to its socket when nothing is
queued there.

Twisted's own write path registers a socket with epoll at each first write
and unregisters it once drained, and dispatches each writable socket
through its logging wrapper: two ``epoll_ctl`` calls and a dispatch per
connection per turn, which is most of what a fan-out costs (bench S11: 54 %
of the server's CPU under ``send_event``, nearly all of it that path). A
socket that takes the whole batch needs none of it; whatever it does not
take goes to the transport as before, which then buffers, applies
backpressure and reports errors as usual. Writes made in one turn are still
sent together (the batching a saturated server lives on), and one
connection's bytes stay in order: everything it writes goes through here
while it has something waiting (``FlapConnection._send``).
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime


class Batched(Protocol):
    def flush_turn(self) -> None:
        """Send what this connection queued during the turn."""


class TurnWriter:
    """One per listener: the connections with bytes waiting for the end of
    this turn, and the one call that sends them."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._waiting: list[Batched] = []
        self._call: Any = None

    def waiting(self, connection: Batched) -> None:
        """``connection`` queued its first bytes of this turn."""
        self._waiting.append(connection)
        if self._call is None:
            self._call = self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        self._call = None
        waiting, self._waiting = self._waiting, []
        for connection in waiting:
            connection.flush_turn()


class TurnBatched:
    """What a connection writes goes through ``_send``: queued for the end
    of the turn when its transport is a plain TCP socket's (``batchable``),
    else written at once. The connection's ``flush_turn`` sends
    ``_take_turn()``. Used by the BOS/auth/chat connections and the
    browser's WebSocket."""

    writer: TurnWriter | None = None
    transport: Any = None
    #: Bytes written this turn, for ``writer`` to send at its end; None when
    #: nothing waits (or the transport is not a TCP socket's).
    _turn: list[bytes] | None = None
    _batched = False

    def _send(self, data: bytes) -> None:
        turn = self._turn
        if turn is not None:
            turn.append(data)
        elif self._batched:
            self._turn = [data]
            self.writer.waiting(self)  # type: ignore[union-attr, arg-type]
        elif self.transport is not None:
            self.transport.write(data)

    def _take_turn(self) -> bytes | None:
        """What waits for the turn's end, as one string, and nothing waits."""
        turn, self._turn = self._turn, None
        if not turn:
            return None
        return turn[0] if len(turn) == 1 else b"".join(turn)


def batchable(writer: TurnWriter | None, transport: Any) -> bool:
    """Whether writes to ``transport`` can wait for the turn's end: there is
    a writer, and the transport is a plain TCP socket's (not TLS, not a
    test's StringTransport, which then see every write at once)."""
    return (
        writer is not None
        and getattr(transport, "socket", None) is not None
        and hasattr(transport, "_tempDataLen")
    )


def send_now(transport: Any, data: bytes) -> None:
    """``data`` to a TCP transport's socket if nothing is queued there and
    it takes it all; whatever it does not take, to ``transport.write``."""
    if (
        not transport._tempDataLen
        and not transport.dataBuffer
        and transport.connected
        and not transport.disconnecting
    ):
        try:
            sent = transport.socket.send(data)
        except OSError:
            # Would block, or an error Twisted's own write will meet and report.
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
