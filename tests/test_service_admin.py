# -*- test-case-name: tests.test_service_admin -*-
"""The Admin service (0x0007) without sockets: account settings are the
user's, whichever session changes them (MULTISESSION.md §4), with the
refusal codes of FAMILIES.md §Admin."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.admin import MAX_PASSWORD_FAILURES, PASSWORD_FAILURE_WINDOW, AdminService
from aimserver.services.base import SnacError
from aimserver.store.cache import CachedUserStore
from aimserver.store.credentials import check_bucp_digest, roast, strong_digest, weak_digest
from aimserver.store.interfaces import Account, StoreError
from aimserver.store.memory import MemoryUserStore
from aimserver.wire.admin import AdminInfoReply, ConfirmReply
from aimserver.wire.codes import Admin, FoodGroup, OService
from aimserver.wire.errors import MalformedData
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import UserInfo
from tests.fakes import result_of
from tests.fakes_services import PASSWORD, START, FakeConnection, ServiceWorld

STATUS_INVISIBLE = 0x00000100


def knows(account: Account, password: bytes) -> bool:
    """Whether a BUCP login with ``password`` (either digest) gets in."""
    key = account.auth_key.encode("ascii")
    return check_bucp_digest(account, strong_digest(key, password)) and check_bucp_digest(
        account, weak_digest(key, password)
    )


class AdminWorld(ServiceWorld):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.admin = AdminService(self.registry, self.presence, self.store, self.clock)

    def request(self, session: Any, subtype: int, body: bytes = b"") -> Any:
        """The replies to one Admin request, once its Deferred (if any) fired."""
        handler = self.admin.handlers()[FoodGroup.ADMIN, subtype]
        result = self.call(handler, session, FoodGroup.ADMIN, subtype, body)
        return result_of(result) if isinstance(result, defer.Deferred) else result

    def query(self, session: Any, *tags: int) -> AdminInfoReply:
        body = TlvList(Tlv.empty(tag) for tag in tags).pack_list()
        [reply] = self.request(session, Admin.INFO_QUERY, body)
        self.assert_kind(reply, Admin.INFO_REPLY)
        return AdminInfoReply.unpack(reply.body)

    def change(self, session: Any, *tlvs: Tlv) -> AdminInfoReply:
        [reply] = self.request(session, Admin.INFO_CHANGE, TlvList(tlvs).pack_list())
        self.assert_kind(reply, Admin.INFO_CHANGE_REPLY)
        return AdminInfoReply.unpack(reply.body)

    def confirm(self, session: Any) -> int:
        [reply] = self.request(session, Admin.CONFIRM_REQUEST)
        self.assert_kind(reply, Admin.CONFIRM_REPLY)
        return ConfirmReply.unpack(reply.body).status

    def password(self, session: Any, new: bytes, old: bytes | None) -> list[Tlv]:
        tlvs = [Tlv(0x0002, new)]
        if old is not None:
            tlvs.append(Tlv(0x0012, old))
        reply = self.change(session, *tlvs)
        self.assert_permissions(reply)
        return list(reply.tlvs)

    @staticmethod
    def assert_kind(reply: Any, subtype: int) -> None:
        assert (reply.family, reply.subtype) == (FoodGroup.ADMIN, subtype), reply

    @staticmethod
    def assert_permissions(reply: AdminInfoReply) -> None:
        assert reply.permissions == 0x0003, reply


def refused(code: int) -> TlvList:
    """The TLVs of a refused format, e-mail or registration change."""
    return TlvList([Tlv.u16(0x0008, code), Tlv(0x0004, b"")])


def self_infos(connection: FakeConnection) -> list[UserInfo]:
    return [
        UserInfo.unpack(s.body)
        for s in connection.snacs(FoodGroup.OSERVICE, OService.USER_INFO_UPDATE)
    ]


class QueryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = AdminWorld()
        self.session, _ = self.world.sign_on("Bob Smith")

    def test_each_item(self) -> None:
        """07,02 answers 07,03 with permissions 3 and the item asked for: the
        display name, the address (empty for none), the registration status."""
        world = self.world
        expected = [
            (0x0001, Tlv(0x0001, b"Bob Smith")),
            (0x0011, Tlv(0x0011, b"")),
            (0x0013, Tlv.u16(0x0013, 2)),
        ]
        for tag, tlv in expected:
            self.assertEqual(world.query(self.session, tag), AdminInfoReply(3, TlvList([tlv])))
        result_of(world.store.set_email("bob smith", "bob@example.org"))
        self.assertEqual(
            world.query(self.session, 0x0011).tlvs, TlvList([Tlv(0x0011, b"bob@example.org")])
        )

    def test_several_items_in_the_order_asked(self) -> None:
        """Several items are answered together, in the request's order, once
        each; unknown tags are left out."""
        reply = self.world.query(self.session, 0x0013, 0x0099, 0x0001, 0x0013)
        self.assertEqual(reply.tlvs, TlvList([Tlv.u16(0x0013, 2), Tlv(0x0001, b"Bob Smith")]))

    def test_nothing_known_is_not_supported(self) -> None:
        """A query naming no known item (or none) is 07,01 0x0008; a body that
        is not TLVs is MalformedData (0x000E)."""
        for body in (b"", TlvList([Tlv.empty(0x0002), Tlv.empty(0x0012)]).pack_list()):
            error = self.assertRaises(
                SnacError, self.world.request, self.session, Admin.INFO_QUERY, body
            )
            self.assertEqual(error.code, 0x0008)
        self.assertRaises(
            MalformedData, self.world.request, self.session, Admin.INFO_QUERY, b"\x00\x01\x00"
        )

    def test_gone_session(self) -> None:
        """A request from a session that signed off is "not logged on"."""
        self.world.sign_off(self.session)
        error = self.assertRaises(SnacError, self.world.query, self.session, 0x0001)
        self.assertEqual(error.code, 0x0004)


class FormatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = AdminWorld()
        self.bob1, self.conn1 = self.world.sign_on("Bob Smith")
        self.bob2, self.conn2 = self.world.sign_on("Bob Smith")
        self.carol, self.watcher = self.world.sign_on("Carol", buddies=["bobsmith"])
        self.world.end_turn()
        for connection in (self.conn1, self.conn2, self.watcher):
            connection.clear()

    def test_new_format_everywhere(self) -> None:
        """§4: a new display format is stored, echoed, and every session of
        the user gets 01,0F and every watcher 03,0B in the new form."""
        reply = self.world.change(self.bob2, Tlv(0x0001, b"BOB smith"))
        self.assertEqual(reply, AdminInfoReply(3, TlvList([Tlv(0x0001, b"BOB smith")])))
        self.assertEqual(self.world.stored_account("bobsmith").screen_name, "BOB smith")
        self.assertEqual(self.world.registry.get("bobsmith").screen_name, "BOB smith")
        for connection in (self.conn1, self.conn2):
            self.assertEqual([i.screen_name for i in self_infos(connection)], ["BOB smith"])
        self.assertEqual([i.screen_name for i in self.watcher.arrivals()], ["BOB smith"])
        self.assertEqual(self.world.query(self.bob1, 0x0001).tlvs.get(0x0001), b"BOB smith")

    def test_self_info_through_presence(self) -> None:
        """The sessions' 01,0F is Presence.send_self_info's, for the user
        signed on now."""
        told: list[str] = []
        presence = self.world.presence
        real = presence.send_self_info

        def recording(user: Any, sessions: Any = None) -> None:
            told.append(user.screen_name)
            real(user, sessions)

        presence.send_self_info = recording  # type: ignore[method-assign]
        self.world.change(self.bob1, Tlv(0x0001, b"BobSmith"))
        self.assertEqual(told, ["BobSmith"])
        self.assertEqual(len(self_infos(self.conn1)), 1)

    def test_invisible_user_is_not_shown(self) -> None:
        """A watcher of an invisible user gets nothing; the user's own
        sessions still get 01,0F."""
        for session in (self.bob1, self.bob2):
            self.world.set_status(session, STATUS_INVISIBLE)
        self.watcher.clear()
        self.world.change(self.bob1, Tlv(0x0001, b"BobSmith"))
        self.assertEqual(self.watcher.payloads, [])
        self.assertEqual(len(self_infos(self.conn2)), 1)

    def test_refusals(self) -> None:
        """0x000B for 3-16 characters, 0x0006 for a name breaking the rules,
        0x0001 for another name; nothing changes and nobody is told."""
        cases = [
            (b"Bo", 0x000B),
            (b"B" * 17, 0x000B),
            (b"", 0x000B),
            (b"Bob_Smith", 0x0006),
            (b"Bob Smith ", 0x0006),
            (b"B\xf6b Smith", 0x0006),
            (b"1BobSmith", 0x0006),
            (b"Bob Smyth", 0x0001),
            (b"Carol", 0x0001),
        ]
        for raw, code in cases:
            reply = self.world.change(self.bob1, Tlv(0x0001, raw))
            self.assertEqual(reply.tlvs, refused(code), raw)
        self.assertEqual(self.world.stored_account("bobsmith").screen_name, "Bob Smith")
        for connection in (self.conn1, self.conn2, self.watcher):
            self.assertEqual(connection.payloads, [])

    def test_first_kind_wins(self) -> None:
        """One change per request, in Go's order: a format beats an e-mail."""
        self.world.change(self.bob1, Tlv(0x0011, b"x@y.zz"), Tlv(0x0001, b"bobsmith"))
        account = self.world.stored_account("bobsmith")
        self.assertEqual((account.screen_name, account.email), ("bobsmith", ""))


class EmailAndRegistrationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = AdminWorld()
        self.session, _ = self.world.sign_on("Bob Smith")

    def account(self) -> Account:
        return self.world.stored_account("bobsmith")

    def test_email(self) -> None:
        """An address is kept in lower case and echoed so."""
        reply = self.world.change(self.session, Tlv(0x0011, b"Bob@Example.ORG"))
        self.assertEqual(reply, AdminInfoReply(3, TlvList([Tlv(0x0011, b"bob@example.org")])))
        self.assertEqual(self.account().email, "bob@example.org")

    def test_email_refusals(self) -> None:
        """0x000D past 254 characters; 0x0008 for anything not an address."""
        cases = [
            (b"a" * 64 + b"@" + b"b" * 200 + b".com", 0x000D),
            (b"", 0x0008),
            (b"bob", 0x0008),
            (b"bob@example", 0x0008),
            (b"b\xf6b@example.org", 0x0008),
            (b"bob@example.org\x00", 0x0008),
        ]
        for raw, code in cases:
            self.assertEqual(self.world.change(self.session, Tlv(0x0011, raw)).tlvs, refused(code))
        self.assertEqual(self.account().email, "")

    def test_registration(self) -> None:
        """1-3 are kept and echoed; anything else is 0x0009."""
        for status in (1, 3, 2):
            reply = self.world.change(self.session, Tlv.u16(0x0013, status))
            self.assertEqual(reply.tlvs, TlvList([Tlv.u16(0x0013, status)]))
            self.assertEqual(self.account().registration_status, status)
        for raw in (b"\x00\x00", b"\x00\x04", b"\xff\xff", b"\x01", b"", b"\x00\x00\x01"):
            reply = self.world.change(self.session, Tlv(0x0013, raw))
            self.assertEqual(reply.tlvs, refused(0x0009))
        self.assertEqual(self.account().registration_status, 2)

    def test_unknown_change(self) -> None:
        """A change naming nothing known is 07,01 0x0008."""
        for tlvs in ((), (Tlv(0x0012, b"secret12"),), (Tlv(0x0099, b"x"),)):
            body = TlvList(tlvs).pack_list()
            error = self.assertRaises(
                SnacError, self.world.request, self.session, Admin.INFO_CHANGE, body
            )
            self.assertEqual(error.code, 0x0008)

    def test_store_refusal(self) -> None:
        """A store that fails the write answers 0x0013."""

        def broken(*args: Any) -> defer.Deferred[bool]:
            return defer.fail(StoreError("disk on fire"))

        self.world.store.set_email = broken  # type: ignore[method-assign]
        reply = self.world.change(self.session, Tlv(0x0011, b"bob@example.org"))
        self.assertEqual(reply.tlvs, refused(0x0013))


class ConfirmTests(SynchronousTestCase):
    def test_confirm(self) -> None:
        """0x0023 without an address; 0x0000 and confirmed with one; 0x001E
        the second time; a new address needs confirming again."""
        world = AdminWorld()
        session, _ = world.sign_on("Bob Smith")
        self.assertEqual(world.confirm(session), 0x0023)
        self.assertFalse(world.stored_account("bobsmith").confirmed)
        world.change(session, Tlv(0x0011, b"bob@example.org"))
        self.assertEqual(world.confirm(session), 0x0000)
        self.assertTrue(world.stored_account("bobsmith").confirmed)
        self.assertEqual(world.confirm(session), 0x001E)
        world.change(session, Tlv(0x0011, b"robert@example.org"))
        self.assertEqual(world.confirm(session), 0x0000)


class PasswordTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = AdminWorld()
        self.bob1, self.conn1 = self.world.sign_on("Bob Smith")
        self.bob2, self.conn2 = self.world.sign_on("Bob Smith")

    def account(self) -> Account:
        return self.world.stored_account("bobsmith")

    def test_change(self) -> None:
        """With the old password the new one is set (its bytes as sent) and
        the old one stops working; the reply is an empty 0x0002; both
        sessions stay signed on."""
        before = self.account()
        self.assertEqual(
            self.world.password(self.bob1, b"n\xe9wpass", PASSWORD.encode()),
            [Tlv.empty(0x0002)],
        )
        after = self.account()
        self.assertNotEqual(after.auth_key, before.auth_key)
        self.assertTrue(knows(after, b"n\xe9wpass"))
        self.assertFalse(knows(after, PASSWORD.encode()))
        self.assertEqual(after.password_md5, hashlib.md5(b"n\xe9wpass").digest())
        self.assertEqual(len(self.world.registry.get("bobsmith").instances), 2)
        self.assertEqual(self.conn1.disconnects + self.conn2.disconnects, [])

    def test_roasted_old_password(self) -> None:
        """An old password sent roasted is accepted too."""
        self.world.password(self.bob1, b"newpass", roast(PASSWORD.encode()))
        self.assertTrue(knows(self.account(), b"newpass"))

    def test_refusals(self) -> None:
        """0x000F without the old password (or an empty one), 0x0002 for a
        wrong one, 0x000C for a new one outside 4-16 bytes; each reply starts
        with an empty 0x0002; nothing changes."""
        old = PASSWORD.encode()
        cases = [
            (b"newpass", None, 0x000F),
            (b"newpass", b"", 0x000F),
            (b"newpass", b"wrong", 0x0002),
            (b"newpass", old + b"x", 0x0002),
            (b"new", old, 0x000C),
            (b"n" * 17, old, 0x000C),
            (b"", old, 0x000C),
        ]
        before = self.account()
        for new, old_given, code in cases:
            self.assertEqual(
                self.world.password(self.bob2, new, old_given),
                [Tlv.empty(0x0002), Tlv.u16(0x0008, code)],
            )
        self.assertEqual(self.account(), before)

    def test_too_many_wrong_old_passwords(self) -> None:
        """After five wrong old passwords in ten minutes, even the right one
        is refused (0x0013) until they are over; a success clears the count."""
        for _ in range(MAX_PASSWORD_FAILURES):
            self.world.password(self.bob1, b"newpass", b"guess")
        self.assertEqual(
            self.world.password(self.bob2, b"newpass", PASSWORD.encode()),
            [Tlv.empty(0x0002), Tlv.u16(0x0008, 0x0013)],
        )
        self.world.clock.advance(PASSWORD_FAILURE_WINDOW)
        self.assertEqual(
            self.world.password(self.bob2, b"newpass", PASSWORD.encode()), [Tlv.empty(0x0002)]
        )
        for _ in range(MAX_PASSWORD_FAILURES - 1):
            self.world.password(self.bob1, b"other", b"guess")
        self.assertEqual(self.world.password(self.bob1, b"other", b"newpass"), [Tlv.empty(0x0002)])
        self.world.password(self.bob1, b"third", b"guess")
        self.assertEqual(self.world.password(self.bob1, b"third", b"other"), [Tlv.empty(0x0002)])

    def held_reads(self) -> list[defer.Deferred[Any]]:
        """Hold every read of the stored credentials until the test fires it
        (a slow database); the list of those held."""
        store = self.world.store
        real = store.get_accounts
        held: list[defer.Deferred[Any]] = []

        def slow(names: Any) -> defer.Deferred[dict[str, Account]]:
            waiting: defer.Deferred[Any] = defer.Deferred()
            held.append(waiting)
            return waiting.addCallback(lambda _: real(names))

        store.get_accounts = slow  # type: ignore[method-assign]
        return held

    def start_change(self, session: Any, new: bytes, old: bytes) -> list[Any]:
        """Send a password change; the list its replies land in."""
        body = TlvList([Tlv(0x0002, new), Tlv(0x0012, old)]).pack_list()
        handler = self.world.admin.handlers()[FoodGroup.ADMIN, Admin.INFO_CHANGE]
        result = self.world.call(handler, session, FoodGroup.ADMIN, Admin.INFO_CHANGE, body)
        answers: list[Any] = []
        if isinstance(result, defer.Deferred):
            result.addCallback(answers.append)
        else:
            answers.append(result)
        return answers

    @staticmethod
    def code_of(answers: list[Any]) -> int | None:
        [[reply]] = answers
        return AdminInfoReply.unpack(reply.body).tlvs.get_u16(0x0008)

    def test_concurrent_guesses_counted(self) -> None:
        """Changes sent together (on several connections) while the store is
        slow get no more than five guesses between them: each counts from
        the moment it is made, the rest are refused with 0x0013 at once."""
        held = self.held_reads()
        guesses = [
            self.start_change(session, b"newpass", b"guess%d" % n)
            for n, session in enumerate([self.bob1, self.bob2] * 4)
        ]
        self.assertEqual(len(held), MAX_PASSWORD_FAILURES)
        refused_now = [answers for answers in guesses if answers]
        self.assertEqual(len(refused_now), 8 - MAX_PASSWORD_FAILURES)
        self.assertEqual({self.code_of(a) for a in refused_now}, {0x0013})
        for d in held:
            d.callback(None)
        self.assertEqual(
            [self.code_of(a) for a in guesses if a not in refused_now],
            [0x0002] * MAX_PASSWORD_FAILURES,
        )
        answers = self.start_change(self.bob1, b"newpass", PASSWORD.encode())
        self.assertEqual(self.code_of(answers), 0x0013)

    def test_right_old_password_is_not_a_guess(self) -> None:
        """A change that shows the right old password (whatever else is
        wrong with it), or that the store could not check, uses up no guess."""
        for _ in range(MAX_PASSWORD_FAILURES):
            self.world.password(self.bob1, b"new", PASSWORD.encode())  # too short
        real = self.world.store.get_accounts
        self.world.store.get_accounts = lambda names: defer.fail(  # type: ignore[method-assign]
            StoreError("disk on fire")
        )
        for _ in range(MAX_PASSWORD_FAILURES):
            self.world.password(self.bob1, b"newpass", b"guess")
        self.world.store.get_accounts = real  # type: ignore[method-assign]
        for _ in range(MAX_PASSWORD_FAILURES):
            self.assertEqual(
                self.world.password(self.bob1, b"newpass", b"guess"),
                [Tlv.empty(0x0002), Tlv.u16(0x0008, 0x0002)],
            )
        self.assertEqual(
            self.world.password(self.bob1, b"newpass", PASSWORD.encode()),
            [Tlv.empty(0x0002), Tlv.u16(0x0008, 0x0013)],
        )

    def test_changed_meanwhile(self) -> None:
        """If the password changes between the check and the write (another
        session, the CLI), this change is refused with 0x0013 and the other
        one stands."""
        store = self.world.store
        real = store.get_accounts

        def racing(names: Any) -> defer.Deferred[dict[str, Account]]:
            found = real(names)
            store.set_password("bobsmith", "elsewhere")
            return found

        store.get_accounts = racing  # type: ignore[method-assign]
        self.assertEqual(
            self.world.password(self.bob1, b"newpass", PASSWORD.encode()),
            [Tlv.empty(0x0002), Tlv.u16(0x0008, 0x0013)],
        )
        self.assertTrue(knows(self.account(), b"elsewhere"))

    def test_cached_account_is_forgotten(self) -> None:
        """Through the account cache (as the server runs), the next lookup
        after a change sees the new credentials at once."""
        clock = Clock()
        clock.advance(START)
        cached = CachedUserStore(MemoryUserStore(clock), clock)
        world = AdminWorld(clock=clock, store=cached)  # type: ignore[arg-type]
        session, _ = world.sign_on("Alice")
        self.assertIsNotNone(world.store.peek_account("alice"))
        world.password(session, b"newpass", PASSWORD.encode())
        self.assertIsNone(world.store.peek_account("alice"))
        self.assertTrue(knows(world.stored_account("alice"), b"newpass"))


_tags = st.sampled_from([0x0001, 0x0002, 0x0004, 0x0008, 0x0011, 0x0012, 0x0013, 0x0099])
_values = st.one_of(
    st.binary(max_size=20),
    st.sampled_from([b"bobsmith", b"Bob Smith", PASSWORD.encode(), b"a@b.cd", b"\x00\x02"]),
    st.binary(min_size=250, max_size=300),
)
_bodies = st.one_of(
    st.lists(st.builds(Tlv, _tags, _values), max_size=4).map(lambda t: TlvList(t).pack_list()),
    st.binary(max_size=24),
)


class FuzzTests(SynchronousTestCase):
    @settings(max_examples=200)
    @given(st.lists(st.tuples(st.sampled_from([0x02, 0x04, 0x06]), _bodies), max_size=6))
    def test_any_body(self, requests: list[tuple[int, bytes]]) -> None:
        """Any bodies to any Admin handler: replies, SnacError or
        MalformedData, nothing else, and the account stays valid."""
        world = AdminWorld()
        session, _ = world.sign_on("Bob Smith")
        for subtype, body in requests:
            with contextlib.suppress(SnacError, MalformedData):
                world.request(session, subtype, body)
        account = world.stored_account("bobsmith")
        self.assertEqual(account.normalized, "bobsmith")
        self.assertIn(account.registration_status, (1, 2, 3))
