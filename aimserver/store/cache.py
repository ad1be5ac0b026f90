# -*- test-case-name: tests.test_store_cache -*-
"""A short-lived account cache in front of any ``IUserStore``.

One sign-on looks the account up three times within a millisecond (17,06,
17,02, BOS), and each SQLite lookup is a round trip through the DB thread.
Found accounts are kept for ``ttl`` seconds; every write through this store
drops the entry. Writes made by another process (the admin CLI while the
server runs) take effect here within ``ttl`` seconds. Unknown names are never
cached, so a user added with the CLI can sign on at once. Misses that
arrive while a lookup is out are looked up together, in one query.

Only accounts are cached, so the class defines only the account reads. Every
other method of every role is made from the role interfaces when the class is
defined (:func:`_by_role`): a method of a role in :data:`ACCOUNT_WRITERS`
changes the account named by its first argument, so it goes to the wrapped
store with that entry forgotten; a method of any other role *is* the wrapped
store's, bound to it. Adding a method to a role needs no change here.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from aimserver.store.interfaces import (
    USER_STORE_ROLES,
    Account,
    IAccountStore,
    IUserStore,
    IWarningStore,
)
from aimserver.wire.screenname import normalize

DEFAULT_TTL = 10.0
MAX_CACHED_ACCOUNTS = 20_000
#: Names in one batched lookup; the rest wait for the next.
MAX_BATCH = 500

ACCOUNT_WRITERS = (IAccountStore, IWarningStore)
"""The roles that write account records (the warning level is a field of the
:class:`Account`): each of their methods the cache does not define is a write
of the account named by its first argument."""


class _Forwarded:
    """A method the cache leaves alone: the wrapped store's own, bound to it
    (no extra call, and ``verifyObject`` sees the real signature)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: CachedUserStore | None, owner: type | None = None) -> Any:
        return self if instance is None else getattr(instance.store, self.name)


def _account_write(name: str) -> Callable[..., Deferred[Any]]:
    """The wrapped store's method ``name``, with the cached entry of the
    account it changes forgotten before and after."""

    def write(self: CachedUserStore, screen_name: str, *args: Any, **kwargs: Any) -> Deferred[Any]:
        return self._writing(screen_name, getattr(self.store, name)(screen_name, *args, **kwargs))

    write.__name__, write.__qualname__ = name, f"CachedUserStore.{name}"
    return write


def _by_role(cls: type[CachedUserStore]) -> type[CachedUserStore]:
    """Give ``cls`` every role method it does not define itself."""
    for role in USER_STORE_ROLES:
        for name in role.names():
            if name not in vars(cls):
                method = _account_write(name) if role in ACCOUNT_WRITERS else _Forwarded(name)
                setattr(cls, name, method)
    return cls


@implementer(IUserStore)
@_by_role
class CachedUserStore:
    """
    :class:`IUserStore` in front of another, keeping the accounts it looks up
    for ``ttl`` seconds (at most ``max_entries`` of them).
    """

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

    # Account reads that are not cached: the wrapped store's own.
    get_accounts = _Forwarded("get_accounts")
    list_accounts = _Forwarded("list_accounts")

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
