"""Directory search end to end over loopback TCP (MULTISESSION.md §14):
ODir (0x000F) on a service connection and UserLookup (0x000A) on BOS find
the user-level directory records and e-mail addresses set from any
session, only of users who allow it and do not block the searcher, within
bounds, and every refusal code."""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from aimserver.config import load_config
from aimserver.store.interfaces import DirectoryFields, StoreError
from aimserver.wire.odir import KeywordItem, KeywordListReply, ODirInfoReply
from aimserver.wire.reader import string08
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList
from tests.client import BosClient, deferred_test
from tests.harness import LoopbackServer, wait_until

ACCOUNTS = {"Alice": "secret", "Bob": "secret", "Carol": "secret", "Dave": "secret"}
ODIR = 0x000F
LOOKUP = 0x000A
FORM = TlvList(
    (
        Tlv.u16(0x000A, 1),
        Tlv(0x0001, b"Alice"),
        Tlv(0x0002, b"Liddell"),
        Tlv(0x0007, b"Oxon"),
        Tlv(0x0008, b"Oxford"),
        Tlv(0x0006, b"uk"),
    )
)


def error_code(body: bytes) -> int:
    return struct.unpack_from("!H", body)[0]


async def search(odir: BosClient, *tlvs: Tlv) -> ODirInfoReply:
    _, body = await odir.request(ODIR, 0x02, TlvList(tlvs).pack_list(), 0x03)
    return ODirInfoReply.unpack(body)


async def found(odir: BosClient, *tlvs: Tlv) -> list[bytes]:
    reply = await search(odir, *tlvs)
    assert reply.status == 0x0005, reply
    return [result.get(0x0009) or b"" for result in reply.results]


async def lookup(client: BosClient, email: bytes) -> tuple[int, bytes]:
    """(subtype, body) of the answer to 0A,02: 0x03 names, or 0x01 a code."""
    request_id = client.next_id()
    client.flap.send_snac(LOOKUP, 0x02, email, request_id)
    frame = await client.flap.wait(
        lambda f: f.channel == 2 and f.payload[:2] == b"\x00\x0a", what="0A,03 or 0A,01"
    )
    header, body = SnacHeader.unpack(frame.payload)
    assert header.request_id == request_id, (header, request_id)
    return header.subtype, body


class ODirTestCase(unittest.TestCase):
    async def start(self) -> LoopbackServer:
        config = load_config(None, {"multisession.notify": False})
        server = await LoopbackServer.start(config, accounts=ACCOUNTS, cached=True)
        self.addCleanup(server.stop)
        return server

    async def publish(self, server: LoopbackServer, name: str, **settings: Any) -> BosClient:
        """Sign ``name`` on and set its directory record (FORM), keywords and
        e-mail address through its own session and admin connection."""
        client = await server.session(name)
        form = settings.get("form", FORM)
        _, body = await client.request(0x02, 0x09, form.pack_list(), 0x0A)
        assert body == b"\x00\x01", body
        keywords = TlvList(Tlv(0x000B, k) for k in settings.get("keywords", ()))
        await client.request(0x02, 0x0F, keywords.pack_list(), 0x10)
        email = settings.get("email")
        if email is not None:
            admin = await client.open_service(0x0007)
            await admin.request(0x07, 0x04, Tlv(0x0011, email).pack(), 0x05)
            registration = settings.get("registration", 2)
            await admin.request(0x07, 0x04, Tlv.u16(0x0013, registration).pack(), 0x05)
        return client


class SearchTests(ODirTestCase):
    @deferred_test
    async def test_user_profile_and_directory_search(self) -> None:
        """§14: what one session of Alice sets is found by another user's
        search by name, keyword and e-mail, and listed among the keywords;
        a user who does not allow searches is not found."""
        server = await self.start()
        alice = await self.publish(
            server, "Alice", keywords=[b"Chess", b"Tea"], email=b"Alice@Example.org"
        )
        hidden = TlvList([Tlv.u16(0x000A, 0), Tlv(0x0001, b"Alice")])
        await self.publish(server, "Carol", form=hidden, keywords=[b"Chess"])
        bob = await server.session("Bob")
        odir = await bob.open_service(ODIR)

        reply = await search(odir, Tlv(0x0001, b"alice"), Tlv(0x0008, b"OXFORD"))
        self.assertEqual(
            reply,
            ODirInfoReply(
                0x0005,
                [
                    TlvList(
                        [
                            Tlv(0x0001, b"Alice"),
                            Tlv(0x0002, b"Liddell"),
                            Tlv(0x0007, b"Oxon"),
                            Tlv(0x0008, b"Oxford"),
                            Tlv(0x0006, b"uk"),
                            Tlv(0x0009, b"Alice"),
                        ]
                    )
                ],
            ),
        )
        self.assertEqual(await found(odir, Tlv(0x000B, b"chess")), [b"Alice"])
        self.assertEqual(await found(odir, Tlv(0x0005, b"ALICE@example.org")), [b"Alice"])
        _, body = await odir.request(ODIR, 0x04, b"", 0x05)
        self.assertEqual(
            KeywordListReply.unpack(body),
            KeywordListReply(1, [KeywordItem(2, 0, b"Chess"), KeywordItem(2, 0, b"Tea")]),
        )
        await alice.close()
        self.assertEqual(await found(odir, Tlv(0x0002, b"Liddell")), [b"Alice"])

    @deferred_test
    async def test_refusals(self) -> None:
        """0x0004 with no name to search by; 0x0003 past 25 results (none
        shown); 0F,01 0x000E for an oversize value or a body that is not
        TLVs, 0x0001 for an unknown subtype; status 0x0001 when the store
        fails; the connection keeps working."""
        server = await self.start()
        for n in range(26):
            name = f"Many{n:02}"
            await server.store.create_account(name, "secret")
            fields = DirectoryFields(last_name=b"Smith", allow_search=True)
            await server.store.set_directory_fields(name, fields)
        bob = await server.session("Bob")
        odir = await bob.open_service(ODIR)
        self.assertEqual(await search(odir, Tlv(0x0008, b"Oxford")), ODirInfoReply(0x0004))
        self.assertEqual(await search(odir, Tlv(0x0002, b"smith")), ODirInfoReply(0x0003))
        await server.store.delete_account("Many25")
        self.assertEqual(len(await found(odir, Tlv(0x0002, b"smith"))), 25)

        for subtype, body, code in (
            (0x02, Tlv(0x0002, b"x" * 129).pack(), 0x000E),
            (0x02, b"\x00\x02\x00\x09abc", 0x000E),
            (0x09, b"", 0x0001),
        ):
            _, reply = await odir.request(ODIR, subtype, body, 0x01)
            self.assertEqual(error_code(reply), code)

        def failing(*args: Any) -> defer.Deferred[Any]:
            return defer.fail(StoreError("disk on fire"))

        self.patch(server.server.store, "search_directory", failing)
        self.assertEqual(await search(odir, Tlv(0x0002, b"smith")), ODirInfoReply(0x0001))
        await bob.sync()
        self.assertTrue(odir.flap.connected_now)

    @deferred_test
    async def test_blocked_searcher_does_not_find(self) -> None:
        """A user who blocks the searcher (a deny from its session, 09,07)
        is not found, online or not, by name, keyword or e-mail; someone
        else still finds it."""
        server = await self.start()
        carol = await self.publish(server, "Carol", keywords=[b"Chess"], email=b"c@example.org")
        carol.flap.send_snac(0x09, 0x07, string08(b"Bob"), carol.next_id())
        await carol.sync()
        bob = await server.session("Bob")
        dave = await server.session("Dave")
        registry = server.server.registry
        queries = [Tlv(0x0001, b"Alice"), Tlv(0x000B, b"Chess"), Tlv(0x0005, b"c@example.org")]
        for online in (True, False):
            bob_odir = await bob.open_service(ODIR)
            dave_odir = await dave.open_service(ODIR)
            for tlv in queries:
                self.assertEqual(await found(bob_odir, tlv), [], (online, tlv))
                self.assertEqual(await found(dave_odir, tlv), [b"Carol"], (online, tlv))
            self.assertEqual(await lookup(bob, b"c@example.org"), (0x01, b"\x00\x14"))
            self.assertEqual(await lookup(dave, b"c@example.org"), (0x03, Tlv(1, b"Carol").pack()))
            await bob_odir.close()
            await dave_odir.close()
            if online:
                await carol.close()
                await wait_until(lambda: registry.get("carol") is None, "Carol signed off")


class UserLookupTests(ODirTestCase):
    @deferred_test
    async def test_find_by_email(self) -> None:
        """0A,02 on BOS: the accounts with the address that let themselves
        be found by it; none is 0A,01 0x0014, an address longer than any can
        be 0x000E."""
        server = await self.start()
        await self.publish(server, "Alice", email=b"shared@example.org")
        await self.publish(server, "Carol", email=b"Shared@example.org", registration=3)
        await self.publish(server, "Dave", email=b"shared@example.org", registration=1)
        bob = await server.session("Bob")
        subtype, body = await lookup(bob, b"SHARED@EXAMPLE.ORG")
        self.assertEqual(
            (subtype, TlvList.unpack_list(body)),
            (0x03, TlvList([Tlv(0x0001, b"Alice"), Tlv(0x0001, b"Carol")])),
        )
        self.assertEqual(await lookup(bob, b"nobody@example.org"), (0x01, b"\x00\x14"))
        self.assertEqual(await lookup(bob, b""), (0x01, b"\x00\x14"))
        self.assertEqual(await lookup(bob, b"x" * 300), (0x01, b"\x00\x0e"))
