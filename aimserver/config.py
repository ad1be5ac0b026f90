# -*- test-case-name: tests.test_config -*-
"""The server's configuration: one frozen, validated ``Config``.

Three layers, later ones winning: the built-in defaults (the attrs defaults
below, mirrored by ``etc/aimserver.ini``), an INI file, and command-line
overrides.  ``load_config`` reads and checks all of them at startup, so a typo
stops the server with a message naming the file, section and key instead of
surfacing as odd behaviour hours later.  Code that builds a ``Config``
directly (tests) gets the same value checks as ``ValueError``.
"""

from __future__ import annotations

import configparser
import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

import attrs
from twisted.internet.endpoints import quoteStringArgument

__all__ = [
    "LISTENER_NAMES",
    "AuthConfig",
    "Config",
    "ConfigError",
    "ConnectionConfig",
    "ListenersConfig",
    "LoggingConfig",
    "ManholeConfig",
    "RateLimitConfig",
    "MultisessionConfig",
    "PortsConfig",
    "ServerConfig",
    "load_config",
]

#: The services that listen; each has a port and an optional listener description.
LISTENER_NAMES = ("auth", "bos", "chat", "api", "manhole", "web")

_T = TypeVar("_T")


class ConfigError(Exception):
    """The configuration cannot be used.

    ``source`` is the INI file's path, ``"command line"`` or ``"defaults"``;
    ``section`` and ``key`` locate the problem (``key`` is ``None`` when a
    whole section is at fault, both are ``None`` when the file is).  The
    message says all of it, for the operator.
    """

    def __init__(
        self, message: str, source: str, section: str | None = None, key: str | None = None
    ) -> None:
        super().__init__(message)
        self.source = source
        self.section = section
        self.key = key


@attrs.frozen
class _Kind:
    """What one setting accepts and how it is read from text.

    ``parse`` turns INI or command-line text into a value (``ValueError`` if it
    cannot); ``accepts`` says whether a value is allowed; ``expected`` is the
    phrase error messages use for it.
    """

    expected: str
    parse: Callable[[str], object]
    accepts: Callable[[Any], bool]

    def coerce(self, value: object) -> object:
        """``value`` (text, or already typed) as a valid setting, or ``ValueError``."""
        parsed = value
        if isinstance(value, str):
            try:
                parsed = self.parse(value)
            except ValueError:
                raise ValueError(f"expected {self.expected}, got {value!r}") from None
        if not self.accepts(parsed):
            raise ValueError(f"expected {self.expected}, got {value!r}")
        return parsed

    def validate(self, instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        """attrs validator: the same check for code that builds a ``Config``."""
        if not self.accepts(value):
            raise ValueError(f"{attribute.name}: expected {self.expected}, got {value!r}")


_KIND = "aimserver.config.kind"


def _setting(default: _T, kind: _Kind) -> _T:
    """An attrs field for one INI key."""
    return attrs.field(default=default, validator=kind.validate, metadata={_KIND: kind})


def _parse_bool(text: str) -> bool:
    try:
        return configparser.ConfigParser.BOOLEAN_STATES[text.strip().lower()]
    except KeyError:
        raise ValueError(text) from None


def _is_int(value: object) -> bool:
    return type(value) is int


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _integer(low: int, high: int | None = None, expected: str | None = None) -> _Kind:
    if expected is None:
        expected = (
            f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
        )
    return _Kind(
        expected,
        int,
        lambda v: _is_int(v) and low <= v and (high is None or v <= high),
    )


def _seconds(*, zero_allowed: bool) -> _Kind:
    if zero_allowed:
        return _Kind("a number of seconds >= 0", float, lambda v: _is_number(v) and v >= 0)
    return _Kind("a number of seconds > 0", float, lambda v: _is_number(v) and v > 0)


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def _is_host(value: object) -> bool:
    # A colon is only legitimate inside an IPv6 literal; "1.2.3.4:5191" is the
    # usual mistake (the port comes from [ports]).
    # ASCII only: the host goes in every login reply (TLV 0x05), which is
    # ASCII; an international name is given in its xn-- form.
    return (
        isinstance(value, str)
        and value != ""
        and value.isascii()
        and value.strip() == value
        and not any(c.isspace() for c in value)
        and (":" not in value or _is_ipv6(value))
    )


_BOOLEAN = _Kind(
    "a boolean (yes/no, true/false, on/off, 1/0)", _parse_bool, lambda v: type(v) is bool
)
_PORT = _integer(0, 0xFFFF, "a port number from 0 to 65535 (0: any free port)")
_FRAME_SIZE = _integer(16, 0xFFFF)
_HOST = _Kind(
    "an ASCII host name (xn-- form for an international one) or IP address, without port",
    str.strip,
    _is_host,
)
_OPTIONAL_HOST = _Kind(
    "empty, or an ASCII host name (xn-- form for an international one) or IP address, without port",
    str.strip,
    lambda v: v == "" or _is_host(v),
)
_PATH = _Kind("a non-empty path", str.strip, lambda v: isinstance(v, str) and v != "")
_DESCRIPTION = _Kind(
    "empty, or a Twisted endpoint description such as tcp:5190:interface=127.0.0.1",
    str.strip,
    lambda v: isinstance(v, str),
)
#: A send queue must hold at least one maximum-size FLAP frame (6-byte header).
_MIN_SEND_QUEUE = 0xFFFF + 6


class _ConflictError(ValueError):
    """Settings that are fine alone but not together.

    ``key`` is the one to fix, ``related`` the others involved (the error
    names the source of whichever of them was set).
    """

    def __init__(self, key: str, message: str, related: tuple[str, ...] = ()) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message
        self.keys = (key, *related)


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


@attrs.frozen
class ServerConfig:
    """Where the server listens, what it tells clients, where it keeps its data."""

    #: Interface the listeners bind to.
    host: str = _setting("127.0.0.1", _HOST)
    #: Address given to clients in login and redirect replies; "" = ``host``.
    advertised_host: str = _setting("", _OPTIONAL_HOST)
    #: SQLite database path.
    db: str = _setting("aimserver.sqlite", _PATH)

    def __attrs_post_init__(self) -> None:
        if self.advertised_host == "" and _is_wildcard(self.host):
            raise _ConflictError(
                "advertised_host",
                f"must be set when host is the wildcard address {self.host!r}:"
                " clients cannot connect to it",
                related=("host",),
            )


@attrs.frozen
class PortsConfig:
    """TCP port of each listener (0: any free port, for tests)."""

    auth: int = _setting(5190, _PORT)
    bos: int = _setting(5191, _PORT)
    chat: int = _setting(5192, _PORT)
    api: int = _setting(8080, _PORT)
    manhole: int = _setting(2222, _PORT)
    web: int = _setting(8081, _PORT)


@attrs.frozen
class ListenersConfig:
    """Explicit Twisted endpoint descriptions; "" = TCP on ``server.host`` and the port."""

    auth: str = _setting("", _DESCRIPTION)
    bos: str = _setting("", _DESCRIPTION)
    chat: str = _setting("", _DESCRIPTION)
    api: str = _setting("", _DESCRIPTION)
    manhole: str = _setting("", _DESCRIPTION)
    web: str = _setting("", _DESCRIPTION)


@attrs.frozen
class AuthConfig:
    """Sign-on policy."""

    #: Create an unknown screen name at its first login (development only).
    auto_register: bool = _setting(False, _BOOLEAN)
    #: Refuse an unknown screen name as such (login error 0x0001, as AOL
    #: did). Off: it is answered like a wrong password (0x0005), so logins
    #: do not tell which names exist.
    reveal_unknown_names: bool = _setting(False, _BOOLEAN)
    #: BUCP logins with the account's fixed auth key, either digest form
    #: accepted (AIM 3.5-4.7 send only the weak one), but a captured login
    #: replays for ever. Off: a fresh random challenge per 17,06, only the
    #: strong form (TLV 0x4C) accepted, weak-hash clients refused (0x001B).
    allow_weak_hash: bool = _setting(True, _BOOLEAN)
    #: Seconds a login cookie stays valid.
    cookie_lifetime: float = _setting(60.0, _seconds(zero_allowed=False))
    #: Seconds a connection may take to authenticate before it is closed.
    login_timeout: float = _setting(30.0, _seconds(zero_allowed=False))
    #: Logins per second the whole server admits (burst: twice that); 0 = no
    #: limit. Beyond it clients get login error 0x0018 and retry later.
    max_logins_per_second: float = _setting(1000.0, _seconds(zero_allowed=True))
    #: Logins per minute one client IP may make (burst: that many at once);
    #: 0 = no limit.
    max_logins_per_ip_per_minute: float = _setting(60.0, _seconds(zero_allowed=True))


@attrs.frozen
class ConnectionConfig:
    """Limits that protect the server from slow, idle or hostile connections."""

    #: Largest FLAP payload accepted from an authenticated connection.
    max_frame_size: int = _setting(0xFFFF, _FRAME_SIZE)
    #: Largest FLAP payload accepted before authentication.
    max_unauthenticated_frame_size: int = _setting(2048, _FRAME_SIZE)
    #: Seconds between FLAP channel-5 keepalives to an idle connection.
    keepalive_interval: float = _setting(60.0, _seconds(zero_allowed=False))
    #: Connections the kernel queues for each listener before accept(): a
    #: reconnect storm after a restart must not overflow it.
    listen_backlog: int = _setting(4096, _integer(1, 65535))
    #: Seconds a signed-on connection may send nothing (clients' keepalives
    #: count) before the server closes it, checked at each keepalive sweep;
    #: 0 = never, as AIM had no idle timeout.
    idle_timeout: float = _setting(0.0, _seconds(zero_allowed=True))
    #: Connections one client address may hold open at once, over the auth,
    #: BOS and chat ports together (a client holds a few per session: BOS,
    #: ChatNav, icons, one per chat room); 0 = no limit. Raise it for many
    #: users behind one NAT address.
    max_connections_per_address: int = _setting(200, _integer(0))
    #: Connections not yet authenticated (logging in, or not yet showing a
    #: cookie), over every port together. Each is closed after
    #: ``[auth] login_timeout`` anyway; at this many, a new one closes the
    #: oldest, so connections opened from many addresses cannot hold memory
    #: and descriptors, and a real login still gets in. 0 = no limit.
    max_pending_connections: int = _setting(10_000, _integer(0))
    #: Bytes queued for a slow reader before it is disconnected.
    max_send_queue: int = _setting(
        1 << 20,
        _integer(
            _MIN_SEND_QUEUE,
            None,
            f"a number of bytes >= {_MIN_SEND_QUEUE} (one maximum-size frame)",
        ),
    )

    def __attrs_post_init__(self) -> None:
        if self.max_unauthenticated_frame_size > self.max_frame_size:
            raise _ConflictError(
                "max_unauthenticated_frame_size",
                f"must not exceed max_frame_size ({self.max_frame_size})",
                related=("max_frame_size",),
            )


@attrs.frozen
class MultisessionConfig:
    """Signing on from several places with one screen name."""

    #: Concurrent sessions one screen name may have.
    max_sessions: int = _setting(5, _integer(1))
    #: Tell every session when another one signs on.
    notify: bool = _setting(True, _BOOLEAN)


@attrs.frozen
class ChatConfig:
    """Chat rooms: the limits advertised to clients are the ones enforced."""

    #: Members one room holds (TLV 0x00D2); a join beyond it is refused.
    max_occupancy: int = _setting(100, _integer(2, 1000))
    #: Bytes of one message's text, HTML included, as libpurple counts it
    #: (TLVs 0x00D1 and 0x00DA); a longer message is refused.
    max_message_length: int = _setting(1024, _integer(64, 8000))
    #: Rooms one screen name may be in at once, across its sessions (TLV 0x0002).
    max_rooms_per_user: int = _setting(10, _integer(1, 50))
    #: Private rooms (exchange 4, made by users) the server holds at once.
    max_private_rooms: int = _setting(10_000, _integer(1, 1_000_000))


_TOKEN = _Kind(
    "empty, or a token of 16 or more printable ASCII characters without spaces",
    str.strip,
    lambda v: (
        isinstance(v, str)
        and (v == "" or (len(v) >= 16 and v.isascii() and v.isprintable() and " " not in v))
    ),
)


@attrs.frozen
class WebConfig:
    """The browser client on ``ports.web`` (docs/web-protocol.md)."""

    #: Seconds a browser session whose socket dropped is kept for a resume
    #: (buddies see no departure); then it signs off.
    resume_seconds: float = _setting(120.0, _seconds(zero_allowed=False))
    #: Keep each user's recent IMs (sent and received by its browser
    #: sessions) so a new browser session shows the conversation; false:
    #: nothing is kept.
    history: bool = _setting(True, _BOOLEAN)
    #: Days an IM stays in the history.
    history_days: int = _setting(30, _integer(1, 3650))
    #: IMs kept per user, newest first.
    history_messages: int = _setting(1000, _integer(1, 10_000))
    #: The page offers account creation (what revival networks send users to
    #: other sites for). Off by default: anyone who reaches the port can
    #: make accounts.
    signup: bool = _setting(False, _BOOLEAN)
    #: Accounts one address may create an hour, and the whole server.
    signups_per_address_per_hour: int = _setting(3, _integer(1, 10_000))
    signups_per_hour: int = _setting(60, _integer(1, 1_000_000))


@attrs.frozen
class ApiConfig:
    """The JSON management API on ``ports.api``."""

    #: Bearer token every request must carry (``Authorization: Bearer ...``);
    #: empty: none, allowed only when the API listens on loopback.
    token: str = _setting("", _TOKEN)


_MOTD = _Kind(
    "a message of at most 1024 UTF-8 bytes",
    str.strip,
    lambda v: isinstance(v, str) and len(v.encode("utf-8")) <= 1024,
)


@attrs.frozen
class MotdConfig:
    """The message of the day (MULTISESSION.md §20)."""

    #: Shown once to every user, as a system IM, at its first sign-on after
    #: it changes; "" for none. PUT /motd changes it until the next start.
    text: str = _setting("", _MOTD)


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _is_network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


_NAMES = _Kind(
    "a comma-separated list of screen names",
    _parse_list,
    lambda v: isinstance(v, tuple) and all(isinstance(n, str) and n for n in v),
)
_NETWORKS = _Kind(
    "a comma-separated list of IP addresses or networks (192.0.2.0/24, 2001:db8::/32)",
    _parse_list,
    lambda v: isinstance(v, tuple) and all(isinstance(n, str) and _is_network(n) for n in v),
)


@attrs.frozen
class AccessConfig:
    """Who may connect and sign on; reloaded on SIGHUP without a restart."""

    #: Only these screen names may sign on; empty: every name not denied.
    allow_names: tuple[str, ...] = _setting((), _NAMES)
    #: These screen names may not sign on (their sessions are signed off
    #: when the list is reloaded).
    deny_names: tuple[str, ...] = _setting((), _NAMES)
    #: Only these addresses may connect; empty: every address not denied.
    allow_networks: tuple[str, ...] = _setting((), _NETWORKS)
    #: These addresses may not connect, on any port.
    deny_networks: tuple[str, ...] = _setting((), _NETWORKS)


@attrs.frozen
class RateLimitConfig:
    """SNAC rate limiting (SIGNON.md §3, ERRORS.md §3)."""

    #: false lifts every rate class for the whole server: for test networks
    #: and benchmarks only (the server logs a warning at start).
    enabled: bool = _setting(True, _BOOLEAN)


@attrs.frozen
class LoggingConfig:
    """Diagnostics."""

    #: Log every FLAP frame in and out (verbose; for debugging), secrets
    #: redacted (``wire/redact.py``).
    trace_flap: bool = _setting(False, _BOOLEAN)


#: ``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>`` (``aimserver.manhole.hash_password``).
_PASSWORD_HASH_FORMAT = re.compile(
    r"pbkdf2_sha256\$[1-9][0-9]{0,8}\$(?:[0-9a-f]{2}){8,64}\$[0-9a-f]{64}"
)

_PASSWORD_HASH = _Kind(
    "empty, or a hash made by 'aimserver console hash-password'"
    " (pbkdf2_sha256$iterations$salt_hex$hash_hex)",
    str.strip,
    lambda v: isinstance(v, str) and (v == "" or _PASSWORD_HASH_FORMAT.fullmatch(v) is not None),
)
_OPTIONAL_PATH = _Kind("empty, or a path", str.strip, lambda v: isinstance(v, str))
_SSH_USER = _Kind(
    "a user name of printable ASCII characters without spaces",
    str.strip,
    lambda v: isinstance(v, str) and v != "" and v.isascii() and v.isprintable() and " " not in v,
)


@attrs.frozen
class ManholeConfig:
    """The Python console over SSH on ``ports.manhole`` (off unless a login is set)."""

    #: The SSH user name to log in as.
    user: str = _setting("admin", _SSH_USER)
    #: An OpenSSH ``authorized_keys`` file whose keys may log in; "" = none.
    authorized_keys: str = _setting("", _OPTIONAL_PATH)
    #: The password's hash (``aimserver console hash-password``); "" = no password login.
    password_hash: str = _setting("", _PASSWORD_HASH)
    #: The SSH host key, made at the first start; "" = ``<server.db>.manhole_host_key``.
    host_key: str = _setting("", _OPTIONAL_PATH)

    @property
    def enabled(self) -> bool:
        """A way to log in is configured: without one the console does not start."""
        return bool(self.authorized_keys or self.password_hash)


@attrs.frozen
class Config:
    """Everything configurable, one attribute per INI section."""

    server: ServerConfig = attrs.field(factory=ServerConfig)
    ports: PortsConfig = attrs.field(factory=PortsConfig)
    listeners: ListenersConfig = attrs.field(factory=ListenersConfig)
    auth: AuthConfig = attrs.field(factory=AuthConfig)
    connection: ConnectionConfig = attrs.field(factory=ConnectionConfig)
    multisession: MultisessionConfig = attrs.field(factory=MultisessionConfig)
    chat: ChatConfig = attrs.field(factory=ChatConfig)
    api: ApiConfig = attrs.field(factory=ApiConfig)
    motd: MotdConfig = attrs.field(factory=MotdConfig)
    access: AccessConfig = attrs.field(factory=AccessConfig)
    ratelimit: RateLimitConfig = attrs.field(factory=RateLimitConfig)
    logging: LoggingConfig = attrs.field(factory=LoggingConfig)
    manhole: ManholeConfig = attrs.field(factory=ManholeConfig)
    web: WebConfig = attrs.field(factory=WebConfig)

    def endpoint(self, name: str) -> str:
        """The server endpoint description ``strports.service`` should listen on.

        ``listeners.<name>`` if set (e.g. ``ssl:5191:privateKey=…``), otherwise
        TCP on ``server.host`` and ``ports.<name>``.

        :raises ValueError: ``name`` is not one of ``LISTENER_NAMES``.
        """
        _check_listener(name)
        explicit: str = getattr(self.listeners, name)
        if explicit:
            return explicit
        port: int = getattr(self.ports, name)
        return (
            f"tcp:{port}:interface={quoteStringArgument(self.server.host)}"
            f":backlog={self.connection.listen_backlog}"
        )

    def advertised_address(self, name: str, port: int | None = None) -> str:
        """``host:port`` that clients are told to connect to for ``name``
        (TLV 0x05 of the login reply, ``01,05`` redirects).

        The host is ``server.advertised_host`` or else ``server.host``, in
        brackets if it is an IPv6 literal.  The port is ``ports.<name>``
        unless given: pass the bound port when listening on port 0, or when
        ``listeners.<name>`` uses another port.

        :raises ValueError: ``name`` is not one of ``LISTENER_NAMES``.
        """
        _check_listener(name)
        if port is None:
            port = getattr(self.ports, name)
        host = self.server.advertised_host or self.server.host
        if _is_ipv6(host):
            host = f"[{host}]"
        return f"{host}:{port}"


def _check_listener(name: str) -> None:
    if name not in LISTENER_NAMES:
        raise ValueError(f"unknown listener {name!r}; expected one of {', '.join(LISTENER_NAMES)}")


#: INI section name -> section class, in file order.
_SECTIONS: Mapping[str, type] = {f.name: f.default.factory for f in attrs.fields(Config)}


def _keys(section: str) -> dict[str, _Kind]:
    return {f.name: f.metadata[_KIND] for f in attrs.fields(_SECTIONS[section])}


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_NO_OVERRIDES: Mapping[str, object] = MappingProxyType({})


def load_config(
    path: str | os.PathLike[str] | None, overrides: Mapping[str, object] = _NO_OVERRIDES
) -> Config:
    """Read the INI file at ``path`` (``None``: none), apply ``overrides``, check everything.

    ``overrides`` maps ``"section.key"`` (e.g. ``"ports.auth"``) to a value,
    either text (parsed as in the INI) or already typed (an ``int`` port from
    ``usage.Options``); ``None`` means "not given" and is skipped.

    :raises ConfigError: the file cannot be read or parsed, has an unknown
        section or key, or a value is invalid; the message names the file
        (or "command line"), section and key.
    """
    given: dict[tuple[str, str], tuple[object, str]] = {}
    if path is not None:
        source = os.fspath(path)
        for section, key, text in _read_ini(source):
            given[section, key] = (text, source)
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        _check_key("command line", section, key)
        given[section, key] = (value, "command line")

    fallback = os.fspath(path) if path is not None else "defaults"
    sections = {}
    for section, cls in _SECTIONS.items():
        kinds = _keys(section)
        values = {}
        for key, kind in kinds.items():
            if (section, key) not in given:
                continue
            value, source = given[section, key]
            try:
                values[key] = kind.coerce(value)
            except ValueError as e:
                raise ConfigError(
                    f"{source}: [{section}] {key}: {e}", source, section, key
                ) from None
        try:
            sections[section] = cls(**values)
        except _ConflictError as e:
            sources = [given[section, k][1] for k in e.keys if (section, k) in given]
            source = sources[0] if sources else fallback
            raise ConfigError(
                f"{source}: [{section}] {e.key}: {e.message}", source, section, e.key
            ) from None
    return Config(**sections)


def _check_section(source: str, section: str) -> None:
    """Refuse a section no setting lives in: probably a typo."""
    if section not in _SECTIONS:
        raise ConfigError(
            f"{source}: unknown section [{section}]{_did_you_mean(section, _SECTIONS)}",
            source,
            section,
        )


def _check_key(source: str, section: str, key: str) -> None:
    """Refuse a key that is no setting of a known section: probably a typo."""
    _check_section(source, section)
    kinds = _keys(section)
    if key not in kinds:
        raise ConfigError(
            f"{source}: [{section}] unknown key {key!r}{_did_you_mean(key, kinds)}",
            source,
            section,
            key,
        )


def _read_ini(path: str) -> list[tuple[str, str, str]]:
    """``(section, key, text)`` for every setting in the file, all known."""
    # No interpolation: "%" has no special meaning (paths, descriptions).
    # No DEFAULT section either: naming the magic section something no
    # header can spell makes "[DEFAULT]" an ordinary, unknown, section.
    parser = configparser.ConfigParser(interpolation=None, default_section="\0")
    try:
        # utf-8-sig: editors on Windows like to start files with a BOM.
        with open(path, encoding="utf-8-sig") as f:
            parser.read_file(f, source=path)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}", path) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text: {e.reason}", path) from None
    except configparser.Error as e:
        raise ConfigError(f"{path}: {e.message}", path) from None
    settings = []
    for section in parser.sections():
        _check_section(path, section)
        for key, text in parser.items(section, raw=True):
            _check_key(path, section, key)
            settings.append((section, key, text))
    return settings
