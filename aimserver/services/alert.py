"""Alert (0x0018): e-mail and alert notifications, on a service connection.

AIM 5.x and libpurple ask for this service at sign-on (01,04 for 0x18). The
server has no mail to announce: it accepts the client's capability reports
(18,06, 18,16), which need no answer, so the client settles. Being a real
service connection, it also shows the secondary-connection path: the cookie
names the BOS session instance it belongs to, its SNACs count against that
user's rate limits, and it closes with that session.
"""

from __future__ import annotations

from aimserver.registry import SessionInstance
from aimserver.services.base import HandlerTable
from aimserver.wire.codes import FoodGroup
from aimserver.wire.snac import SnacHeader

NOTIFY_CAPABILITIES = 0x06
NOTIFY_DISPLAY_CAPABILITIES = 0x16
FAMILIES = (FoodGroup.OSERVICE, FoodGroup.ALERT)


class AlertService:
    def handlers(self) -> HandlerTable:
        return {
            (FoodGroup.ALERT, NOTIFY_CAPABILITIES): self.capabilities,
            (FoodGroup.ALERT, NOTIFY_DISPLAY_CAPABILITIES): self.capabilities,
        }

    def capabilities(self, session: SessionInstance, request: SnacHeader, body: bytes) -> None:
        """Fire-and-forget; the layout is unverified and nothing depends on it."""
