"""The BOS connection (``aimserver.protocols.bos``): the cookie check, session
registration, the first SNACs of the sign-on sequence, unknown SNACs and rate
limits (LOGIN.md §7–§9, SIGNON.md §1, ERRORS.md §2–§3). Unit tests on
``StringTransport`` with a ``task.Clock``, plus a few clients talking to the
real protocols in memory through ``twisted.test.iosim``.
"""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from aimserver.config import load_config
from aimserver.protocols.flap import MAX_UNKNOWN_LOGGED
from aimserver.registry import SIGNON_ALLOWANCE
from aimserver.services import ratelimit
from aimserver.wire import ratelimit as rate_wire
from aimserver.wire.flap import Channel, SignonPayload
from aimserver.wire.icbm import ChannelMessageToHost
from aimserver.wire.reader import Reader
from aimserver.wire.snac import SnacHeader, pack_snac
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import UserInfo
from tests.client import FlapClient, bucp_digest, parse_im
from tests.fakes import (
    PEER,
    Wire,
    issue_cookie,
    make_server,
    result_of,
    signed_on_bos,
    snac_frame,
)

ACCOUNTS = {"Alice": "secret", "Bob Smith": "hunter2"}
#: 01,03 on the BOS connection (SIGNON.md §2): OService, Locate, Buddy, ICBM,
#: PD, UserLookup, Stats, Feedbag, as u16s in this order. A literal, so that
#: adding a family the server does not handle (or dropping one) is seen.
HOST_ONLINE_BODY = bytes.fromhex("0001 0002 0003 0004 0009 000a 000b 0013")
CLASS_3 = ratelimit.DEFAULT_RATE_CLASSES[2]


def im_to(recipient: str, text: bytes = b"hi") -> bytes:
    """A 04,06 body: a plain channel-1 IM."""
    fragments = b"\x05\x01\x00\x01\x01" + b"\x01\x01" + struct.pack("!H", len(text) + 4)
    fragments += b"\x00\x00\x00\x00" + text
    return ChannelMessageToHost(b"cookie00", 1, recipient, TlvList([Tlv(0x02, fragments)])).pack()


def versions(*pairs: tuple[int, int]) -> bytes:
    return b"".join(struct.pack("!HH", f, v) for f, v in pairs)


def expected_rate_levels(count: int, rate_class: rate_wire.RateClass) -> list[int]:
    """The moving average after each of ``count`` SNACs sent at the same
    instant, by the formula of ERRORS.md §3.1 (the first SNAC counts as
    arriving after a long pause)."""
    current = rate_class.max
    levels = []
    for i in range(count):
        delta = rate_class.max if i == 0 else 0
        current = min(
            (current * (rate_class.window - 1) + delta) // rate_class.window, rate_class.max
        )
        levels.append(current)
    return levels


class BosTestCase(SynchronousTestCase):
    config: Any = None

    def setUp(self) -> None:
        self.server, self.store, self.clock = make_server(self.config, ACCOUNTS)

    def connect(self) -> Wire:
        wire = Wire(self.server.bos_factory)
        wire.raw()
        return wire

    def assert_refused(self, wire: Wire) -> None:
        """Channel 4 then close, and nobody signed on."""
        self.assertEqual([f.channel for f in wire.frames()], [Channel.SIGNOFF])
        self.assertTrue(wire.closing)
        self.assertEqual(list(self.server.registry), [])


class CookieTests(BosTestCase):
    def test_valid_cookie_gets_host_online(self) -> None:
        """A valid cookie is answered with 01,03 listing exactly the families
        this connection serves, under a server-initiated request ID, and the
        session is registered."""
        cookie = self.server.cookies.issue(
            screen_name="Alice", instance_id=4242, multiconn_flags=0x01, service=0x0001
        )
        wire = self.connect()
        wire.signon(Tlv(0x06, cookie), Tlv(0x4A, b"\x01"))
        (online,) = wire.frames()
        header, _ = SnacHeader.unpack(online.payload)
        self.assertEqual((header.family, header.subtype, header.flags), (0x01, 0x03, 0))
        self.assertTrue(header.request_id & 0x80000000)
        self.assertEqual(online.payload, pack_snac(0x01, 0x03, HOST_ONLINE_BODY, header.request_id))
        user = self.server.registry.get("alice")
        self.assertIsNotNone(user)
        self.assertEqual(user.screen_name, "Alice")
        self.assertEqual(list(user.instances), [4242])
        self.assertFalse(user.instances[4242].online)
        self.assertFalse(wire.closing)

    def test_host_online_lists_the_families_the_server_handles(self) -> None:
        """01,03 is exactly the eight families BOS handles, as u16s, in order."""
        fresh = self.connect()
        fresh.signon(Tlv(0x06, issue_cookie(self.server, "Bob Smith")))
        _, body = fresh.only_snac()
        reader = Reader(body, "01,03")
        families = []
        while not reader.at_end():
            families.append(reader.u16())
        self.assertEqual(families, [0x0001, 0x0002, 0x0003, 0x0004, 0x0009, 0x000A, 0x000B, 0x0013])
        self.assertEqual(body, HOST_ONLINE_BODY)

    def test_tampered_cookie_is_refused(self) -> None:
        """A cookie with any byte flipped gets channel 4, close, no session."""
        cookie = issue_cookie(self.server, "Alice")
        for index in (0, 5, 40, 223, 224, 255):
            tampered = bytearray(cookie)
            tampered[index] ^= 0x01
            wire = self.connect()
            wire.signon(Tlv(0x06, bytes(tampered)))
            self.assert_refused(wire)

    def test_truncated_cookie_is_refused(self) -> None:
        """A cookie of the wrong length is refused."""
        cookie = issue_cookie(self.server, "Alice")
        for bad in (b"", cookie[:255], cookie + b"\x00"):
            wire = self.connect()
            wire.signon(Tlv(0x06, bad))
            self.assert_refused(wire)

    def test_expired_cookie_is_refused(self) -> None:
        """A cookie presented after auth.cookie_lifetime is refused."""
        cookie = issue_cookie(self.server, "Alice")
        self.clock.advance(self.server.config.auth.cookie_lifetime)
        wire = self.connect()
        wire.signon(Tlv(0x06, cookie))
        self.assert_refused(wire)

    def test_cookie_just_before_expiry_is_accepted(self) -> None:
        """A cookie presented just before its lifetime ends still works."""
        cookie = issue_cookie(self.server, "Alice")
        self.clock.advance(self.server.config.auth.cookie_lifetime - 0.5)
        wire = self.connect()
        wire.signon(Tlv(0x06, cookie))
        header, _ = wire.only_snac()
        self.assertEqual((header.family, header.subtype), (0x01, 0x03))

    def test_replayed_cookie_is_refused(self) -> None:
        """A cookie already used by one connection is refused on a second;
        the first session stays the only one."""
        cookie = issue_cookie(self.server, "Alice")
        first = self.connect()
        first.signon(Tlv(0x06, cookie))
        first.raw()
        second = self.connect()
        second.signon(Tlv(0x06, cookie))
        self.assertEqual([f.channel for f in second.frames()], [Channel.SIGNOFF])
        self.assertTrue(second.closing)
        self.assertFalse(first.closing)
        self.assertEqual(first.raw(), b"")
        (session,) = self.server.registry.get("Alice").instances.values()
        self.assertIs(session.connection, first.proto)

    def test_signon_without_cookie_is_refused(self) -> None:
        """A BOS sign-on frame without TLV 0x06 closes with channel 4."""
        wire = self.connect()
        wire.signon(Tlv(0x01, b"Alice"))
        self.assert_refused(wire)
        wire = self.connect()
        wire.signon()
        self.assert_refused(wire)

    def test_cookie_for_another_service_is_refused(self) -> None:
        """A cookie issued for chat (0x0E) does not open a BOS session."""
        wire = self.connect()
        wire.signon(Tlv(0x06, issue_cookie(self.server, "Alice", service=0x0E)))
        self.assert_refused(wire)

    def test_cookie_of_a_deleted_or_suspended_account_is_refused(self) -> None:
        """An account deleted or suspended between login and BOS sign-on is
        refused."""
        cookie = issue_cookie(self.server, "Alice")
        result_of(self.store.set_suspended("Alice", True))
        wire = self.connect()
        wire.signon(Tlv(0x06, cookie))
        self.assert_refused(wire)
        cookie = issue_cookie(self.server, "Bob Smith")
        result_of(self.store.delete_account("Bob Smith"))
        wire = self.connect()
        wire.signon(Tlv(0x06, cookie))
        self.assert_refused(wire)

    def test_snac_before_cookie_closes(self) -> None:
        """A SNAC sent before the sign-on frame closes, nobody signs on."""
        wire = self.connect()
        wire.send_snac(0x01, 0x06)
        self.assert_refused(wire)

    def test_unauthenticated_connection_times_out(self) -> None:
        """A BOS connection that never presents a cookie is closed after
        auth.login_timeout; a signed-on one is not."""
        signed_on = signed_on_bos(self.server, "Alice")
        idle = self.connect()
        self.clock.advance(self.server.config.auth.login_timeout)
        self.assertEqual([f.channel for f in idle.frames()], [Channel.SIGNOFF])
        self.assertTrue(idle.closing)
        self.assertEqual(signed_on.raw(), b"")
        self.assertFalse(signed_on.closing)

    def test_legacy_login_displaces_the_first(self) -> None:
        """A second sign-on of the same user from a legacy client (flags 0x00)
        disconnects the first with channel 4 TLV 0x0009 = 0x0001."""
        first = signed_on_bos(self.server, "Alice", flags=0x00)
        second = signed_on_bos(self.server, "Alice", flags=0x00)
        (notice,) = first.frames()
        self.assertEqual(notice.channel, Channel.SIGNOFF)
        self.assertEqual(notice.payload, Tlv.u16(0x0009, 0x0001).pack())
        self.assertTrue(first.closing)
        first.lose()
        (session,) = self.server.registry.get("Alice").instances.values()
        self.assertIs(session.connection, second.proto)

    def test_connection_lost_signs_off(self) -> None:
        """When the TCP connection goes, the session leaves the registry."""
        wire = signed_on_bos(self.server, "Alice")
        wire.lose()
        self.assertIsNone(self.server.registry.get("Alice"))


class SignonSequenceTests(BosTestCase):
    def test_client_versions_echo_only_served_families(self) -> None:
        """01,17 is answered 01,18 with the client's pairs for the families
        this connection serves, in the client's order; others are left out."""
        wire = signed_on_bos(self.server, "Alice")
        sent = versions(
            (0x01, 4),
            (0x02, 1),
            (0x05, 1),
            (0x03, 1),
            (0x04, 1),
            (0x0D, 1),
            (0x09, 1),
            (0x0B, 1),
            (0x13, 4),
            (0x17, 1),
            (0x0E, 1),
        )
        wire.send_snac(0x01, 0x17, sent, request_id=0x21)
        replies = [(h, b) for h, b in wire.snacs() if (h.family, h.subtype) == (0x01, 0x18)]
        self.assertEqual(len(replies), 1)
        header, body = replies[0]
        self.assertEqual(header.request_id, 0x21)
        self.assertEqual(
            body,
            versions((0x01, 4), (0x02, 1), (0x03, 1), (0x04, 1), (0x09, 1), (0x0B, 1), (0x13, 4)),
        )

    def rate_reply(self, oservice_version: int | None) -> bytes:
        wire = signed_on_bos(self.server, "Alice")
        if oservice_version is not None:
            wire.send_snac(0x01, 0x17, versions((0x01, oservice_version)), request_id=1)
            wire.raw()
        wire.send_snac(0x01, 0x06, request_id=0x22)
        header, body = wire.only_snac()
        self.assertEqual((header.family, header.subtype, header.request_id), (0x01, 0x07, 0x22))
        return body

    def test_rate_reply_has_extended_records_from_oservice_version_3(self) -> None:
        """01,06 is answered 01,07; each rate record has the 5 trailing bytes
        (last time, dropping) iff the client announced OService version 3 or
        later, and the short 30-byte records otherwise (also without 01,17)."""
        for version, extended in ((None, False), (1, False), (2, False), (3, True), (4, True)):
            body = self.rate_reply(version)
            self.assertEqual(
                body,
                rate_wire.pack_rate_params_reply(
                    ratelimit.DEFAULT_RATE_CLASSES,
                    ratelimit.DEFAULT_CLASS_MEMBERS,
                    extended=extended,
                ),
                version,
            )
            record = 35 if extended else 30
            reader = Reader(body, "01,07")
            self.assertEqual(reader.u16(), 5)
            for class_id in range(1, 6):
                start = reader.offset
                self.assertEqual(reader.u16(), class_id)
                reader.take(record - 2)
                self.assertEqual(reader.offset - start, record)
            self.assertEqual(reader.u16(), 1)  # members of class 1 follow

    def test_self_info(self) -> None:
        """01,0E is answered 01,0F with the user's own info block, in the
        display form of the screen name."""
        wire = signed_on_bos(self.server, "Bob Smith")
        wire.send_snac(0x01, 0x0E, request_id=0x23)
        header, body = wire.only_snac()
        self.assertEqual((header.family, header.subtype, header.request_id), (0x01, 0x0F, 0x23))
        self.assertEqual(UserInfo.unpack(body).screen_name, "Bob Smith")

    def test_client_ready_marks_the_session_online(self) -> None:
        """01,02 (client ready) makes the session online; before it, it is not."""
        wire = signed_on_bos(self.server, "Alice")
        (session,) = self.server.registry.get("Alice").instances.values()
        self.assertFalse(session.online)
        entries = struct.pack("!HHHH", 1, 3, 0x0110, 0x0629)
        wire.send_snac(0x01, 0x02, entries, request_id=0x24)
        self.assertTrue(session.online)
        self.assertFalse(wire.closing)

    def test_client_ready_with_short_entries(self) -> None:
        """aimpyfly's 01,02 with 4-byte entries works too."""
        wire = signed_on_bos(self.server, "Alice")
        wire.send_snac(0x01, 0x02, struct.pack("!HH", 1, 3), request_id=1)
        (session,) = self.server.registry.get("Alice").instances.values()
        self.assertTrue(session.online)

    def test_unknown_snac_gets_error_and_stays_connected(self) -> None:
        """An unknown subtype of a served family, or a family not served here,
        is answered ``family,01`` 0x0001 with the request ID; the session goes on."""
        wire = signed_on_bos(self.server, "Alice")
        wire.send_snac(0x01, 0x7E, b"", request_id=0x31)
        wire.send_snac(0x0D, 0x02, b"", request_id=0x32)
        self.assertEqual(
            [f.payload for f in wire.frames()],
            [pack_snac(0x01, 0x01, b"\x00\x01", 0x31), pack_snac(0x0D, 0x01, b"\x00\x01", 0x32)],
        )
        self.assertFalse(wire.closing)
        wire.send_snac(0x01, 0x0E, request_id=0x33)
        header, _ = wire.only_snac()
        self.assertEqual(header.subtype, 0x0F)

    def test_second_signon_frame_closes(self) -> None:
        """A second channel-1 frame on a signed-on BOS connection closes it."""
        wire = signed_on_bos(self.server, "Alice")
        wire.signon(Tlv(0x06, issue_cookie(self.server, "Alice")))
        self.assertEqual([f.channel for f in wire.frames()], [Channel.SIGNOFF])
        self.assertTrue(wire.closing)

    def test_handler_bug_is_answered_and_logged(self) -> None:
        """A service handler that fails with a bug answers 0x0005 and is
        logged; the session stays up."""

        def broken(session: object, request: SnacHeader, body: bytes) -> None:
            raise ZeroDivisionError("service bug")

        self.server.bos_factory.handlers[(0x01, 0x0E)] = broken
        wire = signed_on_bos(self.server, "Alice")
        wire.send_snac(0x01, 0x0E, request_id=0x40)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(wire.frames()[0].payload, pack_snac(0x01, 0x01, b"\x00\x05", 0x40))
        self.assertFalse(wire.closing)


class RateLimitTests(BosTestCase):
    def burst(self, wire: Wire, count: int) -> list[tuple[SnacHeader, bytes]]:
        """``count`` IMs to an offline user, at one instant, in one read."""
        wire.feed(
            b"".join(snac_frame(0x04, 0x06, im_to("Nobody"), request_id=i) for i in range(count))
        )
        return [SnacHeader.unpack(f.payload) for f in wire.frames() if f.channel == Channel.DATA]

    def test_burst_is_limited_then_disconnected(self) -> None:
        """A burst of 04,06 (class 3): each is answered until the moving
        average drops below the class's limit; then a 01,0A code 3 (limited)
        with the class-3 record arrives and further 04,06 are dropped
        unanswered; once below the disconnect level the connection closes."""
        levels = expected_rate_levels(40, CLASS_3)
        limited_at = next(i for i, c in enumerate(levels) if c < CLASS_3.limit)
        disconnect_at = next(i for i, c in enumerate(levels) if c < CLASS_3.disconnect)
        self.assertLess(limited_at + 1, disconnect_at)

        wire = signed_on_bos(self.server, "Alice")
        snacs = self.burst(wire, limited_at)
        self.assertEqual(
            [(h.family, h.subtype, h.request_id) for h, _ in snacs],
            [(0x04, 0x01, i) for i in range(limited_at)],
        )
        self.assertTrue(all(body == b"\x00\x04" for _, body in snacs))

        wire.send_snac(0x04, 0x06, im_to("Nobody"), request_id=1000)
        header, body = wire.only_snac()
        self.assertEqual((header.family, header.subtype), (0x01, 0x0A))
        self.assertTrue(header.request_id & 0x80000000)
        self.assertEqual(
            body,
            struct.pack(
                "!HHIIIIIII",
                3,
                3,
                CLASS_3.window,
                CLASS_3.clear,
                CLASS_3.alert,
                CLASS_3.limit,
                CLASS_3.disconnect,
                levels[limited_at],
                CLASS_3.max,
            ),
        )
        # Still limited: dropped without a word, the connection stays.
        for request_id in range(limited_at + 1, disconnect_at):
            wire.send_snac(0x04, 0x06, im_to("Nobody"), request_id=request_id)
        self.assertEqual(wire.raw(), b"")
        self.assertFalse(wire.closing)
        wire.send_snac(0x04, 0x06, im_to("Nobody"), request_id=disconnect_at)
        self.assertEqual([f.channel for f in wire.frames()], [Channel.SIGNOFF])
        self.assertTrue(wire.closing)
        wire.lose()
        self.assertIsNone(self.server.registry.get("Alice"))

    def test_limit_notice_has_extended_record_for_newer_clients(self) -> None:
        """A client that announced OService 3 gets the 01,0A record with the
        last-time and dropping fields (dropping = 1)."""
        wire = signed_on_bos(self.server, "Alice")
        wire.send_snac(0x01, 0x17, versions((0x01, 3)), request_id=1)
        wire.raw()
        levels = expected_rate_levels(40, CLASS_3)
        limited_at = next(i for i, c in enumerate(levels) if c < CLASS_3.limit)
        snacs = self.burst(wire, limited_at + 1)
        self.assertEqual(len(snacs), limited_at + 1)
        header, body = snacs[-1]
        self.assertEqual((header.family, header.subtype), (0x01, 0x0A))
        record = struct.pack(
            "!HHIIIIIII",
            3,
            3,
            CLASS_3.window,
            CLASS_3.clear,
            CLASS_3.alert,
            CLASS_3.limit,
            CLASS_3.disconnect,
            levels[limited_at],
            CLASS_3.max,
        )
        self.assertEqual(body, record + struct.pack("!IB", 0, 1))

    def test_subscribers_are_warned_before_the_limit(self) -> None:
        """A client subscribed to class 3 (01,08) gets a 01,0A code 2
        (warning) when the average drops below the alert level; the SNAC
        that caused it is still answered."""
        wire = signed_on_bos(self.server, "Alice")
        wire.send_snac(0x01, 0x08, struct.pack("!HHH", 1, 2, 3), request_id=1)
        self.assertEqual(wire.raw(), b"")
        levels = expected_rate_levels(40, CLASS_3)
        alert_at = next(i for i, c in enumerate(levels) if c < CLASS_3.alert)
        snacs = self.burst(wire, alert_at + 1)
        kinds = [(h.family, h.subtype) for h, _ in snacs]
        self.assertEqual(kinds, [(0x04, 0x01)] * alert_at + [(0x01, 0x0A), (0x04, 0x01)])
        self.assertEqual(snacs[alert_at][1][:4], b"\x00\x02\x00\x03")

    def test_recovery_clears_the_limit(self) -> None:
        """After a pause the class clears: a 01,0A code 4 arrives and 04,06
        is answered again."""
        wire = signed_on_bos(self.server, "Alice")
        levels = expected_rate_levels(40, CLASS_3)
        limited_at = next(i for i, c in enumerate(levels) if c < CLASS_3.limit)
        self.burst(wire, limited_at + 1)
        self.clock.advance(60)
        wire.send_snac(0x04, 0x06, im_to("Nobody"), request_id=77)
        snacs = wire.snacs()
        kinds = [(h.family, h.subtype) for h, _ in snacs]
        self.assertEqual(kinds, [(0x01, 0x0A), (0x04, 0x01)])
        self.assertEqual(snacs[0][1][:2], b"\x00\x04")
        self.assertEqual(snacs[1][0].request_id, 77)

    def test_second_session_is_told_the_live_levels(self) -> None:
        """A user's second session asking for rate parameters (01,06) gets the
        shared live level of each class, not a fresh one: after a burst of IMs
        from the first session its class-3 level is below the maximum."""
        first = signed_on_bos(self.server, "Alice")
        fresh = signed_on_bos(self.server, "Alice")
        fresh.send_snac(0x01, 0x06, request_id=1)
        _, before = fresh.only_snac()
        self.burst(first, 6)
        second = signed_on_bos(self.server, "Alice")
        second.send_snac(0x01, 0x06, request_id=2)
        _, body = second.only_snac()
        # count, then 30-byte records; class 3 is the third; current at +22.
        offset = 2 + 2 * 30 + 22
        (current,) = struct.unpack_from("!I", body, offset)
        (fresh_current,) = struct.unpack_from("!I", before, offset)
        self.assertEqual(fresh_current, CLASS_3.max)
        self.assertLess(current, CLASS_3.max)
        self.assertEqual(len(body), len(before))

    def test_rate_state_is_per_user(self) -> None:
        """A second session of the same user shares the first one's rate state."""
        first = signed_on_bos(self.server, "Alice")
        second = signed_on_bos(self.server, "Alice")
        levels = expected_rate_levels(40, CLASS_3)
        limited_at = next(i for i, c in enumerate(levels) if c < CLASS_3.limit)
        self.burst(first, limited_at)
        second.send_snac(0x04, 0x06, im_to("Nobody"), request_id=5)
        header, _ = second.only_snac()
        self.assertEqual((header.family, header.subtype), (0x01, 0x0A))

    def test_signon_burst_is_not_counted_up_to_the_allowance(self) -> None:
        """Class-1 SNACs before client-ready (a sign-on burst) do not count,
        up to SIGNON_ALLOWANCE per session, so sessions signing on together
        are not limited; the same burst after client-ready is."""
        burst = b"".join(snac_frame(0x01, 0x0E, request_id=i) for i in range(SIGNON_ALLOWANCE))
        for _ in range(3):
            wire = signed_on_bos(self.server, "Alice")
            wire.feed(burst)
            kinds = {(h.family, h.subtype) for h, _ in wire.snacs()}
            self.assertEqual(kinds, {(0x01, 0x0F)})
        wire.send_snac(0x01, 0x02, b"", request_id=1)
        wire.frames()
        wire.feed(burst * 2)
        kinds = [(h.family, h.subtype) for h, _ in wire.snacs()]
        self.assertIn((0x01, 0x0A), kinds)

    def test_unknown_snacs_are_rate_limited(self) -> None:
        """A flood of unknown SNACs does not make the server flood back: the
        error replies stop at the limit and the flood ends in a disconnect."""
        wire = signed_on_bos(self.server, "Alice")
        wire.feed(b"".join(snac_frame(0x01, 0x7E, request_id=i) for i in range(300)))
        frames = wire.frames()
        errors = [f for f in frames if f.channel == Channel.DATA and f.payload[2:4] == b"\x00\x01"]
        self.assertLess(len(errors), 300)
        self.assertEqual(frames[-1].channel, Channel.SIGNOFF)
        self.assertTrue(wire.closing)

    def test_unknown_snacs_logged_once_per_kind_and_bounded(self) -> None:
        """Every unknown SNAC is answered, but each kind is logged once per
        connection, and at most MAX_UNKNOWN_LOGGED kinds: a flood of them
        does not become a flood of log lines."""
        logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        wire = signed_on_bos(self.server, "Alice")
        kinds = [(0x01, 0x7E), (0x01, 0x7E), *((0x01, 0x60 + n) for n in range(20))]
        wire.feed(b"".join(snac_frame(f, t, request_id=i) for i, (f, t) in enumerate(kinds)))
        errors = [h for h, _ in wire.snacs() if h.subtype == 0x0001]
        self.assertEqual(len(errors), len(kinds))
        lines = [e for e in logged if "unknown SNAC" in str(e.get("log_format"))]
        self.assertEqual(len(lines), MAX_UNKNOWN_LOGGED)
        self.assertEqual(lines[0]["subtype"], 0x7E)

    def test_busted_prefix_snacs_are_rate_limited(self) -> None:
        """SNACs with flag 0x8000 and a broken prefix count against the rate
        limit like any other: a flood of them is not answered one for one and
        ends in a disconnect."""
        wire = signed_on_bos(self.server, "Alice")
        wire.feed(
            b"".join(snac_frame(0x01, 0x0E, b"\x00\x09", i, flags=0x8000) for i in range(300))
        )
        frames = wire.frames()
        errors = [f for f in frames if f.channel == Channel.DATA and f.payload[2:4] == b"\x00\x01"]
        self.assertLess(len(errors), 300)
        self.assertEqual(frames[-1].channel, Channel.SIGNOFF)
        self.assertTrue(wire.closing)


class BotAccountTests(BosTestCase):
    def test_bot_account_is_not_rate_limited(self) -> None:
        """A bot account (`aimserver user add NAME PW --bot`) may send a burst
        of IMs that would limit anyone else: all are answered, no 01,0A."""
        result_of(self.store.set_bot("Alice", True))
        wire = signed_on_bos(self.server, "Alice")
        wire.feed(
            b"".join(snac_frame(0x04, 0x06, im_to("Nobody"), request_id=i) for i in range(100))
        )
        kinds = {(h.family, h.subtype) for h, _ in wire.snacs()}
        self.assertEqual(kinds, {(0x04, 0x01)})
        self.assertFalse(wire.closing)


class RateLimitDisabledTests(BosTestCase):
    config = load_config(None, {"ratelimit.enabled": False})

    def test_nothing_is_limited(self) -> None:
        """With ratelimit.enabled = false a burst of 200 IMs is answered in
        full, no 01,0A is sent and the connection stays."""
        wire = signed_on_bos(self.server, "Alice")
        wire.feed(
            b"".join(snac_frame(0x04, 0x06, im_to("Nobody"), request_id=i) for i in range(200))
        )
        snacs = wire.snacs()
        self.assertEqual(
            [(h.family, h.subtype, h.request_id) for h, _ in snacs],
            [(0x04, 0x01, i) for i in range(200)],
        )
        self.assertFalse(wire.closing)


class InMemoryClientTests(SynchronousTestCase):
    """Several test clients (``tests.client.FlapClient``) talking to the real
    auth and BOS protocols through ``iosim``: no sockets, no wall clock."""

    def setUp(self) -> None:
        self.server, self.store, self.clock = make_server(accounts=ACCOUNTS)
        self.pumps: list[iosim.IOPump] = []

    def connect(self, factory: Any) -> FlapClient:
        client, _, pump = iosim.connectedServerAndClient(
            lambda: factory.buildProtocol(PEER), lambda: FlapClient(self.clock)
        )
        self.pumps.append(pump)
        self.addCleanup(self.hang_up, client)
        return client

    def hang_up(self, client: FlapClient) -> None:
        """Close a client and let both ends see it (``FlapClient`` keeps a
        process-wide set of open clients that other tests wait on)."""
        if client.connected_now:
            client.transport.loseConnection()
            self.flush()
        self.assertNotIn(client, FlapClient.open_clients)

    def flush(self) -> None:
        for _ in range(3):
            for pump in self.pumps:
                pump.flush()

    def wait(self, d: Any) -> Any:
        self.flush()
        if not isinstance(d, defer.Deferred):
            d = defer.Deferred.fromCoroutine(d)
        return self.successResultOf(d)

    def login(self, name: str, password: str) -> TlvList:
        client = self.connect(self.server.auth_factory)
        self.wait(client.wait_channel(Channel.SIGNON))
        client.send_frame(Channel.SIGNON, SignonPayload().pack())
        client.send_snac(0x17, 0x06, Tlv(0x01, name.encode()).pack())
        _, body = self.wait(client.wait_snac(0x17, 0x07))
        key = Reader(body, "17,07").string16()
        login = TlvList(
            [
                Tlv(0x01, name.encode()),
                Tlv(0x25, bucp_digest(key, password.encode())),
                Tlv.empty(0x4C),
                Tlv.u8(0x4A, 0x01),
            ]
        ).pack_list()
        client.send_snac(0x17, 0x02, login, request_id=2)
        _, body = self.wait(client.wait_snac(0x17, 0x03))
        self.wait(client.wait_channel(Channel.SIGNOFF))
        self.wait(client.lost)
        return TlvList.unpack_list(body)

    def sign_on(self, login: TlvList, buddies: list[bytes]) -> FlapClient:
        client = self.connect(self.server.bos_factory)
        self.wait(client.wait_channel(Channel.SIGNON))
        client.send_frame(
            Channel.SIGNON, SignonPayload(1, TlvList([Tlv(0x06, login.get(0x06))])).pack()
        )
        self.wait(client.wait_snac(0x01, 0x03))
        client.send_snac(0x01, 0x17, versions((1, 3), (3, 1), (4, 1)), request_id=3)
        self.wait(client.wait_snac(0x01, 0x18))
        client.send_snac(0x01, 0x06, request_id=4)
        self.wait(client.wait_snac(0x01, 0x07))
        client.send_snac(0x03, 0x04, b"".join(bytes([len(b)]) + b for b in buddies), request_id=5)
        client.send_snac(0x01, 0x02, struct.pack("!HH", 1, 3), request_id=6)
        self.flush()
        return client

    def test_two_users_sign_on_and_exchange_an_im(self) -> None:
        """Alice and Bob log in by BUCP and sign on to BOS in memory; Bob sees
        Alice arrive, Alice's IM reaches Bob, and when Alice's connection
        drops Bob sees her leave and the registry forgets her."""
        alice_login = self.login("alice", "secret")
        self.assertEqual(alice_login.get(0x05), b"127.0.0.1:5191")
        bob_login = self.login("Bob Smith", "hunter2")
        bob = self.sign_on(bob_login, [b"alice"])
        alice = self.sign_on(alice_login, [b"bobsmith"])

        _, body = self.wait(bob.wait_snac(0x03, 0x0B))
        self.assertEqual(UserInfo.unpack(body).screen_name, "Alice")

        alice.send_snac(0x04, 0x06, im_to("bob smith", b"<HTML>hello</HTML>"), request_id=9)
        _, body = self.wait(bob.wait_snac(0x04, 0x07))
        sender, text, _ = parse_im(body)
        self.assertEqual((sender.screen_name, text), ("Alice", b"<HTML>hello</HTML>"))

        alice.transport.loseConnection()
        _, body = self.wait(bob.wait_snac(0x03, 0x0C))
        self.assertEqual(UserInfo.unpack(body).screen_name, "Alice")
        self.assertIsNone(self.server.registry.get("alice"))
        self.assertIsNotNone(self.server.registry.get("bobsmith"))
