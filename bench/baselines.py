"""The baselines every subject figure is divided by: the least a Twisted
process must do to serve the same traffic, with TCP_NODELAY on every
connection, like the server.

* ``relay``: a bare FLAP relay. A connection signs on with one channel-1
  frame naming itself (TLV 0x01) and is answered by one 01,03; a 04,06 it
  sends is written, unchanged, to the connection named in the 04,06 (IM
  routing, S3).
* ``signon``: a scripted sign-on handshake on two ports (auth and BOS). It
  answers the frame sequence of a real BUCP login and BOS sign-on with canned
  frames (a 256-byte cookie, a full-size rate reply, one 03,0B per buddy
  named in 03,04 after client ready), and checks nothing (sign-ons, S1).
* ``fanout``: a bare fan-out server. A connection signs on naming itself and
  the groups it joins (TLV 0x10, repeatable); one 04,06 addressed to a group
  is written, as built once, to each member with only the 6-byte FLAP header
  per connection (presence fan-out S4, multisession copies S5).
* ``feedbag``: a bare durable feedbag. The fan-out server above, where a
  connection also names its account (TLV 0x01); a 13,08/13,09/13,0A it sends
  is appended to a journal file and, after one fsync per reactor turn for
  every edit received in it (group commit; ``--fsync-each`` makes it one
  fsync per edit), answered with a 13,0E of status 0 per item and written,
  built once with a server request ID, to the account's other connections.
  It checks nothing and keeps no list (feedbag edits, S10).
* ``chat``: a bare chat room. The fan-out server above, where the group a
  connection joins is its room and its name (TLV 0x01) gives it a user-info
  block, packed once at sign-on; a 0E,05 it sends is written as one 0E,06
  (its cookie and channel, TLV 0x0003 the sender's block, TLV 0x0001 if the
  0E,05 had it, TLV 0x0005 copied unchanged), built once, to every other
  member of its room with only the 6-byte FLAP header per connection, and
  back to the sender under its request ID if it asked for reflection
  (TLV 0x0006). It checks nothing (chat fan-out, S11).
* ``holder``: a bare idle-connection holder. It accepts, signs a connection
  on with one channel-1 frame (answered by one 01,03) and holds it; with
  ``--keepalive S`` one timer writes a channel-5 keepalive to every
  connection each S seconds, as the server's sweeper does to idle ones
  (sessions held, S2).

Run one with ``python -m bench.baselines KIND --port P`` (``signon`` also
takes ``--bos-port``, default P + 1; ``feedbag`` needs ``--journal FILE``).
"""

from __future__ import annotations

import argparse
import os
import struct
import sys

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall

FLAP = struct.Struct("!BBHH")
SNAC = struct.Struct("!HHHI")
TLV_HEADER = struct.Struct("!HH")
HELLO = b"\x00\x00\x00\x01"


def tlv(tag: int, value: bytes) -> bytes:
    return TLV_HEADER.pack(tag, len(value)) + value


def tlvs_of(data: bytes, offset: int = 0) -> list[tuple[int, bytes]]:
    found = []
    while offset + 4 <= len(data):
        tag, length = TLV_HEADER.unpack_from(data, offset)
        offset += 4
        found.append((tag, data[offset : offset + length]))
        offset += length
    return found


def snac(family: int, subtype: int, body: bytes, request_id: bytes) -> bytes:
    """A reply SNAC; ``request_id`` is the 4 raw bytes copied from the request."""
    return struct.pack("!HHH", family, subtype, 0) + request_id + body


#: 01,03 of BOS: the families the real server lists.
HOST_ONLINE_BODY = b"".join(
    f.to_bytes(2, "big") for f in (0x01, 0x02, 0x03, 0x04, 0x06, 0x08, 0x09, 0x0A, 0x0B, 0x13)
)
HOST_ONLINE = snac(0x01, 0x03, HOST_ONLINE_BODY, b"\x00\x00\x00\x01")


class Flap(Protocol):
    """Framing, per-connection sequence numbers, NODELAY, the hello."""

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.sequence = 0
        self.buffer = b""
        self.send(1, HELLO)

    def dataReceived(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        size = len(buffer)
        pos = 0
        while size - pos >= 6:
            start, channel, _, length = FLAP.unpack_from(buffer, pos)
            end = pos + 6 + length
            if end > size:
                break
            if start != 0x2A:
                self.transport.loseConnection()
                return
            payload = buffer[pos + 6 : end]
            pos = end
            self.frame(channel, payload)
        self.buffer = buffer[pos:] if pos < size else b""

    def send(self, channel: int, payload: bytes) -> None:
        sequence = self.sequence = (self.sequence + 1) & 0x7FFF
        self.transport.write(FLAP.pack(0x2A, channel, sequence, len(payload)) + payload)

    def frame(self, channel: int, payload: bytes) -> None:
        if channel == 4:
            self.transport.loseConnection()


# -- relay --------------------------------------------------------------------------------

K_IM = b"\x00\x04\x00\x06"


def im_target(payload: bytes) -> bytes:
    """The screen name of a 04,06: after SNAC header, cookie and channel."""
    return payload[21 : 21 + payload[20]]


class Relay(Flap):
    name: bytes | None = None

    def frame(self, channel: int, payload: bytes) -> None:
        if channel == 2:
            if payload[:4] == K_IM:
                peer = self.factory.names.get(im_target(payload))
                if peer is not None:
                    peer.send(2, payload)
        elif channel == 1:
            for tag, value in tlvs_of(payload, 4):
                if tag == 0x01:
                    self.name = value
                    self.factory.names[value] = self
            self.send(2, HOST_ONLINE)
        elif channel == 4:
            self.transport.loseConnection()

    def connectionLost(self, reason: object = None) -> None:
        if self.name is not None and self.factory.names.get(self.name) is self:
            del self.factory.names[self.name]


class RelayFactory(Factory):
    protocol = Relay

    def __init__(self) -> None:
        self.names: dict[bytes, Relay] = {}


# -- fan-out ------------------------------------------------------------------------------


class FanOut(Flap):
    groups: tuple[bytes, ...] = ()

    def frame(self, channel: int, payload: bytes) -> None:
        if channel == 2:
            if payload[:4] == K_IM:
                members = self.factory.groups.get(im_target(payload))
                if members:
                    for member in members:
                        member.send(2, payload)
        elif channel == 1:
            joined = []
            for tag, value in tlvs_of(payload, 4):
                if tag == 0x10:
                    self.factory.groups.setdefault(value, []).append(self)
                    joined.append(value)
            self.groups = tuple(joined)
            self.send(2, HOST_ONLINE)
        elif channel == 4:
            self.transport.loseConnection()

    def connectionLost(self, reason: object = None) -> None:
        for group in self.groups:
            members = self.factory.groups.get(group)
            if members and self in members:
                members.remove(self)


class FanOutFactory(Factory):
    protocol = FanOut

    def __init__(self) -> None:
        self.groups: dict[bytes, list[FanOut]] = {}


# -- durable feedbag ----------------------------------------------------------------------

FEEDBAG_EDITS = frozenset({b"\x00\x13\x00\x08", b"\x00\x13\x00\x09", b"\x00\x13\x00\x0a"})
#: The request ID of every push: the server's bit and 1 (a client only looks at the bit).
PUSH_REQUEST_ID = b"\x80\x00\x00\x01"
RECORD = struct.Struct("!BH")


def count_items(body: bytes) -> int:
    """Items in an edit body: string16 name, 3 x u16, string16 attributes each."""
    count = pos = 0
    size = len(body)
    while pos + 2 <= size:
        pos += 2 + int.from_bytes(body[pos : pos + 2], "big") + 6
        pos += 2 + int.from_bytes(body[pos : pos + 2], "big")
        count += 1
    return count


class DurableFeedbag(FanOut):
    account: bytes | None = None

    def frame(self, channel: int, payload: bytes) -> None:
        if channel == 2 and payload[:4] in FEEDBAG_EDITS:
            self.factory.edit(self, payload)
            return
        if channel == 1:
            for tag, value in tlvs_of(payload, 4):
                if tag == 0x01:
                    self.account = value
                    self.factory.accounts.setdefault(value, []).append(self)
        FanOut.frame(self, channel, payload)

    def connectionLost(self, reason: object = None) -> None:
        FanOut.connectionLost(self, reason)
        members = self.factory.accounts.get(self.account)
        if members and self in members:
            members.remove(self)


class DurableFeedbagFactory(FanOutFactory):
    protocol = DurableFeedbag

    def __init__(self, journal: str, fsync_each: bool = False) -> None:
        super().__init__()
        self.accounts: dict[bytes | None, list[DurableFeedbag]] = {}
        self.fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.fsync_each = fsync_each
        self.pending: list[tuple[DurableFeedbag, bytes]] = []
        self.scheduled = False

    def edit(self, connection: DurableFeedbag, payload: bytes) -> None:
        self.pending.append((connection, payload))
        if self.fsync_each:
            self.flush()
        elif not self.scheduled:
            # Everything read in this reactor turn goes in one write + fsync.
            self.scheduled = True
            reactor.callLater(0, self.flush)

    def flush(self) -> None:
        self.scheduled = False
        batch, self.pending = self.pending, []
        if not batch:
            return
        os.write(
            self.fd,
            b"".join(
                RECORD.pack(len(c.account or b""), len(p)) + (c.account or b"") + p
                for c, p in batch
            ),
        )
        os.fsync(self.fd)
        for connection, payload in batch:
            if connection.transport is None or not connection.connected:
                continue
            body = payload[10:]
            status = b"\x00\x00" * count_items(body)
            connection.send(2, snac(0x13, 0x0E, status, payload[6:10]))
            push = payload[:6] + PUSH_REQUEST_ID + body
            for sibling in self.accounts.get(connection.account, ()):
                if sibling is not connection:
                    sibling.send(2, push)


# -- chat room ----------------------------------------------------------------------------

K_CHAT_TO_HOST = b"\x00\x0e\x00\x05"
#: The SNAC header of every 0E,06 to the room (a server request ID).
CHAT_PUSH_HEAD = snac(0x0E, 0x06, b"", PUSH_REQUEST_ID)
EMPTY_TO_ROOM = tlv(0x0001, b"")


def chat_info_block(name: bytes) -> bytes:
    """A user-info block like the server's: name, warning 0, class, sign-on
    time and status."""
    tlvs = (
        tlv(0x01, b"\x00\x10")
        + tlv(0x03, b"\x00\x00\x00\x00")
        + tlv(0x0F, b"\x00\x00\x00\x00")
        + tlv(0x06, b"\x00\x00\x00\x00")
    )
    return bytes([len(name)]) + name + struct.pack("!HH", 0, 4) + tlvs


class ChatRoom(FanOut):
    info = b""

    def frame(self, channel: int, payload: bytes) -> None:
        if channel == 2 and payload[:4] == K_CHAT_TO_HOST:
            self.say(payload)
            return
        if channel == 1:
            for tag, value in tlvs_of(payload, 4):
                if tag == 0x01:
                    self.info = tlv(0x0003, chat_info_block(value))
        FanOut.frame(self, channel, payload)

    def say(self, payload: bytes) -> None:
        """0E,05 = SNAC header | cookie 8 | u16 channel | TLVs."""
        to_room = reflect = False
        message = b""
        for tag, value in tlvs_of(payload, 20):
            if tag == 0x0001:
                to_room = True
            elif tag == 0x0005:
                message = value
            elif tag == 0x0006:
                reflect = True
        body = (
            payload[10:20]
            + self.info
            + (EMPTY_TO_ROOM if to_room else b"")
            + TLV_HEADER.pack(0x0005, len(message))
            + message
        )
        out = CHAT_PUSH_HEAD + body
        groups = self.factory.groups
        for group in self.groups:
            for member in groups.get(group, ()):
                if member is not self:
                    member.send(2, out)
        if reflect:
            self.send(2, snac(0x0E, 0x06, body, payload[6:10]))


class ChatRoomFactory(FanOutFactory):
    protocol = ChatRoom


# -- idle-connection holder --------------------------------------------------------------


class Holder(Flap):
    def connectionMade(self) -> None:
        Flap.connectionMade(self)
        self.factory.held.add(self)

    def frame(self, channel: int, payload: bytes) -> None:
        if channel == 1:
            self.send(2, HOST_ONLINE)
        elif channel == 4:
            self.transport.loseConnection()

    def connectionLost(self, reason: object = None) -> None:
        self.factory.held.discard(self)


class HolderFactory(Factory):
    protocol = Holder

    def __init__(self) -> None:
        self.held: set[Holder] = set()

    def keepalive(self) -> None:
        for connection in self.held:
            connection.send(5, b"")


# -- scripted sign-on ---------------------------------------------------------------------

CHALLENGE_BODY = struct.pack("!H", 10) + b"1234567890"
COOKIE = bytes(range(256))


def _rate_reply() -> bytes:
    """A 01,07 the size of a real one: 5 classes (extended records), members."""
    classes = b"".join(
        struct.pack("!HIIIIIII", i, 80, 2500, 2000, 1500, 800, 6000, 6000)
        + struct.pack("!IB", 0, 0)
        for i in range(1, 6)
    )
    members = b""
    layout = ((1, range(0x01, 0x19), 8), *((c, range(1, 3), 8) for c in range(2, 6)))
    for class_id, families, subtypes in layout:
        pairs = [(f, s) for f in families for s in range(1, subtypes)]
        members += struct.pack("!HH", class_id, len(pairs))
        members += b"".join(struct.pack("!HH", f, s) for f, s in pairs)
    return struct.pack("!H", 5) + classes + members


RATE_REPLY_BODY = _rate_reply()
SELF_INFO_BODY = (
    b"\x05bench"
    + struct.pack("!HH", 0, 5)
    + tlv(0x01, b"\x00\x10")
    + tlv(0x03, b"\x00\x00\x00\x00")
    + tlv(0x06, b"\x00\x00\x00\x00")
    + tlv(0x05, b"\x00\x00\x00\x00")
    + tlv(0x0F, b"\x00\x00\x00\x00")
)
ARRIVAL_BODY = (
    b"\x08buddy000"
    + struct.pack("!HH", 0, 3)
    + tlv(0x01, b"\x00\x10")
    + tlv(0x03, b"\x00\x00\x00\x00")
    + tlv(0x06, b"\x00\x00\x00\x00")
)
ARRIVAL = snac(0x03, 0x0B, ARRIVAL_BODY, b"\x00\x00\x00\x00")
RIGHTS = {
    b"\x00\x02\x00\x02": (0x02, 0x03, tlv(0x01, b"\x04\x00") + tlv(0x02, b"\x00\x10")),
    b"\x00\x03\x00\x02": (
        0x03,
        0x03,
        tlv(0x01, b"\x03\xe8") + tlv(0x02, b"\x0b\xb8") + tlv(0x04, b"\x00\xa0"),
    ),
    b"\x00\x04\x00\x04": (0x04, 0x05, struct.pack("!HIHHHHH", 2, 3, 8000, 999, 999, 0, 0)),
    b"\x00\x09\x00\x02": (0x09, 0x03, tlv(0x01, b"\x00\xdc") + tlv(0x02, b"\x00\xdc")),
    b"\x00\x01\x00\x0e": (0x01, 0x0F, SELF_INFO_BODY),
    b"\x00\x01\x00\x06": (0x01, 0x07, RATE_REPLY_BODY),
}


class ScriptedAuth(Flap):
    def frame(self, channel: int, payload: bytes) -> None:
        if channel != 2:
            Flap.frame(self, channel, payload)
            return
        head = payload[:4]
        request_id = payload[6:10]
        if head == b"\x00\x17\x00\x06":
            self.send(2, snac(0x17, 0x07, CHALLENGE_BODY, request_id))
        elif head == b"\x00\x17\x00\x02":
            name = next((v for t, v in tlvs_of(payload, 10) if t == 0x01), b"")
            body = tlv(0x01, name) + self.factory.login_tail
            self.send(2, snac(0x17, 0x03, body, request_id))
            self.send(4, b"")
            self.transport.loseConnection()


class ScriptedBos(Flap):
    buddies = 0

    def frame(self, channel: int, payload: bytes) -> None:
        if channel == 1:
            self.send(2, HOST_ONLINE)
            return
        if channel != 2:
            Flap.frame(self, channel, payload)
            return
        head = payload[:4]
        request_id = payload[6:10]
        canned = RIGHTS.get(head)
        if canned is not None:
            self.send(2, snac(canned[0], canned[1], canned[2], request_id))
        elif head == b"\x00\x01\x00\x17":
            self.send(2, snac(0x01, 0x18, payload[10:], request_id))
        elif head == b"\x00\x03\x00\x04":
            body = payload[10:]
            pos = 0
            while pos < len(body):
                pos += 1 + body[pos]
                self.buddies += 1
        elif head == b"\x00\x01\x00\x02":
            for _ in range(self.buddies):
                self.send(2, ARRIVAL)


class ScriptedAuthFactory(Factory):
    protocol = ScriptedAuth

    def __init__(self, bos_address: str) -> None:
        self.login_tail = tlv(0x05, bos_address.encode()) + tlv(0x06, COOKIE)


class ScriptedBosFactory(Factory):
    protocol = ScriptedBos


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines", description=__doc__)
    parser.add_argument("kind", choices=("relay", "signon", "fanout", "feedbag", "chat", "holder"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bos-port", type=int, help="signon only; default port + 1")
    parser.add_argument(
        "--keepalive", type=float, default=0.0, help="holder only: seconds between keepalives"
    )
    parser.add_argument("--journal", help="feedbag only: the file edits are appended to")
    parser.add_argument(
        "--fsync-each",
        action="store_true",
        help="feedbag only: one fsync per edit instead of one per reactor turn",
    )
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    if args.kind == "relay":
        reactor.listenTCP(args.port, RelayFactory(), interface=args.host)
    elif args.kind == "fanout":
        reactor.listenTCP(args.port, FanOutFactory(), interface=args.host)
    elif args.kind == "chat":
        reactor.listenTCP(args.port, ChatRoomFactory(), interface=args.host)
    elif args.kind == "feedbag":
        if not args.journal:
            parser.error("feedbag needs --journal FILE")
        factory = DurableFeedbagFactory(args.journal, args.fsync_each)
        reactor.listenTCP(args.port, factory, interface=args.host)
    elif args.kind == "holder":
        holder = HolderFactory()
        reactor.listenTCP(args.port, holder, backlog=4096, interface=args.host)
        if args.keepalive > 0:
            LoopingCall(holder.keepalive).start(args.keepalive, now=False)
    else:
        bos_port = args.bos_port or args.port + 1
        reactor.listenTCP(
            args.port, ScriptedAuthFactory(f"{args.host}:{bos_port}"), interface=args.host
        )
        reactor.listenTCP(bos_port, ScriptedBosFactory(), interface=args.host)
    print(f"baseline {args.kind} listening on {args.host}:{args.port}", flush=True)
    reactor.run()
    sys.exit(0)


if __name__ == "__main__":
    main()
