# -*- test-case-name: tests.test_passwords -*-
"""
Password handling without plaintext at rest (LOGIN.md §2.1, §3.4, §10).

An account keeps a random auth key and two MD5 digests. Those are enough to
check both login methods: BUCP clients send a digest salted with the key,
channel-1 clients send the "roasted" (XOR-obfuscated) password. Passwords are
encoded as UTF-8 bytes. Pure: no Twisted.

It also keeps MD5(password) (``password_md5``), which lets the server check a
strong-hash BUCP login (TLV 0x4C) against a fresh random challenge instead of
the fixed key, so that a captured login does not replay
(``[auth] allow_weak_hash = false``, :func:`check_challenged_digest`). Like
the digests, it is password-equivalent for BUCP logins.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Protocol

from aimserver.store.interfaces import Credentials, InvalidPassword

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "ROAST_TABLE",
    "SIGNATURE",
    "Credentials",
    "check_bucp_digest",
    "check_challenged_digest",
    "challenged_digest",
    "check_roasted_password",
    "credentials_for",
    "new_auth_key",
    "new_challenge",
    "new_credentials",
    "password_md5",
    "roast",
    "strong_digest",
    "validate_password",
    "weak_digest",
]

SIGNATURE = b"AOL Instant Messenger (SM)"
"""The constant every BUCP digest ends with."""

ROAST_TABLE = bytes.fromhex("F32681C43986DB9271A3B9E6537A957C")
"""The XOR table of Windows AIM (other clients' tables: LOGIN.md §2.1)."""

MIN_PASSWORD_LENGTH = 4
MAX_PASSWORD_LENGTH = 16


class _HasCredentials(Protocol):
    """What the checks need from an account (:class:`~aimserver.store.interfaces.Account`)."""

    @property
    def auth_key(self) -> str: ...

    @property
    def weak_md5(self) -> bytes: ...

    @property
    def strong_md5(self) -> bytes: ...

    @property
    def password_md5(self) -> bytes | None: ...


def roast(data: bytes) -> bytes:
    """
    XOR ``data`` with :data:`ROAST_TABLE`, repeated. Roasting twice gives the
    input back, so this both roasts and un-roasts.
    """
    table = ROAST_TABLE
    return bytes(b ^ table[i % len(table)] for i, b in enumerate(data))


def new_auth_key() -> str:
    """A random ASCII auth key (32 hex digits), sent verbatim to clients in 17,07."""
    return secrets.token_hex(16)


def new_challenge() -> str:
    """A fresh random challenge (32 hex digits) for one 17,07, used in place
    of the account's fixed key when weak hashes are not allowed."""
    return secrets.token_hex(16)


def password_md5(password: bytes) -> bytes:
    """MD5(password), the inner hash of the strong digest (16 raw bytes)."""
    return hashlib.md5(password).digest()


def weak_digest(auth_key: bytes, password: bytes) -> bytes:
    """The "old" BUCP digest: MD5(key ‖ password ‖ signature)."""
    return hashlib.md5(auth_key + password + SIGNATURE).digest()


def strong_digest(auth_key: bytes, password: bytes) -> bytes:
    """The "new" BUCP digest (TLV 0x4C): MD5(key ‖ MD5(password) ‖ signature)."""
    return challenged_digest(auth_key, password_md5(password))


def challenged_digest(challenge: bytes, inner: bytes) -> bytes:
    """The strong digest from MD5(password) (``inner``) and a challenge:
    MD5(challenge ‖ inner ‖ signature)."""
    return hashlib.md5(challenge + inner + SIGNATURE).digest()


def validate_password(password: str) -> None:
    """
    Refuse a password an account may not have.

    :raises InvalidPassword: unless it has 4-16 characters and is encodable
        as UTF-8 (a lone surrogate is not).
    """
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidPassword(
            f"password must be {MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH} characters"
        )
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPassword("password is not valid text") from None


def new_credentials(password: str) -> Credentials:
    """
    Validate a password and derive what the store keeps for it, under a new
    auth key (a new key at every change makes captured digests useless).

    :raises InvalidPassword: see :func:`validate_password`.
    """
    validate_password(password)
    return credentials_for(password.encode("utf-8"))


def credentials_for(password: bytes) -> Credentials:
    """
    What the store keeps for a password's bytes as sent (no charset assumed,
    no length check: callers check what they accept), under a new auth key:
    the key, both digests and MD5(password). Every place that sets a
    password goes through here.
    """
    key = new_auth_key().encode("ascii")
    return Credentials(
        auth_key=key.decode("ascii"),
        weak_md5=weak_digest(key, password),
        strong_md5=strong_digest(key, password),
        password_md5=password_md5(password),
    )


def check_bucp_digest(account: _HasCredentials, digest: bytes) -> bool:
    """
    Whether a 17,02 digest (TLV 0x25) proves the password.

    Either stored form is accepted whatever TLV 0x4C says, because some
    clients mislabel (LOGIN.md §3.4). Both comparisons always run, in
    constant time, so timing tells nothing about which one matched.
    """
    weak_ok = hmac.compare_digest(digest, account.weak_md5)
    strong_ok = hmac.compare_digest(digest, account.strong_md5)
    return weak_ok | strong_ok


def check_challenged_digest(account: _HasCredentials, challenge: str, digest: bytes) -> bool:
    """
    Whether a strong-form 17,02 digest (TLV 0x25) answers ``challenge`` (the
    random one sent in this connection's 17,07) for the account's password:
    MD5(challenge ‖ MD5(password) ‖ signature), compared in constant time.
    False for an account whose MD5(password) is not known (created before
    it was kept, or registered from a BUCP digest).
    """
    inner = account.password_md5
    if inner is None:
        return False
    expected = challenged_digest(challenge.encode("ascii"), inner)
    return hmac.compare_digest(digest, expected)


def check_roasted_password(account: _HasCredentials, roasted: bytes) -> bool:
    """
    Whether a channel-1 roasted password (TLV 0x02) is the account's: un-roast
    it, recompute the weak digest with the account's key and compare in
    constant time. The plaintext lives only inside this call.
    """
    computed = weak_digest(account.auth_key.encode("ascii"), roast(roasted))
    return hmac.compare_digest(computed, account.weak_md5)
