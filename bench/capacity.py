"""The capacity scenarios: what the server holds and how it copes.

* S2, sessions held: idle sessions with 20-buddy lists, signed on in steps;
  the server's RSS per session (a linear fit of VmRSS over the steps), its
  idle CPU over a hold window with keepalives, and disconnects during the
  hold. Baseline: the bare idle-connection holder.
* S7, reconnect storm: sessions online, ``kill -9`` of the server, a restart
  on the same ports and database, every client back with a full BUCP + BOS
  sign-on (capped exponential backoff with jitter): time until all are back,
  refusals by login error code, timeouts.
* S8, churn: steady sign-ons and sign-offs with IM traffic; RSS and open file
  descriptors sampled every second, full-GC pauses (bench/gcprobe.py).
* S9, slow consumer: one session stops reading while others IM it and each
  other: when the server cuts it off, and the others' latency with and
  without it.

They use the same harness, ``Window``/``Run``/``Row`` and client as the
throughput scenarios (bench/scenarios.py); only S2 has a baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import socket
import statistics
import struct
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench import loadgen as lg
from bench.scenarios import (
    PASSWORD,
    SETUP_CONCURRENCY,
    TICK,
    Harness,
    Profile,
    Row,
    Run,
    Target,
    Window,
    finish,
    limited,
    listen_overflows,
    overflow,
    server_cpu,
    settle_closed,
    sign_on,
)

#: Names on each S2 / S7 session's client-side buddy list.
BUDDIES = 20
#: Login error codes (TLV 0x08 of 17,03) that mean "rate limited, come back
#: later" (LOGIN.md §4): an allowed answer to a storm, unlike a timeout.
RATE_LIMIT_CODES = frozenset({0x0018, 0x001D})
#: TCP states (include/net/tcp_states.h) of a client socket.
TCP_ESTABLISHED = 1
TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE (reset)",
    8: "CLOSE_WAIT (FIN)",
    9: "LAST_ACK",
    11: "CLOSING",
}


# -- pure helpers (tests/test_bench_accounting.py) ----------------------------------------


@dataclass(frozen=True)
class Fit:
    """y = slope * x + intercept, least squares, and its r²."""

    slope: float
    intercept: float
    r2: float


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> Fit:
    """Ordinary least squares over at least two points with distinct x."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("a fit needs two or more (x, y) points")
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("a fit needs two distinct x values")
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    syy = sum((y - mean_y) ** 2 for y in ys)
    residual = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys, strict=True))
    r2 = 1.0 - residual / syy if syy > 0 else 1.0
    return Fit(slope, intercept, r2)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Capped exponential backoff with jitter: before attempt ``attempt``
    (0, 1, 2 ...) wait between half and all of min(cap, base * 2**attempt)."""
    ceiling = min(cap, base * 2.0 ** min(attempt, 60))
    return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


def loopback_address(index: int) -> str:
    """A distinct loopback source address per user (127.10.0.1, 127.10.0.2,
    ...; all of 127.0.0.0/8 reaches the server on lo), so a per-address login
    limit sees one address per user, as it would in the field."""
    if not 0 <= index < 250 * 250 * 200:
        raise ValueError(f"no loopback address for user {index}")
    high, low = divmod(index, 250)
    return f"127.{10 + high // 250}.{high % 250}.{low + 1}"


def change_percent(start: float, end: float) -> float:
    return (end - start) / start * 100.0 if start else math.nan


def ring_buddies(index: int, count: int, size: int = BUDDIES) -> list[int]:
    """The sessions on session ``index``'s list: its ``size`` nearest
    neighbours on a ring of ``count`` (index ± 1, ± 2, ...), never itself.
    Session i watches i ± k and is watched by the same ones: every sign-on
    both receives arrivals and fans out its own."""
    found: list[int] = []
    step = 1
    while len(found) < min(size, count - 1) and step < count:
        for other in ((index + step) % count, (index - step) % count):
            if other != index and other not in found and len(found) < size:
                found.append(other)
        step += 1
    return found


# -- /proc --------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of a process, in KiB (/proc/PID/status)."""
    wanted = {"VmRSS", "VmHWM", "RssAnon", "RssFile"}
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in wanted:
                found[key] = int(value.split()[0])
    return found


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def quiet(pid: int, below: float = 0.05, timeout: float = 15.0) -> float:
    """Wait until the process used less than ``below`` of a core over 0.2 s
    (it has written what it had to), at most ``timeout``; its last share."""
    deadline = time.monotonic() + timeout
    busy = 1.0
    before, at = server_cpu(pid), time.perf_counter()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        now_cpu, now = server_cpu(pid), time.perf_counter()
        busy = (now_cpu - before) / (now - at)
        if busy < below:
            break
        before, at = now_cpu, now
    return busy


def tcp_state(client: lg.FlapClient) -> int:
    """The kernel's TCP state of the client's socket (TCP_INFO), 0 if unknown."""
    sock = client.transport.get_extra_info("socket") if client.transport else None
    if sock is None:
        return 0
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError:
        return 0


NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
#: Match any socket cookie (INET_DIAG_NOCOOKIE).
NO_COOKIE = struct.pack("=II", 0xFFFFFFFF, 0xFFFFFFFF)


def tcp_queues(local: tuple[str, int], remote: tuple[str, int]) -> tuple[int, int] | None:
    """(receive queue, send queue) in bytes of one IPv4 TCP socket, asked of
    the kernel by its addresses over netlink sock_diag (one small round trip;
    reading /proc/net/tcp instead costs ms when thousands of sockets linger
    in TIME_WAIT, and would stall the generator). None if not found."""
    sockid = (
        struct.pack("!HH", local[1], remote[1])
        + socket.inet_aton(local[0])
        + bytes(12)
        + socket.inet_aton(remote[0])
        + bytes(12)
        + struct.pack("=I", 0)
        + NO_COOKIE
    )
    request = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
    header = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as link:
            link.settimeout(1.0)
            link.sendto(header + request, (0, 0))
            data = link.recv(65536)
    except OSError:
        return None
    # nlmsghdr (16 bytes), then inet_diag_msg: family, state, timer, retrans,
    # the 48-byte socket id, expires, rqueue, wqueue, uid, inode.
    if len(data) < 16 + 64 or struct.unpack_from("=H", data, 4)[0] == NLMSG_ERROR:
        return None
    receive, send = struct.unpack_from("=II", data, 16 + 56)
    return receive, send


class Tally:
    """Counts the frames (and their bytes) of held sessions by channel (no
    parsing, no inbox)."""

    def __init__(self) -> None:
        self.frames: Counter[int] = Counter()
        self.bytes = 0

    def on_frame(self, client: lg.FlapClient, channel: int, payload: bytes) -> None:
        self.frames[channel] += 1
        self.bytes += 6 + len(payload)


def close_quietly(clients: Sequence[lg.FlapClient | None]) -> None:
    for client in clients:
        if client is not None:
            client.close()


def mib(value_kib: float) -> str:
    return f"{value_kib / 1024:,.1f} MiB"


# -- S2: sessions held --------------------------------------------------------------------


def s2_names(count: int) -> list[str]:
    return [f"s2u{i:05d}" for i in range(count)]


def accounts(profile: Profile, s2_sessions: int) -> list[str]:
    """Every account S2, S7 (which reuses S2's), S8 and S9 sign on."""
    return (
        s2_names(max(s2_sessions, profile.s7_sessions))
        + s8_stable_names(profile)
        + s8_churn_names(profile)
        + s9_names(profile)
    )


@dataclass
class Held:
    """One target's sessions-held measurement."""

    memory: Run
    idle: Run


async def hold(harness: Harness, side: str, profile: Profile, sessions: int, round_: int) -> Held:
    """Sign ``sessions`` on in steps (RSS after each), then hold them idle."""
    keepalive = profile.s2_keepalive
    if side == "subject":
        target: Target = await harness.start_subject(
            settings={"connection": {"keepalive_interval": f"{keepalive:g}"}}
        )
    else:
        target = await harness.start_baseline("holder", ["--keepalive", f"{keepalive:g}"])
    names = s2_names(sessions)
    lists = [[names[j] for j in ring_buddies(i, sessions)] for i in range(sessions)]
    tally = Tally()
    clients: list[lg.FlapClient] = []

    async def one(index: int) -> lg.FlapClient:
        client = await sign_on(target, names[index], buddies=lists[index], label=index)
        client.on_frame = tally.on_frame
        return client

    try:
        await quiet(target.pid)
        points = [(0, proc_status(target.pid))]
        fds = [open_fds(target.pid)]
        ramp = Window(target.pid)
        ramp.start()
        step_walls = []
        for step in range(1, profile.s2_steps + 1):
            low, high = len(clients), sessions * step // profile.s2_steps
            started = time.perf_counter()
            clients += await limited(
                [lambda i=i: one(i) for i in range(low, high)], SETUP_CONCURRENCY
            )
            step_walls.append(time.perf_counter() - started)
            await quiet(target.pid)
            points.append((high, proc_status(target.pid)))
            fds.append(open_fds(target.pid))
        ramp.stop()
        fit = linear_fit([n for n, _ in points[1:]], [s["VmRSS"] for _, s in points[1:]])
        lost_in_ramp = sum(c.closed.done() for c in clients)
        # The server's sweeper sends a keepalive only to a connection written
        # nothing since the previous sweep: one interval first, so that every
        # session has been through a sweep since its sign-on's last frame.
        await asyncio.sleep(keepalive)
        # The hold: a whole number of keepalive intervals, nobody sends anything.
        tally.frames.clear()
        before = sum(c.closed.done() for c in clients)
        idle = Window(target.pid)
        idle.start()
        await asyncio.sleep(keepalive * profile.s2_hold_sweeps)
        idle.stop()
        disconnects = sum(c.closed.done() for c in clients) - before
        frames = dict(tally.frames)
        memory = Run.measured(
            ramp,
            side=target.side,
            round=round_,
            value=fit.slope,
            count=sessions,
            problems={"disconnected during ramp": lost_in_ramp} | overflow(ramp),
            extra={
                "rss_kib_by_sessions": [(n, s) for n, s in points],
                "open_fds_by_sessions": list(zip([n for n, _ in points], fds, strict=True)),
                "fit_kib_per_session": fit.slope,
                "fit_intercept_kib": fit.intercept,
                "fit_r2": fit.r2,
                "step_sign_on_s": step_walls,
                "sign_ons_per_s": sessions / sum(step_walls),
            },
        )
        keepalives = frames.get(5, 0)
        idle_run = Run.measured(
            idle,
            side=target.side,
            round=round_,
            value=100.0 * idle.server_cpu / idle.wall,
            count=keepalives,
            problems={"disconnected during hold": disconnects} | overflow(idle),
            extra={
                "sessions": sessions,
                "keepalive_interval_s": keepalive,
                "frames_by_channel": frames,
                "keepalives_per_session": keepalives / sessions,
                "server_us_per_keepalive": 1e6 * idle.server_cpu / keepalives
                if keepalives
                else None,
                "rss_kib_after_hold": proc_status(target.pid),
            },
        )
        return Held(memory, idle_run)
    finally:
        # Stop the server first: 10,000 clean sign-offs would only cost time.
        harness.stop(target)
        close_quietly(clients)


async def scenario_s2(harness: Harness, profile: Profile, sessions: int) -> list[Row]:
    keepalive = profile.s2_keepalive
    hold_s = keepalive * profile.s2_hold_sweeps
    memory = Row(
        "S2",
        f"sessions held, RSS per session, {sessions:,} sessions",
        "KiB/session",
        kind="memory",
        cpu_figures=False,
    )
    idle = Row(
        "S2",
        f"sessions held, idle CPU, {hold_s:g} s hold",
        "% of a core",
        kind="idle",
    )
    held: dict[str, Held] = {}
    for side in ("baseline", "subject"):
        print(f"  S2: signing on {sessions:,} sessions to the {side} ...", flush=True)
        held[side] = await hold(harness, side, profile, sessions, 0)
        memory.runs.append(held[side].memory)
        idle.runs.append(held[side].idle)
    s = held["subject"].memory.extra
    b = held["baseline"].memory.extra
    first, last = s["rss_kib_by_sessions"][0][1], s["rss_kib_by_sessions"][-1][1]
    memory.notes = (
        f"S VmRSS {mib(first['VmRSS'])} idle -> {mib(last['VmRSS'])} at {sessions:,}"
        f" (fit r² {s['fit_r2']:.4f}; RssAnon {mib(last.get('RssAnon', 0))});"
        f" B fit r² {b['fit_r2']:.4f}; S signed on at {s['sign_ons_per_s']:,.0f}/s with 20-buddy"
        " lists (ring: each session watches and is watched by its 20 neighbours)"
    )
    si, bi = held["subject"].idle.extra, held["baseline"].idle.extra
    idle.notes = (
        f"keepalive_interval {keepalive:g} s (bench INI; default 60 s) -> keepalives per"
        f" session S {si['keepalives_per_session']:.2f} B {bi['keepalives_per_session']:.2f};"
        f" server µs/keepalive S {fmt(si['server_us_per_keepalive'])}"
        f" B {fmt(bi['server_us_per_keepalive'])}; per-cpu columns = keepalives/CPU-s"
    )
    return [memory, idle]


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


# -- S7: reconnect storm ------------------------------------------------------------------

#: Backoff of a reconnecting client: the first attempt after 0.25-0.5 s, then
#: doubling, capped at 4-8 s.
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
#: Attempts of a set-up sign-on before the storm (backing off 0.125-2 s).
SETUP_RETRIES = 30


class Storm:
    """Every client of the storm, its attempts and their outcomes."""

    def __init__(self, profile: Profile, auth: tuple[str, int]) -> None:
        count = profile.s7_sessions
        self.names = s2_names(count)
        self.lists = [[self.names[j] for j in ring_buddies(i, count)] for i in range(count)]
        self.auth = auth
        self.rng = random.Random(7)
        self.tally = Tally()
        self.clients: list[lg.FlapClient | None] = [None] * count
        self.killed_ns = 0
        self.listening_ns = 0
        self.first_answer_ns = 0
        self.back_ns: list[int] = [0] * count
        self.attempts = 0
        self.outcomes: Counter[str] = Counter()
        self.timed_out: set[int] = set()
        self.deadline = 0.0

    def failed(self, what: str) -> None:
        when = "server down" if not self.listening_ns else "after restart"
        self.outcomes[f"{what} ({when})"] += 1

    async def reconnect(self, index: int, old: lg.FlapClient) -> None:
        """Wait for the old connection to drop, then sign on again until it
        works or the deadline passes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(old.closed), 30.0)
        if not old.closed.done():
            self.outcomes["old connection never closed"] += 1
            return
        attempt = 0
        while time.monotonic() < self.deadline:
            await asyncio.sleep(backoff_delay(attempt, BACKOFF_BASE, BACKOFF_CAP, self.rng))
            attempt += 1
            self.attempts += 1
            name = self.names[index]
            try:
                login = await lg.bucp_login(
                    *self.auth, name, PASSWORD, source=loopback_address(index)
                )
            except ConnectionRefusedError:
                self.failed("connection refused")
                continue
            except TimeoutError:
                self.outcomes["TIMEOUT at login"] += 1
                self.timed_out.add(index)
                continue
            except (OSError, lg.ProtocolFailure) as e:
                self.failed(f"login {type(e).__name__}")
                continue
            if not self.first_answer_ns:
                self.first_answer_ns = lg.now_ns()
            if login.error is not None:
                kind = "rate limited" if login.error in RATE_LIMIT_CODES else "REFUSED"
                self.outcomes[f"{kind}: login error {login.error:#06x}"] += 1
                continue
            try:
                client, _ = await lg.bos_signon(
                    login, buddies=self.lists[index], label=index, source=loopback_address(index)
                )
            except TimeoutError:
                self.outcomes["TIMEOUT at BOS sign-on"] += 1
                self.timed_out.add(index)
                continue
            except (OSError, lg.ProtocolFailure) as e:
                self.failed(f"BOS {type(e).__name__}")
                continue
            client.inbox.clear()
            client.on_frame = self.tally.on_frame
            self.clients[index] = client
            self.back_ns[index] = lg.now_ns()
            return

    @property
    def back(self) -> int:
        return sum(1 for t in self.back_ns if t)


async def scenario_s7(harness: Harness, profile: Profile) -> list[Row]:
    count = profile.s7_sessions
    # The production rate limiter is on for the storm (the other scenarios turn it off).
    settings = {"ratelimit": {"enabled": "true"}}
    if profile.s7_login_rate:
        settings["auth"] = {"max_logins_per_second": f"{profile.s7_login_rate:g}"}
    subject = await harness.start_subject(settings=settings)
    storm = Storm(profile, subject.auth)
    clients: list[lg.FlapClient] = []
    tasks: list[asyncio.Task[None]] = []
    restarted: Target | None = None
    try:
        started = time.perf_counter()

        async def one(index: int) -> lg.FlapClient:
            # Set-up, not measured; a login limit below the set-up rate answers
            # 0x0018: back off and retry, like a client.
            for attempt in range(SETUP_RETRIES):
                try:
                    client, _ = await lg.full_signon(
                        subject.auth,
                        storm.names[index],
                        PASSWORD,
                        buddies=storm.lists[index],
                        label=index,
                        source=loopback_address(index),
                    )
                    break
                except (OSError, TimeoutError, lg.ProtocolFailure) as e:
                    if attempt == SETUP_RETRIES - 1:
                        raise RuntimeError(f"set-up sign-on {index} failed: {e!r}") from e
                    await asyncio.sleep(backoff_delay(attempt, 0.25, 2.0, storm.rng))
            client.inbox.clear()
            client.on_frame = storm.tally.on_frame
            return client

        clients = await limited([lambda i=i: one(i) for i in range(count)], SETUP_CONCURRENCY)
        print(
            f"  S7: {count:,} sessions online in {time.perf_counter() - started:.1f} s;"
            " kill -9 and restart",
            flush=True,
        )
        await quiet(subject.pid)
        rss_before = proc_status(subject.pid)
        storm.deadline = time.monotonic() + profile.s7_deadline
        tasks = [asyncio.ensure_future(storm.reconnect(i, c)) for i, c in enumerate(clients)]
        overflows_before = listen_overflows()
        generator_before = time.process_time()
        storm.killed_ns = lg.now_ns()
        harness.kill(subject)
        restarted = await harness.start_subject(
            settings=settings, ports=(subject.ports[0], subject.ports[1])
        )
        storm.listening_ns = lg.now_ns()
        measured = Window(restarted.pid)
        measured.start()
        progress: list[tuple[float, int]] = []
        while time.monotonic() < storm.deadline and not all(t.done() for t in tasks):
            await asyncio.sleep(0.25)
            progress.append(((lg.now_ns() - storm.killed_ns) / 1e9, storm.back))
        measured.stop()
        await finish(tasks, 1.0)
        generator_cpu = time.process_time() - generator_before
        overflows = listen_overflows() - overflows_before
        back = storm.back
        last_ns = max(storm.back_ns) if back else 0
        all_back_s = (last_ns - storm.killed_ns) / 1e9 if back == count else math.nan
        down_s = (storm.listening_ns - storm.killed_ns) / 1e9
        first_answer_s = (
            (storm.first_answer_ns - storm.killed_ns) / 1e9 if storm.first_answer_ns else math.nan
        )
        problems: dict[str, int] = {
            "not back": count - back,
            "clients with a timeout": len(storm.timed_out),
            "listen overflows": overflows,
        }
        for outcome, n in storm.outcomes.items():
            if outcome.startswith("REFUSED") or "after restart" in outcome:
                problems[outcome] = n
        run = Run.measured(
            measured,
            side="subject",
            round=0,
            value=all_back_s,
            count=back,
            generator_busy=generator_cpu / ((lg.now_ns() - storm.killed_ns) / 1e9),
            problems=problems,
            latencies_ns=[t - storm.killed_ns for t in storm.back_ns if t],
            extra={
                "sessions": count,
                "back": back,
                "server_down_s": down_s,
                "first_answer_after_kill_s": first_answer_s,
                "all_back_after_kill_s": all_back_s,
                "attempts": storm.attempts,
                "outcomes": dict(storm.outcomes),
                "timeouts_clients": len(storm.timed_out),
                "backoff": {"base_s": BACKOFF_BASE, "cap_s": BACKOFF_CAP, "jitter": "equal"},
                "back_by_time_s": progress,
                "rss_kib_before_kill": rss_before,
                "rss_kib_after_storm": proc_status(restarted.pid),
                "server_cpu_of_restarted_process_s": server_cpu(restarted.pid),
            },
        )
        row = Row(
            "S7",
            f"reconnect storm, {count:,} sessions, kill -9 + restart",
            "s all back",
            runs=[run],
            kind="storm",
        )
        refusals = {k: v for k, v in storm.outcomes.items() if "login error" in k}
        row.notes = (
            f"down {down_s:.2f} s (kill -> restarted and listening), first login answered"
            f" {first_answer_s:.2f} s after kill; {back:,}/{count:,} back; attempts"
            f" {storm.attempts:,}; login refusals by code: {refusals or 'none'};"
            f" timeouts {sum(v for k, v in storm.outcomes.items() if 'TIMEOUT' in k)};"
            f" refused while down {storm.outcomes.get('connection refused (server down)', 0):,};"
            " latency = each client's time from the kill to online again; login limiter on ("
            + (
                f"max_logins_per_second {profile.s7_login_rate:g})"
                if profile.s7_login_rate
                else "server defaults)"
            )
        )
        return [row]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if restarted is not None:
            harness.stop(restarted)
        harness.stop(subject)
        close_quietly(clients)
        close_quietly(storm.clients)


# -- S8: churn ----------------------------------------------------------------------------


def s8_stable_names(profile: Profile) -> list[str]:
    return [f"s8s{i:03d}" for i in range(2 * profile.s8_pairs)]


def s8_pool(profile: Profile) -> int:
    """Churn accounts: twice the sessions online at once, so an account is
    offline a while before it is used again."""
    return math.ceil(2 * profile.s8_rate * profile.s8_lifetime) + 50


def s8_churn_names(profile: Profile) -> list[str]:
    return [f"s8c{i:05d}" for i in range(s8_pool(profile))]


@dataclass
class Sample:
    t: float  # s since the churn started
    rss_kib: int
    fds: int
    online: int


def read_gc_log(path: Any) -> list[tuple[float, float]]:
    """(monotonic time, pause ms) of each full collection bench.gcprobe logged."""
    found = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2:
                    found.append((float(parts[0]), float(parts[1])))
    except OSError:
        pass
    return found


class Churn:
    """Churning sessions: sign on, IM a stable session once, stay
    ``lifetime`` seconds, sign off; the account goes back to the pool."""

    def __init__(self, profile: Profile, target: Target, acc: lg.Accounting) -> None:
        self.target = target
        self.acc = acc
        self.lifetime = profile.s8_lifetime
        self.names = s8_churn_names(profile)
        self.stable = s8_stable_names(profile)
        pool = len(self.names)
        stable = len(self.stable)
        # 10 stable names and 10 other churn names on each churning list.
        self.lists = [
            [self.stable[(i + k) % stable] for k in range(10)]
            + [self.names[(i + 7 * k) % pool] for k in range(1, 11)]
            for i in range(pool)
        ]
        self.free: deque[int] = deque(range(pool))
        self.incarnation = 0
        self.in_flight = 0
        self.online = 0
        self.measuring = False
        self.latencies: list[int] = []
        self.sign_ons = self.sign_offs = 0
        self.measured_sign_ons = 0
        self.problems: Counter[str] = Counter()
        self.tally = Tally()

    async def session(self, index: int) -> None:
        name = self.names[index]
        self.incarnation += 1
        incarnation = self.incarnation
        self.in_flight += 1
        started = lg.now_ns()
        try:
            client, _ = await lg.full_signon(
                self.target.auth, name, PASSWORD, buddies=self.lists[index], label=name
            )
        except (OSError, TimeoutError, lg.ProtocolFailure) as e:
            self.problems[f"sign-on {type(e).__name__}"] += 1
            self.in_flight -= 1
            await asyncio.sleep(1.0)
            self.free.append(index)
            return
        self.in_flight -= 1
        self.sign_ons += 1
        if self.measuring:
            self.measured_sign_ons += 1
            self.latencies.append(lg.now_ns() - started)
        client.inbox.clear()
        client.on_frame = self.tally.on_frame
        self.online += 1
        try:
            to = self.stable[index % len(self.stable)]
            sender = lg.Sender(client, name, incarnation, to)
            self.acc.route(sender.key, [to])
            self.acc.sent(sender.key, sender.send(lg.now_ns()))
            await asyncio.sleep(self.lifetime)
        finally:
            self.online -= 1
            client.signoff()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(client.closed), 5.0)
        if not client.closed.done():
            self.problems["sign-off not closed in 5 s"] += 1
            client.close()
        self.sign_offs += 1
        self.free.append(index)


async def scenario_s8(harness: Harness, profile: Profile) -> list[Row]:
    gc_log = harness.workdir / f"s8-gc-{time.monotonic_ns()}.log"
    subject = await harness.start_subject(gc_log=gc_log)
    stable_names = s8_stable_names(profile)
    acc = lg.Accounting()
    churn = Churn(profile, subject, acc)
    stable: list[lg.FlapClient] = []
    tasks: set[asyncio.Task[None]] = set()
    rate, seconds, warmup = profile.s8_rate, profile.s8_seconds, profile.s8_warmup
    try:

        def on_frame(client: lg.FlapClient, channel: int, payload: bytes) -> None:
            if channel != 2:
                return
            parsed = lg.parse_im_text(payload)
            if parsed is not None:
                key, seq, sent = parsed
                acc.received(key, client.label, seq, sent, lg.now_ns())

        async def one(i: int) -> lg.FlapClient:
            name = stable_names[i]
            watching = [churn.names[(20 * i + k) % len(churn.names)] for k in range(20)]
            client = await sign_on(subject, name, buddies=watching, label=name)
            client.on_frame = on_frame
            return client

        await quiet(subject.pid)
        idle_before = {"rss_kib": proc_status(subject.pid)["VmRSS"], "fds": open_fds(subject.pid)}
        stable = await limited(
            [lambda i=i: one(i) for i in range(len(stable_names))], SETUP_CONCURRENCY
        )
        senders = [
            lg.Sender(c, stable_names[i], 1, stable_names[i ^ 1]) for i, c in enumerate(stable)
        ]
        for i, sender in enumerate(senders):
            acc.route(sender.key, [stable_names[i ^ 1]])
        samples: list[Sample] = []
        measured = Window(subject.pid)
        cap = max(50, int(rate * 4))
        skipped: Counter[str] = Counter()
        start_ns = lg.now_ns()
        warm_ns = start_ns + int(warmup * 1e9)
        end_ns = start_ns + int(seconds * 1e9)
        next_sample = start_ns
        spawned = im_sent = 0
        index = 0
        measure_from = math.nan
        while True:
            now = lg.now_ns()
            if now >= end_ns:
                break
            if not churn.measuring and now >= warm_ns:
                churn.measuring = True
                measured.start()
                measure_from = time.monotonic()
                acc.latencies = []
            elapsed = (now - start_ns) / 1e9
            due = int(elapsed * rate) - spawned
            for _ in range(max(0, due)):
                if churn.in_flight >= cap:
                    skipped["sign-ons in flight at the cap"] += 1
                elif not churn.free:
                    skipped["no free account"] += 1
                else:
                    task = asyncio.ensure_future(churn.session(churn.free.popleft()))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            spawned += max(0, due)
            due = int(elapsed * profile.s8_im_rate) - im_sent
            for _ in range(max(0, due)):
                sender = senders[index]
                acc.sent(sender.key, sender.send(now))
                index = (index + 1) % len(senders)
            im_sent += max(0, due)
            if now >= next_sample:
                samples.append(
                    Sample(
                        elapsed,
                        proc_status(subject.pid)["VmRSS"],
                        open_fds(subject.pid),
                        churn.online,
                    )
                )
                next_sample += 1_000_000_000
            await asyncio.sleep(TICK)
        measured.stop()
        measure_to = time.monotonic()
        im_latencies = acc.latencies or []
        acc.latencies = None
        samples.append(
            Sample(
                (lg.now_ns() - start_ns) / 1e9,
                proc_status(subject.pid)["VmRSS"],
                open_fds(subject.pid),
                churn.online,
            )
        )
        # Let every churning session finish its life and sign off, then the IMs drain.
        await finish(list(tasks), churn.lifetime + 20.0)
        deadline = time.monotonic() + profile.drain_timeout
        while acc.received_total < acc.expected() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        report = acc.report()
        for client in stable:
            client.signoff()
        await settle_closed(stable)
        await asyncio.sleep(0.5)
        await quiet(subject.pid)
        idle_after = {"rss_kib": proc_status(subject.pid)["VmRSS"], "fds": open_fds(subject.pid)}
        pauses = [ms for t, ms in read_gc_log(gc_log) if measure_from <= t <= measure_to]
        all_pauses = [ms for _, ms in read_gc_log(gc_log)]
        steady = [s for s in samples if s.t >= warmup]
        start, end = steady[0], steady[-1]
        change = change_percent(start.rss_kib, end.rss_kib)
        # Still growing, or done filling something bounded? The second half alone.
        middle = steady[len(steady) // 2]
        second_half = change_percent(middle.rss_kib, end.rss_kib)
        fit = (
            linear_fit([s.t for s in steady], [s.rss_kib for s in steady])
            if len(steady) >= 2
            else None
        )
        problems = dict(churn.problems) | report.problem_counts() | overflow(measured)
        problems |= {f"skipped: {k}": v for k, v in skipped.items()}
        run = Run.measured(
            measured,
            side="subject",
            round=0,
            value=change,
            count=churn.measured_sign_ons,
            problems=problems,
            latencies_ns=churn.latencies,
            extra={
                "seconds": seconds,
                "warmup_s": warmup,
                "rate_per_s": rate,
                "lifetime_s": churn.lifetime,
                "sign_ons": churn.sign_ons,
                "sign_offs": churn.sign_offs,
                "sign_ons_measured_per_s": churn.measured_sign_ons / measured.wall
                if measured.wall
                else None,
                "rss_kib_start": start.rss_kib,
                "rss_kib_end": end.rss_kib,
                "rss_change_percent": change,
                "rss_kib_middle": middle.rss_kib,
                "rss_change_second_half_percent": second_half,
                "rss_fit_kib_per_min": fit.slope * 60 if fit else None,
                "fds_start": start.fds,
                "fds_end": end.fds,
                "idle_before": idle_before,
                "idle_after_all_signed_off": idle_after,
                "samples": [(s.t, s.rss_kib, s.fds, s.online) for s in samples],
                "gc_gen2_pauses_ms_measured": pauses,
                "gc_gen2_collections_total": len(all_pauses),
                "ims": {
                    "sent": report.sent,
                    "received": report.received,
                    "streams": report.streams,
                    "problem_streams": report.problems,
                },
                "im_latency_ms": dict(
                    zip(
                        ("p50", "p99", "p99.9"),
                        (x / 1e6 for x in lg.percentiles(im_latencies)),
                        strict=True,
                    )
                ),
            },
        )
        row = Row(
            "S8",
            f"churn {seconds:g} s, {rate:g} sign-ons + {rate:g} sign-offs/s, IMs",
            "% RSS change",
            runs=[run],
            kind="churn",
        )
        if change > 5.0:
            row.flags.append(f"RSS +{change:.1f}% (target within 5%)")
        if idle_after["fds"] > idle_before["fds"] + 2:
            row.flags.append(
                f"fd leak? {idle_before['fds']} before, {idle_after['fds']} after all signed off"
            )
        gc_text = f"{len(pauses)} gen-2 GCs in the window" + (
            f", pause p50 {statistics.median(pauses):.1f} / max {max(pauses):.1f} ms"
            if pauses
            else ""
        )
        p50, p99, _ = (x / 1e6 for x in lg.percentiles(im_latencies))
        slope = f" (fit {fit.slope * 60:+,.0f} KiB/min)" if fit else ""
        row.notes = (
            f"RSS {mib(start.rss_kib)} at {warmup:g} s -> {mib(end.rss_kib)} at"
            f" {end.t:.0f} s{slope}, second half {second_half:+.1f} %"
            f"; fds {start.fds} -> {end.fds} (idle {idle_before['fds']} before,"
            f" {idle_after['fds']} after all signed off); {gc_text};"
            f" ~{statistics.fmean(s.online for s in steady):.0f} churning sessions online;"
            f" {report.sent:,} IMs, stable pairs' p50/p99 {p50:.2f}/{p99:.2f} ms;"
            " latency = churning sign-on time to online"
        )
        return [row]
    finally:
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        harness.stop(subject)
        close_quietly(stable)


# -- S9: slow consumer --------------------------------------------------------------------


def s9_names(profile: Profile) -> list[str]:
    return ["s9slow"] + [f"s9o{i:02d}" for i in range(profile.s9_others)]


class SlowConsumer:
    """``others`` IM their ring neighbour (accounted) and the slow session
    (not accounted: it may stop reading), round robin at a fixed rate."""

    def __init__(
        self, profile: Profile, pid: int, slow: lg.FlapClient, others: list[lg.FlapClient]
    ) -> None:
        self.pid = pid
        names = s9_names(profile)
        self.slow_name, self.names = names[0], names[1:]
        self.slow = slow
        self.others = others
        count = len(others)
        self.peer_rate = profile.s9_rate
        self.slow_rate = profile.s9_slow_rate
        self.to_peer = [
            lg.Sender(c, self.names[i], 1, self.names[(i + 1) % count])
            for i, c in enumerate(others)
        ]
        self.to_slow = [
            lg.Sender(c, self.names[i], 2, self.slow_name) for i, c in enumerate(others)
        ]
        self.acc = lg.Accounting()
        self.slow_tally = Tally()
        slow.on_frame = self.slow_tally.on_frame
        for client in others:
            client.on_frame = self.on_frame
        self.delivered = 0

    def on_frame(self, client: lg.FlapClient, channel: int, payload: bytes) -> None:
        if channel != 2:
            return
        parsed = lg.parse_im_text(payload)
        if parsed is not None:
            key, seq, sent = parsed
            self.acc.received(key, client.label, seq, sent, lg.now_ns())
            self.delivered += 1

    def begin(self) -> None:
        self.acc = lg.Accounting()
        for i, sender in enumerate(self.to_peer):
            self.acc.route(sender.key, [self.names[(i + 1) % len(self.names)]], after=sender.seq)

    async def drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.acc.received_total >= self.acc.expected():
                return True
            await asyncio.sleep(0.01)
        return False

    async def phase(
        self, *, warmup: float, window: float | None, stop_reading: bool, max_wait: float
    ) -> tuple[Run, dict[str, Any]]:
        """Traffic at the fixed rates; measured for ``window`` seconds after
        ``warmup``, or (``stop_reading``) from the moment the slow session stops
        reading until the server closes it (at most ``max_wait``)."""
        self.begin()
        count = len(self.others)
        peer_rate, slow_rate = self.peer_rate * count, self.slow_rate * count
        measured = Window(self.pid)
        start = lg.now_ns()
        measure_from = start + int(warmup * 1e9)
        end = measure_from + int((window if window is not None else max_wait) * 1e9)
        peer_sent = slow_sent = peer_index = slow_index = 0
        measuring = False
        delivered_start = 0
        paused_ns = cut_ns = 0
        to_slow_while_paused = 0
        state = 0
        info: dict[str, Any] = {}
        client_end = self.slow.transport.get_extra_info("sockname")[:2]
        server_end = self.slow.transport.get_extra_info("peername")[:2]
        queues: list[tuple[float, int, int]] = []
        next_queue_sample = 0
        while True:
            now = lg.now_ns()
            if now >= end:
                break
            if not measuring and now >= measure_from:
                measuring = True
                measured.start()
                delivered_start = self.delivered
                self.acc.latencies = []
                if stop_reading:
                    self.slow.transport.pause_reading()
                    paused_ns = next_queue_sample = now
            if paused_ns:
                state = tcp_state(self.slow)
                if state != TCP_ESTABLISHED:
                    cut_ns = now
                    break
                if now >= next_queue_sample:
                    server_side = tcp_queues(server_end, client_end)
                    client_side = tcp_queues(client_end, server_end)
                    if server_side and client_side:
                        queues.append(((now - paused_ns) / 1e9, server_side[1], client_side[0]))
                    next_queue_sample = now + 100_000_000
            due = int((now - start) * peer_rate / 1e9) - peer_sent
            for _ in range(max(0, due)):
                sender = self.to_peer[peer_index]
                self.acc.sent(sender.key, sender.send(now))
                peer_index = (peer_index + 1) % count
            peer_sent += max(0, due)
            due = int((now - start) * slow_rate / 1e9) - slow_sent
            for _ in range(max(0, due)):
                self.to_slow[slow_index].send(now)
                slow_index = (slow_index + 1) % count
            slow_sent += max(0, due)
            if paused_ns:
                to_slow_while_paused += max(0, due)
            await asyncio.sleep(TICK)
        delivered = self.delivered - delivered_start
        measured.stop()
        latencies = self.acc.latencies or []
        self.acc.latencies = None
        drained = await self.drain(5.0)
        report = self.acc.report()
        if stop_reading:
            info = {
                "cut_off": bool(cut_ns),
                "seconds_to_cut_off": (cut_ns - paused_ns) / 1e9 if cut_ns else None,
                "tcp_state_seen": TCP_STATES.get(state, str(state)),
                "ims_to_slow_while_not_reading": to_slow_while_paused,
                "kernel_queues_s_servertx_clientrx": queues,
                "max_server_send_queue_bytes": max((q[1] for q in queues), default=None),
                "max_client_receive_queue_bytes": max((q[2] for q in queues), default=None),
            }
        run = Run.measured(
            measured,
            side="subject",
            round=0,
            value=delivered / measured.wall,
            count=delivered,
            problems={
                **report.problem_counts(),
                "not drained": 0 if drained else 1,
            }
            | overflow(measured),
            latencies_ns=latencies,
            extra={
                "offered_ims_per_s": {"to_neighbours": peer_rate, "to_slow": slow_rate},
                "streams": report.streams,
                "messages_sent": report.sent,
                "problem_streams": report.problems,
            }
            | info,
        )
        return run, info


async def scenario_s9(harness: Harness, profile: Profile) -> list[Row]:
    queue = profile.s9_send_queue
    subject = await harness.start_subject(settings={"connection": {"max_send_queue": str(queue)}})
    names = s9_names(profile)
    clients: list[lg.FlapClient] = []
    try:
        clients = await limited(
            [lambda n=n: sign_on(subject, n, label=n) for n in names], SETUP_CONCURRENCY
        )
        test = SlowConsumer(profile, subject.pid, clients[0], clients[1:])
        reading, _ = await test.phase(
            warmup=0.5, window=profile.s9_window, stop_reading=False, max_wait=0
        )
        slow_frames_reading = dict(test.slow_tally.frames)
        frame_size = test.slow_tally.bytes / max(1, sum(slow_frames_reading.values()))
        rss_before = proc_status(subject.pid)
        stalled, info = await test.phase(
            warmup=0.0, window=None, stop_reading=True, max_wait=profile.s9_max_wait
        )
        rss_after = proc_status(subject.pid)
        with contextlib.suppress(Exception):
            test.slow.transport.resume_reading()
        log = subject.twistd_log.read_text(errors="replace") if subject.twistd_log else ""
        reason = "is not reading; disconnecting" in log
        others = len(names) - 1
        each, to_slow = profile.s9_rate, profile.s9_slow_rate
        sent_kib = info["ims_to_slow_while_not_reading"] * frame_size / 1024
        held = info["max_server_send_queue_bytes"], info["max_client_receive_queue_bytes"]
        cut = Run(
            side="subject",
            round=0,
            value=info["seconds_to_cut_off"] if info["cut_off"] else math.nan,
            count=info["ims_to_slow_while_not_reading"],
            wall=stalled.wall,
            server_cpu=stalled.server_cpu,
            generator_busy=stalled.generator_busy,
            problems={
                "not cut off": 0 if info["cut_off"] else 1,
                "cut off without the send-queue log line": 0 if reason else 1,
            },
            extra=info
            | {
                "max_send_queue": queue,
                "server_log_says_not_reading": reason,
                "slow_frames_while_reading": slow_frames_reading,
                "mean_frame_bytes_to_slow": frame_size,
                "kib_sent_to_slow_while_not_reading": sent_kib,
                "rss_kib_before": rss_before,
                "rss_kib_after": rss_after,
            },
        )
        cut_row = Row(
            "S9",
            "slow consumer: server cuts it off after",
            "s",
            runs=[cut],
            kind="slow",
            cpu_figures=False,
        )
        kernel = (
            f"; kernel held up to {held[0] / 1024:,.0f} KiB in the server's socket send"
            f" queue + {held[1] / 1024:,.0f} KiB in the client's receive queue"
            if held[0] is not None and held[1] is not None
            else ""
        )
        cut_row.notes = (
            f"max_send_queue {queue // 1024} KiB (bench INI; default 1 MiB);"
            f" {info['ims_to_slow_while_not_reading']:,} IMs ({others} x {to_slow:g}/s,"
            f" ~{sent_kib:,.0f} KiB) sent to it after it stopped reading{kernel};"
            f" its socket: {info['tcp_state_seen']}; server log"
            f" {'says' if reason else 'does NOT say'} 'is not reading; disconnecting'"
        )
        rows = [cut_row]
        p99 = {}
        for run, what in ((reading, "reading"), (stalled, "not reading (until cut off)")):
            row = Row(
                "S9",
                f"{others} others' IMs, slow session {what}",
                "deliveries/s",
                runs=[run],
                kind="open",
            )
            p99[what] = lg.percentiles(run.latencies_ns)[1] / 1e6
            row.notes = (
                f"offered {others} x {each:g}/s to a neighbour + {others} x {to_slow:g}/s"
                " to the slow session; accounted: the neighbour streams"
            )
            rows.append(row)
        ratio = p99["not reading (until cut off)"] / p99["reading"] if p99["reading"] else math.nan
        rows[-1].notes += f"; p99 not reading / reading = {ratio:.2f}"
        return rows
    finally:
        harness.stop(subject)
        close_quietly(clients)
