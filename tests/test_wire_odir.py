# -*- test-case-name: tests.test_wire_odir -*-
"""Tests for L{aimserver.wire.odir}: the ODir (0x000F) search reply 0F,03
and keyword list 0F,05 (FAMILIES.md §ODir)."""

from __future__ import annotations

import contextlib
import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.wire.errors import MalformedData
from aimserver.wire.odir import KEYWORD, KeywordItem, KeywordListReply, ODirInfoReply
from aimserver.wire.tlv import Tlv, TlvList
from tests.strategies import fuzz, tlv_block_bytes, tlv_lists, u8s, u16s

# One result (first name "Al", screen name "Alice"), status OK.
INFO_REPLY = bytes.fromhex(
    "00 05  00 00  00 01  00 02  00 01 00 02 41 6C  00 09 00 05 41 6C 69 63 65"
)
# Too many results: status 3, nothing else.
TOO_MANY = bytes.fromhex("00 03 00 00 00 00")
# Two top-level keywords, "Chess" and "Go".
KEYWORDS = bytes.fromhex("00 01  00 02  02 00 00 05 43 68 65 73 73  02 00 00 02 47 6F")

info_replies = st.builds(ODirInfoReply, u16s, st.lists(tlv_lists(), max_size=3).map(tuple))
keyword_items = st.builds(KeywordItem, u8s, u8s, st.binary(max_size=12))
keyword_list_replies = st.builds(KeywordListReply, u16s, st.lists(keyword_items, max_size=4))


def _info_bytes(status: int, blocks: list[bytes]) -> bytes:
    return struct.pack("!HHH", status, 0, len(blocks)) + b"".join(blocks)


def _keyword_bytes(status: int, items: list[tuple[int, int, bytes]]) -> bytes:
    packed = b"".join(struct.pack("!BBH", k, p, len(n)) + n for k, p, n in items)
    return struct.pack("!HH", status, len(items)) + packed


info_reply_bytes = st.builds(_info_bytes, u16s, st.lists(tlv_block_bytes(), max_size=3))
keyword_list_bytes = st.builds(
    _keyword_bytes, u16s, st.lists(st.tuples(u8s, u8s, st.binary(max_size=12)), max_size=4)
)


class ODirInfoReplyTests(SynchronousTestCase):
    def test_known_values(self) -> None:
        """The documented layouts decode to their values and back."""
        one = ODirInfoReply(5, (TlvList([Tlv(0x0001, b"Al"), Tlv(0x0009, b"Alice")]),))
        for data, value in ((INFO_REPLY, one), (TOO_MANY, ODirInfoReply(3))):
            self.assertEqual(ODirInfoReply.unpack(data), value)
            self.assertEqual(value.pack(), data)

    def test_every_truncation_is_malformed(self) -> None:
        """Every proper prefix is MalformedData, and so are bytes after the end
        and a count promising more results than there is room for."""
        for end in range(len(INFO_REPLY)):
            self.assertRaises(MalformedData, ODirInfoReply.unpack, INFO_REPLY[:end])
        self.assertRaises(MalformedData, ODirInfoReply.unpack, INFO_REPLY + b"\x00")
        self.assertRaises(MalformedData, ODirInfoReply.unpack, b"\x00\x05\x00\x00\xff\xff")

    @given(info_replies)
    def test_round_trip(self, value: ODirInfoReply) -> None:
        """unpack(pack(x)) == x."""
        self.assertEqual(ODirInfoReply.unpack(value.pack()), value)

    @given(info_reply_bytes)
    def test_bytes_round_trip(self, data: bytes) -> None:
        """pack(unpack(b)) == b for a reply built by hand."""
        self.assertEqual(ODirInfoReply.unpack(data).pack(), data)

    @given(fuzz(info_reply_bytes))
    def test_garbage(self, data: bytes) -> None:
        """Any bytes decode or raise MalformedData, nothing else."""
        with contextlib.suppress(MalformedData):
            ODirInfoReply.unpack(data)


class KeywordListReplyTests(SynchronousTestCase):
    def test_known_values(self) -> None:
        """The documented layout decodes to its value and back."""
        value = KeywordListReply(1, (KeywordItem(KEYWORD, 0, b"Chess"), KeywordItem(2, 0, b"Go")))
        self.assertEqual(KeywordListReply.unpack(KEYWORDS), value)
        self.assertEqual(value.pack(), KEYWORDS)

    def test_every_truncation_is_malformed(self) -> None:
        """Every proper prefix is MalformedData, and so are bytes after the end."""
        for end in range(len(KEYWORDS)):
            self.assertRaises(MalformedData, KeywordListReply.unpack, KEYWORDS[:end])
        self.assertRaises(MalformedData, KeywordListReply.unpack, KEYWORDS + b"\x00")

    @given(keyword_list_replies)
    def test_round_trip(self, value: KeywordListReply) -> None:
        """unpack(pack(x)) == x."""
        self.assertEqual(KeywordListReply.unpack(value.pack()), value)

    @given(keyword_list_bytes)
    def test_bytes_round_trip(self, data: bytes) -> None:
        """pack(unpack(b)) == b for a reply built by hand."""
        self.assertEqual(KeywordListReply.unpack(data).pack(), data)

    @given(fuzz(keyword_list_bytes))
    def test_garbage(self, data: bytes) -> None:
        """Any bytes decode or raise MalformedData, nothing else."""
        with contextlib.suppress(MalformedData):
            KeywordListReply.unpack(data)
