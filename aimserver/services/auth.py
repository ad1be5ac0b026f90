# -*- test-case-name: tests.test_service_auth -*-
"""The authorizer: checks credentials from either login method and hands out
a BOS address and a cookie.

Both methods end in the same TLVs (LOGIN.md §2.3, §3.5): the roasted FLAP
login carries them in a channel-4 frame, BUCP in a 17,03 SNAC. The cookie
carries a fresh session instance id and the client's multi-connection flags
(TLV 0x4A) to the BOS connection, where the multisession decision is made.

BUCP has two digest forms (LOGIN.md §3.4), and the server learns which one a
client uses only at 17,02. With ``allow_weak_hash`` (``[auth]``, the
default) 17,07 sends the account's fixed auth key and either form is
accepted: AIM 3.5-4.7 send only the weak one, but a captured 17,02 replays
for ever. Without it, every 17,07 sends a fresh random challenge, only the
strong form (TLV 0x4C) is accepted, checked against MD5(password), and a
captured login is useless on any other connection.
"""

from __future__ import annotations

import hmac
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from aimserver.registry import (
    MULTICONN_LEGACY,
    MULTICONN_MULTI,
    MULTICONN_SINGLE,
    TooManySessions,
    UserRegistry,
)
from aimserver.services.base import then
from aimserver.services.cookies import MAX_CLIENT_ID_LENGTH, CookieJar
from aimserver.services.countedlog import CountedLog
from aimserver.services.loginlimit import FailedLogins, LoginLimiter
from aimserver.store.credentials import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    Credentials,
    check_bucp_digest,
    check_challenged_digest,
    check_roasted_password,
    credentials_for,
    new_challenge,
    password_md5,
    roast,
)
from aimserver.store.interfaces import Account, IAccountStore, StoreError, account_now
from aimserver.wire.codes import FoodGroup, LoginError, LoginTag
from aimserver.wire.errors import MalformedData
from aimserver.wire.screenname import (
    decode_screen_name,
    is_account_name,
    is_valid_screen_name,
    normalize,
)
from aimserver.wire.tlv import Tlv, TlvList

DIGEST_SIZE = 16
#: Seconds between the log lines that count overload refusals.
SHED_LOG_INTERVAL = 10.0
#: How much of a refused screen name a log line shows (it is the client's input).
MAX_LOGGED_NAME = 32
#: Login error 0x001B, "client too old: upgrade required" (LOGIN.md §4): a
#: weak-hash 17,02 (no TLV 0x4C) when ``allow_weak_hash`` is off.
UPGRADE_REQUIRED = 0x001B


@attrs.frozen
class LoginResult:
    """The outcome of a login attempt, as the TLVs of the reply."""

    screen_name: str
    error: int | None = None
    bos_address: str = ""
    cookie: bytes = b""

    def tlvs(self) -> TlvList:
        if self.error is not None:
            # A refusal names the screen name as the client sent it, but only
            # one that could be a screen name: anything else (300 bytes, a
            # NUL, "!") is the client's garbage and is not sent back.
            echoed = self.screen_name if is_valid_screen_name(self.screen_name) else ""
            return TlvList(
                (
                    Tlv(LoginTag.SCREEN_NAME, echoed.encode("ascii")),
                    Tlv.u16(LoginTag.ERROR_CODE, self.error),
                )
            )
        return TlvList(
            (
                Tlv(LoginTag.SCREEN_NAME, self.screen_name.encode("ascii", "replace")),
                Tlv(LoginTag.BOS_ADDRESS, self.bos_address.encode("ascii")),
                Tlv(LoginTag.COOKIE, self.cookie),
            )
        )


def multiconn_flags(tlvs: TlvList) -> int:
    """TLV 0x4A: 0x01 joins other sessions, 0x03 wants to be alone; anything
    else (or absent) is a legacy client (LOGIN.md §5)."""
    value = tlvs.get(LoginTag.MULTICONN_FLAGS)
    if value is not None and len(value) == 1 and value[0] in (MULTICONN_MULTI, MULTICONN_SINGLE):
        return value[0]
    return MULTICONN_LEGACY


def client_id_problem(tlvs: TlvList) -> str | None:
    """Why TLV 0x03 (client id string) is refused, or None when it is absent or
    fine: it must be UTF-8 and fit the cookie (``MAX_CLIENT_ID_LENGTH``
    bytes; real clients send 10-60 ASCII bytes)."""
    raw = tlvs.get(LoginTag.CLIENT_ID_STRING)
    if raw is None:
        return None
    if len(raw) > MAX_CLIENT_ID_LENGTH:
        return f"client id string of {len(raw)} bytes"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "client id string is not UTF-8"
    return None


def client_id_string(tlvs: TlvList) -> str:
    """TLV 0x03 as text, once ``client_id_problem`` found nothing wrong with
    it (so it fits the cookie); characters that do not print show as "?"."""
    text = (tlvs.get(LoginTag.CLIENT_ID_STRING) or b"").decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text)


def requested_name(tlvs: TlvList) -> str:
    raw = tlvs.get(LoginTag.SCREEN_NAME)
    if raw is None:
        raise MalformedData("login request without a screen name")
    return decode_screen_name(raw)


class Authorizer:
    """The logic of the auth service, free of sockets."""

    log = Logger()

    def __init__(
        self,
        store: IAccountStore,
        registry: UserRegistry,
        cookies: CookieJar,
        bos_address: Callable[[], str],
        auto_register: bool = False,
        limiter: LoginLimiter | None = None,
        clock: IReactorTime | None = None,
        reveal_unknown_names: bool = False,
        stand_in_secret: bytes = b"",
        access: Any = None,
        allow_weak_hash: bool = True,
    ) -> None:
        self.store = store
        #: BUCP with the fixed per-account key and both digest forms (AIM
        #: 3.5-4.7 send only the weak one; a captured login replays). Off:
        #: a random challenge per 17,06 and the strong form only.
        self.allow_weak_hash = allow_weak_hash
        #: The [access] lists (``services.access``): denied names get 0x0011.
        self.access = access
        #: Refuse an unknown name as such (0x0001), as AOL did; by default
        #: it is answered as a wrong password, so that logins do not tell
        #: which names exist.
        self.reveal_unknown_names = reveal_unknown_names
        #: Keys the stand-in auth keys of unknown names (``_stand_in_key``).
        self._stand_in_secret = hmac.new(
            stand_in_secret or os.urandom(32), b"aimserver stand-in auth key", "sha256"
        ).digest()
        self.registry = registry
        self.cookies = cookies
        self.bos_address = bos_address
        self.auto_register = auto_register
        #: Wrong passwords by address and by name, for back-off.
        self.failures = FailedLogins()
        #: Logins refused since start, by login error (for /stats).
        self.refusals: Counter[str] = Counter()
        self.limiter = limiter
        self.clock = clock
        #: Overload refusals (0x0018), one log line a burst.
        self.shed = (
            CountedLog(self.log, clock, "logins refused with 0x0018 (overload)", SHED_LOG_INTERVAL)
            if clock is not None
            else None
        )

    def admit(self, screen_name: str, ip: str) -> LoginResult | None:
        """A refusal (0x0018, "connecting too frequently") when the server or
        this address is over its login rate, or this address or name is
        backing off after wrong passwords; else None."""
        if self.access is not None and not self.access.admits_name(screen_name):
            return self.refuse(screen_name, LoginError.SUSPENDED, "denied by [access]")
        if self.clock is None:
            return None
        now = self.clock.seconds()
        if self.failures.blocked(ip, normalize(screen_name), now):
            return self._shed(screen_name, now, "backing off after wrong passwords")
        if self.limiter is None or self.limiter.admit(ip, now):
            return None
        return self._shed(screen_name, now, "login rate")

    def answered(self, result: LoginResult, ip: str) -> None:
        """A login was answered: a wrong password counts towards back-off
        for the address and the name; a success clears the name's count."""
        if self.clock is None:
            return
        key = normalize(result.screen_name)
        if result.error == LoginError.BAD_PASSWORD:
            self.failures.failed(ip, key, self.clock.seconds())
        elif result.error is None:
            self.failures.succeeded(key)

    def challenge(self, screen_name: str) -> str | LoginResult | Deferred[str | LoginResult]:
        """17,06: the account's auth key (the MD5 salt), or a refusal. With
        auto-registration an unknown but valid name gets a fresh key, and the
        account is created from the digest at 17,02. Synchronous when the
        account is cached: no Deferred on the common path. Without
        ``allow_weak_hash`` every name, known or not, gets a fresh random
        challenge (unless unknown names are revealed)."""
        if not is_account_name(screen_name):
            return self.refuse(screen_name, LoginError.INVALID_SCREEN_NAME, "invalid screen name")
        if not self.allow_weak_hash and not self.reveal_unknown_names:
            # Nothing about the account goes into the challenge: no lookup.
            return new_challenge()
        return then(account_now(self.store, screen_name), self._auth_key, screen_name)

    def _auth_key(self, account: Account | None, screen_name: str) -> str | LoginResult:
        if not self.allow_weak_hash and (account is not None or self.auto_register):
            return new_challenge()
        if account is not None:
            return account.auth_key
        if self.auto_register:
            return os.urandom(16).hex()
        if not self.reveal_unknown_names:
            return self._stand_in_key(screen_name)
        return self.refuse(screen_name, LoginError.INVALID_SCREEN_NAME, "unknown screen name")

    def _stand_in_key(self, screen_name: str) -> str:
        """The auth key an unknown name is given, so that 17,07 looks the
        same for it as for a real one: the same for every ask (a real
        account's key does not change either), unguessable without the
        server's secret."""
        digest = hmac.new(self._stand_in_secret, normalize(screen_name).encode(), "sha256")
        return digest.hexdigest()[:32]

    def _unknown(self, screen_name: str) -> LoginResult:
        """An unknown name at the password check: a wrong password
        (0x0005) unless names are revealed; the log says which it was."""
        if self.reveal_unknown_names:
            return self.refuse(screen_name, LoginError.INVALID_SCREEN_NAME, "unknown screen name")
        return self.refuse(screen_name, LoginError.BAD_PASSWORD, "unknown screen name")

    def bad_input(self, screen_name: str, tlvs: TlvList) -> LoginResult | None:
        """The refusal of a login request no client should send, or None: a
        name that no account can have (0x0001), or a client id string that
        is oversize or not UTF-8 (0x0006, "internal client error (bad
        input)"). Checked before any lookup, for either method. The name
        the server speaks as is no account's (``SYSTEM_SENDER``)."""
        if not is_account_name(screen_name):
            return self.refuse(screen_name, LoginError.INVALID_SCREEN_NAME, "invalid screen name")
        problem = client_id_problem(tlvs)
        if problem is not None:
            return self.refuse(screen_name, LoginError.INTERNAL_CLIENT_ERROR, problem)
        return None

    def login_bucp(
        self, tlvs: TlvList, offered_key: str | None
    ) -> LoginResult | Deferred[LoginResult]:
        """17,02: check the MD5 digest against the stored ones. The protocol
        has checked that a 17,06 for this name came first (``offered_key``).
        Without ``allow_weak_hash`` the digest must be the strong form,
        answering the random challenge ``offered_key``."""
        screen_name = requested_name(tlvs)
        refusal = self.bad_input(screen_name, tlvs)
        if refusal is not None:
            return refusal
        digest = tlvs.get(LoginTag.PASSWORD_MD5)
        if digest is None or len(digest) != DIGEST_SIZE:
            return self.refuse(screen_name, LoginError.INVALID_SCREEN_NAME, "no digest")
        if not self.allow_weak_hash:
            if not tlvs.has(LoginTag.NEW_HASH):
                # Refused before any lookup: the answer tells nothing of the name.
                return self.refuse(
                    screen_name,
                    UPGRADE_REQUIRED,
                    "weak-hash login (no TLV 0x4C) while [auth] allow_weak_hash is off",
                )
            if offered_key is None:
                return self.refuse(
                    screen_name,
                    LoginError.INTERNAL_CLIENT_ERROR,
                    "login request without a challenge",
                )
            return then(
                account_now(self.store, screen_name),
                self._check_challenged,
                screen_name,
                tlvs,
                digest,
                offered_key,
            )
        return then(
            account_now(self.store, screen_name),
            self._bucp_account,
            screen_name,
            tlvs,
            digest,
            offered_key,
        )

    def _bucp_account(
        self,
        account: Account | None,
        screen_name: str,
        tlvs: TlvList,
        digest: bytes,
        offered_key: str | None,
    ) -> LoginResult | Deferred[LoginResult]:
        if account is None and self.auto_register and offered_key is not None:
            created = Deferred.fromCoroutine(
                self._register_from_digest(
                    screen_name, offered_key, digest, tlvs.has(LoginTag.NEW_HASH)
                )
            )
            return created.addCallback(self._check_bucp, screen_name, tlvs, digest)
        return self._check_bucp(account, screen_name, tlvs, digest)

    def _check_bucp(
        self, account: Account | None, screen_name: str, tlvs: TlvList, digest: bytes
    ) -> LoginResult:
        if account is None:
            return self._unknown(screen_name)
        if not check_bucp_digest(account, digest):
            return self.refuse(account.screen_name, LoginError.BAD_PASSWORD, "wrong password")
        return self._grant(account, tlvs)

    def _check_challenged(
        self,
        account: Account | None,
        screen_name: str,
        tlvs: TlvList,
        digest: bytes,
        challenge: str,
    ) -> LoginResult:
        """A strong digest answering a random challenge (no weak hashes)."""
        if account is None:
            if self.auto_register:
                # A challenged digest reveals nothing the account could keep.
                self.log.info(
                    "auto-registration of {screen_name!r} refused: it needs a roasted login"
                    " (or [auth] allow_weak_hash) to learn the password",
                    screen_name=screen_name[:MAX_LOGGED_NAME],
                )
            return self._unknown(screen_name)
        if account.password_md5 is None:
            # Refused like a wrong password, so that it tells nothing more
            # than an unknown name does; the log says why.
            return self.refuse(
                account.screen_name,
                LoginError.BAD_PASSWORD,
                "MD5(password) not known (allow_weak_hash is off): the password must be"
                " reset, or one roasted login made",
            )
        if not check_challenged_digest(account, challenge, digest):
            return self.refuse(account.screen_name, LoginError.BAD_PASSWORD, "wrong password")
        return self._grant(account, tlvs)

    def login_roasted(self, tlvs: TlvList) -> LoginResult | Deferred[LoginResult]:
        """FLAP channel-1 login: un-roast the password and check the weak digest."""
        screen_name = requested_name(tlvs)
        refusal = self.bad_input(screen_name, tlvs)
        if refusal is not None:
            return refusal
        roasted = tlvs.get(LoginTag.ROASTED_PASSWORD) or b""
        return then(
            account_now(self.store, screen_name), self._roasted_account, screen_name, tlvs, roasted
        )

    def _roasted_account(
        self, account: Account | None, screen_name: str, tlvs: TlvList, roasted: bytes
    ) -> LoginResult | Deferred[LoginResult]:
        if account is None and self.auto_register:
            created = Deferred.fromCoroutine(self._register(screen_name, roast(roasted)))
            return created.addCallback(self._check_roasted, screen_name, tlvs, roasted)
        return self._check_roasted(account, screen_name, tlvs, roasted)

    def _check_roasted(
        self, account: Account | None, screen_name: str, tlvs: TlvList, roasted: bytes
    ) -> LoginResult | Deferred[LoginResult]:
        if account is None:
            return self._unknown(screen_name)
        if not check_roasted_password(account, roasted):
            return self.refuse(account.screen_name, LoginError.BAD_PASSWORD, "wrong password")
        if account.password_md5 is None:
            learnt = Deferred.fromCoroutine(self._learn_password_md5(account, roast(roasted)))
            return learnt.addCallback(lambda _: self._grant(account, tlvs))
        return self._grant(account, tlvs)

    async def _learn_password_md5(self, account: Account, password: bytes) -> None:
        """A roasted login proved the password of an account whose
        MD5(password) is not known (made before it was kept): keep it now,
        same key and digests, so that its strong-hash BUCP logins work
        without weak hashes. Only while the key is still the one checked; a
        store error is logged and the login goes on."""
        credentials = Credentials(
            auth_key=account.auth_key,
            weak_md5=account.weak_md5,
            strong_md5=account.strong_md5,
            password_md5=password_md5(password),
        )
        try:
            kept = await self.store.set_credentials(
                account.screen_name, credentials, account.auth_key
            )
        except StoreError as e:
            self.log.info(
                "could not keep MD5(password) of {screen_name!r}: {error}",
                screen_name=account.screen_name,
                error=str(e),
            )
            return
        if kept:
            self.log.info(
                "kept MD5(password) of {screen_name!r} from its roasted login",
                screen_name=account.screen_name,
            )

    def _grant(self, account: Account, tlvs: TlvList) -> LoginResult:
        if account.suspended:
            return self.refuse(account.screen_name, LoginError.SUSPENDED, "suspended")
        flags = multiconn_flags(tlvs)
        try:
            self.registry.check_login(account, flags)
        except TooManySessions:
            return self.refuse(account.screen_name, LoginError.RATE_LIMIT, "too many sessions")
        cookie = self.cookies.issue(
            screen_name=account.screen_name,
            instance_id=self.registry.new_instance_id(),
            multiconn_flags=flags,
            service=int(FoodGroup.OSERVICE),
            client_id=client_id_string(tlvs),
        )
        return LoginResult(account.screen_name, bos_address=self.bos_address(), cookie=cookie)

    def _shed(self, screen_name: str, now: float, why: str) -> LoginResult:
        """An overload refusal (0x0018). In a reconnect storm there are tens
        of thousands, and a log line costs as much as the refusal: the first
        after a quiet spell is logged, the next ones are counted into one line
        every SHED_LOG_INTERVAL while they go on."""
        self.refusals[_error_name(LoginError.RATE_LIMIT_RESERVATION)] += 1
        if self.shed is not None:
            self.shed.note(
                why,
                "login refused for {screen_name!r}: {why} (0x0018)",
                screen_name=screen_name,
                why=why,
            )
        return LoginResult(screen_name, error=LoginError.RATE_LIMIT_RESERVATION)

    def flush_shed(self, final: bool = False) -> None:
        """Log the overload refusals counted so far (``final``: the listener
        stops, leave no timer behind)."""
        if self.shed is not None:
            self.shed.flush(final)

    def refuse(self, screen_name: str, error: int, why: str) -> LoginResult:
        """A login refusal with ``error`` (LOGIN.md §4), and its one log line."""
        cut = len(screen_name) - MAX_LOGGED_NAME
        self.log.info(
            "login refused for {screen_name!r}{more}: {why} ({error:#06x})",
            screen_name=screen_name[:MAX_LOGGED_NAME],
            more=f" (+{cut} characters)" if cut > 0 else "",
            why=why,
            error=error,
        )
        self.refusals[_error_name(error)] += 1
        return LoginResult(screen_name, error=error)

    async def _register(self, screen_name: str, password: bytes) -> Account | None:
        """Roasted login reveals the password: derive both digests from its
        bytes as sent (so any charset round-trips)."""
        if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
            return None
        return await self._create(screen_name, credentials_for(password))

    async def _register_from_digest(
        self, screen_name: str, key: str, digest: bytes, strong: bool
    ) -> Account | None:
        """BUCP never reveals the password, so the account keeps the digest it
        was first sent: the same password gives the same digest under the same
        key. The other digest form stays unusable, and MD5(password) unknown,
        until `aimserver user passwd` sets a real password. (Only with
        ``allow_weak_hash``: a random challenge's digest is no use later.)"""
        unusable = os.urandom(DIGEST_SIZE)
        credentials = Credentials(
            auth_key=key,
            weak_md5=unusable if strong else digest,
            strong_md5=digest if strong else unusable,
        )
        return await self._create(screen_name, credentials)

    async def _create(self, screen_name: str, credentials: Credentials) -> Account | None:
        try:
            account = await self.store.create_account_with_credentials(screen_name, credentials)
        except StoreError as e:
            self.log.info(
                "auto-registration of {screen_name!r} failed: {error}",
                screen_name=screen_name,
                error=str(e),
            )
            # Lost a race with a concurrent registration: use the winner's account.
            return await self.store.get_account(screen_name)
        self.log.info("auto-registered {screen_name}", screen_name=screen_name)
        return account


def _error_name(error: int) -> str:
    """A login error's name (a fixed set, whatever the code)."""
    try:
        return f"login {LoginError(error).name.lower()}"
    except ValueError:
        return f"login error {error:#06x}"
