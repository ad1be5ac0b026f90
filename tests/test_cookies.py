"""Tests for aimserver.services.cookies: the login cookie carried from auth to BOS."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.cookies import (
    COOKIE_LENGTH,
    MAX_CLIENT_ID_LENGTH,
    MAX_ROOM_LENGTH,
    MAX_SCREEN_NAME_LENGTH,
    CookieJar,
    CookiePayload,
    InvalidCookie,
)

SECRET = b"0123456789abcdef0123456789abcdef"
BOS = 0x0001
CHAT = 0x000E


def make_jar(clock: Clock | None = None, secret: bytes = SECRET, lifetime: float = 60.0):
    """A jar on a fresh (or the given) ``Clock``; returns ``(jar, clock)``."""
    clock = Clock() if clock is None else clock
    return CookieJar(secret, clock, lifetime=lifetime), clock


def issue_bos(jar: CookieJar, **fields) -> bytes:
    values = dict(screen_name="Alice", instance_id=7, multiconn_flags=0x01, service=BOS)
    values.update(fields)
    return jar.issue(**values)


def refusal(jar: CookieJar, cookie: object, service: int) -> str:
    """The reason ``jar`` gives for refusing ``cookie``; fails if it is accepted."""
    try:
        payload = jar.redeem(cookie, service)  # type: ignore[arg-type]
    except InvalidCookie as e:
        return e.reason
    raise AssertionError(f"cookie accepted: {payload!r}")


def utf8_text(max_bytes: int, min_size: int = 0) -> st.SearchStrategy[str]:
    """Text whose UTF-8 encoding is at most ``max_bytes`` long."""
    return st.text(min_size=min_size, max_size=max_bytes).filter(
        lambda s: len(s.encode("utf-8")) <= max_bytes
    )


class CookieRoundTripTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """A cookie redeemed for its service gives back exactly what was issued."""
        jar, clock = make_jar()
        clock.advance(1000)
        cookie = jar.issue(
            screen_name="Bob Smith",
            instance_id=0xDEADBEEF,
            multiconn_flags=0x03,
            service=CHAT,
            client_id="AOL Instant Messenger, version 5.1.3036/WIN32",
            room=b"4-0-myroom",
        )
        payload = jar.redeem(cookie, CHAT)
        self.assertEqual(payload.screen_name, "Bob Smith")
        self.assertEqual(payload.instance_id, 0xDEADBEEF)
        self.assertEqual(payload.multiconn_flags, 0x03)
        self.assertEqual(payload.service, CHAT)
        self.assertEqual(payload.client_id, "AOL Instant Messenger, version 5.1.3036/WIN32")
        self.assertEqual(payload.room, b"4-0-myroom")
        self.assertEqual(payload.expires_at, 1060.0)
        self.assertEqual(len(payload.cookie_id), 16)

    def test_exactly_256_bytes(self) -> None:
        """Cookies are 256 bytes whatever they carry, because clients assume it."""
        jar, _ = make_jar()
        self.assertEqual(len(issue_bos(jar, screen_name="abc")), COOKIE_LENGTH)
        biggest = issue_bos(
            jar,
            screen_name="x" * MAX_SCREEN_NAME_LENGTH,
            instance_id=0xFFFFFFFF,
            multiconn_flags=0xFF,
            service=0xFFFF,
            client_id="c" * MAX_CLIENT_ID_LENGTH,
            room=b"r" * MAX_ROOM_LENGTH,
        )
        self.assertEqual(len(biggest), COOKIE_LENGTH)
        self.assertEqual(jar.redeem(biggest, 0xFFFF).client_id, "c" * MAX_CLIENT_ID_LENGTH)

    def test_limits(self) -> None:
        """The documented maxima leave room for every field of a chat cookie."""
        self.assertEqual(
            (MAX_SCREEN_NAME_LENGTH, MAX_CLIENT_ID_LENGTH, MAX_ROOM_LENGTH), (32, 93, 64)
        )

    def test_cookies_differ(self) -> None:
        """Two cookies for the same values differ (fresh random id), and both work once."""
        jar, _ = make_jar()
        first, second = issue_bos(jar), issue_bos(jar)
        self.assertNotEqual(first, second)
        self.assertNotEqual(jar.redeem(first, BOS).cookie_id, jar.redeem(second, BOS).cookie_id)

    def test_random_bytes_used_for_id(self) -> None:
        """The cookie id comes from the injected randomness source."""
        jar = CookieJar(SECRET, Clock(), random_bytes=lambda n: b"\x42" * n)
        self.assertEqual(jar.redeem(issue_bos(jar), BOS).cookie_id, b"\x42" * 16)

    @given(
        screen_name=utf8_text(MAX_SCREEN_NAME_LENGTH, min_size=1),
        instance_id=st.integers(0, 2**32 - 1),
        multiconn_flags=st.integers(0, 255),
        service=st.integers(0, 0xFFFF),
        client_id=utf8_text(MAX_CLIENT_ID_LENGTH),
        room=st.binary(max_size=MAX_ROOM_LENGTH),
        now=st.floats(0, 2e9),
    )
    def test_round_trip_property(
        self, screen_name, instance_id, multiconn_flags, service, client_id, room, now
    ) -> None:
        """Any valid combination of fields survives issue and redeem unchanged."""
        clock = Clock()
        clock.advance(now)
        jar, _ = make_jar(clock)
        cookie = jar.issue(
            screen_name=screen_name,
            instance_id=instance_id,
            multiconn_flags=multiconn_flags,
            service=service,
            client_id=client_id,
            room=room,
        )
        self.assertEqual(len(cookie), COOKIE_LENGTH)
        payload = jar.redeem(cookie, service)
        self.assertEqual(
            (
                payload.screen_name,
                payload.instance_id,
                payload.multiconn_flags,
                payload.service,
                payload.client_id,
                payload.room,
            ),
            (screen_name, instance_id, multiconn_flags, service, client_id, room),
        )
        self.assertLessEqual(abs(payload.expires_at - (now + 60)), 0.001)


class IssueValidationTests(SynchronousTestCase):
    def test_fields_too_long(self) -> None:
        """Fields that would not fit in 256 bytes are refused at issue, not truncated."""
        jar, _ = make_jar()
        for fields in [
            {"screen_name": "x" * (MAX_SCREEN_NAME_LENGTH + 1)},
            {"screen_name": "é" * (MAX_SCREEN_NAME_LENGTH // 2 + 1)},
            {"client_id": "c" * (MAX_CLIENT_ID_LENGTH + 1)},
            {"room": b"r" * (MAX_ROOM_LENGTH + 1)},
        ]:
            self.assertRaises(ValueError, issue_bos, jar, **fields)

    def test_fields_out_of_range(self) -> None:
        """Integers outside their wire width, wrong types and an empty name are refused."""
        jar, _ = make_jar()
        for fields in [
            {"screen_name": ""},
            {"instance_id": -1},
            {"instance_id": 2**32},
            {"multiconn_flags": 256},
            {"service": 0x10000},
            {"service": True},
            {"room": "not bytes"},
            {"client_id": b"not str"},
        ]:
            self.assertRaises(ValueError, issue_bos, jar, **fields)

    def test_bad_constructor_arguments(self) -> None:
        """A short secret or a non-positive lifetime is a configuration error."""
        self.assertRaises(ValueError, CookieJar, b"short", Clock())
        self.assertRaises(ValueError, CookieJar, SECRET, Clock(), lifetime=0)
        self.assertRaises(ValueError, CookieJar, SECRET, Clock(), lifetime=float("inf"))

    def test_payload_validates(self) -> None:
        """A CookiePayload can only hold values that fit in a cookie."""
        self.assertRaises(
            ValueError,
            CookiePayload,
            screen_name="Alice",
            instance_id=1,
            multiconn_flags=0,
            service=BOS,
            expires_at=60.0,
            cookie_id=b"short",
        )


class CookieRefusalTests(SynchronousTestCase):
    def test_every_bit_flip_refused(self) -> None:
        """Changing any single bit of a valid cookie makes it invalid."""
        jar, _ = make_jar()
        cookie = issue_bos(jar, client_id="purple", room=b"room")
        for bit in range(COOKIE_LENGTH * 8):
            altered = bytearray(cookie)
            altered[bit // 8] ^= 1 << (bit % 8)
            self.assertEqual(refusal(jar, bytes(altered), BOS), "bad signature")
        # None of the refusals used it up.
        self.assertEqual(jar.redeem(cookie, BOS).screen_name, "Alice")

    def test_expired(self) -> None:
        """A cookie is good until its lifetime has passed, and refused from then on."""
        jar, clock = make_jar(lifetime=30)
        late, on_time = issue_bos(jar), issue_bos(jar)
        clock.advance(29.999)
        self.assertEqual(jar.redeem(on_time, BOS).screen_name, "Alice")
        clock.advance(0.001)
        self.assertEqual(refusal(jar, late, BOS), "expired")
        clock.advance(3600)
        self.assertEqual(refusal(jar, late, BOS), "expired")

    def test_replayed(self) -> None:
        """A cookie works once; presenting it again is refused as a replay."""
        jar, clock = make_jar()
        cookie = issue_bos(jar)
        jar.redeem(cookie, BOS)
        self.assertEqual(refusal(jar, cookie, BOS), "replayed")
        clock.advance(59)
        self.assertEqual(refusal(jar, cookie, BOS), "replayed")
        clock.advance(1)
        self.assertEqual(refusal(jar, cookie, BOS), "expired")

    def test_wrong_service(self) -> None:
        """A cookie for one service is refused by another and stays usable for its own."""
        jar, _ = make_jar()
        cookie = issue_bos(jar, service=CHAT, room=b"4-0-room")
        self.assertEqual(refusal(jar, cookie, BOS), "wrong service")
        self.assertEqual(jar.redeem(cookie, CHAT).room, b"4-0-room")

    def test_other_secret(self) -> None:
        """A cookie signed under another secret is refused."""
        jar, clock = make_jar()
        other, _ = make_jar(clock, secret=b"another secret, 32 bytes long..")
        self.assertEqual(refusal(jar, issue_bos(other), BOS), "bad signature")

    def test_wrong_length(self) -> None:
        """Truncated, extended and empty cookies are malformed."""
        jar, _ = make_jar()
        cookie = issue_bos(jar)
        for candidate in [b"", cookie[:-1], cookie + b"\x00", cookie[:128]]:
            self.assertEqual(refusal(jar, candidate, BOS), "malformed")

    def test_not_bytes(self) -> None:
        """Something that is not bytes at all is malformed, not a crash."""
        jar, _ = make_jar()
        for candidate in [None, "x" * 256, 256, [0] * 256]:
            self.assertEqual(refusal(jar, candidate, BOS), "malformed")

    def test_bytearray_accepted(self) -> None:
        """A cookie may be handed over as any bytes-like object."""
        jar, _ = make_jar()
        self.assertEqual(jar.redeem(bytearray(issue_bos(jar)), BOS).instance_id, 7)

    @given(st.binary(min_size=COOKIE_LENGTH, max_size=COOKIE_LENGTH))
    def test_random_cookie(self, cookie: bytes) -> None:
        """256 random bytes are refused with InvalidCookie and nothing else."""
        jar, _ = make_jar()
        self.assertRaises(InvalidCookie, jar.redeem, cookie, BOS)

    @given(st.binary(max_size=COOKIE_LENGTH * 2))
    def test_random_input(self, cookie: bytes) -> None:
        """Input of any length is refused with InvalidCookie and nothing else."""
        jar, _ = make_jar()
        self.assertRaises(InvalidCookie, jar.redeem, cookie, BOS)


class RedeemedMemoryTests(SynchronousTestCase):
    def test_bounded_by_login_rate(self) -> None:
        """Remembered ids are forgotten once their cookie expires, so the memory
        holds at most one lifetime's worth of sign-ons however long the server runs."""
        jar, clock = make_jar(lifetime=60)
        counts = []
        for _ in range(600):  # one sign-on a second for ten minutes
            jar.redeem(issue_bos(jar), BOS)
            counts.append(jar.redeemed_count)
            clock.advance(1)
        self.assertEqual(max(counts), 60)
        self.assertEqual(counts[-1], 60)

    def test_forgets_everything_when_idle(self) -> None:
        """After a quiet lifetime, nothing is remembered any more."""
        jar, clock = make_jar(lifetime=60)
        for _ in range(100):
            jar.redeem(issue_bos(jar), BOS)
        self.assertEqual(jar.redeemed_count, 100)
        clock.advance(60)
        self.assertRaises(InvalidCookie, jar.redeem, b"", BOS)
        self.assertEqual(jar.redeemed_count, 0)

    def test_out_of_order_expiries(self) -> None:
        """Cookies with different lifetimes (another jar, same secret) are each
        forgotten at their own expiry."""
        clock = Clock()
        short, _ = make_jar(clock, lifetime=10)
        long, _ = make_jar(clock, lifetime=100)
        long_cookie = issue_bos(long)
        short.redeem(long_cookie, BOS)
        short.redeem(issue_bos(short), BOS)
        clock.advance(10)
        self.assertEqual(refusal(short, long_cookie, BOS), "replayed")
        self.assertEqual(short.redeemed_count, 1)
        clock.advance(90)
        self.assertEqual(refusal(short, long_cookie, BOS), "expired")
        self.assertEqual(short.redeemed_count, 0)
