# -*- test-case-name: tests.test_store -*-
"""
:class:`~aimserver.store.interfaces.IOfflineMessageStore`, in memory and in
SQLite: IMs kept for signed-off recipients, within the inbox caps
(:func:`~aimserver.store.interfaces.check_offline_quota`).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from aimserver.store._base import MemoryBase, SQLiteBase, existing_account, fired
from aimserver.store.interfaces import (
    IOfflineMessageStore,
    OfflineMessage,
    check_offline_message,
    check_offline_quota,
    check_up_to_id,
)
from aimserver.wire.screenname import normalize

__all__ = ["MemoryOfflineMessageStore", "SQLiteOfflineMessageStore"]


_MESSAGE_COLUMNS = "id, recipient, sender, cookie, channel, tlvs, sent_at"


def _offline_message(row: tuple[Any, ...]) -> OfflineMessage:
    """A message from its fields in the order of :data:`_MESSAGE_COLUMNS` (a
    table row, or the values either store has just kept)."""
    message_id, recipient, sender, cookie, channel, tlvs, sent_at = row
    return OfflineMessage(
        message_id=message_id,
        recipient=recipient,
        sender=sender,
        cookie=bytes(cookie),
        channel=channel,
        tlvs=bytes(tlvs),
        sent_at=sent_at,
    )


@implementer(IOfflineMessageStore)
class MemoryOfflineMessageStore(MemoryBase):
    def __init__(self, clock: IReactorTime | None = None) -> None:
        super().__init__(clock)
        self._offline: dict[str, list[OfflineMessage]] = {}
        # One sequence for every inbox, like SQLite's AUTOINCREMENT.
        self._last_message_id = 0

    def _drop_user_data(self, normalized: str) -> None:
        self._offline.pop(normalized, None)
        super()._drop_user_data(normalized)

    def store_offline_message(
        self, recipient: str, sender: str, cookie: bytes, channel: int, tlvs: bytes, sent_at: int
    ) -> Deferred[OfflineMessage]:
        def store() -> OfflineMessage:
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
            row = (self._last_message_id, normalized, sender, cookie, channel, tlvs, sent_at)
            message = _offline_message(row)
            self._offline.setdefault(normalized, []).append(message)
            return message

        return fired(store)

    def count_offline_messages(self) -> Deferred[dict[str, int]]:
        return defer.succeed({key: len(box) for key, box in self._offline.items() if box})

    def get_offline_messages(self, recipient: str) -> Deferred[list[OfflineMessage]]:
        return defer.succeed(list(self._offline.get(normalize(recipient), [])))

    def delete_offline_messages(self, recipient: str, up_to_id: int) -> Deferred[int]:
        def delete() -> int:
            bound = check_up_to_id(up_to_id)
            normalized = normalize(recipient)
            inbox = self._offline.get(normalized, [])
            kept = [message for message in inbox if message.message_id > bound]
            if kept:
                self._offline[normalized] = kept
            else:
                self._offline.pop(normalized, None)
            return len(inbox) - len(kept)

        return fired(delete)


# --- SQLite operations --------------------------------------------------------


def _store_offline_message(
    conn: sqlite3.Connection,
    recipient: str,
    sender: str,
    cookie: bytes,
    channel: int,
    tlvs: bytes,
    sent_at: int,
) -> OfflineMessage:
    normalized = existing_account(conn, recipient)
    check_offline_message(sender, cookie, channel, tlvs, sent_at)
    sender_key = normalize(sender)
    # Counted and inserted in this one (write) transaction, so no other message
    # slips in between. Each query reads only the rows it counts, through an
    # index, and the caps keep those few: length() reads a BLOB's size from the
    # row header, not its bytes.
    inbox = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(length(tlvs)), 0) FROM offline_messages WHERE recipient = ?",
        (normalized,),
    ).fetchone()
    from_sender = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(length(tlvs)), 0) FROM offline_messages"
        " WHERE recipient = ? AND sender_key = ?",
        (normalized, sender_key),
    ).fetchone()
    check_offline_quota(recipient, sender, len(tlvs), inbox, from_sender)
    cursor = conn.execute(
        "INSERT INTO offline_messages"
        " (recipient, sender, sender_key, cookie, channel, tlvs, sent_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (normalized, sender, sender_key, cookie, channel, tlvs, sent_at),
    )
    message_id = cursor.lastrowid
    assert message_id is not None
    return _offline_message((message_id, normalized, sender, cookie, channel, tlvs, sent_at))


def _count_offline_messages(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT recipient, COUNT(*) FROM offline_messages GROUP BY recipient")
    return {recipient: count for recipient, count in rows}


def _get_offline_messages(conn: sqlite3.Connection, recipient: str) -> list[OfflineMessage]:
    rows = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM offline_messages WHERE recipient = ? ORDER BY id",
        (normalize(recipient),),
    )
    return [_offline_message(row) for row in rows]


def _delete_offline_messages(conn: sqlite3.Connection, recipient: str, up_to_id: int) -> int:
    cursor = conn.execute(
        "DELETE FROM offline_messages WHERE recipient = ? AND id <= ?",
        (normalize(recipient), check_up_to_id(up_to_id)),
    )
    return cursor.rowcount


@implementer(IOfflineMessageStore)
class SQLiteOfflineMessageStore(SQLiteBase):
    """The ``offline_messages`` table."""

    def store_offline_message(
        self, recipient: str, sender: str, cookie: bytes, channel: int, tlvs: bytes, sent_at: int
    ) -> Deferred[OfflineMessage]:
        return self._call(_store_offline_message, recipient, sender, cookie, channel, tlvs, sent_at)

    def count_offline_messages(self) -> Deferred[dict[str, int]]:
        return self._call(_count_offline_messages, write=False)

    def get_offline_messages(self, recipient: str) -> Deferred[list[OfflineMessage]]:
        return self._call(_get_offline_messages, recipient, write=False)

    def delete_offline_messages(self, recipient: str, up_to_id: int) -> Deferred[int]:
        return self._call(_delete_offline_messages, recipient, up_to_id)
