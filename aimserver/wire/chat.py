# -*- test-case-name: tests.test_wire_chat -*-
"""ChatNav (0x000D) and Chat (0x000E) bodies, and the chat invitation's room
reference (docs/chat-protocol-notes.md, "the notes" below).

A room is named on the wire by a ``RoomRef`` (exchange, cookie, instance);
``RoomInfo`` adds a detail level and a TLV block: it is the body of a 0D,08
request, of a 0D,09 TLV 0x0004 answer and of a 0E,02 push. The packers for
replies write exactly the layouts and TLV orders the notes give, because
clients are picky about them (libpurple needs detail level 2, WinAIM 2.x-3.x
the exchange's TLV 0x0003 first, macOS AIM 2.x the 0E,06 TLV order).

Parsers read only from their body, raise ``MalformedData`` (nothing else) on
short or stray bytes, and never build more than the body can hold.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from aimserver.wire.errors import MalformedData
from aimserver.wire.reader import Reader, read_whole, string08, u16
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import UserInfo

__all__ = [
    "CHAT_CAPABILITY",
    "CHAT_CHANNEL",
    "CREATE_PERMS_EXCHANGE",
    "DETAIL_FULL",
    "ERROR_SUBCODE_BAD_ROOM_NAME",
    "EXCHANGE_CLASS_PERMS",
    "EXCHANGE_PRIVATE",
    "EXCHANGE_PUBLIC",
    "MACOS_CHAT_CHANNEL",
    "MESSAGE_COOKIE_SIZE",
    "ROOM_FLAGS",
    "TAG_CHARSET",
    "TAG_CHARSET_2",
    "TAG_CREATED",
    "TAG_CREATE_PERMS",
    "TAG_ERROR_SUBCODE",
    "TAG_EXCHANGE_CLASS_PERMS",
    "TAG_EXCHANGE_MAX_NAME_LENGTH",
    "TAG_EXCHANGE_MAX_ROOMS",
    "TAG_FULL_NAME",
    "TAG_LANGUAGE",
    "TAG_LANGUAGE_2",
    "TAG_MAX_MESSAGE_LENGTH",
    "TAG_MAX_OCCUPANCY",
    "TAG_MAX_VISIBLE_LENGTH",
    "TAG_MESSAGE_AUTO_RESPONSE",
    "TAG_MESSAGE_DATA",
    "TAG_MESSAGE_REFLECT",
    "TAG_MESSAGE_SENDER",
    "TAG_MESSAGE_TO_ROOM",
    "TAG_MESSAGE_WHISPER_TO",
    "TAG_NAV_EXCHANGE",
    "TAG_NAV_MAX_ROOMS",
    "TAG_NAV_ROOM_INFO",
    "TAG_PART_CHARSET",
    "TAG_PART_LANGUAGE",
    "TAG_PART_TEXT",
    "TAG_ROOM_FLAGS",
    "TAG_ROOM_NAME",
    "ChatMessage",
    "ChatMessageToClient",
    "RoomInfo",
    "RoomRef",
    "exchange_info",
    "message_parts",
    "message_text_length",
    "pack_chat_invite",
    "pack_chat_message_to_client",
    "pack_nav_rights",
    "pack_nav_room_reply",
    "pack_users",
    "parse_chat_invite",
    "parse_exchange_request",
    "parse_room_info_request",
    "parse_users",
    "relayed_message",
    "room_tlvs",
]

#: Exchanges (notes §10): 4 holds the rooms users create by joining a name
#: (libpurple's default), 5 the rooms an admin creates.
EXCHANGE_PRIVATE = 4
EXCHANGE_PUBLIC = 5
#: Room-info detail level: libpurple ignores 0D,09 and 0E,02 room info with
#: any other (notes §1, §4).
DETAIL_FULL = 2
#: Flags of exchanges and rooms (TLV 0x00C9): evilable, nav-only, instancing
#: allowed, occupant peek, as Go sends them (notes §1).
ROOM_FLAGS = 0x000F
#: Create permissions (TLV 0x00D5): 2 = may create rooms in the exchange.
CREATE_PERMS_EXCHANGE = 2
#: Exchange class permissions (exchange TLV 0x0002), Go's value; lp only logs it.
EXCHANGE_CLASS_PERMS = 0x0010
#: The 0E,05/0E,06 channel. macOS AIM 4.0.9 sends 0xFFFF, which libpurple
#: drops ("unknown channel"), so it is relayed as 3 (notes §6).
CHAT_CHANNEL = 3
MACOS_CHAT_CHANNEL = 0xFFFF
#: 8-byte cookie that heads 0E,05 and 0E,06.
MESSAGE_COOKIE_SIZE = 8

# 0D,01 error TLV 0x0008 (u16 subcode): libpurple shows "Invalid chat room
# name" for this subcode in answer to a 0D,08, "Unknown error" for any other.
TAG_ERROR_SUBCODE = 0x0008
ERROR_SUBCODE_BAD_ROOM_NAME = 0x0033

# 0D,09 body TLVs (a list, no count).
TAG_NAV_MAX_ROOMS = 0x0002
TAG_NAV_EXCHANGE = 0x0003
TAG_NAV_ROOM_INFO = 0x0004

# Exchange TLVs (inside TAG_NAV_EXCHANGE, after the exchange id and count).
TAG_EXCHANGE_CLASS_PERMS = 0x0002
TAG_EXCHANGE_MAX_ROOMS = 0x0003
TAG_EXCHANGE_MAX_NAME_LENGTH = 0x0004

# Room TLVs (also used by exchanges: flags, create perms, charsets).
TAG_FULL_NAME = 0x006A
TAG_ROOM_FLAGS = 0x00C9
TAG_CREATED = 0x00CA
TAG_MAX_MESSAGE_LENGTH = 0x00D1
TAG_MAX_OCCUPANCY = 0x00D2
TAG_ROOM_NAME = 0x00D3
TAG_CREATE_PERMS = 0x00D5
TAG_CHARSET = 0x00D6
TAG_LANGUAGE = 0x00D7
TAG_CHARSET_2 = 0x00D8
TAG_LANGUAGE_2 = 0x00D9
TAG_MAX_VISIBLE_LENGTH = 0x00DA

# 0E,05 / 0E,06 TLVs.
TAG_MESSAGE_TO_ROOM = 0x0001
TAG_MESSAGE_WHISPER_TO = 0x0002
TAG_MESSAGE_SENDER = 0x0003
TAG_MESSAGE_DATA = 0x0005
TAG_MESSAGE_REFLECT = 0x0006
TAG_MESSAGE_AUTO_RESPONSE = 0x0007

# Inner TLVs of TAG_MESSAGE_DATA.
TAG_PART_TEXT = 0x0001
TAG_PART_CHARSET = 0x0002
TAG_PART_LANGUAGE = 0x0003
#: The only inner TLVs relayed: AIM 5.9's extra ones crash macOS AIM 2.x.
_RELAYED_PARTS = frozenset((TAG_PART_TEXT, TAG_PART_CHARSET, TAG_PART_LANGUAGE))
#: Kopete's charset name, which other clients do not know.
_KOPETE_CHARSET = b"ISO 8859"
_LATIN1_CHARSET = b"ISO-8859-1"

#: The rendezvous capability of a chat invitation (ICBM channel 2).
CHAT_CAPABILITY = bytes.fromhex("748F2420628711D18222444553540000")


@attrs.frozen
class RoomRef:
    """``u16 exchange | s08 cookie | u16 instance``: how every chat SNAC, the
    chat 01,04 and an invitation's TLV 0x2711 name a room."""

    exchange: int
    cookie: bytes
    instance: int

    def pack(self) -> bytes:
        return u16(self.exchange) + string08(self.cookie) + u16(self.instance)

    @classmethod
    def read(cls, reader: Reader) -> RoomRef:
        exchange = reader.u16("room exchange")
        cookie = reader.string08("room cookie")
        return cls(exchange, cookie, reader.u16("room instance"))

    @classmethod
    def unpack(cls, body: bytes) -> RoomRef:
        """Exactly one reference (a whole TLV value); stray bytes are malformed."""
        return read_whole(cls.read, body, "room reference")


@attrs.frozen
class RoomInfo:
    """``RoomRef | u8 detail level | TLV block``: a 0D,08 create/join request,
    a 0D,09 TLV 0x0004 answer and a 0E,02 push all have this shape."""

    ref: RoomRef
    detail: int
    tlvs: TlvList = TlvList()

    @property
    def name(self) -> bytes | None:
        """The room name (TLV 0x00D3) as sent, or None."""
        return self.tlvs.get(TAG_ROOM_NAME)

    def pack(self) -> bytes:
        return self.ref.pack() + bytes((self.detail,)) + self.tlvs.pack_block()

    @classmethod
    def read(cls, reader: Reader) -> RoomInfo:
        ref = RoomRef.read(reader)
        detail = reader.u8("room detail level")
        return cls(ref, detail, TlvList.read_block(reader))

    @classmethod
    def unpack(cls, body: bytes) -> RoomInfo:
        """Exactly one room info; stray bytes after its TLV block are malformed."""
        return read_whole(cls.read, body, "room info")


def room_tlvs(
    *, name: bytes, created_at: int, max_message_length: int, max_occupancy: int
) -> TlvList:
    """A room's TLVs, one list for 0D,09 and 0E,02, in Go's order (notes §4).
    libpurple refuses every send in a room whose 0E,02 lacks 0x00D1 or 0x00DA,
    so the maximum visible length is the maximum message length: libpurple
    compares the same byte count to both."""
    return TlvList(
        (
            Tlv.u16(TAG_ROOM_FLAGS, ROOM_FLAGS),
            Tlv.u32(TAG_CREATED, created_at),
            Tlv.u16(TAG_MAX_MESSAGE_LENGTH, max_message_length),
            Tlv.u16(TAG_MAX_OCCUPANCY, max_occupancy),
            Tlv.u8(TAG_CREATE_PERMS, CREATE_PERMS_EXCHANGE),
            Tlv(TAG_FULL_NAME, name),
            Tlv(TAG_ROOM_NAME, name),
            Tlv.u16(TAG_MAX_VISIBLE_LENGTH, max_message_length),
        )
    )


def exchange_info(exchange: int, *, max_rooms: int, max_name_length: int) -> Tlv:
    """One exchange of a 0D,09 (TLV 0x0003): ``u16 exchange | TLV block``.

    The maximum-rooms TLV comes first: WinAIM 2.x-3.x needs it, and libpurple,
    which reads the block without skipping its count, resynchronises only
    after a first TLV with a 1-byte value (notes §1, §9.1)."""
    tlvs = TlvList(
        (
            Tlv.u8(TAG_EXCHANGE_MAX_ROOMS, max_rooms),
            Tlv.u16(TAG_EXCHANGE_CLASS_PERMS, EXCHANGE_CLASS_PERMS),
            Tlv.u16(TAG_EXCHANGE_MAX_NAME_LENGTH, max_name_length),
            Tlv.u16(TAG_ROOM_FLAGS, ROOM_FLAGS),
            Tlv.u8(TAG_CREATE_PERMS, CREATE_PERMS_EXCHANGE),
            Tlv(TAG_CHARSET, b"us-ascii"),
            Tlv(TAG_LANGUAGE, b"en"),
            Tlv(TAG_CHARSET_2, b"us-ascii"),
            Tlv(TAG_LANGUAGE_2, b"en"),
        )
    )
    return Tlv(TAG_NAV_EXCHANGE, u16(exchange) + tlvs.pack_block())


def pack_nav_rights(max_rooms: int, exchanges: Sequence[Tlv]) -> bytes:
    """0D,09 answering 0D,02 or 0D,03: the maximum concurrent rooms, then the
    exchanges (``exchange_info`` TLVs), as a TLV list."""
    return TlvList((Tlv.u8(TAG_NAV_MAX_ROOMS, max_rooms), *exchanges)).pack_list()


def pack_nav_room_reply(info: RoomInfo) -> bytes:
    """0D,09 answering 0D,04 or 0D,08: one TLV 0x0004 holding the room info."""
    return Tlv(TAG_NAV_ROOM_INFO, info.pack()).pack()


def parse_exchange_request(body: bytes) -> int:
    """0D,03: the u16 exchange asked about, and nothing after it."""
    reader = Reader(body, "exchange info request")
    exchange = reader.u16("exchange")
    reader.expect_end()
    return exchange


def parse_room_info_request(body: bytes) -> tuple[RoomRef, int]:
    """0D,04: ``(room, detail level)`` of its first ``RoomRef | u8 detail``
    group. Shutko lets the group repeat; Go reads one, and so do we: the
    others are checked to be whole groups (anything else is malformed) and
    then ignored, so a request costs one answer."""
    reader = Reader(body, "room info request")
    ref = RoomRef.read(reader)
    detail = reader.u8("room detail level")
    while not reader.at_end():  # each pass consumes at least 6 bytes
        RoomRef.read(reader)
        reader.u8("room detail level")
    return ref, detail


@attrs.frozen
class ChatMessage:
    """0E,05, a member's message as parsed (notes §6): ``cookie | u16 channel
    | TLV list``. ``to_room`` is TLV 0x0001 (libpurple always sends it),
    ``whisper_to`` TLV 0x0002's screen name as sent, ``reflect`` TLV 0x0006
    (send a copy back: libpurple shows its own lines only from it),
    ``auto_response`` TLV 0x0007, ``message`` TLV 0x0005's raw value (b"" if
    absent). Other TLVs are ignored."""

    cookie: bytes
    channel: int
    to_room: bool
    whisper_to: bytes | None
    reflect: bool
    auto_response: bool
    message: bytes

    @property
    def is_whisper(self) -> bool:
        """Go's rule: a whisper names a target and is not sent to the room."""
        return self.whisper_to is not None and not self.to_room

    def pack(self) -> bytes:
        """The 0E,05 body, TLVs in libpurple's order (for tests and the test
        client); TLV 0x0005 is always written."""
        if len(self.cookie) != MESSAGE_COOKIE_SIZE:
            raise ValueError("a chat message cookie is 8 bytes")
        tlvs = []
        if self.to_room:
            tlvs.append(Tlv.empty(TAG_MESSAGE_TO_ROOM))
        if self.whisper_to is not None:
            tlvs.append(Tlv(TAG_MESSAGE_WHISPER_TO, self.whisper_to))
        if self.reflect:
            tlvs.append(Tlv.empty(TAG_MESSAGE_REFLECT))
        if self.auto_response:
            tlvs.append(Tlv.empty(TAG_MESSAGE_AUTO_RESPONSE))
        tlvs.append(Tlv(TAG_MESSAGE_DATA, self.message))
        return self.cookie + u16(self.channel) + TlvList(tlvs).pack_list()

    @classmethod
    def unpack(cls, body: bytes) -> ChatMessage:
        cookie, channel, tlvs = _message_head(body, "chat message")
        return cls(
            cookie=cookie,
            channel=channel,
            to_room=tlvs.has(TAG_MESSAGE_TO_ROOM),
            whisper_to=tlvs.get(TAG_MESSAGE_WHISPER_TO),
            reflect=tlvs.has(TAG_MESSAGE_REFLECT),
            auto_response=tlvs.has(TAG_MESSAGE_AUTO_RESPONSE),
            message=tlvs.get(TAG_MESSAGE_DATA) or b"",
        )


def _message_head(body: bytes, what: str) -> tuple[bytes, int, TlvList]:
    """``cookie | u16 channel | TLVs to the end``: 0E,05 and 0E,06 alike."""
    reader = Reader(body, what)
    cookie = reader.take(MESSAGE_COOKIE_SIZE, "chat message cookie")
    channel = reader.u16("chat message channel")
    return cookie, channel, TlvList.read_list(reader)


def message_parts(message: bytes) -> TlvList:
    """The inner TLVs of a message (TLV 0x0005): text, charset, language, ..."""
    return TlvList.unpack_list(message, "chat message data")


def message_text_length(message: bytes) -> int:
    """Bytes of the text (inner TLV 0x0001, HTML included), what libpurple
    measures against TLVs 0x00D1/0x00DA; 0 without text."""
    text = message_parts(message).get(TAG_PART_TEXT)
    return 0 if text is None else len(text)


def relayed_message(message: bytes) -> bytes:
    """The TLV 0x0005 value to relay: only the inner text, charset and
    language TLVs, in their order (AIM 5.9's others crash macOS AIM 2.x), with
    Kopete's charset ``ISO 8859`` renamed ``ISO-8859-1`` (notes §6)."""
    kept = []
    for tlv in message_parts(message):
        if tlv.tag not in _RELAYED_PARTS:
            continue
        if tlv.tag == TAG_PART_CHARSET and tlv.value == _KOPETE_CHARSET:
            tlv = Tlv(TAG_PART_CHARSET, _LATIN1_CHARSET)
        kept.append(tlv)
    return TlvList(kept).pack_list()


def pack_chat_message_to_client(
    cookie: bytes, channel: int, sender_info: bytes, *, to_room: bool, message: bytes
) -> bytes:
    """0E,06: ``cookie | u16 channel | TLV 0x0003 sender's user-info block |
    [TLV 0x0001 empty] | TLV 0x0005 message``. The TLV order matters (AIM 2.x
    shows no screen names otherwise); channel 0xFFFF becomes 3 (notes §6)."""
    if len(cookie) != MESSAGE_COOKIE_SIZE:
        raise ValueError("a chat message cookie is 8 bytes")
    if channel == MACOS_CHAT_CHANNEL:
        channel = CHAT_CHANNEL
    tlvs = [Tlv(TAG_MESSAGE_SENDER, sender_info)]
    if to_room:
        tlvs.append(Tlv.empty(TAG_MESSAGE_TO_ROOM))
    tlvs.append(Tlv(TAG_MESSAGE_DATA, message))
    return cookie + u16(channel) + TlvList(tlvs).pack_list()


@attrs.frozen
class ChatMessageToClient:
    """0E,06 as a client reads it (for tests and the test client): the
    sender's user-info block, TLV 0x0001's presence, TLV 0x0005's value."""

    cookie: bytes
    channel: int
    sender: UserInfo
    to_room: bool
    message: bytes

    def pack(self) -> bytes:
        return pack_chat_message_to_client(
            self.cookie,
            self.channel,
            self.sender.pack(),
            to_room=self.to_room,
            message=self.message,
        )

    @classmethod
    def unpack(cls, body: bytes) -> ChatMessageToClient:
        cookie, channel, tlvs = _message_head(body, "chat message to client")
        sender = tlvs.get(TAG_MESSAGE_SENDER)
        if sender is None:
            raise MalformedData("chat message to client: no sender (TLV 0x0003)")
        return cls(
            cookie=cookie,
            channel=channel,
            sender=UserInfo.unpack(sender),
            to_room=tlvs.has(TAG_MESSAGE_TO_ROOM),
            message=tlvs.get(TAG_MESSAGE_DATA) or b"",
        )


def pack_users(blocks: Sequence[bytes]) -> bytes:
    """0E,03 (joined) / 0E,04 (left): packed user-info blocks, back to back."""
    return b"".join(blocks)


def parse_users(body: bytes) -> tuple[UserInfo, ...]:
    """0E,03 / 0E,04 as a client reads them: user-info blocks to the end
    (each takes at least 5 bytes, so the body bounds the count)."""
    reader = Reader(body, "chat users")
    users = []
    while not reader.at_end():
        users.append(UserInfo.read(reader))
    return tuple(users)


def parse_chat_invite(data: bytes) -> RoomRef:
    """The room of a chat invitation: rendezvous TLV 0x2711's whole value."""
    return RoomRef.unpack(data)


def pack_chat_invite(ref: RoomRef) -> bytes:
    """Rendezvous TLV 0x2711's value for an invitation to ``ref``."""
    return ref.pack()
