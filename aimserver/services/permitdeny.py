"""PermitDeny (0x0009): the rights reply and AIM 3-4's edits of the permit
and deny lists (09,05-09,08). The lists are the feedbag's permit and deny
items, one model for both ways of editing them; the feedbag service applies
the edits (``FeedbagService.legacy_list_edit``).
"""

from __future__ import annotations

from aimserver.registry import SessionInstance
from aimserver.services.base import HandlerTable, Replies, Reply
from aimserver.services.feedbag import FeedbagService
from aimserver.wire.codes import FoodGroup, PermitDeny
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList

MAX_PERMITS = 200
MAX_DENIES = 200


class PermitDenyService:
    def __init__(self, feedbag: FeedbagService) -> None:
        self.feedbag = feedbag

    def handlers(self) -> HandlerTable:
        f = FoodGroup.PERMIT_DENY
        edit = self.feedbag.legacy_list_edit
        return {
            (f, PermitDeny.RIGHTS_QUERY): self.rights_query,
            (f, PermitDeny.ADD_PERMIT): edit,
            (f, PermitDeny.DEL_PERMIT): edit,
            (f, PermitDeny.ADD_DENY): edit,
            (f, PermitDeny.DEL_DENY): edit,
        }

    def rights_query(self, session: SessionInstance, request: SnacHeader, body: bytes) -> Replies:
        body = TlvList(
            (Tlv.u16(0x0001, MAX_PERMITS), Tlv.u16(0x0002, MAX_DENIES), Tlv.u16(0x0003, 0))
        ).pack_list()
        return [Reply(FoodGroup.PERMIT_DENY, PermitDeny.RIGHTS_REPLY, body)]
