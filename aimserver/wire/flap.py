"""FLAP: the frame every byte of an OSCAR connection travels in (OSCAR.md §2)."""

from __future__ import annotations

import struct
from enum import IntEnum

import attrs

from aimserver.wire.errors import MalformedData
from aimserver.wire.reader import Reader
from aimserver.wire.tlv import TlvList

FLAP_START = 0x2A
FLAP_HEADER = struct.Struct("!BBHH")
FLAP_HEADER_SIZE = FLAP_HEADER.size
FLAP_VERSION = 1
MAX_PAYLOAD = 0xFFFF


class Channel(IntEnum):
    SIGNON = 1
    DATA = 2
    ERROR = 3
    SIGNOFF = 4
    KEEP_ALIVE = 5


def pack_header(channel: int, sequence: int, length: int) -> bytes:
    return FLAP_HEADER.pack(FLAP_START, channel, sequence & 0xFFFF, length)


def parse_header(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """``(channel, sequence, payload length)`` of the header at ``offset``.

    The caller guarantees 6 bytes are there; a wrong start byte is malformed.
    """
    start, channel, sequence, length = FLAP_HEADER.unpack_from(data, offset)
    if start != FLAP_START:
        raise MalformedData(f"FLAP start byte is 0x{start:02x}, not 0x2a")
    return channel, sequence, length


@attrs.frozen
class FlapFrame:
    channel: int
    sequence: int
    payload: bytes = b""

    def pack(self) -> bytes:
        if len(self.payload) > MAX_PAYLOAD:
            raise ValueError("FLAP payload longer than 65535 bytes")
        return pack_header(self.channel, self.sequence, len(self.payload)) + self.payload

    @classmethod
    def unpack(cls, data: bytes) -> FlapFrame:
        """Exactly one whole frame; extra or missing bytes are malformed."""
        if len(data) < FLAP_HEADER_SIZE:
            raise MalformedData(f"FLAP frame of {len(data)} bytes is shorter than its header")
        channel, sequence, length = parse_header(data)
        if len(data) != FLAP_HEADER_SIZE + length:
            raise MalformedData(
                f"FLAP length says {length} payload bytes, frame has {len(data) - 6}"
            )
        return cls(channel, sequence, data[FLAP_HEADER_SIZE:])


@attrs.frozen
class SignonPayload:
    """The channel-1 payload: u32 FLAP version then a TLV list (credentials on the
    authorizer, the cookie everywhere else)."""

    version: int = FLAP_VERSION
    tlvs: TlvList = TlvList()

    def pack(self) -> bytes:
        return struct.pack("!I", self.version) + self.tlvs.pack_list()

    @classmethod
    def unpack(cls, payload: bytes) -> SignonPayload:
        reader = Reader(payload, "FLAP sign-on")
        version = reader.u32("FLAP version")
        return cls(version, TlvList.read_list(reader))
