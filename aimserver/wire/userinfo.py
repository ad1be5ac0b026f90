"""The user-info block: how a user is described in arrivals, IMs and self info."""

from __future__ import annotations

import struct

import attrs

from aimserver.wire.reader import Reader, read_whole, string08
from aimserver.wire.screenname import decode_screen_name, encode_screen_name
from aimserver.wire.tlv import TlvList

# Attribute tags (OSCAR.md §7).
TAG_USER_CLASS = 0x0001
TAG_SIGNON_TIME = 0x0003
TAG_IDLE_MINUTES = 0x0004
TAG_MEMBER_SINCE = 0x0005
TAG_STATUS = 0x0006
TAG_CAPABILITIES = 0x000D
TAG_SESSION_LENGTH = 0x000F
TAG_BART_INFO = 0x001D

# User-class bits (OSCAR.md §7.1).
CLASS_ADMINISTRATOR = 0x0002
CLASS_AOL = 0x0004
CLASS_FREE = 0x0010
CLASS_UNAVAILABLE = 0x0020
CLASS_ICQ = 0x0040
CLASS_BOT = 0x0400

STATUS_INVISIBLE = 0x0100
#: The status word's away bit (01,1E TLV 0x06): libpurple sets it with its 02,04.
STATUS_AWAY = 0x0001


@attrs.frozen
class UserInfo:
    screen_name: str
    warning_level: int = 0
    tlvs: TlvList = TlvList()

    def pack(self) -> bytes:
        return (
            string08(encode_screen_name(self.screen_name))
            + struct.pack("!H", self.warning_level)
            + self.tlvs.pack_block()
        )

    @classmethod
    def read(cls, reader: Reader) -> UserInfo:
        name = decode_screen_name(reader.string08("user-info screen name"))
        warning = reader.u16("user-info warning level")
        return cls(name, warning, TlvList.read_block(reader))

    @classmethod
    def unpack(cls, data: bytes) -> UserInfo:
        return read_whole(cls.read, data, "user-info block")
