"""Who is in which chat room (``services/chat_rooms.py``), without sockets,
registry or store: rooms made by their first member and gone with their
last, names matched in any case, every limit (occupancy, rooms per user
across sessions, private rooms), and MULTISESSION.md §17 (a second session
of a user takes the first's place in a room: same position, same
"announced" state, and the first's leave is then no leave at all).

A stateful hypothesis test drives random joins and leaves by a few users
and sessions over a few rooms and checks the bookkeeping after each step."""

from __future__ import annotations

import itertools

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from twisted.trial.unittest import SynchronousTestCase

from aimserver.config import ChatConfig
from aimserver.registry import SessionInstance, User
from aimserver.services.chat_rooms import EXCHANGES, ChatRefused, ChatRooms, Member, Room
from aimserver.wire.chat import EXCHANGE_PRIVATE, EXCHANGE_PUBLIC
from aimserver.wire.codes import SnacErrorCode
from aimserver.wire.screenname import normalize
from tests.fakes_services import FakeConnection

NOW = 1_000_000_000
_instance_ids = itertools.count(1)


def make_user(screen_name: str) -> User:
    return User(normalize(screen_name), screen_name, False, 0.0, 0.0)


def make_session(user: User) -> SessionInstance:
    instance_id = next(_instance_ids)
    return SessionInstance(instance_id, user.key, FakeConnection(f"{user.key}#{instance_id}"))


class Place:
    """One session of a user, with a fresh chat connection per join."""

    def __init__(self, user: User) -> None:
        self.user = user
        self.session = make_session(user)

    def join(
        self, rooms: ChatRooms, name: str, exchange: int = EXCHANGE_PRIVATE, created_at: int = NOW
    ) -> tuple[Member, Member | None]:
        connection = FakeConnection(f"{self.user.key} chat {name}")
        return rooms.join(exchange, name, created_at, self.user, self.session, connection)


def consistent(test: SynchronousTestCase, rooms: ChatRooms) -> None:
    """The indexes agree with the rooms' members."""
    expected: dict[str, set[Room]] = {}
    for (exchange, key), room in rooms.rooms.items():
        test.assertEqual((exchange, key), (room.exchange, room.key))
        test.assertTrue(room.members, f"empty room kept: {room.name}")
        for user_key, member in room.members.items():
            test.assertEqual(member.user_key, user_key)
            test.assertIs(member.room, room)
            expected.setdefault(user_key, set()).add(room)
    test.assertEqual(rooms.user_rooms, expected)
    test.assertEqual(
        rooms.private_rooms,
        sum(1 for room in rooms.rooms.values() if room.exchange == EXCHANGE_PRIVATE),
    )


class JoinTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.rooms = ChatRooms(ChatConfig())
        self.alice = Place(make_user("Alice"))
        self.bob = Place(make_user("Bob"))

    def test_join_makes_the_room(self) -> None:
        """The first join makes the room under the name as given, counted as one private room; its
        member is neither ready nor announced yet."""
        member, replaced = self.alice.join(self.rooms, "Tea Party", created_at=7)
        self.assertIsNone(replaced)
        room = member.room
        self.assertEqual(
            (room.exchange, room.name, room.key, room.cookie, room.created_at),
            (EXCHANGE_PRIVATE, "Tea Party", "tea party", b"4-0-Tea Party", 7),
        )
        self.assertFalse(room.public)
        self.assertEqual(self.rooms.rooms, {(EXCHANGE_PRIVATE, "tea party"): room})
        self.assertEqual(self.rooms.private_rooms, 1)
        self.assertEqual(self.rooms.user_rooms, {"alice": {room}})
        self.assertEqual(list(room.members), ["alice"])
        self.assertIs(room.members["alice"], member)
        self.assertIs(member.session, self.alice.session)
        self.assertEqual(
            (member.instance_id, member.user_key), (self.alice.session.instance_id, "alice")
        )
        self.assertEqual((member.announced, member.ready), (False, False))
        self.assertEqual(room.ready_members(), [])
        consistent(self, self.rooms)

    def test_find_by_any_case(self) -> None:
        """A room is found by its name in any case, on its own exchange only."""
        member, _ = self.alice.join(self.rooms, "Tea Party")
        for spelling in ("Tea Party", "tea party", "TEA PARTY", "tEa PaRtY"):
            self.assertIs(self.rooms.find(EXCHANGE_PRIVATE, spelling), member.room)
        # The exchange is part of the room's identity.
        self.assertIsNone(self.rooms.find(EXCHANGE_PUBLIC, "Tea Party"))
        self.assertIsNone(self.rooms.find(EXCHANGE_PRIVATE, "Tea Partys"))

    def test_second_user_joins_the_same_room_in_another_case(self) -> None:
        """Another user joining by another spelling enters the same room, which keeps its first
        spelling and age."""
        first, _ = self.alice.join(self.rooms, "Tea Party", created_at=7)
        second, replaced = self.bob.join(self.rooms, "TEA PARTY", created_at=99)
        self.assertIsNone(replaced)
        self.assertIs(second.room, first.room)
        # The room keeps its first spelling and age.
        self.assertEqual((first.room.name, first.room.created_at), ("Tea Party", 7))
        self.assertEqual(list(first.room.members), ["alice", "bob"])
        self.assertEqual(self.rooms.private_rooms, 1)
        consistent(self, self.rooms)

    def test_public_room_counts_no_private_room(self) -> None:
        """Rooms on exchange 5 never count against the private-room limit."""
        member, _ = self.alice.join(self.rooms, "Town Square", EXCHANGE_PUBLIC)
        self.assertTrue(member.room.public)
        self.assertEqual(member.room.cookie, b"5-0-Town Square")
        self.assertEqual(self.rooms.private_rooms, 0)
        self.bob.join(self.rooms, "town square", EXCHANGE_PUBLIC)
        self.assertEqual(self.rooms.private_rooms, 0)
        self.assertTrue(self.rooms.leave(member))
        self.assertEqual(self.rooms.private_rooms, 0)
        consistent(self, self.rooms)

    def test_unknown_exchange(self) -> None:
        """Exchanges other than 4 and 5 refuse every join with 0x0008."""
        for exchange in (0, 3, 6, 0xFFFF):
            with self.assertRaises(ChatRefused) as caught:
                self.alice.join(self.rooms, "Lobby", exchange)
            self.assertEqual(caught.exception.code, SnacErrorCode.NOT_SUPPORTED_BY_HOST)
            self.assertIsNone(caught.exception.subcode)
            with self.assertRaises(ChatRefused):
                self.rooms.check_join(exchange, "Lobby", "alice")
        self.assertEqual(self.rooms.rooms, {})
        self.assertEqual(self.rooms.user_rooms, {})
        self.assertEqual(EXCHANGES, (EXCHANGE_PRIVATE, EXCHANGE_PUBLIC))


class LimitTests(SynchronousTestCase):
    def refused(self, code: int, place: Place, rooms: ChatRooms, name: str, exchange: int = 4):
        before = (
            dict(rooms.rooms),
            rooms.private_rooms,
            {k: set(v) for k, v in rooms.user_rooms.items()},
        )
        with self.assertRaises(ChatRefused) as caught:
            rooms.check_join(exchange, name, place.user.key)
        self.assertEqual(caught.exception.code, code)
        with self.assertRaises(ChatRefused) as caught:
            place.join(rooms, name, exchange)
        self.assertEqual(caught.exception.code, code)
        after = (
            dict(rooms.rooms),
            rooms.private_rooms,
            {k: set(v) for k, v in rooms.user_rooms.items()},
        )
        self.assertEqual(before, after)
        consistent(self, rooms)

    def test_occupancy(self) -> None:
        """A full room refuses a newcomer with 0x0015 and changes nothing; a leave frees a place."""
        rooms = ChatRooms(ChatConfig(max_occupancy=2))
        alice, bob, carol = (Place(make_user(n)) for n in ("Alice", "Bob", "Carol"))
        first, _ = alice.join(rooms, "Small")
        bob.join(rooms, "small")
        self.refused(SnacErrorCode.LIST_OVERFLOW, carol, rooms, "SMALL")
        self.assertEqual(list(first.room.members), ["alice", "bob"])
        # Another room is not full.
        carol.join(rooms, "Large")
        # A place frees up.
        rooms.leave(first)
        carol.join(rooms, "Small")
        self.assertEqual(list(first.room.members), ["bob", "carol"])

    def test_own_place_is_not_counted_against_occupancy(self) -> None:
        """§17: a full room still takes a second session of a member: it
        takes that member's place."""
        rooms = ChatRooms(ChatConfig(max_occupancy=2))
        alice = make_user("Alice")
        first_place, second_place = Place(alice), Place(alice)
        bob = Place(make_user("Bob"))
        first, _ = first_place.join(rooms, "Small")
        bob.join(rooms, "Small")
        rooms.check_join(EXCHANGE_PRIVATE, "small", "alice")
        second, replaced = second_place.join(rooms, "small")
        self.assertIs(replaced, first)
        self.assertIs(second.room, first.room)
        self.assertEqual(len(second.room.members), 2)
        consistent(self, rooms)

    def test_rooms_per_user_across_sessions(self) -> None:
        """The rooms-per-user limit counts a user's rooms over all its sessions (0x000D beyond it);
        its own room again is no new room."""
        rooms = ChatRooms(ChatConfig(max_rooms_per_user=2))
        alice = make_user("Alice")
        one, two = Place(alice), Place(alice)
        bob = Place(make_user("Bob"))
        in_a, _ = one.join(rooms, "A")
        two.join(rooms, "B", EXCHANGE_PUBLIC)
        self.refused(SnacErrorCode.REQUEST_DENIED, one, rooms, "C")
        self.refused(SnacErrorCode.REQUEST_DENIED, two, rooms, "C")
        # A room someone else made counts the same.
        bob.join(rooms, "D")
        self.refused(SnacErrorCode.REQUEST_DENIED, two, rooms, "d")
        # Her own room again, from the other session, is no new room.
        _, replaced = two.join(rooms, "a")
        self.assertIs(replaced, in_a)
        self.assertEqual(len(rooms.user_rooms["alice"]), 2)
        # Other users are not limited by her rooms.
        bob.join(rooms, "A")
        # Leaving one makes room for another.
        self.assertTrue(rooms.leave(rooms.find(4, "A").members["alice"]))
        one.join(rooms, "C")
        consistent(self, rooms)

    def test_private_room_limit(self) -> None:
        """At the private-room limit no new private room is made (0x0005), while the existing one
        and public rooms stay open."""
        rooms = ChatRooms(ChatConfig(max_private_rooms=1))
        alice, bob = Place(make_user("Alice")), Place(make_user("Bob"))
        first, _ = alice.join(rooms, "One")
        self.refused(SnacErrorCode.SERVICE_UNAVAILABLE, bob, rooms, "Two")
        # The existing private room, and public rooms, are still open.
        bob.join(rooms, "ONE")
        bob.join(rooms, "Two", EXCHANGE_PUBLIC)
        self.assertEqual(rooms.private_rooms, 1)
        # Once the private room is gone, another may be made.
        rooms.leave(first)
        rooms.leave(rooms.find(4, "one").members["bob"])
        self.assertEqual(rooms.private_rooms, 0)
        bob.join(rooms, "Two")
        self.assertEqual(rooms.private_rooms, 1)
        consistent(self, rooms)

    def test_limit_order(self) -> None:
        """A full room is reported as full even when the user is also in
        too many rooms."""
        rooms = ChatRooms(ChatConfig(max_occupancy=2, max_rooms_per_user=1))
        alice, bob, carol = (Place(make_user(n)) for n in ("Alice", "Bob", "Carol"))
        alice.join(rooms, "Full")
        bob.join(rooms, "Full")
        carol.join(rooms, "Other")
        self.refused(SnacErrorCode.LIST_OVERFLOW, carol, rooms, "Full")
        self.refused(SnacErrorCode.REQUEST_DENIED, carol, rooms, "New")


class LeaveTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.rooms = ChatRooms(ChatConfig())
        self.alice = make_user("Alice")
        self.bob = make_user("Bob")

    def test_leave_is_idempotent(self) -> None:
        """A second leave of one member changes nothing and says so."""
        member, _ = Place(self.alice).join(self.rooms, "Room")
        other, _ = Place(self.bob).join(self.rooms, "Room")
        self.assertTrue(self.rooms.leave(member))
        self.assertFalse(self.rooms.leave(member))
        self.assertEqual(list(other.room.members), ["bob"])
        self.assertEqual(self.rooms.user_rooms, {"bob": {other.room}})
        consistent(self, self.rooms)

    def test_replaced_member_leave_is_no_leave(self) -> None:
        """The leave of a member another session replaced is no leave: the user stays in the room,
        in its place."""
        old, _ = Place(self.alice).join(self.rooms, "Room")
        Place(self.bob).join(self.rooms, "Room")
        new, replaced = Place(self.alice).join(self.rooms, "ROOM")
        self.assertIs(replaced, old)
        self.assertFalse(self.rooms.leave(old))
        room = new.room
        self.assertIs(room.members["alice"], new)
        self.assertEqual(list(room.members), ["alice", "bob"])
        self.assertEqual(self.rooms.user_rooms["alice"], {room})
        self.assertIs(self.rooms.find(4, "room"), room)
        consistent(self, self.rooms)
        self.assertTrue(self.rooms.leave(new))
        self.assertEqual(list(room.members), ["bob"])

    def test_replaced_last_member_leave_keeps_the_room(self) -> None:
        """A replaced sole member's leave does not take the room along."""
        old, _ = Place(self.alice).join(self.rooms, "Solo")
        new, _ = Place(self.alice).join(self.rooms, "Solo")
        self.assertFalse(self.rooms.leave(old))
        self.assertIs(self.rooms.find(4, "solo"), new.room)
        self.assertEqual(self.rooms.private_rooms, 1)

    def test_room_vanishes_when_empty(self) -> None:
        """A private room is gone with its last member (and uncounted); a later join makes it anew.
        A private room is gone with its last member (and uncounted); a later join makes it anew."""
        a, _ = Place(self.alice).join(self.rooms, "Fleeting", created_at=1)
        b, _ = Place(self.bob).join(self.rooms, "Fleeting")
        self.assertTrue(self.rooms.leave(a))
        self.assertEqual(self.rooms.private_rooms, 1)
        self.assertTrue(self.rooms.leave(b))
        self.assertEqual(self.rooms.rooms, {})
        self.assertEqual(self.rooms.private_rooms, 0)
        self.assertEqual(self.rooms.user_rooms, {})
        # Made anew, under the new spelling and age.
        again, _ = Place(self.bob).join(self.rooms, "FLEETING", created_at=2)
        self.assertIsNot(again.room, a.room)
        self.assertEqual((again.room.name, again.room.created_at), ("FLEETING", 2))
        self.assertEqual(self.rooms.private_rooms, 1)
        # A member of the old room leaving again changes nothing.
        self.assertFalse(self.rooms.leave(a))
        self.assertEqual(self.rooms.private_rooms, 1)
        consistent(self, self.rooms)

    def test_public_room_vanishes_when_empty_without_private_count(self) -> None:
        """An empty public room is forgotten here too (the store keeps it), with no private count to
        give back."""
        member, _ = Place(self.alice).join(self.rooms, "Square", EXCHANGE_PUBLIC)
        self.assertTrue(self.rooms.leave(member))
        self.assertEqual((self.rooms.rooms, self.rooms.private_rooms), ({}, 0))


class ReplacementTests(SynchronousTestCase):
    """MULTISESSION.md §17: one member per user and room."""

    def setUp(self) -> None:
        self.rooms = ChatRooms(ChatConfig())
        self.alice = make_user("Alice")
        self.members = {}
        for name in ("Alice", "Bob", "Carol"):
            user = self.alice if name == "Alice" else make_user(name)
            self.members[name], _ = Place(user).join(self.rooms, "Shared")

    def test_replacement_keeps_position_and_announced(self) -> None:
        """The replacing member takes the old one's place in the member order and its announced
        state, but must send its own client-ready."""
        old = self.members["Alice"]
        old.announced = old.ready = True
        place = Place(self.alice)
        new, replaced = place.join(self.rooms, "shared")
        self.assertIs(replaced, old)
        self.assertIsNot(new, old)
        self.assertIs(new.session, place.session)
        self.assertEqual(list(new.room.members), ["alice", "bob", "carol"])
        self.assertIs(new.room.members["alice"], new)
        self.assertTrue(new.announced)
        # It has yet to send its own client-ready.
        self.assertFalse(new.ready)
        self.assertEqual(self.rooms.user_rooms["alice"], {new.room})
        consistent(self, self.rooms)

    def test_replacing_an_unannounced_member(self) -> None:
        """A member that was never announced is replaced by one that is not announced either."""
        new, replaced = Place(self.alice).join(self.rooms, "SHARED")
        self.assertIs(replaced, self.members["Alice"])
        self.assertFalse(new.announced)
        self.assertEqual(list(new.room.members), ["alice", "bob", "carol"])

    def test_replacement_by_the_same_session(self) -> None:
        """A session opening a second chat connection to its own room."""
        old = self.members["Alice"]
        again = FakeConnection("again")
        new, replaced = self.rooms.join(4, "Shared", NOW, self.alice, old.session, again)
        self.assertIs(replaced, old)
        self.assertIs(new.connection, again)
        self.assertFalse(self.rooms.leave(old))
        consistent(self, self.rooms)


# -- random joins and leaves --------------------------------------------------------------

USERS = ("Alice", "Bob", "Carol", "Dave")
NAMES = ("Lobby", "lobby", "LOBBY", "Tea", "TEA", "Den", "Attic")
JOIN_EXCHANGES = (EXCHANGE_PRIVATE, EXCHANGE_PUBLIC, 6)


class ChatRoomsMachine(RuleBasedStateMachine):
    """Random joins (by 4 users with 2 sessions each, over a few rooms
    spelt in several cases, on both exchanges and a bad one) and leaves
    (of live, replaced and gone members)."""

    def __init__(self) -> None:
        super().__init__()
        self.check = SynchronousTestCase()
        self.rooms: ChatRooms | None = None
        self.members: list[Member] = []
        self.places: list[Place] = []

    @initialize(
        occupancy=st.integers(2, 3),
        per_user=st.integers(1, 3),
        private=st.integers(1, 3),
    )
    def start(self, occupancy: int, per_user: int, private: int) -> None:
        self.limits = ChatConfig(
            max_occupancy=occupancy, max_rooms_per_user=per_user, max_private_rooms=private
        )
        self.rooms = ChatRooms(self.limits)
        for name in USERS:
            user = make_user(name)
            self.places += [Place(user), Place(user)]

    @rule(
        place=st.integers(0, 2 * len(USERS) - 1),
        name=st.sampled_from(NAMES),
        exchange=st.sampled_from(JOIN_EXCHANGES),
    )
    def join(self, place: int, name: str, exchange: int) -> None:
        assert self.rooms is not None
        who = self.places[place]
        room = self.rooms.find(exchange, name)
        before_members = dict(room.members) if room is not None else None
        own = room is not None and who.user.key in room.members
        user_rooms = len(self.rooms.user_rooms.get(who.user.key, ()))
        private = self.rooms.private_rooms
        try:
            member, replaced = who.join(self.rooms, name, exchange)
        except ChatRefused as e:
            # Refused only for a reason that holds, and nothing changed.
            if e.code == SnacErrorCode.NOT_SUPPORTED_BY_HOST:
                assert exchange not in EXCHANGES
            elif e.code == SnacErrorCode.LIST_OVERFLOW:
                assert room is not None and not own
                assert len(room.members) == self.limits.max_occupancy
            elif e.code == SnacErrorCode.REQUEST_DENIED:
                assert not own and user_rooms == self.limits.max_rooms_per_user
            elif e.code == SnacErrorCode.SERVICE_UNAVAILABLE:
                assert room is None and exchange == EXCHANGE_PRIVATE
                assert private == self.limits.max_private_rooms
            else:
                raise AssertionError(f"unexpected refusal {e!r}") from e
            assert self.rooms.find(exchange, name) is room
            if room is not None:
                assert room.members == before_members
            return
        # Accepted only when every limit allowed it.
        assert exchange in EXCHANGES
        if not own:
            assert room is None or len(before_members or ()) < self.limits.max_occupancy
            assert user_rooms < self.limits.max_rooms_per_user
        if room is None and exchange == EXCHANGE_PRIVATE:
            assert private < self.limits.max_private_rooms
        if own:
            assert before_members is not None
            assert replaced is before_members[who.user.key]
            assert list(member.room.members) == list(before_members)
        else:
            assert replaced is None
            assert list(member.room.members)[-1] == who.user.key
        if room is not None:
            assert member.room is room
        self.members.append(member)

    @precondition(lambda self: self.members)
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        assert self.rooms is not None
        member = data.draw(st.sampled_from(self.members))
        live = member.room.members.get(member.user_key) is member
        room_kept = self.rooms.rooms.get((member.room.exchange, member.room.key))
        left = self.rooms.leave(member)
        assert left == live
        if not live:
            assert self.rooms.rooms.get((member.room.exchange, member.room.key)) is room_kept
        assert member.room.members.get(member.user_key) is not member
        # Leave again: nothing happens.
        assert not self.rooms.leave(member)

    @invariant()
    def within_limits(self) -> None:
        if self.rooms is None:
            return
        for room in self.rooms.rooms.values():
            assert len(room.members) <= self.limits.max_occupancy
        for rooms in self.rooms.user_rooms.values():
            assert len(rooms) <= self.limits.max_rooms_per_user
        assert self.rooms.private_rooms <= self.limits.max_private_rooms

    @invariant()
    def indexes_agree(self) -> None:
        if self.rooms is not None:
            consistent(self.check, self.rooms)


class ChatRoomsStateTests(SynchronousTestCase):
    def test_random_joins_and_leaves(self) -> None:
        """No sequence of joins and leaves breaks a limit or the indexes."""
        run_state_machine_as_test(
            ChatRoomsMachine, settings=settings(max_examples=150, stateful_step_count=40)
        )
