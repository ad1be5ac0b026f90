"""Feedbag (0x0013) bodies: items and the list reply."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import attrs

from aimserver.wire.reader import Reader

_NAME_LENGTH = struct.Struct("!H")
_IDS_AND_LENGTH = struct.Struct("!HHHH")
#: Keep each 13,06 part comfortably inside one frame.
MAX_REPLY_PART = 8000


@attrs.frozen
class WireFeedbagItem:
    """One item as it travels: name, group ID, item ID, class, and the raw
    attribute TLVs (the L-block's contents)."""

    name: bytes
    group_id: int
    item_id: int
    class_id: int
    attributes: bytes = b""

    def pack(self) -> bytes:
        return pack_item(self.name, self.group_id, self.item_id, self.class_id, self.attributes)

    @classmethod
    def read(cls, reader: Reader) -> WireFeedbagItem:
        name = reader.string16("item name")
        group_id = reader.u16("group ID")
        item_id = reader.u16("item ID")
        class_id = reader.u16("class ID")
        attributes = reader.string16("item attributes")
        return cls(name, group_id, item_id, class_id, attributes)


def pack_item(name: bytes, group_id: int, item_id: int, class_id: int, attributes: bytes) -> bytes:
    """One item's wire form. A list reply packs every item of the list, so
    this is two struct calls and no intermediate objects."""
    if len(name) > 0xFFFF or len(attributes) > 0xFFFF:
        raise ValueError("feedbag item field longer than 65535 bytes")
    return (
        _NAME_LENGTH.pack(len(name))
        + name
        + _IDS_AND_LENGTH.pack(group_id, item_id, class_id, len(attributes))
        + attributes
    )


def read_items(body: bytes, what: str = "feedbag items") -> list[WireFeedbagItem]:
    reader = Reader(body, what)
    items = []
    while not reader.at_end():
        items.append(WireFeedbagItem.read(reader))
    return items


def pack_reply_parts(items: Sequence[WireFeedbagItem], last_modified: int) -> list[bytes]:
    """13,06 bodies: u8 version 0, u16 count, items, u32 last-change time.
    Split into several parts when large; the caller flags all but the last
    with 0x0001 (more replies follow)."""
    return pack_packed_reply_parts([item.pack() for item in items], last_modified)


def pack_packed_reply_parts(packed: Sequence[bytes], last_modified: int) -> list[bytes]:
    """:func:`pack_reply_parts` of items already packed (:func:`pack_item`)."""
    parts: list[list[bytes]] = [[]]
    size = 0
    for item in packed:
        if parts[-1] and size + len(item) > MAX_REPLY_PART:
            parts.append([])
            size = 0
        parts[-1].append(item)
        size += len(item)
    return [pack_reply(len(part), b"".join(part), last_modified) for part in parts]


def pack_reply(count: int, items: bytes, last_modified: int) -> bytes:
    """One 13,06 body from items already packed together."""
    return b"\x00" + struct.pack("!H", count) + items + struct.pack("!I", last_modified)


def pack_not_modified(last_modified: int, count: int) -> bytes:
    return struct.pack("!IH", last_modified, count)
