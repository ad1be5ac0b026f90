# -*- test-case-name: tests.test_protocol_bos -*-
"""The BOS connection: the session itself. It checks the cookie, registers a
session instance, and dispatches SNACs to the food-group services."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from aimserver import ratelimit
from aimserver.cookies import CookieJar, CookiePayload, InvalidCookie
from aimserver.protocols.flap import ConnectionSettings, FlapConnection, FlapFactory
from aimserver.registry import (
    InstanceInUse,
    ISessionConnection,
    SessionInstance,
    TooManySessions,
    UserRegistry,
)
from aimserver.services.base import HandlerTable, then
from aimserver.services.oservice import pack_families
from aimserver.services.presence import Presence
from aimserver.sessionlog import SessionLog
from aimserver.store.interfaces import Account, IUserStore, account_now
from aimserver.wire.codes import DisconnectReason, FoodGroup, LoginError, LoginTag, OService
from aimserver.wire.flap import SignonPayload
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv

#: The sign-on SNACs that allowance covers: queries and settings that affect
#: only the session itself. Anything relayed to another user (IMs, typing,
#: client errors, warnings, info lookups) always counts.
SIGNON_SNACS = frozenset(
    {
        (0x01, 0x06), (0x01, 0x08), (0x01, 0x0E), (0x01, 0x11), (0x01, 0x14),
        (0x01, 0x17), (0x01, 0x1E), (0x02, 0x02), (0x02, 0x04), (0x03, 0x02),
        (0x04, 0x02), (0x04, 0x04), (0x09, 0x02), (0x13, 0x02), (0x13, 0x04),
        (0x13, 0x05), (0x13, 0x07), (0x18, 0x06), (0x18, 0x16),
    }
)  # fmt: skip

#: Rate state outlives sessions (signing off and on must not reset it), so it
#: is kept for this many users who are no longer signed on, oldest dropped first.
MAX_REMEMBERED_RATE_STATES = 100_000


class RateLimits:
    """Per-user rate limiters shared by all of a user's sessions."""

    def __init__(self, clock: IReactorTime, enabled: bool = True) -> None:
        self.clock = clock
        self.enabled = enabled
        self._limiters: OrderedDict[str, ratelimit.RateLimiter] = OrderedDict()

    def limiter(self, key: str) -> ratelimit.RateLimiter:
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = ratelimit.RateLimiter()
            if len(self._limiters) > MAX_REMEMBERED_RATE_STATES:
                self._limiters.popitem(last=False)
        else:
            self._limiters.move_to_end(key)
        return limiter

    def now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    def snapshots(self, key: str) -> dict[int, ratelimit.RateSnapshot] | None:
        """The user's live levels for a 01,07 (a second session, or a quick
        re-login, must not be told it starts fresh); None when there is no
        state (or limiting is off): the fresh default reply applies."""
        limiter = self._limiters.get(key) if self.enabled else None
        return None if limiter is None else limiter.snapshots(self.now_ms())


@implementer(ISessionConnection)
class BosConnection(FlapConnection):
    service_name = "bos"
    log = Logger()

    def __init__(self, factory: BosFactory) -> None:
        super().__init__(factory.settings, factory.clock, factory.sweeper)
        self.bos = factory
        self.session: SessionInstance | None = None
        #: A service connection (alerts, ...) rather than the session's BOS connection.
        self.secondary = False
        self._client_ready = False
        self.snac_handlers = factory.handlers

    # -- sign-on ------------------------------------------------------------------------

    def signon_received(self, signon: SignonPayload) -> Any:
        cookie = signon.tlvs.get(LoginTag.COOKIE)
        if cookie is None:
            self.protocol_error("sign-on frame without a cookie")
            return None
        try:
            payload = self._redeem(cookie)
        except InvalidCookie as e:
            self.log.info("bos: {peer} refused: {reason} cookie", peer=self.peer, reason=e.reason)
            self.close()
            return None
        if payload.service != FoodGroup.OSERVICE:
            self._attach_service(payload)
            return None
        # Seen at login a moment ago, the account is usually cached: then no
        # Deferred and no held frames.
        return then(account_now(self.bos.store, payload.screen_name), self._attach, payload)

    def _redeem(self, cookie: bytes) -> CookiePayload:
        """A BOS cookie, or one for a service this listener also serves."""
        try:
            return self.bos.cookies.redeem(cookie, int(FoodGroup.OSERVICE))
        except InvalidCookie as e:
            if e.reason != "wrong service":
                raise
        for family in self.bos.services:
            try:
                return self.bos.cookies.redeem(cookie, family)
            except InvalidCookie as e:
                if e.reason != "wrong service":
                    raise
        raise InvalidCookie("wrong service")

    def _attach_service(self, cookie: CookiePayload) -> None:
        """A service connection joins the session instance named in its cookie."""
        user = self.bos.registry.get(cookie.screen_name)
        session = user.instances.get(cookie.instance_id) if user is not None else None
        if session is None or session.closed:
            self.log.info(
                "bos: {peer} refused: service cookie for a session that is gone", peer=self.peer
            )
            self.close()
            return
        if not session.add_service_connection(self, cookie.service):
            self.log.info(
                "bos: {peer} refused: {screen_name} instance {instance} already has its"
                " service connections for {family:#06x}",
                peer=self.peer,
                screen_name=cookie.screen_name,
                instance=session.instance_id,
                family=cookie.service,
            )
            self.close()
            return
        self.session = session
        self.secondary = True
        self.authenticated()
        families, self.snac_handlers = self.bos.services[cookie.service]
        self.log.info(
            "{screen_name}: service {family:#06x} connected for instance {instance}",
            screen_name=cookie.screen_name,
            family=cookie.service,
            instance=session.instance_id,
        )
        self._send_host_online(pack_families(families))

    def _attach(self, account: Account | None, cookie: CookiePayload) -> None:
        if self._closing:
            return
        if account is None or account.suspended:
            self.log.info(
                "bos: {screen_name} refused: account gone or suspended",
                screen_name=cookie.screen_name,
            )
            self.close()
            return
        registry = self.bos.registry
        try:
            session, displaced = registry.add_instance(
                account,
                self,
                instance_id=cookie.instance_id,
                multiconn_flags=cookie.multiconn_flags,
                client_id=cookie.client_id,
                ip=self.peer.rsplit(":", 1)[0],
                now=self.clock.seconds(),
            )
        except (TooManySessions, InstanceInUse):
            self.log.info(
                "bos: {screen_name} refused: too many sessions or instance in use",
                screen_name=account.screen_name,
            )
            self.close([Tlv.u16(LoginTag.ERROR_CODE, LoginError.RATE_LIMIT)])
            return
        self.session = session
        session.rate_exempt = account.bot
        self.authenticated()
        for old in displaced:
            self.log.info(
                "{screen_name}: instance {instance} displaced by a new login",
                screen_name=account.screen_name,
                instance=old.instance_id,
            )
            old.connection.disconnect(DisconnectReason.SIGNED_ON_ELSEWHERE)
        if displaced:
            self.bos.presence.session_gone(registry.user_of(session))
        self.bos.session_log.signed_on(
            account.screen_name,
            self.peer,
            session.instance_id,
            cookie.multiconn_flags,
            cookie.client_id,
        )
        self._send_host_online(self.bos.host_online)

    def _send_host_online(self, families: bytes) -> None:
        """01,03: the families this connection serves; the client may start."""
        self.send_snac(
            FoodGroup.OSERVICE, OService.HOST_ONLINE, families, self.bos.registry.next_request_id()
        )

    # -- dispatch -----------------------------------------------------------------------

    def call_handler(self, handler: Callable[..., Any], *args: Any) -> Any:
        if self.session is None:
            return handler(*args)
        return handler(self.session, *args)

    def snac_allowed(self, header: SnacHeader) -> bool:
        """Every SNAC counts against the user's rate class for it, across all
        the user's sessions (except a bounded sign-on burst, see
        ``SIGNON_ALLOWANCE``). Over the limit, SNACs are dropped; far over it,
        the connection is closed."""
        limits = self.bos.rate_limits
        if not limits.enabled or self.session is None or self.session.rate_exempt:
            return True
        class_id = ratelimit.class_of(header.family, header.subtype)
        if (header.family, header.subtype) == (FoodGroup.OSERVICE, OService.CLIENT_ONLINE):
            self._client_ready = True
        elif (
            not self._client_ready
            and self.session.signon_allowance > 0
            and (header.family, header.subtype) in SIGNON_SNACS
        ):
            self.session.signon_allowance -= 1
            return True
        limiter = limits.limiter(self.session.user_key)
        now_ms = limits.now_ms()
        result = limiter.check(class_id, now_ms)
        change = result.changed_to
        if change is not None and (
            change in (ratelimit.RateChange.LIMITED, ratelimit.RateChange.CLEARED)
            or class_id in self.session.rate_subscriptions
        ):
            self._send_rate_change(change, class_id, limiter, now_ms)
        if result.state == ratelimit.RateState.DISCONNECT:
            self.log.info("bos: closing {peer}: rate limit exceeded", peer=self.peer)
            self.close()
            return False
        return result.allowed

    def _send_rate_change(self, change: int, class_id: int, limiter: Any, now_ms: int) -> None:
        rate_class = ratelimit.DEFAULT_RATE_CLASSES[class_id - 1]
        snapshot = limiter.snapshot(class_id, now_ms)
        extended = ratelimit.wants_extended_rate_records(
            self.session.family_versions.get(FoodGroup.OSERVICE) if self.session else None
        )
        body = ratelimit.pack_rate_change(change, rate_class, *snapshot, extended=extended)
        self.send_snac(
            FoodGroup.OSERVICE,
            OService.RATE_PARAM_CHANGE,
            body,
            self.bos.registry.next_request_id(),
        )

    # -- ISessionConnection -------------------------------------------------------------

    def close(self, tlvs: Iterable[Tlv] = (), signoff: bool = True) -> None:
        """Closing: from now on the session gets nothing (offline messages
        handed to it would be lost), even before the TCP close is seen."""
        if self.session is not None and not self.secondary and not self.session.closed:
            self.session.closed = True
            user = self.bos.registry.user_of(self.session)
            if user is not None:
                self.bos.presence.invalidate(user)
        super().close(tlvs, signoff)

    def disconnect(self, reason: int | None) -> None:
        self.close([Tlv.u16(LoginTag.DISCONNECT_REASON, reason)] if reason else [])

    # -- sign-off -----------------------------------------------------------------------

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        super().connectionLost(reason)
        session, self.session = self.session, None
        if session is None:
            return
        if self.secondary:
            session.remove_service_connection(self)
            return
        user = self.bos.registry.detach(session)
        if user is not None:
            self.bos.session_log.signed_off(user.screen_name, session.instance_id)
            self.bos.presence.session_gone(user)


class BosFactory(FlapFactory):
    """The BOS listener and everything its connections share."""

    protocol = BosConnection  # type: ignore[assignment]

    def __init__(
        self,
        *,
        registry: UserRegistry,
        presence: Presence,
        store: IUserStore,
        cookies: CookieJar,
        handlers: HandlerTable,
        families: tuple[int, ...],
        services: dict[int, tuple[tuple[int, ...], HandlerTable]],
        rate_limits: RateLimits,
        settings: ConnectionSettings,
        clock: IReactorTime,
        keepalive_interval: float,
        on_stop: Iterable[Callable[[], object]] = (),
    ) -> None:
        super().__init__(settings, clock, keepalive_interval)
        #: Called when the listener stops (services write what they counted).
        self.on_stop = tuple(on_stop)
        self.registry = registry
        self.presence = presence
        self.store = store
        self.cookies = cookies
        self.handlers = handlers
        #: family -> (its connection's 01,03 families, handler table) for the
        #: service connections this listener also accepts.
        self.services = services
        self.host_online = pack_families(families)
        self.rate_limits = rate_limits
        self.session_log = SessionLog(clock)

    def stopFactory(self) -> None:
        super().stopFactory()
        self.session_log.stop()
        for stop in self.on_stop:
            stop()

    def buildProtocol(self, addr: object) -> BosConnection:
        connection = BosConnection(self)
        connection.factory = self
        return connection
