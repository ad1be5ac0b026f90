# -*- test-case-name: tests.test_wire_admin -*-
"""Tests for L{aimserver.wire.admin}: the Admin (0x0007) replies 07,03/07,05
and 07,07 (FAMILIES.md §Admin)."""

from __future__ import annotations

import contextlib
import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.wire.admin import PERMISSIONS_READ_WRITE, AdminInfoReply, ConfirmReply
from aimserver.wire.errors import MalformedData
from aimserver.wire.tlv import Tlv, TlvList
from tests.strategies import fuzz, tlv_block_bytes, tlv_lists, u16s

# FAMILIES.md §Admin: 07,03 with the formatted name "Alice", and the 07,05
# replies to a password change (accepted; refused, bad old password).
INFO_REPLY = bytes.fromhex("00 03  00 01  00 01 00 05 41 6C 69 63 65")
PASSWORD_OK = bytes.fromhex("00 03  00 01  00 02 00 00")
PASSWORD_REFUSED = bytes.fromhex("00 03  00 02  00 02 00 00  00 08 00 02 00 02")

admin_info_replies = st.builds(AdminInfoReply, u16s, tlv_lists())
admin_info_reply_bytes = st.builds(
    lambda p, block: struct.pack("!H", p) + block, u16s, tlv_block_bytes()
)


class AdminInfoReplyTests(SynchronousTestCase):
    def test_known_values(self) -> None:
        """The documented replies decode to their values and back."""
        known = [
            (INFO_REPLY, AdminInfoReply(PERMISSIONS_READ_WRITE, TlvList([Tlv(0x0001, b"Alice")]))),
            (PASSWORD_OK, AdminInfoReply(3, TlvList([Tlv.empty(0x0002)]))),
            (
                PASSWORD_REFUSED,
                AdminInfoReply(3, TlvList([Tlv.empty(0x0002), Tlv.u16(0x0008, 0x0002)])),
            ),
        ]
        for data, value in known:
            self.assertEqual(AdminInfoReply.unpack(data), value)
            self.assertEqual(value.pack(), data)

    def test_every_truncation_is_malformed(self) -> None:
        """Every proper prefix of a reply is MalformedData, and so are bytes after it."""
        for data in (INFO_REPLY, PASSWORD_REFUSED):
            for end in range(len(data)):
                self.assertRaises(MalformedData, AdminInfoReply.unpack, data[:end])
            self.assertRaises(MalformedData, AdminInfoReply.unpack, data + b"\x00")

    @given(admin_info_replies)
    def test_round_trip(self, value: AdminInfoReply) -> None:
        """unpack(pack(x)) == x."""
        self.assertEqual(AdminInfoReply.unpack(value.pack()), value)

    @given(admin_info_reply_bytes)
    def test_bytes_round_trip(self, data: bytes) -> None:
        """pack(unpack(b)) == b for a reply built by hand."""
        self.assertEqual(AdminInfoReply.unpack(data).pack(), data)

    @given(fuzz(admin_info_reply_bytes))
    def test_garbage(self, data: bytes) -> None:
        """Any bytes decode or raise MalformedData, nothing else."""
        with contextlib.suppress(MalformedData):
            AdminInfoReply.unpack(data)


class ConfirmReplyTests(SynchronousTestCase):
    def test_known_values(self) -> None:
        """07,07 is the u16 status alone."""
        self.assertEqual(ConfirmReply(0x001E).pack(), b"\x00\x1e")
        self.assertEqual(ConfirmReply.unpack(b"\x00\x23"), ConfirmReply(0x0023))
        for data in (b"", b"\x00", b"\x00\x00\x00"):
            self.assertRaises(MalformedData, ConfirmReply.unpack, data)

    @given(u16s)
    def test_round_trip(self, status: int) -> None:
        """unpack(pack(x)) == x."""
        self.assertEqual(ConfirmReply.unpack(ConfirmReply(status).pack()), ConfirmReply(status))
