# -*- test-case-name: tests.test_store -*-
"""
What the role modules share. A store is one class made of one mixin per role
(:mod:`aimserver.store.memory`, :mod:`aimserver.store.sqlite`); a role's two
mixins live in that role's module. The memory mixins share the account records
every role's data hangs off; the SQLite mixins share the runner that takes
their operations to the one connection.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from aimserver.store.interfaces import Account, NoSuchAccount, StoreError
from aimserver.wire.screenname import normalize

__all__ = ["MemoryBase", "SQLiteBase", "existing_account", "fired"]

_T = TypeVar("_T")


def fired(f: Callable[[], _T]) -> Deferred[_T]:
    """Run ``f`` now (the memory store's way of being asynchronous): a fired
    Deferred of its result or of the StoreError it raised."""
    try:
        return defer.succeed(f())
    except StoreError:
        return defer.fail()


class MemoryBase:
    """
    The state the memory roles share: the clock and the account records. A
    role's mixin adds its own dictionaries in ``__init__`` (after
    ``super().__init__(clock)``) and forgets a deleted account's entries in
    :meth:`_drop_user_data`, as SQLite's foreign keys do.

    :param clock: where ``created_at`` comes from; the wall clock if ``None``.
    """

    def __init__(self, clock: IReactorTime | None = None) -> None:
        self._clock = clock
        self._accounts: dict[str, Account] = {}

    def _now(self) -> int:
        return int(self._clock.seconds() if self._clock is not None else time.time())

    def _existing(self, screen_name: str) -> str:
        """The normalized name of an account that must exist."""
        normalized = normalize(screen_name)
        if normalized not in self._accounts:
            raise NoSuchAccount(f"no such account: {screen_name}")
        return normalized

    def _replace(self, screen_name: str, **changes: object) -> bool:
        """Change fields of an account record; ``False`` if there is none."""
        normalized = normalize(screen_name)
        account = self._accounts.get(normalized)
        if account is None:
            return False
        self._accounts[normalized] = attrs.evolve(account, **changes)
        return True

    def _drop_user_data(self, normalized: str) -> None:
        """An account is being deleted: each role's mixin forgets what it keeps
        for it, then calls ``super()``."""


class SQLiteBase:
    """What the SQLite roles call; :class:`~aimserver.store.sqlite.SQLiteUserStore` provides it."""

    def _call(self, op: Callable[..., _T], *args: Any, write: bool = True) -> Deferred[_T]:
        """A Deferred of ``op(conn, *args)``, run in one transaction where the
        connection lives (the DB thread)."""
        raise NotImplementedError

    def _now(self) -> int:
        """The store's clock, in unix seconds."""
        raise NotImplementedError


def existing_account(conn: sqlite3.Connection, screen_name: str) -> str:
    """The normalized name of an account that must exist (in SQLite)."""
    normalized = normalize(screen_name)
    row = conn.execute("SELECT 1 FROM accounts WHERE normalized = ?", (normalized,)).fetchone()
    if row is None:
        raise NoSuchAccount(f"no such account: {screen_name}")
    return normalized
