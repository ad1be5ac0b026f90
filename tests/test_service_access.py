"""[access] lists: names and networks allowed and denied, at connect and at
login, and reloaded live (SIGHUP's path), signing off what they now refuse."""

from __future__ import annotations

from twisted.trial import unittest

from aimserver.config import AccessConfig, ConfigError, load_config
from aimserver.services.access import AccessLists
from aimserver.wire.flap import Channel
from tests.client import connect, deferred_test
from tests.harness import LoopbackServer, wait_until


class AccessListsTests(unittest.SynchronousTestCase):
    def test_names(self) -> None:
        lists = AccessLists.of(AccessConfig(deny_names=("Bad Guy",)))
        self.assertFalse(lists.admits_name("badguy"))
        self.assertTrue(lists.admits_name("Alice"))
        only = AccessLists.of(AccessConfig(allow_names=("Alice", "Bob")))
        self.assertTrue(only.admits_name("ALICE"))
        self.assertFalse(only.admits_name("Carol"))

    def test_networks(self) -> None:
        lists = AccessLists.of(AccessConfig(deny_networks=("192.0.2.0/24", "2001:db8::/32")))
        self.assertFalse(lists.admits_address("192.0.2.77"))
        self.assertFalse(lists.admits_address("2001:db8::1"))
        self.assertTrue(lists.admits_address("198.51.100.1"))
        only = AccessLists.of(AccessConfig(allow_networks=("127.0.0.0/8",)))
        self.assertTrue(only.admits_address("127.0.0.1"))
        self.assertFalse(only.admits_address("198.51.100.1"))
        self.assertFalse(only.admits_address("not an address"))

    def test_ini_syntax(self) -> None:
        config = load_config(
            None, {"access.deny_names": "Bad Guy, Spammer ", "access.deny_networks": "10.0.0.0/8"}
        )
        self.assertEqual(config.access.deny_names, ("Bad Guy", "Spammer"))
        self.assertRaises(ConfigError, load_config, None, {"access.deny_networks": "nonsense"})


class AccessEndToEndTests(unittest.TestCase):
    @deferred_test
    async def test_denied_names_and_networks_and_a_live_reload(self) -> None:
        config = load_config(None, {"access.deny_names": "Carol"})
        server = await LoopbackServer.start(
            config, accounts={"Alice": "secret", "Bob": "secret", "Carol": "secret"}
        )
        self.addCleanup(server.stop)
        self.assertEqual((await server.bucp("Carol", "secret")).get_u16(0x08), 0x0011)
        alice = await server.session("Alice")
        bob = await server.session("Bob")
        self.addCleanup(bob.close)
        # Reloaded: Alice denied now (signed off at once), Carol allowed again.
        changed = server.server.reload(load_config(None, {"access.deny_names": "Alice"}))
        self.assertEqual(changed, ["access lists"])
        await alice.flap.wait_channel(Channel.SIGNOFF)
        await bob.sync()
        self.assertIsNone((await server.bucp("Carol", "secret")).get(0x08))
        # Loopback denied: a new connection is closed before a byte is read,
        # and the sessions from it are signed off.
        server.server.reload(load_config(None, {"access.deny_networks": "127.0.0.0/8"}))
        await bob.flap.wait_channel(Channel.SIGNOFF)
        refused = await connect(*server.auth_address)
        await refused.wait_lost()
        self.assertEqual(refused.received, [])
        self.assertEqual(
            server.server.reload(load_config(None, {"access.deny_networks": "127.0.0.0/8"})), []
        )


class LimitsReloadTests(unittest.TestCase):
    @deferred_test
    async def test_limits_change_live_for_what_comes_next(self) -> None:
        """A reload applies the new sessions-per-user limit, connection caps
        and login rates to the next logins and connections; sessions already
        signed on stay; other keys are left for a restart."""
        base = {"multisession.max_sessions": 2, "multisession.notify": False}
        server = await LoopbackServer.start(load_config(None, base), accounts={"Alice": "secret"})
        self.addCleanup(server.stop)
        sessions = [await server.session("Alice") for _ in range(2)]
        for client in sessions:
            self.addCleanup(client.close)
        self.assertEqual((await server.bucp("Alice", "secret", flags=0x01)).get_u16(0x08), 0x001D)
        changed = server.server.reload(
            load_config(
                None,
                {
                    **base,
                    "multisession.max_sessions": 3,
                    "connection.max_pending_connections": 50,
                    "auth.max_logins_per_ip_per_minute": 1,
                    "chat.max_occupancy": 5,  # needs a restart: not applied
                },
            )
        )
        self.assertEqual(
            changed,
            [
                "multisession.max_sessions",
                "connection.max_pending_connections",
                "auth.max_logins_per_ip_per_minute",
            ],
        )
        self.assertEqual(server.server.pending_connections.limit, 50)
        self.assertEqual(server.server.config.chat.max_occupancy, 100)
        # Three sessions now; the two signed on were not touched.
        third = await server.session("Alice")
        self.addCleanup(third.close)
        await wait_until(
            lambda: len(server.server.registry.get("alice").online_instances()) == 3,
            "three Alice sessions online",
        )
        self.assertTrue(all(client.flap.connected_now for client in sessions))
        # One login a minute per address now: the next is refused (0x0018).
        self.assertEqual((await server.bucp("Alice", "secret")).get_u16(0x08), 0x0018)
        # Reloading the same file again changes nothing.
        self.assertEqual(
            server.server.reload(
                load_config(
                    None,
                    {
                        **base,
                        "multisession.max_sessions": 3,
                        "connection.max_pending_connections": 50,
                        "auth.max_logins_per_ip_per_minute": 1,
                    },
                )
            ),
            [],
        )
