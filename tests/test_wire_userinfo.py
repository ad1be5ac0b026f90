# -*- test-case-name: tests.test_wire_userinfo -*-
"""Tests for L{aimserver.wire.userinfo}: the user-info block (OSCAR.md §7)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.wire.codes import Buddy, FoodGroup, OService
from aimserver.wire.errors import MalformedData
from aimserver.wire.flap import FlapFrame
from aimserver.wire.reader import Reader
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import (
    CLASS_FREE,
    TAG_MEMBER_SINCE,
    TAG_SESSION_LENGTH,
    TAG_SIGNON_TIME,
    TAG_STATUS,
    TAG_USER_CLASS,
    UserInfo,
)
from tests.strategies import fuzz, user_info_bytes, user_infos

# OSCAR.md §8: the 01,0F example frame.
SELF_INFO_FRAME = bytes.fromhex(
    """
    2A 02 30 03 00 3A
    00 01 00 0F 00 00 00 00 00 05
    05 41 6C 69 63 65  00 00  00 05
    00 01 00 02 00 10
    00 06 00 04 00 00 00 00
    00 03 00 04 65 00 00 00
    00 05 00 04 60 00 00 00
    00 0F 00 04 00 00 00 1E
    """
)
ALICE = UserInfo(
    "Alice",
    0,
    TlvList(
        (
            Tlv.u16(TAG_USER_CLASS, CLASS_FREE),
            Tlv.u32(TAG_STATUS, 0),
            Tlv.u32(TAG_SIGNON_TIME, 0x65000000),
            Tlv.u32(TAG_MEMBER_SINCE, 0x60000000),
            Tlv.u32(TAG_SESSION_LENGTH, 30),
        )
    ),
)

# FAMILIES.md 03,0B: Bob arrives with class, sign-on time and status.
ARRIVAL_FRAME = bytes.fromhex(
    """
    2A 02 30 08 00 28  00 03 00 0B 00 00 80 00 00 03
    03 42 6F 62  00 00  00 03  00 01 00 02 00 10  00 03 00 04 65 00 01 00  00 06 00 04 00 00 00 00
    """
)
BOB_ARRIVING = UserInfo(
    "Bob",
    0,
    TlvList((Tlv.u16(1, CLASS_FREE), Tlv.u32(3, 0x65000100), Tlv.u32(6, 0))),
)

# FAMILIES.md 03,0C: a departure block with count 1 and TLV 0x01 = 0.
DEPARTURE_FRAME = bytes.fromhex(
    "2A 02 30 09 00 18  00 03 00 0C 00 00 80 00 00 04  03 42 6F 62  00 00  00 01  00 01 00 02 00 00"
)
DEPARTURE = bytes.fromhex("03 42 6F 62  00 00  00 01  00 01 00 02 00 00")
BOB_DEPARTING = UserInfo("Bob", 0, TlvList((Tlv.u16(1, 0),)))

# FAMILIES.md 04,07: an IM whose body holds the sender's block between the
# channel and the message TLVs.
IM_FRAME = bytes.fromhex(
    """
    2A 02 40 00 00 4A  00 04 00 07 00 00 80 00 00 10
    31 32 33 34 35 36 37 38  00 01
    05 41 6C 69 63 65  00 00  00 03
       00 01 00 02 00 10  00 03 00 04 65 00 00 00  00 06 00 04 00 00 00 00
    00 02 00 12 05 01 00 04 01 01 01 02 01 01 00 06 00 00 00 00 68 69
    """
)


def snac_body(frame: bytes) -> tuple[SnacHeader, bytes]:
    return SnacHeader.unpack(FlapFrame.unpack(frame).payload)


class UserInfoKnownValuesTests(SynchronousTestCase):
    """User-info blocks from the protocol reference, both ways."""

    def test_self_info(self) -> None:
        """The 01,0F example body is Alice's block with five attributes."""
        header, body = snac_body(SELF_INFO_FRAME)
        self.assertEqual(
            (header.family, header.subtype), (FoodGroup.OSERVICE, OService.USER_INFO_UPDATE)
        )
        self.assertEqual(UserInfo.unpack(body), ALICE)
        self.assertEqual(ALICE.pack(), body)

    def test_self_info_attributes(self) -> None:
        """The decoded attributes read back as typed values."""
        tlvs = UserInfo.unpack(snac_body(SELF_INFO_FRAME)[1]).tlvs
        self.assertEqual(tlvs.get_u16(TAG_USER_CLASS), CLASS_FREE)
        self.assertEqual(tlvs.get_u32(TAG_SESSION_LENGTH), 30)
        self.assertEqual(tlvs.get_u32(TAG_SIGNON_TIME), 0x65000000)

    def test_arrival(self) -> None:
        """The 03,0B example body is Bob's block with three attributes."""
        header, body = snac_body(ARRIVAL_FRAME)
        self.assertEqual((header.family, header.subtype), (FoodGroup.BUDDY, Buddy.ARRIVED))
        self.assertEqual(UserInfo.unpack(body), BOB_ARRIVING)
        self.assertEqual(BOB_ARRIVING.pack(), body)

    def test_departure(self) -> None:
        """A departure block has warning 0 and one attribute, TLV 0x01 = 0."""
        header, body = snac_body(DEPARTURE_FRAME)
        self.assertEqual((header.family, header.subtype), (FoodGroup.BUDDY, Buddy.DEPARTED))
        self.assertEqual(body, DEPARTURE)
        self.assertEqual(UserInfo.unpack(DEPARTURE), BOB_DEPARTING)
        self.assertEqual(BOB_DEPARTING.pack(), DEPARTURE)

    def test_departure_without_attributes(self) -> None:
        """With no attributes the block still carries the count, 0."""
        self.assertEqual(UserInfo("Bob").pack(), bytes.fromhex("03 42 6F 62 00 00 00 00"))
        self.assertEqual(UserInfo.unpack(bytes.fromhex("03 42 6F 62 00 00 00 00")), UserInfo("Bob"))

    def test_inside_im(self) -> None:
        """In a 04,07 body, read() takes the sender's block from the middle and
        leaves the message TLVs after it."""
        reader = Reader(snac_body(IM_FRAME)[1], "04,07")
        self.assertEqual(reader.take(8, "cookie"), b"12345678")
        self.assertEqual(reader.u16("channel"), 1)
        sender = UserInfo.read(reader)
        self.assertEqual(sender.screen_name, "Alice")
        self.assertEqual(len(sender.tlvs), 3)
        message = TlvList.read_list(reader)
        self.assertEqual([tlv.tag for tlv in message], [2])
        self.assertTrue(message.get(2).endswith(b"hi"))

    def test_warning_level(self) -> None:
        """The warning level is a big-endian u16 after the name."""
        self.assertEqual(UserInfo("Bob", 999).pack(), bytes.fromhex("03 42 6F 62 03 E7 00 00"))


class UserInfoMalformedTests(SynchronousTestCase):
    """Bad blocks are MalformedData."""

    def test_truncated(self) -> None:
        """Every truncated prefix of a block is malformed."""
        for block in (ALICE.pack(), DEPARTURE, UserInfo("Bob").pack()):
            for cut in range(len(block)):
                self.assertRaises(MalformedData, UserInfo.unpack, block[:cut])

    def test_stray_bytes(self) -> None:
        """unpack wants exactly one block; read leaves what follows."""
        exc = self.assertRaises(MalformedData, UserInfo.unpack, DEPARTURE + b"\x00")
        self.assertIn("stray", str(exc))
        reader = Reader(DEPARTURE + b"\x00", "test")
        self.assertEqual(UserInfo.read(reader), BOB_DEPARTING)
        self.assertEqual(reader.rest(), b"\x00")

    def test_non_ascii_name(self) -> None:
        """A screen name that is not ASCII is malformed."""
        self.assertRaises(MalformedData, UserInfo.unpack, bytes.fromhex("03 42 F6 62 00 00 00 00"))

    def test_count_past_end(self) -> None:
        """An attribute count promising more TLVs than remain is malformed."""
        self.assertRaises(MalformedData, UserInfo.unpack, bytes.fromhex("03 42 6F 62 00 00 00 02"))

    def test_name_too_long_to_pack(self) -> None:
        """A name longer than a string08 can hold is refused with ValueError."""
        self.assertRaises(ValueError, UserInfo("a" * 256).pack)


class UserInfoPropertyTests(SynchronousTestCase):
    """Round trips and robustness on generated data."""

    @given(user_infos())
    def test_round_trip(self, info: UserInfo) -> None:
        """UserInfo.unpack(pack(x)) == x."""
        self.assertEqual(UserInfo.unpack(info.pack()), info)

    @given(st.lists(user_infos(), min_size=1, max_size=3))
    def test_consecutive_blocks(self, infos: list[UserInfo]) -> None:
        """Blocks packed one after another (01,0F with instances) read back in order."""
        reader = Reader(b"".join(info.pack() for info in infos), "01,0F")
        decoded = []
        while not reader.at_end():
            decoded.append(UserInfo.read(reader))
        self.assertEqual(decoded, infos)

    @given(user_info_bytes())
    def test_bytes_round_trip(self, data: bytes) -> None:
        """pack(UserInfo.unpack(b)) == b for a valid block b."""
        self.assertEqual(UserInfo.unpack(data).pack(), data)

    @given(fuzz(user_info_bytes()))
    def test_any_bytes(self, data: bytes) -> None:
        """Any bytes are one block that packs back to them, or MalformedData."""
        try:
            info = UserInfo.unpack(data)
        except MalformedData:
            return
        self.assertEqual(info.pack(), data)
