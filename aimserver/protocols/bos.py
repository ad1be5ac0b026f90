# -*- test-case-name: tests.test_protocol_bos -*-
"""The BOS connection: frames, parses, dispatches and writes. It signs on
through the session service (``services/session.py``), which owns the
session's life, and hands each SNAC to the food-group services."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from aimserver.protocols.flap import ConnectionSettings, FlapConnection, FlapFactory
from aimserver.services.base import HandlerTable, then
from aimserver.services.oservice import pack_families
from aimserver.services.session import (
    ALLOWED,
    Attached,
    ISessionConnection,
    SessionInstance,
    SessionService,
    SignOnRefused,
)
from aimserver.wire.codes import FoodGroup, LoginTag, OService
from aimserver.wire.flap import SignonPayload
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv

_OSERVICE = int(FoodGroup.OSERVICE)
_CLIENT_READY_SUBTYPE = int(OService.CLIENT_READY)


@implementer(ISessionConnection)
class BosConnection(FlapConnection):
    service_name = "bos"
    log = Logger()

    def __init__(self, factory: BosFactory) -> None:
        super().__init__(factory.settings, factory.clock, factory.sweeper, factory.writer)
        self.factory = factory
        self.sessions = factory.sessions
        self.session: SessionInstance | None = None
        #: A service connection (alerts, ...) rather than the session's own connection.
        self.service_connection = False
        self._client_ready = False
        self._rate_check = factory.sessions.rate_limits.check
        self.snac_handlers = factory.handlers

    # -- sign-on ------------------------------------------------------------------------

    def signon_received(self, signon: SignonPayload) -> Any:
        cookie = signon.tlvs.get(LoginTag.COOKIE)
        if cookie is None:
            self.protocol_error("sign-on frame without a cookie")
            return None
        try:
            attached = self.sessions.sign_on(cookie, self.factory.families, self, self.peer)
        except SignOnRefused as e:
            self.close(e.tlvs)
            return None
        return then(attached, self._attached)

    def _attached(self, attached: Attached) -> None:
        self.session = attached.session
        self.authenticated()
        if attached.service == FoodGroup.OSERVICE:
            self._send_host_online(self.factory.host_online)
            return
        self.service_connection = True
        families, self.snac_handlers = self.factory.services[attached.service]
        self._send_host_online(pack_families(families))

    def _handler_failed(self, failure: Failure, request: SnacHeader | None) -> None:
        if request is None and failure.check(SignOnRefused):
            # The account lookup answered with a refusal.
            self.close(failure.value.tlvs)
            return
        super()._handler_failed(failure, request)

    def _send_host_online(self, families: bytes) -> None:
        """01,03: the families this connection serves; the client may start."""
        self.send_snac(FoodGroup.OSERVICE, OService.HOST_ONLINE, families, self.next_request_id())

    # -- dispatch -----------------------------------------------------------------------

    def call_handler(self, handler: Callable[..., Any], *args: Any) -> Any:
        if self.session is None:
            return handler(*args)
        return handler(self.session, *args)

    def snac_allowed(self, header: SnacHeader) -> bool:
        """The session service counts every SNAC against the user's rate
        limits; over the limit it is dropped, far over it the connection closes."""
        if self.session is None:
            return True
        if header.subtype == _CLIENT_READY_SUBTYPE and header.family == _OSERVICE:
            self._client_ready = True
        decision = self._rate_check(self.session, header.family, header.subtype, self._client_ready)
        if decision is ALLOWED:
            return True
        if decision.notice is not None:
            self.send_snac(
                FoodGroup.OSERVICE,
                OService.RATE_PARAM_CHANGE,
                decision.notice,
                self.next_request_id(),
            )
        if decision.disconnect:
            self.log.info("bos: closing {peer}: rate limit exceeded", peer=self.peer)
            self.close()
        return decision.allowed

    # -- ISessionConnection -------------------------------------------------------------

    def close(self, tlvs: Iterable[Tlv] = (), signoff: bool = True) -> None:
        if self.session is not None:
            self.sessions.closing(self.session, self)
        super().close(tlvs, signoff)

    def disconnect(self, reason: int | None) -> None:
        self.close([Tlv.u16(LoginTag.DISCONNECT_REASON, reason)] if reason else [])

    # -- sign-off -----------------------------------------------------------------------

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        super().connectionLost(reason)
        session, self.session = self.session, None
        if session is not None:
            self.sessions.connection_lost(session, self)


class BosFactory(FlapFactory):
    """The BOS listener and what its connections share."""

    protocol = BosConnection  # type: ignore[assignment]

    def __init__(
        self,
        *,
        sessions: SessionService,
        handlers: HandlerTable,
        families: tuple[int, ...],
        services: dict[int, tuple[tuple[int, ...], HandlerTable]],
        settings: ConnectionSettings,
        clock: IReactorTime,
        keepalive_interval: float,
        on_stop: Iterable[Callable[[], object]] = (),
    ) -> None:
        super().__init__(settings, clock, keepalive_interval)
        self.sessions = sessions
        self.handlers = handlers
        #: family -> (its connection's 01,03 families, handler table) for the
        #: service connections this listener also accepts.
        self.services = services
        #: The cookies this listener redeems: BOS first, then its services.
        self.families: Collection[int] = (int(FoodGroup.OSERVICE), *services)
        self.host_online = pack_families(families)
        #: Called when the listener stops (services write what they counted).
        self.on_stop = tuple(on_stop)

    def stopFactory(self) -> None:
        super().stopFactory()
        for stop in self.on_stop:
            stop()

    def make_connection(self) -> BosConnection:
        return BosConnection(self)
