# -*- test-case-name: tests.test_protocol_flap -*-
"""The FLAP connection every OSCAR service shares: framing, sequence numbers,
bounded buffers, keepalives, the unauthenticated timeout and the clean
channel-4 close.

Subclasses (auth, BOS) only decide what a sign-on frame and a SNAC mean.
Nothing a client sends may raise out of ``dataReceived``: malformed input is
answered at the protocol level (a SNAC error or a channel-4 close) and logged,
so one bad client never disturbs its peers.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from aimserver.protocols.turnwriter import TurnBatched, TurnWriter, batchable, send_now
from aimserver.services.base import Replies, SnacError
from aimserver.wire.codes import SnacErrorCode
from aimserver.wire.errors import MalformedData
from aimserver.wire.flap import (
    FLAP_HEADER_SIZE,
    FLAP_START,
    MAX_PAYLOAD,
    Channel,
    SignonPayload,
    pack_header,
    parse_header,
)
from aimserver.wire.reader import u16
from aimserver.wire.redact import trace_text
from aimserver.wire.snac import SNAC_HEADER, SNAC_HEADER_SIZE, SnacHeader, pack_snac
from aimserver.wire.tlv import Tlv, TlvList

HELLO = SignonPayload().pack()
# Frames that arrive while an asynchronous handler (a store lookup) is still
# running wait here, so that a connection's SNACs are handled in order: at
# most this many, and this many bytes of them (256 frames of 64 KiB would be
# 16 MiB held for one connection).
MAX_QUEUED_FRAMES = 256
MAX_QUEUED_BYTES = 256 * 1024
MAX_SEQUENCE = 0x7FFF
#: Send buffer asked of the kernel per connection (it doubles the figure).
KERNEL_SEND_BUFFER = 128 * 1024
#: A FLAP header and a SNAC header in one: a push costs one pack per recipient.
_FLAP_AND_SNAC = struct.Struct("!BBHHHHHI")
_DATA = int(Channel.DATA)
#: What a data frame too short for a SNAC header counts as against the rate
#: limits: family 0 is in no rate class's list, so the default class.
SHORT_SNAC = SnacHeader(0, 0, 0, 0)

#: Kinds of unknown SNAC logged per connection (bench/chaos/hostile.py's
#: flood wrote a line for each of ~100 before the rate limit cut in).
MAX_UNKNOWN_LOGGED = 8


@attrs.frozen
class ConnectionSettings:
    """The limits one connection runs under (from ``Config.connection``/``auth``)."""

    max_frame_size: int = 0xFFFF
    max_unauthenticated_frame_size: int = 2048
    login_timeout: float = 30.0
    max_send_queue: int = 1 << 20
    trace: bool = False
    #: Seconds a signed-on connection may go without sending anything
    #: (keepalives count) before it is closed; 0 = never.
    idle_timeout: float = 0.0


@implementer(IPushProducer)
class FlapConnection(TurnBatched, Protocol, TimeoutMixin):
    """One OSCAR TCP connection. Subclasses implement ``signon_received`` and
    the ``snac_handlers`` table."""

    log = Logger()

    #: Human name of the service in log lines.
    service_name = "flap"

    def __init__(
        self,
        settings: ConnectionSettings,
        clock: IReactorTime,
        sweeper: KeepaliveSweeper | None = None,
        writer: TurnWriter | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.sweeper = sweeper
        self.writer = writer
        self._buffer = b""
        self._sequence = random.randint(0, MAX_SEQUENCE)
        self._signed_on = False
        self._authenticated = False
        self._closing = False
        self._short_snac_logged = False
        #: Unknown SNACs logged on this connection: each kind once, at most
        #: MAX_UNKNOWN_LOGGED kinds (a flood is answered, not logged).
        self._unknown_logged: set[tuple[int, int]] = set()
        self._push_id = 0
        self._paused = False
        self._unsent_while_paused = 0
        self._busy: defer.Deferred[Any] | None = None
        self._queued: deque[tuple[int, bytes]] = deque()
        #: Their payloads' bytes.
        self._queued_bytes = 0
        self.wrote_since_sweep = False
        #: Sweeps (``KeepaliveSweeper``) since the peer last sent anything.
        self.read_since_sweep = False
        self.quiet_sweeps = 0
        #: Gives back this connection's place in its address's count.
        self.release_address: Callable[[], None] | None = None
        #: Where the connection waits until it authenticates (set by its factory).
        self.pending_connections: PendingConnections | None = None
        self.peer = "?"
        #: ``(family, subtype) -> handler``, called by ``call_handler`` (the BOS
        #: connection puts the session first). A handler returns the replies
        #: to send (``Replies``, sent with the request's id), None, or a
        #: Deferred of either, which holds this connection's later frames until
        #: it fires; it raises ``SnacError`` for a protocol-level refusal and
        #: ``MalformedData`` for a body that does not parse (answered 0x000E).
        self.snac_handlers: dict[tuple[int, int], Callable[[SnacHeader, bytes], Any]] = {}

    # -- TimeoutMixin uses our clock, so tests drive it with task.Clock -----------------

    def callLater(self, period: float, func: Callable[[], object]) -> Any:
        return self.clock.callLater(period, func)

    # -- connection life ----------------------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self._limit_kernel_buffer()
        self._batched = batchable(self.writer, self.transport)
        self.transport.registerProducer(self, True)
        if self.sweeper is not None:
            self.sweeper.connections.add(self)
        self.setTimeout(self.settings.login_timeout)
        if self.pending_connections is not None:
            self.pending_connections.add(self)
        # The server greets first and never waits for the client's hello.
        self.send_frame(Channel.SIGNON, HELLO)

    def _limit_kernel_buffer(self) -> None:
        """A reader that stops reading first fills the kernel's send buffer
        (megabytes by default) before ``max_send_queue`` starts counting;
        cap it so a stalled client costs little and is cut off sooner."""
        handle = getattr(self.transport, "getHandle", None)
        if handle is None:
            return
        with contextlib.suppress(OSError, AttributeError):
            handle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER)

    def timeoutConnection(self) -> None:
        self.log.info(
            "{service}: {peer} did not authenticate in time",
            service=self.service_name,
            peer=self.peer,
        )
        self.close()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.setTimeout(None)
        if self.pending_connections is not None:
            self.pending_connections.discard(self)
        release, self.release_address = self.release_address, None
        if release is not None:
            release()
        self._closing = True
        self._queued.clear()
        self._queued_bytes = 0
        if self.sweeper is not None:
            self.sweeper.connections.discard(self)

    @property
    def closing(self) -> bool:
        """The connection is closing or closed: it sends nothing more."""
        return self._closing

    def next_request_id(self) -> int:
        """A request ID for a SNAC the server starts (a push, not a reply):
        high bit set, never 0, counted per connection (``send_event`` counts
        the same way)."""
        self._push_id = (self._push_id + 1) & 0x7FFFFFFF or 1
        return 0x80000000 | self._push_id

    def authenticated(self) -> None:
        """The peer proved who it is: lift the login timeout and the small frame limit."""
        self._authenticated = True
        self.setTimeout(None)
        if self.pending_connections is not None:
            self.pending_connections.discard(self)

    # -- flow control: a reader that stops reading is cut off, not buffered forever ---

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._unsent_while_paused = 0

    def stopProducing(self) -> None:
        pass

    # -- receiving ----------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self.read_since_sweep = True
        buf = self._buffer + data if self._buffer else data
        offset = 0
        size = len(buf)
        while size - offset >= 1:
            if buf[offset] != FLAP_START:
                self.protocol_error("FLAP start byte 0x{byte:02x}", byte=buf[offset])
                return
            if size - offset < FLAP_HEADER_SIZE:
                break
            channel, _sequence, length = parse_header(buf, offset)
            # Per frame: a sign-on accepted earlier in this read lifts the limit.
            limit = (
                self.settings.max_frame_size
                if self._authenticated
                else self.settings.max_unauthenticated_frame_size
            )
            if length > limit:
                self.protocol_error("FLAP frame of {length} bytes over limit", length=length)
                return
            end = offset + FLAP_HEADER_SIZE + length
            if end > size:
                break
            payload = buf[offset + FLAP_HEADER_SIZE : end]
            offset = end
            if self._busy is not None:
                if (
                    len(self._queued) >= MAX_QUEUED_FRAMES
                    or self._queued_bytes + length > MAX_QUEUED_BYTES
                ):
                    self.protocol_error("too many frames queued")
                    return
                self._queued.append((channel, payload))
                self._queued_bytes += length
            else:
                self._frame_received(channel, payload)
            if self._closing:
                return
        self._buffer = buf[offset:]

    def _frame_received(self, channel: int, payload: bytes) -> None:
        if self.settings.trace:
            self.log.debug(
                "{service} {peer} <- ch{channel} {payload}",
                service=self.service_name,
                peer=self.peer,
                channel=channel,
                payload=trace_text(channel, payload),
            )
        if channel == Channel.DATA:
            if not self._signed_on:
                self.protocol_error("SNAC before the FLAP sign-on frame")
                return
            self._snac_frame(payload)
        elif channel == Channel.SIGNON:
            if self._signed_on:
                self.protocol_error("second FLAP sign-on frame")
                return
            self._signed_on = True
            try:
                signon = SignonPayload.unpack(payload)
            except MalformedData as e:
                self.protocol_error("malformed sign-on frame: {error}", error=str(e))
                return
            self._run(self.signon_received, signon)
        elif channel == Channel.KEEP_ALIVE:
            pass
        elif channel == Channel.SIGNOFF:
            self.close(signoff=False)
        else:
            self.protocol_error("FLAP channel {channel}", channel=channel)

    def _snac_frame(self, payload: bytes) -> None:
        if len(payload) < SNAC_HEADER_SIZE:
            # Counted like any SNAC (in the default class) before anything
            # else, and logged once per connection: a flood of them must
            # neither write a log line each nor stay under the rate limits.
            if not self.snac_allowed(SHORT_SNAC) or self._short_snac_logged:
                return
            self._short_snac_logged = True
            self.log.info(
                "{service}: {peer} sent a {size}-byte SNAC, ignored (and any more like it)",
                service=self.service_name,
                peer=self.peer,
                size=len(payload),
            )
            return
        busted: MalformedData | None = None
        try:
            header, body = SnacHeader.unpack(payload)
        except MalformedData as e:
            header, body, busted = SnacHeader(*SNAC_HEADER.unpack_from(payload)), b"", e
        if header.subtype == 0x0001:
            # Never answer an error with an error: two peers could loop forever.
            return
        # Counted before any reply, errors included, so a flood is never answered in kind.
        if not self.snac_allowed(header):
            return
        if busted is not None:
            self.log.info(
                "{service}: {peer} bad SNAC prefix: {error}",
                service=self.service_name,
                peer=self.peer,
                error=str(busted),
            )
            self.send_snac_error(header, SnacErrorCode.BUSTED_SNAC_PAYLOAD)
            return
        handler = self.snac_handlers.get((header.family, header.subtype))
        if handler is None:
            kind = (header.family, header.subtype)
            logged = self._unknown_logged
            if kind not in logged and len(logged) < MAX_UNKNOWN_LOGGED:
                logged.add(kind)
                self.log.info(
                    "{service}: {peer} sent unknown SNAC {family:#06x},{subtype:#06x}"
                    " (answered; logged once per connection)",
                    service=self.service_name,
                    peer=self.peer,
                    family=header.family,
                    subtype=header.subtype,
                )
            self.send_snac_error(header, SnacErrorCode.INVALID_SNAC)
            return
        self._run(handler, header, body, request=header)

    def _run(
        self, handler: Callable[..., Any], *args: Any, request: SnacHeader | None = None
    ) -> None:
        """Call a handler, send the replies it returns, map its failures to
        protocol answers, and hold later frames while a Deferred it returned
        is pending (so one connection's SNACs are handled in order)."""
        try:
            result = self.call_handler(handler, *args)
            if not isinstance(result, defer.Deferred):
                self._send_replies(result, request)
                return
        except Exception:
            self._handler_failed(Failure(), request)
            return
        self._busy = result
        result.addCallback(self._send_replies, request)
        result.addErrback(self._handler_failed, request)
        result.addBoth(self._handler_done)

    def call_handler(self, handler: Callable[..., Any], *args: Any) -> Any:
        return handler(*args)

    def _send_replies(self, replies: Replies | None, request: SnacHeader | None) -> None:
        if not replies or request is None:
            return
        for reply in replies:
            self.send_snac(reply.family, reply.subtype, reply.body, request.request_id, reply.flags)

    def _handler_done(self, _: object) -> None:
        self._busy = None
        while self._queued and self._busy is None and not self._closing:
            channel, payload = self._queued.popleft()
            self._queued_bytes -= len(payload)
            self._frame_received(channel, payload)

    def _handler_failed(self, failure: Failure, request: SnacHeader | None) -> None:
        if self._closing:
            return
        if failure.check(SnacError):
            error: SnacError = failure.value  # type: ignore[assignment]
            if request is not None:
                self.send_snac_error(request, error.code, error.subcode)
            return
        if failure.check(MalformedData):
            self.log.info(
                "{service}: {peer} sent malformed data: {error}",
                service=self.service_name,
                peer=self.peer,
                error=str(failure.value),
            )
            if request is None:
                self.close()
            else:
                self.send_snac_error(request, SnacErrorCode.BUSTED_SNAC_PAYLOAD)
            return
        self.log.failure(
            "{service}: handling a frame from {peer} failed",
            failure,
            service=self.service_name,
            peer=self.peer,
        )
        if request is None:
            self.close()
        else:
            self.send_snac_error(request, SnacErrorCode.SERVICE_UNAVAILABLE)

    # -- hooks for subclasses -----------------------------------------------------------

    def signon_received(self, signon: SignonPayload) -> Any:
        raise NotImplementedError

    def snac_allowed(self, header: SnacHeader) -> bool:
        """Rate limiting hook: False drops the SNAC silently."""
        return True

    # -- sending ------------------------------------------------------------------------

    def send_event(self, event: Any) -> None:
        """A push (``services.events.Event``): its SNAC rendering, built once
        for every recipient, under a request id of this connection's own.
        The FLAP and SNAC headers are packed in one go: this is every
        fan-out's per-recipient cost."""
        if self._closing:
            return
        family, subtype, body = event._snac or event.snac()
        size = SNAC_HEADER_SIZE + len(body)
        if size > MAX_PAYLOAD:
            self._oversize(size)
            return
        self._push_id = (self._push_id + 1) & 0x7FFFFFFF or 1
        sequence = self._sequence
        self._sequence = 0 if sequence >= MAX_SEQUENCE else sequence + 1
        data = (
            _FLAP_AND_SNAC.pack(
                FLAP_START, _DATA, sequence, size, family, subtype, 0, 0x80000000 | self._push_id
            )
            + body
        )
        if self._paused or self.settings.trace:
            self._write(data, _DATA)
        else:
            # _write's common case, inline: this is once per recipient.
            self.wrote_since_sweep = True
            self._send(data)

    def _oversize(self, size: int) -> None:
        # A bug upstream, never the peer's fault: drop the frame, keep the connection.
        self.log.error(
            "{service}: not sending a {size}-byte frame to {peer}",
            service=self.service_name,
            peer=self.peer,
            size=size,
        )

    def send_frame(self, channel: int, payload: bytes) -> None:
        if self._closing and channel != Channel.SIGNOFF:
            return
        if len(payload) > MAX_PAYLOAD:
            self._oversize(len(payload))
            return
        sequence = self._sequence
        self._sequence = 0 if sequence >= MAX_SEQUENCE else sequence + 1
        self._write(pack_header(channel, sequence, len(payload)) + payload, channel)

    def _write(self, data: bytes, channel: int) -> None:
        """One whole frame to the transport; a reader that stops reading is
        cut off once ``max_send_queue`` bytes wait for it."""
        if self.settings.trace:
            self.log.debug(
                "{service} {peer} -> ch{channel} {payload}",
                service=self.service_name,
                peer=self.peer,
                channel=channel,
                payload=trace_text(channel, data[FLAP_HEADER_SIZE:]),
            )
        self.wrote_since_sweep = True
        if self._paused:
            self._unsent_while_paused += len(data)
            if self._unsent_while_paused > self.settings.max_send_queue:
                self.log.warn(
                    "{service}: {peer} is not reading; disconnecting",
                    service=self.service_name,
                    peer=self.peer,
                )
                self._closing = True
                self.transport.write(data)
                self.transport.abortConnection()
                return
        self._send(data)

    def flush_turn(self) -> None:
        """The turn ends: what this connection wrote during it, in one go."""
        data = self._take_turn()
        if data is not None:
            send_now(self.transport, data)

    def send_snac(
        self, family: int, subtype: int, body: bytes = b"", request_id: int = 0, flags: int = 0
    ) -> None:
        self.send_frame(Channel.DATA, pack_snac(family, subtype, body, request_id, flags))

    def reply(
        self, request: SnacHeader, subtype: int, body: bytes = b"", family: int | None = None
    ) -> None:
        """Answer ``request`` (same family unless given, same request ID)."""
        self.send_snac(
            request.family if family is None else family, subtype, body, request.request_id
        )

    def send_snac_error(self, request: SnacHeader, code: int, subcode: int | None = None) -> None:
        body = u16(code)
        if subcode is not None:
            body += Tlv.u16(0x0008, subcode).pack()
        self.send_snac(request.family, 0x0001, body, request.request_id)

    def send_keepalive(self) -> None:
        self.send_frame(Channel.KEEP_ALIVE, b"")

    def close(self, tlvs: Iterable[Tlv] = (), signoff: bool = True) -> None:
        """End the connection cleanly: a channel-4 frame (optionally with TLVs,
        e.g. a disconnect reason), then close once it is written."""
        if self._closing:
            return
        if signoff:
            self.send_frame(Channel.SIGNOFF, TlvList.of(tlvs).pack_list())
        self._closing = True
        self.setTimeout(None)
        self.flush_turn()
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def protocol_error(self, message: str, **fields: object) -> None:
        """Garbage on the wire: log it and close with a channel-4 frame."""
        self.log.info(
            "{service}: closing {peer}: " + message,
            service=self.service_name,
            peer=self.peer,
            **fields,
        )
        self.close()


class KeepaliveSweeper:
    """One timer for every connection of a listener: each sweep sends a channel-5
    keepalive to connections we wrote nothing to since the last sweep (NAT
    boxes drop silent TCP flows; per-connection timers would cost a DelayedCall
    each)."""

    log = Logger()

    def __init__(self, clock: IReactorTime, interval: float) -> None:
        self.interval = interval
        self.connections: set[FlapConnection] = set()
        self._loop = LoopingCall(self.sweep)
        self._loop.clock = clock

    def start(self) -> None:
        if self.interval > 0 and not self._loop.running:
            self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def sweep(self) -> None:
        for connection in list(self.connections):
            with self.log.failuresHandled("keepalive to {peer}", peer=connection.peer):
                if self._idle_too_long(connection):
                    continue
                if not connection.wrote_since_sweep:
                    connection.send_keepalive()
                connection.wrote_since_sweep = False

    def _idle_too_long(self, connection: FlapConnection) -> bool:
        """Close a signed-on connection that sent nothing for the idle
        timeout (checked at each sweep, so to within one interval)."""
        if connection.read_since_sweep:
            connection.read_since_sweep = False
            connection.quiet_sweeps = 0
            return False
        connection.quiet_sweeps += 1
        timeout = connection.settings.idle_timeout
        if not timeout or not connection._authenticated:
            return False
        if connection.quiet_sweeps * self.interval < timeout:
            return False
        self.log.info(
            "{peer}: closing, nothing received for {seconds:.0f} s",
            peer=connection.peer,
            seconds=connection.quiet_sweeps * self.interval,
        )
        connection.close()
        return True


class AddressLimit:
    """Connections open per client address, across the listeners that share
    this object: one address may not hold every file descriptor (a review
    opened 500 idle connections from one address, and real sign-ons failed
    at a low fd limit). 0 means no limit."""

    log = Logger()

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}

    def admit(self, address: str) -> bool:
        count = self.open.get(address, 0)
        if self.limit and count >= self.limit:
            self.log.info(
                "refused a connection from {address}: it has {count} open",
                address=address,
                count=count,
            )
            return False
        self.open[address] = count + 1
        return True

    def release(self, address: str) -> None:
        count = self.open.get(address, 0) - 1
        if count > 0:
            self.open[address] = count
        else:
            self.open.pop(address, None)


class PendingConnections:
    """Connections not yet authenticated, across the listeners that share
    this object, oldest first. Past ``limit`` the oldest is closed (FLAP
    channel 4): it has had the most time to log in, and a flood of idle
    connections then pushes out its own, not a login that is under way.
    0 means no limit."""

    log = Logger()

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.waiting: dict[FlapConnection, None] = {}
        #: Connections closed to make room, since start (for /stats).
        self.evicted = 0

    def add(self, connection: FlapConnection) -> None:
        self.waiting[connection] = None
        while self.limit and len(self.waiting) > self.limit:
            oldest = next(iter(self.waiting))
            del self.waiting[oldest]
            self.evicted += 1
            self.log.info(
                "{service}: closed {peer}, not authenticated: {limit} connections were waiting",
                service=oldest.service_name,
                peer=oldest.peer,
                limit=self.limit,
            )
            oldest.close()

    def discard(self, connection: FlapConnection) -> None:
        self.waiting.pop(connection, None)


class FlapFactory(Factory):
    """Shared parts of a listener: its settings, clock and keepalive sweeper."""

    log = Logger()

    #: Connections per client address (shared by the process's listeners);
    #: None: no limit.
    addresses: AddressLimit | None = None
    #: Connections not yet authenticated (shared by the process's
    #: listeners); None: no limit.
    pending_connections: PendingConnections | None = None
    #: Which addresses may connect at all (``services.access``); None: any.
    access: Any = None

    def __init__(
        self, settings: ConnectionSettings, clock: IReactorTime, keepalive_interval: float
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.sweeper = KeepaliveSweeper(clock, keepalive_interval)
        self.writer = TurnWriter(clock)

    def startFactory(self) -> None:
        self.sweeper.start()

    def stopFactory(self) -> None:
        self.sweeper.stop()

    def buildProtocol(self, addr: Any) -> FlapConnection | None:
        """A connection, unless its address holds as many as it may (then
        Twisted closes it at once, before a byte is read)."""
        address = getattr(addr, "host", None)
        access = self.access
        if access is not None and address is not None and not access.admits_address(address):
            self.log.info("refused a connection from {address}: denied", address=address)
            return None
        limit = self.addresses
        if limit is not None and address is not None and not limit.admit(address):
            return None
        connection = self.make_connection()
        if limit is not None and address is not None:
            connection.release_address = lambda: limit.release(address)
        connection.pending_connections = self.pending_connections
        return connection

    def make_connection(self) -> FlapConnection:
        raise NotImplementedError
