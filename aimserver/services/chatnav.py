# -*- test-case-name: tests.test_service_chat,tests.test_e2e_chat -*-
"""ChatNav (0x000D), a service connection of the session: the exchanges
and their limits, and finding or making a room by name (0D,08), which a
client does before it asks for the room's chat connection (01,04).

Every refusal is a 0D,01: libpurple shows it ("Could not join chat room"),
and for a bad name (TLV 0x0008 subcode 0x0033) says "Invalid chat room name".
Replies echo the request id: libpurple matches them by it.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from aimserver.registry import SessionInstance, UserRegistry
from aimserver.services.base import HandlerTable, Replies, Reply, SnacError, acting_user
from aimserver.services.chat import ChatService, RoomSpec
from aimserver.services.chat_rooms import EXCHANGES
from aimserver.wire.chat import (
    TAG_ROOM_NAME,
    RoomInfo,
    exchange_info,
    pack_nav_rights,
    pack_nav_room_reply,
    parse_exchange_request,
    parse_room_info_request,
)
from aimserver.wire.codes import ChatNav, FoodGroup, SnacErrorCode
from aimserver.wire.roomname import MAX_ROOM_NAME_LENGTH
from aimserver.wire.snac import SnacHeader

#: The families a ChatNav connection serves (its 01,03).
FAMILIES = (FoodGroup.CHAT_NAV, FoodGroup.OSERVICE)


class ChatNavService:
    log = Logger()

    def __init__(self, registry: UserRegistry, chat: ChatService) -> None:
        self.registry = registry
        self.chat = chat
        max_rooms = chat.config.max_rooms_per_user
        self._exchanges = {
            exchange: exchange_info(
                exchange, max_rooms=max_rooms, max_name_length=MAX_ROOM_NAME_LENGTH
            )
            for exchange in EXCHANGES
        }
        self._rights = pack_nav_rights(max_rooms, list(self._exchanges.values()))

    def handlers(self) -> HandlerTable:
        f = FoodGroup.CHAT_NAV
        return {
            (f, ChatNav.RIGHTS_QUERY): self.rights_query,
            (f, ChatNav.EXCHANGE_INFO_QUERY): self.exchange_info_query,
            (f, ChatNav.ROOM_INFO_QUERY): self.room_info_query,
            (f, ChatNav.CREATE_ROOM): self.create_room,
        }

    def rights_query(self, session: SessionInstance, request: SnacHeader, body: bytes) -> Replies:
        """0D,02: how many rooms a user may be in, and both exchanges."""
        return [Reply(FoodGroup.CHAT_NAV, ChatNav.NAV_INFO, self._rights)]

    def exchange_info_query(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies:
        """0D,03: one exchange (AIM 2.x-3.5 ask before they chat)."""
        exchange = self._exchanges.get(parse_exchange_request(body))
        if exchange is None:
            raise SnacError(SnacErrorCode.NOT_SUPPORTED_BY_HOST)
        rights = pack_nav_rights(self.chat.config.max_rooms_per_user, [exchange])
        return [Reply(FoodGroup.CHAT_NAV, ChatNav.NAV_INFO, rights)]

    def room_info_query(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies | Deferred[Replies]:
        """0D,04: a room's info, by its cookie: a live room or a public one."""
        acting_user(self.registry, session)
        ref, _detail = parse_room_info_request(body)
        return self.chat.answer(
            lambda: self.chat.resolve_cookie(ref.cookie, None, ref.exchange), self._reply, session
        )

    def create_room(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies | Deferred[Replies]:
        """0D,08: find a room by name on an exchange, or make it (private
        rooms only; they exist once someone is in them)."""
        user = acting_user(self.registry, session)
        wanted = RoomInfo.unpack(body)
        raw_name = wanted.tlvs.get(TAG_ROOM_NAME)
        if raw_name is None:
            raise SnacError(SnacErrorCode.BUSTED_SNAC_PAYLOAD)
        try:
            text = raw_name.decode("ascii")
        except UnicodeDecodeError:
            text = "\ufffd"  # refused as a bad name
        exchange = wanted.ref.exchange
        return self.chat.answer(
            lambda: self.chat.resolve(exchange, text, user.key), self._reply, session
        )

    def _reply(self, spec: RoomSpec) -> Replies:
        body = pack_nav_room_reply(self.chat.room_info(spec))
        return [Reply(FoodGroup.CHAT_NAV, ChatNav.NAV_INFO, body)]
