# -*- test-case-name: tests.test_wire_tlv -*-
"""Tests for L{aimserver.wire.tlv}: TLVs and their three containers (OSCAR.md §4)."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.wire.errors import MalformedData
from aimserver.wire.reader import Reader
from aimserver.wire.tlv import Tlv, TlvList, _read_tlvs
from tests.strategies import (
    fuzz,
    tlv_block_bytes,
    tlv_lblock_bytes,
    tlv_list_bytes,
    tlv_lists,
    tlvs,
)

# 03,03 rights reply body (FAMILIES.md §Buddy): three u16 TLVs, a TLV list.
RIGHTS_REPLY = bytes.fromhex("00 01 00 02 00 64  00 02 00 02 00 64  00 04 00 02 00 64")
RIGHTS_REPLY_TLVS = TlvList((Tlv.u16(1, 100), Tlv.u16(2, 100), Tlv.u16(4, 100)))

# Departure attributes (FAMILIES.md 03,0C): a TLV block of one TLV 0x01 = 0.
DEPARTURE_BLOCK = bytes.fromhex("00 01  00 01 00 02 00 00")
DEPARTURE_TLVS = TlvList((Tlv.u16(1, 0),))

# The SNAC 0x8000 version prefix (OSCAR.md §3.1): an L-block with TLV 0x01 = u16 3.
VERSION_LBLOCK = bytes.fromhex("00 06  00 01 00 02 00 03")
VERSION_TLVS = TlvList((Tlv.u16(1, 3),))


def read_block(data: bytes) -> TlvList:
    return TlvList.read_block(Reader(data, "test block"))


def read_lblock(data: bytes) -> TlvList:
    return TlvList.read_lblock(Reader(data, "test block"))


class TlvTests(SynchronousTestCase):
    """A single TLV packs as ``u16 tag, u16 length, value``."""

    def test_known_values(self) -> None:
        """Each constructor gives the bytes of the OSCAR.md §8 example TLVs."""
        self.assertEqual(Tlv.u16(0x01, 0x0010).pack(), bytes.fromhex("00 01 00 02 00 10"))
        self.assertEqual(Tlv.u32(0x03, 0x65000000).pack(), bytes.fromhex("00 03 00 04 65 00 00 00"))
        self.assertEqual(Tlv.u8(0x14, 1).pack(), bytes.fromhex("00 14 00 01 01"))
        self.assertEqual(Tlv.empty(0x03).pack(), bytes.fromhex("00 03 00 00"))
        self.assertEqual(Tlv(0x06, b"\xde\xad").pack(), bytes.fromhex("00 06 00 02 de ad"))

    def test_too_long(self) -> None:
        """A value longer than a u16 length can say is refused with ValueError."""
        self.assertEqual(len(Tlv(1, b"x" * 0xFFFF).pack()), 0xFFFF + 4)
        self.assertRaises(ValueError, Tlv(1, b"x" * 0x10000).pack)

    @given(tlvs())
    def test_round_trip(self, tlv: Tlv) -> None:
        """A packed TLV unpacks to itself."""
        self.assertEqual(TlvList.unpack_list(tlv.pack()), TlvList((tlv,)))


class TlvListLookupTests(SynchronousTestCase):
    """Lookups on a TlvList: first occurrence wins, ``all`` keeps repeats."""

    tlvs = TlvList(
        (
            Tlv.u16(3, 7),
            Tlv(1, b"first"),
            Tlv.u8(2, 9),
            Tlv(1, b"second"),
            Tlv.u32(4, 0x80000001),
            Tlv.empty(5),
        )
    )

    def test_get_first_wins(self) -> None:
        """get() returns the first value of a repeated tag; None when absent."""
        self.assertEqual(self.tlvs.get(1), b"first")
        self.assertEqual(self.tlvs.get(5), b"")
        self.assertIsNone(self.tlvs.get(0x99))

    def test_has(self) -> None:
        """has() tells presence, including of an empty (boolean) TLV."""
        self.assertTrue(self.tlvs.has(5))
        self.assertFalse(self.tlvs.has(0x99))

    def test_all(self) -> None:
        """all() returns every value of a tag in wire order; [] when absent."""
        self.assertEqual(self.tlvs.all(1), [b"first", b"second"])
        self.assertEqual(self.tlvs.all(0x99), [])

    def test_typed_getters(self) -> None:
        """get_u8/u16/u32 decode big-endian integers; None when absent."""
        self.assertEqual(self.tlvs.get_u8(2), 9)
        self.assertEqual(self.tlvs.get_u16(3), 7)
        self.assertEqual(self.tlvs.get_u32(4), 0x80000001)
        for getter in (self.tlvs.get_u8, self.tlvs.get_u16, self.tlvs.get_u32):
            self.assertIsNone(getter(0x99))

    def test_typed_getters_wrong_length(self) -> None:
        """A value of the wrong length for u8/u16/u32 is MalformedData naming the tag."""
        for size, getter_name in [(1, "get_u8"), (2, "get_u16"), (4, "get_u32")]:
            for length in range(7):
                if length == size:
                    continue
                tlvs = TlvList((Tlv(0x1D, b"\x01" * length),))
                exc = self.assertRaises(MalformedData, getattr(tlvs, getter_name), 0x1D)
                self.assertIn("0x001d", str(exc))

    def test_typed_getter_first_wins(self) -> None:
        """Typed getters look at the first occurrence only."""
        tlvs = TlvList((Tlv.u16(1, 5), Tlv(1, b"not a u16")))
        self.assertEqual(tlvs.get_u16(1), 5)
        self.assertRaises(MalformedData, TlvList((Tlv(1, b"bad"), Tlv.u16(1, 5))).get_u16, 1)

    def test_iteration(self) -> None:
        """A TlvList iterates over its TLVs in order and knows its length."""
        self.assertEqual(list(RIGHTS_REPLY_TLVS), list(RIGHTS_REPLY_TLVS.tlvs))
        self.assertEqual(len(RIGHTS_REPLY_TLVS), 3)
        self.assertEqual(len(TlvList()), 0)

    def test_list_equals_tuple(self) -> None:
        """A TlvList built from a list equals (and hashes like) the same TLVs as
        a tuple, so hand-built values compare equal to decoded ones."""
        built = TlvList([Tlv.u16(1, 3)])
        self.assertEqual(built, VERSION_TLVS)
        self.assertEqual(hash(built), hash(VERSION_TLVS))
        self.assertEqual(TlvList.of(iter([Tlv.u16(1, 3)])), VERSION_TLVS)


class TlvContainerKnownValuesTests(SynchronousTestCase):
    """The three containers, both ways, on the protocol reference's examples."""

    def test_list(self) -> None:
        """A TLV list runs to the end of its data (03,03 rights reply)."""
        self.assertEqual(RIGHTS_REPLY_TLVS.pack_list(), RIGHTS_REPLY)
        self.assertEqual(TlvList.unpack_list(RIGHTS_REPLY), RIGHTS_REPLY_TLVS)
        self.assertEqual(TlvList.unpack_list(b""), TlvList())
        self.assertEqual(TlvList().pack_list(), b"")

    def test_block(self) -> None:
        """A TLV block is a u16 count then the TLVs (departure attributes)."""
        self.assertEqual(DEPARTURE_TLVS.pack_block(), DEPARTURE_BLOCK)
        self.assertEqual(read_block(DEPARTURE_BLOCK), DEPARTURE_TLVS)
        self.assertEqual(TlvList().pack_block(), b"\x00\x00")
        self.assertEqual(read_block(b"\x00\x00"), TlvList())

    def test_lblock(self) -> None:
        """A TLV L-block is a u16 byte length then the TLVs (SNAC version prefix)."""
        self.assertEqual(VERSION_TLVS.pack_lblock(), VERSION_LBLOCK)
        self.assertEqual(read_lblock(VERSION_LBLOCK), VERSION_TLVS)
        self.assertEqual(TlvList().pack_lblock(), b"\x00\x00")
        self.assertEqual(read_lblock(b"\x00\x00"), TlvList())

    def test_block_stops_after_count(self) -> None:
        """read_block consumes exactly ``count`` TLVs and leaves what follows."""
        reader = Reader(DEPARTURE_BLOCK + b"\x00\x07", "test")
        self.assertEqual(TlvList.read_block(reader), DEPARTURE_TLVS)
        self.assertEqual(reader.rest(), b"\x00\x07")

    def test_lblock_stops_after_length(self) -> None:
        """read_lblock consumes exactly its byte length and leaves what follows."""
        reader = Reader(VERSION_LBLOCK + b"body", "test")
        self.assertEqual(TlvList.read_lblock(reader), VERSION_TLVS)
        self.assertEqual(reader.rest(), b"body")

    def test_list_stops_at_window_end(self) -> None:
        """read_list reads to the end of the reader's window, not of the data."""
        reader = Reader(RIGHTS_REPLY, "test", 0, 6)
        self.assertEqual(TlvList.read_list(reader), TlvList((Tlv.u16(1, 100),)))

    def test_repeated_tags_kept(self) -> None:
        """Decoding keeps repeated tags in wire order (0D,09 exchange infos)."""
        data = bytes.fromhex("00 03 00 01 aa  00 03 00 01 bb")
        self.assertEqual(TlvList.unpack_list(data).all(3), [b"\xaa", b"\xbb"])

    def test_too_many_to_pack(self) -> None:
        """Containers whose prefix cannot describe them are refused with ValueError."""
        self.assertRaises(ValueError, TlvList((Tlv.empty(1),) * 0x10000).pack_block)
        self.assertRaises(ValueError, TlvList((Tlv(1, b"x" * 0xFFFC),) * 2).pack_lblock)
        self.assertEqual(len(TlvList((Tlv(1, b"x" * 0xFFFB),)).pack_lblock()), 0x10001)


class TlvMalformedTests(SynchronousTestCase):
    """Lengths and counts that leave their container are MalformedData."""

    def assert_prefixes_malformed(self, decode: Callable[[bytes], object], data: bytes) -> None:
        for cut in range(len(data)):
            try:
                decode(data[:cut])
            except MalformedData:
                continue
            self.fail(f"{cut}-byte prefix of {data.hex()} decoded")

    def test_tlv_longer_than_list(self) -> None:
        """A TLV whose length runs past the end of a list is malformed, naming the tag."""
        exc = self.assertRaises(MalformedData, TlvList.unpack_list, bytes.fromhex("00 01 00 05 aa"))
        self.assertIn("TLV 0x0001 value", str(exc))

    def test_tlv_longer_than_lblock(self) -> None:
        """A TLV that runs past its L-block is malformed even when the enclosing
        data has the bytes."""
        data = bytes.fromhex("00 05  00 01 00 02 00  03 ff")
        exc = self.assertRaises(MalformedData, read_lblock, data)
        self.assertIn("L-block", str(exc))

    def test_lblock_longer_than_data(self) -> None:
        """An L-block length past the end of the data is malformed."""
        self.assertRaises(MalformedData, read_lblock, bytes.fromhex("00 09 00 01 00 02 00 03"))

    def test_count_more_than_bytes(self) -> None:
        """A block count promising more TLVs than bytes remain is malformed, and
        is refused up front (each TLV takes at least 4 bytes), before any TLV is read."""
        data = bytes.fromhex("00 03  00 01 00 00  00 02 00 00")
        exc = self.assertRaises(MalformedData, read_block, data)
        self.assertIn("test block", str(exc))
        self.assertIn("promises 3 TLVs in 8 bytes", str(exc))
        exc = self.assertRaises(MalformedData, read_block, bytes.fromhex("ff ff"))
        self.assertIn("promises 65535 TLVs in 0 bytes", str(exc))

    def test_count_more_than_tlvs(self) -> None:
        """A count that fits the byte budget but not the actual TLVs is malformed."""
        data = bytes.fromhex("00 02  00 01 00 04 aa bb cc dd")
        self.assertRaises(MalformedData, read_block, data)

    def test_half_header(self) -> None:
        """Trailing bytes too short for a TLV header make a list malformed."""
        self.assertRaises(MalformedData, TlvList.unpack_list, RIGHTS_REPLY + b"\x00\x09")

    def test_truncated_block(self) -> None:
        """Every truncated prefix of a TLV block is malformed."""
        self.assert_prefixes_malformed(read_block, DEPARTURE_BLOCK)
        self.assert_prefixes_malformed(read_block, RIGHTS_REPLY_TLVS.pack_block())

    def test_truncated_lblock(self) -> None:
        """Every truncated prefix of a TLV L-block is malformed."""
        self.assert_prefixes_malformed(read_lblock, VERSION_LBLOCK)
        self.assert_prefixes_malformed(read_lblock, RIGHTS_REPLY_TLVS.pack_lblock())

    def test_truncated_list(self) -> None:
        """A TLV list has no prefix to say where it ends: cut between TLVs it is
        the shorter list, cut inside a TLV it is malformed."""
        boundaries = {0: 0, 6: 1, 12: 2, 18: 3}
        for cut in range(len(RIGHTS_REPLY) + 1):
            data = RIGHTS_REPLY[:cut]
            if cut in boundaries:
                expected = TlvList(RIGHTS_REPLY_TLVS.tlvs[: boundaries[cut]])
                self.assertEqual(TlvList.unpack_list(data), expected)
            else:
                self.assertRaises(MalformedData, TlvList.unpack_list, data)


class TlvPropertyTests(SynchronousTestCase):
    """Round trips and robustness on generated data."""

    @given(tlv_lists())
    def test_list_round_trip(self, tlvs: TlvList) -> None:
        """unpack_list(pack_list(x)) == x."""
        self.assertEqual(TlvList.unpack_list(tlvs.pack_list()), tlvs)

    @given(tlv_lists(), st.binary(max_size=8))
    def test_block_round_trip(self, tlvs: TlvList, tail: bytes) -> None:
        """read_block(pack_block(x)) == x and stops where the block ends."""
        reader = Reader(tlvs.pack_block() + tail, "test")
        self.assertEqual(TlvList.read_block(reader), tlvs)
        self.assertEqual(reader.rest(), tail)

    @given(tlv_lists(), st.binary(max_size=8))
    def test_lblock_round_trip(self, tlvs: TlvList, tail: bytes) -> None:
        """read_lblock(pack_lblock(x)) == x and stops where the L-block ends."""
        reader = Reader(tlvs.pack_lblock() + tail, "test")
        self.assertEqual(TlvList.read_lblock(reader), tlvs)
        self.assertEqual(reader.rest(), tail)

    @given(tlv_list_bytes())
    def test_list_bytes_round_trip(self, raw: list[bytes]) -> None:
        """pack_list(unpack_list(b)) == b for a valid list b, one TLV per encoded TLV."""
        data = b"".join(raw)
        tlvs = TlvList.unpack_list(data)
        self.assertEqual(len(tlvs), len(raw))
        self.assertEqual(tlvs.pack_list(), data)

    @given(tlv_block_bytes())
    def test_block_bytes_round_trip(self, data: bytes) -> None:
        """pack_block(read_block(b)) == b for a valid block b."""
        self.assertEqual(read_block(data).pack_block(), data)

    @given(tlv_lblock_bytes())
    def test_lblock_bytes_round_trip(self, data: bytes) -> None:
        """pack_lblock(read_lblock(b)) == b for a valid L-block b."""
        self.assertEqual(read_lblock(data).pack_lblock(), data)

    @given(fuzz(tlv_list_bytes().map(b"".join)))
    def test_list_any_bytes(self, data: bytes) -> None:
        """Any bytes decode as a TLV list that packs back to them, or are MalformedData."""
        try:
            tlvs = TlvList.unpack_list(data)
        except MalformedData:
            return
        self.assertEqual(tlvs.pack_list(), data)

    @given(fuzz(tlv_block_bytes()))
    def test_block_any_bytes(self, data: bytes) -> None:
        """Any bytes start with a TLV block that packs back to what it consumed,
        or are MalformedData."""
        reader = Reader(data, "fuzz")
        try:
            tlvs = TlvList.read_block(reader)
        except MalformedData:
            return
        self.assertEqual(tlvs.pack_block(), data[: reader.offset])

    @given(fuzz(tlv_lblock_bytes()))
    def test_lblock_any_bytes(self, data: bytes) -> None:
        """Any bytes start with a TLV L-block that packs back to what it consumed,
        or are MalformedData."""
        reader = Reader(data, "fuzz")
        try:
            tlvs = TlvList.read_lblock(reader)
        except MalformedData:
            return
        self.assertEqual(tlvs.pack_lblock(), data[: reader.offset])

    @given(st.binary(max_size=64))
    def test_typed_getters_any_value(self, value: bytes) -> None:
        """Typed getters on any value return an int in range or raise MalformedData."""
        tlvs = TlvList((Tlv(1, value),))
        for getter, bits in [(tlvs.get_u8, 8), (tlvs.get_u16, 16), (tlvs.get_u32, 32)]:
            try:
                number = getter(1)
            except MalformedData:
                continue
            self.assertTrue(0 <= number < 2**bits)


def read_field_by_field(data: bytes, count: int | None) -> tuple[Tlv, ...] | str:
    """The reference decoder: one bounds-checked Reader call per field."""
    reader = Reader(data, "TLV list")
    tlvs = []
    try:
        while (not reader.at_end()) if count is None else len(tlvs) < count:
            tag = reader.u16("TLV tag")
            length = reader.u16("TLV length")
            tlvs.append(Tlv(tag, reader.take(length, f"TLV 0x{tag:04x} value")))
    except MalformedData as e:
        return str(e)
    return tuple(tlvs)


class TlvFastPathTests(SynchronousTestCase):
    @given(st.binary(max_size=64), st.one_of(st.none(), st.integers(0, 8)))
    def test_fast_reader_agrees_with_field_by_field(self, data: bytes, count: int | None) -> None:
        """The one-struct-call-per-TLV decoder gives the same TLVs, the same
        end offset and, on bad input, the same error as reading each field."""
        expected = read_field_by_field(data, count)
        reader = Reader(data, "TLV list")
        try:
            got: tuple[Tlv, ...] | str = _read_tlvs(reader, count)
        except MalformedData as e:
            got = str(e)
        self.assertEqual(got, expected)
        if not isinstance(got, str):
            self.assertEqual(reader.offset, sum(4 + len(t.value) for t in got))
