# -*- test-case-name: tests.test_store -*-
"""
:class:`~aimserver.store.interfaces.IDirectoryStore`, in memory and in SQLite:
each account's directory record (Locate 02,09 fields, 02,0F interest
keywords), kept byte for byte. The two parts are written separately, so two
sessions of one user setting one each never undo the other's change.
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
    DirectoryFields,
    DirectoryInfo,
    IDirectoryStore,
    check_directory_fields,
    check_interest_keywords,
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
