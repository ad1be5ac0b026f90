"""The browser WebSocket below the JSON (issue 18): the upgrade, control
frames, protocol violations and a browser that stops reading, over real TCP
to the web listener, with wsproto's client as an independent peer (it masks
what it sends and checks what it gets)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial import unittest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Ping, Pong, TextMessage

from aimserver.config import load_config
from aimserver.protocols.turnwriter import TurnWriter
from aimserver.web import socket as web_socket
from tests.client import TIMEOUT, deferred_test
from tests.harness import LOOPBACK, LoopbackServer, wait_until

ACCOUNTS = {"Alice": "secret", "Bob": "secret"}
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class RawSocket(Protocol):
    """A TCP connection that upgrades by hand, then speaks frames through
    a wsproto client ``Connection``."""

    def __init__(self) -> None:
        self.key = base64.b64encode(os.urandom(16))
        self.buffer = b""
        self.upgraded = False
        #: Plain HTTP: everything received stays in ``buffer``.
        self.http = False
        self.head = b""
        self.ws = Connection(ConnectionType.CLIENT)
        self.events: list[Any] = []
        self.lost: defer.Deferred[None] = defer.Deferred()
        self._waiting: defer.Deferred[None] | None = None

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.http:
            self.buffer += data
            self._wake()
            return
        if not self.upgraded:
            self.buffer += data
            if b"\r\n\r\n" not in self.buffer:
                return
            self.head, data = self.buffer.split(b"\r\n\r\n", 1)
            self.upgraded = True
        self.ws.receive_data(data)
        self.events.extend(self.ws.events())
        self._wake()

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        self.lost.callback(None)
        self._wake()

    def _wake(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.callback(None)

    async def until(self, what: str, done: Any) -> None:
        while not done():
            if self.lost.called:
                raise AssertionError(f"connection closed before {what}")
            self._waiting = defer.Deferred()
            self._waiting.addTimeout(TIMEOUT, reactor)
            await self._waiting

    def upgrade_request(self) -> bytes:
        return (
            b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + self.key + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )

    def send(self, event: Any) -> None:
        self.transport.write(self.ws.send(event))

    def close_codes(self) -> list[int]:
        return [e.code for e in self.events if isinstance(e, CloseConnection)]


class SocketCase(unittest.TestCase):
    async def connect(self, request: bytes | None = None) -> RawSocket:
        if not hasattr(self, "server"):
            self.server = await LoopbackServer.start(load_config(None, {}), accounts=ACCOUNTS)
            self.addCleanup(self.server.stop)
        port = self.server.web_port.getHost().port
        raw = RawSocket()
        raw.http = request is not None
        await connectProtocol(TCP4ClientEndpoint(reactor, LOOPBACK, port), raw)
        self.addCleanup(raw.transport.abortConnection)
        raw.transport.write(raw.upgrade_request() if request is None else request)
        if request is None:
            await raw.until("the upgrade", lambda: raw.upgraded)
        return raw


class UpgradeTests(SocketCase):
    @deferred_test
    async def test_the_upgrade_answers_with_the_key_accepted(self) -> None:
        raw = await self.connect()
        status, *headers = raw.head.split(b"\r\n")
        self.assertEqual(status, b"HTTP/1.1 101 Switching Protocols")
        accept = base64.b64encode(hashlib.sha1(raw.key + GUID).digest())
        fields = dict(h.split(b": ", 1) for h in headers)
        self.assertEqual({k.lower(): v for k, v in fields.items()}[b"sec-websocket-accept"], accept)

    @deferred_test
    async def test_a_get_that_is_not_an_upgrade_is_refused(self) -> None:
        raw = await self.connect(b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await raw.until("an answer", lambda: b"\r\n\r\n" in raw.buffer)
        self.assertTrue(raw.buffer.startswith(b"HTTP/1.1 400 "))


class ControlFrameTests(SocketCase):
    @deferred_test
    async def test_ping_is_answered_with_pong(self) -> None:
        raw = await self.connect()
        raw.send(Ping(b"are you there"))
        await raw.until("the pong", lambda: any(isinstance(e, Pong) for e in raw.events))
        self.assertEqual([e.payload for e in raw.events if isinstance(e, Pong)], [b"are you there"])

    @deferred_test
    async def test_close_is_echoed_then_the_connection_closed(self) -> None:
        raw = await self.connect()
        raw.send(CloseConnection(1001, "going away"))
        await raw.lost
        self.assertEqual(raw.close_codes(), [1001])

    @deferred_test
    async def test_requests_work_around_control_frames(self) -> None:
        raw = await self.connect()
        raw.send(Ping(b"1"))
        raw.send(TextMessage(json.dumps({"id": 7, "command": "server_info"})))
        raw.send(Ping(b"2"))

        def answered() -> list[Any]:
            return [e for e in raw.events if isinstance(e, TextMessage)]

        await raw.until("the answer", answered)
        self.assertEqual(json.loads(answered()[0].data)["id"], 7)
        await raw.until(
            "both pongs", lambda: len([e for e in raw.events if isinstance(e, Pong)]) == 2
        )


class ViolationTests(SocketCase):
    @deferred_test
    async def test_an_unmasked_frame_closes_with_1002(self) -> None:
        raw = await self.connect()
        raw.transport.write(b"\x81\x02{}")
        await raw.lost
        self.assertEqual(raw.close_codes(), [1002])

    @deferred_test
    async def test_an_oversize_frame_is_refused_from_its_header(self) -> None:
        """Only the header of a 1 MiB frame is sent: the server does not
        wait for the rest."""
        raw = await self.connect()
        raw.transport.write(b"\x81\xff" + struct.pack("!Q", 1 << 20) + b"mask")
        await raw.lost
        self.assertEqual(raw.close_codes(), [1009])

    @deferred_test
    async def test_invalid_utf8_closes_with_1007(self) -> None:
        raw = await self.connect()
        mask = b"\x00\x00\x00\x00"
        raw.transport.write(b"\x81\x82" + mask + b"\xc3\x28")
        await raw.lost
        self.assertEqual(raw.close_codes(), [1007])

    @deferred_test
    async def test_a_violation_ends_only_that_socket(self) -> None:
        bad = await self.connect()
        good = await self.connect()
        bad.transport.write(b"\x81\x02{}")
        await bad.lost
        good.send(TextMessage(json.dumps({"id": 1, "command": "server_info"})))
        await good.until("the answer", lambda: any(isinstance(e, TextMessage) for e in good.events))


class FakeSocket:
    def __init__(self) -> None:
        self.accepting = True

    def send(self, data: bytes) -> int:
        return len(data) if self.accepting else 0


class FakeTcp:
    """What ``WebSocketConnection`` reads of a TCP transport, with a kernel
    buffer that can fill up."""

    def __init__(self) -> None:
        self.socket = FakeSocket()
        self._tempDataLen = 0  # noqa: N815
        self.dataBuffer = b""  # noqa: N815
        self.offset = 0
        self.connected = True
        self.disconnected = False
        self.disconnecting = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self._tempDataLen += len(data)

    def abortConnection(self) -> None:  # noqa: N802
        self.aborted = True

    def loseConnection(self) -> None:  # noqa: N802
        self.disconnecting = True


class SlowReaderTests(unittest.TestCase):
    def test_a_browser_that_does_not_read_loses_its_socket(self) -> None:
        """Past MAX_BUFFERED_BYTES held for it, the socket is aborted (the
        session stays, for a resume); before that, what the kernel does not
        take waits in the transport."""
        clock = Clock()
        writer = TurnWriter(clock)
        tcp = FakeTcp()
        connection = web_socket.WebSocketConnection(None, "peer", writer)  # type: ignore[arg-type]
        connection.makeConnection(tcp)
        self.assertTrue(connection._batched)
        connection.send_message(b"x" * 1000)
        clock.advance(0)
        self.assertEqual(tcp._tempDataLen, 0)  # the socket took it
        tcp.socket.accepting = False
        chunk = b"y" * 60_000
        while not tcp.aborted:
            self.assertLess(tcp._tempDataLen, web_socket.MAX_BUFFERED_BYTES + 2 * len(chunk))
            connection.send_message(chunk)
            clock.advance(0)
        self.assertTrue(connection.closed)
        self.assertGreater(tcp._tempDataLen, web_socket.MAX_BUFFERED_BYTES)


class SessionSurvivesViolationTests(SocketCase):
    @deferred_test
    async def test_a_signed_on_socket_that_breaks_the_protocol_can_resume(self) -> None:
        raw = await self.connect()
        raw.send(
            TextMessage(
                json.dumps(
                    {
                        "id": 1,
                        "command": "create_session",
                        "parameters": {"screen_name": "Alice", "password": "secret"},
                    }
                )
            )
        )

        def created() -> list[Any]:
            return [
                json.loads(e.data)
                for e in raw.events
                if isinstance(e, TextMessage) and '"id":1' in e.data
            ]

        await raw.until("the session", created)
        session = created()[0]["result"]
        raw.transport.write(b"\x81\x02{}")
        await raw.lost
        registry = self.server.server.registry
        await wait_until(lambda: registry.get("alice") is not None, "still signed on")
        again = await self.connect()
        again.send(
            TextMessage(
                json.dumps(
                    {
                        "id": 2,
                        "command": "restore_session",
                        "parameters": {
                            "session_id": session["session_id"],
                            "resume_token": session["resume_token"],
                            "last_seq": 0,
                        },
                    }
                )
            )
        )

        def restored() -> list[Any]:
            return [
                json.loads(e.data)
                for e in again.events
                if isinstance(e, TextMessage) and '"id":2' in e.data
            ]

        await again.until("the resume", restored)
        self.assertEqual(restored()[0]["status"], "success")


class HttpInputBoundTests(SocketCase):
    """Before any upgrade the listener is plain HTTP: the bound is per
    request, so a connection kept alive for many requests is never cut
    off, and one request too big to be ours is."""

    @deferred_test
    async def test_many_requests_on_one_connection_are_all_answered(self) -> None:
        padding = b"X-Padding: " + b"p" * 4000 + b"\r\n"
        request = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n" + padding + b"\r\n"
        raw = await self.connect(request)
        for count in range(1, 41):  # 160 KB in all: more than one request may have
            await raw.until("the answer", lambda n=count: raw.buffer.count(b"HTTP/1.1 200 OK") == n)
            if count < 40:
                raw.transport.write(request)
        self.assertFalse(raw.lost.called)

    @deferred_test
    async def test_a_request_too_big_is_cut_off(self) -> None:
        raw = await self.connect(
            b"POST /web/sessions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200000\r\n\r\n"
        )
        raw.transport.write(b"x" * 100_000)
        await raw.lost
        self.assertNotIn(b"HTTP/1.1 200", raw.buffer)
