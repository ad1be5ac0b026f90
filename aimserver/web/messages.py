# -*- test-case-name: tests.test_web_messages -*-
"""The browser protocol's envelopes (docs/web-protocol.md): a request parsed
and checked before anything acts on it, answers and events as JSON text.

Pure: no sockets, no registry. A request that is not what the document says
(not JSON, not an object, an unknown command, a missing, unknown or wrongly
typed parameter, a value out of bounds) is a ``WebError`` of type
``ValidationError``, answered without changing anything.
"""

from __future__ import annotations

import itertools
import random
import struct
from collections.abc import Mapping
from typing import Any, NamedTuple

import attrs
import orjson

#: The largest message either way, in bytes of UTF-8 (close code 1009 beyond).
MAX_MESSAGE_BYTES = 65_536
MAX_ID_LENGTH = 64
#: An integer id is one JavaScript holds exactly.
_ID_MIN, _ID_MAX = -(2**53), 2**53

#: Message cookies (ICBM, chat): unique per message, not secret, so neither
#: the kernel's randomness (``os.urandom`` cost 11 us an IM under load) nor
#: a PRNG: a random start, then a counter.
_cookies = itertools.count(random.getrandbits(63))
_COOKIE = struct.Struct("!Q")


def message_cookie() -> bytes:
    return _COOKIE.pack(next(_cookies) & 0xFFFF_FFFF_FFFF_FFFF)


VALIDATION = "ValidationError"
UNAUTHORIZED = "Unauthorized"
SESSION_ERROR = "SessionError"
SESSION_NOT_FOUND = "SessionNotFound"
RATE_LIMITED = "RateLimited"


class WebError(Exception):
    """A request refused: answered ``{"status": "error", ...}``."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


@attrs.frozen
class Param:
    """One parameter: its JSON type, whether it must be there, its bounds
    (a string's length in characters, an integer's value)."""

    kind: type | tuple[type, ...]
    required: bool = True
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    choices: frozenset[str] | None = None
    nullable: bool = False


def _name(required: bool = True) -> Param:
    return Param(str, required, max_length=64)


#: Every command and its parameters (docs/web-protocol.md, "Commands").
COMMANDS: Mapping[str, Mapping[str, Param]] = {
    "create_session": {
        "screen_name": _name(),
        "password": Param(str, max_length=64),
        "client": Param(str, required=False, max_length=64),
        "device_id": Param(str, required=False, max_length=64),
    },
    "server_info": {},
    "sign_up": {"screen_name": _name(), "password": Param(str, max_length=64)},
    "restore_session": {
        "session_id": Param(str, max_length=64),
        "resume_token": Param(str, max_length=128),
        "last_seq": Param(int, minimum=0),
    },
    "close_session": {},
    "get_session_info": {},
    "list_client_sessions": {},
    "get_buddy_list": {},
    "send_im": {
        "to": _name(),
        "text": Param(str, max_length=4000),
        "client_message_id": Param(str, max_length=MAX_ID_LENGTH),
        "auto_response": Param(bool, required=False),
    },
    "typing": {
        "to": _name(),
        "state": Param(str, choices=frozenset({"typing", "typed", "none"})),
    },
    "update_session_state": {
        "away_message": Param(str, required=False, max_length=1024, nullable=True),
        "idle_seconds": Param(int, required=False, minimum=0, maximum=0xFFFFFFFF),
        "profile": Param(str, required=False, max_length=1024),
        "invisible": Param(bool, required=False),
    },
    "get_session_statistics": {},
    "warn": {"name": _name(), "anonymous": Param(bool, required=False)},
    "add_buddy": {"name": _name(), "group": Param(str, required=False, max_length=48)},
    "remove_buddy": {"name": _name()},
    "sign_off_location": {"instance_id": Param(int, minimum=0, maximum=2**53)},
    "ack": {"seq": Param(int, minimum=0)},
    "join_room": {
        "room": Param(str, max_length=48),
        "exchange": Param(int, required=False, minimum=4, maximum=5),
    },
    "leave_room": {"room": Param(str, max_length=48)},
    "say": {
        "room": Param(str, max_length=48),
        "text": Param(str, max_length=1024),
        "to": Param(str, required=False, max_length=64),
    },
    "get_history": {
        "with": Param(str, required=False, max_length=64),
        "limit": Param(int, required=False, minimum=1, maximum=1000),
    },
}


class Request(NamedTuple):
    """A checked request (a tuple: built for every message, quickly)."""

    id: str | int
    command: str
    parameters: Mapping[str, Any]


#: ``Request(...)`` goes through the keywords-and-defaults ``__new__`` a
#: NamedTuple has: 400 ns a message, against 150 for this.
_new_request = tuple.__new__
_ENVELOPE = frozenset({"id", "command", "parameters"})
_KIND_NAMES = {str: "a string", int: "an integer", bool: "a boolean"}


@attrs.frozen
class _Check:
    """A ``Param`` as the per-request loop reads it."""

    name: str
    required: bool
    kinds: tuple[type, ...]
    max_length: int | None
    minimum: int | None
    maximum: int | None
    choices: frozenset[str] | None
    nullable: bool


def _compile(schema: Mapping[str, Param]) -> tuple[frozenset[str], tuple[_Check, ...]]:
    checks = []
    for name, param in schema.items():
        kinds = param.kind if isinstance(param.kind, tuple) else (param.kind,)
        checks.append(
            _Check(
                name,
                param.required,
                kinds,
                param.max_length,
                param.minimum,
                param.maximum,
                param.choices,
                param.nullable,
            )
        )
    return frozenset(schema), tuple(checks)


#: COMMANDS as checked on every request (a browser IM's parsing was ~13 % of
#: its CPU with the schema read afresh each time, bench S13).
_COMPILED = {command: _compile(schema) for command, schema in COMMANDS.items()}


def parse_request(text: str | bytes) -> Request:
    """The request in ``text``, checked against ``COMMANDS``. A refusal that
    could still name the request carries its id (``WebError.request_id``)."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise WebError(VALIDATION, "the message is not JSON") from None
    if type(data) is not dict:
        raise WebError(VALIDATION, "the message must be a JSON object")
    plain = _plain_request(data)
    if plain is not None:
        return plain
    return _checked_request(data)


def _checked_request(data: dict[str, Any]) -> Request:
    """A request object checked field by field against ``COMMANDS``."""
    request_id = data.get("id")
    kind = type(request_id)
    if not (
        (kind is str and len(request_id) <= MAX_ID_LENGTH)  # type: ignore[arg-type]
        or (kind is int and -(2**53) < request_id < 2**53)  # type: ignore[operator]
    ):
        raise WebError(VALIDATION, "id must be a string of at most 64 characters or an integer")
    try:
        if not _ENVELOPE.issuperset(data):
            unknown = set(data) - _ENVELOPE
            raise WebError(VALIDATION, f"unknown fields: {', '.join(sorted(map(str, unknown)))}")
        command = data.get("command")
        compiled = _COMPILED.get(command) if type(command) is str else None
        if compiled is None:
            raise WebError(VALIDATION, f"unknown command: {str(command)[:64]!r}")
        parameters = data.get("parameters", {})
        if type(parameters) is not dict:
            raise WebError(VALIDATION, "parameters must be a JSON object")
        return Request(request_id, command, _checked(compiled, parameters))  # type: ignore[arg-type]
    except WebError as e:
        e.request_id = request_id  # type: ignore[attr-defined]
        raise


_SEND_IM = COMMANDS["send_im"]
_TO_MAX = _SEND_IM["to"].max_length
_TEXT_MAX = _SEND_IM["text"].max_length
_CLIENT_ID_MAX = _SEND_IM["client_message_id"].max_length


def _plain_request(data: dict[str, Any]) -> Request | None:
    """
    Nearly every message is a ``send_im`` or an ``ack`` that the checks
    take: this takes those, in one expression each, as :func:`_checked`
    would (the general loop over the parameters cost ~1.2 us of a browser
    IM's ~20, bench S13). None for anything else, which the general checks
    then take or refuse, naming the problem.
    """
    try:
        request_id = data["id"]
        parameters = data["parameters"]
        command = data["command"]
    except KeyError:
        return None
    if not (
        len(data) == 3
        and type(parameters) is dict
        and (
            (type(request_id) is int and _ID_MIN < request_id < _ID_MAX)
            or (type(request_id) is str and len(request_id) <= MAX_ID_LENGTH)
        )
    ):
        return None
    try:
        if command == "send_im":
            to = parameters["to"]
            text = parameters["text"]
            client_id = parameters["client_message_id"]
            count = len(parameters)
            if (
                type(to) is str
                and type(text) is str
                and type(client_id) is str
                and len(to) <= _TO_MAX  # type: ignore[operator]
                and len(text) <= _TEXT_MAX  # type: ignore[operator]
                and len(client_id) <= _CLIENT_ID_MAX  # type: ignore[operator]
                and (count == 3 or (count == 4 and type(parameters["auto_response"]) is bool))
            ):
                return _new_request(Request, (request_id, command, parameters))
        elif command == "ack":
            seq = parameters["seq"]
            if len(parameters) == 1 and type(seq) is int and seq >= 0:
                return _new_request(Request, (request_id, command, parameters))
    except KeyError:
        pass
    return None


def _checked(
    compiled: tuple[frozenset[str], tuple[_Check, ...]], given: dict[str, Any]
) -> dict[str, Any]:
    names, checks = compiled
    if not names.issuperset(given):
        unknown = set(given) - names
        raise WebError(VALIDATION, f"unknown parameters: {', '.join(sorted(map(str, unknown)))}")
    for check in checks:
        name = check.name
        if name not in given:
            if check.required:
                raise WebError(VALIDATION, f"missing parameter: {name}")
            continue
        value = given[name]
        if value is None and check.nullable:
            continue
        kind = type(value)
        if kind not in check.kinds and not (kind is not bool and isinstance(value, check.kinds)):
            raise WebError(VALIDATION, f"{name} must be {_kind_name(check.kinds)}")
        if check.max_length is not None and len(value) > check.max_length:
            raise WebError(VALIDATION, f"{name} is longer than {check.max_length} characters")
        if check.minimum is not None and value < check.minimum:
            raise WebError(VALIDATION, f"{name} must be at least {check.minimum}")
        if check.maximum is not None and value > check.maximum:
            raise WebError(VALIDATION, f"{name} must be at most {check.maximum}")
        if check.choices is not None and value not in check.choices:
            raise WebError(VALIDATION, f"{name} must be one of {', '.join(sorted(check.choices))}")
    return given


def _kind_name(kinds: tuple[type, ...]) -> str:
    return " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)


def success(request_id: str | int, result: Any, now_ms: int) -> bytes:
    return _text({"id": request_id, "status": "success", "result": result, "timestamp": now_ms})


def failure(request_id: str | int | None, error: WebError, now_ms: int) -> bytes:
    return _text(
        {
            "id": request_id,
            "status": "error",
            "error": error.message,
            "error_type": error.error_type,
            "timestamp": now_ms,
        }
    )


def event(name: str, seq: int, now_ms: int, fields: Mapping[str, Any]) -> bytes:
    return _text({"event": name, "seq": seq, "timestamp": now_ms, **fields})


def _text(message: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON, as it goes in a text frame (never decoded to str)."""
    return orjson.dumps(message)
