"""The security review's findings (issue 13 §3), end to end over loopback TCP
against the real services: what an outsider probing a running server sees.
The service- and protocol-level tests are in ``test_security_review.py``."""

from __future__ import annotations

import struct

from twisted.trial import unittest

from aimserver.config import load_config
from aimserver.wire.flap import Channel, SignonPayload
from aimserver.wire.tlv import Tlv, TlvList
from tests.client import BosClient, FlapClient, connect, deferred_test
from tests.harness import LoopbackServer, wait_until

ACCOUNTS = {"Alice": "secret", "Bob": "secret"}
STATUS_INVISIBLE = 0x00000100


def error_code(body: bytes) -> int:
    return struct.unpack_from("!H", body)[0]


class SecurityTestCase(unittest.TestCase):
    async def start(self) -> LoopbackServer:
        config = load_config(None, {"multisession.notify": False})
        server = await LoopbackServer.start(config, accounts=ACCOUNTS)
        self.addCleanup(server.stop)
        return server


class InvisibleOracleTests(SecurityTestCase):
    @deferred_test
    async def test_invisible_user_answers_like_an_offline_one(self) -> None:
        """An IM, a warning and the away text of an invisible user: the
        prober gets exactly what it gets for a user who is not signed on."""
        server = await self.start()
        bob = await server.session("Bob")
        bob.set_away(b"gone fishing")
        bob.flap.send_snac(
            0x01, 0x1E, TlvList((Tlv.u32(0x06, STATUS_INVISIBLE),)).pack_list(), bob.next_id()
        )
        await bob.flap.wait_snac(0x01, 0x0F)
        alice = await server.session("Alice")

        async def answers(to: str) -> list[object]:
            alice.send_im(to, b"are you there?", ack=True)
            _, im_error = await alice.flap.wait_snac(0x04, 0x01)
            warn_id = alice.warn(to)
            header, warn_error = await alice.flap.wait_snac(0x04, 0x01)
            self.assertEqual(header.request_id, warn_id)
            await alice.sync()
            return [error_code(im_error), error_code(warn_error), alice.flap.snacs(0x04, 0x07)]

        self.assertEqual(await answers("Bob"), [0x0004, 0x0004, []])
        await server.store.create_account("Carol", "secret")
        self.assertEqual(await answers("Carol"), [0x0004, 0x0004, []])
        await bob.sync()
        self.assertEqual(bob.flap.snacs(0x04, 0x07), [])


class ImSizeTests(SecurityTestCase):
    @deferred_test
    async def test_oversize_im_is_refused_not_acked(self) -> None:
        """A 20 KB IM (the server offers 8,000 bytes) gets 04,01 0x000A and
        no 04,0C, and the recipient gets nothing; a normal one still goes."""
        server = await self.start()
        bob = await server.session("Bob")
        alice = await server.session("Alice")
        alice.send_im("Bob", b"x" * 20_000, ack=True)
        _, body = await alice.flap.wait_snac(0x04, 0x01)
        self.assertEqual(error_code(body), 0x000A)
        alice.send_im("Bob", b"small", ack=True)
        await alice.flap.wait_snac(0x04, 0x0C)
        self.assertEqual(alice.flap.snacs(0x04, 0x0C), [])
        await bob.receive_im()
        await bob.sync()
        self.assertEqual(bob.flap.snacs(0x04, 0x07), [])


class ServiceConnectionTests(SecurityTestCase):
    async def service_connection(self, client: BosClient) -> FlapClient:
        _, body = await client.request(0x01, 0x04, b"\x00\x18", 0x05)
        redirect = TlvList.unpack_list(body)
        host, port = (redirect.get(0x05) or b"").decode().split(":")
        service = await connect(host, int(port))
        await service.wait_channel(Channel.SIGNON)
        service.send_frame(
            Channel.SIGNON, SignonPayload(1, TlvList((Tlv(0x06, redirect.get(0x06)),))).pack()
        )
        return service

    @deferred_test
    async def test_a_session_holds_at_most_two_per_family(self) -> None:
        """A third alert connection of one session is closed at sign-on;
        the first two keep working."""
        server = await self.start()
        alice = await server.session("Alice")
        services = [await self.service_connection(alice) for _ in range(3)]
        for service in services[:2]:
            await service.wait_snac(0x01, 0x03)
        await services[2].wait_channel(Channel.SIGNOFF)
        await services[2].wait_lost()
        [session] = server.server.registry.get("Alice").instances.values()
        self.assertEqual(len(session.secondary), 2)
        services[0].send_snac(0x01, 0x0E, b"", request_id=9)
        header, _ = await services[0].wait_snac(0x01, 0x01)
        self.assertEqual(header.request_id, 9)


class PasswordGuessingTests(unittest.TestCase):
    @deferred_test
    async def test_wrong_passwords_back_off(self) -> None:
        """After 5 wrong passwords from one address, its next logins are
        refused with 0x0018 (even with the right password, even for another
        name) while it backs off; so are the guessed name's from anywhere."""
        server = await LoopbackServer.start(
            load_config(None, {"ratelimit.enabled": False}),
            accounts={"Alice": "secret", "Bob": "secret"},
        )
        self.addCleanup(server.stop)
        for _ in range(5):
            self.assertEqual((await server.bucp("Alice", "guess1")).get_u16(0x08), 0x0005)
        self.assertEqual((await server.bucp("Alice", "secret")).get_u16(0x08), 0x0018)
        self.assertEqual((await server.roasted("Bob", "secret")).get_u16(0x08), 0x0018)
        self.assertEqual(server.server.authorizer.refusals["login rate_limit_reservation"], 2)


class ConnectionsPerAddressTests(unittest.TestCase):
    @deferred_test
    async def test_one_address_may_hold_only_so_many(self) -> None:
        """[connection] max_connections_per_address counts the auth, BOS and
        chat ports together; one more is closed before a byte is read; a
        closed one gives its place back."""
        server = await LoopbackServer.start(
            load_config(None, {"connection.max_connections_per_address": 3})
        )
        self.addCleanup(server.stop)
        bos = ("127.0.0.1", server.bos_port.getHost().port)
        chat = ("127.0.0.1", server.chat_port.getHost().port)
        held = [await connect(*server.auth_address), await connect(*bos), await connect(*chat)]
        for client in held:
            await client.wait_channel(Channel.SIGNON)
        refused = await connect(*server.auth_address)
        await refused.wait_lost()
        self.assertEqual(refused.received, [])
        await held.pop().close()
        await wait_until(lambda: server.server.addresses.open.get("127.0.0.1") == 2, "a place back")
        again = await connect(*bos)
        await again.wait_channel(Channel.SIGNON)
        for client in (*held, again):
            await client.close()
        await wait_until(lambda: not server.server.addresses.open, "every place back")


class PendingConnectionsTests(unittest.TestCase):
    @deferred_test
    async def test_connections_that_never_authenticate_are_bounded(self) -> None:
        """Under a flood of connections that never log in, on every port,
        at most [connection] max_pending_connections wait at once: each new
        one closes the oldest (channel 4), a real login still gets in, and
        the rest are closed at the login timeout. Counted in /stats."""
        server = await LoopbackServer.start(
            load_config(
                None,
                {
                    "connection.max_pending_connections": 10,
                    "connection.max_connections_per_address": 0,
                    "auth.login_timeout": 2,
                },
            ),
            accounts={"Alice": "secret"},
        )
        self.addCleanup(server.stop)
        pending = server.server.pending_connections
        ports = [
            server.auth_address,
            ("127.0.0.1", server.bos_port.getHost().port),
            ("127.0.0.1", server.chat_port.getHost().port),
        ]
        flood = []
        for n in range(30):
            client = await connect(*ports[n % 3])
            await client.wait_channel(Channel.SIGNON)
            flood.append(client)
            self.assertLessEqual(len(pending.waiting), 10)
        # The first 20 were closed to make room, each with a channel-4 frame.
        for client in flood[:20]:
            await client.wait_lost()
            self.assertEqual(client.received[-1].channel, Channel.SIGNOFF)
        self.assertEqual(pending.evicted, 20)
        # A real login and sign-on still get in (each displaces one idle
        # connection while it waits), and then leave the pending set.
        alice = await server.session("Alice")
        self.addCleanup(alice.close)
        self.assertNotIn(server.server_side(alice.flap), pending.waiting)
        # The rest are closed at the login timeout.
        for client in flood[20:]:
            await client.wait_lost(timeout=5)
        await wait_until(lambda: not pending.waiting, "no connection left waiting")
        self.assertEqual(server.server.refusals()["connection pending_limit"], pending.evicted)
