"""Privacy from the feedbag (issue 15, first part): the PD-info item's mode
and the permit/deny items decide who may see and reach a user, through
``Presence.visible_to``, the one rule."""

from __future__ import annotations

import struct

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.base import SnacError
from aimserver.services.feedbag import FeedbagService
from aimserver.services.privacy import (
    ALLOW_BUDDIES,
    ALLOW_PERMITTED,
    BLOCK_ALL,
    BLOCK_DENIED,
    Privacy,
    privacy_of,
)
from aimserver.store.interfaces import FeedbagItem
from aimserver.wire.codes import FoodGroup
from aimserver.wire.feedbag import WireFeedbagItem
from aimserver.wire.tlv import Tlv
from tests.fakes import result_of
from tests.fakes_services import ServiceWorld


def pd_info(mode: int) -> WireFeedbagItem:
    attrs = Tlv(0x00CA, bytes([mode])).pack() + Tlv.u32(0x00CB, 0xFFFFFFFF).pack()
    return WireFeedbagItem(b"", 0, 0x0100, 4, attrs)


def stored(items) -> list[FeedbagItem]:
    return [
        FeedbagItem(i.name.decode(), i.group_id, i.item_id, i.class_id, i.attributes) for i in items
    ]


ROOT = WireFeedbagItem(b"", 0, 0, 1)
DENY_BOB = WireFeedbagItem(b"Bob", 0, 0x0200, 3)
PERMIT_CAROL = WireFeedbagItem(b"Carol", 0, 0x0300, 2)


class PrivacyOfTests(SynchronousTestCase):
    def test_modes(self) -> None:
        self.assertIsNone(privacy_of([]))
        self.assertIsNone(privacy_of(stored([ROOT, PERMIT_CAROL])))
        self.assertIsNone(privacy_of(stored([pd_info(1), PERMIT_CAROL])))
        # libpurple's block leaves the mode at "allow all" and adds a deny
        # item: it blocks all the same.
        for items in ([ROOT, DENY_BOB], [pd_info(1), DENY_BOB]):
            self.assertEqual(
                privacy_of(stored(items)), Privacy(BLOCK_DENIED, deny=frozenset({"bob"}))
            )
        deny = privacy_of(stored([pd_info(BLOCK_DENIED), DENY_BOB]))
        self.assertEqual(deny, Privacy(BLOCK_DENIED, deny=frozenset({"bob"})))
        self.assertFalse(deny.allows("bob"))
        self.assertTrue(deny.allows("carol"))
        permit = privacy_of(stored([pd_info(ALLOW_PERMITTED), PERMIT_CAROL]))
        self.assertTrue(permit.allows("carol"))
        self.assertFalse(permit.allows("bob"))
        self.assertFalse(privacy_of(stored([pd_info(BLOCK_ALL)])).allows("carol"))
        buddies = privacy_of(stored([pd_info(ALLOW_BUDDIES), WireFeedbagItem(b"Dave", 1, 2, 0)]))
        self.assertTrue(buddies.allows("dave"))
        self.assertFalse(buddies.allows("carol"))


class PrivacyWorld(ServiceWorld):
    def __init__(self) -> None:
        super().__init__()
        self.feedbag = FeedbagService(self.registry, self.presence, self.store, self.clock)
        self.sessions.observe(self.feedbag)

    def insert(self, session, *items: WireFeedbagItem):
        return result_of(
            self.call(
                self.feedbag.edit,
                session,
                FoodGroup.FEEDBAG,
                0x08,
                b"".join(i.pack() for i in items),
            )
        )

    def delete(self, session, *items: WireFeedbagItem):
        return result_of(
            self.call(
                self.feedbag.edit,
                session,
                FoodGroup.FEEDBAG,
                0x0A,
                b"".join(i.pack() for i in items),
            )
        )


class BlockingTests(SynchronousTestCase):
    """Alice blocks Bob (PD mode 4 and a deny item), as libpurple does."""

    def setUp(self) -> None:
        self.world = PrivacyWorld()
        self.bob, self.bob_conn = self.world.sign_on("Bob", buddies=["Alice"])
        self.carol, self.carol_conn = self.world.sign_on("Carol", buddies=["Alice"])
        self.alice, self.alice_conn = self.world.sign_on("Alice")
        self.world.insert(self.alice, ROOT)
        for connection in (self.bob_conn, self.carol_conn, self.alice_conn):
            connection.clear()
        self.world.insert(self.alice, pd_info(BLOCK_DENIED), DENY_BOB)

    def test_blocked_watcher_sees_a_departure_others_nothing(self) -> None:
        self.assertEqual([d.screen_name for d in self.bob_conn.departures()], ["Alice"])
        self.assertEqual(self.carol_conn.payloads, [])

    def test_blocked_user_gets_offline_answers(self) -> None:
        error = self.assertRaises(SnacError, self.world.send_im, self.bob, "Alice")
        self.assertEqual(error.code, 0x0004)
        self.world.send_im(self.carol, "Alice", b"hi")
        self.assertEqual([m.text for m in self.alice_conn.messages()], [b"hi"])
        body = struct.pack("!H", 0) + bytes([5]) + b"Alice"
        error = self.assertRaises(SnacError, self.world.warnings.evil_request, self.bob, None, body)
        self.assertEqual(error.code, 0x0004)

    def test_a_blocked_senders_stored_im_is_answered_as_offline_and_never_shown(self) -> None:
        """libpurple sets "store if offline" on every IM: a blocked sender
        gets exactly what it would get were the blocker offline (stored,
        acked), whether the blocker is on or not, and the message never
        reaches the blocker, now or at its next sign-on."""
        from aimserver.wire.icbm import TAG_STORE_IF_OFFLINE

        store = [Tlv.empty(TAG_STORE_IF_OFFLINE)]
        online = result_of(self.world.send_im(self.bob, "Alice", b"one", extra=store, ack=True))
        self.assertEqual([(r.family, r.subtype) for r in online], [(0x04, 0x0C)])
        self.assertEqual(self.alice_conn.messages(), [])
        self.world.sign_off(self.alice)
        offline = result_of(self.world.send_im(self.bob, "Alice", b"two", extra=store, ack=True))
        # The same answer but for the (random) cookie it echoes.
        self.assertEqual(
            [(r.subtype, r.body[8:]) for r in online], [(r.subtype, r.body[8:]) for r in offline]
        )
        _, connection = self.world.sign_on("Alice")
        self.assertEqual(connection.messages(), [])
        self.assertEqual(result_of(self.world.store.get_offline_messages("Alice")), [])

    def test_messages_stored_before_the_block_are_not_handed_over(self) -> None:
        from aimserver.wire.icbm import TAG_STORE_IF_OFFLINE

        self.world.sign_off(self.alice)
        self.world.send_im(
            self.carol, "Alice", b"from carol", extra=[Tlv.empty(TAG_STORE_IF_OFFLINE)]
        )
        self.world.send_im(self.bob, "Alice", b"from bob", extra=[Tlv.empty(TAG_STORE_IF_OFFLINE)])
        _, connection = self.world.sign_on("Alice")
        self.assertEqual([m.text for m in connection.messages()], [b"from carol"])
        self.assertEqual(result_of(self.world.store.get_offline_messages("Alice")), [])

    def test_blocking_everyone_still_reaches_your_own_sessions(self) -> None:
        result_of(
            self.world.call(
                self.world.feedbag.edit,
                self.alice,
                FoodGroup.FEEDBAG,
                0x09,
                pd_info(BLOCK_ALL).pack(),
            )
        )
        self.assertEqual(self.world.registry.get("Alice").privacy.mode, BLOCK_ALL)
        alice2, _ = self.world.sign_on("Alice")
        self.alice_conn.clear()
        self.world.send_im(alice2, "Alice", b"note to self")
        self.assertEqual([m.text for m in self.alice_conn.messages()], [b"note to self"])
        error = self.assertRaises(SnacError, self.world.send_im, self.carol, "Alice")
        self.assertEqual(error.code, 0x0004)

    def test_imming_someone_you_block_is_refused_as_such(self) -> None:
        error = self.assertRaises(SnacError, self.world.send_im, self.alice, "Bob")
        self.assertEqual(error.code, 0x0010)
        self.assertEqual(self.bob_conn.messages(), [])

    def test_changes_while_blocked_do_not_reach_the_blocked(self) -> None:
        self.bob_conn.clear()
        self.world.set_away(self.alice, b"out")
        self.assertEqual(self.bob_conn.payloads, [])
        self.assertEqual(len(self.carol_conn.arrivals()), 1)

    def test_unblocking_brings_the_arrival_back(self) -> None:
        self.bob_conn.clear()
        self.world.delete(self.alice, DENY_BOB)
        self.assertEqual([a.screen_name for a in self.bob_conn.arrivals()], ["Alice"])

    def test_settings_are_read_at_the_next_sign_on(self) -> None:
        """Signed off and on again: the stored settings apply before the
        session is online, so Bob never sees Alice arrive."""
        self.world.sign_off(self.alice)
        self.bob_conn.clear()
        self.world.sign_on("Alice")
        self.assertEqual(self.bob_conn.arrivals(), [])
        self.assertEqual([a.screen_name for a in self.carol_conn.arrivals()], ["Alice"])


class SettingsReadTests(SynchronousTestCase):
    """While a user's settings are read at sign-on it is shown to nobody;
    when they arrive, those they allow see it come; a failed read stays
    closed and is tried again by the next session."""

    def setUp(self) -> None:
        self.world = PrivacyWorld()
        alice, _ = self.world.sign_on("Alice")
        self.world.insert(alice, ROOT, pd_info(BLOCK_DENIED), DENY_BOB)
        self.world.sign_off(alice)
        self.bob, self.bob_conn = self.world.sign_on("Bob", buddies=["Alice"])
        self.carol, self.carol_conn = self.world.sign_on("Carol", buddies=["Alice"])
        self.held: list[defer.Deferred] = []
        # A sign-on reads the list's summary (kept with it by every edit).
        original = self.world.store.get_feedbag_summary

        def held(name: str) -> defer.Deferred:
            d: defer.Deferred = defer.Deferred()
            self.held.append(d)
            return d

        self.original = original

        self.patch(self.world.store, "get_feedbag_summary", held)

    def test_client_ready_before_the_settings_shows_nobody(self) -> None:
        self.world.sign_on("Alice")
        self.assertEqual(self.bob_conn.arrivals(), [])
        self.assertEqual(self.carol_conn.arrivals(), [])
        [d] = self.held
        self.original("Alice").chainDeferred(d)
        self.assertEqual(self.bob_conn.arrivals(), [])
        self.assertEqual([a.screen_name for a in self.carol_conn.arrivals()], ["Alice"])

    def test_sending_before_the_settings_are_read_is_not_refused_as_blocked(self) -> None:
        """An IM sent right after client-ready, before the settings are read,
        is delivered: whom the sender blocks is not known yet, and 0x0010
        ("you block them") would be wrong (bench/chaos/hostile.py saw it)."""
        alice, _ = self.world.sign_on("Alice")
        self.carol_conn.clear()
        self.world.send_im(alice, "Carol", b"hi")
        self.assertEqual([m.text for m in self.carol_conn.messages()], [b"hi"])

    def test_a_failed_read_stays_closed_and_is_tried_again(self) -> None:
        self.world.sign_on("Alice")
        [d] = self.held
        d.errback(RuntimeError("disk gone"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.carol_conn.arrivals(), [])
        self.world.sign_on("Alice")
        self.assertEqual(len(self.held), 2)


class LegacyListEditTests(SynchronousTestCase):
    """AIM 3-4's 09,05-09,08 edit the same lists the feedbag holds."""

    def setUp(self) -> None:
        self.world = PrivacyWorld()
        self.bob, self.bob_conn = self.world.sign_on("Bob", buddies=["Alice"])
        self.carol, self.carol_conn = self.world.sign_on("Carol", buddies=["Alice"])
        self.alice, self.alice_conn = self.world.sign_on("Alice")
        self.alice2, self.alice2_conn = self.world.sign_on("Alice")
        for connection in (self.bob_conn, self.carol_conn, self.alice_conn, self.alice2_conn):
            connection.clear()

    def legacy(self, subtype: int, *names: str) -> None:
        body = b"".join(bytes([len(n)]) + n.encode() for n in names)
        self.assertIsNone(
            result_of(
                self.world.call(
                    self.world.feedbag.legacy_list_edit, self.alice, 0x09, subtype, body
                )
            )
        )

    def stored(self) -> list[tuple[str, int]]:
        feedbag = result_of(self.world.store.get_feedbag("Alice"))
        return [(i.name, i.class_id) for i in feedbag.items]

    def test_add_deny_blocks_and_is_stored_as_feedbag_items(self) -> None:
        self.legacy(0x07, "Bob", "!!bad", "B O B")
        self.assertEqual(sorted(self.stored()), [("", 4), ("Bob", 3)])
        self.assertEqual(self.world.registry.get("Alice").privacy.mode, BLOCK_DENIED)
        self.assertEqual([d.screen_name for d in self.bob_conn.departures()], ["Alice"])
        self.assertEqual(self.carol_conn.payloads, [])
        # Every session of Alice, the one that asked included, gets the items.
        for connection in (self.alice_conn, self.alice2_conn):
            self.assertEqual([s.header.subtype for s in connection.snacs(0x13)], [0x08, 0x08])
        self.legacy(0x08, "bob")
        self.assertEqual(self.stored(), [("", 4)])
        self.assertEqual([a.screen_name for a in self.bob_conn.arrivals()], ["Alice"])

    def test_add_permit_allows_only_the_permitted(self) -> None:
        self.legacy(0x07, "Bob")
        self.legacy(0x05, "Carol")
        self.assertEqual(self.world.registry.get("Alice").privacy.mode, ALLOW_PERMITTED)
        error = self.assertRaises(SnacError, self.world.send_im, self.bob, "Alice")
        self.assertEqual(error.code, 0x0004)
        self.world.send_im(self.carol, "Alice", b"hi")
        self.assertEqual([m.text for m in self.alice_conn.messages()], [b"hi"])
        # The PD-info item was updated in place, not added twice.
        self.assertEqual(sorted(self.stored()), [("", 4), ("Bob", 3), ("Carol", 2)])
