"""PermitDeny (0x0009): the rights reply for client-side privacy lists.

Editing the lists (09,05-09,08) comes with the privacy work of the buddy-list
issue; until then those SNACs get the generic "invalid SNAC" error.
"""

from __future__ import annotations

from aimserver.registry import SessionInstance
from aimserver.services.base import HandlerTable, Replies, Reply
from aimserver.wire.codes import FoodGroup, PermitDeny
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList

MAX_PERMITS = 200
MAX_DENIES = 200


class PermitDenyService:
    def handlers(self) -> HandlerTable:
        return {(FoodGroup.PERMIT_DENY, PermitDeny.RIGHTS_QUERY): self.rights_query}

    def rights_query(self, session: SessionInstance, request: SnacHeader, body: bytes) -> Replies:
        body = TlvList(
            (Tlv.u16(0x0001, MAX_PERMITS), Tlv.u16(0x0002, MAX_DENIES), Tlv.u16(0x0003, 0))
        ).pack_list()
        return [Reply(FoodGroup.PERMIT_DENY, PermitDeny.RIGHTS_REPLY, body)]
