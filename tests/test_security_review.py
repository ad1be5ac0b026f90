"""What a security review of a running server found (issue 13 §3), pinned down:
invisible users that could be told from offline ones, IMs over the
recipient's size acknowledged and lost, per-session memory that grew without
bound or outlived its session, service connections that multiplied the
sign-on allowance, and short frames logged before the rate check.

Services run over a ``ServiceWorld`` and protocols over a ``StringTransport``,
both on a ``task.Clock``: synchronous and deterministic.
"""

from __future__ import annotations

import gc
import struct

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from aimserver.registry import SessionInstance
from aimserver.services.base import SnacError
from aimserver.services.icbm import MAX_RENDEZVOUS_PER_SESSION
from aimserver.wire.codes import ICBM, FoodGroup, OService
from aimserver.wire.icbm import (
    TAG_IM_DATA,
    TAG_RENDEZVOUS,
    TAG_REQUEST_HOST_ACK,
    TAG_STORE_IF_OFFLINE,
    ChannelMessageToHost,
    ClientError,
    ClientEvent,
    IcbmParameters,
    Rendezvous,
    pack_im_data,
)
from aimserver.wire.tlv import Tlv, TlvList
from tests.fakes import Wire, frame, make_server, signed_on_bos
from tests.fakes_services import ServiceWorld, replies_kinds

STATUS_INVISIBLE = 0x00000100
CAP_FILE = bytes.fromhex("094613434c7f11d18222444553540000")
NOT_LOGGED_ON = 0x0004
REFUSED_BY_CLIENT = 0x000A
BUSTED_SNAC_PAYLOAD = 0x000E
STORE = Tlv.empty(TAG_STORE_IF_OFFLINE)
ACK = Tlv.empty(TAG_REQUEST_HOST_ACK)


def im(recipient: str, text: bytes, *extra: Tlv, cookie: bytes = b"cookie01") -> bytes:
    tlvs = TlvList((Tlv(TAG_IM_DATA, pack_im_data(text)), *extra))
    return ChannelMessageToHost(cookie, 1, recipient, tlvs).pack()


def proposal(recipient: str, cookie: bytes) -> bytes:
    block = Rendezvous(Rendezvous.PROPOSE, cookie, CAP_FILE, TlvList(())).pack()
    tlvs = TlvList((Tlv(TAG_RENDEZVOUS, block), ACK))
    return ChannelMessageToHost(cookie, 2, recipient, tlvs).pack()


class World(ServiceWorld):
    def send(self, session: SessionInstance, body: bytes):
        return self.call(
            self.icbm.channel_msg_to_host, session, FoodGroup.ICBM, ICBM.CHANNEL_MSG_TO_HOST, body
        )

    def set_capabilities(self, session: SessionInstance, *caps: bytes) -> None:
        self.set_info(session, Tlv(0x0005, b"".join(caps)))

    def parameters(self, session: SessionInstance, max_length: int) -> None:
        self.call(
            self.icbm.add_parameters,
            session,
            FoodGroup.ICBM,
            ICBM.ADD_PARAMETERS,
            IcbmParameters(0, 0x0B, max_length, 999, 999, 0).pack(),
        )

    def refused(self, code: int, f, *args) -> None:
        error = SnacError
        try:
            f(*args)
        except error as e:
            assert e.code == code, (hex(e.code), hex(code))
            return
        raise AssertionError(f"not refused with {code:#06x}")


class InvisibleLooksOfflineTests(SynchronousTestCase):
    """An invisible user (every session invisible) gets from everyone else
    exactly the answers an offline user gets (docs/multisession.md)."""

    def setUp(self) -> None:
        self.world = World()
        self.alice, self.alice_conn = self.world.sign_on("Alice")
        self.bob, self.bob_conn = self.world.sign_on("Bob")
        self.world.set_capabilities(self.bob, CAP_FILE)
        self.world.set_status(self.bob, STATUS_INVISIBLE)
        self.bob_conn.clear()
        self.alice_conn.clear()
        self.world.account("Nobody")

    def answer(self, recipient: str, body: bytes):
        try:
            return ("replies", replies_kinds(self.world.send(self.alice, body)))
        except SnacError as e:
            return ("error", e.code, e.subcode)

    def test_im_to_invisible_answers_as_offline(self) -> None:
        """Without store-if-offline: 0x0004, as for an offline user, and the
        invisible user gets nothing."""
        self.assertEqual(
            self.answer("Bob", im("Bob", b"hi", ACK)),
            self.answer("Nobody", im("Nobody", b"hi", ACK)),
        )
        self.assertEqual(self.answer("Bob", im("Bob", b"hi", ACK)), ("error", NOT_LOGGED_ON, None))
        self.assertEqual(self.bob_conn.messages(), [])

    def test_stored_im_to_invisible_is_acked_as_stored_and_held(self) -> None:
        """With store-if-offline: stored and acked, as for an offline user;
        the invisible user gets it when it is seen again."""
        self.assertEqual(
            self.answer("Bob", im("Bob", b"later", ACK, STORE)),
            self.answer("Nobody", im("Nobody", b"later", ACK, STORE, cookie=b"cookie02")),
        )
        self.assertEqual(self.bob_conn.messages(), [])
        self.world.set_status(self.bob, 0)
        [message] = self.bob_conn.messages()
        self.assertEqual(message.text, b"later")
        self.assertTrue(message.tlvs.has(TAG_STORE_IF_OFFLINE))

    def test_away_invisible_user_sends_no_auto_response(self) -> None:
        """The away text of an invisible user never reaches anyone."""
        self.world.set_away(self.bob, b"gone fishing")
        self.alice_conn.clear()
        self.assertEqual(self.answer("Bob", im("Bob", b"hi")), ("error", NOT_LOGGED_ON, None))
        self.assertEqual(self.alice_conn.messages(), [])

    def test_warning_invisible_answers_as_offline(self) -> None:
        """A warning gets 0x0004 whatever the warner's credit (an offline
        user's answer), not 0x000D."""
        body = struct.pack("!H", 0) + bytes([3]) + b"Bob"
        self.world.refused(
            NOT_LOGGED_ON,
            self.world.warnings.evil_request,
            self.alice,
            None,
            body,
        )

    def test_rendezvous_proposal_to_invisible_answers_as_offline(self) -> None:
        """A file-transfer proposal is refused with 0x0004, not acked."""
        self.assertEqual(
            self.answer("Bob", proposal("Bob", b"rdvcook1")), ("error", NOT_LOGGED_ON, None)
        )
        self.assertEqual(self.bob_conn.messages(), [])

    def test_typing_and_client_errors_do_not_reach_invisible(self) -> None:
        """Typing events and client errors go nowhere, as for an offline user."""
        self.world.call(
            self.world.icbm.client_event,
            self.alice,
            FoodGroup.ICBM,
            ICBM.CLIENT_EVENT,
            ClientEvent(b"\0" * 8, 1, "Bob", 2).pack(),
        )
        self.world.call(
            self.world.icbm.client_error,
            self.alice,
            FoodGroup.ICBM,
            ICBM.CLIENT_ERROR,
            ClientError(b"\0" * 8, 1, "Bob", 1, b"").pack(),
        )
        self.assertEqual(self.bob_conn.snacs(), [])

    def test_those_it_messaged_may_answer_others_still_may_not(self) -> None:
        """Bob, invisible, IMs Alice: she knows he is on, so her answer
        reaches him; Carol, whom he never messaged, still gets 0x0004."""
        self.world.send(self.bob, im("Alice", b"psst"))
        self.assertEqual([m.text for m in self.alice_conn.messages()], [b"psst"])
        self.assertEqual(
            replies_kinds(self.world.send(self.alice, im("Bob", b"hey you", ACK))),
            [(FoodGroup.ICBM, ICBM.HOST_ACK)],
        )
        self.assertEqual([m.text for m in self.bob_conn.messages()], [b"hey you"])
        carol, _ = self.world.sign_on("Carol")
        self.world.refused(NOT_LOGGED_ON, self.world.send, carol, im("Bob", b"hi?"))

    def test_lookups_follow_the_same_rule(self) -> None:
        """02,05 on an invisible user: "not logged on" for everyone, until it
        messages someone, who may then look it up; others still may not."""

        def lookup(session: SessionInstance) -> object:
            body = struct.pack("!H", 0x0001) + bytes([3]) + b"Bob"
            try:
                return replies_kinds(
                    self.world.call(
                        self.world.locate.user_info_query, session, FoodGroup.LOCATE, 0x0005, body
                    )
                )
            except SnacError as e:
                return e.code

        carol, _ = self.world.sign_on("Carol")
        self.assertEqual(lookup(self.alice), NOT_LOGGED_ON)
        self.world.send(self.bob, im("Alice", b"psst"))
        self.assertEqual(lookup(self.alice), [(FoodGroup.LOCATE, 0x0006)])
        self.assertEqual(lookup(carol), NOT_LOGGED_ON)

    def test_invisible_user_still_messages_its_own_sessions(self) -> None:
        """The user itself can see it is online: an IM to itself arrives."""
        bob2, _ = self.world.sign_on("Bob")
        self.world.set_status(bob2, STATUS_INVISIBLE)
        self.bob_conn.clear()
        self.world.send(bob2, im("Bob", b"note to self"))
        self.assertEqual([m.text for m in self.bob_conn.messages()], [b"note to self"])


class ImSizeTests(SynchronousTestCase):
    """An IM over what the recipient asked for in 04,02 is refused with
    0x000A and never acknowledged."""

    def setUp(self) -> None:
        self.world = World()
        self.alice, _ = self.world.sign_on("Alice")
        self.bob, self.bob_conn = self.world.sign_on("Bob")
        self.bob_conn.clear()

    def test_im_over_the_recipients_limit_is_refused_without_ack(self) -> None:
        self.world.parameters(self.bob, 512)
        self.world.refused(
            REFUSED_BY_CLIENT, self.world.send, self.alice, im("Bob", b"x" * 600, ACK)
        )
        self.assertEqual(self.bob_conn.messages(), [])
        # At the limit (text fragment included) it is delivered and acked.
        text = b"y" * (512 - 4 - 4 - 4 - 4)
        self.assertEqual(
            replies_kinds(self.world.send(self.alice, im("Bob", text, ACK))),
            [(FoodGroup.ICBM, ICBM.HOST_ACK)],
        )
        self.assertEqual([m.text for m in self.bob_conn.messages()], [text])

    def test_huge_ims_are_refused(self) -> None:
        """20 KB and 65 KB IMs (the server offers 8,000 bytes) are refused,
        never acked and then dropped as an oversize frame."""
        for size in (20_000, 65_400):
            self.world.refused(
                REFUSED_BY_CLIENT, self.world.send, self.alice, im("Bob", b"z" * size, ACK)
            )
            self.world.refused(
                REFUSED_BY_CLIENT,
                self.world.send,
                self.alice,
                im("Bob", b"z", ACK, Tlv(0x0099, b"q" * size)),
            )
        self.assertEqual(self.bob_conn.messages(), [])

    def test_oversize_offline_im_is_refused(self) -> None:
        self.world.account("Carol")
        self.world.refused(
            REFUSED_BY_CLIENT, self.world.send, self.alice, im("Carol", b"z" * 9000, ACK, STORE)
        )
        self.assertEqual(self.world.icbm._inbox_counts.get("carol", 0), 0)

    def test_goes_to_the_sessions_that_accept_it(self) -> None:
        """Of two sessions, the one that asked for less does not get it; the
        other does, and the sender gets its ack."""
        bob2, bob2_conn = self.world.sign_on("Bob")
        self.bob_conn.clear()
        bob2_conn.clear()
        self.world.parameters(self.bob, 512)
        self.world.parameters(bob2, 8000)
        replies = self.world.send(self.alice, im("Bob", b"w" * 2000, ACK))
        self.assertEqual(replies_kinds(replies), [(FoodGroup.ICBM, ICBM.HOST_ACK)])
        self.assertEqual(self.bob_conn.messages(), [])
        self.assertEqual(len(bob2_conn.messages()), 1)


class RendezvousMemoryTests(SynchronousTestCase):
    """Rendezvous conversations live on the proposing session, are bounded,
    and go with it."""

    def setUp(self) -> None:
        self.world = World()
        self.alice, _ = self.world.sign_on("Alice")
        self.bob, _ = self.world.sign_on("Bob")
        self.world.set_capabilities(self.bob, CAP_FILE)

    def test_bounded_per_session(self) -> None:
        for n in range(3 * MAX_RENDEZVOUS_PER_SESSION):
            self.world.send(self.alice, proposal("Bob", b"rdv%05d" % n))
        self.assertEqual(len(self.alice.rendezvous or ()), MAX_RENDEZVOUS_PER_SESSION)

    def test_freed_when_the_session_goes(self) -> None:
        self.world.send(self.alice, proposal("Bob", b"rdvcook1"))
        self.assertEqual(len(self.alice.rendezvous or ()), 1)
        self.world.sign_off(self.alice)
        self.assertIsNone(self.alice.rendezvous)

    def test_holds_no_session_of_the_peer(self) -> None:
        """The conversation names the peer's sessions by instance id, so a
        peer's closed session is not kept alive by it."""
        self.world.send(self.alice, proposal("Bob", b"rdvcook1"))
        [conversation] = (self.alice.rendezvous or {}).values()
        self.assertEqual(conversation.offered, (self.bob.instance_id,))


class RateSubscriptionTests(SynchronousTestCase):
    """01,08 keeps only rate classes that exist; a long list is refused unread."""

    def setUp(self) -> None:
        self.world = World()
        self.alice, _ = self.world.sign_on("Alice")

    def subscribe(self, ids: list[int]):
        return self.world.call(
            self.world.oservice.rate_params_sub_add,
            self.alice,
            FoodGroup.OSERVICE,
            OService.RATE_PARAMS_SUB_ADD,
            struct.pack(f"!{len(ids)}H", *ids),
        )

    def test_only_real_classes_are_kept(self) -> None:
        self.subscribe([1, 2, 3, 4, 5, 6, 999, 0xFFFF, 0])
        self.assertEqual(self.alice.rate_subscriptions, {1, 2, 3, 4, 5})

    def test_long_list_refused(self) -> None:
        """Three 65 KB 01,08s cost ~3.9 MB per session before the fix."""
        self.world.refused(BUSTED_SNAC_PAYLOAD, self.subscribe, list(range(1, 32_000)))
        self.assertEqual(self.alice.rate_subscriptions, set())


def error_code(body: bytes) -> int:
    return struct.unpack_from("!H", body)[0]


class ServiceConnectionTests(SynchronousTestCase):
    """Service connections: a few per family per session, and one sign-on
    allowance for the session and all of them."""

    def setUp(self) -> None:
        self.server, self.store, self.clock = make_server(None, {"Alice": "secret12"})
        self.bos = signed_on_bos(self.server, "Alice")
        self.session = next(iter(self.server.registry.get("Alice").instances.values()))

    def alert_connection(self) -> Wire:
        cookie = self.server.cookies.issue(
            screen_name="Alice",
            instance_id=self.session.instance_id,
            multiconn_flags=0x01,
            service=0x0018,
            client_id="test client",
        )
        wire = Wire(self.server.bos_factory)
        wire.frames()
        wire.signon(Tlv(0x06, cookie))
        return wire

    def test_at_most_two_per_family(self) -> None:
        wires = [self.alert_connection() for _ in range(5)]
        self.assertEqual([w.closing for w in wires], [False, False, True, True, True])
        self.assertEqual(len(self.session.secondary), 2)
        wires[0].lose()
        self.assertEqual(len(self.session.secondary), 1)
        self.assertFalse(self.alert_connection().closing)

    def test_allowance_is_shared_with_service_connections(self) -> None:
        """One sign-on allowance for the session and all its service
        connections: what the first spent, a second does not get afresh, so
        its burst is counted and rate limited (before, each connection came
        with 64 rate-exempt SNACs of its own)."""
        from aimserver.registry import SIGNON_ALLOWANCE

        rate_query = struct.pack("!HHHI", 0x0001, 0x0006, 0, 1)
        first = self.alert_connection()
        for _ in range(SIGNON_ALLOWANCE):
            first.feed(frame(2, rate_query))
        self.assertEqual(self.session.signon_allowance, 0)
        self.assertNotIn((0x01, 0x0A), [(h.family, h.subtype) for h, _ in first.snacs()])
        second = self.alert_connection()
        second.raw()
        for _ in range(2 * SIGNON_ALLOWANCE):
            second.feed(frame(2, rate_query))
        self.assertIn((0x01, 0x0A), [(h.family, h.subtype) for h, _ in second.snacs()])


class ShortFrameTests(SynchronousTestCase):
    """Data frames too short for a SNAC header count against the rate limit
    first and are logged once per connection."""

    def test_flood_of_short_frames_logs_once_and_is_rate_limited(self) -> None:
        server, _, _ = make_server(None, {"Alice": "secret12"})
        wire = signed_on_bos(server, "Alice")
        wire.send_snac(FoodGroup.OSERVICE, OService.CLIENT_READY)
        wire.raw()
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        for _ in range(3500):
            wire.feed(frame(2, b"\x00" * 9))
            if wire.closing:
                break
        short_lines = [e for e in events if "SNAC, ignored" in e.get("log_format", "")]
        self.assertEqual(len(short_lines), 1)
        self.assertTrue(wire.closing)


class SessionMemoryTests(SynchronousTestCase):
    """Sign-on, three large 01,08s, one invitation, sign-off, over and over:
    no session object or per-session table outlives its session."""

    def test_cycles_leave_no_session_behind(self) -> None:
        server, _, _ = make_server(None, {"Alice": "secret12", "Bob": "secret12"})
        bob = signed_on_bos(server, "Bob")
        bob.send_snac(0x02, 0x04, TlvList((Tlv(0x0005, CAP_FILE),)).pack_list())
        bob.send_snac(FoodGroup.OSERVICE, OService.CLIENT_READY)
        big = struct.pack("!4000H", *range(4000))

        def cycle(n: int) -> None:
            alice = signed_on_bos(server, "Alice")
            for _ in range(3):
                alice.send_snac(FoodGroup.OSERVICE, OService.RATE_PARAMS_SUB_ADD, big)
            alice.send_snac(FoodGroup.OSERVICE, OService.CLIENT_READY)
            alice.send_snac(
                FoodGroup.ICBM, ICBM.CHANNEL_MSG_TO_HOST, proposal("Bob", b"rdv%05d" % n)
            )
            alice.lose()
            bob.raw()

        def live_sessions() -> int:
            gc.collect()
            return sum(1 for o in gc.get_objects() if type(o) is SessionInstance)

        for n in range(5):
            cycle(n)
        baseline = live_sessions()
        for n in range(5, 105):
            cycle(n)
        self.assertEqual(live_sessions(), baseline)
        self.assertNotIn("alice", server.registry.users)
        [bob_session] = server.registry.get("Bob").instances.values()
        self.assertIsNone(bob_session.rendezvous)
