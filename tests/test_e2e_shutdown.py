"""A clean shutdown closes every session with channel 4, then the store stops."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial import unittest

from aimserver.shutdown import CloseSessionsOnStop
from aimserver.wire.flap import Channel
from tests.client import deferred_test
from tests.harness import LoopbackServer


class ShutdownTests(unittest.TestCase):
    @deferred_test
    async def test_sessions_closed_with_channel_4(self) -> None:
        server = await LoopbackServer.start(accounts={"Alice": "secret", "Bob": "secret"})
        self.addCleanup(server.stop)
        alice1 = await server.session("Alice")
        alice2 = await server.session("Alice")
        bob = await server.session("Bob")
        closer = CloseSessionsOnStop(server.server.registry, reactor)
        closer.startService()
        await closer.stopService()
        self.assertEqual(server.server.registry.users, {})
        for client in (alice1, alice2, bob):
            frame = await client.flap.wait_channel(Channel.SIGNOFF)
            self.assertEqual(frame.channel, Channel.SIGNOFF)
            await client.flap.wait_lost()

    def test_nothing_to_close(self) -> None:
        from aimserver.registry import UserRegistry

        closer = CloseSessionsOnStop(UserRegistry(), reactor)
        closer.startService()
        self.assertIsNone(closer.stopService())
