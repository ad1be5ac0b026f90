# -*- test-case-name: tests.test_wire_snac -*-
"""Tests for L{aimserver.wire.snac}: the SNAC header and version prefix (OSCAR.md §3)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.wire.codes import ICBM, Buddy, FoodGroup, SnacErrorCode
from aimserver.wire.errors import MalformedData
from aimserver.wire.flap import FlapFrame
from aimserver.wire.reader import Reader
from aimserver.wire.snac import (
    FLAG_MORE_REPLIES,
    FLAG_VERSION_PREFIX,
    SERVER_REQUEST_BIT,
    SNAC_HEADER_SIZE,
    SnacHeader,
    pack_snac,
)
from aimserver.wire.tlv import Tlv, TlvList
from tests.strategies import fuzz, snac_headers, snac_payloads

# FAMILIES.md 04,0C: host ack echoing cookie "12345678", channel 1, recipient "Bob".
HOST_ACK = bytes.fromhex(
    "2A 02 30 0A 00 18  00 04 00 0C 00 00 00 00 00 10  31 32 33 34 35 36 37 38  00 01  03 42 6F 62"
)
# FAMILIES.md 04,0C: the "not logged on" error instead of the ack.
HOST_ACK_ERROR = bytes.fromhex("2A 02 30 0A 00 0C 00 04 00 01 00 00 00 00 00 10 00 04")
# FAMILIES.md 03,0B: a server-initiated arrival (request ID with the high bit).
ARRIVAL_HEADER = bytes.fromhex("00 03 00 0B 00 00 80 00 00 03")

# OSCAR.md §3.1: flag 0x8000 and the prefix carrying family version 3.
VERSION_PREFIX = bytes.fromhex("00 06 00 01 00 02 00 03")
PREFIXED_SNAC = bytes.fromhex("00 01 00 0A 80 00 00 00 00 02") + VERSION_PREFIX + b"body"


class SnacKnownValuesTests(SynchronousTestCase):
    """SNACs from the protocol reference, both ways."""

    def test_host_ack(self) -> None:
        """The 04,0C example splits into its header and a body of cookie,
        channel and string08 recipient."""
        header, body = SnacHeader.unpack(FlapFrame.unpack(HOST_ACK).payload)
        self.assertEqual(header, SnacHeader(FoodGroup.ICBM, ICBM.HOST_ACK, 0, 0x10))
        reader = Reader(body, "host ack")
        self.assertEqual(reader.take(8, "cookie"), b"12345678")
        self.assertEqual(reader.u16("channel"), 1)
        self.assertEqual(reader.string08("recipient"), b"Bob")
        self.assertTrue(reader.at_end())

    def test_host_ack_pack(self) -> None:
        """pack_snac and the header build the 04,0C example payload byte for byte."""
        body = b"12345678" + b"\x00\x01" + b"\x03Bob"
        payload = pack_snac(FoodGroup.ICBM, ICBM.HOST_ACK, body, request_id=0x10)
        self.assertEqual(FlapFrame(2, 0x300A, payload).pack(), HOST_ACK)
        self.assertEqual(SnacHeader(4, 0x0C, 0, 0x10).pack() + body, payload)

    def test_error_reply(self) -> None:
        """The 04,01 example is an error SNAC whose body is the u16 code."""
        header, body = SnacHeader.unpack(FlapFrame.unpack(HOST_ACK_ERROR).payload)
        self.assertEqual(header, SnacHeader(4, ICBM.ERROR, 0, 0x10))
        self.assertEqual(Reader(body, "error").u16("code"), SnacErrorCode.NOT_LOGGED_ON)

    def test_server_initiated(self) -> None:
        """A push carries the server request bit in its request ID (03,0B example)."""
        header = SnacHeader(FoodGroup.BUDDY, Buddy.ARRIVED, 0, SERVER_REQUEST_BIT | 3)
        self.assertEqual(header.pack(), ARRIVAL_HEADER)
        self.assertEqual(SnacHeader.unpack(ARRIVAL_HEADER), (header, b""))

    def test_version_prefix_skipped(self) -> None:
        """With flag 0x8000 the body starts after the length-prefixed prefix."""
        header, body = SnacHeader.unpack(PREFIXED_SNAC)
        self.assertEqual(header, SnacHeader(1, 0x0A, FLAG_VERSION_PREFIX, 2))
        self.assertEqual(body, b"body")

    def test_version_prefix_is_an_lblock(self) -> None:
        """The prefix is a TLV L-block holding TLV 0x01 = the family version."""
        reader = Reader(PREFIXED_SNAC, "SNAC", SNAC_HEADER_SIZE)
        self.assertEqual(TlvList.read_lblock(reader), TlvList((Tlv.u16(1, 3),)))
        self.assertEqual(reader.rest(), b"body")

    def test_empty_version_prefix(self) -> None:
        """A zero-length prefix is skipped as two bytes."""
        payload = SnacHeader(0x13, 0x0E, FLAG_VERSION_PREFIX, 9).pack() + b"\x00\x00\x00\x01"
        self.assertEqual(SnacHeader.unpack(payload)[1], b"\x00\x01")

    def test_more_replies_flag(self) -> None:
        """Flag 0x0001 does not touch the body."""
        payload = SnacHeader(0x13, 0x06, FLAG_MORE_REPLIES, 4).pack() + b"\x00\x02\x00\x00"
        self.assertEqual(
            SnacHeader.unpack(payload),
            (SnacHeader(0x13, 0x06, FLAG_MORE_REPLIES, 4), b"\x00\x02\x00\x00"),
        )

    def test_defaults(self) -> None:
        """Flags and request ID default to 0, and pack_snac never sets 0x8000."""
        self.assertEqual(SnacHeader(1, 2).pack(), bytes.fromhex("00 01 00 02 00 00 00 00 00 00"))
        self.assertEqual(pack_snac(1, 2, b"x"), SnacHeader(1, 2).pack() + b"x")


class SnacMalformedTests(SynchronousTestCase):
    """Short headers and prefixes are MalformedData."""

    def test_truncated_header(self) -> None:
        """Every prefix shorter than the 10-byte header is malformed."""
        for cut in range(SNAC_HEADER_SIZE):
            self.assertRaises(MalformedData, SnacHeader.unpack, ARRIVAL_HEADER[:cut])

    def test_truncated_version_prefix(self) -> None:
        """With flag 0x8000, every prefix cut before the end of the version prefix
        is malformed; after it the body is simply shorter."""
        end_of_prefix = SNAC_HEADER_SIZE + len(VERSION_PREFIX)
        for cut in range(end_of_prefix):
            self.assertRaises(MalformedData, SnacHeader.unpack, PREFIXED_SNAC[:cut])
        for cut in range(end_of_prefix, len(PREFIXED_SNAC) + 1):
            self.assertEqual(
                SnacHeader.unpack(PREFIXED_SNAC[:cut])[1], PREFIXED_SNAC[end_of_prefix:cut]
            )

    def test_flag_without_prefix(self) -> None:
        """Flag 0x8000 with nothing after the header is malformed, naming the prefix."""
        payload = SnacHeader(0x13, 0x0E, FLAG_VERSION_PREFIX, 1).pack()
        exc = self.assertRaises(MalformedData, SnacHeader.unpack, payload)
        self.assertIn("SNAC version prefix", str(exc))

    def test_prefix_longer_than_payload(self) -> None:
        """A prefix length past the end of the payload is malformed."""
        payload = SnacHeader(1, 5, FLAG_VERSION_PREFIX, 1).pack() + b"\x00\x08\x00\x01"
        self.assertRaises(MalformedData, SnacHeader.unpack, payload)


class SnacPropertyTests(SynchronousTestCase):
    """Round trips and robustness on generated data."""

    @given(snac_headers(flags=st.integers(0, 0x7FFF)), st.binary(max_size=32))
    def test_round_trip(self, header: SnacHeader, body: bytes) -> None:
        """Without flag 0x8000, unpack(pack(h) + body) == (h, body)."""
        self.assertEqual(SnacHeader.unpack(header.pack() + body), (header, body))

    @given(snac_payloads())
    def test_payload_round_trip(self, case: tuple[bytes, SnacHeader, bytes]) -> None:
        """Any header, with a version prefix when flagged, gives back header and body."""
        payload, header, body = case
        self.assertEqual(SnacHeader.unpack(payload), (header, body))

    @given(st.binary(min_size=10, max_size=32).filter(lambda b: not b[4] & 0x80))
    def test_bytes_round_trip(self, payload: bytes) -> None:
        """pack(h) + body == b for a valid payload b without flag 0x8000."""
        header, body = SnacHeader.unpack(payload)
        self.assertEqual(header.pack() + body, payload)

    @given(fuzz(snac_payloads().map(lambda case: case[0])))
    def test_any_bytes(self, payload: bytes) -> None:
        """Any bytes give a header and a body that is a suffix of them, or MalformedData."""
        try:
            header, body = SnacHeader.unpack(payload)
        except MalformedData:
            return
        self.assertEqual(payload[:SNAC_HEADER_SIZE], header.pack())
        self.assertTrue(payload.endswith(body))
