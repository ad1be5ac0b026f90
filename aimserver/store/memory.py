# -*- test-case-name: tests.test_store -*-
"""
An in-memory :class:`~aimserver.store.interfaces.IUserStore`: the reference
implementation of the contract, for tests. Every Deferred it returns has
already fired.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from aimserver.passwords import Credentials, new_credentials
from aimserver.store.interfaces import (
    MAX_FEEDBAG_ITEMS,
    Account,
    AccountExists,
    Feedbag,
    FeedbagItem,
    InvalidScreenName,
    IUserStore,
    NoSuchAccount,
    OfflineMessage,
    StoreError,
    check_credentials,
    check_feedbag_item,
    check_offline_message,
    check_offline_quota,
    check_secret_request,
    check_up_to_id,
    check_warning,
)
from aimserver.wire.screenname import is_valid_screen_name, normalize

__all__ = ["MemoryUserStore"]

_T = TypeVar("_T")


def _fired(f: Callable[..., _T], *args: object) -> Deferred[_T]:
    """Run ``f`` now; a fired Deferred of its result or of its StoreError."""
    try:
        return defer.succeed(f(*args))
    except StoreError:
        return defer.fail()


def _check_name(screen_name: str) -> None:
    if not is_valid_screen_name(screen_name):
        raise InvalidScreenName(f"invalid screen name: {screen_name!r}")


@implementer(IUserStore)
class MemoryUserStore:
    """
    Accounts, feedbags, offline messages and secrets in dictionaries, lost
    when the process ends.

    :param clock: where ``created_at`` comes from; the wall clock if ``None``.
    """

    def __init__(self, clock: IReactorTime | None = None) -> None:
        self._clock = clock
        self._accounts: dict[str, Account] = {}
        self._items: dict[str, dict[tuple[int, int], FeedbagItem]] = {}
        self._last_modified: dict[str, int] = {}
        self._secrets: dict[str, bytes] = {}
        self._offline: dict[str, list[OfflineMessage]] = {}
        # One sequence for every inbox, like SQLite's AUTOINCREMENT.
        self._last_message_id = 0

    def _now(self) -> int:
        return int(self._clock.seconds() if self._clock is not None else time.time())

    def get_account(self, screen_name: str) -> Deferred[Account | None]:
        return defer.succeed(self._accounts.get(normalize(screen_name)))

    def get_accounts(self, screen_names: Sequence[str]) -> Deferred[dict[str, Account]]:
        found = {}
        for name in screen_names:
            key = normalize(name)
            account = self._accounts.get(key)
            if account is not None:
                found[key] = account
        return defer.succeed(found)

    def peek_account(self, screen_name: str) -> Account | None:
        # Everything here is in memory, but test doubles subclass this store to
        # hold lookups back; get_account is the one way to read.
        return None

    def create_account(self, screen_name: str, password: str) -> Deferred[Account]:
        return _fired(self._create_account, screen_name, password)

    def _create_account(self, screen_name: str, password: str) -> Account:
        _check_name(screen_name)
        return self._insert(screen_name, new_credentials(password))

    def create_account_with_credentials(
        self, screen_name: str, credentials: Credentials
    ) -> Deferred[Account]:
        return _fired(self._create_account_with_credentials, screen_name, credentials)

    def _create_account_with_credentials(
        self, screen_name: str, credentials: Credentials
    ) -> Account:
        _check_name(screen_name)
        check_credentials(credentials)
        return self._insert(screen_name, credentials)

    def _insert(self, screen_name: str, credentials: Credentials) -> Account:
        normalized = normalize(screen_name)
        if normalized in self._accounts:
            raise AccountExists(f"screen name already registered: {screen_name}")
        account = Account(
            screen_name=screen_name,
            auth_key=credentials.auth_key,
            weak_md5=credentials.weak_md5,
            strong_md5=credentials.strong_md5,
            created_at=self._now(),
        )
        self._accounts[normalized] = account
        return account

    def delete_account(self, screen_name: str) -> Deferred[bool]:
        normalized = normalize(screen_name)
        self._items.pop(normalized, None)
        self._last_modified.pop(normalized, None)
        self._offline.pop(normalized, None)
        return defer.succeed(self._accounts.pop(normalized, None) is not None)

    def list_accounts(self) -> Deferred[list[Account]]:
        return defer.succeed([self._accounts[key] for key in sorted(self._accounts)])

    def set_password(self, screen_name: str, password: str) -> Deferred[bool]:
        return _fired(self._set_password, screen_name, password)

    def _set_password(self, screen_name: str, password: str) -> bool:
        credentials = new_credentials(password)
        return self._replace(
            screen_name,
            auth_key=credentials.auth_key,
            weak_md5=credentials.weak_md5,
            strong_md5=credentials.strong_md5,
        )

    def set_suspended(self, screen_name: str, suspended: bool) -> Deferred[bool]:
        return defer.succeed(self._replace(screen_name, suspended=suspended))

    def set_bot(self, screen_name: str, bot: bool) -> Deferred[bool]:
        return defer.succeed(self._replace(screen_name, bot=bool(bot)))

    def set_warning(self, screen_name: str, level: int, at: int) -> Deferred[bool]:
        return _fired(self._set_warning, screen_name, level, at)

    def _set_warning(self, screen_name: str, level: int, at: int) -> bool:
        level = check_warning(level, at)
        return self._replace(screen_name, warning_level=level, warning_updated_at=at)

    def _replace(self, screen_name: str, **changes: object) -> bool:
        normalized = normalize(screen_name)
        account = self._accounts.get(normalized)
        if account is None:
            return False
        self._accounts[normalized] = attrs.evolve(account, **changes)
        return True

    def get_feedbag(self, screen_name: str) -> Deferred[Feedbag]:
        normalized = normalize(screen_name)
        items = self._items.get(normalized, {})
        return defer.succeed(
            Feedbag(
                items=tuple(items[key] for key in sorted(items)),
                last_modified=self._last_modified.get(normalized, 0),
            )
        )

    def upsert_feedbag_items(
        self, screen_name: str, items: Sequence[FeedbagItem], now: int
    ) -> Deferred[None]:
        return _fired(self._upsert_feedbag_items, screen_name, items, now)

    def _upsert_feedbag_items(
        self, screen_name: str, items: Sequence[FeedbagItem], now: int
    ) -> None:
        normalized = self._existing(screen_name)
        for item in items:
            check_feedbag_item(item)
        merged = dict(self._items.get(normalized, {}))
        merged.update((item.key, item) for item in items)
        if len(merged) > MAX_FEEDBAG_ITEMS:
            raise StoreError(f"a feedbag holds at most {MAX_FEEDBAG_ITEMS} items")
        self._items[normalized] = merged
        self._last_modified[normalized] = now

    def delete_feedbag_items(
        self, screen_name: str, keys: Sequence[tuple[int, int]], now: int
    ) -> Deferred[None]:
        return _fired(self._delete_feedbag_items, screen_name, keys, now)

    def _delete_feedbag_items(
        self, screen_name: str, keys: Sequence[tuple[int, int]], now: int
    ) -> None:
        normalized = self._existing(screen_name)
        items = self._items.setdefault(normalized, {})
        for key in keys:
            items.pop(tuple(key), None)
        self._last_modified[normalized] = now

    def _existing(self, screen_name: str) -> str:
        """The normalized name of an account that must exist."""
        normalized = normalize(screen_name)
        if normalized not in self._accounts:
            raise NoSuchAccount(f"no such account: {screen_name}")
        return normalized

    def store_offline_message(
        self, recipient: str, sender: str, cookie: bytes, channel: int, tlvs: bytes, sent_at: int
    ) -> Deferred[OfflineMessage]:
        return _fired(
            self._store_offline_message, recipient, sender, cookie, channel, tlvs, sent_at
        )

    def _store_offline_message(
        self, recipient: str, sender: str, cookie: bytes, channel: int, tlvs: bytes, sent_at: int
    ) -> OfflineMessage:
        normalized = self._existing(recipient)
        check_offline_message(sender, cookie, channel, tlvs, sent_at)
        inbox = self._offline.get(normalized, [])
        # An inbox holds at most MAX_OFFLINE_MESSAGES_PER_RECIPIENT: cheap to add up.
        sender_key = normalize(sender)
        from_sender = [m for m in inbox if normalize(m.sender) == sender_key]
        check_offline_quota(
            recipient,
            sender,
            len(tlvs),
            (len(inbox), sum(len(m.tlvs) for m in inbox)),
            (len(from_sender), sum(len(m.tlvs) for m in from_sender)),
        )
        self._last_message_id += 1
        message = OfflineMessage(
            message_id=self._last_message_id,
            recipient=normalized,
            sender=sender,
            cookie=bytes(cookie),
            channel=channel,
            tlvs=bytes(tlvs),
            sent_at=sent_at,
        )
        self._offline.setdefault(normalized, []).append(message)
        return message

    def count_offline_messages(self) -> Deferred[dict[str, int]]:
        return defer.succeed({key: len(box) for key, box in self._offline.items() if box})

    def get_offline_messages(self, recipient: str) -> Deferred[list[OfflineMessage]]:
        return defer.succeed(list(self._offline.get(normalize(recipient), [])))

    def delete_offline_messages(self, recipient: str, up_to_id: int) -> Deferred[int]:
        return _fired(self._delete_offline_messages, recipient, up_to_id)

    def _delete_offline_messages(self, recipient: str, up_to_id: int) -> int:
        up_to_id = check_up_to_id(up_to_id)
        normalized = normalize(recipient)
        inbox = self._offline.get(normalized, [])
        kept = [message for message in inbox if message.message_id > up_to_id]
        if kept:
            self._offline[normalized] = kept
        else:
            self._offline.pop(normalized, None)
        return len(inbox) - len(kept)

    def get_or_create_secret(self, name: str, size: int) -> Deferred[bytes]:
        return _fired(self._get_or_create_secret, name, size)

    def _get_or_create_secret(self, name: str, size: int) -> bytes:
        check_secret_request(name, size)
        value = self._secrets.setdefault(name, secrets.token_bytes(size))
        if len(value) != size:
            raise StoreError(f"secret {name!r} exists with {len(value)} bytes, not {size}")
        return value
