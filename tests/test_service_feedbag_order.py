"""The order TLVs (0x00C8) a client is given name exactly the items there are
(aimserver.services.feedbag_order; issue 15: "the root group's and each
group's order TLV stay consistent with the items")."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.feedbag_order import (
    TAG_ORDER,
    consistent_orders,
    member_ids,
    order_of,
)
from aimserver.store.interfaces import FeedbagItem
from aimserver.wire.tlv import Tlv, TlvList


def order(*ids: int) -> bytes:
    return Tlv(TAG_ORDER, struct.pack(f"!{len(ids)}H", *ids)).pack()


def group(group_id: int, attributes: bytes = b"") -> FeedbagItem:
    return FeedbagItem("" if group_id == 0 else f"G{group_id}", group_id, 0, 1, attributes)


def buddy(group_id: int, item_id: int) -> FeedbagItem:
    return FeedbagItem(f"b{item_id}", group_id, item_id, 0, b"")


def orders(items: list[FeedbagItem]) -> dict[int, list[int]]:
    return {
        i.group_id: order_of(TlvList.unpack_list(i.attributes)) for i in items if i.class_id == 1
    }


class ConsistentOrderTests(SynchronousTestCase):
    def test_consistent_list_is_unchanged(self) -> None:
        items = [group(0, order(5, 3)), group(3, order(9)), group(5, order(7, 8))]
        items += [buddy(3, 9), buddy(5, 8), buddy(5, 7)]
        self.assertEqual(consistent_orders(items), items)

    def test_deleted_buddy_dropped_from_its_group_order(self) -> None:
        """A client deleted a buddy but never sent its group's new order."""
        items = [group(0, order(3)), group(3, order(9, 10, 11)), buddy(3, 9), buddy(3, 11)]
        self.assertEqual(orders(consistent_orders(items)), {0: [3], 3: [9, 11]})

    def test_added_buddy_appended_keeping_the_client_order(self) -> None:
        """The buddy insert arrived, the group update not yet: the new buddy
        comes last, the others stay in the client's order."""
        items = [group(0, order(3)), group(3, order(11, 9)), buddy(3, 9), buddy(3, 11)]
        items.append(buddy(3, 4))
        self.assertEqual(orders(consistent_orders(items))[3], [11, 9, 4])

    def test_root_lists_exactly_the_groups(self) -> None:
        items = [group(0, order(7, 3, 3, 99)), group(3), group(5)]
        self.assertEqual(orders(consistent_orders(items))[0], [3, 5])

    def test_group_without_order_gets_one_only_when_it_has_members(self) -> None:
        alias = Tlv(0x0131, b"x").pack()
        empty = group(4, alias)
        self.assertEqual(consistent_orders([empty]), [empty])
        (repaired, _) = consistent_orders([group(4, alias), buddy(4, 2)])
        self.assertEqual(repaired.attributes, alias + order(2))

    def test_other_attributes_kept_in_place(self) -> None:
        before = Tlv(0x0131, b"a").pack()
        after = Tlv(0x0066, b"").pack()
        item = group(4, before + order(1, 2) + after)
        (repaired, _) = consistent_orders([item, buddy(4, 2)])
        self.assertEqual(repaired.attributes, before + order(2) + after)

    def test_duplicate_order_tlvs_collapse_to_one(self) -> None:
        item = group(4, order(2) + order(2))
        (repaired, _) = consistent_orders([item, buddy(4, 2)])
        self.assertEqual(repaired.attributes, order(2))

    def test_odd_length_order_repaired(self) -> None:
        item = group(4, Tlv(TAG_ORDER, b"\x00\x02\x00").pack())
        (repaired, _) = consistent_orders([item, buddy(4, 2)])
        self.assertEqual(repaired.attributes, order(2))

    @given(
        st.lists(st.integers(1, 6), max_size=6, unique=True),
        st.lists(st.tuples(st.integers(1, 6), st.integers(1, 20)), max_size=30),
        st.lists(st.integers(0, 25), max_size=10),
    )
    def test_every_order_names_exactly_the_members(
        self, group_ids: list[int], buddies: list[tuple[int, int]], noise: list[int]
    ) -> None:
        """Whatever the stored orders say, each one served lists each member
        once and nothing else, and repairing twice changes nothing more."""
        items = [group(0, order(*noise))]
        items += [group(g, order(*reversed(noise))) for g in group_ids]
        items += [buddy(g, i) for g, i in dict.fromkeys(buddies) if g in group_ids]
        repaired = consistent_orders(items)
        members = member_ids(items)
        for group_id, listed in orders(repaired).items():
            self.assertEqual(len(listed), len(set(listed)))
            self.assertEqual(set(listed), members.get(group_id, set()))
        self.assertEqual(consistent_orders(repaired), repaired)
