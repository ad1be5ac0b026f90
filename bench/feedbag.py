"""S10, the feedbag (the server-stored buddy list, family 0x13): three
figures, measured against the subject and, where a baseline makes sense, the
``feedbag`` baseline (bench/baselines.py) in the same run, alternating.

* **Edits pushed to sibling sessions.** One account with 5 sessions, each
  signed on with the feedbag steps (13,02, 13,04 -> 13,06, 13,07). One
  session at a time, rotating, inserts a buddy item (13,08), the next deletes
  it (13,0A); every other session must receive the pushed copy (same subtype,
  a server request ID) exactly once, the origin none, and the origin's 13,0E
  must say 0x0000. Time from the edit written to the last sibling's copy,
  idle and while S5's multisession IM traffic runs at half its own maximum.
* **Durable edits.** 100 editors (one account and session each), each in a
  closed loop: insert a buddy item, wait for its 13,0E, delete it, wait, ...
  Acknowledged edits/s and the time to 13,0E, every status 0x0000; the
  subject commits each to its SQLite file (synchronous=FULL), the baseline
  appends them to a journal with one fsync per reactor turn.
* **Sign-on with a 100-item stored list** against an empty one, the same
  server, closed loop as S1 with the feedbag steps instead of 03,04: the
  ratio of the two rates (B = empty list, S = 100 items).

``EditTracker`` (the exactly-once accounting of pushed edits) is tested in
tests/test_bench_accounting.py.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import struct
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import loadgen as lg
from bench.scenarios import (
    PASSWORD,
    S5_CONFIGS,
    SETUP_CONCURRENCY,
    Harness,
    ImTraffic,
    Profile,
    Row,
    Run,
    Target,
    Window,
    close_all,
    closed_signon_loop,
    limited,
    multisession,
    overflow,
    settle_closed,
    sign_on,
)

#: The group every edited buddy goes into (item ID 0, class 1).
GROUP_ID = 0x0A1E
SIBLING_ACCOUNT = "s10sib"
#: The groups of the big stored list.
BIG_GROUPS = ((0x0101, "Buddies"), (0x0102, "Family"), (0x0103, "Co-Workers"), (0x0104, "Friends"))
CLASS_BUDDY = 0x0000
CLASS_GROUP = 0x0001
TAG_ORDER = 0x00C8
INSERT = 0x08
DELETE = 0x0A
#: (name, group ID, item ID, class ID, attributes), as bench.run seeds them.
Item = tuple[str, int, int, int, bytes]
#: How long one edit may take to reach every sibling (and its 13,0E).
EDIT_TIMEOUT = 5.0
#: After a run, how long a second copy of an edit still has to show up.
LATE_COPY_WAIT = 0.1
#: Targets (PERFORMANCE.md §4).
SIBLING_P99_IDLE_MS = 10.0
SIBLING_P99_LOADED_MS = 25.0
DURABLE_MIN_RATE = 1_000.0
DURABLE_P99_MS = 50.0
SIGNON_MIN_RATIO = 0.8


# -- accounts and their stored lists ------------------------------------------------------


def editor_names(profile: Profile) -> list[str]:
    return [f"s10e{i:03d}" for i in range(profile.s10_editors)]


def signon_names(profile: Profile, big: bool) -> list[str]:
    kind = "f" if big else "z"
    return [f"s10{kind}{i:03d}{x}" for i in range(profile.s10_signon_workers) for x in "ab"]


def offline_names(profile: Profile) -> list[str]:
    """The accounts the big list's buddies name (never signed on)."""
    return [f"s10d{i:03d}" for i in range(max(1, profile.s10_items - 1 - len(BIG_GROUPS)))]


def accounts(profile: Profile) -> list[str]:
    """Every account S10 signs on or names, the load's S5 accounts included."""
    return (
        [SIBLING_ACCOUNT]
        + editor_names(profile)
        + signon_names(profile, True)
        + signon_names(profile, False)
        + offline_names(profile)
        + [name for name, _ in S5_CONFIGS[profile.s10_load][1]]
    )


def _order(ids: Iterable[int]) -> bytes:
    """TLV 0x00C8: the display order, a list of u16 IDs."""
    packed = b"".join(struct.pack("!H", i) for i in ids)
    return lg.tlv(TAG_ORDER, packed)


def small_list() -> list[Item]:
    """The root group and the one group the edits go into."""
    return [("", 0, 0, CLASS_GROUP, _order([GROUP_ID])), ("Buddies", GROUP_ID, 0, CLASS_GROUP, b"")]


def big_list(profile: Profile) -> list[Item]:
    """``s10_items`` items: the root group, 4 groups and the rest buddies
    (offline accounts), spread over the groups, each group's order TLV
    listing its buddies."""
    buddies = offline_names(profile)
    per_group: dict[int, list[int]] = {gid: [] for gid, _ in BIG_GROUPS}
    items: list[Item] = []
    for n, name in enumerate(buddies):
        gid = BIG_GROUPS[n % len(BIG_GROUPS)][0]
        item_id = n + 1
        per_group[gid].append(item_id)
        items.append((name, gid, item_id, CLASS_BUDDY, b""))
    groups = [(name, gid, 0, CLASS_GROUP, _order(per_group[gid])) for gid, name in BIG_GROUPS]
    root = ("", 0, 0, CLASS_GROUP, _order(gid for gid, _ in BIG_GROUPS))
    return [root, *groups, *items]


def seeds(profile: Profile) -> dict[str, list[Item]]:
    """The stored lists bench.run writes before the server starts; the
    accounts of the empty-list sign-ons get none."""
    small = small_list()
    found = {SIBLING_ACCOUNT: small} | {name: small for name in editor_names(profile)}
    big = big_list(profile)
    found |= {name: big for name in signon_names(profile, True)}
    return found


# -- exactly-once accounting of pushed edits ----------------------------------------------


@dataclass
class _Edit:
    origin: Hashable
    expected: frozenset[Hashable]
    sent_ns: int
    copies: Counter[Hashable] = field(default_factory=Counter)
    last_ns: int = 0
    ack_ns: int = 0


@dataclass
class EditReport:
    edits: int
    #: sibling copies that never came
    missing: int
    #: a sibling's second (third ...) copy of one edit
    duplicated: int
    #: the origin got its own edit pushed
    echoed: int
    #: a copy of an edit nobody made, or to a session not of the account
    unexpected: int
    #: a copy without the server's request-ID bit (a reply, not a push)
    not_server_initiated: int
    #: a 13,0E with a result other than 0x0000 (or a 13,01 instead)
    bad_status: int
    #: edits the origin got no 13,0E for
    unacknowledged: int
    #: a 13,0E for no edit, or a second one
    unexpected_status: int

    def problem_counts(self) -> dict[str, int]:
        return {
            "missing push": self.missing,
            "duplicated push": self.duplicated,
            "pushed to origin": self.echoed,
            "unexpected push": self.unexpected,
            "push without server request ID": self.not_server_initiated,
            "13,0E not 0x0000": self.bad_status,
            "no 13,0E": self.unacknowledged,
            "unexpected 13,0E": self.unexpected_status,
        }

    @property
    def clean(self) -> bool:
        return not any(self.problem_counts().values())


class EditTracker:
    """Per edit (any hashable key, e.g. (subtype, group ID, item ID)): which
    sessions must receive the pushed copy (every session of the account but
    the origin), how many copies each got, and the origin's 13,0E.

    ``sent`` before the edit is written; ``pushed`` per copy a session
    receives; ``acked`` for the origin's 13,0E (its result bytes). An edit is
    *done* once every sibling has its copy and the 13,0E has come; then
    ``on_done(key)`` is called (once). ``report`` after the traffic has
    drained: every copy not received is missing, every 13,0E not received is
    unacknowledged.
    """

    def __init__(self) -> None:
        self._edits: dict[Hashable, _Edit] = {}
        self._done: set[Hashable] = set()
        self.on_done: Callable[[Hashable], None] | None = None
        self.duplicated = 0
        self.echoed = 0
        self.unexpected = 0
        self.not_server_initiated = 0
        self.bad_status = 0
        self.unexpected_status = 0

    def sent(
        self, key: Hashable, origin: Hashable, receivers: Iterable[Hashable], now: int
    ) -> None:
        if key in self._edits:
            raise ValueError(f"edit {key!r} sent twice")
        self._edits[key] = _Edit(origin, frozenset(receivers) - {origin}, now)

    def pushed(
        self, key: Hashable, receiver: Hashable, now: int, server_initiated: bool = True
    ) -> None:
        edit = self._edits.get(key)
        if edit is None:
            self.unexpected += 1
            return
        if receiver == edit.origin:
            self.echoed += 1
            return
        if receiver not in edit.expected:
            self.unexpected += 1
            return
        if not server_initiated:
            self.not_server_initiated += 1
        edit.copies[receiver] += 1
        if edit.copies[receiver] > 1:
            self.duplicated += 1
            return
        edit.last_ns = max(edit.last_ns, now)
        self._check_done(key, edit)

    def acked(self, key: Hashable, results: bytes, now: int) -> None:
        edit = self._edits.get(key)
        if edit is None or edit.ack_ns:
            self.unexpected_status += 1
            return
        if not results or any(results):
            self.bad_status += 1
        edit.ack_ns = now
        self._check_done(key, edit)

    def _check_done(self, key: Hashable, edit: _Edit) -> None:
        if key in self._done or not edit.ack_ns or len(edit.copies) < len(edit.expected):
            return
        self._done.add(key)
        if self.on_done is not None:
            self.on_done(key)

    def done(self, key: Hashable) -> bool:
        return key in self._done

    def to_last(self, key: Hashable) -> int | None:
        """ns from the edit written to the last sibling's copy (to the 13,0E
        for an account with one session), once done."""
        if key not in self._done:
            return None
        edit = self._edits[key]
        return (edit.last_ns if edit.expected else edit.ack_ns) - edit.sent_ns

    def to_ack(self, key: Hashable) -> int | None:
        edit = self._edits.get(key)
        return edit.ack_ns - edit.sent_ns if edit is not None and edit.ack_ns else None

    def report(self) -> EditReport:
        missing = sum(
            len(e.expected) - len(e.copies.keys() & e.expected) for e in self._edits.values()
        )
        return EditReport(
            edits=len(self._edits),
            missing=missing,
            duplicated=self.duplicated,
            echoed=self.echoed,
            unexpected=self.unexpected,
            not_server_initiated=self.not_server_initiated,
            bad_status=self.bad_status,
            unacknowledged=sum(1 for e in self._edits.values() if not e.ack_ns),
            unexpected_status=self.unexpected_status,
        )


def observe_edit_frame(
    tracker: EditTracker,
    keys: dict[int, Hashable],
    receiver: Hashable,
    payload: bytes,
    now: int,
) -> None:
    """A SNAC one of the account's sessions (``receiver``) got: a pushed
    13,08/13,0A (keyed (subtype, group ID, item ID) by its first item) or the
    origin's 13,0E / 13,01, found by its request ID in ``keys`` (request ID ->
    edit key, removed once answered). Anything else is ignored."""
    if payload[:2] != b"\x00\x13":
        return
    subtype, request_id, body = snac_parts(payload)
    if subtype in (INSERT, DELETE):
        ids = lg.first_feedbag_key(body)
        tracker.pushed(
            (subtype, *ids) if ids else None,
            receiver,
            now,
            bool(request_id & lg.SERVER_REQUEST_BIT),
        )
    elif subtype in (0x0E, 0x01):
        key = keys.pop(request_id, None)
        if key is None:
            tracker.unexpected_status += 1
        else:
            tracker.acked(key, body if subtype == 0x0E else b"", now)


def snac_parts(payload: bytes) -> tuple[int, int, bytes]:
    """(subtype, request ID, body) of a SNAC payload (skipping the optional
    TLV block that flag 0x8000 announces)."""
    _, subtype, flags, request_id = lg.SNAC.unpack_from(payload)
    offset = 10
    if flags & 0x8000:
        offset += 2 + lg.U16.unpack_from(payload, 10)[0]
    return subtype, request_id, payload[offset:]


# -- set-up -------------------------------------------------------------------------------


def fsync_cost(directory: Path, count: int = 50) -> float:
    """Median µs of a 64-byte append + fsync in ``directory`` (the disk the
    database and the journal live on), measured by the generator."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    samples = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            os.write(fd, b"x" * 64)
            os.fsync(fd)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return statistics.median(samples) * 1e6


# -- edits pushed to sibling sessions -----------------------------------------------------


class Siblings:
    """One account's sessions on one target, and the edits they make: one at
    a time, the origin rotating over the sessions, insert and delete of a
    buddy item alternately (a run always ends after a delete, so the list is
    back to its two items)."""

    def __init__(self, target: Target, clients: list[lg.FlapClient], buddies: list[str]) -> None:
        self.target = target
        self.clients = clients
        self.buddies = buddies
        self.labels = [c.label for c in clients]
        self.tracker = EditTracker()
        self.keys: dict[int, Hashable] = {}
        self.request_id = 0x1000
        self.item_id = 0
        self.edits = 0
        self.waiter: asyncio.Future[None] | None = None
        self.current: Hashable = None
        for client in clients:
            client.on_frame = self.on_frame

    def on_frame(self, client: lg.FlapClient, channel: int, payload: bytes) -> None:
        if channel == 2:
            observe_edit_frame(self.tracker, self.keys, client.label, payload, lg.now_ns())

    def _done(self, key: Hashable) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done() and key == self.current:
            waiter.set_result(None)

    def _next_edit(self) -> tuple[int, int, bytes]:
        """(subtype, item ID, body) of the next edit."""
        if self.edits % 2 == 0:
            self.item_id = self.item_id % 0xFFFF + 1
            subtype = INSERT
        else:
            subtype = DELETE
        name = self.buddies[self.item_id % len(self.buddies)]
        return subtype, self.item_id, lg.feedbag_item(name, GROUP_ID, self.item_id, CLASS_BUDDY)

    async def run(self, warmup: float, window: float, round_: int) -> Run:
        tracker = self.tracker = EditTracker()
        tracker.on_done = self._done
        self.keys.clear()
        loop = asyncio.get_running_loop()
        measured = Window(self.target.pid)
        start = lg.now_ns()
        measure_from = start + int(warmup * 1e9)
        end = measure_from + int(window * 1e9)
        measuring = False
        measured_keys: list[Hashable] = []
        timeouts = 0
        while True:
            now = lg.now_ns()
            if now >= end and self.edits % 2 == 0:
                break
            if not measuring and measure_from <= now < end:
                measuring = True
                measured.start()
            if measuring and now >= end:
                measuring = False
                measured.stop()
            subtype, item_id, body = self._next_edit()
            origin = self.clients[self.edits % len(self.clients)]
            self.edits += 1
            key = self.current = (subtype, GROUP_ID, item_id)
            self.request_id = self.request_id % 0x7FFFFFFF + 1
            self.keys[self.request_id] = key
            self.waiter = loop.create_future()
            sent = lg.now_ns()
            tracker.sent(key, origin.label, self.labels, sent)
            origin.send_snac(0x13, subtype, body, self.request_id)
            try:
                await asyncio.wait_for(self.waiter, EDIT_TIMEOUT)
            except TimeoutError:
                timeouts += 1
                continue
            if measure_from <= sent < end:
                measured_keys.append(key)
        if measuring:
            measured.stop()
        await asyncio.sleep(LATE_COPY_WAIT)
        report = tracker.report()
        to_last = [tracker.to_last(k) or 0 for k in measured_keys]
        by_kind = {
            name: [tracker.to_last(k) or 0 for k in measured_keys if k[0] == subtype]
            for name, subtype in (("insert", INSERT), ("delete", DELETE))
        }
        acks = [tracker.to_ack(k) or 0 for k in measured_keys]
        return Run.measured(
            measured,
            side=self.target.side,
            round=round_,
            value=len(measured_keys) / measured.wall if measured.wall else 0.0,
            count=len(measured_keys),
            problems=report.problem_counts() | {"edit timeouts": timeouts} | overflow(measured),
            latencies_ns=to_last,
            extra={
                "edits": report.edits,
                "siblings": len(self.clients) - 1,
                "to_last_ms_by_kind": {k: _ms(v) for k, v in by_kind.items() if v},
                "to_13_0e_ms": _ms(acks),
            },
        )


def _ms(samples_ns: Sequence[int]) -> dict[str, float]:
    p50, p99, p999 = lg.percentiles(samples_ns)
    return {"p50": p50 / 1e6, "p99": p99 / 1e6, "p99.9": p999 / 1e6, "n": len(samples_ns)}


async def loaded_run(
    siblings: Siblings, im: ImTraffic, rate: float, profile: Profile, round_: int
) -> Run:
    """The sibling edits while ``im`` runs an open loop at ``rate`` messages/s
    (from before the edits start until after they end)."""
    margin = 0.2
    load = asyncio.ensure_future(
        im.open_loop(
            rate, profile.warmup, profile.window + 2 * margin, profile.drain_timeout, round_
        )
    )
    try:
        edits = await siblings.run(profile.warmup + margin, profile.window, round_)
    finally:
        load_run = await load
    edits.problems |= {f"load: {k}": v for k, v in load_run.problems.items()}
    p50, p99, _ = lg.percentiles(load_run.latencies_ns)
    edits.extra["load"] = {
        "offered_msgs_per_s": rate,
        "deliveries_per_s": load_run.value,
        "im_p50_ms": p50 / 1e6,
        "im_p99_ms": p99 / 1e6,
        "server_busy": load_run.server_cpu / load_run.wall if load_run.wall else None,
    }
    return edits


# -- durable edits ------------------------------------------------------------------------


class Editors:
    """``s10_editors`` sessions of as many accounts, each with one edit in
    flight: insert a buddy item, on its 13,0E delete it, on that one insert
    the next (a new item ID), ... while ``running``."""

    def __init__(self, target: Target, clients: list[lg.FlapClient], buddies: list[str]) -> None:
        self.target = target
        self.clients = clients
        count = len(clients)
        self.names = [buddies[i % len(buddies)] for i in range(count)]
        self.item_id = [0] * count
        self.inserting = [True] * count
        self.pending = [0] * count
        self.sent_ns = [0] * count
        self.request_id = 0x1000
        self.running = False
        self.acked = 0
        self.latencies: list[int] | None = None
        self.problems: Counter[str] = Counter()
        for index, client in enumerate(clients):
            client.user = index
            client.on_frame = self.on_frame

    def send(self, index: int) -> None:
        if self.inserting[index]:
            self.item_id[index] = self.item_id[index] % 0xFFFF + 1
            subtype = INSERT
        else:
            subtype = DELETE
        body = lg.feedbag_item(self.names[index], GROUP_ID, self.item_id[index], CLASS_BUDDY)
        self.request_id = self.request_id % 0x7FFFFFFF + 1
        self.pending[index] = self.request_id
        self.sent_ns[index] = lg.now_ns()
        self.clients[index].send_snac(0x13, subtype, body, self.request_id)

    def on_frame(self, client: lg.FlapClient, channel: int, payload: bytes) -> None:
        if channel != 2 or payload[:2] != b"\x00\x13":
            return
        subtype, request_id, body = snac_parts(payload)
        if subtype in (0x08, 0x09, 0x0A):
            self.problems["unexpected push"] += 1
            return
        if subtype not in (0x0E, 0x01):
            return
        now = lg.now_ns()
        index = client.user
        if request_id != self.pending[index] or not request_id:
            self.problems["unexpected 13,0E"] += 1
            return
        self.pending[index] = 0
        if subtype == 0x01:
            self.problems["13,01 error"] += 1
        elif len(body) != 2 or any(body):
            self.problems["13,0E not 0x0000"] += 1
        self.acked += 1
        if self.latencies is not None:
            self.latencies.append(now - self.sent_ns[index])
        self.inserting[index] = not self.inserting[index]
        if self.running:
            self.send(index)

    async def drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(self.pending):
                return True
            await asyncio.sleep(0.01)
        return False

    async def run(self, warmup: float, window: float, drain: float, round_: int) -> Run:
        self.problems.clear()
        self.running = True
        for index in range(len(self.clients)):
            if not self.pending[index]:
                self.send(index)
        measured = Window(self.target.pid)
        try:
            await asyncio.sleep(warmup)
            measured.start()
            start = self.acked
            self.latencies = []
            await asyncio.sleep(window)
            acked = self.acked - start
            measured.stop()
            latencies, self.latencies = self.latencies, None
        finally:
            self.running = False
        drained = await self.drain(drain)
        return Run.measured(
            measured,
            side=self.target.side,
            round=round_,
            value=acked / measured.wall,
            count=acked,
            problems=dict(self.problems)
            | {"not drained": 0 if drained else 1}
            | overflow(measured),
            latencies_ns=latencies,
            extra={"editors": len(self.clients), "in_flight_per_editor": 1},
        )


# -- sign-on with a stored list -----------------------------------------------------------


async def signon_run(
    target: Target,
    *,
    side: str,
    names: list[str],
    items: int,
    concurrency: int,
    warmup: float,
    window: float,
    round_: int,
) -> Run:
    """S1's closed loop with the feedbag steps: ``concurrency`` workers, each
    signing on (BUCP + BOS with 13,02, 13,04 -> 13,06 ..., 13,07, 01,02, a
    round trip) and off, alternating its two accounts (``names[2i]``,
    ``names[2i + 1]``), whose stored lists must hold ``items`` items."""

    async def once(index: int, turn: int) -> str:
        name = names[2 * index + (turn & 1)]
        client, _ = await lg.full_signon(target.auth, name, PASSWORD, feedbag=True, timeout=10.0)
        client.signoff()
        return "" if client.feedbag_items == items else "wrong item count"

    return await closed_signon_loop(
        target,
        once,
        concurrency=concurrency,
        warmup=warmup,
        window=window,
        round_=round_,
        side=side,
        extra={"stored_items": items, "concurrency": concurrency},
    )


# -- the scenario -------------------------------------------------------------------------


def _p99_ms(row: Row, side: str) -> float | None:
    found = row.side(side)
    return found["p99_ms"] if found and found.get("latency_samples") else None


async def scenario_s10(harness: Harness, profile: Profile) -> list[Row]:
    journal = harness.workdir / "feedbag-baseline.journal"
    baseline = await harness.start_baseline("feedbag", ["--journal", str(journal)])
    subject = await harness.start_subject()
    targets = (baseline, subject)
    buddies = offline_names(profile)
    opened: list[lg.FlapClient] = []
    rows: list[Row] = []
    try:
        fsync_us = fsync_cost(harness.workdir)
        # 1. Edits pushed to the sibling sessions, idle.
        siblings: dict[str, Siblings] = {}
        for target in targets:
            clients = await limited(
                [
                    lambda i=i, t=target: sign_on(t, SIBLING_ACCOUNT, label=i, feedbag=True)
                    for i in range(profile.s10_siblings)
                ],
                SETUP_CONCURRENCY,
            )
            opened += clients
            if target.kind == "subject" and any(c.feedbag_items != 2 for c in clients):
                raise RuntimeError(
                    f"S10: {SIBLING_ACCOUNT}'s stored list is not the 2 seeded items:"
                    f" {[c.feedbag_items for c in clients]}"
                )
            siblings[target.side] = Siblings(target, clients, buddies)
        others = profile.s10_siblings - 1
        idle = Row(
            "S10",
            f"feedbag edit -> {others} sibling sessions, idle",
            "edits/s",
            kind="open",
        )
        for round_ in range(profile.rounds):
            for target in targets:
                idle.runs.append(
                    await siblings[target.side].run(profile.warmup, profile.window, round_)
                )
        rows.append(idle)

        # 2. The same under S5's multisession IM traffic at half its own maximum.
        config = profile.s10_load
        traffic: dict[str, ImTraffic] = {}
        try:
            for target in targets:
                traffic[target.side] = await multisession(target, config)
            maximum = {}
            closed_problems = {}
            for target in targets:
                closed = await traffic[target.side].closed_loop(
                    profile.s5_depth.get(config, 4),
                    profile.warmup,
                    profile.window,
                    profile.drain_timeout,
                    0,
                )
                maximum[target.side] = closed.value
                closed_problems[target.side] = {
                    f"load max: {k}": v for k, v in closed.problems.items()
                }
            loaded = Row(
                "S10",
                f"feedbag edit -> {others} sibling sessions, under S5 load",
                "edits/s",
                kind="open",
                cpu_figures=False,
            )
            level = profile.s10_load_level
            for round_ in range(profile.rounds):
                for target in targets:
                    im = traffic[target.side]
                    rate = level / 100 * maximum[target.side] / im.mean_fanout
                    run = await loaded_run(siblings[target.side], im, rate, profile, round_)
                    if round_ == 0:
                        # The closed loop that found the maximum is accounted too.
                        run.problems |= closed_problems[target.side]
                    loaded.runs.append(run)
            rows.append(loaded)
        finally:
            for im in traffic.values():
                close_all(im.clients)
                await settle_closed(im.clients)
        for state in siblings.values():
            close_all(state.clients)
            await settle_closed(state.clients)

        # 3. Durable edits: concurrent editors in a closed loop.
        names = editor_names(profile)
        editors: dict[str, Editors] = {}
        for target in targets:
            clients = await limited(
                [lambda n=n, t=target: sign_on(t, n, label=n, feedbag=True) for n in names],
                SETUP_CONCURRENCY,
            )
            opened += clients
            editors[target.side] = Editors(target, clients, buddies)
        durable = Row(
            "S10",
            f"durable feedbag edits, {len(names)} editors",
            "edits/s",
            notes="",
        )
        for round_ in range(profile.rounds):
            for target in targets:
                durable.runs.append(
                    await editors[target.side].run(
                        profile.warmup, profile.window, profile.drain_timeout, round_
                    )
                )
        rows.append(durable)
        for state in editors.values():
            close_all(state.clients)
            await settle_closed(state.clients)

        # 4. Sign-on with a 100-item stored list (S) against an empty one (B).
        workers = profile.s10_signon_workers
        signon = Row(
            "S10",
            f"sign-ons, {workers} concurrent, {profile.s10_items}-item feedbag (S) / empty (B)",
            "sign-ons/s",
        )
        for round_ in range(profile.rounds):
            for big in (False, True):
                signon.runs.append(
                    await signon_run(
                        subject,
                        side="subject" if big else "baseline",
                        names=signon_names(profile, big),
                        items=len(big_list(profile)) if big else 0,
                        concurrency=workers,
                        warmup=profile.warmup,
                        window=profile.window,
                        round_=round_,
                    )
                )
        rows.append(signon)
        _annotate(idle, loaded, durable, signon, profile, maximum, fsync_us)
        return rows
    finally:
        close_all(opened)
        await settle_closed(opened)
        harness.stop(baseline)
        harness.stop(subject)


def _by_kind(row: Row, side: str, kind: str) -> str:
    samples = [
        x
        for r in row.runs
        if r.side == side
        for x in [r.extra.get("to_last_ms_by_kind", {}).get(kind, {}).get("p99")]
        if x is not None
    ]
    return f"{max(samples):.1f}" if samples else "-"


def _annotate(
    idle: Row,
    loaded: Row,
    durable: Row,
    signon: Row,
    profile: Profile,
    maximum: dict[str, float],
    fsync_us: float,
) -> None:
    """The notes and the target verdicts (``flags``) of the S10 rows."""
    for row, target in ((idle, SIBLING_P99_IDLE_MS), (loaded, SIBLING_P99_LOADED_MS)):
        p99 = _p99_ms(row, "subject")
        if p99 is not None and p99 >= target:
            row.flags.append(f"S p99 {p99:.1f} ms (target < {target:g} ms)")
        acks = [r.extra["to_13_0e_ms"]["p99"] for r in row.runs if r.side == "subject"]
        row.notes = (
            "latency = edit written -> last sibling's pushed copy; 13,08 insert and 13,0A"
            " delete of a buddy item alternately, one at a time, origin rotating;"
            f" S worst-round p99 insert {_by_kind(row, 'subject', 'insert')}"
            f" / delete {_by_kind(row, 'subject', 'delete')} ms"
        )
        if acks:
            row.notes += f", origin's 13,0E p99 {max(acks):.1f} ms"
    loads = [r.extra.get("load", {}) for r in loaded.runs]
    im_p99 = {
        side: max(
            (x["im_p99_ms"] for r, x in zip(loaded.runs, loads, strict=True) if r.side == side),
            default=float("nan"),
        )
        for side in ("baseline", "subject")
    }
    loaded.notes += (
        f"; load: S5 '{S5_CONFIGS[profile.s10_load][0]}' open loop at"
        f" {profile.s10_load_level}% of own max (B {maximum.get('baseline', 0):,.0f}"
        f" / S {maximum.get('subject', 0):,.0f} deliveries/s), IM p99 B {im_p99['baseline']:.1f}"
        f" / S {im_p99['subject']:.1f} ms; per-CPU columns omitted (the CPU is the IMs')"
    )
    s = durable.side("subject")
    if s:
        if s["value"] < DURABLE_MIN_RATE:
            durable.flags.append(f"S {s['value']:,.0f}/s (target >= {DURABLE_MIN_RATE:,.0f}/s)")
        if s.get("latency_samples") and s["p99_ms"] >= DURABLE_P99_MS:
            durable.flags.append(f"S p99 {s['p99_ms']:.1f} ms (target < {DURABLE_P99_MS:g} ms)")
    durable.notes = (
        "closed loop, 1 edit in flight per editor (13,08 insert / 13,0A delete alternately);"
        " latency = edit written -> its 13,0E; S: SQLite synchronous=FULL (server default);"
        " B: journal append, one fsync per reactor turn (group commit), 13,0E;"
        f" this disk: {fsync_us:,.0f} µs per append + fsync"
    )
    b, s = signon.side("baseline"), signon.side("subject")
    if b and s and b["value"]:
        ratio = s["value"] / b["value"]
        if ratio < SIGNON_MIN_RATIO:
            signon.flags.append(f"ratio {ratio:.2f} (target >= {SIGNON_MIN_RATIO:g})")
    signon.notes = (
        "the subject both sides: B = accounts with an empty stored list, S ="
        f" {profile.s10_items} items (root, {len(BIG_GROUPS)} groups, buddies offline);"
        " sign-on with 13,02, 13,04 -> 13,06, 13,07 instead of 03,04; latency = time to online"
    )
