# -*- test-case-name: tests.test_wire_screenname -*-
"""Tests for L{aimserver.wire.screenname}: identity and validity (OSCAR.md §6)."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.wire.errors import MalformedData
from aimserver.wire.screenname import (
    decode_screen_name,
    encode_screen_name,
    is_valid_screen_name,
    normalize,
)
from tests.strategies import icq_uins, screen_names


def reference_validity(name: str) -> bool:
    """OSCAR.md §6 restated independently of the regular expressions under test."""
    digits = set(string.digits)
    allowed = set(string.ascii_letters + string.digits + " ")
    if name and set(name) <= digits:
        return 5 <= len(name) <= 9
    return (
        3 <= len(name) <= 16
        and set(name) <= allowed
        and name[0] in string.ascii_letters
        and not name.endswith(" ")
        and len(name.replace(" ", "")) >= 3
    )


class NormalizeTests(SynchronousTestCase):
    """Identity ignores case and spaces."""

    def test_same_account(self) -> None:
        """The names "Bob Smith", "bobsmith" and "BOBSMITH " are one account."""
        self.assertEqual(normalize("Bob Smith"), "bobsmith")
        self.assertEqual(normalize("bobsmith"), "bobsmith")
        self.assertEqual(normalize("BOBSMITH "), "bobsmith")
        self.assertEqual(normalize(" B o B s M i T h "), "bobsmith")

    def test_different_accounts(self) -> None:
        """Names that differ in more than case and spaces stay different."""
        self.assertNotEqual(normalize("Bob Smith"), normalize("Bob Smith2"))

    @given(screen_names())
    def test_idempotent(self, name: str) -> None:
        """Normalising twice changes nothing; the key has no spaces or capitals."""
        key = normalize(name)
        self.assertEqual(normalize(key), key)
        self.assertNotIn(" ", key)
        self.assertEqual(key, key.lower())

    @given(screen_names(), st.lists(st.booleans(), min_size=16, max_size=16))
    def test_case_and_spaces(self, name: str, upper: list[bool]) -> None:
        """Changing the case of any letter or adding spaces keeps the identity."""
        variant = " ".join(
            c.upper() if flip else c.lower() for c, flip in zip(name, upper, strict=False)
        )
        self.assertEqual(normalize(variant), normalize(name))


class ValidityTests(SynchronousTestCase):
    """Which screen names may be registered."""

    def test_valid(self) -> None:
        """3-16 letters, digits and spaces starting with a letter, and ICQ UINs, are valid."""
        for name in ["abc", "Bob", "Bob Smith", "a" * 16, "A1b2", "a1 2", "A B C", "12345",
                     "123456789"]:  # fmt: skip
            self.assertTrue(is_valid_screen_name(name), name)

    def test_invalid(self) -> None:
        """Too short, too long, a leading digit or space, a trailing space, other
        characters, fewer than 3 letters/digits, or a UIN of the wrong length are invalid."""
        for name in [
            "",
            "ab",
            "a" * 17,
            "1abc",
            " bob",
            "bob ",
            "bob_smith",
            "bob.smith",
            "bob\n",
            "a  b",
            "a b",
            "b\u00f6b",
            "bob\u0661",
            "1234",
            "1234567890",
            "\u0661\u0662\u0663\u0664\u0665",
        ]:
            self.assertFalse(is_valid_screen_name(name), repr(name))

    @given(screen_names())
    def test_generated_names_valid(self, name: str) -> None:
        """Every name the test strategy makes is valid (the strategy is honest)."""
        self.assertTrue(is_valid_screen_name(name))

    @given(icq_uins())
    def test_uins_valid(self, uin: str) -> None:
        """Every 5-9 digit UIN is valid."""
        self.assertTrue(is_valid_screen_name(uin))

    @given(st.text(alphabet=string.ascii_letters[:4] + "09 _\u00e9\n", max_size=20))
    def test_matches_rules(self, name: str) -> None:
        """Validity agrees with the rules of OSCAR.md §6 for any text."""
        self.assertEqual(is_valid_screen_name(name), reference_validity(name))


class ScreenNameCodecTests(SynchronousTestCase):
    """Screen names travel as ASCII."""

    def test_ascii(self) -> None:
        """ASCII bytes decode to the same text and encode back."""
        self.assertEqual(decode_screen_name(b"Bob Smith"), "Bob Smith")
        self.assertEqual(encode_screen_name("Bob Smith"), b"Bob Smith")

    def test_non_ascii(self) -> None:
        """Bytes outside ASCII are malformed input."""
        for raw in [b"B\xf6b", b"\x80", "Bób".encode()]:
            exc = self.assertRaises(MalformedData, decode_screen_name, raw)
            self.assertIn("screen name", str(exc))

    @given(st.binary(max_size=20))
    def test_any_bytes(self, raw: bytes) -> None:
        """Any bytes decode to text that encodes back to them, or are MalformedData."""
        try:
            name = decode_screen_name(raw)
        except MalformedData:
            self.assertFalse(raw.isascii())
            return
        self.assertEqual(encode_screen_name(name), raw)
