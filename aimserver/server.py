# -*- test-case-name: tests.test_e2e_foundation -*-
"""One server process: the shared registry, store, cookie jar and services,
and a factory per listener built over them.

``tap.makeService`` wraps this in listening services; the end-to-end tests
build it directly over a memory store and listen on free loopback ports.
"""

from __future__ import annotations

from collections import Counter

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Site

from aimserver.api.history import StatsHistory, sample_server
from aimserver.api.http import ApiResource, route
from aimserver.api.management import ManagementApi
from aimserver.api.metrics import Metrics
from aimserver.api.status import StatusPage
from aimserver.api.userdata import UserDataApi
from aimserver.config import Config
from aimserver.protocols.auth import AuthFactory
from aimserver.protocols.bos import BosFactory
from aimserver.protocols.chat import ChatFactory
from aimserver.protocols.flap import AddressLimit, ConnectionSettings, PendingConnections
from aimserver.registry import UserRegistry
from aimserver.services import alert as alert_service
from aimserver.services import bart as bart_service
from aimserver.services import odir as odir_service
from aimserver.services.access import AccessControl
from aimserver.services.account_watch import AccountWatch
from aimserver.services.admin import FAMILIES as ADMIN_FAMILIES
from aimserver.services.admin import AdminService
from aimserver.services.auth import Authorizer
from aimserver.services.base import HandlerTable, merge_handlers
from aimserver.services.buddy import BuddyService
from aimserver.services.chat import ChatService
from aimserver.services.chatnav import FAMILIES as CHATNAV_FAMILIES
from aimserver.services.chatnav import ChatNavService
from aimserver.services.cookies import CookieJar
from aimserver.services.feedbag import FeedbagService
from aimserver.services.icbm import IcbmService
from aimserver.services.locate import LocateService
from aimserver.services.loginlimit import LoginLimiter
from aimserver.services.motd import MotdService
from aimserver.services.oservice import BOS_FAMILIES, OServiceService
from aimserver.services.permitdeny import PermitDenyService
from aimserver.services.presence import Presence
from aimserver.services.reactorlag import ReactorLag
from aimserver.services.session import RateLimits, SessionService
from aimserver.services.stats import StatsService
from aimserver.services.userlookup import UserLookupService
from aimserver.services.warnings import WarningService
from aimserver.store.interfaces import IUserStore
from aimserver.web.service import WebService
from aimserver.web.site import web_factory
from aimserver.wire.codes import FoodGroup

COOKIE_SECRET_NAME = "cookie-hmac"
#: Services reached by 01,04 that this process runs (on the BOS listener).
SERVICE_FAMILIES = frozenset(
    {FoodGroup.ALERT, FoodGroup.ADMIN, FoodGroup.ODIR, FoodGroup.BART, FoodGroup.CHAT_NAV}
)
#: The families a chat connection serves (its 01,03).
CHAT_FAMILIES = (FoodGroup.OSERVICE, FoodGroup.CHAT)
COOKIE_SECRET_SIZE = 32


def connection_settings(config: Config) -> ConnectionSettings:
    return ConnectionSettings(
        max_frame_size=config.connection.max_frame_size,
        max_unauthenticated_frame_size=config.connection.max_unauthenticated_frame_size,
        login_timeout=config.auth.login_timeout,
        max_send_queue=config.connection.max_send_queue,
        trace=config.logging.trace_flap,
        idle_timeout=config.connection.idle_timeout,
    )


def login_limiter(config: Config) -> LoginLimiter | None:
    """The login admission buckets, or None when rate limiting is off."""
    if not config.ratelimit.enabled:
        return None
    per_second = config.auth.max_logins_per_second
    per_ip = config.auth.max_logins_per_ip_per_minute
    return LoginLimiter(per_second, 2 * per_second, per_ip / 60.0, per_ip)


class AimServer:
    """Everything the listeners of one process share."""

    def __init__(
        self, config: Config, store: IUserStore, cookie_secret: bytes, clock: IReactorTime
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.registry = UserRegistry(max_sessions=config.multisession.max_sessions)
        self.presence = Presence(self.registry, clock)
        self.cookies = CookieJar(cookie_secret, clock, lifetime=config.auth.cookie_lifetime)
        self.rate_limits = RateLimits(clock, enabled=config.ratelimit.enabled)
        #: "host:port" given to clients for BOS; set to the bound port when
        #: listening on port 0.
        self.bos_address = config.advertised_address("bos")
        #: The same for the chat listener.
        self.chat_address = config.advertised_address("chat")
        self.warnings = WarningService(self.registry, self.presence, store, clock)
        self.icbm = IcbmService(
            self.registry,
            self.presence,
            store,
            self.warnings,
            clock,
            notify=config.multisession.notify,
        )
        self.icbm.load_inbox_counts()
        self.chat = ChatService(self.registry, self.presence, store, clock, config.chat)
        self.sessions = SessionService(
            registry=self.registry,
            presence=self.presence,
            store=store,
            cookies=self.cookies,
            rate_limits=self.rate_limits,
            clock=clock,
            address=lambda: self.bos_address,
            service_families=SERVICE_FAMILIES | {FoodGroup.CHAT},
            service_addresses={FoodGroup.CHAT: lambda: self.chat_address},
            # One chat connection per room, and one more while a room's is replaced.
            service_limits={FoodGroup.CHAT: config.chat.max_rooms_per_user + 1},
        )
        self.sessions.observe(self.icbm)
        self.bart = bart_service.BartService(self.registry, self.presence, store, clock)
        self.feedbag = FeedbagService(self.registry, self.presence, store, clock, self.bart)
        self.sessions.observe(self.feedbag)
        self.motd = MotdService(self.registry, store, config.motd.text)
        self.sessions.observe(self.motd)
        settings = connection_settings(config)
        keepalive = config.connection.keepalive_interval
        self.access = AccessControl(config.access)
        self.authorizer = Authorizer(
            store,
            self.registry,
            self.cookies,
            lambda: self.bos_address,
            auto_register=config.auth.auto_register,
            limiter=login_limiter(config),
            clock=clock,
            reveal_unknown_names=config.auth.reveal_unknown_names,
            allow_weak_hash=config.auth.allow_weak_hash,
            stand_in_secret=cookie_secret,
            access=self.access,
        )
        self.auth_factory = AuthFactory(self.authorizer, settings, clock, keepalive)
        self.bos_factory = BosFactory(
            sessions=self.sessions,
            handlers=self.bos_handlers(),
            families=BOS_FAMILIES,
            services=self.service_handlers(),
            settings=settings,
            clock=clock,
            keepalive_interval=keepalive,
            on_stop=[
                self.sessions.stop,
                lambda: self.icbm.dropped.flush(final=True),
                self.presence.flush,
            ],
        )
        self.api = ManagementApi(
            self,
            timeouts={
                "login_timeout": config.auth.login_timeout,
                "cookie_lifetime": config.auth.cookie_lifetime,
                "keepalive_interval": config.connection.keepalive_interval,
                # None: connections never time out (AIM had no idle timeout).
                "idle_timeout": config.connection.idle_timeout or None,
                "idle_check_interval": config.connection.keepalive_interval,
            },
        )
        #: Signs off accounts the admin CLI deleted or suspended (its timer
        #: runs under ``tap.makeService``).
        self.account_watch = AccountWatch(self.registry, store)
        #: Started by ``tap.makeService`` (a timer); read by /metrics.
        self.reactor_lag = ReactorLag(clock)
        self.metrics = Metrics(self)
        #: The status page's last hour (its timer runs under ``tap.makeService``).
        self.stats_history = StatsHistory(lambda: sample_server(self), clock)
        routes = [
            *self.api.routes(),
            route("GET", "/metrics", self.metrics.render),
            *StatusPage(self.stats_history).routes(),
            *UserDataApi(store).routes(),
        ]
        #: The management API's HTTP site (``--api-port``).
        # The API reads JSON bodies, never form posts: parsing one (twisted.web's
        # default) raises out of the HTTP channel for a Content-Type that
        # Python splits as lines (\x0b, \x1c-\x1e, \x85).
        self.api_site = Site(ApiResource(routes, config.api.token), parsePOSTFormSubmission=False)
        self.api_site.displayTracebacks = False
        #: One count of open connections per client address, for every port.
        self.addresses = AddressLimit(config.connection.max_connections_per_address)
        #: Connections not yet authenticated, on every port.
        self.pending_connections = PendingConnections(config.connection.max_pending_connections)
        for factory in (self.auth_factory, self.bos_factory):
            factory.addresses = self.addresses
            factory.access = self.access
            factory.pending_connections = self.pending_connections
        chat_oservice = OServiceService(self.registry, self.presence, clock, self.sessions)
        self.chat_factory = ChatFactory(
            chat=self.chat,
            sessions=self.sessions,
            handlers={},
            families=(),
            services={
                FoodGroup.CHAT: (
                    CHAT_FAMILIES,
                    self.chat.handlers(chat_oservice.secondary_handlers(CHAT_FAMILIES)),
                )
            },
            settings=settings,
            clock=clock,
            keepalive_interval=keepalive,
        )
        self.chat_factory.addresses = self.addresses
        self.chat_factory.access = self.access
        self.chat_factory.pending_connections = self.pending_connections
        #: The browser client's sessions and its listener (``--web-port``).
        self.web = WebService(self, config.web)
        self.web_factory = web_factory(self.web)

    def refusals(self) -> Counter[str]:
        """Everything refused since start, by reason: logins, sign-ons, and
        unauthenticated connections closed to make room (for /stats,
        /metrics and the status page)."""
        refused = self.sessions.refusals + self.authorizer.refusals
        if self.pending_connections.evicted:
            refused["connection pending_limit"] = self.pending_connections.evicted
        return refused

    def reload(self, config: Config) -> list[str]:
        """What can change live, from a re-read INI (SIGHUP, or the console's
        ``reload()``): the access lists (signing off what they now refuse),
        the MOTD, and the limits that only decide what comes next (sessions
        per user, connections per address and waiting to authenticate, the
        login rates); what is already signed on or connected stays. Says
        what changed; the rest needs a restart."""
        changed = self._reload_limits(config)
        if self.access.reload(config.access):
            changed.append("access lists")
            for user in list(self.registry):
                for session in list(user.instances.values()):
                    if not self.access.admits_name(user.screen_name) or not (
                        self.access.admits_address(session.ip)
                    ):
                        session.connection.disconnect(None)
        if config.motd.text != self.config.motd.text:
            self.motd.set_text(config.motd.text)
            changed.append("motd")
        self.config = attrs.evolve(
            self.config,
            access=config.access,
            motd=config.motd,
            multisession=attrs.evolve(
                self.config.multisession, max_sessions=config.multisession.max_sessions
            ),
            connection=attrs.evolve(
                self.config.connection,
                max_connections_per_address=config.connection.max_connections_per_address,
                max_pending_connections=config.connection.max_pending_connections,
            ),
            auth=attrs.evolve(
                self.config.auth,
                max_logins_per_second=config.auth.max_logins_per_second,
                max_logins_per_ip_per_minute=config.auth.max_logins_per_ip_per_minute,
            ),
        )
        return changed

    def _reload_limits(self, config: Config) -> list[str]:
        old, changed = self.config, []
        if config.multisession.max_sessions != old.multisession.max_sessions:
            self.registry.max_sessions = config.multisession.max_sessions
            changed.append("multisession.max_sessions")
        if config.connection.max_connections_per_address != (
            old.connection.max_connections_per_address
        ):
            self.addresses.limit = config.connection.max_connections_per_address
            changed.append("connection.max_connections_per_address")
        if config.connection.max_pending_connections != old.connection.max_pending_connections:
            self.pending_connections.limit = config.connection.max_pending_connections
            changed.append("connection.max_pending_connections")
        rates = ("max_logins_per_second", "max_logins_per_ip_per_minute")
        moved = [r for r in rates if getattr(config.auth, r) != getattr(old.auth, r)]
        if moved:
            # Fresh buckets at the new rates (full: nobody is penalised by
            # the change), unless rate limiting is off for the whole server.
            self.authorizer.limiter = login_limiter(attrs.evolve(old, auth=config.auth))
            changed.extend(f"auth.{r}" for r in moved)
        return changed

    def service_handlers(self) -> dict[int, tuple[tuple[int, ...], HandlerTable]]:
        """Service connections the BOS listener also accepts, by family."""
        oservice = OServiceService(self.registry, self.presence, self.clock, self.sessions)
        alert = merge_handlers(
            oservice.secondary_handlers(alert_service.FAMILIES),
            alert_service.AlertService().handlers(),
        )
        bart = merge_handlers(
            oservice.secondary_handlers(bart_service.FAMILIES), self.bart.handlers()
        )
        admin = merge_handlers(
            oservice.secondary_handlers(ADMIN_FAMILIES),
            AdminService(self.registry, self.presence, self.store, self.clock).handlers(),
        )
        odir = merge_handlers(
            oservice.secondary_handlers(odir_service.FAMILIES),
            odir_service.ODirService(self.registry, self.store, self.store, self.clock).handlers(),
        )
        chatnav = merge_handlers(
            oservice.secondary_handlers(CHATNAV_FAMILIES),
            ChatNavService(self.registry, self.chat).handlers(),
        )
        return {
            FoodGroup.CHAT_NAV: (CHATNAV_FAMILIES, chatnav),
            FoodGroup.ALERT: (alert_service.FAMILIES, alert),
            FoodGroup.ADMIN: (ADMIN_FAMILIES, admin),
            FoodGroup.ODIR: (odir_service.FAMILIES, odir),
            FoodGroup.BART: (bart_service.FAMILIES, bart),
        }

    def bos_handlers(self) -> HandlerTable:
        services = (
            OServiceService(
                self.registry, self.presence, self.clock, self.sessions, BOS_FAMILIES, self.chat
            ),
            LocateService(self.registry, self.presence, self.store),
            BuddyService(self.registry, self.presence),
            self.icbm,
            PermitDenyService(self.feedbag),
            StatsService(),
            UserLookupService(self.registry, self.store, self.store),
            self.feedbag,
        )
        return merge_handlers(*(service.handlers() for service in services))
