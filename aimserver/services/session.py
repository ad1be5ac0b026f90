# -*- test-case-name: tests.test_service_session -*-
"""The one place a session lives and dies: the session service (a realm, in
Twisted words' terms).

Every kind of connection signs on through it with a small interface (a
writer for pushes and a way to close with a reason): the BOS connection
today, the alert service connection, and next the chat service and the
browser client. It redeems the cookie, checks the account, attaches the
session to the registry under the multisession policy (displacing others),
writes the sign-on/off log, keeps the per-user rate state and the sign-on
allowance, issues the 01,04 redirects with their cookies, and tells the
services that registered as observers when a session is attached, comes
online and is gone. Connections only frame, parse, dispatch and write.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Mapping
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Interface

from aimserver.registry import (
    MAX_SERVICE_CONNECTIONS,
    InstanceInUse,
    ISessionConnection,
    SessionInstance,
    TooManySessions,
    User,
    UserRegistry,
)
from aimserver.services import ratelimit
from aimserver.services.base import then
from aimserver.services.cookies import CookieJar, CookiePayload, InvalidCookie
from aimserver.services.presence import Presence
from aimserver.services.sessionlog import SessionLog
from aimserver.store.interfaces import Account, IAccountStore, account_now
from aimserver.wire import ratelimit as rate_wire
from aimserver.wire.codes import DisconnectReason, FoodGroup, LoginError, LoginTag
from aimserver.wire.tlv import Tlv

#: The sign-on SNACs the sign-on allowance covers (``registry.SIGNON_ALLOWANCE``):
#: queries and settings that affect only the session itself. Anything relayed
#: to another user (IMs, typing, client errors, warnings, info lookups)
#: always counts.
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


class SignOnRefused(Exception):
    """The connection may not sign on: close it with ``tlvs`` in its
    channel-4 frame (the refusal is already logged)."""

    def __init__(self, tlvs: tuple[Tlv, ...] = ()) -> None:
        super().__init__(tlvs)
        self.tlvs = tlvs


@attrs.frozen
class Attached:
    """A signed-on connection: the session it belongs to, and the service
    it serves (``FoodGroup.OSERVICE`` for the session's own connection)."""

    session: SessionInstance
    service: int
    #: The room cookie a chat connection's login cookie names; else empty.
    room: bytes = b""


@attrs.frozen
class RateDecision:
    """What the rate limits say about one incoming SNAC."""

    allowed: bool
    #: A 01,0A body to send the connection first, if any.
    notice: bytes | None = None
    #: Far over the limit: close the connection.
    disconnect: bool = False


ALLOWED = RateDecision(True)


class ISessionObserver(Interface):
    """What a service implements to hear about sessions' lives (any subset:
    the session service calls the methods an observer has)."""

    def session_attached(session: SessionInstance) -> None:
        """A session was attached (it has not sent client-ready yet)."""

    def session_online(session: SessionInstance) -> None:
        """A session sent client-ready: it counts for presence and gets IMs."""

    def session_gone(user: User, session: SessionInstance) -> None:
        """A session was detached (signed off, dropped or displaced)."""


class RateLimits:
    """Per-user rate limiters shared by all of a user's sessions."""

    def __init__(self, clock: IReactorTime, enabled: bool = True) -> None:
        self.clock = clock
        self.enabled = enabled
        self._limiters: OrderedDict[str, ratelimit.RateLimiter] = OrderedDict()
        #: SNACs dropped by the limits since start (for /metrics).
        self.dropped = 0

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

    def snapshots(self, key: str) -> dict[int, rate_wire.RateSnapshot] | None:
        """The user's live levels for a 01,07 (a second session, or a quick
        re-login, must not be told it starts fresh); None when there is no
        state (or limiting is off): the fresh default reply applies."""
        limiter = self._limiters.get(key) if self.enabled else None
        return None if limiter is None else limiter.snapshots(self.now_ms())

    def check(
        self, session: SessionInstance, family: int, subtype: int, client_ready: bool
    ) -> RateDecision:
        """Count one SNAC of ``session`` (from a connection that has or has
        not sent client-ready) against the user's rate class for it, across
        all the user's sessions, except a bounded sign-on burst (see
        ``SIGNON_ALLOWANCE``). Over the limit SNACs are dropped; far over it
        the connection is closed."""
        if not self.enabled or session.rate_exempt:
            return ALLOWED
        if not client_ready and session.signon_allowance > 0 and (family, subtype) in SIGNON_SNACS:
            session.signon_allowance -= 1
            return ALLOWED
        class_id = ratelimit.class_of(family, subtype)
        limiter = self.limiter(session.user_key)
        now_ms = self.now_ms()
        result = limiter.check(class_id, now_ms)
        change = result.changed_to
        notice = None
        if change is not None and (
            change in (rate_wire.RateChange.LIMITED, rate_wire.RateChange.CLEARED)
            or class_id in session.rate_subscriptions
        ):
            snapshot = limiter.snapshot(class_id, now_ms)
            extended = rate_wire.wants_extended_rate_records(
                session.family_versions.get(FoodGroup.OSERVICE)
            )
            notice = rate_wire.pack_rate_change(
                change, ratelimit.DEFAULT_RATE_CLASSES[class_id - 1], *snapshot, extended=extended
            )
        disconnect = result.state == ratelimit.RateState.DISCONNECT
        if notice is None and not disconnect and result.allowed:
            return ALLOWED
        allowed = result.allowed and not disconnect
        if not allowed:
            self.dropped += 1
        return RateDecision(allowed, notice, disconnect)


class SessionService:
    """Signs connections on and off; see the module docstring."""

    log = Logger()

    def __init__(
        self,
        *,
        registry: UserRegistry,
        presence: Presence,
        store: IAccountStore,
        cookies: CookieJar,
        rate_limits: RateLimits,
        clock: IReactorTime,
        address: Any,
        service_families: Collection[int] = (),
        service_addresses: Mapping[int, Callable[[], str]] | None = None,
        service_limits: Mapping[int, int] | None = None,
    ) -> None:
        self.registry = registry
        self.presence = presence
        self.store = store
        self.cookies = cookies
        self.rate_limits = rate_limits
        self.clock = clock
        #: ``() -> "host:port"`` where service connections are sent (01,05).
        self.address = address
        #: Families a 01,04 may be redirected to (services this process runs).
        self.service_families = frozenset(service_families)
        #: Families served on another listener (chat): family -> its address.
        self.service_addresses = dict(service_addresses or {})
        #: Connections of a family one session may hold, where not
        #: ``MAX_SERVICE_CONNECTIONS`` (one chat connection per room).
        self.service_limits = dict(service_limits or {})
        self.session_log = SessionLog(clock)
        #: Sessions signed on since start, and BOS/service sign-ons refused,
        #: by reason (a fixed set), for the management API's /stats.
        self.signons = 0
        self.refusals: Counter[str] = Counter()
        self._observers: list[object] = [presence]

    def observe(self, observer: object) -> None:
        """Register an ``ISessionObserver`` (in order: presence is first)."""
        self._observers.append(observer)

    def _notify(self, event: str, *args: Any) -> None:
        for observer in self._observers:
            method = getattr(observer, event, None)
            if method is None:
                continue
            with self.log.failuresHandled(
                "{observer} on {event}", observer=type(observer).__name__, event=event
            ):
                method(*args)

    # -- signing on ----------------------------------------------------------------------

    def sign_on(
        self,
        cookie: bytes,
        families: Collection[int],
        connection: ISessionConnection,
        peer: str,
    ) -> Attached | Deferred[Attached]:
        """Redeem ``cookie`` for one of ``families`` (what the listener
        serves) and attach ``connection``: as a new session (a BOS cookie) or
        as a service connection of the session its cookie names. Raises (or
        fails with) ``SignOnRefused``. ``peer`` is "ip:port"."""
        payload = self._redeem(cookie, families, peer)
        if payload.service != FoodGroup.OSERVICE:
            return self._attach_service(payload, connection, peer)
        # Seen at login a moment ago, the account is usually cached: then no
        # Deferred and no held frames.
        return then(
            account_now(self.store, payload.screen_name), self._attach, payload, connection, peer
        )

    def _redeem(self, cookie: bytes, families: Collection[int], peer: str) -> CookiePayload:
        reason = "wrong service"
        for family in families:
            try:
                return self.cookies.redeem(cookie, family)
            except InvalidCookie as e:
                if e.reason != "wrong service":
                    reason = e.reason
                    break
        self.log.info("{peer} refused: {reason} cookie", peer=peer, reason=reason)
        self.refusals[f"{reason} cookie"] += 1
        raise SignOnRefused()

    def _attach_service(
        self, cookie: CookiePayload, connection: ISessionConnection, peer: str
    ) -> Attached:
        """A service connection joins the session instance named in its cookie."""
        user = self.registry.get(cookie.screen_name)
        session = user.instances.get(cookie.instance_id) if user is not None else None
        if session is None or session.closed:
            self.log.info("{peer} refused: service cookie for a session that is gone", peer=peer)
            self.refusals["session gone"] += 1
            raise SignOnRefused()
        limit = self.service_limits.get(cookie.service, MAX_SERVICE_CONNECTIONS)
        if not session.add_service_connection(connection, cookie.service, limit):
            self.log.info(
                "{peer} refused: {screen_name} instance {instance} already has its"
                " service connections for {family:#06x}",
                peer=peer,
                screen_name=cookie.screen_name,
                instance=session.instance_id,
                family=cookie.service,
            )
            self.refusals["too many service connections"] += 1
            raise SignOnRefused()
        self.log.info(
            "{screen_name}: service {family:#06x} connected for instance {instance}",
            screen_name=cookie.screen_name,
            family=cookie.service,
            instance=session.instance_id,
        )
        return Attached(session, cookie.service, cookie.room)

    def _attach(
        self,
        account: Account | None,
        cookie: CookiePayload,
        connection: ISessionConnection,
        peer: str,
    ) -> Attached:
        if connection.closing:
            # Gone while its account was read: nothing to attach.
            raise SignOnRefused()
        if account is None or account.suspended:
            self.log.info(
                "{screen_name} refused: account gone or suspended", screen_name=cookie.screen_name
            )
            self.refusals["account gone or suspended"] += 1
            raise SignOnRefused()
        try:
            session, displaced = self.registry.add_instance(
                account,
                connection,
                instance_id=cookie.instance_id,
                multiconn_flags=cookie.multiconn_flags,
                client_id=cookie.client_id,
                ip=peer.rsplit(":", 1)[0],
                now=self.clock.seconds(),
            )
        except (TooManySessions, InstanceInUse):
            self.log.info(
                "{screen_name} refused: too many sessions or instance in use",
                screen_name=account.screen_name,
            )
            self.refusals["too many sessions"] += 1
            raise SignOnRefused((Tlv.u16(LoginTag.ERROR_CODE, LoginError.RATE_LIMIT),)) from None
        session.rate_exempt = account.bot
        user = self.registry.user_of(session)
        for old in displaced:
            self.log.info(
                "{screen_name}: instance {instance} displaced by a new login",
                screen_name=account.screen_name,
                instance=old.instance_id,
            )
            old.connection.disconnect(DisconnectReason.SIGNED_ON_ELSEWHERE)
            self._notify("session_gone", user, old)
        self.signons += 1
        self.session_log.signed_on(
            account.screen_name, peer, session.instance_id, cookie.multiconn_flags, cookie.client_id
        )
        self._notify("session_attached", session)
        return Attached(session, FoodGroup.OSERVICE)

    def client_ready(self, session: SessionInstance) -> None:
        """01,02 on the session's own connection: it now counts for presence
        and gets IMs; the observers follow (arrivals first, then offline
        messages and the multisession notice)."""
        if session.online or self.registry.user_of(session) is None:
            return
        session.online = True
        self._notify("session_online", session)

    # -- service connections -------------------------------------------------------------

    def redirect(
        self, session: SessionInstance, family: int, room: bytes = b""
    ) -> tuple[str, bytes] | None:
        """Address and cookie for a service connection of ``session`` (01,05)
        (to the chat room ``room``), or None for a service this server does
        not run or the session may open no more of."""
        if family not in self.service_families:
            return None
        user = self.registry.user_of(session)
        if user is None:
            return None
        cookie = self.cookies.issue(
            screen_name=user.screen_name,
            instance_id=session.instance_id,
            multiconn_flags=session.multiconn_flags,
            service=family,
            client_id=session.client_id,
            room=room,
        )
        return self.service_addresses.get(family, self.address)(), cookie

    # -- signing off ---------------------------------------------------------------------

    def closing(self, session: SessionInstance, connection: ISessionConnection) -> None:
        """The session's own connection is closing: from now on it gets
        nothing (offline messages handed to it would be lost), even before
        the TCP close is seen."""
        if session.connection is not connection or session.closed:
            return
        session.closed = True
        user = self.registry.user_of(session)
        if user is not None:
            self.presence.invalidate(user)

    def connection_lost(self, session: SessionInstance, connection: ISessionConnection) -> None:
        """A connection of ``session`` is gone: a service connection leaves
        it; its own connection ends it."""
        if session.connection is not connection:
            session.remove_service_connection(connection)
            return
        user = self.registry.detach(session)
        if user is not None:
            self.session_log.signed_off(user.screen_name, session.instance_id)
            self._notify("session_gone", user, session)

    def stop(self) -> None:
        """The listeners stopped: write what the session log holds."""
        self.session_log.stop()
