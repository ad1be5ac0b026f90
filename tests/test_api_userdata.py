"""The feedbag and BART read endpoints' pure parts (``aimserver.api.userdata``):
groups in display order whatever state the stored orders are in, and the
content type an icon is served with."""

from __future__ import annotations

from twisted.trial import unittest

from aimserver.api.userdata import groups_in_display_order, image_type
from aimserver.store.interfaces import FeedbagItem
from aimserver.wire.tlv import Tlv


def order(*ids: int) -> bytes:
    return Tlv(0x00C8, b"".join(i.to_bytes(2, "big") for i in ids)).pack()


def group(name: str, group_id: int, attributes: bytes = b"") -> FeedbagItem:
    return FeedbagItem(name, group_id, 0, 1, attributes)


def buddy(name: str, group_id: int, item_id: int) -> FeedbagItem:
    return FeedbagItem(name, group_id, item_id, 0, b"")


class GroupsTests(unittest.SynchronousTestCase):
    def test_the_orders_decide(self) -> None:
        items = (
            group("", 0, order(2, 1)),
            group("One", 1, order(11, 10)),
            group("Two", 2),
            buddy("Ann", 1, 10),
            buddy("Ben", 1, 11),
            buddy("Cy", 2, 20),
        )
        self.assertEqual(
            groups_in_display_order(items),
            [
                {"group_id": 2, "group_name": "Two", "buddies": [{"name": "Cy", "item_id": 20}]},
                {
                    "group_id": 1,
                    "group_name": "One",
                    "buddies": [{"name": "Ben", "item_id": 11}, {"name": "Ann", "item_id": 10}],
                },
            ],
        )

    def test_without_orders_by_id_and_stale_entries_dropped(self) -> None:
        """No root, an order naming items that are gone, a buddy whose group
        is gone, an unreadable attribute block: every group and buddy still
        listed once, unknown ones after the ordered, in ID order."""
        items = (
            group("B", 5, order(99, 51)),
            group("A", 4, b"\x00\xc8\x00\x09"),  # truncated TLV
            buddy("x", 4, 41),
            buddy("y", 4, 40),
            buddy("z", 5, 50),
            buddy("w", 5, 51),
            buddy("orphan", 7, 70),
        )
        answer = groups_in_display_order(items)
        self.assertEqual([g["group_id"] for g in answer], [4, 5])
        self.assertEqual([b["item_id"] for b in answer[0]["buddies"]], [40, 41])
        self.assertEqual([b["item_id"] for b in answer[1]["buddies"]], [51, 50])

    def test_empty(self) -> None:
        self.assertEqual(groups_in_display_order(()), [])
        self.assertEqual(groups_in_display_order((group("", 0),)), [])


class ImageTypeTests(unittest.SynchronousTestCase):
    def test_signatures(self) -> None:
        for data, kind in (
            (b"GIF89a...", "image/gif"),
            (b"GIF87a...", "image/gif"),
            (b"\xff\xd8\xff\xe0...", "image/jpeg"),
            (b"\x89PNG\r\n\x1a\n...", "image/png"),
            (b"BM....", "image/bmp"),
            (b"<html><script>", "application/octet-stream"),
            (b"", "application/octet-stream"),
        ):
            self.assertEqual(image_type(data), kind, data)
