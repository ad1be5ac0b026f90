"""Account settings (Admin 0x0007) end to end over loopback TCP, through a
service connection (01,04 for 0x0007) and the account cache, as the server
runs: the display format reaches every session of the user and its
watchers, the settings are the user's (MULTISESSION.md §4), a password
change takes effect for the next login at once while the user's sessions
stay on (docs/multisession.md), and every refusal code."""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from aimserver.config import load_config
from aimserver.store.interfaces import StoreError
from aimserver.wire.admin import AdminInfoReply, ConfirmReply
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import UserInfo
from tests.client import BosClient, deferred_test
from tests.harness import LoopbackServer

ACCOUNTS = {"Alice": "secret", "Bob Smith": "hunter2"}
ADMIN = 0x0007


def error_code(body: bytes) -> int:
    return struct.unpack_from("!H", body)[0]


def refused(code: int) -> TlvList:
    return TlvList([Tlv.u16(0x0008, code), Tlv(0x0004, b"")])


async def query(admin: BosClient, *tags: int) -> TlvList:
    body = TlvList(Tlv.empty(tag) for tag in tags).pack_list()
    _, reply = await admin.request(ADMIN, 0x02, body, 0x03)
    decoded = AdminInfoReply.unpack(reply)
    assert decoded.permissions == 0x0003, decoded
    return decoded.tlvs


async def change(admin: BosClient, *tlvs: Tlv) -> TlvList:
    _, reply = await admin.request(ADMIN, 0x04, TlvList(tlvs).pack_list(), 0x05)
    decoded = AdminInfoReply.unpack(reply)
    assert decoded.permissions == 0x0003, decoded
    return decoded.tlvs


async def confirm(admin: BosClient) -> int:
    _, reply = await admin.request(ADMIN, 0x06, b"", 0x07)
    return ConfirmReply.unpack(reply).status


async def admin_error(admin: BosClient, subtype: int, body: bytes) -> int:
    _, reply = await admin.request(ADMIN, subtype, body, 0x01)
    return error_code(reply)


class AdminTestCase(unittest.TestCase):
    async def start(self) -> LoopbackServer:
        config = load_config(None, {"multisession.notify": False})
        server = await LoopbackServer.start(config, accounts=ACCOUNTS, cached=True)
        self.addCleanup(server.stop)
        return server

    def patch_store(self, server: LoopbackServer, name: str, replacement: Any) -> None:
        """Replace one method of the store the server's services hold."""
        self.patch(server.server.store, name, replacement)


def failing(*args: Any) -> defer.Deferred[Any]:
    return defer.fail(StoreError("disk on fire"))


class DisplayFormatTests(AdminTestCase):
    @deferred_test
    async def test_user_level_data_display_format_reaches_every_session(self) -> None:
        """§4: one session changes the display format; both sessions of the
        user get 01,0F and a watcher 03,0B in the new form, the other
        session reads it back, and it is the account's from now on (the
        next login is answered with it)."""
        server = await self.start()
        bob1 = await server.session("Bob Smith", "hunter2")
        bob2 = await server.session("Bob Smith", "hunter2")
        alice = await server.session("Alice", buddies=["bobsmith"])
        self.assertEqual((await alice.wait_arrival()).screen_name, "Bob Smith")
        for client in (bob1, bob2):
            await client.sync()
            client.flap.snacs(0x01, 0x0F)
        admin = await bob1.open_service(ADMIN)

        self.assertEqual(
            await change(admin, Tlv(0x0001, b"BOB SMITH")), TlvList([Tlv(0x0001, b"BOB SMITH")])
        )
        for client in (bob1, bob2):
            _, body = await client.flap.wait_snac(0x01, 0x0F)
            self.assertEqual(UserInfo.unpack(body).screen_name, "BOB SMITH")
        self.assertEqual((await alice.wait_arrival()).screen_name, "BOB SMITH")
        admin2 = await bob2.open_service(ADMIN)
        self.assertEqual(await query(admin2, 0x0001), TlvList([Tlv(0x0001, b"BOB SMITH")]))
        _, body = await bob2.request(0x01, 0x0E, b"", 0x0F)
        self.assertEqual(UserInfo.unpack(body).screen_name, "BOB SMITH")
        login = await server.bucp("bobsmith", "hunter2")
        self.assertEqual(login.get(0x0001), b"BOB SMITH")
        self.assertEqual((await server.store.get_account("bob smith")).screen_name, "BOB SMITH")

    @deferred_test
    async def test_format_refusals(self) -> None:
        """0x000B (length), 0x0006 (not a screen name), 0x0001 (another
        name); nothing changes and nobody is told."""
        server = await self.start()
        bob = await server.session("Bob Smith", "hunter2")
        await bob.sync()
        bob.flap.snacs(0x01, 0x0F)
        admin = await bob.open_service(ADMIN)
        for raw, code in ((b"Bo", 0x000B), (b"Bob_Smith", 0x0006), (b"Rob Smith", 0x0001)):
            self.assertEqual(await change(admin, Tlv(0x0001, raw)), refused(code))
        await bob.sync()
        self.assertEqual(bob.flap.unexpected(), [])
        self.assertEqual(await query(admin, 0x0001), TlvList([Tlv(0x0001, b"Bob Smith")]))


class SettingsTests(AdminTestCase):
    @deferred_test
    async def test_email_registration_and_confirmation(self) -> None:
        """The address (kept in lower case), the registration status and the
        confirmation, with their refusals; what one session sets, another
        reads."""
        server = await self.start()
        alice1 = await server.session("Alice")
        alice2 = await server.session("Alice")
        admin = await alice1.open_service(ADMIN)
        other = await alice2.open_service(ADMIN)

        self.assertEqual(await query(admin, 0x0011), TlvList([Tlv(0x0011, b"")]))
        self.assertEqual(await confirm(admin), 0x0023)
        self.assertEqual(
            await change(admin, Tlv(0x0011, b"Alice@Example.ORG")),
            TlvList([Tlv(0x0011, b"alice@example.org")]),
        )
        self.assertEqual(await change(admin, Tlv(0x0011, b"x" * 255)), refused(0x000D))
        self.assertEqual(await change(admin, Tlv(0x0011, b"not an address")), refused(0x0008))
        self.assertEqual(await change(admin, Tlv.u16(0x0013, 3)), TlvList([Tlv.u16(0x0013, 3)]))
        self.assertEqual(await change(admin, Tlv.u16(0x0013, 4)), refused(0x0009))
        self.assertEqual(
            await query(other, 0x0011, 0x0013),
            TlvList([Tlv(0x0011, b"alice@example.org"), Tlv.u16(0x0013, 3)]),
        )
        self.assertEqual(await confirm(other), 0x0000)
        self.assertEqual(await confirm(admin), 0x001E)
        account = await server.store.get_account("alice")
        self.assertEqual(
            (account.email, account.registration_status, account.confirmed),
            ("alice@example.org", 3, True),
        )

    @deferred_test
    async def test_bad_requests(self) -> None:
        """Anything else is a 07,01 and the connection keeps working: a query
        or change naming nothing known 0x0008, an unknown subtype 0x0001, a
        body that is not TLVs 0x000E; a store failure is 0x0013 in a change
        reply, 0x0005 for a query or a confirmation."""
        server = await self.start()
        alice = await server.session("Alice")
        admin = await alice.open_service(ADMIN)
        self.assertEqual(await admin_error(admin, 0x02, Tlv.empty(0x0099).pack()), 0x0008)
        self.assertEqual(await admin_error(admin, 0x04, Tlv(0x0099, b"x").pack()), 0x0008)
        self.assertEqual(await admin_error(admin, 0x08, b""), 0x0001)
        self.assertEqual(await admin_error(admin, 0x04, b"\x00\x11\x00\x09abc"), 0x000E)

        self.patch_store(server, "set_email", failing)
        self.assertEqual(await change(admin, Tlv(0x0011, b"a@example.org")), refused(0x0013))
        self.patch_store(server, "get_account", failing)
        self.patch_store(server, "peek_account", lambda name: None)
        self.assertEqual(await admin_error(admin, 0x06, b""), 0x0005)
        self.assertEqual(await admin_error(admin, 0x02, Tlv.empty(0x0001).pack()), 0x0005)
        await alice.sync()
        self.assertTrue(alice.flap.connected_now and admin.flap.connected_now)


class PasswordTests(AdminTestCase):
    @deferred_test
    async def test_password_change(self) -> None:
        """The refusals (0x000F no old password, 0x0002 a wrong one, 0x000C a
        new one of the wrong length), then a change: the old password is
        refused at the next login at once (BUCP and roasted), the new one
        works, and both of the user's sessions stay on and keep working."""
        server = await self.start()
        alice1 = await server.session("Alice")
        alice2 = await server.session("Alice")
        bob = await server.session("Bob Smith", "hunter2")
        admin = await alice1.open_service(ADMIN)
        empty = Tlv.empty(0x0002)

        async def password(new: bytes, old: bytes | None) -> list[Tlv]:
            tlvs = [Tlv(0x0002, new)] + ([Tlv(0x0012, old)] if old is not None else [])
            return list(await change(admin, *tlvs))

        self.assertEqual(await password(b"newpass", None), [empty, Tlv.u16(0x0008, 0x000F)])
        self.assertEqual(await password(b"newpass", b"wrong"), [empty, Tlv.u16(0x0008, 0x0002)])
        self.assertEqual(await password(b"new", b"secret"), [empty, Tlv.u16(0x0008, 0x000C)])
        self.assertEqual((await server.bucp("Alice", "secret")).get(0x0008), None)

        self.assertEqual(await password(b"newpass", b"secret"), [empty])
        self.assertEqual((await server.bucp("Alice", "secret")).get_u16(0x0008), 0x0005)
        self.assertEqual((await server.roasted("Alice", "secret")).get_u16(0x0008), 0x0005)
        self.assertIsNone((await server.roasted("Alice", "newpass")).get(0x0008))
        alice3 = await server.session("Alice", "newpass")

        for session in (alice1, alice2, alice3):
            session.send_im("Bob Smith", b"still here")
            _, text, _ = await bob.receive_im()
            self.assertEqual(text, b"still here")
        self.assertEqual(len(server.server.registry.get("alice").instances), 3)

    @deferred_test
    async def test_too_many_wrong_old_passwords(self) -> None:
        """After five wrong old passwords even the right one gets 0x0013."""
        server = await self.start()
        alice = await server.session("Alice")
        admin = await alice.open_service(ADMIN)
        for _ in range(5):
            await change(admin, Tlv(0x0002, b"newpass"), Tlv(0x0012, b"guess"))
        tlvs = await change(admin, Tlv(0x0002, b"newpass"), Tlv(0x0012, b"secret"))
        self.assertEqual(list(tlvs), [Tlv.empty(0x0002), Tlv.u16(0x0008, 0x0013)])
        self.assertIsNone((await server.bucp("Alice", "secret")).get(0x0008))
