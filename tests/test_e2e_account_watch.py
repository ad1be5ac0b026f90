"""Admin changes made outside the server (the CLI on the same database)
reach live sessions: a suspended or deleted account is signed off within
about a second; a password change leaves live sessions alone and the next
login needs the new password. Over loopback TCP, on SQLite behind the
account cache, as twistd runs it."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial import unittest

from aimserver.config import load_config
from aimserver.server import AimServer
from aimserver.store import accounts as accounts_store
from aimserver.store.cache import CachedUserStore
from aimserver.store.sqlite import SQLiteUserStore, connect, transact
from aimserver.wire.flap import Channel
from tests.client import deferred_test
from tests.harness import LOOPBACK, SECRET, LoopbackServer


class OutsideChangeTests(unittest.TestCase):
    async def start(self) -> tuple[LoopbackServer, str]:
        path = self.mktemp()
        store = SQLiteUserStore.open(path, reactor)
        store.start()
        for name in ("Alice", "Bob", "Carol"):
            await store.create_account(name, "secret")
        aim = AimServer(load_config(None, {}), CachedUserStore(store, reactor), SECRET, reactor)
        loop = LoopbackServer(aim, store)  # type: ignore[arg-type]
        loop.auth_port = reactor.listenTCP(0, aim.auth_factory, interface=LOOPBACK)
        loop.bos_port = reactor.listenTCP(0, aim.bos_factory, interface=LOOPBACK)
        loop.chat_port = reactor.listenTCP(0, aim.chat_factory, interface=LOOPBACK)
        loop.api_port = reactor.listenTCP(0, aim.api_site, interface=LOOPBACK)
        loop.ports = [loop.auth_port, loop.bos_port, loop.chat_port, loop.api_port]
        aim.bos_address = f"{LOOPBACK}:{loop.bos_port.getHost().port}"
        timer = aim.account_watch.service(reactor)
        timer.startService()
        self.addCleanup(store.stop)
        self.addCleanup(loop.stop)
        self.addCleanup(timer.stopService)
        return loop, path

    def outside(self, path: str, op: object, *args: object) -> None:
        """A change the way the admin CLI makes it: its own connection."""
        conn = connect(path)
        try:
            transact(conn, op, *args)
        finally:
            conn.close()

    @deferred_test
    async def test_cli_suspend_and_delete_sign_sessions_off(self) -> None:
        server, path = await self.start()
        alice = await server.session("Alice")
        bob = await server.session("Bob")
        carol = await server.session("Carol")
        self.addCleanup(carol.close)
        self.outside(path, accounts_store._set_suspended, "alice", True)
        self.outside(path, accounts_store._delete_account, "bob")
        self.outside(path, accounts_store._set_password, "carol", "newpass1")
        for client in (alice, bob):
            frame = await client.flap.wait_channel(Channel.SIGNOFF, timeout=5)
            self.assertEqual(frame.channel, Channel.SIGNOFF)
        await carol.sync()  # a password change leaves it on
        self.assertEqual((await server.bucp("Alice", "secret")).get_u16(0x08), 0x0011)
        self.assertEqual((await server.bucp("Carol", "secret")).get_u16(0x08), 0x0005)
        self.assertIsNone((await server.bucp("Carol", "newpass1")).get(0x08))
        # /metrics reports the SQLite store's batches behind the account cache.
        metrics = server.server.metrics.render(None).body.decode()  # type: ignore[arg-type]
        self.assertIn("aimserver_store_latency_seconds ", metrics)
