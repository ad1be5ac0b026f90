"""The hostile-client run of issue 19 (``bench/chaos/hostile.py``): every
case gets its protocol answer from the real server while the bystanders
keep talking, and the run's checks do fail when an answer does not come or
a bystander loses an IM.

The runs start ``twistd aimserver`` in a child process and drive it over
loopback TCP from an asyncio loop, so these tests block the reactor while
they run (nothing else is on it) and take about 15 s together."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.ratelimit import DEFAULT_RATE_CLASSES
from bench.chaos import hostile
from bench.chaos.hostile import BystanderLedger, Limits, expected_flood
from bench.chaos.table import render

#: Small enough for a test: 16 connections per address, 32 pending, a 2 s
#: login timeout (the server's code paths are the same at any size).
SMALL = Limits(per_address=16, pending=32, login_timeout=2.0)


class HostileRunTests(SynchronousTestCase):
    def test_every_case_gets_its_answer_and_no_bystander_suffers(self) -> None:
        """One round of every case against the real server: each hostile
        connection gets its answer (channel 4, a SNAC error, a login error,
        a rate notice, a refused connection), nothing in the server's log
        is an error, and every bystander session stays connected and gets
        every IM it was sent."""
        rows = hostile.run(1.0, limits=SMALL)
        self.assertEqual([row.target for row in rows], [*hostile.CASES, "bystanders"])
        self.assertEqual([row for row in rows if not row.ok], [], render(rows))
        self.assertTrue(all(row.inputs > 0 for row in rows), render(rows))

    def test_an_answer_that_does_not_come_is_a_failure(self) -> None:
        """Checked against limits the server does not have (a cap of 15
        connections per address where it has 16, 50 logins per address and
        minute where it has 60), the 16th connection and the 51st login are
        not refused as expected: each case reports a failure saying so; the
        bystanders are still fine."""
        rows = hostile.run(
            0.0,
            limits=SMALL,
            expect=Limits(
                per_address=15, pending=32, login_timeout=2.0, logins_per_ip_per_minute=50
            ),
            cases=["conn-flood", "login-abuse"],
        )
        by_target = {row.target: row for row in rows}
        self.assertEqual(by_target["conn-flood"].failures, 1, render(rows))
        self.assertIn("16 of 23 connections from one address admitted, cap 15", render(rows))
        self.assertEqual(by_target["login-abuse"].failures, 1, render(rows))
        self.assertIn("60 logins from one address: 60 challenged, 0 refused", render(rows))
        self.assertTrue(by_target["bystanders"].ok, render(rows))


class BystanderLedgerTests(SynchronousTestCase):
    def test_every_im_delivered_is_clean(self) -> None:
        """Each IM seen by every session of its recipient: nothing to report."""
        ledger = BystanderLedger()
        ledger.window = "framing"
        ledger.sent("m1", ["a#0", "a#1"])
        ledger.received("m1", "a#0")
        ledger.received("m1", "a#1")
        report = ledger.report()["framing"]
        self.assertEqual((report.sent, report.affected, report.missing), (1, set(), 0))

    def test_a_missing_im_makes_its_session_wrongly_dropped(self) -> None:
        """An IM one session of a multisession recipient never got: that
        session counts as wrongly dropped, in the window the IM was sent,
        once however many it missed."""
        ledger = BystanderLedger()
        ledger.window = "im-flood"
        for n in range(3):
            ledger.sent(("m", n), ["a#0", "a#1"])
            ledger.received(("m", n), "a#0")
        ledger.window = "cookies"
        ledger.sent(("m", 3), ["a#0", "a#1"])
        ledger.received(("m", 3), "a#0")
        ledger.received(("m", 3), "a#1")
        reports = ledger.report()
        self.assertEqual(reports["im-flood"].affected, {"a#1"})
        self.assertEqual(reports["im-flood"].missing, 3)
        self.assertIn("a#1 missed IM", reports["im-flood"].notes[0])
        self.assertEqual(reports["cookies"].affected, set())

    def test_a_session_cut_off_counts_where_it_happened_only(self) -> None:
        """A bystander cut off during one case is wrongly dropped there; the
        IMs it then misses are not counted again against later cases."""
        ledger = BystanderLedger()
        ledger.window = "pending-cap"
        ledger.sent("m1", ["b#0"])
        ledger.received("m1", "b#0")
        ledger.dropped("b#0", "disconnected")
        ledger.dropped("b#0", "sent channel 4")
        ledger.window = "slow-signon"
        ledger.sent("m2", ["b#0"])
        reports = ledger.report()
        self.assertEqual(reports["pending-cap"].affected, {"b#0"})
        self.assertEqual(reports["pending-cap"].notes, ["b#0 disconnected"])
        self.assertEqual(reports["slow-signon"].affected, set())

    def test_a_duplicate_is_noted_not_dropped(self) -> None:
        """An IM delivered twice is counted as duplicated, not as a drop;
        one nobody declared is counted apart."""
        ledger = BystanderLedger()
        ledger.window = "framing"
        ledger.sent("m1", ["c#0"])
        ledger.received("m1", "c#0")
        ledger.received("m1", "c#0")
        ledger.received("unknown", "c#0")
        report = ledger.report()["framing"]
        self.assertEqual((report.duplicated, report.affected), (1, set()))
        self.assertEqual(ledger.undeclared, 1)


class ExpectedFloodTests(SynchronousTestCase):
    def test_class_3_burst(self) -> None:
        """40 IMs at once: the moving average (window 20, from 6,000) first
        drops under the limit (4,000) at the 9th, so 8 are answered, and
        under the disconnect level (3,000) at the 15th."""
        cls = DEFAULT_RATE_CLASSES[2]
        self.assertEqual((cls.window, cls.limit, cls.disconnect), (20, 4000, 3000))
        self.assertEqual(expected_flood(3, 0, 40), (8, 14))

    def test_a_burst_too_short_never_disconnects(self) -> None:
        """Five IMs stay under every threshold: all answered, no disconnect."""
        self.assertEqual(expected_flood(3, 0, 5), (5, None))
