# -*- test-case-name: tests.test_wire_feedbag -*-
"""Tests for L{aimserver.wire.feedbag}: feedbag (0x0013) items, the 13,06 list
reply and its parts, and 13,0F (FAMILIES.md §Feedbag)."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.wire.errors import MalformedData
from aimserver.wire.feedbag import (
    MAX_REPLY_PART,
    WireFeedbagItem,
    pack_not_modified,
    pack_reply_parts,
    read_items,
)
from aimserver.wire.reader import Reader
from tests.strategies import feedbag_item_bytes, feedbag_items, fuzz, u16s, u32s

# FAMILIES.md 13,06: root, group "Buddies", buddy "Bob", PD info; last change 0x65000000.
ROOT = bytes.fromhex("00 00  00 00 00 00 00 01  00 06  00 C8 00 02 0A 1E")
BUDDIES = bytes.fromhex("00 07 42 75 64 64 69 65 73  0A 1E 00 00 00 01  00 06  00 C8 00 02 12 34")
BOB = bytes.fromhex("00 03 42 6F 62  0A 1E 12 34 00 00  00 00")
PD_INFO = bytes.fromhex("00 00  00 00 20 00 00 04  00 0D  00 CA 00 01 01  00 CB 00 04 FF FF FF FF")
LIST_REPLY = bytes.fromhex("00  00 04") + ROOT + BUDDIES + BOB + PD_INFO + bytes.fromhex("65000000")
LIST_ITEMS = [
    WireFeedbagItem(b"", 0, 0, 1, bytes.fromhex("00 C8 00 02 0A 1E")),
    WireFeedbagItem(b"Buddies", 0x0A1E, 0, 1, bytes.fromhex("00 C8 00 02 12 34")),
    WireFeedbagItem(b"Bob", 0x0A1E, 0x1234, 0),
    WireFeedbagItem(b"", 0, 0x2000, 4, bytes.fromhex("00 CA 00 01 01  00 CB 00 04 FF FF FF FF")),
]
# FAMILIES.md 13,0F for that list.
NOT_MODIFIED = bytes.fromhex("65 00 00 00  00 04")

# FAMILIES.md 13,08: buddy "Carol" with alias "Caz"; 13,09: group "Buddies" reordered.
CAROL = bytes.fromhex("00 05 43 61 72 6F 6C  0A 1E 23 45 00 00  00 07  01 31 00 03 43 61 7A")
CAROL_ITEM = WireFeedbagItem(b"Carol", 0x0A1E, 0x2345, 0, bytes.fromhex("01 31 00 03 43 61 7A"))
BUDDIES_REORDERED = bytes.fromhex(
    "00 07 42 75 64 64 69 65 73  0A 1E 00 00 00 01  00 08  00 C8 00 04 12 34 23 45"
)


def read_item(data: bytes) -> WireFeedbagItem:
    """One item that must fill ``data`` exactly."""
    reader = Reader(data, "test item")
    item = WireFeedbagItem.read(reader)
    if not reader.at_end():
        raise AssertionError(f"{reader.remaining()} bytes left after the item")
    return item


def read_reply_part(body: bytes) -> tuple[int, list[bytes], int]:
    """A reference decoder of one 13,06 body, with struct and no feedbag code:
    ``(version, packed items, last-change time)``. Each item's size comes from
    its two length fields."""
    version, count = struct.unpack_from("!BH", body)
    offset = 3
    items = []
    for _ in range(count):
        (name_length,) = struct.unpack_from("!H", body, offset)
        (attributes_length,) = struct.unpack_from("!H", body, offset + 2 + name_length + 6)
        end = offset + 2 + name_length + 6 + 2 + attributes_length
        items.append(body[offset:end])
        offset = end
    if len(body) != offset + 4:
        raise AssertionError(f"13,06 body has {len(body) - offset} bytes after its items")
    (last_modified,) = struct.unpack_from("!I", body, offset)
    return version, items, last_modified


def sized_item(size: int, item_id: int) -> WireFeedbagItem:
    """A buddy item that packs to ``size`` bytes (at least 13)."""
    return WireFeedbagItem(b"Bob", 1, item_id, 0, b"x" * (size - 13))


class FeedbagItemTests(SynchronousTestCase):
    """An item: string16 name, u16 group ID, u16 item ID, u16 class, L-block attributes."""

    def test_known_values(self) -> None:
        """The FAMILIES.md items, both ways."""
        for data, item in [
            (CAROL, CAROL_ITEM),
            *zip([ROOT, BUDDIES, BOB, PD_INFO], LIST_ITEMS, strict=True),
        ]:
            self.assertEqual(item.pack(), data)
            self.assertEqual(read_item(data), item)
        self.assertEqual(
            read_item(BUDDIES_REORDERED),
            WireFeedbagItem(b"Buddies", 0x0A1E, 0, 1, bytes.fromhex("00 C8 00 04 12 34 23 45")),
        )

    def test_truncated(self) -> None:
        """Every prefix of an item is MalformedData."""
        for data in [CAROL, ROOT, BOB, PD_INFO]:
            for cut in range(len(data)):
                self.assertRaises(MalformedData, WireFeedbagItem.read, Reader(data[:cut], "test"))

    def test_attributes_kept_opaque(self) -> None:
        """Attributes are not parsed: bytes that are no TLV list are kept as they are."""
        data = bytes.fromhex("00 01 41  00 01 00 02 00 00  00 03 FF FF FF")
        self.assertEqual(read_item(data), WireFeedbagItem(b"A", 1, 2, 0, b"\xff\xff\xff"))

    def test_read_stops_after_item(self) -> None:
        """Reading an item consumes exactly its bytes."""
        reader = Reader(CAROL + BOB, "test")
        self.assertEqual(WireFeedbagItem.read(reader), CAROL_ITEM)
        self.assertEqual(reader.rest(), BOB)

    @given(feedbag_items())
    def test_round_trip(self, item: WireFeedbagItem) -> None:
        """read(pack(x)) == x."""
        self.assertEqual(read_item(item.pack()), item)

    @given(feedbag_item_bytes())
    def test_bytes_round_trip(self, data: bytes) -> None:
        """pack(read(b)) == b, and every prefix of b is MalformedData."""
        self.assertEqual(read_item(data).pack(), data)
        for cut in range(len(data)):
            self.assertRaises(MalformedData, WireFeedbagItem.read, Reader(data[:cut], "test"))


class ReadItemsTests(SynchronousTestCase):
    """Items until the end of a body (13,08 / 13,09 / 13,0A)."""

    def test_known_values(self) -> None:
        """The items of the FAMILIES.md list, in order; an empty body has none."""
        self.assertEqual(read_items(ROOT + BUDDIES + BOB + PD_INFO), LIST_ITEMS)
        self.assertEqual(read_items(b""), [])

    def test_truncated(self) -> None:
        """Cut between items: the items before the cut; cut inside one: MalformedData."""
        data = CAROL + BOB + PD_INFO
        boundaries = {0: 0, len(CAROL): 1, len(CAROL + BOB): 2, len(data): 3}
        for cut in range(len(data) + 1):
            if cut in boundaries:
                self.assertEqual(len(read_items(data[:cut])), boundaries[cut])
            else:
                self.assertRaises(MalformedData, read_items, data[:cut])

    @given(st.lists(feedbag_item_bytes(), max_size=5))
    def test_bytes_round_trip(self, raw: list[bytes]) -> None:
        """One item per encoded item, packing back to the same bytes."""
        items = read_items(b"".join(raw))
        self.assertEqual([item.pack() for item in items], raw)

    @given(fuzz(st.lists(feedbag_item_bytes(), max_size=4).map(b"".join)))
    def test_any_bytes(self, data: bytes) -> None:
        """Any bytes are items that pack back to them, or MalformedData."""
        try:
            items = read_items(data)
        except MalformedData:
            return
        self.assertEqual(b"".join(item.pack() for item in items), data)


class ReplyPartsTests(SynchronousTestCase):
    """13,06: u8 version 0, u16 count, items, u32 last-change time; split in parts."""

    def test_known_value(self) -> None:
        """The FAMILIES.md list is one part, byte for byte."""
        self.assertEqual(pack_reply_parts(LIST_ITEMS, 0x65000000), [LIST_REPLY])

    def test_empty_list(self) -> None:
        """An empty list is one part: version 0, no items, time 0."""
        self.assertEqual(pack_reply_parts([], 0), [bytes.fromhex("00 00 00 00 00 00 00")])

    def test_split_where_a_part_would_overflow(self) -> None:
        """Items fill a part up to MAX_REPLY_PART bytes of items; the next item
        starts a new part, and each part has its own count and the time."""
        items = [sized_item(3000, 1), sized_item(3000, 2), sized_item(2000, 3), sized_item(13, 4)]
        parts = pack_reply_parts(items, 0x65000000)
        time = bytes.fromhex("65 00 00 00")
        first = bytes.fromhex("00 00 03") + b"".join(i.pack() for i in items[:3]) + time
        second = bytes.fromhex("00 00 01") + items[3].pack() + time
        self.assertEqual(parts, [first, second])

    def test_part_exactly_full(self) -> None:
        """Items of exactly MAX_REPLY_PART bytes in all still make one part."""
        items = [sized_item(MAX_REPLY_PART // 2, 1), sized_item(MAX_REPLY_PART // 2, 2)]
        self.assertEqual(len(pack_reply_parts(items, 7)), 1)
        items.append(sized_item(13, 3))
        self.assertEqual(len(pack_reply_parts(items, 7)), 2)

    def test_oversized_item_alone(self) -> None:
        """An item bigger than a part goes in a part of its own."""
        items = [sized_item(20, 1), sized_item(MAX_REPLY_PART + 100, 2), sized_item(20, 3)]
        parts = pack_reply_parts(items, 1)
        self.assertEqual([len(read_reply_part(p)[1]) for p in parts], [1, 1, 1])

    def test_oversized_first_item(self) -> None:
        """An oversized item at the start makes no empty part before it."""
        parts = pack_reply_parts([sized_item(MAX_REPLY_PART + 1, 1), sized_item(13, 2)], 1)
        self.assertEqual([len(read_reply_part(p)[1]) for p in parts], [1, 1])

    @given(st.lists(st.integers(13, 3000), max_size=12), u32s)
    def test_parts(self, sizes: list[int], last_modified: int) -> None:
        """For any items: every part has version 0 and the time; together the
        parts hold the items in order; no part's items pass MAX_REPLY_PART
        bytes unless it has one item, and each part but the last is full (its
        successor's first item would not have fit)."""
        items = [sized_item(size, n) for n, size in enumerate(sizes)]
        parts = [read_reply_part(p) for p in pack_reply_parts(items, last_modified)]
        self.assertEqual({(version, time) for version, _, time in parts}, {(0, last_modified)})
        self.assertEqual([i for _, part, _ in parts for i in part], [i.pack() for i in items])
        for n, (_, part, _) in enumerate(parts):
            size = sum(map(len, part))
            self.assertTrue(part or len(parts) == 1)
            self.assertTrue(size <= MAX_REPLY_PART or len(part) == 1)
            if n + 1 < len(parts):
                self.assertGreater(size + len(parts[n + 1][1][0]), MAX_REPLY_PART)


class NotModifiedTests(SynchronousTestCase):
    """13,0F: u32 last-change time, then u16 item count."""

    def test_known_value(self) -> None:
        """The FAMILIES.md example: time first, count second."""
        self.assertEqual(pack_not_modified(0x65000000, 4), NOT_MODIFIED)

    @given(u32s, u16s)
    def test_layout(self, last_modified: int, count: int) -> None:
        """Any time and count: six bytes, big-endian, time then count."""
        self.assertEqual(
            pack_not_modified(last_modified, count),
            last_modified.to_bytes(4, "big") + count.to_bytes(2, "big"),
        )
