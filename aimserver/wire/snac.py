"""SNAC: the header of every channel-2 payload (OSCAR.md §3)."""

from __future__ import annotations

import struct

import attrs

from aimserver.wire.errors import MalformedData
from aimserver.wire.reader import Reader

SNAC_HEADER = struct.Struct("!HHHI")
SNAC_HEADER_SIZE = SNAC_HEADER.size
FLAG_MORE_REPLIES = 0x0001
FLAG_VERSION_PREFIX = 0x8000
SERVER_REQUEST_BIT = 0x80000000


@attrs.frozen
class SnacHeader:
    family: int
    subtype: int
    flags: int = 0
    request_id: int = 0

    def pack(self) -> bytes:
        return SNAC_HEADER.pack(self.family, self.subtype, self.flags, self.request_id)

    @classmethod
    def unpack(cls, payload: bytes) -> tuple[SnacHeader, bytes]:
        """The header and the body. With flag 0x8000 the length-prefixed version
        block in front of the body is skipped (clients rarely send it, but a
        body parsed without skipping it would be garbage)."""
        if len(payload) < SNAC_HEADER_SIZE:
            raise MalformedData(f"SNAC of {len(payload)} bytes is shorter than its header")
        header = cls(*SNAC_HEADER.unpack_from(payload))
        offset = SNAC_HEADER_SIZE
        if header.flags & FLAG_VERSION_PREFIX:
            reader = Reader(payload, "SNAC version prefix", offset)
            reader.take(reader.u16("prefix length"), "prefix")
            offset = reader.offset
        return header, payload[offset:]


def pack_snac(family: int, subtype: int, body: bytes, request_id: int = 0, flags: int = 0) -> bytes:
    """A whole channel-2 payload. Never sets 0x8000 (we never write the prefix)."""
    return SNAC_HEADER.pack(family, subtype, flags, request_id) + body
