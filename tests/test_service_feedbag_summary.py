"""A sign-on is served from the summary kept with a stored list
(aimserver.services.feedbag.KeptList.from_summary), so that it builds no
object per item: what it serves must be exactly what the whole list gives."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.feedbag import FeedbagService, KeptList, summary_of
from aimserver.services.privacy import privacy_of
from aimserver.store.interfaces import Feedbag, FeedbagItem, FeedbagSummary
from aimserver.wire.tlv import Tlv
from tests.fakes import result_of
from tests.fakes_services import ServiceWorld

names = st.sampled_from(["Bob", "bob", "Carol", "Dave Smith", "davesmith", "Erin"])


@st.composite
def stored_lists(draw: st.DrawFn) -> Feedbag:
    groups = draw(st.lists(st.integers(1, 5), max_size=4, unique=True))
    items = {}
    root_order = draw(st.lists(st.integers(0, 6), max_size=6))
    items[(0, 0)] = FeedbagItem(
        "", 0, 0, 1, Tlv(0xC8, struct.pack(f"!{len(root_order)}H", *root_order)).pack()
    )
    for gid in groups:
        order = draw(st.lists(st.integers(1, 12), max_size=8))
        attributes = Tlv(0xC8, struct.pack(f"!{len(order)}H", *order)).pack()
        items[(gid, 0)] = FeedbagItem(f"G{gid}", gid, 0, 1, attributes)
        for iid in draw(st.lists(st.integers(1, 12), max_size=6, unique=True)):
            items[(gid, iid)] = FeedbagItem(draw(names), gid, iid, 0, b"")
    for n, class_id in enumerate(draw(st.lists(st.sampled_from([2, 3, 4, 5, 0x14]), max_size=5))):
        name = {4: "", 5: "", 0x14: "1"}.get(class_id) or draw(names)
        attributes = Tlv(0xCA, bytes([draw(st.integers(1, 5))])).pack() if class_id == 4 else b""
        items[(0, 100 + n)] = FeedbagItem(name, 0, 100 + n, class_id, attributes)
    return Feedbag(tuple(items[k] for k in sorted(items)), draw(st.integers(0, 2**32 - 1)))


class SummaryTests(SynchronousTestCase):
    def setUp(self) -> None:
        world = ServiceWorld()
        self.service = FeedbagService(world.registry, world.presence, world.store, world.clock)

    @given(stored_lists())
    def test_the_summary_serves_what_the_whole_list_does(self, feedbag: Feedbag) -> None:
        """The 13,06, the buddies watched, the privacy settings and the
        special items (the icon's) are the same from the summary alone."""
        whole = KeptList.of(feedbag)
        alone = KeptList.from_summary(summary_of(feedbag))
        self.assertIsNone(alone.feedbag)
        self.assertEqual(
            self.service._list_replies(alone, "alice"), self.service._list_replies(whole, "alice")
        )
        self.assertEqual(alone.buddies, whole.buddies)
        self.assertEqual(alone.special, whole.special)
        self.assertEqual(privacy_of(alone.special, alone.buddies), privacy_of(feedbag.items))


class SignOnFromTheSummaryTests(SynchronousTestCase):
    def test_a_sign_on_reads_no_item_once_a_summary_is_kept(self) -> None:
        """A list stored without a summary is read whole once, and the
        summary worked out then is kept: the next sign-on reads only it."""
        world = ServiceWorld()
        service = FeedbagService(world.registry, world.presence, world.store, world.clock)
        world.sessions.observe(service)
        world.account("Alice")
        bob = FeedbagItem("Bob", 1, 7, 0, b"")
        group = FeedbagItem("Friends", 1, 0, 1, Tlv(0xC8, b"\x00\x07").pack())
        result_of(world.store.upsert_feedbag_items("Alice", [bob, group], 5))
        full_reads: list[str] = []
        original = world.store.get_feedbag
        world.store.get_feedbag = lambda name: (full_reads.append(name), original(name))[1]
        first, _ = world.sign_on("Alice")
        world.sign_off(first)
        self.assertEqual(len(full_reads), 1)
        second, _ = world.sign_on("Alice")
        self.assertEqual(len(full_reads), 1)
        self.assertEqual(world.registry.user_of(second).feedbag.buddies, frozenset({"bob"}))
        kept = result_of(world.store.get_feedbag_summary("Alice"))
        self.assertEqual(kept, summary_of(result_of(original("Alice"))))


class LongListTests(SynchronousTestCase):
    def test_a_list_longer_than_one_reply_is_read_whole_and_split(self) -> None:
        """A list whose items do not fit one 13,06 is served in parts (flag
        0x0001 on all but the last), read whole even from a summary."""
        world = ServiceWorld()
        service = FeedbagService(world.registry, world.presence, world.store, world.clock)
        world.account("Alice")
        items = [FeedbagItem("Friends", 1, 0, 1, b"")]
        items += [FeedbagItem(f"buddy{n:04d}", 1, n + 1, 0, b"\x00" * 60) for n in range(200)]
        result_of(world.store.upsert_feedbag_items("Alice", items, 9))
        feedbag = result_of(world.store.get_feedbag("Alice"))
        whole = service._list_replies(KeptList.of(feedbag), "Alice")
        alone = result_of(
            service._list_replies(KeptList.from_summary(summary_of(feedbag)), "Alice")
        )
        self.assertGreater(len(whole), 1)
        self.assertEqual(alone, whole)
        self.assertEqual([r.flags for r in whole], [1] * (len(whole) - 1) + [0])


class DamagedSummaryTests(SynchronousTestCase):
    def test_an_unreadable_summary_falls_back_to_the_items(self) -> None:
        """The summary is only a copy: if it cannot be read, the sign-on
        reads the items, and the user is not left shown to nobody."""
        world = ServiceWorld()
        service = FeedbagService(world.registry, world.presence, world.store, world.clock)
        world.sessions.observe(service)
        world.account("Alice")
        bob = FeedbagItem("Bob", 1, 7, 0, b"")
        group = FeedbagItem("Friends", 1, 0, 1, b"")
        broken = FeedbagSummary(5, 2, b"", ("bob",), b"\x00\x05ab")
        result_of(world.store.upsert_feedbag_items("Alice", [bob, group], 5, broken))
        alice, _ = world.sign_on("Alice")
        user = world.registry.user_of(alice)
        self.assertIsNotNone(user.feedbag.feedbag)
        self.assertEqual(user.feedbag.buddies, frozenset({"bob"}))
        self.assertIsNone(user.privacy)
