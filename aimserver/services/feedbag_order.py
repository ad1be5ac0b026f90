# -*- test-case-name: tests.test_service_feedbag_order -*-
"""The order TLVs (0x00C8) of a feedbag, made consistent with its items.

The root group's order lists its groups' IDs and each group's lists its
buddies' item IDs, in display order. Clients maintain them (a buddy insert is
followed by an update of its group with the new order), and the server stores
what they send. But an edit can leave an order naming an item that is gone,
or missing one that exists: a client that stops between its two SNACs, an
old client that never sends the group update, a server-side change. Windows
AIM draws the list from these orders, so the list a client is given (13,06)
always has orders that name exactly the items there are: stale IDs dropped,
duplicates dropped, missing ones appended in ID order, everything else kept
byte for byte. The stored list is not rewritten; the next client update of
the group replaces the stored order anyway.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import attrs

from aimserver.store.interfaces import FeedbagItem
from aimserver.wire.errors import MalformedData
from aimserver.wire.tlv import Tlv, TlvList

__all__ = ["TAG_ORDER", "consistent_orders", "member_ids", "order_of"]

TAG_ORDER = 0x00C8
CLASS_BUDDY = 0x0000
CLASS_GROUP = 0x0001


def order_of(attributes: TlvList) -> list[int]:
    """The IDs an order TLV lists (a trailing odd byte ignored)."""
    value = attributes.get(TAG_ORDER) or b""
    count = len(value) // 2
    return list(struct.unpack(f"!{count}H", value[: 2 * count]))


def member_ids(items: Sequence[FeedbagItem]) -> dict[int, set[int]]:
    """For each group ID, the IDs its order should list: the root (0) lists
    the other groups, a group lists its buddies."""
    members: dict[int, set[int]] = {}
    for item in items:
        if item.class_id == CLASS_GROUP and item.group_id != 0:
            members.setdefault(0, set()).add(item.group_id)
        elif item.class_id == CLASS_BUDDY:
            members.setdefault(item.group_id, set()).add(item.item_id)
    return members


def _repaired(item: FeedbagItem, members: set[int]) -> FeedbagItem:
    try:
        attributes = TlvList.unpack_list(item.attributes, "group attributes")
    except MalformedData:
        # Stored as sent; an unreadable block is served unchanged.
        return item
    listed = order_of(attributes)
    order = list(dict.fromkeys(i for i in listed if i in members))
    order += sorted(members.difference(order))
    value = struct.pack(f"!{len(order)}H", *order)
    orders = len(attributes.all(TAG_ORDER))
    if (orders == 1 and attributes.get(TAG_ORDER) == value) or (orders == 0 and not order):
        return item
    tlvs: list[Tlv] = []
    for tlv in attributes:
        if tlv.tag != TAG_ORDER:
            tlvs.append(tlv)
        elif orders:
            tlvs.append(Tlv(TAG_ORDER, value))
            orders = 0
    if not attributes.has(TAG_ORDER):
        tlvs.append(Tlv(TAG_ORDER, value))
    return attrs.evolve(item, attributes=b"".join(t.pack() for t in tlvs))


def consistent_orders(items: Sequence[FeedbagItem]) -> list[FeedbagItem]:
    """``items`` with every group's order naming exactly its members (see
    the module docstring); a list that is consistent comes back unchanged."""
    members = member_ids(items)
    return [
        _repaired(item, members.get(item.group_id, set())) if item.class_id == CLASS_GROUP else item
        for item in items
    ]
