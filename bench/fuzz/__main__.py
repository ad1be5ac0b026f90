"""``python -m bench.fuzz [--target NAME ...] [--seconds S | --runs N] [--list]``

Runs each target in its own subprocess under atheris (libFuzzer), bounded by
``-max_total_time`` or ``-runs`` and by a wall-clock limit, and prints one row
per target: inputs tried, their rate, crashes, time.

A crash is any exception other than the one the decoder is documented to
raise for bad input (the targets let only that one through). The worker
catches it, saves the input as ``bench/fuzz_crashes/NAME-crash-SHA1`` with its
traceback next to it (``.txt``) and goes on fuzzing; one file per distinct
crash (exception type and raising line). libFuzzer's own artifacts (a timeout,
an out-of-memory) land in the same directory.

Inputs libFuzzer finds interesting go to ``bench/fuzz_work/NAME/`` (not
committed); the committed corpus ``bench/fuzz_corpus/NAME/`` holds the seeds
the harness writes from the project's own encoders (``--write-seeds``) and a
few found inputs, and is only read.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import time
import traceback

from bench import fuzz


def _write_seeds(names: list[str]) -> None:
    table = fuzz.load_targets()
    for name in names:
        directory = os.path.join(fuzz.CORPUS, name)
        os.makedirs(directory, exist_ok=True)
        for seed in table[name].seeds():
            path = os.path.join(directory, "seed-" + hashlib.sha1(seed).hexdigest()[:16])
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(seed)


def _signature(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    last = frames[-1] if frames else None
    where = f"{os.path.relpath(last.filename)}:{last.lineno}" if last else "?"
    return f"{type(error).__name__} at {where}"


def _worker(name: str, libfuzzer_args: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["aimserver", "bench.fuzz"]):
        table = fuzz.load_targets()
    run = table[name].run
    os.makedirs(fuzz.CRASHES, exist_ok=True)
    seen: set[str] = set()

    def one_input(data: bytes) -> None:
        try:
            run(data)
        except Exception as e:
            signature = _signature(e)
            if signature in seen:
                return
            seen.add(signature)
            digest = hashlib.sha1(data).hexdigest()
            path = os.path.join(fuzz.CRASHES, f"{name}-crash-{digest}")
            with open(path, "wb") as f:
                f.write(data)
            with open(path + ".txt", "w") as f:
                f.write(traceback.format_exc())
            print(f"FUZZ-CRASH {signature} {path}", file=sys.stderr, flush=True)

    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


_EXECUTED = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_PROGRESS = re.compile(r"^#(\d+)\s", re.M)


def _run_target(name: str, args: argparse.Namespace, max_len: int) -> dict[str, object]:
    work = os.path.join(fuzz.WORK, name)
    os.makedirs(work, exist_ok=True)
    os.makedirs(fuzz.CRASHES, exist_ok=True)
    libfuzzer = [
        work,
        os.path.join(fuzz.CORPUS, name),
        f"-max_len={max_len}",
        "-print_final_stats=1",
        "-timeout=10",
        "-rss_limit_mb=3072",
        f"-artifact_prefix={os.path.join(fuzz.CRASHES, name)}-",
    ]
    if args.runs is not None:
        libfuzzer.append(f"-runs={args.runs}")
        limit = args.timeout or 3600
    else:
        libfuzzer.append(f"-max_total_time={args.seconds}")
        limit = args.timeout or args.seconds + 60
    command = [sys.executable, "-m", "bench.fuzz", "--worker", name, "--", *libfuzzer]
    started = time.monotonic()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    status = "ok"
    try:
        output, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()  # our own child, by its pid
        output, _ = proc.communicate()
        status = "killed (wall-clock limit)"
    elapsed = time.monotonic() - started
    executed = _EXECUTED.search(output)
    progress = _PROGRESS.findall(output)
    inputs = int(executed.group(1)) if executed else int(progress[-1]) if progress else 0
    crashes = [
        line.split(" ", 1)[1] for line in output.splitlines() if line.startswith("FUZZ-CRASH ")
    ]
    artifacts = re.findall(r"Test unit written to (\S+)", output)
    if proc.returncode not in (0, None) and status == "ok":
        status = f"exit {proc.returncode}"
    if args.verbose or status != "ok":
        print(output[-4000:], file=sys.stderr)
    return {
        "target": name,
        "inputs": inputs,
        "rate": inputs / elapsed if elapsed else 0.0,
        "crashes": crashes + artifacts,
        "seconds": elapsed,
        "status": status,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        name, rest = argv[1], argv[2:]
        _worker(name, rest[1:] if rest[:1] == ["--"] else rest)
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
    args = parser.parse_args(argv)
    names = args.target or list(fuzz.NAMES)
    if args.list:
        table = fuzz.load_targets()
        for name in names:
            print(f"{name:14} max_len {table[name].max_len:5}  {table[name].about}")
        return 0
    if args.write_seeds:
        _write_seeds(names)
        return 0
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: pip install -r bench/requirements.txt", file=sys.stderr)
        return 2
    _write_seeds(names)
    table = fuzz.load_targets()
    rows = []
    print(f"{'target':14} {'inputs':>10} {'inputs/s':>9} {'crashes':>7} {'time s':>7}  status")
    for name in names:
        row = _run_target(name, args, table[name].max_len)
        rows.append(row)
        crashes = row["crashes"]
        assert isinstance(crashes, list)
        print(
            f"{name:14} {row['inputs']:>10} {row['rate']:>9.0f} {len(crashes):>7}"
            f" {row['seconds']:>7.1f}  {row['status']}",
            flush=True,
        )
        for crash in crashes:
            print(f"    {crash}", flush=True)
    failed = any(row["crashes"] or row["status"] != "ok" for row in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
