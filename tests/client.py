"""A small OSCAR client for the tests: frames, the two login methods, the BOS
sign-on sequence, IMs, buddies. Built on our own codecs, speaking real TCP
(or any transport) to the real protocols.

Frames the tests do not ask for are kept in order, so a test waits for what
it expects (``wait_snac``) and can assert that nothing else arrived
(``unexpected``) once a round trip (``BosClient.sync``) has proved that the
server wrote everything it was going to.

Every wait here is bounded (``TIMEOUT`` unless told otherwise) and fails with
a ``WaitTimeout`` that says what was awaited.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Coroutine, Sequence
from functools import wraps
from typing import Any, TypeVar

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import FailTest

from aimserver.store.credentials import SIGNATURE, roast
from aimserver.wire.chat import (
    EXCHANGE_PRIVATE,
    ChatMessage,
    ChatMessageToClient,
    RoomInfo,
    RoomRef,
    parse_users,
)
from aimserver.wire.flap import FLAP_HEADER_SIZE, Channel, FlapFrame, SignonPayload, parse_header
from aimserver.wire.icbm import ChannelMessageToHost
from aimserver.wire.reader import Reader, string08
from aimserver.wire.snac import SnacHeader, pack_snac
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import UserInfo

T = TypeVar("T")
TIMEOUT = 5.0
CLIENT_ID = b"AOL Instant Messenger, version 5.1.3036/WIN32"


class WaitTimeout(FailTest):
    """A bounded wait ran out: trial reports the test as failed (not as an
    error), with the message saying what never came."""


def deferred_test(f: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., defer.Deferred[T]]:
    """Run an ``async def`` test method as a Deferred-returning trial test."""

    @wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> defer.Deferred[T]:
        return defer.Deferred.fromCoroutine(f(*args, **kwargs))

    return wrapper


class FlapClient(Protocol):
    """Frames in, frames out; waiting for the frames a test expects."""

    #: Every client still connected, so a test's teardown can wait for them.
    open_clients: set[FlapClient] = set()

    def __init__(self, clock: Any = reactor) -> None:
        self.clock = clock
        self.buffer = b""
        self.sequence = 0
        self.received: list[FlapFrame] = []
        self.waiters: list[tuple[Callable[[FlapFrame], bool], defer.Deferred[FlapFrame]]] = []
        self._lost_waiters: list[defer.Deferred[None]] = []
        self.connected_now = False
        #: The connection was made and has ended.
        self.disconnected = False
        #: "local -> peer" once connected.
        self.addresses = "(not connected)"

    def connectionMade(self) -> None:
        self.connected_now = True
        FlapClient.open_clients.add(self)
        local, peer = self.transport.getHost(), self.transport.getPeer()
        self.addresses = (
            f"{getattr(local, 'host', '?')}:{getattr(local, 'port', '?')}"
            f" -> {getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        )

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= FLAP_HEADER_SIZE:
            _, _, length = parse_header(self.buffer)
            end = FLAP_HEADER_SIZE + length
            if len(self.buffer) < end:
                return
            frame = FlapFrame.unpack(self.buffer[:end])
            self.buffer = self.buffer[end:]
            self.frame_received(frame)

    def frame_received(self, frame: FlapFrame) -> None:
        for waiter in self.waiters:
            predicate, d = waiter
            if predicate(frame):
                self.waiters.remove(waiter)
                d.callback(frame)
                return
        self.received.append(frame)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.connected_now = False
        self.disconnected = True
        FlapClient.open_clients.discard(self)
        waiters, self._lost_waiters = self._lost_waiters, []
        for d in waiters:
            d.callback(None)

    def describe(self) -> str:
        """``client local -> peer``, for failure messages."""
        return f"client {self.addresses}"

    def wait_lost(self, timeout: float = TIMEOUT) -> defer.Deferred[None]:
        """Fires once the connection has ended (at once if it already has);
        fails with ``WaitTimeout`` if it is still open after ``timeout``."""
        if self.disconnected:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._lost_waiters.append(d)

        def timed_out(result: object, timeout: float) -> None:
            if d in self._lost_waiters:
                self._lost_waiters.remove(d)
            raise WaitTimeout(f"{self.describe()} still open {timeout:g}s later")

        d.addTimeout(timeout, self.clock, onTimeoutCancel=timed_out)
        return d

    @property
    def lost(self) -> defer.Deferred[None]:
        """``wait_lost()`` with the default bound: there is no unbounded way
        to wait for the end of a connection."""
        return self.wait_lost()

    def wait(
        self,
        predicate: Callable[[FlapFrame], bool],
        timeout: float = TIMEOUT,
        what: str = "the awaited frame",
    ) -> defer.Deferred[FlapFrame]:
        """The first received frame ``predicate`` accepts, taken out of
        ``received``; ``WaitTimeout`` naming ``what`` after ``timeout``."""
        for frame in self.received:
            if predicate(frame):
                self.received.remove(frame)
                return defer.succeed(frame)
        d: defer.Deferred[FlapFrame] = defer.Deferred()
        entry = (predicate, d)
        self.waiters.append(entry)

        def forget(result: object) -> object:
            if entry in self.waiters:
                self.waiters.remove(entry)
            return result

        def timed_out(result: object, timeout: float) -> None:
            state = "open" if self.connected_now else "closed"
            raise WaitTimeout(
                f"no {what} on {self.describe()} ({state}) within {timeout:g}s;"
                f" unclaimed SNACs: {self.unexpected()}"
            )

        d.addTimeout(timeout, self.clock, onTimeoutCancel=timed_out)
        d.addErrback(forget)
        return d

    def wait_channel(self, channel: int, timeout: float = TIMEOUT) -> defer.Deferred[FlapFrame]:
        return self.wait(lambda f: f.channel == channel, timeout, f"channel-{channel} frame")

    async def wait_snac(
        self, family: int, subtype: int, timeout: float = TIMEOUT
    ) -> tuple[SnacHeader, bytes]:
        def matches(frame: FlapFrame) -> bool:
            if frame.channel != Channel.DATA:
                return False
            header, _ = SnacHeader.unpack(frame.payload)
            return (header.family, header.subtype) == (family, subtype)

        frame = await self.wait(matches, timeout, f"{family:02x},{subtype:02x}")
        return SnacHeader.unpack(frame.payload)

    def snacs(self, family: int, subtype: int) -> list[tuple[SnacHeader, bytes]]:
        """Take every already-received SNAC of this type."""
        found = []
        for frame in list(self.received):
            if frame.channel == Channel.DATA:
                header, body = SnacHeader.unpack(frame.payload)
                if (header.family, header.subtype) == (family, subtype):
                    self.received.remove(frame)
                    found.append((header, body))
        return found

    def unexpected(self, *ignore: tuple[int, int]) -> list[tuple[int, int]]:
        """(family, subtype) of received, unclaimed SNACs, except ``ignore``."""
        kinds = []
        for frame in self.received:
            if frame.channel == Channel.DATA:
                header, _ = SnacHeader.unpack(frame.payload)
                kind = (header.family, header.subtype)
                if kind not in ignore:
                    kinds.append(kind)
        return kinds

    def send_frame(self, channel: int, payload: bytes) -> None:
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.transport.write(FlapFrame(channel, self.sequence, payload).pack())

    def send_snac(self, family: int, subtype: int, body: bytes = b"", request_id: int = 1) -> None:
        self.send_frame(Channel.DATA, pack_snac(family, subtype, body, request_id))

    def close(self, timeout: float = TIMEOUT) -> defer.Deferred[None]:
        """Close; fires when the connection has ended (bounded, as ``wait_lost``).
        The server may not have processed the close yet when this fires."""
        self.transport.loseConnection()
        return self.wait_lost(timeout)


async def connect(
    host: str, port: int, *, bind: str | None = None, timeout: float = TIMEOUT
) -> FlapClient:
    """A connected client; ``bind``: the local address to connect from (any
    127.x.y.z reaches a server on 127.0.0.1)."""
    endpoint = TCP4ClientEndpoint(
        reactor, host, port, timeout=timeout, bindAddress=(bind, 0) if bind else None
    )
    d = connectProtocol(endpoint, FlapClient())

    def timed_out(result: object, timeout: float) -> None:
        raise WaitTimeout(f"no TCP connection to {host}:{port} within {timeout:g}s")

    d.addTimeout(timeout, reactor, onTimeoutCancel=timed_out)
    return await d


def bucp_digest(key: bytes, password: bytes, strong: bool = True) -> bytes:
    if strong:
        return hashlib.md5(key + hashlib.md5(password).digest() + SIGNATURE).digest()
    return hashlib.md5(key + password + SIGNATURE).digest()


async def bucp_login(
    host: str,
    port: int,
    screen_name: str,
    password: str,
    *,
    flags: int | None = 0x01,
    strong: bool = True,
    client_id: bytes = CLIENT_ID,
    bind: str | None = None,
) -> TlvList:
    """The whole BUCP exchange; returns the TLVs of the 17,03 reply (the
    connection is then closed by the server). ``client_id`` goes in TLV 0x03;
    ``bind`` is the local address to connect from."""
    client = await connect(host, port, bind=bind)
    await client.wait_channel(Channel.SIGNON)
    client.send_frame(Channel.SIGNON, SignonPayload().pack())
    client.send_snac(0x17, 0x06, Tlv(0x01, screen_name.encode()).pack() + Tlv(0x4B, b"").pack())
    frame = await client.wait(
        lambda f: (
            f.channel == Channel.DATA and SnacHeader.unpack(f.payload)[0].subtype in (0x03, 0x07)
        ),
        what="17,07 or 17,03",
    )
    header, body = SnacHeader.unpack(frame.payload)
    if header.subtype == 0x03:
        await client.wait_lost()
        return TlvList.unpack_list(body)
    key = Reader(body, "challenge").string16("key")
    tlvs = [
        Tlv(0x01, screen_name.encode()),
        Tlv(0x25, bucp_digest(key, password.encode(), strong)),
        Tlv(0x03, client_id),
        Tlv.u16(0x16, 0x0109),
    ]
    if strong:
        tlvs.append(Tlv.empty(0x4C))
    if flags is not None:
        tlvs.append(Tlv.u8(0x4A, flags))
    client.send_snac(0x17, 0x02, TlvList(tuple(tlvs)).pack_list(), request_id=2)
    _, body = await client.wait_snac(0x17, 0x03)
    await client.wait_channel(Channel.SIGNOFF)
    await client.wait_lost()
    return TlvList.unpack_list(body)


async def roasted_login(
    host: str, port: int, screen_name: str, password: str, flags: int | None = None
) -> TlvList:
    """FLAP channel-1 login; returns the TLVs of the channel-4 reply."""
    client = await connect(host, port)
    await client.wait_channel(Channel.SIGNON)
    tlvs = [
        Tlv(0x01, screen_name.encode()),
        Tlv(0x02, roast(password.encode())),
        Tlv(0x03, b"AOL Instant Messenger (SM), version 3.0.1464/WIN32"),
    ]
    if flags is not None:
        tlvs.append(Tlv.u8(0x4A, flags))
    client.send_frame(Channel.SIGNON, SignonPayload(1, TlvList(tuple(tlvs))).pack())
    frame = await client.wait_channel(Channel.SIGNOFF)
    await client.wait_lost()
    return TlvList.unpack_list(frame.payload)


def split_address(tlvs: TlvList) -> tuple[str, int]:
    host, port = (tlvs.get(0x05) or b"").decode().split(":")
    return host, int(port)


class BosClient:
    """A signed-on BOS session."""

    def __init__(self, flap: FlapClient, screen_name: str) -> None:
        self.flap = flap
        self.screen_name = screen_name
        self.request_id = 100
        #: The body of the 01,07 rate-parameters reply of the sign-on.
        self.rate_info = b""

    def next_id(self) -> int:
        self.request_id += 1
        return self.request_id

    async def request(
        self, family: int, subtype: int, body: bytes, reply: int
    ) -> tuple[SnacHeader, bytes]:
        request_id = self.next_id()
        self.flap.send_snac(family, subtype, body, request_id)
        header, body = await self.flap.wait_snac(family, reply)
        assert header.request_id == request_id, (header, request_id)
        return header, body

    @classmethod
    async def sign_on(
        cls,
        login: TlvList,
        *,
        buddies: Sequence[str] = (),
        client_ready: bool = True,
        bind: str | None = None,
    ) -> BosClient:
        """Connect (from ``bind`` if given) with the login reply's cookie and
        walk the classic sign-on."""
        host, port = split_address(login)
        flap = await connect(host, port, bind=bind)
        await flap.wait_channel(Channel.SIGNON)
        flap.send_frame(
            Channel.SIGNON, SignonPayload(1, TlvList((Tlv(0x06, login.get(0x06)),))).pack()
        )
        await flap.wait_snac(0x01, 0x03)
        client = cls(flap, (login.get(0x01) or b"").decode())
        versions = b"".join(
            struct.pack("!HH", f, v) for f, v in ((1, 3), (2, 1), (3, 1), (4, 1), (9, 1), (0x13, 4))
        )
        await client.request(0x01, 0x17, versions, 0x18)
        _, client.rate_info = await client.request(0x01, 0x06, b"", 0x07)
        flap.send_snac(0x01, 0x08, struct.pack("!5H", 1, 2, 3, 4, 5), client.next_id())
        await client.request(0x01, 0x0E, b"", 0x0F)
        await client.request(0x02, 0x02, b"", 0x03)
        await client.request(0x03, 0x02, b"", 0x03)
        await client.request(0x04, 0x04, b"", 0x05)
        await client.request(0x09, 0x02, b"", 0x03)
        if buddies:
            client.add_buddies(buddies)
        if client_ready:
            client.ready()
        return client

    async def sync(self) -> None:
        """A round trip: everything the server wrote to this session before
        answering has been received when this returns."""
        await self.request(0x01, 0x0E, b"", 0x0F)

    def ready(self) -> None:
        entries = b"".join(
            struct.pack("!HHHH", f, v, 0x0110, 0x0629) for f, v in ((1, 3), (2, 1), (3, 1), (4, 1))
        )
        self.flap.send_snac(0x01, 0x02, entries, self.next_id())

    def add_buddies(self, names: Sequence[str]) -> None:
        self.flap.send_snac(
            0x03, 0x04, b"".join(string08(n.encode()) for n in names), self.next_id()
        )

    def send_im(
        self,
        to: str,
        text: bytes,
        *,
        ack: bool = False,
        cookie: bytes | None = None,
        extra: Sequence[Tlv] = (),
    ) -> int:
        im_data = (
            b"\x05\x01"
            + struct.pack("!H", 4)
            + b"\x01\x01\x01\x02"
            + b"\x01\x01"
            + struct.pack("!H", len(text) + 4)
            + b"\x00\x00\x00\x00"
            + text
        )
        tlvs = [Tlv(0x02, im_data), *extra]
        if ack:
            tlvs.append(Tlv.empty(0x03))
        message = ChannelMessageToHost(cookie or os.urandom(8), 1, to, TlvList(tuple(tlvs)))
        request_id = self.next_id()
        self.flap.send_snac(0x04, 0x06, message.pack(), request_id)
        return request_id

    def send_channel(self, to: str, channel: int, tlvs: Sequence[Tlv], cookie: bytes) -> int:
        """Any ICBM channel (e.g. 2, rendezvous) with the given TLVs."""
        message = ChannelMessageToHost(cookie, channel, to, TlvList(tuple(tlvs)))
        request_id = self.next_id()
        self.flap.send_snac(0x04, 0x06, message.pack(), request_id)
        return request_id

    def set_away(self, text: bytes | None) -> None:
        """02,04 with TLV 0x04: an away message, or empty for "back"."""
        tlvs = [Tlv(0x03, b'text/aolrtf; charset="us-ascii"'), Tlv(0x04, text or b"")]
        self.flap.send_snac(0x02, 0x04, TlvList(tuple(tlvs)).pack_list(), self.next_id())

    def set_profile(self, text: bytes) -> None:
        tlvs = [Tlv(0x01, b'text/aolrtf; charset="us-ascii"'), Tlv(0x02, text)]
        self.flap.send_snac(0x02, 0x04, TlvList(tuple(tlvs)).pack_list(), self.next_id())

    def set_capabilities(self, capabilities: Sequence[bytes]) -> None:
        self.flap.send_snac(0x02, 0x04, Tlv(0x05, b"".join(capabilities)).pack(), self.next_id())

    def set_idle(self, seconds: int) -> None:
        self.flap.send_snac(0x01, 0x11, struct.pack("!I", seconds), self.next_id())

    def send_typing(self, to: str, event: int = 2) -> None:
        body = b"\x00" * 8 + b"\x00\x01" + string08(to.encode()) + struct.pack("!H", event)
        self.flap.send_snac(0x04, 0x14, body, self.next_id())

    def warn(self, target: str, anonymous: bool = False) -> int:
        request_id = self.next_id()
        body = struct.pack("!H", 1 if anonymous else 0) + string08(target.encode())
        self.flap.send_snac(0x04, 0x08, body, request_id)
        return request_id

    async def receive_im(self, timeout: float = TIMEOUT) -> tuple[UserInfo, bytes, TlvList]:
        """The next 04,07: sender info, message text, the message TLVs."""
        _, body = await self.flap.wait_snac(0x04, 0x07, timeout)
        return parse_im(body)

    async def wait_arrival(self, timeout: float = TIMEOUT) -> UserInfo:
        _, body = await self.flap.wait_snac(0x03, 0x0B, timeout)
        return UserInfo.unpack(body)

    async def wait_departure(self, timeout: float = TIMEOUT) -> UserInfo:
        _, body = await self.flap.wait_snac(0x03, 0x0C, timeout)
        return UserInfo.unpack(body)

    async def open_service(self, family: int, request: bytes = b"") -> BosClient:
        """A service connection of this session, as a client opens one: 01,04
        for ``family`` (followed by ``request``: a chat room's TLV), then a
        connection to the 01,05 address signing on with its cookie, its 01,03
        awaited and its client-ready sent. Requests go through the returned
        client's ``request`` like any session's."""
        _, body = await self.request(0x01, 0x04, struct.pack("!H", family) + request, 0x05)
        redirect = TlvList.unpack_list(body)
        flap = await redeem(redirect)
        await flap.wait_snac(0x01, 0x03)
        service = BosClient(flap, self.screen_name)
        entries = struct.pack("!HHHH", 0x0001, 3, 0x0110, 0x0629)
        entries += struct.pack("!HHHH", family, 1, 0x0110, 0x0629)
        flap.send_snac(0x01, 0x02, entries, service.next_id())
        return service

    async def chat_nav(self) -> BosClient:
        """This session's ChatNav connection (opened at the first call, as
        libpurple does at sign-on)."""
        nav = getattr(self, "_chat_nav", None)
        if nav is None:
            nav = self._chat_nav = await self.open_service(0x0D)
            await nav.request(0x0D, 0x02, b"", 0x09)
        return nav

    async def find_room(self, name: str, exchange: int = EXCHANGE_PRIVATE) -> RoomInfo:
        """0D,08, as libpurple sends it: the room's info from the 0D,09."""
        nav = await self.chat_nav()
        wanted = RoomInfo(
            RoomRef(exchange, b"create", 0xFFFF),
            1,
            TlvList((Tlv(0xD3, name.encode()), Tlv(0xD6, b"us-ascii"), Tlv(0xD7, b"en"))),
        )
        _, body = await nav.request(0x0D, 0x08, wanted.pack(), 0x09)
        return RoomInfo.unpack(TlvList.unpack_list(body).get(0x04) or b"")

    async def join_room(self, name: str, exchange: int = EXCHANGE_PRIVATE) -> ChatClient:
        """libpurple's whole join: 0D,08, 01,04 for the room, the chat
        connection up to its client-ready and the roster and room info."""
        info = await self.find_room(name, exchange)
        return await self.enter_room(info.ref)

    async def enter_room(self, ref: RoomRef) -> ChatClient:
        """01,04 for the chat connection of ``ref`` and the sign-on on it,
        through the roster and room info the server sends at client-ready."""
        chat = await self.open_service(0x0E, Tlv(0x01, ref.pack()).pack())
        room = ChatClient(chat.flap, self.screen_name)
        _, roster = await room.flap.wait_snac(0x0E, 0x03)
        room.roster = [u.screen_name for u in parse_users(roster)]
        _, info = await room.flap.wait_snac(0x0E, 0x02)
        room.info = RoomInfo.unpack(info)
        return room

    def close(self) -> defer.Deferred[None]:
        return self.flap.close()


async def redeem(redirect: TlvList) -> FlapClient:
    """A connection to a 01,05's address, signed on with its cookie."""
    host, port = split_address(redirect)
    flap = await connect(host, port)
    await flap.wait_channel(Channel.SIGNON)
    flap.send_frame(
        Channel.SIGNON, SignonPayload(1, TlvList((Tlv(0x06, redirect.get(0x06)),))).pack()
    )
    return flap


class ChatClient(BosClient):
    """One chat connection: a place in one room."""

    roster: list[str]
    info: RoomInfo

    async def sync(self) -> None:
        """A round trip a chat connection answers (it has no 01,0E)."""
        await self.request(0x01, 0x06, b"", 0x07)

    def say(
        self,
        text: bytes,
        *,
        reflect: bool = True,
        whisper_to: str | None = None,
        charset: bytes = b"us-ascii",
    ) -> int:
        """0E,05 as libpurple sends it (a whisper: no TLV 0x0001)."""
        parts = TlvList((Tlv(0x01, text), Tlv(0x02, charset), Tlv(0x03, b"en")))
        message = ChatMessage(
            os.urandom(8),
            3,
            to_room=whisper_to is None,
            whisper_to=whisper_to.encode() if whisper_to is not None else None,
            reflect=reflect,
            auto_response=False,
            message=parts.pack_list(),
        )
        request_id = self.next_id()
        self.flap.send_snac(0x0E, 0x05, message.pack(), request_id)
        return request_id

    async def hear(self, timeout: float = TIMEOUT) -> tuple[str, bytes, SnacHeader]:
        """The next 0E,06: who said it, its text, and its SNAC header."""
        header, body = await self.flap.wait_snac(0x0E, 0x06, timeout)
        message = ChatMessageToClient.unpack(body)
        text = TlvList.unpack_list(message.message).get(0x01) or b""
        return message.sender.screen_name, text, header

    async def wait_joined(self, timeout: float = TIMEOUT) -> list[str]:
        _, body = await self.flap.wait_snac(0x0E, 0x03, timeout)
        return [u.screen_name for u in parse_users(body)]

    async def wait_left(self, timeout: float = TIMEOUT) -> list[str]:
        _, body = await self.flap.wait_snac(0x0E, 0x04, timeout)
        return [u.screen_name for u in parse_users(body)]


def parse_im(body: bytes) -> tuple[UserInfo, bytes, TlvList]:
    reader = Reader(body, "04,07")
    reader.take(8, "cookie")
    reader.u16("channel")
    sender = UserInfo.read(reader)
    tlvs = TlvList.read_list(reader)
    text = b""
    data = tlvs.get(0x02) or b""
    fragments = Reader(data, "im data")
    while not fragments.at_end():
        ident = fragments.u8()
        fragments.u8()
        chunk = fragments.take(fragments.u16())
        if ident == 0x01:
            text += chunk[4:]
    return sender, text, tlvs
