# -*- test-case-name: tests.test_store_chat_rooms -*-
"""
:class:`~aimserver.store.interfaces.IChatRoomStore`, in memory and in SQLite:
the public chat rooms an administrator creates and deletes, at most
:data:`~aimserver.store.interfaces.MAX_PUBLIC_ROOMS` of them.

Names and keys are :mod:`aimserver.wire.roomname`'s: a room is kept under
the key of its name (``chat_rooms.key`` in SQLite), with the display form
beside it. No account owns a room, so deleting an account leaves them all.
"""

from __future__ import annotations

import sqlite3

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from aimserver.store._base import MemoryBase, SQLiteBase, fired
from aimserver.store.interfaces import (
    IChatRoomStore,
    PublicRoom,
    RoomExists,
    check_public_room,
    check_public_room_count,
    public_room_key,
)

__all__ = ["MemoryChatRoomStore", "SQLiteChatRoomStore"]


def _exists(name: str) -> RoomExists:
    return RoomExists(f"room already exists: {name}")


@implementer(IChatRoomStore)
class MemoryChatRoomStore(MemoryBase):
    def __init__(self, clock: IReactorTime | None = None) -> None:
        super().__init__(clock)
        #: Room key -> the room.
        self._public_rooms: dict[str, PublicRoom] = {}

    def get_public_room(self, name: str) -> Deferred[PublicRoom | None]:
        def get() -> PublicRoom | None:
            key = public_room_key(name)
            return None if key is None else self._public_rooms.get(key)

        return fired(get)

    def list_public_rooms(self) -> Deferred[list[PublicRoom]]:
        return fired(lambda: [self._public_rooms[key] for key in sorted(self._public_rooms)])

    def create_public_room(self, name: str, now: int) -> Deferred[PublicRoom]:
        def create() -> PublicRoom:
            room = PublicRoom(check_public_room(name, now), now)
            if room.key in self._public_rooms:
                raise _exists(room.name)
            check_public_room_count(len(self._public_rooms))
            self._public_rooms[room.key] = room
            return room

        return fired(create)

    def delete_public_room(self, name: str) -> Deferred[bool]:
        def delete() -> bool:
            key = public_room_key(name)
            return key is not None and self._public_rooms.pop(key, None) is not None

        return fired(delete)


# --- SQLite operations --------------------------------------------------------


def _get_public_room(conn: sqlite3.Connection, name: str) -> PublicRoom | None:
    key = public_room_key(name)
    if key is None:
        return None
    row = conn.execute("SELECT name, created_at FROM chat_rooms WHERE key = ?", (key,)).fetchone()
    return None if row is None else PublicRoom(*row)


def _list_public_rooms(conn: sqlite3.Connection) -> list[PublicRoom]:
    rows = conn.execute("SELECT name, created_at FROM chat_rooms ORDER BY key")
    return [PublicRoom(name, created_at) for name, created_at in rows]


def _create_public_room(conn: sqlite3.Connection, name: str, now: int) -> PublicRoom:
    room = PublicRoom(check_public_room(name, now), now)
    if conn.execute("SELECT 1 FROM chat_rooms WHERE key = ?", (room.key,)).fetchone():
        raise _exists(room.name)
    (count,) = conn.execute("SELECT COUNT(*) FROM chat_rooms").fetchone()
    check_public_room_count(count)
    try:
        conn.execute(
            "INSERT INTO chat_rooms (key, name, created_at) VALUES (?, ?, ?)",
            (room.key, room.name, room.created_at),
        )
    except sqlite3.IntegrityError as e:
        raise _exists(room.name) from e
    return room


def _delete_public_room(conn: sqlite3.Connection, name: str) -> bool:
    key = public_room_key(name)
    if key is None:
        return False
    return conn.execute("DELETE FROM chat_rooms WHERE key = ?", (key,)).rowcount > 0


@implementer(IChatRoomStore)
class SQLiteChatRoomStore(SQLiteBase):
    """The ``chat_rooms`` table."""

    def get_public_room(self, name: str) -> Deferred[PublicRoom | None]:
        return self._call(_get_public_room, name, write=False)

    def list_public_rooms(self) -> Deferred[list[PublicRoom]]:
        return self._call(_list_public_rooms, write=False)

    def create_public_room(self, name: str, now: int) -> Deferred[PublicRoom]:
        return self._call(_create_public_room, name, now)

    def delete_public_room(self, name: str) -> Deferred[bool]:
        return self._call(_delete_public_room, name)
