"""``python -m bench.chaos [--seconds S] [--part NAME ...]``: every robustness
part of issue 19, bounded in time, as one table.

- ``fuzz`` (bench/chaos/fuzz.py): every bench.fuzz target under atheris, an
  equal share of the fuzzing time each;
- ``hostile`` (hostile.py): hostile clients against the real server while
  bystanders talk;
- ``slow`` (slow.py): a session that stops reading, and everyone else's p99;
- ``crash`` (crash.py): kill -9 under load, every acknowledged write checked,
  and the start-ups that must be refused;
- ``limits`` (limits.py): memory per session, user, connection and sign-on
  attempt against the stated bounds.

``--seconds`` is shared out (:data:`SHARES`); slow and limits take about as
long as they take (~10 s and ~60 s). Exits non-zero unless every row is ok:
0 crashes, 0 sessions wrongly dropped, 0 writes lost, 0 failed checks.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from bench.chaos import crash, fuzz, hostile, limits, slow
from bench.chaos.table import ChaosRow, render

#: Each timed part's share of ``--seconds``.
SHARES = {"fuzz": 0.5, "hostile": 0.2, "crash": 0.3}
PARTS = ("fuzz", "hostile", "slow", "crash", "limits")


def _log(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def part_runner(name: str, seconds: float) -> Callable[[], list[ChaosRow]]:
    share = seconds * SHARES.get(name, 0.0)
    return {
        "fuzz": lambda: fuzz.run(share, log=_log),
        "hostile": lambda: hostile.run(share),
        "slow": lambda: slow.run(),
        "crash": lambda: crash.run(share) + crash.startup_faults(),
        "limits": lambda: limits.run(),
    }[name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0, help="time shared by the parts")
    parser.add_argument("--part", action="append", choices=PARTS, help="only these parts")
    args = parser.parse_args(argv)
    rows: list[ChaosRow] = []
    for name in args.part or PARTS:
        started = time.monotonic()
        print(f"== {name} ...", file=sys.stderr, flush=True)
        try:
            got = part_runner(name, args.seconds)()
        except Exception as e:  # a part that cannot run is a failed row, not the end
            got = [
                ChaosRow(name, "(the part itself)", 0, failures=1, note=f"{type(e).__name__}: {e}")
            ]
        rows += got
        print(f"== {name} done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        print(render(got), file=sys.stderr, flush=True)
    print(render(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
