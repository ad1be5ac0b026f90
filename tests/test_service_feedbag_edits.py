"""Feedbag edits (13,08 insert, 13,09 update, 13,0A delete, 13,11/13,12):
every item checked and answered in order, nothing half-written, 13,0E only
after the commit, presence following the buddy items, and every edit pushed
to the user's other sessions (MULTISESSION.md §13)."""

from __future__ import annotations

import struct

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.feedbag import (
    ALREADY_EXISTS,
    CLASS_LIMIT,
    INVALID,
    MAX_ITEMS_PER_CLASS,
    MAX_LIST_BYTES,
    NOT_FOUND,
    OK,
    FeedbagService,
    plan_edit,
)
from aimserver.store.interfaces import Feedbag, FeedbagItem
from aimserver.wire.codes import FoodGroup
from aimserver.wire.feedbag import WireFeedbagItem
from aimserver.wire.tlv import Tlv
from tests.fakes import result_of
from tests.fakes_services import ServiceWorld

INSERT, UPDATE, DELETE, START, END = 0x08, 0x09, 0x0A, 0x11, 0x12
ORDER = Tlv(0x00C8, b"\x0a\x1e").pack()


def wire(name: str, gid: int, iid: int, cls: int, attrs: bytes = b"") -> WireFeedbagItem:
    return WireFeedbagItem(name.encode(), gid, iid, cls, attrs)


ROOT = wire("", 0, 0, 1, ORDER)
BUDDIES = wire("Buddies", 0x0A1E, 0, 1)
BOB = wire("Bob", 0x0A1E, 0x1234, 0)


def stored(*items: WireFeedbagItem) -> Feedbag:
    return Feedbag(
        tuple(
            FeedbagItem(i.name.decode(), i.group_id, i.item_id, i.class_id, i.attributes)
            for i in items
        ),
        1,
    )


class PlanEditTests(SynchronousTestCase):
    """Each item gets the result FAMILIES.md gives for it."""

    def plan(self, list_, subtype, *items):
        return plan_edit(list_, subtype, items, "alice")[0]

    def test_inserts_build_on_each_other_in_one_snac(self) -> None:
        self.assertEqual(self.plan(stored(), INSERT, ROOT, BUDDIES, BOB), [OK, OK, OK])

    def test_insert_refusals(self) -> None:
        base = stored(ROOT, BUDDIES, BOB)
        self.assertEqual(self.plan(base, INSERT, BOB), [ALREADY_EXISTS])
        cases = {
            "buddy in a group that does not exist": wire("Carol", 0x7777, 1, 0),
            "buddy in the root": wire("Carol", 0, 5, 0),
            "buddy without an item id": wire("Carol", 0x0A1E, 0, 0),
            "the same screen name twice in a group": wire("B O B", 0x0A1E, 0x2222, 0),
            "a buddy name no account can have": wire("!!", 0x0A1E, 0x2222, 0),
            "a group with an item id": wire("Friends", 0x0B00, 7, 1),
            "a named root": wire("root", 0, 0, 1),
            "an unnamed group": wire("", 0x0B00, 0, 1),
            "a class the server does not know": wire("x", 0, 9, 0x7000),
            "attributes that are not TLVs": wire("Carol", 0x0A1E, 0x2222, 0, b"\x00\x01\x00"),
            "a name over 200 bytes": wire("G" * 201, 0x0B00, 0, 1),
            "denying yourself": wire("Alice", 0, 9, 3),
            "a permit item in a group": wire("Carol", 0x0A1E, 9, 2),
        }
        for why, item in cases.items():
            self.assertEqual(self.plan(base, INSERT, item), [INVALID], why)
        # The classes 13,03 gives 0 items refuse with the class limit.
        self.assertEqual(self.plan(base, INSERT, wire("", 0, 9, 0x0E)), [CLASS_LIMIT])

    def test_per_class_limits_are_enforced(self) -> None:
        """13,03 says one PD-info item; a second is refused (0x000C)."""
        self.assertEqual(MAX_ITEMS_PER_CLASS[4], 1)
        base = stored(ROOT, wire("", 0, 0x10, 4))
        self.assertEqual(self.plan(base, INSERT, wire("", 0, 0x11, 4)), [CLASS_LIMIT])

    def test_list_bytes_are_capped(self) -> None:
        """A list holds at most MAX_LIST_BYTES of names and attributes: an
        insert or a growing update past it is refused with the limit
        (0x000C), one that shrinks or a delete is not, and what a delete
        frees is room again."""
        note = Tlv(0x013C, b"n" * 4000).pack()  # a buddy comment
        full = MAX_LIST_BYTES // (4000 + 8 + 4)
        buddies = [wire(f"Bud{n}", 0x0A1E, n + 1, 0, note) for n in range(full)]
        base = stored(ROOT, BUDDIES, *buddies)
        big = wire("Carol", 0x0A1E, 0x7000, 0, note)
        self.assertEqual(self.plan(base, INSERT, big), [CLASS_LIMIT])
        self.assertEqual(self.plan(base, INSERT, wire("Carol", 0x0A1E, 0x7000, 0)), [OK])
        grown = wire("Bud0", 0x0A1E, 1, 0, note + Tlv(0x0131, b"x" * 4000).pack())
        self.assertEqual(self.plan(base, UPDATE, grown), [CLASS_LIMIT])
        self.assertEqual(self.plan(base, UPDATE, wire("Bud0", 0x0A1E, 1, 0)), [OK])
        self.assertEqual(self.plan(base, DELETE, buddies[0]), [OK])
        self.assertEqual(self.plan(stored(ROOT, BUDDIES, *buddies[1:]), INSERT, big), [OK])

    def test_updates_and_deletes_need_the_item(self) -> None:
        base = stored(ROOT, BUDDIES, BOB)
        self.assertEqual(self.plan(base, UPDATE, wire("Carol", 0x0A1E, 0x4444, 0)), [NOT_FOUND])
        self.assertEqual(self.plan(base, DELETE, wire("Carol", 0x0A1E, 0x4444, 0)), [NOT_FOUND])
        self.assertEqual(self.plan(base, UPDATE, wire("Bob", 0x0A1E, 0x1234, 2)), [INVALID])
        self.assertEqual(self.plan(base, UPDATE, wire("Robert", 0x0A1E, 0x1234, 0)), [OK])

    def test_a_group_goes_only_when_empty(self) -> None:
        base = stored(ROOT, BUDDIES, BOB)
        self.assertEqual(self.plan(base, DELETE, BUDDIES), [INVALID])
        self.assertEqual(self.plan(base, DELETE, BOB, BUDDIES), [OK, OK])
        self.assertEqual(self.plan(base, DELETE, ROOT), [INVALID])

    def test_results_in_order_refused_items_change_nothing(self) -> None:
        results, accepted = plan_edit(
            stored(ROOT, BUDDIES), INSERT, [BOB, wire("Bob", 0x0A1E, 0x9999, 0), BOB], "alice"
        )
        self.assertEqual(results, [OK, INVALID, ALREADY_EXISTS])
        self.assertEqual([i.key for i in accepted], [(0x0A1E, 0x1234)])


class HeldWrites:
    """Store writes that wait until released: the 13,0E must wait too."""

    def __init__(self, store) -> None:
        self.held: list[tuple[defer.Deferred, defer.Deferred]] = []
        original = store.upsert_feedbag_items

        def upsert(*args):
            d: defer.Deferred = defer.Deferred()
            self.held.append((d, original(*args)))
            return d

        store.upsert_feedbag_items = upsert

    def release(self) -> None:
        held, self.held = self.held, []
        for d, result in held:
            result.chainDeferred(d)


class EditWorld(ServiceWorld):
    def __init__(self) -> None:
        super().__init__()
        self.feedbag = FeedbagService(self.registry, self.presence, self.store, self.clock)

    def edit(self, session, subtype: int, *items: WireFeedbagItem):
        return self.call(
            self.feedbag.edit,
            session,
            FoodGroup.FEEDBAG,
            subtype,
            b"".join(i.pack() for i in items),
        )

    def use(self, session) -> None:
        result_of(self.call(self.feedbag.use, session, FoodGroup.FEEDBAG, 0x07))


def results(replies) -> list[int]:
    [reply] = replies
    assert (reply.family, reply.subtype) == (0x13, 0x0E), reply
    return list(struct.unpack(f"!{len(reply.body) // 2}H", reply.body))


def pushed(connection) -> list[tuple[int, bytes]]:
    return [(s.header.subtype, s.body) for s in connection.snacs(0x13)]


class EditServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = EditWorld()
        self.bob, self.bob_conn = self.world.sign_on("Bob")
        self.alice1, self.conn1 = self.world.sign_on("Alice")
        self.alice2, self.conn2 = self.world.sign_on("Alice")
        for session in (self.alice1, self.alice2):
            self.world.use(session)
        for connection in (self.conn1, self.conn2, self.bob_conn):
            connection.clear()

    def test_insert_is_stored_answered_and_synced_to_siblings_only(self) -> None:
        """§13: the other session gets the edit with the stored items; the
        origin gets only its 13,0E; the list is stored."""
        replies = result_of(self.world.edit(self.alice1, INSERT, ROOT, BUDDIES))
        self.assertEqual(results(replies), [OK, OK])
        self.assertEqual(pushed(self.conn1), [])
        self.assertEqual(pushed(self.conn2), [(INSERT, ROOT.pack() + BUDDIES.pack())])
        keys = [i.key for i in result_of(self.world.store.get_feedbag("Alice")).items]
        self.assertEqual(keys, [(0, 0), (0x0A1E, 0)])

    def test_refused_items_are_not_synced(self) -> None:
        result_of(self.world.edit(self.alice1, INSERT, ROOT, BUDDIES))
        self.conn2.clear()
        replies = result_of(self.world.edit(self.alice1, INSERT, BUDDIES))
        self.assertEqual(results(replies), [ALREADY_EXISTS])
        self.assertEqual(pushed(self.conn2), [])

    def test_buddy_items_change_every_sessions_watch_set(self) -> None:
        """Adding Bob: both sessions watch him and get his arrival at once;
        deleting him: neither watches him, and his next change reaches no one."""
        result_of(self.world.edit(self.alice1, INSERT, ROOT, BUDDIES, BOB))
        for session, connection in ((self.alice1, self.conn1), (self.alice2, self.conn2)):
            self.assertIn("bob", session.buddies)
            self.assertEqual([a.screen_name for a in connection.arrivals()], ["Bob"])
        result_of(self.world.edit(self.alice2, DELETE, BOB))
        self.assertEqual(self.alice1.buddies, set())
        self.assertEqual(self.alice2.buddies, set())
        self.assertNotIn("bob", self.world.registry.watchers)

    def test_ack_waits_for_the_commit(self) -> None:
        """No 13,0E, no push, before the store has committed."""
        held = HeldWrites(self.world.store)
        d = self.world.edit(self.alice1, INSERT, ROOT)
        self.assertNoResult(d)
        self.assertEqual(pushed(self.conn2), [])
        held.release()
        self.assertEqual(results(self.successResultOf(d)), [OK])
        self.assertEqual(len(pushed(self.conn2)), 1)

    def test_edits_of_one_user_apply_one_at_a_time(self) -> None:
        """Two sessions insert the same item while the first write is still
        out: the second is checked against the list the first left."""
        held = HeldWrites(self.world.store)
        first = self.world.edit(self.alice1, INSERT, ROOT)
        second = self.world.edit(self.alice2, INSERT, ROOT)
        held.release()
        self.assertEqual(results(self.successResultOf(first)), [OK])
        self.assertEqual(results(self.successResultOf(second)), [ALREADY_EXISTS])

    def test_a_sibling_still_signing_on_misses_no_edit(self) -> None:
        """The sign-on race: a session that has its 13,06 but has not sent
        client-ready gets the edit too."""
        pending, pending_conn = self.world.sign_on("Alice", online=False)
        result_of(self.world.call(self.world.feedbag.query, pending, FoodGroup.FEEDBAG, 0x04))
        pending_conn.clear()
        result_of(self.world.edit(self.alice1, INSERT, ROOT))
        self.assertEqual(pushed(pending_conn), [(INSERT, ROOT.pack())])
        self.assertFalse(pending.online)

    def test_clusters_are_relayed_to_siblings(self) -> None:
        for subtype in (START, END):
            self.assertIsNone(
                self.world.call(self.world.feedbag.cluster, self.alice1, 0x13, subtype)
            )
        self.assertEqual(pushed(self.conn2), [(START, b""), (END, b"")])
        self.assertEqual(pushed(self.conn1), [])

    def test_malformed_body_changes_nothing(self) -> None:
        from aimserver.wire.errors import MalformedData

        self.assertRaises(
            MalformedData,
            self.world.call,
            self.world.feedbag.edit,
            self.alice1,
            0x13,
            INSERT,
            b"\x00\x05Bo",
        )
        self.assertEqual(result_of(self.world.store.get_feedbag("Alice")).items, ())


class CountingReads:
    """Counts the store's feedbag reads (``full``: those of every item);
    with ``holding`` set, the next full read is kept out until released."""

    def __init__(self, store) -> None:
        self.reads = 0
        self.full = 0
        summary = store.get_feedbag_summary

        def get_feedbag_summary(screen_name):
            self.reads += 1
            return summary(screen_name)

        store.get_feedbag_summary = get_feedbag_summary
        self.held: list[tuple[defer.Deferred, defer.Deferred]] = []
        self.holding = False
        original = store.get_feedbag

        def get_feedbag(screen_name):
            self.reads += 1
            self.full += 1
            result = original(screen_name)
            if not self.holding:
                return result
            self.holding = False
            d: defer.Deferred = defer.Deferred()
            self.held.append((d, result))
            return d

        store.get_feedbag = get_feedbag

    def release(self) -> None:
        held, self.held = self.held, []
        for d, result in held:
            result.chainDeferred(d)


class ListOnTheUserTests(SynchronousTestCase):
    """PERFORMANCE.md: user-level data is read once at sign-on. The list is
    read when the user's first session attaches and kept on the user, replaced
    at each commit; the sign-on queries and edits of its sessions read none."""

    def setUp(self) -> None:
        self.world = EditWorld()
        self.world.sessions.observe(self.world.feedbag)
        self.world.account("Alice")
        result_of(self.world.store.upsert_feedbag_items("Alice", [stored(ROOT).items[0]], 1))
        self.reads = CountingReads(self.world.store)

    def query(self, session) -> list[int]:
        replies = result_of(
            self.world.call(self.world.feedbag.query, session, FoodGroup.FEEDBAG, 0x04)
        )
        body = b"".join(r.body for r in replies)
        return [struct.unpack("!H", body[1:3])[0]]

    def test_list_read_once_per_sign_on(self) -> None:
        first, _ = self.world.sign_on("Alice")
        # Stored without a summary (as the admin CLI writes): the summary,
        # then every item, once.
        self.assertEqual((self.reads.reads, self.reads.full), (2, 1))
        self.assertEqual(self.query(first), [1])
        self.world.use(first)
        self.assertEqual(results(result_of(self.world.edit(first, INSERT, BUDDIES))), [OK])
        second, _ = self.world.sign_on("Alice")
        self.assertEqual(self.query(second), [2])
        self.world.use(second)
        self.assertEqual((self.reads.reads, self.reads.full), (2, 1))

    def test_the_kept_list_is_what_the_store_holds(self) -> None:
        first, _ = self.world.sign_on("Alice")
        result_of(self.world.edit(first, INSERT, BUDDIES, BOB))
        user = self.world.registry.user_of(first)
        self.assertEqual(user.feedbag.buddies, frozenset({"bob"}))
        result_of(self.world.edit(first, DELETE, BOB))
        self.assertEqual(user.feedbag.feedbag, result_of(self.world.store.get_feedbag("Alice")))
        self.assertEqual(user.feedbag.buddies, frozenset())

    def test_a_refused_write_keeps_the_list(self) -> None:
        first, _ = self.world.sign_on("Alice")
        from aimserver.store.interfaces import StoreError

        self.world.store.upsert_feedbag_items = lambda *a: defer.fail(StoreError("disk full"))
        self.assertEqual(results(result_of(self.world.edit(first, INSERT, BUDDIES))), [INVALID])
        self.assertEqual(self.query(first), [1])

    def test_a_late_sign_on_read_does_not_replace_a_newer_list(self) -> None:
        """The first session's read is still out when an edit (which then
        reads the store itself) commits: the older read, arriving last, does
        not replace the committed list."""
        self.reads.holding = True
        first, _ = self.world.sign_on("Alice", online=False)
        result_of(self.world.edit(first, INSERT, BUDDIES))
        self.reads.release()
        self.assertEqual(self.query(first), [2])

    def test_the_list_goes_with_the_last_session(self) -> None:
        """Signed off, the user (and the copy) is gone: the next sign-on
        reads the store again."""
        first, _ = self.world.sign_on("Alice")
        self.world.sign_off(first)
        self.world.sign_on("Alice")
        # The first read kept a summary with the list: the next sign-on
        # reads only that, no item.
        self.assertEqual((self.reads.reads, self.reads.full), (3, 1))

    def test_an_edit_queued_across_a_re_sign_on_starts_from_the_new_copy(self) -> None:
        """Two sessions each send an edit, the second queued behind the
        first; both sign off and the user signs on again (a new User) before
        the first is written. The second starts from the list as it is then,
        with the first in it, not from the gone User's copy."""
        first, _ = self.world.sign_on("Alice")
        second, _ = self.world.sign_on("Alice")
        held = HeldWrites(self.world.store)
        group_added = self.world.edit(first, INSERT, BUDDIES)
        bob_added = self.world.edit(second, INSERT, BOB)
        self.world.sign_off(first)
        self.world.sign_off(second)
        again, _ = self.world.sign_on("Alice")
        held.release()
        held.release()
        self.assertEqual(results(self.successResultOf(group_added)), [OK])
        self.assertEqual(results(self.successResultOf(bob_added)), [OK])
        self.assertEqual(self.query(again), [3])
        user = self.world.registry.user_of(again)
        self.assertEqual(user.feedbag.feedbag, result_of(self.world.store.get_feedbag("Alice")))

    def test_a_failing_follow_up_still_answers_the_stored_edit(self) -> None:
        """The edit is stored: whatever goes wrong after (the icon work), the
        client gets its 13,0E, or it would roll back what the server keeps."""

        class BrokenIcons:
            def load(self, user, items):
                return None

            def feedbag_changed(self, *args):
                return defer.fail(RuntimeError("icon bug"))

        world = self.world
        world.feedbag = FeedbagService(
            world.registry, world.presence, world.store, world.clock, BrokenIcons()
        )
        first, _ = world.sign_on("Alice")
        self.assertEqual(results(result_of(world.edit(first, INSERT, BUDDIES))), [OK])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
