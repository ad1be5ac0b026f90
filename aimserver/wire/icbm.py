"""ICBM (0x0004) bodies: messages, acks, typing events, client errors, parameters."""

from __future__ import annotations

import struct
from typing import ClassVar

import attrs

from aimserver.wire.errors import MalformedData
from aimserver.wire.reader import Reader, string08
from aimserver.wire.screenname import decode_screen_name, encode_screen_name
from aimserver.wire.tlv import TlvList

COOKIE_SIZE = 8
_PARAMS = struct.Struct("!HIHHHI")

# 04,06 / 04,07 TLVs
TAG_IM_DATA = 0x0002
TAG_REQUEST_HOST_ACK = 0x0003
TAG_AUTO_RESPONSE = 0x0004
TAG_RENDEZVOUS = 0x0005
TAG_STORE_IF_OFFLINE = 0x0006
TAG_WANT_EVENTS = 0x000B
TAG_OFFLINE_TIME = 0x0016

PARAM_FLAG_TYPING = 0x00000008


def _read_head(reader: Reader) -> tuple[bytes, int, str]:
    cookie = reader.take(COOKIE_SIZE, "ICBM cookie")
    channel = reader.u16("ICBM channel")
    name = decode_screen_name(reader.string08("screen name"))
    return cookie, channel, name


def _pack_head(cookie: bytes, channel: int, screen_name: str) -> bytes:
    if len(cookie) != COOKIE_SIZE:
        raise ValueError("ICBM cookie must be 8 bytes")
    return cookie + struct.pack("!H", channel) + string08(encode_screen_name(screen_name))


@attrs.frozen
class ChannelMessageToHost:
    """04,06: a message as the sender wrote it; ``screen_name`` is the recipient."""

    cookie: bytes
    channel: int
    screen_name: str
    tlvs: TlvList = TlvList()

    def pack(self) -> bytes:
        return _pack_head(self.cookie, self.channel, self.screen_name) + self.tlvs.pack_list()

    @classmethod
    def unpack(cls, body: bytes) -> ChannelMessageToHost:
        reader = Reader(body, "channel message to host")
        cookie, channel, name = _read_head(reader)
        return cls(cookie, channel, name, TlvList.read_list(reader))


def pack_message_to_client(cookie: bytes, channel: int, sender_info: bytes, tlvs: bytes) -> bytes:
    """04,07 body: cookie, channel, the sender's packed user-info block, TLVs."""
    return cookie + struct.pack("!H", channel) + sender_info + tlvs


@attrs.frozen
class HostAck:
    """04,0C: echoes the recipient as the client wrote it."""

    cookie: bytes
    channel: int
    screen_name: str

    def pack(self) -> bytes:
        return _pack_head(self.cookie, self.channel, self.screen_name)


@attrs.frozen
class ClientEvent:
    """04,14 typing notification; the name is the recipient when sent, the
    sender when delivered."""

    cookie: bytes
    channel: int
    screen_name: str
    event: int

    def pack(self) -> bytes:
        return _pack_head(self.cookie, self.channel, self.screen_name) + struct.pack(
            "!H", self.event
        )

    @classmethod
    def unpack(cls, body: bytes) -> ClientEvent:
        reader = Reader(body, "client event")
        cookie, channel, name = _read_head(reader)
        event = reader.u16("event")
        return cls(cookie, channel, name, event)


@attrs.frozen
class ClientError:
    """04,0B: an error one client reports about a message from another."""

    cookie: bytes
    channel: int
    screen_name: str
    reason: int
    data: bytes = b""

    def pack(self) -> bytes:
        return (
            _pack_head(self.cookie, self.channel, self.screen_name)
            + struct.pack("!H", self.reason)
            + self.data
        )

    @classmethod
    def unpack(cls, body: bytes) -> ClientError:
        reader = Reader(body, "client error")
        cookie, channel, name = _read_head(reader)
        reason = reader.u16("reason")
        return cls(cookie, channel, name, reason, reader.rest())


@attrs.frozen
class IcbmParameters:
    """04,02 (first field = channel) and 04,05 (first field = max slots)."""

    channel: int
    flags: int
    max_message_length: int
    max_sender_warning: int
    max_receiver_warning: int
    min_interval: int

    def pack(self) -> bytes:
        return _PARAMS.pack(
            self.channel,
            self.flags,
            self.max_message_length,
            self.max_sender_warning,
            self.max_receiver_warning,
            self.min_interval,
        )

    @classmethod
    def unpack(cls, body: bytes) -> IcbmParameters:
        if len(body) < _PARAMS.size:
            raise MalformedData(f"ICBM parameters: {len(body)} bytes, need {_PARAMS.size}")
        return cls(*_PARAMS.unpack_from(body))


def pack_im_data(text: bytes, charset: int = 0x0000, subset: int = 0x0000) -> bytes:
    """Channel-1 IM data (TLV 0x02): a features fragment, then one text
    fragment (u16 charset, u16 subset, text)."""
    return b"".join((_IM_DATA_PREFIX, _TEXT_HEAD.pack(len(text) + 4, charset, subset), text))


#: Channel-1 IM data up to the text: the features fragment (05 01, length 4,
#: features 01 01 01 02) and the text fragment's id (01 01); then its length,
#: charset and subset.
_IM_DATA_PREFIX = b"\x05\x01\x00\x04\x01\x01\x01\x02\x01\x01"
_TEXT_HEAD = struct.Struct("!HHH")


@attrs.frozen
class Rendezvous:
    """The rendezvous block of a channel-2 ICBM (TLV 0x05): what kind of
    message, its cookie, the capability (service) it is about, and TLVs."""

    PROPOSE: ClassVar[int] = 0
    CANCEL: ClassVar[int] = 1
    ACCEPT: ClassVar[int] = 2
    TAG_CLIENT_IP: ClassVar[int] = 0x0003
    TAG_VERIFIED_IP: ClassVar[int] = 0x0004
    TAG_CANCEL_REASON: ClassVar[int] = 0x000B

    kind: int
    cookie: bytes
    capability: bytes
    tlvs: TlvList = TlvList()

    def pack(self) -> bytes:
        return struct.pack("!H", self.kind) + self.cookie + self.capability + self.tlvs.pack_list()

    @classmethod
    def unpack(cls, data: bytes) -> Rendezvous:
        reader = Reader(data, "rendezvous data")
        kind = reader.u16("message type")
        cookie = reader.take(COOKIE_SIZE, "cookie")
        capability = reader.take(16, "capability")
        return cls(kind, cookie, capability, TlvList.read_list(reader))


_TLV_HEAD = struct.Struct("!HH")
_U16 = struct.Struct("!H")


def split_message(body: bytes, not_relayed: frozenset[int]) -> tuple[bytes, int, bytes, int, bytes]:
    """The hot path's view of a 04,06 body, without building TLV objects:
    ``(cookie, channel, raw recipient name, tags seen, relayed TLV bytes)``.

    ``tags seen`` has bit ``1 << tag`` set for each tag below 32 that occurs;
    ``relayed`` is the TLVs except those in ``not_relayed``, byte for byte.
    Raises ``MalformedData`` exactly where ``ChannelMessageToHost.unpack`` would,
    except for a recipient that is not ASCII: the name is returned raw, and the
    caller's ``decode_screen_name`` refuses it.
    """
    size = len(body)
    if size < COOKIE_SIZE + 3:
        raise MalformedData(f"channel message to host: {size} bytes, shorter than its head")
    name_end = COOKIE_SIZE + 3 + body[COOKIE_SIZE + 2]
    if name_end > size:
        raise MalformedData("channel message to host: screen name runs past the end")
    (channel,) = _U16.unpack_from(body, COOKIE_SIZE)
    tags = 0
    parts = []
    run_start = offset = name_end
    while offset < size:
        if offset + 4 > size:
            raise MalformedData(f"channel message to host: TLV header cut at offset {offset}")
        tag, length = _TLV_HEAD.unpack_from(body, offset)
        end = offset + 4 + length
        if end > size:
            raise MalformedData(f"channel message to host: TLV 0x{tag:04x} runs past the end")
        if tag < 32:
            tags |= 1 << tag
        if tag in not_relayed:
            parts.append(body[run_start:offset])
            run_start = end
        offset = end
    parts.append(body[run_start:size])
    return body[:COOKIE_SIZE], channel, body[COOKIE_SIZE + 3 : name_end], tags, b"".join(parts)
