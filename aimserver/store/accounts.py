# -*- test-case-name: tests.test_store -*-
"""
:class:`~aimserver.store.interfaces.IAccountStore`, in memory and in SQLite:
screen names, credentials, the suspended and bot flags, and the settings a
user changes through the Admin service (display format, e-mail address,
registration status, confirmation).

The ``_op(conn, ...)`` functions are the SQLite store's operations, run in one
transaction by :func:`aimserver.store.sqlite.transact`; the admin CLI calls
them too, on its own connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from zope.interface import implementer

from aimserver.store._base import MemoryBase, SQLiteBase, fired
from aimserver.store.bart_items import drop_owned_bart_items
from aimserver.store.credentials import Credentials, new_credentials
from aimserver.store.interfaces import (
    Account,
    AccountExists,
    IAccountStore,
    InvalidScreenName,
    check_credentials,
    check_email,
    check_registration_status,
)
from aimserver.wire.screenname import is_account_name, normalize

__all__ = ["MemoryAccountStore", "SQLiteAccountStore"]


def _check_name(screen_name: str) -> None:
    if not is_account_name(screen_name):
        raise InvalidScreenName(f"invalid or reserved screen name: {screen_name!r}")


def _check_format(screen_name: str, display: str) -> None:
    """``display`` may become the display form of ``screen_name``."""
    _check_name(display)
    if normalize(display) != normalize(screen_name):
        raise InvalidScreenName(f"{display!r} is not a form of {screen_name!r}")


def _new_account(
    screen_name: str, credentials: Credentials, now: int, bot: bool = False
) -> Account:
    return Account(
        screen_name=screen_name,
        auth_key=credentials.auth_key,
        weak_md5=credentials.weak_md5,
        strong_md5=credentials.strong_md5,
        password_md5=credentials.password_md5,
        created_at=now,
        bot=bool(bot),
    )


@implementer(IAccountStore)
class MemoryAccountStore(MemoryBase):
    """Accounts in a dictionary (:class:`MemoryBase`); deleting one drops
    every role's data for it."""

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
        def create() -> Account:
            _check_name(screen_name)
            return self._insert(screen_name, new_credentials(password))

        return fired(create)

    def create_account_with_credentials(
        self, screen_name: str, credentials: Credentials
    ) -> Deferred[Account]:
        def create() -> Account:
            _check_name(screen_name)
            check_credentials(credentials)
            return self._insert(screen_name, credentials)

        return fired(create)

    def _insert(self, screen_name: str, credentials: Credentials) -> Account:
        normalized = normalize(screen_name)
        if normalized in self._accounts:
            raise AccountExists(f"screen name already registered: {screen_name}")
        account = _new_account(screen_name, credentials, self._now())
        self._accounts[normalized] = account
        return account

    def delete_account(self, screen_name: str) -> Deferred[bool]:
        normalized = normalize(screen_name)
        self._drop_user_data(normalized)
        return defer.succeed(self._accounts.pop(normalized, None) is not None)

    def list_accounts(self) -> Deferred[list[Account]]:
        return defer.succeed([self._accounts[key] for key in sorted(self._accounts)])

    def set_password(self, screen_name: str, password: str) -> Deferred[bool]:
        return fired(lambda: self._replace_credentials(screen_name, new_credentials(password)))

    def set_suspended(self, screen_name: str, suspended: bool) -> Deferred[bool]:
        return defer.succeed(self._replace(screen_name, suspended=suspended))

    def set_bot(self, screen_name: str, bot: bool) -> Deferred[bool]:
        return defer.succeed(self._replace(screen_name, bot=bool(bot)))

    def set_credentials(
        self, screen_name: str, credentials: Credentials, replacing: str | None = None
    ) -> Deferred[bool]:
        def change() -> bool:
            check_credentials(credentials)
            account = self._accounts.get(normalize(screen_name))
            if account is None or (replacing is not None and account.auth_key != replacing):
                return False
            return self._replace_credentials(screen_name, credentials)

        return fired(change)

    def _replace_credentials(self, screen_name: str, credentials: Credentials) -> bool:
        return self._replace(
            screen_name,
            auth_key=credentials.auth_key,
            weak_md5=credentials.weak_md5,
            strong_md5=credentials.strong_md5,
            password_md5=credentials.password_md5,
        )

    def set_screen_name_format(self, screen_name: str, display: str) -> Deferred[bool]:
        def change() -> bool:
            _check_format(screen_name, display)
            key = normalize(screen_name)
            account = self._accounts.get(key)
            if account is None:
                return False
            self._accounts[key] = attrs.evolve(account, screen_name=display)
            return True

        return fired(change)

    def set_email(self, screen_name: str, email: str) -> Deferred[bool]:
        def change() -> bool:
            kept = check_email(email)
            account = self._accounts.get(normalize(screen_name))
            if account is None:
                return False
            confirmed = account.confirmed and account.email == kept
            return self._replace(screen_name, email=kept, confirmed=confirmed)

        return fired(change)

    def set_registration_status(self, screen_name: str, status: int) -> Deferred[bool]:
        def change() -> bool:
            check_registration_status(status)
            return self._replace(screen_name, registration_status=status)

        return fired(change)

    def set_confirmed(self, screen_name: str, confirmed: bool) -> Deferred[bool]:
        return defer.succeed(self._replace(screen_name, confirmed=bool(confirmed)))


# --- SQLite operations --------------------------------------------------------

_ACCOUNT_COLUMNS = (
    "screen_name, auth_key, weak_md5, strong_md5, suspended, created_at,"
    " warning_level, warning_updated_at, bot, email, registration_status, confirmed,"
    " password_md5"
)


def _account(row: tuple[Any, ...]) -> Account:
    (
        screen_name,
        auth_key,
        weak,
        strong,
        suspended,
        created_at,
        warning,
        warned_at,
        bot,
        email,
        registration_status,
        confirmed,
        inner,
    ) = row
    return Account(
        screen_name=screen_name,
        auth_key=auth_key,
        weak_md5=bytes(weak),
        strong_md5=bytes(strong),
        suspended=bool(suspended),
        created_at=created_at,
        warning_level=warning,
        warning_updated_at=warned_at,
        bot=bool(bot),
        email=email,
        registration_status=registration_status,
        confirmed=bool(confirmed),
        password_md5=None if inner is None else bytes(inner),
    )


def _get_account(conn: sqlite3.Connection, screen_name: str) -> Account | None:
    row = conn.execute(
        f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE normalized = ?",
        (normalize(screen_name),),
    ).fetchone()
    return None if row is None else _account(row)


#: Names per query of get_accounts (SQLite allows 32,766 parameters; a
#: smaller IN list keeps each statement quick).
_ACCOUNTS_PER_QUERY = 500


def _get_accounts(conn: sqlite3.Connection, screen_names: Sequence[str]) -> dict[str, Account]:
    keys = sorted({normalize(name) for name in screen_names})
    found: dict[str, Account] = {}
    for start in range(0, len(keys), _ACCOUNTS_PER_QUERY):
        chunk = keys[start : start + _ACCOUNTS_PER_QUERY]
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT normalized, {_ACCOUNT_COLUMNS} FROM accounts WHERE normalized IN ({marks})",
            chunk,
        )
        for row in rows:
            found[row[0]] = _account(tuple(row)[1:])
    return found


def _create_account(
    conn: sqlite3.Connection, screen_name: str, password: str, now: int, bot: bool = False
) -> Account:
    """``bot`` is for the CLI (``user add --bot``); :meth:`SQLiteAccountStore.create_account`
    never passes it."""
    _check_name(screen_name)
    return _insert_account(conn, screen_name, new_credentials(password), now, bot)


def _create_account_with_credentials(
    conn: sqlite3.Connection, screen_name: str, credentials: Credentials, now: int
) -> Account:
    _check_name(screen_name)
    check_credentials(credentials)
    return _insert_account(conn, screen_name, credentials, now)


def _insert_account(
    conn: sqlite3.Connection,
    screen_name: str,
    credentials: Credentials,
    now: int,
    bot: bool = False,
) -> Account:
    if _get_account(conn, screen_name) is not None:
        raise AccountExists(f"screen name already registered: {screen_name}")
    account = _new_account(screen_name, credentials, now, bot)
    try:
        conn.execute(
            f"INSERT INTO accounts (normalized, {_ACCOUNT_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                account.normalized,
                account.screen_name,
                account.auth_key,
                account.weak_md5,
                account.strong_md5,
                int(account.suspended),
                account.created_at,
                account.warning_level,
                account.warning_updated_at,
                int(account.bot),
                account.email,
                account.registration_status,
                int(account.confirmed),
                account.password_md5,
            ),
        )
    except sqlite3.IntegrityError as e:
        raise AccountExists(f"screen name already registered: {screen_name}") from e
    return account


def _delete_account(conn: sqlite3.Connection, screen_name: str) -> bool:
    normalized = normalize(screen_name)
    drop_owned_bart_items(conn, normalized)
    # Foreign keys cascade to the account's other rows (feedbag, offline
    # messages, directory record, BART ownerships, MOTD seen, history).
    cursor = conn.execute("DELETE FROM accounts WHERE normalized = ?", (normalized,))
    return cursor.rowcount > 0


def _list_accounts(conn: sqlite3.Connection) -> list[Account]:
    rows = conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY normalized")
    return [_account(row) for row in rows]


def _set_password(conn: sqlite3.Connection, screen_name: str, password: str) -> bool:
    return _set_credentials(conn, screen_name, new_credentials(password))


def _set_suspended(conn: sqlite3.Connection, screen_name: str, suspended: bool) -> bool:
    cursor = conn.execute(
        "UPDATE accounts SET suspended = ? WHERE normalized = ?",
        (int(suspended), normalize(screen_name)),
    )
    return cursor.rowcount > 0


def _set_bot(conn: sqlite3.Connection, screen_name: str, bot: bool) -> bool:
    cursor = conn.execute(
        "UPDATE accounts SET bot = ? WHERE normalized = ?",
        (int(bool(bot)), normalize(screen_name)),
    )
    return cursor.rowcount > 0


def _set_credentials(
    conn: sqlite3.Connection,
    screen_name: str,
    credentials: Credentials,
    replacing: str | None = None,
) -> bool:
    check_credentials(credentials)
    cursor = conn.execute(
        "UPDATE accounts SET auth_key = ?, weak_md5 = ?, strong_md5 = ?, password_md5 = ?"
        " WHERE normalized = ? AND (? IS NULL OR auth_key = ?)",
        (
            credentials.auth_key,
            credentials.weak_md5,
            credentials.strong_md5,
            credentials.password_md5,
            normalize(screen_name),
            replacing,
            replacing,
        ),
    )
    return cursor.rowcount > 0


def _set_screen_name_format(conn: sqlite3.Connection, screen_name: str, display: str) -> bool:
    _check_format(screen_name, display)
    cursor = conn.execute(
        "UPDATE accounts SET screen_name = ? WHERE normalized = ?",
        (display, normalize(screen_name)),
    )
    return cursor.rowcount > 0


def _set_email(conn: sqlite3.Connection, screen_name: str, email: str) -> bool:
    kept = check_email(email)
    # The right-hand sides see the row as it was: confirmed survives only
    # when the address stays the same.
    cursor = conn.execute(
        "UPDATE accounts SET email = ?, confirmed = confirmed * (email = ?) WHERE normalized = ?",
        (kept, kept, normalize(screen_name)),
    )
    return cursor.rowcount > 0


def _set_registration_status(conn: sqlite3.Connection, screen_name: str, status: int) -> bool:
    check_registration_status(status)
    cursor = conn.execute(
        "UPDATE accounts SET registration_status = ? WHERE normalized = ?",
        (status, normalize(screen_name)),
    )
    return cursor.rowcount > 0


def _set_confirmed(conn: sqlite3.Connection, screen_name: str, confirmed: bool) -> bool:
    cursor = conn.execute(
        "UPDATE accounts SET confirmed = ? WHERE normalized = ?",
        (int(bool(confirmed)), normalize(screen_name)),
    )
    return cursor.rowcount > 0


@implementer(IAccountStore)
class SQLiteAccountStore(SQLiteBase):
    """The ``accounts`` table."""

    def get_account(self, screen_name: str) -> Deferred[Account | None]:
        return self._call(_get_account, screen_name, write=False)

    def get_accounts(self, screen_names: Sequence[str]) -> Deferred[dict[str, Account]]:
        return self._call(_get_accounts, list(screen_names), write=False)

    def peek_account(self, screen_name: str) -> Account | None:
        return None

    def create_account(self, screen_name: str, password: str) -> Deferred[Account]:
        return self._call(_create_account, screen_name, password, self._now())

    def create_account_with_credentials(
        self, screen_name: str, credentials: Credentials
    ) -> Deferred[Account]:
        return self._call(_create_account_with_credentials, screen_name, credentials, self._now())

    def delete_account(self, screen_name: str) -> Deferred[bool]:
        return self._call(_delete_account, screen_name)

    def list_accounts(self) -> Deferred[list[Account]]:
        return self._call(_list_accounts, write=False)

    def set_password(self, screen_name: str, password: str) -> Deferred[bool]:
        return self._call(_set_password, screen_name, password)

    def set_suspended(self, screen_name: str, suspended: bool) -> Deferred[bool]:
        return self._call(_set_suspended, screen_name, suspended)

    def set_bot(self, screen_name: str, bot: bool) -> Deferred[bool]:
        return self._call(_set_bot, screen_name, bot)

    def set_credentials(
        self, screen_name: str, credentials: Credentials, replacing: str | None = None
    ) -> Deferred[bool]:
        return self._call(_set_credentials, screen_name, credentials, replacing)

    def set_screen_name_format(self, screen_name: str, display: str) -> Deferred[bool]:
        return self._call(_set_screen_name_format, screen_name, display)

    def set_email(self, screen_name: str, email: str) -> Deferred[bool]:
        return self._call(_set_email, screen_name, email)

    def set_registration_status(self, screen_name: str, status: int) -> Deferred[bool]:
        return self._call(_set_registration_status, screen_name, status)

    def set_confirmed(self, screen_name: str, confirmed: bool) -> Deferred[bool]:
        return self._call(_set_confirmed, screen_name, confirmed)
