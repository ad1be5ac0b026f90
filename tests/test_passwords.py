"""Tests for aimserver.passwords: roasting, BUCP digests, checks (LOGIN.md §2.1, §3.4, §10)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.store.credentials import (
    ROAST_TABLE,
    SIGNATURE,
    Credentials,
    check_bucp_digest,
    check_roasted_password,
    new_auth_key,
    new_credentials,
    roast,
    strong_digest,
    validate_password,
    weak_digest,
)
from aimserver.store.interfaces import InvalidPassword

KEY = b"1234567890"
WEAK = bytes.fromhex("862A71EBC6B0913AC23B3ACE99CA9951")
STRONG = bytes.fromhex("054B2494F6D223078F90B1D1333B757F")

passwords = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=4, max_size=16)


def credentials_of_secret() -> Credentials:
    """The credentials of password "secret" under the LOGIN.md worked-example key."""
    return Credentials(auth_key=KEY.decode("ascii"), weak_md5=WEAK, strong_md5=STRONG)


class KnownValuesTests(SynchronousTestCase):
    """The values LOGIN.md works through by hand."""

    def test_signature(self) -> None:
        """The digest suffix is the 26 ASCII bytes clients append."""
        self.assertEqual(SIGNATURE, b"AOL Instant Messenger (SM)")
        self.assertEqual(len(SIGNATURE), 26)

    def test_roast_table(self) -> None:
        """The Windows AIM roasting table (LOGIN.md §2.1)."""
        self.assertEqual(ROAST_TABLE.hex().upper(), "F32681C43986DB9271A3B9E6537A957C")

    def test_roast_secret(self) -> None:
        """LOGIN.md §2.1: "secret" roasts to 80 43 E2 B6 5C F2."""
        self.assertEqual(roast(b"secret"), bytes.fromhex("8043E2B65CF2"))

    def test_roast_repeats_table(self) -> None:
        """A password longer than 16 bytes wraps around the table."""
        self.assertEqual(roast(bytes(17)), ROAST_TABLE + ROAST_TABLE[:1])

    def test_weak_digest(self) -> None:
        """LOGIN.md §3.4: weak digest of "secret" under key "1234567890"."""
        self.assertEqual(weak_digest(KEY, b"secret"), WEAK)

    def test_strong_digest(self) -> None:
        """LOGIN.md §3.4: strong digest of "secret" under key "1234567890"."""
        self.assertEqual(strong_digest(KEY, b"secret"), STRONG)


class RoastTests(SynchronousTestCase):
    @given(st.binary(max_size=64))
    def test_round_trip(self, data: bytes) -> None:
        """Roasting twice gives the input back, so one function roasts and un-roasts."""
        self.assertEqual(roast(roast(data)), data)

    @given(st.binary(max_size=64))
    def test_length_kept(self, data: bytes) -> None:
        """The roasted form is as long as the password."""
        self.assertEqual(len(roast(data)), len(data))


class CheckTests(SynchronousTestCase):
    """Checking what a client sends against what the store keeps."""

    def test_bucp_weak_accepted(self) -> None:
        """A client without TLV 0x4C sends the weak digest: accepted."""
        self.assertTrue(check_bucp_digest(credentials_of_secret(), WEAK))

    def test_bucp_strong_accepted(self) -> None:
        """A client with TLV 0x4C sends the strong digest: accepted."""
        self.assertTrue(check_bucp_digest(credentials_of_secret(), STRONG))

    def test_bucp_wrong_rejected(self) -> None:
        """A digest of another password is refused."""
        wrong = strong_digest(KEY, b"secreT")
        self.assertFalse(check_bucp_digest(credentials_of_secret(), wrong))

    def test_bucp_wrong_length_rejected(self) -> None:
        """A truncated or empty digest is refused, not an error."""
        account = credentials_of_secret()
        self.assertFalse(check_bucp_digest(account, STRONG[:15]))
        self.assertFalse(check_bucp_digest(account, b""))

    def test_roasted_accepted(self) -> None:
        """A channel-1 client roasting the right password is accepted."""
        self.assertTrue(check_roasted_password(credentials_of_secret(), roast(b"secret")))

    def test_roasted_wrong_rejected(self) -> None:
        """A roasted wrong password, or the plaintext sent unroasted, is refused."""
        account = credentials_of_secret()
        self.assertFalse(check_roasted_password(account, roast(b"secret1")))
        self.assertFalse(check_roasted_password(account, b"secret"))
        self.assertFalse(check_roasted_password(account, b""))

    @given(passwords, passwords)
    def test_new_credentials(self, password: str, other: str) -> None:
        """
        Fresh credentials accept the password by every login method and refuse
        any other password.
        """
        credentials = new_credentials(password)
        key = credentials.auth_key.encode("ascii")
        secret = password.encode("utf-8")
        self.assertTrue(check_bucp_digest(credentials, weak_digest(key, secret)))
        self.assertTrue(check_bucp_digest(credentials, strong_digest(key, secret)))
        self.assertTrue(check_roasted_password(credentials, roast(secret)))
        if other != password:
            wrong = other.encode("utf-8")
            self.assertFalse(check_bucp_digest(credentials, strong_digest(key, wrong)))
            self.assertFalse(check_roasted_password(credentials, roast(wrong)))

    def test_new_credentials_new_key(self) -> None:
        """Setting the same password twice gives a new key, so old digests stop working."""
        first = new_credentials("secret")
        second = new_credentials("secret")
        self.assertNotEqual(first.auth_key, second.auth_key)
        self.assertFalse(check_bucp_digest(second, first.strong_md5))

    def test_credentials_repr_hides_digests(self) -> None:
        """Digests are password-equivalent: they stay out of reprs (and so of logs)."""
        credentials = new_credentials("secret")
        self.assertNotIn(credentials.strong_md5.hex(), repr(credentials))
        self.assertNotIn(repr(credentials.weak_md5), repr(credentials))
        self.assertNotIn(credentials.auth_key, repr(credentials))


class AuthKeyTests(SynchronousTestCase):
    def test_ascii_and_random(self) -> None:
        """Keys are ASCII (sent as a string16 in 17,07) and differ each time."""
        keys = {new_auth_key() for _ in range(20)}
        self.assertEqual(len(keys), 20)
        for key in keys:
            self.assertTrue(key.isascii())
            self.assertGreaterEqual(len(key), 16)


class ValidatePasswordTests(SynchronousTestCase):
    def test_lengths_accepted(self) -> None:
        """4 to 16 characters are accepted, whatever the characters."""
        for password in ("abcd", "x" * 16, "päß wörd", "1234567"):
            validate_password(password)

    def test_lengths_refused(self) -> None:
        """Shorter than 4 or longer than 16 characters is InvalidPassword."""
        for password in ("", "abc", "x" * 17):
            self.assertRaises(InvalidPassword, validate_password, password)

    def test_lone_surrogate_refused(self) -> None:
        """Text that cannot be encoded (a lone surrogate) is InvalidPassword."""
        self.assertRaises(InvalidPassword, validate_password, "abc\udc80")

    def test_new_credentials_validates(self) -> None:
        """No credentials are made for an invalid password."""
        self.assertRaises(InvalidPassword, new_credentials, "abc")
