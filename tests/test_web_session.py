"""A browser session's resume buffer (aimserver.web.session.WebSession):
what it keeps unacked for a resume is bounded in count and in bytes, and a
resume from before what it had to drop is told to reload."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aimserver.web import session as web_session
from aimserver.web.session import WebSession


def new_session() -> WebSession:
    return WebSession("s1", Clock(), 120.0, lambda web: None)


class KeptEventsTests(SynchronousTestCase):
    def test_kept_events_bounded_in_count(self) -> None:
        """Past MAX_KEPT_EVENTS unacked, the oldest go; a resume from before
        them gets None (reload), one after them the rest in order."""
        self.patch(web_session, "MAX_KEPT_EVENTS", 5)
        web = new_session()
        for n in range(8):
            web.push("im", {"text": f"m{n}"})
        self.assertEqual([seq for seq, _ in web.kept_events()], [4, 5, 6, 7, 8])
        self.assertIsNone(web.replay_after(2))
        self.assertEqual(len(web.replay_after(3) or []), 5)

    def test_kept_events_bounded_in_bytes(self) -> None:
        """Past MAX_KEPT_BYTES unacked, the oldest go whatever their count,
        but the newest always stays; acks give the bytes back."""
        self.patch(web_session, "MAX_KEPT_BYTES", 10_000)
        web = new_session()
        for n in range(10):
            web.push("im", {"text": f"{n}" * 3000})
        self.assertLessEqual(web.kept_bytes, 10_000)
        self.assertEqual(web.kept_bytes, sum(map(len, web.kept)))
        self.assertEqual(web.kept_events()[-1][0], 10)
        self.assertIsNone(web.replay_after(0))
        web.push("im", {"text": "x" * 20_000})
        self.assertEqual([seq for seq, _ in web.kept_events()], [11])
        web.ack(11)
        self.assertEqual((len(web.kept), web.kept_bytes), (0, 0))
        self.assertEqual(web.replay_after(11), [])
