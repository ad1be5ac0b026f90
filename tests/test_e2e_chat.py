"""Chat rooms end to end over loopback TCP (issue 16, MULTISESSION.md §17):
ChatNav on a service connection of the session finds or makes a room, the
chat connection on the chat port joins it, members talk, whisper and leave;
public rooms an admin made, private rooms that vanish with their last
member, invitations, one session per room, every limit and refusal, and
bad cookies and garbage on the chat port."""

from __future__ import annotations

import struct

from twisted.internet import reactor, task
from twisted.trial import unittest

from aimserver.config import load_config
from aimserver.wire.chat import (
    CHAT_CAPABILITY,
    EXCHANGE_PRIVATE,
    EXCHANGE_PUBLIC,
    RoomInfo,
    RoomRef,
)
from aimserver.wire.flap import Channel, SignonPayload
from aimserver.wire.icbm import Rendezvous
from aimserver.wire.tlv import Tlv, TlvList
from tests.client import (
    BosClient,
    ChatClient,
    connect,
    deferred_test,
    redeem,
    split_address,
)
from tests.harness import LoopbackServer, wait_until

ACCOUNTS = {"Alice": "secret", "Bob": "secret", "Carol": "secret", "Dave": "secret"}


def error_code(body: bytes) -> int:
    return struct.unpack_from("!H", body)[0]


class ChatTestCase(unittest.TestCase):
    async def start(self, **settings: object) -> LoopbackServer:
        overrides = {"multisession.notify": False, **settings}
        server = await LoopbackServer.start(
            load_config(None, overrides), accounts=ACCOUNTS, cached=True
        )
        self.addCleanup(server.stop)
        return server

    async def assert_refused(
        self,
        client: BosClient,
        name: str,
        code: int,
        *,
        exchange: int = EXCHANGE_PRIVATE,
        subcode: int | None = None,
    ) -> None:
        nav = await client.chat_nav()
        wanted = RoomInfo(
            RoomRef(exchange, b"create", 0xFFFF),
            1,
            TlvList((Tlv(0xD3, name.encode("latin-1")), Tlv(0xD6, b"us-ascii"))),
        )
        request_id = nav.next_id()
        nav.flap.send_snac(0x0D, 0x08, wanted.pack(), request_id)
        header, body = await nav.flap.wait_snac(0x0D, 0x01)
        self.assertEqual((header.request_id, error_code(body)), (request_id, code))
        if subcode is not None:
            self.assertEqual(TlvList.unpack_list(body[2:]).get_u16(0x0008), subcode)

    async def chat_cookie(self, client: BosClient, name: str, exchange: int = 4) -> TlvList:
        """The 01,05 for the chat connection of room ``name`` (found first)."""
        info = await client.find_room(name, exchange)
        _, body = await client.request(
            0x01, 0x04, struct.pack("!H", 0x0E) + Tlv(0x01, info.ref.pack()).pack(), 0x05
        )
        return TlvList.unpack_list(body)

    async def refused_at_signon(self, address: tuple[str, int], cookie: bytes) -> None:
        """A sign-on with ``cookie`` at ``address``: closed with channel 4."""
        flap = await connect(*address)
        await flap.wait_channel(Channel.SIGNON)
        flap.send_frame(Channel.SIGNON, SignonPayload(1, TlvList((Tlv(0x06, cookie),))).pack())
        await flap.wait_channel(Channel.SIGNOFF)
        await flap.wait_lost()
        self.assertEqual(flap.snacs(0x01, 0x03), [])


class JoinTalkLeaveTests(ChatTestCase):
    @deferred_test
    async def test_create_join_talk_leave(self) -> None:
        """Alice makes a private room, Bob joins it by name in another case:
        the roster, the room info with libpurple's two limits, the join
        order, lines both ways with reflection, and Bob's leave."""
        server = await self.start()
        alice = await server.session("Alice")
        bob = await server.session("Bob")
        a_room = await alice.join_room("Tea Party")
        self.assertEqual(a_room.roster, ["Alice"])
        self.assertEqual(a_room.info.detail, 2)
        self.assertEqual(a_room.info.ref.cookie, b"4-0-Tea Party")
        self.assertIsNotNone(a_room.info.tlvs.get_u16(0x00D1))
        self.assertIsNotNone(a_room.info.tlvs.get_u16(0x00DA))
        b_room = await bob.join_room("tea  party")
        self.assertEqual(b_room.roster, ["Alice", "Bob"])
        self.assertEqual(b_room.info.ref.cookie, b"4-0-Tea Party")
        self.assertEqual(await a_room.wait_joined(), ["Bob"])
        request_id = b_room.say(b"<HTML>hello</HTML>")
        self.assertEqual((await a_room.hear())[:2], ("Bob", b"<HTML>hello</HTML>"))
        sender, text, header = await b_room.hear()
        self.assertEqual(
            (sender, text, header.request_id), ("Bob", b"<HTML>hello</HTML>", request_id)
        )
        a_room.say(b"hi", reflect=False)
        self.assertEqual((await b_room.hear())[:2], ("Alice", b"hi"))
        await a_room.sync()
        self.assertEqual(a_room.flap.snacs(0x0E, 0x06), [])
        await b_room.close()
        self.assertEqual(await a_room.wait_left(), ["Bob"])
        for client in (a_room, alice, bob):
            await client.close()

    @deferred_test
    async def test_whisper_reaches_its_target_only(self) -> None:
        """A whisper (TLV 0x0002, no 0x0001) goes to the member it names and
        nobody else; one to someone not in the room is "not logged on"."""
        server = await self.start()
        rooms = []
        for name in ("Alice", "Bob", "Carol"):
            session = await server.session(name)
            self.addCleanup(session.close)
            room = await session.join_room("whispers")
            self.addCleanup(room.close)
            rooms.append(room)
        alice, bob, carol = rooms
        await alice.wait_joined()
        alice.say(b"psst", whisper_to="bob", reflect=False)
        sender, text, _ = await bob.hear()
        self.assertEqual((sender, text), ("Alice", b"psst"))
        request_id = alice.say(b"psst", whisper_to="Dave")
        header, body = await alice.flap.wait_snac(0x0E, 0x01)
        self.assertEqual((header.request_id, error_code(body)), (request_id, 0x0004))
        await carol.sync()
        self.assertEqual(carol.flap.snacs(0x0E, 0x06), [])

    @deferred_test
    async def test_a_closed_session_leaves_its_rooms(self) -> None:
        """Signing off (the BOS connection closes) closes the session's chat
        connections: the others see it leave."""
        server = await self.start()
        alice = await server.session("Alice")
        bob = await server.session("Bob")
        self.addCleanup(bob.close)
        a_room = await alice.join_room("goodbyes")
        b_room = await bob.join_room("goodbyes")
        self.addCleanup(b_room.close)
        await alice.close()
        await a_room.flap.wait_lost()
        self.assertEqual(await b_room.wait_left(), ["Alice"])


class RoomLifeTests(ChatTestCase):
    @deferred_test
    async def test_private_room_vanishes_with_its_last_member(self) -> None:
        server = await self.start()
        alice = await server.session("Alice")
        self.addCleanup(alice.close)
        room = await alice.join_room("Fleeting")
        self.assertEqual(len(server.server.chat.rooms.rooms), 1)
        await room.close()
        await wait_until(lambda: not server.server.chat.rooms.rooms, "the room to vanish")
        self.assertEqual(server.server.chat.rooms.private_rooms, 0)
        again = await alice.join_room("FLEETING")
        self.addCleanup(again.close)
        # Made anew, under the new spelling.
        self.assertEqual(again.info.ref.cookie, b"4-0-FLEETING")

    @deferred_test
    async def test_public_room_made_by_an_admin(self) -> None:
        """Exchange 5 holds only the rooms in the store: one an admin made
        is joined by any spelling; an unknown one is 0x0014; after the admin
        deletes it, nobody new gets in, while its members stay."""
        server = await self.start()
        await server.store.create_public_room("Town Square", 1_700_000_000)
        alice = await server.session("Alice")
        bob = await server.session("Bob")
        for client in (alice, bob):
            self.addCleanup(client.close)
        room = await alice.join_room("town square", EXCHANGE_PUBLIC)
        self.addCleanup(room.close)
        self.assertEqual(room.info.ref.cookie, b"5-0-Town Square")
        self.assertEqual(room.info.tlvs.get(0x00CA), struct.pack("!I", 1_700_000_000))
        await self.assert_refused(alice, "Nowhere", 0x0014, exchange=EXCHANGE_PUBLIC)
        await server.store.delete_public_room("Town Square")
        await self.assert_refused(bob, "Town Square", 0x0014, exchange=EXCHANGE_PUBLIC)
        room.say(b"still here")
        self.assertEqual((await room.hear())[1], b"still here")


class LimitTests(ChatTestCase):
    @deferred_test
    async def test_bad_room_names_and_exchanges_are_refused(self) -> None:
        """A name that is empty, too long or has a character rooms may not
        have: 0D,01 with subcode 0x0033 (libpurple: "Invalid chat room
        name"); an exchange other than 4 and 5: 0x0008."""
        server = await self.start()
        alice = await server.session("Alice")
        self.addCleanup(alice.close)
        for name in ("", "   ", "x" * 49, "100%", "caf\xe9", "tab\there"):
            await self.assert_refused(alice, name, 0x0001, subcode=0x0033)
        await self.assert_refused(alice, "Lobby", 0x0008, exchange=6)
        await alice.chat_nav()
        self.assertEqual(server.server.chat.rooms.rooms, {})

    @deferred_test
    async def test_occupancy_is_enforced(self) -> None:
        """[chat] max_occupancy is 0x00D2 and is enforced: a full room
        refuses at 0D,08 (0x0015), and a chat connection that got its
        cookie while there was room is closed if the room filled meanwhile."""
        server = await self.start(**{"chat.max_occupancy": 2})
        clients = {name: await server.session(name) for name in ("Alice", "Bob", "Carol")}
        for client in clients.values():
            self.addCleanup(client.close)
        a_room = await clients["Alice"].join_room("Small")
        self.addCleanup(a_room.close)
        self.assertEqual(a_room.info.tlvs.get_u16(0x00D2), 2)
        redirect = await self.chat_cookie(clients["Carol"], "Small")
        b_room = await clients["Bob"].join_room("Small")
        self.addCleanup(b_room.close)
        await self.assert_refused(clients["Carol"], "Small", 0x0015)
        await self.refused_at_signon(split_address(redirect), redirect.get(0x06) or b"")
        self.assertEqual(await a_room.wait_joined(), ["Bob"])

    @deferred_test
    async def test_rooms_per_user_and_private_rooms_per_server(self) -> None:
        """[chat] max_rooms_per_user counts a user's rooms across its
        sessions (0x000D beyond it); max_private_rooms the server's (0x0005)."""
        server = await self.start(**{"chat.max_rooms_per_user": 1, "chat.max_private_rooms": 2})
        alice = await server.session("Alice")
        alice2 = await server.session("Alice")
        bob = await server.session("Bob")
        carol = await server.session("Carol")
        for client in (alice, alice2, bob, carol):
            self.addCleanup(client.close)
        room = await alice.join_room("One")
        self.addCleanup(room.close)
        await self.assert_refused(alice2, "Two", 0x000D)
        # Its own room again is no second room (§17 replaces it).
        await alice2.find_room("one")
        other = await bob.join_room("Two")
        self.addCleanup(other.close)
        await self.assert_refused(carol, "Three", 0x0005)
        await carol.find_room("Two")

    @deferred_test
    async def test_message_length_is_enforced(self) -> None:
        """A line longer than 0x00D1 (HTML included) is refused with 0x000B
        and reaches nobody; one at the limit goes through."""
        server = await self.start(**{"chat.max_message_length": 100})
        alice = await server.session("Alice")
        bob = await server.session("Bob")
        for client in (alice, bob):
            self.addCleanup(client.close)
        a_room = await alice.join_room("Terse")
        b_room = await bob.join_room("Terse")
        for room in (a_room, b_room):
            self.addCleanup(room.close)
        self.assertEqual(a_room.info.tlvs.get_u16(0x00D1), 100)
        request_id = a_room.say(b"x" * 101)
        header, body = await a_room.flap.wait_snac(0x0E, 0x01)
        self.assertEqual((header.request_id, error_code(body)), (request_id, 0x000B))
        a_room.say(b"y" * 100, reflect=False)
        self.assertEqual((await b_room.hear())[1], b"y" * 100)
        self.assertEqual(b_room.flap.snacs(0x0E, 0x06), [])

    @deferred_test
    async def test_chat_rate_is_per_user_across_rooms(self) -> None:
        """Lines count against the user's rate class 2, one state for all its
        connections (MULTISESSION.md §19), not one per connection."""
        server = await self.start()
        alice = await server.session("Alice")
        bob = await server.session("Bob")
        for client in (alice, bob):
            self.addCleanup(client.close)
        pairs = []
        for name in ("Flood One", "Flood Two"):
            a_room = await alice.join_room(name)
            b_room = await bob.join_room(name)
            self.addCleanup(a_room.close)
            self.addCleanup(b_room.close)
            await a_room.wait_joined()
            pairs.append((a_room, b_room))
        for _ in range(70):
            for a_room, _ in pairs:
                a_room.say(b"spam", reflect=False)
        for a_room, b_room in pairs:
            await a_room.sync()
            await b_room.sync()
        heard = [len(b_room.flap.snacs(0x0E, 0x06)) for _, b_room in pairs]
        # 70 lines at once pass in one room (the limit comes after ~110);
        # 140 over two rooms of one user do not.
        self.assertLess(sum(heard), 120, heard)
        self.assertTrue(any(a_room.flap.snacs(0x01, 0x0A) for a_room, _ in pairs))


class InvitationTests(ChatTestCase):
    def invite(self, client: BosClient, to: str, ref: RoomRef, cookie: bytes) -> int:
        """04,06 channel 2 as libpurple invites (instance 0, text, room)."""
        data = Rendezvous(
            0,
            cookie,
            CHAT_CAPABILITY,
            TlvList(
                (
                    Tlv.u16(0x000A, 1),
                    Tlv.empty(0x000F),
                    Tlv(0x000C, b"Join me"),
                    Tlv(0x2711, RoomRef(ref.exchange, ref.cookie, 0).pack()),
                )
            ),
        )
        return client.send_channel(to, 2, [Tlv(0x05, data.pack())], cookie)

    async def pair(self, server: LoopbackServer) -> tuple[BosClient, BosClient, ChatClient]:
        alice = await server.session("Alice")
        bob = await server.session("Bob")
        for client in (alice, bob):
            self.addCleanup(client.close)
        bob.set_capabilities([CHAT_CAPABILITY])
        await bob.sync()
        room = await alice.join_room("Party")
        self.addCleanup(room.close)
        return alice, bob, room

    @deferred_test
    async def test_invitation_accepted(self) -> None:
        """Bob gets the room in TLV 0x2711 and joins it by name, as
        libpurple accepts; Alice sees him arrive."""
        server = await self.start()
        alice, bob, room = await self.pair(server)
        self.invite(alice, "Bob", room.info.ref, b"inv00001")
        _, _, tlvs = await bob.receive_im()
        invite = Rendezvous.unpack(tlvs.get(0x05) or b"")
        self.assertEqual(invite.capability, CHAT_CAPABILITY)
        ref = RoomRef.unpack(invite.tlvs.get(0x2711) or b"")
        name = ref.cookie.split(b"-", 2)[2].decode()
        b_room = await bob.join_room(name, ref.exchange)
        self.addCleanup(b_room.close)
        self.assertEqual(await room.wait_joined(), ["Bob"])

    @deferred_test
    async def test_invitation_declined_reaches_the_inviter(self) -> None:
        """A decline (rendezvous cancel, reason 1) goes back to Alice."""
        server = await self.start()
        alice, bob, room = await self.pair(server)
        self.invite(alice, "Bob", room.info.ref, b"inv00002")
        await bob.receive_im()
        cancel = Rendezvous(1, b"inv00002", CHAT_CAPABILITY, TlvList((Tlv.u16(0x000B, 1),)))
        bob.send_channel("Alice", 2, [Tlv(0x05, cancel.pack())], b"inv00002")
        sender, _, tlvs = await alice.receive_im()
        self.assertEqual(sender.screen_name, "Bob")
        self.assertEqual(Rendezvous.unpack(tlvs.get(0x05) or b"").kind, 1)

    @deferred_test
    async def test_invitation_to_a_user_who_blocks_the_inviter(self) -> None:
        """Bob blocks Alice: her invitation is answered as to an offline
        user (0x0004) and Bob gets nothing."""
        server = await self.start()
        alice, bob, room = await self.pair(server)
        bob.flap.send_snac(0x09, 0x07, b"\x05Alice", bob.next_id())
        await bob.sync()
        request_id = self.invite(alice, "Bob", room.info.ref, b"inv00003")
        header, body = await alice.flap.wait_snac(0x04, 0x01)
        self.assertEqual((header.request_id, error_code(body)), (request_id, 0x0004))
        await bob.sync()
        self.assertEqual(bob.flap.snacs(0x04, 0x07), [])


class OneSessionPerRoomTests(ChatTestCase):
    @deferred_test
    async def test_chat_room_sessions(self) -> None:
        """MULTISESSION.md §17: a second session of Alice joins the room her
        first is in: the first's chat connection is closed with channel 4,
        its BOS connection goes on, Bob sees neither a leave nor a join, and
        his lines now reach the second session only."""
        server = await self.start()
        alice1 = await server.session("Alice")
        alice2 = await server.session("Alice")
        bob = await server.session("Bob")
        for client in (alice1, alice2, bob):
            self.addCleanup(client.close)
        first = await alice1.join_room("Shared")
        b_room = await bob.join_room("Shared")
        self.addCleanup(b_room.close)
        await first.wait_joined()
        second = await alice2.join_room("shared")
        self.addCleanup(second.close)
        self.assertEqual(sorted(second.roster), ["Alice", "Bob"])
        await first.flap.wait_channel(Channel.SIGNOFF)
        await first.flap.wait_lost()
        await alice1.sync()  # its BOS connection is untouched
        b_room.say(b"who is there?", reflect=False)
        self.assertEqual((await second.hear())[1], b"who is there?")
        await b_room.sync()
        self.assertEqual(b_room.flap.snacs(0x0E, 0x03), [])
        self.assertEqual(b_room.flap.snacs(0x0E, 0x04), [])
        room = server.server.chat.rooms.find(4, "shared")
        self.assertEqual(list(room.members), ["alice", "bob"])
        await second.close()
        self.assertEqual(await b_room.wait_left(), ["Alice"])


class PrivacyTests(ChatTestCase):
    @deferred_test
    async def test_a_member_who_blocks_another_does_not_hear_it(self) -> None:
        """Bob blocks Alice: her lines reach Carol, not Bob; Bob still sees
        her in the room; his own lines reach her."""
        server = await self.start()
        clients = {name: await server.session(name) for name in ("Alice", "Bob", "Carol")}
        for client in clients.values():
            self.addCleanup(client.close)
        clients["Bob"].flap.send_snac(0x09, 0x07, b"\x05Alice", clients["Bob"].next_id())
        await clients["Bob"].sync()
        rooms = {}
        for name, client in clients.items():
            rooms[name] = await client.join_room("Quarrel")
            self.addCleanup(rooms[name].close)
        self.assertEqual(rooms["Bob"].roster, ["Alice", "Bob"])
        rooms["Alice"].say(b"hello all", reflect=False)
        self.assertEqual((await rooms["Carol"].hear())[1], b"hello all")
        await rooms["Bob"].sync()
        self.assertEqual(rooms["Bob"].flap.snacs(0x0E, 0x06), [])
        rooms["Bob"].say(b"hmph", reflect=False)
        self.assertEqual((await rooms["Alice"].hear())[1], b"hmph")


class CookieTests(ChatTestCase):
    @deferred_test
    async def test_tampered_replayed_expired_and_foreign_chat_cookies(self) -> None:
        """A chat login cookie with a flipped byte, used twice, past its
        lifetime, or presented at the BOS port; a BOS-side service cookie
        (ChatNav) at the chat port; each is refused with channel 4 and the
        room is untouched."""
        server = await self.start()
        alice = await server.session("Alice")
        self.addCleanup(alice.close)
        chat_port = split_address(await self.chat_cookie(alice, "Guarded"))
        redirect = await self.chat_cookie(alice, "Guarded")
        cookie = bytearray(redirect.get(0x06) or b"")
        cookie[40] ^= 0x01
        await self.refused_at_signon(chat_port, bytes(cookie))

        room = await alice.enter_room((await alice.find_room("Guarded")).ref)
        self.addCleanup(room.close)
        used = await self.chat_cookie(alice, "Guarded")
        flap = await redeem(used)
        self.addCleanup(flap.close)
        await flap.wait_snac(0x01, 0x03)
        await self.refused_at_signon(chat_port, used.get(0x06) or b"")

        bos = (server.server.bos_address.split(":")[0], server.bos_port.getHost().port)
        await self.refused_at_signon(bos, (await self.chat_cookie(alice, "Guarded")).get(0x06))

        _, body = await alice.request(0x01, 0x04, struct.pack("!H", 0x0D), 0x05)
        nav_cookie = TlvList.unpack_list(body).get(0x06) or b""
        await self.refused_at_signon(chat_port, nav_cookie)

        late = await self.chat_cookie(alice, "Guarded")
        clock = task.Clock()
        clock.advance(reactor.seconds() + 3600)
        server.server.cookies._clock = clock
        self.addCleanup(setattr, server.server.cookies, "_clock", reactor)
        await self.refused_at_signon(chat_port, late.get(0x06) or b"")
        self.assertEqual(list(server.server.chat.rooms.find(4, "guarded").members), ["alice"])

    @deferred_test
    async def test_a_chat_request_for_a_room_that_is_not(self) -> None:
        """01,04 for the chat service naming a cookie this server never made,
        another instance, or an unknown public room: 01,01, no cookie."""
        server = await self.start()
        alice = await server.session("Alice")
        self.addCleanup(alice.close)
        for ref in (
            RoomRef(4, b"not a room", 0),
            RoomRef(4, b"4-1-Lobby", 1),
            RoomRef(5, b"5-0-Nowhere", 0),
            RoomRef(4, b"4-0-100%", 0),
        ):
            request_id = alice.next_id()
            alice.flap.send_snac(
                0x01, 0x04, struct.pack("!H", 0x0E) + Tlv(0x01, ref.pack()).pack(), request_id
            )
            header, body = await alice.flap.wait_snac(0x01, 0x01)
            self.assertEqual(header.request_id, request_id)
            self.assertIn(error_code(body), (0x0014, 0x0001))
        request_id = alice.next_id()
        alice.flap.send_snac(0x01, 0x04, struct.pack("!H", 0x0E) + b"\x00\x01\x00", request_id)
        header, body = await alice.flap.wait_snac(0x01, 0x01)
        self.assertEqual(error_code(body), 0x000E)


class GarbageTests(ChatTestCase):
    @deferred_test
    async def test_garbage_on_the_chat_port(self) -> None:
        """Garbage, a wrong start byte and an oversize length on the chat
        port each get a channel-4 frame and a close; the room goes on."""
        server = await self.start()
        alice = await server.session("Alice")
        bob = await server.session("Bob")
        for client in (alice, bob):
            self.addCleanup(client.close)
        a_room = await alice.join_room("Sturdy")
        b_room = await bob.join_room("Sturdy")
        for room in (a_room, b_room):
            self.addCleanup(room.close)
        address = ("127.0.0.1", server.chat_port.getHost().port)
        for data in (
            b"GET / HTTP/1.0\r\n\r\n",
            b"\x2b\x01\x00\x01\x00\x04\x00\x00\x00\x01",
            b"\x2a\x02\x00\x01\xff\xff" + b"\x00" * 64,
        ):
            flap = await connect(*address)
            await flap.wait_channel(Channel.SIGNON)
            flap.transport.write(data)
            await flap.wait_lost()
            self.assertEqual([f.channel for f in flap.received], [Channel.SIGNOFF])
        # Bad SNACs on a joined chat connection: answered, the room goes on.
        a_room.flap.send_snac(0x0E, 0x05, b"\x00" * 5, a_room.next_id())
        await a_room.flap.wait_snac(0x0E, 0x01)
        a_room.flap.send_snac(0x0E, 0x09, b"", a_room.next_id())
        await a_room.flap.wait_snac(0x0E, 0x01)
        a_room.say(b"still fine", reflect=False)
        self.assertEqual((await b_room.hear())[1], b"still fine")
