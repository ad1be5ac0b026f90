"""S11, chat fan-out: one room of ``s11_members`` (100) members; a line one
member says (0E,05) reaches the other 99 (0E,06). Measured against the
subject and the ``chat`` baseline (bench/baselines.py) in the same run,
alternating.

* **Set-up, subject.** Every member signs on (BUCP + BOS), opens ChatNav as a
  service connection (01,04 family 0x0D -> 01,05, the cookie sign-on, 01,02,
  0D,02 -> 0D,09), asks for the private room by name (0D,08 on exchange 4 ->
  0D,09 with the room's exchange, cookie and instance), asks for a chat
  connection to it (01,04 family 0x0E with TLV 0x0001 = the room), connects
  to the 01,05's address (the chat port), signs on with its cookie, sends
  01,02 and waits for the room info (0E,02). Then the generator waits until
  every member's roster (0E,03, minus any 0E,04) holds all 100. The BOS and
  ChatNav connections stay open and idle.
* **Set-up, baseline.** Every member signs on with one channel-1 frame naming
  itself and the room (TLV 0x0010).
* **Traffic.** ``s11_senders`` members (10) say numbered lines, 0E,05 with
  TLV 0x0001 (to the room), no reflection, the text
  ``BM|<sender>|1|<seq>|<send time ns>`` in TLV 0x0005's text part; the
  same bytes to both targets. Every member's 0E,06 is accounted per
  (sender -> member) stream (``loadgen.Accounting``: lost, duplicated,
  reordered, never sent, stale; a member must not get its own line), and
  ``LastMember`` takes, per line, the time from writing it to the 0E,06 of
  **the last of the 99** members. Closed loop for each target's maximum
  (each sender keeps ``s11_depth`` lines in flight), then open loops at
  ``s11_levels`` % of each target's own maximum (round robin over the
  senders, paced every millisecond): the latency target is read there.

``LastMember`` and ``parse_chat_text`` are tested in
tests/test_bench_accounting.py.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from bench import loadgen as lg
from bench import scenarios as sc
from bench.feedbag import snac_parts
from bench.scenarios import (
    PASSWORD,
    SETUP_ATTEMPTS,
    SETUP_CONCURRENCY,
    Harness,
    ImTraffic,
    Profile,
    Row,
    Run,
    Target,
    close_all,
    limited,
    settle_closed,
)

ROOM = "s11room"
#: libpurple's exchange for the rooms users make by joining a name.
EXCHANGE_PRIVATE = 4
CHANNEL = 3
K_SERVICE_RESPONSE = lg.kind(0x01, 0x05)
K_NAV_INFO = lg.kind(0x0D, 0x09)
K_ROOM_INFO = lg.kind(0x0E, 0x02)
K_USERS_JOINED = lg.kind(0x0E, 0x03)
K_USERS_LEFT = lg.kind(0x0E, 0x04)
K_CHAT_TO_HOST = lg.kind(0x0E, 0x05)
K_CHAT_TO_CLIENT = lg.kind(0x0E, 0x06)
#: How long the roster may take to show every member after the last join.
ROSTER_TIMEOUT = 10.0
#: Targets (PERFORMANCE.md §4).
PER_CPU_MIN_RATIO = 0.6
LAST_MEMBER_P99_MS = 20.0
#: The part of 0E,05 after the cookie: channel 3, TLV 0x0001 (to the room).
TO_ROOM = lg.U16.pack(CHANNEL) + lg.tlv(0x0001, b"")
#: The message's charset and language parts, after its text part.
CHARSET_LANGUAGE = lg.tlv(0x0002, b"us-ascii") + lg.tlv(0x0003, b"en")


def member_names(profile: Profile) -> list[str]:
    return [f"s11m{i:03d}" for i in range(profile.s11_members)]


def accounts(profile: Profile) -> list[str]:
    return member_names(profile)


# -- the wire -----------------------------------------------------------------------------


def service_ready(family: int) -> bytes:
    """01,02 of a service connection: OService 3 and the family, version 1."""
    return struct.pack("!HHHH", 0x0001, 3, 0x0110, 0x0629) + struct.pack(
        "!HHHH", family, 1, 0x0110, 0x0629
    )


def create_room_body(name: str, exchange: int = EXCHANGE_PRIVATE) -> bytes:
    """0D,08 as libpurple sends it: exchange, cookie "create", instance
    0xFFFF, detail 1, TLVs room name, charset, language."""
    tlvs = lg.tlv(0x00D3, name.encode()) + lg.tlv(0x00D6, b"us-ascii") + lg.tlv(0x00D7, b"en")
    return struct.pack("!HB", exchange, 6) + b"create" + struct.pack("!HBH", 0xFFFF, 1, 3) + tlvs


def room_ref(room_info: bytes) -> bytes:
    """``u16 exchange | s08 cookie | u16 instance`` at the head of a room
    info (0D,09's TLV 0x0004, 0E,02)."""
    if len(room_info) < 3:
        raise lg.ProtocolFailure("room info too short")
    end = 3 + room_info[2] + 2
    if len(room_info) < end:
        raise lg.ProtocolFailure("room info cut short")
    return room_info[:end]


def user_names(body: bytes) -> list[bytes]:
    """The screen names of a 0E,03 / 0E,04 body: user-info blocks to the end."""
    names = []
    pos = 0
    size = len(body)
    while pos < size:
        length = body[pos]
        names.append(body[pos + 1 : pos + 1 + length])
        pos += 1 + length + 2
        if pos + 2 > size:
            break
        (count,) = lg.U16.unpack_from(body, pos)
        pos += 2
        for _ in range(count):
            if pos + 4 > size:
                break
            pos += 4 + lg.U16.unpack_from(body, pos + 2)[0]
    return names


class ChatSender:
    """One member saying numbered lines to its room: the same interface as
    ``loadgen.Sender`` (``key``, ``seq``, ``outstanding``, ``fanout``,
    ``send``), so ``ImTraffic``'s loops drive it."""

    __slots__ = (
        "client",
        "key",
        "_text_head",
        "_head",
        "_cookie_base",
        "seq",
        "outstanding",
        "fanout",
    )

    def __init__(self, client: lg.FlapClient, name: str, instance: int = 1) -> None:
        self.client = client
        self.key = (name.encode(), str(instance).encode())
        self._text_head = b"BM|%b|%b|" % self.key
        self._head = lg.SNAC.pack(0x0E, 0x05, 0, 0)
        self._cookie_base = (instance & 0xFFFF) << 40
        self.seq = 0
        self.outstanding = 0
        self.fanout = 1

    def send(self, now_ns: int) -> int:
        seq = self.seq = self.seq + 1
        text = b"%b%d|%d" % (self._text_head, seq, now_ns)
        parts = lg.TLV_HEADER.pack(0x0001, len(text)) + text + CHARSET_LANGUAGE
        self.client.send(
            2,
            self._head
            + lg.COOKIE.pack(self._cookie_base | seq)
            + TO_ROOM
            + lg.TLV_HEADER.pack(0x0005, len(parts))
            + parts,
        )
        return seq


def parse_chat_text(payload: bytes) -> tuple[tuple[bytes, bytes], int, int] | None:
    """((sender, instance), seq, send time ns) of a benchmark line in a
    0E,06, or None. The text is found by its mark after the SNAC header,
    cookie and channel; its length is the text part's TLV length just
    before it."""
    start = payload.find(lg.MARK, 20)
    if start < 0:
        return None
    (length,) = lg.U16.unpack_from(payload, start - 2)
    return lg.marked_fields(payload[start : start + length])


# -- the time to the last member ----------------------------------------------------------


@dataclass
class LastMember:
    """Per line (sender key, seq): the members that have it. ``sent`` before
    it is written; ``received`` per copy. Once all ``fanout[sender]``
    distinct members have it, the time from the send time to that last copy
    is a sample (appended to ``latencies`` if ``measuring``). A copy of a
    line already complete is ``late`` (a duplicate: ``Accounting`` counts
    it), one of a line never sent (or from before the run) ``unknown``.
    ``incomplete``: lines sent that not every member has (yet)."""

    fanout: dict[Hashable, int]
    latencies: list[int] = field(default_factory=list)
    completed: int = 0
    late: int = 0
    unknown: int = 0
    _pending: dict[tuple[Hashable, int], set[Hashable]] = field(default_factory=dict)
    _done: set[tuple[Hashable, int]] = field(default_factory=set)

    def sent(self, sender: Hashable, seq: int) -> None:
        self._pending[sender, seq] = set()

    def received(
        self,
        sender: Hashable,
        seq: int,
        receiver: Hashable,
        sent_ns: int,
        now_ns: int,
        measuring: bool = True,
    ) -> None:
        line = (sender, seq)
        members = self._pending.get(line)
        if members is None:
            if line in self._done:
                self.late += 1
            else:
                self.unknown += 1
            return
        members.add(receiver)
        if len(members) >= self.fanout.get(sender, 0):
            del self._pending[line]
            self._done.add(line)
            self.completed += 1
            if measuring:
                self.latencies.append(now_ns - sent_ns)

    @property
    def incomplete(self) -> int:
        return len(self._pending)


# -- traffic ------------------------------------------------------------------------------


class ChatTraffic(ImTraffic):
    """``ImTraffic``'s closed and open loops over ``ChatSender``s, with 0E,06
    parsed instead of 04,07 and each run's latency samples the time to the
    last member (the per-delivery ones go to the run's ``extra``)."""

    def __init__(
        self,
        target: Target,
        senders: list[ChatSender],
        routes: dict[tuple[bytes, bytes], list[lg.FlapClient]],
        clients: list[lg.FlapClient],
    ) -> None:
        super().__init__(target, senders, routes, clients)  # type: ignore[arg-type]
        self.last = LastMember({s.key: s.fanout for s in senders})
        self.own_lines = 0

    def begin(self) -> None:
        super().begin()
        self.last = LastMember({s.key: s.fanout for s in self.senders})
        self.own_lines = 0

    def send(self, sender: lg.Sender) -> None:
        seq = sender.send(lg.now_ns())
        self.acc.sent(sender.key, seq)
        self.last.sent(sender.key, seq)
        sender.outstanding += sender.fanout

    def on_frame(self, client: lg.FlapClient, channel: int, payload: bytes) -> None:
        if channel != 2 or payload[:4] != K_CHAT_TO_CLIENT:
            return
        parsed = parse_chat_text(payload)
        if parsed is None:
            self.other += 1
            return
        key, seq, sent = parsed
        now = lg.now_ns()
        acc = self.acc
        acc.received(key, client.label, seq, sent, now)
        self.last.received(key, seq, client.label, sent, now, acc.latencies is not None)
        if key == client.label:
            self.own_lines += 1
        self.count_delivery(key)

    def _to_last(self, run: Run) -> Run:
        p50, p99, p999 = lg.percentiles(run.latencies_ns)
        last = self.last
        run.extra.update(
            per_delivery_ms={"p50": p50 / 1e6, "p99": p99 / 1e6, "p99.9": p999 / 1e6},
            per_delivery_samples=len(run.latencies_ns),
            lines_to_every_member=last.completed,
            lines_incomplete=last.incomplete,
            to_last_samples=len(last.latencies),
        )
        if self.own_lines:
            run.problems["own line echoed"] = self.own_lines
        run.latencies_ns = last.latencies
        return run

    async def closed_loop(
        self, depth: int, warmup: float, window: float, drain: float, round_: int
    ) -> Run:
        run = await super().closed_loop(depth, warmup, window, drain, round_)
        return self._to_last(run)

    async def open_loop(
        self, rate: float, warmup: float, window: float, drain: float, round_: int
    ) -> Run:
        run = await super().open_loop(rate, warmup, window, drain, round_)
        return self._to_last(run)


# -- set-up -------------------------------------------------------------------------------


async def open_service(
    bos: lg.FlapClient,
    family: int,
    request: bytes,
    request_id: int,
    label: Hashable = None,
    timeout: float = lg.DEFAULT_TIMEOUT,
) -> lg.FlapClient:
    """A service connection of the session ``bos``: 01,04 for ``family``
    (then ``request``), a connection to the 01,05's address signed on with
    its cookie, its 01,03 awaited and its 01,02 sent."""
    bos.send_snac(0x01, 0x04, lg.U16.pack(family) + request, request_id)
    _, _, body = await bos.wait_snac((K_SERVICE_RESPONSE,), timeout)
    tlvs = lg.parse_tlvs(body)
    if 0x05 not in tlvs or 0x06 not in tlvs:
        raise lg.ProtocolFailure(f"01,05 for {family:#06x} without address or cookie")
    host, port = tlvs[0x05].decode().rsplit(":", 1)
    client = await lg.connect(host, int(port), label, timeout)
    try:
        await client.wait_channel(1, timeout)
        client.send(1, lg.HELLO + lg.tlv(0x06, tlvs[0x06]))
        await client.wait_snac((lg.K_HOST_ONLINE,), timeout)
        client.send_snac(0x01, 0x02, service_ready(family), 2)
        return client
    except BaseException:
        client.close()
        raise


def _ignore(client: lg.FlapClient, channel: int, payload: bytes) -> None:
    """Where the idle BOS and ChatNav connections' frames go."""


async def join_subject(
    target: Target, name: str, timeout: float = lg.DEFAULT_TIMEOUT
) -> tuple[lg.FlapClient, list[lg.FlapClient]]:
    """libpurple's whole way into the room (module docstring); the chat
    connection and the session's other two, retried as set-up."""
    label = (name.encode(), b"1")
    for attempt in range(SETUP_ATTEMPTS):
        opened: list[lg.FlapClient] = []
        try:
            bos, _ = await lg.full_signon(target.auth, name, PASSWORD, timeout=timeout)
            opened.append(bos)
            nav = await open_service(bos, 0x0D, b"", 40, timeout=timeout)
            opened.append(nav)
            nav.send_snac(0x0D, 0x02, b"", 41)
            await nav.wait_snac((K_NAV_INFO,), timeout)
            nav.send_snac(0x0D, 0x08, create_room_body(ROOM), 42)
            _, _, body = await nav.wait_snac((K_NAV_INFO,), timeout)
            info = lg.parse_tlvs(body).get(0x0004)
            if info is None:
                raise lg.ProtocolFailure("0D,09 without the room (TLV 0x0004)")
            ref = room_ref(info)
            chat = await open_service(bos, 0x0E, lg.tlv(0x0001, ref), 43, label, timeout)
            opened.append(chat)
            _, _, room = await chat.wait_snac((K_ROOM_INFO,), timeout)
            if room_ref(room) != ref:
                raise lg.ProtocolFailure("0E,02 names another room")
            bos.inbox.clear()
            nav.inbox.clear()
            bos.on_frame = nav.on_frame = _ignore
            return chat, [bos, nav]
        except (OSError, TimeoutError, lg.ProtocolFailure) as e:
            close_all(opened)
            if attempt == SETUP_ATTEMPTS - 1:
                raise RuntimeError(f"S11: {name} could not join the room: {e!r}") from e
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def wait_everyone_in(
    clients: list[lg.FlapClient], names: Iterable[str], timeout: float = ROSTER_TIMEOUT
) -> None:
    """Until every chat connection's roster (0E,03 names, minus 0E,04's)
    holds every member; RuntimeError after ``timeout``."""
    wanted = {n.lower().encode() for n in names}
    seen: list[set[bytes]] = [set() for _ in clients]
    deadline = time.monotonic() + timeout
    while True:
        for index, client in enumerate(clients):
            kept = deque()
            for channel, payload in client.inbox:
                head = payload[:4] if channel == 2 else b""
                if head in (K_USERS_JOINED, K_USERS_LEFT):
                    found = {n.lower() for n in user_names(snac_parts(payload)[2])}
                    if head == K_USERS_JOINED:
                        seen[index] |= found
                    else:
                        seen[index] -= found
                else:
                    kept.append((channel, payload))
            client.inbox = kept
        missing = sum(len(wanted - s) for s in seen)
        strangers = sum(len(s - wanted) for s in seen)
        if strangers:
            raise RuntimeError(f"S11: {strangers} roster entries name no member")
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"S11: {missing} roster entries still missing after {timeout:g} s")
        await asyncio.sleep(0.05)


async def room(target: Target, profile: Profile) -> tuple[ChatTraffic, list[lg.FlapClient]]:
    """The room on ``target``, its senders and their routes; also every
    other connection opened for it (to close at the end)."""
    names = member_names(profile)
    others: list[lg.FlapClient] = []
    if target.kind == "subject":
        joined = await limited(
            [lambda n=n: join_subject(target, n) for n in names], SETUP_CONCURRENCY
        )
        clients = [chat for chat, _ in joined]
        others = [c for _, extra in joined for c in extra]
        await wait_everyone_in(clients, names)
    else:
        clients = await limited(
            [
                lambda n=n: lg.trivial_signon(
                    target.auth, n, groups=[ROOM], label=(n.encode(), b"1")
                )
                for n in names
            ],
            SETUP_CONCURRENCY,
        )
    for client in clients:
        client.inbox.clear()
    senders = [ChatSender(clients[i], names[i]) for i in range(profile.s11_senders)]
    routes = {s.key: [c for c in clients if c.label != s.key] for s in senders}
    return ChatTraffic(target, senders, routes, clients), others


# -- the scenario -------------------------------------------------------------------------


async def scenario_s11(harness: Harness, profile: Profile) -> list[Row]:
    baseline = await harness.start_baseline("chat")
    subject = await harness.start_subject()
    traffic: dict[str, ChatTraffic] = {}
    others: list[lg.FlapClient] = []
    try:
        for target in (baseline, subject):
            started = time.perf_counter()
            traffic[target.side], extra = await room(target, profile)
            others += extra
            print(
                f"  S11: {profile.s11_members} members in the room on {target.side}"
                f" in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
        rows = await sc.im_rows(
            traffic,  # type: ignore[arg-type]
            baseline,
            subject,
            profile,
            "S11",
            f"chat room of {profile.s11_members}, {profile.s11_senders} senders",
            profile.s11_depth,
            profile.s11_levels,
        )
        annotate(rows, profile)
        return rows
    finally:
        for im in traffic.values():
            close_all(im.clients)
        close_all(others)
        for im in traffic.values():
            await settle_closed(im.clients)
        await settle_closed(others)
        harness.stop(baseline)
        harness.stop(subject)


def _per_delivery(row: Row, side: str) -> str:
    """The worst round's per-delivery p99 of a side, in ms."""
    values = [
        r.extra["per_delivery_ms"]["p99"]
        for r in row.runs
        if r.side == side and r.extra.get("per_delivery_samples")
    ]
    return f"{max(values):.1f}" if values else "-"


def annotate(rows: list[Row], profile: Profile) -> None:
    """Notes and target verdicts (``flags``) of the S11 rows: the closed
    loop's per-CPU S/B against 0.6, each open loop's S p99 to the last
    member against 20 ms (the target's "half of the server's own maximum"
    is the 50 % row)."""
    fanout = profile.s11_members - 1
    closed, *opens = rows
    data = closed.to_json()
    ratio = data["per_cpu_ratio"]
    if ratio is not None and ratio < PER_CPU_MIN_RATIO:
        closed.flags.append(f"per-CPU S/B {ratio:.2f} (target >= {PER_CPU_MIN_RATIO:g})")
    closed.notes = (
        f"{closed.notes}; each line to {fanout} members; latency = line written -> its"
        f" last member's 0E,06; per delivery p99 S {_per_delivery(closed, 'subject')}"
        f" / B {_per_delivery(closed, 'baseline')} ms"
    )
    for row, level in zip(opens, profile.s11_levels, strict=True):
        s = row.side("subject")
        if level == 50 and s.get("latency_samples") and s["p99_ms"] >= LAST_MEMBER_P99_MS:
            row.flags.append(f"S p99 {s['p99_ms']:.1f} ms (target < {LAST_MEMBER_P99_MS:g} ms)")
        lines = {
            side: max(
                (r.extra.get("offered_msgs_per_s", 0) for r in row.runs if r.side == side),
                default=0,
            )
            for side in ("baseline", "subject")
        }
        row.notes = (
            f"{row.notes} deliveries/s (lines/s B {lines['baseline']:,.0f}"
            f" / S {lines['subject']:,.0f});"
            f" latency = line -> last of {fanout} members; per delivery p99"
            f" S {_per_delivery(row, 'subject')} / B {_per_delivery(row, 'baseline')} ms"
        )
