# -*- test-case-name: tests.test_service_buddy -*-
"""Buddy (0x0003): client-side buddy lists (03,04 / 03,05) and their rights.

A client-side list belongs to the session that sent it; the registry's
watcher index turns it into "who is told when this user arrives or leaves".
"""

from __future__ import annotations

import functools

from twisted.logger import Logger

from aimserver.registry import MAX_WATCHERS, SessionInstance, UserRegistry
from aimserver.services.base import HandlerTable, Replies, Reply, SnacError
from aimserver.services.presence import Presence
from aimserver.wire.codes import Buddy, FoodGroup, SnacErrorCode
from aimserver.wire.reader import Reader
from aimserver.wire.screenname import decode_screen_name, is_valid_screen_name, normalize
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList

MAX_BUDDIES = 1000
MAX_TEMP_BUDDIES = 160


@functools.cache
def rights_reply() -> bytes:
    return TlvList(
        (
            Tlv.u16(0x0001, MAX_BUDDIES),
            Tlv.u16(0x0002, MAX_WATCHERS),
            Tlv.u16(0x0003, 0),
            Tlv.u16(0x0004, MAX_TEMP_BUDDIES),
        )
    ).pack_list()


def parse_names(body: bytes, what: str) -> list[str]:
    """string08 screen names until the end, normalised."""
    reader = Reader(body, what)
    names = []
    while not reader.at_end():
        name = normalize(decode_screen_name(reader.string08("screen name")))
        if name:
            names.append(name)
    return names


class BuddyService:
    log = Logger()

    def __init__(self, registry: UserRegistry, presence: Presence) -> None:
        self.registry = registry
        self.presence = presence

    def handlers(self) -> HandlerTable:
        f = FoodGroup.BUDDY
        return {
            (f, Buddy.RIGHTS_QUERY): self.rights_query,
            (f, Buddy.ADD_BUDDIES): self.add_buddies,
            (f, Buddy.DEL_BUDDIES): self.del_buddies,
            (f, Buddy.ADD_TEMP_BUDDIES): self.add_buddies,
            (f, Buddy.DEL_TEMP_BUDDIES): self.del_buddies,
        }

    def rights_query(self, session: SessionInstance, request: SnacHeader, body: bytes) -> Replies:
        return [Reply(FoodGroup.BUDDY, Buddy.RIGHTS_REPLY, rights_reply())]

    def add_buddies(self, session: SessionInstance, request: SnacHeader, body: bytes) -> None:
        """Watch these users; arrivals for the online ones if the client is
        ready. A name that cannot be a screen name (up to 255 characters fit
        the field) is not watched: nobody can sign on with it."""
        listed = parse_names(body, "add buddies")
        names = [name for name in listed if is_valid_screen_name(name)]
        if len(names) < len(listed):
            self.log.info(
                "{user} (instance {instance}) listed {count} names that cannot be"
                " screen names: not watched",
                user=session.user_key,
                instance=session.instance_id,
                count=len(listed) - len(names),
            )
        if len(session.buddies) + len(set(names) - session.buddies) > MAX_BUDDIES:
            raise SnacError(SnacErrorCode.LIST_OVERFLOW)
        added = self.registry.watch(session, names)
        self.presence.send_arrivals_to(session, added)

    def del_buddies(self, session: SessionInstance, request: SnacHeader, body: bytes) -> None:
        self.registry.unwatch(session, parse_names(body, "remove buddies"))
