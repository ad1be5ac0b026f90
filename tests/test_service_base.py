"""What every service shares (``aimserver.services.base``): one dispatch
table merged from the services' own, where a SNAC claimed twice is an error
at start-up instead of a silent override."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aimserver.config import Config
from aimserver.server import AimServer
from aimserver.services.base import DuplicateHandler, merge_handlers
from aimserver.services.locate import LocateService
from aimserver.store.memory import MemoryUserStore
from tests.fakes import SECRET


def first(session, request, body):
    return None


def second(session, request, body):
    return None


class MergeHandlersTests(SynchronousTestCase):
    def test_tables_merge(self) -> None:
        merged = merge_handlers({(1, 2): first}, {(4, 6): second})
        self.assertEqual(merged, {(1, 2): first, (4, 6): second})

    def test_a_snac_claimed_twice_is_an_error_naming_both(self) -> None:
        error = self.assertRaises(
            DuplicateHandler, merge_handlers, {(4, 6): first}, {(4, 6): second}
        )
        self.assertIn("04,06", str(error))
        self.assertIn("first", str(error))
        self.assertIn("second", str(error))

    def test_the_server_refuses_to_start_with_a_duplicate(self) -> None:
        """A service whose table repeats another's SNAC stops the wiring."""

        def handlers(self):
            return {(0x0004, 0x0006): first}

        self.patch(LocateService, "handlers", handlers)
        self.assertRaises(DuplicateHandler, AimServer, Config(), MemoryUserStore(), SECRET, Clock())

    def test_the_real_tables_have_no_duplicates(self) -> None:
        server = AimServer(Config(), MemoryUserStore(), SECRET, Clock())
        self.assertIn((0x0004, 0x0006), server.bos_factory.handlers)
