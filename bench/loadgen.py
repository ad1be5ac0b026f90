"""The load generator's OSCAR client, on asyncio (run under uvloop by ``bench.run``).

Everything here speaks the real protocol over TCP: BUCP login (LOGIN.md §3),
the BOS sign-on (SIGNON.md §1), client-side buddy lists (03,04) and IMs
(04,06 out, 04,07 in). The receive path parses FLAP headers with ``struct``
directly and hands each frame to a plain callback, so the generator spends
its CPU on the server, not on itself.

An IM's text is ``BM|<sender>|<instance>|<seq>|<send time ns>``: the receiver
finds the sending session, the per-(sender session -> receiving session)
sequence number and the latency in the message itself, and ``Accounting``
turns that into lost / duplicated / reordered / never-sent / stale counts and
latency percentiles.

uvloop is imported only by ``new_event_loop``, so this module (and its
accounting) is importable without it.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

FLAP = struct.Struct("!BBHH")
SNAC = struct.Struct("!HHHI")
U16 = struct.Struct("!H")
TLV_HEADER = struct.Struct("!HH")
COOKIE = struct.Struct("!Q")
FLAP_START = 0x2A
HELLO = b"\x00\x00\x00\x01"
SIGNATURE = b"AOL Instant Messenger (SM)"
CLIENT_ID = b"AOL Instant Messenger, version 5.1.3036/WIN32"
DEFAULT_TIMEOUT = 10.0

#: Marks the start of a benchmark IM's text inside a 04,07 / relayed 04,06.
MARK = b"BM|"
#: The fixed part of an IM's data TLV (0x0002) before the text fragment:
#: features fragment 05 01 (4 bytes), then the text fragment header 01 01.
IM_DATA_HEAD = b"\x05\x01\x00\x04\x01\x01\x01\x02\x01\x01"
#: A sequence number this far above the last one sent is garbage (a mangled
#: text), not merely a number that was never sent.
MAX_GAP = 1_000_000


def kind(family: int, subtype: int) -> bytes:
    """The first four bytes of a SNAC payload: what ``wait_snac`` matches."""
    return struct.pack("!HH", family, subtype)


def tlv(tag: int, value: bytes) -> bytes:
    return TLV_HEADER.pack(tag, len(value)) + value


def parse_tlvs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """A TLV list to the end; the first of a repeated tag wins."""
    tlvs: dict[int, bytes] = {}
    size = len(data)
    while offset + 4 <= size:
        tag, length = TLV_HEADER.unpack_from(data, offset)
        offset += 4
        tlvs.setdefault(tag, data[offset : offset + length])
        offset += length
    return tlvs


def snac(family: int, subtype: int, body: bytes = b"", request_id: int = 0) -> bytes:
    return SNAC.pack(family, subtype, 0, request_id) + body


def bucp_digest(key: bytes, password: bytes) -> bytes:
    """The strong ("new", TLV 0x4C) BUCP digest (LOGIN.md §3.4)."""
    return hashlib.md5(key + hashlib.md5(password).digest() + SIGNATURE).digest()


class ProtocolFailure(Exception):
    """The peer answered something a client cannot go on from."""


# -- the FLAP client ----------------------------------------------------------------------


class FlapClient(asyncio.Protocol):
    """One TCP connection. Frames go to ``on_frame(client, channel, payload)``
    when it is set (the measured paths), otherwise to an inbox that
    ``wait_snac`` / ``wait_channel`` take from (sign-on)."""

    def __init__(self, label: Hashable = None) -> None:
        self.label = label
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.sequence = 0
        self._buffer = b""
        self.on_frame: Callable[[FlapClient, int, bytes], None] | None = None
        self.inbox: deque[tuple[int, bytes]] = deque()
        self._waiter: tuple[Callable[[int, bytes], bool], asyncio.Future[Any]] | None = None
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.error: str | None = None
        #: Free for the scenario that owns the connection.
        self.user: Any = None
        #: When client ready (01,02) was written, for sessions that sent it.
        self.ready_ns = 0
        #: Items of the stored feedbag read at sign-on (13,06), -1 without one.
        self.feedbag_items = -1

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        size = len(buffer)
        pos = 0
        unpack = FLAP.unpack_from
        while size - pos >= 6:
            start, channel, _, length = unpack(buffer, pos)
            end = pos + 6 + length
            if end > size:
                break
            if start != FLAP_START:
                self.error = f"FLAP start byte {start:#04x}"
                self._buffer = b""
                self.close()
                return
            payload = buffer[pos + 6 : end]
            pos = end
            handler = self.on_frame
            if handler is not None:
                handler(self, channel, payload)
            else:
                self._queue(channel, payload)
        self._buffer = buffer[pos:] if pos < size else b""

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self._waiter is not None:
            _, future = self._waiter
            self._waiter = None
            if not future.done():
                future.set_exception(ConnectionError(f"connection closed ({exc or 'EOF'})"))

    # waiting (sign-on paths only)

    def _queue(self, channel: int, payload: bytes) -> None:
        waiter = self._waiter
        if waiter is not None and waiter[0](channel, payload):
            self._waiter = None
            if not waiter[1].done():
                waiter[1].set_result((channel, payload))
            return
        self.inbox.append((channel, payload))

    async def wait(
        self, predicate: Callable[[int, bytes], bool], timeout: float = DEFAULT_TIMEOUT
    ) -> tuple[int, bytes]:
        for frame in self.inbox:
            if predicate(*frame):
                self.inbox.remove(frame)
                return frame
        if self.closed.done():
            raise ConnectionError("connection closed")
        future: asyncio.Future[tuple[int, bytes]] = self.loop.create_future()
        self._waiter = (predicate, future)
        timer = self.loop.call_later(timeout, _expire, future, timeout)
        try:
            return await future
        finally:
            timer.cancel()
            self._waiter = None

    async def wait_channel(self, channel: int, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        return (await self.wait(lambda c, _: c == channel, timeout))[1]

    async def wait_snac(
        self, kinds: Sequence[bytes], timeout: float = DEFAULT_TIMEOUT
    ) -> tuple[bytes, int, bytes]:
        """The next SNAC of one of ``kinds``; an error SNAC (xx,01) of the same
        family raises ``ProtocolFailure``. Returns (kind, request id, body)."""
        errors = {k[:2] + b"\x00\x01" for k in kinds}

        def matches(channel: int, payload: bytes) -> bool:
            return channel == 2 and (payload[:4] in kinds or payload[:4] in errors)

        _, payload = await self.wait(matches, timeout)
        head = payload[:4]
        _, _, flags, request_id = SNAC.unpack_from(payload)
        offset = 10
        if flags & 0x8000:
            offset += 2 + U16.unpack_from(payload, 10)[0]
        if head in errors and head not in kinds:
            raise ProtocolFailure(f"SNAC error {head.hex()} {payload[offset:].hex()}")
        return head, request_id, payload[offset:]

    def take(self, snac_kind: bytes) -> int:
        """Remove the inbox's SNACs of this kind; how many there were."""
        kept = deque(f for f in self.inbox if not (f[0] == 2 and f[1][:4] == snac_kind))
        count = len(self.inbox) - len(kept)
        self.inbox = kept
        return count

    # sending

    def send(self, channel: int, payload: bytes) -> None:
        sequence = self.sequence = (self.sequence + 1) & 0x7FFF
        # Not to a closed connection: uvloop raises there (S5's senders hit
        # it when the server closed a connection between two of their IMs);
        # what is not sent is counted lost by whoever waits for it.
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(FLAP.pack(FLAP_START, channel, sequence, len(payload)) + payload)

    def send_snac(self, family: int, subtype: int, body: bytes = b"", request_id: int = 0) -> None:
        self.send(2, SNAC.pack(family, subtype, 0, request_id) + body)

    def signoff(self) -> None:
        """A clean sign-off: the channel-4 frame, then close."""
        if self.transport is not None and not self.transport.is_closing():
            self.send(4, b"")
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _expire(future: asyncio.Future[Any], timeout: float) -> None:
    if not future.done():
        future.set_exception(TimeoutError(f"no answer within {timeout:g} s"))


async def connect(
    host: str,
    port: int,
    label: Hashable = None,
    timeout: float = DEFAULT_TIMEOUT,
    source: str | None = None,
) -> FlapClient:
    """A connected client; TimeoutError if the TCP handshake takes longer than
    ``timeout`` (a SYN dropped by a full accept queue is retried by the
    kernel after 1, 3, 7 ... s). ``source``: the local address to connect
    from (any 127.x.y.z reaches a loopback server: one address per user)."""
    loop = asyncio.get_running_loop()
    local = (source, 0) if source else None
    _, client = await asyncio.wait_for(
        loop.create_connection(lambda: FlapClient(label), host, port, local_addr=local), timeout
    )
    return client


# -- BUCP login and BOS sign-on -----------------------------------------------------------

K_CHALLENGE = kind(0x17, 0x07)
K_LOGIN_REPLY = kind(0x17, 0x03)
K_HOST_ONLINE = kind(0x01, 0x03)
K_HOST_VERSIONS = kind(0x01, 0x18)
K_RATE_REPLY = kind(0x01, 0x07)
K_SELF_INFO = kind(0x01, 0x0F)
K_ARRIVED = kind(0x03, 0x0B)
K_DEPARTED = kind(0x03, 0x0C)
K_IM_TO_HOST = kind(0x04, 0x06)
K_IM_TO_CLIENT = kind(0x04, 0x07)
K_FEEDBAG_RIGHTS = kind(0x13, 0x03)
K_FEEDBAG_REPLY = kind(0x13, 0x06)
K_FEEDBAG_INSERT = kind(0x13, 0x08)
K_FEEDBAG_DELETE = kind(0x13, 0x0A)
K_FEEDBAG_STATUS = kind(0x13, 0x0E)
K_FEEDBAG_ERROR = kind(0x13, 0x01)
#: A request ID with this bit set is the server's own (a push, not a reply).
SERVER_REQUEST_BIT = 0x80000000

#: 01,17: OService 3, Locate, Buddy, ICBM, PermitDeny 1, Feedbag 4 (what libpurple asks).
CLIENT_VERSIONS = b"".join(
    struct.pack("!HH", f, v) for f, v in ((1, 3), (2, 1), (3, 1), (4, 1), (9, 1), (0x13, 4))
)
RATE_ACK = struct.pack("!5H", 1, 2, 3, 4, 5)
#: 01,02 entries: family, version, tool id, tool version (8 bytes each, WinAIM's tool).
CLIENT_READY = b"".join(
    struct.pack("!HHHH", f, v, 0x0110, 0x0629) for f, v in ((1, 3), (2, 1), (3, 1), (4, 1), (9, 1))
)
#: The same with Feedbag 4, for a client that uses the server-stored list.
CLIENT_READY_FEEDBAG = CLIENT_READY + struct.pack("!HHHH", 0x13, 4, 0x0110, 0x0629)
#: The rights/info queries a client sends back-to-back after the rate ack, and their replies.
SIGNON_QUERIES = (
    ((0x01, 0x0E), K_SELF_INFO),
    ((0x02, 0x02), kind(0x02, 0x03)),
    ((0x03, 0x02), kind(0x03, 0x03)),
    ((0x04, 0x04), kind(0x04, 0x05)),
    ((0x09, 0x02), kind(0x09, 0x03)),
)
#: 02,04 with an away message / with an empty one ("back").
AWAY_MIME = tlv(0x03, b'text/aolrtf; charset="us-ascii"')


def set_away_body(text: bytes) -> bytes:
    return AWAY_MIME + tlv(0x04, text)


# -- feedbag items (FAMILIES.md, Feedbag 0x0013, Item layout) ------------------------------

FEEDBAG_ITEM_IDS = struct.Struct("!HHH")


def feedbag_item(
    name: str | bytes, group_id: int, item_id: int, class_id: int, attributes: bytes = b""
) -> bytes:
    """One item on the wire: string16 name, u16 group ID, u16 item ID, u16
    class ID, u16 length + attribute TLVs."""
    raw = name.encode() if isinstance(name, str) else name
    return (
        U16.pack(len(raw))
        + raw
        + FEEDBAG_ITEM_IDS.pack(group_id, item_id, class_id)
        + U16.pack(len(attributes))
        + attributes
    )


def feedbag_items(body: bytes, offset: int = 0) -> list[tuple[bytes, int, int, int, bytes]]:
    """The items of a 13,08/13,09/13,0A body (or a 13,06 part from its items
    on): (name, group ID, item ID, class ID, attributes); ProtocolFailure if
    one is cut short."""
    items = []
    size = len(body)
    while offset < size:
        if offset + 2 > size:
            raise ProtocolFailure("feedbag item cut short")
        (length,) = U16.unpack_from(body, offset)
        name_end = offset + 2 + length
        if name_end + 8 > size:
            raise ProtocolFailure("feedbag item cut short")
        group_id, item_id, class_id = FEEDBAG_ITEM_IDS.unpack_from(body, name_end)
        (attributes_length,) = U16.unpack_from(body, name_end + 6)
        end = name_end + 8 + attributes_length
        if end > size:
            raise ProtocolFailure("feedbag item attributes cut short")
        items.append(
            (body[offset + 2 : name_end], group_id, item_id, class_id, body[name_end + 8 : end])
        )
        offset = end
    return items


def first_feedbag_key(body: bytes) -> tuple[int, int] | None:
    """(group ID, item ID) of the first item of an edit body, or None."""
    if len(body) < 2:
        return None
    name_end = 2 + U16.unpack_from(body)[0]
    if name_end + 4 > len(body):
        return None
    group_id, item_id = struct.unpack_from("!HH", body, name_end)
    return group_id, item_id


async def read_feedbag(client: FlapClient, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Wait for the whole 13,06 answer to a 13,04 (several parts while SNAC
    flag 0x0001 says more follow; a 13,01 raises); the items it held."""
    kinds = (K_FEEDBAG_REPLY, K_FEEDBAG_ERROR)
    count = 0
    while True:
        _, payload = await client.wait(lambda c, p: c == 2 and p[:4] in kinds, timeout)
        _, _, flags, _ = SNAC.unpack_from(payload)
        offset = 10
        if flags & 0x8000:
            offset += 2 + U16.unpack_from(payload, 10)[0]
        if payload[:4] == K_FEEDBAG_ERROR:
            raise ProtocolFailure(f"feedbag query refused: {payload[offset:].hex()}")
        body = payload[offset:]
        if len(body) < 7:
            raise ProtocolFailure("13,06 too short")
        (items,) = U16.unpack_from(body, 1)
        if len(feedbag_items(body[3:-4])) != items:
            raise ProtocolFailure(f"13,06 says {items} items but holds another number")
        count += items
        if not flags & 0x0001:
            return count


@dataclass
class Login:
    screen_name: str
    host: str = ""
    port: int = 0
    cookie: bytes = b""
    error: int | None = None


async def bucp_login(
    host: str,
    port: int,
    screen_name: str,
    password: bytes,
    *,
    flags: int = 0x01,
    timeout: float = DEFAULT_TIMEOUT,
    source: str | None = None,
) -> Login:
    """Hello, 17,06 -> 17,07 key, 17,02 with the strong digest -> 17,03, then
    the server's channel-4 frame. Login.error is the 17,03 error code if any."""
    client = await connect(host, port, timeout=timeout, source=source)
    try:
        await client.wait_channel(1, timeout)
        name = screen_name.encode()
        client.send(1, HELLO)
        client.send_snac(0x17, 0x06, tlv(0x01, name) + tlv(0x4B, b""), 1)
        head, _, body = await client.wait_snac((K_CHALLENGE, K_LOGIN_REPLY), timeout)
        if head == K_LOGIN_REPLY:
            return Login(screen_name, error=_error_code(parse_tlvs(body)))
        (key_length,) = U16.unpack_from(body)
        key = body[2 : 2 + key_length]
        request = (
            tlv(0x01, name)
            + tlv(0x25, bucp_digest(key, password))
            + tlv(0x4C, b"")
            + tlv(0x03, CLIENT_ID)
            + tlv(0x16, b"\x01\x09")
            + tlv(0x17, b"\x00\x05")
            + tlv(0x18, b"\x00\x01")
            + tlv(0x19, b"\x00\x00")
            + tlv(0x1A, b"\x0b\xdc")
            + tlv(0x14, b"\x00\x00\x00\xd2")
            + tlv(0x0F, b"en")
            + tlv(0x0E, b"us")
            + tlv(0x4A, bytes([flags]))
        )
        client.send_snac(0x17, 0x02, request, 2)
        _, _, body = await client.wait_snac((K_LOGIN_REPLY,), timeout)
        tlvs = parse_tlvs(body)
        if 0x08 in tlvs or 0x05 not in tlvs or 0x06 not in tlvs:
            return Login(screen_name, error=_error_code(tlvs))
        bos_host, bos_port = tlvs[0x05].decode().rsplit(":", 1)
        await client.wait_channel(4, timeout)
        return Login(screen_name, bos_host, int(bos_port), tlvs[0x06])
    finally:
        client.close()


def _error_code(tlvs: dict[int, bytes]) -> int:
    value = tlvs.get(0x08, b"")
    return U16.unpack(value)[0] if len(value) == 2 else -1


async def bos_signon(
    login: Login,
    *,
    buddies: Sequence[str] = (),
    feedbag: bool = False,
    label: Hashable = None,
    timeout: float = DEFAULT_TIMEOUT,
    source: str | None = None,
) -> tuple[FlapClient, int]:
    """The BOS sign-on to client ready, in WinAIM's order (SIGNON.md §1.2,
    Kamaelia): cookie -> 01,03; 01,17 -> 01,18; 01,06 -> 01,07; 01,08; the five
    rights/info queries back to back -> their replies; 03,04 (buddies); 01,02.
    Then one 01,0E -> 01,0F round trip proves the server has processed client
    ready (and sent the arrivals of online buddies before it).

    With ``feedbag`` the client uses the server-stored list instead of 03,04:
    13,02 (rights) and 13,04 (query) go with the queries (after 01,0E, as
    Kamaelia sends them), it waits for 13,03 and every 13,06 part, then sends
    13,07 (use) before 01,02; ``client.feedbag_items`` is the list's size.

    Returns the client (frames still go to its inbox) and the number of
    03,0B arrivals received by then.
    """
    client = await connect(login.host, login.port, label, timeout, source)
    try:
        await client.wait_channel(1, timeout)
        client.send(1, HELLO + tlv(0x06, login.cookie))
        await client.wait_snac((K_HOST_ONLINE,), timeout)
        client.send_snac(0x01, 0x17, CLIENT_VERSIONS, 10)
        await client.wait_snac((K_HOST_VERSIONS,), timeout)
        client.send_snac(0x01, 0x06, b"", 11)
        await client.wait_snac((K_RATE_REPLY,), timeout)
        client.send_snac(0x01, 0x08, RATE_ACK, 12)
        for request_id, ((family, subtype), _) in enumerate(SIGNON_QUERIES, 13):
            client.send_snac(family, subtype, b"", request_id)
            if feedbag and request_id == 13:
                client.send_snac(0x13, 0x02, b"", 18)
                client.send_snac(0x13, 0x04, b"", 19)
        for _, reply in SIGNON_QUERIES:
            await client.wait_snac((reply,), timeout)
        if feedbag:
            await client.wait_snac((K_FEEDBAG_RIGHTS,), timeout)
            client.feedbag_items = await read_feedbag(client, timeout)
            client.send_snac(0x13, 0x07, b"", 23)
        if buddies:
            client.send_snac(0x03, 0x04, b"".join(_string08(n) for n in buddies), 20)
        client.send_snac(0x01, 0x02, CLIENT_READY_FEEDBAG if feedbag else CLIENT_READY, 21)
        client.ready_ns = now_ns()
        client.send_snac(0x01, 0x0E, b"", 22)
        await client.wait_snac((K_SELF_INFO,), timeout)
        return client, client.take(K_ARRIVED)
    except BaseException:
        client.close()
        raise


def _string08(name: str) -> bytes:
    raw = name.encode()
    return bytes([len(raw)]) + raw


async def full_signon(
    auth: tuple[str, int],
    screen_name: str,
    password: bytes,
    *,
    buddies: Sequence[str] = (),
    feedbag: bool = False,
    label: Hashable = None,
    flags: int = 0x01,
    timeout: float = DEFAULT_TIMEOUT,
    source: str | None = None,
) -> tuple[FlapClient, int]:
    login = await bucp_login(
        *auth, screen_name, password, flags=flags, timeout=timeout, source=source
    )
    if login.error is not None:
        raise ProtocolFailure(f"login of {screen_name} refused: error {login.error:#06x}")
    return await bos_signon(
        login, buddies=buddies, feedbag=feedbag, label=label, timeout=timeout, source=source
    )


async def trivial_signon(
    address: tuple[str, int],
    screen_name: str,
    *,
    groups: Iterable[str] = (),
    label: Hashable = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> FlapClient:
    """Sign on to a baseline: hello, then a channel-1 frame naming the
    connection (TLV 0x01) and the fan-out groups it joins (TLV 0x10 each),
    answered by one 01,03."""
    client = await connect(*address, label, timeout)
    try:
        await client.wait_channel(1, timeout)
        tlvs = tlv(0x01, screen_name.encode()) + b"".join(tlv(0x10, g.encode()) for g in groups)
        client.send(1, HELLO + tlvs)
        await client.wait_snac((K_HOST_ONLINE,), timeout)
        return client
    except BaseException:
        client.close()
        raise


# -- IMs ----------------------------------------------------------------------------------


class Sender:
    """One session sending numbered IMs to one screen name.

    ``seq`` numbers this sender's stream (1, 2, ...); every session that
    receives the IMs sees that stream. ``key`` = (sender name, instance) as
    bytes, as it appears in the text. The 8-byte ICBM cookie is unique per
    message and instance (the server drops a repeated cookie as a retransmission).
    """

    __slots__ = (
        "client",
        "key",
        "_text_head",
        "_head",
        "_cookie_base",
        "_tail_name",
        "seq",
        "outstanding",
        "fanout",
    )

    def __init__(self, client: FlapClient, name: str, instance: int, to: str) -> None:
        self.client = client
        self.key = (name.encode(), str(instance).encode())
        self._text_head = b"BM|%b|%b|" % self.key
        self._head = SNAC.pack(4, 6, 0, 0)
        self._cookie_base = (instance & 0xFFFF) << 40
        recipient = to.encode()
        self._tail_name = b"\x00\x01" + bytes([len(recipient)]) + recipient
        self.seq = 0
        #: Copies sent but not yet received (the closed loop's window).
        self.outstanding = 0
        #: How many sessions receive each message.
        self.fanout = 1

    def send(self, now_ns: int) -> int:
        seq = self.seq = self.seq + 1
        text = b"%b%d|%d" % (self._text_head, seq, now_ns)
        data = IM_DATA_HEAD + U16.pack(len(text) + 4) + b"\x00\x00\x00\x00" + text
        self.client.send(
            2,
            self._head
            + COOKIE.pack(self._cookie_base | seq)
            + self._tail_name
            + TLV_HEADER.pack(2, len(data))
            + data,
        )
        return seq


def parse_im_text(payload: bytes) -> tuple[tuple[bytes, bytes], int, int] | None:
    """((sender, instance), seq, send time ns) of a benchmark IM in a 04,07 (or
    a relayed 04,06), or None. The text is found by its mark; its length comes
    from the text fragment header 6 bytes before it."""
    start = payload.find(MARK, 18)
    if start < 0:
        return None
    (length,) = U16.unpack_from(payload, start - 6)
    return marked_fields(payload[start : start + length - 4])


def marked_fields(text: bytes) -> tuple[tuple[bytes, bytes], int, int] | None:
    """((sender, instance), seq, send time ns) of a benchmark text that
    starts with MARK (an IM's or a chat line's), or None."""
    parts = text.split(b"|")
    if len(parts) != 5:
        return None
    try:
        return (parts[1], parts[2]), int(parts[3]), int(parts[4])
    except ValueError:
        return None


# -- accounting ---------------------------------------------------------------------------


@dataclass
class AccountingReport:
    streams: int
    sent: int
    expected: int
    received: int
    lost: int
    duplicated: int
    reordered: int
    unexpected: int
    garbled: int
    #: deliveries of a sequence number the sender had not sent (yet)
    never_sent: int = 0
    #: deliveries of a sequence number from before this run (``route``'s ``after``)
    stale: int = 0
    #: up to 10 streams with a problem: "(sender) -> (receiver): lost n, ..."
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not any(self.problem_counts().values())

    def problem_counts(self) -> dict[str, int]:
        """Every kind of fault, for a run's ``problems``: all must be 0."""
        return {
            "lost": self.lost,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "unexpected": self.unexpected + self.garbled,
            "never sent": self.never_sent,
            "stale": self.stale,
        }


class Accounting:
    """Per (sender session -> receiving session) stream: lost, duplicated,
    reordered, never-sent and stale messages, and latencies.

    ``route(sender, receivers)`` declares who must receive what ``sender``
    sends; ``sent(sender, seq)`` records the last sequence number sent (they
    are 1, 2, 3, ... per sender) and must be called before that message can
    arrive (right after writing it: the reply comes through the same event
    loop, later); ``received(...)`` is called once per delivered copy.

    A stream remembers its highest sequence number and the holes below it: a
    hole filled later is a reordered message, a number seen twice is a
    duplicate, and holes plus the numbers past the highest seen that were
    sent are lost (``report`` after the traffic has drained). A number above
    the last one sent is *never sent* (*garbled* when it is absurdly far
    above), one at or below ``route``'s ``after`` is *stale* (a late copy
    from an earlier run): neither moves the stream, so they cannot hide or
    invent a loss.

    Latencies (ns) are appended to ``latencies`` while it is a list, for
    every copy that belongs to this run (not for never-sent or stale ones).
    """

    def __init__(self) -> None:
        self._routes: dict[Hashable, list[Hashable]] = {}
        #: (sender, receiver) -> [highest seq seen, holes (set) or None, copies
        #: received, never-sent copies, stale copies]
        self._streams: dict[tuple[Hashable, Hashable], list[Any]] = {}
        self._last_sent: dict[Hashable, int] = {}
        self._first: dict[Hashable, int] = {}
        self.duplicated = 0
        self.reordered = 0
        self.unexpected = 0
        self.garbled = 0
        self.never_sent = 0
        self.stale = 0
        self.received_total = 0
        self.latencies: list[int] | None = None

    def route(self, sender: Hashable, receivers: Iterable[Hashable], after: int = 0) -> None:
        """``receivers`` must each get every message ``sender`` sends from
        sequence number ``after + 1`` on (``after``: what an earlier run sent)."""
        for receiver in receivers:
            if (sender, receiver) not in self._streams:
                self._streams[sender, receiver] = [after, None, 0, 0, 0]
                self._routes.setdefault(sender, []).append(receiver)
        self._first[sender] = after
        self._last_sent.setdefault(sender, after)

    def sent(self, sender: Hashable, seq: int) -> None:
        self._last_sent[sender] = seq

    def received(
        self, sender: Hashable, receiver: Hashable, seq: int, sent_ns: int, now_ns: int
    ) -> None:
        self.received_total += 1
        state = self._streams.get((sender, receiver))
        if state is None:
            self.unexpected += 1
            return
        state[2] += 1
        if seq > self._last_sent[sender]:
            if seq - self._last_sent[sender] > MAX_GAP:
                self.garbled += 1
            else:
                self.never_sent += 1
            state[3] += 1
            return
        if seq <= self._first[sender]:
            self.stale += 1
            state[4] += 1
            return
        latencies = self.latencies
        if latencies is not None:
            latencies.append(now_ns - sent_ns)
        high = state[0]
        if seq == high + 1:
            state[0] = seq
        elif seq > high:
            holes = state[1]
            if holes is None:
                holes = state[1] = set()
            holes.update(range(high + 1, seq))
            state[0] = seq
        else:
            holes = state[1]
            if holes and seq in holes:
                holes.discard(seq)
                self.reordered += 1
            else:
                self.duplicated += 1

    def expected(self) -> int:
        """Copies that should have arrived for everything sent so far."""
        return sum((self._last_sent[s] - self._first[s]) * len(r) for s, r in self._routes.items())

    def report(self) -> AccountingReport:
        lost = 0
        expected = 0
        problems: list[str] = []
        for (sender, receiver), (high, holes, _copies, never, stale) in self._streams.items():
            last = self._last_sent[sender]
            count = last - self._first[sender]
            expected += count
            stream_lost = len(holes or ()) + max(0, last - high)
            lost += stream_lost
            faults = [
                f"{what} {n}"
                for what, n in (("lost", stream_lost), ("never sent", never), ("stale", stale))
                if n
            ]
            if faults and len(problems) < 10:
                problems.append(f"{sender!r} -> {receiver!r}: {', '.join(faults)} of {count}")
        return AccountingReport(
            streams=len(self._streams),
            sent=sum(self._last_sent[s] - self._first[s] for s in self._routes),
            expected=expected,
            received=self.received_total,
            lost=lost,
            duplicated=self.duplicated,
            reordered=self.reordered,
            unexpected=self.unexpected,
            garbled=self.garbled,
            never_sent=self.never_sent,
            stale=self.stale,
            problems=problems,
        )


def percentiles(samples: Sequence[float], points: Iterable[float] = (50, 99, 99.9)) -> list[float]:
    """Nearest-rank percentiles; NaN for no samples."""
    ordered = sorted(samples)
    n = len(ordered)
    out = []
    for p in points:
        if not n:
            out.append(math.nan)
            continue
        rank = max(1, math.ceil(round(p * n / 100, 9)))
        out.append(ordered[min(n, rank) - 1])
    return out


def now_ns() -> int:
    return time.monotonic_ns()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop (the bench-only dependency, imported only here)."""
    import uvloop

    return uvloop.new_event_loop()
