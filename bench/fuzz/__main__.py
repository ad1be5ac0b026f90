"""``python -m bench.fuzz [--target NAME ...] [--seconds S | --runs N] [--list]``

Runs each target in its own subprocess under atheris (libFuzzer), bounded by
``-max_total_time`` or ``-runs`` and by a wall-clock limit, and prints one row
per target: inputs tried, their rate, crashes, time (``runner.run_target``).

A crash is any exception other than the one the decoder is documented to
raise for bad input (the targets let only that one through). The worker
catches it, saves the input as ``bench/fuzz_crashes/NAME-crash-SHA1`` with its
traceback next to it (``.txt``) and goes on fuzzing; one file per distinct
crash (exception type and raising line). libFuzzer's own artifacts (a timeout,
an out-of-memory) land in the same directory.

Inputs libFuzzer finds interesting go to ``bench/fuzz_work/NAME/`` (not
committed); the committed corpus ``bench/fuzz_corpus/NAME/`` holds the seeds
the harness writes from the project's own encoders (``--write-seeds``) and a
few found inputs (``--promote K``: the K found inputs that add the most
coverage to it), and is only read while fuzzing.
"""

from __future__ import annotations

import argparse
import os
import sys

from bench import fuzz
from bench.fuzz import runner


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        name, rest = argv[1], argv[2:]
        runner.worker(name, rest[1:] if rest[:1] == ["--"] else rest)
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m bench.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--target", action="append", choices=fuzz.NAMES, help="repeatable")
    bound = parser.add_mutually_exclusive_group()
    bound.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    bound.add_argument("--runs", type=int, help="inputs per target instead of a time")
    parser.add_argument("--timeout", type=int, help="wall-clock limit per target, seconds")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--write-seeds", action="store_true", help="(re)write the seed corpus")
    parser.add_argument("--verbose", action="store_true", help="show libFuzzer's output")
    parser.add_argument(
        "--promote",
        type=int,
        metavar="K",
        help="copy the K inputs of bench/fuzz_work/NAME adding the most coverage to the corpus",
    )
    args = parser.parse_args(argv)
    names = args.target or list(fuzz.NAMES)
    if args.list:
        table = fuzz.load_targets()
        for name in names:
            print(f"{name:14} max_len {table[name].max_len:5}  {table[name].about}")
        return 0
    if args.write_seeds:
        runner.write_seeds(names)
        return 0
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: pip install -r bench/requirements.txt", file=sys.stderr)
        return 2
    if args.promote is not None:
        for name in names:
            for path, gain in runner.promote(name, args.promote):
                print(f"{name:14} {os.path.basename(path)}  +{gain} features", flush=True)
        return 0
    runner.write_seeds(names)
    failed = False
    print(f"{'target':14} {'inputs':>10} {'inputs/s':>9} {'crashes':>7} {'time s':>7}  status")
    for name in names:
        row = runner.run_target(
            name,
            seconds=None if args.runs is not None else args.seconds,
            runs=args.runs,
            timeout=args.timeout,
            verbose=args.verbose,
        )
        failed = failed or not row.ok
        print(
            f"{name:14} {row.inputs:>10} {row.rate:>9.0f} {len(row.crashes):>7}"
            f" {row.seconds:>7.1f}  {row.status}",
            flush=True,
        )
        for crash in row.crashes:
            print(f"    {crash.signature} {crash.path}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
