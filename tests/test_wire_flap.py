# -*- test-case-name: tests.test_wire_flap -*-
"""Tests for L{aimserver.wire.flap}: FLAP frames and the channel-1 payload (OSCAR.md §2)."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.wire.errors import MalformedData
from aimserver.wire.flap import (
    FLAP_HEADER_SIZE,
    FLAP_VERSION,
    Channel,
    FlapFrame,
    SignonPayload,
    pack_header,
    parse_header,
)
from aimserver.wire.tlv import Tlv, TlvList
from tests.strategies import flap_frame_bytes, flap_frames, fuzz, signon_payloads, tlv_list_bytes

# OSCAR.md §2.4.
SERVER_HELLO = bytes.fromhex("2A 01 1F 40 00 04 00 00 00 01")
CLIENT_HELLO = bytes.fromhex("2A 01 01 00 00 04 00 00 00 01")

# OSCAR.md §8: a whole channel-2 frame carrying 01,0F.
USER_INFO_UPDATE_PAYLOAD = bytes.fromhex(
    """
    00 01 00 0F 00 00 00 00 00 05
    05 41 6C 69 63 65  00 00  00 05
    00 01 00 02 00 10
    00 06 00 04 00 00 00 00
    00 03 00 04 65 00 00 00
    00 05 00 04 60 00 00 00
    00 0F 00 04 00 00 00 1E
    """
)
USER_INFO_UPDATE = bytes.fromhex("2A 02 30 03 00 3A") + USER_INFO_UPDATE_PAYLOAD

# A BOS sign-on: version 1 then TLV 0x06 (the cookie).
COOKIE_SIGNON = bytes.fromhex("00 00 00 01  00 06 00 04 de ad be ef")


def assert_prefixes_malformed(
    case: SynchronousTestCase, decode: Callable[[bytes], object], data: bytes
) -> None:
    for cut in range(len(data)):
        try:
            decode(data[:cut])
        except MalformedData:
            continue
        case.fail(f"{cut}-byte prefix of {data.hex()} decoded")


class FlapFrameKnownValuesTests(SynchronousTestCase):
    """Frames from the protocol reference, both ways."""

    def test_server_hello(self) -> None:
        """The server hello is channel 1, sequence 0x1F40, payload version 1."""
        frame = FlapFrame(Channel.SIGNON, 0x1F40, b"\x00\x00\x00\x01")
        self.assertEqual(frame.pack(), SERVER_HELLO)
        self.assertEqual(FlapFrame.unpack(SERVER_HELLO), frame)

    def test_client_hello(self) -> None:
        """A BUCP client's hello carries version 1 and no TLVs."""
        frame = FlapFrame.unpack(CLIENT_HELLO)
        self.assertEqual(frame, FlapFrame(1, 0x0100, b"\x00\x00\x00\x01"))
        self.assertEqual(SignonPayload.unpack(frame.payload), SignonPayload(FLAP_VERSION))

    def test_user_info_update(self) -> None:
        """The 01,0F example frame is channel 2, sequence 0x3003, 58 payload bytes."""
        frame = FlapFrame(Channel.DATA, 0x3003, USER_INFO_UPDATE_PAYLOAD)
        self.assertEqual(len(USER_INFO_UPDATE_PAYLOAD), 0x3A)
        self.assertEqual(frame.pack(), USER_INFO_UPDATE)
        self.assertEqual(FlapFrame.unpack(USER_INFO_UPDATE), frame)

    def test_keep_alive(self) -> None:
        """A keep-alive is a header with an empty payload."""
        self.assertEqual(
            FlapFrame(Channel.KEEP_ALIVE, 7).pack(), bytes.fromhex("2A 05 00 07 00 00")
        )
        self.assertEqual(FlapFrame.unpack(bytes.fromhex("2A 05 00 07 00 00")), FlapFrame(5, 7))

    def test_channel_numbers(self) -> None:
        """Channels carry the numbers of OSCAR.md §2.1."""
        self.assertEqual(
            [(c.name, c.value) for c in Channel],
            [("SIGNON", 1), ("DATA", 2), ("ERROR", 3), ("SIGNOFF", 4), ("KEEP_ALIVE", 5)],
        )

    def test_sequence_wraps(self) -> None:
        """pack writes the sequence number modulo 2**16, so a counter may overflow."""
        self.assertEqual(FlapFrame(2, 0x10005).pack()[2:4], b"\x00\x05")

    def test_payload_too_long(self) -> None:
        """A payload the length field cannot describe is refused with ValueError."""
        self.assertEqual(len(FlapFrame(2, 0, b"x" * 0xFFFF).pack()), 0xFFFF + FLAP_HEADER_SIZE)
        self.assertRaises(ValueError, FlapFrame(2, 0, b"x" * 0x10000).pack)


class FlapHeaderTests(SynchronousTestCase):
    """The header helpers a stream protocol uses before it has the whole frame."""

    def test_pack_header(self) -> None:
        """pack_header writes marker, channel, sequence and length."""
        self.assertEqual(pack_header(1, 0x1F40, 4), SERVER_HELLO[:6])

    def test_parse_header(self) -> None:
        """parse_header reads channel, sequence and length at an offset."""
        self.assertEqual(parse_header(SERVER_HELLO), (1, 0x1F40, 4))
        self.assertEqual(parse_header(b"xyz" + USER_INFO_UPDATE, 3), (2, 0x3003, 0x3A))

    def test_bad_marker(self) -> None:
        """A header that does not start with 0x2A is malformed."""
        exc = self.assertRaises(MalformedData, parse_header, b"\x2b" + SERVER_HELLO[1:])
        self.assertIn("0x2b", str(exc))


class FlapFrameMalformedTests(SynchronousTestCase):
    """FlapFrame.unpack takes exactly one whole frame."""

    def test_truncated(self) -> None:
        """Every truncated prefix of a frame is malformed."""
        assert_prefixes_malformed(self, FlapFrame.unpack, SERVER_HELLO)
        assert_prefixes_malformed(self, FlapFrame.unpack, USER_INFO_UPDATE)

    def test_extra_bytes(self) -> None:
        """Bytes after the payload the length announces are malformed."""
        self.assertRaises(MalformedData, FlapFrame.unpack, SERVER_HELLO + b"\x2a")

    def test_bad_marker(self) -> None:
        """A frame not starting with 0x2A is malformed."""
        self.assertRaises(MalformedData, FlapFrame.unpack, b"\x00" + SERVER_HELLO[1:])


class SignonPayloadTests(SynchronousTestCase):
    """The channel-1 payload: u32 version then a TLV list."""

    def test_known_values(self) -> None:
        """A BOS sign-on is version 1 and the cookie TLV."""
        signon = SignonPayload(1, TlvList((Tlv(6, b"\xde\xad\xbe\xef"),)))
        self.assertEqual(signon.pack(), COOKIE_SIGNON)
        self.assertEqual(SignonPayload.unpack(COOKIE_SIGNON), signon)
        self.assertEqual(SignonPayload().pack(), b"\x00\x00\x00\x01")

    def test_truncated(self) -> None:
        """Cut inside the version or inside a TLV the payload is malformed; cut
        right after the version it is a sign-on without TLVs."""
        for cut in range(len(COOKIE_SIGNON)):
            if cut == 4:
                self.assertEqual(SignonPayload.unpack(COOKIE_SIGNON[:cut]), SignonPayload())
            else:
                self.assertRaises(MalformedData, SignonPayload.unpack, COOKIE_SIGNON[:cut])

    def test_tlv_past_end(self) -> None:
        """A TLV running past the end of the frame is malformed, naming the structure."""
        exc = self.assertRaises(MalformedData, SignonPayload.unpack, COOKIE_SIGNON[:-1])
        self.assertIn("FLAP sign-on", str(exc))


class FlapPropertyTests(SynchronousTestCase):
    """Round trips and robustness on generated data."""

    @given(flap_frames())
    def test_frame_round_trip(self, frame: FlapFrame) -> None:
        """FlapFrame.unpack(pack(x)) == x."""
        self.assertEqual(FlapFrame.unpack(frame.pack()), frame)

    @given(flap_frame_bytes())
    def test_frame_bytes_round_trip(self, data: bytes) -> None:
        """pack(FlapFrame.unpack(b)) == b for a valid frame b."""
        self.assertEqual(FlapFrame.unpack(data).pack(), data)

    @given(fuzz(flap_frame_bytes()))
    def test_frame_any_bytes(self, data: bytes) -> None:
        """Any bytes are one frame that packs back to them, or MalformedData."""
        try:
            frame = FlapFrame.unpack(data)
        except MalformedData:
            return
        self.assertEqual(frame.pack(), data)

    @given(signon_payloads())
    def test_signon_round_trip(self, signon: SignonPayload) -> None:
        """SignonPayload.unpack(pack(x)) == x."""
        self.assertEqual(SignonPayload.unpack(signon.pack()), signon)

    @given(st.binary(min_size=4, max_size=4), tlv_list_bytes())
    def test_signon_bytes_round_trip(self, version: bytes, tlvs: list[bytes]) -> None:
        """pack(SignonPayload.unpack(b)) == b for a valid payload b."""
        data = version + b"".join(tlvs)
        self.assertEqual(SignonPayload.unpack(data).pack(), data)

    @given(fuzz(signon_payloads().map(SignonPayload.pack)))
    def test_signon_any_bytes(self, data: bytes) -> None:
        """Any bytes are a sign-on payload that packs back to them, or MalformedData."""
        try:
            signon = SignonPayload.unpack(data)
        except MalformedData:
            return
        self.assertEqual(signon.pack(), data)
