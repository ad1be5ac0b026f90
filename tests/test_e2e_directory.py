"""Directory info and interest keywords end to end over loopback TCP
(issue 15, MULTISESSION.md §4, §14): one user-level record, set from any
session, read back by the user's other sessions and by others, hidden like
the user when it is offline or invisible. That the record outlives a restart
is the SQLite store's (``tests.test_store``, ``test_reopen_directory``)."""

from __future__ import annotations

import struct

from twisted.trial import unittest

from aimserver.config import load_config
from aimserver.wire.reader import Reader
from aimserver.wire.tlv import Tlv, TlvList
from tests.client import BosClient, deferred_test
from tests.harness import LoopbackServer

ACCOUNTS = {"Alice": "secret", "Bob": "secret"}
STATUS_INVISIBLE = 0x00000100
LOCATE = 0x02
FORM = TlvList(
    (
        Tlv.u16(0x000A, 1),
        Tlv(0x0001, b"Alice"),
        Tlv(0x0002, b"Liddell"),
        Tlv(0x0008, b"Oxford"),
        Tlv(0x0021, b"1 Rabbit Hole"),
    )
)


def name08(screen_name: str) -> bytes:
    raw = screen_name.encode("ascii")
    return bytes((len(raw),)) + raw


def decode_directory(body: bytes) -> tuple[int, TlvList]:
    reader = Reader(body, "02,0C")
    status = reader.u16("status")
    return status, TlvList.read_block(reader)


async def read_directory(client: BosClient, target: str) -> tuple[int, TlvList]:
    _, body = await client.request(LOCATE, 0x0B, name08(target), 0x0C)
    return decode_directory(body)


class DirectoryTests(unittest.TestCase):
    async def start(self) -> LoopbackServer:
        config = load_config(None, {"multisession.notify": False})
        server = await LoopbackServer.start(config, accounts=ACCOUNTS)
        self.addCleanup(server.stop)
        return server

    @deferred_test
    async def test_directory_info_is_one_record_per_user(self) -> None:
        """§14: one session sets directory info (02,09 → 02,0A 0x0001), the
        other sets keywords (02,0F → 02,10 0x0001); the user's sessions and
        another user read the one record back with 02,0B."""
        server = await self.start()
        alice1 = await server.session("Alice")
        alice2 = await server.session("Alice")
        bob = await server.session("Bob")

        _, body = await alice1.request(LOCATE, 0x09, FORM.pack_list(), 0x0A)
        self.assertEqual(body, b"\x00\x01")
        keywords = TlvList((Tlv(0x000B, b"Chess"), Tlv(0x000B, b"Tea")))
        _, body = await alice2.request(LOCATE, 0x0F, keywords.pack_list(), 0x10)
        self.assertEqual(body, b"\x00\x01")

        expected = TlvList(
            (
                Tlv(0x0001, b"Alice"),
                Tlv(0x0002, b"Liddell"),
                Tlv(0x0008, b"Oxford"),
                Tlv(0x0021, b"1 Rabbit Hole"),
                Tlv(0x000B, b"Chess"),
                Tlv(0x000B, b"Tea"),
            )
        )
        for reader in (alice1, alice2, bob):
            self.assertEqual(await read_directory(reader, "alice"), (0x0001, expected))

        # A later 02,09 from the other session replaces the fields, not the keywords.
        city = TlvList((Tlv(0x0008, b"London"),))
        await alice2.request(LOCATE, 0x09, city.pack_list(), 0x0A)
        status, tlvs = await read_directory(bob, "Alice")
        self.assertEqual(
            (status, list(tlvs)),
            (0x0001, [Tlv(0x0008, b"London"), Tlv(0x000B, b"Chess"), Tlv(0x000B, b"Tea")]),
        )

    @deferred_test
    async def test_refusals_and_hidden_users(self) -> None:
        """An oversize field is refused with 02,01 0x000E and a garbled body
        too; an invisible user's record reads exactly like a signed-off
        user's; the record is there again when the user signs back on."""
        server = await self.start()
        alice = await server.session("Alice")
        bob = await server.session("Bob")
        await alice.request(LOCATE, 0x09, FORM.pack_list(), 0x0A)

        oversize = TlvList((Tlv(0x0001, b"x" * 129),)).pack_list()
        _, body = await alice.request(LOCATE, 0x09, oversize, 0x01)
        self.assertEqual(struct.unpack("!H", body[:2])[0], 0x000E)
        _, body = await alice.request(LOCATE, 0x09, b"\x00\x01\x00\x09abc", 0x01)
        self.assertEqual(struct.unpack("!H", body[:2])[0], 0x000E)
        status, tlvs = await read_directory(bob, "Alice")
        self.assertEqual((status, tlvs.get(0x0001)), (0x0001, b"Alice"))

        alice.flap.send_snac(
            0x01, 0x1E, TlvList((Tlv.u32(0x06, STATUS_INVISIBLE),)).pack_list(), alice.next_id()
        )
        await alice.flap.wait_snac(0x01, 0x0F)
        _, invisible = await bob.request(LOCATE, 0x0B, name08("Alice"), 0x0C)
        _, nobody = await bob.request(LOCATE, 0x0B, name08("Nobody"), 0x0C)
        self.assertEqual(invisible, nobody)
        self.assertEqual(decode_directory(invisible), (0x0002, TlvList()))
        self.assertEqual((await read_directory(alice, "Alice"))[0], 0x0001)

        await alice.close()
        await bob.sync()
        self.assertEqual(await read_directory(bob, "Alice"), (0x0002, TlvList()))
        alice = await server.session("Alice")
        status, tlvs = await read_directory(bob, "Alice")
        self.assertEqual((status, tlvs.get(0x0008)), (0x0001, b"Oxford"))
