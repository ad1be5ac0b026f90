"""End to end over real TCP: classic clients sign on by BUCP and by the roasted
FLAP login, see each other arrive, exchange IMs and sign off."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor, task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from aimserver.config import load_config
from aimserver.store.credentials import roast
from aimserver.wire.flap import Channel, FlapFrame, SignonPayload
from aimserver.wire.tlv import Tlv, TlvList
from tests.client import (
    BosClient,
    FlapClient,
    WaitTimeout,
    connect,
    deferred_test,
    split_address,
)
from tests.harness import LoopbackServer, wait_until


class FoundationTests(unittest.TestCase):
    async def _server(self) -> LoopbackServer:
        server = await LoopbackServer.start(accounts={"Alice": "secret", "Bob Smith": "hunter2"})
        self.addCleanup(server.stop)
        return server

    @deferred_test
    async def test_two_users_sign_on_see_each_other_and_exchange_ims(self) -> None:
        """A signs on by BUCP, B by the roasted FLAP login; each lists the other
        and sees the arrival; IMs flow both ways with and without host ack; when
        B signs off A sees the departure and an IM to B gets "not logged on"."""
        server = await self._server()

        login_a = await server.bucp("alice", "secret")
        self.assertEqual(login_a.get(0x01), b"Alice")
        self.assertEqual(len(login_a.get(0x06) or b""), 256)
        alice = await BosClient.sign_on(login_a, buddies=["bobsmith"])

        login_b = await server.roasted("BOBSMITH", "hunter2")
        self.assertEqual(login_b.get(0x01), b"Bob Smith")
        bob = await BosClient.sign_on(login_b, buddies=["Alice"])

        # Bob sees Alice (already online) as soon as he is ready; Alice sees Bob arrive.
        arrived = await bob.wait_arrival()
        self.assertEqual(arrived.screen_name, "Alice")
        arrived = await alice.wait_arrival()
        self.assertEqual(arrived.screen_name, "Bob Smith")

        # Alice -> Bob with a host ack; the text and charset pass through byte-exactly.
        request_id = alice.send_im(
            "bob smith", b"<HTML>hi \xe9</HTML>", ack=True, cookie=b"12345678"
        )
        sender, text, tlvs = await bob.receive_im()
        self.assertEqual((sender.screen_name, text), ("Alice", b"<HTML>hi \xe9</HTML>"))
        self.assertFalse(tlvs.has(0x03))
        header, body = await alice.flap.wait_snac(0x04, 0x0C)
        self.assertEqual(header.request_id, request_id)
        self.assertEqual(body, b"12345678" + b"\x00\x01" + b"\x09bob smith")

        # Bob -> Alice without an ack: no 04,0C comes back (Bob's round trip
        # proves the server has answered everything before it).
        bob.send_im("Alice", b"hello back")
        sender, text, _ = await alice.receive_im()
        self.assertEqual((sender.screen_name, text), ("Bob Smith", b"hello back"))
        await bob.sync()
        self.assertEqual(bob.flap.snacs(0x04, 0x0C), [])

        # Bob signs off: Alice sees one departure; an IM to Bob is refused.
        await bob.close()
        departed = await alice.wait_departure()
        self.assertEqual(departed.screen_name, "Bob Smith")
        request_id = alice.send_im("Bob Smith", b"are you there?")
        header, body = await alice.flap.wait_snac(0x04, 0x01)
        self.assertEqual((header.request_id, body), (request_id, b"\x00\x04"))

    @deferred_test
    async def test_second_legacy_login_disconnects_the_first(self) -> None:
        """A second login of the same screen name from a client without
        multi-connection support disconnects the first with channel-4 error
        0x0001 (signed on elsewhere)."""
        server = await self._server()
        first = await BosClient.sign_on(await server.bucp("Alice", "secret", flags=None))
        second = await BosClient.sign_on(await server.bucp("Alice", "secret", flags=None))
        frame = await first.flap.wait_channel(Channel.SIGNOFF)
        self.assertEqual(TlvList.unpack_list(frame.payload).get_u16(0x0009), 0x0001)
        await first.flap.wait_lost()
        self.assertTrue(second.flap.connected_now)

    @deferred_test
    async def test_wrong_password_and_unknown_user_are_refused(self) -> None:
        """Wrong password gives login error 0x0005 on both login methods, and
        so does an unknown name: logins do not tell which names exist."""
        server = await self._server()
        self.assertEqual((await server.bucp("Alice", "wrong")).get_u16(0x08), 0x0005)
        self.assertEqual((await server.bucp("Nobody", "secret")).get_u16(0x08), 0x0005)
        self.assertEqual((await server.roasted("Alice", "wrong")).get_u16(0x08), 0x0005)
        self.assertEqual((await server.roasted("Nobody", "x")).get_u16(0x08), 0x0005)

    @deferred_test
    async def test_unknown_name_revealed_when_configured(self) -> None:
        """With [auth] reveal_unknown_names an unknown name gets 0x0001, as AOL answered."""
        server = await LoopbackServer.start(
            load_config(None, {"auth.reveal_unknown_names": True}), accounts={"Alice": "secret"}
        )
        self.addCleanup(server.stop)
        self.assertEqual((await server.bucp("Nobody", "secret")).get_u16(0x08), 0x0001)
        self.assertEqual((await server.roasted("Nobody", "x")).get_u16(0x08), 0x0001)


class BadInputTests(unittest.TestCase):
    """Garbage gets a protocol-level answer and never disturbs other connections."""

    async def _online_pair(self) -> tuple[LoopbackServer, BosClient, BosClient]:
        server = await LoopbackServer.start(accounts={"Alice": "secret", "Bob": "secret"})
        self.addCleanup(server.stop)
        alice = await BosClient.sign_on(await server.bucp("Alice", "secret"))
        bob = await BosClient.sign_on(await server.bucp("Bob", "secret"))
        return server, alice, bob

    async def _still_served(self, alice: BosClient, bob: BosClient) -> None:
        alice.send_im("Bob", b"still there?")
        sender, text, _ = await bob.receive_im()
        self.assertEqual((sender.screen_name, text), ("Alice", b"still there?"))

    async def _raw(self, address: tuple[str, int], data: bytes) -> list[int]:
        """Send raw bytes after the hello; return the channels of the frames
        received until the server closed the connection."""
        client = await connect(*address)
        await client.wait_channel(Channel.SIGNON)
        client.transport.write(data)
        await client.wait_lost()
        return [frame.channel for frame in client.received]

    @deferred_test
    async def test_garbage_wrong_start_byte_and_oversize_close_cleanly(self) -> None:
        """Garbage bytes, a wrong FLAP start byte and an oversize length each get
        a channel-4 frame and a close, on both ports; signed-on users go on."""
        server, alice, bob = await self._online_pair()
        bos = split_address(await server.bucp("Alice", "secret"))
        for address in (server.auth_address, bos):
            for data in (
                b"GET / HTTP/1.0\r\n\r\n",
                b"\x2b\x01\x00\x01\x00\x04\x00\x00\x00\x01",
                b"\x2a\x02\x00\x01\xff\xff" + b"\x00" * 64,
            ):
                self.assertEqual(await self._raw(address, data), [Channel.SIGNOFF])
        await self._still_served(alice, bob)

    async def _held(self, server: LoopbackServer, client: FlapClient, partial: bytes) -> Any:
        """Wait until the server has read ``partial`` from ``client`` and
        holds it, unprocessed, as the start of a frame; its connection."""

        def holding() -> bool:
            connection = server.server_side(client)
            # White box: what a connection has read but not yet framed.
            return connection is not None and connection._buffer == partial

        await wait_until(holding, f"the server never held {partial.hex()} from {client.describe()}")
        return server.server_side(client)

    @deferred_test
    async def test_truncated_frame_then_disconnect_harms_nobody(self) -> None:
        """A frame cut short is held, unanswered: when the rest comes, the
        answer to the whole frame is the first thing the client gets after
        the hello. Held until the client goes away, it causes no reply and
        no crash, and the others are still served."""
        server, alice, bob = await self._online_pair()
        login = SignonPayload(1, TlvList((Tlv(0x01, b"Nobody"), Tlv(0x02, roast(b"x"))))).pack()
        whole = FlapFrame(Channel.SIGNON, 1, login).pack()
        partial = whole[:8]

        client = await connect(*server.auth_address)
        await client.wait_channel(Channel.SIGNON)
        client.transport.write(partial)
        await self._held(server, client, partial)
        client.transport.write(whole[8:])
        frame = await client.wait_channel(Channel.SIGNOFF)
        self.assertEqual(TlvList.unpack_list(frame.payload).get_u16(0x0008), 0x0005)
        self.assertEqual(client.received, [], "the server answered the partial frame")
        await client.wait_lost()

        client = await connect(*server.auth_address)
        await client.wait_channel(Channel.SIGNON)
        client.transport.write(partial)
        connection = await self._held(server, client, partial)
        await client.close()
        await wait_until(
            lambda: connection not in server.server_connections(),
            "the server never saw the client with a partial frame go",
        )
        await self._still_served(alice, bob)

    @deferred_test
    async def test_unknown_family_gets_snac_error_and_connection_stays(self) -> None:
        """A SNAC of a family the server does not serve gets xx,01 error 0x0001
        with its request ID; the connection stays up."""
        server, alice, bob = await self._online_pair()
        alice.flap.send_snac(0x0055, 0x0002, b"whatever", request_id=77)
        header, body = await alice.flap.wait_snac(0x0055, 0x0001)
        self.assertEqual((header.request_id, body), (77, b"\x00\x01"))
        await self._still_served(alice, bob)

    async def _cookie_refused(self, server: LoopbackServer, cookie: bytes) -> None:
        bos = split_address(await server.bucp("Carol", "secret"))
        client = await connect(*bos)
        await client.wait_channel(Channel.SIGNON)
        client.send_frame(Channel.SIGNON, SignonPayload(1, TlvList((Tlv(0x06, cookie),))).pack())
        frame = await client.wait_channel(Channel.SIGNOFF)
        self.assertEqual(frame.channel, Channel.SIGNOFF)
        await client.wait_lost()
        self.assertIsNone(server.server.registry.get("Carol"))

    @deferred_test
    async def test_tampered_expired_and_replayed_cookies_are_refused(self) -> None:
        """A cookie with a flipped byte, one past its lifetime, and one used
        twice are each refused with a channel-4 close."""
        server, alice, bob = await self._online_pair()
        await server.store.create_account("Carol", "secret")

        login = await server.bucp("Carol", "secret")
        cookie = bytearray(login.get(0x06) or b"")
        cookie[10] ^= 0x01
        await self._cookie_refused(server, bytes(cookie))

        login = await server.bucp("Carol", "secret")
        carol = await BosClient.sign_on(login)
        await carol.close()
        await self._cookie_refused(server, login.get(0x06) or b"")

        # Expiry: a jar whose clock is far in the future sees every cookie as expired.
        login = await server.bucp("Carol", "secret")
        server.server.cookies._clock = task.Clock()
        server.server.cookies._clock.advance(reactor.seconds() + 3600)
        self.addCleanup(setattr, server.server.cookies, "_clock", reactor)
        await self._cookie_refused(server, login.get(0x06) or b"")
        await self._still_served(alice, bob)


class AutoRegisterTests(unittest.TestCase):
    @deferred_test
    async def test_the_system_name_cannot_be_registered(self) -> None:
        """Nobody can pass for the server: logging in as "AOL System Msg" (any
        spelling) with auto_register on is refused with 0x0001, by both
        methods, and no account is made."""
        server = await LoopbackServer.start(load_config(None, {"auth.auto_register": True}))
        self.addCleanup(server.stop)
        for name in ("AOL System Msg", "aolsystemmsg"):
            self.assertEqual((await server.bucp(name, "pass1")).get_u16(0x08), 0x0001)
            self.assertEqual((await server.roasted(name, "pass1")).get_u16(0x08), 0x0001)
        self.assertEqual(await server.store.list_accounts(), [])

    @deferred_test
    async def test_unknown_name_is_created_at_first_login_when_enabled(self) -> None:
        """With [auth] auto_register = true an unknown name is created at its
        first login (BUCP and roasted), and its password is then required."""
        config = load_config(None, {"auth.auto_register": True})
        server = await LoopbackServer.start(config)
        self.addCleanup(server.stop)
        login = await server.bucp("New User", "pass1")
        self.assertEqual(login.get(0x01), b"New User")
        self.assertIsNotNone(login.get(0x06))
        self.assertIsNone((await server.bucp("newuser", "pass1")).get(0x08))
        self.assertEqual((await server.bucp("newuser", "wrong")).get_u16(0x08), 0x0005)
        login = await server.roasted("Other One", "pass2")
        self.assertIsNone(login.get(0x08))
        self.assertEqual((await server.roasted("otherone", "nope")).get_u16(0x08), 0x0005)
        self.assertIsNotNone(await server.store.get_account("otherone"))


class AccountCacheTests(unittest.TestCase):
    @deferred_test
    async def test_sign_on_through_the_account_cache(self) -> None:
        """As twistd runs it (the store behind the account cache): after the
        17,06 lookup, the 17,02 and the BOS cookie find the account in the
        cache, and the users sign on and exchange IMs as usual."""
        server = await LoopbackServer.start(
            accounts={"Alice": "secret", "Bob": "secret"}, cached=True
        )
        self.addCleanup(server.stop)
        lookups: list[str] = []
        backing = server.store
        original = backing.get_account

        def counted(name: str) -> Any:
            lookups.append(name)
            return original(name)

        backing.get_account = counted  # type: ignore[method-assign]
        alice = await server.session("alice", buddies=["bob"])
        bob = await server.session("bob")
        self.assertEqual(sorted(lookups), ["alice", "bob"])
        self.assertEqual((await alice.wait_arrival()).screen_name, "Bob")
        alice.send_im("bob", b"through the cache")
        sender, text, _ = await bob.receive_im()
        self.assertEqual((sender.screen_name, text), ("Alice", b"through the cache"))


class StuckConnection:
    """A server connection that ignores loseConnection (as a hung one would)."""

    service_name = "bos"
    peer = "192.0.2.9:4242"
    wrote_since_sweep = True

    def __init__(self) -> None:
        self.transport = StringTransport()
        self.transport.loseConnection = lambda: None  # type: ignore[method-assign]


class HarnessTests(unittest.TestCase):
    """The test tools themselves: teardown and waits fail loudly, in bounded time."""

    @deferred_test
    async def test_stop_fails_naming_connections_still_open(self) -> None:
        """``LoopbackServer.stop`` fails, naming each end still open, instead
        of giving up quietly when a connection does not close."""
        server = await LoopbackServer.start()
        stuck = StuckConnection()
        connections = server.server.bos_factory.sweeper.connections
        connections.add(stuck)  # type: ignore[arg-type]
        self.addCleanup(connections.discard, stuck)
        client = FlapClient()
        client.addresses = "127.0.0.1:1111 -> 127.0.0.1:2222"
        client.transport = StringTransport()
        client.transport.loseConnection = lambda: None  # type: ignore[method-assign]
        FlapClient.open_clients.add(client)
        self.addCleanup(FlapClient.open_clients.discard, client)
        started = reactor.seconds()
        with self.assertRaises(WaitTimeout) as caught:
            await server.stop(timeout=0.2)
        self.assertLess(reactor.seconds() - started, 2)
        message = str(caught.exception)
        self.assertIn("server bos connection from 192.0.2.9:4242", message)
        self.assertIn("client 127.0.0.1:1111 -> 127.0.0.1:2222", message)

    @deferred_test
    async def test_wait_lost_is_bounded(self) -> None:
        """Waiting for a connection the server keeps open fails with a
        message naming it, after the bound; once it has ended it fires."""
        server = await LoopbackServer.start()
        self.addCleanup(server.stop)
        client = await connect(*server.auth_address)
        with self.assertRaises(WaitTimeout) as caught:
            await client.wait_lost(0.1)
        self.assertIn(client.describe(), str(caught.exception))
        self.assertIn("still open", str(caught.exception))
        await client.close()
        await client.wait_lost(0.1)
        await client.lost

    @deferred_test
    async def test_wait_for_a_frame_names_what_never_came(self) -> None:
        """A frame wait that runs out says which SNAC never came."""
        server = await LoopbackServer.start()
        self.addCleanup(server.stop)
        client = await connect(*server.auth_address)
        await client.wait_channel(Channel.SIGNON)
        with self.assertRaises(WaitTimeout) as caught:
            await client.wait_snac(0x17, 0x07, timeout=0.1)
        self.assertIn("no 17,07", str(caught.exception))
