"""ODir (0x000F) bodies: the search reply (0F,03) and the keyword list (0F,05).

Both layouts come from Go only (FAMILIES.md §ODir). The search request
(0F,02) is a plain TLV list (``TlvList``); 0F,04 has no body.
"""

from __future__ import annotations

import struct

import attrs

from aimserver.wire.errors import MalformedData
from aimserver.wire.reader import Reader, string16
from aimserver.wire.tlv import TlvList

_STATUS_UNKNOWN_COUNT = struct.Struct("!HHH")
_STATUS_COUNT = struct.Struct("!HH")
_KIND_PARENT = struct.Struct("!BB")

#: Keyword-list item kinds.
KEYWORD_CATEGORY = 0x01
KEYWORD = 0x02


@attrs.frozen
class ODirInfoReply:
    """0F,03: u16 status, u16 unknown (always 0), u16 result count, then one
    TLV block per result."""

    status: int
    results: tuple[TlvList, ...] = attrs.field(default=(), converter=tuple)

    def pack(self) -> bytes:
        return _STATUS_UNKNOWN_COUNT.pack(self.status, 0, len(self.results)) + b"".join(
            result.pack_block() for result in self.results
        )

    @classmethod
    def unpack(cls, body: bytes, what: str = "odir info reply") -> ODirInfoReply:
        reader = Reader(body, what)
        status = reader.u16("status")
        reader.u16("unknown")
        count = reader.u16("result count")
        # A block takes at least its 2-byte count.
        if count * 2 > reader.remaining():
            raise MalformedData(f"{what}: {count} results in {reader.remaining()} bytes")
        results = tuple(TlvList.read_block(reader) for _ in range(count))
        reader.expect_end()
        return cls(status, results)


@attrs.frozen
class KeywordItem:
    """One entry of the keyword list: u8 kind (1 category, 2 keyword), u8 id
    (a category's own id; a keyword's category, 0 at the top level), string16
    name."""

    kind: int
    parent: int
    name: bytes

    def pack(self) -> bytes:
        return _KIND_PARENT.pack(self.kind, self.parent) + string16(self.name)

    @classmethod
    def read(cls, reader: Reader) -> KeywordItem:
        kind = reader.u8("keyword kind")
        parent = reader.u8("keyword parent")
        return cls(kind, parent, reader.string16("keyword name"))


@attrs.frozen
class KeywordListReply:
    """0F,05: u16 status, u16 count, the items."""

    status: int
    items: tuple[KeywordItem, ...] = attrs.field(default=(), converter=tuple)

    def pack(self) -> bytes:
        return _STATUS_COUNT.pack(self.status, len(self.items)) + b"".join(
            item.pack() for item in self.items
        )

    @classmethod
    def unpack(cls, body: bytes, what: str = "odir keyword list reply") -> KeywordListReply:
        reader = Reader(body, what)
        status = reader.u16("status")
        count = reader.u16("keyword count")
        # An item takes at least 4 bytes (kind, id, an empty name).
        if count * 4 > reader.remaining():
            raise MalformedData(f"{what}: {count} keywords in {reader.remaining()} bytes")
        items = tuple(KeywordItem.read(reader) for _ in range(count))
        reader.expect_end()
        return cls(status, items)
