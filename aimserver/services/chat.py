# -*- test-case-name: tests.test_service_chat,tests.test_e2e_chat -*-
"""Chat rooms: finding a room (for ChatNav and the 01,04 redirect), a chat
connection's join and leave, and the room's messages.

Join order (docs/chat-protocol-notes.md §3): nothing room-related goes to a
chat connection before its client-ready (libpurple opens the conversation
then); at client-ready the joiner gets the roster (itself included), then
the room info (0E,02), then the others get the joiner (0E,03). Old Mac
clients need exactly that order.

A member who blocks another (has it on its deny list) gets none of its
lines or whispers; it still sees it in the room (docs/multisession.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from aimserver.config import ChatConfig
from aimserver.registry import ISessionConnection, SessionInstance, UserRegistry
from aimserver.services.base import HandlerTable, Replies, Reply, SnacError, acting_user
from aimserver.services.chat_rooms import INSTANCE, ChatRefused, ChatRooms, Member
from aimserver.services.events import (
    ChatMessageReceived,
    ChatRoomInfo,
    ChatUsersJoined,
    ChatUsersLeft,
)
from aimserver.services.presence import Presence
from aimserver.services.session import SignOnRefused
from aimserver.store.interfaces import IChatRoomStore, PublicRoom
from aimserver.wire.chat import (
    DETAIL_FULL,
    ERROR_SUBCODE_BAD_ROOM_NAME,
    EXCHANGE_PRIVATE,
    EXCHANGE_PUBLIC,
    ChatMessage,
    RoomInfo,
    RoomRef,
    message_text_length,
    pack_chat_message_to_client,
    pack_users,
    relayed_message,
    room_tlvs,
)
from aimserver.wire.codes import Chat, FoodGroup, OService, SnacErrorCode
from aimserver.wire.errors import MalformedData
from aimserver.wire.roomname import InvalidRoomName, parse_room_cookie, room_cookie, room_name
from aimserver.wire.screenname import decode_screen_name, normalize
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import TlvList

#: TLV 0x0001 of a 01,04 for the chat service: the room (exchange, cookie, instance).
TAG_SERVICE_ROOM = 0x0001
#: Bytes a relayed message may carry besides its text: the TLV headers and
#: the charset and language tags ("unicode-2-0" and "en" take 25).
MAX_MESSAGE_PARTS_OVERHEAD = 128
#: Bytes of user-info blocks one 0E,03 carries (a frame holds 65,535).
MAX_USERS_BODY = 32_768
#: Channels of a chat message: 3; macOS AIM 4.0.9 sends 0xFFFF for it.
CHAT_CHANNELS = frozenset({3, 0xFFFF})


@attrs.frozen
class RoomSpec:
    """A room someone may join: where it is, its display name, its age."""

    exchange: int
    name: str
    created_at: int


class ChatService:
    """Rooms for every session: see the module docstring."""

    log = Logger()

    def __init__(
        self,
        registry: UserRegistry,
        presence: Presence,
        store: IChatRoomStore,
        clock: IReactorTime,
        config: ChatConfig,
    ) -> None:
        self.registry = registry
        self.presence = presence
        self.store = store
        self.clock = clock
        self.config = config
        self.rooms = ChatRooms(config)

    # -- finding rooms ------------------------------------------------------------------

    def resolve(self, exchange: int, raw_name: str, user_key: str) -> RoomSpec | Deferred[RoomSpec]:
        """The room ``raw_name`` names on ``exchange``, made if private and
        new, if ``user_key`` may join it now; ``ChatRefused`` otherwise. A
        public room is asked of the store each time, so one an admin deleted
        takes no new members."""
        try:
            name = room_name(raw_name)
        except InvalidRoomName as e:
            raise ChatRefused(
                SnacErrorCode.INVALID_SNAC, str(e), ERROR_SUBCODE_BAD_ROOM_NAME
            ) from None
        self.rooms.check_join(exchange, name, user_key)
        found = self.lookup(exchange, name, make=True)
        if isinstance(found, Deferred):
            # Checked again: the store read gave other joins their turn.
            return found.addCallback(self._still_joinable, user_key)
        return found

    def _still_joinable(self, spec: RoomSpec, user_key: str) -> RoomSpec:
        self.rooms.check_join(spec.exchange, spec.name, user_key)
        return spec

    def lookup(self, exchange: int, name: str, make: bool) -> RoomSpec | Deferred[RoomSpec]:
        """The room ``name`` (valid) on ``exchange``: a live one, a public
        one from the store, or (``make``) a new private one; else 0x0014."""
        if exchange == EXCHANGE_PUBLIC:
            return self.store.get_public_room(name).addCallback(self._public, exchange)
        if exchange != EXCHANGE_PRIVATE:
            raise ChatRefused(SnacErrorCode.NOT_SUPPORTED_BY_HOST, "unknown exchange")
        room = self.rooms.find(exchange, name)
        if room is not None:
            return RoomSpec(exchange, room.name, room.created_at)
        if not make:
            raise ChatRefused(SnacErrorCode.NO_MATCH, "no such private room")
        return RoomSpec(exchange, name, int(self.clock.seconds()))

    def _public(self, public: PublicRoom | None, exchange: int) -> RoomSpec:
        if public is None:
            raise ChatRefused(SnacErrorCode.NO_MATCH, "no such public room")
        return RoomSpec(exchange, public.name, public.created_at)

    def room_info(self, spec: RoomSpec) -> RoomInfo:
        """What 0D,09 and 0E,02 say of a room, libpurple's two required
        limits (0x00D1, 0x00DA) included."""
        name = spec.name.encode("ascii")
        ref = RoomRef(spec.exchange, room_cookie(spec.exchange, INSTANCE, spec.name), INSTANCE)
        return RoomInfo(
            ref,
            DETAIL_FULL,
            room_tlvs(
                name=name,
                created_at=spec.created_at,
                max_message_length=self.config.max_message_length,
                max_occupancy=self.config.max_occupancy,
            ),
        )

    def resolve_cookie(
        self, cookie: bytes, user_key: str | None, exchange_named: int | None = None
    ) -> RoomSpec | Deferred[RoomSpec]:
        """The room a room cookie (from 0D,09, an invitation, a 01,04 or a
        chat login cookie) names, if ``user_key`` may join it (or, with
        None, only if it exists: 0D,04); ``ChatRefused`` for a cookie this
        server never made, or one the request's own exchange
        (``exchange_named``) contradicts. The request's instance is not
        checked: libpurple's invitations always say 0, and rooms have no
        other."""
        try:
            exchange, instance, name = parse_room_cookie(cookie)
        except MalformedData:
            raise ChatRefused(SnacErrorCode.NO_MATCH, "not a room cookie") from None
        if instance != INSTANCE or exchange_named not in (None, exchange):
            raise ChatRefused(SnacErrorCode.NO_MATCH, "no such room instance or exchange")
        if user_key is None:
            return self.lookup(exchange, name, make=False)
        return self.resolve(exchange, name, user_key)

    # -- 01,04 for the chat service (on BOS) --------------------------------------------

    def service_request(
        self, session: SessionInstance, body: bytes, redirect: Callable[[bytes], Replies]
    ) -> Replies | Deferred[Replies]:
        """01,04 for family 0x000E: the room the client names must be one
        it may join; ``redirect(room cookie)`` makes the 01,05."""
        user = acting_user(self.registry, session)
        tlvs = TlvList.unpack_list(body, "chat service request")
        ref = RoomRef.unpack(tlvs.get(TAG_SERVICE_ROOM) or b"")
        return self.answer(
            lambda: self.resolve_cookie(ref.cookie, user.key, ref.exchange),
            lambda spec: redirect(room_cookie(spec.exchange, INSTANCE, spec.name)),
            session,
        )

    def answer(
        self,
        find: Callable[[], RoomSpec | Deferred[RoomSpec]],
        reply: Callable[[RoomSpec], Replies],
        session: SessionInstance,
    ) -> Replies | Deferred[Replies]:
        """``reply(room)`` for the room ``find()`` finds (now or later): a
        ``ChatRefused`` on the way is logged and answered as a SNAC error."""
        try:
            spec = find()
        except ChatRefused as e:
            raise self._refusal(e, session) from None
        if isinstance(spec, Deferred):
            return spec.addCallback(reply).addErrback(self._refusal_failure, session)
        return reply(spec)

    def _refusal_failure(self, failure: Any, session: SessionInstance) -> Any:
        failure.trap(ChatRefused)
        raise self._refusal(failure.value, session)

    def _refusal(self, refused: ChatRefused, session: SessionInstance) -> SnacError:
        self._log_refused(session, refused)
        return SnacError(refused.code, refused.subcode)

    # -- a chat connection's life -------------------------------------------------------

    def attach(
        self, session: SessionInstance, connection: ISessionConnection, cookie: bytes
    ) -> Member | Deferred[Member]:
        """A chat connection signed on with a login cookie for the room
        ``cookie``: its member, placed in the room (displacing the user's
        other member there, §17). ``SignOnRefused`` when it may not join."""
        user = self.registry.user_of(session)
        if user is None:
            raise SignOnRefused()
        try:
            spec = self.resolve_cookie(cookie, user.key)
        except ChatRefused as e:
            self._log_refused(session, e)
            raise SignOnRefused() from None
        if isinstance(spec, Deferred):
            return spec.addCallbacks(
                self._place, self._refused_signon, (session, connection), None, (session,)
            )
        return self._place(spec, session, connection)

    def _refused_signon(self, failure: Any, session: SessionInstance) -> Any:
        failure.trap(ChatRefused)
        self._log_refused(session, failure.value)
        raise SignOnRefused()

    def _log_refused(self, session: SessionInstance, refused: ChatRefused) -> None:
        self.log.info(
            "instance {instance}: chat refused: {reason}",
            instance=session.instance_id,
            reason=refused.reason,
        )

    def _place(
        self, spec: RoomSpec, session: SessionInstance, connection: ISessionConnection
    ) -> Member:
        user = self.registry.user_of(session)
        if user is None or connection.closing:
            raise SignOnRefused()
        try:
            member, replaced = self.rooms.join(
                spec.exchange, spec.name, spec.created_at, user, session, connection
            )
        except ChatRefused as e:
            self._log_refused(session, e)
            raise SignOnRefused() from None
        room = member.room
        if room.info_event is None:
            room.info_event = ChatRoomInfo(self.room_info(spec).pack())
        if replaced is not None:
            # MULTISESSION.md §17: one session of a user per room.
            self.log.info(
                "{screen_name}: instance {new} took instance {old}'s place in room {room}",
                screen_name=user.screen_name,
                new=session.instance_id,
                old=replaced.instance_id,
                room=room.name,
            )
            replaced.connection.disconnect(None)
        return member

    def member_ready(self, member: Member, request: SnacHeader, body: bytes) -> None:
        """01,02 on a chat connection: the joiner gets the roster and the
        room info, then the others get the joiner (once per stay of the user)."""
        if member.ready or member.room.members.get(member.user_key) is not member:
            return
        member.ready = True
        room = member.room
        present = room.ready_members()
        info = self.presence.info_block
        for blocks in _frame_sized([info(m.user) for m in present]):
            member.connection.send_event(ChatUsersJoined(pack_users(blocks)))
        member.connection.send_event(room.info_event)
        if not member.announced:
            member.announced = True
            others = [m for m in present if m is not member]
            self.registry.deliver(others, ChatUsersJoined(info(member.user)))

    def member_gone(self, member: Member) -> None:
        """Its chat connection is gone: the others see the user leave,
        unless another of its sessions took its place."""
        if not self.rooms.leave(member) or not member.announced:
            return
        room = member.room
        self.registry.deliver(
            room.ready_members(), ChatUsersLeft(self.presence.info_block(member.user))
        )

    # -- messages -----------------------------------------------------------------------

    def channel_message(self, member: Member, request: SnacHeader, body: bytes) -> Replies:
        """0E,05 -> 0E,06 to everyone else in the room (a whisper: to its
        target only), and back to the sender when it asks for reflection,
        under its request id (libpurple shows its own lines only so)."""
        if not member.ready or member.room.members.get(member.user_key) is not member:
            raise SnacError(SnacErrorCode.NOT_LOGGED_ON)
        message = ChatMessage.unpack(body)
        if message.channel not in CHAT_CHANNELS or not message.message:
            raise SnacError(SnacErrorCode.BUSTED_SNAC_PAYLOAD)
        length = message_text_length(message.message)
        relayed = relayed_message(message.message)
        if length > self.config.max_message_length or (
            len(relayed) > length + MAX_MESSAGE_PARTS_OVERHEAD
        ):
            # Text over the room's limit, or a charset or language tag no
            # client sends (long ones could make the 0E,06 overflow a frame).
            self.log.info(
                "{screen_name}: refused a chat message of {length} bytes of text"
                " ({size} relayed), over {limit}",
                screen_name=member.user.screen_name,
                length=length,
                size=len(relayed),
                limit=self.config.max_message_length,
            )
            raise SnacError(SnacErrorCode.REPLY_TOO_BIG)
        room = member.room
        sender_key = member.user_key
        if message.whisper_to is not None and not message.to_room:
            target = room.members.get(normalize(decode_screen_name(message.whisper_to)))
            if target is None or not target.ready or target is member:
                raise SnacError(SnacErrorCode.NOT_LOGGED_ON)
            recipients = [target] if _hears(target, sender_key) else []
        else:
            recipients = [
                m
                for m in room.members.values()
                if m.ready and m is not member and _hears(m, sender_key)
            ]
        packed = pack_chat_message_to_client(
            message.cookie,
            message.channel,
            self.presence.info_block(member.user),
            to_room=message.to_room,
            message=relayed,
        )
        self.registry.deliver(recipients, ChatMessageReceived(packed))
        if message.reflect:
            return [Reply(FoodGroup.CHAT, Chat.CHANNEL_MSG_TO_CLIENT, packed)]
        return []

    # -- the chat connection's handler table --------------------------------------------

    def handlers(self, oservice: HandlerTable) -> HandlerTable:
        """What a chat connection handles; every handler takes its member.
        ``oservice`` is the service connections' OService table, whose
        handlers take a session."""
        table: HandlerTable = {key: _on_session(handler) for key, handler in oservice.items()}
        table[FoodGroup.OSERVICE, OService.CLIENT_READY] = self.member_ready
        table[FoodGroup.CHAT, Chat.CHANNEL_MSG_TO_HOST] = self.channel_message
        return table


def _frame_sized(blocks: list[bytes]) -> list[list[bytes]]:
    """``blocks`` in runs that each fit one SNAC: a roster of a full room of
    members with long user-info blocks would not fit in one frame (libpurple
    reads any number of 0E,03s)."""
    runs: list[list[bytes]] = [[]]
    size = 0
    for block in blocks:
        if size + len(block) > MAX_USERS_BODY and runs[-1]:
            runs.append([])
            size = 0
        runs[-1].append(block)
        size += len(block)
    return runs


def _hears(member: Member, sender_key: str) -> bool:
    privacy = member.user.privacy
    return privacy is None or sender_key not in privacy.deny


def _on_session(handler: Callable[..., Any]) -> Callable[..., Any]:
    def on_member(member: Member, request: SnacHeader, body: bytes) -> Any:
        return handler(member.session, request, body)

    on_member.__qualname__ = getattr(handler, "__qualname__", repr(handler))
    return on_member
