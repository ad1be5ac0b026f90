# -*- test-case-name: tests.test_wire_roomname -*-
"""Chat room names and room cookies: which names are valid, when two names
are the same room, and the cookie string that names a room on the wire.

The cookie is ``<exchange>-<instance>-<name>`` (ASCII): libpurple shows a
room under everything after the second ``-`` of its cookie, decoding
``%XX`` escapes, and copies the cookie into a 128-byte buffer. So a name is
printable ASCII without ``%`` (nothing to escape, nothing decoded into
something else) and short enough that the cookie fits both libpurple's
buffer and the login cookie's room field (``cookies.MAX_ROOM_LENGTH``).
"""

from __future__ import annotations

import re

from aimserver.wire.errors import MalformedData

#: Longest room name, in characters (= bytes: names are ASCII). Advertised
#: in the exchange's TLV 0x0004.
MAX_ROOM_NAME_LENGTH = 48
#: Longest room cookie: exchange and instance (u16 each, 5 digits) and the name.
MAX_ROOM_COOKIE_LENGTH = 5 + 1 + 5 + 1 + MAX_ROOM_NAME_LENGTH

_NAME_CHARACTERS = re.compile(r"[ !-$&-~]+")  # printable ASCII but "%"
# Numbers without leading zeros: one room, one cookie (room_cookie writes none).
_COOKIE = re.compile(rb"(0|[1-9][0-9]{0,4})-(0|[1-9][0-9]{0,4})-(.+)", re.DOTALL)


class InvalidRoomName(ValueError):
    """A room name that is empty, too long, or has a character rooms may
    not have; the message says which, for the log and the admin CLI."""


def room_name(raw: str) -> str:
    """The room name ``raw`` asks for, with runs of spaces made one and the
    ends trimmed (what a user typing a name means), or ``InvalidRoomName``."""
    name = re.sub(" +", " ", raw).strip(" ")
    if not name:
        raise InvalidRoomName("a room name must not be empty")
    if len(name) > MAX_ROOM_NAME_LENGTH:
        raise InvalidRoomName(f"a room name has at most {MAX_ROOM_NAME_LENGTH} characters")
    if not _NAME_CHARACTERS.fullmatch(name):
        raise InvalidRoomName("a room name has printable ASCII characters only, and no '%'")
    return name


def room_key(name: str) -> str:
    """The identity of a room within its exchange: names differing only in
    case (or spaces, once ``room_name`` made them single) are one room."""
    return name.lower()


def room_cookie(exchange: int, instance: int, name: str) -> bytes:
    return f"{exchange}-{instance}-{name}".encode("ascii")


def parse_room_cookie(cookie: bytes) -> tuple[int, int, str]:
    """``(exchange, instance, name)`` of a cookie ``room_cookie`` made, the
    name checked by ``room_name``; ``MalformedData`` for anything else."""
    match = _COOKIE.fullmatch(cookie)
    if match is None or len(cookie) > MAX_ROOM_COOKIE_LENGTH:
        raise MalformedData("not a room cookie")
    exchange, instance = int(match[1]), int(match[2])
    if exchange > 0xFFFF or instance > 0xFFFF:
        raise MalformedData("room cookie exchange or instance out of range")
    try:
        name = room_name(match[3].decode("ascii"))
    except (UnicodeDecodeError, InvalidRoomName):
        raise MalformedData("room cookie with an invalid name") from None
    if name.encode("ascii") != match[3]:
        raise MalformedData("room cookie with a name not in its canonical form")
    return exchange, instance, name
