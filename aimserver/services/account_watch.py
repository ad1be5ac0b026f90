# -*- test-case-name: tests.test_e2e_account_watch -*-
"""Admin changes made outside the server reach live sessions.

The admin CLI writes to the database while the server runs. Once a second
the server asks the store whether another process committed anything
(``outside_writes``: one cheap PRAGMA on the DB thread); when it did, it
drops the online users from the account cache and reads them afresh, and
signs off the sessions of an account that was deleted or suspended. A
password change leaves live sessions signed on (they proved the old one);
the next login needs the new one. Changes the server makes itself (the
management API, the console) act at once and need none of this.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import TimerService
from twisted.logger import Logger

from aimserver.registry import UserRegistry
from aimserver.wire.codes import DisconnectReason

INTERVAL = 1.0


class AccountWatch:
    log = Logger()

    def __init__(self, registry: UserRegistry, store: Any) -> None:
        """``store`` is the server's (the account cache, in front of the
        SQLite store whose ``outside_writes`` it asks)."""
        self.registry = registry
        self.store = store
        self._seen: int | None = None
        self._checking = False

    def service(self, clock: Any) -> TimerService:
        timer = TimerService(INTERVAL, self.check)
        timer.clock = clock
        return timer

    def check(self) -> Any:
        backing = getattr(self.store, "store", self.store)
        outside_writes = getattr(backing, "outside_writes", None)
        if outside_writes is None or self._checking:
            return None
        self._checking = True
        d = outside_writes()
        d.addCallback(self._compare)
        d.addErrback(lambda failure: self.log.failure("checking for outside writes", failure))
        d.addBoth(self._done)
        return d

    def _done(self, result: object) -> None:
        self._checking = False

    def _compare(self, version: int) -> Any:
        seen, self._seen = self._seen, version
        if seen is None or seen == version:
            return None
        keys = [user.key for user in self.registry]
        forget = getattr(self.store, "forget", None)
        if forget is not None:
            for key in keys:
                forget(key)
        return self.store.get_accounts(keys).addCallback(self._apply, keys)

    def _apply(self, accounts: dict[str, Any], keys: list[str]) -> None:
        for key in keys:
            account = accounts.get(key)
            if account is not None and not account.suspended:
                continue
            user = self.registry.by_key(key)
            if user is None:
                continue
            self.log.info(
                "{screen_name}: account {what} outside the server; signing its sessions off",
                screen_name=user.screen_name,
                what="deleted" if account is None else "suspended",
            )
            reason = DisconnectReason.ACCOUNT_DELETED if account is None else None
            for session in list(user.instances.values()):
                session.connection.disconnect(reason)
