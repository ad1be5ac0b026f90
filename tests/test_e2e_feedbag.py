"""Feedbag edits end to end over loopback TCP, the way libpurple adds a buddy
(CLIENTS.md): 13,11, 13,08 (root, group, buddy), 13,12 on one session of a
user; the other session of the user sees the whole edit (MULTISESSION.md
§13), and the buddy then shows online on both."""

from __future__ import annotations

import struct

from twisted.trial import unittest

from aimserver.config import load_config
from aimserver.wire.feedbag import WireFeedbagItem, read_items
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import UserInfo
from tests.client import BosClient, deferred_test
from tests.harness import LoopbackServer

ACCOUNTS = {"Alice": "secret", "Bob": "secret"}
ROOT = WireFeedbagItem(b"", 0, 0, 1, Tlv(0x00C8, b"\x0a\x1e").pack())
BUDDIES = WireFeedbagItem(b"Buddies", 0x0A1E, 0, 1, Tlv(0x00C8, b"\x12\x34").pack())
BOB = WireFeedbagItem(b"Bob", 0x0A1E, 0x1234, 0)


def snac_position(client: BosClient, family: int, subtype: int) -> int:
    """Where the first received SNAC of this type is among those received."""
    for n, frame in enumerate(client.flap.received):
        if frame.channel != 2:
            continue
        header, _ = SnacHeader.unpack(frame.payload)
        if (header.family, header.subtype) == (family, subtype):
            return n
    raise AssertionError(f"no {family:02x},{subtype:02x} received")


class FeedbagCase(unittest.TestCase):
    async def start(self) -> LoopbackServer:
        config = load_config(None, {"multisession.notify": False})
        server = await LoopbackServer.start(config, accounts=ACCOUNTS)
        self.addCleanup(server.stop)
        return server

    async def feedbag_session(self, server: LoopbackServer) -> BosClient:
        """A session that uses the stored list, as libpurple's does (no 03,04)."""
        client = await server.session("Alice")
        await client.request(0x13, 0x04, b"", 0x06)
        client.flap.send_snac(0x13, 0x07, b"", client.next_id())
        await client.sync()
        return client


class FeedbagEditTests(FeedbagCase):
    @deferred_test
    async def test_add_a_buddy_the_libpurple_way_synced_to_the_other_session(self) -> None:
        server = await self.start()
        first = await self.feedbag_session(server)
        second = await self.feedbag_session(server)
        bob = await server.session("Bob")
        first.flap.send_snac(0x13, 0x11, b"", first.next_id())
        _, status = await first.request(0x13, 0x08, ROOT.pack() + BUDDIES.pack() + BOB.pack(), 0x0E)
        first.flap.send_snac(0x13, 0x12, b"", first.next_id())
        self.assertEqual(status, b"\x00\x00" * 3)
        # The other session gets the edit before Bob's arrival: a client
        # shows arrivals only for buddies it has (libpurple drops others).
        await second.sync()
        self.assertLess(snac_position(second, 0x13, 0x08), snac_position(second, 0x03, 0x0B))
        # Bob is online: both sessions of Alice see him arrive.
        for client in (first, second):
            info: UserInfo = await client.wait_arrival()
            self.assertEqual(info.screen_name, "Bob")
        # The other session got the edit as it was made, clusters included.
        await first.sync()
        await second.sync()
        pushed = [(h.subtype, body) for h, body in second.flap.snacs(0x13, 0x11)]
        pushed += [(h.subtype, body) for h, body in second.flap.snacs(0x13, 0x08)]
        pushed += [(h.subtype, body) for h, body in second.flap.snacs(0x13, 0x12)]
        self.assertEqual(
            pushed,
            [(0x11, b""), (0x08, ROOT.pack() + BUDDIES.pack() + BOB.pack()), (0x12, b"")],
        )
        self.assertEqual(first.flap.snacs(0x13, 0x08), [])
        # And the list is stored: a new session reads it back.
        third = await server.session("Alice")
        _, body = await third.request(0x13, 0x04, b"", 0x06)
        self.assertEqual(body[1:3], struct.pack("!H", 3))
        await bob.sync()

    @deferred_test
    async def test_refusals_over_tcp(self) -> None:
        """A buddy in a group that does not exist (0x000A) and an item that
        already exists (0x0003) are answered in order; nothing is pushed."""
        server = await self.start()
        first = await self.feedbag_session(server)
        second = await self.feedbag_session(server)
        _, status = await first.request(0x13, 0x08, ROOT.pack(), 0x0E)
        self.assertEqual(status, b"\x00\x00")
        await second.flap.wait_snac(0x13, 0x08)
        _, status = await first.request(0x13, 0x08, BOB.pack() + ROOT.pack(), 0x0E)
        self.assertEqual(status, b"\x00\x0a\x00\x03")
        _, status = await first.request(0x13, 0x0A, BOB.pack(), 0x0E)
        self.assertEqual(status, b"\x00\x02")
        await second.sync()
        self.assertEqual(second.flap.snacs(0x13, 0x08), [])
        self.assertEqual(second.flap.snacs(0x13, 0x0A), [])

    @deferred_test
    async def test_group_orders_served_consistent_with_the_items(self) -> None:
        """A client that adds a buddy without updating its group, and
        deletes one without updating it either: a new session's list still
        has each group's order naming exactly its buddies (0x00C8)."""
        server = await self.start()
        first = await self.feedbag_session(server)
        _, status = await first.request(0x13, 0x08, ROOT.pack() + BUDDIES.pack(), 0x0E)
        self.assertEqual(status, b"\x00\x00" * 2)
        carol = WireFeedbagItem(b"Carol", 0x0A1E, 0x2345, 0)
        _, status = await first.request(0x13, 0x08, carol.pack(), 0x0E)
        self.assertEqual(status, b"\x00\x00")

        async def served_order() -> bytes:
            reader = await server.session("Alice")
            _, body = await reader.request(0x13, 0x04, b"", 0x06)
            items = read_items(body[3:-4])
            (group,) = [i for i in items if i.group_id == 0x0A1E and i.class_id == 1]
            return TlvList.unpack_list(group.attributes).get(0x00C8) or b""

        # Stored as sent ([0x1234], Bob never added); served as it is.
        self.assertEqual(await served_order(), b"\x23\x45")
        _, status = await first.request(0x13, 0x08, BOB.pack(), 0x0E)
        self.assertEqual(await served_order(), b"\x12\x34\x23\x45")
        _, status = await first.request(0x13, 0x0A, BOB.pack(), 0x0E)
        self.assertEqual(status, b"\x00\x00")
        self.assertEqual(await served_order(), b"\x23\x45")

    @deferred_test
    async def test_a_sibling_still_signing_on_misses_no_edit(self) -> None:
        """§13, the sign-on race over TCP: a second session has its list
        (13,06) but has not sent client ready (01,02) when the first adds
        Bob; it gets the edit pushed all the same, and once ready, Bob's
        arrival: nothing falls between the list it read and the edits."""
        server = await self.start()
        first = await self.feedbag_session(server)
        bob = await server.session("Bob")
        late = await server.session("Alice", ready=False)
        _, listed = await late.request(0x13, 0x04, b"", 0x06)
        self.assertEqual(listed[1:3], b"\x00\x00")
        _, status = await first.request(0x13, 0x08, ROOT.pack() + BUDDIES.pack() + BOB.pack(), 0x0E)
        self.assertEqual(status, b"\x00\x00" * 3)
        _, pushed = await late.flap.wait_snac(0x13, 0x08)
        self.assertEqual(pushed, ROOT.pack() + BUDDIES.pack() + BOB.pack())
        late.flap.send_snac(0x13, 0x07, b"", late.next_id())
        late.ready()
        self.assertEqual((await late.wait_arrival()).screen_name, "Bob")
        await bob.sync()

    @deferred_test
    async def test_class_limit_and_nothing_half_written(self) -> None:
        """One PD-info item is allowed (13,03 says so, and it is enforced):
        a second gets 0x000C, while the valid items of the same SNAC are
        stored; an item refused in a SNAC leaves the rest whole, never a
        part of an item."""
        server = await self.start()
        first = await self.feedbag_session(server)
        pd1 = WireFeedbagItem(b"", 0, 0x0101, 4, Tlv(0x00CA, b"\x01").pack())
        pd2 = WireFeedbagItem(b"", 0, 0x0102, 4, Tlv(0x00CA, b"\x02").pack())
        _, status = await first.request(0x13, 0x08, ROOT.pack() + pd1.pack() + pd2.pack(), 0x0E)
        self.assertEqual(status, b"\x00\x00\x00\x00\x00\x0c")
        reader = await server.session("Alice")
        _, body = await reader.request(0x13, 0x04, b"", 0x06)
        self.assertEqual(
            sorted((i.group_id, i.item_id) for i in read_items(body[3:-4])), [(0, 0), (0, 0x0101)]
        )

    @deferred_test
    async def test_query_if_modified_over_tcp(self) -> None:
        """13,05 with the stored time and count: 13,0F; after an edit by
        another session, the same cached values get the whole list."""
        server = await self.start()
        first = await self.feedbag_session(server)
        await first.request(0x13, 0x08, ROOT.pack() + BUDDIES.pack(), 0x0E)
        second = await server.session("Alice")
        _, body = await second.request(0x13, 0x04, b"", 0x06)
        cached = body[-4:] + body[1:3]
        _, answer = await second.request(0x13, 0x05, cached, 0x0F)
        self.assertEqual(answer, cached)
        await first.request(0x13, 0x08, BOB.pack(), 0x0E)
        _, listed = await second.request(0x13, 0x05, cached, 0x06)
        self.assertEqual(listed[1:3], b"\x00\x03")


PD_BLOCK_DENIED = WireFeedbagItem(
    b"", 0, 0x0100, 4, Tlv(0x00CA, b"\x04").pack() + Tlv.u32(0x00CB, 0xFFFFFFFF).pack()
)
DENY_BOB = WireFeedbagItem(b"Bob", 0, 0x0200, 3)


class BlockingTests(FeedbagCase):
    @deferred_test
    async def test_block_a_user_who_then_cannot_reach_you(self) -> None:
        """Alice blocks Bob the way libpurple does (PD mode 4 and a deny
        item): Bob sees her leave, his IM and warning get "not logged on",
        and her IM to him gets 0x0010; unblocking brings her back."""
        server = await self.start()
        alice = await self.feedbag_session(server)
        bob = await server.session("Bob", buddies=["Alice"])
        await bob.wait_arrival()
        _, status = await alice.request(
            0x13, 0x08, ROOT.pack() + PD_BLOCK_DENIED.pack() + DENY_BOB.pack(), 0x0E
        )
        self.assertEqual(status, b"\x00\x00" * 3)
        self.assertEqual((await bob.wait_departure()).screen_name, "Alice")
        bob.send_im("Alice", b"hello?", ack=True)
        _, body = await bob.flap.wait_snac(0x04, 0x01)
        self.assertEqual(body[:2], b"\x00\x04")
        alice.send_im("Bob", b"go away", ack=True)
        _, body = await alice.flap.wait_snac(0x04, 0x01)
        self.assertEqual(body[:2], b"\x00\x10")
        _, status = await alice.request(0x13, 0x0A, DENY_BOB.pack(), 0x0E)
        self.assertEqual(status, b"\x00\x00")
        self.assertEqual((await bob.wait_arrival()).screen_name, "Alice")

    @deferred_test
    async def test_aim_4_blocks_with_09_07(self) -> None:
        """An AIM 3-4 client's 09,07 (add to the deny list) blocks as the
        feedbag's deny item does, and 09,08 lifts it."""
        server = await self.start()
        alice = await server.session("Alice")
        bob = await server.session("Bob", buddies=["Alice"])
        await bob.wait_arrival()
        alice.flap.send_snac(0x09, 0x07, b"\x03Bob", alice.next_id())
        self.assertEqual((await bob.wait_departure()).screen_name, "Alice")
        bob.send_im("Alice", b"hello?", ack=True)
        _, body = await bob.flap.wait_snac(0x04, 0x01)
        self.assertEqual(body[:2], b"\x00\x04")
        alice.flap.send_snac(0x09, 0x08, b"\x03Bob", alice.next_id())
        self.assertEqual((await bob.wait_arrival()).screen_name, "Alice")
