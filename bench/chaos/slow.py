"""The slow-consumer part of the robustness table: ``python -m bench.chaos.slow``
(issue 19).

The benchmark suite's S9 (bench/capacity.py), run once on its own: ten
sessions IM their ring neighbour (measured) and one slow session, which then
stops reading. The server must cut the slow one off, saying why in its log,
while the others lose nothing and their p99 latency stays within
:data:`P99_BOUND` times what it was with the slow one reading.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import capacity as cap
from bench import loadgen as lg
from bench import scenarios as sc
from bench.chaos.table import ChaosRow, render
from bench.run import Harness, create_database, render_ini

PART = "slow"
#: The others' p99 with the slow session stalled, over their p99 with it
#: reading: what the issue allows.
P99_BOUND = 1.5


def rows_of(
    result: list[sc.Row], seconds: float, p99_bound: float | None = P99_BOUND
) -> list[ChaosRow]:
    """S9's rows as one row of the table: inputs are the IMs sent to the
    slow session after it stopped reading plus the others' measured ones;
    an IM of the others lost, duplicated or reordered counts as a session
    wrongly dropped (their streams are checked per sender); the slow one not
    cut off, cut off without the log line, or the p99 bound broken, as
    failures (``p99_bound`` None: not checked, as in the test suite, where a
    latency figure is no pass/fail)."""
    cut, reading, stalled = result
    problems = dict(cut.runs[0].problems)
    others = {**reading.runs[0].problems, **stalled.runs[0].problems}
    p99_reading = lg.percentiles(reading.runs[0].latencies_ns)[1] / 1e6
    p99_stalled = lg.percentiles(stalled.runs[0].latencies_ns)[1] / 1e6
    ratio = p99_stalled / p99_reading if p99_reading else math.nan
    failures = sum(1 for count in problems.values() if count)
    notes = [
        f"cut off after {cut.runs[0].value:.1f} s"
        if not problems.get("not cut off")
        else "NOT cut off",
        f"others' p99 {p99_reading:.2f} ms reading, {p99_stalled:.2f} ms stalled:"
        f" {ratio:.2f}x (bound {p99_bound}x)"
        if p99_bound
        else f" {ratio:.2f}x (not checked)",
    ]
    if p99_bound is not None and not ratio <= p99_bound:
        failures += 1
    notes += [f"{what}: {count}" for what, count in {**problems, **others}.items() if count]
    inputs = cut.runs[0].count + reading.runs[0].count + stalled.runs[0].count
    return [
        ChaosRow(
            PART,
            "slow consumer (S9)",
            inputs,
            wrongly_dropped=sum(others.values()),
            failures=failures,
            seconds=seconds,
            note="; ".join(notes),
        )
    ]


async def _s9(harness: Harness, profile: sc.Profile) -> list[sc.Row]:
    return await cap.scenario_s9(harness, profile)


def run(*, full: bool = False, p99_bound: float | None = P99_BOUND) -> list[ChaosRow]:
    """S9 with the quick profile (or the full one), on its own database."""
    profile = sc.FULL if full else sc.QUICK
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="aimchaos-slow-"))
    db, ini = workdir / "slow.sqlite", workdir / "slow.ini"
    harness = Harness(workdir, db, ini, False)
    try:
        create_database(db, cap.s9_names(profile), {})
        ini.write_text(render_ini(db))
        # Plain asyncio (not the suite's uvloop): the test suite runs this
        # without the bench-only dependencies.
        result = asyncio.run(_s9(harness, profile))
    finally:
        harness.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    return rows_of(result, time.monotonic() - started, p99_bound)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos.slow", description=__doc__)
    parser.add_argument("--full", action="store_true", help="S9's full profile (longer)")
    args = parser.parse_args(argv)
    rows = run(full=args.full)
    print(render(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
