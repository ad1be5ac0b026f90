"""``python -m bench.chaos``: the parts of the robustness run as one table,
non-zero unless every row is ok, a part that cannot run a failed row."""

from __future__ import annotations

import contextlib
import io
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from bench.chaos import __main__ as chaos
from bench.chaos import slow
from bench.chaos.table import ChaosRow, render


class TableTests(SynchronousTestCase):
    def test_rows_totals_and_ok(self) -> None:
        rows = [
            ChaosRow("fuzz", "flap", 1_000_000, seconds=3.0),
            ChaosRow("crash", "feedbag edits", 20, lost_writes=1, note="1 lost"),
        ]
        text = render(rows).splitlines()
        self.assertEqual(text[0].split()[:8], list(chaos_header()))
        self.assertEqual(
            text[-1].split()[:8], ["total", "2", "targets", "1000020", "0", "0", "1", "0"]
        )
        self.assertTrue(rows[0].ok)
        self.assertFalse(rows[1].ok)
        for field in ("crashes", "wrongly_dropped", "failures"):
            self.assertFalse(ChaosRow("p", "t", 1, **{field: 1}).ok)


def chaos_header() -> tuple[str, ...]:
    return ("part", "target", "inputs", "crashes", "dropped", "lost", "failed", "s")


class MainTests(SynchronousTestCase):
    def run_main(self, *argv: str) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = chaos.main(list(argv))
        return code, out.getvalue()

    def test_a_part_that_cannot_run_is_a_failed_row(self) -> None:
        def broken(**_: Any) -> list[ChaosRow]:
            raise OSError("no ports left")

        self.patch(slow, "run", broken)
        code, out = self.run_main("--part", "slow")
        self.assertEqual(code, 1)
        self.assertIn("OSError: no ports left", out)

    def test_the_slow_consumer_is_cut_off_and_nobody_else(self) -> None:
        """The real S9 (~5 s): the slow session is cut off, saying why in the
        log; the others lose nothing. (Their p99 against the bound is a
        benchmark figure: python -m bench.chaos --part slow.)"""
        (row,) = slow.run(p99_bound=None)
        self.assertTrue(row.ok, render([row]))
        self.assertIn("cut off after", row.note)
        self.assertGreater(row.inputs, 1000)
