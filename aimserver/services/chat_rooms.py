# -*- test-case-name: tests.test_service_chat_rooms -*-
"""Who is in which chat room: the rooms that have members, their members,
and the limits on both. Pure state, no sockets and no store: the chat
services (``services/chat.py``) decide what to send.

A room exists here while it has members (signed on to it, or signing on):
a private room (exchange 4) is gone with its last member; a public one
(exchange 5) lives on in the store and comes back with its next member.
One user has at most one member per room (MULTISESSION.md §17): a second
session joining replaces the first's member in place, so the user never
leaves the room in between.
"""

from __future__ import annotations

from typing import Any

import attrs

from aimserver.config import ChatConfig
from aimserver.registry import ISessionConnection, SessionInstance, User
from aimserver.wire.chat import EXCHANGE_PRIVATE, EXCHANGE_PUBLIC
from aimserver.wire.codes import SnacErrorCode
from aimserver.wire.roomname import room_cookie, room_key

#: The exchanges this server has: rooms users make, rooms an admin makes.
EXCHANGES = (EXCHANGE_PRIVATE, EXCHANGE_PUBLIC)
#: Rooms have one instance: no overflow copies of a full room.
INSTANCE = 0


class ChatRefused(Exception):
    """A join (or a room lookup) refused: answered with ``code`` (and TLV
    0x0008 ``subcode``) in a 0D,01 or 01,01, or by closing a chat connection."""

    def __init__(self, code: int, reason: str, subcode: int | None = None) -> None:
        super().__init__(code, reason, subcode)
        self.code = code
        self.reason = reason
        self.subcode = subcode


@attrs.define(eq=False, slots=True)
class Member:
    """One user in one room, through one chat connection of one session.
    Quacks like a session for ``UserRegistry.deliver`` (``connection``,
    ``instance_id``)."""

    room: Room
    user: User
    session: SessionInstance
    connection: ISessionConnection
    #: Others see the user in the room (0E,03 sent): from its client-ready,
    #: or from the member it replaced.
    announced: bool = False
    #: It sent client-ready: it gets the room's pushes and may talk.
    ready: bool = False

    @property
    def instance_id(self) -> int:
        return self.session.instance_id

    @property
    def user_key(self) -> str:
        return self.user.key


@attrs.define(eq=False, slots=True)
class Room:
    exchange: int
    name: str
    created_at: int
    key: str = attrs.field(init=False)
    cookie: bytes = attrs.field(init=False)
    #: user key -> its one member, in join order.
    members: dict[str, Member] = attrs.Factory(dict)
    #: Built once per room by the chat service (the packed 0E,02 event).
    info_event: Any = None

    def __attrs_post_init__(self) -> None:
        self.key = room_key(self.name)
        self.cookie = room_cookie(self.exchange, INSTANCE, self.name)

    @property
    def public(self) -> bool:
        return self.exchange == EXCHANGE_PUBLIC

    def ready_members(self) -> list[Member]:
        return [m for m in self.members.values() if m.ready]


class ChatRooms:
    """The live rooms and who is in them; every limit but the message
    length is enforced here."""

    def __init__(self, limits: ChatConfig) -> None:
        self.limits = limits
        self.rooms: dict[tuple[int, str], Room] = {}
        self.private_rooms = 0
        #: user key -> the rooms it has a member in.
        self.user_rooms: dict[str, set[Room]] = {}

    def find(self, exchange: int, name: str) -> Room | None:
        return self.rooms.get((exchange, room_key(name)))

    def check_join(self, exchange: int, name: str, user_key: str) -> None:
        """Raise ``ChatRefused`` when ``user_key`` could not join the room
        ``name`` now (it is full, the user is in as many rooms as it may be,
        or it would be one private room too many). Asked at 0D,08 and at
        01,04, where the client shows or logs the answer, and again when
        the chat connection signs on."""
        if exchange not in EXCHANGES:
            raise ChatRefused(SnacErrorCode.NOT_SUPPORTED_BY_HOST, "unknown exchange")
        room = self.find(exchange, name)
        if room is not None and user_key in room.members:
            return  # MULTISESSION.md §17: it takes its own place
        if room is not None and len(room.members) >= self.limits.max_occupancy:
            raise ChatRefused(SnacErrorCode.LIST_OVERFLOW, "the room is full")
        if len(self.user_rooms.get(user_key, ())) >= self.limits.max_rooms_per_user:
            raise ChatRefused(SnacErrorCode.REQUEST_DENIED, "in too many rooms")
        if (
            room is None
            and exchange == EXCHANGE_PRIVATE
            and self.private_rooms >= self.limits.max_private_rooms
        ):
            raise ChatRefused(SnacErrorCode.SERVICE_UNAVAILABLE, "too many private rooms")

    def join(
        self,
        exchange: int,
        name: str,
        created_at: int,
        user: User,
        session: SessionInstance,
        connection: ISessionConnection,
    ) -> tuple[Member, Member | None]:
        """Put a member of ``user`` in the room (made if it has none):
        the new member, and the member of the same user it replaced (the
        caller closes that one's connection). Raises ``ChatRefused``."""
        self.check_join(exchange, name, user.key)
        room = self.find(exchange, name)
        if room is None:
            room = Room(exchange, name, created_at)
            self.rooms[exchange, room.key] = room
            if exchange == EXCHANGE_PRIVATE:
                self.private_rooms += 1
        member = Member(room, user, session, connection)
        replaced = room.members.get(user.key)
        if replaced is not None:
            # The user stays in the room, in its place: the others saw it join once.
            member.announced = replaced.announced
        room.members[user.key] = member
        self.user_rooms.setdefault(user.key, set()).add(room)
        return member, replaced

    def leave(self, member: Member) -> bool:
        """Take ``member`` out of its room (idempotent); True when the user
        left the room with it (it was not replaced by another of its
        members), so the others must hear of it if they saw it join."""
        room = member.room
        if room.members.get(member.user_key) is not member:
            return False
        del room.members[member.user_key]
        rooms = self.user_rooms.get(member.user_key)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self.user_rooms[member.user_key]
        if not room.members:
            del self.rooms[room.exchange, room.key]
            if room.exchange == EXCHANGE_PRIVATE:
                self.private_rooms -= 1
        return True
