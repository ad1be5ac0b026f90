"""MULTISESSION.md §19 with the clock in the test's hand: rate state is per
user, shared by all of the user's sessions, and kept when every session has
signed off, so signing off and on again buys no fresh allowance.

This is where the arithmetic lives that the end-to-end test
(``tests.test_e2e_multisession.RateLimitTests``) relies on: how many rapid
IMs a lone user may send, how long a pause clears a limited user. Everything
runs on a ``task.Clock``: ``RateLimits`` (``aimserver/services/session.py``) over
``RateLimiter`` (``aimserver/services/ratelimit.py``) directly, then the BOS protocol
on ``StringTransport``s with sessions that sign off and a new one that signs
on.
"""

from __future__ import annotations

import struct

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services import ratelimit
from aimserver.services import session as session_service
from aimserver.services.ratelimit import RateState
from aimserver.services.session import RateLimits
from aimserver.wire.ratelimit import RateChange
from aimserver.wire.snac import SnacHeader
from tests.fakes import Wire, make_server, signed_on_bos
from tests.fakes_services import decode_message_to_client, im_body

IM_CLASS = ratelimit.class_of(0x04, 0x06)
CLASS = ratelimit.DEFAULT_RATE_CLASSES[IM_CLASS - 1]
#: A lone user's IMs sent back to back: the 9th is the first one limited.
LONE_SESSION_RAPID_IMS = 9
#: A pause after which a limited user's next IM clears the limit, from any
#: level the user can be at while still connected (proven below).
RECOVERY_PAUSE = 60.0


def im_results(limits: RateLimits, key: str, count: int, clock: Clock, gap: float = 0.0) -> list:
    """``count`` IMs of user ``key``, ``gap`` seconds apart."""
    results = []
    for _ in range(count):
        results.append(limits.limiter(key).check(IM_CLASS, limits.now_ms()))
        clock.advance(gap)
    return results


def rate_change(body: bytes) -> tuple[int, int, int, bool]:
    """(code, class ID, current level, dropping) of an extended 01,0A body."""
    code, class_id = struct.unpack_from("!HH", body)
    (current,) = struct.unpack_from("!I", body, 4 + 5 * 4)
    return code, class_id, current, bool(body[-1])


def rate_record(body: bytes, class_id: int) -> tuple[int, bool]:
    """(current level, dropping) of one class in an extended 01,07 body."""
    (count,) = struct.unpack_from("!H", body)
    for index in range(count):
        offset = 2 + index * 35
        if struct.unpack_from("!H", body, offset)[0] == class_id:
            (current,) = struct.unpack_from("!I", body, offset + 2 + 5 * 4)
            return current, bool(body[offset + 34])
    raise AssertionError(f"no class {class_id} in 01,07")


class RateArithmeticTests(SynchronousTestCase):
    """``RateLimits`` alone: the figures the end-to-end test builds on."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.limits = RateLimits(self.clock)

    def test_a_lone_user_is_limited_at_the_ninth_rapid_im(self) -> None:
        """IMs at the pace of a loopback round trip (0 to 20 ms apart) count
        as rapid: the 5th brings a warning, the 9th is the first limited (and
        dropped), for every such pace."""
        for gap_ms in (0, 1, 10, 20):
            limits = RateLimits(self.clock)
            results = im_results(limits, "alice", LONE_SESSION_RAPID_IMS, self.clock, gap_ms / 1000)
            self.assertEqual(
                [r.allowed for r in results],
                [True] * (LONE_SESSION_RAPID_IMS - 1) + [False],
                f"{gap_ms} ms apart",
            )
            self.assertEqual(
                [r.changed_to for r in results],
                [None] * 4 + [RateChange.WARNING] + [None] * 3 + [RateChange.LIMITED],
                f"{gap_ms} ms apart",
            )

    def test_sessions_of_a_user_draw_on_one_allowance(self) -> None:
        """Every session asks for its user's limiter: one per user. Six IMs
        from one session and the second session's third IM is limited;
        another user is untouched."""
        self.assertIs(self.limits.limiter("alice"), self.limits.limiter("alice"))
        self.assertIsNot(self.limits.limiter("alice"), self.limits.limiter("bob"))
        first = im_results(self.limits, "alice", 6, self.clock)
        second = im_results(self.limits, "alice", 3, self.clock)
        self.assertTrue(all(r.allowed for r in first + second[:2]))
        self.assertEqual(second[2].changed_to, RateChange.LIMITED)
        self.assertTrue(im_results(self.limits, "bob", 1, self.clock)[0].allowed)

    def test_recovery_takes_one_pause_of_at_least_the_threshold(self) -> None:
        """A limited user clears with the first IM after a pause of
        ``window * clear - (window - 1) * current`` ms, not 1 ms sooner; from
        the lowest level a connected user can have (just above disconnect)
        that is under ``RECOVERY_PAUSE``."""
        for key in ("short", "enough"):
            im_results(self.limits, key, LONE_SESSION_RAPID_IMS + 1, self.clock)
        current = self.limits.limiter("short").snapshot(IM_CLASS, self.limits.now_ms()).current
        threshold = CLASS.window * CLASS.clear - (CLASS.window - 1) * current
        self.assertEqual((current, threshold), (3778, 30218))

        start = self.clock.seconds()
        self.clock.advance((threshold - 1) / 1000)
        short = self.limits.limiter("short").check(IM_CLASS, self.limits.now_ms())
        self.assertEqual((short.state, short.changed_to), (RateState.LIMITED, None))
        self.clock.advance(start + threshold / 1000 - self.clock.seconds())
        enough = self.limits.limiter("enough").check(IM_CLASS, self.limits.now_ms())
        self.assertEqual((enough.state, enough.changed_to), (RateState.CLEAR, RateChange.CLEARED))

        worst = CLASS.window * CLASS.clear - (CLASS.window - 1) * CLASS.disconnect
        self.assertLess(worst, RECOVERY_PAUSE * 1000)

    def test_limited_state_is_told_to_whoever_asks_next(self) -> None:
        """The live levels a new session's 01,07 is built from: the limited
        class is dropping; a user never seen (or limiting off) gets None,
        i.e. the fresh default reply."""
        im_results(self.limits, "alice", LONE_SESSION_RAPID_IMS, self.clock)
        snapshots = self.limits.snapshots("alice")
        assert snapshots is not None
        self.assertEqual(snapshots[IM_CLASS].current, 3977)
        self.assertTrue(snapshots[IM_CLASS].dropping)
        self.assertIsNone(self.limits.snapshots("carol"))
        self.assertIsNone(RateLimits(self.clock, enabled=False).snapshots("alice"))

    def test_state_is_kept_for_the_most_recent_users(self) -> None:
        """State outlives sessions, for the ``MAX_REMEMBERED_RATE_STATES``
        most recently active users: a limited user who comes back while
        within that bound is still limited; one pushed out starts fresh."""
        self.patch(session_service, "MAX_REMEMBERED_RATE_STATES", 2)
        im_results(self.limits, "alice", LONE_SESSION_RAPID_IMS, self.clock)
        im_results(self.limits, "bob", 1, self.clock)
        self.assertEqual(self.limits.limiter("alice").state(IM_CLASS), RateState.LIMITED)
        im_results(self.limits, "carol", 1, self.clock)
        self.assertEqual(self.limits.limiter("alice").state(IM_CLASS), RateState.LIMITED)
        im_results(self.limits, "dave", 1, self.clock)
        im_results(self.limits, "erin", 1, self.clock)
        self.assertEqual(self.limits.limiter("alice").state(IM_CLASS), RateState.CLEAR)


class ReloginTests(SynchronousTestCase):
    """The BOS protocol over ``StringTransport``s, on the server's ``Clock``."""

    def setUp(self) -> None:
        self.server, _, self.clock = make_server(accounts={"Alice": "secret", "Bob": "secret"})
        self.bob = self.session("Bob")

    def session(self, name: str) -> Wire:
        """Signed on and ready, as BosClient does it: OService 3 (extended
        rate records), rate notices for every class (01,08), client ready."""
        wire = signed_on_bos(self.server, name)
        wire.send_snac(0x01, 0x17, struct.pack("!HH", 0x01, 3), request_id=1)
        wire.send_snac(0x01, 0x08, struct.pack("!5H", 1, 2, 3, 4, 5), request_id=2)
        wire.send_snac(0x01, 0x02, b"", request_id=3)
        wire.raw()
        return wire

    def im(self, wire: Wire, text: bytes) -> list[tuple[SnacHeader, bytes]]:
        """An IM to Bob asking for a host ack; what the sender got back."""
        wire.send_snac(0x04, 0x06, im_body("Bob", text, ack=True), request_id=50)
        return wire.snacs()

    def kinds(self, snacs: list[tuple[SnacHeader, bytes]]) -> list[tuple[int, int]]:
        return [(h.family, h.subtype) for h, _ in snacs]

    def bob_got(self) -> list[bytes]:
        return [
            decode_message_to_client(body).text
            for header, body in self.bob.snacs()
            if (header.family, header.subtype) == (0x04, 0x07)
        ]

    def test_new_session_after_every_sign_off_inherits_the_limit(self) -> None:
        """Alice's two sessions share one allowance (the second is limited at
        its 3rd IM, with 01,0A code 3 for the IM class); both sign off; her
        next session is told the live, limited level in 01,07, its IM is
        dropped, and after a pause that session gets the 01,0A code 4
        (cleared) a fresh state could never send, and its IM goes through."""
        first, second = self.session("Alice"), self.session("Alice")
        replies = [self.im(first, b"one %d" % n) for n in range(6)]
        self.assertTrue(all((0x04, 0x0C) in self.kinds(r) for r in replies))
        self.assertEqual(self.kinds(replies[4]), [(0x01, 0x0A), (0x04, 0x0C)])
        self.assertEqual(rate_change(replies[4][0][1])[:2], (RateChange.WARNING, IM_CLASS))
        for n in range(2):
            self.assertEqual(self.kinds(self.im(second, b"two %d" % n)), [(0x04, 0x0C)])
        (limited,) = self.im(second, b"two 2")
        self.assertEqual((limited[0].family, limited[0].subtype), (0x01, 0x0A))
        self.assertEqual(rate_change(limited[1]), (RateChange.LIMITED, IM_CLASS, 3977, True))
        self.assertEqual(len(self.bob_got()), 8)

        first.lose()
        second.lose()
        self.assertIsNone(self.server.registry.get("Alice"))

        third = self.session("Alice")
        third.send_snac(0x01, 0x06, b"", request_id=4)
        (header, rates), *_ = third.snacs()
        self.assertEqual((header.family, header.subtype), (0x01, 0x07))
        self.assertEqual(rate_record(rates, IM_CLASS), (3977, True))
        self.assertEqual(self.im(third, b"dropped"), [])
        self.assertEqual(self.bob_got(), [])

        self.clock.advance(RECOVERY_PAUSE)
        cleared, ack = self.im(third, b"after the pause")
        self.assertEqual((cleared[0].family, cleared[0].subtype), (0x01, 0x0A))
        self.assertEqual(rate_change(cleared[1]), (RateChange.CLEARED, IM_CLASS, CLASS.max, False))
        self.assertEqual((ack[0].family, ack[0].subtype), (0x04, 0x0C))
        self.assertEqual(self.bob_got(), [b"after the pause"])
