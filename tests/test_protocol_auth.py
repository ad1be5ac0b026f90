"""The auth (login) connection (``aimserver.protocols.auth``): BUCP
(17,06 → 17,07 → 17,02 → 17,03 + empty channel 4) and the roasted FLAP
channel-1 login, byte by byte, with the memory store and a ``task.Clock``
(LOGIN.md §1–§3, §5, §7)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from aimserver.config import load_config
from aimserver.protocols import auth as auth_module
from aimserver.services import auth as auth_module_service
from aimserver.services.cookies import COOKIE_LENGTH, MAX_CLIENT_ID_LENGTH
from aimserver.services.countedlog import CountedLog
from aimserver.wire.flap import Channel, FlapFrame
from aimserver.wire.reader import string16
from aimserver.wire.snac import pack_snac
from aimserver.wire.tlv import Tlv, TlvList
from tests.fakes import (
    HELLO_PAYLOAD,
    Wire,
    bucp_login_tlvs,
    chunked,
    frame,
    login_key,
    make_server,
    parse_snac,
    result_of,
    roasted_signon_tlvs,
    signon_frame,
    snac_frame,
)

BOS_ADDRESS = b"127.0.0.1:5191"
ACCOUNTS = {"Alice": "secret", "Bob Smith": "hunter2"}


def error_tlvs(screen_name: bytes, code: int) -> bytes:
    return TlvList([Tlv(0x01, screen_name), Tlv.u16(0x08, code)]).pack_list()


def success_tlvs(screen_name: bytes, cookie: bytes) -> bytes:
    return TlvList([Tlv(0x01, screen_name), Tlv(0x05, BOS_ADDRESS), Tlv(0x06, cookie)]).pack_list()


class AuthTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.server, self.store, self.clock = make_server(accounts=ACCOUNTS)

    def connect(self) -> Wire:
        return Wire(self.server.auth_factory)

    def auth_key(self, name: str) -> bytes:
        return result_of(self.store.get_account(name)).auth_key.encode("ascii")

    def assert_answer_then_close(self, wire: Wire, request_id: int, tlvs: bytes) -> None:
        """17,03 with exactly ``tlvs``, then an empty channel 4, then closing."""
        first, second = wire.frames()
        self.assertEqual(first.channel, Channel.DATA)
        self.assertEqual(first.payload, pack_snac(0x17, 0x03, tlvs, request_id))
        self.assertEqual((second.channel, second.payload), (Channel.SIGNOFF, b""))
        self.assertEqual(second.sequence, (first.sequence + 1) & 0x7FFF)
        self.assertTrue(wire.closing)

    def bucp_login(self, body: bytes, name: bytes = b"alice") -> Wire:
        """Challenge for ``name``, then send 17,02 ``body`` (request ID 2)."""
        wire = self.connect()
        login_key(wire, name)
        wire.send_snac(0x17, 0x02, body, request_id=2)
        return wire

    def answer_tlvs(self, wire: Wire) -> TlvList:
        header_and_body, signoff = wire.frames()
        self.assertEqual(signoff.channel, Channel.SIGNOFF)
        return TlvList.unpack_list(header_and_body.payload[10:])

    def roasted(self, *tlvs: Tlv) -> FlapFrame:
        """A channel-1 login; the one frame the server answers with."""
        wire = self.connect()
        wire.raw()
        wire.signon(*tlvs)
        (answer,) = wire.frames()
        self.assertEqual(answer.channel, Channel.SIGNOFF)
        self.assertTrue(wire.closing)
        return answer


class BucpTests(AuthTestCase):
    def test_happy_path_byte_level(self) -> None:
        """17,06 gets 17,07 with the account's auth key; 17,02 with the strong
        digest gets 17,03 with the display name, the BOS address and a
        256-byte cookie; then an empty channel-4 frame and the close."""
        wire = self.connect()
        (hello,) = wire.frames()
        wire.feed(frame(Channel.SIGNON, HELLO_PAYLOAD))
        self.assertEqual(wire.raw(), b"")
        wire.send_snac(
            0x17,
            0x06,
            Tlv(0x01, b"alice").pack() + Tlv.empty(0x4B).pack() + Tlv.empty(0x5A).pack(),
            request_id=0x0101,
        )
        key = self.auth_key("Alice")
        (challenge,) = wire.frames()
        self.assertEqual(challenge.sequence, (hello.sequence + 1) & 0x7FFF)
        self.assertEqual(challenge.payload, pack_snac(0x17, 0x07, string16(key), 0x0101))
        self.assertFalse(wire.closing)

        wire.send_snac(0x17, 0x02, bucp_login_tlvs(b"alice", key, b"secret"), request_id=0x0202)
        answer, signoff = wire.frames()
        tlvs = TlvList.unpack_list(answer.payload[10:])
        cookie = tlvs.get(0x06) or b""
        self.assertEqual(len(cookie), COOKIE_LENGTH)
        self.assertEqual(
            answer.payload, pack_snac(0x17, 0x03, success_tlvs(b"Alice", cookie), 0x0202)
        )
        self.assertEqual((signoff.channel, signoff.payload), (Channel.SIGNOFF, b""))
        self.assertTrue(wire.closing)
        payload = self.server.cookies.redeem(cookie, 1)
        self.assertEqual(payload.screen_name, "Alice")
        self.assertEqual(payload.client_id, "AOL Instant Messenger, version 5.1.3036/WIN32")

    def test_weak_digest_is_accepted(self) -> None:
        """A client without TLV 0x4C sends the weak digest; it logs in too."""
        key = self.auth_key("Alice")
        wire = self.bucp_login(bucp_login_tlvs(b"Alice", key, b"secret", strong=False))
        tlvs = self.answer_tlvs(wire)
        self.assertEqual(tlvs.get(0x01), b"Alice")
        self.assertEqual(len(tlvs.get(0x06) or b""), COOKIE_LENGTH)

    def test_screen_name_is_matched_loosely_and_answered_in_display_form(self) -> None:
        """ "BOBSMITH" logs in as "Bob Smith" and is told its display form."""
        key = self.auth_key("Bob Smith")
        wire = self.bucp_login(bucp_login_tlvs(b"BOBSMITH", key, b"hunter2"), b"BOBSMITH")
        self.assertEqual(self.answer_tlvs(wire).get(0x01), b"Bob Smith")

    def test_wrong_password(self) -> None:
        """A digest of the wrong password gets 17,03 error 0x0005, then close."""
        key = self.auth_key("Alice")
        wire = self.bucp_login(bucp_login_tlvs(b"alice", key, b"wrong"))
        self.assert_answer_then_close(wire, 2, error_tlvs(b"Alice", 0x0005))

    def test_digest_under_another_key_is_refused(self) -> None:
        """The right password salted with another key does not log in."""
        wire = self.bucp_login(bucp_login_tlvs(b"alice", b"not the key", b"secret"))
        self.assert_answer_then_close(wire, 2, error_tlvs(b"Alice", 0x0005))

    def test_unknown_name_looks_like_a_known_one(self) -> None:
        """By default logins do not tell which names exist: an unknown name
        gets a key at 17,06 like a real one (the same one each time), and
        its 17,02 is answered as a wrong password (0x0005)."""
        key = login_key(self.connect(), b"Nobody")
        self.assertEqual(len(key), len(self.auth_key("Alice")))
        self.assertEqual(login_key(self.connect(), b"no body"), key)
        self.assertNotEqual(login_key(self.connect(), b"Nobody2"), key)
        wire = self.bucp_login(bucp_login_tlvs(b"Nobody", key, b"secret"), b"Nobody")
        self.assert_answer_then_close(wire, 2, error_tlvs(b"Nobody", 0x0005))

    def test_unknown_name_is_refused_at_the_challenge_when_revealed(self) -> None:
        """With [auth] reveal_unknown_names, as AOL did: 17,03 error 0x0001
        straight away (no key), then an empty channel 4 and the close."""
        config = load_config(None, {"auth.reveal_unknown_names": True})
        self.server, self.store, self.clock = make_server(config, ACCOUNTS)
        wire = self.connect()
        wire.raw()
        wire.feed(frame(Channel.SIGNON, HELLO_PAYLOAD))
        wire.send_snac(0x17, 0x06, Tlv(0x01, b"Nobody").pack(), request_id=7)
        self.assert_answer_then_close(wire, 7, error_tlvs(b"Nobody", 0x0001))

    def test_invalid_name_is_refused_at_the_challenge(self) -> None:
        """A name no account can have gets 0x0001 too, and is not sent back."""
        wire = self.connect()
        wire.raw()
        wire.feed(frame(Channel.SIGNON, HELLO_PAYLOAD))
        wire.send_snac(0x17, 0x06, Tlv(0x01, b"!").pack(), request_id=7)
        self.assert_answer_then_close(wire, 7, error_tlvs(b"", 0x0001))

    def test_suspended_account(self) -> None:
        """A suspended account with the right password gets error 0x0011."""
        result_of(self.store.set_suspended("Alice", True))
        key = self.auth_key("Alice")
        wire = self.bucp_login(bucp_login_tlvs(b"alice", key, b"secret"))
        self.assert_answer_then_close(wire, 2, error_tlvs(b"Alice", 0x0011))

    def test_login_without_digest(self) -> None:
        """A 17,02 without TLV 0x25 is refused with 0x0001."""
        body = TlvList([Tlv(0x01, b"Alice")]).pack_list()
        wire = self.bucp_login(body)
        self.assert_answer_then_close(wire, 2, error_tlvs(b"Alice", 0x0001))

    def test_login_without_screen_name(self) -> None:
        """A 17,02 without a screen name TLV gets 17,03 error 0x0001, then close."""
        body = TlvList([Tlv(0x25, b"\x00" * 16), Tlv.empty(0x4C)]).pack_list()
        wire = self.bucp_login(body)
        self.assert_answer_then_close(wire, 2, error_tlvs(b"", 0x0001))

    def test_login_with_garbled_tlvs(self) -> None:
        """A 17,02 whose TLV list runs past its end gets error 0x0001, then close."""
        for body in (b"\x00\x01\x00\x10Alice", b"\x00", b"\x00\x01\x00"):
            wire = self.bucp_login(body)
            self.assert_answer_then_close(wire, 2, error_tlvs(b"", 0x0001))

    def test_challenge_without_screen_name(self) -> None:
        """A 17,06 without (or with a garbled) screen name TLV gets 17,03
        error 0x0001, then close."""
        for body in (
            b"",
            Tlv.empty(0x4B).pack(),
            b"\x00\x01\x00\x09abc",
            b"\x00\x01\x00\x02\xff\xfe",
        ):
            wire = self.connect()
            wire.raw()
            wire.feed(frame(Channel.SIGNON, HELLO_PAYLOAD))
            wire.send_snac(0x17, 0x06, body, request_id=3)
            self.assert_answer_then_close(wire, 3, error_tlvs(b"", 0x0001))

    def test_unknown_bucp_subtype_gets_error(self) -> None:
        """An unknown BUCP subtype (e.g. 17,04 registration) gets 17,01 code
        0x0001 with the same request ID; the login can go on."""
        wire = self.connect()
        wire.raw()
        wire.feed(frame(Channel.SIGNON, HELLO_PAYLOAD))
        wire.send_snac(0x17, 0x04, b"", request_id=0x44)
        wire.send_snac(0x01, 0x17, b"\x00\x01\x00\x03", request_id=0x45)
        self.assertEqual(
            [f.payload for f in wire.frames()],
            [pack_snac(0x17, 0x01, b"\x00\x01", 0x44), pack_snac(0x01, 0x01, b"\x00\x01", 0x45)],
        )
        self.assertFalse(wire.closing)
        key = self.auth_key("Alice")
        wire.send_snac(0x17, 0x06, Tlv(0x01, b"alice").pack(), request_id=1)
        self.assertEqual(
            [f.payload for f in wire.frames()], [pack_snac(0x17, 0x07, string16(key), 1)]
        )

    def test_bucp_before_hello_closes(self) -> None:
        """A 17,06 before the client's channel-1 hello closes the connection."""
        wire = self.connect()
        wire.raw()
        wire.send_snac(0x17, 0x06, Tlv(0x01, b"alice").pack())
        self.assertEqual([f.channel for f in wire.frames()], [Channel.SIGNOFF])
        self.assertTrue(wire.closing)

    @given(st.lists(st.integers(min_value=0, max_value=200), max_size=12))
    def test_any_chunking_gives_the_same_login(self, cuts: list[int]) -> None:
        """However TCP splits the client's hello and 17,06, the challenge is
        the same; the 17,02 split anyhow logs in."""
        self.clock.advance(60)  # each example is a fresh minute for the per-IP login limit
        key = self.auth_key("Alice")
        stream = frame(Channel.SIGNON, HELLO_PAYLOAD) + snac_frame(
            0x17, 0x06, Tlv(0x01, b"alice").pack(), request_id=5
        )
        wire = self.connect()
        wire.raw()
        wire.feed_chunks(chunked(stream, cuts))
        self.assertEqual(
            [f.payload for f in wire.frames()], [pack_snac(0x17, 0x07, string16(key), 5)]
        )
        login = snac_frame(0x17, 0x02, bucp_login_tlvs(b"alice", key, b"secret"), request_id=6)
        wire.feed_chunks(chunked(login, cuts))
        answer, signoff = wire.frames()
        self.assertEqual(TlvList.unpack_list(answer.payload[10:]).get(0x01), b"Alice")
        self.assertEqual(signoff.channel, Channel.SIGNOFF)


class RoastedLoginTests(AuthTestCase):
    def test_success(self) -> None:
        """A channel-1 frame with screen name and roasted password is answered
        with one channel-4 frame holding TLVs 01 (display name), 05 (BOS
        address) and 06 (256-byte cookie), then the close."""
        answer = self.roasted(*roasted_signon_tlvs(b"ALICE", b"secret"))
        cookie = TlvList.unpack_list(answer.payload).get(0x06) or b""
        self.assertEqual(len(cookie), COOKIE_LENGTH)
        self.assertEqual(answer.payload, success_tlvs(b"Alice", cookie))
        self.assertEqual(self.server.cookies.redeem(cookie, 1).screen_name, "Alice")

    def test_wrong_password(self) -> None:
        """A wrong roasted password gets channel 4 with error 0x0005."""
        answer = self.roasted(*roasted_signon_tlvs(b"Alice", b"secreT"))
        self.assertEqual(answer.payload, error_tlvs(b"Alice", 0x0005))

    def test_missing_password(self) -> None:
        """No password TLV at all is a wrong password."""
        answer = self.roasted(Tlv(0x01, b"Alice"))
        self.assertEqual(answer.payload, error_tlvs(b"Alice", 0x0005))

    def test_unknown_name(self) -> None:
        """An unknown screen name gets channel 4 with error 0x0005, like a
        wrong password (0x0001 with [auth] reveal_unknown_names)."""
        answer = self.roasted(*roasted_signon_tlvs(b"Nobody", b"secret"))
        self.assertEqual(answer.payload, error_tlvs(b"Nobody", 0x0005))
        config = load_config(None, {"auth.reveal_unknown_names": True})
        self.server, self.store, self.clock = make_server(config, ACCOUNTS)
        answer = self.roasted(*roasted_signon_tlvs(b"Nobody", b"secret"))
        self.assertEqual(answer.payload, error_tlvs(b"Nobody", 0x0001))

    def test_suspended(self) -> None:
        """A suspended account gets channel 4 with error 0x0011."""
        result_of(self.store.set_suspended("Alice", True))
        answer = self.roasted(*roasted_signon_tlvs(b"alice", b"secret"))
        self.assertEqual(answer.payload, error_tlvs(b"Alice", 0x0011))

    def test_non_ascii_screen_name(self) -> None:
        """A screen name that is not ASCII gets error 0x0001."""
        answer = self.roasted(Tlv(0x01, b"\xe9lice"), Tlv(0x02, b"x"))
        self.assertEqual(answer.payload, error_tlvs(b"", 0x0001))

    def test_garbled_signon_frame_closes(self) -> None:
        """A channel-1 frame whose TLVs run past its end closes with an empty
        channel 4."""
        wire = self.connect()
        wire.raw()
        wire.feed(frame(Channel.SIGNON, HELLO_PAYLOAD + b"\x00\x01\x00\x20Alice"))
        self.assertEqual([(f.channel, f.payload) for f in wire.frames()], [(Channel.SIGNOFF, b"")])
        self.assertTrue(wire.closing)

    def test_snacs_after_roasted_login_are_not_read(self) -> None:
        """Frames sent behind a roasted login in the same read are not answered."""
        wire = self.connect()
        wire.raw()
        wire.feed(
            signon_frame(*roasted_signon_tlvs(b"Alice", b"secret"))
            + snac_frame(0x17, 0x06, Tlv(0x01, b"alice").pack())
        )
        self.assertEqual([f.channel for f in wire.frames()], [Channel.SIGNOFF])


class MulticonnFlagTests(AuthTestCase):
    CASES = (
        (b"\x00", 0x00),
        (b"\x01", 0x01),
        (b"\x03", 0x03),
        (None, 0x00),
        (b"\x02", 0x00),
        (b"\xff", 0x00),
        (b"", 0x00),
        (b"\x01\x01", 0x00),
    )

    def test_bucp_flags_travel_in_the_cookie(self) -> None:
        """TLV 0x4A of 17,02 is carried in the cookie: 0x01 and 0x03 as sent,
        0x00, absent or anything else as 0x00 (legacy)."""
        key = self.auth_key("Alice")
        for sent, expected in self.CASES:
            wire = self.bucp_login(bucp_login_tlvs(b"alice", key, b"secret", flags=sent))
            cookie = self.answer_tlvs(wire).get(0x06) or b""
            self.assertEqual(self.server.cookies.redeem(cookie, 1).multiconn_flags, expected, sent)

    def test_roasted_flags_travel_in_the_cookie(self) -> None:
        """The same for TLV 0x4A of a channel-1 login."""
        for sent, expected in self.CASES:
            answer = self.roasted(*roasted_signon_tlvs(b"alice", b"secret", flags=sent))
            cookie = TlvList.unpack_list(answer.payload).get(0x06) or b""
            self.assertEqual(self.server.cookies.redeem(cookie, 1).multiconn_flags, expected, sent)


class LoginRateTests(AuthTestCase):
    def challenge(self, name: bytes = b"alice") -> tuple[int, bytes]:
        wire = self.connect()
        wire.raw()
        wire.feed(frame(Channel.SIGNON, HELLO_PAYLOAD))
        wire.send_snac(0x17, 0x06, Tlv(0x01, name).pack(), request_id=1)
        header, body = parse_snac(wire.frames()[0])
        return header.subtype, body

    def test_one_address_over_its_login_rate_gets_0x0018(self) -> None:
        """The 61st login within a minute from one address is answered at once
        with 17,03 error 0x0018 ("connecting too frequently"); a minute later
        it may log in again."""
        for _ in range(60):
            self.assertEqual(self.challenge()[0], 0x07)
        subtype, body = self.challenge()
        self.assertEqual(subtype, 0x03)
        self.assertEqual(TlvList.unpack_list(body).get_u16(0x0008), 0x0018)
        self.clock.advance(2)
        self.assertEqual(self.challenge()[0], 0x07)

    def test_roasted_login_is_counted_too(self) -> None:
        """The FLAP channel-1 login counts against the same limit."""
        for _ in range(60):
            self.challenge()
        wire = self.connect()
        wire.raw()
        wire.feed(signon_frame(*roasted_signon_tlvs(b"alice", b"secret")))
        [reply] = wire.frames()
        self.assertEqual(reply.channel, Channel.SIGNOFF)
        self.assertEqual(TlvList.unpack_list(reply.payload).get_u16(0x0008), 0x0018)

    def test_no_login_limit_when_rate_limiting_is_off(self) -> None:
        """[ratelimit] enabled = false lifts the login limit as well."""
        config = load_config(None, {"ratelimit.enabled": False})
        self.server, self.store, self.clock = make_server(config, ACCOUNTS)
        for _ in range(200):
            self.assertEqual(self.challenge()[0], 0x07)


class LoginLimitsTests(AuthTestCase):
    def test_too_many_frames_during_login_close(self) -> None:
        """A client that sends more frames than a login needs is closed with
        channel 4."""
        wire = self.connect()
        wire.raw()
        wire.feed(frame(Channel.SIGNON, HELLO_PAYLOAD))
        for _ in range(auth_module.MAX_AUTH_FRAMES - 1):
            wire.feed(frame(Channel.KEEP_ALIVE))
        self.assertFalse(wire.closing)
        wire.feed(frame(Channel.KEEP_ALIVE))
        self.assertEqual([f.channel for f in wire.frames()], [Channel.SIGNOFF])
        self.assertTrue(wire.closing)

    def test_many_unknown_snacs_close(self) -> None:
        """Unknown SNACs count as frames too: a flood of them ends the login."""
        wire = self.connect()
        wire.raw()
        wire.feed(frame(Channel.SIGNON, HELLO_PAYLOAD))
        wire.feed(snac_frame(0x17, 0x04) * auth_module.MAX_AUTH_FRAMES)
        frames = wire.frames()
        self.assertEqual(len(frames), auth_module.MAX_AUTH_FRAMES)
        self.assertEqual(frames[-1].channel, Channel.SIGNOFF)
        self.assertTrue(wire.closing)

    def test_login_timeout(self) -> None:
        """A client that never finishes logging in is closed after
        auth.login_timeout seconds."""
        config = load_config(None, {"auth.login_timeout": 10})
        self.server, self.store, self.clock = make_server(config, ACCOUNTS)
        wire = self.connect()
        wire.raw()
        wire.feed(frame(Channel.SIGNON, HELLO_PAYLOAD))
        self.clock.advance(9.5)
        self.assertFalse(wire.closing)
        self.clock.advance(0.5)
        self.assertEqual([f.channel for f in wire.frames()], [Channel.SIGNOFF])
        self.assertTrue(wire.closing)

    def test_oversize_frame_closes(self) -> None:
        """The auth connection never authenticates: frames over the
        unauthenticated limit close it."""
        wire = self.connect()
        wire.raw()
        wire.feed(frame(Channel.SIGNON, HELLO_PAYLOAD))
        wire.feed(b"\x2a\x02\x00\x01\x08\x01")  # 2049 bytes announced
        self.assertEqual([f.channel for f in wire.frames()], [Channel.SIGNOFF])
        self.assertTrue(wire.closing)


def shed_timers(clock: Any) -> list[Any]:
    """Pending calls of the overload-refusal counter."""
    return [
        c
        for c in clock.getDelayedCalls()
        if isinstance(getattr(c.func, "__self__", None), CountedLog)
    ]


class OverloadLogTests(AuthTestCase):
    def test_overload_refusals_are_counted_not_logged_one_by_one(self) -> None:
        """The first 0x0018 refusal after a quiet spell is logged; the next ones
        are counted into one line per SHED_LOG_INTERVAL while they go on (a
        reconnect storm would otherwise write a line per refused attempt),
        and when they stop, no timer is left."""
        events: list[dict[str, object]] = []
        observer = events.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        interval = auth_module_service.SHED_LOG_INTERVAL

        def challenge() -> int:
            wire = self.connect()
            wire.feed(frame(Channel.SIGNON, HELLO_PAYLOAD))
            wire.send_snac(0x17, 0x06, Tlv(0x01, b"alice").pack(), request_id=1)
            data = [f for f in wire.frames() if f.channel == Channel.DATA]
            return parse_snac(data[-1])[0].subtype

        def refusal_lines() -> list[dict[str, object]]:
            return [e for e in events if "0x0018" in formatEvent(e)]

        self.assertEqual([challenge() for _ in range(60)], [0x07] * 60)
        self.assertEqual([challenge() for _ in range(6)], [0x03] * 6)
        self.assertEqual(len(refusal_lines()), 1)
        self.assertEqual(len(shed_timers(self.clock)), 1)
        self.clock.advance(interval)
        self.assertEqual(len(refusal_lines()), 2)
        self.assertEqual(refusal_lines()[-1]["counts"], "5 login rate")
        # Still counting for one more interval; nothing more refused: no line,
        # and no timer after it.
        self.clock.advance(interval)
        self.assertEqual(len(refusal_lines()), 2)
        self.assertEqual(shed_timers(self.clock), [])

    def test_counts_are_written_when_the_listener_stops(self) -> None:
        """Refusals counted but not yet written are logged at shutdown, and the
        timer is cancelled."""
        events: list[dict[str, object]] = []
        observer = events.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        for _ in range(63):
            wire = self.connect()
            wire.feed(frame(Channel.SIGNON, HELLO_PAYLOAD))
            wire.send_snac(0x17, 0x06, Tlv(0x01, b"alice").pack(), request_id=1)
        self.server.auth_factory.doStart()
        self.server.auth_factory.doStop()
        counted = [e for e in events if e.get("counts")]
        self.assertEqual([e["counts"] for e in counted], ["2 login rate"])
        self.assertEqual(shed_timers(self.clock), [])


class LoginInputTests(AuthTestCase):
    """Logins no client makes are refused with a login error, never accepted,
    and never echo garbage back: a 17,02 without its 17,06, or for another
    name; a screen name no account can have (300 bytes, a NUL); a client id
    string (TLV 0x03) that is oversize or not UTF-8. 0x0001 for the names,
    0x0006 ("internal client error (bad input)", LOGIN.md §4) for the rest."""

    LONG_NAME = b"a" * 300
    NUL_NAMES = (b"alice\x00", b"al\x00ice", b"\x00")
    LONG_CLIENT_ID = b"A" * (MAX_CLIENT_ID_LENGTH + 1)
    NON_UTF8_CLIENT_IDS = (b"AIM \xff\xfe", b"AOL Instant Messenger \xe9", b"\xc3")

    def setUp(self) -> None:
        super().setUp()
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def login_tlvs(self, name: bytes, key_of: str, password: bytes, client_id: bytes) -> bytes:
        """A 17,02 body with the right digest for ``key_of``'s key and ``client_id``."""
        tlvs = TlvList.unpack_list(bucp_login_tlvs(name, self.auth_key(key_of), password))
        return TlvList([Tlv(t.tag, client_id) if t.tag == 0x03 else t for t in tlvs]).pack_list()

    def assert_refused_once(self, wire: Wire, request_id: int, tlvs: bytes) -> None:
        """17,03 with exactly ``tlvs``, channel 4, close; one log line, no
        cookie issued."""
        self.assert_answer_then_close(wire, request_id, tlvs)
        self.assertEqual(len(self.events), 1, [e.get("log_format") for e in self.events])
        self.events.clear()

    def assert_roasted_refused_once(self, tlvs: bytes, *signon: Tlv) -> None:
        answer = self.roasted(*signon)
        self.assertEqual(answer.payload, tlvs)
        self.assertEqual(len(self.events), 1, [e.get("log_format") for e in self.events])
        self.events.clear()

    def hello(self) -> Wire:
        wire = self.connect()
        wire.raw()
        wire.feed(frame(Channel.SIGNON, HELLO_PAYLOAD))
        return wire

    # -- BUCP: the 17,02 must answer this connection's 17,06 --------------------------

    def test_login_without_challenge_is_refused(self) -> None:
        """A 17,02 with a digest that would check out, but no 17,06 before it
        on this connection, gets 0x0006; no account is looked at."""
        wire = self.hello()
        body = bucp_login_tlvs(b"alice", self.auth_key("Alice"), b"secret")
        wire.send_snac(0x17, 0x02, body, request_id=2)
        self.assert_refused_once(wire, 2, error_tlvs(b"alice", 0x0006))

    def test_login_for_another_name_than_the_challenge_is_refused(self) -> None:
        """17,06 for Alice, then a 17,02 for Bob Smith with his right digest:
        0x0006, Bob is not logged in."""
        wire = self.connect()
        login_key(wire, b"alice")
        wire.send_snac(
            0x17,
            0x02,
            bucp_login_tlvs(b"bobsmith", self.auth_key("Bob Smith"), b"hunter2"),
            request_id=2,
        )
        self.assert_refused_once(wire, 2, error_tlvs(b"bobsmith", 0x0006))

    def test_login_for_another_name_is_refused_with_alices_key_too(self) -> None:
        """The same with Bob's password salted with the key the challenge gave."""
        wire = self.connect()
        key = login_key(wire, b"alice")
        wire.send_snac(0x17, 0x02, bucp_login_tlvs(b"Bob Smith", key, b"hunter2"), request_id=2)
        self.assert_refused_once(wire, 2, error_tlvs(b"Bob Smith", 0x0006))

    def test_same_name_in_another_form_is_the_same_name(self) -> None:
        """The 17,02 may spell the challenged name differently ("BOB SMITH"
        for "bobsmith"): it is the same screen name, and logs in."""
        wire = self.connect()
        key = login_key(wire, b"bobsmith")
        wire.send_snac(0x17, 0x02, bucp_login_tlvs(b"BOB SMITH", key, b"hunter2"), request_id=2)
        self.assertEqual(self.answer_tlvs(wire).get(0x01), b"Bob Smith")

    def test_auto_registration_follows_the_challenged_name_only(self) -> None:
        """With auto-registration, a 17,06 for a new name then a 17,02 for
        another new name creates no account."""
        config = load_config(None, {"auth.auto_register": True})
        self.server, self.store, self.clock = make_server(config, ACCOUNTS)
        wire = self.connect()
        key = login_key(wire, b"Newcomer")
        wire.send_snac(0x17, 0x02, bucp_login_tlvs(b"Intruder", key, b"password"), request_id=2)
        self.assert_refused_once(wire, 2, error_tlvs(b"Intruder", 0x0006))
        self.assertIsNone(result_of(self.store.get_account("Intruder")))
        self.assertIsNone(result_of(self.store.get_account("Newcomer")))

    # -- screen names that no account can have are refused, never echoed --------------

    def test_long_screen_name_at_the_challenge(self) -> None:
        """A 300-byte screen name gets 0x0001 with an empty TLV 0x01."""
        wire = self.hello()
        wire.send_snac(0x17, 0x06, Tlv(0x01, self.LONG_NAME).pack(), request_id=3)
        self.assert_refused_once(wire, 3, error_tlvs(b"", 0x0001))

    def test_nul_in_screen_name_at_the_challenge(self) -> None:
        """A screen name with a NUL gets 0x0001 with an empty TLV 0x01."""
        for name in self.NUL_NAMES:
            wire = self.hello()
            wire.send_snac(0x17, 0x06, Tlv(0x01, name).pack(), request_id=3)
            self.assert_refused_once(wire, 3, error_tlvs(b"", 0x0001))

    def test_bad_screen_name_in_the_login_request(self) -> None:
        """After a good 17,06, a 17,02 for a 300-byte or NUL-containing name
        is refused and the name is not sent back."""
        for name in (self.LONG_NAME, *self.NUL_NAMES):
            wire = self.connect()
            key = login_key(wire, b"alice")
            self.events.clear()
            wire.send_snac(0x17, 0x02, bucp_login_tlvs(name, key, b"secret"), request_id=2)
            self.assert_refused_once(wire, 2, error_tlvs(b"", 0x0006))

    def test_roasted_long_screen_name(self) -> None:
        """The same 300-byte name in a channel-1 login: 0x0001, not echoed."""
        self.assert_roasted_refused_once(
            error_tlvs(b"", 0x0001), *roasted_signon_tlvs(self.LONG_NAME, b"secret")
        )

    def test_roasted_nul_in_screen_name(self) -> None:
        """A NUL in the channel-1 login's name: 0x0001, not echoed."""
        for name in self.NUL_NAMES:
            self.assert_roasted_refused_once(
                error_tlvs(b"", 0x0001), *roasted_signon_tlvs(name, b"secret")
            )

    def test_roasted_nul_name_with_auto_registration(self) -> None:
        """Auto-registration does not change that: no account, 0x0001."""
        config = load_config(None, {"auth.auto_register": True})
        self.server, self.store, self.clock = make_server(config, ACCOUNTS)
        self.assert_roasted_refused_once(
            error_tlvs(b"", 0x0001), *roasted_signon_tlvs(b"newcomer\x00", b"password")
        )
        self.assertEqual(len(result_of(self.store.list_accounts())), len(ACCOUNTS))

    # -- the client id string (TLV 0x03) -----------------------------------------------

    def test_oversize_client_id_in_the_login_request(self) -> None:
        """A client id string longer than a cookie carries gets 0x0006 (it was
        cut and accepted)."""
        wire = self.connect()
        login_key(wire, b"alice")
        self.events.clear()
        body = self.login_tlvs(b"alice", "Alice", b"secret", self.LONG_CLIENT_ID)
        wire.send_snac(0x17, 0x02, body, request_id=2)
        self.assert_refused_once(wire, 2, error_tlvs(b"alice", 0x0006))

    def test_non_utf8_client_id_in_the_login_request(self) -> None:
        """A client id string that is not UTF-8 gets 0x0006."""
        for client_id in self.NON_UTF8_CLIENT_IDS:
            wire = self.connect()
            login_key(wire, b"alice")
            self.events.clear()
            body = self.login_tlvs(b"alice", "Alice", b"secret", client_id)
            wire.send_snac(0x17, 0x02, body, request_id=2)
            self.assert_refused_once(wire, 2, error_tlvs(b"alice", 0x0006))

    def test_roasted_bad_client_id(self) -> None:
        """The same client id strings in a channel-1 login get 0x0006."""
        for client_id in (self.LONG_CLIENT_ID, *self.NON_UTF8_CLIENT_IDS):
            tlvs = [
                Tlv(0x03, client_id) if t.tag == 0x03 else t
                for t in roasted_signon_tlvs(b"alice", b"secret")
            ]
            self.assert_roasted_refused_once(error_tlvs(b"alice", 0x0006), *tlvs)

    def test_client_id_at_the_limit_and_in_utf8_is_accepted(self) -> None:
        """A client id of exactly MAX_CLIENT_ID_LENGTH bytes, or one in UTF-8
        beyond ASCII, logs in and travels in the cookie."""
        for client_id in (b"A" * MAX_CLIENT_ID_LENGTH, "AIM für Mac".encode()):
            wire = self.connect()
            login_key(wire, b"alice")
            body = self.login_tlvs(b"alice", "Alice", b"secret", client_id)
            wire.send_snac(0x17, 0x02, body, request_id=2)
            cookie = self.answer_tlvs(wire).get(0x06) or b""
            self.assertEqual(self.server.cookies.redeem(cookie, 1).client_id, client_id.decode())

    # -- every refusal writes one log line ----------------------------------------------

    def test_each_refusal_writes_one_log_line(self) -> None:
        """Unknown name, wrong password, suspended, malformed request: one
        line each, naming the reason."""
        cases: list[tuple[bytes, Any]] = [
            (b"\x00\x01\x00\x10Alice", "malformed"),
            (bucp_login_tlvs(b"alice", self.auth_key("Alice"), b"wrong"), "wrong password"),
            (TlvList([Tlv(0x01, b"Alice")]).pack_list(), "no digest"),
        ]
        for body, why in cases:
            wire = self.connect()
            login_key(wire, b"alice")
            self.events.clear()
            wire.send_snac(0x17, 0x02, body, request_id=2)
            self.assertEqual(len(self.events), 1, why)
            self.assertIn(why, self.events[0]["log_format"] + str(self.events[0].get("why")))
            self.events.clear()
        wire = self.connect()
        key = login_key(wire, b"Nobody")
        self.events.clear()
        wire.send_snac(0x17, 0x02, bucp_login_tlvs(b"Nobody", key, b"x"), request_id=3)
        self.assertEqual([e.get("why") for e in self.events], ["unknown screen name"])
        self.events.clear()
        self.roasted(*roasted_signon_tlvs(b"alice", b"wrong"))
        self.assertEqual([e.get("why") for e in self.events], ["wrong password"])

    def test_log_line_shows_a_bounded_name(self) -> None:
        """The log line of a refused 300-byte name shows its start and length,
        not all of it."""
        wire = self.hello()
        wire.send_snac(0x17, 0x06, Tlv(0x01, self.LONG_NAME).pack(), request_id=3)
        (event,) = self.events
        self.assertEqual(len(event["screen_name"]), auth_module_service.MAX_LOGGED_NAME)
        self.assertIn("268", event["more"])
