# -*- test-case-name: tests.test_wire_roomname -*-
"""Tests for L{aimserver.wire.roomname}: which room names are valid, when two
are one room, and room cookies (``<exchange>-<instance>-<name>``) both ways."""

from __future__ import annotations

import contextlib
import string

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.cookies import MAX_ROOM_LENGTH
from aimserver.wire.errors import MalformedData
from aimserver.wire.roomname import (
    MAX_ROOM_COOKIE_LENGTH,
    MAX_ROOM_NAME_LENGTH,
    InvalidRoomName,
    parse_room_cookie,
    room_cookie,
    room_key,
    room_name,
)
from tests.strategies import fuzz, room_names, u16s

#: libpurple copies a room cookie into ``char name[128]`` (notes §2).
LIBPURPLE_COOKIE_BUFFER = 127


class RoomNameTests(SynchronousTestCase):
    def test_valid_names_are_kept(self) -> None:
        for name in ("Room", "a", "Pidgin users!", "x" * MAX_ROOM_NAME_LENGTH, "a-b-c", "~&$!"):
            self.assertEqual(room_name(name), name)

    def test_spaces_are_tidied(self) -> None:
        """Runs of spaces become one, the ends are trimmed."""
        self.assertEqual(room_name("  My   room "), "My room")
        # The length counts after tidying.
        self.assertEqual(room_name("a" + " " * 60 + "b"), "a b")
        self.assertEqual(room_name(" " + "x" * MAX_ROOM_NAME_LENGTH + " "), "x" * 48)

    def test_invalid_names_are_refused(self) -> None:
        """Empty, too long, "%", control, tab, DEL or non-ASCII: InvalidRoomName."""
        for name in (
            "",
            "   ",
            "x" * (MAX_ROOM_NAME_LENGTH + 1),
            "50%",
            "a%20b",
            "a\tb",
            "a\nb",
            "a\x00",
            "a\x7f",
            "caf\u00e9",
            "\u0661",  # an Arabic-Indic digit: not ASCII
        ):
            with self.assertRaises(InvalidRoomName, msg=repr(name)):
                room_name(name)

    def test_invalid_name_is_a_value_error(self) -> None:
        self.assertTrue(issubclass(InvalidRoomName, ValueError))

    def test_key_ignores_case(self) -> None:
        self.assertEqual(room_key("My Room"), room_key("my ROOM"))
        self.assertNotEqual(room_key("My Room"), room_key("MyRoom"))


class RoomCookieTests(SynchronousTestCase):
    def test_known_cookies(self) -> None:
        self.assertEqual(room_cookie(4, 0, "Room"), b"4-0-Room")
        self.assertEqual(parse_room_cookie(b"4-0-Room"), (4, 0, "Room"))
        self.assertEqual(parse_room_cookie(b"5-12-My room"), (5, 12, "My room"))
        self.assertEqual(parse_room_cookie(b"0-0-x"), (0, 0, "x"))
        # Everything after the second "-" is the name, as libpurple reads it.
        self.assertEqual(parse_room_cookie(b"4-0-a-b-c"), (4, 0, "a-b-c"))
        longest = b"65535-65535-" + b"x" * MAX_ROOM_NAME_LENGTH
        self.assertEqual(len(longest), MAX_ROOM_COOKIE_LENGTH)
        self.assertEqual(parse_room_cookie(longest), (65535, 65535, "x" * 48))

    def test_cookies_fit_their_buffers(self) -> None:
        """The longest cookie fits libpurple's buffer and the login cookie's field."""
        self.assertLessEqual(MAX_ROOM_COOKIE_LENGTH, LIBPURPLE_COOKIE_BUFFER)
        self.assertLessEqual(MAX_ROOM_COOKIE_LENGTH, MAX_ROOM_LENGTH)

    def test_bad_cookies_are_malformed(self) -> None:
        for cookie in (
            b"",
            b"create",
            b"4-0",
            b"4-0-",
            b"4--Room",
            b"-0-Room",
            b"x-0-Room",
            b"+4-0-Room",
            b" 4-0-Room",
            b"4-0- Room",
            b"4-0-Room ",
            b"4-0-My  room",
            b"4-0-50%",
            b"4-0-caf\xc3\xa9",
            b"4-0-\xff",
            b"4-0-a\nb",
            b"65536-0-Room",
            b"4-65536-Room",
            b"123456-0-Room",
            b"04-0-Room",
            b"4-00-Room",
            b"4-0-" + b"x" * (MAX_ROOM_NAME_LENGTH + 1),
        ):
            with self.assertRaises(MalformedData, msg=repr(cookie)):
                parse_room_cookie(cookie)


def _canonical_cookies() -> st.SearchStrategy[bytes]:
    return st.builds(room_cookie, u16s, u16s, room_names())


class PropertyTests(SynchronousTestCase):
    @given(room_names())
    def test_valid_names_are_their_own_form(self, name: str) -> None:
        self.assertEqual(room_name(name), name)

    @given(st.text(max_size=60))
    def test_names_are_tidied_or_refused(self, raw: str) -> None:
        """Any text: a valid name (tidying again changes nothing) or
        InvalidRoomName; nothing else escapes."""
        try:
            name = room_name(raw)
        except InvalidRoomName:
            return
        self.assertEqual(room_name(name), name)
        self.assertTrue(0 < len(name) <= MAX_ROOM_NAME_LENGTH)
        self.assertNotIn("%", name)

    @given(
        st.text(
            alphabet=st.sampled_from(string.printable + "\x00\x7f\u00e9%"), min_size=1, max_size=60
        )
    )
    def test_names_near_the_alphabet(self, raw: str) -> None:
        with contextlib.suppress(InvalidRoomName):
            self.assertEqual(room_name(room_name(raw)), room_name(raw))

    @given(room_names(), st.data())
    def test_key_is_case_blind(self, name: str, data: st.DataObject) -> None:
        flipped = "".join(
            c.swapcase() if data.draw(st.booleans(), label="flip") else c for c in name
        )
        self.assertEqual(room_key(flipped), room_key(name))

    @given(u16s, u16s, room_names())
    def test_cookie_round_trip(self, exchange: int, instance: int, name: str) -> None:
        cookie = room_cookie(exchange, instance, name)
        self.assertLessEqual(len(cookie), MAX_ROOM_COOKIE_LENGTH)
        self.assertEqual(parse_room_cookie(cookie), (exchange, instance, name))

    @given(fuzz(_canonical_cookies(), max_size=70))
    def test_any_bytes_parse_or_are_malformed(self, cookie: bytes) -> None:
        """Random bytes or near misses of cookies: MalformedData or a room
        whose cookie is exactly these bytes (one cookie per room)."""
        try:
            parsed = parse_room_cookie(cookie)
        except MalformedData:
            return
        self.assertEqual(room_cookie(*parsed), cookie)
