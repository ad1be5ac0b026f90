"""What every food-group service shares: replies as values, errors as exceptions.

A handler takes the session it acts for, the request's SNAC header and body,
and returns the replies to send back (the protocol copies the request ID), or
a Deferred of them. It raises ``SnacError`` for a protocol-level refusal and
``MalformedData`` (from the codecs) for a body that does not parse; pushes to
other sessions go through the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from aimserver.wire.codes import SnacErrorCode
from aimserver.wire.snac import SnacHeader

if TYPE_CHECKING:
    from aimserver.registry import SessionInstance, User, UserRegistry


def then(value: Any, f: Callable[..., Any], *args: Any) -> Any:
    """``f(value, *args)`` now, or as a callback if ``value`` is a Deferred:
    a result that is usually at hand (a cached account) skips the Deferred."""
    if isinstance(value, Deferred):
        return value.addCallback(f, *args)
    return f(value, *args)


_log = Logger()


def bounded(value: bytes, limit: int, what: str) -> bytes:
    """``value``, or a refusal with 0x000E (and a log line: it is bad input)
    when it is longer than ``limit``: longer than anything stored can be."""
    if len(value) > limit:
        _log.info(
            "refused: {what} of {length} bytes, over {limit}",
            what=what,
            length=len(value),
            limit=limit,
        )
        raise SnacError(SnacErrorCode.BUSTED_SNAC_PAYLOAD)
    return value


class SnacError(Exception):
    """Answer the request with ``family,01`` carrying ``code`` (and TLV 0x0008 ``subcode``)."""

    def __init__(self, code: int, subcode: int | None = None) -> None:
        super().__init__(code, subcode)
        self.code = code
        self.subcode = subcode


def acting_user(registry: UserRegistry, session: SessionInstance) -> User:
    """The user ``session`` acts for; a request from a session that is gone
    (signed off while its request waited) is answered "not logged on"."""
    user = registry.user_of(session)
    if user is None:
        raise SnacError(SnacErrorCode.NOT_LOGGED_ON)
    return user


@attrs.frozen
class Reply:
    family: int
    subtype: int
    body: bytes = b""
    flags: int = 0


Replies: TypeAlias = list[Reply]
Handler: TypeAlias = Callable[[Any, SnacHeader, bytes], Any]
HandlerTable: TypeAlias = dict[tuple[int, int], Handler]


class DuplicateHandler(ValueError):
    """Two services claim one SNAC: a wiring mistake, refused at start-up
    rather than one silently overriding the other."""


def merge_handlers(*tables: HandlerTable) -> HandlerTable:
    """One dispatch table from the services' own; a ``(family, subtype)`` in
    two of them raises ``DuplicateHandler`` naming both handlers."""
    merged: HandlerTable = {}
    for table in tables:
        for key, handler in table.items():
            if key in merged:
                raise DuplicateHandler(
                    f"SNAC {key[0]:02x},{key[1]:02x} is handled by both"
                    f" {_name_of(merged[key])} and {_name_of(handler)}"
                )
            merged[key] = handler
    return merged


def _name_of(handler: Handler) -> str:
    return getattr(handler, "__qualname__", repr(handler))
