"""The per-turn writer (``protocols/turnwriter.py``): what a connection
writes in one reactor turn goes out in one send at its end, straight to the
socket when nothing is queued there; whatever the socket does not take, and
everything written while the transport holds bytes, goes through
``transport.write`` in order."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import task
from twisted.trial import unittest

from aimserver.protocols.flap import MAX_SEQUENCE, ConnectionSettings, FlapConnection, FlapFactory
from aimserver.protocols.turnwriter import send_now
from aimserver.services.events import PackedEvent
from aimserver.wire.flap import parse_header


class FakeSocket:
    def __init__(self, takes: int | None = None, error: Exception | None = None) -> None:
        self.sent: list[bytes] = []
        self.takes = takes
        self.error = error

    def send(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        taken = data if self.takes is None else data[: self.takes]
        self.sent.append(bytes(taken))
        return len(taken)


class FakeTcpTransport:
    """The parts of a Twisted TCP transport ``send_now`` reads, and a write log."""

    def __init__(self, sock: FakeSocket) -> None:
        self.socket = sock
        self._tempDataLen = 0
        self.dataBuffer = b""
        self.connected = True
        self.disconnecting = False
        self.written: list[bytes] = []
        self.lost = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))
        self._tempDataLen += len(data)

    def getPeer(self) -> Any:
        return None

    def registerProducer(self, producer: object, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def loseConnection(self) -> None:
        self.lost = (list(self.socket.sent), list(self.written))  # type: ignore[assignment]


class SendNowTests(unittest.SynchronousTestCase):
    def test_whole_send_skips_the_transport(self) -> None:
        transport = FakeTcpTransport(FakeSocket())
        send_now(transport, b"abc")
        self.assertEqual((transport.socket.sent, transport.written), ([b"abc"], []))

    def test_partial_send_leaves_the_rest_to_the_transport(self) -> None:
        transport = FakeTcpTransport(FakeSocket(takes=2))
        send_now(transport, b"abcdef")
        self.assertEqual((transport.socket.sent, transport.written), ([b"ab"], [b"cdef"]))

    def test_would_block_or_error_goes_to_the_transport(self) -> None:
        for error in (BlockingIOError(), ConnectionResetError()):
            transport = FakeTcpTransport(FakeSocket(error=error))
            send_now(transport, b"abc")
            self.assertEqual(transport.written, [b"abc"])

    def test_bytes_queued_in_the_transport_go_first(self) -> None:
        """While the transport holds bytes, new ones queue behind them."""
        transport = FakeTcpTransport(FakeSocket())
        transport._tempDataLen = 5
        send_now(transport, b"abc")
        transport._tempDataLen = 0
        transport.dataBuffer = b"xy"
        send_now(transport, b"def")
        transport.dataBuffer = b""
        transport.disconnecting = True
        send_now(transport, b"ghi")
        self.assertEqual(transport.socket.sent, [])
        self.assertEqual(transport.written, [b"abc", b"def", b"ghi"])


class Connection(FlapConnection):
    def signon_received(self, signon: object) -> None:
        pass


class TurnTests(unittest.SynchronousTestCase):
    def connect(self, sock: FakeSocket) -> tuple[Connection, FakeTcpTransport, task.Clock]:
        clock = task.Clock()
        factory = FlapFactory(ConnectionSettings(), clock, 60.0)
        connection = Connection(factory.settings, clock, factory.sweeper, factory.writer)
        transport = FakeTcpTransport(sock)
        connection.makeConnection(transport)
        clock.advance(0)  # the hello goes out at the end of its turn
        return connection, transport, clock

    def frames(self, data: bytes) -> list[tuple[int, int]]:
        """``(channel, sequence)`` of each FLAP frame in ``data``."""
        frames = []
        while data:
            channel, sequence, length = parse_header(data)
            frames.append((channel, sequence))
            data = data[6 + length :]
        return frames

    def test_a_turns_writes_go_out_in_one_send_in_order(self) -> None:
        connection, transport, clock = self.connect(FakeSocket())
        before = len(transport.socket.sent)
        for _ in range(3):
            connection.send_event(PackedEvent(b"x"))
        connection.send_keepalive()
        self.assertEqual(len(transport.socket.sent), before)
        clock.advance(0)
        self.assertEqual(len(transport.socket.sent), before + 1)
        frames = self.frames(transport.socket.sent[-1])
        self.assertEqual([channel for channel, _ in frames], [2, 2, 2, 5])
        first = frames[0][1]
        self.assertEqual([sequence for _, sequence in frames], [first + i for i in range(4)])
        self.assertEqual(transport.written, [])

    def test_close_sends_what_waits_before_the_signoff(self) -> None:
        connection, transport, clock = self.connect(FakeSocket())
        connection.send_event(PackedEvent(b"x"))
        connection.close()
        # Everything was sent before the transport was told to close.
        sent, written = transport.lost  # type: ignore[misc]
        self.assertEqual(written, [])
        self.assertEqual([channel for channel, _ in self.frames(sent[-1])], [2, 4])

    def test_not_a_tcp_transport_writes_at_once(self) -> None:
        """StringTransport (the unit tests') and TLS transports have no socket:
        every write goes straight to the transport, as before."""
        from twisted.internet.testing import StringTransport

        clock = task.Clock()
        factory = FlapFactory(ConnectionSettings(), clock, 60.0)
        connection = Connection(factory.settings, clock, factory.sweeper, factory.writer)
        transport = StringTransport()
        connection.makeConnection(transport)
        connection.send_event(PackedEvent(b"x"))
        self.assertEqual([c for c, _ in self.frames(transport.value())], [1, 2])


class RealSocketTests(unittest.SynchronousTestCase):
    def test_over_a_socketpair(self) -> None:
        """With a real socket: one send per turn, every byte arrives in order."""
        left, right = socket.socketpair()
        self.addCleanup(left.close)
        self.addCleanup(right.close)
        left.setblocking(False)
        clock = task.Clock()
        factory = FlapFactory(ConnectionSettings(), clock, 60.0)
        connection = Connection(factory.settings, clock, factory.sweeper, factory.writer)
        transport = FakeTcpTransport(left)  # type: ignore[arg-type]
        connection.makeConnection(transport)
        for i in range(200):
            connection.send_event(PackedEvent(bytes([i]) * 100))
        clock.advance(0)
        right.settimeout(5)
        received = b""
        while len(received) < 10 + 200 * 116:  # the hello, then 200 frames
            received += right.recv(65536)
        self.assertEqual(transport.written, [])
        frames = self.frames(received)
        self.assertEqual(len(frames), 201)
        sequences = [sequence for _, sequence in frames]
        self.assertEqual(sequences, [(sequences[0] + i) % (MAX_SEQUENCE + 1) for i in range(201)])

    frames = TurnTests.frames
