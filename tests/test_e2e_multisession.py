"""MULTISESSION.md end to end: several TCP client sessions per screen name
against the real services. Each test is named after the spec point it proves
(and its negative)."""

from __future__ import annotations

import struct

from twisted.internet import task
from twisted.trial import unittest

from aimserver.config import load_config
from aimserver.wire.flap import Channel, SignonPayload
from aimserver.wire.icbm import Rendezvous
from aimserver.wire.ratelimit import RateChange
from aimserver.wire.reader import Reader
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import UserInfo
from tests.client import BosClient, connect, deferred_test, parse_im
from tests.harness import LoopbackServer, wait_until
from tests.test_relogin_rate_state import (
    IM_CLASS,
    LONE_SESSION_RAPID_IMS,
    RECOVERY_PAUSE,
    rate_change,
    rate_record,
)

FILE_TRANSFER = bytes.fromhex("094613434C7F11D1822244455354" + "0000")
DIRECT_IM = bytes.fromhex("094613454C7F11D1822244455354" + "0000")
ACCOUNTS = {"Alice": "secret", "Bob": "secret", "Carol": "secret"}


def user_class(info: UserInfo) -> int:
    return info.tlvs.get_u16(0x0001) or 0


class MultisessionTestCase(unittest.TestCase):
    async def start(self, **settings: object) -> LoopbackServer:
        overrides = {"multisession.notify": False, **settings}
        server = await LoopbackServer.start(load_config(None, overrides), accounts=ACCOUNTS)
        self.addCleanup(server.stop)
        return server

    async def settle(self, *clients: BosClient) -> None:
        """Round trips in order, so pushes caused by earlier SNACs have arrived."""
        for client in clients:
            await client.sync()

    def assertNothing(self, client: BosClient, family: int, subtype: int) -> None:
        self.assertEqual(client.flap.snacs(family, subtype), [])


class ConcurrentSessionTests(MultisessionTestCase):
    @deferred_test
    async def test_concurrent_session_support_max_sessions_enforced(self) -> None:
        """§1: multi-capable logins join up to max_sessions; the one that would
        exceed it is refused with login error 0x001D and disturbs nobody."""
        server = await self.start(**{"multisession.max_sessions": 2})
        first = await server.session("Alice")
        second = await server.session("Alice")
        refused = await server.bucp("Alice", "secret", flags=0x01)
        self.assertEqual(refused.get_u16(0x0008), 0x001D)
        await self.settle(first, second)
        self.assertTrue(first.flap.connected_now and second.flap.connected_now)
        self.assertEqual(len(server.server.registry.get("alice").instances), 2)

    @deferred_test
    async def test_concurrent_session_support_sessions_tracked_by_screen_name(self) -> None:
        """§1, §3, §4: sessions of one screen name (however it is spelled),
        signed on from two addresses with two different clients, are grouped
        under it; each is its own instance, with its own instance id and its
        own connection state: the IP address it came from and the client id
        string it logged in with. Another user's session stays apart."""
        server = await self.start()
        home = await server.session("Alice", client_id=b"AIM 5.1 at home", bind="127.0.0.1")
        work = await server.session("ALICE", client_id=b"AIM 5.9 at work", bind="127.0.0.2")
        bob = await server.session("Bob", client_id=b"Bob's client", bind="127.0.0.3")
        await self.settle(home, work, bob)
        sessions = {}
        for client, ip, client_id in (
            (home, "127.0.0.1", "AIM 5.1 at home"),
            (work, "127.0.0.2", "AIM 5.9 at work"),
            (bob, "127.0.0.3", "Bob's client"),
        ):
            connection = server.server_side(client.flap)
            self.assertIsNotNone(connection, client.flap.describe())
            session = connection.session
            self.assertEqual((session.ip, session.client_id), (ip, client_id))
            sessions[client] = session
        alice = server.server.registry.get("a l i c e")
        self.assertEqual(set(alice.instances.values()), {sessions[home], sessions[work]})
        self.assertEqual(
            list(server.server.registry.get("bob").instances.values()), [sessions[bob]]
        )
        ids = {session.instance_id for session in sessions.values()}
        self.assertEqual(len(ids), 3)


class NewSessionHandlingTests(MultisessionTestCase):
    async def _kicked(self, old: BosClient) -> None:
        frame = await old.flap.wait_channel(Channel.SIGNOFF)
        self.assertEqual(TlvList.unpack_list(frame.payload).get_u16(0x0009), 0x0001)
        await old.flap.wait_lost()

    @deferred_test
    async def test_new_session_handling_legacy_client_disconnects_existing(self) -> None:
        """§5: a legacy login (no TLV 0x4A) disconnects every existing session."""
        server = await self.start()
        first, second = await server.session("Alice"), await server.session("Alice")
        legacy = await server.session("Alice", flags=None)
        await self._kicked(first)
        await self._kicked(second)
        await legacy.sync()
        self.assertEqual(len(server.server.registry.get("alice").instances), 1)

    @deferred_test
    async def test_new_session_handling_single_session_client_disconnects_existing(self) -> None:
        """§5: a 0x03 login (capable but wants one session) disconnects the others."""
        server = await self.start()
        first = await server.session("Alice")
        single = await server.session("Alice", flags=0x03)
        await self._kicked(first)
        await single.sync()

    @deferred_test
    async def test_new_session_handling_multi_client_joins_existing(self) -> None:
        """§5, §2: a 0x01 login joins; nobody is disconnected."""
        server = await self.start()
        first = await server.session("Alice")
        second = await server.session("Alice")
        await self.settle(first, second)
        self.assertTrue(first.flap.connected_now)
        self.assertEqual(first.flap.received, [])

    @deferred_test
    async def test_client_capability_detection_multi_login_replaces_single_session(self) -> None:
        """§2: a multi-capable login cannot join a session that asked to be
        alone (0x03); that one is replaced."""
        server = await self.start()
        single = await server.session("Alice", flags=0x03)
        await server.session("Alice", flags=0x01)
        await self._kicked(single)


class SessionInstanceTests(MultisessionTestCase):
    @deferred_test
    async def test_session_instance_identification_service_connection_belongs_to_instance(
        self,
    ) -> None:
        """§3: a service connection (alerts, 0x0018) gets a redirect whose cookie
        names this session's instance; it joins that instance and is closed
        when that session ends, while the user's other session is untouched."""
        server = await self.start()
        alice1 = await server.session("Alice")
        alice2 = await server.session("Alice")
        _, body = await alice1.request(0x01, 0x04, b"\x00\x18", 0x05)
        redirect = TlvList.unpack_list(body)
        self.assertEqual(redirect.get_u16(0x000D), 0x0018)
        host, port = (redirect.get(0x05) or b"").decode().split(":")
        service = await connect(host, int(port))
        await service.wait_channel(Channel.SIGNON)
        service.send_frame(
            Channel.SIGNON, SignonPayload(1, TlvList((Tlv(0x06, redirect.get(0x06)),))).pack()
        )
        _, families = await service.wait_snac(0x01, 0x03)
        self.assertEqual(families, b"\x00\x01\x00\x18")
        user = server.server.registry.get("alice")
        owner = [s for s in user.instances.values() if s.secondary]
        self.assertEqual(len(owner), 1)
        service.send_snac(0x18, 0x06, b"\x00\x00", request_id=5)
        service.send_snac(0x01, 0x0E, b"", request_id=6)
        header, _ = await service.wait_snac(0x01, 0x01)
        self.assertEqual(header.request_id, 6)
        await alice1.close()
        await service.wait_lost()
        await alice2.sync()
        self.assertTrue(alice2.flap.connected_now)

    @deferred_test
    async def test_session_specific_vs_user_level_data(self) -> None:
        """§4, §16: capabilities and client state are per session (others see
        the union); the warning level is per user, seen by every session."""
        server = await self.start()
        bob1 = await server.session("Bob")
        bob2 = await server.session("Bob")
        bob1.set_capabilities([FILE_TRANSFER])
        bob2.set_capabilities([DIRECT_IM])
        await self.settle(bob1, bob2)
        user = server.server.registry.get("bob")
        per_session = sorted(s.capabilities for s in user.instances.values())
        self.assertEqual(per_session, sorted([(FILE_TRANSFER,), (DIRECT_IM,)]))
        alice = await server.session("Alice")
        _, body = await alice.request(0x02, 0x05, b"\x00\x04\x03Bob", 0x06)
        reader = Reader(body, "02,06")
        UserInfo.read(reader)
        caps = TlvList.read_list(reader).get(0x05) or b""
        self.assertEqual({caps[:16], caps[16:]}, {FILE_TRANSFER, DIRECT_IM})
        # User level: a warning reaches both sessions with the same level.
        bob1.send_im("Alice", b"hi")
        await alice.receive_im()
        alice.warn("Bob")
        for bob in (bob1, bob2):
            _, notice = await bob.flap.wait_snac(0x01, 0x10)
            self.assertEqual(struct.unpack("!H", notice[:2])[0], 100)


class NotificationTests(MultisessionTestCase):
    NOTICE = (
        "Your AOL screen name (Alice) is now signed into AOL(R) Instant Messenger (TM) in {}"
        " locations. Click here for more information."
    )

    @deferred_test
    async def test_multi_session_notifications_to_all_sessions_with_count(self) -> None:
        """§6: when the 2nd and 3rd multi-capable sessions come online, every
        session (the new one too) gets the AOL System Msg with the exact count."""
        server = await self.start(**{"multisession.notify": True})
        alice1 = await server.session("alice")
        alice2 = await server.session("Alice")
        for alice in (alice1, alice2):
            sender, text, _ = await alice.receive_im()
            self.assertEqual(sender.screen_name, "AOL System Msg")
            self.assertEqual(text.decode(), self.NOTICE.format(2))
        alice3 = await server.session("Alice")
        for alice in (alice1, alice2, alice3):
            _, text, _ = await alice.receive_im()
            self.assertEqual(text.decode(), self.NOTICE.format(3))

    @deferred_test
    async def test_multi_session_notifications_not_for_first_or_when_off(self) -> None:
        """§6 negative: no notice for the first session, none for a legacy
        login, and none at all when [multisession] notify = false."""
        server = await self.start(**{"multisession.notify": True})
        first = await server.session("Alice")
        await first.sync()
        self.assertNothing(first, 0x04, 0x07)
        legacy = await server.session("Alice", flags=None)
        await legacy.sync()
        self.assertNothing(legacy, 0x04, 0x07)

        quiet = await self.start()
        one, two = await quiet.session("Alice"), await quiet.session("Alice")
        await self.settle(one, two)
        self.assertNothing(one, 0x04, 0x07)
        self.assertNothing(two, 0x04, 0x07)


class PresenceTests(MultisessionTestCase):
    async def _watched_bob(self) -> tuple[LoopbackServer, BosClient, BosClient, BosClient]:
        server = await self.start()
        carol = await server.session("Carol", buddies=["Bob"])
        bob1 = await server.session("Bob")
        await carol.wait_arrival()
        bob2 = await server.session("Bob")
        await self.settle(bob1, bob2, carol)
        self.assertNothing(carol, 0x03, 0x0B)
        return server, carol, bob1, bob2

    @deferred_test
    async def test_presence_broadcasting_first_online_last_offline(self) -> None:
        """§9: one arrival for the first session, no duplicate for the second,
        no departure while one session remains, one when the last leaves."""
        server, carol, bob1, bob2 = await self._watched_bob()
        await bob1.close()
        # The client seeing its end closed does not mean the server has: wait
        # until it has dropped the session, so that a departure it sent for it
        # would come before the answer to Carol's round trip.
        await wait_until(
            lambda: len(server.server.registry.get("bob").instances) == 1,
            "the server still has both of Bob's sessions",
        )
        await self.settle(bob2, carol)
        self.assertNothing(carol, 0x03, 0x0C)
        self.assertNothing(carol, 0x03, 0x0B)
        await bob2.close()
        departed = await carol.wait_departure()
        self.assertEqual(departed.screen_name, "Bob")

    @deferred_test
    async def test_away_status_aggregation_only_when_all_away(self) -> None:
        """§7: one away session leaves the user available (nothing sent); when
        every session is away watchers get one update with the away flag; when
        one comes back, one update without it."""
        _, carol, bob1, bob2 = await self._watched_bob()
        bob1.set_away(b"gone fishing")
        await self.settle(bob1, carol)
        self.assertNothing(carol, 0x03, 0x0B)
        bob2.set_away(b"me too")
        update = await carol.wait_arrival()
        self.assertTrue(user_class(update) & 0x0020)
        bob1.set_away(None)
        update = await carol.wait_arrival()
        self.assertFalse(user_class(update) & 0x0020)

    @deferred_test
    async def test_idle_status_aggregation_most_recent_idle_time(self) -> None:
        """§8: idle shows only when every session is idle, with the most recent
        idle start; one active session keeps the user non-idle."""
        _, carol, bob1, bob2 = await self._watched_bob()
        bob1.set_idle(3600)
        await self.settle(bob1, carol)
        self.assertNothing(carol, 0x03, 0x0B)
        bob2.set_idle(120)
        update = await carol.wait_arrival()
        self.assertEqual(update.tlvs.get_u16(0x0004), 2)
        bob1.set_idle(0)
        update = await carol.wait_arrival()
        self.assertIsNone(update.tlvs.get(0x0004))

    @deferred_test
    async def test_client_capabilities_per_session_union_shown(self) -> None:
        """§16: watchers see the union of the sessions' capabilities, updated
        only when the union changes."""
        _, carol, bob1, bob2 = await self._watched_bob()
        bob1.set_capabilities([FILE_TRANSFER])
        update = await carol.wait_arrival()
        self.assertEqual(update.tlvs.get(0x000D), FILE_TRANSFER)
        bob2.set_capabilities([FILE_TRANSFER])
        await self.settle(bob2, carol)
        self.assertNothing(carol, 0x03, 0x0B)
        bob2.set_capabilities([DIRECT_IM])
        update = await carol.wait_arrival()
        self.assertEqual(update.tlvs.get(0x000D), FILE_TRANSFER + DIRECT_IM)


class MessagingTests(MultisessionTestCase):
    @deferred_test
    async def test_intelligent_message_routing_active_sessions_only(self) -> None:
        """§10: an IM goes to the non-away, non-idle sessions only; an idle or
        away session gets nothing while an active one exists."""
        server = await self.start()
        bob1 = await server.session("Bob")
        bob2 = await server.session("Bob")
        bob3 = await server.session("Bob")
        alice = await server.session("Alice")
        bob2.set_away(b"away")
        bob3.set_idle(300)
        await self.settle(bob2, bob3)
        alice.send_im("Bob", b"only the active one")
        _, text, _ = await bob1.receive_im()
        self.assertEqual(text, b"only the active one")
        await self.settle(alice, bob2, bob3)
        self.assertNothing(bob2, 0x04, 0x07)
        self.assertNothing(bob3, 0x04, 0x07)

    @deferred_test
    async def test_intelligent_message_routing_all_sessions_when_none_active(self) -> None:
        """§10: when no session is active, every session gets the IM."""
        server = await self.start()
        bob1, bob2 = await server.session("Bob"), await server.session("Bob")
        alice = await server.session("Alice")
        bob1.set_idle(300)
        bob2.set_idle(60)
        await self.settle(bob1, bob2)
        alice.send_im("Bob", b"everyone")
        for bob in (bob1, bob2):
            _, text, _ = await bob.receive_im()
            self.assertEqual(text, b"everyone")

    @deferred_test
    async def test_auto_responses_only_when_all_sessions_away(self) -> None:
        """§7: with one session away nobody auto-responds; with all away the
        sender gets one auto-response (TLV 0x04) per session with an away
        message, and the sessions themselves all get the IM."""
        server = await self.start()
        bob1, bob2 = await server.session("Bob"), await server.session("Bob")
        alice = await server.session("Alice")
        bob1.set_away(b"<HTML>at lunch</HTML>")
        await bob1.sync()
        alice.send_im("Bob", b"one")
        await bob2.receive_im()
        await self.settle(alice)
        self.assertNothing(alice, 0x04, 0x07)

        bob2.set_away(b"<HTML>in a meeting</HTML>")
        await bob2.sync()
        alice.send_im("Bob", b"two")
        replies = {(await alice.receive_im())[1] for _ in range(2)}
        self.assertEqual(replies, {b"<HTML>at lunch</HTML>", b"<HTML>in a meeting</HTML>"})
        for bob in (bob1, bob2):
            _, text, _ = await bob.receive_im()
            self.assertEqual(text, b"two")
        await self.settle(alice)
        self.assertNothing(alice, 0x04, 0x07)

    @deferred_test
    async def test_typing_notifications_from_typing_session_to_routed_sessions(self) -> None:
        """§11: a typing event names the sender and reaches the sessions of the
        recipient an IM would reach (here: the one that is not away)."""
        server = await self.start()
        bob1, bob2 = await server.session("Bob"), await server.session("Bob")
        alice = await server.session("Alice")
        bob2.set_away(b"away")
        await bob2.sync()
        alice.send_typing("Bob", 2)
        _, body = await bob1.flap.wait_snac(0x04, 0x14)
        self.assertEqual(body[10:], b"\x05Alice\x00\x02")
        await self.settle(alice, bob2)
        self.assertNothing(bob2, 0x04, 0x14)

    @deferred_test
    async def test_offline_message_delivery_first_session_only_in_order(self) -> None:
        """§12: IMs stored for an offline user are delivered, in order, to the
        first session that comes online (marked offline, with the send time),
        then deleted; a second session gets nothing."""
        server = await self.start()
        alice = await server.session("Alice")
        for n in range(3):
            request_id = alice.send_im("Bob", b"msg %d" % n, ack=True, extra=[Tlv(0x06, b"")])
            header, _ = await alice.flap.wait_snac(0x04, 0x0C)
            self.assertEqual(header.request_id, request_id)
        bob1 = await server.session("Bob")
        for n in range(3):
            sender, text, tlvs = await bob1.receive_im()
            self.assertEqual((sender.screen_name, text), ("Alice", b"msg %d" % n))
            self.assertTrue(tlvs.has(0x0006))
            self.assertIsNotNone(tlvs.get_u32(0x0016))
        bob2 = await server.session("Bob")
        await bob2.sync()
        self.assertNothing(bob2, 0x04, 0x07)
        self.assertEqual(await server.store.get_offline_messages("bob"), [])

    @deferred_test
    async def test_offline_message_delivery_for_clients_that_ask(self) -> None:
        """§12: a client that asks with 04,10 (AIM 6, Pidgin) gets the stored
        IMs before the 04,17 end marker."""
        server = await self.start()
        alice = await server.session("Alice")
        alice.send_im("Bob", b"while you were out", extra=[Tlv(0x06, b"")])
        await alice.sync()
        bob = await server.session("Bob", ready=False)
        bob.ready()
        bob.flap.send_snac(0x04, 0x10, b"", request_id=900)
        _, text, _ = await bob.receive_im()
        self.assertEqual(text, b"while you were out")
        header, _ = await bob.flap.wait_snac(0x04, 0x17)
        self.assertEqual(header.request_id, 900)

    @deferred_test
    async def test_offline_message_not_stored_without_store_flag(self) -> None:
        """§12 negative: without "store if offline" an IM to an offline user
        gets "not logged on" and nothing is kept."""
        server = await self.start()
        alice = await server.session("Alice")
        alice.send_im("Bob", b"lost")
        _, body = await alice.flap.wait_snac(0x04, 0x01)
        self.assertEqual(body, b"\x00\x04")
        self.assertEqual(await server.store.get_offline_messages("bob"), [])

    @deferred_test
    async def test_message_ordering_and_retransmission(self) -> None:
        """IMs from one sender session reach every recipient session in order,
        and a retransmitted ICBM (same cookie) is delivered once."""
        server = await self.start()
        bob1, bob2 = await server.session("Bob"), await server.session("Bob")
        alice = await server.session("Alice")
        alice.send_im("Bob", b"first", cookie=b"AAAAAAAA")
        alice.send_im("Bob", b"first", cookie=b"AAAAAAAA")
        alice.send_im("Bob", b"second", cookie=b"BBBBBBBB")
        for bob in (bob1, bob2):
            self.assertEqual((await bob.receive_im())[1], b"first")
            self.assertEqual((await bob.receive_im())[1], b"second")
            await bob.sync()
            self.assertNothing(bob, 0x04, 0x07)


class WarningTests(MultisessionTestCase):
    @deferred_test
    async def test_warning_levels_user_level_shared_by_all_sessions(self) -> None:
        """§15: a warning raises the user's one level; every session gets the
        01,10 notice (named: with the warner's info), watchers see the new
        level, and the warner gets 04,09."""
        server = await self.start()
        carol = await server.session("Carol", buddies=["Bob"])
        bob1, bob2 = await server.session("Bob"), await server.session("Bob")
        await carol.wait_arrival()
        alice = await server.session("Alice")
        bob1.send_im("Alice", b"spam")
        await alice.receive_im()
        request_id = alice.warn("Bob")
        header, body = await alice.flap.wait_snac(0x04, 0x09)
        self.assertEqual((header.request_id, body), (request_id, b"\x00\x64\x00\x64"))
        for bob in (bob1, bob2):
            _, notice = await bob.flap.wait_snac(0x01, 0x10)
            self.assertEqual(notice[:2], b"\x00\x64")
            self.assertEqual(UserInfo.unpack(notice[2:]).screen_name, "Alice")
        update = await carol.wait_arrival()
        self.assertEqual(update.warning_level, 100)
        # Without a fresh IM from Bob, a second warning is refused.
        alice.warn("Bob", anonymous=True)
        _, body = await alice.flap.wait_snac(0x04, 0x01)
        self.assertEqual(body, b"\x00\x0d")


class RendezvousTests(MultisessionTestCase):
    def _rendezvous(self, kind: int, cookie: bytes, capability: bytes) -> list[Tlv]:
        data = Rendezvous(kind, cookie, capability, TlvList((Tlv.u16(0x000A, 1),))).pack()
        return [Tlv(0x0005, data)]

    @deferred_test
    async def test_direct_connections_and_rendezvous_target_capable_session(self) -> None:
        """§16, §18: a file-transfer proposal reaches only the session that
        advertises file transfer; the accept goes back only to the proposing
        session, not to the proposer's other sessions."""
        server = await self.start()
        bob_ft, bob_plain = await server.session("Bob"), await server.session("Bob")
        bob_ft.set_capabilities([FILE_TRANSFER])
        await bob_ft.sync()
        alice_proposer, alice_other = await server.session("Alice"), await server.session("Alice")
        cookie = b"RVCOOKIE"
        alice_proposer.send_channel("Bob", 2, self._rendezvous(0, cookie, FILE_TRANSFER), cookie)
        _, body = await bob_ft.flap.wait_snac(0x04, 0x07)
        self.assertEqual(body[:8], cookie)
        await self.settle(alice_proposer, bob_plain)
        self.assertNothing(bob_plain, 0x04, 0x07)

        bob_ft.send_channel("Alice", 2, self._rendezvous(2, cookie, FILE_TRANSFER), cookie)
        _, body = await alice_proposer.flap.wait_snac(0x04, 0x07)
        self.assertEqual(body[:8], cookie)
        await self.settle(bob_ft, alice_other)
        self.assertNothing(alice_other, 0x04, 0x07)

    @deferred_test
    async def test_direct_connections_no_capable_session_is_refused(self) -> None:
        """§16 negative: with no session advertising the capability, the
        proposal is answered "not logged on"."""
        server = await self.start()
        await server.session("Bob")
        alice = await server.session("Alice")
        cookie = b"NOBODY!!"
        alice.send_channel("Bob", 2, self._rendezvous(0, cookie, DIRECT_IM), cookie)
        _, body = await alice.flap.wait_snac(0x04, 0x01)
        self.assertEqual(body, b"\x00\x04")


class RateLimitTests(MultisessionTestCase):
    @deferred_test
    async def test_global_rate_limiting_shared_across_sessions(self) -> None:
        """§19: IMs from two sessions of one user count against one allowance:
        the second session gets the 01,0A "limited" notice for the IM class
        before it alone has sent as many IMs as a lone session may. After
        every session has signed off, a new session is told in its 01,07
        that the class is still limited, its IM is dropped, and once the
        state clears that session is the one sent the 01,0A "cleared" notice
        (which a fresh state could never send) and its IMs go through again.

        The rate limiter runs on a ``task.Clock`` that only this test moves:
        IMs are exactly simultaneous, and the pause is not waited out. The
        arithmetic (9 rapid IMs for a lone session, the pause that clears)
        is proven in ``tests.test_relogin_rate_state``."""
        server = await self.start(**{"ratelimit.enabled": True})
        server.server.rate_limits.clock = task.Clock()
        alice1, alice2 = await server.session("Alice"), await server.session("Alice")
        bob = await server.session("Bob")
        for _ in range(6):
            alice1.send_im("Bob", b"x")
        await alice1.sync()
        sent = 0
        limited: list[tuple[int, int, int, bool]] = []
        while sent < LONE_SESSION_RAPID_IMS - 1 and not limited:
            alice2.send_im("Bob", b"y")
            sent += 1
            await alice2.sync()
            notices = [rate_change(body) for _, body in alice2.flap.snacs(0x01, 0x0A)]
            limited = [n for n in notices if n[0] == RateChange.LIMITED]
        self.assertEqual(
            [(code, class_id, dropping) for code, class_id, _, dropping in limited],
            [(RateChange.LIMITED, IM_CLASS, True)],
            f"no 01,0A limited notice after {sent} IMs of the second session",
        )

        await alice1.close()
        await alice2.close()
        await wait_until(
            lambda: server.server.registry.get("alice") is None,
            "the server still has a session of Alice",
        )
        alice3 = await server.session("Alice")
        current, dropping = rate_record(alice3.rate_info, IM_CLASS)
        self.assertTrue(dropping, "the new session's 01,07 says the IM class is not limited")
        self.assertEqual(current, limited[0][2])
        alice3.send_im("Bob", b"after re-login", ack=True)
        await alice3.sync()
        await bob.sync()
        self.assertNothing(alice3, 0x04, 0x0C)
        self.assertNothing(alice3, 0x01, 0x0A)
        texts = [parse_im(body)[1] for _, body in bob.flap.snacs(0x04, 0x07)]
        self.assertNotIn(b"after re-login", texts)

        server.server.rate_limits.clock.advance(RECOVERY_PAUSE)
        request_id = alice3.send_im("Bob", b"after the pause", ack=True)
        _, body = await alice3.flap.wait_snac(0x01, 0x0A)
        self.assertEqual(rate_change(body)[:2], (RateChange.CLEARED, IM_CLASS))
        header, _ = await alice3.flap.wait_snac(0x04, 0x0C)
        self.assertEqual(header.request_id, request_id)
        self.assertEqual((await bob.receive_im())[1], b"after the pause")


class LoadTests(MultisessionTestCase):
    async def _exchange(
        self, server: LoopbackServer, accounts: list[str], per_account: int, rounds: int
    ) -> None:
        """Every session sends ``rounds`` numbered IMs to the next account,
        interleaved; every receiving session must see each sender session's
        numbers exactly once and in order."""
        sessions = {
            name: [await server.session(name) for _ in range(per_account)] for name in accounts
        }
        for name, clients in sessions.items():
            for index, client in enumerate(clients):
                client.tag = f"{name}/{index}"
        target = {name: accounts[(i + 1) % len(accounts)] for i, name in enumerate(accounts)}
        for n in range(rounds):
            for name, clients in sessions.items():
                for client in clients:
                    client.send_im(target[name], f"{client.tag}#{n}".encode())
        senders_per_target = {target[name]: per_account for name in accounts}
        everyone = [client for clients in sessions.values() for client in clients]
        seen: dict[BosClient, dict[str, list[int]]] = {}
        for name, clients in sessions.items():
            expected = senders_per_target[name] * rounds
            for client in clients:
                by_sender = seen[client] = {}
                for _ in range(expected):
                    _, text, _ = await client.receive_im(timeout=20)
                    tag, n = text.decode().split("#")
                    by_sender.setdefault(tag, []).append(int(n))
        # Every sender's round trip proves the server has handled all of its
        # IMs; each receiver's then proves it has been sent every copy.
        await self.settle(*everyone, *everyone)
        for client in everyone:
            self.assertNothing(client, 0x04, 0x07)
            self.assertEqual(len(seen[client]), per_account)
            for numbers in seen[client].values():
                self.assertEqual(numbers, list(range(rounds)))

    @deferred_test
    async def test_load_ten_sessions_on_one_account(self) -> None:
        """10 sessions of one account exchange interleaved numbered IMs with
        another account: nothing lost, nothing duplicated, order kept."""
        server = await self.start(**{"multisession.max_sessions": 10, "ratelimit.enabled": False})
        await server.store.create_account("Many", "secret")
        await server.store.create_account("Peer", "secret")
        many = [await server.session("Many") for _ in range(10)]
        peer = await server.session("Peer")
        for n in range(20):
            peer.send_im("Many", b"peer#%d" % n)
            for index, client in enumerate(many):
                client.send_im("Peer", b"many/%d#%d" % (index, n))
        for client in many:
            numbers = [
                int((await client.receive_im(timeout=20))[1].split(b"#")[1]) for _ in range(20)
            ]
            self.assertEqual(numbers, list(range(20)))
        seen: dict[bytes, list[int]] = {}
        for _ in range(200):
            tag, n = (await peer.receive_im(timeout=20))[1].split(b"#")
            seen.setdefault(tag, []).append(int(n))
        self.assertEqual(sorted(seen), sorted(b"many/%d" % i for i in range(10)))
        for numbers in seen.values():
            self.assertEqual(numbers, list(range(20)))
        await self.settle(*many, peer, *many)
        self.assertNothing(peer, 0x04, 0x07)
        for client in many:
            self.assertNothing(client, 0x04, 0x07)

    @deferred_test
    async def test_load_hundred_sessions_over_ten_accounts(self) -> None:
        """100 sessions over 10 accounts send interleaved numbered IMs; every
        receiving session gets every sender session's IMs once, in order."""
        server = await self.start(**{"multisession.max_sessions": 10, "ratelimit.enabled": False})
        accounts = [f"Load{i}" for i in range(10)]
        for name in accounts:
            await server.store.create_account(name, "secret")
        await self._exchange(server, accounts, per_account=10, rounds=5)
