"""
The account settings of the Admin service (display format, e-mail address,
registration status, confirmation, credentials) and the directory searches
(IDirectoryStore.search_directory, interest_keywords), as contracts run
against every IUserStore: the memory store, SQLite on a file and on
``:memory:``. The SQLite store's own index use is checked at the end.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.store import directory as directory_store
from aimserver.store.credentials import Credentials, check_bucp_digest, strong_digest
from aimserver.store.interfaces import (
    DEFAULT_REGISTRATION_STATUS,
    DIRECTORY_TEXT_FIELDS,
    MAX_DIRECTORY_FIELD_BYTES,
    MAX_EMAIL_LENGTH,
    MAX_SEARCH_LIMIT,
    SEARCHABLE_FIELDS,
    DirectoryEntry,
    DirectoryFields,
    DirectoryQuery,
    InvalidEmail,
    InvalidScreenName,
    StoreError,
    check_email,
)
from aimserver.store.memory import MemoryUserStore
from aimserver.store.sqlite import SQLiteUserStore, connect
from tests.test_store import StoreContractMixin, contract_settings, open_inline

NEW = Credentials(
    auth_key="fresh-key", weak_md5=b"w" * 16, strong_md5=b"s" * 16, password_md5=b"p" * 16
)
ALICE_FIELDS = DirectoryFields(
    first_name=b"Alice", last_name=b"Liddell", city=b"Oxford", allow_search=True
)


class AccountSettingsContractMixin(StoreContractMixin):
    """The settings methods of IAccountStore."""

    def account(self, name: str = "Bob Smith") -> Any:
        return self.ok(self.store.get_account(name))

    def test_new_account_defaults(self) -> None:
        """A new account has no e-mail address, registration status 2 and is
        not confirmed."""
        created = self.add()
        self.assertEqual(
            (created.email, created.registration_status, created.confirmed),
            ("", DEFAULT_REGISTRATION_STATUS, False),
        )
        self.assertEqual(self.account(), created)

    def test_email_kept_in_lower_case(self) -> None:
        """An address is kept in lower case, under any spelling of the name;
        an empty one clears it; no account is False."""
        self.add()
        self.assertTrue(self.ok(self.store.set_email("BOBSMITH", "Bob.Smith@Example.ORG")))
        self.assertEqual(self.account().email, "bob.smith@example.org")
        self.assertTrue(self.ok(self.store.set_email("bob smith", "")))
        self.assertEqual(self.account().email, "")
        self.assertFalse(self.ok(self.store.set_email("nobody", "a@b.cd")))

    def test_invalid_email_refused(self) -> None:
        """An address that is not local@domain in ASCII, or too long, or not a
        str, is InvalidEmail and changes nothing."""
        self.add()
        self.ok(self.store.set_email("bob smith", "bob@example.org"))
        longest = "a" * 64 + "@" + ".".join(["b" * 61] * 3) + ".cde"
        self.assertEqual(len(longest), MAX_EMAIL_LENGTH)
        bad = [
            "bob",
            "@example.org",
            "bob@",
            "bob@example",
            "bob@@example.org",
            "bob smith@example.org",
            "bob@exa mple.org",
            "bób@example.org",
            "bob@example.org\n",
            "bob@-example.org",
            "a" * 65 + "@example.org",
            longest + "x",
            b"bob@example.org",
        ]
        for email in bad:
            self.fails(self.store.set_email("bob smith", email), InvalidEmail)
        self.assertEqual(self.account().email, "bob@example.org")
        self.assertTrue(self.ok(self.store.set_email("bob smith", longest)))
        self.assertEqual(self.account().email, longest)

    def test_new_email_is_unconfirmed(self) -> None:
        """Confirmation survives setting the same address (in any case) and
        is cleared by a different one."""
        self.add()
        self.ok(self.store.set_email("bob smith", "bob@example.org"))
        self.assertTrue(self.ok(self.store.set_confirmed("bob smith", True)))
        self.assertTrue(self.account().confirmed)
        self.ok(self.store.set_email("bob smith", "BOB@example.org"))
        self.assertTrue(self.account().confirmed)
        self.ok(self.store.set_email("bob smith", "robert@example.org"))
        self.assertFalse(self.account().confirmed)

    def test_confirmed(self) -> None:
        """The flag is set and cleared; no account is False."""
        self.add()
        self.assertTrue(self.ok(self.store.set_confirmed("bob smith", True)))
        self.assertTrue(self.account().confirmed)
        self.assertTrue(self.ok(self.store.set_confirmed("bob smith", False)))
        self.assertFalse(self.account().confirmed)
        self.assertFalse(self.ok(self.store.set_confirmed("nobody", True)))

    def test_registration_status(self) -> None:
        """1, 2 and 3 are kept; anything else is refused and changes nothing."""
        self.add()
        for status in (1, 3, 2):
            self.assertTrue(self.ok(self.store.set_registration_status("bob smith", status)))
            self.assertEqual(self.account().registration_status, status)
        for status in (0, 4, -1, 0xFFFF, True, "2", 2.0):
            self.fails(self.store.set_registration_status("bob smith", status), StoreError)
        self.assertEqual(self.account().registration_status, 2)
        self.assertFalse(self.ok(self.store.set_registration_status("nobody", 1)))

    def test_screen_name_format(self) -> None:
        """Another case and spacing of the same name becomes the display form;
        the account (and its data) stays the same."""
        self.add()
        self.ok(self.store.set_email("bob smith", "bob@example.org"))
        self.assertTrue(self.ok(self.store.set_screen_name_format("bobsmith", "BOB SMITH")))
        account = self.account("b o b s m i t h")
        self.assertEqual((account.screen_name, account.email), ("BOB SMITH", "bob@example.org"))
        self.assertEqual(account.normalized, "bobsmith")
        self.assertEqual(len(self.ok(self.store.list_accounts())), 1)
        self.assertFalse(self.ok(self.store.set_screen_name_format("nobody", "No Body")))

    def test_screen_name_format_refused(self) -> None:
        """Another name, or one breaking the naming rules, is
        InvalidScreenName and changes nothing."""
        self.add()
        for display in ("Bob Smyth", "Bob Smiths", "Bob  Smith ", "1Bob Smith", "Bob_Smith", ""):
            self.fails(self.store.set_screen_name_format("bob smith", display), InvalidScreenName)
        self.assertEqual(self.account().screen_name, "Bob Smith")

    def test_set_credentials(self) -> None:
        """New credentials replace the old; with ``replacing`` only while the
        stored key is that one; malformed ones are refused."""
        old = self.add()
        self.assertFalse(self.ok(self.store.set_credentials("bob smith", NEW, "not-the-key")))
        self.assertEqual(self.account(), old)
        self.assertTrue(self.ok(self.store.set_credentials("bob smith", NEW, old.auth_key)))
        account = self.account()
        self.assertEqual(
            (account.auth_key, account.weak_md5, account.strong_md5, account.password_md5),
            (NEW.auth_key, NEW.weak_md5, NEW.strong_md5, NEW.password_md5),
        )
        self.assertEqual(
            attrs.evolve(account, auth_key=old.auth_key),
            attrs.evolve(
                old,
                weak_md5=NEW.weak_md5,
                strong_md5=NEW.strong_md5,
                password_md5=NEW.password_md5,
            ),
        )
        newer = attrs.evolve(NEW, auth_key="newer")
        self.assertTrue(self.ok(self.store.set_credentials("bob smith", newer)))
        self.assertEqual(self.account().auth_key, "newer")
        self.fails(
            self.store.set_credentials("bob smith", attrs.evolve(NEW, weak_md5=b"short")),
            StoreError,
        )
        self.fails(
            self.store.set_credentials("bob smith", attrs.evolve(NEW, password_md5=b"short")),
            StoreError,
        )
        unknown = attrs.evolve(NEW, auth_key="newest", password_md5=None)
        self.assertTrue(self.ok(self.store.set_credentials("bob smith", unknown)))
        self.assertIsNone(self.account().password_md5)
        self.assertFalse(self.ok(self.store.set_credentials("nobody", NEW)))

    def test_password_still_checks_after_settings(self) -> None:
        """The settings leave the credentials alone."""
        self.add(password="secret")
        self.ok(self.store.set_email("bob smith", "bob@example.org"))
        self.ok(self.store.set_screen_name_format("bob smith", "BobSmith"))
        self.ok(self.store.set_registration_status("bob smith", 1))
        account = self.account()
        digest = strong_digest(account.auth_key.encode(), b"secret")
        self.assertTrue(check_bucp_digest(account, digest))

    def test_settings_go_with_the_account(self) -> None:
        """A deleted account's settings do not come back with a new account
        of that name, and other writes keep them."""
        self.add()
        self.ok(self.store.set_email("bob smith", "bob@example.org"))
        self.ok(self.store.set_registration_status("bob smith", 3))
        self.ok(self.store.set_warning("bob smith", 100, 5))
        self.ok(self.store.set_bot("bob smith", True))
        self.ok(self.store.set_password("bob smith", "another"))
        account = self.account()
        self.assertEqual((account.email, account.registration_status), ("bob@example.org", 3))
        self.ok(self.store.delete_account("bob smith"))
        self.assertEqual(self.add(), self.account())
        self.assertEqual(self.account().email, "")


# -- searches ----------------------------------------------------------------------------


def search(store: Any, limit: int = 25, **query: Any) -> list[DirectoryEntry]:
    return _result(store.search_directory(DirectoryQuery(**query), limit))


def _result(d: Any) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    if not results:
        raise AssertionError("Deferred has not fired")
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


class DirectorySearchContractMixin(StoreContractMixin):
    """search_directory and interest_keywords."""

    def user(
        self,
        name: str,
        fields: DirectoryFields | None = None,
        keywords: tuple[bytes, ...] = (),
        email: str = "",
        registration: int = 2,
    ) -> None:
        self.add(name)
        if fields is not None:
            self.ok(self.store.set_directory_fields(name, fields))
        if keywords:
            self.ok(self.store.set_interest_keywords(name, keywords))
        if email:
            self.ok(self.store.set_email(name, email))
        self.ok(self.store.set_registration_status(name, registration))

    def names(self, **query: Any) -> list[str]:
        return [entry.screen_name for entry in search(self.store, **query)]

    def test_by_email(self) -> None:
        """An address finds the accounts that have it, ignoring case, whose
        registration status is 2 or 3, in name order; the fields show only
        for users who allow searches."""
        hidden = attrs.evolve(ALICE_FIELDS, allow_search=False)
        self.user("Zed", ALICE_FIELDS, email="shared@example.org", registration=3)
        self.user("Alice", hidden, email="Shared@Example.org")
        self.user("Carol", email="shared@example.org", registration=1)
        self.user("Dave", email="other@example.org")
        self.user("Erin")
        found = search(self.store, email="SHARED@example.ORG")
        self.assertEqual(
            found, [DirectoryEntry("Alice", DirectoryFields()), DirectoryEntry("Zed", ALICE_FIELDS)]
        )
        self.assertEqual(self.names(email="other@example.org"), ["Dave"])
        self.assertEqual(self.names(email="nobody@example.org"), [])
        self.assertEqual(self.names(email="shared@example.org", limit=1), ["Alice"])

    def test_email_search_needs_ascii(self) -> None:
        """A non-ASCII address never matches, even one that lower-cases to
        a stored one."""
        self.user("Kay", email="k@example.org")
        self.assertEqual(self.names(email="\u212a@example.org"), [])
        self.assertEqual(self.names(email="K@EXAMPLE.ORG"), ["Kay"])

    def test_by_keyword(self) -> None:
        """A keyword finds the users who allow searches and have it, ignoring
        case."""
        hidden = attrs.evolve(ALICE_FIELDS, allow_search=False)
        self.user("Alice", ALICE_FIELDS, (b"Tea", b"Chess"))
        self.user("Bob", hidden, (b"chess",))
        self.user("Carol", None, (b"chess",))
        self.user("Dave", DirectoryFields(allow_search=True), (b"CHESS", b"go"))
        self.assertEqual(
            search(self.store, keyword=b"cHeSs"),
            [
                DirectoryEntry("Alice", ALICE_FIELDS),
                DirectoryEntry("Dave", DirectoryFields(allow_search=True)),
            ],
        )
        self.assertEqual(self.names(keyword=b"Go"), ["Dave"])
        self.assertEqual(self.names(keyword=b"Che"), [])

    def test_by_fields(self) -> None:
        """Every non-empty field of the query must match, ignoring case; only
        users who allow searches; the charset is not searched."""
        self.user("Alice", ALICE_FIELDS)
        self.user("Alicia", attrs.evolve(ALICE_FIELDS, city=b"London"))
        self.user("Hidden", attrs.evolve(ALICE_FIELDS, allow_search=False))
        self.user("Other", DirectoryFields(first_name=b"Bob", allow_search=True))
        query = DirectoryFields(first_name=b"ALICE")
        self.assertEqual(self.names(fields=query), ["Alice", "Alicia"])
        query = DirectoryFields(first_name=b"alice", last_name=b"LIDDELL", city=b"oxford")
        self.assertEqual(search(self.store, fields=query), [DirectoryEntry("Alice", ALICE_FIELDS)])
        self.assertEqual(self.names(fields=DirectoryFields(last_name=b"Liddel")), [])
        query = DirectoryFields(first_name=b"alice", charset=b"utf-8", allow_search=False)
        self.assertEqual(self.names(fields=query), ["Alice", "Alicia"])

    def test_suspended_never_found(self) -> None:
        """A suspended account is found by no search."""
        self.user("Alice", ALICE_FIELDS, (b"Chess",), email="alice@example.org")
        self.ok(self.store.set_suspended("alice", True))
        self.assertEqual(self.names(email="alice@example.org"), [])
        self.assertEqual(self.names(keyword=b"chess"), [])
        self.assertEqual(self.names(fields=DirectoryFields(first_name=b"Alice")), [])

    def test_limit(self) -> None:
        """At most ``limit`` results, the first in name order."""
        for name in ("Dave", "Bob", "Carol", "Alice"):
            self.user(name, ALICE_FIELDS)
        query = DirectoryFields(city=b"Oxford")
        self.assertEqual(self.names(fields=query, limit=3), ["Alice", "Bob", "Carol"])
        self.assertEqual(
            self.names(fields=query, limit=MAX_SEARCH_LIMIT), ["Alice", "Bob", "Carol", "Dave"]
        )

    def test_bad_queries_refused(self) -> None:
        """A query with no criterion or with two kinds, values out of bounds,
        or a limit out of 1..MAX_SEARCH_LIMIT is a StoreError."""
        self.user("Alice", ALICE_FIELDS, (b"Chess",))
        bad: list[tuple[DirectoryQuery, Any]] = [
            (DirectoryQuery(), 5),
            (DirectoryQuery(fields=DirectoryFields()), 5),
            (DirectoryQuery(fields=DirectoryFields(charset=b"us-ascii")), 5),
            (DirectoryQuery(email="a@b.cd", keyword=b"x"), 5),
            (DirectoryQuery(keyword=b"x", fields=ALICE_FIELDS), 5),
            (DirectoryQuery(email="a" * (MAX_EMAIL_LENGTH + 1)), 5),
            (DirectoryQuery(keyword=b"x" * (MAX_DIRECTORY_FIELD_BYTES + 1)), 5),
            (DirectoryQuery(keyword="Chess"), 5),  # type: ignore[arg-type]
            (DirectoryQuery(email=b"a@b.cd"), 5),  # type: ignore[arg-type]
            (DirectoryQuery(fields=DirectoryFields(city="Oxford")), 5),  # type: ignore[arg-type]
            (DirectoryQuery(keyword=b"Chess"), 0),
            (DirectoryQuery(keyword=b"Chess"), MAX_SEARCH_LIMIT + 1),
            (DirectoryQuery(keyword=b"Chess"), True),
            ("Chess", 5),
        ]
        for query, limit in bad:
            self.fails(self.store.search_directory(query, limit), StoreError)

    def test_interest_keywords(self) -> None:
        """The distinct keywords of users who allow searches, in byte order,
        at most ``limit``."""
        self.user("Alice", ALICE_FIELDS, (b"Tea", b"Chess"))
        self.user("Bob", DirectoryFields(allow_search=True), (b"chess", b"Chess", b"\xffzen"))
        self.user("Carol", attrs.evolve(ALICE_FIELDS, allow_search=False), (b"Secret",))
        self.user("Dave", None, (b"Hidden",))
        self.assertEqual(
            self.ok(self.store.interest_keywords(10)), [b"Chess", b"Tea", b"chess", b"\xffzen"]
        )
        self.assertEqual(self.ok(self.store.interest_keywords(2)), [b"Chess", b"Tea"])
        for limit in (0, MAX_SEARCH_LIMIT + 1, "3"):
            self.fails(self.store.interest_keywords(limit), StoreError)


# -- the model: the rules in a few lines, against any sequence of records ------------------

_values = st.sampled_from([b"", b"ab", b"AB", b"aB\x00", b"\xe9A", b"\xe9a", b"\xc9a", b"z"])
_record_fields = st.builds(
    DirectoryFields,
    first_name=_values,
    last_name=_values,
    city=_values,
    allow_search=st.booleans(),
)
_users = st.lists(
    st.tuples(
        _record_fields,
        st.lists(_values.filter(bool), max_size=3),
        st.sampled_from(["", "x@y.zz", "X@y.ZZ", "q@y.zz"]),
        st.integers(1, 3),
        st.booleans(),
    ),
    min_size=1,
    max_size=6,
)
_queries = st.one_of(
    st.builds(DirectoryQuery, email=st.sampled_from(["x@y.zz", "X@Y.zz", "q@y.zz", "n@y.zz"])),
    st.builds(DirectoryQuery, keyword=_values.filter(bool)),
    st.builds(
        DirectoryQuery,
        fields=st.builds(DirectoryFields, first_name=_values, last_name=_values, city=_values),
    ).filter(lambda q: bool(q.field_values())),
)


def expected(users: list[tuple[Any, ...]], query: DirectoryQuery, limit: int) -> list[str]:
    """The names ``query`` finds among ``users`` (named usr0, usr1, ...)."""
    found = []
    for index, (fields, keywords, email, registration, suspended) in enumerate(users):
        if suspended:
            continue
        if query.email:
            hit = bool(email) and email.lower() == query.email.lower() and registration >= 2
        elif not fields.allow_search:
            hit = False
        elif query.keyword:
            hit = query.keyword.lower() in [k.lower() for k in keywords]
        else:
            hit = all(
                getattr(fields, name).lower() == value.lower()
                for name, value in query.field_values().items()
            )
        if hit:
            found.append(f"usr{index}")
    return found[:limit]


class DirectoryModelMixin(StoreContractMixin):
    @contract_settings(max_examples=40)
    @given(_users, st.lists(_queries, min_size=1, max_size=4), st.integers(1, 4))
    def test_search_model(self, users: list[tuple[Any, ...]], queries: Any, limit: int) -> None:
        """Any records, any queries: the store finds what the rules say, in
        name order (ASCII case folded byte by byte, whatever the bytes)."""
        store = self.make_store()
        for index, (fields, keywords, email, registration, suspended) in enumerate(users):
            name = f"usr{index}"
            self.ok(store.create_account(name, "secret"))
            self.ok(store.set_directory_fields(name, fields))
            self.ok(store.set_interest_keywords(name, keywords))
            self.ok(store.set_email(name, email))
            self.ok(store.set_registration_status(name, registration))
            self.ok(store.set_suspended(name, suspended))
        for query in queries:
            found = search(store, limit, **attrs.asdict(query, recurse=False))
            self.assertEqual([e.screen_name for e in found], expected(users, query, limit))
            for entry in found:
                fields = users[int(entry.screen_name[3:])][0]
                self.assertEqual(entry.fields, fields if fields.allow_search else DirectoryFields())


class SettingsContractMixin(
    AccountSettingsContractMixin, DirectorySearchContractMixin, DirectoryModelMixin
):
    pass


class MemoryStoreSettingsTests(SettingsContractMixin, SynchronousTestCase):
    def make_store(self) -> MemoryUserStore:
        return MemoryUserStore(self.clock)


class SQLiteStoreSettingsTests(SettingsContractMixin, SynchronousTestCase):
    def make_store(self) -> SQLiteUserStore:
        store = open_inline(self.mktemp(), self.clock)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        return store


class InMemorySQLiteStoreSettingsTests(SettingsContractMixin, SynchronousTestCase):
    def make_store(self) -> SQLiteUserStore:
        store = open_inline(":memory:", self.clock)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        return store


class CheckEmailTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """Kept in lower case; empty is none."""
        self.assertEqual(check_email("A.B+c@Mail.Example.COM"), "a.b+c@mail.example.com")
        self.assertEqual(check_email(""), "")


class SQLitePlanTests(SynchronousTestCase):
    """What SQLite does with the searches: an address, a first or last name
    and a keyword are looked up in their indexes (schema v8)."""

    def plan(self, query: DirectoryQuery) -> str:
        conn = connect(":memory:")
        self.addCleanup(conn.close)
        plans: list[str] = []
        real = conn

        class Explaining:
            def execute(self, sql: str, args: Any = ()) -> Any:
                plans.extend(row[-1] for row in real.execute("EXPLAIN QUERY PLAN " + sql, args))
                return real.execute(sql, args)

        directory_store._search_directory(Explaining(), query, 5)  # type: ignore[arg-type]
        return " | ".join(plans)

    def test_email_uses_the_index(self) -> None:
        """A search by address goes through accounts_by_email."""
        self.assertIn("accounts_by_email", self.plan(DirectoryQuery(email="a@b.cd")))

    def test_fields_join_by_key(self) -> None:
        """A search by name joins accounts by its primary key (one lookup a
        candidate), never scanning accounts."""
        plan = self.plan(DirectoryQuery(fields=DirectoryFields(first_name=b"x")))
        self.assertNotIn("SCAN a", plan)
        self.assertIn("SEARCH a USING INDEX sqlite_autoindex_accounts_1", plan)
        self.assertNotIn("TEMP B-TREE", plan)

    def test_names_use_their_index(self) -> None:
        """A search by first or last name (other fields or not) looks the
        name up in its index on lower(column), in name order: no scan of
        directory_info, no sort."""
        for fields, index in (
            (DirectoryFields(first_name=b"x"), "directory_by_first_name"),
            (DirectoryFields(first_name=b"x", city=b"y"), "directory_by_first_name"),
            (DirectoryFields(last_name=b"x"), "directory_by_last_name"),
            (DirectoryFields(first_name=b"x", last_name=b"y"), "directory_by_"),
        ):
            plan = self.plan(DirectoryQuery(fields=fields))
            self.assertIn(f"SEARCH d USING INDEX {index}", plan)
            self.assertNotIn("SCAN", plan)
            self.assertNotIn("TEMP B-TREE", plan)

    def test_keyword_uses_the_five_indexes(self) -> None:
        """A search by keyword looks it up in the index of each keyword
        column, never scanning directory_info."""
        plan = self.plan(DirectoryQuery(keyword=b"chess"))
        self.assertIn("MULTI-INDEX OR", plan)
        for n in range(1, 6):
            self.assertIn(f"SEARCH d USING INDEX directory_by_keyword{n} (<expr>=?)", plan)
        self.assertNotIn("SCAN", plan)

    def test_searchable_fields_are_columns(self) -> None:
        """Every searchable field is a directory_info column (names in SQL
        come from this list only)."""
        conn = connect(":memory:")
        self.addCleanup(conn.close)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(directory_info)")}
        self.assertLessEqual(set(SEARCHABLE_FIELDS), columns)
        self.assertLessEqual(set(DIRECTORY_TEXT_FIELDS), columns)
        self.assertRaises(sqlite3.Error, conn.execute, "SELECT nonexistent FROM directory_info")
