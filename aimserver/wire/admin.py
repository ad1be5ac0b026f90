"""Admin (0x0007) bodies: the info replies and the confirm reply.

The requests (07,02 query, 07,04 change) are plain TLV lists (``TlvList``);
07,06 has no body.
"""

from __future__ import annotations

import struct

import attrs

from aimserver.wire.reader import Reader
from aimserver.wire.tlv import TlvList

_U16 = struct.Struct("!H")

#: Permissions of a 07,03/07,05: read and write (Go always sends it; what
#: clients do with the others is unknown).
PERMISSIONS_READ_WRITE = 0x0003


@attrs.frozen
class AdminInfoReply:
    """07,03 (info reply) and 07,05 (change reply): u16 permissions, then a
    TLV block with the values asked for, or what changed, or the error."""

    permissions: int
    tlvs: TlvList = attrs.field(factory=TlvList)

    def pack(self) -> bytes:
        return _U16.pack(self.permissions) + self.tlvs.pack_block()

    @classmethod
    def unpack(cls, body: bytes, what: str = "admin info reply") -> AdminInfoReply:
        reader = Reader(body, what)
        permissions = reader.u16("permissions")
        tlvs = TlvList.read_block(reader)
        reader.expect_end()
        return cls(permissions, tlvs)


@attrs.frozen
class ConfirmReply:
    """07,07: u16 status (libpurple reads nothing after it)."""

    status: int

    def pack(self) -> bytes:
        return _U16.pack(self.status)

    @classmethod
    def unpack(cls, body: bytes, what: str = "admin confirm reply") -> ConfirmReply:
        reader = Reader(body, what)
        status = reader.u16("status")
        reader.expect_end()
        return cls(status)
