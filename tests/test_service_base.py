"""What every service shares (``aimserver.services.base``): one dispatch
table merged from the services' own, where a SNAC claimed twice is an error
at start-up instead of a silent override."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aimserver.config import Config
from aimserver.server import AimServer
from aimserver.services.base import DuplicateHandler, SnacError, bounded, merge_handlers
from aimserver.services.locate import LocateService
from aimserver.store.memory import MemoryUserStore
from aimserver.wire.codes import SnacErrorCode
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


class BoundedTests(SynchronousTestCase):
    def test_a_value_within_the_limit_passes(self) -> None:
        self.assertEqual(bounded(b"x" * 8, 8, "field"), b"x" * 8)

    def test_a_longer_value_is_refused_and_logged(self) -> None:
        """Bad input: 0x000E, and one log line naming what and how long."""
        from twisted.logger import globalLogPublisher

        seen: list[dict] = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        error = self.assertRaises(SnacError, bounded, b"x" * 9, 8, "search keyword")
        self.assertEqual(error.code, SnacErrorCode.BUSTED_SNAC_PAYLOAD)
        (event,) = [e for e in seen if e.get("what") == "search keyword"]
        self.assertEqual((event["length"], event["limit"]), (9, 8))
