"""The chat services without sockets: ``ChatService`` (a chat connection's
join, client-ready, lines, whispers and leave; the room lookups behind
ChatNav and the chat 01,04) and ``ChatNavService`` (0D,02/03/04/08).

Sessions come from ``ServiceWorld`` (a registry, a memory store, a Clock);
a chat connection is a ``FakeConnection`` that records its pushes and the
disconnects asked of it. The TCP paths are in ``test_e2e_chat``."""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from aimserver.config import ChatConfig
from aimserver.registry import SessionInstance, User
from aimserver.services import chat as chat_service
from aimserver.services.base import Reply, SnacError
from aimserver.services.chat import ChatService, RoomSpec
from aimserver.services.chat_rooms import ChatRefused, Member
from aimserver.services.chatnav import ChatNavService
from aimserver.services.privacy import BLOCK_DENIED, Privacy
from aimserver.services.session import SignOnRefused
from aimserver.store.interfaces import PublicRoom
from aimserver.store.memory import MemoryUserStore
from aimserver.wire.chat import (
    ERROR_SUBCODE_BAD_ROOM_NAME,
    EXCHANGE_PRIVATE,
    EXCHANGE_PUBLIC,
    ChatMessage,
    RoomInfo,
    RoomRef,
    parse_users,
)
from aimserver.wire.codes import Chat, ChatNav, FoodGroup, OService, SnacErrorCode
from aimserver.wire.errors import MalformedData
from aimserver.wire.reader import Reader
from aimserver.wire.roomname import room_cookie
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList
from tests.fakes import result_of
from tests.fakes_services import START, FakeConnection, ServiceWorld

COOKIE = b"msgcook1"
READY = SnacHeader(FoodGroup.OSERVICE, OService.CLIENT_READY, 0, 7)
SEND = SnacHeader(FoodGroup.CHAT, Chat.CHANNEL_MSG_TO_HOST, 0, 9)
JOINED = (FoodGroup.CHAT, Chat.USERS_JOINED)
LEFT = (FoodGroup.CHAT, Chat.USERS_LEFT)
INFO = (FoodGroup.CHAT, Chat.ROOM_INFO_UPDATE)
LINE = (FoodGroup.CHAT, Chat.CHANNEL_MSG_TO_CLIENT)
NAV_INFO = (FoodGroup.CHAT_NAV, ChatNav.NAV_INFO)


class HoldingRoomStore(MemoryUserStore):
    """A memory store whose public-room reads answer only on ``release()``
    while ``hold`` is set (a slow database)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.hold = False
        self.held: list[tuple[defer.Deferred[PublicRoom | None], str]] = []

    def get_public_room(self, name: str) -> defer.Deferred[PublicRoom | None]:
        if not self.hold:
            return super().get_public_room(name)
        d: defer.Deferred[PublicRoom | None] = defer.Deferred()
        self.held.append((d, name))
        return d

    def release(self) -> None:
        held, self.held = self.held, []
        for d, name in held:
            super().get_public_room(name).chainDeferred(d)


class Guest:
    """One session of a user and its chat connection to one room."""

    def __init__(
        self, session: SessionInstance, member: Member, connection: FakeConnection
    ) -> None:
        self.session = session
        self.member = member
        self.connection = connection

    @property
    def user(self) -> User:
        return self.member.user

    def kinds(self) -> list[tuple[int, int]]:
        return [(s.header.family, s.header.subtype) for s in self.connection.snacs()]

    def rosters(self, kind: tuple[int, int] = JOINED) -> list[list[str]]:
        """The 0E,03 (or 0E,04) pushes, as lists of screen names."""
        return [[u.screen_name for u in parse_users(s.body)] for s in self.connection.snacs(*kind)]

    def lines(self) -> list[bytes]:
        return [s.body for s in self.connection.snacs(*LINE)]


class ChatWorld(ServiceWorld):
    def __init__(self, config: ChatConfig | None = None, **kw: Any) -> None:
        clock = Clock()
        clock.advance(START)
        super().__init__(clock=clock, store=HoldingRoomStore(clock), **kw)
        self.store: HoldingRoomStore
        self.config = config or ChatConfig()
        self.chat = ChatService(self.registry, self.presence, self.store, self.clock, self.config)
        self.nav = ChatNavService(self.registry, self.chat)

    def attach(
        self, session: SessionInstance, room: str = "Room", exchange: int = EXCHANGE_PRIVATE
    ) -> tuple[Member, FakeConnection]:
        connection = FakeConnection(f"instance {session.instance_id} chat {room}")
        placed = self.chat.attach(session, connection, room_cookie(exchange, 0, room))
        member = result_of(placed) if isinstance(placed, defer.Deferred) else placed
        return member, connection

    def enter(
        self,
        screen_name: str,
        room: str = "Room",
        exchange: int = EXCHANGE_PRIVATE,
        *,
        ready: bool = True,
        session: SessionInstance | None = None,
    ) -> Guest:
        """A (new) session of ``screen_name`` joins ``room`` on a chat
        connection of its own, and sends its client-ready unless told not to."""
        if session is None:
            session, _ = self.sign_on(screen_name)
        member, connection = self.attach(session, room, exchange)
        guest = Guest(session, member, connection)
        if ready:
            self.ready(guest)
        return guest

    def ready(self, guest: Guest) -> None:
        self.chat.member_ready(guest.member, READY, b"")

    def say(self, guest: Guest, body: bytes) -> list[Reply]:
        return self.chat.channel_message(guest.member, SEND, body)

    def nav_call(self, handler: Any, session: SessionInstance, body: bytes) -> Any:
        return handler(session, SnacHeader(FoodGroup.CHAT_NAV, 0, 0, 3), body)


def parts(text: bytes) -> bytes:
    """A message's TLV 0x0005 value as libpurple sends it."""
    return TlvList((Tlv(1, text), Tlv(2, b"us-ascii"), Tlv(3, b"en"))).pack_list()


def line(
    text: bytes = b"<HTML>hello</HTML>",
    *,
    channel: int = 3,
    to_room: bool = True,
    whisper_to: bytes | None = None,
    reflect: bool = True,
) -> bytes:
    """A 0E,05 body."""
    return ChatMessage(
        cookie=COOKIE,
        channel=channel,
        to_room=to_room,
        whisper_to=whisper_to,
        reflect=reflect,
        auto_response=False,
        message=parts(text),
    ).pack()


def relayed(world: ChatWorld, sender: Guest, text: bytes, *, to_room: bool = True) -> bytes:
    """The exact 0E,06 body: cookie, channel 3, TLV 0x0003 sender's
    user-info block, [TLV 0x0001], TLV 0x0005 message, in that order."""
    tlvs = [Tlv(0x0003, world.presence.info_block(sender.user))]
    if to_room:
        tlvs.append(Tlv.empty(0x0001))
    tlvs.append(Tlv(0x0005, parts(text)))
    return COOKIE + struct.pack("!H", 3) + TlvList(tlvs).pack_list()


def snac_error(test: SynchronousTestCase, call: Any, code: int, subcode: int | None = None):
    with test.assertRaises(SnacError) as caught:
        call()
    test.assertEqual((caught.exception.code, caught.exception.subcode), (code, subcode))


# -- join, client-ready, leave ------------------------------------------------------------


class JoinOrderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = ChatWorld()

    def test_nothing_before_client_ready(self) -> None:
        """Nothing room-related reaches a chat connection before its client-ready."""
        alice = self.world.enter("Alice", ready=False)
        self.assertEqual(alice.connection.payloads, [])
        self.assertFalse(alice.member.ready)
        self.assertFalse(alice.member.announced)

    def test_join_order(self) -> None:
        """At client-ready: the joiner gets the roster (itself included),
        then the room info; then the others get the joiner."""
        alice = self.world.enter("Alice", "Tea Party")
        self.assertEqual(alice.kinds(), [JOINED, INFO])
        self.assertEqual(alice.rosters(), [["Alice"]])
        bob = self.world.enter("Bob", "tea party", ready=False)
        self.assertEqual((alice.kinds(), bob.kinds()), ([JOINED, INFO], []))
        (a_info,) = alice.connection.snacs(*INFO)
        alice.connection.clear()
        self.world.ready(bob)
        self.assertEqual(bob.kinds(), [JOINED, INFO])
        self.assertEqual(bob.rosters(), [["Alice", "Bob"]])
        self.assertEqual(alice.kinds(), [JOINED])
        self.assertEqual(alice.rosters(), [["Bob"]])
        self.assertTrue(bob.member.ready and bob.member.announced)
        # Both got the one room info, of the room as first spelt.
        (b_info,) = bob.connection.snacs(*INFO)
        self.assertEqual(a_info.body, b_info.body)
        info = RoomInfo.unpack(b_info.body)
        self.assertEqual(info.ref, RoomRef(EXCHANGE_PRIVATE, b"4-0-Tea Party", 0))
        self.assertEqual(info.detail, 2)
        self.assertEqual(info.tlvs.get(0x00D3), b"Tea Party")
        self.assertEqual(info.tlvs.get_u16(0x00D1), self.world.config.max_message_length)
        self.assertEqual(info.tlvs.get_u16(0x00DA), self.world.config.max_message_length)
        self.assertEqual(info.tlvs.get_u16(0x00D2), self.world.config.max_occupancy)
        self.assertEqual(info.tlvs.get_u32(0x00CA), int(START))

    def test_roster_has_ready_members_in_join_order(self) -> None:
        """Members not yet ready are neither in a roster nor told of joins;
        a roster lists members in the order they joined."""
        alice = self.world.enter("Alice", ready=False)
        bob = self.world.enter("Bob")
        carol = self.world.enter("Carol", ready=False)
        self.assertEqual(bob.rosters(), [["Bob"]])
        self.assertEqual((alice.kinds(), carol.kinds()), ([], []))
        self.world.ready(carol)
        self.assertEqual(carol.rosters(), [["Bob", "Carol"]])
        self.assertEqual(bob.rosters(), [["Bob"], ["Carol"]])
        self.world.ready(alice)
        self.assertEqual(alice.rosters(), [["Alice", "Bob", "Carol"]])
        self.assertEqual(bob.rosters(), [["Bob"], ["Carol"], ["Alice"]])
        self.assertEqual(carol.rosters(), [["Bob", "Carol"], ["Alice"]])

    def test_a_large_roster_comes_in_several_0e03s(self) -> None:
        """A roster longer than one SNAC should carry is split, in order,
        before the room info (a full room of long user-info blocks would
        not fit in one frame)."""
        self.patch(chat_service, "MAX_USERS_BODY", 60)
        for name in ("Alice", "Bob", "Carol", "Dave"):
            self.world.enter(name)
        erin = self.world.enter("Erin")
        self.assertGreater(len(erin.rosters()), 1)
        self.assertEqual(erin.kinds()[-1], INFO)
        self.assertEqual(sum(erin.rosters(), []), ["Alice", "Bob", "Carol", "Dave", "Erin"])

    def test_second_client_ready_does_nothing(self) -> None:
        """A repeated client-ready sends no second roster and announces nobody twice."""
        alice = self.world.enter("Alice")
        bob = self.world.enter("Bob")
        alice.connection.clear()
        bob.connection.clear()
        self.world.ready(bob)
        self.world.ready(alice)
        self.assertEqual((alice.kinds(), bob.kinds()), ([], []))

    def test_room_info_is_built_once_per_room(self) -> None:
        """The room info is packed once per room, with the room's first spelling and age."""
        alice = self.world.enter("Alice", "Den")
        self.world.clock.advance(60)
        bob = self.world.enter("Bob", "DEN")
        self.assertIs(alice.connection.events[1], bob.connection.events[1])
        info = RoomInfo.unpack(bob.connection.snacs(*INFO)[0].body)
        self.assertEqual((info.tlvs.get(0x00D3), info.tlvs.get_u32(0x00CA)), (b"Den", START))


class LeaveTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = ChatWorld()
        self.alice = self.world.enter("Alice")
        self.bob = self.world.enter("Bob")
        self.alice.connection.clear()
        self.bob.connection.clear()

    def test_announced_member_leaves(self) -> None:
        """The others that are ready see an announced member leave, once."""
        carol = self.world.enter("Carol", ready=False)
        self.world.chat.member_gone(self.bob.member)
        self.assertEqual(self.alice.rosters(LEFT), [["Bob"]])
        # Not ready: told nothing.
        self.assertEqual(carol.kinds(), [])
        self.assertEqual(list(self.alice.member.room.members), ["alice", "carol"])
        # Gone twice: told once.
        self.world.chat.member_gone(self.bob.member)
        self.assertEqual(self.alice.rosters(LEFT), [["Bob"]])

    def test_unannounced_member_leaves_silently(self) -> None:
        """Nobody hears of a member that leaves before its client-ready."""
        carol = self.world.enter("Carol", ready=False)
        self.world.chat.member_gone(carol.member)
        self.assertEqual((self.alice.kinds(), self.bob.kinds()), ([], []))
        self.assertEqual(list(self.alice.member.room.members), ["alice", "bob"])

    def test_last_member_takes_the_private_room_along(self) -> None:
        """The last leave of a private room removes it."""
        self.world.chat.member_gone(self.bob.member)
        self.world.chat.member_gone(self.alice.member)
        self.assertEqual(self.world.chat.rooms.rooms, {})
        self.assertEqual(self.world.chat.rooms.private_rooms, 0)
        self.assertEqual(self.bob.kinds(), [])


class ReplacementTests(SynchronousTestCase):
    """MULTISESSION.md §17: a second session of Alice joins her room."""

    def setUp(self) -> None:
        self.world = ChatWorld()
        self.first = self.world.enter("Alice", "Shared")
        self.bob = self.world.enter("Bob", "Shared")
        self.first.connection.clear()
        self.bob.connection.clear()

    def test_second_session_takes_the_place(self) -> None:
        """The first session's chat connection is closed; Bob sees neither a leave nor a join; the
        second gets the roster, and Bob's lines; the second's leave is Alice's leave."""
        second = self.world.enter("Alice", "shared", ready=False)
        self.assertEqual(self.first.connection.disconnects, [None])
        self.assertEqual(self.bob.kinds(), [])
        room = second.member.room
        self.assertEqual(list(room.members), ["alice", "bob"])
        self.assertIs(room.members["alice"], second.member)
        self.world.ready(second)
        self.assertEqual(second.kinds(), [JOINED, INFO])
        self.assertEqual(second.rosters(), [["Alice", "Bob"]])
        self.assertEqual(self.bob.kinds(), [])
        # The first connection's close is no leave.
        self.world.chat.member_gone(self.first.member)
        self.assertEqual(self.bob.kinds(), [])
        self.assertIs(room.members["alice"], second.member)
        # Bob's lines reach the second session only.
        self.world.say(self.bob, line(b"who is there?", reflect=False))
        self.assertEqual(len(second.lines()), 1)
        self.assertEqual(self.first.lines(), [])
        # The old member may no longer talk, nor become ready again.
        snac_error(self, lambda: self.world.say(self.first, line()), SnacErrorCode.NOT_LOGGED_ON)
        self.world.ready(self.first)
        self.assertEqual(self.first.kinds(), [])
        # The second session's leave is Alice's.
        self.world.chat.member_gone(second.member)
        self.assertEqual(self.bob.rosters(LEFT), [["Alice"]])

    def test_replacement_is_logged(self) -> None:
        """The log names the user, both instances and the room."""
        with capturedLogs() as events:
            second = self.world.enter("Alice", "Shared", ready=False)
        (event,) = [e for e in events if "took instance" in e["log_format"]]
        self.assertEqual(
            (event["screen_name"], event["new"], event["old"], event["room"]),
            ("Alice", second.session.instance_id, self.first.session.instance_id, "Shared"),
        )

    def test_replacing_a_member_that_was_never_ready(self) -> None:
        """The others never saw the first: they see the second join."""
        carol_first = self.world.enter("Carol", "Shared", ready=False)
        carol_second = self.world.enter("Carol", "Shared")
        self.assertEqual(carol_first.connection.disconnects, [None])
        self.assertEqual(self.bob.rosters(), [["Carol"]])
        self.assertEqual(carol_second.rosters(), [["Alice", "Bob", "Carol"]])
        # The first's late client-ready does nothing.
        self.world.ready(carol_first)
        self.assertEqual(carol_first.kinds(), [])
        self.assertEqual(self.bob.rosters(), [["Carol"]])


# -- messages -----------------------------------------------------------------------------


class MessageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = ChatWorld(ChatConfig(max_message_length=64))
        self.alice = self.world.enter("Alice")
        self.bob = self.world.enter("Bob")
        self.carol = self.world.enter("Carol")
        self.dave = self.world.enter("Dave", ready=False)
        self.everyone = (self.alice, self.bob, self.carol, self.dave)
        for guest in self.everyone:
            guest.connection.clear()

    def heard(self) -> list[int]:
        return [len(guest.lines()) for guest in self.everyone]

    def test_line_reaches_ready_members_but_the_sender(self) -> None:
        """A line reaches every ready member but the sender, as one exact 0E,06, and comes back to
        the sender (reflection) under its request."""
        replies = self.world.say(self.alice, line(b"<HTML>hello</HTML>"))
        expected = relayed(self.world, self.alice, b"<HTML>hello</HTML>")
        self.assertEqual(replies, [Reply(FoodGroup.CHAT, Chat.CHANNEL_MSG_TO_CLIENT, expected)])
        self.assertEqual(self.bob.lines(), [expected])
        self.assertEqual(self.carol.lines(), [expected])
        self.assertEqual(self.heard(), [0, 1, 1, 0])

    def test_no_reflection_without_tlv_6(self) -> None:
        """Without TLV 0x0006 the sender gets no copy."""
        self.assertEqual(self.world.say(self.alice, line(b"hi", reflect=False)), [])
        self.assertEqual(self.heard(), [0, 1, 1, 0])

    def test_macos_channel_is_relayed_as_3(self) -> None:
        """macOS AIM's channel 0xFFFF is relayed as channel 3."""
        replies = self.world.say(self.alice, line(b"hi", channel=0xFFFF))
        self.assertEqual(replies[0].body, relayed(self.world, self.alice, b"hi"))
        self.assertEqual(self.bob.lines(), [relayed(self.world, self.alice, b"hi")])

    def test_message_at_the_length_limit(self) -> None:
        """A line exactly at the length limit goes through."""
        self.world.say(self.alice, line(b"x" * 64, reflect=False))
        self.assertEqual(self.heard(), [0, 1, 1, 0])

    def test_too_long(self) -> None:
        """A line over the length limit is refused with 0x000B and reaches nobody."""
        snac_error(
            self,
            lambda: self.world.say(self.alice, line(b"x" * 65)),
            SnacErrorCode.REPLY_TOO_BIG,
        )
        self.assertEqual(self.heard(), [0, 0, 0, 0])

    def test_long_charset_or_many_texts_are_refused(self) -> None:
        """Besides its text a line may carry only short tags: a huge charset
        (found by the handler fuzz: its 0E,06 overflowed a frame and went to
        nobody, unanswered) or a second text is refused with 0x000B."""
        for message in (
            TlvList((Tlv(1, b"hi"), Tlv(2, b"c" * 65_000))).pack_list(),
            TlvList((Tlv(1, b"x" * 60), Tlv(1, b"y" * 60), Tlv(1, b"z" * 60))).pack_list(),
        ):
            body = ChatMessage(COOKIE, 3, True, None, True, False, message).pack()
            snac_error(
                self,
                lambda body=body: self.world.say(self.alice, body),
                SnacErrorCode.REPLY_TOO_BIG,
            )
        self.assertEqual(self.heard(), [0, 0, 0, 0])

    def test_whisper_reaches_its_target_only(self) -> None:
        """A whisper reaches the member it names (in any spelling), without TLV 0x0001, and nobody
        else."""
        replies = self.world.say(self.alice, line(b"psst", to_room=False, whisper_to=b"b o B"))
        expected = relayed(self.world, self.alice, b"psst", to_room=False)
        self.assertEqual(self.bob.lines(), [expected])
        self.assertEqual(self.heard(), [0, 1, 0, 0])
        self.assertEqual([r.body for r in replies], [expected])

    def test_whisper_and_room_flag_is_a_room_line(self) -> None:
        """A message naming a target but also sent to the room is a room line (Go's rule)."""
        self.world.say(self.alice, line(b"all", whisper_to=b"Bob", reflect=False))
        self.assertEqual(self.heard(), [0, 1, 1, 0])

    def test_whisper_to_no_member(self) -> None:
        """Not in the room, not ready, or oneself: "not logged on"."""
        for target in (b"Erin", b"Dave", b"Alice"):
            snac_error(
                self,
                lambda t=target: self.world.say(self.alice, line(to_room=False, whisper_to=t)),
                SnacErrorCode.NOT_LOGGED_ON,
            )
        self.assertEqual(self.heard(), [0, 0, 0, 0])

    def test_whisper_to_a_non_ascii_name_is_malformed(self) -> None:
        """A whisper target that is no ASCII screen name is a malformed body."""
        with self.assertRaises(MalformedData):
            self.world.say(self.alice, line(to_room=False, whisper_to=b"\xff\xfe"))

    def test_sender_not_ready(self) -> None:
        """A member that has not sent its client-ready may not talk (0x0004)."""
        snac_error(self, lambda: self.world.say(self.dave, line()), SnacErrorCode.NOT_LOGGED_ON)
        self.assertEqual(self.heard(), [0, 0, 0, 0])

    def test_sender_gone(self) -> None:
        """A member that left may not talk (0x0004)."""
        self.world.chat.member_gone(self.alice.member)
        snac_error(self, lambda: self.world.say(self.alice, line()), SnacErrorCode.NOT_LOGGED_ON)

    def test_other_channels(self) -> None:
        """Channels other than 3 and 0xFFFF are refused with 0x000E."""
        for channel in (0, 1, 2, 4, 0xFFFE):
            snac_error(
                self,
                lambda c=channel: self.world.say(self.alice, line(channel=c)),
                SnacErrorCode.BUSTED_SNAC_PAYLOAD,
            )
        self.assertEqual(self.heard(), [0, 0, 0, 0])

    def test_no_message_tlv(self) -> None:
        """A message without TLV 0x0005 is refused with 0x000E."""
        body = COOKIE + struct.pack("!H", 3) + TlvList((Tlv.empty(1), Tlv.empty(6))).pack_list()
        snac_error(
            self, lambda: self.world.say(self.alice, body), SnacErrorCode.BUSTED_SNAC_PAYLOAD
        )
        self.assertEqual(self.heard(), [0, 0, 0, 0])

    def test_garbage_body(self) -> None:
        """Bodies that do not parse raise MalformedData (answered 0x000E by the connection)."""
        for body in (b"", b"\x00" * 5, COOKIE + b"\x00\x03\x00\x05\x00\x09ab"):
            with self.assertRaises(MalformedData):
                self.world.say(self.alice, body)

    def test_blocked_sender_is_not_heard(self) -> None:
        """Bob has Alice on his deny list: her lines and whispers do not
        reach him (and a whisper to him is no error); Carol hears her, and
        Bob's own lines reach Alice."""
        self.bob.user.privacy = Privacy(BLOCK_DENIED, deny=frozenset({"alice"}))
        self.world.say(self.alice, line(b"hello all", reflect=False))
        self.assertEqual(self.heard(), [0, 0, 1, 0])
        self.assertEqual(
            self.world.say(self.alice, line(b"psst", to_room=False, whisper_to=b"Bob")),
            [Reply(0x0E, 0x06, relayed(self.world, self.alice, b"psst", to_room=False))],
        )
        self.assertEqual(self.heard(), [0, 0, 1, 0])
        self.world.say(self.bob, line(b"hmph", reflect=False))
        self.assertEqual(self.heard(), [1, 0, 2, 0])

    def test_a_dead_recipient_does_not_stop_the_others(self) -> None:
        """A member whose transport is gone is skipped (and logged); the others still hear the line.
        A member whose transport is gone is skipped (and logged); the others still hear the line."""
        self.bob.connection.broken = True
        self.world.say(self.alice, line(b"hi", reflect=False))
        self.assertEqual(self.carol.lines(), [relayed(self.world, self.alice, b"hi")])
        self.flushLoggedErrors(ConnectionError)


class HandlerTableTests(SynchronousTestCase):
    def test_handlers_take_the_member(self) -> None:
        """The chat connection's table hands the member to chat handlers and its session to the
        OService ones."""
        world = ChatWorld()
        seen: list[Any] = []

        def on_session(session: Any, request: SnacHeader, body: bytes) -> str:
            seen.append(session)
            return "answered"

        table = world.chat.handlers({(FoodGroup.OSERVICE, 0x06): on_session})
        alice = world.enter("Alice", ready=False)
        handler = table[FoodGroup.OSERVICE, 0x06]
        self.assertEqual(handler(alice.member, READY, b""), "answered")
        self.assertEqual(seen, [alice.session])
        table[FoodGroup.OSERVICE, OService.CLIENT_READY](alice.member, READY, b"")
        self.assertEqual(alice.kinds(), [JOINED, INFO])
        self.assertEqual(
            table[FoodGroup.CHAT, Chat.CHANNEL_MSG_TO_HOST](
                alice.member, SEND, line(reflect=False)
            ),
            [],
        )


# -- the chat connection's sign-on --------------------------------------------------------


class AttachTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = ChatWorld(ChatConfig(max_occupancy=2))

    def test_room_filled_meanwhile(self) -> None:
        """Carol got her room cookie while there was a place; Bob took it:
        her chat connection is refused, and the room is untouched."""
        alice = self.world.enter("Alice", "Small")
        carol, _ = self.world.sign_on("Carol")
        spec = self.world.chat.resolve_cookie(b"4-0-Small", "carol")
        self.assertEqual(spec, RoomSpec(EXCHANGE_PRIVATE, "Small", int(START)))
        self.world.enter("Bob", "small")
        connection = FakeConnection("carol chat")
        with self.assertRaises(SignOnRefused):
            self.world.chat.attach(carol, connection, b"4-0-Small")
        self.assertEqual(list(alice.member.room.members), ["alice", "bob"])
        self.assertEqual(connection.payloads, [])

    def test_refusal_is_logged_with_its_reason(self) -> None:
        """A refused chat connection is logged with its instance and why."""
        alice, _ = self.world.sign_on("Alice")
        with capturedLogs() as events, self.assertRaises(SignOnRefused):
            self.world.chat.attach(alice, FakeConnection("alice chat"), b"6-0-Room")
        (event,) = [e for e in events if "chat refused" in e["log_format"]]
        self.assertEqual(
            (event["instance"], event["reason"]), (alice.instance_id, "unknown exchange")
        )

    def test_closing_connection_after_async_public_lookup(self) -> None:
        """A chat connection that closed while its public room was looked up is refused, and no room
        is made."""
        result_of(self.world.store.create_public_room("Town Square", 1_700_000_000))
        alice, _ = self.world.sign_on("Alice")
        self.world.store.hold = True
        connection = FakeConnection("alice chat")
        d = self.world.chat.attach(alice, connection, b"5-0-town square")
        self.assertIsInstance(d, defer.Deferred)
        self.assertNoResult(d)
        connection.closing = True
        self.world.store.release()
        self.failureResultOf(d, SignOnRefused)
        self.assertEqual(self.world.chat.rooms.rooms, {})
        self.assertEqual(self.world.chat.rooms.user_rooms, {})

    def test_session_gone_after_async_public_lookup(self) -> None:
        """A session that signed off while its public room was looked up is refused."""
        result_of(self.world.store.create_public_room("Town Square", 1_700_000_000))
        alice, _ = self.world.sign_on("Alice")
        self.world.store.hold = True
        d = self.world.chat.attach(alice, FakeConnection("alice chat"), b"5-0-Town Square")
        self.world.sign_off(alice)
        self.world.store.release()
        self.failureResultOf(d, SignOnRefused)
        self.assertEqual(self.world.chat.rooms.rooms, {})

    def test_public_room_filled_during_lookup(self) -> None:
        """A public room that filled while the store was read refuses the chat connection."""
        result_of(self.world.store.create_public_room("Town Square", 1_700_000_000))
        self.world.enter("Alice", "Town Square", EXCHANGE_PUBLIC)
        carol, _ = self.world.sign_on("Carol")
        self.world.store.hold = True
        d = self.world.chat.attach(carol, FakeConnection("carol chat"), b"5-0-Town Square")
        self.world.store.hold = False
        self.world.enter("Bob", "Town Square", EXCHANGE_PUBLIC)
        self.world.store.release()
        self.failureResultOf(d, SignOnRefused)
        room = self.world.chat.rooms.find(EXCHANGE_PUBLIC, "town square")
        self.assertEqual(list(room.members), ["alice", "bob"])

    def test_public_room_joined(self) -> None:
        """A public room from the store is joined under the store's spelling and age, as no private
        room."""
        result_of(self.world.store.create_public_room("Town Square", 1_700_000_000))
        alice = self.world.enter("Alice", "TOWN SQUARE", EXCHANGE_PUBLIC)
        room = alice.member.room
        self.assertEqual(
            (room.name, room.created_at, room.public), ("Town Square", 1_700_000_000, True)
        )
        self.assertEqual(self.world.chat.rooms.private_rooms, 0)
        info = RoomInfo.unpack(alice.connection.snacs(*INFO)[0].body)
        self.assertEqual(info.ref.cookie, b"5-0-Town Square")

    def test_refused_cookies(self) -> None:
        """Room cookies this server did not make, other instances, unknown exchanges and unknown
        public rooms are refused at sign-on."""
        alice, _ = self.world.sign_on("Alice")
        for cookie in (b"", b"not a room", b"4-1-Room", b"6-0-Room", b"4-0-100%", b"04-0-Room"):
            connection = FakeConnection("alice chat")
            with self.assertRaises(SignOnRefused):
                self.world.chat.attach(alice, connection, cookie)
        d = self.world.chat.attach(alice, FakeConnection("alice chat"), b"5-0-Nowhere")
        self.failureResultOf(d, SignOnRefused)
        self.assertEqual(self.world.chat.rooms.rooms, {})

    def test_session_signed_off(self) -> None:
        """A chat connection for a session that is gone is refused."""
        alice, _ = self.world.sign_on("Alice")
        self.world.sign_off(alice)
        with self.assertRaises(SignOnRefused):
            self.world.chat.attach(alice, FakeConnection("alice chat"), b"4-0-Room")
        self.assertEqual(self.world.chat.rooms.rooms, {})


class ServiceRequestTests(SynchronousTestCase):
    """01,04 for the chat service, on BOS."""

    def request(self, world: ChatWorld, session: SessionInstance, ref: RoomRef) -> Any:
        return world.chat.service_request(
            session, Tlv(0x0001, ref.pack()).pack(), lambda cookie: [Reply(1, 5, cookie)]
        )

    def test_redirect_names_the_room_as_spelt(self) -> None:
        """The 01,05 names a live room as it is spelt, and a private room nobody is in yet as asked.
        The 01,05 names a live room as it is spelt, and a private room nobody is in yet as asked."""
        world = ChatWorld()
        world.enter("Alice", "Tea Party")
        bob, _ = world.sign_on("Bob")
        replies = self.request(world, bob, RoomRef(4, b"4-0-TEA PARTY", 0))
        self.assertEqual(replies, [Reply(1, 5, b"4-0-Tea Party")])
        # A private room nobody is in yet: it will be made at the join.
        replies = self.request(world, bob, RoomRef(4, b"4-0-New Room", 0))
        self.assertEqual(replies, [Reply(1, 5, b"4-0-New Room")])
        # Cookies are the server's own: only in their canonical form.
        snac_error(
            self,
            lambda: self.request(world, bob, RoomRef(4, b"4-0-New  Room", 0)),
            SnacErrorCode.NO_MATCH,
        )

    def test_refusals(self) -> None:
        """An unknown instance or unknown public room is answered 0x0014."""
        world = ChatWorld()
        alice, _ = world.sign_on("Alice")
        snac_error(
            self,
            lambda: self.request(world, alice, RoomRef(4, b"4-1-Lobby", 1)),
            SnacErrorCode.NO_MATCH,
        )
        d = self.request(world, alice, RoomRef(5, b"5-0-Nowhere", 0))
        self.assertEqual(self.failureResultOf(d, SnacError).value.code, SnacErrorCode.NO_MATCH)


# -- ChatNav ------------------------------------------------------------------------------


def nav_reply(test: SynchronousTestCase, replies: Any) -> TlvList:
    if isinstance(replies, defer.Deferred):
        replies = test.successResultOf(replies)
    (reply,) = replies
    test.assertEqual((reply.family, reply.subtype), NAV_INFO)
    return TlvList.unpack_list(reply.body)


def room_of(test: SynchronousTestCase, replies: Any) -> RoomInfo:
    tlvs = nav_reply(test, replies)
    test.assertEqual([t.tag for t in tlvs], [0x0004])
    return RoomInfo.unpack(tlvs.get(0x0004) or b"")


def exchanges_of(tlvs: TlvList) -> list[tuple[int, TlvList]]:
    result = []
    for value in tlvs.all(0x0003):
        reader = Reader(value, "exchange")
        exchange = reader.u16("exchange id")
        inner = TlvList.read_block(reader)
        reader.expect_end()
        result.append((exchange, inner))
    return result


def create_body(name: bytes | None, exchange: int = EXCHANGE_PRIVATE) -> bytes:
    """0D,08 as libpurple sends it."""
    tlvs = [] if name is None else [Tlv(0x00D3, name)]
    tlvs += [Tlv(0x00D6, b"us-ascii"), Tlv(0x00D7, b"en")]
    return RoomInfo(RoomRef(exchange, b"create", 0xFFFF), 1, TlvList(tlvs)).pack()


def info_request(exchange: int, cookie: bytes, instance: int = 0) -> bytes:
    return RoomRef(exchange, cookie, instance).pack() + b"\x02"


class ChatNavTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = ChatWorld(ChatConfig(max_rooms_per_user=7, max_message_length=512))
        self.alice, _ = self.world.sign_on("Alice")
        self.nav = self.world.nav

    def create(self, name: bytes | None, exchange: int = EXCHANGE_PRIVATE) -> Any:
        return self.world.nav_call(self.nav.create_room, self.alice, create_body(name, exchange))

    def info(self, exchange: int, cookie: bytes, instance: int = 0) -> Any:
        return self.world.nav_call(
            self.nav.room_info_query, self.alice, info_request(exchange, cookie, instance)
        )

    def test_rights(self) -> None:
        """0D,02: TLV 0x0002 (rooms per user), then exchanges 4 and 5, each with its maximum-rooms
        TLV 0x0003 first."""
        tlvs = nav_reply(self, self.world.nav_call(self.nav.rights_query, self.alice, b""))
        self.assertEqual([t.tag for t in tlvs], [0x0002, 0x0003, 0x0003])
        self.assertEqual(tlvs.get_u8(0x0002), 7)
        exchanges = exchanges_of(tlvs)
        self.assertEqual([e for e, _ in exchanges], [EXCHANGE_PRIVATE, EXCHANGE_PUBLIC])
        for _, inner in exchanges:
            # WinAIM 2.x-3.x: the maximum rooms first (one byte).
            self.assertEqual(next(iter(inner)).tag, 0x0003)
            self.assertEqual(inner.get_u8(0x0003), 7)
            self.assertEqual(inner.get_u16(0x0004), 48)

    def test_exchange_info(self) -> None:
        """0D,03: one exchange for 4 or 5; 0x0008 for any other; a short or long body is malformed.
        0D,03: one exchange for 4 or 5; 0x0008 for any other; a short or long body is malformed."""
        for exchange in (EXCHANGE_PRIVATE, EXCHANGE_PUBLIC):
            tlvs = nav_reply(
                self,
                self.world.nav_call(
                    self.nav.exchange_info_query, self.alice, struct.pack("!H", exchange)
                ),
            )
            self.assertEqual([t.tag for t in tlvs], [0x0002, 0x0003])
            ((got, inner),) = exchanges_of(tlvs)
            self.assertEqual(got, exchange)
            self.assertEqual(next(iter(inner)).tag, 0x0003)
        for exchange in (0, 6, 0xFFFF):
            snac_error(
                self,
                lambda e=exchange: self.world.nav_call(
                    self.nav.exchange_info_query, self.alice, struct.pack("!H", e)
                ),
                SnacErrorCode.NOT_SUPPORTED_BY_HOST,
            )
        for body in (b"", b"\x00", b"\x00\x04\x00"):
            with self.assertRaises(MalformedData):
                self.world.nav_call(self.nav.exchange_info_query, self.alice, body)

    def test_create_a_private_room(self) -> None:
        """0D,08 for a new private room: its info at detail level 2, the name made canonical,
        libpurple's two limits present; nothing is made until someone joins."""
        info = room_of(self, self.create(b"  Tea   Party "))
        self.assertEqual(info.ref, RoomRef(EXCHANGE_PRIVATE, b"4-0-Tea Party", 0))
        self.assertEqual(info.detail, 2)
        self.assertEqual(info.tlvs.get(0x00D3), b"Tea Party")
        self.assertEqual(info.tlvs.get_u16(0x00D1), 512)
        self.assertEqual(info.tlvs.get_u16(0x00DA), 512)
        self.assertEqual(info.tlvs.get_u32(0x00CA), int(START))
        # Made only when someone joins it.
        self.assertEqual(self.world.chat.rooms.rooms, {})

    def test_find_a_live_private_room(self) -> None:
        """0D,08 for a live room answers with the room as it is, in any case."""
        self.world.enter("Bob", "Tea Party")
        self.world.clock.advance(100)
        info = room_of(self, self.create(b"TEA PARTY"))
        self.assertEqual(info.ref.cookie, b"4-0-Tea Party")
        self.assertEqual(info.tlvs.get_u32(0x00CA), int(START))

    def test_bad_names(self) -> None:
        """A bad room name is answered 0x0001 with subcode 0x0033 (libpurple: "Invalid chat room
        name")."""
        for name in (b"", b"   ", b"x" * 49, b"100%", "caf\xe9".encode("latin-1"), b"tab\there"):
            snac_error(
                self,
                lambda n=name: self.create(n),
                SnacErrorCode.INVALID_SNAC,
                ERROR_SUBCODE_BAD_ROOM_NAME,
            )
        self.assertEqual(self.world.chat.rooms.rooms, {})

    def test_unknown_exchange(self) -> None:
        """0D,08 on an exchange other than 4 and 5 is answered 0x0008."""
        for exchange in (0, 3, 6):
            snac_error(
                self,
                lambda e=exchange: self.create(b"Lobby", e),
                SnacErrorCode.NOT_SUPPORTED_BY_HOST,
            )

    def test_public_rooms(self) -> None:
        """0D,08 for a public room answers from the store: 0x0014 for one that is not there, the
        stored spelling and age for one that is."""
        d = self.create(b"Town Square", EXCHANGE_PUBLIC)
        self.assertEqual(self.failureResultOf(d, SnacError).value.code, SnacErrorCode.NO_MATCH)
        result_of(self.world.store.create_public_room("Town Square", 1_700_000_000))
        info = room_of(self, self.create(b"town  SQUARE", EXCHANGE_PUBLIC))
        self.assertEqual(info.ref, RoomRef(EXCHANGE_PUBLIC, b"5-0-Town Square", 0))
        self.assertEqual(info.tlvs.get_u32(0x00CA), 1_700_000_000)
        self.assertEqual(info.tlvs.get(0x00D3), b"Town Square")

    def test_public_lookup_waits_for_the_store(self) -> None:
        """A public room's answer waits for the store's read."""
        result_of(self.world.store.create_public_room("Town Square", 1_700_000_000))
        self.world.store.hold = True
        d = self.create(b"Town Square", EXCHANGE_PUBLIC)
        self.assertNoResult(d)
        self.world.store.release()
        self.assertEqual(room_of(self, d).ref.cookie, b"5-0-Town Square")

    def test_public_room_filled_during_the_lookup(self) -> None:
        """The store read gives other joins their turn: checked again."""
        world = ChatWorld(ChatConfig(max_occupancy=2))
        result_of(world.store.create_public_room("Town Square", 1_700_000_000))
        world.enter("Alice", "Town Square", EXCHANGE_PUBLIC)
        carol, _ = world.sign_on("Carol")
        world.store.hold = True
        d = world.nav_call(world.nav.create_room, carol, create_body(b"Town Square", 5))
        world.store.hold = False
        world.enter("Bob", "Town Square", EXCHANGE_PUBLIC)
        world.store.release()
        self.assertEqual(self.failureResultOf(d, SnacError).value.code, SnacErrorCode.LIST_OVERFLOW)

    def test_missing_room_name(self) -> None:
        """0D,08 without TLV 0x00D3 is 0x000E; stray bytes after the room info are malformed."""
        snac_error(self, lambda: self.create(None), SnacErrorCode.BUSTED_SNAC_PAYLOAD)
        with self.assertRaises(MalformedData):
            self.world.nav_call(self.nav.create_room, self.alice, create_body(b"Lobby") + b"x")

    def test_limits_at_create(self) -> None:
        """0D,08 gives the limits' refusals (full 0x0015, too many rooms 0x000D, too many private
        rooms 0x0005), but not for the user's own room."""
        world = ChatWorld(ChatConfig(max_occupancy=2, max_rooms_per_user=1, max_private_rooms=2))
        world.enter("Alice", "Full")
        world.enter("Bob", "Full")
        carol, _ = world.sign_on("Carol")
        world.enter("Carol", "Mine", session=carol)
        dave, _ = world.sign_on("Dave")

        def create(session: SessionInstance, name: bytes) -> Any:
            return world.nav_call(world.nav.create_room, session, create_body(name))

        snac_error(self, lambda: create(dave, b"full"), SnacErrorCode.LIST_OVERFLOW)
        snac_error(self, lambda: create(carol, b"Other"), SnacErrorCode.REQUEST_DENIED)
        snac_error(self, lambda: create(dave, b"Third"), SnacErrorCode.SERVICE_UNAVAILABLE)
        # Carol's own room again, from another session, is allowed (§17).
        carol2, _ = world.sign_on("Carol")
        self.assertEqual(room_of(self, create(carol2, b"MINE")).ref.cookie, b"4-0-Mine")

    def test_signed_off_session(self) -> None:
        """ChatNav requests from a session that is gone are answered 0x0004."""
        self.world.sign_off(self.alice)
        snac_error(self, lambda: self.create(b"Lobby"), SnacErrorCode.NOT_LOGGED_ON)
        snac_error(self, lambda: self.info(4, b"4-0-Lobby"), SnacErrorCode.NOT_LOGGED_ON)

    def test_room_info_of_a_live_room(self) -> None:
        """0D,04 with a live room's cookie (any case) answers its info."""
        self.world.enter("Bob", "Tea Party")
        self.world.clock.advance(100)
        info = room_of(self, self.info(EXCHANGE_PRIVATE, b"4-0-tea party"))
        self.assertEqual(info.ref, RoomRef(EXCHANGE_PRIVATE, b"4-0-Tea Party", 0))
        self.assertEqual(info.detail, 2)
        self.assertEqual(info.tlvs.get_u32(0x00CA), int(START))

    def test_room_info_of_a_public_room(self) -> None:
        """0D,04 with a public room's cookie answers from the store; an unknown one is 0x0014."""
        result_of(self.world.store.create_public_room("Town Square", 1_700_000_000))
        info = room_of(self, self.info(EXCHANGE_PUBLIC, b"5-0-TOWN SQUARE"))
        self.assertEqual(info.ref.cookie, b"5-0-Town Square")
        self.assertEqual(info.tlvs.get_u32(0x00CA), 1_700_000_000)
        d = self.info(EXCHANGE_PUBLIC, b"5-0-Nowhere")
        self.assertEqual(self.failureResultOf(d, SnacError).value.code, SnacErrorCode.NO_MATCH)

    def test_room_info_of_an_unknown_private_room(self) -> None:
        """A private room exists only while someone is in it: 0D,04 for one
        that is not is "no match"."""
        snac_error(
            self, lambda: self.info(EXCHANGE_PRIVATE, b"4-0-Nobody Here"), SnacErrorCode.NO_MATCH
        )

    def test_room_reference_exchange_must_match_its_cookie(self) -> None:
        """0D,04 whose exchange contradicts its (live) room cookie's is "no match"."""
        self.world.enter("Bob", "Tea Party")
        snac_error(
            self, lambda: self.info(EXCHANGE_PUBLIC, b"4-0-Tea Party"), SnacErrorCode.NO_MATCH
        )

    def test_room_info_of_no_room(self) -> None:
        """0D,04 with a cookie this server never made is 0x0014; a short body is malformed."""
        for cookie, instance in ((b"not a room", 0), (b"4-1-Lobby", 1), (b"4-0-100%", 0)):
            snac_error(
                self,
                lambda c=cookie, i=instance: self.info(EXCHANGE_PRIVATE, c, i),
                SnacErrorCode.NO_MATCH,
            )
        with self.assertRaises(MalformedData):
            self.world.nav_call(self.nav.room_info_query, self.alice, b"\x00\x04\x01")

    def test_refusals_are_chat_refused_underneath(self) -> None:
        """``resolve`` raises ``ChatRefused``; ``answer`` turns it into the
        SNAC error (with the subcode)."""
        with self.assertRaises(ChatRefused) as caught:
            self.world.chat.resolve(EXCHANGE_PRIVATE, "100%", "alice")
        self.assertEqual(
            (caught.exception.code, caught.exception.subcode),
            (SnacErrorCode.INVALID_SNAC, ERROR_SUBCODE_BAD_ROOM_NAME),
        )
