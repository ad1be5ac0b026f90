"""Behaviour that a code review found broken, pinned down so it stays fixed:
bounded locate replies and frames that can never escape into the reactor,
feedbag reads that finish after sign-off, the sign-on rate allowance, offline
messages around displacement and slow stores, retransmissions, rendezvous
follow-ups across several sessions, warning decay, invisible lookups, closing
connections as delivery targets, and instance ids already in use.

Everything runs in memory on a ``task.Clock`` and memory stores, so every
test is synchronous and deterministic.
"""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from aimserver import registry as registry_module
from aimserver.config import Config
from aimserver.registry import MULTICONN_LEGACY, MULTICONN_MULTI, UserRegistry
from aimserver.server import AimServer
from aimserver.services.base import Reply, SnacError
from aimserver.services.feedbag import summary_of
from aimserver.store.interfaces import Feedbag, FeedbagItem, FeedbagSummary, OfflineMessage
from aimserver.store.memory import MemoryUserStore
from aimserver.wire.codes import ICBM, FoodGroup, Locate, OService
from aimserver.wire.flap import Channel
from aimserver.wire.icbm import (
    TAG_RENDEZVOUS,
    TAG_REQUEST_HOST_ACK,
    TAG_STORE_IF_OFFLINE,
    ChannelMessageToHost,
    ClientError,
    ClientEvent,
    Rendezvous,
)
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList
from tests.fakes import (
    SECRET,
    ToyFactory,
    Wire,
    make_server,
    result_of,
    signed_on_bos,
)
from tests.fakes_services import (
    START,
    FakeConnection,
    HoldingStore,
    ServiceWorld,
    decode_message_to_client,
    decode_user_info_reply,
    im_body,
    name08,
)

CAP_FILE = bytes.fromhex("09461343 4c7f11d1 82224445 53540000".replace(" ", ""))
STORE = Tlv.empty(TAG_STORE_IF_OFFLINE)
#: The longest profile or away MIME type accepted.
MAX_MIME_LENGTH = 128
ERROR_BUSTED_PAYLOAD = 0x000E
ERROR_NOT_LOGGED_ON = 0x0004
ERROR_REQUEST_DENIED = 0x000D


# -- helpers ----------------------------------------------------------------------------


def snac_error_code(body: bytes) -> int:
    return struct.unpack_from("!H", body)[0]


def kinds(snacs: list[tuple[SnacHeader, bytes]]) -> list[tuple[int, int]]:
    return [(h.family, h.subtype) for h, _ in snacs]


def client_ready(wire: Wire) -> None:
    wire.send_snac(FoodGroup.OSERVICE, OService.CLIENT_READY)


def server_over(store: MemoryUserStore, clock: Clock, *names: str) -> AimServer:
    """An ``AimServer`` over ``store`` with an account for each name."""
    for name in names:
        result_of(store.create_account(name, "secret12"))
    return AimServer(Config(), store, SECRET, clock)


def im_texts(wire: Wire) -> list[bytes]:
    """The texts of the 04,07s written to ``wire`` since the last read."""
    return [
        decode_message_to_client(body).text
        for header, body in wire.snacs()
        if (header.family, header.subtype) == (FoodGroup.ICBM, ICBM.CHANNEL_MSG_TO_CLIENT)
    ]


def rendezvous_body(
    kind: int, recipient: str, cookie: bytes = b"RDVCOOK1", ack: bool = False
) -> bytes:
    block = Rendezvous(kind, cookie, CAP_FILE, TlvList((Tlv.u16(0x000A, 1),))).pack()
    tlvs = [Tlv(TAG_RENDEZVOUS, block)]
    if ack:
        tlvs.append(Tlv.empty(TAG_REQUEST_HOST_ACK))
    return ChannelMessageToHost(cookie, 2, recipient, TlvList(tlvs)).pack()


def rendezvous_received(connection: FakeConnection) -> list[Rendezvous]:
    """Every rendezvous block pushed to ``connection`` in a 04,07."""
    return [
        Rendezvous.unpack(m.tlvs.get(TAG_RENDEZVOUS) or b"")
        for m in connection.messages()
        if m.channel == 2
    ]


class QueuedStore(MemoryUserStore):
    """A memory store whose offline-message writes and reads wait until the
    test answers them: in the order they were made (``flush``, like the
    one-thread SQLite store), or one kind first (``answer``)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.queueing = False
        self.pending: list[tuple[str, defer.Deferred[Any], Any]] = []

    def _later(self, name: str, call: Any) -> defer.Deferred[Any]:
        if not self.queueing:
            return call()
        d: defer.Deferred[Any] = defer.Deferred()
        self.pending.append((name, d, call))
        return d

    def store_offline_message(self, *args: Any) -> defer.Deferred[OfflineMessage]:
        return self._later("write", lambda: MemoryUserStore.store_offline_message(self, *args))

    def get_offline_messages(self, recipient: str) -> defer.Deferred[list[OfflineMessage]]:
        return self._later("read", lambda: MemoryUserStore.get_offline_messages(self, recipient))

    def answer(self, name: str) -> None:
        """Answer the first pending call of this kind."""
        index = next(i for i, (n, _, _) in enumerate(self.pending) if n == name)
        _, d, call = self.pending.pop(index)
        call().chainDeferred(d)

    def flush(self) -> None:
        while self.pending:
            self.answer(self.pending[0][0])


# -- 1. locate: bounded MIME types, replies that cannot escape ---------------------------


class LocateSizeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server, self.store, self.clock = make_server(
            None, {"Alice": "secret12", "Mallory": "secret12"}
        )
        self.alice = signed_on_bos(self.server, "Alice")
        self.mallory = signed_on_bos(self.server, "Mallory")
        for wire in (self.alice, self.mallory):
            client_ready(wire)
            wire.raw()

    def query_profile_and_away(self) -> list[tuple[SnacHeader, bytes]]:
        """Alice's 02,15 for Mallory's profile and away message."""
        self.alice.send_snac(
            FoodGroup.LOCATE,
            Locate.USER_INFO_QUERY2,
            struct.pack("!I", 0x03) + name08("Mallory"),
        )
        return self.alice.snacs()

    def test_overlong_mime_types_are_refused_and_not_stored(self) -> None:
        """A profile or away message whose MIME type is longer than 128 bytes
        is refused with "busted SNAC payload" and nothing of it is kept, so
        lookups of that user never carry it."""
        limit = MAX_MIME_LENGTH
        for mime_tag, text_tag in ((0x0001, 0x0002), (0x0003, 0x0004)):
            self.mallory.send_snac(
                FoodGroup.LOCATE,
                Locate.SET_INFO,
                TlvList([Tlv(mime_tag, b"x" * 60000), Tlv(text_tag, b"text")]).pack_list(),
            )
            self.mallory.send_snac(
                FoodGroup.LOCATE,
                Locate.SET_INFO,
                TlvList([Tlv(mime_tag, b"x" * (limit + 1)), Tlv(text_tag, b"text")]).pack_list(),
            )
        replies = self.mallory.snacs()
        self.assertEqual(kinds(replies), [(FoodGroup.LOCATE, 0x0001)] * 4)
        self.assertEqual({snac_error_code(body) for _, body in replies}, {ERROR_BUSTED_PAYLOAD})
        self.assertFalse(self.mallory.closing)
        (session,) = self.server.registry.get("Mallory").instances.values()
        self.assertEqual(
            (session.profile, session.profile_mime, session.away_message, session.away_mime),
            (None, b"", None, b""),
        )
        (reply,) = self.query_profile_and_away()
        self.assertEqual(kinds([reply]), [(FoodGroup.LOCATE, Locate.USER_INFO_REPLY)])
        _, tlvs = decode_user_info_reply(reply[1])
        self.assertEqual([t.tag for t in tlvs], [])

    def test_mime_type_at_the_limit_is_accepted(self) -> None:
        """A 128-byte MIME type is still accepted and shown with the profile."""
        mime = b"m" * MAX_MIME_LENGTH
        self.mallory.send_snac(
            FoodGroup.LOCATE,
            Locate.SET_INFO,
            TlvList([Tlv(0x0001, mime), Tlv(0x0002, b"hello")]).pack_list(),
        )
        self.assertEqual(self.mallory.snacs(), [])
        (reply,) = self.query_profile_and_away()
        _, tlvs = decode_user_info_reply(reply[1])
        self.assertEqual((tlvs.get(0x0001), tlvs.get(0x0002)), (mime, b"hello"))

    def test_oversize_reply_never_raises_out_of_data_received(self) -> None:
        """A lookup whose answer could not fit in one frame (here: MIME types
        that got past the limits) is dropped and logged as an error; nothing
        is raised into the reactor and the asker stays connected and served."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        (session,) = self.server.registry.get("Mallory").instances.values()
        session.profile, session.profile_mime = b"profile", b"x" * 60000
        session.away_message, session.away_mime = b"away", b"y" * 60000
        self.assertEqual(self.query_profile_and_away(), [])
        self.assertFalse(self.alice.closing)
        errors = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1, errors)
        self.assertGreater(errors[0]["size"], 0xFFFF)
        # The connection still answers.
        self.alice.send_snac(FoodGroup.LOCATE, Locate.RIGHTS_QUERY)
        self.assertEqual(kinds(self.alice.snacs()), [(FoodGroup.LOCATE, Locate.RIGHTS_REPLY)])


class OversizeFrameTests(SynchronousTestCase):
    def signed_on_toy(self) -> Wire:
        wire = Wire(ToyFactory())
        wire.signon(Tlv(0x06, b"ok"))
        wire.raw()
        return wire

    def test_oversize_frame_is_dropped_and_logged(self) -> None:
        """Asked to send a 70000-byte frame (more than FLAP can carry), a
        connection writes nothing, logs an error, and stays open; the next
        frame goes out as usual."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        wire = self.signed_on_toy()
        wire.proto.send_frame(Channel.DATA, b"x" * 70000)
        self.assertEqual(wire.raw(), b"")
        self.assertFalse(wire.closing)
        errors = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1, errors)
        self.assertEqual(errors[0]["size"], 70000)
        wire.proto.send_frame(Channel.DATA, b"y" * 0xFFFF)
        (sent,) = wire.frames()
        self.assertEqual(sent.payload, b"y" * 0xFFFF)

    def test_reply_that_cannot_be_packed_is_answered_with_an_error(self) -> None:
        """A handler whose reply cannot even be packed gets the client a
        "service unavailable" error and a logged failure, never an exception
        out of dataReceived."""
        wire = self.signed_on_toy()
        wire.proto.snac_handlers[(0x0A, 0x02)] = lambda request, body: [Reply(0x0A, 0x10000, b"")]
        wire.send_snac(0x0A, 0x02, b"x", request_id=5)
        ((header, body),) = wire.snacs()
        self.assertEqual((header.family, header.subtype, header.request_id), (0x0A, 0x01, 5))
        self.assertEqual(snac_error_code(body), 0x0005)
        self.assertFalse(wire.closing)
        self.assertEqual(len(self.flushLoggedErrors(struct.error)), 1)


# -- 2. feedbag read that finishes after sign-off ------------------------------------------


class FeedbagAfterSignoffTests(SynchronousTestCase):
    def test_feedbag_use_finishing_after_signoff_watches_nobody(self) -> None:
        """If the session signs off while its stored buddy list is still being
        read (13,07), the list arriving afterwards is ignored: the gone
        session does not come back as a watcher of its buddies."""
        server, store, _ = make_server(None, {"Alice": "secret12"})
        pending: list[defer.Deferred[FeedbagSummary]] = []

        def get_feedbag_summary(name: str) -> defer.Deferred[FeedbagSummary]:
            d: defer.Deferred[FeedbagSummary] = defer.Deferred()
            pending.append(d)
            return d

        # A sign-on reads the summary kept with the list.
        self.patch(store, "get_feedbag_summary", get_feedbag_summary)
        alice = signed_on_bos(server, "Alice")
        alice.send_snac(0x13, 0x07)
        alice.lose()
        self.assertEqual(server.registry.users, {})
        items = tuple(
            FeedbagItem(name=f"buddy{i}", group_id=1, item_id=i + 1, class_id=0, attributes=b"")
            for i in range(100)
        )
        # The privacy settings read at sign-on, then the 13,07's read.
        self.assertEqual(len(pending), 2)
        for d in pending:
            d.callback(summary_of(Feedbag(items=items, last_modified=0)))
        self.assertEqual(server.registry.watchers, {})


# -- 3. the sign-on rate allowance ----------------------------------------------------------


class SignonAllowanceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server, self.store, self.clock = make_server(
            None, {"Alice": "secret12", "Mallory": "secret12"}
        )
        self.victim = signed_on_bos(self.server, "Alice")
        client_ready(self.victim)
        self.victim.raw()

    def client_error(self) -> bytes:
        return ClientError(b"\0" * 8, 1, "Alice", 1, b"spam").pack()

    def test_signon_loop_of_client_errors_is_rate_limited(self) -> None:
        """Signing on and off over and over, sending 64 client errors (04,0B)
        each time before client-ready, gets the sender rate limited: the
        victim receives only a fraction of them."""
        rounds = 30
        for _ in range(rounds):
            mallory = signed_on_bos(self.server, "Mallory")
            for _ in range(64):
                mallory.send_snac(FoodGroup.ICBM, ICBM.CLIENT_ERROR, self.client_error())
            mallory.lose()
        relayed = kinds(self.victim.snacs()).count((FoodGroup.ICBM, ICBM.CLIENT_ERROR))
        self.assertLess(relayed, 2 * 64)
        limiter = self.server.rate_limits.limiter("mallory")
        self.assertTrue(limiter.snapshot(1, self.server.rate_limits.now_ms()).dropping)

    def test_relayed_snacs_count_before_client_ready(self) -> None:
        """Client errors, typing events, warnings and info lookups count
        against the user's rate limit even before client-ready, while the
        session's own sign-on queries (01,06) still do not."""
        from aimserver.services import ratelimit

        bodies = {
            (0x04, 0x0B): self.client_error(),
            (0x04, 0x14): ClientEvent(b"\0" * 8, 1, "Alice", 2).pack(),
            (0x04, 0x08): struct.pack("!H", 0) + name08("Alice"),
            (0x02, 0x05): struct.pack("!H", 1) + name08("Alice"),
            (0x02, 0x15): struct.pack("!I", 1) + name08("Alice"),
        }
        for (family, subtype), body in bodies.items():
            name = f"Mallory{family:02x}{subtype:02x}"
            result_of(self.store.create_account(name, "secret12"))
            wire = signed_on_bos(self.server, name)
            class_id = ratelimit.class_of(family, subtype)
            rate_class = ratelimit.DEFAULT_RATE_CLASSES[class_id - 1]
            for _ in range(2):
                wire.send_snac(family, subtype, body)
            limiter = self.server.rate_limits.limiter(name.lower())
            level = limiter.snapshot(class_id, self.server.rate_limits.now_ms()).current
            self.assertLess(level, rate_class.max, f"{family:02x},{subtype:02x} not counted")
        result_of(self.store.create_account("Quiet", "secret12"))
        quiet = signed_on_bos(self.server, "Quiet")
        for _ in range(2):
            quiet.send_snac(FoodGroup.OSERVICE, OService.RATE_PARAMS_QUERY)
        limiter = self.server.rate_limits.limiter("quiet")
        self.assertEqual(
            limiter.snapshot(1, self.server.rate_limits.now_ms()).current,
            ratelimit.DEFAULT_RATE_CLASSES[0].max,
        )


# -- 4. offline messages across a displacing login -------------------------------------------


class DisplacedOfflineTests(SynchronousTestCase):
    def world(self) -> tuple[ServiceWorld, QueuedStore]:
        clock = Clock()
        clock.advance(START)
        store = QueuedStore(clock)
        return ServiceWorld(store=store, clock=clock), store

    def test_message_stored_between_sessions_reaches_displacing_session(self) -> None:
        """When a legacy login displaces the user's session and a message is
        stored for them before the new session is ready, the new session gets
        it at client-ready, with a database that answers in order (as the
        one-thread SQLite store does)."""
        w, store = self.world()
        alice, _ = w.sign_on("Alice")
        w.sign_on("Bob", MULTICONN_LEGACY)
        bob2, bob2_conn = w.sign_on("Bob", MULTICONN_LEGACY, online=False)
        store.queueing = True
        w.send_im(alice, "Bob", b"stored-while-between", extra=[STORE])
        w.come_online(bob2)
        store.flush()
        self.assertEqual([m.text for m in bob2_conn.messages()], [b"stored-while-between"])
        self.assertEqual(result_of(MemoryUserStore.get_offline_messages(store, "Bob")), [])

    def test_message_whose_write_lands_after_client_ready_is_delivered(self) -> None:
        """A message stored while the user was between sessions reaches the new
        session even when the database confirms the write only after it
        answered the new session's read (a store that answers out of order)."""
        w, store = self.world()
        alice, _ = w.sign_on("Alice")
        w.sign_on("Bob", MULTICONN_LEGACY)
        bob2, bob2_conn = w.sign_on("Bob", MULTICONN_LEGACY, online=False)
        store.queueing = True
        w.send_im(alice, "Bob", b"stored-while-between", extra=[STORE])
        w.come_online(bob2)
        store.answer("read")
        store.answer("write")
        store.flush()
        self.assertEqual([m.text for m in bob2_conn.messages()], [b"stored-while-between"])


# -- 5. live IMs during an offline hand-over --------------------------------------------------


class HandoverOrderTests(SynchronousTestCase):
    def test_live_im_waits_for_stored_messages(self) -> None:
        """An IM that arrives while the recipient's stored messages are still
        being read is delivered after them, so the conversation stays in order."""
        clock = Clock()
        clock.advance(START)
        store = HoldingStore(clock)
        w = ServiceWorld(store=store, clock=clock)
        alice, _ = w.sign_on("Alice")
        w.account("Bob")
        w.send_im(alice, "Bob", b"one", extra=[STORE])
        w.send_im(alice, "Bob", b"two", extra=[STORE])
        store.hold = True
        _, bob_conn = w.sign_on("Bob")
        w.send_im(alice, "Bob", b"three")
        w.send_im(alice, "Bob", b"four")
        self.assertEqual(bob_conn.messages(), [])
        store.release()
        self.assertEqual([m.text for m in bob_conn.messages()], [b"one", b"two", b"three", b"four"])


# -- 6. retransmissions -----------------------------------------------------------------------


def send_body(w: ServiceWorld, session: Any, body: bytes) -> Any:
    """A 04,06 with this exact body, as the dispatcher would call it."""
    return w.call(
        w.icbm.channel_msg_to_host, session, FoodGroup.ICBM, ICBM.CHANNEL_MSG_TO_HOST, body
    )


class RetransmissionTests(SynchronousTestCase):
    def test_retransmitted_offline_im_is_stored_once(self) -> None:
        """A store-if-offline IM sent twice with the same cookie (a client
        retrying) is kept once, and the recipient reads it once."""
        w = ServiceWorld()
        alice, _ = w.sign_on("Alice")
        w.account("Bob")
        body = im_body("Bob", b"once", cookie=b"C00KIE01", extra=[STORE])
        for _ in range(2):
            w.call(
                w.icbm.channel_msg_to_host, alice, FoodGroup.ICBM, ICBM.CHANNEL_MSG_TO_HOST, body
            )
        self.assertEqual(len(result_of(w.store.get_offline_messages("Bob"))), 1)
        _, bob_conn = w.sign_on("Bob")
        self.assertEqual([m.text for m in bob_conn.messages()], [b"once"])

    def test_failed_first_attempt_does_not_swallow_the_retry(self) -> None:
        """An IM refused because the recipient was offline (no store flag) is
        not remembered: the same message retried once they are online is
        delivered."""
        w = ServiceWorld()
        alice, _ = w.sign_on("Alice")
        w.account("Bob")
        body = im_body("Bob", b"retry", cookie=b"C00KIE02")
        with self.assertRaises(SnacError) as caught:
            w.call(
                w.icbm.channel_msg_to_host, alice, FoodGroup.ICBM, ICBM.CHANNEL_MSG_TO_HOST, body
            )
        self.assertEqual(caught.exception.code, ERROR_NOT_LOGGED_ON)
        _, bob_conn = w.sign_on("Bob")
        send_body(w, alice, body)
        self.assertEqual([m.text for m in bob_conn.messages()], [b"retry"])


# -- 7. rendezvous across several sessions ----------------------------------------------------


class RendezvousTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.w = ServiceWorld()

    def rdv(self, session: Any, kind: int, to: str, ack: bool = False) -> Any:
        return self.w.call(
            self.w.icbm.channel_msg_to_host,
            session,
            FoodGroup.ICBM,
            ICBM.CHANNEL_MSG_TO_HOST,
            rendezvous_body(kind, to, ack=ack),
        )

    def test_cancel_before_answer_goes_where_the_proposal_went(self) -> None:
        """The proposer cancelling before anyone answered reaches the sessions
        that were offered the proposal, not other active sessions that never
        saw it."""
        w = self.w
        alice, _ = w.sign_on("Alice")
        _, plain = w.sign_on("Bob")  # active, but cannot take files
        capable = []
        for _ in range(2):
            session, conn = w.sign_on("Bob")
            w.set_info(session, Tlv(0x0005, CAP_FILE))
            w.set_idle(session, 600)
            capable.append(conn)
        for conn in (plain, *capable):
            conn.clear()
        self.rdv(alice, Rendezvous.PROPOSE, "Bob")
        self.rdv(alice, Rendezvous.CANCEL, "Bob")
        self.assertEqual(rendezvous_received(plain), [])
        for conn in capable:
            self.assertEqual(
                [r.kind for r in rendezvous_received(conn)],
                [Rendezvous.PROPOSE, Rendezvous.CANCEL],
            )

    def test_accept_cancels_the_offer_on_other_sessions(self) -> None:
        """When one session accepts, the other sessions that were offered the
        proposal get a cancel from the proposer with reason 3 ("accepted
        elsewhere"); the proposer gets the accept."""
        w = self.w
        alice, alice_conn = w.sign_on("Alice")
        bobs = []
        for _ in range(2):
            session, conn = w.sign_on("Bob")
            w.set_info(session, Tlv(0x0005, CAP_FILE))
            bobs.append((session, conn))
        for _, conn in bobs:
            conn.clear()
        alice_conn.clear()
        self.rdv(alice, Rendezvous.PROPOSE, "Bob")
        (accepter, accepter_conn), (_, other_conn) = bobs
        self.rdv(accepter, Rendezvous.ACCEPT, "Alice")
        self.assertEqual([r.kind for r in rendezvous_received(alice_conn)], [Rendezvous.ACCEPT])
        self.assertEqual([r.kind for r in rendezvous_received(accepter_conn)], [Rendezvous.PROPOSE])
        offered = rendezvous_received(other_conn)
        self.assertEqual([r.kind for r in offered], [Rendezvous.PROPOSE, Rendezvous.CANCEL])
        cancel = offered[1]
        self.assertEqual(cancel.cookie, b"RDVCOOK1")
        self.assertEqual(cancel.tlvs.get_u16(Rendezvous.TAG_CANCEL_REASON), 3)
        (message,) = [m for m in other_conn.messages() if m.channel == 2][1:]
        self.assertEqual(message.sender.screen_name, "Alice")

    def test_reply_to_a_gone_proposer_is_refused(self) -> None:
        """An answer to a proposal whose proposing session has signed off is
        refused with "not logged on" instead of being acknowledged, and no
        other session of the proposer gets it."""
        w = self.w
        alice1, _ = w.sign_on("Alice")
        _, alice2_conn = w.sign_on("Alice")
        bob, _ = w.sign_on("Bob")
        w.set_info(bob, Tlv(0x0005, CAP_FILE))
        self.rdv(alice1, Rendezvous.PROPOSE, "Bob")
        w.sign_off(alice1)
        alice2_conn.clear()
        with self.assertRaises(SnacError) as caught:
            self.rdv(bob, Rendezvous.ACCEPT, "Alice", ack=True)
        self.assertEqual(caught.exception.code, ERROR_NOT_LOGGED_ON)
        self.assertEqual(rendezvous_received(alice2_conn), [])


# -- 8. reading a warning level changes nothing ------------------------------------------------


class WarningDecayTests(SynchronousTestCase):
    def test_refused_warning_does_not_hide_a_decay_step(self) -> None:
        """A warning refused at the moment a decay step is due does not eat
        that step: the next sweep still tells the user's watchers (03,0B) and
        the user's sessions (01,0F) about the drop, and stores the new level."""
        w = ServiceWorld()
        alice, alice_conn = w.sign_on("Alice")
        bob, bob_conn = w.sign_on("Bob", buddies=["Alice"])
        carol, _ = w.sign_on("Carol")
        w.send_im(alice, "Bob")
        w.call(w.warnings.evil_request, bob, 4, 8, struct.pack("!H", 0) + name08("Alice"))
        self.assertEqual(w.stored_account("Alice").warning_level, 100)
        bob_conn.clear()
        alice_conn.clear()
        w.clock.advance(301)
        with self.assertRaises(SnacError) as caught:
            w.call(w.warnings.evil_request, carol, 4, 8, struct.pack("!H", 0) + name08("Alice"))
        self.assertEqual(caught.exception.code, ERROR_REQUEST_DENIED)
        w.warnings.sweep()
        self.assertEqual([i.warning_level for i in bob_conn.arrivals()], [50])
        self.assertEqual(len(alice_conn.snacs(FoodGroup.OSERVICE, OService.USER_INFO_UPDATE)), 1)
        self.assertEqual(w.stored_account("Alice").warning_level, 50)


# -- 9. invisible users and lookups ----------------------------------------------------------


class InvisibleLookupTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.w = ServiceWorld()
        self.alice, _ = self.w.sign_on("Alice")
        self.bob, _ = self.w.sign_on("Bob", buddies=["Alice"])
        self.w.call(
            self.w.oservice.set_user_info_fields,
            self.alice,
            FoodGroup.OSERVICE,
            0x1E,
            TlvList([Tlv.u32(0x0006, 0x0100)]).pack_list(),
        )

    def lookups(self, session: Any, name: str) -> list[tuple[Any, int, bytes]]:
        locate = self.w.locate
        return [
            (locate.user_info_query, Locate.USER_INFO_QUERY, struct.pack("!H", 1) + name08(name)),
            (locate.user_info_query2, Locate.USER_INFO_QUERY2, struct.pack("!I", 1) + name08(name)),
        ]

    def test_invisible_user_looks_offline_to_others(self) -> None:
        """Someone whose every session is invisible looks offline to info
        lookups (02,05 and 02,15): "not logged on"."""
        for handler, subtype, body in self.lookups(self.bob, "Alice"):
            with self.assertRaises(SnacError) as caught:
                self.w.call(handler, self.bob, FoodGroup.LOCATE, subtype, body)
            self.assertEqual(caught.exception.code, ERROR_NOT_LOGGED_ON)

    def test_invisible_user_can_look_up_themselves(self) -> None:
        """An invisible user still gets their own info."""
        for handler, subtype, body in self.lookups(self.alice, "Alice"):
            (reply,) = self.w.call(handler, self.alice, FoodGroup.LOCATE, subtype, body)
            self.assertEqual(reply.subtype, Locate.USER_INFO_REPLY)
            info, _ = decode_user_info_reply(reply.body)
            self.assertEqual(info.screen_name, "Alice")


# -- 10. a closing connection is no delivery target ---------------------------------------------


class ClosingConnectionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = HoldingStore(self.clock)
        self.server = server_over(self.store, self.clock, "Alice", "Bob")
        self.alice = signed_on_bos(self.server, "Alice")
        client_ready(self.alice)
        self.alice.raw()

    def store_for_bob(self, text: bytes) -> None:
        self.alice.send_snac(
            FoodGroup.ICBM, ICBM.CHANNEL_MSG_TO_HOST, im_body("Bob", text, extra=[STORE])
        )
        self.assertEqual(self.alice.snacs(), [])

    def offline_count(self) -> int:
        return len(result_of(MemoryUserStore.get_offline_messages(self.store, "Bob")))

    def test_offline_messages_are_not_handed_to_a_closing_connection(self) -> None:
        """Stored messages are not handed to (and deleted for) a connection the
        server is already closing; the user's next session gets them."""
        self.store_for_bob(b"kept")
        bob = signed_on_bos(self.server, "Bob")
        self.store.hold = True
        client_ready(bob)
        bob.raw()
        bob.proto.disconnect(0x0001)
        self.store.release()
        self.assertEqual(self.offline_count(), 1)
        bob.lose()
        self.store.hold = False
        again = signed_on_bos(self.server, "Bob")
        client_ready(again)
        self.assertEqual(im_texts(again), [b"kept"])
        self.assertEqual(self.offline_count(), 0)

    def test_im_to_a_closing_connection_is_stored(self) -> None:
        """A store-if-offline IM to a user whose only connection is closing is
        kept for the next session rather than written to the closing one."""
        bob = signed_on_bos(self.server, "Bob")
        client_ready(bob)
        bob.raw()
        bob.proto.disconnect(0x0001)
        self.store_for_bob(b"later")
        self.assertEqual(self.offline_count(), 1)
        bob.lose()
        again = signed_on_bos(self.server, "Bob")
        client_ready(again)
        self.assertEqual(im_texts(again), [b"later"])


# -- 12. instance ids already in use ------------------------------------------------------------


class InstanceInUseTests(SynchronousTestCase):
    def test_registry_refuses_an_instance_id_in_use(self) -> None:
        """Registering a session under an instance id a live session of the
        same user already has is refused, and the live session is kept."""
        w = ServiceWorld()
        account = w.account("Alice")
        registry = UserRegistry()
        first = FakeConnection("first")
        session, _ = registry.add_instance(
            account,
            first,
            instance_id=7,
            multiconn_flags=MULTICONN_MULTI,
            client_id="c",
            ip="192.0.2.1",
            now=START,
        )
        for flags in (MULTICONN_MULTI, MULTICONN_LEGACY):
            with self.assertRaises(registry_module.InstanceInUse):
                registry.add_instance(
                    account,
                    FakeConnection("second"),
                    instance_id=7,
                    multiconn_flags=flags,
                    client_id="c",
                    ip="192.0.2.2",
                    now=START,
                )
        self.assertIs(registry.get("Alice").instances[7], session)
        self.assertFalse(session.closed)
        self.assertEqual(first.disconnects, [])

    def test_cookie_for_an_instance_in_use_is_refused(self) -> None:
        """A BOS cookie naming an instance id that a live session of the same
        user already has (one issued before a restart) is refused with a
        channel-4 close, and the live session carries on untouched."""
        server, _, _ = make_server(None, {"Alice": "secret12"})

        def cookie() -> bytes:
            return server.cookies.issue(
                screen_name="Alice",
                instance_id=42,
                multiconn_flags=MULTICONN_MULTI,
                service=1,
                client_id="test client",
            )

        live = Wire(server.bos_factory)
        live.signon(Tlv(0x06, cookie()))
        client_ready(live)
        live.raw()
        session = server.registry.get("Alice").instances[42]
        intruder = Wire(server.bos_factory)
        intruder.raw()
        intruder.signon(Tlv(0x06, cookie()))
        frames = intruder.frames()
        self.assertEqual([f.channel for f in frames], [Channel.SIGNOFF])
        self.assertTrue(intruder.closing)
        self.assertIs(server.registry.get("Alice").instances[42], session)
        self.assertIs(session.connection, live.proto)
        self.assertFalse(session.closed)
        self.assertFalse(live.closing)
        self.assertEqual(live.raw(), b"")
        intruder.lose()
        self.assertIs(server.registry.get("Alice").instances[42], session)
