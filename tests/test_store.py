"""
Tests for aimserver.store: one contract run against every IUserStore, then
what only the SQLite store has (migrations, durability, its DB thread).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from aimserver.passwords import (
    Credentials,
    check_bucp_digest,
    check_roasted_password,
    roast,
    strong_digest,
)
from aimserver.store import sqlite as sqlite_store
from aimserver.store.interfaces import (
    MAX_FEEDBAG_ITEMS,
    MAX_ITEM_ATTRIBUTES_BYTES,
    MAX_ITEM_NAME_BYTES,
    MAX_SECRET_SIZE,
    Account,
    AccountExists,
    Feedbag,
    FeedbagItem,
    InvalidPassword,
    InvalidScreenName,
    IUserStore,
    NoSuchAccount,
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
feedbag_ops = st.lists(
    st.one_of(
        st.tuples(st.just("upsert"), st.lists(items, max_size=4)),
        st.tuples(st.just("delete"), st.lists(keys, max_size=4)),
    ),
    max_size=6,
)


# The contract's @given tests run once per implementation (subclass); each
# example builds its own store, so sharing the method is safe.
def contract_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        suppress_health_check=[*settings().suppress_health_check, HealthCheck.differing_executors],
    )


class UserStoreContractMixin:
    """
    The IUserStore contract. A subclass supplies :meth:`make_store`, returning
    a fresh, empty store whose Deferreds have fired by the time it returns,
    with ``self.clock`` as its clock.
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

    # --- accounts ------------------------------------------------------

    def test_provides_interface(self) -> None:
        """The store provides every IUserStore method."""
        self.assertTrue(verifyObject(IUserStore, self.store))

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
        ):
            self.fails(create("alice", bad), StoreError)
        self.assertIsNone(self.ok(self.store.get_account("alice")))

    def test_delete(self) -> None:
        """Deleting reports whether the account existed, and removes it."""
        self.add("Bob Smith")
        self.assertTrue(self.ok(self.store.delete_account("BOB smith")))
        self.assertIsNone(self.ok(self.store.get_account("bobsmith")))
        self.assertFalse(self.ok(self.store.delete_account("bobsmith")))

    def test_delete_removes_feedbag(self) -> None:
        """A deleted account's feedbag does not come back with a new account of that name."""
        self.add("alice")
        self.ok(self.store.upsert_feedbag_items("alice", [item(1, 2)], NOW))
        self.ok(self.store.delete_account("alice"))
        self.add("alice")
        self.assertEqual(self.ok(self.store.get_feedbag("alice")), EMPTY)

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

    @contract_settings(max_examples=25)
    @given(st.one_of(screen_names(), icq_uins()))
    def test_any_valid_name(self, name: str) -> None:
        """Every valid name can be registered and found again by its normalized form."""
        store = self.make_store()
        account = self.ok(store.create_account(name, "secret"))
        self.assertEqual(account.screen_name, name)
        self.assertEqual(self.ok(store.get_account(name.replace(" ", "").upper())), account)

    # --- feedbag -------------------------------------------------------

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

    # --- bounds ----------------------------------------------------------

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

    # --- secrets -------------------------------------------------------

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

    def test_fresh_database(self) -> None:
        """A new file is created at the latest schema, readable by the owner only,
        with no temporary file left beside it."""
        directory = self.mktemp()
        os.mkdir(directory)
        path = os.path.join(directory, "aim.sqlite")
        connect(path).close()
        self.assertEqual(schema_version(path), SCHEMA_VERSION)
        self.assertEqual(
            tables(path), {"version", "accounts", "feedbag_items", "feedbag_meta", "secrets"}
        )
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
        self.assertEqual(schema_version(path), SCHEMA_VERSION)

        backup = path + ".v1.bak"
        self.assertEqual(schema_version(backup), 1)
        self.assertEqual(tables(backup), {"version", "accounts"})
        self.assertEqual(stat.S_IMODE(os.stat(backup).st_mode), 0o600)

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
        """Accounts, feedbags and secrets are all there after closing and reopening."""
        path = self.mktemp()
        store = open_inline(path)
        account = self.successResultOf(store.create_account("alice", "secret"))
        self.successResultOf(store.upsert_feedbag_items("alice", [item(1, 2, "b")], NOW))
        secret = self.successResultOf(store.get_or_create_secret("cookie", 32))
        self.successResultOf(store.stop())

        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.assertEqual(self.successResultOf(store.get_account("alice")), account)
        bag = self.successResultOf(store.get_feedbag("alice"))
        self.assertEqual(bag, Feedbag((item(1, 2, "b"),), NOW))
        self.assertEqual(self.successResultOf(store.get_or_create_secret("cookie", 32)), secret)

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
        transact(other, sqlite_store._create_account, "carol", "secret", NOW)
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
        real = sqlite_store._get_account

        def spy(conn: sqlite3.Connection, screen_name: str) -> Account | None:
            seen.append(threading.current_thread())
            return real(conn, screen_name)

        self.patch(sqlite_store, "_get_account", spy)
        yield store.get_account("a")
        yield store.get_account("b")
        self.assertEqual(len(set(seen)), 1)
        self.assertIsNot(seen[0], threading.current_thread())

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
