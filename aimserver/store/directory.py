# -*- test-case-name: tests.test_store -*-
"""
:class:`~aimserver.store.interfaces.IDirectoryStore`, in memory and in SQLite:
each account's directory record (Locate 02,09 fields, 02,0F interest
keywords), kept byte for byte. The two parts are written separately, so two
sessions of one user setting one each never undo the other's change.

Searches (ODir 0F,02, UserLookup 0A,02) go through an index. Matching
ignores ASCII case, which SQLite's ``lower()`` does byte by byte on the
stored bytes, as ``bytes.lower`` does. By e-mail they use
``accounts_by_email``; by keyword the five ``directory_by_keyword<N>``, and
by name ``directory_by_first_name`` or ``directory_by_last_name`` (schema
v8): indexes on ``lower(column)`` of the users who allow searches, which the
queries match by comparing that very expression. A search by other fields
alone (never asked by a service: ODir needs a first or last name) walks the
table in key order until the limit is reached.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from aimserver.store._base import MemoryBase, SQLiteBase, existing_account, fired
from aimserver.store.interfaces import (
    DIRECTORY_TEXT_FIELDS,
    MAX_INTEREST_KEYWORDS,
    REGISTRATION_LIMITED,
    Account,
    DirectoryEntry,
    DirectoryFields,
    DirectoryInfo,
    DirectoryQuery,
    IDirectoryStore,
    InvalidEmail,
    check_directory_fields,
    check_directory_query,
    check_email,
    check_interest_keywords,
    check_search_limit,
)
from aimserver.wire.screenname import normalize

__all__ = ["MemoryDirectoryStore", "SQLiteDirectoryStore"]


@implementer(IDirectoryStore)
class MemoryDirectoryStore(MemoryBase):
    def __init__(self, clock: IReactorTime | None = None) -> None:
        super().__init__(clock)
        self._directory: dict[str, DirectoryInfo] = {}

    def _drop_user_data(self, normalized: str) -> None:
        self._directory.pop(normalized, None)
        super()._drop_user_data(normalized)

    def get_directory_info(self, screen_name: str) -> Deferred[DirectoryInfo]:
        return defer.succeed(self._directory.get(normalize(screen_name), DirectoryInfo()))

    def set_directory_fields(self, screen_name: str, fields: DirectoryFields) -> Deferred[None]:
        def change() -> None:
            normalized = self._existing(screen_name)
            check_directory_fields(fields)
            record = self._directory.get(normalized, DirectoryInfo())
            self._directory[normalized] = attrs.evolve(record, fields=fields)

        return fired(change)

    def set_interest_keywords(self, screen_name: str, keywords: Sequence[bytes]) -> Deferred[None]:
        def change() -> None:
            normalized = self._existing(screen_name)
            kept = tuple(keywords)
            check_interest_keywords(kept)
            record = self._directory.get(normalized, DirectoryInfo())
            self._directory[normalized] = attrs.evolve(record, keywords=kept)

        return fired(change)

    def search_directory(self, query: DirectoryQuery, limit: int) -> Deferred[list[DirectoryEntry]]:
        def search() -> list[DirectoryEntry]:
            check_directory_query(query, limit)
            found = []
            for key in sorted(self._accounts):
                account = self._accounts[key]
                record = self._directory.get(key, DirectoryInfo())
                if not account.suspended and _matches(query, account, record):
                    shown = record.fields if record.fields.allow_search else DirectoryFields()
                    found.append(DirectoryEntry(account.screen_name, shown))
                    if len(found) == limit:
                        break
            return found

        return fired(search)

    def interest_keywords(self, limit: int) -> Deferred[list[bytes]]:
        def keywords() -> list[bytes]:
            check_search_limit(limit)
            found = {
                keyword
                for record in self._directory.values()
                if record.fields.allow_search
                for keyword in record.keywords
            }
            return sorted(found)[:limit]

        return fired(keywords)


def _email_key(email: str) -> str | None:
    """A searched address in the form stored ones are kept (``check_email``,
    the one rule for both), or None for one no account can have (not an
    address, not ASCII: "\u212a" must not match "k" by lowering)."""
    try:
        return check_email(email) or None
    except InvalidEmail:
        return None


def _matches(query: DirectoryQuery, account: Account, record: DirectoryInfo) -> bool:
    """The memory store's reading of the matching rules (``search_directory``)."""
    if query.email:
        key = _email_key(query.email)
        return (
            key is not None
            and account.registration_status >= REGISTRATION_LIMITED
            and account.email == key
        )
    if not record.fields.allow_search:
        return False
    if query.keyword:
        wanted = query.keyword.lower()
        return any(keyword.lower() == wanted for keyword in record.keywords)
    return all(
        getattr(record.fields, name).lower() == value.lower()
        for name, value in query.field_values().items()
    )


# --- SQLite operations --------------------------------------------------------

_KEYWORD_COLUMNS = tuple(f"keyword{n}" for n in range(1, MAX_INTEREST_KEYWORDS + 1))
_COLUMNS = (*DIRECTORY_TEXT_FIELDS, "allow_search", *_KEYWORD_COLUMNS)


def _get_directory_info(conn: sqlite3.Connection, screen_name: str) -> DirectoryInfo:
    row = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM directory_info WHERE normalized = ?",
        (normalize(screen_name),),
    ).fetchone()
    if row is None:
        return DirectoryInfo()
    count = len(DIRECTORY_TEXT_FIELDS)
    texts = dict(zip(DIRECTORY_TEXT_FIELDS, map(bytes, row[:count]), strict=True))
    fields = DirectoryFields(**texts, allow_search=bool(row[count]))
    keywords = tuple(bytes(k) for k in row[count + 1 :] if k is not None)
    return DirectoryInfo(fields, keywords)


def _upsert(conn: sqlite3.Connection, normalized: str, values: dict[str, object]) -> None:
    """Write these columns of the user's row, creating it (other columns at
    their defaults) if there is none."""
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    updates = ", ".join(f"{name} = excluded.{name}" for name in values)
    conn.execute(
        f"INSERT INTO directory_info (normalized, {names}) VALUES (?, {marks})"
        f" ON CONFLICT (normalized) DO UPDATE SET {updates}",
        (normalized, *values.values()),
    )


def _set_directory_fields(
    conn: sqlite3.Connection, screen_name: str, fields: DirectoryFields
) -> None:
    normalized = existing_account(conn, screen_name)
    check_directory_fields(fields)
    values: dict[str, object] = {name: getattr(fields, name) for name in DIRECTORY_TEXT_FIELDS}
    values["allow_search"] = int(fields.allow_search)
    _upsert(conn, normalized, values)


def _set_interest_keywords(
    conn: sqlite3.Connection, screen_name: str, keywords: tuple[bytes, ...]
) -> None:
    normalized = existing_account(conn, screen_name)
    check_interest_keywords(keywords)
    padded = keywords + (None,) * (MAX_INTEREST_KEYWORDS - len(keywords))
    _upsert(conn, normalized, dict(zip(_KEYWORD_COLUMNS, padded, strict=True)))


_ENTRY_COLUMNS = ", ".join(
    ["a.screen_name", *(f"d.{name}" for name in DIRECTORY_TEXT_FIELDS), "d.allow_search"]
)


def _entry(row: tuple[object, ...]) -> DirectoryEntry:
    screen_name, *texts, allow_search = row
    if not allow_search:
        # Not searchable, or no record (found by e-mail through a LEFT JOIN).
        return DirectoryEntry(str(screen_name))
    values = dict(zip(DIRECTORY_TEXT_FIELDS, map(bytes, texts), strict=True))  # type: ignore[arg-type]
    return DirectoryEntry(str(screen_name), DirectoryFields(**values, allow_search=True))


def _search_directory(
    conn: sqlite3.Connection, query: DirectoryQuery, limit: int
) -> list[DirectoryEntry]:
    check_directory_query(query, limit)
    if query.email:
        key = _email_key(query.email)
        if key is None:
            return []
        # "email <> ''" lets SQLite use the partial index accounts_by_email.
        rows = conn.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM accounts AS a"
            " LEFT JOIN directory_info AS d ON d.normalized = a.normalized"
            " WHERE a.email = ? AND a.email <> '' AND a.registration_status >= ?"
            " AND a.suspended = 0 ORDER BY a.normalized LIMIT ?",
            (key, REGISTRATION_LIMITED, limit),
        )
        return [_entry(row) for row in rows]
    # "lower(column) = lower(?)": lower() of the argument (bytes) is text, as
    # lower() of a column is, and has no type affinity, so that SQLite can
    # look the value up in an index on lower(column) (a CAST to TEXT would
    # not: an expression index has no affinity). Each index holds only the
    # users who allow searches, so each term says "d.allow_search = 1".
    if query.keyword:
        # One term per keyword column, each one index (a MULTI-INDEX OR).
        condition = " OR ".join(
            f"(d.allow_search = 1 AND lower(d.{column}) = lower(?1))" for column in _KEYWORD_COLUMNS
        )
        arguments: list[object] = [query.keyword]
    else:
        values = query.field_values()
        # The names come from SEARCHABLE_FIELDS (field_values), never from a client.
        matches = [f"lower(d.{name}) = lower(?{n})" for n, name in enumerate(values, 1)]
        condition = " AND ".join(["d.allow_search = 1", *matches])
        arguments = list(values.values())
    rows = conn.execute(
        f"SELECT {_ENTRY_COLUMNS} FROM directory_info AS d"
        " JOIN accounts AS a ON a.normalized = d.normalized"
        f" WHERE a.suspended = 0 AND ({condition})"
        f" ORDER BY d.normalized LIMIT ?{len(arguments) + 1}",
        (*arguments, limit),
    )
    return [_entry(row) for row in rows]


def _interest_keywords(conn: sqlite3.Connection, limit: int) -> list[bytes]:
    check_search_limit(limit)
    union = " UNION ".join(
        f"SELECT {column} AS keyword FROM directory_info"
        f" WHERE allow_search = 1 AND {column} IS NOT NULL"
        for column in _KEYWORD_COLUMNS
    )
    rows = conn.execute(f"SELECT keyword FROM ({union}) ORDER BY keyword LIMIT ?", (limit,))
    return [bytes(keyword) for (keyword,) in rows]


@implementer(IDirectoryStore)
class SQLiteDirectoryStore(SQLiteBase):
    """The ``directory_info`` table."""

    def get_directory_info(self, screen_name: str) -> Deferred[DirectoryInfo]:
        return self._call(_get_directory_info, screen_name, write=False)

    def set_directory_fields(self, screen_name: str, fields: DirectoryFields) -> Deferred[None]:
        return self._call(_set_directory_fields, screen_name, fields)

    def set_interest_keywords(self, screen_name: str, keywords: Sequence[bytes]) -> Deferred[None]:
        # Snapshot in the reactor thread: the caller may reuse its list.
        return self._call(_set_interest_keywords, screen_name, tuple(keywords))

    def search_directory(self, query: DirectoryQuery, limit: int) -> Deferred[list[DirectoryEntry]]:
        return self._call(_search_directory, query, limit, write=False)

    def interest_keywords(self, limit: int) -> Deferred[list[bytes]]:
        return self._call(_interest_keywords, limit, write=False)
