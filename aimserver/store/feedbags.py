# -*- test-case-name: tests.test_store -*-
"""
:class:`~aimserver.store.interfaces.IFeedbagStore`, in memory and in SQLite:
each account's server-stored buddy list, items kept byte for byte.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from aimserver.store._base import MemoryBase, SQLiteBase, existing_account, fired
from aimserver.store.interfaces import (
    EMPTY_FEEDBAG_SUMMARY,
    MAX_FEEDBAG_ITEMS,
    Feedbag,
    FeedbagItem,
    FeedbagSummary,
    IFeedbagStore,
    StoreError,
    check_feedbag_item,
)
from aimserver.wire.screenname import normalize

__all__ = ["MemoryFeedbagStore", "SQLiteFeedbagStore"]


@implementer(IFeedbagStore)
class MemoryFeedbagStore(MemoryBase):
    def __init__(self, clock: IReactorTime | None = None) -> None:
        super().__init__(clock)
        self._items: dict[str, dict[tuple[int, int], FeedbagItem]] = {}
        self._last_modified: dict[str, int] = {}
        self._summaries: dict[str, FeedbagSummary] = {}

    def _drop_user_data(self, normalized: str) -> None:
        self._items.pop(normalized, None)
        self._last_modified.pop(normalized, None)
        self._summaries.pop(normalized, None)
        super()._drop_user_data(normalized)

    def get_feedbag(self, screen_name: str) -> Deferred[Feedbag]:
        normalized = normalize(screen_name)
        items = self._items.get(normalized, {})
        return defer.succeed(
            Feedbag(
                items=tuple(items[key] for key in sorted(items)),
                last_modified=self._last_modified.get(normalized, 0),
            )
        )

    def _keep_summary(self, normalized: str, summary: FeedbagSummary | None) -> None:
        if summary is None:
            self._summaries.pop(normalized, None)
        else:
            self._summaries[normalized] = summary

    def get_feedbag_summary(self, screen_name: str) -> Deferred[FeedbagSummary | None]:
        normalized = normalize(screen_name)
        if normalized not in self._last_modified:
            return defer.succeed(EMPTY_FEEDBAG_SUMMARY)
        return defer.succeed(self._summaries.get(normalized))

    def set_feedbag_summary(self, screen_name: str, summary: FeedbagSummary) -> Deferred[bool]:
        normalized = normalize(screen_name)
        if (
            normalized not in self._last_modified
            or normalized in self._summaries
            or self._last_modified[normalized] != summary.last_modified
            or len(self._items.get(normalized, {})) != summary.count
        ):
            return defer.succeed(False)
        self._summaries[normalized] = summary
        return defer.succeed(True)

    def upsert_feedbag_items(
        self,
        screen_name: str,
        items: Sequence[FeedbagItem],
        now: int,
        summary: FeedbagSummary | None = None,
    ) -> Deferred[None]:
        def upsert() -> None:
            normalized = self._existing(screen_name)
            for item in items:
                check_feedbag_item(item)
            merged = dict(self._items.get(normalized, {}))
            merged.update((item.key, item) for item in items)
            if len(merged) > MAX_FEEDBAG_ITEMS:
                raise StoreError(f"a feedbag holds at most {MAX_FEEDBAG_ITEMS} items")
            self._items[normalized] = merged
            self._last_modified[normalized] = now
            self._keep_summary(normalized, summary)

        return fired(upsert)

    def delete_feedbag_items(
        self,
        screen_name: str,
        keys: Sequence[tuple[int, int]],
        now: int,
        summary: FeedbagSummary | None = None,
    ) -> Deferred[None]:
        def delete() -> None:
            normalized = self._existing(screen_name)
            items = self._items.setdefault(normalized, {})
            for key in keys:
                items.pop(tuple(key), None)
            self._last_modified[normalized] = now
            self._keep_summary(normalized, summary)

        return fired(delete)


# --- SQLite operations --------------------------------------------------------


def _get_feedbag(conn: sqlite3.Connection, screen_name: str) -> Feedbag:
    normalized = normalize(screen_name)
    rows = conn.execute(
        "SELECT name, group_id, item_id, class_id, attributes FROM feedbag_items"
        " WHERE normalized = ? ORDER BY group_id, item_id",
        (normalized,),
    )
    # (Positional: this builds every item of a list at each sign-on.)
    items = tuple(FeedbagItem(*row) for row in rows)
    meta = conn.execute(
        "SELECT last_modified FROM feedbag_meta WHERE normalized = ?", (normalized,)
    ).fetchone()
    return Feedbag(items=items, last_modified=0 if meta is None else meta[0])


_SUMMARY_COLUMNS = "summary_count, summary_wire, summary_buddies, summary_special"


def _summary_values(summary: FeedbagSummary | None) -> tuple[object, ...]:
    if summary is None:
        return (None, None, None, None)
    return (summary.count, summary.wire, "\n".join(summary.buddies), summary.special)


def _touch_feedbag(
    conn: sqlite3.Connection, normalized: str, now: int, summary: FeedbagSummary | None
) -> None:
    """The list was written: its time, and its summary (NULL without one, so
    that no summary ever describes another version of the list)."""
    conn.execute(
        f"INSERT INTO feedbag_meta (normalized, last_modified, {_SUMMARY_COLUMNS})"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (normalized) DO UPDATE SET"
        " last_modified = excluded.last_modified,"
        " summary_count = excluded.summary_count, summary_wire = excluded.summary_wire,"
        " summary_buddies = excluded.summary_buddies,"
        " summary_special = excluded.summary_special",
        (normalized, now, *_summary_values(summary)),
    )


def _get_feedbag_summary(conn: sqlite3.Connection, screen_name: str) -> FeedbagSummary | None:
    row = conn.execute(
        f"SELECT last_modified, {_SUMMARY_COLUMNS} FROM feedbag_meta WHERE normalized = ?",
        (normalize(screen_name),),
    ).fetchone()
    if row is None:
        return EMPTY_FEEDBAG_SUMMARY
    if row[1] is None:
        return None
    last_modified, count, wire, buddies, special = row
    return FeedbagSummary(
        last_modified, count, wire, tuple(buddies.split("\n")) if buddies else (), special
    )


def _set_feedbag_summary(
    conn: sqlite3.Connection, screen_name: str, summary: FeedbagSummary
) -> bool:
    normalized = normalize(screen_name)
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM feedbag_items WHERE normalized = ?", (normalized,)
    ).fetchone()
    if count != summary.count:
        return False
    cursor = conn.execute(
        "UPDATE feedbag_meta SET summary_count = ?, summary_wire = ?, summary_buddies = ?,"
        " summary_special = ?"
        " WHERE normalized = ? AND last_modified = ? AND summary_count IS NULL",
        (*_summary_values(summary), normalized, summary.last_modified),
    )
    return cursor.rowcount == 1


def _upsert_feedbag_items(
    conn: sqlite3.Connection,
    screen_name: str,
    items: Sequence[FeedbagItem],
    now: int,
    summary: FeedbagSummary | None = None,
) -> None:
    normalized = existing_account(conn, screen_name)
    for item in items:
        check_feedbag_item(item)
    conn.executemany(
        "INSERT OR REPLACE INTO feedbag_items"
        " (normalized, group_id, item_id, class_id, name, attributes)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (normalized, item.group_id, item.item_id, item.class_id, item.name, item.attributes)
            for item in items
        ],
    )
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM feedbag_items WHERE normalized = ?", (normalized,)
    ).fetchone()
    if count > MAX_FEEDBAG_ITEMS:
        raise StoreError(f"a feedbag holds at most {MAX_FEEDBAG_ITEMS} items")
    _touch_feedbag(conn, normalized, now, summary)


def _delete_feedbag_items(
    conn: sqlite3.Connection,
    screen_name: str,
    keys: Sequence[tuple[int, int]],
    now: int,
    summary: FeedbagSummary | None = None,
) -> None:
    normalized = existing_account(conn, screen_name)
    conn.executemany(
        "DELETE FROM feedbag_items WHERE normalized = ? AND group_id = ? AND item_id = ?",
        [(normalized, group_id, item_id) for group_id, item_id in keys],
    )
    _touch_feedbag(conn, normalized, now, summary)


@implementer(IFeedbagStore)
class SQLiteFeedbagStore(SQLiteBase):
    """The ``feedbag_items`` and ``feedbag_meta`` tables."""

    def get_feedbag(self, screen_name: str) -> Deferred[Feedbag]:
        return self._call(_get_feedbag, screen_name, write=False)

    def get_feedbag_summary(self, screen_name: str) -> Deferred[FeedbagSummary | None]:
        return self._call(_get_feedbag_summary, screen_name, write=False)

    def set_feedbag_summary(self, screen_name: str, summary: FeedbagSummary) -> Deferred[bool]:
        return self._call(_set_feedbag_summary, screen_name, summary)

    def upsert_feedbag_items(
        self,
        screen_name: str,
        items: Sequence[FeedbagItem],
        now: int,
        summary: FeedbagSummary | None = None,
    ) -> Deferred[None]:
        # Snapshot in the reactor thread: the caller may reuse its list.
        return self._call(_upsert_feedbag_items, screen_name, tuple(items), now, summary)

    def delete_feedbag_items(
        self,
        screen_name: str,
        keys: Sequence[tuple[int, int]],
        now: int,
        summary: FeedbagSummary | None = None,
    ) -> Deferred[None]:
        return self._call(_delete_feedbag_items, screen_name, tuple(keys), now, summary)
