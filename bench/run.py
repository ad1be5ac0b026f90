"""Run the benchmark suite: ``python -m bench.run`` (``--quick`` for a smoke
run, ``--scenario S3`` to pick). See bench/README.md.

This process is the load generator (asyncio on uvloop, pinned to core 1).
It creates a temporary database with every account the scenarios use,
starts the subject (``twistd aimserver``) and the Twisted baselines under
``taskset -c 0``, runs each scenario alternating baseline and subject, and
prints a table and writes bench/results/<timestamp>.json. Every server
process it starts is stopped by its pid, also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import dataclasses
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import api_load as al
from bench import capacity as cap
from bench import chat as ch
from bench import feedbag as fb
from bench import loadgen as lg
from bench import scenarios as sc
from bench import web_load as wl

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
HOST = "127.0.0.1"
SERVER_CORE = sc.SERVER_CORE
GENERATOR_CORE = sc.GENERATOR_CORE
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0

#: The subject's INI; a scenario may override single keys (``start_subject(settings=...)``).
SETTINGS: dict[str, dict[str, str]] = {
    "server": {"host": HOST, "db": ""},
    "ratelimit": {"enabled": "false"},
    "multisession": {"max_sessions": "10", "notify": "false"},
    # Every simulated client connects from one loopback address.
    "connection": {"max_connections_per_address": "0"},
}


def render_ini(db: Path, overrides: dict[str, dict[str, str]] | None = None) -> str:
    """The subject's INI: SETTINGS with the database path and ``overrides``."""
    merged = {section: dict(keys) for section, keys in SETTINGS.items()}
    merged["server"]["db"] = str(db)
    for section, keys in (overrides or {}).items():
        merged.setdefault(section, {}).update(keys)
    lines = ["# Written by bench/run.py for the subject server."]
    for section, keys in merged.items():
        lines += ["", f"[{section}]"] + [f"{key} = {value}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Server:
    side: str
    kind: str
    pid: int
    auth: tuple[str, int]
    popen: subprocess.Popen[bytes]
    log: Path
    #: every port it listens on (the subject: auth, BOS, chat)
    ports: tuple[int, ...] = ()
    #: the subject's own log (twistd --logfile)
    twistd_log: Path | None = None
    #: the subject's management API (``--api-port``, always a free port of its own)
    api: tuple[str, int] | None = None
    #: the subject's browser-client listener (``--web-port``, always a free port of its own)
    web: tuple[str, int] | None = None


class Harness:
    """Starts and stops the server processes; remembers every one it started."""

    def __init__(self, workdir: Path, db: Path, ini: Path, pin: bool) -> None:
        self.workdir = workdir
        self.db = db
        self.ini = ini
        self.pin = pin
        self.servers: list[Server] = []
        self.started = 0

    def _prefix(self) -> list[str]:
        return ["taskset", "-c", str(SERVER_CORE)] if self.pin else []

    async def _launch(self, side: str, kind: str, cmd: list[str], ports: list[int]) -> Server:
        self.started += 1
        log = self.workdir / f"{self.started:02d}-{kind}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                self._prefix() + cmd,
                cwd=self.workdir if kind == "subject" else REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        server = Server(side, kind, popen.pid, (HOST, ports[0]), popen, log, tuple(ports))
        self.servers.append(server)
        deadline = time.monotonic() + START_TIMEOUT
        waiting = list(ports)
        while waiting:
            if popen.poll() is not None:
                raise RuntimeError(f"{kind} server exited at start:\n{tail(log)}")
            if time.monotonic() > deadline:
                self.stop(server)
                raise RuntimeError(f"{kind} server not listening after {START_TIMEOUT} s")
            try:
                _, writer = await asyncio.open_connection(HOST, waiting[0])
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            waiting.pop(0)
        await asyncio.sleep(0.3)
        return server

    async def start_subject(
        self,
        *,
        settings: dict[str, dict[str, str]] | None = None,
        ports: tuple[int, ...] | None = None,
        gc_log: Path | None = None,
    ) -> Server:
        """``twistd aimserver`` with the bench INI, plus ``settings`` (written to
        a scenario's own INI), on ``ports`` (auth, BOS and optionally chat;
        default: free ones; the chat listener always gets a port of its own,
        never the server's default 5192); with ``gc_log`` it runs under
        bench.gcprobe, which logs every full GC."""
        auth, bos = ports[:2] if ports else (free_port(), free_port())
        chat = ports[2] if ports and len(ports) > 2 else free_port()
        # The management API and the web listener get free ports too, never
        # the defaults 8080 and 8081.
        api = free_port()
        web = free_port()
        ini = self.ini
        if settings:
            ini = self.workdir / f"bench-{self.started + 1:02d}.ini"
            ini.write_text(render_ini(self.db, settings))
        twistd = Path(sys.executable).parent / "twistd"
        twistd_log = self.workdir / f"twistd-{self.started + 1:02d}.log"
        cmd = [
            str(twistd) if twistd.exists() else "twistd",
            "-n",
            "--logfile",
            str(twistd_log),
            "--pidfile",
            "",
            "aimserver",
            "--db",
            str(self.db),
            "--auth-port",
            str(auth),
            "--bos-port",
            str(bos),
            "--chat-port",
            str(chat),
            "--api-port",
            str(api),
            "--web-port",
            str(web),
            "--config",
            str(ini),
        ]
        if gc_log is not None:
            cmd = [sys.executable, "-m", "bench.gcprobe", str(gc_log), "--", *cmd[1:]]
        server = await self._launch("subject", "subject", cmd, [auth, bos, chat, api, web])
        server.ports = (auth, bos, chat)
        server.api = (HOST, api)
        server.web = (HOST, web)
        server.twistd_log = twistd_log
        return server

    async def start_baseline(self, kind: str, options: Sequence[str] = ()) -> Server:
        port = free_port()
        cmd = [sys.executable, "-m", "bench.baselines", kind, "--port", str(port), *options]
        ports = [port]
        if kind == "signon":
            bos = free_port()
            cmd += ["--bos-port", str(bos)]
            ports.append(bos)
        return await self._launch("baseline", kind, cmd, ports)

    def kill(self, server: Server) -> None:
        """SIGKILL to the pid (a crash, for the reconnect storm), then reap it."""
        if server.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.pid, signal.SIGKILL)
            server.popen.wait(STOP_TIMEOUT)
        if server in self.servers:
            self.servers.remove(server)

    def stop(self, server: Server) -> None:
        """SIGTERM to the pid, SIGKILL after STOP_TIMEOUT."""
        popen = server.popen
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.pid, signal.SIGTERM)
            try:
                popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(server.pid, signal.SIGKILL)
                popen.wait(STOP_TIMEOUT)
        if server in self.servers:
            self.servers.remove(server)

    def stop_all(self) -> None:
        for server in list(self.servers):
            self.stop(server)


def git_state() -> dict[str, Any]:
    """The commit the subject ran from, and whether the tree had local changes."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    status = git("status", "--porcelain", "--", "aimserver")
    return {"commit": git("rev-parse", "HEAD") or None, "aimserver_modified": bool(status)}


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def create_database(
    path: Path, names: Sequence[str], feedbags: dict[str, list[fb.Item]] | None = None
) -> None:
    """Every account the scenarios sign on, password ``benchpw``, and the
    stored feedbags of those that have one (``feedbags``: name -> items), in
    one transaction, with the store's own operations."""
    from aimserver.store import accounts, sqlite
    from aimserver.store import feedbags as stored
    from aimserver.store.interfaces import FeedbagItem

    conn = sqlite.connect(str(path))
    now = int(time.time())

    def create(c: Any) -> None:
        for name in names:
            accounts._create_account(c, name, sc.PASSWORD.decode(), now)
        for name, items in (feedbags or {}).items():
            stored._upsert_feedbag_items(c, name, [FeedbagItem(*item) for item in items], now)

    try:
        sqlite.transact(conn, create)
    finally:
        conn.close()


# -- the table ----------------------------------------------------------------------------


def number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def latency(side: dict[str, Any]) -> str:
    if not side or not side.get("latency_samples"):
        return "-"
    return "/".join(number(side[k]) for k in ("p50_ms", "p99_ms", "p999_ms"))


#: A closed loop whose server is less busy than this (and whose generator is
#: not the limit) was limited by latency, not capacity: its figure is no maximum.
SATURATED = 0.80
#: Steal time, or CPU of other processes on a pinned core, above this share
#: of a window makes the run noisy (shown, not discarded).
NOISE = 0.10


def check(row: dict[str, Any]) -> str:
    notes = list(row.get("flags") or ())
    for label, side in (("B", row["baseline"]), ("S", row["subject"])):
        problems = side.get("problems") or {}
        if problems:
            notes.append(label + ": " + ", ".join(f"{k} {v}" for k, v in sorted(problems.items())))
        if side.get("generator_bound"):
            notes.append(f"GENERATOR-BOUND {label}")
        elif row.get("kind") == "closed" and side and side["server_busy"] < SATURATED:
            notes.append(f"unsaturated {label}")
        if side and side.get("steal_max", 0) >= NOISE:
            notes.append(f"steal {100 * side['steal_max']:.0f}% {label}")
        if side and side.get("others_max", 0) >= NOISE:
            notes.append(f"others {100 * side['others_max']:.0f}% {label}")
    return "; ".join(notes) or "ok"


def p99_ratio(row: dict[str, Any]) -> float | None:
    b, s = row["baseline"], row["subject"]
    if b.get("latency_samples") and s.get("latency_samples") and b["p99_ms"] > 0:
        return s["p99_ms"] / b["p99_ms"]
    return None


COLUMNS = (
    ("scen", 4),
    ("metric", 46),
    ("unit", 12),
    ("B", 9),
    ("S", 9),
    ("S/B", 5),
    ("B/cpu-s", 9),
    ("S/cpu-s", 9),
    ("S/B", 5),
    ("S ms p50/p99/p99.9", 20),
    ("B ms p50/p99/p99.9", 20),
    ("p99 S/B", 7),
    ("n S", 8),
    ("srv% B/S", 8),
    ("gen% B/S", 8),
    ("check", 0),
)


def table(rows: list[dict[str, Any]]) -> str:
    def line(cells: Sequence[str]) -> str:
        out = []
        for (_, width), cell in zip(COLUMNS, cells, strict=True):
            out.append(cell.ljust(width) if width else cell)
        return " ".join(out).rstrip()

    lines = [line([c for c, _ in COLUMNS]), "-" * 214]
    for row in rows:
        b, s = row["baseline"], row["subject"]
        gen = "/".join(f"{100 * x.get('generator_busy', 0):.0f}" for x in (b, s))
        srv = "/".join(f"{100 * x.get('server_busy', 0):.0f}" for x in (b, s))
        lines.append(
            line(
                [
                    row["scenario"],
                    row["metric"],
                    row["unit"],
                    number(b.get("value")),
                    number(s.get("value")),
                    number(row["ratio"]),
                    number(b.get("per_cpu")),
                    number(s.get("per_cpu")),
                    number(row["per_cpu_ratio"]),
                    latency(s),
                    latency(b),
                    number(p99_ratio(row)),
                    str(s.get("count", "-")),
                    srv,
                    gen,
                    check(row),
                ]
            )
        )
        if row.get("notes"):
            lines.append(" " * 5 + row["notes"])
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------


SCENARIOS = ("S1", "S2", "S3", "S4", "S5", "S7", "S8", "S9", "S10", "S11", "S12", "S13")


async def run_suite(
    harness: Harness, profile: sc.Profile, picked: list[str], s4_sizes: tuple[int, ...]
) -> tuple[list[dict[str, Any]], list[str]]:
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    plan = {
        "S1": lambda: sc.scenario_s1(harness, profile),
        "S2": lambda: cap.scenario_s2(harness, profile, profile.s2_sessions),
        "S3": lambda: sc.scenario_s3(harness, profile),
        "S4": lambda: sc.scenario_s4(harness, profile, s4_sizes),
        "S5": lambda: sc.scenario_s5(harness, profile),
        "S7": lambda: cap.scenario_s7(harness, profile),
        "S8": lambda: cap.scenario_s8(harness, profile),
        "S9": lambda: cap.scenario_s9(harness, profile),
        "S10": lambda: fb.scenario_s10(harness, profile),
        "S11": lambda: ch.scenario_s11(harness, profile),
        "S12": lambda: al.scenario_s12(harness, profile),
        "S13": lambda: wl.scenario_s13(harness, profile),
    }
    for name in picked:
        started = time.monotonic()
        print(f"== {name} ...", flush=True)
        try:
            result = await plan[name]()
        except (OSError, RuntimeError, TimeoutError, lg.ProtocolFailure) as e:
            errors.append(f"{name}: {type(e).__name__}: {e}")
            print(f"== {name} FAILED: {type(e).__name__}: {e}", flush=True)
            harness.stop_all()
            continue
        scenario_rows = [r.to_json() for r in result]
        rows += scenario_rows
        print(table(scenario_rows), flush=True)
        print(f"== {name} done in {time.monotonic() - started:.0f} s", flush=True)
    return rows, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a ~2 minute smoke run")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIOS,
        help="run only this scenario (repeatable)",
    )
    parser.add_argument("--s4-sizes", help="watcher counts for S4, e.g. 100,1000,5000")
    parser.add_argument("--s2-sessions", type=int, help="sessions S2 holds (e.g. 19000)")
    parser.add_argument(
        "--s2-keepalive",
        type=float,
        help="S2: the subject's [connection] keepalive_interval (default 5; 60 is the server's)",
    )
    parser.add_argument("--s7-sessions", type=int, help="sessions in the S7 reconnect storm")
    parser.add_argument(
        "--s7-login-rate", type=float, help="S7: the subject's [auth] max_logins_per_second"
    )
    parser.add_argument("--s8-seconds", type=float, help="S8 churn duration (e.g. 600)")
    parser.add_argument("--s8-rate", type=float, help="S8 sign-ons (and sign-offs) per second")
    parser.add_argument(
        "--s11-depth", type=int, help="S11: lines in flight per sender in the closed loop"
    )
    parser.add_argument(
        "--s12-sessions", type=int, help="S12: sessions online while the API is timed"
    )
    parser.add_argument(
        "--s13-sessions", type=int, help="S13: idle browser sessions held for the RSS figure"
    )
    parser.add_argument("--rounds", type=int, help="baseline/subject alternations per figure")
    parser.add_argument("--window", type=float, help="seconds per measured window")
    parser.add_argument(
        "--subject",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a setting of the subject's INI for every scenario (repeatable), for experiments",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="directory for the JSON")
    parser.add_argument("--keep-temp", action="store_true", help="keep the database and logs")
    args = parser.parse_args(argv)

    profile = sc.QUICK if args.quick else sc.FULL
    for setting in args.subject:
        key, sep, value = setting.partition("=")
        section, dot, name = key.partition(".")
        if not (sep and dot and section and name):
            parser.error(f"--subject {setting!r}: expected SECTION.KEY=VALUE")
        SETTINGS.setdefault(section, {})[name] = value
    if args.rounds:
        profile = dataclasses.replace(profile, rounds=args.rounds)
    if args.window:
        profile = dataclasses.replace(profile, window=args.window)
    for name in (
        "s2_sessions",
        "s2_keepalive",
        "s7_sessions",
        "s7_login_rate",
        "s8_seconds",
        "s8_rate",
        "s11_depth",
        "s12_sessions",
        "s13_sessions",
    ):
        if getattr(args, name):
            profile = dataclasses.replace(profile, **{name: getattr(args, name)})
    s4_sizes = (
        tuple(int(x) for x in args.s4_sizes.split(",")) if args.s4_sizes else profile.s4_sizes
    )
    picked = list(dict.fromkeys(args.scenario)) if args.scenario else list(SCENARIOS)

    cpus = sorted(os.sched_getaffinity(0))
    pin = len(cpus) >= 2 and SERVER_CORE in cpus and GENERATOR_CORE in cpus
    pin = pin and shutil.which("taskset") is not None
    if pin:
        os.sched_setaffinity(0, {GENERATOR_CORE})
    else:
        print("warning: not pinning (needs 2 cores and taskset): figures are not comparable")

    workdir = Path(tempfile.mkdtemp(prefix="aimbench-"))
    db, ini = workdir / "bench.sqlite", workdir / "bench.ini"
    harness = Harness(workdir, db, ini, pin)
    atexit.register(harness.stop_all)
    # Ctrl-C (and SIGTERM, turned into one) cancels the run; the finally
    # below stops every server. A shell starts background jobs with SIGINT
    # ignored: take it back, or asyncio.Runner would not watch for it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    started_at = time.strftime("%Y%m%d-%H%M%S")
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    interrupted = False
    try:
        names = (
            sc.s1_accounts(profile)
            + sc.s3_accounts(profile)
            + sc.s4_accounts(profile, s4_sizes)
            + sc.s5_accounts(profile)
            + cap.accounts(profile, profile.s2_sessions)
            + fb.accounts(profile)
            + ch.accounts(profile)
            + al.accounts(profile)
            + wl.accounts(profile)
        )
        # One account per name: scenarios share some (S10's load is S5's).
        names = list(dict.fromkeys(names))
        create_database(db, names, fb.seeds(profile) | wl.seeds(profile))
        ini.write_text(render_ini(db))
        print(
            f"aimserver bench ({profile.name}): {len(names)} accounts in {workdir};"
            f" server on core {SERVER_CORE}, generator on core {GENERATOR_CORE}",
            flush=True,
        )
        with asyncio.Runner(loop_factory=lg.new_event_loop) as runner:
            rows, errors = runner.run(run_suite(harness, profile, picked, s4_sizes))
    except KeyboardInterrupt:
        interrupted = True
        errors.append("interrupted")
    finally:
        harness.stop_all()
        if not args.keep_temp:
            shutil.rmtree(workdir, ignore_errors=True)

    duration = time.monotonic() - started
    print()
    suffix = " (INTERRUPTED)" if interrupted else ""
    print(f"aimserver bench, {profile.name}, {duration:.0f} s{suffix}")
    print(table(rows))
    for error in errors:
        print("ERROR:", error)
    if interrupted and not rows:
        return 1
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"{started_at}.json"
    document = {
        "started": started_at,
        "duration_s": duration,
        "profile": dataclasses.asdict(profile),
        "scenarios": picked,
        "s4_sizes": list(s4_sizes),
        "subject_settings": args.subject,
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version,
            "platform": platform.platform(),
            "pinned": pin,
            "server_core": SERVER_CORE if pin else None,
            "generator_core": GENERATOR_CORE if pin else None,
        },
        "git": git_state(),
        "generator_bound_threshold": sc.GENERATOR_BOUND,
        "rows": rows,
        "errors": errors,
    }
    out.write_text(json.dumps(document, indent=1, default=str, allow_nan=True) + "\n")
    print(f"results: {out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
