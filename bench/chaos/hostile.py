"""Hostile clients against the real server, while bystanders keep talking:
``python -m bench.chaos.hostile --seconds S`` (issue 19).

The subject is ``twistd -n aimserver`` in a child process on a temporary
SQLite database (``bench.run.Harness``), rate limiting on, every limit at the
server's default except the few a bounded run must lower (``Limits``: the
login timeout, and the pending-connection cap that a run can only reach by
opening that many connections). This process is the client side, one asyncio
loop speaking real OSCAR over loopback (``bench.loadgen``).

**Bystanders.** 18 users sign on (the first with 3 sessions, the second
with 2: multisession on both ends), 21 sessions, each from an address of its
own (127.1.0.n). Every
``IM_TICK`` s one user sends a numbered IM to the next user in a ring, so
each user sends one every 18 ticks (5.4 s, above the 5.1 s at which
rate class 3 clears: ordinary users, never near a limit) and each case
sees some. ``BystanderLedger`` checks every IM reaches every session of its
recipient; a bystander session that is cut off or misses an IM is a session
*wrongly dropped*, counted against the case that was running (the time the
IM was sent, or the connection ended). At the end every bystander session
must still answer a 01,0E round trip.

**Cases** (one table row each; a run repeats them in rounds while time is
left, each round from fresh loopback addresses 127.(20+round).case.n and
with fresh accounts, so per-address and per-user state never carries over):

========================  ======================================================
``framing``               HTTP bytes, a wrong FLAP start byte, on the auth,
                          BOS and chat ports: a channel-4 frame, then close.
``oversize``              a frame header one byte over ``[connection]
                          max_unauthenticated_frame_size`` on each port:
                          channel 4 and close before the payload comes; a
                          17,06 and a BOS sign-on frame of exactly that size:
                          answered (17,07; 01,03); once signed on, a 04,06 in
                          a frame of 65,535 bytes (the largest FLAP can say,
                          ``max_frame_size``): refused 04,01 0x000A, the
                          connection stays, the addressee gets nothing.
``conn-flood``            ``max_connections_per_address`` + 8 connections
                          from one address over the three ports: exactly the
                          cap get the server's hello, the rest are closed
                          before a byte; a closed one gives its place back.
``pending-cap``           ``max_pending_connections`` + k connections that
                          never authenticate, from several addresses: the k
                          oldest are closed with channel 4 as the newer come,
                          and a real sign-on still gets in meanwhile.
``slow-signon``           never finishing sign-on (silent, hello only, a
                          challenge and no answer, half a frame) and slowloris
                          (a login trickled one byte at a time, on auth and
                          BOS): each closed with channel 4 at ``[auth]
                          login_timeout`` (not later for trickling); a login
                          stretched with keepalives: closed at its 17th frame.
``im-flood``              40 IMs (with host ack) at once to a bystander: acked
                          until rate class 3 limits, then a 01,0A code 3,
                          nothing more acked, then channel 4 at the disconnect
                          level; the bystander gets exactly the acked ones.
``snac-flood``            300 unknown SNACs at once: answered 0x55,01 0x0001
                          until class 1 limits, the 01,0A code 3, silence,
                          channel 4 at the disconnect level.
``out-of-order``          a SNAC before the sign-on frame (auth, BOS, chat
                          ports) and a second sign-on frame: channel 4; 17,02
                          without a challenge: 17,03 error 0x0006; SNACs to
                          the wrong service (04,06 at the authorizer, 17,02
                          and 0E,05 on BOS, 04,06 on ChatNav and on a chat
                          connection): xx,01 0x0001, the connection stays;
                          SNACs after the sign-off frame: unanswered, and the
                          session's ChatNav and chat connections are closed.
``cookies``               a BOS cookie replayed (while its session is on, and
                          after it signed off), a BOS cookie at the chat port,
                          a chat cookie at the BOS port, a ChatNav cookie at
                          the chat port, a tampered, a random and a 1,024-byte
                          one: each channel 4 and close, never a 01,03.
``login-abuse``           logins per address past ``max_logins_per_ip_per_
                          minute``: the excess refused 0x0018; 5 wrong
                          passwords: 0x0005 each, then the right one 0x0018,
                          also for the name from a fresh address.
``pipelined``             a store read (02,0B) and 300 SNACs behind it in one
                          write: past 256 frames held for the connection it
                          is closed with channel 4, none answered.
========================  ======================================================

A case that did not get an answer it expected is a *failure* (explained in
the row's note). An error or critical line in the server's log (a traceback)
during a case is a *crash*; so is the server process ending.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from aimserver.protocols.auth import MAX_AUTH_FRAMES
from aimserver.protocols.flap import MAX_QUEUED_FRAMES
from aimserver.services.loginlimit import FAILURES_BEFORE_BACKOFF
from aimserver.services.ratelimit import DEFAULT_RATE_CLASSES, RateLimiter, RateState
from bench import loadgen as lg
from bench.chaos.table import ChaosRow, render

PART = "hostile"
HOST = "127.0.0.1"
PASSWORD = b"benchpw"
#: Seconds between two bystander IMs (from the next user in the ring).
IM_TICK = 0.3
#: Bystander users; the first has 3 sessions, the second 2, the rest 1.
BYSTANDER_USERS = 18
BYSTANDER_SESSIONS = (3, 2)
#: How long an answer the server owes may take.
ANSWER_TIMEOUT = 3.0
#: After the traffic stops, how long the last IMs may take to arrive.
DRAIN_SECONDS = 1.0
#: Connections the run opens at once (a flood is many such batches).
BATCH = 64
#: A case that runs longer than this is stopped and counted as a failure.
CASE_TIMEOUT = 60.0
#: The hostile accounts each round needs, by the case that signs them on.
KINDS = ("f", "s", "o", "c", "g", "p", "q", "z")
#: Error-level and critical lines of the server's log (tracebacks, bugs).
BAD_LEVELS = ("#error]", "#critical]")

K_ERROR = {family: lg.kind(family, 0x01) for family in (0x01, 0x04, 0x0E, 0x17, 0x55)}
K_ACK = lg.kind(0x04, 0x0C)
K_RATE_CHANGE = lg.kind(0x01, 0x0A)
K_SELF_INFO = lg.kind(0x01, 0x0F)
K_SERVICE_REDIRECT = lg.kind(0x01, 0x05)
K_NAV_INFO = lg.kind(0x0D, 0x09)
K_ROOM_INFO = lg.kind(0x0E, 0x02)


@attrs.frozen
class Limits:
    """What the server under test is configured with, and so what each case
    expects. Defaults are the server's own (``aimserver.config``) except
    ``pending`` (the default 10,000 would take that many connections to
    reach) and ``login_timeout`` (30 s would make every round last 30 s)."""

    per_address: int = 200
    pending: int = 400
    login_timeout: float = 3.0
    unauthenticated_frame: int = 2048
    logins_per_ip_per_minute: int = 60

    def settings(self) -> dict[str, dict[str, str]]:
        """The subject's INI, over ``bench.run.SETTINGS`` (which lifts the
        limits for the throughput scenarios: here they are all back)."""
        return {
            "ratelimit": {"enabled": "true"},
            "multisession": {"max_sessions": "5", "notify": "true"},
            "connection": {
                "max_connections_per_address": str(self.per_address),
                "max_pending_connections": str(self.pending),
                "max_unauthenticated_frame_size": str(self.unauthenticated_frame),
            },
            "auth": {
                "login_timeout": str(self.login_timeout),
                "max_logins_per_ip_per_minute": str(self.logins_per_ip_per_minute),
            },
        }

    def describe(self) -> str:
        return (
            f"per address {self.per_address}, pending {self.pending}, login timeout"
            f" {self.login_timeout:g} s, unauthenticated frame {self.unauthenticated_frame},"
            f" logins per address {self.logins_per_ip_per_minute}/min"
        )


# -- the wire -----------------------------------------------------------------------------


def flap(channel: int, payload: bytes, sequence: int = 1) -> bytes:
    return lg.FLAP.pack(lg.FLAP_START, channel, sequence, len(payload)) + payload


def snac_frame(family: int, subtype: int, body: bytes = b"", request_id: int = 1) -> bytes:
    return flap(2, lg.snac(family, subtype, body, request_id))


def parse_snac(payload: bytes) -> tuple[bytes, int, bytes]:
    """(kind, request id, body) of a channel-2 payload (prefix skipped)."""
    if len(payload) < 10:
        return payload[:4], 0, b""
    _, _, flags, request_id = lg.SNAC.unpack_from(payload)
    offset = 10
    if flags & 0x8000 and len(payload) >= 12:
        offset += 2 + lg.U16.unpack_from(payload, 10)[0]
    return payload[:4], request_id, payload[offset:]


def error_code(body: bytes) -> int:
    return lg.U16.unpack_from(body)[0] if len(body) >= 2 else -1


def login_error(body: bytes) -> int | None:
    value = lg.parse_tlvs(body).get(0x08)
    return lg.U16.unpack(value)[0] if value is not None and len(value) == 2 else None


def im_body(to: str, text: bytes, cookie: bytes, ack: bool = False) -> bytes:
    """A 04,06 body on channel 1 (what ``loadgen.Sender`` writes, with any text)."""
    data = lg.IM_DATA_HEAD + lg.U16.pack(len(text) + 4) + b"\x00\x00\x00\x00" + text
    name = to.encode()
    body = cookie + b"\x00\x01" + bytes([len(name)]) + name + lg.tlv(0x02, data)
    return body + (lg.tlv(0x03, b"") if ack else b"")


def string08(text: str) -> bytes:
    raw = text.encode()
    return bytes([len(raw)]) + raw


# -- connections --------------------------------------------------------------------------


class Probe(lg.FlapClient):
    """One hostile connection: every frame kept in order (``inbox``), when
    it opened and ended, and whether the server wrote anything at all."""

    def __init__(self, label: Hashable = None) -> None:
        super().__init__(label)
        self.opened = self.loop.time()
        self.ended: float | None = None
        self.got_bytes = False
        #: The kind of the SNAC ``snac`` returned last.
        self.last_kind = b""

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = self.loop.time()
        super().connection_lost(exc)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    @property
    def channels(self) -> list[int]:
        return [channel for channel, _ in self.inbox]

    def kinds(self) -> list[bytes]:
        return [payload[:4] for channel, payload in self.inbox if channel == 2]

    async def hello(self, timeout: float = ANSWER_TIMEOUT) -> bool:
        """The server's channel-1 hello came (it is taken out of the inbox)."""
        try:
            await self.wait_channel(1, timeout)
        except (TimeoutError, ConnectionError):
            return False
        return True

    async def ends(self, timeout: float = ANSWER_TIMEOUT) -> bool:
        """The connection ended within ``timeout``."""
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            return False
        return True

    async def snac(self, kinds: Sequence[bytes], timeout: float = ANSWER_TIMEOUT) -> bytes | None:
        """The body of the next SNAC of one of ``kinds`` (errors are not
        raised: pass their kind), None if none came; ``last_kind`` says
        which kind it was."""

        def matches(channel: int, payload: bytes) -> bool:
            return channel == 2 and payload[:4] in kinds

        try:
            _, payload = await self.wait(matches, timeout)
        except (TimeoutError, ConnectionError):
            return None
        self.last_kind, _, body = parse_snac(payload)
        return body


async def open_probe(
    port: int, source: str, label: Hashable = None, timeout: float = ANSWER_TIMEOUT
) -> Probe | None:
    """A connection from ``source``; None if the handshake itself failed."""
    loop = asyncio.get_running_loop()
    try:
        _, probe = await asyncio.wait_for(
            loop.create_connection(lambda: Probe(label), HOST, port, local_addr=(source, 0)),
            timeout,
        )
    except (OSError, TimeoutError):
        return None
    return probe


def close_all(clients: Iterable[lg.FlapClient | None]) -> None:
    for client in clients:
        if client is not None:
            client.close()


# -- bystanders ---------------------------------------------------------------------------


@attrs.define
class WindowReport:
    """What the bystanders suffered during one window (a case, or the control)."""

    #: IMs sent during the window.
    sent: int = 0
    #: Sessions cut off, or missing an IM sent during the window.
    affected: set[str] = attrs.Factory(set)
    missing: int = 0
    duplicated: int = 0
    notes: list[str] = attrs.Factory(list)


class BystanderLedger:
    """Which bystander IMs must reach which sessions, which did, and which
    sessions were cut off, by *window* (``window`` is the label of what runs
    now). An IM expected by a session that was already cut off is not
    counted again: the session is wrongly dropped once, where it happened."""

    def __init__(self) -> None:
        self.window = "setup"
        self._expected: dict[Hashable, tuple[str, frozenset[str]]] = {}
        self._received: Counter[tuple[Hashable, str]] = Counter()
        self._dropped: dict[str, str] = {}
        self._sent: Counter[str] = Counter()
        self._notes: dict[str, list[str]] = {}
        #: Copies of IMs nobody declared (a fault of the run, not the server's).
        self.undeclared = 0

    def sent(self, message: Hashable, receivers: Iterable[str]) -> None:
        live = frozenset(r for r in receivers if r not in self._dropped)
        self._expected[message] = (self.window, live)
        self._sent[self.window] += 1

    def sent_in(self, window: str) -> int:
        return self._sent[window]

    def received(self, message: Hashable, receiver: str) -> None:
        if message not in self._expected:
            self.undeclared += 1
            return
        self._received[message, receiver] += 1

    def dropped(self, receiver: str, why: str = "cut off") -> None:
        if receiver not in self._dropped:
            self._dropped[receiver] = self.window
            self._notes.setdefault(self.window, []).append(f"{receiver} {why}")

    def report(self) -> dict[str, WindowReport]:
        """Per window; call once the traffic has drained."""
        reports: dict[str, WindowReport] = {}

        def of(window: str) -> WindowReport:
            if window not in reports:
                reports[window] = WindowReport(sent=self._sent[window])
            return reports[window]

        for window, notes in self._notes.items():
            of(window).notes.extend(notes)
        for receiver, window in self._dropped.items():
            of(window).affected.add(receiver)
        for message, (window, receivers) in self._expected.items():
            for receiver in receivers:
                copies = self._received[message, receiver]
                if copies > 1:
                    of(window).duplicated += copies - 1
                if copies:
                    continue
                if receiver in self._dropped:
                    # Cut off since: counted where that happened.
                    continue
                report = of(window)
                report.missing += 1
                if receiver not in report.affected:
                    report.affected.add(receiver)
                    report.notes.append(f"{receiver} missed IM {message!r}")
        for window in self._sent:
            of(window)
        return reports


@attrs.define(eq=False)
class BystanderSession:
    """One bystander session and what it was sent besides the ring's IMs."""

    key: str
    user: str
    client: lg.FlapClient
    sender: lg.Sender | None = None
    #: 04,07s without the bystander mark (hostile IMs aimed at it, notices).
    other_ims: int = 0
    round_trip: asyncio.Future[None] | None = None


class Bystanders:
    """The bystander users, their sessions, their IM traffic and its ledger."""

    def __init__(self, auth: tuple[str, int], names: Sequence[str]) -> None:
        self.auth = auth
        self.names = list(names)
        self.ledger = BystanderLedger()
        self.sessions: list[BystanderSession] = []
        self.by_user: dict[str, list[BystanderSession]] = {}
        self.sent = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def user_names(count: int = BYSTANDER_USERS) -> list[str]:
        return [f"by{i:02d}" for i in range(count)]

    def sessions_of(self, index: int) -> int:
        return BYSTANDER_SESSIONS[index] if index < len(BYSTANDER_SESSIONS) else 1

    async def sign_on(self) -> None:
        """Every session, one after the other (a multisession user's devices
        one at a time, as people sign on), then the ring's senders."""
        instance = 0
        for index, name in enumerate(self.names):
            for device in range(self.sessions_of(index)):
                instance += 1
                client, _ = await lg.full_signon(
                    self.auth, name, PASSWORD, source=f"127.1.0.{instance}"
                )
                session = BystanderSession(f"{name}#{device}", name, client)
                client.inbox.clear()
                client.on_frame = self._frame_handler(session)
                client.closed.add_done_callback(
                    lambda _, key=session.key: self.ledger.dropped(key, "disconnected")
                )
                self.sessions.append(session)
                self.by_user.setdefault(name, []).append(session)
        for index, name in enumerate(self.names):
            to = self.names[(index + 1) % len(self.names)]
            for device, session in enumerate(self.by_user[name]):
                number = index * 10 + device + 1
                session.sender = lg.Sender(session.client, name, number, to)

    def _frame_handler(self, session: BystanderSession) -> Callable[[Any, int, bytes], None]:
        ledger = self.ledger

        def on_frame(client: Any, channel: int, payload: bytes) -> None:
            if channel == 4:
                ledger.dropped(session.key, "sent channel 4")
                return
            if channel != 2:
                return
            kind = payload[:4]
            if kind == lg.K_IM_TO_CLIENT:
                found = lg.parse_im_text(payload)
                if found is None:
                    session.other_ims += 1
                else:
                    (sender, instance), seq, _ = found
                    ledger.received((sender, instance, seq), session.key)
            elif (
                kind == K_SELF_INFO
                and session.round_trip is not None
                and not session.round_trip.done()
            ):
                session.round_trip.set_result(None)

        return on_frame

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._traffic())

    async def _traffic(self) -> None:
        """One IM per tick, from user ``tick % n`` (its sessions in turn) to
        the next user in the ring, declared to every session of it."""
        tick = 0
        users = len(self.names)
        while not self._stop.is_set():
            index = tick % users
            name = self.names[index]
            devices = self.by_user[name]
            session = devices[(tick // users) % len(devices)]
            to = self.names[(index + 1) % users]
            sender = session.sender
            if sender is not None and not session.client.closed.done():
                seq = sender.send(lg.now_ns())
                self.sent += 1
                self.ledger.sent(
                    (sender.key[0], sender.key[1], seq), [s.key for s in self.by_user[to]]
                )
            tick += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), IM_TICK)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def window_has_traffic(self, window: str) -> None:
        """Wait (at most two ticks) until an IM was sent during ``window``:
        every case is checked against some bystander traffic."""
        deadline = time.monotonic() + 2 * IM_TICK
        while self.ledger.sent_in(window) == 0 and time.monotonic() < deadline:
            await asyncio.sleep(IM_TICK / 4)

    async def round_trips(self, timeout: float = ANSWER_TIMEOUT) -> list[str]:
        """Every session still connected answers 01,0E; those that do not."""
        loop = asyncio.get_running_loop()
        waiting = []
        for session in self.sessions:
            if session.client.closed.done():
                continue
            session.round_trip = loop.create_future()
            session.client.send_snac(0x01, 0x0E, b"", 0x7E)
            waiting.append(session)
        silent = []
        for session in waiting:
            assert session.round_trip is not None
            try:
                await asyncio.wait_for(session.round_trip, timeout)
            except TimeoutError:
                silent.append(session.key)
        return silent

    def close(self) -> None:
        for session in self.sessions:
            session.client.signoff()


# -- the cases ----------------------------------------------------------------------------


@attrs.define
class Outcome:
    """What one case threw and which expected answers did not come."""

    inputs: int = 0
    problems: list[str] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)

    def expect(self, holds: bool, problem: str) -> bool:
        if not holds:
            self.problems.append(problem)
        return holds


@attrs.define
class Context:
    """What a case needs: where the server is, its limits, the round."""

    auth: int
    bos: int
    chat: int
    limits: Limits
    round: int
    case: int
    bystanders: Bystanders

    def source(self, n: int = 0) -> str:
        """A loopback address of this round and case (never 127.0.0.1)."""
        return f"127.{20 + self.round}.{self.case}.{n + 1}"

    def account(self, kind: str) -> str:
        return f"hr{self.round}{kind}"

    @property
    def auth_address(self) -> tuple[str, int]:
        return HOST, self.auth

    @property
    def quick(self) -> float:
        """How long an immediate answer (a refusal, a close) may take: well
        under the login timeout, which closes with channel 4 too."""
        return min(ANSWER_TIMEOUT, self.limits.login_timeout / 2)

    def victim(self) -> BystanderSession:
        """A single-session bystander that hostile IMs are aimed at."""
        return self.bystanders.by_user[self.bystanders.names[5]][0]


async def greeted_probe(ctx: Context, out: Outcome, port: int, n: int, what: str) -> Probe | None:
    """A connection to ``port`` from source ``n`` that got the server's hello;
    None, with the expectation failed, if it did not."""
    probe = await open_probe(port, ctx.source(n))
    if probe is None or not await probe.hello():
        out.expect(False, f"{what}: no hello")
        close_all([probe])
        return None
    return probe


async def refused_with_signoff(
    out: Outcome, probe: Probe | None, what: str, timeout: float
) -> bool:
    """``probe`` is closed within ``timeout`` and the only thing the server
    wrote after its hello is one channel-4 frame."""
    if not out.expect(probe is not None, f"{what}: no TCP connection"):
        return False
    assert probe is not None
    ended = await probe.ends(timeout)
    probe.close()
    return out.expect(
        ended and probe.channels == [4],
        f"{what}: expected channel 4 and close, got channels {probe.channels}"
        f" ({'closed' if ended else 'still open'})",
    )


async def case_framing(ctx: Context) -> Outcome:
    out = Outcome()
    bad = (b"GET / HTTP/1.0\r\n\r\n", b"\x2b\x01\x00\x01\x00\x04\x00\x00\x00\x01")
    for port_name, port in (("auth", ctx.auth), ("bos", ctx.bos), ("chat", ctx.chat)):
        for n, data in enumerate(bad):
            probe = await greeted_probe(ctx, out, port, n, port_name)
            out.inputs += 1
            if probe is None:
                continue
            probe.write(data)
            await refused_with_signoff(out, probe, f"{port_name} {data[:8]!r}", ctx.quick)
    return out


async def case_oversize(ctx: Context) -> Outcome:
    out = Outcome()
    limit = ctx.limits.unauthenticated_frame
    for port_name, port in (("auth", ctx.auth), ("bos", ctx.bos), ("chat", ctx.chat)):
        probe = await greeted_probe(ctx, out, port, 1, port_name)
        out.inputs += 1
        if probe is None:
            continue
        # Only the header: the server must not wait for the payload.
        probe.write(lg.FLAP.pack(lg.FLAP_START, 1, 1, limit + 1))
        await refused_with_signoff(out, probe, f"{port_name}: a {limit + 1}-byte frame", ctx.quick)

    # A 17,06 of exactly the limit: answered.
    name = ctx.account("z")
    head = lg.tlv(0x01, name.encode()) + lg.tlv(0x4B, b"")
    pad = limit - 10 - len(head) - 4
    probe = await open_probe(ctx.auth, ctx.source(2))
    out.inputs += 1
    if probe is not None and await probe.hello():
        probe.write(flap(1, lg.HELLO) + snac_frame(0x17, 0x06, head + lg.tlv(0x7777, b"\0" * pad)))
        body = await probe.snac([lg.K_CHALLENGE, lg.K_LOGIN_REPLY])
        out.expect(
            body is not None and probe.closed.done() is False,
            f"auth: a 17,06 of exactly {limit} bytes was not answered with 17,07",
        )
    else:
        out.expect(False, "auth: no hello")
    close_all([probe])

    # A BOS sign-on frame of exactly the limit, then a 65,535-byte frame.
    login = await lg.bucp_login(*ctx.auth_address, name, PASSWORD, source=ctx.source(3))
    if not out.expect(login.error is None, f"login of {name} refused: {login.error}"):
        return out
    probe = await greeted_probe(ctx, out, ctx.bos, 3, "bos")
    out.inputs += 1
    if probe is None:
        return out
    head = lg.HELLO + lg.tlv(0x06, login.cookie)
    probe.write(flap(1, head + lg.tlv(0x7777, b"\0" * (limit - len(head) - 4))))
    if not out.expect(
        await probe.snac([lg.K_HOST_ONLINE]) is not None,
        f"bos: a sign-on frame of exactly {limit} bytes got no 01,03",
    ):
        probe.close()
        return out
    probe.send_snac(0x01, 0x02, lg.CLIENT_READY, 2)
    victim = ctx.victim()
    before = victim.other_ims
    fixed = len(im_body(victim.user, b"", b"\0" * 8))
    text = b"x" * (0xFFFF - 10 - fixed)
    body = im_body(victim.user, text, os.urandom(8))
    assert 10 + len(body) == 0xFFFF
    probe.send_snac(0x04, 0x06, body, 3)
    out.inputs += 1
    refusal = await probe.snac([K_ERROR[0x04]])
    out.expect(
        refusal is not None and error_code(refusal) == 0x000A,
        f"a 65,535-byte IM: expected 04,01 0x000A, got {refusal!r:.40}",
    )
    probe.send_snac(0x01, 0x0E, b"", 4)
    out.expect(
        await probe.snac([K_SELF_INFO]) is not None,
        "after the 65,535-byte frame the connection no longer answers",
    )
    await asyncio.sleep(0.2)
    out.expect(
        victim.other_ims == before,
        f"the addressee got {victim.other_ims - before} copies of the refused IM",
    )
    probe.signoff()
    return out


async def case_conn_flood(ctx: Context) -> Outcome:
    out = Outcome()
    cap = ctx.limits.per_address
    extra = 8
    source = ctx.source()
    ports = (ctx.auth, ctx.bos, ctx.chat)
    probes: list[Probe | None] = []
    for start in range(0, cap + extra, BATCH):
        count = min(BATCH, cap + extra - start)
        probes += await asyncio.gather(
            *(open_probe(ports[(start + i) % 3], source) for i in range(count))
        )
    out.inputs += len(probes)
    hellos = await asyncio.gather(*(p.hello(1.0) if p else _false() for p in probes))
    admitted = [p for p, ok in zip(probes, hellos, strict=True) if ok and p is not None]
    refused = [p for p, ok in zip(probes, hellos, strict=True) if not ok]
    out.expect(
        len(admitted) == cap,
        f"{len(admitted)} of {len(probes)} connections from one address admitted, cap {cap}",
    )
    for probe in refused:
        if probe is None:
            continue
        ended = await probe.ends(1.0)
        if not out.expect(
            ended and not probe.got_bytes,
            "a connection over the cap was not closed before a byte"
            f" ({'closed' if ended else 'open'}, {len(probe.inbox)} frames)",
        ):
            break
    close_all(refused)
    # A closed one gives its place back.
    if admitted:
        admitted.pop().close()
        again: Probe | None = None
        deadline = time.monotonic() + 2.0
        out.inputs += 1
        while time.monotonic() < deadline:
            again = await open_probe(ctx.bos, source)
            if again is not None and await again.hello(0.5):
                break
            close_all([again])
            again = None
            await asyncio.sleep(0.05)
        out.expect(again is not None, "a place given back was not admitted again")
        close_all([again])
    close_all(admitted)
    return out


async def _false() -> bool:
    return False


async def case_pending_cap(ctx: Context) -> Outcome:
    out = Outcome()
    # The connections of the case before are closed by now, not still pending.
    await asyncio.sleep(0.5)
    cap = ctx.limits.pending
    extra = max(4, cap // 10)
    per_address = max(1, ctx.limits.per_address - 2)
    ports = (ctx.auth, ctx.bos, ctx.chat)
    started = time.monotonic()
    old: list[Probe | None] = []
    for start in range(0, cap, BATCH):
        count = min(BATCH, cap - start)
        old += await asyncio.gather(
            *(
                open_probe(ports[(start + i) % 3], ctx.source((start + i) // per_address))
                for i in range(count)
            )
        )
    await asyncio.gather(*(p.hello(1.0) for p in old if p is not None))
    new: list[Probe | None] = []
    for i in range(extra):
        n = cap + i
        probe = await open_probe(ports[n % 3], ctx.source(n // per_address))
        if probe is not None:
            await probe.hello(1.0)
        new.append(probe)
    out.inputs += len(old) + len(new)
    await asyncio.sleep(0.3)
    if not out.expect(
        time.monotonic() - started < ctx.limits.login_timeout - 0.5,
        "the flood took longer than the login timeout: evictions and timeouts look alike",
    ):
        close_all(old + new)
        return out
    evicted = [p for p in old if p is not None and p.closed.done()]
    out.expect(
        len(evicted) == extra,
        f"{len(evicted)} of the {cap} oldest closed when {extra} more came (expected {extra})",
    )
    out.expect(
        all(p.channels == [4] for p in evicted),
        "an evicted connection was closed without a channel-4 frame",
    )
    out.expect(
        not any(p is None or p.closed.done() for p in new),
        "a newer pending connection was closed instead of the oldest",
    )
    # A real sign-on still gets in while the set is full.
    name = ctx.account("p")
    out.inputs += 1
    try:
        client, _ = await lg.full_signon(
            ctx.auth_address, name, PASSWORD, source=ctx.source(cap // per_address + 1)
        )
    except (OSError, TimeoutError, ConnectionError, lg.ProtocolFailure) as e:
        out.expect(False, f"a sign-on while {cap} connections were pending failed: {e!r}")
    else:
        client.signoff()
        now_evicted = sum(1 for p in old + new if p is not None and p.closed.done())
        out.expect(
            extra + 1 <= now_evicted <= extra + 2,
            f"the sign-on's two connections closed {now_evicted - extra} pending ones",
        )
    out.notes.append(f"{extra} of {cap + extra} evicted")
    close_all(old + new)
    return out


async def case_slow_signon(ctx: Context) -> Outcome:
    out = Outcome()
    timeout = ctx.limits.login_timeout
    hello = flap(1, lg.HELLO)
    challenge = snac_frame(0x17, 0x06, lg.tlv(0x01, b"by00") + lg.tlv(0x4B, b""))
    sign_on = flap(1, lg.HELLO + lg.tlv(0x06, os.urandom(256)))

    async def at_timeout(port: int, n: int, what: str, send: bytes = b"") -> None:
        probe = await greeted_probe(ctx, out, port, n, what)
        if probe is None:
            return
        if send:
            probe.write(send)
        await check_timed_out(probe, what)

    async def check_timed_out(probe: Probe, what: str) -> None:
        ended = await probe.ends(timeout + 3.0)
        took = (probe.ended or probe.loop.time()) - probe.opened
        signoff = 4 in probe.channels
        out.expect(
            ended and signoff and timeout - 0.3 <= took <= timeout + 1.5,
            f"{what}: {'closed' if ended else 'open'} after {took:.1f} s"
            f" ({'with' if signoff else 'without'} channel 4), login timeout {timeout:g} s",
        )
        probe.close()

    async def trickle(port: int, n: int, what: str, data: bytes) -> None:
        probe = await greeted_probe(ctx, out, port, n, what)
        if probe is None:
            return
        step = timeout / 20

        async def drip() -> None:
            for i in range(len(data)):
                if probe.closed.done():
                    return
                probe.write(data[i : i + 1])
                await asyncio.sleep(step)

        dripping = asyncio.ensure_future(drip())
        await check_timed_out(probe, what)
        dripping.cancel()

    async def keepalives(n: int) -> None:
        probe = await greeted_probe(ctx, out, ctx.auth, n, "keepalives")
        if probe is None:
            return
        probe.write(hello)
        sent = 1
        while not probe.closed.done() and sent < 3 * MAX_AUTH_FRAMES:
            probe.write(flap(5, b""))
            sent += 1
            await asyncio.sleep(min(0.05, timeout / (4 * MAX_AUTH_FRAMES)))
        await probe.ends(1.0)
        out.expect(
            probe.closed.done()
            and 4 in probe.channels
            and probe.ended is not None
            and probe.ended - probe.opened < timeout,
            f"a login stretched with keepalives was not closed at frame {MAX_AUTH_FRAMES + 1}"
            f" ({sent} frames sent)",
        )
        probe.close()

    jobs = [
        at_timeout(ctx.auth, 0, "silent (auth)"),
        at_timeout(ctx.bos, 1, "silent (bos)"),
        at_timeout(ctx.chat, 2, "silent (chat)"),
        at_timeout(ctx.auth, 3, "hello only (auth)", hello),
        at_timeout(ctx.auth, 4, "challenge, no login (auth)", hello + challenge),
        at_timeout(ctx.bos, 5, "half a sign-on frame (bos)", sign_on[:9]),
        trickle(ctx.auth, 6, "slowloris login (auth)", hello + challenge),
        trickle(ctx.bos, 7, "slowloris sign-on (bos)", sign_on),
        keepalives(8),
    ]
    out.inputs += len(jobs)
    await asyncio.gather(*jobs)
    return out


def expected_flood(class_id: int, prior: int, count: int) -> tuple[int, int | None]:
    """Of ``count`` SNACs of rate class ``class_id`` sent at once after
    ``prior`` others of it: how many are answered before the class limits,
    and the index of the one that reaches the disconnect level (None if
    none). Zero gaps: the limiter itself (``services.ratelimit``) tells."""
    limiter = RateLimiter(DEFAULT_RATE_CLASSES)
    for _ in range(prior):
        limiter.check(class_id, 0)
    answered = 0
    limited = False
    for i in range(count):
        result = limiter.check(class_id, 0)
        if result.state == RateState.DISCONNECT:
            return answered, i
        if not result.allowed:
            limited = True
        elif not limited:
            answered += 1
    return answered, None


def check_flood(
    out: Outcome, probe: lg.FlapClient, answer: bytes, class_id: int, expected: int
) -> int:
    """The frames after a flood: answers, a 01,0A code 3 for ``class_id``,
    no answer after it, then channel 4. Returns the answers seen."""
    answered = 0
    limited_at: int | None = None
    late = 0
    signoff = False
    for channel, payload in probe.inbox:
        if channel == 4:
            signoff = True
            continue
        if channel != 2:
            continue
        kind, _, body = parse_snac(payload)
        if kind == answer:
            if limited_at is None:
                answered += 1
            else:
                late += 1
        elif kind == K_RATE_CHANGE and len(body) >= 4:
            code, notice_class = struct.unpack_from("!HH", body)
            if code == 3 and notice_class == class_id and limited_at is None:
                limited_at = answered
    out.expect(limited_at is not None, f"no 01,0A code 3 for class {class_id}")
    out.expect(late == 0, f"{late} answered after the limit notice")
    out.expect(signoff, "not closed with channel 4 at the disconnect level")
    out.expect(
        expected - 1 <= answered <= expected + 3,
        f"{answered} answered before the limit, the class allows {expected}",
    )
    return answered


async def case_im_flood(ctx: Context) -> Outcome:
    out = Outcome()
    name = ctx.account("f")
    client, _ = await lg.full_signon(ctx.auth_address, name, PASSWORD, source=ctx.source())
    victim = ctx.victim()
    before = victim.other_ims
    count = 40
    expected, disconnect = expected_flood(3, 0, count)
    assert disconnect is not None
    data = b"".join(
        snac_frame(0x04, 0x06, im_body(victim.user, b"HF|%d" % i, os.urandom(8), ack=True), 100 + i)
        for i in range(count)
    )
    client.inbox.clear()
    assert client.transport is not None
    client.transport.write(data)
    out.inputs += count
    try:
        await asyncio.wait_for(asyncio.shield(client.closed), ANSWER_TIMEOUT)
    except TimeoutError:
        out.expect(False, f"still open {ANSWER_TIMEOUT:g} s after {count} IMs at once")
    acked = check_flood(out, client, K_ACK, 3, expected)
    await asyncio.sleep(0.3)
    got = victim.other_ims - before
    out.expect(got == acked, f"the addressee got {got} of the flood, {acked} were acked")
    out.notes.append(f"{acked} acked of {count}")
    client.close()
    return out


async def case_snac_flood(ctx: Context) -> Outcome:
    out = Outcome()
    name = ctx.account("s")
    client, _ = await lg.full_signon(ctx.auth_address, name, PASSWORD, source=ctx.source())
    count = 300
    # The sign-on's client-ready (01,02) and its 01,0E round trip counted in class 1.
    expected, disconnect = expected_flood(1, 2, count)
    assert disconnect is not None
    client.inbox.clear()
    assert client.transport is not None
    client.transport.write(
        b"".join(snac_frame(0x55, 0x02, b"junk", 1000 + i) for i in range(count))
    )
    out.inputs += count
    try:
        await asyncio.wait_for(asyncio.shield(client.closed), ANSWER_TIMEOUT)
    except TimeoutError:
        out.expect(False, f"still open {ANSWER_TIMEOUT:g} s after {count} SNACs at once")
    answered = check_flood(out, client, K_ERROR[0x55], 1, expected)
    out.notes.append(f"{answered} answered of {count}")
    client.close()
    return out


async def join_room(bos: lg.FlapClient, room: str) -> tuple[lg.FlapClient, bytes]:
    """A ChatNav service connection of ``bos`` and the ref of the private
    room ``room`` it made (0D,08 -> 0D,09)."""
    from bench import chat

    nav = await chat.open_service(bos, 0x0D, b"", 40)
    nav.send_snac(0x0D, 0x08, chat.create_room_body(room), 41)
    _, _, body = await nav.wait_snac((K_NAV_INFO,))
    info = lg.parse_tlvs(body).get(0x0004)
    if info is None:
        raise lg.ProtocolFailure("0D,09 without the room")
    return nav, chat.room_ref(info)


async def service_cookie(bos: lg.FlapClient, family: int, request: bytes, rid: int) -> bytes:
    """The cookie of a 01,05 for ``family``, not redeemed."""
    bos.send_snac(0x01, 0x04, lg.U16.pack(family) + request, rid)
    _, _, body = await bos.wait_snac((K_SERVICE_REDIRECT,))
    cookie = lg.parse_tlvs(body).get(0x06)
    if cookie is None:
        raise lg.ProtocolFailure(f"01,05 for {family:#06x} without a cookie")
    return cookie


async def case_out_of_order(ctx: Context) -> Outcome:
    out = Outcome()
    early = snac_frame(0x17, 0x06, lg.tlv(0x01, b"by00") + lg.tlv(0x4B, b""))
    hello = flap(1, lg.HELLO)
    probes = [
        (ctx.auth, early, "a SNAC before the sign-on frame (auth)"),
        (ctx.bos, snac_frame(0x01, 0x0E), "a SNAC before the sign-on frame (bos)"),
        (ctx.chat, snac_frame(0x0E, 0x05), "a SNAC before the sign-on frame (chat)"),
        (ctx.auth, hello + hello, "a second sign-on frame (auth)"),
    ]
    for n, (port, data, what) in enumerate(probes):
        probe = await greeted_probe(ctx, out, port, n, what)
        out.inputs += 1
        if probe is None:
            continue
        probe.write(data)
        await refused_with_signoff(out, probe, what, ctx.quick)

    # 17,02 with no challenge before it: 17,03 error 0x0006, then channel 4.
    probe = await open_probe(ctx.auth, ctx.source(5))
    out.inputs += 1
    if probe is not None and await probe.hello():
        request = lg.tlv(0x01, b"by00") + lg.tlv(0x25, b"\0" * 16) + lg.tlv(0x4C, b"")
        probe.write(hello + snac_frame(0x17, 0x02, request))
        reply = await probe.snac([lg.K_LOGIN_REPLY])
        ended = await probe.ends()
        out.expect(
            reply is not None and login_error(reply) == 0x0006 and ended and 4 in probe.channels,
            f"17,02 without a challenge: expected 17,03 0x0006 and channel 4, got"
            f" {None if reply is None else login_error(reply)}",
        )
    else:
        out.expect(False, "auth: no hello")
    close_all([probe])

    # A BOS SNAC at the authorizer: 04,01 0x0001, and the login goes on.
    probe = await open_probe(ctx.auth, ctx.source(6))
    out.inputs += 1
    if probe is not None and await probe.hello():
        probe.write(hello + snac_frame(0x04, 0x06, im_body("by00", b"hi", b"\0" * 8), 7))
        refusal = await probe.snac([K_ERROR[0x04]])
        out.expect(
            refusal is not None and error_code(refusal) == 0x0001,
            "04,06 at the authorizer: no 04,01 0x0001",
        )
        probe.write(early)
        out.expect(
            await probe.snac([lg.K_CHALLENGE]) is not None,
            "after a wrong-service SNAC the authorizer no longer answers 17,06",
        )
    else:
        out.expect(False, "auth: no hello")
    close_all([probe])

    # On a signed-on session: wrong-service SNACs on BOS, ChatNav and chat.
    name = ctx.account("o")
    bos, _ = await lg.full_signon(ctx.auth_address, name, PASSWORD, source=ctx.source(7))
    opened: list[lg.FlapClient] = [bos]
    try:
        for family, subtype, body in ((0x17, 0x02, b""), (0x0E, 0x05, b"\0" * 10)):
            bos.send_snac(family, subtype, body, 50 + subtype)
            out.inputs += 1
            try:
                _, rid, error = await bos.wait_snac((K_ERROR[family],), ANSWER_TIMEOUT)
                out.expect(
                    error_code(error) == 0x0001 and rid == 50 + subtype,
                    f"{family:02x},{subtype:02x} on BOS: error {error_code(error):#06x}",
                )
            except (TimeoutError, ConnectionError) as e:
                out.expect(False, f"{family:02x},{subtype:02x} on BOS: no xx,01 ({e!r})")
        bos.send_snac(0x01, 0x0E, b"", 60)
        try:
            await bos.wait_snac((K_SELF_INFO,), ANSWER_TIMEOUT)
        except (TimeoutError, ConnectionError):
            out.expect(False, "BOS stopped answering after wrong-service SNACs")
        from bench import chat

        nav, ref = await join_room(bos, f"hostile{ctx.round}")
        opened.append(nav)
        room = await chat.open_service(bos, 0x0E, lg.tlv(0x0001, ref), 43)
        opened.append(room)
        await room.wait_snac((K_ROOM_INFO,))
        for what, connection in (("ChatNav", nav), ("chat", room)):
            connection.inbox.clear()
            connection.send_snac(0x04, 0x06, im_body("by00", b"hi", b"\0" * 8), 70)
            out.inputs += 1
            try:
                _, rid, error = await connection.wait_snac((K_ERROR[0x04],), ANSWER_TIMEOUT)
                out.expect(
                    error_code(error) == 0x0001, f"04,06 on {what}: error {error_code(error)}"
                )
            except (TimeoutError, ConnectionError) as e:
                out.expect(False, f"04,06 on {what}: no 04,01 ({e!r})")
        # SNACs after the sign-off frame: unanswered; the services go too.
        bos.inbox.clear()
        assert bos.transport is not None
        bos.transport.write(flap(4, b"") + snac_frame(0x01, 0x0E, b"", 61))
        out.inputs += 1
        for what, connection in (("BOS", bos), ("ChatNav", nav), ("chat", room)):
            try:
                await asyncio.wait_for(asyncio.shield(connection.closed), ANSWER_TIMEOUT)
            except TimeoutError:
                out.expect(False, f"{what} still open after the session signed off")
        out.expect(
            K_SELF_INFO not in [p[:4] for c, p in bos.inbox if c == 2],
            "a SNAC after the sign-off frame was answered",
        )
        out.expect(
            4 in [c for c, _ in nav.inbox] and 4 in [c for c, _ in room.inbox],
            "the session's service connections were closed without channel 4",
        )
    finally:
        close_all(opened)
    return out


async def case_cookies(ctx: Context) -> Outcome:
    out = Outcome()
    name = ctx.account("c")
    address = ctx.auth_address
    first = await lg.bucp_login(*address, name, PASSWORD, source=ctx.source(0))
    if not out.expect(first.error is None, f"login of {name} refused"):
        return out
    bos, _ = await lg.bos_signon(first, source=ctx.source(0))
    opened: list[lg.FlapClient] = [bos]
    n = 1

    async def refused(port: int, cookie: bytes, what: str) -> None:
        nonlocal n
        n += 1
        out.inputs += 1
        probe = await greeted_probe(ctx, out, port, n, what)
        if probe is None:
            return
        probe.write(flap(1, lg.HELLO + lg.tlv(0x06, cookie)))
        await refused_with_signoff(out, probe, what, ctx.quick)
        out.expect(lg.K_HOST_ONLINE not in probe.kinds(), f"{what}: signed on (01,03)")

    try:
        await refused(ctx.bos, first.cookie, "a BOS cookie replayed while its session is on")
        unused = await lg.bucp_login(*address, name, PASSWORD, source=ctx.source(0))
        await refused(ctx.chat, unused.cookie, "a BOS cookie at the chat port")
        nav, ref = await join_room(bos, f"cookies{ctx.round}")
        opened.append(nav)
        chat_cookie = await service_cookie(bos, 0x0E, lg.tlv(0x0001, ref), 44)
        await refused(ctx.bos, chat_cookie, "a chat cookie at the BOS port")
        nav_cookie = await service_cookie(bos, 0x0D, b"", 45)
        await refused(ctx.chat, nav_cookie, "a ChatNav cookie at the chat port")
        tampered = bytearray(
            (await lg.bucp_login(*address, name, PASSWORD, source=ctx.source(0))).cookie
        )
        tampered[100] ^= 0x01
        await refused(ctx.bos, bytes(tampered), "a tampered BOS cookie")
        await refused(ctx.bos, os.urandom(256), "a random cookie (bos)")
        await refused(ctx.chat, os.urandom(256), "a random cookie (chat)")
        await refused(ctx.bos, os.urandom(1024), "a 1,024-byte cookie")
        bos.signoff()
        await asyncio.wait_for(asyncio.shield(bos.closed), ANSWER_TIMEOUT)
        await refused(ctx.bos, first.cookie, "a BOS cookie replayed after sign-off")
    finally:
        close_all(opened)
    return out


async def login_answer(
    ctx: Context, source: str, name: str, password: bytes | None
) -> int | str | None:
    """A BUCP exchange from ``source``: with ``password`` None only the
    challenge ("challenge" if 17,07 came). The 17,03 error code, None for
    a successful login; "no answer" if none came."""
    probe = await open_probe(ctx.auth, source)
    if probe is None or not await probe.hello():
        close_all([probe])
        return "no answer"
    try:
        probe.write(
            flap(1, lg.HELLO)
            + snac_frame(0x17, 0x06, lg.tlv(0x01, name.encode()) + lg.tlv(0x4B, b""))
        )
        found = await probe.snac([lg.K_CHALLENGE, lg.K_LOGIN_REPLY])
        if found is None:
            return "no answer"
        if probe.last_kind == lg.K_LOGIN_REPLY:
            return login_error(found)
        if password is None:
            return "challenge"
        key = found[2 : 2 + lg.U16.unpack_from(found)[0]]
        request = (
            lg.tlv(0x01, name.encode())
            + lg.tlv(0x25, lg.bucp_digest(key, password))
            + lg.tlv(0x4C, b"")
            + lg.tlv(0x03, lg.CLIENT_ID)
        )
        probe.write(snac_frame(0x17, 0x02, request, 2))
        reply = await probe.snac([lg.K_LOGIN_REPLY])
        return "no answer" if reply is None else login_error(reply)
    finally:
        probe.close()


async def case_login_abuse(ctx: Context) -> Outcome:
    out = Outcome()
    burst = ctx.limits.logins_per_ip_per_minute
    count = burst + 10
    source = ctx.source(0)
    batch = max(1, min(10, ctx.limits.per_address - 2))
    started = time.monotonic()
    answers: list[int | str | None] = []
    for start in range(0, count, batch):
        answers += await asyncio.gather(
            *(login_answer(ctx, source, "by00", None) for _ in range(min(batch, count - start)))
        )
    out.inputs += count
    elapsed = time.monotonic() - started
    admitted = answers.count("challenge")
    refused = answers.count(0x0018)
    # The bucket refills at burst/60 per second while the flood runs.
    most = burst + math.ceil(elapsed * burst / 60) + 1
    others = set(answers) - {"challenge", 0x0018}
    out.expect(
        burst <= admitted <= most and admitted + refused == count,
        f"{count} logins from one address: {admitted} challenged, {refused} refused 0x0018"
        f" (expected {burst}..{most} and the rest refused; other answers: {others})",
    )
    # Password guessing: back-off by address and by name.
    name = ctx.account("g")
    guesser = ctx.source(1)
    for i in range(FAILURES_BEFORE_BACKOFF):
        answer = await login_answer(ctx, guesser, name, b"wrong%d" % i)
        out.inputs += 1
        out.expect(answer == 0x0005, f"wrong password {i + 1}: {answer!r}, expected 0x0005")
    answer = await login_answer(ctx, guesser, name, PASSWORD)
    out.inputs += 1
    out.expect(answer == 0x0018, f"right password after guessing: {answer!r}, expected 0x0018")
    answer = await login_answer(ctx, ctx.source(2), name, PASSWORD)
    out.inputs += 1
    out.expect(
        answer == 0x0018, f"the guessed name from a fresh address: {answer!r}, expected 0x0018"
    )
    out.notes.append(f"{admitted} of {count} logins challenged")
    return out


async def case_pipelined(ctx: Context) -> Outcome:
    out = Outcome()
    name = ctx.account("q")
    client, _ = await lg.full_signon(ctx.auth_address, name, PASSWORD, source=ctx.source())
    count = MAX_QUEUED_FRAMES + 44
    client.inbox.clear()
    assert client.transport is not None
    client.transport.write(
        snac_frame(0x02, 0x0B, string08(name), 9)
        + b"".join(snac_frame(0x01, 0x0E, b"", 10 + i) for i in range(count))
    )
    out.inputs += count + 1
    try:
        await asyncio.wait_for(asyncio.shield(client.closed), ANSWER_TIMEOUT)
    except TimeoutError:
        out.expect(False, f"still open with {count} frames queued behind a store read")
    answered = sum(1 for c, p in client.inbox if c == 2 and p[:4] == K_SELF_INFO)
    out.expect(4 in [c for c, _ in client.inbox], "closed without channel 4")
    out.expect(answered == 0, f"{answered} of the queued SNACs answered")
    client.close()
    return out


CASES: dict[str, Callable[[Context], Awaitable[Outcome]]] = {
    "framing": case_framing,
    "oversize": case_oversize,
    "conn-flood": case_conn_flood,
    "pending-cap": case_pending_cap,
    "slow-signon": case_slow_signon,
    "im-flood": case_im_flood,
    "snac-flood": case_snac_flood,
    "out-of-order": case_out_of_order,
    "cookies": case_cookies,
    "login-abuse": case_login_abuse,
    "pipelined": case_pipelined,
}


# -- the run ------------------------------------------------------------------------------


@attrs.define
class Tally:
    """One case over every round."""

    inputs: int = 0
    crashes: int = 0
    failures: int = 0
    seconds: float = 0.0
    rounds: int = 0
    problems: list[str] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)


class ServerLog:
    """The subject's log, read a case at a time: its error and critical
    lines (every traceback the server logs is one) are the case's crashes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def skip(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def bad_lines(self) -> list[str]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            text = f.read().decode("utf-8", "replace")
            self.offset = f.tell()
        return [line for line in text.splitlines() if any(level in line for level in BAD_LEVELS)]


def rounds_for(seconds: float) -> int:
    """How many rounds' accounts to create: a round takes a few seconds."""
    return max(1, min(200, math.ceil(seconds / 2) + 1))


async def _run(
    seconds: float,
    limits: Limits,
    cases: Sequence[str],
    expect: Limits,
    keep_temp: bool,
    log: Callable[[str], None],
) -> list[ChaosRow]:
    from bench.run import Harness, create_database, render_ini

    if expect.pending <= expect.per_address + 8:
        raise ValueError("pending must exceed per_address + 8: conn-flood would evict")
    workdir = Path(tempfile.mkdtemp(prefix="aim-hostile-"))
    db = workdir / "hostile.sqlite"
    names = Bystanders.user_names()
    rounds = rounds_for(seconds)
    create_database(db, names + [f"hr{r}{k}" for r in range(rounds) for k in KINDS])
    ini = workdir / "base.ini"
    ini.write_text(render_ini(db))
    harness = Harness(workdir, db, ini, pin=False)
    tallies = {name: Tally() for name in cases}
    try:
        server = await harness.start_subject(settings=limits.settings())
        assert server.twistd_log is not None
        server_log = ServerLog(server.twistd_log)
        auth, bos, chat = server.ports
        log(f"subject pid {server.pid}: {limits.describe()}; work dir {workdir}")
        bystanders = Bystanders((HOST, auth), names)
        await bystanders.sign_on()
        ledger = bystanders.ledger
        bystanders.start()
        ledger.window = "control"
        await asyncio.sleep(3 * IM_TICK)
        server_log.skip()
        started = time.monotonic()
        round_ = 0
        while round_ < rounds and (round_ == 0 or time.monotonic() - started < seconds):
            for number, name in enumerate(cases):
                if server.popen.poll() is not None:
                    break
                ledger.window = name
                ctx = Context(auth, bos, chat, expect, round_, number, bystanders)
                t0 = time.monotonic()
                try:
                    outcome = await asyncio.wait_for(CASES[name](ctx), CASE_TIMEOUT)
                except (OSError, TimeoutError, ConnectionError, lg.ProtocolFailure) as e:
                    outcome = Outcome(problems=[f"the case broke off: {e!r}"])
                await bystanders.window_has_traffic(name)
                await asyncio.sleep(0.1)
                tally = tallies[name]
                tally.seconds += time.monotonic() - t0
                tally.inputs += outcome.inputs
                tally.failures += len(outcome.problems)
                tally.problems += outcome.problems
                tally.notes[:] = outcome.notes or tally.notes
                tally.rounds += 1
                bad = server_log.bad_lines()
                if server.popen.poll() is not None:
                    bad.append(f"the server exited ({server.popen.returncode})")
                tally.crashes += len(bad)
                tally.problems += [line[:160] for line in bad[:2]]
                log(
                    f"round {round_} {name}: {outcome.inputs} inputs,"
                    f" {len(outcome.problems)} failed{': ' if outcome.problems else ''}"
                    f"{'; '.join(outcome.problems[:2])}"
                )
            round_ += 1
        ledger.window = "end"
        await bystanders.stop()
        await asyncio.sleep(DRAIN_SECONDS)
        silent = await bystanders.round_trips()
        for key in silent:
            ledger.dropped(key, "did not answer 01,0E at the end")
        reports = ledger.report()
        rows = [_row(name, tallies[name], reports.get(name)) for name in cases]
        control = [reports[w] for w in ("setup", "control", "end") if w in reports]
        affected = set().union(*(r.affected for r in control)) if control else set()
        notes = [n for r in control for n in r.notes]
        rows.append(
            ChaosRow(
                PART,
                "bystanders",
                bystanders.sent,
                crashes=0,
                wrongly_dropped=len(affected),
                failures=ledger.undeclared,
                # Their time is every case's: counted once, in the cases' rows.
                seconds=0.0,
                note=(
                    f"{len(bystanders.sessions)} sessions of {len(names)} users,"
                    f" {bystanders.sent} IMs over {time.monotonic() - started:.0f} s,"
                    f" {sum(r.missing for r in reports.values())} missing"
                    + (f"; {'; '.join(notes[:3])}" if notes else "")
                ),
            )
        )
        bystanders.close()
        return rows
    finally:
        harness.stop_all()
        if keep_temp:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _row(name: str, tally: Tally, report: WindowReport | None) -> ChaosRow:
    dropped = len(report.affected) if report is not None else 0
    parts = []
    if tally.problems:
        parts.append("; ".join(tally.problems[:3]))
    if report is not None and report.notes:
        parts.append("; ".join(report.notes[:3]))
    if not parts:
        parts.append(
            f"{tally.rounds} round{'s' if tally.rounds != 1 else ''}"
            + (f", {tally.notes[0]}" if tally.notes else "")
        )
    return ChaosRow(
        PART,
        name,
        tally.inputs,
        crashes=tally.crashes,
        wrongly_dropped=dropped,
        failures=tally.failures,
        seconds=round(tally.seconds, 1),
        note="; ".join(parts),
    )


def run(
    seconds: float = 60.0,
    *,
    limits: Limits | None = None,
    cases: Sequence[str] | None = None,
    expect: Limits | None = None,
    keep_temp: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[ChaosRow]:
    """Start the subject with ``limits``, run ``cases`` (every one by default)
    in rounds for about ``seconds`` (at least one round) while the bystanders
    talk; one row per case and one for the bystanders. ``expect`` is what
    the cases are checked against (default: ``limits``); a different one
    shows the checks failing."""
    limits = limits or Limits()
    chosen = list(cases) if cases is not None else list(CASES)
    unknown = [name for name in chosen if name not in CASES]
    if unknown:
        raise ValueError(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    return asyncio.run(
        _run(seconds, limits, chosen, expect or limits, keep_temp, log or (lambda _: None))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos.hostile", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="time for the rounds")
    defaults = Limits()
    parser.add_argument("--per-address", type=int, default=defaults.per_address)
    parser.add_argument("--pending", type=int, default=defaults.pending)
    parser.add_argument("--login-timeout", type=float, default=defaults.login_timeout)
    parser.add_argument("--case", action="append", choices=list(CASES), help="repeatable")
    parser.add_argument("--keep-temp", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    limits = Limits(args.per_address, args.pending, args.login_timeout)

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    rows = run(args.seconds, limits=limits, cases=args.case, keep_temp=args.keep_temp, log=say)
    print(render(rows))
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
