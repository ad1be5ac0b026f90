"""
Tests for aimserver.store: one contract per role (IAccountStore,
IWarningStore, IFeedbagStore, IOfflineMessageStore, ISecretStore, IDirectoryStore;
IBartStore and IChatRoomStore in modules of their own),
all run against every IUserStore, then what only the SQLite store has (migrations,
durability, its DB thread).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import threading
from collections.abc import Callable
from typing import Any
from unittest import mock

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from aimserver.store import accounts as accounts_store
from aimserver.store import group_commit
from aimserver.store import offline_messages as offline_store
from aimserver.store import sqlite as sqlite_store
from aimserver.store.credentials import (
    Credentials,
    check_bucp_digest,
    check_roasted_password,
    roast,
    strong_digest,
)
from aimserver.store.interfaces import (
    DIRECTORY_TEXT_FIELDS,
    EMPTY_FEEDBAG_SUMMARY,
    MAX_DIRECTORY_FIELD_BYTES,
    MAX_FEEDBAG_ITEMS,
    MAX_INTEREST_KEYWORDS,
    MAX_ITEM_ATTRIBUTES_BYTES,
    MAX_ITEM_NAME_BYTES,
    MAX_OFFLINE_BYTES_PER_RECIPIENT,
    MAX_OFFLINE_BYTES_PER_SENDER,
    MAX_OFFLINE_MESSAGE_BYTES,
    MAX_OFFLINE_MESSAGES_PER_RECIPIENT,
    MAX_OFFLINE_MESSAGES_PER_SENDER,
    MAX_OFFLINE_SENDER_BYTES,
    MAX_SECRET_SIZE,
    MAX_WARNING_LEVEL,
    USER_STORE_ROLES,
    Account,
    AccountExists,
    DirectoryEntry,
    DirectoryFields,
    DirectoryInfo,
    DirectoryQuery,
    Feedbag,
    FeedbagItem,
    FeedbagSummary,
    HistoryEntry,
    IAccountStore,
    IBartStore,
    IChatRoomStore,
    IDirectoryStore,
    IFeedbagStore,
    IHistoryStore,
    IMotdStore,
    InvalidPassword,
    InvalidScreenName,
    IOfflineMessageStore,
    ISecretStore,
    IUserStore,
    IWarningStore,
    NoSuchAccount,
    OfflineInboxBytesFull,
    OfflineInboxFull,
    OfflineInboxMessagesFull,
    OfflineMessage,
    OfflineSenderBytesFull,
    OfflineSenderMessagesFull,
    PublicRoom,
    StoreError,
)
from aimserver.store.memory import MemoryUserStore
from aimserver.store.sqlite import (
    SCHEMA_VERSION,
    SchemaError,
    SQLiteUserStore,
    StoreService,
    connect,
    transact,
)
from tests.strategies import icq_uins, screen_names

NOW = 1_700_000_000
EMPTY = Feedbag(items=(), last_modified=0)

# Schema version 1 exactly as released: migration tests build old databases
# from this frozen copy, not from schema/v1.sql, so an edit to that file
# cannot hide a broken upgrade.
V1_SCHEMA = """
CREATE TABLE version (version INTEGER NOT NULL);
CREATE TABLE accounts
(
    normalized  TEXT PRIMARY KEY,
    screen_name TEXT NOT NULL,
    auth_key    TEXT NOT NULL,
    weak_md5    BLOB NOT NULL,
    strong_md5  BLOB NOT NULL,
    suspended   INTEGER NOT NULL DEFAULT 0 CHECK (suspended IN (0, 1)),
    created_at  INTEGER NOT NULL
);
INSERT INTO version (version) VALUES (1);
"""

# Schema version 2 exactly as released (v1 plus feedbags and secrets), frozen
# for the same reason.
V2_SCHEMA = """
CREATE TABLE version (version INTEGER NOT NULL);
CREATE TABLE accounts
(
    normalized  TEXT PRIMARY KEY,
    screen_name TEXT NOT NULL,
    auth_key    TEXT NOT NULL,
    weak_md5    BLOB NOT NULL,
    strong_md5  BLOB NOT NULL,
    suspended   INTEGER NOT NULL DEFAULT 0 CHECK (suspended IN (0, 1)),
    created_at  INTEGER NOT NULL
);
CREATE TABLE feedbag_items
(
    normalized TEXT NOT NULL REFERENCES accounts (normalized) ON DELETE CASCADE,
    group_id   INTEGER NOT NULL CHECK (group_id BETWEEN 0 AND 65535),
    item_id    INTEGER NOT NULL CHECK (item_id BETWEEN 0 AND 65535),
    class_id   INTEGER NOT NULL CHECK (class_id BETWEEN 0 AND 65535),
    name       TEXT NOT NULL,
    attributes BLOB NOT NULL,
    PRIMARY KEY (normalized, group_id, item_id)
);
CREATE TABLE feedbag_meta
(
    normalized    TEXT PRIMARY KEY REFERENCES accounts (normalized) ON DELETE CASCADE,
    last_modified INTEGER NOT NULL
);
CREATE TABLE secrets
(
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
INSERT INTO version (version) VALUES (2);
"""
V2_TABLES = {"version", "accounts", "feedbag_items", "feedbag_meta", "secrets"}
V3_TABLES = V2_TABLES | {"offline_messages", "sqlite_sequence"}

# Schema version 3 exactly as released (v2 plus warning levels and offline
# messages), frozen for the same reason.
V3_SCHEMA = """
CREATE TABLE version (version INTEGER NOT NULL);
CREATE TABLE accounts
(
    normalized  TEXT PRIMARY KEY,
    screen_name TEXT NOT NULL,
    auth_key    TEXT NOT NULL,
    weak_md5    BLOB NOT NULL,
    strong_md5  BLOB NOT NULL,
    suspended   INTEGER NOT NULL DEFAULT 0 CHECK (suspended IN (0, 1)),
    created_at  INTEGER NOT NULL,
    warning_level INTEGER NOT NULL DEFAULT 0 CHECK (warning_level BETWEEN 0 AND 1000),
    warning_updated_at INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE feedbag_items
(
    normalized TEXT NOT NULL REFERENCES accounts (normalized) ON DELETE CASCADE,
    group_id   INTEGER NOT NULL CHECK (group_id BETWEEN 0 AND 65535),
    item_id    INTEGER NOT NULL CHECK (item_id BETWEEN 0 AND 65535),
    class_id   INTEGER NOT NULL CHECK (class_id BETWEEN 0 AND 65535),
    name       TEXT NOT NULL,
    attributes BLOB NOT NULL,
    PRIMARY KEY (normalized, group_id, item_id)
);
CREATE TABLE feedbag_meta
(
    normalized    TEXT PRIMARY KEY REFERENCES accounts (normalized) ON DELETE CASCADE,
    last_modified INTEGER NOT NULL
);
CREATE TABLE secrets
(
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE offline_messages
(
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL REFERENCES accounts (normalized) ON DELETE CASCADE,
    sender    TEXT NOT NULL,
    cookie    BLOB NOT NULL CHECK (length(cookie) = 8),
    channel   INTEGER NOT NULL CHECK (channel BETWEEN 0 AND 65535),
    tlvs      BLOB NOT NULL,
    sent_at   INTEGER NOT NULL
);
CREATE INDEX offline_messages_by_recipient ON offline_messages (recipient, id);
INSERT INTO version (version) VALUES (3);
"""
# Version 4 only adds a column (accounts.bot).
V4_TABLES = V3_TABLES

# Schema version 4 exactly as released (v3 plus accounts.bot), frozen for the
# same reason.
V4_SCHEMA = """
CREATE TABLE version (version INTEGER NOT NULL);
CREATE TABLE accounts
(
    normalized  TEXT PRIMARY KEY,
    screen_name TEXT NOT NULL,
    auth_key    TEXT NOT NULL,
    weak_md5    BLOB NOT NULL,
    strong_md5  BLOB NOT NULL,
    suspended   INTEGER NOT NULL DEFAULT 0 CHECK (suspended IN (0, 1)),
    created_at  INTEGER NOT NULL,
    warning_level INTEGER NOT NULL DEFAULT 0 CHECK (warning_level BETWEEN 0 AND 1000),
    warning_updated_at INTEGER NOT NULL DEFAULT 0,
    bot INTEGER NOT NULL DEFAULT 0 CHECK (bot IN (0, 1))
);
CREATE TABLE feedbag_items
(
    normalized TEXT NOT NULL REFERENCES accounts (normalized) ON DELETE CASCADE,
    group_id   INTEGER NOT NULL CHECK (group_id BETWEEN 0 AND 65535),
    item_id    INTEGER NOT NULL CHECK (item_id BETWEEN 0 AND 65535),
    class_id   INTEGER NOT NULL CHECK (class_id BETWEEN 0 AND 65535),
    name       TEXT NOT NULL,
    attributes BLOB NOT NULL,
    PRIMARY KEY (normalized, group_id, item_id)
);
CREATE TABLE feedbag_meta
(
    normalized    TEXT PRIMARY KEY REFERENCES accounts (normalized) ON DELETE CASCADE,
    last_modified INTEGER NOT NULL
);
CREATE TABLE secrets
(
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE offline_messages
(
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL REFERENCES accounts (normalized) ON DELETE CASCADE,
    sender    TEXT NOT NULL,
    cookie    BLOB NOT NULL CHECK (length(cookie) = 8),
    channel   INTEGER NOT NULL CHECK (channel BETWEEN 0 AND 65535),
    tlvs      BLOB NOT NULL,
    sent_at   INTEGER NOT NULL
);
CREATE INDEX offline_messages_by_recipient ON offline_messages (recipient, id);
INSERT INTO version (version) VALUES (4);
"""
# Version 5 adds a column (offline_messages.sender_key) and an index.
V5_TABLES = V4_TABLES

# Schema version 5 exactly as released (v4 plus offline_messages.sender_key and
# its index), frozen for the same reason.
V5_SCHEMA = (
    V4_SCHEMA.replace("INSERT INTO version (version) VALUES (4);\n", "")
    + """
ALTER TABLE offline_messages ADD COLUMN sender_key TEXT NOT NULL DEFAULT '';
CREATE INDEX offline_messages_by_sender ON offline_messages (recipient, sender_key);
INSERT INTO version (version) VALUES (5);
"""
)
# Version 6 adds the directory records.
V6_TABLES = V5_TABLES | {"directory_info"}

# Schema version 6 exactly as released (v5 plus directory_info), frozen for the
# same reason.
V6_SCHEMA = (
    V5_SCHEMA.replace("INSERT INTO version (version) VALUES (5);\n", "")
    + """
CREATE TABLE directory_info
(
    normalized   TEXT PRIMARY KEY REFERENCES accounts (normalized) ON DELETE CASCADE,
    first_name   BLOB NOT NULL DEFAULT x'',
    middle_name  BLOB NOT NULL DEFAULT x'',
    last_name    BLOB NOT NULL DEFAULT x'',
    maiden_name  BLOB NOT NULL DEFAULT x'',
    nickname     BLOB NOT NULL DEFAULT x'',
    street       BLOB NOT NULL DEFAULT x'',
    city         BLOB NOT NULL DEFAULT x'',
    state        BLOB NOT NULL DEFAULT x'',
    zip_code     BLOB NOT NULL DEFAULT x'',
    country      BLOB NOT NULL DEFAULT x'',
    charset      BLOB NOT NULL DEFAULT x'',
    allow_search INTEGER NOT NULL DEFAULT 0 CHECK (allow_search IN (0, 1)),
    keyword1     BLOB,
    keyword2     BLOB,
    keyword3     BLOB,
    keyword4     BLOB,
    keyword5     BLOB
);
INSERT INTO version (version) VALUES (6);
"""
)
# Version 7 adds account settings (columns) and the BART items.
V7_TABLES = V6_TABLES | {"bart_items", "bart_owners"}

# Schema version 7 exactly as released (v6 plus the account settings and the
# BART tables), frozen for the same reason.
V7_SCHEMA = (
    V6_SCHEMA.replace("INSERT INTO version (version) VALUES (6);\n", "")
    + """
ALTER TABLE accounts ADD COLUMN email TEXT NOT NULL DEFAULT '';
ALTER TABLE accounts ADD COLUMN registration_status INTEGER NOT NULL DEFAULT 2
    CHECK (registration_status BETWEEN 1 AND 3);
ALTER TABLE accounts ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0 CHECK (confirmed IN (0, 1));
CREATE INDEX accounts_by_email ON accounts (email) WHERE email <> '';
CREATE TABLE bart_items
(
    hash       BLOB PRIMARY KEY CHECK (length(hash) BETWEEN 1 AND 255),
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE bart_owners
(
    normalized  TEXT NOT NULL REFERENCES accounts (normalized) ON DELETE CASCADE,
    hash        BLOB NOT NULL REFERENCES bart_items (hash) ON DELETE CASCADE,
    uploaded_at INTEGER NOT NULL,
    PRIMARY KEY (normalized, hash)
);
CREATE INDEX bart_owners_by_hash ON bart_owners (hash);
INSERT INTO version (version) VALUES (7);
"""
)
# Version 8 adds indexes only (directory searches by name and by keyword).
V8_TABLES = V7_TABLES
V8_INDEXES = {
    "directory_by_first_name",
    "directory_by_last_name",
    *(f"directory_by_keyword{n}" for n in range(1, 6)),
}

# Schema version 8 exactly as released (v7 plus the directory search
# indexes), frozen for the same reason.
V8_SCHEMA = (
    V7_SCHEMA.replace("INSERT INTO version (version) VALUES (7);\n", "")
    + """
CREATE INDEX directory_by_first_name ON directory_info (lower(first_name), normalized)
    WHERE allow_search = 1;
CREATE INDEX directory_by_last_name ON directory_info (lower(last_name), normalized)
    WHERE allow_search = 1;
CREATE INDEX directory_by_keyword1 ON directory_info (lower(keyword1)) WHERE allow_search = 1;
CREATE INDEX directory_by_keyword2 ON directory_info (lower(keyword2)) WHERE allow_search = 1;
CREATE INDEX directory_by_keyword3 ON directory_info (lower(keyword3)) WHERE allow_search = 1;
CREATE INDEX directory_by_keyword4 ON directory_info (lower(keyword4)) WHERE allow_search = 1;
CREATE INDEX directory_by_keyword5 ON directory_info (lower(keyword5)) WHERE allow_search = 1;
INSERT INTO version (version) VALUES (8);
"""
)
# Version 9 adds columns only (the feedbag summary).
V9_TABLES = V8_TABLES

# Schema version 9 exactly as released (v8 plus the feedbag summary columns),
# frozen for the same reason.
V9_SCHEMA = (
    V8_SCHEMA.replace("INSERT INTO version (version) VALUES (8);\n", "")
    + """
ALTER TABLE feedbag_meta ADD COLUMN summary_count INTEGER;
ALTER TABLE feedbag_meta ADD COLUMN summary_wire BLOB;
ALTER TABLE feedbag_meta ADD COLUMN summary_buddies TEXT;
ALTER TABLE feedbag_meta ADD COLUMN summary_special BLOB;
INSERT INTO version (version) VALUES (9);
"""
)
# Version 10 adds the public chat rooms.
V10_TABLES = V9_TABLES | {"chat_rooms"}

# Schema version 10 exactly as released (v9 plus the public chat rooms),
# frozen for the same reason.
V10_SCHEMA = (
    V9_SCHEMA.replace("INSERT INTO version (version) VALUES (9);\n", "")
    + """
CREATE TABLE chat_rooms
(
    key        TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO version (version) VALUES (10);
"""
)
# Version 11 adds which MOTD each user was last shown.
V11_TABLES = V10_TABLES | {"motd_seen"}

# Schema version 11 exactly as released (v10 plus motd_seen), frozen for the
# same reason.
V11_SCHEMA = (
    V10_SCHEMA.replace("INSERT INTO version (version) VALUES (10);\n", "")
    + """
CREATE TABLE motd_seen
(
    normalized TEXT PRIMARY KEY REFERENCES accounts (normalized) ON DELETE CASCADE,
    digest     TEXT NOT NULL
);
INSERT INTO version (version) VALUES (11);
"""
)
# Version 12 adds a column (bart_items.bart_type) and its index.
V12_TABLES = V11_TABLES
V12_INDEXES = {"bart_items_by_type"}

# Schema version 12 exactly as released (v11 plus bart_items.bart_type and its
# index), frozen for the same reason.
V12_SCHEMA = (
    V11_SCHEMA.replace("INSERT INTO version (version) VALUES (11);\n", "")
    + """
ALTER TABLE bart_items ADD COLUMN bart_type INTEGER NOT NULL DEFAULT 1
    CHECK (bart_type BETWEEN 0 AND 65535);
CREATE INDEX bart_items_by_type ON bart_items (bart_type);
INSERT INTO version (version) VALUES (12);
"""
)
# Version 13 adds each account's conversation history.
V13_TABLES = V12_TABLES | {"history"}
V13_INDEXES = {"history_by_account", "history_by_age"}

# Schema version 13 exactly as released (v12 plus the history, a row per
# entry), frozen for the same reason.
V13_SCHEMA = (
    V12_SCHEMA.replace("INSERT INTO version (version) VALUES (12);\n", "")
    + """
CREATE TABLE history
(
    id         INTEGER PRIMARY KEY,
    normalized TEXT NOT NULL REFERENCES accounts (normalized) ON DELETE CASCADE,
    peer       TEXT NOT NULL,
    outgoing   INTEGER NOT NULL CHECK (outgoing IN (0, 1)),
    text       TEXT NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX history_by_account ON history (normalized, id);
CREATE INDEX history_by_age ON history (normalized, at);
INSERT INTO version (version) VALUES (13);
"""
)
# Version 14 keeps the history in chunks of entries instead.
V14_TABLES = V12_TABLES | {"history_chunks"}
V14_INDEXES = {"history_chunks_by_account", "history_chunks_by_last_id"}

# Schema version 14 exactly as released (v12 plus the history in chunks),
# frozen for the same reason.
V14_SCHEMA = (
    V12_SCHEMA.replace("INSERT INTO version (version) VALUES (12);\n", "")
    + """
CREATE TABLE history_chunks
(
    id         INTEGER PRIMARY KEY,
    normalized TEXT NOT NULL REFERENCES accounts (normalized) ON DELETE CASCADE,
    count      INTEGER NOT NULL CHECK (count > 0),
    oldest_at  INTEGER NOT NULL,
    newest_at  INTEGER NOT NULL,
    last_id    INTEGER NOT NULL,
    entries    TEXT NOT NULL
);
CREATE INDEX history_chunks_by_account
    ON history_chunks (normalized, id, count, oldest_at, newest_at);
CREATE INDEX history_chunks_by_last_id ON history_chunks (last_id);
INSERT INTO version (version) VALUES (14);
"""
)
# Version 15 adds each account's MD5(password) (accounts.password_md5).
V15_TABLES = V14_TABLES
V15_SCHEMA = (
    V14_SCHEMA.replace("INSERT INTO version (version) VALUES (14);\n", "")
    + """
ALTER TABLE accounts ADD COLUMN password_md5 BLOB
    CHECK (password_md5 IS NULL OR length(password_md5) = 16);
INSERT INTO version (version) VALUES (15);
"""
)
# Version 16 numbers history entries per account and keeps no id per entry.
V16_TABLES = V15_TABLES
#: What every database has once upgraded to SCHEMA_VERSION.
LATEST_TABLES = V16_TABLES

KEY = "1234567890"
WEAK = bytes.fromhex("862A71EBC6B0913AC23B3ACE99CA9951")
STRONG = bytes.fromhex("054B2494F6D223078F90B1D1333B757F")


def item(group_id: int, item_id: int, name: str = "x", class_id: int = 0, attributes=b""):
    return FeedbagItem(
        name=name, group_id=group_id, item_id=item_id, class_id=class_id, attributes=attributes
    )


items = st.builds(
    item,
    st.integers(0, 3),
    st.integers(0, 3),
    st.text(max_size=8),
    st.integers(0, 0xFFFF),
    st.binary(max_size=16),
)
keys = st.tuples(st.integers(0, 3), st.integers(0, 3))
COOKIE = b"\x01\x02\x03\x04\x05\x06\x07\x08"
TLVS = b"\x00\x02\x00\x0d\x05\x01\x00\x01\x01\x01\x01\x00\x04\x00\x00\x00\x00hi"

feedbag_ops = st.lists(
    st.one_of(
        st.tuples(st.just("upsert"), st.lists(items, max_size=4)),
        st.tuples(st.just("delete"), st.lists(keys, max_size=4)),
    ),
    max_size=6,
)


offline_ops = st.lists(
    st.one_of(
        st.tuples(st.just("store"), st.sampled_from(["alice", "bob"]), st.binary(max_size=8)),
        st.tuples(st.just("delete"), st.sampled_from(["alice", "bob"]), st.integers(-1, 12)),
    ),
    max_size=12,
)


# Small caps for the model test, so that a few operations reach every one.
SMALL_CAPS = {
    "MAX_OFFLINE_MESSAGES_PER_SENDER": 3,
    "MAX_OFFLINE_BYTES_PER_SENDER": 8,
    "MAX_OFFLINE_MESSAGES_PER_RECIPIENT": 5,
    "MAX_OFFLINE_BYTES_PER_RECIPIENT": 13,
}
_quota_store = st.tuples(
    st.just("store"),
    st.sampled_from(["alice", "alice", "bob"]),
    st.sampled_from(["carol", "Carol", "CA ROL", "dave", "erin", "frank"]),
    st.sampled_from([b"", b"a", b"bc", b"\x00\xff\x01", b"four"]),
)
_quota_delete = st.tuples(
    st.just("delete"), st.sampled_from(["alice", "bob"]), st.integers(-1, 30), st.just(b"")
)
# Mostly stores, so that the caps are reached.
quota_ops = st.lists(
    st.one_of(_quota_store, _quota_store, _quota_store, _quota_delete), min_size=8, max_size=30
)


# The contract's @given tests run once per implementation (subclass); each
# example builds its own store, so sharing the method is safe.
def contract_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        suppress_health_check=[*settings().suppress_health_check, HealthCheck.differing_executors],
    )


class StoreContractMixin:
    """
    What every role's contract needs. A subclass supplies :meth:`make_store`,
    returning a fresh, empty store whose Deferreds have fired by the time it
    returns, with ``self.clock`` as its clock. The store provides
    IAccountStore as well as the role under test: every role but the secrets
    keeps data that belongs to an account.
    """

    clock: Clock

    def make_store(self) -> Any:
        raise NotImplementedError

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = self.make_store()

    def ok(self, d: Deferred[Any]) -> Any:
        return self.successResultOf(d)  # type: ignore[attr-defined]

    def fails(self, d: Deferred[Any], error: type[Exception]) -> Exception:
        return self.failureResultOf(d, error).value  # type: ignore[attr-defined]

    def add(self, name: str = "Bob Smith", password: str = "secret") -> Account:
        return self.ok(self.store.create_account(name, password))


class AccountStoreContractMixin(StoreContractMixin):
    """The IAccountStore contract."""

    def test_provides_account_store(self) -> None:
        """The store provides every IAccountStore method."""
        self.assertTrue(verifyObject(IAccountStore, self.store))

    def test_get_accounts_finds_many_at_once(self) -> None:
        """Found accounts keyed by normalized name, any spelling; unknown names
        absent; a repeated name once; more names than one query holds."""
        self.add("Bob Smith")
        self.add("Alice")
        names = ["BOB SMITH", "nobody", "alice", "Alice"] + [f"ghost{i}" for i in range(1200)]
        found = self.ok(self.store.get_accounts(names))
        self.assertEqual(sorted(found), ["alice", "bobsmith"])
        self.assertEqual(found["bobsmith"], self.ok(self.store.get_account("bobsmith")))
        self.assertEqual(self.ok(self.store.get_accounts([])), {})

    def test_peek_never_contradicts_get(self) -> None:
        """peek_account is None or the very account get_account finds."""
        self.add("Bob Smith")
        for name in ("bobsmith", "nobody"):
            peeked = self.store.peek_account(name)
            if peeked is not None:
                self.assertEqual(peeked, self.ok(self.store.get_account(name)))

    def test_create_and_get(self) -> None:
        """A new account is found under any case and spacing, display form kept."""
        created = self.add("Bob Smith")
        self.assertEqual(created.screen_name, "Bob Smith")
        self.assertEqual(created.normalized, "bobsmith")
        self.assertEqual(created.created_at, NOW)
        self.assertFalse(created.suspended)
        for spelling in ("Bob Smith", "bobsmith", "BOBSMITH", "b o b s m i t h"):
            self.assertEqual(self.ok(self.store.get_account(spelling)), created)

    def test_password_checks(self) -> None:
        """The stored key and digests accept the password by every login method."""
        account = self.add(password="s3cret pw")
        key = account.auth_key.encode("ascii")
        self.assertTrue(check_bucp_digest(account, strong_digest(key, b"s3cret pw")))
        self.assertTrue(check_roasted_password(account, roast(b"s3cret pw")))
        self.assertFalse(check_roasted_password(account, roast(b"s3cret pW")))

    def test_no_plaintext_in_account(self) -> None:
        """Nothing the store returns contains the plaintext password."""
        account = self.add(password="Plaintext9")
        for value in (account.auth_key, account.weak_md5, account.strong_md5):
            self.assertNotIn(b"Plaintext9", value if isinstance(value, bytes) else value.encode())

    def test_get_unknown(self) -> None:
        """Looking up a name nobody registered gives None, even an invalid name."""
        self.assertIsNone(self.ok(self.store.get_account("nobody")))
        self.assertIsNone(self.ok(self.store.get_account("!!")))

    def test_create_taken(self) -> None:
        """A name taken in any case or spacing is AccountExists; the first stays."""
        first = self.add("Bob Smith")
        self.fails(self.store.create_account("BobSmith", "other1"), AccountExists)
        self.assertEqual(self.ok(self.store.get_account("bobsmith")), first)

    def test_create_invalid_name(self) -> None:
        """Names breaking the AIM/ICQ rules are InvalidScreenName and not stored."""
        for name in ("", "ab", "1abc", "bob ", " bob", "bob_smith", "x" * 17, "1234", "1234567890"):
            self.fails(self.store.create_account(name, "secret"), InvalidScreenName)
        self.assertEqual(self.ok(self.store.list_accounts()), [])

    def test_create_reserved_name(self) -> None:
        """The name the server speaks as, in any spelling, is no account's."""
        for name in ("AOL System Msg", "aolsystemmsg", "AOLSystem Msg"):
            self.fails(self.store.create_account(name, "secret"), InvalidScreenName)
        self.assertEqual(self.ok(self.store.list_accounts()), [])

    def test_create_icq_uin(self) -> None:
        """An ICQ UIN (5-9 digits) is a valid name."""
        self.assertEqual(self.add("123456").screen_name, "123456")

    def test_create_invalid_password(self) -> None:
        """A password outside 4-16 characters is InvalidPassword; nothing is stored."""
        for password in ("abc", "x" * 17):
            self.fails(self.store.create_account("alice", password), InvalidPassword)
        self.assertIsNone(self.ok(self.store.get_account("alice")))

    def test_create_with_credentials(self) -> None:
        """An account can be made from a key and digests alone; they are kept as given."""
        credentials = Credentials(auth_key=KEY, weak_md5=WEAK, strong_md5=STRONG)
        created = self.ok(self.store.create_account_with_credentials("Alice", credentials))
        self.assertEqual(created, Account("Alice", KEY, WEAK, STRONG, False, NOW))
        self.assertEqual(self.ok(self.store.get_account("alice")), created)
        self.assertTrue(check_roasted_password(created, roast(b"secret")))

    def test_create_with_credentials_refused(self) -> None:
        """Invalid names, taken names and malformed credentials are refused."""
        good = Credentials(auth_key=KEY, weak_md5=WEAK, strong_md5=STRONG)
        create = self.store.create_account_with_credentials
        self.fails(create("1abc", good), InvalidScreenName)
        self.add("bob")
        self.fails(create("BOB", good), AccountExists)
        for bad in (
            Credentials(auth_key="", weak_md5=WEAK, strong_md5=STRONG),
            Credentials(auth_key="clé", weak_md5=WEAK, strong_md5=STRONG),
            Credentials(auth_key="a\nb", weak_md5=WEAK, strong_md5=STRONG),
            Credentials(auth_key="k" * 256, weak_md5=WEAK, strong_md5=STRONG),
            Credentials(auth_key=KEY, weak_md5=WEAK[:15], strong_md5=STRONG),
            Credentials(auth_key=KEY, weak_md5=WEAK, strong_md5=STRONG + b"x"),
            Credentials(auth_key=KEY, weak_md5=WEAK, strong_md5=STRONG, password_md5=b"x" * 15),
        ):
            self.fails(create("alice", bad), StoreError)
        self.assertIsNone(self.ok(self.store.get_account("alice")))

    def test_delete(self) -> None:
        """Deleting reports whether the account existed, and removes it."""
        self.add("Bob Smith")
        self.assertTrue(self.ok(self.store.delete_account("BOB smith")))
        self.assertIsNone(self.ok(self.store.get_account("bobsmith")))
        self.assertFalse(self.ok(self.store.delete_account("bobsmith")))

    def test_list_sorted(self) -> None:
        """Accounts are listed by normalized name, in their display form."""
        for name in ("zed", "Alice", "bob", "A Aron"):
            self.add(name)
        listed = self.ok(self.store.list_accounts())
        self.assertEqual([a.screen_name for a in listed], ["A Aron", "Alice", "bob", "zed"])

    def test_set_password(self) -> None:
        """A new password works, the old one does not, and the key changes."""
        old = self.add("alice", "secret")
        self.assertTrue(self.ok(self.store.set_password("ALICE", "newpass")))
        new = self.ok(self.store.get_account("alice"))
        self.assertNotEqual(new.auth_key, old.auth_key)
        self.assertFalse(check_bucp_digest(new, old.strong_md5))
        self.assertFalse(check_roasted_password(new, roast(b"secret")))
        self.assertTrue(check_roasted_password(new, roast(b"newpass")))
        self.assertEqual(new.created_at, old.created_at)

    def test_password_md5_kept(self) -> None:
        """MD5(password) is kept wherever a password is set (creation, a new
        password), out of ``repr``; credentials without it leave it unknown,
        and setting credentials with the same key fills it in."""
        created = self.add("alice", "secret")
        self.assertEqual(created.password_md5, hashlib.md5(b"secret").digest())
        self.assertNotIn(hashlib.md5(b"secret").hexdigest(), repr(created))
        self.assertNotIn("password_md5", repr(created))
        self.assertTrue(self.ok(self.store.set_password("alice", "newpass")))
        changed = self.ok(self.store.get_account("alice"))
        self.assertEqual(changed.password_md5, hashlib.md5(b"newpass").digest())

        bare = Credentials(auth_key=KEY, weak_md5=WEAK, strong_md5=STRONG)
        bob = self.ok(self.store.create_account_with_credentials("Bob", bare))
        self.assertIsNone(bob.password_md5)
        self.assertIsNone(self.ok(self.store.get_account("bob")).password_md5)
        learnt = attrs.evolve(bare, password_md5=hashlib.md5(b"secret").digest())
        self.assertFalse(self.ok(self.store.set_credentials("bob", learnt, "another key")))
        self.assertIsNone(self.ok(self.store.get_account("bob")).password_md5)
        self.assertTrue(self.ok(self.store.set_credentials("bob", learnt, KEY)))
        bob = self.ok(self.store.get_account("bob"))
        self.assertEqual(bob.password_md5, hashlib.md5(b"secret").digest())
        self.assertEqual((bob.auth_key, bob.weak_md5, bob.strong_md5), (KEY, WEAK, STRONG))

    def test_set_password_unknown(self) -> None:
        """Changing the password of a missing account reports False."""
        self.assertFalse(self.ok(self.store.set_password("nobody", "secret")))

    def test_set_password_invalid(self) -> None:
        """An invalid new password is InvalidPassword and the old one keeps working."""
        self.add("alice", "secret")
        self.fails(self.store.set_password("alice", "abc"), InvalidPassword)
        account = self.ok(self.store.get_account("alice"))
        self.assertTrue(check_roasted_password(account, roast(b"secret")))

    def test_set_suspended(self) -> None:
        """Suspension is recorded and can be undone; credentials are untouched."""
        before = self.add("alice")
        self.assertTrue(self.ok(self.store.set_suspended("Alice", True)))
        suspended = self.ok(self.store.get_account("alice"))
        self.assertTrue(suspended.suspended)
        self.assertEqual(suspended.strong_md5, before.strong_md5)
        self.assertTrue(self.ok(self.store.set_suspended("alice", False)))
        self.assertEqual(self.ok(self.store.get_account("alice")), before)
        self.assertFalse(self.ok(self.store.set_suspended("nobody", True)))

    # --- bots --------------------------------------------------------------

    def test_bot_default(self) -> None:
        """New accounts are never bots, however they are created."""
        self.assertFalse(self.add("alice").bot)
        credentials = Credentials(auth_key=KEY, weak_md5=WEAK, strong_md5=STRONG)
        other = self.ok(self.store.create_account_with_credentials("carol", credentials))
        self.assertFalse(other.bot)
        self.assertFalse(self.ok(self.store.get_account("carol")).bot)

    def test_set_bot(self) -> None:
        """The flag is set under any spelling, listed, and cleared again; nothing
        else changes."""
        before = self.add("Alice")
        self.assertTrue(self.ok(self.store.set_bot("ALICE", True)))
        after = self.ok(self.store.get_account("alice"))
        self.assertIs(after.bot, True)
        self.assertEqual(attrs.evolve(after, bot=False), before)
        self.assertEqual(self.ok(self.store.list_accounts()), [after])
        self.assertTrue(self.ok(self.store.set_bot("alice", True)))
        self.assertTrue(self.ok(self.store.get_account("alice")).bot)
        self.assertTrue(self.ok(self.store.set_bot("a lice", False)))
        cleared = self.ok(self.store.get_account("alice"))
        self.assertIs(cleared.bot, False)
        self.assertEqual(cleared, before)

    def test_set_bot_unknown(self) -> None:
        """Marking a missing account reports False and creates nothing."""
        self.assertFalse(self.ok(self.store.set_bot("nobody", True)))
        self.assertFalse(self.ok(self.store.set_bot("nobody", False)))
        self.assertEqual(self.ok(self.store.list_accounts()), [])

    def test_set_bot_one_account(self) -> None:
        """Only the named account becomes a bot."""
        self.add("alice")
        self.add("bob")
        self.ok(self.store.set_bot("bob", True))
        listed = self.ok(self.store.list_accounts())
        self.assertEqual(
            [(a.screen_name, a.bot) for a in listed], [("alice", False), ("bob", True)]
        )

    def test_bot_deleted_with_account(self) -> None:
        """A new account under a deleted bot's name is not a bot."""
        self.add("alice")
        self.ok(self.store.set_bot("alice", True))
        self.ok(self.store.delete_account("alice"))
        self.assertFalse(self.add("alice").bot)

    @contract_settings(max_examples=25)
    @given(st.one_of(screen_names(), icq_uins()))
    def test_any_valid_name(self, name: str) -> None:
        """Every valid name can be registered and found again by its normalized form."""
        store = self.make_store()
        account = self.ok(store.create_account(name, "secret"))
        self.assertEqual(account.screen_name, name)
        self.assertEqual(self.ok(store.get_account(name.replace(" ", "").upper())), account)


class WarningStoreContractMixin(StoreContractMixin):
    """The IWarningStore contract: levels are read back through the account."""

    def test_provides_warning_store(self) -> None:
        """The store provides every IWarningStore method."""
        self.assertTrue(verifyObject(IWarningStore, self.store))

    def test_warning_default(self) -> None:
        """A new account has never been warned: level 0, set at 0."""
        account = self.add("alice")
        self.assertEqual((account.warning_level, account.warning_updated_at), (0, 0))
        credentials = Credentials(auth_key=KEY, weak_md5=WEAK, strong_md5=STRONG)
        other = self.ok(self.store.create_account_with_credentials("carol", credentials))
        self.assertEqual((other.warning_level, other.warning_updated_at), (0, 0))

    def test_set_warning(self) -> None:
        """The level and its time are kept, under any spelling, and nothing else changes."""
        before = self.add("Alice")
        self.assertTrue(self.ok(self.store.set_warning("ALICE", 250, NOW + 3)))
        after = self.ok(self.store.get_account("alice"))
        self.assertEqual((after.warning_level, after.warning_updated_at), (250, NOW + 3))
        self.assertEqual(attrs.evolve(after, warning_level=0, warning_updated_at=0), before)
        self.assertEqual(self.ok(self.store.list_accounts()), [after])
        self.assertTrue(self.ok(self.store.set_warning("alice", 0, NOW + 9)))
        after = self.ok(self.store.get_account("alice"))
        self.assertEqual((after.warning_level, after.warning_updated_at), (0, NOW + 9))

    def test_warning_survives_other_changes(self) -> None:
        """Changing the password or suspension keeps the warning level."""
        self.add("alice")
        self.ok(self.store.set_warning("alice", 100, NOW))
        self.ok(self.store.set_password("alice", "newpass"))
        self.ok(self.store.set_suspended("alice", True))
        account = self.ok(self.store.get_account("alice"))
        self.assertEqual((account.warning_level, account.warning_updated_at), (100, NOW))

    def test_bot_survives_other_changes(self) -> None:
        """Password, suspension and warning changes keep the flag, and setting it
        keeps them."""
        self.add("alice")
        self.ok(self.store.set_warning("alice", 100, NOW))
        self.ok(self.store.set_suspended("alice", True))
        self.ok(self.store.set_bot("alice", True))
        self.ok(self.store.set_password("alice", "newpass"))
        self.ok(self.store.set_warning("alice", 200, NOW + 1))
        account = self.ok(self.store.get_account("alice"))
        self.assertTrue(account.bot)
        self.assertTrue(account.suspended)
        self.assertEqual((account.warning_level, account.warning_updated_at), (200, NOW + 1))
        self.assertTrue(check_roasted_password(account, roast(b"newpass")))

    def test_set_warning_unknown(self) -> None:
        """Warning a missing account reports False."""
        self.assertFalse(self.ok(self.store.set_warning("nobody", 100, NOW)))

    def test_set_warning_clamped(self) -> None:
        """Levels below 0 or above MAX_WARNING_LEVEL are kept as the nearer bound."""
        self.add("alice")
        for level, kept in ((-5, 0), (MAX_WARNING_LEVEL + 1, MAX_WARNING_LEVEL), (10**30, 1000)):
            self.assertTrue(self.ok(self.store.set_warning("alice", level, NOW)))
            self.assertEqual(self.ok(self.store.get_account("alice")).warning_level, kept)

    def test_set_warning_invalid(self) -> None:
        """A level that is not an integer or a negative time is refused; nothing changes."""
        self.add("alice")
        self.ok(self.store.set_warning("alice", 30, NOW))
        for level, at in ((1.5, NOW), ("100", NOW), (None, NOW), (True, NOW), (10, -1), (10, 2.0)):
            self.fails(self.store.set_warning("alice", level, at), StoreError)
        account = self.ok(self.store.get_account("alice"))
        self.assertEqual((account.warning_level, account.warning_updated_at), (30, NOW))


class FeedbagStoreContractMixin(StoreContractMixin):
    """The IFeedbagStore contract."""

    def test_provides_feedbag_store(self) -> None:
        """The store provides every IFeedbagStore method."""
        self.assertTrue(verifyObject(IFeedbagStore, self.store))

    def test_feedbag_empty(self) -> None:
        """A never-written feedbag is empty with last_modified 0 (also for no account)."""
        self.add("alice")
        self.assertEqual(self.ok(self.store.get_feedbag("alice")), EMPTY)
        self.assertEqual(self.ok(self.store.get_feedbag("nobody")), EMPTY)

    def test_feedbag_upsert(self) -> None:
        """Items come back byte for byte, ordered by (group, item), stamped with now."""
        self.add("alice")
        stored = [
            item(1, 5, "Bob", 0, b"\x01\x31\x00\x03Bob\x00\x00\x00\x00"),
            item(0, 0, "", 1, b""),
            item(1, 0, "Buddies ☺", 1, bytes(range(256))),
        ]
        self.assertIsNone(self.ok(self.store.upsert_feedbag_items("ALICE", stored, NOW + 5)))
        bag = self.ok(self.store.get_feedbag("alice"))
        self.assertEqual(
            bag, Feedbag(items=(stored[1], stored[2], stored[0]), last_modified=NOW + 5)
        )

    def test_feedbag_replace(self) -> None:
        """An item with an existing (group, item) key replaces the old one."""
        self.add("alice")
        self.ok(self.store.upsert_feedbag_items("alice", [item(1, 2, "old")], NOW))
        self.ok(self.store.upsert_feedbag_items("alice", [item(1, 2, "new", 3, b"a")], NOW + 1))
        bag = self.ok(self.store.get_feedbag("alice"))
        self.assertEqual(bag, Feedbag(items=(item(1, 2, "new", 3, b"a"),), last_modified=NOW + 1))

    def test_feedbag_delete(self) -> None:
        """Deleting removes those keys, ignores missing ones, and stamps now."""
        self.add("alice")
        self.ok(self.store.upsert_feedbag_items("alice", [item(1, 1), item(1, 2)], NOW))
        self.ok(self.store.delete_feedbag_items("alice", [(1, 1), (9, 9)], NOW + 7))
        bag = self.ok(self.store.get_feedbag("alice"))
        self.assertEqual(bag, Feedbag(items=(item(1, 2),), last_modified=NOW + 7))

    def test_feedbag_delete_on_empty(self) -> None:
        """Deleting from a never-written list still records the change time."""
        self.add("alice")
        self.ok(self.store.delete_feedbag_items("alice", [(1, 1)], NOW))
        self.assertEqual(self.ok(self.store.get_feedbag("alice")), Feedbag((), NOW))

    def test_feedbag_unknown_account(self) -> None:
        """Writing the feedbag of a missing account is NoSuchAccount."""
        self.fails(self.store.upsert_feedbag_items("nobody", [item(1, 1)], NOW), NoSuchAccount)
        self.fails(self.store.delete_feedbag_items("nobody", [(1, 1)], NOW), NoSuchAccount)

    def test_feedbag_per_user(self) -> None:
        """One user's items are not another's."""
        self.add("alice")
        self.add("bob")
        self.ok(self.store.upsert_feedbag_items("alice", [item(1, 1)], NOW))
        self.assertEqual(self.ok(self.store.get_feedbag("bob")), EMPTY)

    def test_feedbag_summary_kept_with_the_list(self) -> None:
        """A write with a summary keeps it, byte for byte, until the next
        write; none was ever kept for a list never written."""
        self.add("alice")
        # Never written: the empty list's summary, as get_feedbag gives it.
        self.assertEqual(self.ok(self.store.get_feedbag_summary("alice")), EMPTY_FEEDBAG_SUMMARY)
        self.assertEqual(self.ok(self.store.get_feedbag_summary("nobody")), EMPTY_FEEDBAG_SUMMARY)
        summary = FeedbagSummary(
            NOW, 1, b"\x00\x01x\x00\x01\x00\x02\x00\x00\x00\x00", ("bob", "carol"), b""
        )
        self.ok(self.store.upsert_feedbag_items("alice", [item(1, 2)], NOW, summary))
        self.assertEqual(self.ok(self.store.get_feedbag_summary("ALICE")), summary)
        later = attrs.evolve(summary, last_modified=NOW + 1, count=0, buddies=())
        self.ok(self.store.delete_feedbag_items("alice", [(1, 2)], NOW + 1, later))
        self.assertEqual(self.ok(self.store.get_feedbag_summary("alice")), later)

    def test_feedbag_write_without_summary_drops_it(self) -> None:
        """A write that brings no summary (the admin CLI's) leaves none: a
        summary never describes another version of the list."""
        self.add("alice")
        summary = FeedbagSummary(NOW, 1, b"w", (), b"")
        self.ok(self.store.upsert_feedbag_items("alice", [item(1, 2)], NOW, summary))
        self.ok(self.store.upsert_feedbag_items("alice", [item(1, 3)], NOW + 1))
        self.assertIsNone(self.ok(self.store.get_feedbag_summary("alice")))
        self.ok(self.store.upsert_feedbag_items("alice", [item(1, 4)], NOW + 2, summary))
        self.ok(self.store.delete_feedbag_items("alice", [(1, 4)], NOW + 3))
        self.assertIsNone(self.ok(self.store.get_feedbag_summary("alice")))

    def test_set_feedbag_summary_only_for_the_version_read(self) -> None:
        """A summary worked out from a read is kept only if the list is
        still that version (time and count) and has none yet."""
        self.add("alice")
        self.ok(self.store.upsert_feedbag_items("alice", [item(1, 2), item(1, 3)], NOW))
        stale_time = FeedbagSummary(NOW - 1, 2, b"w", (), b"")
        stale_count = FeedbagSummary(NOW, 1, b"w", (), b"")
        self.assertFalse(self.ok(self.store.set_feedbag_summary("alice", stale_time)))
        self.assertFalse(self.ok(self.store.set_feedbag_summary("alice", stale_count)))
        self.assertIsNone(self.ok(self.store.get_feedbag_summary("alice")))
        good = FeedbagSummary(NOW, 2, b"w", ("x",), b"s")
        self.assertTrue(self.ok(self.store.set_feedbag_summary("alice", good)))
        self.assertEqual(self.ok(self.store.get_feedbag_summary("alice")), good)
        other = attrs.evolve(good, wire=b"other")
        self.assertFalse(self.ok(self.store.set_feedbag_summary("alice", other)))
        self.assertFalse(self.ok(self.store.set_feedbag_summary("nobody", good)))
        self.assertEqual(self.ok(self.store.get_feedbag_summary("alice")), good)

    @contract_settings(max_examples=40)
    @given(feedbag_ops)
    def test_feedbag_model(self, ops: list[tuple[str, list[Any]]]) -> None:
        """Any sequence of upserts and deletes leaves what a dictionary would hold."""
        store = self.make_store()
        self.ok(store.create_account("alice", "secret"))
        model: dict[tuple[int, int], FeedbagItem] = {}
        for when, (kind, values) in enumerate(ops, start=1):
            if kind == "upsert":
                self.ok(store.upsert_feedbag_items("alice", values, when))
                model.update(((i.group_id, i.item_id), i) for i in values)
            else:
                self.ok(store.delete_feedbag_items("alice", values, when))
                for key in values:
                    model.pop(key, None)
        expected = Feedbag(tuple(model[k] for k in sorted(model)), len(ops))
        self.assertEqual(self.ok(store.get_feedbag("alice")), expected)

    def test_delete_removes_feedbag(self) -> None:
        """A deleted account's feedbag does not come back with a new account of that name."""
        self.add("alice")
        self.ok(self.store.upsert_feedbag_items("alice", [item(1, 2)], NOW))
        self.ok(self.store.delete_account("alice"))
        self.add("alice")
        self.assertEqual(self.ok(self.store.get_feedbag("alice")), EMPTY)

    # --- bounds ------------------------------------------------------------

    def assert_refused(self, bad: FeedbagItem) -> None:
        """``bad`` is refused with StoreError, and the valid item sent with it is not kept."""
        d = self.store.upsert_feedbag_items("alice", [item(0, 1), bad], NOW)
        self.fails(d, StoreError)
        self.assertEqual(self.ok(self.store.get_feedbag("alice")), EMPTY)

    def test_bound_name(self) -> None:
        """Item names up to 255 bytes of UTF-8 are kept; longer ones are refused."""
        self.add("alice")
        self.assert_refused(item(1, 1, "x" * (MAX_ITEM_NAME_BYTES + 1)))
        self.assert_refused(item(1, 1, "é" * 128))
        longest = item(1, 1, "x" * MAX_ITEM_NAME_BYTES)
        self.ok(self.store.upsert_feedbag_items("alice", [longest], NOW))

    def test_bound_attributes(self) -> None:
        """Attribute blocks up to 8 KiB are kept; bigger ones are refused."""
        self.add("alice")
        self.assert_refused(item(1, 1, attributes=bytes(MAX_ITEM_ATTRIBUTES_BYTES + 1)))
        biggest = item(1, 1, attributes=bytes(MAX_ITEM_ATTRIBUTES_BYTES))
        self.ok(self.store.upsert_feedbag_items("alice", [biggest], NOW))

    def test_bound_ids(self) -> None:
        """Ids must fit the wire's 16 bits."""
        self.add("alice")
        for bad in (item(-1, 1), item(1, 0x10000), item(1, 1, class_id=0x10000)):
            self.assert_refused(bad)

    def test_bound_count(self) -> None:
        """A feedbag holds at most MAX_FEEDBAG_ITEMS items; a batch going over is refused."""
        self.add("alice")
        full = [item(g, i) for g in range(2) for i in range(MAX_FEEDBAG_ITEMS // 2)]
        self.ok(self.store.upsert_feedbag_items("alice", full, NOW))
        self.fails(self.store.upsert_feedbag_items("alice", [item(5, 5)], NOW + 1), StoreError)
        bag = self.ok(self.store.get_feedbag("alice"))
        self.assertEqual((len(bag.items), bag.last_modified), (MAX_FEEDBAG_ITEMS, NOW))
        # Replacing an existing item does not grow the list.
        self.ok(self.store.upsert_feedbag_items("alice", [item(0, 0, "y")], NOW + 2))


class OfflineMessageStoreContractMixin(StoreContractMixin):
    """The IOfflineMessageStore contract."""

    def offline(
        self,
        recipient: str = "alice",
        sender: str = "Bob Smith",
        cookie: bytes = COOKIE,
        channel: int = 1,
        tlvs: bytes = TLVS,
        sent_at: int = NOW,
    ) -> Deferred[OfflineMessage]:
        return self.store.store_offline_message(recipient, sender, cookie, channel, tlvs, sent_at)

    def inbox(self, recipient: str = "alice") -> list[OfflineMessage]:
        return self.ok(self.store.get_offline_messages(recipient))

    def test_provides_offline_message_store(self) -> None:
        """The store provides every IOfflineMessageStore method."""
        self.assertTrue(verifyObject(IOfflineMessageStore, self.store))

    def test_offline_store(self) -> None:
        """A stored message comes back as given, addressed to the normalized name."""
        self.add("Alice Cooper")
        stored = self.ok(self.offline("ALICE cooper", "Bob Smith", COOKIE, 2, TLVS, NOW + 1))
        self.assertIsInstance(stored, OfflineMessage)
        self.assertEqual(
            attrs.evolve(stored, message_id=0),
            OfflineMessage(0, "alicecooper", "Bob Smith", COOKIE, 2, TLVS, NOW + 1),
        )
        self.assertEqual(self.inbox("alicecooper"), [stored])

    def test_offline_counts(self) -> None:
        """The per-recipient counts of waiting messages: only recipients that
        have some, updated by stores and deletes."""
        self.add("alice")
        self.add("bob")
        self.assertEqual(self.ok(self.store.count_offline_messages()), {})
        stored = [self.ok(self.offline("Alice", sender=f"user{n}")) for n in range(3)]
        self.ok(self.offline("Bob"))
        self.assertEqual(self.ok(self.store.count_offline_messages()), {"alice": 3, "bob": 1})
        self.ok(self.store.delete_offline_messages("bob", stored[-1].message_id + 10))
        self.assertEqual(self.ok(self.store.count_offline_messages()), {"alice": 3})

    def test_offline_order(self) -> None:
        """Messages come back in the order they were stored, with increasing ids."""
        self.add("alice")
        stored = [self.ok(self.offline(sender=f"user{n}", sent_at=NOW - n)) for n in range(5)]
        self.assertEqual(self.inbox("Alice"), stored)
        ids = [m.message_id for m in stored]
        self.assertEqual(ids, sorted(set(ids)))

    def test_offline_bytes_exact(self) -> None:
        """TLV blocks and cookies are kept byte for byte, empty and binary ones too."""
        self.add("alice")
        blocks = [b"", bytes(range(256)), b"\x00" * 7 + b"\xff", bytes(MAX_OFFLINE_MESSAGE_BYTES)]
        for n, tlvs in enumerate(blocks):
            self.ok(self.offline(cookie=bytes([n, 0, 0xFF, 0, 0, 0, 0, 0x80]), tlvs=tlvs))
        got = self.inbox()
        self.assertEqual([m.tlvs for m in got], blocks)
        self.assertEqual([m.cookie[0] for m in got], [0, 1, 2, 3])
        self.assertTrue(all(type(m.tlvs) is bytes and type(m.cookie) is bytes for m in got))

    def test_offline_empty(self) -> None:
        """No messages is an empty list, also for a missing account."""
        self.add("alice")
        self.assertEqual(self.inbox("alice"), [])
        self.assertEqual(self.inbox("nobody"), [])

    def test_offline_unknown_recipient(self) -> None:
        """Storing for a missing account is NoSuchAccount; deleting removes nothing."""
        self.fails(self.offline("nobody"), NoSuchAccount)
        self.assertEqual(self.ok(self.store.delete_offline_messages("nobody", 10**6)), 0)

    def test_offline_per_recipient(self) -> None:
        """One user's messages are not another's, and deleting one inbox leaves the other."""
        self.add("alice")
        self.add("bob")
        for_alice = self.ok(self.offline("alice", sender="carol"))
        for_bob = self.ok(self.offline("bob", sender="carol"))
        self.assertEqual(self.inbox("alice"), [for_alice])
        self.assertEqual(self.inbox("bob"), [for_bob])
        top = max(for_alice.message_id, for_bob.message_id)
        self.assertEqual(self.ok(self.store.delete_offline_messages("alice", top)), 1)
        self.assertEqual(self.inbox("bob"), [for_bob])

    def test_offline_delete_up_to(self) -> None:
        """Deleting up to an id removes those and no later ones, and says how many."""
        self.add("alice")
        first, second, third = (self.ok(self.offline(sent_at=NOW + n)) for n in range(3))
        self.assertEqual(self.ok(self.store.delete_offline_messages("ALICE", second.message_id)), 2)
        self.assertEqual(self.inbox(), [third])
        self.assertEqual(self.ok(self.store.delete_offline_messages("alice", second.message_id)), 0)
        self.assertEqual(self.inbox(), [third])

    def test_offline_arrived_during_delivery(self) -> None:
        """A message stored between reading and deleting the inbox survives the delete."""
        self.add("alice")
        self.ok(self.offline(sent_at=NOW))
        self.ok(self.offline(sent_at=NOW + 1))
        delivered = self.inbox()
        late = self.ok(self.offline(sent_at=NOW + 2))
        self.assertGreater(late.message_id, delivered[-1].message_id)
        removed = self.ok(self.store.delete_offline_messages("alice", delivered[-1].message_id))
        self.assertEqual(removed, 2)
        self.assertEqual(self.inbox(), [late])

    def test_offline_ids_never_reused(self) -> None:
        """After a delete, new messages still get higher ids than any before."""
        self.add("alice")
        old = self.ok(self.offline())
        self.ok(self.store.delete_offline_messages("alice", old.message_id))
        new = self.ok(self.offline())
        self.assertGreater(new.message_id, old.message_id)
        self.assertEqual(self.inbox(), [new])

    def test_offline_delete_bounds(self) -> None:
        """up_to_id below every id deletes nothing, a huge one everything; a
        non-integer is refused."""
        self.add("alice")
        kept = [self.ok(self.offline()) for _ in range(2)]
        self.assertEqual(self.ok(self.store.delete_offline_messages("alice", -1)), 0)
        self.assertEqual(self.ok(self.store.delete_offline_messages("alice", 0)), 0)
        for bad in (1.5, "9", None):
            self.fails(self.store.delete_offline_messages("alice", bad), StoreError)
        self.assertEqual(self.inbox(), kept)
        self.assertEqual(self.ok(self.store.delete_offline_messages("alice", 2**70)), 2)
        self.assertEqual(self.inbox(), [])

    def fill(
        self, senders: int, per_sender: int, size: int = 0, recipient: str = "alice"
    ) -> list[OfflineMessage]:
        """Store ``per_sender`` messages of ``size`` TLV bytes from each of
        ``senders`` senders (sender0, sender1, ...), taking turns."""
        return [
            self.ok(self.offline(recipient, f"sender{s}", tlvs=bytes([n % 256]) * size, sent_at=n))
            for n in range(per_sender)
            for s in range(senders)
        ]

    def refused(
        self, error: type[OfflineInboxFull], recipient: str = "alice", **kwargs: Any
    ) -> OfflineInboxFull:
        """The message is refused with ``error``, and the inbox, its counts and
        every other inbox are exactly as before."""
        before = {name: self.inbox(name) for name in ("alice", "bob")}
        counts = self.ok(self.store.count_offline_messages())
        refusal = self.fails(self.offline(recipient, **kwargs), OfflineInboxFull)
        self.assertIs(type(refusal), error)
        self.assertIsInstance(refusal, StoreError)
        self.assertEqual({name: self.inbox(name) for name in before}, before)
        self.assertEqual(self.ok(self.store.count_offline_messages()), counts)
        return refusal

    def test_offline_caps_consistent(self) -> None:
        """One message of the largest size fits an empty share, and a sender's
        share is a part of the inbox, by count and by bytes."""
        self.assertLessEqual(MAX_OFFLINE_MESSAGE_BYTES, MAX_OFFLINE_BYTES_PER_SENDER)
        self.assertLess(MAX_OFFLINE_BYTES_PER_SENDER, MAX_OFFLINE_BYTES_PER_RECIPIENT)
        self.assertLess(MAX_OFFLINE_MESSAGES_PER_SENDER, MAX_OFFLINE_MESSAGES_PER_RECIPIENT)
        caps = [
            OfflineInboxMessagesFull,
            OfflineInboxBytesFull,
            OfflineSenderMessagesFull,
            OfflineSenderBytesFull,
        ]
        self.assertEqual(len({cap.cap for cap in caps}), len(caps))
        for cap in caps:
            self.assertTrue(issubclass(cap, OfflineInboxFull))

    def test_offline_inbox_full(self) -> None:
        """At MAX_OFFLINE_MESSAGES_PER_RECIPIENT the next message, from a sender
        with room in their own share, is OfflineInboxMessagesFull and is not
        stored; delivering makes room again; other inboxes are unaffected."""
        self.add("alice")
        self.add("bob")
        senders = MAX_OFFLINE_MESSAGES_PER_RECIPIENT // MAX_OFFLINE_MESSAGES_PER_SENDER
        full = self.fill(senders, MAX_OFFLINE_MESSAGES_PER_SENDER)
        self.assertEqual(len(full), MAX_OFFLINE_MESSAGES_PER_RECIPIENT)
        self.refused(OfflineInboxMessagesFull, sender="newcomer", tlvs=b"")
        self.assertEqual(self.inbox(), full)
        self.ok(self.offline("bob"))
        self.ok(self.store.delete_offline_messages("alice", full[0].message_id))
        last = self.ok(self.offline(sender="newcomer", sent_at=NOW))
        self.assertEqual(self.inbox(), [*full[1:], last])

    def test_offline_one_sender_does_not_block_others(self) -> None:
        """A sender who has MAX_OFFLINE_MESSAGES_PER_SENDER messages waiting, in
        any spelling of their name, is refused with OfflineSenderMessagesFull;
        other senders still get through, and so does that sender to someone else."""
        self.add("alice")
        self.add("bob")
        mine = [
            self.ok(self.offline(sender="Bob Smith", sent_at=n))
            for n in range(MAX_OFFLINE_MESSAGES_PER_SENDER)
        ]
        for spelling in ("Bob Smith", "bobsmith", "BOB SMITH"):
            refusal = self.refused(OfflineSenderMessagesFull, sender=spelling, tlvs=b"")
            self.assertEqual(refusal.cap, "messages per sender")
        self.assertEqual(self.inbox(), mine)
        others = [self.ok(self.offline(sender=f"other{n}")) for n in range(3)]
        to_bob = self.ok(self.offline("bob", sender="Bob Smith"))
        self.assertEqual(self.inbox(), [*mine, *others])
        self.assertEqual(self.inbox("bob"), [to_bob])
        self.assertEqual(
            self.ok(self.store.count_offline_messages()),
            {"alice": MAX_OFFLINE_MESSAGES_PER_SENDER + 3, "bob": 1},
        )

    def test_offline_sender_bytes(self) -> None:
        """One sender's messages to one recipient may add up to exactly
        MAX_OFFLINE_BYTES_PER_SENDER TLV bytes; a byte more is
        OfflineSenderBytesFull, while an empty message and other senders still go."""
        self.add("alice")
        self.add("bob")
        biggest = MAX_OFFLINE_MESSAGE_BYTES
        whole, rest = divmod(MAX_OFFLINE_BYTES_PER_SENDER, biggest)
        mine = [self.ok(self.offline(tlvs=bytes([n]) * biggest)) for n in range(whole)]
        if rest:
            mine.append(self.ok(self.offline(tlvs=b"r" * rest)))
        self.assertEqual(sum(len(m.tlvs) for m in mine), MAX_OFFLINE_BYTES_PER_SENDER)
        self.refused(OfflineSenderBytesFull, tlvs=b"x")
        self.refused(OfflineSenderBytesFull, sender="BOBSMITH", tlvs=bytes(biggest))
        empty = self.ok(self.offline(tlvs=b""))
        other = self.ok(self.offline(sender="carol", tlvs=bytes(biggest)))
        elsewhere = self.ok(self.offline("bob", tlvs=bytes(biggest)))
        self.assertEqual(self.inbox(), [*mine, empty, other])
        self.assertEqual(self.inbox("bob"), [elsewhere])

    def test_offline_inbox_bytes(self) -> None:
        """All senders together may fill exactly MAX_OFFLINE_BYTES_PER_RECIPIENT
        TLV bytes; a message that would go past it is OfflineInboxBytesFull,
        from a sender with room in their own share, and is not stored."""
        self.add("alice")
        self.add("bob")
        size = MAX_OFFLINE_MESSAGE_BYTES
        per_sender = MAX_OFFLINE_BYTES_PER_SENDER // size
        senders, rest = divmod(MAX_OFFLINE_BYTES_PER_RECIPIENT, per_sender * size)
        full = self.fill(senders, per_sender, size)
        if rest:
            full.append(self.ok(self.offline(sender="rest", tlvs=bytes(rest))))
        self.assertEqual(sum(len(m.tlvs) for m in full), MAX_OFFLINE_BYTES_PER_RECIPIENT)
        refusal = self.refused(OfflineInboxBytesFull, sender="newcomer", tlvs=b"x")
        self.assertEqual(refusal.cap, "bytes per recipient")
        self.refused(OfflineInboxBytesFull, sender="newcomer", tlvs=bytes(size))
        self.assertEqual(self.inbox(), full)
        # Empty messages still fit (the count cap is far off), and other inboxes are open.
        empty = self.ok(self.offline(sender="newcomer", tlvs=b""))
        self.ok(self.offline("bob", sender="newcomer", tlvs=bytes(size)))
        self.assertEqual(self.inbox(), [*full, empty])

    def test_offline_delivery_frees_quota(self) -> None:
        """Deleting the delivered messages gives their room back: by count and
        by bytes, to the inbox and to the sender."""
        self.add("alice")
        size = MAX_OFFLINE_MESSAGE_BYTES
        per_sender = MAX_OFFLINE_BYTES_PER_SENDER // size
        senders = MAX_OFFLINE_BYTES_PER_RECIPIENT // MAX_OFFLINE_BYTES_PER_SENDER
        self.fill(senders, per_sender, size)
        self.refused(OfflineSenderBytesFull, sender="sender0", tlvs=b"x")
        self.refused(OfflineInboxBytesFull, sender="newcomer", tlvs=b"x")
        delivered = self.inbox()
        self.ok(self.store.delete_offline_messages("alice", delivered[-1].message_id))
        self.assertEqual(self.inbox(), [])
        again = self.fill(senders, per_sender, size)
        self.assertEqual(self.inbox(), again)
        # And by count: a sender at their message cap gets room back too.
        self.ok(self.store.delete_offline_messages("alice", again[-1].message_id))
        counted = [self.ok(self.offline(tlvs=b"")) for _ in range(MAX_OFFLINE_MESSAGES_PER_SENDER)]
        self.refused(OfflineSenderMessagesFull, tlvs=b"")
        self.ok(self.store.delete_offline_messages("alice", counted[0].message_id))
        self.ok(self.offline(tlvs=b""))

    def test_offline_sender_cap_checked_first(self) -> None:
        """When both the sender's share and the inbox are full, the refusal
        names the sender's cap (so the log says who used up their share)."""
        self.add("alice")
        senders = MAX_OFFLINE_MESSAGES_PER_RECIPIENT // MAX_OFFLINE_MESSAGES_PER_SENDER
        self.fill(senders, MAX_OFFLINE_MESSAGES_PER_SENDER)
        self.refused(OfflineSenderMessagesFull, sender="sender0", tlvs=b"")
        self.refused(OfflineInboxMessagesFull, sender="newcomer", tlvs=b"")

    def test_offline_bound_size(self) -> None:
        """TLV blocks up to MAX_OFFLINE_MESSAGE_BYTES are kept; bigger ones are refused."""
        self.add("alice")
        self.fails(self.offline(tlvs=bytes(MAX_OFFLINE_MESSAGE_BYTES + 1)), StoreError)
        self.assertEqual(self.inbox(), [])
        self.ok(self.offline(tlvs=bytes(MAX_OFFLINE_MESSAGE_BYTES)))

    def test_offline_malformed(self) -> None:
        """Bad cookies, channels, senders and times are refused and nothing is stored."""
        self.add("alice")
        for bad in (
            {"cookie": COOKIE[:7]},
            {"cookie": COOKIE + b"\x00"},
            {"cookie": b""},
            {"cookie": "12345678"},
            {"channel": -1},
            {"channel": 0x10000},
            {"channel": 1.0},
            {"sender": ""},
            {"sender": "x" * (MAX_OFFLINE_SENDER_BYTES + 1)},
            {"tlvs": "text"},
            {"sent_at": -1},
            {"sent_at": 2**64},
        ):
            self.fails(self.offline(**bad), StoreError)
        self.assertEqual(self.inbox(), [])
        self.ok(self.offline(sender="x" * MAX_OFFLINE_SENDER_BYTES, channel=0xFFFF, sent_at=0))

    def test_delete_account_removes_offline(self) -> None:
        """A deleted account's messages do not come back with a new account of that name."""
        self.add("alice")
        self.ok(self.offline())
        self.ok(self.store.delete_account("alice"))
        self.assertEqual(self.inbox(), [])
        self.add("alice")
        self.assertEqual(self.inbox(), [])

    @contract_settings(max_examples=30)
    @given(offline_ops)
    def test_offline_model(self, ops: list[tuple[str, str, Any]]) -> None:
        """Any sequence of stores and deletes leaves what a list per recipient would hold."""
        store = self.make_store()
        model: dict[str, list[OfflineMessage]] = {"alice": [], "bob": []}
        for name in model:
            self.ok(store.create_account(name, "secret"))
        for kind, recipient, value in ops:
            if kind == "store":
                message = self.ok(
                    store.store_offline_message(recipient, "carol", COOKIE, 1, value, NOW)
                )
                self.assertEqual(message.tlvs, value)
                model[recipient].append(message)
            else:
                removed = self.ok(store.delete_offline_messages(recipient, value))
                kept = [m for m in model[recipient] if m.message_id > value]
                self.assertEqual(removed, len(model[recipient]) - len(kept))
                model[recipient] = kept
        for name, expected in model.items():
            self.assertEqual(self.ok(store.get_offline_messages(name)), expected)

    @contract_settings(max_examples=30)
    @given(quota_ops)
    def test_offline_quota_model(self, ops: list[tuple[str, str, Any, bytes]]) -> None:
        """With small caps, any sequence of stores and deletes is refused exactly
        when a cap says so, with the exception naming that cap, and leaves what
        a list per recipient would hold."""
        with mock.patch.multiple("aimserver.store.interfaces", **SMALL_CAPS):
            store = self.make_store()
            model: dict[str, list[OfflineMessage]] = {"alice": [], "bob": []}
            for name in model:
                self.ok(store.create_account(name, "secret"))
            for kind, recipient, value, tlvs in ops:
                if kind == "delete":
                    self.ok(store.delete_offline_messages(recipient, value))
                    model[recipient] = [m for m in model[recipient] if m.message_id > value]
                    continue
                d = store.store_offline_message(recipient, value, COOKIE, 1, tlvs, NOW)
                expected = expected_refusal(model[recipient], value, tlvs)
                if expected is None:
                    model[recipient].append(self.ok(d))
                else:
                    self.assertIs(type(self.fails(d, OfflineInboxFull)), expected)
            for name, messages in model.items():
                self.assertEqual(self.ok(store.get_offline_messages(name)), messages)
            counts = {name: len(messages) for name, messages in model.items() if messages}
            self.assertEqual(self.ok(store.count_offline_messages()), counts)


class SecretStoreContractMixin(StoreContractMixin):
    """The ISecretStore contract."""

    def test_provides_secret_store(self) -> None:
        """The store provides every ISecretStore method."""
        self.assertTrue(verifyObject(ISecretStore, self.store))

    def test_secret_kept(self) -> None:
        """A secret is random, of the asked size, and the same when asked again."""
        first = self.ok(self.store.get_or_create_secret("cookie", 32))
        self.assertEqual(len(first), 32)
        self.assertEqual(self.ok(self.store.get_or_create_secret("cookie", 32)), first)
        other = self.ok(self.store.get_or_create_secret("other", 32))
        self.assertNotEqual(other, first)

    def test_secret_size_mismatch(self) -> None:
        """Asking for an existing secret with another size is an error, not a silent swap."""
        self.ok(self.store.get_or_create_secret("cookie", 32))
        self.fails(self.store.get_or_create_secret("cookie", 16), StoreError)

    def test_secret_bounds(self) -> None:
        """Sizes outside 1..MAX_SECRET_SIZE and empty or huge names are refused."""
        for name, size in (("k", 0), ("k", MAX_SECRET_SIZE + 1), ("", 32), ("k" * 256, 32)):
            self.fails(self.store.get_or_create_secret(name, size), StoreError)


FULL_FIELDS = DirectoryFields(
    first_name=b"Alice",
    middle_name=b"B.",
    last_name=b"Liddell",
    maiden_name=b"Pleasance",
    nickname=b"Al",
    street=b"1 Rabbit Hole",
    city=b"Oxford",
    state=b"Oxon",
    zip_code=b"OX1",
    country=b"uk",
    charset=b"us-ascii",
    allow_search=True,
)

directory_fields = st.builds(
    DirectoryFields,
    **{name: st.binary(max_size=4) for name in DIRECTORY_TEXT_FIELDS},
    allow_search=st.booleans(),
)
directory_ops = st.lists(
    st.one_of(
        st.tuples(st.just("fields"), directory_fields),
        st.tuples(
            st.just("keywords"),
            st.lists(st.binary(min_size=1, max_size=4), max_size=MAX_INTEREST_KEYWORDS),
        ),
    ),
    max_size=6,
)


class DirectoryStoreContractMixin(StoreContractMixin):
    """The IDirectoryStore contract."""

    def test_provides_directory_store(self) -> None:
        """The store provides every IDirectoryStore method."""
        self.assertTrue(verifyObject(IDirectoryStore, self.store))

    def test_directory_empty(self) -> None:
        """A never-written record is empty (also for no account)."""
        self.add("alice")
        self.assertEqual(self.ok(self.store.get_directory_info("alice")), DirectoryInfo())
        self.assertEqual(self.ok(self.store.get_directory_info("nobody")), DirectoryInfo())

    def test_directory_fields_kept(self) -> None:
        """Every field comes back byte for byte, under any spelling of the name."""
        self.add("Alice")
        odd = attrs.evolve(FULL_FIELDS, nickname=bytes(range(256))[:MAX_DIRECTORY_FIELD_BYTES])
        self.assertIsNone(self.ok(self.store.set_directory_fields("A LICE", odd)))
        self.assertEqual(self.ok(self.store.get_directory_info("alice")), DirectoryInfo(odd))

    def test_directory_fields_replaced(self) -> None:
        """A write replaces every field: one left out is empty afterwards."""
        self.add("alice")
        self.ok(self.store.set_directory_fields("alice", FULL_FIELDS))
        newer = DirectoryFields(first_name=b"Al")
        self.ok(self.store.set_directory_fields("alice", newer))
        self.assertEqual(self.ok(self.store.get_directory_info("alice")), DirectoryInfo(newer))

    def test_keywords_kept_in_order(self) -> None:
        """Keywords come back in the order given; a later write replaces them all."""
        self.add("alice")
        keywords = [b"Chess", b"Go", b"\x00\xff", b"Tea", b"Zen"]
        self.ok(self.store.set_interest_keywords("alice", keywords))
        self.assertEqual(
            self.ok(self.store.get_directory_info("alice")), DirectoryInfo(keywords=tuple(keywords))
        )
        self.ok(self.store.set_interest_keywords("alice", [b"Go"]))
        self.assertEqual(self.ok(self.store.get_directory_info("alice")).keywords, (b"Go",))
        self.ok(self.store.set_interest_keywords("alice", []))
        self.assertEqual(self.ok(self.store.get_directory_info("alice")), DirectoryInfo())

    def test_parts_written_separately(self) -> None:
        """Writing the fields keeps the keywords, and writing the keywords keeps the fields."""
        self.add("alice")
        self.ok(self.store.set_interest_keywords("alice", [b"Chess"]))
        self.ok(self.store.set_directory_fields("alice", FULL_FIELDS))
        self.ok(self.store.set_interest_keywords("alice", [b"Go", b"Tea"]))
        self.assertEqual(
            self.ok(self.store.get_directory_info("alice")),
            DirectoryInfo(FULL_FIELDS, (b"Go", b"Tea")),
        )

    def test_directory_per_user(self) -> None:
        """One user's record is not another's."""
        self.add("alice")
        self.add("bob")
        self.ok(self.store.set_directory_fields("alice", FULL_FIELDS))
        self.assertEqual(self.ok(self.store.get_directory_info("bob")), DirectoryInfo())

    def test_directory_unknown_account(self) -> None:
        """Writing the record of a missing account is NoSuchAccount."""
        self.fails(self.store.set_directory_fields("nobody", FULL_FIELDS), NoSuchAccount)
        self.fails(self.store.set_interest_keywords("nobody", [b"x"]), NoSuchAccount)

    def test_delete_removes_directory(self) -> None:
        """A deleted account's record does not come back with a new account of that name."""
        self.add("alice")
        self.ok(self.store.set_directory_fields("alice", FULL_FIELDS))
        self.ok(self.store.set_interest_keywords("alice", [b"Chess"]))
        self.ok(self.store.delete_account("alice"))
        self.add("alice")
        self.assertEqual(self.ok(self.store.get_directory_info("alice")), DirectoryInfo())

    def test_directory_field_bounds(self) -> None:
        """A field up to MAX_DIRECTORY_FIELD_BYTES is kept; a longer one, a value
        that is not bytes or a flag that is not a bool is refused, changing nothing."""
        self.add("alice")
        self.ok(self.store.set_directory_fields("alice", FULL_FIELDS))
        longest = DirectoryFields(street=b"x" * MAX_DIRECTORY_FIELD_BYTES)
        bad = [
            DirectoryFields(street=b"x" * (MAX_DIRECTORY_FIELD_BYTES + 1)),
            DirectoryFields(city="Reno"),  # type: ignore[arg-type]
            DirectoryFields(allow_search=1),  # type: ignore[arg-type]
        ]
        for fields in bad:
            self.fails(self.store.set_directory_fields("alice", fields), StoreError)
        self.assertEqual(self.ok(self.store.get_directory_info("alice")).fields, FULL_FIELDS)
        self.ok(self.store.set_directory_fields("alice", longest))
        self.assertEqual(self.ok(self.store.get_directory_info("alice")).fields, longest)

    def test_keyword_bounds(self) -> None:
        """More than MAX_INTEREST_KEYWORDS keywords, or an empty, too long or
        non-bytes one, is refused, changing nothing."""
        self.add("alice")
        self.ok(self.store.set_interest_keywords("alice", [b"Chess"]))
        bad = [
            [b"k"] * (MAX_INTEREST_KEYWORDS + 1),
            [b""],
            [b"x" * (MAX_DIRECTORY_FIELD_BYTES + 1)],
            ["Chess"],
        ]
        for keywords in bad:
            self.fails(self.store.set_interest_keywords("alice", keywords), StoreError)
        self.assertEqual(self.ok(self.store.get_directory_info("alice")).keywords, (b"Chess",))
        longest = [b"x" * MAX_DIRECTORY_FIELD_BYTES] * MAX_INTEREST_KEYWORDS
        self.ok(self.store.set_interest_keywords("alice", longest))
        self.assertEqual(self.ok(self.store.get_directory_info("alice")).keywords, tuple(longest))

    @contract_settings(max_examples=30)
    @given(directory_ops)
    def test_directory_model(self, ops: list[tuple[str, Any]]) -> None:
        """Any sequence of writes leaves the last fields and the last keywords written."""
        store = self.make_store()
        self.ok(store.create_account("alice", "secret"))
        expected = DirectoryInfo()
        for kind, value in ops:
            if kind == "fields":
                self.ok(store.set_directory_fields("alice", value))
                expected = attrs.evolve(expected, fields=value)
            else:
                self.ok(store.set_interest_keywords("alice", value))
                expected = attrs.evolve(expected, keywords=tuple(value))
        self.assertEqual(self.ok(store.get_directory_info("alice")), expected)


class UserStoreContractMixin(
    AccountStoreContractMixin,
    WarningStoreContractMixin,
    FeedbagStoreContractMixin,
    OfflineMessageStoreContractMixin,
    SecretStoreContractMixin,
    DirectoryStoreContractMixin,
):
    """The IUserStore contract: every role's, on one store."""

    def test_provides_interface(self) -> None:
        """The store provides every IUserStore method."""
        self.assertTrue(verifyObject(IUserStore, self.store))


class RoleInterfaceTests(SynchronousTestCase):
    """IUserStore is its roles and nothing else."""

    def test_roles(self) -> None:
        """IUserStore extends each role, declares nothing of its own, and no
        method belongs to two roles."""
        self.assertEqual(
            USER_STORE_ROLES,
            (
                IAccountStore,
                IWarningStore,
                IFeedbagStore,
                IOfflineMessageStore,
                ISecretStore,
                IDirectoryStore,
                IBartStore,
                IChatRoomStore,
                IMotdStore,
                IHistoryStore,
            ),
        )
        self.assertEqual(list(IUserStore.names()), [])
        names = [name for role in USER_STORE_ROLES for name in role.names()]
        self.assertEqual(len(names), len(set(names)))
        self.assertEqual(set(names), set(IUserStore.names(all=True)))


def expected_refusal(
    inbox: list[OfflineMessage], sender: str, tlvs: bytes
) -> type[OfflineInboxFull] | None:
    """Which cap of :data:`SMALL_CAPS` refuses this message, the sender's first."""
    key = sender.replace(" ", "").lower()
    mine = [m for m in inbox if m.sender.replace(" ", "").lower() == key]
    if len(mine) >= SMALL_CAPS["MAX_OFFLINE_MESSAGES_PER_SENDER"]:
        return OfflineSenderMessagesFull
    if sum(len(m.tlvs) for m in mine) + len(tlvs) > SMALL_CAPS["MAX_OFFLINE_BYTES_PER_SENDER"]:
        return OfflineSenderBytesFull
    if len(inbox) >= SMALL_CAPS["MAX_OFFLINE_MESSAGES_PER_RECIPIENT"]:
        return OfflineInboxMessagesFull
    if sum(len(m.tlvs) for m in inbox) + len(tlvs) > SMALL_CAPS["MAX_OFFLINE_BYTES_PER_RECIPIENT"]:
        return OfflineInboxBytesFull
    return None


class MemoryUserStoreTests(UserStoreContractMixin, SynchronousTestCase):
    def make_store(self) -> MemoryUserStore:
        return MemoryUserStore(self.clock)


def open_inline(path: str, clock: Clock | None = None) -> SQLiteUserStore:
    """A SQLite store running its operations inline, in the calling thread."""
    return SQLiteUserStore.open(path, clock or Clock(), run=defer.maybeDeferred)


class SQLiteUserStoreTests(UserStoreContractMixin, SynchronousTestCase):
    def make_store(self) -> SQLiteUserStore:
        store = open_inline(self.mktemp(), self.clock)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        return store


class InMemorySQLiteUserStoreTests(UserStoreContractMixin, SynchronousTestCase):
    """The same contract on ``:memory:``, which the hypothesis-heavy callers may prefer."""

    def make_store(self) -> SQLiteUserStore:
        store = open_inline(":memory:", self.clock)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        return store


def schema_version(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT version FROM version").fetchone()[0]
    finally:
        conn.close()


def tables(path: str) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}
    finally:
        conn.close()


def columns(path: str, table: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def indexes(path: str) -> dict[str, tuple[str, list[str]]]:
    """Our indexes (not SQLite's own): name -> (table, columns)."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT name, tbl_name FROM sqlite_master"
            " WHERE type = 'index' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
        return {
            name: (table, [row[2] for row in conn.execute(f"PRAGMA index_info({name})")])
            for name, table in rows
        }
    finally:
        conn.close()


def _insert_v4_rows(conn: sqlite3.Connection) -> None:
    """The accounts, feedbag and secret that :func:`make_v4` and later write,
    into a schema of version 4 or later."""
    conn.executemany(
        "INSERT INTO accounts (normalized, screen_name, auth_key, weak_md5, strong_md5,"
        " suspended, created_at, warning_level, warning_updated_at, bot)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ("alice", "Alice", KEY, WEAK, STRONG, 0, NOW, 350, NOW + 2, 0),
            ("bob", "Bob", KEY, WEAK, STRONG, 0, NOW + 3, 0, 0, 1),
        ],
    )
    conn.execute(
        "INSERT INTO feedbag_items VALUES (?, ?, ?, ?, ?, ?)",
        ("alice", 1, 2, 0, "Bob", b"\x01\x31\x00\x00"),
    )
    conn.execute(
        "INSERT INTO feedbag_meta (normalized, last_modified) VALUES (?, ?)", ("alice", NOW + 1)
    )
    conn.execute("INSERT INTO secrets VALUES (?, ?)", ("cookie", b"k" * 32))


def _insert_v5_rows(conn: sqlite3.Connection) -> None:
    """What :func:`make_v5` writes, into a schema of version 5 or later."""
    _insert_v4_rows(conn)
    conn.execute(
        "INSERT INTO offline_messages"
        " (recipient, sender, cookie, channel, tlvs, sent_at, sender_key)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        ("alice", "Bob Smith", COOKIE, 1, TLVS, NOW + 4, "bobsmith"),
    )


def _insert_v6_rows(conn: sqlite3.Connection) -> None:
    """What :func:`make_v6` writes, into a schema of version 6 or later."""
    _insert_v5_rows(conn)
    conn.execute(
        "INSERT INTO directory_info (normalized, first_name, city, allow_search, keyword1)"
        " VALUES (?, ?, ?, ?, ?)",
        ("alice", b"Alice", b"Reno", 1, b"Chess"),
    )


def _make(path: str, schema: str, insert: Any) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(schema)
        insert(conn)
        conn.commit()
    finally:
        conn.close()


def make_v5(path: str) -> None:
    """A database as schema version 5 wrote it: alice (password "secret",
    warned) with one feedbag item and one offline message from "Bob Smith",
    bob (a bot), and a secret."""
    _make(path, V5_SCHEMA, _insert_v5_rows)


def make_v6(path: str) -> None:
    """A database as schema version 6 wrote it: the accounts, feedbag, secret
    and offline message of :func:`make_v5`, and alice's directory record
    (searchable, with a keyword)."""
    _make(path, V6_SCHEMA, _insert_v6_rows)


#: The icons of :func:`make_v7`: alice's, and one whose only owner was
#: deleted (version 7 left such items in the file).
V7_ICON = (b"\x11" * 16, b"GIF89a alice")
V7_ORPHAN = (b"\x22" * 16, b"GIF89a deleted")


def make_v7(path: str) -> None:
    """A database as schema version 7 wrote it: what :func:`make_v6` writes,
    alice's e-mail address (findable, confirmed) and her icon, and an icon
    nobody owns."""

    def insert(conn: sqlite3.Connection) -> None:
        _insert_v6_rows(conn)
        conn.execute(
            "UPDATE accounts SET email = 'alice@example.org', registration_status = 3,"
            " confirmed = 1 WHERE normalized = 'alice'"
        )
        conn.executemany(
            "INSERT INTO bart_items VALUES (?, ?, ?)",
            [(*V7_ICON, NOW), (*V7_ORPHAN, NOW)],
        )
        conn.execute("INSERT INTO bart_owners VALUES (?, ?, ?)", ("alice", V7_ICON[0], NOW))

    _make(path, V7_SCHEMA, insert)


#: The summary :func:`make_v9` keeps with alice's list, column by column.
V9_SUMMARY = (1, b"\x00\x03Bob\x00\x01\x00\x02\x00\x00\x00\x04\x01\x31\x00\x00", "bob", b"")


def make_v9(path: str) -> None:
    """A database as schema version 9 wrote it: what :func:`make_v7` writes
    (its orphan icon gone, as the v8 upgrade left it), with a summary kept
    beside alice's list."""

    def insert(conn: sqlite3.Connection) -> None:
        _insert_v6_rows(conn)
        conn.execute(
            "UPDATE accounts SET email = 'alice@example.org', registration_status = 3,"
            " confirmed = 1 WHERE normalized = 'alice'"
        )
        conn.execute("INSERT INTO bart_items VALUES (?, ?, ?)", (*V7_ICON, NOW))
        conn.execute("INSERT INTO bart_owners VALUES (?, ?, ?)", ("alice", V7_ICON[0], NOW))
        conn.execute(
            "UPDATE feedbag_meta SET summary_count = ?, summary_wire = ?, summary_buddies = ?,"
            " summary_special = ? WHERE normalized = 'alice'",
            V9_SUMMARY,
        )

    _make(path, V9_SCHEMA, insert)


def make_v10(path: str) -> None:
    """A database as schema version 10 wrote it: what :func:`make_v9` writes,
    and a public room."""

    def insert(conn: sqlite3.Connection) -> None:
        _insert_v6_rows(conn)
        conn.execute("INSERT INTO bart_items VALUES (?, ?, ?)", (*V7_ICON, NOW))
        conn.execute("INSERT INTO bart_owners VALUES (?, ?, ?)", ("alice", V7_ICON[0], NOW))
        conn.execute("INSERT INTO chat_rooms VALUES ('chess club', 'Chess Club', ?)", (NOW,))

    _make(path, V10_SCHEMA, insert)


#: Bob's icon in :func:`make_v11`, stored after alice's, under the MD5 of
#: its data as a client would upload it.
V11_ICON = (hashlib.md5(b"GIF89a bob").digest(), b"GIF89a bob")


def make_v11(path: str) -> None:
    """A database as schema version 11 wrote it: what :func:`make_v10`
    writes, bob's icon (stored after alice's), and the MOTD alice was shown."""

    def insert(conn: sqlite3.Connection) -> None:
        _insert_v6_rows(conn)
        conn.executemany(
            "INSERT INTO bart_items VALUES (?, ?, ?)", [(*V7_ICON, NOW), (*V11_ICON, NOW - 9)]
        )
        conn.executemany(
            "INSERT INTO bart_owners VALUES (?, ?, ?)",
            [("alice", V7_ICON[0], NOW), ("bob", V11_ICON[0], NOW - 9)],
        )
        conn.execute("INSERT INTO chat_rooms VALUES ('chess club', 'Chess Club', ?)", (NOW,))
        conn.execute("INSERT INTO motd_seen VALUES ('alice', 'ab12')")

    _make(path, V11_SCHEMA, insert)


#: The small icon bob uploaded in :func:`make_v12`, after his buddy icon.
V12_ICON = (hashlib.md5(b"GIF89a small bob").digest(), b"GIF89a small bob")


def _insert_v12_rows(conn: sqlite3.Connection) -> None:
    """What a v12 database holds (also the v13 database's, before its history)."""
    _insert_v6_rows(conn)
    conn.executemany(
        "INSERT INTO bart_items VALUES (?, ?, ?, ?)",
        [(*V7_ICON, NOW, 1), (*V11_ICON, NOW - 9, 1), (*V12_ICON, NOW - 8, 0)],
    )
    conn.executemany(
        "INSERT INTO bart_owners VALUES (?, ?, ?)",
        [("alice", V7_ICON[0], NOW), ("bob", V11_ICON[0], NOW - 9), ("bob", V12_ICON[0], NOW)],
    )
    conn.execute("INSERT INTO chat_rooms VALUES ('chess club', 'Chess Club', ?)", (NOW,))
    conn.execute("INSERT INTO motd_seen VALUES ('alice', 'ab12')")


def make_v12(path: str) -> None:
    """A database as schema version 12 wrote it: what :func:`make_v11`
    writes, and a small icon (type 0) of bob's."""
    _make(path, V12_SCHEMA, _insert_v12_rows)


#: The history in :func:`make_v13`: ``(id, owner, peer, outgoing, text,
#: at)``, ids as v13 gave them (alice's and bob's interleaved, some gone to
#: pruning), more of alice's than one chunk holds, texts JSON must escape.
V13_HISTORY = [
    *(
        (n, "alice" if n % 3 else "bob", f"Peer {n % 5}", n % 2, f"m{n}", NOW + n)
        for n in range(2, 150)
        if n % 7
    ),
    (150, "alice", "Bob", 1, 'nul\x00 "quoted" \\ \u00e9\n\U0001f600', NOW - 5),
    (152, "bob", "alice", 0, "", NOW + 152),
]


def make_v13(path: str) -> None:
    """A database as schema version 13 wrote it: what :func:`make_v12`
    writes, and :data:`V13_HISTORY`."""

    def insert(conn: sqlite3.Connection) -> None:
        _insert_v12_rows(conn)
        conn.executemany("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)", V13_HISTORY)

    _make(path, V13_SCHEMA, insert)


def make_v14(path: str) -> None:
    """A database as schema version 14 wrote it: what :func:`make_v12`
    writes (alice and bob, password "secret" under :data:`KEY`), and one
    history chunk of alice's."""

    def insert(conn: sqlite3.Connection) -> None:
        _insert_v12_rows(conn)
        conn.execute(
            "INSERT INTO history_chunks (normalized, count, oldest_at, newest_at, last_id, entries)"
            " VALUES ('alice', 1, ?, ?, 7, ?)",
            (NOW, NOW, f'[[7,"Bob",1,"hi",{NOW}]]'),
        )

    _make(path, V14_SCHEMA, insert)


#: History chunks as version 15 (and 14) wrote them, in chunk id order:
#: ``(owner, last_id, entries)``, each entry ``[id, peer, outgoing, text,
#: at]``, the ids unique in the store and not contiguous in a chunk.
V15_CHUNKS = [
    ("alice", 5, [[3, "Bob", 1, "a", NOW], [5, "Carol", 0, 'b "q" \u00e9', NOW + 1]]),
    ("bob", 4, [[4, "alice", 0, "x", NOW]]),
    ("alice", 9, [[7, "Bob", 0, "", NOW - 3], [9, "Bob", 1, "c", NOW + 2]]),
]


def make_v15(path: str) -> None:
    """A database as schema version 15 wrote it: what :func:`make_v12`
    writes, and :data:`V15_CHUNKS`."""

    def insert(conn: sqlite3.Connection) -> None:
        _insert_v12_rows(conn)
        conn.executemany(
            "INSERT INTO history_chunks (normalized, count, oldest_at, newest_at, last_id, entries)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (owner, len(e), min(x[4] for x in e), max(x[4] for x in e), last, json.dumps(e))
                for owner, last, e in V15_CHUNKS
            ],
        )

    _make(path, V15_SCHEMA, insert)


def make_v4(path: str) -> None:
    """A database as schema version 4 wrote it: alice (password "secret",
    warned) with one feedbag item and MAX_OFFLINE_MESSAGES_PER_SENDER offline
    messages from "Bob Smith" and one from "Carol", bob (a bot), and a secret."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(V4_SCHEMA)
        _insert_v4_rows(conn)
        conn.executemany(
            "INSERT INTO offline_messages (recipient, sender, cookie, channel, tlvs, sent_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                ("alice", "Bob Smith", COOKIE, 1, TLVS, NOW + n)
                for n in range(MAX_OFFLINE_MESSAGES_PER_SENDER)
            ]
            + [("alice", "Carol", COOKIE, 1, TLVS, NOW)],
        )
        conn.commit()
    finally:
        conn.close()


def make_v3(path: str) -> None:
    """A database as schema version 3 wrote it: alice (password "secret",
    suspended, warned) with one feedbag item and one offline message, bob,
    and a secret."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(V3_SCHEMA)
        conn.executemany(
            "INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                ("alice", "Alice", KEY, WEAK, STRONG, 1, NOW, 350, NOW + 2),
                ("bob", "Bob", KEY, WEAK, STRONG, 0, NOW + 3, 0, 0),
            ],
        )
        conn.execute(
            "INSERT INTO feedbag_items VALUES (?, ?, ?, ?, ?, ?)",
            ("alice", 1, 2, 0, "Bob", b"\x01\x31\x00\x00"),
        )
        conn.execute("INSERT INTO feedbag_meta VALUES (?, ?)", ("alice", NOW + 1))
        conn.execute("INSERT INTO secrets VALUES (?, ?)", ("cookie", b"k" * 32))
        conn.execute(
            "INSERT INTO offline_messages (recipient, sender, cookie, channel, tlvs, sent_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            ("alice", "Bob", COOKIE, 1, TLVS, NOW + 4),
        )
        conn.commit()
    finally:
        conn.close()


def make_v2(path: str) -> None:
    """A database as schema version 2 wrote it: alice (password "secret")
    with one feedbag item, and a secret."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(V2_SCHEMA)
        conn.execute(
            "INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("alice", "Alice", KEY, WEAK, STRONG, 1, NOW),
        )
        conn.execute(
            "INSERT INTO feedbag_items VALUES (?, ?, ?, ?, ?, ?)",
            ("alice", 1, 2, 0, "Bob", b"\x01\x31\x00\x00"),
        )
        conn.execute("INSERT INTO feedbag_meta VALUES (?, ?)", ("alice", NOW + 1))
        conn.execute("INSERT INTO secrets VALUES (?, ?)", ("cookie", b"k" * 32))
        conn.commit()
    finally:
        conn.close()


def make_v1(path: str) -> None:
    """A database as schema version 1 wrote it, holding alice (password "secret")."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(V1_SCHEMA)
        conn.execute(
            "INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("alice", "Alice", KEY, WEAK, STRONG, 0, NOW),
        )
        conn.commit()
    finally:
        conn.close()


class SchemaTests(SynchronousTestCase):
    """Creating, upgrading and refusing database files."""

    def upgraded(self, make: Callable[[str], None]) -> tuple[str, SQLiteUserStore]:
        """A database made by ``make`` (an older version), opened: upgraded
        to the latest schema and tables; the store is stopped at cleanup."""
        path = self.mktemp()
        make(path)
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.assertEqual(schema_version(path), SCHEMA_VERSION)
        self.assertEqual(tables(path), LATEST_TABLES)
        return path, store

    def fail_upgrade_to(self, path: str, version: int) -> None:
        """Open ``path`` with ``upgrade-to-v<version>.sql`` failing at its
        end: refused, and still at the version before."""
        real = sqlite_store._schema_text

        def broken(name: str) -> str | None:
            if name == f"upgrade-to-v{version}.sql":
                return real(name) + "\nNOT VALID SQL;\n"  # type: ignore[operator]
            return real(name)

        with mock.patch.object(sqlite_store, "_schema_text", broken):
            error = self.assertRaises(SchemaError, connect, path)
        self.assertIn(f"still at v{version - 1}", str(error))
        self.assertEqual(schema_version(path), version - 1)

    def test_fresh_database(self) -> None:
        """A new file is created at the latest schema, readable by the owner only,
        with no temporary file left beside it."""
        directory = self.mktemp()
        os.mkdir(directory)
        path = os.path.join(directory, "aim.sqlite")
        connect(path).close()
        self.assertEqual(schema_version(path), SCHEMA_VERSION)
        self.assertEqual(tables(path), LATEST_TABLES)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(os.listdir(directory), ["aim.sqlite"])

    def test_connection_settings(self) -> None:
        """Connections use WAL, synchronous=FULL and foreign keys (durability, sharing)."""
        conn = connect(self.mktemp())
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(conn.execute("PRAGMA synchronous").fetchone()[0], 2)
        self.assertEqual(conn.execute("PRAGMA foreign_keys").fetchone()[0], 1)

    def test_no_create(self) -> None:
        """With create=False a missing file is an error and nothing is created."""
        path = self.mktemp()
        self.assertRaises(StoreError, connect, path, create=False)
        self.assertFalse(os.path.exists(path))

    def test_missing_directory(self) -> None:
        """A path in a missing directory is a SchemaError, not an OSError."""
        self.assertRaises(SchemaError, connect, os.path.join(self.mktemp(), "x", "aim.sqlite"))

    def test_upgrade_v1(self) -> None:
        """A version-1 database is upgraded to the latest, keeping its accounts,
        after a backup of the old file that is readable by the owner only."""
        path = self.mktemp()
        make_v1(path)
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        account = self.successResultOf(store.get_account("alice"))
        self.assertEqual(account, Account("Alice", KEY, WEAK, STRONG, False, NOW))
        self.assertTrue(check_roasted_password(account, roast(b"secret")))
        self.successResultOf(store.upsert_feedbag_items("alice", [item(1, 1)], NOW))
        self.assertTrue(self.successResultOf(store.set_warning("alice", 50, NOW)))
        message = self.successResultOf(
            store.store_offline_message("alice", "bob", COOKIE, 1, TLVS, NOW)
        )
        self.assertEqual(self.successResultOf(store.get_offline_messages("alice")), [message])
        self.assertTrue(self.successResultOf(store.set_bot("alice", True)))
        self.assertTrue(self.successResultOf(store.get_account("alice")).bot)
        self.assertEqual(schema_version(path), SCHEMA_VERSION)
        self.assertEqual(tables(path), LATEST_TABLES)
        self.assertIn("bot", columns(path, "accounts"))

        backup = path + ".v1.bak"
        self.assertEqual(schema_version(backup), 1)
        self.assertEqual(tables(backup), {"version", "accounts"})
        self.assertEqual(stat.S_IMODE(os.stat(backup).st_mode), 0o600)
        # One backup, of the version found: none of the intermediate versions.
        self.assertFalse(os.path.exists(path + ".v2.bak"))
        self.assertFalse(os.path.exists(path + ".v3.bak"))
        self.assertFalse(os.path.exists(path + ".v4.bak"))
        self.assertFalse(os.path.exists(path + ".v5.bak"))

    def test_upgrade_v2(self) -> None:
        """A version-2 database is upgraded to the latest keeping accounts, feedbags
        and secrets; accounts start unwarned, not bots, with empty inboxes; the v2
        file is backed up."""
        path, store = self.upgraded(make_v2)
        self.assertFalse(os.path.exists(path + ".v3.bak"))

        account = self.successResultOf(store.get_account("alice"))
        self.assertEqual(account, Account("Alice", KEY, WEAK, STRONG, True, NOW, 0, 0, False))
        bag = self.successResultOf(store.get_feedbag("alice"))
        self.assertEqual(bag, Feedbag((item(1, 2, "Bob", 0, b"\x01\x31\x00\x00"),), NOW + 1))
        self.assertEqual(self.successResultOf(store.get_or_create_secret("cookie", 32)), b"k" * 32)
        self.assertEqual(self.successResultOf(store.get_offline_messages("alice")), [])

        # The new column and table work, cascade included.
        self.assertTrue(self.successResultOf(store.set_warning("alice", 120, NOW + 2)))
        warned = self.successResultOf(store.get_account("alice"))
        self.assertEqual((warned.warning_level, warned.warning_updated_at), (120, NOW + 2))
        self.successResultOf(store.store_offline_message("alice", "bob", COOKIE, 1, TLVS, NOW))
        self.assertTrue(self.successResultOf(store.delete_account("alice")))
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("SELECT COUNT(*) FROM offline_messages").fetchone()[0], 0)

        backup = path + ".v2.bak"
        self.assertEqual(schema_version(backup), 2)
        self.assertEqual(tables(backup), V2_TABLES)
        self.assertNotIn("warning_level", columns(backup, "accounts"))
        self.assertEqual(stat.S_IMODE(os.stat(backup).st_mode), 0o600)

    def test_upgrade_v3(self) -> None:
        """A version-3 database is upgraded to the latest keeping accounts
        (suspension and warning levels), feedbags, secrets and offline messages;
        no account is a bot; the v3 file is backed up."""
        path, store = self.upgraded(make_v3)

        alice = Account("Alice", KEY, WEAK, STRONG, True, NOW, 350, NOW + 2, False)
        bob = Account("Bob", KEY, WEAK, STRONG, False, NOW + 3, 0, 0, False)
        self.assertEqual(self.successResultOf(store.get_account("alice")), alice)
        self.assertEqual(self.successResultOf(store.list_accounts()), [alice, bob])
        self.assertTrue(check_roasted_password(alice, roast(b"secret")))
        bag = self.successResultOf(store.get_feedbag("alice"))
        self.assertEqual(bag, Feedbag((item(1, 2, "Bob", 0, b"\x01\x31\x00\x00"),), NOW + 1))
        self.assertEqual(self.successResultOf(store.get_or_create_secret("cookie", 32)), b"k" * 32)
        (message,) = self.successResultOf(store.get_offline_messages("alice"))
        self.assertEqual(
            attrs.evolve(message, message_id=0),
            OfflineMessage(0, "alice", "Bob", COOKIE, 1, TLVS, NOW + 4),
        )

        # The new column works, and the message id sequence carries on.
        self.assertTrue(self.successResultOf(store.set_bot("bob", True)))
        self.assertEqual(
            self.successResultOf(store.get_account("bob")), attrs.evolve(bob, bot=True)
        )
        later = self.successResultOf(store.store_offline_message("alice", "x", COOKIE, 1, b"", NOW))
        self.assertGreater(later.message_id, message.message_id)

        backup = path + ".v3.bak"
        self.assertEqual(schema_version(backup), 3)
        self.assertEqual(tables(backup), V3_TABLES)
        self.assertNotIn("bot", columns(backup, "accounts"))
        self.assertEqual(stat.S_IMODE(os.stat(backup).st_mode), 0o600)

    def test_upgrade_v4(self) -> None:
        """A version-4 database is upgraded to the latest keeping everything; the
        messages already waiting count towards their sender's cap, whatever the
        spelling of the name; the v4 file is backed up."""
        path, store = self.upgraded(make_v4)
        self.assertIn("offline_messages_by_sender", indexes(path))

        alice = Account("Alice", KEY, WEAK, STRONG, False, NOW, 350, NOW + 2, False)
        bob = Account("Bob", KEY, WEAK, STRONG, False, NOW + 3, 0, 0, True)
        self.assertEqual(self.successResultOf(store.list_accounts()), [alice, bob])
        bag = self.successResultOf(store.get_feedbag("alice"))
        self.assertEqual(bag, Feedbag((item(1, 2, "Bob", 0, b"\x01\x31\x00\x00"),), NOW + 1))
        self.assertEqual(self.successResultOf(store.get_or_create_secret("cookie", 32)), b"k" * 32)
        waiting = self.successResultOf(store.get_offline_messages("alice"))
        self.assertEqual(
            [(m.sender, m.cookie, m.channel, m.tlvs, m.sent_at) for m in waiting],
            [
                ("Bob Smith", COOKIE, 1, TLVS, NOW + n)
                for n in range(MAX_OFFLINE_MESSAGES_PER_SENDER)
            ]
            + [("Carol", COOKIE, 1, TLVS, NOW)],
        )

        for spelling in ("Bob Smith", "bobsmith"):
            self.failureResultOf(
                store.store_offline_message("alice", spelling, COOKIE, 1, b"", NOW),
                OfflineSenderMessagesFull,
            )
        later = self.successResultOf(
            store.store_offline_message("alice", "CAROL", COOKIE, 1, b"", NOW)
        )
        self.assertGreater(later.message_id, waiting[-1].message_id)
        self.assertEqual(
            self.successResultOf(store.get_offline_messages("alice")), [*waiting, later]
        )

        backup = path + ".v4.bak"
        self.assertEqual(schema_version(backup), 4)
        self.assertNotIn("sender_key", columns(backup, "offline_messages"))
        self.assertNotIn("offline_messages_by_sender", indexes(backup))
        self.assertEqual(stat.S_IMODE(os.stat(backup).st_mode), 0o600)

    def test_failed_upgrade_leaves_v4(self) -> None:
        """A v5 upgrade failing after its ALTER TABLE and UPDATE is rolled back
        entirely, and the next start upgrades it."""
        path = self.mktemp()
        make_v4(path)
        self.fail_upgrade_to(path, 5)
        self.assertNotIn("sender_key", columns(path, "offline_messages"))
        self.assertNotIn("offline_messages_by_sender", indexes(path))
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        waiting = self.successResultOf(store.get_offline_messages("alice"))
        self.assertEqual(len(waiting), MAX_OFFLINE_MESSAGES_PER_SENDER + 1)

    def test_upgrade_v5(self) -> None:
        """A version-5 database is upgraded to the latest keeping everything;
        accounts start with empty directory records, which can be written and
        go with their account; the v5 file is backed up."""
        path, store = self.upgraded(make_v5)

        alice = Account("Alice", KEY, WEAK, STRONG, False, NOW, 350, NOW + 2, False)
        bob = Account("Bob", KEY, WEAK, STRONG, False, NOW + 3, 0, 0, True)
        self.assertEqual(self.successResultOf(store.list_accounts()), [alice, bob])
        bag = self.successResultOf(store.get_feedbag("alice"))
        self.assertEqual(bag, Feedbag((item(1, 2, "Bob", 0, b"\x01\x31\x00\x00"),), NOW + 1))
        self.assertEqual(self.successResultOf(store.get_or_create_secret("cookie", 32)), b"k" * 32)
        (message,) = self.successResultOf(store.get_offline_messages("alice"))
        self.assertEqual(
            attrs.evolve(message, message_id=0),
            OfflineMessage(0, "alice", "Bob Smith", COOKIE, 1, TLVS, NOW + 4),
        )
        self.assertEqual(self.successResultOf(store.get_directory_info("alice")), DirectoryInfo())

        fields = DirectoryFields(first_name=b"Alice", city=b"Reno", allow_search=True)
        self.successResultOf(store.set_directory_fields("alice", fields))
        self.successResultOf(store.set_interest_keywords("alice", [b"Chess"]))
        self.assertEqual(
            self.successResultOf(store.get_directory_info("alice")),
            DirectoryInfo(fields, (b"Chess",)),
        )
        self.assertTrue(self.successResultOf(store.delete_account("alice")))
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("SELECT COUNT(*) FROM directory_info").fetchone()[0], 0)

        backup = path + ".v5.bak"
        self.assertEqual(schema_version(backup), 5)
        self.assertEqual(tables(backup), V5_TABLES)
        self.assertEqual(stat.S_IMODE(os.stat(backup).st_mode), 0o600)

    def test_upgrade_v6(self) -> None:
        """A version-6 database is upgraded to the latest keeping everything;
        existing accounts have no e-mail address, registration status 2 and
        are unconfirmed, and the new settings can be written and searched;
        the v6 file is backed up."""
        path, store = self.upgraded(make_v6)
        self.assertEqual(
            columns(path, "accounts")[-4:-1], ["email", "registration_status", "confirmed"]
        )
        self.assertEqual(indexes(path)["accounts_by_email"], ("accounts", ["email"]))

        alice = Account("Alice", KEY, WEAK, STRONG, False, NOW, 350, NOW + 2, False)
        bob = Account("Bob", KEY, WEAK, STRONG, False, NOW + 3, 0, 0, True)
        accounts = self.successResultOf(store.list_accounts())
        self.assertEqual(accounts, [alice, bob])
        self.assertEqual(
            [(a.email, a.registration_status, a.confirmed) for a in accounts],
            [("", 2, False), ("", 2, False)],
        )
        bag = self.successResultOf(store.get_feedbag("alice"))
        self.assertEqual(bag, Feedbag((item(1, 2, "Bob", 0, b"\x01\x31\x00\x00"),), NOW + 1))
        self.assertEqual(len(self.successResultOf(store.get_offline_messages("alice"))), 1)
        fields = DirectoryFields(first_name=b"Alice", city=b"Reno", allow_search=True)
        self.assertEqual(
            self.successResultOf(store.get_directory_info("alice")),
            DirectoryInfo(fields, (b"Chess",)),
        )

        for write in (
            store.set_email("alice", "Alice@Example.COM"),
            store.set_registration_status("alice", 3),
            store.set_confirmed("alice", True),
            store.set_screen_name_format("alice", "A Lice"),
        ):
            self.assertTrue(self.successResultOf(write))
        self.assertEqual(
            self.successResultOf(store.get_account("alice")),
            attrs.evolve(
                alice,
                screen_name="A Lice",
                email="alice@example.com",
                registration_status=3,
                confirmed=True,
            ),
        )
        found = self.successResultOf(
            store.search_directory(DirectoryQuery(email="ALICE@example.com"), 5)
        )
        self.assertEqual(found, [DirectoryEntry("A Lice", fields)])
        found = self.successResultOf(store.search_directory(DirectoryQuery(keyword=b"chess"), 5))
        self.assertEqual(found, [DirectoryEntry("A Lice", fields)])
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        self.assertRaises(
            sqlite3.IntegrityError,
            conn.execute,
            "UPDATE accounts SET registration_status = 4 WHERE normalized = 'bob'",
        )

        backup = path + ".v6.bak"
        self.assertEqual(schema_version(backup), 6)
        self.assertEqual(tables(backup), V6_TABLES)
        self.assertEqual(stat.S_IMODE(os.stat(backup).st_mode), 0o600)

    def test_upgrade_v7(self) -> None:
        """A version-7 database is upgraded to the latest keeping everything,
        with the search indexes, which the searches find things through;
        the icon nobody owned is gone; the v7 file is backed up."""
        path, store = self.upgraded(make_v7)
        self.assertLessEqual(V8_INDEXES, set(indexes(path)))
        for name in V8_INDEXES:
            self.assertEqual(indexes(path)[name][0], "directory_info")

        alice = self.successResultOf(store.get_account("alice"))
        self.assertEqual(
            (alice.screen_name, alice.email, alice.registration_status, alice.confirmed),
            ("Alice", "alice@example.org", 3, True),
        )
        self.assertEqual(len(self.successResultOf(store.get_offline_messages("alice"))), 1)
        fields = DirectoryFields(first_name=b"Alice", city=b"Reno", allow_search=True)
        for query in (
            DirectoryQuery(fields=DirectoryFields(first_name=b"ALICE")),
            DirectoryQuery(keyword=b"chess"),
            DirectoryQuery(email="Alice@example.org"),
        ):
            found = self.successResultOf(store.search_directory(query, 5))
            self.assertEqual(found, [DirectoryEntry("Alice", fields)])
        self.assertEqual(self.successResultOf(store.get_bart_item(V7_ICON[0])), V7_ICON[1])
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        hashes = [bytes(h) for (h,) in conn.execute("SELECT hash FROM bart_items")]
        self.assertEqual(hashes, [V7_ICON[0]])

        backup = path + ".v7.bak"
        self.assertEqual(schema_version(backup), 7)
        self.assertEqual(tables(backup), V7_TABLES)
        self.assertFalse(V8_INDEXES & set(indexes(backup)))

    def test_failed_upgrade_leaves_v7(self) -> None:
        """A v8 upgrade failing after its indexes is rolled back entirely
        (no index, the orphan icon kept), and the next start upgrades it."""
        path = self.mktemp()
        make_v7(path)
        self.fail_upgrade_to(path, 8)
        self.assertFalse(V8_INDEXES & set(indexes(path)))
        conn = sqlite3.connect(path)
        try:
            self.assertEqual(conn.execute("SELECT COUNT(*) FROM bart_items").fetchone(), (2,))
        finally:
            conn.close()
        connect(path).close()
        self.assertEqual(schema_version(path), SCHEMA_VERSION)
        self.assertLessEqual(V8_INDEXES, set(indexes(path)))

    def test_upgrade_v9(self) -> None:
        """A version-9 database is upgraded to the latest keeping everything
        (the list's summary too), with no public rooms, which can then be
        created, found and listed; the v9 file is backed up."""
        path, store = self.upgraded(make_v9)
        self.assertEqual(columns(path, "chat_rooms"), ["key", "name", "created_at"])

        alice = self.successResultOf(store.get_account("alice"))
        self.assertEqual((alice.screen_name, alice.email), ("Alice", "alice@example.org"))
        self.assertTrue(self.successResultOf(store.get_account("bob")).bot)
        bag = self.successResultOf(store.get_feedbag("alice"))
        self.assertEqual(bag, Feedbag((item(1, 2, "Bob", 0, b"\x01\x31\x00\x00"),), NOW + 1))
        count, wire, buddies, special = V9_SUMMARY
        self.assertEqual(
            self.successResultOf(store.get_feedbag_summary("alice")),
            FeedbagSummary(NOW + 1, count, wire, (buddies,), special),
        )
        self.assertEqual(len(self.successResultOf(store.get_offline_messages("alice"))), 1)
        self.assertEqual(self.successResultOf(store.get_bart_item(V7_ICON[0])), V7_ICON[1])
        self.assertEqual(self.successResultOf(store.get_or_create_secret("cookie", 32)), b"k" * 32)

        self.assertEqual(self.successResultOf(store.list_public_rooms()), [])
        room = self.successResultOf(store.create_public_room("Chess Club", NOW + 5))
        self.assertEqual(room, PublicRoom("Chess Club", NOW + 5))
        self.assertEqual(self.successResultOf(store.get_public_room("chess club")), room)
        self.assertEqual(self.successResultOf(store.list_public_rooms()), [room])

        backup = path + ".v9.bak"
        self.assertEqual(schema_version(backup), 9)
        self.assertEqual(tables(backup), V9_TABLES)
        self.assertEqual(columns(backup, "feedbag_meta")[-1], "summary_special")

    def test_failed_upgrade_leaves_v9(self) -> None:
        """A v10 upgrade failing after its CREATE TABLE is rolled back
        entirely, and the next start upgrades it."""
        path = self.mktemp()
        make_v9(path)
        self.fail_upgrade_to(path, 10)
        self.assertEqual(tables(path), V9_TABLES)
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.assertEqual(tables(path), LATEST_TABLES)
        self.assertEqual(self.successResultOf(store.list_public_rooms()), [])

    def test_upgrade_v10(self) -> None:
        """A version-10 database is upgraded to the latest keeping everything
        (its public room too), with no MOTD shown to anyone yet; the v10 file
        is backed up."""
        path, store = self.upgraded(make_v10)
        self.assertEqual(columns(path, "motd_seen"), ["normalized", "digest"])
        self.assertEqual(self.successResultOf(store.get_account("alice")).screen_name, "Alice")
        self.assertEqual(
            self.successResultOf(store.list_public_rooms()), [PublicRoom("Chess Club", NOW)]
        )
        self.assertIsNone(self.successResultOf(store.get_motd_seen("alice")))
        self.assertTrue(self.successResultOf(store.set_motd_seen("alice", "ab12")))
        self.assertEqual(self.successResultOf(store.get_motd_seen("Alice")), "ab12")
        backup = path + ".v10.bak"
        self.assertEqual(schema_version(backup), 10)
        self.assertEqual(tables(backup), V10_TABLES)

    def test_failed_upgrade_leaves_v10(self) -> None:
        """A v11 upgrade failing after its CREATE TABLE is rolled back
        entirely, and the next start upgrades it."""
        path = self.mktemp()
        make_v10(path)
        self.fail_upgrade_to(path, 11)
        self.assertEqual(tables(path), V10_TABLES)
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.assertEqual(tables(path), LATEST_TABLES)
        self.assertIsNone(self.successResultOf(store.get_motd_seen("alice")))

    def test_upgrade_v11(self) -> None:
        """A version-11 database is upgraded to the latest keeping everything;
        its icons become buddy icons (type 1), listed by type in the order
        they were stored, through the new index; the v11 file is backed up."""
        path, store = self.upgraded(make_v11)
        self.assertEqual(columns(path, "bart_items")[-1], "bart_type")
        self.assertEqual(indexes(path)["bart_items_by_type"], ("bart_items", ["bart_type"]))
        self.assertEqual(self.successResultOf(store.get_account("alice")).screen_name, "Alice")
        self.assertEqual(self.successResultOf(store.get_motd_seen("alice")), "ab12")
        self.assertEqual(self.successResultOf(store.get_bart_item(V11_ICON[0])), V11_ICON[1])
        self.assertEqual(self.successResultOf(store.list_bart_items("alice")), [V7_ICON[0]])
        icons = self.successResultOf(store.list_bart_items_by_type(1, 10))
        self.assertEqual(icons, [V11_ICON[0], V7_ICON[0]])
        self.assertEqual(self.successResultOf(store.list_bart_items_by_type(0, 10)), [])

        # Uploaded again as a small icon, an old item stays a buddy icon;
        # new bytes take the type they come with.
        again = self.successResultOf(store.add_bart_item("alice", V11_ICON[1], NOW + 1, 0))
        self.assertEqual(again, V11_ICON[0])
        small = self.successResultOf(store.add_bart_item("bob", b"GIF89a small", NOW + 1, 0))
        self.assertEqual(self.successResultOf(store.list_bart_items_by_type(0, 10)), [small])
        self.assertEqual(self.successResultOf(store.list_bart_items_by_type(1, 10)), icons)

        backup = path + ".v11.bak"
        self.assertEqual(schema_version(backup), 11)
        self.assertEqual(tables(backup), V11_TABLES)
        self.assertNotIn("bart_type", columns(backup, "bart_items"))
        self.assertFalse(V12_INDEXES & set(indexes(backup)))

    def test_failed_upgrade_leaves_v11(self) -> None:
        """A v12 upgrade failing after its ALTER TABLE and index is rolled
        back entirely, and the next start upgrades it."""
        path = self.mktemp()
        make_v11(path)
        self.fail_upgrade_to(path, 12)
        self.assertNotIn("bart_type", columns(path, "bart_items"))
        self.assertFalse(V12_INDEXES & set(indexes(path)))
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.assertEqual(schema_version(path), SCHEMA_VERSION)
        self.assertEqual(
            self.successResultOf(store.list_bart_items_by_type(1, 10)), [V11_ICON[0], V7_ICON[0]]
        )

    def test_upgrade_v12(self) -> None:
        """A version-12 database is upgraded to the latest keeping everything
        (icons and their types too), with an empty history for everyone that
        is then kept; the v12 file is backed up."""
        path, store = self.upgraded(make_v12)
        self.assertIn("history_chunks_by_account", indexes(path))
        self.assertEqual(self.successResultOf(store.get_account("alice")).screen_name, "Alice")
        self.assertEqual(self.successResultOf(store.get_motd_seen("alice")), "ab12")
        self.assertEqual(
            self.successResultOf(store.list_bart_items("bob")), [V12_ICON[0], V11_ICON[0]]
        )
        self.assertEqual(self.successResultOf(store.list_bart_items_by_type(0, 10)), [V12_ICON[0]])
        self.assertEqual(self.successResultOf(store.recent_history("alice", None, 10)), [])

        self.successResultOf(store.add_history("Alice", "Bob", True, "hi", NOW, 10, 3600))
        self.successResultOf(store.add_history("alice", "bob", False, "hello", NOW + 1, 10, 3600))
        history = self.successResultOf(store.recent_history("alice", "BOB", 10))
        self.assertEqual(
            [(e.peer, e.outgoing, e.text, e.at) for e in history],
            [("Bob", True, "hi", NOW), ("bob", False, "hello", NOW + 1)],
        )
        self.assertTrue(self.successResultOf(store.delete_account("alice")))
        self.assertEqual(self.successResultOf(store.recent_history("alice", None, 10)), [])

        backup = path + ".v12.bak"
        self.assertEqual(schema_version(backup), 12)
        self.assertEqual(tables(backup), V12_TABLES)
        self.assertFalse(V13_INDEXES & set(indexes(backup)))

    def test_upgrade_v13(self) -> None:
        """A version-13 database is upgraded to the latest keeping everything:
        each history reads as before, order, peers and texts, now from
        chunks of at most 64 entries through their indexes, its entries
        numbered from 1 (v16); the next entry takes the next id; the v13 file
        is backed up."""
        path, store = self.upgraded(make_v13)
        self.assertEqual(
            columns(path, "history_chunks"),
            ["id", "normalized", "count", "oldest_at", "newest_at", "last_id", "entries"],
        )
        self.assertEqual(
            indexes(path)["history_chunks_by_account"],
            ("history_chunks", ["normalized", "id", "count", "oldest_at", "newest_at"]),
        )
        self.assertNotIn("history_chunks_by_last_id", indexes(path))
        self.assertFalse(V13_INDEXES & set(indexes(path)))
        self.assertEqual(self.successResultOf(store.get_motd_seen("alice")), "ab12")
        self.assertEqual(self.successResultOf(store.list_bart_items_by_type(0, 10)), [V12_ICON[0]])
        for owner in ("alice", "bob"):
            expected = [
                HistoryEntry(peer, bool(outgoing), text, at, n)
                for n, (_, _, peer, outgoing, text, at) in enumerate(
                    [entry for entry in V13_HISTORY if entry[1] == owner], 1
                )
            ]
            history = self.successResultOf(store.recent_history(owner, None, 1000))
            self.assertEqual(history, expected)
            self.assertEqual(
                self.successResultOf(store.recent_history(owner, None, 3)), expected[-3:]
            )
            by_peer = self.successResultOf(store.recent_history(owner, "PEER 4", 1000))
            self.assertEqual(by_peer, [e for e in expected if e.peer == "Peer 4"])
        conn = sqlite3.connect(path)
        try:
            chunks = conn.execute(
                "SELECT normalized, count, json_array_length(entries) FROM history_chunks"
                " ORDER BY id"
            ).fetchall()
        finally:
            conn.close()
        self.assertEqual(sum(count for _, count, _ in chunks), len(V13_HISTORY))
        self.assertTrue(all(0 < count == length <= 64 for _, count, length in chunks))
        self.assertGreater(len([1 for owner, _, _ in chunks if owner == "alice"]), 1)

        # The history goes on: the next id, pruning across the old chunks.
        self.successResultOf(store.add_history("alice", "Bob", True, "next", NOW, 10, 3600))
        history = self.successResultOf(store.recent_history("alice", None, 1000))
        self.assertEqual(len(history), 10)
        held = sum(1 for entry in V13_HISTORY if entry[1] == "alice")
        self.assertEqual(history[-1], HistoryEntry("Bob", True, "next", NOW, held + 1))
        self.assertEqual(history[-2].id, held)
        self.assertEqual(self.successResultOf(store.clear_history("bob")), 43)

        backup = path + ".v13.bak"
        self.assertEqual(schema_version(backup), 13)
        self.assertEqual(tables(backup), V13_TABLES)
        self.assertFalse(V14_INDEXES & set(indexes(backup)))

    def test_upgrade_v14(self) -> None:
        """A version-14 database is upgraded to the latest keeping everything;
        existing accounts have no MD5(password) (their password is not
        known) and still log in with the weak and strong digests; setting a
        password stores it; the database refuses one that is not 16 bytes;
        the v14 file is backed up."""
        path, store = self.upgraded(make_v14)
        self.assertEqual(columns(path, "accounts")[-1], "password_md5")
        alice = self.successResultOf(store.get_account("alice"))
        self.assertIsNone(alice.password_md5)
        self.assertEqual((alice.auth_key, alice.weak_md5, alice.strong_md5), (KEY, WEAK, STRONG))
        self.assertTrue(check_roasted_password(alice, roast(b"secret")))
        history = self.successResultOf(store.recent_history("alice", None, 10))
        self.assertEqual([(e.peer, e.text, e.id) for e in history], [("Bob", "hi", 1)])

        self.assertTrue(self.successResultOf(store.set_password("alice", "hunter2")))
        alice = self.successResultOf(store.get_account("alice"))
        self.assertEqual(alice.password_md5, hashlib.md5(b"hunter2").digest())
        self.assertIsNone(self.successResultOf(store.get_account("bob")).password_md5)
        conn = sqlite3.connect(path)
        try:
            self.assertRaises(
                sqlite3.IntegrityError,
                conn.execute,
                "UPDATE accounts SET password_md5 = ? WHERE normalized = 'bob'",
                (b"short",),
            )
        finally:
            conn.close()

        backup = path + ".v14.bak"
        self.assertEqual(schema_version(backup), 14)
        self.assertNotIn("password_md5", columns(backup, "accounts"))

    def test_upgrade_v15(self) -> None:
        """A version-15 database is upgraded to the latest keeping every
        history entry, in order, as it was (texts with quotes, escapes and
        non-ASCII too), now numbered per account from 1 across its chunks,
        no id kept per entry; reads by peer, the next id and pruning go on
        from there; the v15 file is backed up."""
        path, store = self.upgraded(make_v15)
        self.assertNotIn("history_chunks_by_last_id", indexes(path))
        for owner in ("alice", "bob"):
            entries = [e for o, _, chunk in V15_CHUNKS if o == owner for e in chunk]
            expected = [
                HistoryEntry(peer, bool(outgoing), text, at, n)
                for n, (_, peer, outgoing, text, at) in enumerate(entries, 1)
            ]
            self.assertEqual(self.successResultOf(store.recent_history(owner, None, 10)), expected)
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute(
                "SELECT last_id, entries FROM history_chunks ORDER BY id"
            ).fetchall()
        finally:
            conn.close()
        self.assertEqual([last for last, _ in rows], [2, 1, 4])
        self.assertEqual(
            json.loads(rows[0][1]),
            [["Bob", True, "a", NOW], ["Carol", False, 'b "q" \u00e9', NOW + 1]],
        )
        by_peer = self.successResultOf(store.recent_history("alice", "bob", 10))
        self.assertEqual([(e.text, e.id) for e in by_peer], [("a", 1), ("", 3), ("c", 4)])
        self.successResultOf(store.add_history("alice", "Bob", True, "next", NOW + 3, 3, 3600))
        history = self.successResultOf(store.recent_history("alice", None, 10))
        self.assertEqual([(e.text, e.id) for e in history], [("", 3), ("c", 4), ("next", 5)])

        backup = path + ".v15.bak"
        self.assertEqual(schema_version(backup), 15)
        self.assertIn("history_chunks_by_last_id", indexes(backup))

    def test_failed_upgrade_leaves_v15(self) -> None:
        """A v16 upgrade failing after it rewrote the chunks and dropped the
        index is rolled back entirely, and the next start upgrades it."""
        path = self.mktemp()
        make_v15(path)
        self.fail_upgrade_to(path, 16)
        self.assertIn("history_chunks_by_last_id", indexes(path))
        conn = sqlite3.connect(path)
        try:
            first = conn.execute("SELECT entries FROM history_chunks ORDER BY id").fetchone()[0]
        finally:
            conn.close()
        self.assertEqual(json.loads(first), V15_CHUNKS[0][2])
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.assertEqual(schema_version(path), SCHEMA_VERSION)
        history = self.successResultOf(store.recent_history("alice", None, 10))
        self.assertEqual([e.id for e in history], [1, 2, 3, 4])

    def test_failed_upgrade_leaves_v14(self) -> None:
        """A v15 upgrade failing after its ALTER TABLE is rolled back
        entirely, and the next start upgrades it."""
        path = self.mktemp()
        make_v14(path)
        self.fail_upgrade_to(path, 15)
        self.assertNotIn("password_md5", columns(path, "accounts"))
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.assertEqual(schema_version(path), SCHEMA_VERSION)
        self.assertIsNone(self.successResultOf(store.get_account("alice")).password_md5)

    def test_failed_upgrade_leaves_v13(self) -> None:
        """A v14 upgrade failing after it moved the history into chunks and
        dropped the old table is rolled back entirely, and the next start
        upgrades it."""
        path = self.mktemp()
        make_v13(path)
        self.fail_upgrade_to(path, 14)
        self.assertEqual(tables(path), V13_TABLES)
        self.assertFalse(V14_INDEXES & set(indexes(path)))
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.assertEqual(schema_version(path), SCHEMA_VERSION)
        self.assertEqual(tables(path), LATEST_TABLES)
        history = self.successResultOf(store.recent_history("alice", None, 1000))
        alice = [e for e in V13_HISTORY if e[1] == "alice"]
        self.assertEqual([e.id for e in history], list(range(1, len(alice) + 1)))

    def test_failed_upgrade_leaves_v12(self) -> None:
        """A v13 upgrade failing after its CREATE TABLE and index is rolled
        back entirely, and the next start upgrades it."""
        path = self.mktemp()
        make_v12(path)
        self.fail_upgrade_to(path, 13)
        self.assertEqual(tables(path), V12_TABLES)
        self.assertFalse(V13_INDEXES & set(indexes(path)))
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.assertEqual(schema_version(path), SCHEMA_VERSION)
        self.assertEqual(tables(path), LATEST_TABLES)
        self.successResultOf(store.add_history("bob", "Alice", True, "hi", NOW, 10, 3600))
        self.assertEqual(len(self.successResultOf(store.recent_history("bob", None, 10))), 1)

    def test_history_columns_checked(self) -> None:
        """The database itself refuses a history chunk of an unknown account,
        or of no entries."""
        conn = connect(":memory:")
        self.addCleanup(conn.close)
        transact(conn, accounts_store._create_account, "alice", "secret", NOW)
        insert = (
            "INSERT INTO history_chunks (normalized, count, oldest_at, newest_at, last_id, entries)"
            " VALUES (?, ?, ?, ?, ?, ?)"
        )
        entries = f'[[1,"bob",1,"hi",{NOW}]]'
        self.assertRaises(
            sqlite3.IntegrityError, conn.execute, insert, ("nobody", 1, NOW, NOW, 1, entries)
        )
        self.assertRaises(
            sqlite3.IntegrityError, conn.execute, insert, ("alice", 0, NOW, NOW, 1, "[]")
        )
        conn.execute(insert, ("alice", 1, NOW, NOW, 1, entries))

    def test_bart_type_column_checked(self) -> None:
        """The database itself refuses a BART type that is not a u16."""
        conn = connect(":memory:")
        self.addCleanup(conn.close)
        for bart_type in (-1, 0x10000):
            self.assertRaises(
                sqlite3.IntegrityError,
                conn.execute,
                "INSERT INTO bart_items (hash, data, created_at, bart_type) VALUES (?, ?, ?, ?)",
                (b"\x01" * 16, b"x", NOW, bart_type),
            )

    def test_failed_upgrade_leaves_v5(self) -> None:
        """A v6 upgrade failing after its CREATE TABLE is rolled back entirely,
        and the next start upgrades it."""
        path = self.mktemp()
        make_v5(path)
        self.fail_upgrade_to(path, 6)
        self.assertEqual(tables(path), V5_TABLES)
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.assertEqual(tables(path), LATEST_TABLES)
        self.assertEqual(len(self.successResultOf(store.get_offline_messages("alice"))), 1)

    def test_allow_search_column_checked(self) -> None:
        """The database itself refuses an allow_search value other than 0 or 1."""
        conn = connect(":memory:")
        self.addCleanup(conn.close)
        transact(conn, accounts_store._create_account, "alice", "secret", NOW)
        self.assertRaises(
            sqlite3.IntegrityError,
            conn.execute,
            "INSERT INTO directory_info (normalized, allow_search) VALUES ('alice', 2)",
        )

    def test_bot_column_checked(self) -> None:
        """The database itself refuses a bot value other than 0 or 1."""
        conn = connect(":memory:")
        self.addCleanup(conn.close)
        transact(conn, accounts_store._create_account, "alice", "secret", NOW)
        self.assertRaises(sqlite3.IntegrityError, conn.execute, "UPDATE accounts SET bot = 2")
        self.assertFalse(transact(conn, accounts_store._get_account, "alice").bot)

    def test_created_equals_upgraded(self) -> None:
        """A database created fresh and ones upgraded from v1, v3, v4, v5, v6,
        v7, v9, v10, v11, v12, v13, v14 and v15 end with the same schema,
        indexes included."""
        fresh = self.mktemp()
        connect(fresh).close()
        latest = V8_INDEXES | V12_INDEXES | V14_INDEXES - {"history_chunks_by_last_id"}
        self.assertLessEqual(latest, set(indexes(fresh)))
        makers = (
            make_v1,
            make_v3,
            make_v4,
            make_v5,
            make_v6,
            make_v7,
            make_v9,
            make_v10,
            make_v11,
            make_v12,
            make_v13,
            make_v14,
            make_v15,
        )
        for make in makers:
            upgraded = self.mktemp()
            make(upgraded)
            connect(upgraded).close()
            for table in LATEST_TABLES:
                self.assertEqual(columns(fresh, table), columns(upgraded, table), table)
            self.assertEqual(indexes(fresh), indexes(upgraded))

    def test_backup_not_overwritten(self) -> None:
        """An earlier backup is kept; the new one gets the next free name."""
        path = self.mktemp()
        make_v1(path)
        with open(path + ".v1.bak", "wb") as f:
            f.write(b"older backup")
        connect(path).close()
        with open(path + ".v1.bak", "rb") as f:
            self.assertEqual(f.read(), b"older backup")
        self.assertEqual(schema_version(path + ".v1.bak.1"), 1)

    def test_failed_upgrade_leaves_v1(self) -> None:
        """An upgrade that fails halfway is rolled back: still v1, accounts intact."""
        path = self.mktemp()
        make_v1(path)
        real = sqlite_store._schema_text

        def broken(name: str) -> str | None:
            if name == "upgrade-to-v2.sql":
                return "CREATE TABLE feedbag_items (x INTEGER);\nNOT VALID SQL;\n"
            return real(name)

        self.patch(sqlite_store, "_schema_text", broken)
        error = self.assertRaises(SchemaError, connect, path)
        self.assertIn("still at v1", str(error))
        self.assertEqual(schema_version(path), 1)
        self.assertEqual(tables(path), {"version", "accounts"})

    def test_failed_upgrade_leaves_v2(self) -> None:
        """A v3 upgrade failing after its ALTER TABLEs is rolled back entirely."""
        path = self.mktemp()
        make_v2(path)
        self.fail_upgrade_to(path, 3)
        self.assertEqual(tables(path), V2_TABLES)
        self.assertNotIn("warning_level", columns(path, "accounts"))
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.assertEqual(self.successResultOf(store.get_account("alice")).warning_level, 0)

    def test_failed_upgrade_leaves_v3(self) -> None:
        """A v4 upgrade failing after its ALTER TABLE is rolled back entirely."""
        path = self.mktemp()
        make_v3(path)
        self.fail_upgrade_to(path, 4)
        self.assertNotIn("bot", columns(path, "accounts"))
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        account = self.successResultOf(store.get_account("alice"))
        self.assertEqual((account.warning_level, account.bot), (350, False))

    def test_failed_backup_stops_upgrade(self) -> None:
        """If the backup cannot be written, nothing is upgraded and no partial backup stays."""
        path = self.mktemp()
        make_v1(path)

        def full_disk(conn: sqlite3.Connection, target: str) -> None:
            raise OSError(28, "No space left on device")

        self.patch(sqlite_store, "_copy_database", full_disk)
        error = self.assertRaises(SchemaError, connect, path)
        self.assertIn("cannot back up", str(error))
        self.assertEqual(schema_version(path), 1)
        self.assertFalse(os.path.exists(path + ".v1.bak"))

    def test_newer_version_refused(self) -> None:
        """A database from a newer aimserver is refused, untouched, with both versions named."""
        path = self.mktemp()
        make_v1(path)
        conn = sqlite3.connect(path)
        conn.execute("UPDATE version SET version = ?", (SCHEMA_VERSION + 1,))
        conn.commit()
        conn.close()
        with open(path, "rb") as f:
            before = f.read()
        error = self.assertRaises(SchemaError, SQLiteUserStore.open, path, Clock())
        self.assertIn(f"version {SCHEMA_VERSION + 1}", str(error))
        self.assertIn(f"up to {SCHEMA_VERSION}", str(error))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertFalse(os.path.exists(path + f".v{SCHEMA_VERSION + 1}.bak"))

    def test_not_a_database(self) -> None:
        """A file that is not SQLite, or SQLite without our tables, is refused."""
        garbage = self.mktemp()
        with open(garbage, "wb") as f:
            f.write(b"this is not a database" * 100)
        self.assertRaises(SchemaError, connect, garbage)
        foreign = self.mktemp()
        conn = sqlite3.connect(foreign)
        conn.execute("CREATE TABLE other (x)")
        conn.close()
        self.assertRaises(SchemaError, connect, foreign)

    def test_statements_split(self) -> None:
        """Schema scripts split on statement ends, not on semicolons in comments."""
        script = "-- a; comment\nCREATE TABLE a (x); CREATE TABLE b (y);\nCREATE TABLE c\n(z);\n"
        parts = list(sqlite_store._statements(script))
        self.assertEqual(len(parts), 2)
        self.assertIn("CREATE TABLE c", parts[1])


class SQLiteDurabilityTests(SynchronousTestCase):
    """What only a file-backed store promises."""

    def test_reopen(self) -> None:
        """Accounts (bot flag included), feedbags and secrets are all there after
        closing and reopening."""
        path = self.mktemp()
        store = open_inline(path)
        account = self.successResultOf(store.create_account("alice", "secret"))
        self.successResultOf(store.upsert_feedbag_items("alice", [item(1, 2, "b")], NOW))
        secret = self.successResultOf(store.get_or_create_secret("cookie", 32))
        self.successResultOf(store.create_account("helper", "secret"))
        self.successResultOf(store.set_bot("helper", True))
        self.successResultOf(store.stop())

        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.assertEqual(self.successResultOf(store.get_account("alice")), account)
        bag = self.successResultOf(store.get_feedbag("alice"))
        self.assertEqual(bag, Feedbag((item(1, 2, "b"),), NOW))
        self.assertEqual(self.successResultOf(store.get_or_create_secret("cookie", 32)), secret)
        self.assertTrue(self.successResultOf(store.get_account("helper")).bot)

    def test_reopen_directory(self) -> None:
        """A directory record (fields and keywords) survives closing and
        reopening: a restart keeps what the user set."""
        path = self.mktemp()
        store = open_inline(path)
        self.successResultOf(store.create_account("alice", "secret"))
        self.successResultOf(store.set_directory_fields("alice", FULL_FIELDS))
        self.successResultOf(store.set_interest_keywords("alice", [b"Chess", b"Go"]))
        self.successResultOf(store.stop())

        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.assertEqual(
            self.successResultOf(store.get_directory_info("alice")),
            DirectoryInfo(FULL_FIELDS, (b"Chess", b"Go")),
        )

    def test_reopen_offline_and_warning(self) -> None:
        """Offline messages (order and bytes) and warning levels survive a reopen,
        and ids keep growing afterwards."""
        path = self.mktemp()
        store = open_inline(path)
        self.successResultOf(store.create_account("alice", "secret"))
        self.successResultOf(store.set_warning("alice", 300, NOW + 4))
        stored = [
            self.successResultOf(
                store.store_offline_message("alice", f"bob{n}", COOKIE, 1, bytes([n]) * n, NOW + n)
            )
            for n in range(3)
        ]
        self.successResultOf(store.delete_offline_messages("alice", stored[0].message_id))
        self.successResultOf(store.stop())

        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.assertEqual(self.successResultOf(store.get_offline_messages("alice")), stored[1:])
        account = self.successResultOf(store.get_account("alice"))
        self.assertEqual((account.warning_level, account.warning_updated_at), (300, NOW + 4))
        self.successResultOf(store.delete_offline_messages("alice", stored[-1].message_id))
        later = self.successResultOf(
            store.store_offline_message("alice", "bob", COOKIE, 1, b"", NOW)
        )
        self.assertGreater(later.message_id, stored[-1].message_id)

    def test_no_plaintext_on_disk(self) -> None:
        """Neither the first nor a changed password is written to any file."""
        directory = self.mktemp()
        os.mkdir(directory)
        store = open_inline(os.path.join(directory, "aim.sqlite"))
        self.successResultOf(store.create_account("alice", "Plaintext9"))
        self.successResultOf(store.set_password("alice", "Another77"))
        for name in os.listdir(directory):
            with open(os.path.join(directory, name), "rb") as f:
                content = f.read()
            self.assertNotIn(b"Plaintext9", content)
            self.assertNotIn(b"Another77", content)
        self.successResultOf(store.stop())

    def test_second_connection_sees_writes(self) -> None:
        """Another connection (the CLI) writes while the store is open; the store sees it."""
        path = self.mktemp()
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        other = connect(path)
        transact(other, accounts_store._create_account, "carol", "secret", NOW)
        other.close()
        self.assertEqual(self.successResultOf(store.get_account("carol")).screen_name, "carol")

    def test_startup_secret(self) -> None:
        """The start-up (synchronous) secret is the one later asked for asynchronously."""
        store = open_inline(self.mktemp())
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        secret = store.startup_secret("cookie", 32)
        self.assertEqual(len(secret), 32)
        self.assertEqual(self.successResultOf(store.get_or_create_secret("cookie", 32)), secret)
        self.assertRaises(StoreError, store.startup_secret, "cookie", 16)

    def test_closed_store_refuses(self) -> None:
        """After stop(), calls fail with StoreError instead of touching a closed connection."""
        store = open_inline(self.mktemp())
        self.successResultOf(store.stop())
        self.failureResultOf(store.get_account("alice"), StoreError)
        self.successResultOf(store.stop())

    def test_database_errors_are_store_errors(self) -> None:
        """A failure inside SQLite reaches the caller as StoreError, and is rolled back."""
        conn = connect(":memory:")
        self.addCleanup(conn.close)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO secrets VALUES ('a', x'00')")
            conn.execute("INSERT INTO nowhere VALUES (1)")

        self.assertRaises(StoreError, transact, conn, op)
        self.assertEqual(conn.execute("SELECT COUNT(*) FROM secrets").fetchone()[0], 0)


class SQLiteOfflineQuotaTests(SynchronousTestCase):
    """How the SQLite store enforces the offline-message caps."""

    def test_counts_read_through_indexes(self) -> None:
        """Both counts of a store go through an index (never a scan of the
        table), the sender's through (recipient, sender_key)."""
        conn = connect(":memory:")
        self.addCleanup(conn.close)
        transact(conn, accounts_store._create_account, "alice", "secret", NOW)
        seen: list[str] = []
        conn.set_trace_callback(seen.append)
        transact(conn, offline_store._store_offline_message, "alice", "Bob", COOKIE, 1, TLVS, NOW)
        conn.set_trace_callback(None)
        reads = [sql for sql in seen if sql.startswith("SELECT") and "offline_messages" in sql]
        self.assertEqual(len(reads), 2)
        plans = []
        for sql in reads:
            (plan,) = [row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
            self.assertTrue(plan.startswith("SEARCH offline_messages USING INDEX"), plan)
            plans.append(plan)
        self.assertIn("offline_messages_by_sender (recipient=? AND sender_key=?)", plans[1])

    def test_check_and_insert_in_one_write_transaction(self) -> None:
        """While the caps are checked the store holds the write lock, so no other
        connection (another process: the CLI) can add a message before the insert."""
        path = self.mktemp()
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.successResultOf(store.create_account("alice", "secret"))
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        self.addCleanup(other.close)
        real = offline_store.check_offline_quota
        attempts: list[str] = []

        def spy(*args: Any) -> None:
            try:
                other.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                attempts.append(str(e))
            else:
                other.execute("ROLLBACK")
                attempts.append("got the lock")
            real(*args)

        self.patch(offline_store, "check_offline_quota", spy)
        self.successResultOf(store.store_offline_message("alice", "Bob", COOKIE, 1, TLVS, NOW))
        self.assertEqual(attempts, ["database is locked"])
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")

    def test_sender_key_stored(self) -> None:
        """Each row keeps the normalized sender beside the display form."""
        conn = connect(":memory:")
        self.addCleanup(conn.close)
        transact(conn, accounts_store._create_account, "alice", "secret", NOW)
        transact(
            conn, offline_store._store_offline_message, "alice", "Bob Smith", COOKIE, 1, b"", NOW
        )
        rows = conn.execute("SELECT sender, sender_key FROM offline_messages").fetchall()
        self.assertEqual(rows, [("Bob Smith", "bobsmith")])


class SQLiteThreadTests(TestCase):
    """The real thing: operations on the dedicated DB thread, with the real reactor."""

    def open(self) -> SQLiteUserStore:
        store = SQLiteUserStore.open(self.mktemp())
        store.start()
        self.addCleanup(store.stop)
        return store

    @inlineCallbacks
    def test_round_trip(self) -> Any:
        """Operations run off the reactor thread and their results come back to it."""
        store = self.open()
        d = store.create_account("alice", "secret")
        self.assertNoResult(d)
        account = yield d
        self.assertEqual((yield store.get_account("ALICE")), account)

    @inlineCallbacks
    def test_runs_in_one_other_thread(self) -> Any:
        """Every operation runs in the same thread, which is not the reactor's."""
        store = self.open()
        seen: list[threading.Thread] = []
        real = accounts_store._get_account

        def spy(conn: sqlite3.Connection, screen_name: str) -> Account | None:
            seen.append(threading.current_thread())
            return real(conn, screen_name)

        self.patch(accounts_store, "_get_account", spy)
        yield store.get_account("a")
        yield store.get_account("b")
        self.assertEqual(len(set(seen)), 1)
        self.assertIsNot(seen[0], threading.current_thread())

    @inlineCallbacks
    def test_every_role_shares_the_thread_and_connection(self) -> Any:
        """The operations of every role go through the one connection on the
        one DB thread."""
        store = self.open()
        seen: set[tuple[threading.Thread, sqlite3.Connection]] = set()
        real = group_commit.run_batch

        def spy(conn: sqlite3.Connection, batch: Any) -> Any:
            seen.add((threading.current_thread(), conn))
            return real(conn, batch)

        self.patch(group_commit, "run_batch", spy)
        yield store.create_account("alice", "secret")
        yield store.set_warning("alice", 10, NOW)
        yield store.upsert_feedbag_items("alice", [item(1, 1)], NOW)
        yield store.store_offline_message("alice", "bob", COOKIE, 1, TLVS, NOW)
        yield store.get_or_create_secret("cookie", 32)
        self.assertEqual(len(seen), 1)
        ((thread, _),) = seen
        self.assertIsNot(thread, threading.current_thread())

    def test_startup_secret_only_before_start(self) -> None:
        """Once the DB thread owns the connection, the synchronous path is refused."""
        store = self.open()
        self.assertRaises(StoreError, store.startup_secret, "cookie", 32)

    @inlineCallbacks
    def test_errors_come_back(self) -> Any:
        """An error raised on the DB thread fails the caller's Deferred."""
        store = self.open()
        yield self.assertFailure(store.create_account("1abc", "secret"), InvalidScreenName)

    @inlineCallbacks
    def test_stop_finishes_pending_work(self) -> Any:
        """stop() lets queued operations complete before closing."""
        store = SQLiteUserStore.open(self.mktemp())
        store.start()
        pending = [store.create_account(f"user{n}", "secret") for n in range(10)]
        yield store.stop()
        accounts = yield defer.gatherResults(pending)
        self.assertEqual(len(accounts), 10)

    @inlineCallbacks
    def test_service(self) -> Any:
        """StoreService runs the DB thread while started and closes the store on stop."""
        path = self.mktemp()
        store = SQLiteUserStore.open(path)
        service = StoreService(store)
        service.startService()
        yield store.create_account("alice", "secret")
        yield service.stopService()
        self.assertFalse(service.running)
        yield self.assertFailure(store.get_account("alice"), StoreError)
        reopened = open_inline(path)
        self.assertIsNotNone(self.successResultOf(reopened.get_account("alice")))
        self.successResultOf(reopened.stop())
