"""The load generator's browser-protocol client (docs/web-protocol.md) on
asyncio: one WebSocket to ``ws://HOST:PORT/ws`` per session instance.

The HTTP upgrade is wsproto's (sans-IO ``WSConnection(ConnectionType.CLIENT)``
fed from an ``asyncio.Protocol``, as ``loadgen.FlapClient`` is fed). After
the upgrade the frames take one of two codecs:

* ``fast`` (the default): server frames (never masked, no extension is
  negotiated) are split with a few byte reads, and client frames are built
  with their header and a random mask per frame, XORed as one integer. About
  1 µs a frame each way, where wsproto takes 7-8 µs: the generator is pinned
  to one core and must not be what limits a run.
* ``wsproto``: every frame through wsproto, to cross-check the fast codec
  (``WsClient(codec="wsproto")``, or ``AIMBENCH_WS_CODEC=wsproto`` in the
  environment for a whole run).

``WsClient`` is one browser session and outlives its sockets: it keeps the
``session_id`` / ``resume_token``, the last event ``seq`` received, the
requests not yet answered (a ``send_im`` is sent again after a resume with
the same id and ``client_message_id``: the server answers a repeat from
memory and delivers it once), and acks events as the page does (one ack
per ``ack_interval``) and also every ``ack_every`` events, so that fewer than
the server's 1,000 kept events are ever unacked.

Events are checked against their ``seq`` (1, 2, 3 ... per session instance,
no gaps): a repeat is counted as ``event seq repeated`` and dropped (the page
drops it too), a jump as ``event seq gap``.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any

import orjson
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

DEFAULT_TIMEOUT = 10.0
#: Requests written and not yet answered, per socket (the server closes a
#: socket with more than 32 waiting; the rest wait here).
MAX_IN_FLIGHT = 24
#: The page's ack timer (aimserver/web/static/js/protocol.js ACK_INTERVAL_MS).
ACK_INTERVAL = 0.5
#: Ack at the latest after this many events (the server keeps at most 1,000).
ACK_EVERY = 200
PATH = "/ws"
#: ``fast`` or ``wsproto`` (see above).
DEFAULT_CODEC = os.environ.get("AIMBENCH_WS_CODEC", "fast")

_TEXT = 0x1
_BINARY = 0x2
_CLOSE = 0x8
_PING = 0x9
_PONG = 0xA
_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


class WebFailure(Exception):
    """A request answered with an error, or a refused upgrade."""

    def __init__(self, message: str, error_type: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type


def client_frame(payload: bytes, opcode: int = _TEXT) -> bytes:
    """One final client frame, masked with a random key (RFC 6455 §5.3)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        head = _HEAD16.pack(0x80 | opcode, 0xFE, size)
    else:
        head = _HEAD64.pack(0x80 | opcode, 0xFF, size)
    key = random.getrandbits(32).to_bytes(4, "little")
    if not size:
        return head + key
    mask = (key * ((size + 3) >> 2))[:size]
    masked = int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")
    return head + key + masked.to_bytes(size, "little")


class _Wire(asyncio.Protocol):
    """One TCP connection of a ``WsClient``: the upgrade through wsproto,
    then frames; complete text messages go to ``owner._message``."""

    def __init__(self, owner: WsClient, codec: str) -> None:
        self.owner = owner
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.fast = False
        self.use_fast = codec == "fast"
        self.opened: asyncio.Future[None] = self.loop.create_future()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.dead = False
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._text: list[str] = []

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host, port = self.owner.address
        self.transport.write(self.ws.send(Request(host=f"{host}:{port}", target=PATH)))

    def data_received(self, data: bytes) -> None:
        if self.dead:
            return
        if self.fast:
            self._frames(data)
            return
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                # The server says nothing before the first request, so no
                # frame can follow the 101 in this read: the fast codec
                # takes over from the next byte.
                self.fast = self.use_fast
                if not self.opened.done():
                    self.opened.set_result(None)
            elif isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    text, self._text = "".join(self._text), []
                    self.owner._message(self, text.encode())
            elif isinstance(event, BytesMessage):
                self.owner.problems["binary message"] += 1
            elif isinstance(event, Ping):
                self._write(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.owner.close_codes[event.code] += 1
                self._write(self.ws.send(event.response()))
                self._closed_by_server()
                return
            elif isinstance(event, RejectConnection | RejectData):
                if not self.opened.done():
                    self.opened.set_exception(WebFailure("the WebSocket upgrade was refused"))
                self._closed_by_server()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection closed ({exc or 'EOF'})"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.owner._lost(self)

    # frames

    def send_text(self, payload: bytes) -> None:
        transport = self.transport
        if transport is None or self.dead or transport.is_closing():
            return
        if self.fast:
            transport.write(client_frame(payload))
        else:
            transport.write(self.ws.send(TextMessage(data=payload.decode())))

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _frames(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        size = len(buffer)
        pos = 0
        owner = self.owner
        while size - pos >= 2:
            b0 = buffer[pos]
            length = buffer[pos + 1]
            head = 2
            if length & 0x80 or b0 & 0x70:
                self._fail("a masked or extended server frame")
                return
            if length == 126:
                if size - pos < 4:
                    break
                (length,) = _U16.unpack_from(buffer, pos + 2)
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                (length,) = _U64.unpack_from(buffer, pos + 2)
                head = 10
            end = pos + head + length
            if end > size:
                break
            payload = buffer[pos + head : end]
            pos = end
            opcode = b0 & 0x0F
            if opcode == _TEXT and b0 & 0x80 and not self._fragments:
                owner._message(self, payload)
                if self.dead:
                    return
            elif opcode in (0, _TEXT, _BINARY):
                self._fragments.append(payload)
                if b0 & 0x80:
                    whole, self._fragments = b"".join(self._fragments), []
                    owner._message(self, whole)
                    if self.dead:
                        return
            elif opcode == _CLOSE:
                code = _U16.unpack_from(payload)[0] if len(payload) >= 2 else 1005
                owner.close_codes[code] += 1
                self._write(client_frame(payload[:2], _CLOSE))
                self._closed_by_server()
                return
            elif opcode == _PING:
                self._write(client_frame(payload, _PONG))
        self._buffer = buffer[pos:] if pos < size else b""

    def _closed_by_server(self) -> None:
        """The server closed the WebSocket: nothing more is written on it."""
        self.dead = True
        if self.transport is not None:
            self.transport.close()
        self.owner._lost(self)

    def _fail(self, why: str) -> None:
        self.owner.problems[why] += 1
        self.abort()

    def abort(self) -> None:
        self.dead = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Pending:
    __slots__ = ("command", "payload", "tag", "resend", "waiter")

    def __init__(self, command: str, payload: bytes, tag: Any, resend: bool) -> None:
        self.command = command
        self.payload = payload
        self.tag = tag
        self.resend = resend
        self.waiter: asyncio.Future[dict[str, Any]] | None = None


class WsClient:
    """One browser session instance over one WebSocket at a time.

    ``on_event(client, message)`` gets every event (in ``seq`` order, repeats
    dropped); ``on_answer(client, message, tag)`` gets the answer to every
    request made with ``send_request`` (``call`` awaits its own).
    """

    def __init__(
        self,
        address: tuple[str, int],
        label: Hashable = None,
        *,
        codec: str = DEFAULT_CODEC,
        ack_interval: float = ACK_INTERVAL,
        ack_every: int = ACK_EVERY,
    ) -> None:
        self.address = address
        self.label = label
        self.codec = codec
        self.loop = asyncio.get_running_loop()
        self.wire: _Wire | None = None
        #: Requests from the queue may be written (signed on or restored on this wire).
        self.live = False
        self.session_id = ""
        self.resume_token = ""
        self.screen_name = ""
        #: The highest event seq received (in order).
        self.last_seq = 0
        self.acked = 0
        #: 0: no automatic acks at all.
        self.ack_interval = ack_interval
        self.ack_every = ack_every
        self._ack_timer: asyncio.TimerHandle | None = None
        self._ids = 0
        #: request id -> what was asked, until answered (insertion = id order)
        self.pending: dict[int, _Pending] = {}
        #: ids waiting for room in the in-flight window, oldest first
        self._queue: list[int] = []
        self._queue_at = 0
        self.in_flight = 0
        self.on_event: Callable[[WsClient, dict[str, Any]], None] | None = None
        self.on_answer: Callable[[WsClient, dict[str, Any], Any], None] | None = None
        #: lost requests, seq gaps, protocol faults
        self.problems: Counter[str] = Counter()
        self.close_codes: Counter[int] = Counter()
        self.events = 0
        #: Free for the scenario that owns the session.
        self.user: Any = None

    # -- sockets ----------------------------------------------------------------------------

    async def connect(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """A new socket, upgraded (the previous one, if any, must be gone)."""
        wire = _Wire(self, self.codec)
        self.wire = wire
        self.live = False
        self.in_flight = 0
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: wire, *self.address), timeout
            )
            await asyncio.wait_for(asyncio.shield(wire.opened), timeout)
        except BaseException:
            wire.abort()
            if self.wire is wire:
                self.wire = None
            raise

    @property
    def connected(self) -> bool:
        return self.wire is not None and not self.wire.dead

    def drop(self) -> None:
        """The network goes: the socket is reset, nothing is said (a resume follows)."""
        wire = self.wire
        if wire is not None:
            wire.abort()
            self._lost(wire)

    def close(self) -> None:
        """Close the socket (the session stays for a resume, as after a drop)."""
        wire = self.wire
        if wire is not None:
            wire.close()

    def _lost(self, wire: _Wire) -> None:
        if wire is not self.wire:
            return
        self.wire = None
        self.live = False
        self.in_flight = 0
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        for rid, entry in list(self.pending.items()):
            if entry.resend:
                continue
            del self.pending[rid]
            if entry.waiter is not None and not entry.waiter.done():
                entry.waiter.set_exception(ConnectionError("the socket went"))

    # -- requests -------------------------------------------------------------------------

    def send_request(
        self, command: str, parameters: dict[str, Any], tag: Any = None, resend: bool = False
    ) -> int:
        """Queue one request (written at once if the window has room); its
        answer goes to ``on_answer``. ``resend``: written again on the next
        socket if unanswered when this one goes."""
        self._ids += 1
        rid = self._ids
        payload = orjson.dumps({"id": rid, "command": command, "parameters": parameters})
        self.pending[rid] = _Pending(command, payload, tag, resend)
        if self.live and self.in_flight < MAX_IN_FLIGHT and self._queue_at == len(self._queue):
            self.in_flight += 1
            self.wire.send_text(payload)  # type: ignore[union-attr]
        elif resend or self.live:
            self._queue.append(rid)
        else:
            # Not resendable and no session on a socket: it is lost, as the page's would be.
            del self.pending[rid]
        return rid

    async def call(
        self, command: str, parameters: dict[str, Any], timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """One request written now, ahead of the queue; its ``result``.
        WebFailure for an error answer."""
        if not self.connected:
            raise ConnectionError("no socket")
        self._ids += 1
        rid = self._ids
        payload = orjson.dumps({"id": rid, "command": command, "parameters": parameters})
        entry = _Pending(command, payload, None, False)
        entry.waiter = self.loop.create_future()
        self.pending[rid] = entry
        self.in_flight += 1
        self.wire.send_text(payload)  # type: ignore[union-attr]
        try:
            answer = await asyncio.wait_for(asyncio.shield(entry.waiter), timeout)
        finally:
            self.pending.pop(rid, None)
        if answer.get("status") != "success":
            raise WebFailure(
                f"{command}: {answer.get('error_type')}: {answer.get('error')}",
                str(answer.get("error_type")),
            )
        return answer.get("result") or {}

    def _pump(self) -> None:
        queue = self._queue
        wire = self.wire
        if not self.live or wire is None:
            return
        while self.in_flight < MAX_IN_FLIGHT and self._queue_at < len(queue):
            rid = queue[self._queue_at]
            self._queue_at += 1
            entry = self.pending.get(rid)
            if entry is None:
                continue
            self.in_flight += 1
            wire.send_text(entry.payload)
        if self._queue_at == len(queue):
            queue.clear()
            self._queue_at = 0

    # -- session --------------------------------------------------------------------------

    async def create_session(
        self, screen_name: str, password: str, timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        result = await self.call(
            "create_session",
            {"screen_name": screen_name, "password": password, "client": "aimbench"},
            timeout,
        )
        self.session_id = result["session_id"]
        self.resume_token = result["resume_token"]
        self.screen_name = result.get("screen_name", screen_name)
        self.live = True
        self._pump()
        return result

    async def restore(
        self, last_seq: int | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """``restore_session`` on the current socket from ``last_seq`` (default:
        the last event received); then every unanswered resendable request
        again, in order."""
        if last_seq is not None:
            self.last_seq = last_seq
        self.acked = min(self.acked, self.last_seq)
        result = await self.call(
            "restore_session",
            {
                "session_id": self.session_id,
                "resume_token": self.resume_token,
                "last_seq": self.last_seq,
            },
            timeout,
        )
        self.resume_token = result["resume_token"]
        self._queue = [rid for rid, entry in self.pending.items() if entry.resend]
        self._queue_at = 0
        self.live = True
        self._pump()
        return result

    async def close_session(self, timeout: float = 5.0) -> None:
        """Sign off (``close_session``); the server closes the socket."""
        if not self.live or not self.connected:
            self.close()
            return
        wire = self.wire
        try:
            await self.call("close_session", {}, timeout)
            if wire is not None:
                await asyncio.wait_for(asyncio.shield(wire.closed), timeout)
        except (OSError, TimeoutError, WebFailure):
            pass
        finally:
            self.close()

    def ack_now(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if self.last_seq > self.acked and self.live and self.connected:
            self.acked = self.last_seq
            self.send_request("ack", {"seq": self.last_seq})

    def _ack_due(self) -> None:
        self._ack_timer = None
        self.ack_now()

    # -- receiving ------------------------------------------------------------------------

    def _message(self, wire: _Wire, data: bytes) -> None:
        if wire is not self.wire:
            return
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.problems["not JSON"] += 1
            return
        seq = message.get("seq")
        if "event" in message:
            last = self.last_seq
            if seq != last + 1:
                if not isinstance(seq, int):
                    self.problems["event without seq"] += 1
                elif seq <= last:
                    self.problems["event seq repeated"] += 1
                    return
                else:
                    self.problems["event seq gap"] += seq - last - 1
            if isinstance(seq, int):
                self.last_seq = seq
            self.events += 1
            handler = self.on_event
            if handler is not None:
                handler(self, message)
            if self.ack_every and self.last_seq - self.acked >= self.ack_every:
                self.ack_now()
            elif self.ack_interval and self._ack_timer is None:
                self._ack_timer = self.loop.call_later(self.ack_interval, self._ack_due)
            return
        entry = self.pending.pop(message.get("id"), None)  # type: ignore[arg-type]
        if entry is None:
            self.problems["answer to no request"] += 1
            return
        self.in_flight -= 1
        if entry.waiter is not None:
            if not entry.waiter.done():
                entry.waiter.set_result(message)
        elif entry.command == "ack":
            if message.get("status") != "success":
                self.problems[f"ack refused: {message.get('error_type')}"] += 1
        else:
            handler = self.on_answer
            if handler is not None:
                handler(self, message, entry.tag)
            elif message.get("status") != "success":
                self.problems[f"{entry.command} refused: {message.get('error_type')}"] += 1
        if self._queue:
            self._pump()


async def sign_on(
    address: tuple[str, int],
    screen_name: str,
    password: str,
    *,
    label: Hashable = None,
    attempts: int = 3,
    timeout: float = DEFAULT_TIMEOUT,
    **options: Any,
) -> WsClient:
    """A browser session: connect, upgrade, ``create_session``. Set-up, not
    measured: a failed attempt is retried."""
    for attempt in range(attempts):
        client = WsClient(address, label, **options)
        try:
            await client.connect(timeout)
            await client.create_session(screen_name, password, timeout)
            return client
        except (OSError, TimeoutError, WebFailure) as e:
            client.drop()
            if attempt == attempts - 1:
                raise RuntimeError(f"web sign-on of {screen_name} failed: {e!r}") from e
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def resume(client: WsClient, timeout: float = DEFAULT_TIMEOUT) -> tuple[float, int]:
    """A new socket and ``restore_session`` from the last event received:
    (seconds from the connect to the answer, events the server replays)."""
    started = time.perf_counter()
    await client.connect(timeout)
    result = await client.restore(timeout=timeout)
    return time.perf_counter() - started, int(result.get("replayed", -1))
