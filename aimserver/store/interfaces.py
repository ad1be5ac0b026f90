# -*- test-case-name: tests.test_store -*-
# zope.interface methods have no self:
# ruff: noqa: N805
"""
The contract between the server and whatever keeps user-level data.

Everything here is free of Twisted at import time so that the pure modules
(:mod:`aimserver.passwords`) can share the error types and value classes.
Implementations: :mod:`aimserver.store.memory` (tests, the reference) and
:mod:`aimserver.store.sqlite` (the embedded default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs
from zope.interface import Interface

from aimserver.wire.screenname import normalize

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from aimserver.passwords import Credentials

__all__ = [
    "DIGEST_SIZE",
    "MAX_AUTH_KEY_LENGTH",
    "MAX_FEEDBAG_ITEMS",
    "MAX_ITEM_ATTRIBUTES_BYTES",
    "MAX_ITEM_NAME_BYTES",
    "MAX_SECRET_NAME_BYTES",
    "MAX_SECRET_SIZE",
    "Account",
    "AccountExists",
    "Feedbag",
    "FeedbagItem",
    "IUserStore",
    "InvalidPassword",
    "InvalidScreenName",
    "NoSuchAccount",
    "StoreError",
    "check_credentials",
    "check_feedbag_item",
    "check_secret_request",
]

# Bounds that every implementation enforces, so that a client (or a bug)
# cannot grow one user's record without limit. The feedbag service applies
# the tighter per-class limits it announces in 13,03; these are a backstop.
MAX_ITEM_NAME_BYTES = 255
MAX_ITEM_ATTRIBUTES_BYTES = 8 * 1024
MAX_FEEDBAG_ITEMS = 4096
MAX_SECRET_NAME_BYTES = 255
MAX_SECRET_SIZE = 1024
MAX_AUTH_KEY_LENGTH = 255
DIGEST_SIZE = 16
_U16_MAX = 0xFFFF


class StoreError(Exception):
    """
    A store operation failed. Every error a store reports is one of these;
    the subclasses are the ones a caller is expected to handle.
    """


class AccountExists(StoreError):  # noqa: N818 (the name is the API)
    """The screen name (in any case/spacing) is already registered."""


class NoSuchAccount(StoreError):  # noqa: N818 (the name is the API)
    """The operation needs an account, and there is none by that name."""


class InvalidScreenName(StoreError):  # noqa: N818 (the name is the API)
    """The screen name breaks the AIM / ICQ naming rules."""


class InvalidPassword(StoreError):  # noqa: N818 (the name is the API)
    """The password breaks the length rules."""


@attrs.frozen
class Account:
    """
    One registered screen name and what is needed to check its password.

    The digests are password-equivalent for BUCP logins (LOGIN.md §10), so
    they and the key are kept out of ``repr`` to keep them out of logs.
    """

    screen_name: str
    """The display form, as registered (case and spaces kept)."""
    auth_key: str = attrs.field(repr=False)
    """Random ASCII salt, sent verbatim to clients in 17,07."""
    weak_md5: bytes = attrs.field(repr=False)
    """MD5(auth_key ‖ password ‖ signature)."""
    strong_md5: bytes = attrs.field(repr=False)
    """MD5(auth_key ‖ MD5(password) ‖ signature)."""
    suspended: bool = False
    created_at: int = 0
    """Unix seconds."""

    @property
    def normalized(self) -> str:
        """The key the account is stored under: no spaces, lower case."""
        return normalize(self.screen_name)


@attrs.frozen
class FeedbagItem:
    """
    One server-stored buddy-list (feedbag) item. ``attributes`` is the raw TLV
    block from the client; the store keeps it byte for byte and never parses it.
    """

    name: str
    group_id: int
    item_id: int
    class_id: int
    attributes: bytes

    @property
    def key(self) -> tuple[int, int]:
        """The (group_id, item_id) pair that identifies the item in its list."""
        return (self.group_id, self.item_id)


@attrs.frozen
class Feedbag:
    """
    A user's whole feedbag, items ordered by (group_id, item_id).
    ``last_modified`` is 0 for a list that was never written.
    """

    items: tuple[FeedbagItem, ...]
    last_modified: int


def check_feedbag_item(item: FeedbagItem) -> None:
    """
    Refuse an item no store should keep.

    :raises StoreError: if an id is not a u16 (the wire size) or the name or
        attribute block is bigger than the store bounds.
    """
    for field in ("group_id", "item_id", "class_id"):
        value = getattr(item, field)
        if not 0 <= value <= _U16_MAX:
            raise StoreError(f"feedbag item {field} {value} is not a 16-bit value")
    if len(item.name.encode("utf-8", "surrogatepass")) > MAX_ITEM_NAME_BYTES:
        raise StoreError(f"feedbag item name longer than {MAX_ITEM_NAME_BYTES} bytes")
    if len(item.attributes) > MAX_ITEM_ATTRIBUTES_BYTES:
        raise StoreError(f"feedbag item attributes longer than {MAX_ITEM_ATTRIBUTES_BYTES} bytes")


def check_credentials(credentials: Credentials) -> None:
    """
    Refuse credentials that could never check out: a key that is empty, too
    long or not printable ASCII (it is sent back as-is in 17,07), or digests
    that are not 16-byte MD5 values.

    :raises StoreError: as above.
    """
    key = credentials.auth_key
    if not (0 < len(key) <= MAX_AUTH_KEY_LENGTH and key.isascii() and key.isprintable()):
        raise StoreError(f"auth key must be 1-{MAX_AUTH_KEY_LENGTH} printable ASCII characters")
    if len(credentials.weak_md5) != DIGEST_SIZE or len(credentials.strong_md5) != DIGEST_SIZE:
        raise StoreError(f"digests must be {DIGEST_SIZE} bytes")


def check_secret_request(name: str, size: int) -> None:
    """
    Refuse a secret request outside sane bounds.

    :raises StoreError: if the name is empty or too long, or the size is not
        between 1 and :data:`MAX_SECRET_SIZE` bytes.
    """
    if not name or len(name.encode("utf-8", "surrogatepass")) > MAX_SECRET_NAME_BYTES:
        raise StoreError(f"secret name must be 1-{MAX_SECRET_NAME_BYTES} bytes")
    if not 1 <= size <= MAX_SECRET_SIZE:
        raise StoreError(f"secret size must be 1-{MAX_SECRET_SIZE} bytes, not {size}")


class IUserStore(Interface):
    """
    Persistent user-level data: accounts, feedbags and server secrets.

    Every method returns a Deferred; failures are :class:`StoreError`
    subclasses. Screen-name arguments may be in any case and spacing.
    Implementations must never keep a plaintext password.
    """

    def get_account(screen_name: str) -> Deferred[Account | None]:
        """
        Look up an account.

        :return: fires with the :class:`Account`, or ``None`` if there is none.
        :rtype: Deferred[Account | None]
        """

    def create_account(screen_name: str, password: str) -> Deferred[Account]:
        """
        Register a screen name with a fresh auth key and both digests of the
        password; ``created_at`` is the store's clock.

        :return: fires with the new :class:`Account`.
        :rtype: Deferred[Account]
        :raises InvalidScreenName: the name breaks the naming rules.
        :raises InvalidPassword: the password is not 4-16 characters.
        :raises AccountExists: the normalized name is taken.
        """

    def create_account_with_credentials(
        screen_name: str, credentials: Credentials
    ) -> Deferred[Account]:
        """
        Register a screen name with a ready-made key and digests, for when the
        password itself is never seen (auto-registration from a BUCP digest).

        :return: fires with the new :class:`Account`.
        :rtype: Deferred[Account]
        :raises InvalidScreenName: the name breaks the naming rules.
        :raises AccountExists: the normalized name is taken.
        :raises StoreError: the credentials are malformed (:func:`check_credentials`).
        """

    def delete_account(screen_name: str) -> Deferred[bool]:
        """
        Remove an account and its feedbag.

        :return: fires with ``True`` if it existed, ``False`` otherwise.
        :rtype: Deferred[bool]
        """

    def list_accounts() -> Deferred[list[Account]]:
        """
        :return: fires with every account, sorted by normalized name.
        :rtype: Deferred[list[Account]]
        """

    def set_password(screen_name: str, password: str) -> Deferred[bool]:
        """
        Replace the password. The auth key changes too, so digests captured
        under the old key stop working.

        :return: fires with ``True`` if the account exists, ``False`` otherwise.
        :rtype: Deferred[bool]
        :raises InvalidPassword: the password is not 4-16 characters.
        """

    def set_suspended(screen_name: str, suspended: bool) -> Deferred[bool]:
        """
        Suspend or reinstate an account (the login service refuses suspended
        accounts; the digests are kept).

        :return: fires with ``True`` if the account exists, ``False`` otherwise.
        :rtype: Deferred[bool]
        """

    def get_feedbag(screen_name: str) -> Deferred[Feedbag]:
        """
        :return: fires with the user's :class:`Feedbag`, or
            ``Feedbag(items=(), last_modified=0)`` if none was ever written
            (or there is no such account).
        :rtype: Deferred[Feedbag]
        """

    def upsert_feedbag_items(
        screen_name: str, items: Sequence[FeedbagItem], now: int
    ) -> Deferred[None]:
        """
        Insert the items, replacing any with the same (group_id, item_id), and
        set ``last_modified`` to ``now``. All or nothing.

        :rtype: Deferred[None]
        :raises NoSuchAccount: there is no such account.
        :raises StoreError: an item is out of bounds (:func:`check_feedbag_item`)
            or the list would exceed :data:`MAX_FEEDBAG_ITEMS`.
        """

    def delete_feedbag_items(
        screen_name: str, keys: Sequence[tuple[int, int]], now: int
    ) -> Deferred[None]:
        """
        Remove the items with these (group_id, item_id) keys (missing ones are
        ignored) and set ``last_modified`` to ``now``.

        :rtype: Deferred[None]
        :raises NoSuchAccount: there is no such account.
        """

    def get_or_create_secret(name: str, size: int) -> Deferred[bytes]:
        """
        A random secret that survives restarts (e.g. the cookie HMAC key):
        ``size`` fresh random bytes the first time, the same bytes afterwards.

        :rtype: Deferred[bytes]
        :raises StoreError: name or size out of bounds, or a secret of that
            name exists with a different size.
        """
