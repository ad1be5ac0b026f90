# -*- test-case-name: tests.test_e2e_web -*-
"""Chat rooms for browser sessions: join, talk, leave.

A browser session's place in a room is what a classic client's chat
connection is: a service connection of its session, signed on with a chat
cookie from the session service (so the per-user room limit, §17's one
session per room and the room's limits all apply), placed by the chat
service, and handed the room's events. ``RoomMember`` is that connection:
it renders the room's events onto its browser session's event stream
(``room_joined``, ``room_left``, ``room_message``), numbered with the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from aimserver.registry import ISessionConnection
from aimserver.services.base import SnacError
from aimserver.services.chat_rooms import ChatRefused, Member
from aimserver.services.events import (
    ChatMessageReceived,
    ChatUsersJoined,
    ChatUsersLeft,
    Event,
)
from aimserver.services.session import SignOnRefused
from aimserver.web import messages
from aimserver.web.messages import WebError, message_cookie
from aimserver.wire.chat import (
    CHAT_CHANNEL,
    EXCHANGE_PRIVATE,
    ChatMessage,
    ChatMessageToClient,
    parse_users,
)
from aimserver.wire.codes import Chat, FoodGroup, OService
from aimserver.wire.errors import MalformedData
from aimserver.wire.roomname import InvalidRoomName, room_cookie, room_key, room_name
from aimserver.wire.screenname import encode_screen_name
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList

if TYPE_CHECKING:
    from aimserver.web.service import WebService
    from aimserver.web.session import WebSession

#: The rooms' one instance (chat.INSTANCE).
INSTANCE = 0


@implementer(ISessionConnection)
class RoomMember:
    """A browser session's place in one room."""

    def __init__(self, web: WebSession, room: str) -> None:
        self.web = web
        self.room = room
        self.member: Member | None = None
        self._closing = False

    @property
    def closing(self) -> bool:
        return self._closing

    def send_event(self, event: Event) -> None:
        if self._closing:
            return
        try:
            rendered = _render(event, self.room)
        except MalformedData:
            return
        if rendered is not None:
            self.web.push(*rendered)

    def disconnect(self, reason: int | None) -> None:
        """The chat service or the session closes this place (another of
        the user's sessions took it, §17, or the session ends)."""
        if self._closing:
            return
        self.web.push("room_left", {"room": self.room, "names": [], "you": True})
        if self.web.leave_room is not None:
            self.web.leave_room(self)


def _render(event: Event, room: str) -> tuple[str, dict[str, Any]] | None:
    if isinstance(event, ChatUsersJoined):
        names = [u.screen_name for u in parse_users(event.packed)]
        return "room_joined", {"room": room, "names": names}
    if isinstance(event, ChatUsersLeft):
        names = [u.screen_name for u in parse_users(event.packed)]
        return "room_left", {"room": room, "names": names, "you": False}
    if isinstance(event, ChatMessageReceived):
        message = ChatMessageToClient.unpack(event.packed)
        parts = TlvList.unpack_list(message.message, "chat message parts")
        return "room_message", {
            "room": room,
            "from": message.sender.screen_name,
            "text": _chat_text(parts.get(0x0001) or b"", parts.get(0x0002) or b""),
            "whisper": not message.to_room,
        }
    return None


def _members(place: RoomMember) -> list[str]:
    """The screen names in ``place``'s room, as its roster shows them."""
    member = place.member
    if member is None:
        return []
    return [m.user.screen_name for m in member.room.ready_members()]


def _key(name: str) -> str:
    """Names that are one room are one key (any case and spacing), as the
    chat service matches them; a name no room can have keys as itself."""
    try:
        return room_key(room_name(name))
    except InvalidRoomName:
        return name.lower()


def _chat_text(raw: bytes, charset: bytes) -> str:
    name = charset.decode("ascii", "replace").lower()
    if name.startswith("unicode"):
        return raw.decode("utf-16-be", "replace")
    if name.startswith(("iso-8859", "iso 8859")):
        return raw.decode("latin-1")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class Rooms:
    """The chat commands of the browser protocol, for ``WebService``."""

    def __init__(self, service: WebService) -> None:
        self.service = service
        self.server = service.server

    async def join(self, web: WebSession, parameters: dict[str, Any]) -> dict[str, Any]:
        """Find or make the room (exchange 4, as a classic client's 0D,08),
        then sign a place in it on as a chat connection would."""
        session = web.instance
        assert session is not None
        name = parameters["room"]
        key = _key(name)
        if key in web.rooms:
            # Already there (a reloaded page taking its rooms back): who is
            # in it, since the roster event came to the page before.
            place = web.rooms[key]
            return {"room": place.room, "members": _members(place)}
        self.service.check_rate(web, FoodGroup.CHAT_NAV, 0x0008)
        chat = self.server.chat
        user = self.server.registry.user_of(session)
        if user is None:
            raise WebError(messages.SESSION_ERROR, "not signed on")
        try:
            spec = chat.resolve(parameters.get("exchange", EXCHANGE_PRIVATE), name, user.key)
            if isinstance(spec, Deferred):
                spec = await spec
        except ChatRefused as e:
            raise WebError(messages.SESSION_ERROR, f"cannot join {name}: {e.reason}") from None
        redirect = self.server.sessions.redirect(
            session, int(FoodGroup.CHAT), room_cookie(spec.exchange, INSTANCE, spec.name)
        )
        if redirect is None:
            raise WebError(messages.SESSION_ERROR, "chat rooms are not available")
        place = RoomMember(web, spec.name)
        try:
            attached = self.server.sessions.sign_on(
                redirect[1], (int(FoodGroup.CHAT),), place, "web"
            )
            if isinstance(attached, Deferred):
                attached = await attached
            member = chat.attach(attached.session, place, attached.room)
            if isinstance(member, Deferred):
                member = await member
        except SignOnRefused:
            self.server.sessions.connection_lost(session, place)
            raise WebError(
                messages.SESSION_ERROR, f"cannot join {name}: full, or too many rooms"
            ) from None
        place.member = member
        web.rooms[_key(spec.name)] = place
        header = SnacHeader(FoodGroup.OSERVICE, OService.CLIENT_READY, 0, 0)
        chat.member_ready(member, header, b"")
        return {"room": spec.name, "members": _members(place)}

    def leave(self, place: RoomMember) -> None:
        """Out of the room: the others see the user leave (unless another
        of its sessions took the place), and the session has one room less."""
        if place.closing:
            return
        place._closing = True
        web = place.web
        if web.rooms.get(_key(place.room)) is place:
            del web.rooms[_key(place.room)]
        member, place.member = place.member, None
        session = web.instance
        if session is not None:
            self.server.sessions.connection_lost(session, place)
        if member is not None:
            self.server.chat.member_gone(member)

    def leave_named(self, web: WebSession, parameters: dict[str, Any]) -> dict[str, Any]:
        place = web.rooms.get(_key(parameters["room"]))
        if place is None:
            raise WebError(messages.SESSION_ERROR, f"not in {parameters['room']}")
        self.leave(place)
        return {}

    def leave_all(self, web: WebSession) -> None:
        for place in list(web.rooms.values()):
            self.leave(place)

    async def say(self, web: WebSession, parameters: dict[str, Any]) -> dict[str, Any]:
        place = web.rooms.get(_key(parameters["room"]))
        if place is None or place.member is None:
            raise WebError(messages.SESSION_ERROR, f"not in {parameters['room']}")
        session = web.instance
        assert session is not None
        self.service.check_rate(web, FoodGroup.CHAT, Chat.CHANNEL_MSG_TO_HOST)
        text = parameters["text"]
        if text.isascii():
            parts = [Tlv(0x0001, text.encode("ascii")), Tlv(0x0002, b"us-ascii")]
        else:
            parts = [Tlv(0x0001, text.encode("utf-16-be")), Tlv(0x0002, b"unicode-2-0")]
        whisper_to = parameters.get("to")
        body = ChatMessage(
            message_cookie(),
            CHAT_CHANNEL,
            to_room=whisper_to is None,
            whisper_to=None if whisper_to is None else encode_screen_name(whisper_to),
            reflect=True,
            auto_response=False,
            message=TlvList.of([*parts, Tlv(0x0003, b"en")]).pack_list(),
        ).pack()
        header = SnacHeader(FoodGroup.CHAT, Chat.CHANNEL_MSG_TO_HOST, 0, 0)
        try:
            replies = self.server.chat.channel_message(place.member, header, body)
        except SnacError as e:
            raise WebError(messages.SESSION_ERROR, f"not said ({e.code:#06x})") from None
        # The reflected copy (asked for, as libpurple does): the page shows
        # its own line from it, in order with the others'.
        for reply in replies:
            place.send_event(ChatMessageReceived(reply.body))
        return {}
