"""Stats (0x000B): clients send usage reports and wait for an acknowledgement."""

from __future__ import annotations

from aimserver.registry import SessionInstance
from aimserver.services.base import HandlerTable, Replies, Reply
from aimserver.wire.codes import FoodGroup, Stats
from aimserver.wire.snac import SnacHeader


class StatsService:
    def handlers(self) -> HandlerTable:
        return {(FoodGroup.STATS, Stats.REPORT_EVENTS): self.report_events}

    def report_events(self, session: SessionInstance, request: SnacHeader, body: bytes) -> Replies:
        """The report's layout is unverified and we keep no statistics; the
        empty 0B,04 is what the client waits for."""
        return [Reply(FoodGroup.STATS, Stats.REPORT_ACK)]
