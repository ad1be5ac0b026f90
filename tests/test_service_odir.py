# -*- test-case-name: tests.test_service_odir -*-
"""Directory search (ODir 0x000F) without sockets: who is found by name, by
keyword and by e-mail, the bounds on results, and who is left out (users who
do not allow searches, who chose not to be found by address, who block the
searcher)."""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.admin import parse_email
from aimserver.services.base import SnacError
from aimserver.services.feedbag import FeedbagService
from aimserver.services.odir import (
    KEYWORD_LIST_LIFETIME,
    MAX_RESULTS,
    SEARCH_CAP,
    NoMatch,
    ODirService,
    email_query,
)
from aimserver.services.privacy import BLOCK_ALL, Privacy
from aimserver.store.interfaces import DirectoryFields, FeedbagItem, StoreError
from aimserver.wire.codes import FoodGroup, ODir
from aimserver.wire.errors import MalformedData
from aimserver.wire.odir import KeywordItem, KeywordListReply, ODirInfoReply
from aimserver.wire.tlv import Tlv, TlvList
from tests.fakes import result_of
from tests.fakes_services import ServiceWorld

OK, TOO_MANY, NAME_MISSING, UNAVAILABLE = 0x0005, 0x0003, 0x0004, 0x0001
ALICE = DirectoryFields(
    first_name=b"Alice",
    last_name=b"Liddell",
    city=b"Oxford",
    state=b"Oxon",
    country=b"uk",
    zip_code=b"OX1",
    allow_search=True,
)
CLASS_DENY = 0x0003


def deny(name: str, item_id: int = 1) -> FeedbagItem:
    return FeedbagItem(name, 0, item_id, CLASS_DENY, b"")


class ODirWorld(ServiceWorld):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        # Reads each user's permit/deny settings at its first sign-on.
        self.feedbag = FeedbagService(self.registry, self.presence, self.store, self.clock)
        self.sessions.observe(self.feedbag)
        self.odir = ODirService(self.registry, self.store, self.store, self.clock)

    def profile(
        self,
        name: str,
        fields: DirectoryFields | None = ALICE,
        keywords: tuple[bytes, ...] = (),
        email: str = "",
        registration: int = 2,
        blocks: tuple[str, ...] = (),
    ) -> None:
        """An account with a directory record, settings and a stored block list."""
        self.account(name)
        store = self.store
        if fields is not None:
            result_of(store.set_directory_fields(name, fields))
        result_of(store.set_interest_keywords(name, keywords))
        result_of(store.set_email(name, email))
        result_of(store.set_registration_status(name, registration))
        if blocks:
            items = [deny(blocked, n) for n, blocked in enumerate(blocks, 1)]
            result_of(store.upsert_feedbag_items(name, items, 1))

    def request(self, session: Any, subtype: int, body: bytes = b"") -> Any:
        handler = self.odir.handlers()[FoodGroup.ODIR, subtype]
        result = self.call(handler, session, FoodGroup.ODIR, subtype, body)
        return result_of(result) if isinstance(result, defer.Deferred) else result

    def search(self, session: Any, *tlvs: Tlv) -> ODirInfoReply:
        [reply] = self.request(session, ODir.INFO_QUERY, TlvList(tlvs).pack_list())
        assert (reply.family, reply.subtype) == (FoodGroup.ODIR, ODir.INFO_REPLY), reply
        return ODirInfoReply.unpack(reply.body)

    def found(self, session: Any, *tlvs: Tlv) -> list[bytes]:
        """The screen names a search shows (status OK)."""
        reply = self.search(session, *tlvs)
        assert reply.status == OK, reply
        return [result.get(0x0009) or b"" for result in reply.results]

    def keywords(self, session: Any) -> KeywordListReply:
        [reply] = self.request(session, ODir.KEYWORD_LIST_QUERY)
        assert (reply.family, reply.subtype) == (FoodGroup.ODIR, ODir.KEYWORD_LIST_REPLY), reply
        return KeywordListReply.unpack(reply.body)


class SearchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = ODirWorld()
        self.searcher, _ = self.world.sign_on("Searcher")

    def test_by_name(self) -> None:
        """A first or last name finds the users who allow searches with every
        field given, ignoring case; each result is Go's block (first, last,
        state, city, country, screen name), empty fields included."""
        world = self.world
        world.profile("Alice")
        world.profile("Alicia", attrs.evolve(ALICE, city=b"London", state=b""))
        world.profile("Hidden", attrs.evolve(ALICE, allow_search=False))
        world.profile("Nobody", None)
        reply = world.search(self.searcher, Tlv(0x0001, b"ALICE"))
        self.assertEqual(reply.status, OK)
        self.assertEqual(
            list(reply.results),
            [
                TlvList(
                    [
                        Tlv(0x0001, b"Alice"),
                        Tlv(0x0002, b"Liddell"),
                        Tlv(0x0007, b"Oxon"),
                        Tlv(0x0008, b"Oxford"),
                        Tlv(0x0006, b"uk"),
                        Tlv(0x0009, b"Alice"),
                    ]
                ),
                TlvList(
                    [
                        Tlv(0x0001, b"Alice"),
                        Tlv(0x0002, b"Liddell"),
                        Tlv(0x0007, b""),
                        Tlv(0x0008, b"London"),
                        Tlv(0x0006, b"uk"),
                        Tlv(0x0009, b"Alicia"),
                    ]
                ),
            ],
        )
        found = world.found(
            self.searcher,
            Tlv(0x0002, b"liddell"),
            Tlv(0x0008, b"oxford"),
            Tlv(0x000D, b"ox1"),
            Tlv(0x001C, b"us-ascii"),
            Tlv.u16(0x000A, 0),
            Tlv(0x0003, b""),
        )
        self.assertEqual(found, [b"Alice"])
        self.assertEqual(world.found(self.searcher, Tlv(0x0001, b"Alic")), [])

    def test_by_keyword(self) -> None:
        """A keyword finds users who allow searches and have it."""
        world = self.world
        world.profile("Alice", keywords=(b"Chess", b"Tea"))
        world.profile("Hidden", attrs.evolve(ALICE, allow_search=False), (b"Chess",))
        self.assertEqual(world.found(self.searcher, Tlv(0x000B, b"chess")), [b"Alice"])
        # A keyword beats a name (Go's order).
        found = world.found(self.searcher, Tlv(0x0001, b"Nobody"), Tlv(0x000B, b"TEA"))
        self.assertEqual(found, [b"Alice"])

    def test_by_email(self) -> None:
        """An address finds accounts with registration status 2 or 3 (their
        fields only if they allow searches); it beats every other field."""
        world = self.world
        world.profile("Alice", email="alice@example.org", registration=3)
        world.profile("Private", email="alice@example.org", registration=1)
        world.profile("Quiet", attrs.evolve(ALICE, allow_search=False), email="ALICE@example.org")
        reply = world.search(self.searcher, Tlv(0x000B, b"x"), Tlv(0x0005, b"Alice@Example.org"))
        self.assertEqual(reply.status, OK)
        self.assertEqual([r.get(0x0009) for r in reply.results], [b"Alice", b"Quiet"])
        self.assertEqual(reply.results[0].get(0x0008), b"Oxford")
        self.assertEqual(reply.results[1].get(0x0008), b"")

    def test_nothing_to_search_by(self) -> None:
        """No e-mail, keyword, first or last name (or both names empty):
        status 0x0004 and no results."""
        for tlvs in ((), (Tlv(0x0008, b"Oxford"),), (Tlv(0x0001, b""), Tlv(0x0002, b""))):
            self.assertEqual(self.world.search(self.searcher, *tlvs), ODirInfoReply(NAME_MISSING))

    def test_values_nothing_can_match(self) -> None:
        """An empty keyword or address, or a non-ASCII address: OK, no results."""
        self.world.profile("Alice", keywords=(b"Chess",), email="alice@example.org")
        for tlv in (Tlv(0x000B, b""), Tlv(0x0005, b""), Tlv(0x0005, b"\xe9@example.org")):
            self.assertEqual(self.world.search(self.searcher, tlv), ODirInfoReply(OK))

    def test_bad_input(self) -> None:
        """A value longer than any stored one can be is 0x000E, logged, and
        a body that is not TLVs is MalformedData."""
        for tlv in (
            Tlv(0x0001, b"x" * 129),
            Tlv(0x0021, b"x" * 129),
            Tlv(0x000B, b"x" * 129),
            Tlv(0x0005, b"x" * 255),
        ):
            body = TlvList([Tlv(0x0002, b"Smith"), tlv]).pack_list()
            with capturedLogs() as events:
                error = self.assertRaises(
                    SnacError, self.world.request, self.searcher, ODir.INFO_QUERY, body
                )
            self.assertEqual(error.code, 0x000E)
            [event] = events
            self.assertEqual(event["log_level"].name, "info")
            self.assertEqual(event["length"], len(tlv.value))
        self.assertRaises(
            MalformedData, self.world.request, self.searcher, ODir.INFO_QUERY, b"\x00\x01\x00\x05ab"
        )

    def test_too_many_results(self) -> None:
        """Up to 25 users are shown; a search finding more answers 0x0003 and
        shows none."""
        for n in range(MAX_RESULTS):
            self.world.profile(f"user{n:02}", keywords=(b"many",))
        self.assertEqual(len(self.world.found(self.searcher, Tlv(0x000B, b"many"))), MAX_RESULTS)
        self.world.profile("user99", keywords=(b"many",))
        reply = self.world.search(self.searcher, Tlv(0x000B, b"many"))
        self.assertEqual(reply, ODirInfoReply(TOO_MANY))

    def test_addresses_read_as_admin_reads_them(self) -> None:
        """A searched address is read by the function that reads the one
        Admin sets (one rule for both): what it keeps is what is searched,
        what it refuses matches nothing, without asking the store."""
        for raw in (b"Bob@Example.ORG", b"bob", b"", b"b\xf6b@example.org", b"a@b"):
            kept = parse_email(raw)
            if isinstance(kept, str):
                self.assertEqual(email_query(raw), kept)
            else:
                self.assertRaises(NoMatch, email_query, raw)

        def asked(*args: Any) -> defer.Deferred[Any]:
            raise AssertionError("the store was asked")

        self.world.store.search_directory = asked  # type: ignore[method-assign]
        for raw in (b"bob", b"bob@example", b"bob@@example.org"):
            self.assertEqual(self.world.search(self.searcher, Tlv(0x0005, raw)), ODirInfoReply(OK))

    def test_store_failure(self) -> None:
        """A store that fails the search answers status 0x0001."""

        def broken(*args: Any) -> defer.Deferred[Any]:
            return defer.fail(StoreError("disk on fire"))

        self.world.store.search_directory = broken  # type: ignore[method-assign]
        reply = self.world.search(self.searcher, Tlv(0x0001, b"Alice"))
        self.assertEqual(reply, ODirInfoReply(UNAVAILABLE))


class PrivacyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = ODirWorld()
        self.searcher, _ = self.world.sign_on("Searcher")

    def test_offline_blocker_left_out(self) -> None:
        """A signed-off user who blocks the searcher (its stored deny list) is
        not found by any search; one who blocks someone else is."""
        world = self.world
        world.profile("Blocker", keywords=(b"Chess",), email="a@example.org", blocks=("Searcher",))
        world.profile("Other", keywords=(b"Chess",), email="a@example.org", blocks=("Mallory",))
        self.assertEqual(world.found(self.searcher, Tlv(0x0001, b"Alice")), [b"Other"])
        self.assertEqual(world.found(self.searcher, Tlv(0x000B, b"Chess")), [b"Other"])
        self.assertEqual(world.found(self.searcher, Tlv(0x0005, b"a@example.org")), [b"Other"])

    def test_online_users_live_settings(self) -> None:
        """A signed-on user's live settings count, not what is stored."""
        world = self.world
        world.profile("Blocker", blocks=("Searcher",))
        world.profile("Shy")
        world.sign_on("Blocker")
        world.sign_on("Shy")
        world.registry.get("shy").privacy = Privacy(BLOCK_ALL)
        self.assertEqual(world.found(self.searcher, Tlv(0x0001, b"Alice")), [])

    def test_found_by_itself(self) -> None:
        """A user who blocks everyone still finds itself."""
        world = self.world
        world.profile("Hermit", blocks=("Searcher",))
        hermit, _ = world.sign_on("Hermit")
        world.registry.get("hermit").privacy = Privacy(BLOCK_ALL)
        self.assertEqual(world.found(hermit, Tlv(0x0001, b"Alice")), [b"Hermit"])

    def test_unreadable_settings_leave_the_user_out(self) -> None:
        """A user whose stored settings cannot be read is left out (and the
        failure logged); the others are still found."""
        world = self.world
        world.profile("Alice")
        world.profile("Broken")
        real = world.store.get_feedbag

        def get_feedbag(name: str) -> defer.Deferred[Any]:
            if name == "Broken":
                return defer.fail(StoreError("unreadable"))
            return real(name)

        world.store.get_feedbag = get_feedbag  # type: ignore[method-assign]
        self.assertEqual(world.found(self.searcher, Tlv(0x0001, b"Alice")), [b"Alice"])
        self.assertEqual(len(self.flushLoggedErrors(StoreError)), 1)

    def test_blockers_do_not_count_towards_too_many(self) -> None:
        """Users who block the searcher are left out before the results are
        counted: 25 visible matches and any number of hidden ones (short of
        SEARCH_CAP in all) show the 25, so that a blocker cannot reveal
        itself by turning them into "too many"."""
        world = self.world
        for n in range(MAX_RESULTS):
            world.profile(f"user{n:02}", keywords=(b"many",))
        world.profile("blocker", keywords=(b"many",), blocks=("Searcher",))
        found = world.found(self.searcher, Tlv(0x000B, b"many"))
        self.assertEqual(found, [f"user{n:02}".encode() for n in range(MAX_RESULTS)])
        world.profile("shown", keywords=(b"many",))
        self.assertEqual(world.search(self.searcher, Tlv(0x000B, b"many")), ODirInfoReply(TOO_MANY))

    def test_too_many_at_the_cap(self) -> None:
        """SEARCH_CAP matches are "too many" however few of them the
        searcher may see: more may match past them, unread."""
        world = self.world
        world.profile("shown", keywords=(b"many",))
        for n in range(SEARCH_CAP - 1):
            world.profile(f"user{n:03}", keywords=(b"many",), blocks=("Searcher",))
        self.assertEqual(world.search(self.searcher, Tlv(0x000B, b"many")), ODirInfoReply(TOO_MANY))


class KeywordListTests(SynchronousTestCase):
    def test_keywords(self) -> None:
        """0F,05: status 1 and the keywords of users who allow searches, in
        byte order, each top level (kind 2, id 0); kept for a while."""
        world = ODirWorld()
        session, _ = world.sign_on("Searcher")
        world.profile("Alice", keywords=(b"Tea", b"Chess"))
        world.profile("Bob", keywords=(b"Chess", b"Go"))
        world.profile("Hidden", attrs.evolve(ALICE, allow_search=False), (b"Secret",))
        expected = KeywordListReply(
            1, [KeywordItem(2, 0, b"Chess"), KeywordItem(2, 0, b"Go"), KeywordItem(2, 0, b"Tea")]
        )
        self.assertEqual(world.keywords(session), expected)
        world.profile("Carol", keywords=(b"Zen",))
        self.assertEqual(world.keywords(session), expected)
        world.clock.advance(KEYWORD_LIST_LIFETIME)
        self.assertEqual(world.keywords(session).items[-1], KeywordItem(2, 0, b"Zen"))

    def test_store_failure(self) -> None:
        """A store that fails the list answers 0F,01 0x0005."""
        world = ODirWorld()
        session, _ = world.sign_on("Searcher")

        def broken(limit: int) -> defer.Deferred[Any]:
            return defer.fail(StoreError("disk on fire"))

        world.store.interest_keywords = broken  # type: ignore[method-assign]
        error = self.assertRaises(SnacError, world.request, session, ODir.KEYWORD_LIST_QUERY)
        self.assertEqual(error.code, 0x0005)


_tags = st.sampled_from([0x0001, 0x0002, 0x0005, 0x0008, 0x000A, 0x000B, 0x001C, 0x0099])
_values = st.one_of(
    st.binary(max_size=12),
    st.sampled_from([b"Alice", b"alice", b"Chess", b"a@example.org", b""]),
    st.binary(min_size=120, max_size=300),
)
_bodies = st.one_of(
    st.lists(st.builds(Tlv, _tags, _values), max_size=4).map(lambda t: TlvList(t).pack_list()),
    st.binary(max_size=24),
)


class FuzzTests(SynchronousTestCase):
    @settings(max_examples=200)
    @given(st.lists(st.tuples(st.sampled_from([0x02, 0x04]), _bodies), max_size=6))
    def test_any_body(self, requests: list[tuple[int, bytes]]) -> None:
        """Any bodies to any ODir handler: replies, SnacError or MalformedData."""
        world = ODirWorld()
        world.profile("Alice", keywords=(b"Chess",), email="a@example.org")
        session, _ = world.sign_on("Searcher")
        for subtype, body in requests:
            try:
                replies = world.request(session, subtype, body)
            except (SnacError, MalformedData):
                continue
            self.assertEqual(len(replies), 1)
