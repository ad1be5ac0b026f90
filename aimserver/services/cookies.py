# -*- test-case-name: tests.test_cookies -*-
"""Login cookies: the opaque ticket a client carries from one connection to the next.

The auth server puts a cookie in TLV 0x06 of its login reply; the client copies
it verbatim into the channel-1 frame of its BOS connection (and later the
chat, ChatNav, BART or Admin connections it is redirected to).  Whoever
redeems it learns who signed on, with which multi-connection flags and for
which service, without trusting anything else the client says.

Pure: no sockets, no global reactor.  Time comes from an ``IReactorTime``
(``task.Clock`` in tests), randomness from an injectable callable.

Layout of the 256 bytes (big-endian)::

    u8 version (1) | u16 service | u8 multiconn flags | u32 instance id
    | u64 expiry (ms since the epoch) | 16 bytes cookie id
    | string08 screen name | string08 client id | string08 room cookie
    | zero padding up to byte 224 | 32 bytes HMAC-SHA256 over bytes 0..223

The MAC sits at a fixed offset and covers the padding too, so every byte of
the cookie is authenticated and no bit can be flipped unnoticed.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import math
import os
import struct
from collections.abc import Callable
from typing import Literal

import attrs
from twisted.internet.interfaces import IReactorTime

__all__ = [
    "COOKIE_LENGTH",
    "MAX_CLIENT_ID_LENGTH",
    "MAX_ROOM_LENGTH",
    "MAX_SCREEN_NAME_LENGTH",
    "CookieJar",
    "CookiePayload",
    "InvalidCookie",
    "InvalidCookieReason",
]

#: Classic clients (and Perl Net::OSCAR) assume the cookie is exactly 256
#: bytes, as AOL's were; some ignore the TLV length and just read 256.
COOKIE_LENGTH = 256

_VERSION = 1
_MAC_LENGTH = hashlib.sha256().digest_size
_BODY_LENGTH = COOKIE_LENGTH - _MAC_LENGTH
# version, service, multiconn flags, instance id, expiry ms, cookie id
_FIXED = struct.Struct("!BHBIQ16s")
_COOKIE_ID_LENGTH = 16
_STRING_FIELDS = 3

#: Longest screen name, in UTF-8 bytes.  AIM names are at most 16 characters
#: and ICQ UINs 9 digits; the rest is headroom.
MAX_SCREEN_NAME_LENGTH = 32
#: Longest chat-room cookie, in bytes.
MAX_ROOM_LENGTH = 64
#: Longest client id string (TLV 0x03), in UTF-8 bytes: whatever room the
#: other fields leave.  Real clients send 10-60 bytes; the client chooses this
#: string, so callers must truncate it to this length before ``issue``.
MAX_CLIENT_ID_LENGTH = (
    _BODY_LENGTH - _FIXED.size - _STRING_FIELDS - MAX_SCREEN_NAME_LENGTH - MAX_ROOM_LENGTH
)

# Derives the MAC key from the server secret, so that the same secret may be
# used for other purposes (e.g. fake BUCP keys) without one MAC ever standing
# in for another.
_KEY_LABEL = b"aimserver login cookie v1"

InvalidCookieReason = Literal["malformed", "bad signature", "expired", "replayed", "wrong service"]


class InvalidCookie(Exception):  # noqa: N818 (the name is the API)
    """A cookie was refused.

    ``reason`` says why, for the log line and for tests; the client is told
    nothing more than that its sign-on failed:

    - ``"malformed"``: not 256 bytes, or not a layout this server writes;
    - ``"bad signature"``: not issued under this server's secret, or altered;
    - ``"expired"``: presented after its lifetime;
    - ``"replayed"``: already redeemed once;
    - ``"wrong service"``: issued for another service (a chat cookie at BOS).
    """

    def __init__(self, reason: InvalidCookieReason) -> None:
        super().__init__(reason)
        self.reason: InvalidCookieReason = reason


def _check_u(bits: int) -> Callable[[object, attrs.Attribute[int], int], None]:
    limit = 1 << bits

    def check(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
        if type(value) is not int or not 0 <= value < limit:
            raise ValueError(f"{attribute.name} must be an unsigned {bits}-bit integer: {value!r}")

    return check


def _check_text(limit: int, *, required: bool = False) -> Callable[..., None]:
    def check(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
        if not isinstance(value, str):
            raise ValueError(f"{attribute.name} must be a str: {value!r}")
        size = len(value.encode("utf-8"))
        if size > limit or (required and size == 0):
            raise ValueError(f"{attribute.name} must be 1-{limit} UTF-8 bytes: {value!r}")

    return check


def _check_room(instance: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) > MAX_ROOM_LENGTH:
        raise ValueError(f"room must be at most {MAX_ROOM_LENGTH} bytes: {value!r}")


def _check_cookie_id(instance: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != _COOKIE_ID_LENGTH:
        raise ValueError(f"cookie_id must be {_COOKIE_ID_LENGTH} bytes: {value!r}")


def _check_expiry(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0 <= round(value * 1000) < 1 << 64
    ):
        raise ValueError(f"expires_at must be a time in seconds since the epoch: {value!r}")


@attrs.frozen(kw_only=True)
class CookiePayload:
    """What a cookie vouches for.

    Every instance fits in a cookie: the validators enforce the field ranges
    and the byte limits (``MAX_*_LENGTH``), and raise ``ValueError`` otherwise.
    """

    #: Display form of the screen name, as the auth server accepted it.
    screen_name: str = attrs.field(validator=_check_text(MAX_SCREEN_NAME_LENGTH, required=True))
    #: Identifies this sign-on among the user's concurrent sessions.
    instance_id: int = attrs.field(validator=_check_u(32))
    #: TLV 0x4A from the login request (0x00 legacy, 0x01 multi, 0x03 single).
    multiconn_flags: int = attrs.field(validator=_check_u(8))
    #: Food-group family of the service the cookie opens (0x0001 = BOS).
    service: int = attrs.field(validator=_check_u(16))
    #: Client id string (TLV 0x03 of the login request).
    client_id: str = attrs.field(default="", validator=_check_text(MAX_CLIENT_ID_LENGTH))
    #: Chat-room cookie, for service 0x000E; empty otherwise.
    room: bytes = attrs.field(default=b"", validator=_check_room)
    #: ``IReactorTime.seconds()`` value from which the cookie is refused
    #: (millisecond resolution).
    expires_at: float = attrs.field(validator=_check_expiry)
    #: Random; names the cookie for the single-use check.
    cookie_id: bytes = attrs.field(validator=_check_cookie_id)


def _pack_body(payload: CookiePayload) -> bytes:
    """The 224 bytes the MAC covers: fields, then zeros."""
    fields = [
        _FIXED.pack(
            _VERSION,
            payload.service,
            payload.multiconn_flags,
            payload.instance_id,
            round(payload.expires_at * 1000),
            payload.cookie_id,
        )
    ]
    for value in (
        payload.screen_name.encode("utf-8"),
        payload.client_id.encode("utf-8"),
        payload.room,
    ):
        fields.append(bytes([len(value)]) + value)
    body = b"".join(fields)
    # The validators' limits guarantee this; MAX_CLIENT_ID_LENGTH is derived from it.
    assert len(body) <= _BODY_LENGTH
    return body.ljust(_BODY_LENGTH, b"\x00")


def _unpack_body(body: bytes) -> CookiePayload:
    """Inverse of ``_pack_body``; any inconsistency is ``InvalidCookie("malformed")``.

    Only reached for bodies with a valid MAC, i.e. ones this server wrote, so
    a failure here means a format change or a leaked secret.
    """
    if body[0] != _VERSION:
        raise InvalidCookie("malformed")
    _, service, flags, instance_id, expiry_ms, cookie_id = _FIXED.unpack_from(body)
    offset = _FIXED.size
    strings = []
    for _ in range(_STRING_FIELDS):
        if offset >= len(body):  # an earlier string ran to the end: no length byte left
            raise InvalidCookie("malformed")
        length = body[offset]
        offset += 1
        if offset + length > len(body):
            raise InvalidCookie("malformed")
        strings.append(body[offset : offset + length])
        offset += length
    if body[offset:].count(0) != len(body) - offset:
        raise InvalidCookie("malformed")
    screen_name, client_id, room = strings
    try:
        return CookiePayload(
            screen_name=screen_name.decode("utf-8"),
            instance_id=instance_id,
            multiconn_flags=flags,
            service=service,
            client_id=client_id.decode("utf-8"),
            room=room,
            expires_at=expiry_ms / 1000,
            cookie_id=cookie_id,
        )
    except ValueError:  # UnicodeDecodeError included
        raise InvalidCookie("malformed") from None


class CookieJar:
    """Issues login cookies and redeems each one at most once.

    Cookies are signed with HMAC-SHA256 under a key derived from ``secret``;
    any server holding the same secret can verify them, but the single-use
    memory is per instance (and is lost on restart, so a cookie issued just
    before a restart can be redeemed once more within its lifetime).

    Redeemed cookie ids are remembered until their cookie expires, then
    forgotten (a redeem after that says "expired", so forgetting never lets a
    replay through).  Forgetting happens at every ``redeem``, in time
    proportional to the number of ids forgotten, so the memory holds at most
    the cookies redeemed during the last ``lifetime`` seconds: the login rate
    times the lifetime (about 6 000 ids at 100 logins a second and 60 s), not
    a number anyone else controls.  Hence no hard cap, which would have to
    refuse genuine sign-ons.

    :param secret: at least 16 bytes, random, kept across restarts if cookies
        must survive them.
    :param clock: gives the current time in seconds.
    :param lifetime: seconds a cookie stays valid after ``issue``.
    :param random_bytes: returns that many random bytes (``os.urandom``).
    """

    def __init__(
        self,
        secret: bytes,
        clock: IReactorTime,
        lifetime: float = 60.0,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if not isinstance(secret, bytes) or len(secret) < 16:
            raise ValueError("the cookie secret must be at least 16 bytes")
        if not (isinstance(lifetime, int | float) and math.isfinite(lifetime) and lifetime > 0):
            raise ValueError(f"cookie lifetime must be a positive number of seconds: {lifetime!r}")
        self._key = hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()
        self._clock = clock
        self.lifetime = float(lifetime)
        self._random_bytes = random_bytes
        self._redeemed: set[bytes] = set()
        # (expires_at, cookie_id), a min-heap: the next id to forget is first.
        # A heap rather than a FIFO because expiries need not arrive in order
        # (another jar with the same secret and a longer lifetime, or a clock
        # that stepped back).
        self._forget_at: list[tuple[float, bytes]] = []

    @property
    def redeemed_count(self) -> int:
        """How many redeemed cookie ids are remembered now (for monitoring)."""
        return len(self._redeemed)

    def issue(
        self,
        *,
        screen_name: str,
        instance_id: int,
        multiconn_flags: int,
        service: int,
        client_id: str = "",
        room: bytes = b"",
    ) -> bytes:
        """A fresh 256-byte cookie for these values, valid for ``lifetime`` seconds.

        :raises ValueError: a field is out of range or longer than its
            ``MAX_*_LENGTH``.
        """
        payload = CookiePayload(
            screen_name=screen_name,
            instance_id=instance_id,
            multiconn_flags=multiconn_flags,
            service=service,
            client_id=client_id,
            room=room,
            expires_at=self._clock.seconds() + self.lifetime,
            cookie_id=self._random_bytes(_COOKIE_ID_LENGTH),
        )
        body = _pack_body(payload)
        return body + self._sign(body)

    def redeem(self, cookie: bytes, service: int) -> CookiePayload:
        """Check ``cookie`` for a connection to ``service`` and use it up.

        Returns what the cookie vouches for.  After a successful redeem the
        same cookie is refused as "replayed" until it expires.  A refused
        cookie is not used up.

        :raises InvalidCookie: with the first reason that applies, in the
            order malformed, bad signature, expired, replayed, wrong service.
            Never raises anything else, whatever ``cookie`` is.
        """
        now = self._clock.seconds()
        self._forget_expired(now)
        payload = self._verify(cookie)
        if now >= payload.expires_at:
            raise InvalidCookie("expired")
        if payload.cookie_id in self._redeemed:
            raise InvalidCookie("replayed")
        if payload.service != service:
            raise InvalidCookie("wrong service")
        self._redeemed.add(payload.cookie_id)
        heapq.heappush(self._forget_at, (payload.expires_at, payload.cookie_id))
        return payload

    def _sign(self, body: bytes) -> bytes:
        return hmac.digest(self._key, body, "sha256")

    def _verify(self, cookie: object) -> CookiePayload:
        """The payload of an authentic cookie, without the time or use checks."""
        if not isinstance(cookie, bytes | bytearray | memoryview):
            raise InvalidCookie("malformed")
        cookie = bytes(cookie)
        if len(cookie) != COOKIE_LENGTH:
            raise InvalidCookie("malformed")
        body, mac = cookie[:_BODY_LENGTH], cookie[_BODY_LENGTH:]
        if not hmac.compare_digest(mac, self._sign(body)):
            raise InvalidCookie("bad signature")
        return _unpack_body(body)

    def _forget_expired(self, now: float) -> None:
        heap = self._forget_at
        while heap and heap[0][0] <= now:
            _, cookie_id = heapq.heappop(heap)
            self._redeemed.discard(cookie_id)
