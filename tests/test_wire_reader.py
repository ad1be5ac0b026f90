# -*- test-case-name: tests.test_wire_reader -*-
"""Tests for L{aimserver.wire.reader}: the bounds-checked cursor under every decoder."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.wire.errors import MalformedData
from aimserver.wire.reader import Reader, string08, string16, u16, u32


class ReaderKnownValuesTests(SynchronousTestCase):
    """Reads of known bytes give known values, big-endian, and move the cursor."""

    def test_integers(self) -> None:
        """u8, u16 and u32 read big-endian integers one after the other."""
        reader = Reader(bytes.fromhex("2A 1F 40 00 00 00 01"), "test")
        self.assertEqual(reader.u8(), 0x2A)
        self.assertEqual(reader.u16(), 0x1F40)
        self.assertEqual(reader.u32(), 1)
        self.assertTrue(reader.at_end())

    def test_take_and_rest(self) -> None:
        """take(n) returns the next n bytes; rest() the remainder, leaving nothing."""
        reader = Reader(b"12345678\x00\x01tail", "test")
        self.assertEqual(reader.take(8), b"12345678")
        self.assertEqual(reader.remaining(), 6)
        self.assertEqual(reader.u16(), 1)
        self.assertEqual(reader.rest(), b"tail")
        self.assertEqual(reader.remaining(), 0)
        self.assertTrue(reader.at_end())
        self.assertEqual(reader.rest(), b"")

    def test_take_zero(self) -> None:
        """take(0) succeeds even at the end: an empty TLV value is legal."""
        reader = Reader(b"", "test")
        self.assertEqual(reader.take(0), b"")

    def test_strings(self) -> None:
        """string08 and string16 read a length then that many bytes (the 03,04
        example's screen names are string08s)."""
        reader = Reader(bytes.fromhex("03 42 6F 62 05 63 61 72 6F 6C 00 02 68 69 00"), "test")
        self.assertEqual(reader.string08(), b"Bob")
        self.assertEqual(reader.string08(), b"carol")
        self.assertEqual(reader.string16(), b"hi")
        self.assertEqual(reader.remaining(), 1)

    def test_window(self) -> None:
        """A reader over ``offset..end`` starts at offset and stops at end, even
        when the underlying data goes on."""
        reader = Reader(b"abcdefgh", "test", 2, 5)
        self.assertEqual(reader.remaining(), 3)
        self.assertEqual(reader.rest(), b"cde")
        self.assertRaises(MalformedData, reader.u8)

    def test_window_outside_data(self) -> None:
        """A window reaching past the data, or inverted, is a programming error
        (ValueError), not malformed input."""
        for offset, end in [(0, 9), (5, 4), (-1, 3), (9, 9)]:
            exc = self.assertRaises(ValueError, Reader, b"abcdefgh", "test", offset, end)
            self.assertNotIsInstance(exc, MalformedData)

    def test_negative_take(self) -> None:
        """take() of a negative count is a programming error and moves nothing."""
        reader = Reader(b"abc", "test", 2)
        exc = self.assertRaises(ValueError, reader.take, -1)
        self.assertNotIsInstance(exc, MalformedData)
        self.assertEqual(reader.offset, 2)


class ReaderPastEndTests(SynchronousTestCase):
    """Every read past the end raises MalformedData naming the structure and field."""

    def assert_names(self, exc: MalformedData, *words: str) -> None:
        for word in words:
            self.assertIn(word, str(exc))

    def test_integers_past_end(self) -> None:
        """u8, u16 and u32 past the end name the structure and the field."""
        for method, size in [("u8", 1), ("u16", 2), ("u32", 4)]:
            for available in range(size):
                reader = Reader(b"\x00" * available, "FLAP header")
                exc = self.assertRaises(MalformedData, getattr(reader, method), "sequence")
                self.assert_names(exc, "FLAP header", "sequence")
                self.assertEqual(reader.offset, 0)

    def test_default_field_names(self) -> None:
        """Without a field name the message still names the structure and the datatype."""
        for method in ("u8", "u16", "u32", "string08", "string16"):
            exc = self.assertRaises(MalformedData, getattr(Reader(b"", "widget"), method))
            self.assert_names(exc, "widget", method)

    def test_take_past_end(self) -> None:
        """take() past the end names the field and does not move the cursor."""
        reader = Reader(b"1234567", "ICBM message", 1)
        exc = self.assertRaises(MalformedData, reader.take, 8, "cookie")
        self.assert_names(exc, "ICBM message", "cookie", "8")
        self.assertEqual(reader.offset, 1)

    def test_string08_past_end(self) -> None:
        """A string08 whose length byte promises more than remains names the field."""
        exc = self.assertRaises(MalformedData, Reader(b"\x05Bob", "buddy list").string08, "name")
        self.assert_names(exc, "buddy list", "name")
        exc = self.assertRaises(MalformedData, Reader(b"", "buddy list").string08, "name")
        self.assert_names(exc, "buddy list", "name length")

    def test_string16_past_end(self) -> None:
        """A string16 whose length promises more than remains names the field."""
        exc = self.assertRaises(MalformedData, Reader(b"\x00\x05ab", "item").string16, "item name")
        self.assert_names(exc, "item", "item name")
        exc = self.assertRaises(MalformedData, Reader(b"\x00", "item").string16, "item name")
        self.assert_names(exc, "item", "item name length")

    def test_window_end_is_the_end(self) -> None:
        """A read that would cross the window's end is malformed even though the
        bytes exist in the underlying data (a TLV may not leave its container)."""
        reader = Reader(b"\x00\x01\x00\x02", "SNAC body", 0, 3)
        reader.u16()
        self.assertRaises(MalformedData, reader.u16, "tag")

    @given(
        st.binary(max_size=12),
        st.lists(
            st.sampled_from(["u8", "u16", "u32", "string08", "string16", "take3", "rest"]),
            max_size=8,
        ),
    )
    def test_any_reads(self, data: bytes, ops: list[str]) -> None:
        """Any sequence of reads over any bytes returns values or raises
        MalformedData; the cursor never passes the end."""
        reader = Reader(data, "fuzz")
        for op in ops:
            try:
                if op == "take3":
                    reader.take(3)
                else:
                    getattr(reader, op)()
            except MalformedData as e:
                self.assertIn("fuzz", str(e))
            self.assertLessEqual(reader.offset, reader.end)
            self.assertGreaterEqual(reader.remaining(), 0)


class EncoderTests(SynchronousTestCase):
    """The module-level encoders write what the reader reads."""

    def test_known_values(self) -> None:
        """u16, u32, string08 and string16 give known bytes."""
        self.assertEqual(u16(0x1F40), b"\x1f\x40")
        self.assertEqual(u32(0x80000003), b"\x80\x00\x00\x03")
        self.assertEqual(string08(b"Bob"), b"\x03Bob")
        self.assertEqual(string16(b"hi"), b"\x00\x02hi")
        self.assertEqual(string08(b""), b"\x00")

    def test_too_long(self) -> None:
        """A string that its length prefix cannot describe is refused with ValueError."""
        self.assertEqual(len(string08(b"x" * 255)), 256)
        self.assertRaises(ValueError, string08, b"x" * 256)
        self.assertEqual(len(string16(b"x" * 0xFFFF)), 0x10001)
        self.assertRaises(ValueError, string16, b"x" * 0x10000)

    @given(st.binary(max_size=255), st.binary(max_size=300), st.binary(max_size=4))
    def test_strings_round_trip(self, short: bytes, long: bytes, tail: bytes) -> None:
        """string08 and string16 read back what was written, leaving what follows."""
        reader = Reader(string08(short) + string16(long) + tail, "test")
        self.assertEqual(reader.string08(), short)
        self.assertEqual(reader.string16(), long)
        self.assertEqual(reader.rest(), tail)

    @given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF))
    def test_integers_round_trip(self, small: int, big: int) -> None:
        """u16 and u32 read back what was written."""
        reader = Reader(u16(small) + u32(big), "test")
        self.assertEqual((reader.u16(), reader.u32()), (small, big))


class ExpectEndTests(SynchronousTestCase):
    def test_stray_bytes_after_a_structure_are_malformed(self) -> None:
        reader = Reader(b"\x00\x01\xff", "thing")
        reader.u16()
        error = self.assertRaises(MalformedData, reader.expect_end)
        self.assertIn("thing: 1 stray bytes", str(error))
        reader.u8()
        reader.expect_end()
