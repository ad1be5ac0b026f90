# -*- test-case-name: tests.test_console -*-
"""The admin console's helpers: plain functions over a running ``AimServer``.

The manhole (``aimserver.manhole``) puts them in its namespace bound to the
live server, as ``users()``, ``sessions(name)`` and so on; they work the same
without SSH, which is how the tests call them. They run in the reactor
thread, so each is quick: registry lookups and writes, no store I/O.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from aimserver.registry import SessionInstance, User
from aimserver.wire.userinfo import STATUS_INVISIBLE

if TYPE_CHECKING:
    from aimserver.server import AimServer

__all__ = [
    "HELPERS",
    "NotSignedOn",
    "SessionSummary",
    "broadcast",
    "help",
    "kick",
    "namespace",
    "session",
    "sessions",
    "users",
    "warn",
]

#: Longest broadcast text, in UTF-8 bytes (what the management API allows).
MAX_BROADCAST = 8000


class NotSignedOn(LookupError):
    """The screen name (or its session instance) is not signed on."""


class _Text(str):
    """Text that the console shows as is, not as a quoted repr."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


@attrs.frozen
class SessionSummary:
    """One session instance, as ``sessions(name)`` lists it."""

    instance_id: int
    client_id: str
    ip: str
    #: When it signed on, UTC, ISO 8601.
    connected_at: str
    #: Seconds idle (as the client reported), or None when not idle.
    idle: int | None
    away: bool
    #: Capability UUIDs (other lengths in hex).
    capabilities: tuple[str, ...]


def _timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _capability(cap: bytes) -> str:
    return str(uuid.UUID(bytes=cap)) if len(cap) == 16 else cap.hex()


def _user(server: AimServer, name: str) -> User:
    user = server.registry.get(name)
    if user is None or not user.live_instances():
        raise NotSignedOn(f"not signed on: {name}")
    return user


def _instance(server: AimServer, name: str, instance_id: int) -> SessionInstance:
    instance = _user(server, name).instances.get(instance_id)
    if instance is None or instance.closed:
        raise NotSignedOn(f"{name} has no session {instance_id}")
    return instance


def _summary(server: AimServer, instance: SessionInstance) -> SessionSummary:
    now = server.clock.seconds()
    return SessionSummary(
        instance_id=instance.instance_id,
        client_id=instance.client_id,
        ip=instance.ip,
        connected_at=_timestamp(instance.connected_at),
        idle=None if instance.idle_since is None else int(now - instance.idle_since),
        away=instance.away,
        capabilities=tuple(_capability(c) for c in instance.capabilities),
    )


def users(server: AimServer) -> dict[str, int]:
    """Every signed-on screen name -> its number of session instances."""
    counts = {user.screen_name: len(user.live_instances()) for user in server.registry}
    return {name: count for name, count in sorted(counts.items()) if count}


def sessions(server: AimServer, name: str) -> list[SessionSummary]:
    """The session instances of ``name`` (any spelling), oldest first.

    :raises NotSignedOn: ``name`` has no session.
    """
    instances = _user(server, name).live_instances()
    return [_summary(server, i) for i in sorted(instances, key=lambda i: i.connected_at)]


def session(server: AimServer, name: str, instance_id: int) -> dict[str, Any]:
    """Everything about one session instance of ``name``.

    :raises NotSignedOn: no such live instance.
    """
    instance = _instance(server, name, instance_id)
    return {
        **attrs.asdict(_summary(server, instance)),
        "online": instance.online,
        "status": f"{instance.status:#010x}",
        "invisible": bool(instance.status & STATUS_INVISIBLE),
        "away_message": (instance.away_message or b"").decode("utf-8", "replace"),
        "multiconn_flags": instance.multiconn_flags,
        "rate_exempt": instance.rate_exempt,
        "uses_feedbag": instance.uses_feedbag,
        "buddies": len(instance.buddies),
        "service_connections": sorted(f"{f:#06x}" for f in instance.secondary_families),
        "family_versions": {f"{f:#06x}": v for f, v in sorted(instance.family_versions.items())},
    }


def kick(server: AimServer, name: str, instance_id: int | None = None) -> int:
    """Close one session instance of ``name``, or all of them. A FLAP
    channel-4 close, as the management API's DELETE /session sends; the
    account is untouched, so the user may sign on again. Returns how many
    sessions were closed.

    :raises NotSignedOn: ``name`` (or that instance) is not signed on.
    """
    if instance_id is not None:
        targets = [_instance(server, name, instance_id)]
    else:
        targets = _user(server, name).live_instances()
    for instance in targets:
        instance.connection.disconnect(None)
    return len(targets)


def broadcast(server: AimServer, text: str, to: str | None = None) -> int:
    """A system message to every online session of everyone, or of the user
    ``to``. Returns how many sessions it reached.

    :raises ValueError: ``text`` is empty or over 8000 UTF-8 bytes.
    :raises NotSignedOn: ``to`` is not signed on.
    """
    if not text or len(text.encode("utf-8")) > MAX_BROADCAST:
        raise ValueError(f"text must be 1-{MAX_BROADCAST} bytes")
    recipients = [_user(server, to)] if to is not None else list(server.registry)
    return sum(server.icbm.deliver_notice(user, text) for user in recipients)


def warn(server: AimServer, name: str, percent: float = 10.0) -> float:
    """Raise the warning level of ``name`` by ``percent`` (lower it with a
    negative one), as an anonymous warning. Its sessions and watchers see
    the new level at once, it decays as any warning does, and it is kept.
    Returns the new level in percent.

    :raises NotSignedOn: ``name`` is not signed on.
    :raises ValueError: ``percent`` is not a number from -100 to 100.
    """
    if (
        isinstance(percent, bool)
        or not isinstance(percent, int | float)
        or not (-100 <= percent <= 100)
    ):
        raise ValueError("percent must be a number from -100 to 100")
    user = _user(server, name)
    return server.warnings.admin_warning(user, round(percent * 10)) / 10


def reload(server: AimServer) -> list[str]:
    """Re-read the INI and apply what can change live (access lists, MOTD),
    as SIGHUP does; what changed.

    :raises ValueError: the server was not started from an INI it can re-read.
    """
    load = getattr(server, "config_loader", None)
    if load is None:
        raise ValueError("this server has no INI to re-read")
    return server.reload(load())


def help(server: AimServer) -> _Text:  # noqa: A001 (the console's own help)
    """This list."""
    lines = ["Objects: server (AimServer), registry, store, config.", "Helpers:"]
    for name, (signature, function) in HELPERS.items():
        # The first sentence of its docstring.
        summary = " ".join((function.__doc__ or "").split()).split(". ")[0].rstrip(".")
        lines.append(f"  {name}{signature}: {summary}.")
    return _Text("\n".join(lines))


#: The console's helpers: name -> (signature shown by ``help()``, function).
HELPERS: dict[str, tuple[str, Callable[..., Any]]] = {
    "users": ("()", users),
    "sessions": ("(name)", sessions),
    "session": ("(name, instance_id)", session),
    "kick": ("(name, instance_id=None)", kick),
    "warn": ("(name, percent=10)", warn),
    "broadcast": ("(text, to=None)", broadcast),
    "reload": ("()", reload),
    "help": ("()", help),
}


def _bind(server: AimServer, function: Callable[..., Any]) -> Callable[..., Any]:
    def helper(*args: Any, **kwargs: Any) -> Any:
        return function(server, *args, **kwargs)

    helper.__name__ = helper.__qualname__ = function.__name__
    helper.__doc__ = function.__doc__
    return helper


def namespace(server: AimServer) -> dict[str, Any]:
    """A fresh console namespace (one per login) over the live server."""
    return {
        "server": server,
        "registry": server.registry,
        "store": server.store,
        "config": server.config,
        **{name: _bind(server, function) for name, (_, function) in HELPERS.items()},
    }
