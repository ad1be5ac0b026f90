"""
Tests for aimserver.store.chat_rooms: the IChatRoomStore contract (public chat
rooms found by any spelling of their name, at most MAX_PUBLIC_ROOMS of them),
run against the memory store, the SQLite store (file and ``:memory:``) and
the account cache in front of each; then what only the SQLite file promises
(a reopen keeps the rooms) and the real DB thread.
"""

from __future__ import annotations

import sqlite3
from typing import Any
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from aimserver.store import chat_rooms as chat_rooms_store
from aimserver.store.cache import CachedUserStore
from aimserver.store.interfaces import (
    MAX_PUBLIC_ROOMS,
    IChatRoomStore,
    InvalidRoomNameError,
    PublicRoom,
    RoomExists,
    StoreError,
    TooManyRooms,
)
from aimserver.store.memory import MemoryUserStore
from aimserver.store.sqlite import SQLiteUserStore, connect, transact
from aimserver.wire.roomname import MAX_ROOM_NAME_LENGTH, InvalidRoomName
from tests.test_store import NOW, StoreContractMixin, contract_settings, open_inline

#: A bound small enough for a test to reach.
SMALL_BOUND = 3

# A model run: creations and deletions of a few names, in a few spellings.
_names = st.sampled_from(["Chess", "CHESS", " chess ", "Go Club", "go  club", "Poker"])
room_ops = st.lists(st.tuples(st.sampled_from(["create", "delete"]), _names), max_size=20)


def key_of(name: str) -> str:
    """What the model takes for a room's identity: lower case, single spaces, trimmed."""
    return " ".join(name.split()).lower()


class ChatRoomStoreContractMixin(StoreContractMixin):
    """The IChatRoomStore contract."""

    def create(self, name: str, now: int = NOW) -> PublicRoom:
        return self.ok(self.store.create_public_room(name, now))

    def test_provides_chat_room_store(self) -> None:
        """The store provides every IChatRoomStore method."""
        self.assertTrue(verifyObject(IChatRoomStore, self.store))

    def test_none_at_first(self) -> None:
        """A new store has no public rooms."""
        self.assertEqual(self.ok(self.store.list_public_rooms()), [])
        self.assertIsNone(self.ok(self.store.get_public_room("Chess")))

    def test_create_and_get(self) -> None:
        """A created room is found under its name with its creation time."""
        room = self.create("Chess Club")
        self.assertEqual(room, PublicRoom("Chess Club", NOW))
        self.assertEqual(room.key, "chess club")
        self.assertEqual(self.ok(self.store.get_public_room("Chess Club")), room)

    def test_display_form(self) -> None:
        """The name is kept as room_name gives it: case kept, runs of spaces
        made one, none at the ends."""
        room = self.create("  Chess   CLUB ", NOW + 5)
        self.assertEqual(room, PublicRoom("Chess CLUB", NOW + 5))
        self.assertEqual(self.ok(self.store.list_public_rooms()), [room])

    def test_get_by_any_spelling(self) -> None:
        """Any case and spacing of the name finds the room, as created."""
        room = self.create("Chess Club")
        for spelling in ("chess club", "CHESS CLUB", " Chess  club  ", "cHeSs cLuB"):
            self.assertEqual(self.ok(self.store.get_public_room(spelling)), room)
        for other in ("ChessClub", "Chess Club 2", "Chess"):
            self.assertIsNone(self.ok(self.store.get_public_room(other)))

    def test_get_invalid_name(self) -> None:
        """A name no room can have is simply not found."""
        self.create("Chess")
        for name in ("", "   ", "100%", "x" * (MAX_ROOM_NAME_LENGTH + 1), "caf\xe9", "a\tb"):
            self.assertIsNone(self.ok(self.store.get_public_room(name)))
            self.assertFalse(self.ok(self.store.delete_public_room(name)))
        self.assertEqual(len(self.ok(self.store.list_public_rooms())), 1)

    def test_name_must_be_a_string(self) -> None:
        """Anything but a str is refused, by every method."""
        for name in (b"Chess", None, 5):
            self.fails(self.store.get_public_room(name), StoreError)
            self.fails(self.store.delete_public_room(name), StoreError)
            self.fails(self.store.create_public_room(name, NOW), InvalidRoomNameError)

    def test_list_sorted_by_key(self) -> None:
        """Every room, sorted by key (whatever the case of the names; "_" is
        after the capitals, so before any key's letters)."""
        for name in ("zebra", "Alpha", "beta two", "Beta", "_under", "10 Pin"):
            self.create(name)
        self.assertEqual(
            [room.name for room in self.ok(self.store.list_public_rooms())],
            ["10 Pin", "_under", "Alpha", "Beta", "beta two", "zebra"],
        )

    def test_create_exists(self) -> None:
        """A name with the key of an existing room is refused in any spelling;
        the first room is kept as it was."""
        room = self.create("Chess Club")
        for spelling in ("Chess Club", "CHESS  CLUB", " chess club"):
            error = self.fails(self.store.create_public_room(spelling, NOW + 1), RoomExists)
            self.assertIn("already exists", str(error))
        self.assertEqual(self.ok(self.store.list_public_rooms()), [room])

    def test_create_invalid_name(self) -> None:
        """A name room_name refuses is refused with its reason, as a StoreError
        that is also an InvalidRoomName; nothing is created."""
        for name, reason in (
            ("", "empty"),
            ("   ", "empty"),
            ("x" * (MAX_ROOM_NAME_LENGTH + 1), "at most"),
            ("100%", "'%'"),
            ("caf\xe9", "ASCII"),
            ("tab\there", "ASCII"),
        ):
            error = self.fails(self.store.create_public_room(name, NOW), InvalidRoomNameError)
            self.assertIsInstance(error, StoreError)
            self.assertIsInstance(error, InvalidRoomName)
            self.assertIn(reason, str(error))
        self.assertEqual(self.ok(self.store.list_public_rooms()), [])

    def test_longest_name(self) -> None:
        """A name of MAX_ROOM_NAME_LENGTH characters is a room."""
        name = "n" * MAX_ROOM_NAME_LENGTH
        self.assertEqual(self.create(name).name, name)

    def test_create_invalid_time(self) -> None:
        """A creation time that is not a non-negative integer is refused."""
        for now in (-1, 1.5, None, True, 2**63):
            self.fails(self.store.create_public_room("Chess", now), StoreError)
        self.assertEqual(self.ok(self.store.list_public_rooms()), [])

    def test_delete(self) -> None:
        """A room deleted by any spelling is gone; the others stay; a second
        delete finds nothing."""
        self.create("Chess Club")
        go = self.create("Go")
        self.assertTrue(self.ok(self.store.delete_public_room("CHESS  club")))
        self.assertIsNone(self.ok(self.store.get_public_room("Chess Club")))
        self.assertEqual(self.ok(self.store.list_public_rooms()), [go])
        self.assertFalse(self.ok(self.store.delete_public_room("Chess Club")))

    def test_recreate_after_delete(self) -> None:
        """A deleted room's name may be used again, in another spelling."""
        self.create("Chess")
        self.ok(self.store.delete_public_room("chess"))
        self.assertEqual(self.create("CHESS", NOW + 9), PublicRoom("CHESS", NOW + 9))

    def test_rooms_belong_to_no_account(self) -> None:
        """Deleting accounts leaves the rooms alone."""
        self.add("alice")
        room = self.create("Chess")
        self.ok(self.store.delete_account("alice"))
        self.assertEqual(self.ok(self.store.list_public_rooms()), [room])

    def test_bound(self) -> None:
        """Past MAX_PUBLIC_ROOMS a new room is refused and nothing changes;
        an existing name is still RoomExists; a delete frees a place."""
        with mock.patch("aimserver.store.interfaces.MAX_PUBLIC_ROOMS", SMALL_BOUND):
            for n in range(SMALL_BOUND):
                self.create(f"Room {n}")
            error = self.fails(self.store.create_public_room("One More", NOW), TooManyRooms)
            self.assertIn(f"at most {SMALL_BOUND}", str(error))
            self.fails(self.store.create_public_room("ROOM 0", NOW), RoomExists)
            self.assertIsNone(self.ok(self.store.get_public_room("One More")))
            self.assertEqual(len(self.ok(self.store.list_public_rooms())), SMALL_BOUND)
            self.ok(self.store.delete_public_room("room 1"))
            self.create("One More")
            self.assertEqual(len(self.ok(self.store.list_public_rooms())), SMALL_BOUND)

    @contract_settings(max_examples=40)
    @given(room_ops)
    def test_model(self, ops: list[tuple[str, str]]) -> None:
        """Any sequence of creations and deletions leaves the rooms a dict
        keyed by key_of would: the first spelling of each live key."""
        store = self.make_store()
        model: dict[str, PublicRoom] = {}
        for n, (kind, name) in enumerate(ops):
            key = key_of(name)
            if kind == "create":
                d = store.create_public_room(name, NOW + n)
                if key in model:
                    self.fails(d, RoomExists)
                else:
                    model[key] = self.ok(d)
            else:
                self.assertEqual(self.ok(store.delete_public_room(name)), key in model)
                model.pop(key, None)
            self.assertEqual(self.ok(store.get_public_room(name)), model.get(key))
        self.assertEqual(self.ok(store.list_public_rooms()), [model[k] for k in sorted(model)])


class MemoryChatRoomStoreTests(ChatRoomStoreContractMixin, SynchronousTestCase):
    def make_store(self) -> MemoryUserStore:
        return MemoryUserStore(self.clock)

    def test_real_bound(self) -> None:
        """The bound itself: MAX_PUBLIC_ROOMS rooms, and no more."""
        for n in range(MAX_PUBLIC_ROOMS):
            self.create(f"Room {n}")
        self.fails(self.store.create_public_room("One More", NOW), TooManyRooms)


class SQLiteChatRoomStoreTests(ChatRoomStoreContractMixin, SynchronousTestCase):
    def make_store(self) -> SQLiteUserStore:
        store = open_inline(self.mktemp(), self.clock)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        return store


class InMemorySQLiteChatRoomStoreTests(ChatRoomStoreContractMixin, SynchronousTestCase):
    def make_store(self) -> SQLiteUserStore:
        store = open_inline(":memory:", self.clock)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        return store

    def test_real_bound(self) -> None:
        """The bound itself, counted in the database: MAX_PUBLIC_ROOMS rows
        (put there in one go), and no more."""
        self.store._conn.executemany(
            "INSERT INTO chat_rooms (key, name, created_at) VALUES (?, ?, ?)",
            [(f"room {n}", f"Room {n}", NOW) for n in range(MAX_PUBLIC_ROOMS)],
        )
        self.fails(self.store.create_public_room("One More", NOW), TooManyRooms)
        self.assertTrue(self.ok(self.store.delete_public_room("ROOM 7")))
        self.create("One More")


class CachedChatRoomStoreTests(ChatRoomStoreContractMixin, SynchronousTestCase):
    """The account cache forwards the role untouched."""

    def make_store(self) -> CachedUserStore:
        store = open_inline(":memory:", self.clock)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        return CachedUserStore(store, self.clock)

    def test_forwarded_not_wrapped(self) -> None:
        """The cache's methods of this role are the wrapped store's own."""
        for name in IChatRoomStore.names():
            self.assertEqual(getattr(self.store, name), getattr(self.store.store, name))


class CachedMemoryChatRoomStoreTests(ChatRoomStoreContractMixin, SynchronousTestCase):
    def make_store(self) -> CachedUserStore:
        return CachedUserStore(MemoryUserStore(self.clock), self.clock)


class SQLiteChatRoomFileTests(SynchronousTestCase):
    """What only a file-backed store promises."""

    def test_reopen_keeps_rooms(self) -> None:
        """Rooms survive closing and reopening: a restart keeps every room."""
        path = self.mktemp()
        store = open_inline(path)
        chess = self.successResultOf(store.create_public_room("Chess Club", NOW))
        go = self.successResultOf(store.create_public_room("go", NOW + 1))
        self.successResultOf(store.stop())

        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.assertEqual(self.successResultOf(store.list_public_rooms()), [chess, go])
        self.assertEqual(self.successResultOf(store.get_public_room("CHESS CLUB")), chess)

    def test_one_row_per_key(self) -> None:
        """A room is one row, under its key, with its display name; the
        database itself refuses a second row with the same key."""
        path = self.mktemp()
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.successResultOf(store.create_public_room(" Chess  Club", NOW))
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        rows = conn.execute("SELECT key, name, created_at FROM chat_rooms").fetchall()
        self.assertEqual(rows, [("chess club", "Chess Club", NOW)])
        self.assertRaises(
            sqlite3.IntegrityError,
            conn.execute,
            "INSERT INTO chat_rooms VALUES ('chess club', 'CHESS CLUB', 0)",
        )

    def test_same_operations_on_a_connection(self) -> None:
        """The CLI's way: the same operations on a connection of its own,
        seen by the server's store."""
        path = self.mktemp()
        conn = connect(path)
        try:
            room = transact(conn, chat_rooms_store._create_public_room, "Chess", NOW)
            self.assertRaises(
                RoomExists, transact, conn, chat_rooms_store._create_public_room, "chess", NOW
            )
        finally:
            conn.close()
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.assertEqual(self.successResultOf(store.list_public_rooms()), [room])


class SQLiteChatRoomThreadTests(TestCase):
    """The real thing: the room operations on the DB thread, with the real reactor."""

    @inlineCallbacks
    def test_round_trip(self) -> Any:
        """Creation, lookups, refusals and deletion come back from the DB thread."""
        store = SQLiteUserStore.open(self.mktemp())
        store.start()
        self.addCleanup(store.stop)
        d = store.create_public_room("Chess", NOW)
        self.assertNoResult(d)
        room = yield d
        self.assertEqual((yield store.get_public_room("CHESS")), room)
        self.assertEqual((yield store.list_public_rooms()), [room])
        yield self.assertFailure(store.create_public_room("chess", NOW), RoomExists)
        yield self.assertFailure(store.create_public_room("50%", NOW), InvalidRoomNameError)
        self.assertTrue((yield store.delete_public_room("Chess")))
        self.assertEqual((yield store.list_public_rooms()), [])
