# -*- test-case-name: tests.test_service_feedbag -*-
"""Feedbag (0x0013): the server-stored buddy list, read side.

The list is user-level and lives in the store. This module answers the
sign-on queries (rights, query, query-if-modified) and "use", after which the
stored buddy items govern the session's presence subscriptions. Edits
(13,08-13,0A) come with the buddy-list issue.
"""

from __future__ import annotations

import functools
import struct

from twisted.internet import defer

from aimserver.registry import SessionInstance, UserRegistry
from aimserver.services.base import HandlerTable, Replies, Reply, acting_user
from aimserver.services.presence import Presence
from aimserver.store.interfaces import Feedbag as StoredFeedbag
from aimserver.store.interfaces import IFeedbagStore
from aimserver.wire.codes import Feedbag, FoodGroup
from aimserver.wire.feedbag import WireFeedbagItem, pack_not_modified, pack_reply_parts
from aimserver.wire.reader import Reader
from aimserver.wire.screenname import normalize
from aimserver.wire.snac import FLAG_MORE_REPLIES, SnacHeader
from aimserver.wire.tlv import Tlv, TlvList

CLASS_BUDDY = 0x0000
#: Max items per class ID, indexed by class (13,03 TLV 0x0004): buddies,
#: groups, permits, denies, PD info, buddy prefs, non-buddies, client prefs,
#: ... generous where clients keep many, 1 where only one makes sense.
MAX_ITEMS_PER_CLASS = (
    1000,
    200,
    200,
    200,
    1,
    1,
    50,
    3,
    128,
    255,
    20,
    200,
    1,
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    200,
)


@functools.cache
def rights_reply() -> bytes:
    return TlvList(
        (
            Tlv.u16(0x0003, 200),
            Tlv(0x0004, struct.pack(f"!{len(MAX_ITEMS_PER_CLASS)}H", *MAX_ITEMS_PER_CLASS)),
            Tlv.u16(0x0005, 200),
            Tlv.u16(0x0006, 200),
        )
    ).pack_list()


def to_wire(feedbag: StoredFeedbag) -> list[WireFeedbagItem]:
    return [
        WireFeedbagItem(i.name.encode("utf-8"), i.group_id, i.item_id, i.class_id, i.attributes)
        for i in feedbag.items
    ]


class FeedbagService:
    def __init__(self, registry: UserRegistry, presence: Presence, store: IFeedbagStore) -> None:
        self.registry = registry
        self.presence = presence
        self.store = store

    def handlers(self) -> HandlerTable:
        f = FoodGroup.FEEDBAG
        return {
            (f, Feedbag.RIGHTS_QUERY): self.rights_query,
            (f, Feedbag.QUERY): self.query,
            (f, Feedbag.QUERY_IF_MODIFIED): self.query_if_modified,
            (f, Feedbag.USE): self.use,
        }

    def rights_query(self, session: SessionInstance, request: SnacHeader, body: bytes) -> Replies:
        return [Reply(FoodGroup.FEEDBAG, Feedbag.RIGHTS_REPLY, rights_reply())]

    def _screen_name(self, session: SessionInstance) -> str:
        return acting_user(self.registry, session).screen_name

    @staticmethod
    def _list_replies(feedbag: StoredFeedbag) -> Replies:
        parts = pack_reply_parts(to_wire(feedbag), feedbag.last_modified)
        return [
            Reply(
                FoodGroup.FEEDBAG,
                Feedbag.REPLY,
                part,
                FLAG_MORE_REPLIES if n < len(parts) - 1 else 0,
            )
            for n, part in enumerate(parts)
        ]

    def query(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> defer.Deferred[Replies]:
        return self.store.get_feedbag(self._screen_name(session)).addCallback(self._list_replies)

    def query_if_modified(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> defer.Deferred[Replies]:
        """13,0F when the client's cached time and count both match, else the list."""
        reader = Reader(body, "feedbag query if modified")
        cached_time = reader.u32("last modified")
        cached_count = reader.u16("item count")

        def answer(feedbag: StoredFeedbag) -> Replies:
            if feedbag.last_modified == cached_time and len(feedbag.items) == cached_count:
                body = pack_not_modified(feedbag.last_modified, len(feedbag.items))
                return [Reply(FoodGroup.FEEDBAG, Feedbag.REPLY_NOT_MODIFIED, body)]
            return self._list_replies(feedbag)

        return self.store.get_feedbag(self._screen_name(session)).addCallback(answer)

    def use(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> defer.Deferred[None]:
        """From now on the stored buddy items are this session's buddy list."""

        def activate(feedbag: StoredFeedbag) -> None:
            if session.closed:
                # Gone while the list was read: it must not re-enter the index.
                return
            session.uses_feedbag = True
            buddies = [normalize(i.name) for i in feedbag.items if i.class_id == CLASS_BUDDY]
            added = self.registry.watch(session, buddies)
            self.presence.send_arrivals_to(session, added)

        return self.store.get_feedbag(self._screen_name(session)).addCallback(activate)
