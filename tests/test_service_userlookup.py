# -*- test-case-name: tests.test_service_userlookup -*-
"""UserLookup (0x000A) without sockets: screen names by e-mail address, for
the accounts that let themselves be found by it and do not block the asker."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.base import SnacError
from aimserver.services.odir import MAX_RESULTS
from aimserver.services.userlookup import UserLookupService
from aimserver.store.interfaces import StoreError
from aimserver.wire.codes import FoodGroup, UserLookup
from aimserver.wire.tlv import Tlv, TlvList
from tests.test_service_odir import ODirWorld


class LookupWorld(ODirWorld):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.lookup = UserLookupService(self.registry, self.store, self.store)

    def find(self, session: Any, email: bytes) -> TlvList:
        """The TLVs of the 0A,03 answering ``email``."""
        result = self.call(self.lookup.find_by_email, session, FoodGroup.USER_LOOKUP, 0x02, email)
        [reply] = self.result(result)
        assert (reply.family, reply.subtype) == (FoodGroup.USER_LOOKUP, UserLookup.FIND_REPLY)
        return TlvList.unpack_list(reply.body)

    def refusal(self, session: Any, email: bytes) -> int:
        """The 0A,01 code answering ``email``."""
        try:
            self.result(
                self.call(self.lookup.find_by_email, session, FoodGroup.USER_LOOKUP, 0x02, email)
            )
        except SnacError as e:
            return e.code
        raise AssertionError("answered, not refused")

    @staticmethod
    def result(value: Any) -> Any:
        if not isinstance(value, defer.Deferred):
            return value
        outcome: list[Any] = []
        value.addBoth(outcome.append)
        assert outcome, "not fired"
        if hasattr(outcome[0], "raiseException"):
            outcome[0].raiseException()
        return outcome[0]


class FindByEmailTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = LookupWorld()
        self.asker, _ = self.world.sign_on("Asker")

    def test_found(self) -> None:
        """0A,03 carries one 0x0001 per account with the address (ignoring
        case) and registration status 2 or 3, in name order; the directory
        record does not matter."""
        world = self.world
        world.profile("Zed", None, email="shared@example.org", registration=3)
        world.profile("Bob Smith", None, email="Shared@Example.ORG")
        world.profile("Private", None, email="shared@example.org", registration=1)
        world.profile("Other", None, email="other@example.org")
        self.assertEqual(
            world.find(self.asker, b"SHARED@example.org"),
            TlvList([Tlv(0x0001, b"Bob Smith"), Tlv(0x0001, b"Zed")]),
        )

    def test_no_match(self) -> None:
        """None found, only accounts that chose not to be, an empty or a
        non-ASCII address: 0A,01 0x0014. Longer than any address: 0x000E."""
        world = self.world
        world.profile("Private", None, email="private@example.org", registration=1)
        for email in (b"nobody@example.org", b"private@example.org", b"", b"\xe9@example.org"):
            self.assertEqual(world.refusal(self.asker, email), 0x0014, email)
        self.assertEqual(world.refusal(self.asker, b"a" * 255), 0x000E)

    def test_blockers_left_out(self) -> None:
        """An account that blocks the asker is not found; if it was the only
        one, the answer is 0x0014."""
        world = self.world
        world.profile("Blocker", None, email="x@example.org", blocks=("Asker",))
        self.assertEqual(world.refusal(self.asker, b"x@example.org"), 0x0014)
        world.profile("Friend", None, email="x@example.org")
        self.assertEqual(world.find(self.asker, b"x@example.org"), TlvList([Tlv(1, b"Friend")]))

    def test_bounded(self) -> None:
        """At most 25 names."""
        for n in range(MAX_RESULTS + 3):
            self.world.profile(f"user{n:02}", None, email="many@example.org")
        self.assertEqual(len(self.world.find(self.asker, b"many@example.org")), MAX_RESULTS)

    def test_blockers_take_no_place(self) -> None:
        """Those who block the asker are left out before the first 25 are
        taken: 25 of them first in name order hide no one after them."""
        for n in range(MAX_RESULTS):
            self.world.profile(f"a{n:02}", None, email="many@example.org", blocks=("Asker",))
        self.world.profile("Friend", None, email="many@example.org")
        found = self.world.find(self.asker, b"many@example.org")
        self.assertEqual(found, TlvList([Tlv(0x0001, b"Friend")]))

    def test_store_failure(self) -> None:
        """A store that fails answers 0x0005."""

        def broken(*args: Any) -> defer.Deferred[Any]:
            return defer.fail(StoreError("disk on fire"))

        self.world.store.search_directory = broken  # type: ignore[method-assign]
        self.assertEqual(self.world.refusal(self.asker, b"x@example.org"), 0x0005)
