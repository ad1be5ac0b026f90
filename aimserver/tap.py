# -*- test-case-name: tests.test_tap -*-
"""``twistd aimserver``: options and the service tree.

Command-line options override the INI file, which overrides the built-in
defaults. Listeners come from Twisted endpoint descriptions, so TLS later is a
configuration change (``ssl:...``), and a port already in use aborts start-up.
"""

from __future__ import annotations

import gc
import ipaddress
import signal
from typing import Any

from twisted.application import strports
from twisted.application.internet import TimerService
from twisted.application.service import IService, MultiService
from twisted.logger import Logger
from twisted.python import usage

from aimserver.config import Config, ConfigError, load_config
from aimserver.server import COOKIE_SECRET_NAME, COOKIE_SECRET_SIZE, AimServer
from aimserver.shutdown import CloseSessionsOnStop
from aimserver.store.cache import CachedUserStore
from aimserver.store.interfaces import StoreError
from aimserver.store.sqlite import SQLiteUserStore, StoreService, check_writable

log = Logger()

_PORT_OPTIONS = ("auth", "bos", "chat", "api", "manhole", "web")
WARNING_SWEEP_INTERVAL = 60.0


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "An AIM (OSCAR) server with multisession support. Every option overrides"
        " the matching setting of the INI file given with --config."
    )
    optParameters = [
        ["config", "c", None, "INI configuration file (see etc/aimserver.ini)."],
        ["db", None, None, "SQLite database path [default: aimserver.sqlite]."],
        [
            "host",
            None,
            None,
            "Interface to listen on and address given to clients [default: 127.0.0.1].",
        ],
        *[
            [f"{name}-port", None, None, f"TCP port of the {name} listener.", int]
            for name in _PORT_OPTIONS
        ],
    ]

    def postOptions(self) -> None:
        overrides: dict[str, object] = {
            "server.db": self["db"],
            "server.host": self["host"],
            **{f"ports.{name}": self[f"{name}-port"] for name in _PORT_OPTIONS},
        }
        try:
            self.config: Config = load_config(self["config"], overrides)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        #: Re-reads the INI with the same command-line overrides (SIGHUP).
        self.loader = lambda: load_config(self["config"], overrides)
        if not self.config.api.token and not _loopback(self.config):
            raise usage.UsageError(
                f"the management API would listen on {self.config.server.host} without a"
                " token: set [api] token (16+ characters), or listen on 127.0.0.1"
            )
        _check_manhole(self.config)


def _check_manhole(config: Config) -> None:
    """The console listens off loopback only with key logins, and its
    authorized_keys file must be readable.

    :raises usage.UsageError: it is not so.
    """
    manhole = config.manhole
    if not manhole.enabled:
        return
    if manhole.authorized_keys:
        try:
            with open(manhole.authorized_keys, "rb"):
                pass
        except OSError as e:
            raise usage.UsageError(
                f"[manhole] authorized_keys: cannot read {manhole.authorized_keys}:"
                f" {e.strerror or e}"
            ) from None
    elif not _loopback(config, "manhole"):
        raise usage.UsageError(
            f"the manhole console would listen on {config.endpoint('manhole')} with a password"
            " only: set [manhole] authorized_keys, or listen on 127.0.0.1"
        )


def _loopback(config: Config, name: str = "api") -> bool:
    """Listener ``name`` listens on loopback only (an explicit listener is
    the admin's call)."""
    explicit: str = getattr(config.listeners, name)
    if explicit:
        return any(f"interface={host}" in explicit for host in ("127.", "::1"))
    if config.server.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(config.server.host).is_loopback
    except ValueError:
        return False


def _reload_on_sighup(server: AimServer, reactor: Any) -> None:
    """SIGHUP re-reads the INI and applies what can change live."""

    def reload() -> None:
        try:
            changed = server.reload(server.config_loader())  # type: ignore[attr-defined]
        except ConfigError as e:
            log.error("SIGHUP: the INI was not reloaded: {error}", error=str(e))
            return
        log.info(
            "SIGHUP: reloaded the INI; changed: {changed}",
            changed=", ".join(changed) or "nothing that can change live",
        )

    signal.signal(signal.SIGHUP, lambda signum, frame: reactor.callFromThread(reload))


def makeService(options: Options | dict[str, Any], reactor: Any = None) -> IService:
    """The whole server as one MultiService: the store's DB thread, the auth
    listener and the BOS listener, sharing one registry and store."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    config: Config = options.config if isinstance(options, Options) else options["config"]
    try:
        check_writable(config.server.db)
        store = SQLiteUserStore.open(config.server.db, reactor)
        secret = store.startup_secret(COOKIE_SECRET_NAME, COOKIE_SECRET_SIZE)
    except StoreError as e:
        # Not a database, a newer aimserver's, a failed upgrade (left as it
        # was), a file it may not write, a disk without room (a full one, or
        # one that cannot take the backup): the reason, not a traceback, and
        # no server.
        raise SystemExit(f"aimserver: {e}") from None
    server = AimServer(config, CachedUserStore(store, reactor), secret, reactor)
    if config.auth.auto_register:
        loopback = _loopback(config)
        log.warn(
            "auto_register is ON ([auth] auto_register = true): a login with an unknown"
            " screen name creates that account with the password it gives.{where}",
            where=""
            if loopback
            else f" The server listens on {config.server.host}: ANYONE WHO CAN REACH IT CAN"
            " CREATE ACCOUNTS. Use it on private test networks only.",
        )
    if not config.ratelimit.enabled:
        log.warn("rate limiting is OFF ([ratelimit] enabled = false): test networks only")
    top = MultiService()
    top.server = server  # type: ignore[attr-defined]
    StoreService(store).setServiceParent(top)
    # One timer for all users' warning decay (never one per session).
    sweeper = TimerService(WARNING_SWEEP_INTERVAL, server.warnings.sweep)
    sweeper.clock = reactor
    sweeper.setServiceParent(top)
    server.reactor_lag.setServiceParent(top)
    server.stats_history.setServiceParent(top)
    server.account_watch.service(reactor).setServiceParent(top)
    loader = getattr(options, "loader", None)
    if loader is not None:
        server.config_loader = loader  # type: ignore[attr-defined]
        reactor.callWhenRunning(_reload_on_sighup, server, reactor)
    # Stopped before the timers and the store (services stop in reverse).
    CloseSessionsOnStop(server.registry, reactor).setServiceParent(top)
    # Stopped before it: browser sessions are told the server is restarting.
    server.web.setServiceParent(top)
    listeners = (
        ("auth", server.auth_factory),
        ("bos", server.bos_factory),
        ("chat", server.chat_factory),
        ("api", server.api_site),
        ("web", server.web_factory),
    )
    for name, factory in listeners:
        listener = strports.service(config.endpoint(name), factory, reactor=reactor)
        listener.setName(name)
        listener.setServiceParent(top)
    if config.manhole.enabled:
        from aimserver import manhole

        host_key = manhole.load_host_key(manhole.host_key_path(config))
        listener = strports.service(
            config.endpoint("manhole"),
            manhole.manhole_factory(server, host_key, reactor),
            reactor=reactor,
        )
        listener.setName("manhole")
        listener.setServiceParent(top)
        log.info(
            "manhole console on {endpoint} for user {user!r}",
            endpoint=config.endpoint("manhole"),
            user=config.manhole.user,
        )
    else:
        log.info("manhole console off: set [manhole] authorized_keys or password_hash to enable it")
    # Everything built so far lives as long as the process: keep it out of
    # the cyclic collector's full passes (PERFORMANCE.md: 150-270 ms stalls).
    reactor.callWhenRunning(gc.freeze)
    log.info(
        "aimserver: auth on {auth}, BOS on {bos}, chat on {chat}, API and status page on"
        " {api}, browser client on {web}, database {db}",
        auth=config.endpoint("auth"),
        bos=config.endpoint("bos"),
        chat=config.endpoint("chat"),
        api=config.endpoint("api"),
        web=config.endpoint("web"),
        db=config.server.db,
    )
    return top
