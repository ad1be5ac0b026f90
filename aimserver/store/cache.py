# -*- test-case-name: tests.test_store_cache -*-
"""A short-lived account cache in front of any ``IUserStore``.

One sign-on looks the account up three times within a millisecond (17,06,
17,02, BOS), and each SQLite lookup is a round trip through the DB thread.
Found accounts are kept for ``ttl`` seconds; every write through this store
drops the entry. Writes made by another process (the admin CLI while the
server runs) take effect here within ``ttl`` seconds. Unknown names are never
cached, so a user added with the CLI can sign on at once. Misses that
arrive while a lookup is out are looked up together, in one query.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from aimserver.passwords import Credentials
from aimserver.store.interfaces import (
    Account,
    Feedbag,
    FeedbagItem,
    IUserStore,
    OfflineMessage,
)
from aimserver.wire.screenname import normalize

DEFAULT_TTL = 10.0
MAX_CACHED_ACCOUNTS = 20_000
#: Names in one batched lookup; the rest wait for the next.
MAX_BATCH = 500


@implementer(IUserStore)
class CachedUserStore:
    def __init__(
        self,
        store: IUserStore,
        clock: IReactorTime,
        ttl: float = DEFAULT_TTL,
        max_entries: int = MAX_CACHED_ACCOUNTS,
    ) -> None:
        self.store = store
        self.clock = clock
        self.ttl = ttl
        self.max_entries = max_entries
        self._accounts: OrderedDict[str, tuple[float, Account]] = OrderedDict()
        #: A lookup is out to the store; misses meanwhile wait for the next batch.
        self._looking_up = False
        self._waiting: dict[str, list[Deferred[Any]]] = {}

    # -- the cached read ----------------------------------------------------------------

    def peek_account(self, screen_name: str) -> Account | None:
        entry = self._accounts.get(normalize(screen_name))
        if entry is not None and entry[0] > self.clock.seconds():
            return entry[1]
        return None

    def get_account(self, screen_name: str) -> Deferred[Account | None]:
        """A fresh cached account at once; else one lookup. While a lookup is
        out, the misses that arrive wait and then go as one batch: after a
        restart every sign-on misses, and a database round trip costs the
        reactor thread 70-140 us however small the query."""
        key = normalize(screen_name)
        entry = self._accounts.get(key)
        now = self.clock.seconds()
        if entry is not None and entry[0] > now:
            return succeed(entry[1])
        self._accounts.pop(key, None)
        if self._looking_up:
            waiting = Deferred()
            self._waiting.setdefault(key, []).append(waiting)
            return waiting
        self._looking_up = True
        d = self.store.get_account(screen_name)
        d.addCallback(self._remember, key, now)
        d.addBoth(self._looked_up)
        return d

    def get_accounts(self, screen_names: Sequence[str]) -> Deferred[dict[str, Account]]:
        return self.store.get_accounts(screen_names)

    def _looked_up(self, result: Any) -> Any:
        """The lookup in flight is done: send the names that waited meanwhile."""
        self._looking_up = False
        if self._waiting:
            self._next_batch()
        return result

    def _next_batch(self) -> None:
        batch = dict(itertools.islice(self._waiting.items(), MAX_BATCH))
        for key in batch:
            del self._waiting[key]
        self._looking_up = True
        now = self.clock.seconds()
        d = self.store.get_accounts(list(batch))
        d.addCallbacks(self._batch_found, self._batch_failed, (batch, now), None, (batch,))
        d.addBoth(self._looked_up)

    def _batch_found(
        self, found: dict[str, Account], batch: dict[str, list[Deferred[Any]]], now: float
    ) -> None:
        for key, waiters in batch.items():
            account = self._remember(found.get(key), key, now)
            for waiter in waiters:
                waiter.callback(account)

    def _batch_failed(self, failure: Failure, batch: dict[str, list[Deferred[Any]]]) -> None:
        for waiters in batch.values():
            for waiter in waiters:
                waiter.errback(failure)

    def _remember(self, account: Account | None, key: str, now: float) -> Account | None:
        if account is not None:
            self._accounts[key] = (now + self.ttl, account)
            if len(self._accounts) > self.max_entries:
                self._accounts.popitem(last=False)
        return account

    def forget(self, screen_name: str) -> None:
        self._accounts.pop(normalize(screen_name), None)

    def _writing(self, screen_name: str, d: Deferred[Any]) -> Deferred[Any]:
        """Forget the entry now and again when the write lands, so a lookup
        racing the write cannot leave the old account cached."""
        self.forget(screen_name)

        def done(result: object) -> object:
            self.forget(screen_name)
            return result

        return d.addBoth(done)

    # -- account writes -----------------------------------------------------------------

    def create_account(self, screen_name: str, password: str) -> Deferred[Account]:
        return self._writing(screen_name, self.store.create_account(screen_name, password))

    def create_account_with_credentials(
        self, screen_name: str, credentials: Credentials
    ) -> Deferred[Account]:
        return self._writing(
            screen_name, self.store.create_account_with_credentials(screen_name, credentials)
        )

    def delete_account(self, screen_name: str) -> Deferred[bool]:
        return self._writing(screen_name, self.store.delete_account(screen_name))

    def set_password(self, screen_name: str, password: str) -> Deferred[bool]:
        return self._writing(screen_name, self.store.set_password(screen_name, password))

    def set_suspended(self, screen_name: str, suspended: bool) -> Deferred[bool]:
        return self._writing(screen_name, self.store.set_suspended(screen_name, suspended))

    def set_bot(self, screen_name: str, bot: bool) -> Deferred[bool]:
        return self._writing(screen_name, self.store.set_bot(screen_name, bot))

    def set_warning(self, screen_name: str, level: int, at: int) -> Deferred[bool]:
        return self._writing(screen_name, self.store.set_warning(screen_name, level, at))

    # -- everything else goes straight through ------------------------------------------

    def list_accounts(self) -> Deferred[list[Account]]:
        return self.store.list_accounts()

    def get_feedbag(self, screen_name: str) -> Deferred[Feedbag]:
        return self.store.get_feedbag(screen_name)

    def upsert_feedbag_items(
        self, screen_name: str, items: Sequence[FeedbagItem], now: int
    ) -> Deferred[None]:
        return self.store.upsert_feedbag_items(screen_name, items, now)

    def delete_feedbag_items(
        self, screen_name: str, keys: Sequence[tuple[int, int]], now: int
    ) -> Deferred[None]:
        return self.store.delete_feedbag_items(screen_name, keys, now)

    def store_offline_message(
        self, recipient: str, sender: str, cookie: bytes, channel: int, tlvs: bytes, sent_at: int
    ) -> Deferred[OfflineMessage]:
        return self.store.store_offline_message(recipient, sender, cookie, channel, tlvs, sent_at)

    def count_offline_messages(self) -> Deferred[dict[str, int]]:
        return self.store.count_offline_messages()

    def get_offline_messages(self, recipient: str) -> Deferred[list[OfflineMessage]]:
        return self.store.get_offline_messages(recipient)

    def delete_offline_messages(self, recipient: str, up_to_id: int) -> Deferred[int]:
        return self.store.delete_offline_messages(recipient, up_to_id)

    def get_or_create_secret(self, name: str, size: int) -> Deferred[bytes]:
        return self.store.get_or_create_secret(name, size)
