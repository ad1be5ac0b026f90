# -*- test-case-name: tests.test_wire_chat -*-
"""Tests for L{aimserver.wire.chat}: the ChatNav (0x000D) and Chat (0x000E)
bodies of docs/chat-protocol-notes.md, byte for byte: known bytes both ways,
every truncation, round trips, and arbitrary bytes decoding or raising
MalformedData only."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.wire.chat import (
    CHAT_CAPABILITY,
    DETAIL_FULL,
    ERROR_SUBCODE_BAD_ROOM_NAME,
    EXCHANGE_PRIVATE,
    EXCHANGE_PUBLIC,
    TAG_CREATE_PERMS,
    TAG_CREATED,
    TAG_FULL_NAME,
    TAG_MAX_MESSAGE_LENGTH,
    TAG_MAX_OCCUPANCY,
    TAG_MAX_VISIBLE_LENGTH,
    TAG_NAV_EXCHANGE,
    TAG_NAV_MAX_ROOMS,
    TAG_NAV_ROOM_INFO,
    TAG_ROOM_FLAGS,
    TAG_ROOM_NAME,
    ChatMessage,
    ChatMessageToClient,
    RoomInfo,
    RoomRef,
    exchange_info,
    message_parts,
    message_text_length,
    pack_chat_invite,
    pack_chat_message_to_client,
    pack_nav_rights,
    pack_nav_room_reply,
    pack_users,
    parse_chat_invite,
    parse_exchange_request,
    parse_room_info_request,
    parse_users,
    relayed_message,
    room_tlvs,
)
from aimserver.wire.errors import MalformedData
from aimserver.wire.reader import Reader
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import UserInfo
from tests.strategies import (
    chat_messages,
    fuzz,
    icbm_cookies,
    room_info_bytes,
    room_infos,
    room_ref_bytes,
    room_refs,
    tlv_lists,
    u8s,
    u16s,
    u32s,
    user_info_bytes,
    user_infos,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


COOKIE = h("0102030405060708")
ROOM = RoomRef(4, b"4-0-Room", 0)
ROOM_BYTES = h("0004 08") + b"4-0-Room" + h("0000")
BOB = UserInfo("Bob")
BOB_BYTES = h("03") + b"Bob" + h("0000 0000")
# The inner TLVs of a message as libpurple sends it (notes §6).
LP_TEXT = h("0001 0002") + b"hi" + h("0002 0008") + b"us-ascii" + h("0003 0002") + b"en"
# Go's room TLVs for "Room" (notes §4), created at 0x5F5E1000.
ROOM_TLV_BYTES = (
    h("00C9 0002 000F")
    + h("00CA 0004 5F5E1000")
    + h("00D1 0002 0400")
    + h("00D2 0002 0064")
    + h("00D5 0001 02")
    + h("006A 0004")
    + b"Room"
    + h("00D3 0004")
    + b"Room"
    + h("00DA 0002 0400")
)
ROOM_TLVS = room_tlvs(
    name=b"Room", created_at=0x5F5E1000, max_message_length=1024, max_occupancy=100
)
# 0D,09 TLV 0x0004 value and 0E,02 body.
ROOM_INFO = RoomInfo(ROOM, DETAIL_FULL, ROOM_TLVS)
ROOM_INFO_BYTES = ROOM_BYTES + h("02 0008") + ROOM_TLV_BYTES
# One exchange of a 0D,09 (notes §1), max rooms 10, max name length 48.
EXCHANGE_4_BYTES = (
    h("0003 0044 0004 0009")
    + h("0003 0001 0A")
    + h("0002 0002 0010")
    + h("0004 0002 0030")
    + h("00C9 0002 000F")
    + h("00D5 0001 02")
    + h("00D6 0008")
    + b"us-ascii"
    + h("00D7 0002")
    + b"en"
    + h("00D8 0008")
    + b"us-ascii"
    + h("00D9 0002")
    + b"en"
)

# 0D,08 as libpurple sends it (notes §1).
LP_CREATE = (
    h("0004 06")
    + b"create"
    + h("FFFF 01 0003 00D3 0004")
    + b"Room"
    + h("00D6 0008")
    + b"us-ascii"
    + h("00D7 0002")
    + b"en"
)
LP_CREATE_VALUE = RoomInfo(
    RoomRef(4, b"create", 0xFFFF),
    1,
    TlvList((Tlv(0xD3, b"Room"), Tlv(0xD6, b"us-ascii"), Tlv(0xD7, b"en"))),
)
# 0E,05 as libpurple sends it (notes §6).
LP_MESSAGE = COOKIE + h("0003 0001 0000 0006 0000 0005 0018") + LP_TEXT
LP_MESSAGE_VALUE = ChatMessage(COOKIE, 3, True, None, True, False, LP_TEXT)
# 0E,06 for it, from Bob (notes §6).
TO_CLIENT = COOKIE + h("0003 0003 0008") + BOB_BYTES + h("0001 0000 0005 0018") + LP_TEXT
TO_CLIENT_VALUE = ChatMessageToClient(COOKIE, 3, BOB, True, LP_TEXT)

# Structures that must be whole: every proper prefix is malformed.
EXACT: list[tuple[Callable[[bytes], Any], bytes, Any]] = [
    (RoomRef.unpack, ROOM_BYTES, ROOM),
    (parse_chat_invite, ROOM_BYTES, ROOM),
    (RoomInfo.unpack, LP_CREATE, LP_CREATE_VALUE),
    (RoomInfo.unpack, ROOM_INFO_BYTES, ROOM_INFO),
    (parse_exchange_request, h("0005"), EXCHANGE_PUBLIC),
    (parse_room_info_request, ROOM_BYTES + h("02"), (ROOM, DETAIL_FULL)),
    (UserInfo.unpack, BOB_BYTES, BOB),
]
# Structures ending in a TLV list (or a run of blocks): a prefix cut at
# these offsets is a shorter valid body; anywhere else it is malformed.
LISTS: list[tuple[Callable[[bytes], Any], bytes, Any, set[int]]] = [
    (ChatMessage.unpack, LP_MESSAGE, LP_MESSAGE_VALUE, {10, 14, 18}),
    (ChatMessageToClient.unpack, TO_CLIENT, TO_CLIENT_VALUE, {22, 26}),
    (parse_users, BOB_BYTES * 2, (BOB, BOB), {0, 8}),
    (message_parts, LP_TEXT, TlvList.unpack_list(LP_TEXT), {0, 6, 18}),
]


class KnownBytesTests(SynchronousTestCase):
    def test_decode_known(self) -> None:
        """The notes' layouts decode to the values they describe."""
        for unpack, body, value in EXACT:
            self.assertEqual(unpack(body), value, body.hex())
        for unpack, body, value, _ in LISTS:
            self.assertEqual(unpack(body), value, body.hex())

    def test_encode_known(self) -> None:
        """... and the values pack to exactly those bytes."""
        self.assertEqual(ROOM.pack(), ROOM_BYTES)
        self.assertEqual(pack_chat_invite(ROOM), ROOM_BYTES)
        self.assertEqual(LP_CREATE_VALUE.pack(), LP_CREATE)
        self.assertEqual(ROOM_INFO.pack(), ROOM_INFO_BYTES)
        self.assertEqual(LP_MESSAGE_VALUE.pack(), LP_MESSAGE)
        self.assertEqual(TO_CLIENT_VALUE.pack(), TO_CLIENT)

    def test_every_truncation_is_malformed(self) -> None:
        """Each example cut short anywhere is MalformedData, never IndexError
        or struct.error; list-shaped bodies cut between TLVs are shorter
        bodies."""
        for unpack, body, _ in EXACT:
            for end in range(len(body)):
                with self.assertRaises(MalformedData, msg=body[:end].hex()):
                    unpack(body[:end])
        for unpack, body, _, boundaries in LISTS:
            for end in range(len(body)):
                if end in boundaries:
                    unpack(body[:end])
                else:
                    with self.assertRaises(MalformedData, msg=body[:end].hex()):
                        unpack(body[:end])

    def test_whole_structures_refuse_stray_bytes(self) -> None:
        """A room reference, a room info and a 0D,03 are whole: a byte more is
        malformed."""
        for unpack, body in (
            (RoomRef.unpack, ROOM_BYTES),
            (parse_chat_invite, ROOM_BYTES),
            (RoomInfo.unpack, ROOM_INFO_BYTES),
            (parse_exchange_request, h("0004")),
        ):
            with self.assertRaises(MalformedData):
                unpack(body + b"\x00")

    def test_constants(self) -> None:
        """The numbers the notes give."""
        self.assertEqual((EXCHANGE_PRIVATE, EXCHANGE_PUBLIC, DETAIL_FULL), (4, 5, 2))
        self.assertEqual(ERROR_SUBCODE_BAD_ROOM_NAME, 0x0033)
        self.assertEqual(CHAT_CAPABILITY, h("748F2420 6287 11D1 8222 444553540000"))

    def test_room_name_property(self) -> None:
        self.assertEqual(LP_CREATE_VALUE.name, b"Room")
        self.assertEqual(ROOM_INFO.name, b"Room")
        self.assertIsNone(RoomInfo(ROOM, 1).name)

    def test_too_long_fields_do_not_pack(self) -> None:
        """What the wire cannot carry is a programming error (ValueError)."""
        for pack in (
            RoomRef(4, b"x" * 256, 0).pack,
            ChatMessage(b"short", 3, True, None, True, False, b"").pack,
            lambda: pack_chat_message_to_client(b"short", 3, BOB_BYTES, to_room=True, message=b""),
        ):
            with self.assertRaises(ValueError):
                pack()


class ChatNavTests(SynchronousTestCase):
    """0D,09 answers and the 0D,03/0D,04 requests (notes §1)."""

    def test_room_tlvs_in_go_order(self) -> None:
        """C9 D1 ... DA with their widths; the maximum visible length is the
        maximum message length."""
        self.assertEqual(ROOM_TLVS.pack_list(), ROOM_TLV_BYTES)

    def test_exchange_info(self) -> None:
        """TLV 0x0003: exchange, count, then max rooms first and the rest in Go's order."""
        self.assertEqual(
            exchange_info(4, max_rooms=10, max_name_length=48).pack(), EXCHANGE_4_BYTES
        )

    def test_nav_rights(self) -> None:
        """0D,09 for 0D,02: TLV 0x0002 u8 max rooms, then each exchange, no count."""
        exchanges = [exchange_info(x, max_rooms=10, max_name_length=48) for x in (4, 5)]
        body = pack_nav_rights(10, exchanges)
        self.assertEqual(
            body,
            h("0002 0001 0A")
            + EXCHANGE_4_BYTES
            + EXCHANGE_4_BYTES.replace(h("0044 0004"), h("0044 0005"), 1),
        )

    def test_nav_room_reply(self) -> None:
        """0D,09 for 0D,08/0D,04: one TLV 0x0004 holding the 0E,02 body."""
        self.assertEqual(
            pack_nav_room_reply(ROOM_INFO),
            struct.pack("!HH", 0x0004, len(ROOM_INFO_BYTES)) + ROOM_INFO_BYTES,
        )

    def test_room_info_request_reads_the_first_group(self) -> None:
        """0D,04 may repeat its group: the first counts, whole others are
        ignored, a partial one is malformed."""
        other = RoomRef(5, b"5-0-Lobby", 0).pack() + b"\x01"
        self.assertEqual(parse_room_info_request(ROOM_BYTES + b"\x02" + other + other), (ROOM, 2))
        for end in range(1, len(other)):
            with self.assertRaises(MalformedData):
                parse_room_info_request(ROOM_BYTES + b"\x02" + other[:end])


class ChatMessageTests(SynchronousTestCase):
    """0E,05 in, 0E,06 out (notes §6)."""

    def test_whisper(self) -> None:
        """TLV 0x0002 names the target; a whisper has no TLV 0x0001."""
        body = COOKIE + h("0003 0002 0003") + b"Bob" + h("0005 0000")
        message = ChatMessage.unpack(body)
        self.assertEqual(message.whisper_to, b"Bob")
        self.assertFalse(message.to_room)
        self.assertTrue(message.is_whisper)
        self.assertFalse(LP_MESSAGE_VALUE.is_whisper)
        both = ChatMessage(COOKIE, 3, True, b"Bob", False, False, b"")
        self.assertFalse(both.is_whisper)

    def test_flags_and_missing_message(self) -> None:
        """0x0007 is the auto-response flag; no TLV 0x0005 reads as b"";
        unknown TLVs are ignored; the first of a repeated tag counts."""
        body = COOKIE + h("0003 0007 0000 0099 0001 FF 0002 0001 41 0002 0001 42")
        self.assertEqual(
            ChatMessage.unpack(body), ChatMessage(COOKIE, 3, False, b"A", False, True, b"")
        )

    def test_to_client_tlv_order(self) -> None:
        """Sender, [to room], message, whatever order the 0E,05 had."""
        body = pack_chat_message_to_client(COOKIE, 3, BOB_BYTES, to_room=False, message=b"m")
        self.assertEqual(body, COOKIE + h("0003 0003 0008") + BOB_BYTES + h("0005 0001") + b"m")
        self.assertEqual(
            pack_chat_message_to_client(COOKIE, 3, BOB_BYTES, to_room=True, message=LP_TEXT),
            TO_CLIENT,
        )

    def test_macos_channel_relayed_as_3(self) -> None:
        """macOS AIM 4.0.9's channel 0xFFFF goes out as 3; others as they are."""
        body = pack_chat_message_to_client(COOKIE, 0xFFFF, BOB_BYTES, to_room=True, message=b"")
        self.assertEqual(body[8:10], h("0003"))
        body = pack_chat_message_to_client(COOKIE, 7, BOB_BYTES, to_room=True, message=b"")
        self.assertEqual(body[8:10], h("0007"))

    def test_to_client_needs_a_sender(self) -> None:
        with self.assertRaises(MalformedData):
            ChatMessageToClient.unpack(COOKIE + h("0003 0005 0000"))
        with self.assertRaises(MalformedData):
            ChatMessageToClient.unpack(COOKIE + h("0003 0003 0002 0142"))

    def test_text_length(self) -> None:
        """Bytes of inner TLV 0x0001 (HTML included); 0 without one."""
        self.assertEqual(message_text_length(LP_TEXT), 2)
        html = b"<HTML>hey</HTML>"
        self.assertEqual(message_text_length(Tlv(1, html).pack()), len(html))
        self.assertEqual(message_text_length(b""), 0)
        self.assertEqual(message_text_length(h("0002 0001 41")), 0)
        with self.assertRaises(MalformedData):
            message_text_length(h("0001 0005 41"))

    def test_relayed_message_keeps_text_charset_language(self) -> None:
        """Inner 0x0001-0x0003 are kept in their order, others dropped."""
        extra = h("0004 0001 00") + h("0003 0002") + b"en" + h("000D 0000")
        extra += h("0001 0002") + b"hi" + h("0002 0007") + b"unicode"
        self.assertEqual(
            relayed_message(extra),
            h("0003 0002") + b"en" + h("0001 0002") + b"hi" + h("0002 0007") + b"unicode",
        )
        self.assertEqual(relayed_message(LP_TEXT), LP_TEXT)
        self.assertEqual(relayed_message(b""), b"")

    def test_relayed_message_renames_kopete_charset(self) -> None:
        """``ISO 8859`` becomes ``ISO-8859-1``; other charsets are untouched."""
        kopete = h("0001 0001") + b"x" + h("0002 0008") + b"ISO 8859"
        self.assertEqual(
            relayed_message(kopete), h("0001 0001") + b"x" + h("0002 000A") + b"ISO-8859-1"
        )
        for charset in (b"iso 8859", b"ISO 8859-1", b"ISO-8859-1"):
            kept = Tlv(2, charset).pack()
            self.assertEqual(relayed_message(kept), kept)
        # Only the charset TLV is renamed, not text that happens to say so.
        text = Tlv(1, b"ISO 8859").pack()
        self.assertEqual(relayed_message(text), text)

    def test_relayed_message_malformed(self) -> None:
        with self.assertRaises(MalformedData):
            relayed_message(h("0001 0009 41"))


class UsersTests(SynchronousTestCase):
    """0E,03 / 0E,04 (notes §5)."""

    def test_pack_users(self) -> None:
        alice = UserInfo("Alice", 5, TlvList((Tlv.u16(1, 0x10),)))
        self.assertEqual(pack_users([BOB.pack(), alice.pack()]), BOB_BYTES + alice.pack())
        self.assertEqual(parse_users(pack_users([BOB.pack(), alice.pack()])), (BOB, alice))
        self.assertEqual(pack_users([]), b"")
        self.assertEqual(parse_users(b""), ())


def _room_info_request_bytes() -> st.SearchStrategy[tuple[bytes, bytes, int]]:
    """``(0D,04 body, first ref, first detail)``: 1-3 groups built by hand."""
    groups = st.lists(st.tuples(room_ref_bytes(), u8s), min_size=1, max_size=3)
    return groups.map(lambda gs: (b"".join(ref + bytes((d,)) for ref, d in gs), gs[0][0], gs[0][1]))


def _tlv(tag: int, value: bytes) -> bytes:
    return struct.pack("!HH", tag, len(value)) + value


@st.composite
def _chat_message_bytes(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bytes]]]:
    """A 0E,05 body with TLVs in any order and repeats, built by hand, and its TLVs."""
    items = draw(
        st.lists(
            st.tuples(st.one_of(st.sampled_from([1, 2, 3, 5, 6, 7]), u16s), st.binary(max_size=12)),
            max_size=7,
        )
    )
    head = draw(icbm_cookies) + struct.pack("!H", draw(u16s))
    return head + b"".join(_tlv(t, v) for t, v in items), items


@st.composite
def _message_data(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bytes]]]:
    """A TLV 0x0005 value: inner TLVs, mostly 1-3 and Kopete's charset."""
    items = draw(
        st.lists(
            st.tuples(
                st.one_of(st.sampled_from([1, 2, 3]), u16s),
                st.one_of(st.just(b"ISO 8859"), st.binary(max_size=12)),
            ),
            max_size=6,
        )
    )
    return b"".join(_tlv(t, v) for t, v in items), items


def _first(items: list[tuple[int, bytes]], tag: int) -> bytes | None:
    return next((v for t, v in items if t == tag), None)


#: ``(values, decoder)``: decoder(value.pack()) == value.
VALUES: list[tuple[st.SearchStrategy[Any], Callable[[bytes], Any]]] = [
    (room_refs(), RoomRef.unpack),
    (room_refs(), parse_chat_invite),
    (room_infos(), RoomInfo.unpack),
    (chat_messages(), ChatMessage.unpack),
    (
        st.builds(
            ChatMessageToClient,
            icbm_cookies,
            u16s.filter(lambda c: c != 0xFFFF),
            user_infos(),
            st.booleans(),
            st.binary(max_size=32),
        ),
        ChatMessageToClient.unpack,
    ),
]
#: ``(bytes built with struct, decoder)``: decoder(b).pack() == b.
ENCODINGS: list[tuple[st.SearchStrategy[bytes], Callable[[bytes], Any]]] = [
    (room_ref_bytes(), RoomRef.unpack),
    (room_info_bytes(), RoomInfo.unpack),
]
#: Every parser, with valid bodies to mangle.
PARSERS: list[tuple[st.SearchStrategy[bytes], Callable[[bytes], Any]]] = [
    (room_ref_bytes(), RoomRef.unpack),
    (room_ref_bytes(), parse_chat_invite),
    (room_info_bytes(), RoomInfo.unpack),
    (u16s.map(lambda x: struct.pack("!H", x)), parse_exchange_request),
    (_room_info_request_bytes().map(lambda t: t[0]), parse_room_info_request),
    (chat_messages().map(ChatMessage.pack), ChatMessage.unpack),
    (st.just(TO_CLIENT), ChatMessageToClient.unpack),
    (st.lists(user_info_bytes(), max_size=3).map(b"".join), parse_users),
    (_message_data().map(lambda t: t[0]), message_parts),
    (_message_data().map(lambda t: t[0]), message_text_length),
    (_message_data().map(lambda t: t[0]), relayed_message),
]


class PropertyTests(SynchronousTestCase):
    @given(st.data())
    def test_values_round_trip(self, draw: st.DataObject) -> None:
        """unpack(pack(x)) == x for every value codec."""
        for strategy, unpack in VALUES:
            value = draw.draw(strategy)
            self.assertEqual(unpack(value.pack()), value)

    @given(st.data())
    def test_encodings_round_trip(self, draw: st.DataObject) -> None:
        """pack(unpack(b)) == b for encodings built with struct."""
        for strategy, unpack in ENCODINGS:
            encoded = draw.draw(strategy)
            self.assertEqual(unpack(encoded).pack(), encoded)

    @given(room_refs())
    def test_invite_round_trip(self, ref: RoomRef) -> None:
        self.assertEqual(parse_chat_invite(pack_chat_invite(ref)), ref)

    @given(u16s)
    def test_exchange_request(self, exchange: int) -> None:
        self.assertEqual(parse_exchange_request(struct.pack("!H", exchange)), exchange)

    @given(_room_info_request_bytes())
    def test_room_info_request(self, case: tuple[bytes, bytes, int]) -> None:
        body, first, detail = case
        self.assertEqual(parse_room_info_request(body), (RoomRef.unpack(first), detail))

    @given(_chat_message_bytes())
    def test_chat_message_fields(self, case: tuple[bytes, list[tuple[int, bytes]]]) -> None:
        """Each field is its TLV's presence or first value, whatever the order."""
        body, items = case
        tags = {t for t, _ in items}
        message = ChatMessage.unpack(body)
        self.assertEqual((message.cookie, message.channel), (body[:8], int.from_bytes(body[8:10])))
        self.assertEqual(message.to_room, 1 in tags)
        self.assertEqual(message.whisper_to, _first(items, 2))
        self.assertEqual(message.reflect, 6 in tags)
        self.assertEqual(message.auto_response, 7 in tags)
        self.assertEqual(message.message, _first(items, 5) or b"")

    @given(
        st.binary(max_size=48),
        u32s,
        st.integers(min_value=0, max_value=0xFFFF),
        st.integers(min_value=0, max_value=0xFFFF),
    )
    def test_room_tlvs(self, name: bytes, created: int, length: int, occupancy: int) -> None:
        """The eight room TLVs, in order, with their values and widths; the
        0E,02 made of them says what libpurple reads (D1, DA)."""
        tlvs = room_tlvs(
            name=name, created_at=created, max_message_length=length, max_occupancy=occupancy
        )
        self.assertEqual(
            [t.tag for t in tlvs],
            [
                TAG_ROOM_FLAGS,
                TAG_CREATED,
                TAG_MAX_MESSAGE_LENGTH,
                TAG_MAX_OCCUPANCY,
                TAG_CREATE_PERMS,
                TAG_FULL_NAME,
                TAG_ROOM_NAME,
                TAG_MAX_VISIBLE_LENGTH,
            ],
        )
        info = RoomInfo.unpack(RoomInfo(ROOM, DETAIL_FULL, tlvs).pack())
        self.assertEqual(info.tlvs.get_u16(TAG_ROOM_FLAGS), 0x000F)
        self.assertEqual(info.tlvs.get_u32(TAG_CREATED), created)
        self.assertEqual(info.tlvs.get_u16(TAG_MAX_MESSAGE_LENGTH), length)
        self.assertEqual(info.tlvs.get_u16(TAG_MAX_VISIBLE_LENGTH), length)
        self.assertEqual(info.tlvs.get_u16(TAG_MAX_OCCUPANCY), occupancy)
        self.assertEqual(info.tlvs.get_u8(TAG_CREATE_PERMS), 2)
        self.assertEqual((info.tlvs.get(TAG_FULL_NAME), info.name), (name, name))

    @given(u16s, u8s, st.integers(min_value=0, max_value=0xFFFF))
    def test_exchange_info(self, exchange: int, max_rooms: int, name_length: int) -> None:
        """u16 exchange, u16 count, then the nine TLVs with max rooms first."""
        tlv = exchange_info(exchange, max_rooms=max_rooms, max_name_length=name_length)
        self.assertEqual(tlv.tag, TAG_NAV_EXCHANGE)
        reader = Reader(tlv.value, "exchange")
        self.assertEqual(reader.u16(), exchange)
        block = TlvList.read_block(reader)
        reader.expect_end()
        self.assertEqual(
            [t.tag for t in block], [0x03, 0x02, 0x04, 0xC9, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9]
        )
        self.assertEqual(block.get_u8(0x03), max_rooms)
        self.assertEqual(block.get_u16(0x02), 0x0010)
        self.assertEqual(block.get_u16(0x04), name_length)
        self.assertEqual(block.get_u16(0xC9), 0x000F)
        self.assertEqual(block.get_u8(0xD5), 2)
        self.assertEqual(block.all(0xD6) + block.all(0xD8), [b"us-ascii"] * 2)
        self.assertEqual(block.all(0xD7) + block.all(0xD9), [b"en"] * 2)

    @given(u8s, st.lists(st.builds(Tlv, st.just(TAG_NAV_EXCHANGE), st.binary()), max_size=3))
    def test_nav_rights(self, max_rooms: int, exchanges: list[Tlv]) -> None:
        """A TLV list: 0x0002 u8 max rooms, then the exchanges as given."""
        tlvs = TlvList.unpack_list(pack_nav_rights(max_rooms, exchanges))
        self.assertEqual(list(tlvs), [Tlv.u8(TAG_NAV_MAX_ROOMS, max_rooms), *exchanges])

    @given(room_infos())
    def test_nav_room_reply(self, info: RoomInfo) -> None:
        tlvs = TlvList.unpack_list(pack_nav_room_reply(info))
        self.assertEqual(len(tlvs), 1)
        value = tlvs.get(TAG_NAV_ROOM_INFO)
        assert value is not None
        self.assertEqual(RoomInfo.unpack(value), info)

    @given(icbm_cookies, u16s, user_infos(), st.booleans(), st.binary(max_size=32))
    def test_message_to_client(
        self, cookie: bytes, channel: int, sender: UserInfo, to_room: bool, message: bytes
    ) -> None:
        """TLVs 0x0003, [0x0001], 0x0005 in this order; 0xFFFF goes out as 3."""
        body = pack_chat_message_to_client(
            cookie, channel, sender.pack(), to_room=to_room, message=message
        )
        parsed = ChatMessageToClient.unpack(body)
        expected = 3 if channel == 0xFFFF else channel
        self.assertEqual(parsed, ChatMessageToClient(cookie, expected, sender, to_room, message))
        tags = [t.tag for t in TlvList.unpack_list(body[10:])]
        self.assertEqual(tags, [3, 1, 5] if to_room else [3, 5])

    @given(st.lists(user_infos(), max_size=4))
    def test_users_round_trip(self, users: list[UserInfo]) -> None:
        self.assertEqual(parse_users(pack_users([u.pack() for u in users])), tuple(users))

    @given(_message_data())
    def test_relayed_message(self, case: tuple[bytes, list[tuple[int, bytes]]]) -> None:
        """Only inner 1-3 stay, in order, Kopete's charset renamed; relaying
        twice changes nothing more; the text length is inner 0x0001's."""
        data, items = case
        expected = [
            (t, b"ISO-8859-1" if (t, v) == (2, b"ISO 8859") else v)
            for t, v in items
            if t in (1, 2, 3)
        ]
        relayed = relayed_message(data)
        self.assertEqual(relayed, b"".join(_tlv(t, v) for t, v in expected))
        self.assertEqual(relayed_message(relayed), relayed)
        self.assertEqual(message_text_length(data), len(_first(items, 1) or b""))
        self.assertEqual(message_text_length(relayed), message_text_length(data))
        self.assertEqual([(t.tag, t.value) for t in message_parts(data)], items)

    @given(tlv_lists())
    def test_message_parts(self, tlvs: TlvList) -> None:
        self.assertEqual(message_parts(tlvs.pack_list()), tlvs)

    @given(st.data())
    def test_any_bytes_decode_or_are_malformed(self, draw: st.DataObject) -> None:
        """Every parser, given random bytes or near misses of valid bodies,
        returns a value or raises MalformedData: nothing else escapes."""
        for strategy, parse in PARSERS:
            body = draw.draw(fuzz(strategy))
            with contextlib.suppress(MalformedData):
                parse(body)
