"""The MOTD service over fake connections: once per user, the first session
after a change; a session gone before the store answered leaves it for the
next; a failing store is logged and changes nothing else."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from aimserver.services.motd import MAX_MOTD_LENGTH, MotdService
from aimserver.store.memory import MemoryUserStore
from aimserver.wire.codes import ICBM, FoodGroup
from tests.fakes_services import ServiceWorld


class HeldStore(MemoryUserStore):
    """``get_motd_seen`` answers only when the test says so."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.held: list[tuple[defer.Deferred[Any], str]] = []

    def get_motd_seen(self, screen_name: str) -> defer.Deferred[str | None]:
        d: defer.Deferred[str | None] = defer.Deferred()
        self.held.append((d, screen_name))
        return d

    def release(self) -> None:
        held, self.held = self.held, []
        for d, name in held:
            super().get_motd_seen(name).chainDeferred(d)


def ims(connection: Any) -> list[bytes]:
    """The MOTDs pushed (the multisession notice left out)."""
    return [
        s.body
        for s in connection.snacs(FoodGroup.ICBM, ICBM.CHANNEL_MSG_TO_CLIENT)
        if b"Hello" in s.body
    ]


class MotdServiceTests(unittest.TestCase):
    def setUp(self) -> None:
        self.world = ServiceWorld(store=HeldStore())
        self.store: HeldStore = self.world.store  # type: ignore[assignment]
        self.motd = MotdService(self.world.registry, self.store, "Hello")
        self.world.sessions.observe(self.motd)

    def test_first_session_only(self) -> None:
        _, first = self.world.sign_on("Alice")
        _, second = self.world.sign_on("Alice")
        self.assertEqual(len(self.store.held), 1)  # the second never asked
        self.store.release()
        self.assertEqual(len(ims(first)), 1)
        self.assertEqual(ims(second), [])
        self.assertEqual(
            self.successResultOf(MemoryUserStore.get_motd_seen(self.store, "alice")),
            self.motd.digest,
        )

    def test_session_gone_before_the_store_answered(self) -> None:
        """The next session gets it instead."""
        session, first = self.world.sign_on("Alice")
        self.world.sign_off(session)
        self.store.release()
        self.assertEqual(ims(first), [])
        _, again = self.world.sign_on("Alice")
        self.store.release()
        self.assertEqual(len(ims(again)), 1)

    def test_no_motd_no_message_and_a_long_one_refused(self) -> None:
        self.motd.set_text("")
        _, connection = self.world.sign_on("Alice")
        self.assertEqual((self.store.held, ims(connection)), ([], []))
        self.assertRaises(ValueError, self.motd.set_text, "x" * (MAX_MOTD_LENGTH + 1))
        self.assertEqual(self.motd.text, "")

    def test_store_failure_is_logged(self) -> None:
        _, connection = self.world.sign_on("Alice")
        ((d, _),) = self.store.held
        d.errback(RuntimeError("disk gone"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(ims(connection), [])
