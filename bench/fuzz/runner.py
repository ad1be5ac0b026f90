"""Running targets under atheris, each in its own subprocess, and what came
of it as values (``TargetRun``): ``python -m bench.fuzz`` prints them,
``bench.chaos.fuzz`` turns them into rows of the robustness table.

The subprocess is ``python -m bench.fuzz --worker NAME -- LIBFUZZER-ARGS``
(``worker``). It reports each crash on its own line (``FUZZ-CRASH signature
path``), and libFuzzer ends with its final stats; ``run_target`` reads both.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence

import attrs

from bench import fuzz

#: A worker's line for each crash: the signature, then the saved input.
CRASH_PREFIX = "FUZZ-CRASH "
#: An executable that starts this worker again (``promote``'s merges).
SELF_VARIABLE = "BENCH_FUZZ_WORKER"
_EXECUTED = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_PROGRESS = re.compile(r"^#(\d+)\s", re.M)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")
_LOGGED_FRAME = re.compile(r'^  File "([^"]+)", line (\d+)', re.M)


@attrs.frozen
class Crash:
    #: The exception's type and the line that raised it (one file each).
    signature: str
    #: The saved input (its traceback is ``path + ".txt"``).
    path: str
    #: The traceback's last line ("" for a libFuzzer timeout or OOM).
    message: str = ""


@attrs.frozen
class TargetRun:
    target: str
    inputs: int
    seconds: float
    #: "ok", or why the worker did not end normally.
    status: str
    crashes: tuple[Crash, ...] = ()

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok" and not self.crashes


def write_seeds(names: Sequence[str]) -> None:
    """Each target's seeds into its committed corpus (existing files kept)."""
    table = fuzz.load_targets()
    for name in names:
        directory = os.path.join(fuzz.CORPUS, name)
        os.makedirs(directory, exist_ok=True)
        for seed in table[name].seeds():
            path = os.path.join(directory, "seed-" + hashlib.sha1(seed).hexdigest()[:16])
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(seed)


def _where(filename: str) -> str:
    """A file named as briefly as it stays clear: in the repository, in an
    installed package, or in the standard library."""
    _, installed, inside = filename.partition("site-packages" + os.sep)
    if installed:
        return inside
    stdlib = sysconfig.get_paths()["stdlib"]
    if filename.startswith(stdlib + os.sep):
        return os.path.relpath(filename, stdlib)
    return os.path.relpath(filename)


def signature(error: BaseException) -> str:
    """The exception's type and the line that raised it; for a stream
    target's "logged failure" (an AssertionError carrying the logged
    traceback), those of the logged exception, so that two different bugs
    caught the same way are two crashes."""
    message = str(error)
    logged = _LOGGED_FRAME.findall(message) if "Traceback (most recent" in message else []
    if logged:
        filename, line = logged[-1]
        kind = message.rstrip().splitlines()[-1].split(":", 1)[0]
        return f"logged {kind} at {_where(filename)}:{line}"
    frames = traceback.extract_tb(error.__traceback__)
    last = frames[-1] if frames else None
    where = f"{_where(last.filename)}:{last.lineno}" if last else "?"
    return f"{type(error).__name__} at {where}"


def worker(name: str, libfuzzer_args: list[str]) -> None:
    """Fuzz ``name`` in this process (does not return while libFuzzer runs).

    An exception out of the target is a crash: the input is saved with its
    traceback, once per distinct signature, and fuzzing goes on."""
    import atheris

    with atheris.instrument_imports(include=["aimserver", "bench.fuzz"]):
        table = fuzz.load_targets()
    run = table[name].run
    # Built before the first input, so that a stream target's world (set up
    # at its first call) is not counted as that input's coverage.
    for seed in table[name].seeds()[:1]:
        with contextlib.suppress(Exception):
            run(seed)
    os.makedirs(fuzz.CRASHES, exist_ok=True)
    seen: set[str] = set()

    def one_input(data: bytes) -> None:
        try:
            run(data)
        except Exception as e:
            found = signature(e)
            if found in seen:
                return
            seen.add(found)
            digest = hashlib.sha1(data).hexdigest()
            path = os.path.join(fuzz.CRASHES, f"{name}-crash-{digest}")
            with open(path, "wb") as f:
                f.write(data)
            with open(path + ".txt", "w") as f:
                f.write(traceback.format_exc())
            print(f"{CRASH_PREFIX}{found} {path}", file=sys.stderr, flush=True)

    # libFuzzer starts the same command again for a merge's inner runs:
    # ``python -m`` cannot be started that way, a wrapper script can.
    command = os.environ.get(SELF_VARIABLE, sys.argv[0])
    atheris.Setup([command, *libfuzzer_args], one_input)
    atheris.Fuzz()


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _last_line(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = f.read().rstrip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def run_target(
    name: str,
    *,
    seconds: int | None = None,
    runs: int | None = None,
    timeout: float | None = None,
    verbose: bool = False,
    show: Callable[[str], None] | None = None,
) -> TargetRun:
    """Fuzz ``name`` in a subprocess for ``seconds`` (libFuzzer's
    ``-max_total_time``) or ``runs`` inputs, killed after ``timeout`` s of
    wall clock (default: ``seconds`` + 60, or an hour for ``runs``).
    ``show`` (default: standard error) gets the end of libFuzzer's output
    when the worker did not end normally, or always if ``verbose``."""
    if (seconds is None) == (runs is None):
        raise ValueError("give seconds or runs")
    max_len = fuzz.load_targets()[name].max_len
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
    if runs is not None:
        libfuzzer.append(f"-runs={runs}")
        limit = timeout or 3600
    else:
        libfuzzer.append(f"-max_total_time={seconds}")
        limit = timeout or (seconds or 0) + 60
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
    crashes = []
    for line in output.splitlines():
        if line.startswith(CRASH_PREFIX):
            found, _, path = line[len(CRASH_PREFIX) :].rpartition(" ")
            crashes.append(Crash(found, path, _last_line(path + ".txt")))
    for path in _ARTIFACT.findall(output):
        kind = os.path.basename(path)[len(name) + 1 :].split("-", 1)[0]
        crashes.append(Crash(f"libFuzzer {kind}", path))
    if proc.returncode not in (0, None) and status == "ok":
        status = f"exit {proc.returncode}"
    if verbose or status != "ok":
        (show or _to_stderr)(output[-4000:])
    return TargetRun(name, inputs, elapsed, status, tuple(crashes))


def _features(control_file: str) -> dict[str, set[int]]:
    """Each input's coverage features, from a libFuzzer merge control file
    (its file list, then ``FT index feature...`` lines)."""
    with open(control_file) as f:
        lines = f.read().splitlines()
    count = int(lines[0])
    paths = lines[2 : 2 + count]
    found: dict[str, set[int]] = {}
    for line in lines[2 + count :]:
        if line.startswith("FT "):
            index, *features = line.split()[1:]
            found[paths[int(index)]] = {int(x) for x in features}
    return found


def promote(name: str, count: int, *, timeout: float = 600) -> list[tuple[str, int]]:
    """Copy into the committed corpus of ``name`` at most ``count`` inputs
    of ``bench/fuzz_work/NAME`` that add the most coverage to it: each
    input's features from a libFuzzer merge (its control file), then the
    greedy choice, biggest gain first (ties: the smaller input), skipping
    any input the target fails on (a crash not fixed yet stays out of the
    corpus the suite runs). Returns each new file with its new features."""
    corpus = os.path.join(fuzz.CORPUS, name)
    work = os.path.join(fuzz.WORK, name)
    target = fuzz.load_targets()[name]
    with tempfile.TemporaryDirectory(prefix="fuzz-promote-") as scratch:
        wrapper = os.path.join(scratch, "worker")
        with open(wrapper, "w") as f:
            f.write(
                f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m bench.fuzz"
                f' --worker {shlex.quote(name)} -- "$@"\n'
            )
        os.chmod(wrapper, 0o700)
        control = os.path.join(scratch, "control")
        output = os.path.join(scratch, "merged")
        os.mkdir(output)
        subprocess.run(
            [wrapper, "-merge=1", f"-merge_control_file={control}", f"-max_len={target.max_len}"]
            + [output, corpus, work],
            env={**os.environ, SELF_VARIABLE: wrapper},
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        features = _features(control)
    covered: set[int] = set()
    for path, found in features.items():
        if os.path.dirname(path) == corpus:
            covered |= found
    candidates = {p: f - covered for p, f in features.items() if os.path.dirname(p) == work}
    written = []
    while candidates and len(written) < count:
        best = max(candidates, key=lambda p: (len(candidates[p]), -os.path.getsize(p)))
        gain = candidates.pop(best)
        if not gain:
            break
        with open(best, "rb") as f:
            data = f.read()
        try:
            target.run(data)
        except Exception:
            continue
        covered |= gain
        candidates = {p: f - covered for p, f in candidates.items()}
        path = os.path.join(corpus, "found-" + hashlib.sha1(data).hexdigest()[:16])
        with open(path, "wb") as f:
            f.write(data)
        written.append((path, len(gain)))
    return written
