"""Run twistd with a hook that times the interpreter's full (generation 2)
garbage collections: ``python -m bench.gcprobe LOG -- <twistd arguments>``.

The server's code is not touched: ``gc.callbacks`` (a standard interpreter
hook) gets a call at the start and the end of every collection; for
generation 2 it appends one line to LOG:

    <CLOCK_MONOTONIC at the end, s> <pause, ms> <objects collected> <uncollectable>

CLOCK_MONOTONIC is system-wide on Linux, so the generator can tell which
pauses fell into its measured window. The hook costs one Python call per
collection of any generation (it returns at once for generations 0 and 1).
Used by the churn scenario (S8) only.

Diagnosis only (it stalls the server for tens of ms each time): with
``AIMBENCH_GC_TYPES=SECONDS`` in the environment a thread also appends, every
SECONDS, the 15 object types whose count grew most since its first look to
LOG.types (from ``gc.get_objects()``, i.e. containers only, and not what
``gc.freeze()`` froze at start). With ``AIMBENCH_TRACEMALLOC=SECONDS``
tracemalloc runs (the server gets much slower) and every SECONDS the
Python-allocated total and the 15 source lines whose allocations grew most
since the first look go to LOG.tracemalloc.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import tracemalloc
from collections import Counter
from typing import Any


def census() -> Counter[str]:
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def watch_types(path: str, every: float) -> None:
    """Log the growth of object counts by type, every ``every`` seconds."""
    first = census()
    with open(path, "a", buffering=1) as out:
        while True:
            time.sleep(every)
            now = census()
            grown = sorted(((now[k] - first[k], k) for k in now), reverse=True)[:15]
            text = " ".join(f"{k}:{d:+d}" for d, k in grown if d)
            out.write(f"{time.monotonic():.3f} objects {sum(now.values())} {text}\n")


def watch_allocations(path: str, every: float) -> None:
    """Log Python-allocated memory and where it grew, every ``every`` seconds."""
    time.sleep(every)
    first = tracemalloc.take_snapshot()
    with open(path, "a", buffering=1) as out:
        while True:
            time.sleep(every)
            snapshot = tracemalloc.take_snapshot()
            current, peak = tracemalloc.get_traced_memory()
            out.write(f"{time.monotonic():.3f} traced {current} peak {peak}\n")
            for stat in snapshot.compare_to(first, "traceback")[:15]:
                where = " <- ".join(f"{f.filename}:{f.lineno}" for f in stat.traceback)
                out.write(f"  {stat.size_diff:+d} B {stat.count_diff:+d} blocks  {where}\n")


def main() -> None:
    if "--" not in sys.argv[2:]:
        sys.exit("usage: python -m bench.gcprobe LOG -- <twistd arguments>")
    log = open(sys.argv[1], "a", buffering=1)  # noqa: SIM115 (open for the process' life)
    rest = sys.argv[sys.argv.index("--", 2) + 1 :]
    started = [0.0]
    clock = time.perf_counter

    def on_collection(phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started[0] = clock()
            return
        pause_ms = (clock() - started[0]) * 1e3
        log.write(
            f"{time.monotonic():.6f} {pause_ms:.3f} {info['collected']} {info['uncollectable']}\n"
        )

    gc.callbacks.append(on_collection)
    traced = float(os.environ.get("AIMBENCH_TRACEMALLOC") or 0)
    if traced > 0:
        tracemalloc.start(4)
        threading.Thread(
            target=watch_allocations, args=(sys.argv[1] + ".tracemalloc", traced), daemon=True
        ).start()
    every = float(os.environ.get("AIMBENCH_GC_TYPES") or 0)
    if every > 0:
        threading.Thread(
            target=watch_types, args=(sys.argv[1] + ".types", every), daemon=True
        ).start()
    sys.argv = ["twistd", *rest]
    from twisted.scripts.twistd import run

    sys.exit(run())


if __name__ == "__main__":
    main()
