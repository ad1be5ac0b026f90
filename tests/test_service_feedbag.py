# -*- test-case-name: tests.test_service_feedbag -*-
"""The feedbag read side (FAMILIES.md §Feedbag): 13,03 rights, 13,04 query and
13,05 query-if-modified answered with 13,06 (in parts when large) or 13,0F,
and 13,07 "use". The expected replies are written out as bytes from the
protocol reference, not built with the codecs under test."""

from __future__ import annotations

import struct

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.base import Reply, SnacError
from aimserver.services.feedbag import FeedbagService
from aimserver.store.interfaces import Feedbag, FeedbagItem
from aimserver.store.memory import MemoryUserStore
from aimserver.wire.codes import Feedbag as FeedbagSubtype
from aimserver.wire.codes import FoodGroup
from aimserver.wire.errors import MalformedData
from tests.fakes import result_of
from tests.fakes_services import START, ServiceWorld

FEEDBAG = 0x0013
REPLY = 0x0006
NOT_MODIFIED = 0x000F
MORE_REPLIES = 0x0001
LAST_CHANGE = 0x65000000

# FAMILIES.md 13,06: root, group "Buddies", buddy "Bob", PD info "allow all".
EXAMPLE_ITEMS = [
    FeedbagItem("", 0, 0, 1, bytes.fromhex("00 C8 00 02 0A 1E")),
    FeedbagItem("Buddies", 0x0A1E, 0, 1, bytes.fromhex("00 C8 00 02 12 34")),
    FeedbagItem("Bob", 0x0A1E, 0x1234, 0, b""),
    FeedbagItem("", 0, 0x2000, 4, bytes.fromhex("00 CA 00 01 01  00 CB 00 04 FF FF FF FF")),
]
# The FAMILIES.md 13,06 body, with its items in the order the store keeps them,
# by (group ID, item ID): root (0,0), PD info (0,0x2000), group (0x0A1E,0),
# Bob (0x0A1E,0x1234).
EXAMPLE_REPLY = bytes.fromhex(
    """
    00  00 04
    00 00  00 00 00 00 00 01  00 06  00 C8 00 02 0A 1E
    00 00  00 00 20 00 00 04  00 0D  00 CA 00 01 01  00 CB 00 04 FF FF FF FF
    00 07 42 75 64 64 69 65 73  0A 1E 00 00 00 01  00 06  00 C8 00 02 12 34
    00 03 42 6F 62  0A 1E 12 34 00 00  00 00
    65 00 00 00
    """
)
# FAMILIES.md 13,0F for that list: time, then count.
EXAMPLE_NOT_MODIFIED = bytes.fromhex("65 00 00 00  00 04")
EMPTY_REPLY = bytes.fromhex("00  00 00  00 00 00 00")

# Three buddies of 3016 bytes each (a 3000-byte note, TLV 0x013C): two fit in
# one 13,06 part (at most 8000 bytes of items), the third goes in a second.
NOTE = 3000 - 4
BIG_ITEMS = [
    FeedbagItem(f"Buddy{n}", 1, n, 0, struct.pack("!HH", 0x013C, NOTE) + b"n" * NOTE)
    for n in (1, 2, 3)
]


def big_item_bytes(n: int) -> bytes:
    """``BIG_ITEMS[n - 1]`` as it goes on the wire, built by hand."""
    name = f"Buddy{n}".encode("ascii")
    return (
        bytes.fromhex("00 06")
        + name
        + struct.pack("!HHHH", 1, n, 0, NOTE + 4)
        + bytes.fromhex("01 3C")
        + struct.pack("!H", NOTE)
        + b"n" * NOTE
    )


BIG_REPLIES = [
    Reply(
        FEEDBAG,
        REPLY,
        bytes.fromhex("00  00 02")
        + big_item_bytes(1)
        + big_item_bytes(2)
        + bytes.fromhex("65000000"),
        MORE_REPLIES,
    ),
    Reply(
        FEEDBAG, REPLY, bytes.fromhex("00  00 01") + big_item_bytes(3) + bytes.fromhex("65000000")
    ),
]


class HoldingFeedbagStore(MemoryUserStore):
    """A memory store whose ``get_feedbag`` answers only on ``release()``
    while ``hold`` is set (a slow database)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.hold = False
        self.held: list[tuple[defer.Deferred[Feedbag], str]] = []

    def get_feedbag(self, screen_name: str) -> defer.Deferred[Feedbag]:
        if not self.hold:
            return super().get_feedbag(screen_name)
        d: defer.Deferred[Feedbag] = defer.Deferred()
        self.held.append((d, screen_name))
        return d

    def release(self) -> None:
        held, self.held = self.held, []
        for d, screen_name in held:
            super().get_feedbag(screen_name).chainDeferred(d)


class FeedbagWorld(ServiceWorld):
    def __init__(self) -> None:
        clock = Clock()
        clock.advance(START)
        super().__init__(clock=clock, store=HoldingFeedbagStore(clock))
        self.feedbag = FeedbagService(self.registry, self.presence, self.store, self.clock)

    def store_items(self, screen_name: str, items: list[FeedbagItem], now: int) -> None:
        self.account(screen_name)
        result_of(self.store.upsert_feedbag_items(screen_name, items, now))

    def query(self, session) -> list[Reply]:
        return result_of(self.call(self.feedbag.query, session, FEEDBAG, FeedbagSubtype.QUERY))

    def query_if_modified(self, session, body: bytes) -> list[Reply]:
        return result_of(
            self.call(
                self.feedbag.query_if_modified,
                session,
                FEEDBAG,
                FeedbagSubtype.QUERY_IF_MODIFIED,
                body,
            )
        )

    def use(self, session) -> None:
        result_of(self.call(self.feedbag.use, session, FEEDBAG, FeedbagSubtype.USE))


class FeedbagRightsTests(SynchronousTestCase):
    def test_rights_reply(self) -> None:
        """13,03 carries the limits clients read: TLV 4 is the max item count
        per class, indexed by class ID (libpurple needs it), with room for
        1000 buddies and 200 groups."""
        world = FeedbagWorld()
        session, _ = world.sign_on("Alice")
        [reply] = world.call(
            world.feedbag.rights_query, session, FEEDBAG, FeedbagSubtype.RIGHTS_QUERY
        )
        expected = bytes.fromhex(
            """
            00 03 00 02 00 C8
            00 04 00 2A  03 E8 00 C8 00 C8 00 C8 00 01 00 01 00 32 00 03 00 80 00 FF
                         00 14 00 C8 00 01 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 C8
            00 05 00 02 00 C8
            00 06 00 02 00 C8
            """
        )
        self.assertEqual(reply, Reply(FEEDBAG, 0x0003, expected))

    def test_handlers(self) -> None:
        """Each subtype reaches its handler."""
        service = FeedbagWorld().feedbag
        self.assertEqual(
            service.handlers(),
            {
                (FoodGroup.FEEDBAG, 0x02): service.rights_query,
                (FoodGroup.FEEDBAG, 0x04): service.query,
                (FoodGroup.FEEDBAG, 0x05): service.query_if_modified,
                (FoodGroup.FEEDBAG, 0x07): service.use,
                (FoodGroup.FEEDBAG, 0x08): service.edit,
                (FoodGroup.FEEDBAG, 0x09): service.edit,
                (FoodGroup.FEEDBAG, 0x0A): service.edit,
                (FoodGroup.FEEDBAG, 0x11): service.cluster,
                (FoodGroup.FEEDBAG, 0x12): service.cluster,
            },
        )


class FeedbagQueryTests(SynchronousTestCase):
    """13,04 always answers with the whole list in 13,06."""

    def setUp(self) -> None:
        self.world = FeedbagWorld()
        self.alice, _ = self.world.sign_on("Alice")

    def test_never_written_list(self) -> None:
        """A list never written is one 13,06: version 0, no items, time 0."""
        self.assertEqual(self.world.query(self.alice), [Reply(FEEDBAG, REPLY, EMPTY_REPLY)])

    def test_example_list(self) -> None:
        """The FAMILIES.md list comes back as one 13,06, byte for byte: version
        byte 0, count 4, the items, the time of the last change; no flags."""
        self.world.store_items("Alice", EXAMPLE_ITEMS, LAST_CHANGE)
        self.assertEqual(self.world.query(self.alice), [Reply(FEEDBAG, REPLY, EXAMPLE_REPLY, 0)])

    def test_users_own_list(self) -> None:
        """Each user reads their own list, whatever is stored for others."""
        self.world.store_items("Bob", EXAMPLE_ITEMS, LAST_CHANGE)
        self.assertEqual(self.world.query(self.alice), [Reply(FEEDBAG, REPLY, EMPTY_REPLY)])

    def test_large_list_in_parts(self) -> None:
        """A list over one part's worth of items comes as several 13,06, each
        complete (version, count, items, time), flagged "more replies follow"
        (0x0001) on all but the last."""
        self.world.store_items("Alice", BIG_ITEMS, LAST_CHANGE)
        replies = self.world.query(self.alice)
        self.assertEqual([r.flags for r in replies], [MORE_REPLIES, 0])
        self.assertEqual(replies, BIG_REPLIES)

    def test_not_signed_on(self) -> None:
        """A session that is no longer signed on is answered "not logged on"."""
        self.world.sign_off(self.alice)
        error = self.assertRaises(SnacError, self.world.query, self.alice)
        self.assertEqual(error.code, 0x0004)


class FeedbagQueryIfModifiedTests(SynchronousTestCase):
    """13,05 (u32 cached time, u16 cached count): 13,0F when both match the
    stored list, the whole list otherwise (FAMILIES.md: u16 and equality, not
    Go's u8 and "earlier than")."""

    def setUp(self) -> None:
        self.world = FeedbagWorld()
        self.alice, _ = self.world.sign_on("Alice")
        self.world.store_items("Alice", EXAMPLE_ITEMS, LAST_CHANGE)

    def test_both_match(self) -> None:
        """Same time and count: one 13,0F with the server's time, then its count."""
        replies = self.world.query_if_modified(self.alice, bytes.fromhex("65 00 00 00  00 04"))
        self.assertEqual(replies, [Reply(FEEDBAG, NOT_MODIFIED, EXAMPLE_NOT_MODIFIED)])

    def test_time_differs(self) -> None:
        """A cached time later or earlier than the stored one gets the list."""
        for cached in ["65 00 00 01  00 04", "64 FF FF FF  00 04", "00 00 00 00  00 04"]:
            replies = self.world.query_if_modified(self.alice, bytes.fromhex(cached))
            self.assertEqual(replies, [Reply(FEEDBAG, REPLY, EXAMPLE_REPLY)])

    def test_count_differs(self) -> None:
        """The same time with another count gets the list; the count is a u16
        (a count of 0x0104 is not 4, as a u8 reader would think)."""
        for cached in ["65 00 00 00  00 03", "65 00 00 00  00 05", "65 00 00 00  01 04"]:
            replies = self.world.query_if_modified(self.alice, bytes.fromhex(cached))
            self.assertEqual(replies, [Reply(FEEDBAG, REPLY, EXAMPLE_REPLY)])

    def test_field_order(self) -> None:
        """The request is time then count: the two swapped do not match."""
        replies = self.world.query_if_modified(self.alice, bytes.fromhex("00 04  65 00 00 00"))
        self.assertEqual(replies, [Reply(FEEDBAG, REPLY, EXAMPLE_REPLY)])

    def test_never_written_list_matches_zero(self) -> None:
        """For a list never written, a client caching time 0 and no items is
        told it is up to date."""
        bob, _ = self.world.sign_on("Bob")
        replies = self.world.query_if_modified(bob, bytes.fromhex("00 00 00 00  00 00"))
        self.assertEqual(replies, [Reply(FEEDBAG, NOT_MODIFIED, bytes.fromhex("00000000 0000"))])

    def test_changed_list_in_parts(self) -> None:
        """A changed large list comes in flagged parts, as for 13,04."""
        carol, _ = self.world.sign_on("Carol")
        self.world.store_items("Carol", BIG_ITEMS, LAST_CHANGE)
        replies = self.world.query_if_modified(carol, bytes.fromhex("65 00 00 00  00 02"))
        self.assertEqual(replies, BIG_REPLIES)

    def test_short_body(self) -> None:
        """A body shorter than the six bytes of time and count is malformed."""
        for cut in range(6):
            body = bytes.fromhex("65 00 00 00  00 04")[:cut]
            self.assertRaises(MalformedData, self.world.query_if_modified, self.alice, body)


class FeedbagUseTests(SynchronousTestCase):
    """13,07: the stored buddy items become the session's buddy list."""

    def setUp(self) -> None:
        self.world = FeedbagWorld()
        self.world.store_items("Alice", EXAMPLE_ITEMS, LAST_CHANGE)

    def test_buddy_items_watched(self) -> None:
        """Only buddy items (class 0) are watched, not groups or PD info."""
        alice, _ = self.world.sign_on("Alice")
        self.world.use(alice)
        self.assertTrue(alice.uses_feedbag)
        self.assertEqual(alice.buddies, {"bob"})
        self.assertEqual(self.world.registry.watching_sessions("bob"), [alice])

    def test_arrivals_for_online_buddies(self) -> None:
        """After "use", buddies already online arrive at once, and those who
        sign on later arrive then."""
        bob, _ = self.world.sign_on("Bob")
        alice, connection = self.world.sign_on("Alice")
        self.world.use(alice)
        self.assertEqual([a.screen_name for a in connection.arrivals()], ["Bob"])
        self.world.sign_off(bob)
        self.world.sign_on("Bob")
        self.assertEqual([d.screen_name for d in connection.departures()], ["Bob"])
        self.assertEqual([a.screen_name for a in connection.arrivals()], ["Bob", "Bob"])

    def test_closed_session_not_watching(self) -> None:
        """A session gone while the list was read does not enter the watcher index."""
        alice, _ = self.world.sign_on("Alice")
        self.world.store.hold = True
        d = self.world.call(self.world.feedbag.use, alice, FEEDBAG, FeedbagSubtype.USE)
        self.world.sign_off(alice)
        self.world.store.release()
        self.assertIsNone(self.successResultOf(d))
        self.assertFalse(alice.uses_feedbag)
        self.assertEqual(alice.buddies, set())
        self.assertNotIn("bob", self.world.registry.watchers)
