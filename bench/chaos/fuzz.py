"""The fuzzing part of the robustness table: ``python -m bench.chaos.fuzz
--seconds S [--target NAME ...]`` (issue 19).

Each ``bench.fuzz`` target gets an equal share of the time (at least a
second) and runs as ``python -m bench.fuzz`` runs it: its own subprocess under
atheris, from its committed corpus and what earlier runs found
(``bench.fuzz.runner``). A target's worker also spends a few seconds starting
up, so the whole run takes somewhat longer than ``S``.

One row per target: inputs tried, and its crashes, one per distinct
exception and line (the input and its traceback are in
``bench/fuzz_crashes/``). A stream target's crash that says a well-behaved
bystander connection was closed counts as a session wrongly dropped instead.
A worker that did not end normally (killed at the wall-clock limit, an exit
code) is a failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from bench import fuzz
from bench.chaos.table import ChaosRow, render
from bench.fuzz.runner import TargetRun, run_target, write_seeds

PART = "fuzz"


def row(result: TargetRun) -> ChaosRow:
    """``result`` as a row of the table."""
    dropped = [c for c in result.crashes if "well-behaved" in c.message and "closed" in c.message]
    crashes = [c for c in result.crashes if c not in dropped]
    notes = [f"{result.rate:.0f} inputs/s"]
    if result.status != "ok":
        notes.append(result.status)
    notes.extend(f"{c.signature} ({os.path.basename(c.path)})" for c in crashes + dropped)
    return ChaosRow(
        PART,
        result.target,
        result.inputs,
        crashes=len(crashes),
        wrongly_dropped=len(dropped),
        failures=0 if result.status == "ok" else 1,
        seconds=round(result.seconds, 1),
        note="; ".join(notes),
    )


def run(
    seconds: float,
    targets: list[str] | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> list[ChaosRow]:
    """Fuzz each of ``targets`` (every one by default) for its share of
    ``seconds``; one row each. ``log`` gets a line as each target ends.

    :raises ValueError: an unknown target.
    :raises RuntimeError: atheris is not installed."""
    names = list(targets) if targets is not None else list(fuzz.NAMES)
    unknown = [name for name in names if name not in fuzz.NAMES]
    if unknown:
        raise ValueError(f"unknown targets {unknown}; known: {', '.join(fuzz.NAMES)}")
    try:
        import atheris  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "atheris is not installed: pip install -r bench/requirements.txt"
        ) from None
    # libFuzzer's -max_total_time counts whole seconds.
    share = max(1, int(seconds / max(1, len(names))))
    write_seeds(names)
    rows = []
    for name in names:
        result = run_target(name, seconds=share)
        rows.append(row(result))
        if log is not None:
            log(f"{name}: {result.inputs} inputs, {len(result.crashes)} crashes, {result.status}")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos.fuzz", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="for all targets together")
    parser.add_argument("--target", action="append", choices=fuzz.NAMES, help="repeatable")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    try:
        rows = run(args.seconds, args.target, log=say)
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 2
    print(render(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
