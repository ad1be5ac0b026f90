# -*- test-case-name: tests.test_service_buddy -*-
"""Client-side buddy lists (FAMILIES.md §Buddy): 03,04 add and 03,05 remove
drive the registry's watcher index, and so who hears of arrivals and
departures; malformed bodies change nothing."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aimserver import registry as registry_module
from aimserver.services.base import Reply, SnacError
from aimserver.services.buddy import MAX_BUDDIES
from aimserver.wire.codes import Buddy, FoodGroup
from aimserver.wire.errors import MalformedData
from tests.fakes_services import ServiceWorld, name08

BUDDY = 0x0003
ADD = 0x0004
REMOVE = 0x0005
ADD_TEMP = 0x000F
REMOVE_TEMP = 0x0010

# FAMILIES.md 03,04: "Bob", "carol".
ADD_BOB_CAROL = bytes.fromhex("03 42 6F 62  05 63 61 72 6F 6C")


class BuddyWorld(ServiceWorld):
    def add(self, session, body: bytes, subtype: int = ADD) -> None:
        self.call(self.buddy.add_buddies, session, BUDDY, subtype, body)

    def remove(self, session, body: bytes, subtype: int = REMOVE) -> None:
        self.call(self.buddy.del_buddies, session, BUDDY, subtype, body)

    def watchers_of(self, key: str) -> set:
        """The watcher index's entry for ``key`` (empty when it has none)."""
        return set(self.registry.watchers.get(key, ()))


def names(*screen_names: str) -> bytes:
    return b"".join(name08(n) for n in screen_names)


class BuddyRightsTests(SynchronousTestCase):
    def test_rights_reply(self) -> None:
        """03,03: max buddies 1000, max watchers 3000, no ICQ broadcast list,
        160 temporary buddies, as u16 TLVs 1-4."""
        world = BuddyWorld()
        session, _ = world.sign_on("Carol")
        [reply] = world.call(world.buddy.rights_query, session, BUDDY, Buddy.RIGHTS_QUERY)
        expected = bytes.fromhex(
            "00 01 00 02 03 E8  00 02 00 02 0B B8  00 03 00 02 00 00  00 04 00 02 00 A0"
        )
        self.assertEqual(reply, Reply(BUDDY, 0x0003, expected))

    def test_handlers(self) -> None:
        """Temporary buddies (03,0F / 03,10) are added and removed like the others."""
        service = BuddyWorld().buddy
        self.assertEqual(
            service.handlers(),
            {
                (FoodGroup.BUDDY, 0x02): service.rights_query,
                (FoodGroup.BUDDY, ADD): service.add_buddies,
                (FoodGroup.BUDDY, REMOVE): service.del_buddies,
                (FoodGroup.BUDDY, ADD_TEMP): service.add_buddies,
                (FoodGroup.BUDDY, REMOVE_TEMP): service.del_buddies,
            },
        )


class AddBuddiesTests(SynchronousTestCase):
    """03,04: string08 screen names until the end of the body."""

    def setUp(self) -> None:
        self.world = BuddyWorld()
        self.carol, self.connection = self.world.sign_on("Carol")

    def test_example_body(self) -> None:
        """The FAMILIES.md body puts both names, normalised, on the session's
        list and in the watcher index."""
        self.world.add(self.carol, ADD_BOB_CAROL)
        self.assertEqual(self.carol.buddies, {"bob", "carol"})
        self.assertEqual(self.world.watchers_of("bob"), {self.carol})
        self.assertEqual(self.world.watchers_of("carol"), {self.carol})

    def test_arrival_when_buddy_signs_on(self) -> None:
        """A buddy who signs on after being added arrives (the control for the
        removal tests below)."""
        self.world.add(self.carol, names("Bob"))
        self.world.sign_on("Bob")
        self.assertEqual([a.screen_name for a in self.connection.arrivals()], ["Bob"])

    def test_empty_names_skipped(self) -> None:
        """Zero-length names, and names that are only spaces, are ignored."""
        self.world.add(self.carol, bytes.fromhex("00") + names("   ", "Bob") + bytes.fromhex("00"))
        self.assertEqual(self.carol.buddies, {"bob"})
        self.assertEqual(self.world.watchers_of(""), set())

    def test_empty_body(self) -> None:
        """An empty 03,04 adds no one and is no error."""
        self.world.add(self.carol, b"")
        self.assertEqual(self.carol.buddies, set())

    def test_name_runs_past_the_end(self) -> None:
        """A name whose length byte promises more than is left is malformed,
        and the names before it are not added either (the body is parsed whole
        before anything changes)."""
        for body in [
            names("Bob") + bytes.fromhex("05 63 61 72"),
            bytes.fromhex("05"),
            names("Bob") + bytes.fromhex("FF"),
        ]:
            self.assertRaises(MalformedData, self.world.add, self.carol, body)
            self.assertEqual(self.carol.buddies, set())
            self.assertEqual(self.world.watchers_of("bob"), set())

    def test_name_not_ascii(self) -> None:
        """A name that is not ASCII is malformed, and nothing is added."""
        body = names("Bob") + bytes.fromhex("03 42 F6 62")
        self.assertRaises(MalformedData, self.world.add, self.carol, body)
        self.assertEqual(self.carol.buddies, set())

    def test_list_overflow(self) -> None:
        """More than MAX_BUDDIES on one session's list is refused with error
        0x0015 (list overflow, ERRORS.md), and nothing of that request is added."""
        first = [f"user{n:05d}" for n in range(MAX_BUDDIES)]
        for start in range(0, MAX_BUDDIES, 200):
            self.world.add(self.carol, names(*first[start : start + 200]))
        self.assertEqual(len(self.carol.buddies), MAX_BUDDIES)
        # Names already on the list do not count again.
        self.world.add(self.carol, names(*first[:10]))
        error = self.assertRaises(SnacError, self.world.add, self.carol, names("Bob", "Dave"))
        self.assertEqual(error.code, 0x0015)
        self.assertNotIn("bob", self.carol.buddies)
        self.assertEqual(self.world.watchers_of("bob"), set())

    def test_names_that_cannot_be_screen_names_are_not_watched(self) -> None:
        """A string08 holds up to 255 characters: names longer than a screen
        name, or not shaped like one, are not watched (nobody can sign on
        with them); the valid ones in the same list are."""
        body = names("Bob", "x" * 255, "a!b", "Dave", "1") + name08("Q" * 17)
        self.world.add(self.carol, body)
        self.assertEqual(self.carol.buddies, {"bob", "dave"})
        self.assertEqual(set(self.world.registry.watchers), {"bob", "dave"})

    def test_max_watchers_holds(self) -> None:
        """No more sessions watch one user than 03,03 advertises: past that,
        a list naming the user does not add it (and the others still are)."""
        self.patch(registry_module, "MAX_WATCHERS", 3)
        watchers = [self.world.sign_on(f"Fan{n}")[0] for n in range(4)]
        for session in watchers:
            self.world.add(session, names("Bob", f"Other{session.instance_id}"))
        self.assertEqual(len(self.world.watchers_of("bob")), 3)
        self.assertNotIn("bob", watchers[3].buddies)
        self.assertEqual(len(watchers[3].buddies), 1)
        # One leaves: room for another.
        self.world.remove(watchers[0], names("Bob"))
        self.world.add(watchers[3], names("Bob"))
        self.assertIn("bob", watchers[3].buddies)


class RemoveBuddiesTests(SynchronousTestCase):
    """03,05: the named users leave this session's list and the watcher index."""

    def setUp(self) -> None:
        self.world = BuddyWorld()
        self.carol, self.connection = self.world.sign_on("Carol")
        self.world.add(self.carol, names("Bob", "Dave"))

    def test_removed_from_watcher_index(self) -> None:
        """After add and remove, the session no longer watches the buddy; the
        other buddy stays."""
        self.world.remove(self.carol, names("Bob"))
        self.assertEqual(self.carol.buddies, {"dave"})
        self.assertNotIn("bob", self.world.registry.watchers)
        self.assertEqual(self.world.registry.watching_sessions("bob"), [])
        self.assertEqual(self.world.watchers_of("dave"), {self.carol})

    def test_no_arrival_after_removal(self) -> None:
        """A removed buddy who signs on is not announced to the session; one
        still on the list is."""
        self.world.remove(self.carol, names("Bob"))
        self.world.sign_on("Bob")
        self.world.sign_on("Dave")
        self.assertEqual([a.screen_name for a in self.connection.arrivals()], ["Dave"])

    def test_no_departure_or_update_after_removal(self) -> None:
        """A removed buddy who was online: neither going away nor signing off
        is announced to the session any more."""
        bob, _ = self.world.sign_on("Bob")
        self.assertEqual(len(self.connection.arrivals()), 1)
        self.world.remove(self.carol, names("Bob"))
        self.connection.clear()
        self.world.set_away(bob, b"lunch")
        self.world.sign_off(bob)
        self.assertEqual(self.connection.payloads, [])

    def test_names_normalised(self) -> None:
        """A buddy is removed under any spelling of the name (case, spaces)."""
        self.world.add(self.carol, names("Bob Smith"))
        self.world.remove(self.carol, names("BOBSMITH", "d a v e"))
        self.assertEqual(self.carol.buddies, {"bob"})
        self.assertNotIn("bobsmith", self.world.registry.watchers)
        self.assertNotIn("dave", self.world.registry.watchers)

    def test_only_this_session(self) -> None:
        """Removing a buddy on one session leaves other sessions (of this user
        or another) watching it."""
        carol2, other = self.world.sign_on("Carol")
        alice, _ = self.world.sign_on("Alice")
        self.world.add(carol2, names("Bob"))
        self.world.add(alice, names("Bob"))
        self.world.remove(self.carol, names("Bob"))
        self.assertEqual(self.world.watchers_of("bob"), {carol2, alice})
        self.world.sign_on("Bob")
        self.assertEqual(self.connection.arrivals(), [])
        self.assertEqual([a.screen_name for a in other.arrivals()], ["Bob"])

    def test_temporary_removal(self) -> None:
        """03,10 removes like 03,05."""
        self.world.remove(self.carol, names("Bob"), REMOVE_TEMP)
        self.assertEqual(self.carol.buddies, {"dave"})

    def test_not_on_the_list(self) -> None:
        """Removing someone not on the list, or an empty body, changes nothing
        and is no error."""
        self.world.remove(self.carol, names("Erin"))
        self.world.remove(self.carol, b"")
        self.assertEqual(self.carol.buddies, {"bob", "dave"})
        self.assertNotIn("erin", self.world.registry.watchers)

    def test_readd_after_removal(self) -> None:
        """A buddy removed and added again is watched again, with an arrival
        when online."""
        self.world.sign_on("Bob")
        self.world.remove(self.carol, names("Bob"))
        self.connection.clear()
        self.world.add(self.carol, names("Bob"))
        self.assertEqual(self.world.watchers_of("bob"), {self.carol})
        self.assertEqual([a.screen_name for a in self.connection.arrivals()], ["Bob"])

    def test_malformed_removes_nothing(self) -> None:
        """A malformed 03,05 (a name cut short, or not ASCII) is refused and
        removes nobody, not even the names before the bad one."""
        for body in [
            names("Bob") + bytes.fromhex("04 64 61"),
            names("Bob") + bytes.fromhex("01"),
            names("Bob") + bytes.fromhex("04 44 61 76 E9"),
        ]:
            self.assertRaises(MalformedData, self.world.remove, self.carol, body)
            self.assertEqual(self.carol.buddies, {"bob", "dave"})
            self.assertEqual(self.world.watchers_of("bob"), {self.carol})
