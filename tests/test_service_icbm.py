# -*- test-case-name: tests.test_service_icbm -*-
"""ICBM across several sessions: who gets an IM, auto-responses, typing,
rendezvous, offline messages and the multisession notice
(MULTISESSION.md §6, §7, §10, §11, §12, §16, §18)."""

from __future__ import annotations

import struct

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from aimserver.registry import MULTICONN_LEGACY, MULTICONN_MULTI, MULTICONN_SINGLE
from aimserver.services.base import SnacError
from aimserver.services.icbm import RECENT_IMS_PER_SESSION, message_targets
from aimserver.store.interfaces import (
    MAX_OFFLINE_MESSAGES_PER_RECIPIENT,
    MAX_OFFLINE_MESSAGES_PER_SENDER,
)
from aimserver.wire.codes import ICBM, FoodGroup
from aimserver.wire.icbm import (
    TAG_AUTO_RESPONSE,
    TAG_IM_DATA,
    TAG_OFFLINE_TIME,
    TAG_RENDEZVOUS,
    TAG_STORE_IF_OFFLINE,
    ChannelMessageToHost,
    ClientEvent,
    Rendezvous,
    pack_im_data,
)
from aimserver.wire.tlv import Tlv, TlvList
from tests.fakes_services import HoldingStore, ServiceWorld, replies_kinds

CAP_FILE = bytes.fromhex("09461343 4c7f11d1 82224445 53540000".replace(" ", ""))
CAP_DIRECT_IM = bytes.fromhex("09461345 4c7f11d1 82224445 53540000".replace(" ", ""))
NOTICE = (
    "Your AOL screen name (Alice) is now signed into AOL(R) Instant Messenger (TM)"
    " in {} locations. Click here for more information."
)


class IcbmWorld(ServiceWorld):
    def send(self, session, message: ChannelMessageToHost):
        return self.call(
            self.icbm.channel_msg_to_host,
            session,
            FoodGroup.ICBM,
            ICBM.CHANNEL_MSG_TO_HOST,
            message.pack(),
        )

    def typing(self, session, recipient: str, event: int = 2) -> None:
        self.call(
            self.icbm.client_event,
            session,
            FoodGroup.ICBM,
            ICBM.CLIENT_EVENT,
            ClientEvent(b"\0" * 8, 1, recipient, event).pack(),
        )

    def rendezvous(
        self,
        session,
        recipient: str,
        kind: int,
        cookie: bytes = b"rvcookie",
        capability: bytes = CAP_FILE,
        inner: tuple[Tlv, ...] = (),
    ):
        block = Rendezvous(kind, cookie, capability, TlvList(inner)).pack()
        message = ChannelMessageToHost(cookie, 2, recipient, TlvList((Tlv(TAG_RENDEZVOUS, block),)))
        return self.send(session, message)

    def store_im(self, session, recipient: str, text: bytes, ack: bool = False):
        return self.send_im(
            session, recipient, text, extra=[Tlv.empty(TAG_STORE_IF_OFFLINE)], ack=ack
        )


def defer_of(result):
    """A handler's result as a Deferred, whether or not it was one."""
    return result if isinstance(result, defer.Deferred) else defer.succeed(result)


def ims(connection) -> list:
    """The 04,07s a connection got, without the server's own system messages."""
    return [m for m in connection.messages() if m.sender.screen_name != "AOL System Msg"]


def texts(connection) -> list[bytes]:
    return [m.text for m in ims(connection)]


class RoutingTests(SynchronousTestCase):
    """Which of the recipient's sessions get an IM."""

    def setUp(self) -> None:
        self.world = IcbmWorld()
        self.alice, self.alice_conn = self.world.sign_on("Alice")
        self.bob = [self.world.sign_on("Bob") for _ in range(3)]

    def received(self) -> list[list[bytes]]:
        return [texts(connection) for _, connection in self.bob]

    def test_all_active_sessions(self) -> None:
        """With every session active, every session gets the IM, once,
        from the sender."""
        self.world.send_im(self.alice, "bob", b"hi")
        self.assertEqual(self.received(), [[b"hi"], [b"hi"], [b"hi"]])
        message = ims(self.bob[0][1])[0]
        self.assertEqual(message.sender.screen_name, "Alice")
        self.assertEqual(message.channel, 1)

    def test_only_active_sessions(self) -> None:
        """Away and idle sessions are skipped while some session is active."""
        self.world.set_away(self.bob[0][0], b"out")
        self.world.set_idle(self.bob[1][0], 600)
        self.world.send_im(self.alice, "bob", b"hi")
        self.assertEqual(self.received(), [[], [], [b"hi"]])

    def test_all_sessions_when_none_active(self) -> None:
        """When no session is active (away or idle), they all get the IM."""
        self.world.set_away(self.bob[0][0], b"out")
        self.world.set_idle(self.bob[1][0], 600)
        self.world.set_idle(self.bob[2][0], 60)
        self.world.send_im(self.alice, "bob", b"hi")
        self.assertEqual(self.received(), [[b"hi"], [b"hi"], [b"hi"]])

    def test_sessions_not_online_yet(self) -> None:
        """A session still signing on gets no IMs."""
        _, pending = self.world.sign_on("Bob", online=False)
        self.world.send_im(self.alice, "bob", b"hi")
        self.assertEqual(ims(pending), [])

    def test_host_ack(self) -> None:
        """A sender who asks for an ack gets one naming the recipient as written."""
        replies = self.world.send_im(self.alice, "B O B", b"hi", cookie=b"12345678", ack=True)
        self.assertEqual(replies_kinds(replies), [(FoodGroup.ICBM, ICBM.HOST_ACK)])
        # 04,0C: cookie, channel 1, the recipient as string08 (FAMILIES.md, 04,0C).
        self.assertEqual(replies[0].body, b"12345678" + b"\x00\x01" + b"\x05B O B")
        self.assertEqual(self.world.send_im(self.alice, "bob", b"again"), [])

    def test_recipient_offline(self) -> None:
        """An IM to someone not signed on (without store-if-offline) is refused."""
        error = self.assertRaises(SnacError, self.world.send_im, self.alice, "Nobody")
        self.assertEqual(error.code, 0x0004)

    def test_server_only_tlvs_not_relayed(self) -> None:
        """The ack request and store flag are for the server only."""
        self.world.send_im(
            self.alice, "bob", b"hi", extra=[Tlv.empty(TAG_STORE_IF_OFFLINE)], ack=True
        )
        message = ims(self.bob[0][1])[0]
        self.assertEqual([t.tag for t in message.tlvs], [TAG_IM_DATA])

    def test_targets_table(self) -> None:
        """IMs go to the sessions that are neither away nor idle, or to all
        sessions when there are none (docs/multisession.md, Messages)."""
        # (away, idle) per session -> indexes of the sessions that get the IM
        table = [
            ([(False, False)], [0]),
            ([(True, False)], [0]),
            ([(False, True)], [0]),
            ([(True, False), (False, False)], [1]),
            ([(False, True), (False, False), (True, True)], [1]),
            ([(True, False), (False, True)], [0, 1]),
            ([(True, True), (True, False), (False, True)], [0, 1, 2]),
            ([(False, False), (False, False), (True, False)], [0, 1]),
        ]
        for states, expected in table:
            world = IcbmWorld()
            sessions = [world.sign_on("Bob")[0] for _ in states]
            for session, (away, idle) in zip(sessions, states, strict=True):
                session.away_message = b"x" if away else None
                session.idle_since = 0.0 if idle else None
            self.assertEqual(
                message_targets(world.registry.get("bob")),
                [sessions[i] for i in expected],
                states,
            )


class AutoResponseTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = IcbmWorld()
        self.alice, self.alice_conn = self.world.sign_on("Alice")
        self.alice2, self.alice2_conn = self.world.sign_on("Alice")
        self.bob1, self.bob1_conn = self.world.sign_on("Bob")
        self.bob2, self.bob2_conn = self.world.sign_on("Bob")
        self.alice_conn.clear()
        self.alice2_conn.clear()

    def test_none_while_any_session_active(self) -> None:
        """A user with one active session sends no auto-response."""
        self.world.set_away(self.bob1, b"lunch")
        self.world.send_im(self.alice, "Bob")
        self.assertEqual(ims(self.alice_conn), [])

    def test_one_per_away_session(self) -> None:
        """When every session is away, the sending session gets one
        auto-response per away session, flagged as such; the sender's other
        sessions get nothing."""
        self.world.set_away(self.bob1, b"lunch")
        self.world.set_away(self.bob2, b"meeting")
        self.alice_conn.clear()
        self.world.send_im(self.alice, "Bob")
        responses = ims(self.alice_conn)
        self.assertEqual(sorted(m.text for m in responses), [b"lunch", b"meeting"])
        for response in responses:
            self.assertTrue(response.tlvs.has(TAG_AUTO_RESPONSE))
            self.assertEqual(response.sender.screen_name, "Bob")
            self.assertEqual(response.channel, 1)
        self.assertEqual(ims(self.alice2_conn), [])
        # The IM itself still reached both (away) sessions.
        self.assertEqual(len(ims(self.bob1_conn)), 1)
        self.assertEqual(len(ims(self.bob2_conn)), 1)

    def test_away_by_status_bit_alone_sends_no_empty_auto_response(self) -> None:
        """A session away only by its 01,1E status bit counts as away for
        routing, but has no text to answer with: only sessions with an away
        message auto-respond."""
        self.world.set_away(self.bob1, b"lunch")
        self.world.set_status(self.bob2, 0x0001)
        self.alice_conn.clear()
        self.world.send_im(self.alice, "Bob")
        self.assertEqual([m.text for m in ims(self.alice_conn)], [b"lunch"])

    def test_client_auto_responses_dropped(self) -> None:
        """A client's own auto-response is not relayed (the server already
        answered), but the client still gets its ack."""
        replies = self.world.send_im(
            self.bob1,
            "Alice",
            b"I am away",
            extra=[Tlv.empty(TAG_AUTO_RESPONSE)],
            ack=True,
        )
        self.assertEqual(replies_kinds(replies), [(FoodGroup.ICBM, ICBM.HOST_ACK)])
        self.assertEqual(ims(self.alice_conn), [])
        self.assertEqual(ims(self.alice2_conn), [])


class RetransmissionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = IcbmWorld()
        self.alice, _ = self.world.sign_on("Alice")
        self.bob, self.bob_conn = self.world.sign_on("Bob")

    def test_retransmission_delivered_once(self) -> None:
        """An IM sent again with the same cookie reaches the recipient once,
        and the sender still gets both acks."""
        first = self.world.send_im(self.alice, "Bob", b"hi", cookie=b"samecook", ack=True)
        second = self.world.send_im(self.alice, "Bob", b"hi", cookie=b"samecook", ack=True)
        self.assertEqual(texts(self.bob_conn), [b"hi"])
        self.assertEqual(replies_kinds(first), replies_kinds(second))
        self.assertEqual(len(second), 1)

    def test_new_cookie_delivered(self) -> None:
        """Different cookies are different messages."""
        self.world.send_im(self.alice, "Bob", b"one", cookie=b"cookie01")
        self.world.send_im(self.alice, "Bob", b"two", cookie=b"cookie02")
        self.assertEqual(texts(self.bob_conn), [b"one", b"two"])

    def test_retransmission_memory_bounded_per_session(self) -> None:
        """The session's latest RECENT_IMS_PER_SESSION messages are remembered,
        no more: a resend of an older one is delivered again."""
        self.world.send_im(self.alice, "Bob", b"old", cookie=b"oldcooki")
        for n in range(RECENT_IMS_PER_SESSION):
            self.world.send_im(self.alice, "Bob", b"n", cookie=b"c%07d" % n)
        self.assertEqual(len(self.alice.recent_ims or ()), 32)
        self.world.send_im(self.alice, "Bob", b"old", cookie=b"oldcooki")
        self.assertEqual(texts(self.bob_conn).count(b"old"), 2)

    def test_retransmission_memory_is_the_senders(self) -> None:
        """Another sender's IM with the same cookie is a different message,
        and the memory goes with the sender's sign-off."""
        carol, _ = self.world.sign_on("Carol")
        self.world.send_im(self.alice, "Bob", b"a", cookie=b"samecook")
        self.world.send_im(carol, "Bob", b"c", cookie=b"samecook")
        self.assertEqual(texts(self.bob_conn), [b"a", b"c"])
        self.world.sign_off(self.alice)
        self.assertNotIn("alice", self.world.registry.users)
        self.assertIsNone(self.alice.recent_ims)

    def test_same_cookie_from_two_sessions_both_delivered(self) -> None:
        """Issue 13 §1: two sessions of one user are two clients, whose
        cookies may repeat each other's (libpurple's are 7 digits from an
        equally seeded generator). Both messages arrive, and both are acked."""
        alice2, _ = self.world.sign_on("Alice")
        first = self.world.send_im(self.alice, "Bob", b"hi", cookie=b"1234567\x00", ack=True)
        second = self.world.send_im(alice2, "Bob", b"hi", cookie=b"1234567\x00", ack=True)
        self.assertEqual(texts(self.bob_conn), [b"hi", b"hi"])
        self.assertEqual(replies_kinds(first), [(FoodGroup.ICBM, ICBM.HOST_ACK)])
        self.assertEqual(replies_kinds(second), [(FoodGroup.ICBM, ICBM.HOST_ACK)])

    def test_same_cookie_different_text_is_another_message(self) -> None:
        """The filter compares the message itself: the same cookie with
        other text from the same session is delivered."""
        self.world.send_im(self.alice, "Bob", b"one", cookie=b"samecook")
        self.world.send_im(self.alice, "Bob", b"two", cookie=b"samecook")
        self.assertEqual(texts(self.bob_conn), [b"one", b"two"])

    def test_pidgin_sequence_from_two_sessions_delivers_each_once(self) -> None:
        """The sequence found with two Pidgins of one screen name: both draw
        the same cookies, the second session's IMs interleave with the
        first's, and one of them resends once. Each distinct message arrives
        exactly once; of 7 from the second session, none is lost."""
        alice2, _ = self.world.sign_on("Alice")
        cookies = [b"%07d\x00" % n for n in (4081520, 1734811, 6095313, 2227012)]
        sent = []
        for n in range(7):
            cookie = cookies[n % len(cookies)]
            first_text, second_text = b"from one %d" % n, b"from two %d" % n
            self.world.send_im(self.alice, "Bob", first_text, cookie=cookie, ack=True)
            replies = self.world.send_im(alice2, "Bob", second_text, cookie=cookie, ack=True)
            self.assertEqual(replies_kinds(replies), [(FoodGroup.ICBM, ICBM.HOST_ACK)])
            sent += [first_text, second_text]
        # A true resend of the second session's last message: dropped, acked.
        replies = self.world.send_im(alice2, "Bob", b"from two 6", cookie=cookies[2], ack=True)
        self.assertEqual(replies_kinds(replies), [(FoodGroup.ICBM, ICBM.HOST_ACK)])
        self.assertEqual(texts(self.bob_conn), sent)

    def test_dropped_retransmissions_counted_in_one_line(self) -> None:
        """Each drop is counted; the first of a burst is logged, the rest go
        into one line per interval."""
        events: list[dict] = []
        self.world.icbm.dropped.log.observer = events.append
        for _ in range(4):
            self.world.send_im(self.alice, "Bob", b"hi", cookie=b"samecook")
        self.assertEqual(texts(self.bob_conn), [b"hi"])
        self.assertEqual(len(events), 1)
        self.assertIn("retransmitted", events[0]["log_format"])
        self.world.clock.advance(10)
        self.assertEqual(len(events), 2)
        self.assertEqual(events[1]["counts"], "2 retransmissions")

    def test_other_channels_not_deduplicated(self) -> None:
        """Only channel-1 IMs are checked for retransmission."""
        message = ChannelMessageToHost(b"samecook", 2, "Bob", TlvList((Tlv(0x0099, b"x"),)))
        self.world.send(self.alice, message)
        self.world.send(self.alice, message)
        self.assertEqual(len(ims(self.bob_conn)), 2)


def typing_received(connections) -> list[list[ClientEvent]]:
    return [
        [ClientEvent.unpack(s.body) for s in c.snacs(FoodGroup.ICBM, ICBM.CLIENT_EVENT)]
        for c in connections
    ]


class TypingTests(SynchronousTestCase):
    """§11: typing events follow IM routing (§10)."""

    def test_typing_to_active_sessions(self) -> None:
        """Typing events reach the sessions an IM would, named after the typist:
        the active ones, not the away one or the idle one."""
        world = IcbmWorld()
        alice, _ = world.sign_on("Alice")
        bob = [world.sign_on("Bob") for _ in range(3)]
        world.set_away(bob[0][0], b"out")
        world.set_idle(bob[1][0], 600)
        world.typing(alice, "Bob", 2)
        event = ClientEvent(b"\0" * 8, 1, "Alice", 2)
        self.assertEqual(typing_received(c for _, c in bob), [[], [], [event]])

    def test_typing_skips_idle_session_while_one_is_active(self) -> None:
        """An idle session gets no typing event while an active sibling exists,
        and gets them again once it is the only place an IM would go."""
        world = IcbmWorld()
        alice, _ = world.sign_on("Alice")
        (idle, idle_conn), (active, active_conn) = world.sign_on("Bob"), world.sign_on("Bob")
        world.set_idle(idle, 600)
        world.typing(alice, "Bob", 2)
        event = ClientEvent(b"\0" * 8, 1, "Alice", 2)
        self.assertEqual(typing_received([idle_conn, active_conn]), [[], [event]])
        world.sign_off(active)
        world.typing(alice, "Bob", 0)
        self.assertEqual(typing_received([idle_conn]), [[ClientEvent(b"\0" * 8, 1, "Alice", 0)]])

    def test_typing_when_every_session_away(self) -> None:
        """When no session is active (all away, or away and idle), every
        session gets the event, as every one would get the IM."""
        world = IcbmWorld()
        alice, _ = world.sign_on("Alice")
        bob = [world.sign_on("Bob") for _ in range(2)]
        world.set_away(bob[0][0], b"out")
        world.set_away(bob[1][0], b"lunch")
        world.set_idle(bob[1][0], 600)
        world.typing(alice, "Bob", 1)
        event = ClientEvent(b"\0" * 8, 1, "Alice", 1)
        self.assertEqual(typing_received(c for _, c in bob), [[event], [event]])
        self.assertEqual(
            sorted(
                s.instance_id for s in world.presence.routing(world.registry.get("Bob")).targets
            ),
            sorted(s.instance_id for s, _ in bob),
        )

    def test_typing_to_offline_user_dropped(self) -> None:
        """Typing to someone not signed on is silently dropped."""
        world = IcbmWorld()
        alice, connection = world.sign_on("Alice")
        connection.clear()
        world.typing(alice, "Nobody")
        self.assertEqual(connection.payloads, [])


class RendezvousTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = IcbmWorld()
        self.alice, self.alice_conn = self.world.sign_on("Alice", ip="203.0.113.9")
        self.alice2, self.alice2_conn = self.world.sign_on("Alice")
        self.bob1, self.bob1_conn = self.world.sign_on("Bob")
        self.bob2, self.bob2_conn = self.world.sign_on("Bob")
        self.bob3, self.bob3_conn = self.world.sign_on("Bob")
        self.bob1.capabilities = (CAP_FILE,)
        self.bob3.capabilities = (CAP_DIRECT_IM, CAP_FILE)
        for connection in (self.alice_conn, self.alice2_conn):
            connection.clear()

    def rendezvous_of(self, connection) -> list[Rendezvous]:
        return [
            Rendezvous.unpack(m.tlvs.get(TAG_RENDEZVOUS)) for m in ims(connection) if m.channel == 2
        ]

    def test_proposal_only_to_capable_sessions(self) -> None:
        """A file-transfer proposal goes only to the sessions that can do
        file transfer."""
        self.world.rendezvous(self.alice, "Bob", Rendezvous.PROPOSE)
        self.assertEqual(len(self.rendezvous_of(self.bob1_conn)), 1)
        self.assertEqual(self.rendezvous_of(self.bob2_conn), [])
        self.assertEqual(len(self.rendezvous_of(self.bob3_conn)), 1)

    def test_no_capable_session(self) -> None:
        """A proposal nobody can take is refused with "not logged on"."""
        error = self.assertRaises(
            SnacError,
            self.world.rendezvous,
            self.alice,
            "Bob",
            Rendezvous.PROPOSE,
            capability=b"V" * 16,
        )
        self.assertEqual(error.code, 0x0004)

    def test_accept_goes_to_proposer_only(self) -> None:
        """The accept from the recipient reaches only the session that proposed."""
        self.world.rendezvous(self.alice, "Bob", Rendezvous.PROPOSE)
        self.world.rendezvous(self.bob3, "Alice", Rendezvous.ACCEPT)
        [accept] = self.rendezvous_of(self.alice_conn)
        self.assertEqual(accept.kind, Rendezvous.ACCEPT)
        self.assertEqual(self.rendezvous_of(self.alice2_conn), [])

    def test_cancel_goes_to_proposer_only(self) -> None:
        """A decline from the recipient reaches only the proposing session."""
        self.world.rendezvous(self.alice2, "Bob", Rendezvous.PROPOSE)
        self.world.rendezvous(self.bob1, "Alice", Rendezvous.CANCEL)
        self.assertEqual(self.rendezvous_of(self.alice_conn), [])
        [cancel] = self.rendezvous_of(self.alice2_conn)
        self.assertEqual(cancel.kind, Rendezvous.CANCEL)

    def test_after_accept_only_the_accepter(self) -> None:
        """Once one session accepted, the other sessions that were offered the
        proposal get a cancel with reason 3 (accepted elsewhere), and the
        proposer's further messages about it go only to the accepting one."""
        self.world.rendezvous(self.alice, "Bob", Rendezvous.PROPOSE)
        self.world.rendezvous(self.bob3, "Alice", Rendezvous.ACCEPT)
        self.world.rendezvous(self.alice, "Bob", Rendezvous.CANCEL)
        offered_elsewhere = self.rendezvous_of(self.bob1_conn)
        self.assertEqual(
            [r.kind for r in offered_elsewhere], [Rendezvous.PROPOSE, Rendezvous.CANCEL]
        )
        self.assertEqual(offered_elsewhere[1].tlvs.get_u16(0x000B), 3)
        self.assertEqual(
            [r.kind for r in self.rendezvous_of(self.bob3_conn)],
            [Rendezvous.PROPOSE, Rendezvous.CANCEL],
        )

    def test_ip_replaced_by_server_seen(self) -> None:
        """The proposer's own idea of its IP is replaced by the address the
        server sees, which is added as the verified IP too."""
        self.world.rendezvous(
            self.alice,
            "Bob",
            Rendezvous.PROPOSE,
            inner=(Tlv(0x0003, bytes([10, 0, 0, 5])), Tlv.u16(0x0005, 5190)),
        )
        [proposal] = self.rendezvous_of(self.bob1_conn)
        self.assertEqual(proposal.tlvs.get(0x0003), bytes([203, 0, 113, 9]))
        self.assertEqual(proposal.tlvs.get(0x0004), bytes([203, 0, 113, 9]))
        self.assertEqual(proposal.tlvs.get_u16(0x0005), 5190)
        self.assertEqual(proposal.cookie, b"rvcookie")
        self.assertEqual(proposal.capability, CAP_FILE)

    def test_proposal_to_offline_user(self) -> None:
        """A proposal to someone not signed on is refused."""
        error = self.assertRaises(
            SnacError, self.world.rendezvous, self.alice, "Nobody", Rendezvous.PROPOSE
        )
        self.assertEqual(error.code, 0x0004)


class OfflineMessageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = IcbmWorld()
        self.alice, self.alice_conn = self.world.sign_on("Alice")
        self.world.account("Bob")

    def stored(self) -> list:
        return self.successResultOf(self.world.store.get_offline_messages("bob"))

    def test_stored_when_offline(self) -> None:
        """An IM marked store-if-offline to a signed-off user is kept, and
        acknowledged when asked."""
        d = self.world.store_im(self.alice, "Bob", b"call me", ack=True)
        self.assertEqual(replies_kinds(self.successResultOf(d)), [(FoodGroup.ICBM, ICBM.HOST_ACK)])
        [message] = self.stored()
        self.assertEqual(message.sender, "Alice")
        self.assertEqual(message.channel, 1)
        self.assertEqual(message.sent_at, int(self.world.clock.seconds()))
        self.assertEqual(
            TlvList.unpack_list(message.tlvs).get(TAG_IM_DATA), pack_im_data(b"call me")
        )

    def test_stored_without_ack(self) -> None:
        """Without an ack request the sender gets no reply."""
        self.assertEqual(self.successResultOf(self.world.store_im(self.alice, "Bob", b"x")), [])
        self.assertEqual(len(self.stored()), 1)

    def test_sender_share_full(self) -> None:
        """Beyond one sender's share of an inbox that sender hears "not logged
        on" with subcode 0x000F and nothing more is kept; others still get in."""
        for n in range(MAX_OFFLINE_MESSAGES_PER_SENDER):
            self.successResultOf(self.world.store_im(self.alice, "Bob", b"%d" % n))
        failure = self.failureResultOf(
            self.world.store_im(self.alice, "Bob", b"one more"), SnacError
        )
        self.assertEqual((failure.value.code, failure.value.subcode), (0x0004, 0x000F))
        self.assertEqual(len(self.stored()), MAX_OFFLINE_MESSAGES_PER_SENDER)
        carol, _ = self.world.sign_on("Carol")
        self.successResultOf(self.world.store_im(carol, "Bob", b"hi"))
        self.assertEqual(len(self.stored()), MAX_OFFLINE_MESSAGES_PER_SENDER + 1)

    def test_inbox_full(self) -> None:
        """Beyond the inbox limit a sender with room in their own share hears
        "not logged on" with subcode 0x000F, and nothing more is kept."""
        shares = MAX_OFFLINE_MESSAGES_PER_RECIPIENT // MAX_OFFLINE_MESSAGES_PER_SENDER
        senders = [self.alice] + [self.world.sign_on(f"Sender{n}")[0] for n in range(1, shares)]
        for n in range(MAX_OFFLINE_MESSAGES_PER_SENDER):
            for sender in senders:
                self.successResultOf(self.world.store_im(sender, "Bob", b"%d" % n))
        latecomer, _ = self.world.sign_on("Latecomer")
        failure = self.failureResultOf(
            self.world.store_im(latecomer, "Bob", b"one more"), SnacError
        )
        self.assertEqual((failure.value.code, failure.value.subcode), (0x0004, 0x000F))
        self.assertEqual(len(self.stored()), MAX_OFFLINE_MESSAGES_PER_RECIPIENT)

    def test_unknown_account(self) -> None:
        """Storing for a screen name nobody registered is "not logged on"."""
        failure = self.failureResultOf(self.world.store_im(self.alice, "Nobody", b"x"), SnacError)
        self.assertEqual((failure.value.code, failure.value.subcode), (0x0004, None))

    def test_delivered_in_order_to_first_session(self) -> None:
        """The first session to come online gets the messages in order,
        marked as offline with the time they were sent, and they are then
        deleted; a second session does not get them again."""
        sent_at = []
        for text in (b"one", b"two", b"three"):
            sent_at.append(int(self.world.clock.seconds()))
            self.world.store_im(self.alice, "Bob", text)
            self.world.clock.advance(60)
        _, first = self.world.sign_on("Bob")
        messages = ims(first)
        self.assertEqual([m.text for m in messages], [b"one", b"two", b"three"])
        for message, at in zip(messages, sent_at, strict=True):
            self.assertTrue(message.tlvs.has(TAG_STORE_IF_OFFLINE))
            self.assertEqual(message.tlvs.get_u32(TAG_OFFLINE_TIME), at)
            self.assertEqual(message.sender.screen_name, "Alice")
        self.assertEqual(self.stored(), [])
        _, second = self.world.sign_on("Bob")
        self.assertEqual(ims(second), [])

    def test_offline_retrieve_after_delivery(self) -> None:
        """A client that asks for offline messages after getting them gets
        only the "done" answer."""
        self.world.store_im(self.alice, "Bob", b"one")
        bob, connection = self.world.sign_on("Bob")
        connection.clear()
        replies = self.successResultOf(
            self.world.call(self.world.icbm.offline_retrieve, bob, FoodGroup.ICBM, 0x10)
        )
        self.assertEqual(replies_kinds(replies), [(FoodGroup.ICBM, 0x17)])
        self.assertEqual(ims(connection), [])

    def test_kept_if_session_closed_first(self) -> None:
        """Messages stay stored when the session closes before they could be
        handed over, and the next session to come online gets them."""
        store = HoldingStore(self.world.clock)
        world = IcbmWorld(store=store, clock=self.world.clock)
        alice, _ = world.sign_on("Alice")
        world.account("Bob")
        world.store_im(alice, "Bob", b"one")
        world.store_im(alice, "Bob", b"two")
        store.hold = True
        bob, lost = world.sign_on("Bob")
        world.sign_off(bob)
        store.hold = False
        store.release()
        self.assertEqual(ims(lost), [])
        self.assertEqual(len(self.successResultOf(store.get_offline_messages("bob"))), 2)
        _, connection = world.sign_on("Bob")
        self.assertEqual(texts(connection), [b"one", b"two"])
        self.assertEqual(self.successResultOf(store.get_offline_messages("bob")), [])

    def test_kept_if_one_of_two_closes_first(self) -> None:
        """When the first session closes before delivery while another is
        still signed on, the messages go to the next session that comes online."""
        store = HoldingStore(self.world.clock)
        world = IcbmWorld(store=store, clock=self.world.clock)
        alice, _ = world.sign_on("Alice")
        world.account("Bob")
        world.store_im(alice, "Bob", b"one")
        store.hold = True
        first, lost = world.sign_on("Bob")
        second, _ = world.sign_on("Bob", online=False)
        world.sign_off(first)
        store.hold = False
        store.release()
        self.assertEqual(ims(lost), [])
        world.come_online(second)
        self.assertEqual(texts(second.connection), [b"one"])

    def test_delivered_when_other_session_waits_for_it(self) -> None:
        """If the session that was getting the messages closes while another
        session of the user is already online, that other session gets them:
        the user does not have to sign on yet again."""
        store = HoldingStore(self.world.clock)
        world = IcbmWorld(store=store, clock=self.world.clock)
        alice, _ = world.sign_on("Alice")
        world.account("Bob")
        world.store_im(alice, "Bob", b"one")
        store.hold = True
        first, lost = world.sign_on("Bob")
        _, waiting = world.sign_on("Bob")
        world.sign_off(first)
        store.hold = False
        store.release()
        self.assertEqual(ims(lost), [])
        self.assertEqual(texts(waiting), [b"one"])
        self.assertEqual(self.successResultOf(store.get_offline_messages("bob")), [])

    def test_stored_between_sessions(self) -> None:
        """A message stored while the user's only online session has signed
        off and the next one is still signing on reaches that next session."""
        bob1, _ = self.world.sign_on("Bob")
        bob2, connection = self.world.sign_on("Bob", online=False)
        self.world.sign_off(bob1)
        self.successResultOf(self.world.store_im(self.alice, "Bob", b"in between"))
        self.world.come_online(bob2)
        self.assertEqual(texts(connection), [b"in between"])
        self.assertEqual(self.stored(), [])

    def test_stored_while_displaced(self) -> None:
        """A message stored while a new sign-on replaces the old one (before
        the new session is ready) reaches the new session."""
        self.world.sign_on("Bob", flags=MULTICONN_LEGACY)
        bob, connection = self.world.sign_on("Bob", flags=MULTICONN_LEGACY, online=False)
        self.successResultOf(self.world.store_im(self.alice, "Bob", b"meanwhile"))
        self.world.come_online(bob)
        self.assertEqual(texts(connection), [b"meanwhile"])
        self.assertEqual(self.stored(), [])

    def test_retrieve_answers_after_the_messages(self) -> None:
        """A client asking for its offline messages while they are being
        handed over gets the "done" answer only after them."""
        store = HoldingStore(self.world.clock)
        world = IcbmWorld(store=store, clock=self.world.clock)
        alice, _ = world.sign_on("Alice")
        world.account("Bob")
        world.store_im(alice, "Bob", b"one")
        store.hold = True
        bob, connection = world.sign_on("Bob")
        d = world.call(world.icbm.offline_retrieve, bob, FoodGroup.ICBM, 0x10)
        self.assertNoResult(d)
        seen = []
        d.addCallback(lambda replies: seen.append((texts(connection), replies_kinds(replies))))
        store.hold = False
        store.release()
        self.assertEqual(seen, [([b"one"], [(FoodGroup.ICBM, 0x17)])])

    def test_not_stored_when_online(self) -> None:
        """An IM marked store-if-offline to someone online is simply delivered."""
        _, connection = self.world.sign_on("Bob")
        self.assertEqual(
            self.successResultOf(defer_of(self.world.store_im(self.alice, "Bob", b"x"))), []
        )
        self.assertEqual(texts(connection), [b"x"])
        self.assertEqual(self.stored(), [])

    def test_stored_while_signing_on(self) -> None:
        """A session that has not finished signing on does not count as
        online: the IM is stored and handed over at client-ready."""
        bob, connection = self.world.sign_on("Bob", online=False)
        self.successResultOf(self.world.store_im(self.alice, "Bob", b"early"))
        self.assertEqual(len(self.stored()), 1)
        self.world.come_online(bob)
        self.assertEqual(texts(connection), [b"early"])
        self.assertEqual(self.stored(), [])


class MultisessionNoticeTests(SynchronousTestCase):
    def notices(self, connection) -> list[str]:
        found = []
        for message in connection.messages():
            if message.sender.screen_name == "AOL System Msg":
                found.append(message.text.decode("ascii"))
        return found

    def test_from_second_session_to_all(self) -> None:
        """The second and later multi-capable sessions trigger a notice, with
        the right count, to every online session including the new one."""
        world = IcbmWorld()
        _, first = world.sign_on("Alice")
        self.assertEqual(self.notices(first), [])
        _, second = world.sign_on("Alice")
        self.assertEqual(self.notices(first), [NOTICE.format(2)])
        self.assertEqual(self.notices(second), [NOTICE.format(2)])
        _, third = world.sign_on("Alice")
        self.assertEqual(self.notices(first), [NOTICE.format(2), NOTICE.format(3)])
        self.assertEqual(self.notices(second), [NOTICE.format(2), NOTICE.format(3)])
        self.assertEqual(self.notices(third), [NOTICE.format(3)])

    def test_exact_text(self) -> None:
        """The notice reads exactly as AOL's did."""
        world = IcbmWorld()
        world.sign_on("Alice")
        _, second = world.sign_on("Alice")
        [message] = second.messages()
        self.assertEqual(message.sender.screen_name, "AOL System Msg")
        self.assertEqual(message.channel, 1)
        self.assertEqual(
            message.text,
            b"Your AOL screen name (Alice) is now signed into AOL(R) Instant Messenger (TM)"
            b" in 2 locations. Click here for more information.",
        )

    def test_not_for_displacing_clients(self) -> None:
        """Legacy and single-session clients never get the notice."""
        for flags in (MULTICONN_LEGACY, MULTICONN_SINGLE):
            world = IcbmWorld()
            _, first = world.sign_on("Alice", flags=flags)
            _, second = world.sign_on("Alice", flags=flags)
            self.assertEqual(self.notices(first) + self.notices(second), [])
            self.assertEqual(first.disconnects, [0x0001])

    def test_not_when_turned_off(self) -> None:
        """The notice can be turned off in the configuration."""
        world = IcbmWorld(notify=False)
        _, first = world.sign_on("Alice", flags=MULTICONN_MULTI)
        _, second = world.sign_on("Alice", flags=MULTICONN_MULTI)
        self.assertEqual(self.notices(first) + self.notices(second), [])

    def test_only_online_sessions_counted(self) -> None:
        """Sessions still signing on neither count nor get the notice."""
        world = IcbmWorld()
        _, first = world.sign_on("Alice")
        _, pending = world.sign_on("Alice", online=False)
        _, third = world.sign_on("Alice")
        self.assertEqual(self.notices(first), [NOTICE.format(2)])
        self.assertEqual(self.notices(third), [NOTICE.format(2)])
        self.assertEqual(pending.payloads, [])


class ParameterTests(SynchronousTestCase):
    def test_typing_flag_from_parameters(self) -> None:
        """A client that asks for typing events has its IMs flagged so the
        recipient sends them."""
        world = IcbmWorld()
        alice, _ = world.sign_on("Alice")
        _, bob = world.sign_on("Bob")
        world.call(
            world.icbm.add_parameters,
            alice,
            FoodGroup.ICBM,
            ICBM.ADD_PARAMETERS,
            struct.pack("!HIHHHI", 0, 0x0B, 8000, 999, 999, 0),
        )
        world.send_im(alice, "Bob")
        self.assertTrue(bob.messages()[0].tlvs.has(0x000B))


class InboxCountTests(SynchronousTestCase):
    """Sign-ons of users with nothing waiting skip the store's offline read."""

    def setUp(self) -> None:
        self.world = IcbmWorld()
        self.reads: list[str] = []
        original = self.world.store.get_offline_messages

        def counting(recipient: str):
            self.reads.append(recipient)
            return original(recipient)

        self.world.store.get_offline_messages = counting  # type: ignore[method-assign]
        self.alice, _ = self.world.sign_on("Alice")
        self.world.account("Bob")
        self.world.account("Carol")

    def test_nothing_waiting_no_read(self) -> None:
        """Once the counts are loaded, a sign-on with an empty inbox does not
        read the store; one with waiting messages does and gets them."""
        self.world.store_im(self.alice, "Bob", b"for bob")
        self.successResultOf(self.world.icbm.load_inbox_counts())
        self.reads.clear()
        self.world.sign_on("Carol")
        self.assertEqual(self.reads, [])
        _, bob = self.world.sign_on("Bob")
        self.assertEqual(self.reads, ["bob"])
        self.assertEqual(texts(bob), [b"for bob"])

    def test_counts_follow_stores_and_deliveries(self) -> None:
        """A message stored after the counts were loaded is delivered; after
        delivery the inbox counts as empty again."""
        self.successResultOf(self.world.icbm.load_inbox_counts())
        self.world.store_im(self.alice, "Bob", b"later")
        session, bob = self.world.sign_on("Bob")
        self.assertEqual(texts(bob), [b"later"])
        self.world.sign_off(session)
        self.reads.clear()
        self.world.sign_on("Bob")
        self.assertEqual(self.reads, [])


class TextImTests(SynchronousTestCase):
    """``send_text_im``: the browser's IM, routed as a 04,06 with
    store-if-offline is, without the SNAC."""

    def setUp(self) -> None:
        self.world = IcbmWorld()
        self.alice, self.alice_conn = self.world.sign_on("Alice")
        self.bob, self.bob_conn = self.world.sign_on("Bob")

    def test_same_04_07_as_the_snac_path(self) -> None:
        """The recipient's 04,07 is byte for byte what the same message sent
        as a 04,06 (with store-if-offline) gives; the text rides along."""
        data = pack_im_data(b"hello there")
        self.world.icbm.send_text_im(self.alice, b"cookie01", "B o b", data, "hello there")
        self.world.send_im(
            self.alice,
            "B o b",
            b"hello there",
            cookie=b"cookie01",
            extra=[Tlv.empty(TAG_STORE_IF_OFFLINE)],
        )
        first, second = self.bob_conn.payloads
        self.assertEqual(first[10:], second[10:])  # past the SNAC header (request ids differ)
        events = self.bob_conn.events
        self.assertEqual(events[0].text, "hello there")
        self.assertIsNone(events[1].text)

    def test_text_not_ascii_is_not_carried(self) -> None:
        data = pack_im_data("héllo".encode("utf-16-be"), 0x0002)
        self.world.icbm.send_text_im(self.alice, b"cookie02", "bob", data, "héllo")
        self.assertIsNone(self.bob_conn.events[-1].text)
        self.assertEqual(texts(self.bob_conn), ["héllo".encode("utf-16-be")])

    def test_stored_when_offline(self) -> None:
        self.world.account("Carol")
        d = self.world.icbm.send_text_im(self.alice, b"cookie03", "Carol", pack_im_data(b"x"), "x")
        self.assertEqual(self.successResultOf(d), [])
        [message] = self.successResultOf(self.world.store.get_offline_messages("carol"))
        self.assertEqual(message.sender, "Alice")

    def test_unknown_recipient_refused(self) -> None:
        d = self.world.icbm.send_text_im(self.alice, b"cookie04", "Nobody", pack_im_data(b"x"), "x")
        failure = self.failureResultOf(d, SnacError)
        self.assertEqual(failure.value.code, 0x0004)

    def test_never_taken_for_a_retransmission(self) -> None:
        """The browser's own client message ids make its sends idempotent:
        two equal messages are two messages."""
        for _ in range(2):
            self.world.icbm.send_text_im(self.alice, b"samecook", "bob", pack_im_data(b"x"), "x")
        self.assertEqual(texts(self.bob_conn), [b"x", b"x"])
