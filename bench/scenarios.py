"""The scenarios (S1 sign-ons, S3 IM routing, S4 presence fan-out, S5
multisession), each measured against its baseline in the same run,
alternating baseline and subject (B, S, B, S, ...).

A scenario gets a harness (``bench.run.Harness``) that starts server
processes and returns ``Target``s; it returns ``Row``s of ``Run``s. A ``Run``
is one measured window against one target: the raw figure, the events it
counted, the server's CPU seconds over the window (utime + stime from
/proc/PID/stat), the generator's own CPU share, latency samples and the
correctness counters.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench import loadgen as lg

PASSWORD = b"benchpw"
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: The open loop's pacing tick (uvloop timers have 1 ms resolution).
TICK = 0.001
#: Sign-ons in flight at once while setting up resident sessions.
SETUP_CONCURRENCY = 32
SETUP_ATTEMPTS = 3
GENERATOR_BOUND = 0.90
#: The cores ``bench.run`` pins the servers and the generator to.
SERVER_CORE = 0
GENERATOR_CORE = 1


def server_cpu_ticks(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc/PID/stat, in
    seconds; the kernel counts them in clock ticks (10 ms)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def server_cpu(pid: int) -> float:
    """CPU seconds of a process: the sum of its threads' run time from
    /proc/PID/task/*/schedstat (ns, the source utime + stime are derived
    from), falling back to utime + stime where schedstat is missing."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return server_cpu_ticks(pid)
    return total / 1e9


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listener's accept
    queue was full (TcpExt ListenOverflows): the client's SYN-ACK/ACK is then
    retried after 1, 3, 7 ... s, which shows up as sign-on latency."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split(), values.split(), strict=False))
            return int(table.get("ListenOverflows", 0))
    return 0


def cpu_times() -> dict[str, tuple[int, int]]:
    """Per CPU, (busy, stolen) ticks from /proc/stat. Busy is user + nice +
    system + irq + softirq, whoever ran; stolen is time the hypervisor gave
    someone else."""
    found = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = [int(x) for x in line.split()[1:]] + [0] * 8
                found[line.split()[0]] = (v[0] + v[1] + v[2] + v[5] + v[6], v[7])
    return found


class Window:
    """Wall time, server CPU and generator CPU over one measured window."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.wall = self.server_cpu = self.server_cpu_ticks = self.generator_cpu = 0.0
        self.steal: dict[str, float] = {}
        self.core_busy: dict[str, float] = {}
        self.listen_overflows = 0

    def start(self) -> None:
        self._overflows = listen_overflows()
        self._cpu_times = cpu_times()
        self._ticks = server_cpu_ticks(self.pid)
        self._server = server_cpu(self.pid)
        self._generator = time.process_time()
        self._wall = time.perf_counter()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._wall
        self.generator_cpu = time.process_time() - self._generator
        self.server_cpu = server_cpu(self.pid) - self._server
        self.server_cpu_ticks = server_cpu_ticks(self.pid) - self._ticks
        self.listen_overflows = listen_overflows() - self._overflows
        after = cpu_times()
        if self.wall > 0:
            for cpu, (busy, stolen) in self._cpu_times.items():
                if cpu in after:
                    self.core_busy[cpu] = (after[cpu][0] - busy) / CLK_TCK / self.wall
                    self.steal[cpu] = (after[cpu][1] - stolen) / CLK_TCK / self.wall

    @property
    def generator_busy(self) -> float:
        return self.generator_cpu / self.wall if self.wall else 0.0


def overflow(window: Window) -> dict[str, int]:
    return {"listen overflows": window.listen_overflows} if window.listen_overflows else {}


class Target(Protocol):
    side: str  # "baseline" or "subject"
    kind: str  # "subject", "relay", "signon", "fanout", "holder"
    pid: int
    auth: tuple[str, int]  # where a sign-on starts (auth port, or the baseline's port)
    ports: tuple[int, ...]  # every port it listens on (the subject: auth, BOS, chat)
    twistd_log: Path | None  # the subject's own log


class Harness(Protocol):
    workdir: Path

    async def start_subject(
        self,
        *,
        settings: dict[str, dict[str, str]] | None = None,
        ports: tuple[int, ...] | None = None,
        gc_log: Path | None = None,
    ) -> Target: ...

    async def start_baseline(self, kind: str, options: Sequence[str] = ()) -> Target: ...

    def stop(self, target: Target) -> None: ...

    def kill(self, target: Target) -> None: ...


@dataclass
class Profile:
    """How long and how much: ``full`` and ``quick`` below."""

    name: str
    rounds: int
    warmup: float
    window: float
    s1_concurrency: tuple[int, ...]
    s1_buddies: int
    s3_pairs: int
    s3_depth: int
    s3_levels: tuple[int, ...]
    s4_sizes: tuple[int, ...]
    s4_cycles: dict[int, int]
    s5_depth: dict[str, int]
    s5_configs: tuple[str, ...]
    drain_timeout: float = 5.0
    # -- the capacity scenarios (bench/capacity.py) --
    #: S2: sessions held, signed on in ``s2_steps`` equal steps
    s2_sessions: int = 10_000
    s2_steps: int = 5
    #: S2: the subject's (and the holder's) keepalive interval, and the idle
    #: hold window in whole intervals (so each window holds as many sweeps);
    #: one interval passes between the last sign-on and the hold
    s2_keepalive: float = 5.0
    s2_hold_sweeps: int = 2
    #: S7: sessions online when the server is killed; how long they may take to come back
    s7_sessions: int = 5_000
    s7_deadline: float = 90.0
    #: S7: the subject's ``[auth] max_logins_per_second``; 0 = the server's default
    s7_login_rate: float = 0.0
    #: S8: churn duration (the first ``s8_warmup`` seconds not measured), sign-ons
    #: (and sign-offs) per second, a churning session's time online, stable pairs' IM rate
    s8_seconds: float = 60.0
    s8_warmup: float = 10.0
    s8_rate: float = 50.0
    s8_lifetime: float = 4.0
    s8_pairs: int = 16
    s8_im_rate: float = 500.0
    #: S9: sessions IMing the slow one (and each other), IMs/s per sender to
    #: its neighbour and to the slow one, the window with it reading, the
    #: bench's max_send_queue
    s9_others: int = 10
    s9_rate: float = 100.0
    s9_slow_rate: float = 400.0
    s9_window: float = 4.0
    s9_max_wait: float = 30.0
    s9_send_queue: int = 256 * 1024
    # -- S10, the feedbag (bench/feedbag.py) --
    #: sessions of the one account whose edits reach its siblings
    s10_siblings: int = 5
    #: the S5 configuration (S5_CONFIGS) run as the load, at this % of its own maximum
    s10_load: str = "100x10"
    s10_load_level: int = 50
    #: concurrent editors (one account and session each) of the durable-edits loop
    s10_editors: int = 100
    #: sign-on workers, and the items of the big stored list
    s10_signon_workers: int = 32
    s10_items: int = 100
    # -- S11, chat fan-out (bench/chat.py) --
    #: members of the one room, and how many of them send
    s11_members: int = 100
    s11_senders: int = 10
    #: the closed loop's messages in flight per sender (each to every other member)
    s11_depth: int = 4
    #: open loops at these % of each target's own closed-loop maximum
    s11_levels: tuple[int, ...] = (50,)
    # -- S12, the management API under load (bench/api_load.py) --
    #: sessions held (the S2 accounts and ring buddy lists), timed requests per path
    s12_sessions: int = 10_000
    s12_requests: int = 20
    #: the IM stream (the S3 pairs, open loop, msgs/s) and its window with and without polling
    s12_im_rate: float = 5_000.0
    s12_window: float = 10.0
    # -- S13, the web client under load (bench/web_load.py) --
    #: the IM stream (S3's pairs and depth): open loops at these % of each side's own maximum
    s13_levels: tuple[int, ...] = (50,)
    #: one account's browser sessions (one sends, the others get im_sent), its IMs/s, window
    s13_siblings: int = 5
    s13_sibling_rate: float = 50.0
    s13_sibling_window: float = 10.0
    #: the multisession configurations (S5's names), half of each account's devices browsers
    s13_configs: tuple[str, ...] = ("10x1", "100x10")
    #: idle browser sessions (20-buddy stored lists), signed on in ``s13_steps`` steps
    s13_sessions: int = 5_000
    s13_steps: int = 5
    #: resume: unacked events replayed, and how many times
    s13_resume_events: int = 1_000
    s13_resume_rounds: int = 10


FULL = Profile(
    name="full",
    rounds=3,
    warmup=0.5,
    window=2.0,
    s1_concurrency=(16, 64),
    s1_buddies=20,
    s3_pairs=32,
    s3_depth=8,
    s3_levels=(10, 50, 80),
    s4_sizes=(100, 1000, 5000),
    s4_cycles={100: 20, 1000: 8, 5000: 3},
    s5_depth={"10x1": 16, "100x10": 4},
    s5_configs=("10x1", "100x10"),
)
QUICK = Profile(
    name="quick",
    rounds=1,
    warmup=0.5,
    window=1.5,
    s1_concurrency=(32,),
    s1_buddies=20,
    s3_pairs=32,
    s3_depth=8,
    s3_levels=(50,),
    s4_sizes=(100, 1000),
    s4_cycles={100: 5, 1000: 3, 5000: 2},
    s5_depth={"10x1": 16, "100x10": 4},
    s5_configs=("10x1", "100x10"),
    s2_sessions=2_000,
    s2_steps=4,
    s2_keepalive=2.0,
    s7_sessions=1_000,
    s7_deadline=60.0,
    s8_seconds=20.0,
    s8_warmup=6.0,
    s9_window=2.0,
    s12_sessions=2_000,
    s12_requests=10,
    s12_window=5.0,
    s13_sibling_window=3.0,
    s13_sessions=1_000,
    s13_steps=4,
    s13_resume_rounds=3,
)


# -- results ------------------------------------------------------------------------------


@dataclass
class Run:
    """One measured window against one target."""

    side: str
    round: int
    value: float  # the raw figure (events/s)
    count: int  # events counted for the per-CPU figure
    wall: float
    server_cpu: float
    generator_busy: float
    latencies_ns: list[int] = field(default_factory=list, repr=False)
    #: utime + stime over the window (10 ms ticks), next to the precise ``server_cpu``
    server_cpu_ticks: float = 0.0
    #: share of the window the hypervisor gave each core to someone else
    steal: dict[str, float] = field(default_factory=dict)
    #: share of the window each core was busy, whoever ran on it (the rest
    #: of the machine's load shows up as core busy well above our processes')
    core_busy: dict[str, float] = field(default_factory=dict)
    #: lost / duplicated / reordered / errors ...: all must be 0
    problems: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.problems = {k: v for k, v in self.problems.items() if v}

    @classmethod
    def measured(cls, window: Window, **fields: Any) -> Run:
        """A run over ``window``: its wall time, server CPU, steal and core
        load (and the generator's CPU unless given)."""
        fields.setdefault("generator_busy", window.generator_busy)
        return cls(
            wall=window.wall,
            server_cpu=window.server_cpu,
            server_cpu_ticks=window.server_cpu_ticks,
            steal=window.steal,
            core_busy=window.core_busy,
            **fields,
        )

    @property
    def per_cpu(self) -> float:
        return self.count / self.server_cpu if self.server_cpu > 0 else float("nan")

    def others(self) -> dict[str, float]:
        """Busy share of each pinned core not explained by our process on it:
        other processes (and kernel work such as softirqs) competing with us."""
        if not self.wall:
            return {}
        ours = {
            f"cpu{SERVER_CORE}": self.server_cpu / self.wall,
            f"cpu{GENERATOR_CORE}": self.generator_busy,
        }
        busy = self.core_busy
        return {cpu: busy[cpu] - share for cpu, share in ours.items() if cpu in busy}

    def to_json(self) -> dict[str, Any]:
        p50, p99, p999 = lg.percentiles(self.latencies_ns)
        return {
            "side": self.side,
            "round": self.round,
            "value": self.value,
            "count": self.count,
            "wall_s": self.wall,
            "server_cpu_s": self.server_cpu,
            "server_utime_stime_s": self.server_cpu_ticks,
            "steal": self.steal,
            "core_busy": self.core_busy,
            "core_busy_not_ours": self.others(),
            "server_busy": self.server_cpu / self.wall if self.wall else None,
            "per_server_cpu_s": self.per_cpu,
            "generator_busy": self.generator_busy,
            "generator_bound": self.generator_busy >= GENERATOR_BOUND,
            "latency_samples": len(self.latencies_ns),
            "latency_ms": {"p50": p50 / 1e6, "p99": p99 / 1e6, "p99.9": p999 / 1e6},
            "problems": self.problems,
            "extra": self.extra,
        }


@dataclass
class Row:
    scenario: str
    metric: str
    unit: str
    runs: list[Run] = field(default_factory=list)
    notes: str = ""
    #: "closed" (a closed loop: the figure is a maximum only if a side is
    #: saturated), "open" (a fixed offered rate), "events" (S4) or a figure
    #: of the capacity scenarios ("memory", "idle", "storm", "churn", "slow")
    kind: str = "closed"
    #: False where events per server-CPU-second mean nothing (a memory figure)
    cpu_figures: bool = True
    #: verdicts for the check column beyond the runs' problem counts
    flags: list[str] = field(default_factory=list)

    def side(self, side: str) -> dict[str, Any]:
        runs = [r for r in self.runs if r.side == side]
        if not runs:
            return {}
        latencies = [x for r in runs for x in r.latencies_ns]
        p50, p99, p999 = lg.percentiles(latencies)
        problems: Counter[str] = Counter()
        for r in runs:
            problems.update(r.problems)
        cpu = sum(r.server_cpu for r in runs)
        return {
            "value": statistics.fmean(r.value for r in runs),
            "values": [r.value for r in runs],
            "per_cpu": sum(r.count for r in runs) / cpu if cpu > 0 else float("nan"),
            "count": sum(r.count for r in runs),
            "latency_samples": len(latencies),
            "p50_ms": p50 / 1e6,
            "p99_ms": p99 / 1e6,
            "p999_ms": p999 / 1e6,
            "generator_busy": max(r.generator_busy for r in runs),
            "generator_bound": any(r.generator_busy >= GENERATOR_BOUND for r in runs),
            "server_busy": statistics.fmean(
                (r.server_cpu / r.wall if r.wall else 0.0) for r in runs
            ),
            "problems": {k: v for k, v in problems.items() if v},
            "steal_max": max((max(r.steal.values(), default=0.0) for r in runs), default=0.0),
            "others_max": max((max(r.others().values(), default=0.0) for r in runs), default=0.0),
        }

    def to_json(self) -> dict[str, Any]:
        baseline, subject = self.side("baseline"), self.side("subject")
        if not self.cpu_figures:
            for side in (baseline, subject):
                if side:
                    side["per_cpu"] = None
        ratio = per_cpu_ratio = None
        if baseline and subject and baseline["value"]:
            ratio = subject["value"] / baseline["value"]
            if baseline["per_cpu"] and subject["per_cpu"] is not None:
                per_cpu_ratio = subject["per_cpu"] / baseline["per_cpu"]
        return {
            "scenario": self.scenario,
            "kind": self.kind,
            "metric": self.metric,
            "unit": self.unit,
            "notes": self.notes,
            "flags": self.flags,
            "baseline": baseline,
            "subject": subject,
            "ratio": ratio,
            "per_cpu_ratio": per_cpu_ratio,
            "runs": [r.to_json() for r in self.runs],
        }


# -- helpers ------------------------------------------------------------------------------


async def limited(factories: Sequence[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    """Run the coroutines ``factories`` make, at most ``limit`` at once, in order."""
    semaphore = asyncio.Semaphore(limit)

    async def one(factory: Callable[[], Awaitable[Any]]) -> Any:
        async with semaphore:
            return await factory()

    tasks = [asyncio.ensure_future(one(f)) for f in factories]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def finish(tasks: Sequence[asyncio.Task[Any]], timeout: float) -> None:
    """Wait for tasks that were told to stop; cancel what is left after ``timeout``."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def sign_on(
    target: Target,
    name: str,
    *,
    label: Any = None,
    buddies: Sequence[str] = (),
    groups: Sequence[str] = (),
    feedbag: bool = False,
) -> lg.FlapClient:
    """A resident session: the full BUCP + BOS sign-on on the subject (with
    the feedbag steps if ``feedbag``), the trivial one on a relay / fan-out
    baseline. Set-up, not measured: a failed attempt (e.g. a connection stuck
    in a full accept queue) is retried."""
    for attempt in range(SETUP_ATTEMPTS):
        try:
            if target.kind == "subject":
                client, _ = await lg.full_signon(
                    target.auth, name, PASSWORD, buddies=buddies, feedbag=feedbag, label=label
                )
                client.inbox.clear()
                return client
            return await lg.trivial_signon(target.auth, name, groups=groups, label=label)
        except (OSError, TimeoutError, lg.ProtocolFailure) as e:
            if attempt == SETUP_ATTEMPTS - 1:
                raise RuntimeError(f"set-up sign-on of {name} failed: {e!r}") from e
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


def close_all(clients: Sequence[lg.FlapClient]) -> None:
    for client in clients:
        client.signoff()


async def settle_closed(clients: Sequence[lg.FlapClient], timeout: float = 5.0) -> None:
    pending = [c.closed for c in clients if not c.closed.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)


# -- S1: sign-on rate ---------------------------------------------------------------------


def s1_accounts(profile: Profile) -> list[str]:
    workers = max(profile.s1_concurrency)
    names = [f"s1u{i:03d}{x}" for i in range(workers) for x in "ab"]
    return names + [f"s1r{i:02d}" for i in range(profile.s1_buddies)]


#: One sign-on and sign-off of a closed loop: ``(worker index, turn)`` ->
#: the signed-off client's problem ("" for none); raises what the loop counts
#: as an error (OSError, TimeoutError, ProtocolFailure).
SignOnce = Callable[[int, int], Awaitable[str]]


async def closed_signon_loop(
    target: Target,
    once: SignOnce,
    *,
    concurrency: int,
    warmup: float,
    window: float,
    round_: int,
    side: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Run:
    """``concurrency`` workers, each running ``once`` again and again (staggered
    starts, so they do not move in lockstep); the sign-ons completed within
    the measured window and the time each took (what ``once`` measures).
    ``side``: the row side the run is for, the target's unless given."""
    stop = False
    measuring = False
    latencies: list[int] = []
    problems: Counter[str] = Counter()
    completed = 0

    async def worker(index: int) -> None:
        nonlocal completed
        await asyncio.sleep(index * 0.05 / concurrency)
        deadline = time.monotonic() + warmup + window + 60.0
        turn = 0
        while not stop and time.monotonic() < deadline:
            started = lg.now_ns()
            try:
                problem = await once(index, turn)
            except (OSError, TimeoutError, lg.ProtocolFailure) as e:
                problems[f"error {type(e).__name__}"] += 1
                await asyncio.sleep(0.05)
                continue
            finally:
                turn += 1
            done = lg.now_ns()
            if problem:
                problems[problem] += 1
            if measuring:
                completed += 1
                latencies.append(done - started)

    tasks = [asyncio.ensure_future(worker(i)) for i in range(concurrency)]
    measured = Window(target.pid)
    try:
        await asyncio.sleep(warmup)
        measured.start()
        measuring = True
        await asyncio.sleep(window)
        measuring = False
        measured.stop()
    finally:
        stop = True
        await finish(tasks, 30.0)
    return Run.measured(
        measured,
        side=side or target.side,
        round=round_,
        value=completed / measured.wall,
        count=completed,
        problems=dict(problems) | overflow(measured),
        latencies_ns=latencies,
        **({"extra": extra} if extra else {}),
    )


async def signon_run(
    target: Target,
    *,
    concurrency: int,
    buddies: Sequence[str],
    warmup: float,
    window: float,
    round_: int,
) -> Run:
    """Closed loop: ``concurrency`` workers, each signing on (BUCP + BOS to
    client ready, confirmed by a round trip) and off again, alternating two
    accounts. Time to online: TCP connect to the authorizer -> the reply to
    the round trip after 01,02 (with every online buddy's arrival in)."""

    async def once(index: int, turn: int) -> str:
        name = (f"s1u{index:03d}a", f"s1u{index:03d}b")[turn & 1]
        client, arrivals = await lg.full_signon(
            target.auth, name, PASSWORD, buddies=buddies, timeout=10.0
        )
        client.signoff()
        return "" if arrivals == len(buddies) else "wrong arrival count"

    return await closed_signon_loop(
        target, once, concurrency=concurrency, warmup=warmup, window=window, round_=round_
    )


async def scenario_s1(harness: Harness, profile: Profile) -> list[Row]:
    baseline = await harness.start_baseline("signon")
    subject = await harness.start_subject()
    residents_names = [f"s1r{i:02d}" for i in range(profile.s1_buddies)]
    residents = await limited(
        [lambda n=n: sign_on(subject, n) for n in residents_names], SETUP_CONCURRENCY
    )
    rows = []
    try:
        for buddies in ((), tuple(residents_names)):
            for concurrency in profile.s1_concurrency:
                what = f"{len(buddies)} online buddies" if buddies else "empty list"
                row = Row(
                    "S1",
                    f"sign-ons, {concurrency} concurrent, {what}",
                    "sign-ons/s",
                    notes="latency = time to online",
                )
                for round_ in range(profile.rounds):
                    for target in (baseline, subject):
                        row.runs.append(
                            await signon_run(
                                target,
                                concurrency=concurrency,
                                buddies=buddies,
                                warmup=profile.warmup,
                                window=profile.window,
                                round_=round_,
                            )
                        )
                rows.append(row)
    finally:
        close_all(residents)
        await settle_closed(residents)
        harness.stop(baseline)
        harness.stop(subject)
    return rows


# -- IM traffic (S3, S5) ------------------------------------------------------------------


class ImTraffic:
    """Senders, the sessions that receive them, and the two ways to drive
    them: a closed loop (each sender keeps ``depth`` messages in flight per
    receiving session) and an open loop (a fixed message rate, paced every
    millisecond, independent of replies)."""

    def __init__(
        self,
        target: Target,
        senders: list[lg.Sender],
        routes: dict[tuple[bytes, bytes], list[lg.FlapClient]],
        clients: list[lg.FlapClient],
    ) -> None:
        self.target = target
        self.senders = senders
        self.by_key = {s.key: s for s in senders}
        self.routes = routes
        self.clients = clients
        for sender in senders:
            sender.fanout = len(routes[sender.key])
        for client in clients:
            client.on_frame = self.on_frame
        self.acc = lg.Accounting()
        self.delivered = 0
        self.other = 0
        self.depth = 0
        #: deliveries per message, averaged over a round of all senders
        self.mean_fanout = statistics.fmean(s.fanout for s in senders)

    def begin(self) -> None:
        """A fresh accounting for the next run (the previous one has drained)."""
        self.acc = lg.Accounting()
        for sender in self.senders:
            labels = [c.label for c in self.routes[sender.key]]
            self.acc.route(sender.key, labels, after=sender.seq)

    def on_frame(self, client: lg.FlapClient, channel: int, payload: bytes) -> None:
        if channel != 2:
            return
        parsed = lg.parse_im_text(payload)
        if parsed is None:
            self.other += 1
            return
        key, seq, sent = parsed
        self.acc.received(key, client.label, seq, sent, lg.now_ns())
        self.count_delivery(key)

    def count_delivery(self, key: tuple[bytes, bytes]) -> None:
        """One delivery of ``key``'s message: in a closed loop, the sender
        sends its next once it has fewer than ``depth`` in flight per receiver."""
        self.delivered += 1
        sender = self.by_key.get(key)
        if sender is not None:
            sender.outstanding -= 1
            depth = self.depth
            if depth and sender.outstanding <= (depth - 1) * sender.fanout:
                self.send(sender)

    def send(self, sender: lg.Sender) -> None:
        self.acc.sent(sender.key, sender.send(lg.now_ns()))
        sender.outstanding += sender.fanout

    async def drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s.outstanding <= 0 for s in self.senders):
                return True
            await asyncio.sleep(0.01)
        return False

    def _finish_run(
        self, measured: Window, delivered: int, latencies: list[int], drained: bool, round_: int
    ) -> Run:
        report = self.acc.report()
        problems = {
            **report.problem_counts(),
            "not drained": 0 if drained else 1,
        }
        for sender in self.senders:
            sender.outstanding = 0
        return Run.measured(
            measured,
            side=self.target.side,
            round=round_,
            value=delivered / measured.wall,
            count=delivered,
            problems=problems | overflow(measured),
            latencies_ns=latencies,
            extra={
                "streams": report.streams,
                "messages_sent": report.sent,
                "copies_expected": report.expected,
                "copies_received": report.received,
                "problem_streams": report.problems,
            },
        )

    async def closed_loop(
        self, depth: int, warmup: float, window: float, drain: float, round_: int
    ) -> Run:
        self.begin()
        self.depth = depth
        for sender in self.senders:
            for _ in range(depth):
                self.send(sender)
        measured = Window(self.target.pid)
        try:
            await asyncio.sleep(warmup)
            measured.start()
            start = self.delivered
            self.acc.latencies = []
            await asyncio.sleep(window)
            delivered = self.delivered - start
            measured.stop()
            latencies = self.acc.latencies
            self.acc.latencies = None
        finally:
            self.depth = 0
        drained = await self.drain(drain)
        run = self._finish_run(measured, delivered, latencies, drained, round_)
        run.extra["depth"] = depth
        return run

    async def open_loop(
        self, rate: float, warmup: float, window: float, drain: float, round_: int
    ) -> Run:
        """``rate`` messages per second, round robin over the senders."""
        self.begin()
        senders = self.senders
        count = len(senders)
        measured = Window(self.target.pid)
        start = lg.now_ns()
        measure_from = start + int(warmup * 1e9)
        end = measure_from + int(window * 1e9)
        sent = 0
        index = 0
        measuring = False
        delivered_start = 0
        largest_burst = 0
        per_tick = rate * TICK
        late_ticks = 0
        ticks = 0
        while True:
            now = lg.now_ns()
            if now >= end:
                break
            if not measuring and now >= measure_from:
                measuring = True
                measured.start()
                delivered_start = self.delivered
                self.acc.latencies = []
            due = int((now - start) * rate / 1e9) - sent
            if due > 0:
                for _ in range(due):
                    self.send(senders[index])
                    index += 1
                    if index == count:
                        index = 0
                sent += due
                if measuring:
                    ticks += 1
                    largest_burst = max(largest_burst, due)
                    if due > 3 * per_tick + 5:
                        late_ticks += 1
            await asyncio.sleep(TICK)
        delivered = self.delivered - delivered_start
        measured.stop()
        latencies = self.acc.latencies or []
        self.acc.latencies = None
        drained = await self.drain(drain)
        run = self._finish_run(measured, delivered, latencies, drained, round_)
        run.extra.update(
            offered_msgs_per_s=rate,
            offered_deliveries_per_s=rate * self.mean_fanout,
            largest_burst=largest_burst,
            late_ticks=late_ticks,
            ticks=ticks,
        )
        return run


async def im_rows(
    traffic: dict[str, ImTraffic],
    baseline: Target,
    subject: Target,
    profile: Profile,
    scenario: str,
    what: str,
    depth: int,
    levels: Sequence[int],
) -> list[Row]:
    """Closed-loop maximum (B, S, B, S ...), then open loops at ``levels`` %
    of each target's own maximum."""
    closed = Row(scenario, f"{what}, closed loop max", "deliveries/s")
    for round_ in range(profile.rounds):
        for target in (baseline, subject):
            closed.runs.append(
                await traffic[target.side].closed_loop(
                    depth, profile.warmup, profile.window, profile.drain_timeout, round_
                )
            )
    closed.notes = f"depth {depth}/sender/receiver; latency under saturation"
    rows = [closed]
    maximum = {side: closed.side(side)["value"] for side in ("baseline", "subject")}
    for level in levels:
        row = Row(scenario, f"{what}, open loop {level}% of own max", "deliveries/s", kind="open")
        for round_ in range(profile.rounds):
            for target in (baseline, subject):
                im = traffic[target.side]
                rate = level / 100 * maximum[target.side] / im.mean_fanout
                row.runs.append(
                    await im.open_loop(
                        rate, profile.warmup, profile.window, profile.drain_timeout, round_
                    )
                )
        row.notes = "offered " + " / ".join(
            f"{level / 100 * maximum[s]:,.0f}" for s in ("baseline", "subject")
        )
        rows.append(row)
    return rows


# -- S3: IM routing -----------------------------------------------------------------------


def s3_accounts(profile: Profile) -> list[str]:
    return [f"s3p{i:03d}" for i in range(2 * profile.s3_pairs)]


async def im_pairs(target: Target, names: list[str]) -> ImTraffic:
    """Session i talks with session i ^ 1, one session per user."""
    clients = await limited(
        [lambda n=n: sign_on(target, n, label=(n.encode(), b"1")) for n in names],
        SETUP_CONCURRENCY,
    )
    senders = [lg.Sender(c, names[i], 1, names[i ^ 1]) for i, c in enumerate(clients)]
    routes = {s.key: [clients[i ^ 1]] for i, s in enumerate(senders)}
    return ImTraffic(target, senders, routes, clients)


async def scenario_s3(harness: Harness, profile: Profile) -> list[Row]:
    baseline = await harness.start_baseline("relay")
    subject = await harness.start_subject()
    names = s3_accounts(profile)
    traffic: dict[str, ImTraffic] = {}
    try:
        for target in (baseline, subject):
            traffic[target.side] = await im_pairs(target, names)
        return await im_rows(
            traffic,
            baseline,
            subject,
            profile,
            "S3",
            f"IM routing, {profile.s3_pairs} pairs",
            profile.s3_depth,
            profile.s3_levels,
        )
    finally:
        for im in traffic.values():
            close_all(im.clients)
            await settle_closed(im.clients)
        harness.stop(baseline)
        harness.stop(subject)


# -- S5: multisession ---------------------------------------------------------------------

#: name -> (accounts with their device counts, pairs of accounts that talk)
S5_CONFIGS: dict[str, tuple[str, list[tuple[str, int]], list[tuple[str, str]]]] = {
    "10x1": (
        "10 devices on 1 account (+1 peer)",
        [("s5a", 10), ("s5apeer", 1)],
        [("s5a", "s5apeer")],
    ),
    "100x10": (
        "100 devices on 10 accounts",
        [(f"s5b{i}", 10) for i in range(10)],
        [(f"s5b{i}", f"s5b{i + 1}") for i in range(0, 10, 2)],
    ),
}


def s5_accounts(profile: Profile) -> list[str]:
    return [name for key in profile.s5_configs for name, _ in S5_CONFIGS[key][1]]


async def multisession(target: Target, config: str) -> ImTraffic:
    """Every device of an account sends numbered IMs to its partner account;
    each reaches every device of the partner (multisession copies)."""
    _, accounts, pairs = S5_CONFIGS[config]
    partner = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    devices = [(name, d) for name, count in accounts for d in range(1, count + 1)]
    clients = await limited(
        [
            lambda n=n, d=d: sign_on(target, n, label=(n.encode(), str(d).encode()), groups=[n])
            for n, d in devices
        ],
        SETUP_CONCURRENCY,
    )
    by_account: dict[str, list[lg.FlapClient]] = {}
    for (name, _), client in zip(devices, clients, strict=True):
        by_account.setdefault(name, []).append(client)
    senders = [
        lg.Sender(client, name, device, partner[name])
        for (name, device), client in zip(devices, clients, strict=True)
    ]
    routes = {s.key: by_account[partner[s.key[0].decode()]] for s in senders}
    return ImTraffic(target, senders, routes, clients)


async def scenario_s5(harness: Harness, profile: Profile) -> list[Row]:
    baseline = await harness.start_baseline("fanout")
    subject = await harness.start_subject()
    rows: list[Row] = []
    try:
        for config in profile.s5_configs:
            traffic: dict[str, ImTraffic] = {}
            try:
                for target in (baseline, subject):
                    traffic[target.side] = await multisession(target, config)
                rows += await im_rows(
                    traffic,
                    baseline,
                    subject,
                    profile,
                    "S5",
                    S5_CONFIGS[config][0],
                    profile.s5_depth[config],
                    (50,),
                )
            finally:
                for im in traffic.values():
                    close_all(im.clients)
                    await settle_closed(im.clients)
    finally:
        harness.stop(baseline)
        harness.stop(subject)
    return rows


# -- S4: presence fan-out -----------------------------------------------------------------


def s4_accounts(profile: Profile, sizes: Sequence[int]) -> list[str]:
    return [f"s4w{i:04d}" for i in range(max(sizes))] + [f"s4star{n}" for n in sizes]


class Watchers:
    """Counts, per watcher, the updates of the current event."""

    def __init__(self) -> None:
        self.kinds: frozenset[bytes] = frozenset()
        self.size = 0
        self.counts: list[int] = []
        self.times: list[int] = []
        self.received = 0
        self.duplicates = 0
        self.wrong = 0
        self.stray = 0
        self.away: bool | None = None
        self.done: asyncio.Future[None] | None = None
        self.done_cpu = 0.0

    def arm(self, size: int, kinds: frozenset[bytes], away: bool | None) -> None:
        self.kinds = kinds
        self.size = size
        self.counts = [0] * size
        self.times = [0] * size
        self.received = 0
        self.away = away
        self.done = asyncio.get_running_loop().create_future()

    def on_frame(self, client: lg.FlapClient, channel: int, payload: bytes) -> None:
        if channel != 2 or payload[:4] not in self.kinds:
            return
        now = lg.now_ns()
        index = client.user
        if index >= self.size:
            self.stray += 1
            return
        seen = self.counts[index]
        self.counts[index] = seen + 1
        if seen:
            self.duplicates += 1
            return
        self.times[index] = now
        if self.away is not None and is_away(payload) != self.away:
            self.wrong += 1
        self.received += 1
        if self.received == self.size and self.done is not None and not self.done.done():
            self.done_cpu = time.process_time()
            self.done.set_result(None)


def is_away(payload: bytes) -> bool:
    """The away bit (0x20) of the user class TLV in a 03,0B user-info block."""
    offset = 10
    offset += 1 + payload[offset] + 2  # screen name, warning level
    count = int.from_bytes(payload[offset : offset + 2], "big")
    offset += 2
    for _ in range(count):
        tag = int.from_bytes(payload[offset : offset + 2], "big")
        length = int.from_bytes(payload[offset + 2 : offset + 4], "big")
        if tag == 0x0001 and length >= 2:
            return bool(payload[offset + 4 + 1] & 0x20)
        offset += 4 + length
    return False


SUBJECT_EVENTS = (
    ("online", frozenset({lg.K_ARRIVED}), False),
    ("away", frozenset({lg.K_ARRIVED}), True),
    ("back", frozenset({lg.K_ARRIVED}), False),
    ("offline", frozenset({lg.K_DEPARTED}), None),
)


async def fanout_round(
    target: Target,
    watchers: Watchers,
    size: int,
    cycles: int,
    round_: int,
    star_name: str,
    star_relay: lg.Sender | None,
) -> Run:
    """``cycles`` x (sign on, away, back, sign off) of the star; for each
    event, the time until every watcher got its one update."""
    problems: Counter[str] = Counter()
    latencies: list[int] = []
    events: dict[str, list[float]] = {name: [] for name, _, _ in SUBJECT_EVENTS}
    rates: list[float] = []
    busy: list[float] = []
    timeout = 5.0 + size / 500
    measured = Window(target.pid)
    measured.start()
    star: lg.FlapClient | None = None
    try:
        for _ in range(cycles):
            for name, kinds, away in SUBJECT_EVENTS:
                if target.kind == "subject":
                    watchers.arm(size, kinds, away)
                else:
                    watchers.arm(size, frozenset({lg.K_IM_TO_HOST}), None)
                cpu0 = time.process_time()
                wall0 = lg.now_ns()
                if star_relay is not None:
                    trigger = lg.now_ns()
                    star_relay.send(trigger)
                elif name == "online":
                    star, _ = await lg.full_signon(target.auth, star_name, PASSWORD)
                    trigger = star.ready_ns
                elif name in ("away", "back"):
                    assert star is not None
                    trigger = lg.now_ns()
                    body = lg.set_away_body(b"benchmark away" if name == "away" else b"")
                    star.send_snac(0x02, 0x04, body, 30)
                else:
                    assert star is not None
                    trigger = lg.now_ns()
                    star.signoff()
                    star = None
                assert watchers.done is not None
                try:
                    await asyncio.wait_for(asyncio.shield(watchers.done), timeout)
                except TimeoutError:
                    problems["missing"] += size - watchers.received
                    continue
                last = max(watchers.times)
                elapsed = (last - trigger) / 1e9
                events[name].append(elapsed * 1e3)
                rates.append(size / elapsed if elapsed > 0 else float("nan"))
                busy.append((watchers.done_cpu - cpu0) / max((last - wall0) / 1e9, 1e-6))
                latencies.extend(t - trigger for t in watchers.times)
                # Time for a second update to show up, then count it.
                await asyncio.sleep(max(0.02, elapsed))
                problems["wrong state"] += watchers.wrong
    finally:
        if star is not None:
            star.signoff()
        measured.stop()
    problems["duplicated"] += watchers.duplicates
    problems["stray"] += watchers.stray
    watchers.duplicates = watchers.stray = 0
    return Run.measured(
        measured,
        side=target.side,
        round=round_,
        value=statistics.fmean(rates) if rates else 0.0,
        count=size * len(rates),
        problems=dict(problems) | overflow(measured),
        generator_busy=statistics.median(busy) if busy else 0.0,
        latencies_ns=latencies,
        extra={
            "events": len(rates),
            "time_to_last_ms": {
                k: {"median": statistics.median(v), "max": max(v)} for k, v in events.items() if v
            },
            "generator_busy_per_event_max": max(busy) if busy else None,
        },
    )


async def scenario_s4(harness: Harness, profile: Profile, sizes: Sequence[int]) -> list[Row]:
    baseline = await harness.start_baseline("fanout")
    subject = await harness.start_subject()
    largest = max(sizes)
    names = [f"s4w{i:04d}" for i in range(largest)]
    stars = {n: f"s4star{n}" for n in sizes}
    watching = [[stars[n] for n in sizes if i < n] for i in range(largest)]
    state = {"baseline": Watchers(), "subject": Watchers()}
    clients: dict[str, list[lg.FlapClient]] = {}
    star_relays: dict[int, lg.Sender] = {}
    rows = []
    try:
        for target in (baseline, subject):
            started = time.perf_counter()
            clients[target.side] = await limited(
                [
                    lambda i=i, t=target: sign_on(
                        t, names[i], buddies=watching[i], groups=watching[i], label=i
                    )
                    for i in range(largest)
                ],
                SETUP_CONCURRENCY,
            )
            setup = time.perf_counter() - started
            for index, client in enumerate(clients[target.side]):
                client.user = index
                client.on_frame = state[target.side].on_frame
            print(f"  S4: {largest} watchers signed on to {target.side} in {setup:.1f} s")
        for size in sizes:
            relay_client = await lg.trivial_signon(baseline.auth, stars[size] + "x")
            star_relays[size] = lg.Sender(relay_client, stars[size] + "x", 1, stars[size])
            row = Row(
                "S4",
                f"presence fan-out, {size} watchers",
                "updates/s",
                notes="value = watchers / time to last watcher; latency per watcher",
                kind="events",
            )
            for round_ in range(profile.rounds):
                for target in (baseline, subject):
                    row.runs.append(
                        await fanout_round(
                            target,
                            state[target.side],
                            size,
                            profile.s4_cycles.get(size, 3),
                            round_,
                            stars[size],
                            star_relays[size] if target is baseline else None,
                        )
                    )
            lasts = {}
            for event in ("online", "away", "back", "offline"):
                medians = [
                    r.extra["time_to_last_ms"][event]["median"]
                    for r in row.runs
                    if r.side == "subject" and event in r.extra["time_to_last_ms"]
                ]
                if medians:
                    lasts[event] = statistics.median(medians)
            row.notes = "S last watcher ms: " + " ".join(f"{k} {v:.1f}" for k, v in lasts.items())
            rows.append(row)
    finally:
        for side_clients in clients.values():
            close_all(side_clients)
        for sender in star_relays.values():
            sender.client.signoff()
        for side_clients in clients.values():
            await settle_closed(side_clients, 10.0)
        harness.stop(baseline)
        harness.stop(subject)
    return rows
