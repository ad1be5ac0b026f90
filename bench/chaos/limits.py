"""Memory at the limits: what one session and one user can make the server
hold, and what a flood of sign-ons leaves behind (issue 19):
``python -m bench.chaos.limits [--seconds S]``.

The subject is ``twistd -n aimserver`` in a child process, run through this
module's ``--serve`` wrapper: it starts ``tracemalloc`` before anything else
(``--trace``) and listens on a loopback control port where ``measure``
collects garbage and answers the bytes Python has allocated (traced) and
the process's RSS. This process drives it over real OSCAR
(``bench.loadgen``), so its own memory is never counted. A second pass
without ``tracemalloc`` gives the same phases in RSS (unless ``--no-rss``): what an
operator sees, allocator slack and SQLite's page cache included.

Phases, each measured after it:

1. **Warm-up**: two users put through everything below, signed off; then
   the baseline.
2. **Users at the limits** (``users``, bot accounts so that 32 IMs in a row
   are not rate limited): each signs on one session with its stored list at
   every class limit of 13,03 (2,460 items: 1,000 buddies, 200 groups, 200
   permits, 200 denies, ...), and every session is *maxed out*: 1,000
   client-side buddies (03,04) plus the list's 1,000 (13,07), every name
   nobody else watches (a new watcher set each); a 4,096-byte profile and
   away message with 128-byte MIME types; 64 capabilities; 32 IMs sent (the
   retransmission memory). It then tries past every limit, by far, and
   must be refused: 2,000 more buddies (03,01 0x0015), profiles of 4,097
   and 60,000 bytes, a 60,000-byte away message, 65 and 3,000 capabilities
   (02,01 0x000E), 100 more stored buddies (13,0E 0x000C). Were one taken,
   the figures would pass their bounds (``Plan.lift`` shows it).
3. **Sessions**: each user adds ``sessions - 1`` more, maxed out alike.
4. **Connections**: every session opens an alert service connection (01,04).
5. **Sign-off**: everyone signs off; what stays is per-user state kept on
   purpose (rate state, the account cache).
6. **Sign-on flood** for ``seconds``: full sign-ons and sign-offs of
   distinct users, wrong passwords, a challenge and nothing more, a BOS
   cookie redeemed and the connection dropped before client-ready, a
   connection that says nothing until the login timeout closes it; each from
   an address of its own. Measured once the last has timed out.
7. **Worst list**: one user whose 2,460 items each carry 8 KiB of
   attributes (the store's per-item cap) signs on, tries one more item, and
   signs off.

Each figure is checked against its stated bound (``BOUNDS``, each with its
derivation from the limits in the code): a figure over its bound, a limit
not refused, or a flood attempt without its answer is a failure. RSS
figures are shown, not checked: freed memory stays in the process for reuse
(RSS after sign-off does not fall, and the flood then costs no more).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from aimserver.services.buddy import MAX_BUDDIES
from aimserver.services.feedbag import MAX_ITEMS_PER_CLASS
from aimserver.services.locate import CAPABILITY_SIZE, MAX_CAPABILITIES, MAX_PROFILE_LENGTH
from aimserver.store.interfaces import MAX_ITEM_ATTRIBUTES_BYTES
from bench import loadgen as lg
from bench.chaos.table import ChaosRow, render

PART = "limits"
HOST = "127.0.0.1"
PASSWORD = b"benchpw"
REPO = Path(__file__).resolve().parent.parent.parent
KiB = 1024
MiB = 1024 * KiB
#: The subject's login timeout (the flood's idle connections wait for it).
LOGIN_TIMEOUT = 1.0
START_TIMEOUT = 60.0
ANSWER_TIMEOUT = 30.0
#: The flood's concurrent workers.
FLOOD_WORKERS = 16
#: Plain accounts for the flood's sign-ons (used round robin).
FLOOD_ACCOUNTS = 3000
#: IMs each maxed-out session sends (``RECENT_IMS_PER_SESSION``).
IMS_PER_SESSION = 32
#: Classes 0..20 as 13,03 advertises them; the class IDs with a limit.
CLASS_BUDDY, CLASS_GROUP, CLASS_PERMIT, CLASS_DENY = 0, 1, 2, 3
MIME = b"text/aolrtf; charset=" + b"x" * (128 - 21)
CAPABILITY = bytes(range(CAPABILITY_SIZE))


@attrs.frozen
class Bound:
    """A stated memory bound and why it is what it is."""

    name: str
    bytes: int
    derivation: str


#: The stated bounds (bytes of Python heap, as tracemalloc counts them),
#: each derived from the limits in the code (``derivation``).
BOUNDS = {
    "session": Bound(
        "per session, every limit reached",
        768 * KiB,
        f"{MAX_BUDDIES:,} client-side buddies (03,04), names nobody else watches: each"
        " a watcher set (~216 B), its index entry (~50 B, more while the index grows),"
        " the name (<= 65 B) and a slot in the session's set (<= 66 B), ~450 B: 450 KB;"
        f" its user's {MAX_ITEMS_PER_CLASS[CLASS_BUDDY]:,} stored buddies watched again"
        " (a slot here and in their watcher sets, ~100 B: 100 KB); profile and away with"
        f" MIME types ({2 * (MAX_PROFILE_LENGTH + 128):,} B), {MAX_CAPABILITIES}"
        " capabilities (~4 KB), 32 IM hashes (~3 KB), 32 rendezvous (~13 KB), its BOS"
        " connection (~4 KB): ~590 KB, stated 768 KiB",
    ),
    "user": Bound(
        "per user beyond its sessions, stored list at every class limit, 64-byte attributes",
        2560 * KiB,
        f"{sum(MAX_ITEMS_PER_CLASS):,} items (every class limit of 13,03) kept as the 13,06"
        " summary (~130 B an item here), the non-buddy items again, every item as an"
        " object after an edit (~300 B): ~1.2 MB; the first watch of its"
        f" {MAX_ITEMS_PER_CLASS[CLASS_BUDDY]:,} stored buddies (~450 B each, as above),"
        " privacy and buddy sets: ~1.8 MB, stated 2.5 MiB; in general about 3 x the"
        " list's bytes + 0.6 MB",
    ),
    "worst-user": Bound(
        "per user beyond its sessions, every item's attributes at the store's cap",
        56 * MiB,
        f"{sum(MAX_ITEMS_PER_CLASS):,} items x {MAX_ITEM_ATTRIBUTES_BYTES:,} B = 20 MB of"
        " list, kept three ways as above: ~51 MB, stated 56 MiB. Only a list written"
        " before the server capped a list's bytes (feedbag.MAX_LIST_BYTES, 512 KiB), or"
        " into the database directly as here, can be this big: edits keep a list within"
        " the cap, about 3 x 512 KiB + 0.6 MB = 2.1 MB a user",
    ),
    "connection": Bound(
        "per idle service connection",
        16 * KiB,
        "the connection, its Twisted transport and socket objects (~3 KB); idle, its"
        " buffers are empty (busy: up to a 64 KiB partial frame, 256 KiB of held frames"
        " and 1 MiB unsent, or the largest single reply)",
    ),
    "residue": Bound(
        "per user left after sign-off",
        16 * KiB,
        "its account cache entry (~0.6 KB; 20,000 kept at most, until displaced), rate"
        " state (~0.8 KB; 100,000 users at most; none for a bot): ~1.5 KB; until they"
        " expire, its cookies' replay entries (the cookie lifetime) and cancelled login"
        " timers, a few KB: stated 16 KiB;"
        " not counted: the watcher index's hash table, which keeps the size of its peak"
        " (~32 B a name watched then)",
    ),
    "flood": Bound(
        "per sign-on attempt left after the flood",
        4 * KiB,
        "per address a login bucket and failure record (~0.15 KB each; 65,536 addresses"
        " at most), per user rate state and cache entry (as above), per redeemed cookie"
        " its replay entry (~0.1 KB) until the cookie lifetime: ~1.5 KB; whatever the"
        " flood, the tables stop at ~130 MB together",
    ),
}


# -- the child: twistd with a control port ------------------------------------------------


def serve(control_port: int, trace: bool, twistd_args: list[str]) -> None:
    """Run ``twistd`` (``twistd_args``) in this process with ``tracemalloc``
    on if ``trace``, and a control listener on ``control_port``: a line
    ``measure`` is answered with one JSON line (``measure_here``)."""
    if trace:
        tracemalloc_start()
    _remember_servers()
    _lift(os.environ.get(LIFT_VARIABLE, ""))
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory
    from twisted.protocols.basic import LineReceiver

    class Control(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            command, _, argument = line.decode().partition(" ")
            if command == "measure":
                self.sendLine(json.dumps(measure_here()).encode())
            elif command == "top":
                self.sendLine(json.dumps(top_here(int(argument or 10))).encode())
            elif command == "mark":
                mark_here()
                self.sendLine(b"{}")

    def listen() -> None:
        reactor.listenTCP(control_port, Factory.forProtocol(Control), interface=HOST)

    reactor.callWhenRunning(listen)
    sys.argv = ["twistd", *twistd_args]
    from twisted.scripts.twistd import run as twistd

    twistd()


#: Environment variable naming limits the child lifts (``_lift``).
LIFT_VARIABLE = "AIMBENCH_LIFT"
#: What ``_lift`` can lift: the module, its limit, the value lifted to.
LIFTABLE = {"buddies": ("aimserver.services.buddy", "MAX_BUDDIES", 0xFFFF)}


def _lift(names: str) -> None:
    """Raise the limits named (comma-separated) to effectively none, to
    show that the bounds catch a server that no longer enforces them.
    Instrumentation of the child only, never of a real server."""
    import importlib

    for name in filter(None, names.split(",")):
        module, attribute, value = LIFTABLE[name]
        setattr(importlib.import_module(module), attribute, value)


#: The ``AimServer`` the child runs (``_remember_servers``).
_SERVERS: list[Any] = []


def _remember_servers() -> None:
    """Keep a reference to the ``AimServer`` that ``tap.makeService`` makes,
    so ``measure`` can report its tables' sizes. Instrumentation of the
    child only: the server's code is not changed."""
    from aimserver import server

    made = server.AimServer.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        _SERVERS.append(self)

    server.AimServer.__init__ = init  # type: ignore[method-assign]


def tables_here() -> dict[str, int]:
    """Entries in the server's bounded tables, and the bytes of the watcher
    index's own hash table (a dict keeps the size of its peak)."""
    if not _SERVERS:
        return {}
    aim = _SERVERS[0]
    authorizer = aim.authorizer
    limiter = authorizer.limiter
    cache = getattr(aim.store, "_accounts", {})
    return {
        "users": len(aim.registry.users),
        "watched names": len(aim.registry.watchers),
        "watcher index table": sys.getsizeof(aim.registry.watchers),
        "rate states": len(aim.rate_limits._limiters),
        "cached accounts": len(cache),
        "login buckets": len(limiter._addresses) if limiter is not None else 0,
        "failure records": len(authorizer.failures._addresses) + len(authorizer.failures._names),
        "redeemed cookies": len(aim.cookies._redeemed),
    }


def tracemalloc_start() -> None:
    import tracemalloc

    tracemalloc.start(1)


_MARK: list[Any] = []


def measure_here() -> dict[str, int]:
    """Garbage collected first: only what is reachable counts."""
    import tracemalloc

    gc.collect()
    gc.collect()
    figures = {"traced": tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0}
    figures.update(tables_here())
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                figures[key] = int(value.split()[0]) * KiB
    return figures


def mark_here() -> None:
    import tracemalloc

    if tracemalloc.is_tracing():
        gc.collect()
        _MARK[:] = [tracemalloc.take_snapshot()]


def top_here(count: int) -> list[str]:
    """The source lines whose allocations grew most since ``mark``."""
    import tracemalloc

    if not tracemalloc.is_tracing() or not _MARK:
        return []
    gc.collect()
    stats = tracemalloc.take_snapshot().compare_to(_MARK[0], "lineno")[:count]
    return [
        f"{s.size_diff / KiB:+.0f} KiB {s.count_diff:+d} {s.traceback[0].filename.split('/')[-1]}"
        f":{s.traceback[0].lineno}"
        for s in stats
    ]


@attrs.define
class Subject:
    popen: subprocess.Popen[bytes]
    auth: int
    control: int
    log: Path

    async def ask(self, command: str) -> Any:
        reader, writer = await asyncio.open_connection(HOST, self.control)
        try:
            writer.write(command.encode() + b"\n")
            line = await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT)
            return json.loads(line)
        finally:
            writer.close()

    async def measure(self) -> dict[str, int]:
        # Let what is closing close: a measure sees the steady state.
        await asyncio.sleep(0.3)
        figures: dict[str, int] = await self.ask("measure")
        return figures

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)


async def start_subject(workdir: Path, db: Path, trace: bool, lift: Sequence[str] = ()) -> Subject:
    from bench.run import free_port

    ports = {name: free_port() for name in ("auth", "bos", "chat", "api", "web", "control")}
    ini = workdir / "limits.ini"
    ini.write_text(
        "[server]\nhost = 127.0.0.1\n"
        f"db = {db}\n"
        f"[auth]\nlogin_timeout = {LOGIN_TIMEOUT}\n"
        # Sessions and the flood come from many addresses: no cap is reached.
        "[connection]\nmax_connections_per_address = 200\n"
    )
    log = workdir / f"twistd-{'traced' if trace else 'rss'}.log"
    args = ["-n", "--logfile", str(log), "--pidfile", "", "aimserver", "--config", str(ini)]
    for name in ("auth", "bos", "chat", "api", "web"):
        args += [f"--{name}-port", str(ports[name])]
    cmd = [sys.executable, "-m", "bench.chaos.limits", "--serve", str(ports["control"])]
    cmd += ["--trace"] if trace else []
    with open(workdir / "child.out", "ab") as out:
        popen = subprocess.Popen(
            [*cmd, "--", *args],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(REPO), LIFT_VARIABLE: ",".join(lift)},
        )
    subject = Subject(popen, ports["auth"], ports["control"], log)
    deadline = time.monotonic() + START_TIMEOUT
    for port in (ports["auth"], ports["control"]):
        while True:
            if popen.poll() is not None or time.monotonic() > deadline:
                subject.stop()
                raise RuntimeError(f"the subject did not start; see {workdir}")
            try:
                _, writer = await asyncio.open_connection(HOST, port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            break
    return subject


# -- accounts and their lists -------------------------------------------------------------


def attributes(size: int) -> bytes:
    """A TLV block of ``size`` bytes (a padding TLV nobody reads)."""
    return lg.tlv(0x7E57, b"a" * (size - 4)) if size >= 4 else b""


def full_list(owner: str, attribute_bytes: int = 64) -> list[tuple[str, int, int, int, bytes]]:
    """A stored list at every class limit of 13,03: buddies (names nobody
    else lists) in 199 groups under the root, permits, denies and every
    other class with a limit, each item with ``attribute_bytes`` of
    attributes."""
    attrs_ = attributes(attribute_bytes)
    tag = owner[-4:]
    items = [("", 0, 0, CLASS_GROUP, attrs_)]
    groups = MAX_ITEMS_PER_CLASS[CLASS_GROUP] - 1
    for g in range(1, groups + 1):
        items.append((f"Group {g:03d} " + "g" * 150, g, 0, CLASS_GROUP, attrs_))
    for b in range(MAX_ITEMS_PER_CLASS[CLASS_BUDDY]):
        items.append((f"fb{tag}x{b:04d}", 1 + b % groups, 1 + b, CLASS_BUDDY, attrs_))
    item_id = 1
    for class_id, limit in enumerate(MAX_ITEMS_PER_CLASS):
        if class_id in (CLASS_BUDDY, CLASS_GROUP) or not limit:
            continue
        for n in range(limit):
            if class_id in (CLASS_PERMIT, CLASS_DENY):
                name = f"pd{tag}c{class_id}n{n:03d}"
            else:
                name = f"item {class_id}.{n} " + "n" * 100
            items.append((name, 0, item_id, class_id, attrs_))
            item_id += 1
    return items


def create_accounts(
    path: Path,
    bots: Sequence[str],
    lists: dict[str, list[tuple[str, int, int, int, bytes]]],
    plain: Sequence[str],
) -> None:
    """The accounts (password ``benchpw``), ``bots`` marked as service
    bots, and their stored lists, with the store's own operations."""
    from aimserver.store import accounts, sqlite
    from aimserver.store import feedbags as stored
    from aimserver.store.interfaces import FeedbagItem

    conn = sqlite.connect(str(path))
    now = int(time.time())

    def create(c: Any) -> None:
        for name in [*bots, *plain]:
            accounts._create_account(c, name, PASSWORD.decode(), now)
        for name in bots:
            accounts._set_bot(c, name, True)
        for name, items in lists.items():
            stored._upsert_feedbag_items(c, name, [FeedbagItem(*i) for i in items], now)

    try:
        sqlite.transact(conn, create)
    finally:
        conn.close()


# -- maxing a session out -----------------------------------------------------------------


def _ignore(client: lg.FlapClient, channel: int, payload: bytes) -> None:
    """Where a maxed-out session's later frames go: nowhere (so this
    process's memory does not grow with what the server sends)."""


def body_of(payload: bytes) -> bytes:
    _, _, flags, _ = lg.SNAC.unpack_from(payload)
    offset = 10
    if flags & 0x8000:
        offset += 2 + lg.U16.unpack_from(payload, 10)[0]
    return payload[offset:]


async def answer(client: lg.FlapClient, kinds: Sequence[bytes]) -> tuple[bytes, bytes]:
    """(kind, body) of the next SNAC of one of ``kinds`` (errors included
    if asked for)."""
    _, payload = await client.wait(lambda c, p: c == 2 and p[:4] in kinds, ANSWER_TIMEOUT)
    return payload[:4], body_of(payload)


def names08(names: Sequence[str]) -> bytes:
    return b"".join(bytes([len(n)]) + n.encode() for n in names)


async def max_out(
    client: lg.FlapClient, tag: str, to: str, first: bool, problems: list[str]
) -> None:
    """Everything a session may hold, at each limit, and steps past each
    limit (which must be refused). ``tag`` makes its names its own; ``to``
    gets its IMs; ``first``: the user's first session also tries the stored
    list's limit. Problems found go to ``problems``.

    The steps past the limits are big (2,000 more buddies, 60,000-byte
    texts, 3,000 capabilities, 100 more stored buddies): were one accepted,
    the session's figure would grow far past its bound. Their refusals are
    read after a 01,0E round trip (a connection's SNACs are answered in
    order), so a missing one costs no wait."""
    # 1,000 client-side buddies first (03,04 counts against MAX_BUDDIES),
    # then the stored list's 1,000 (13,07 watches them on top).
    client.send_snac(0x03, 0x04, names08([f"cb{tag}x{i:04d}" for i in range(MAX_BUDDIES)]), 30)
    client.send_snac(0x13, 0x04, b"", 31)
    await lg.read_feedbag(client, ANSWER_TIMEOUT)
    client.send_snac(0x13, 0x07, b"", 32)
    info = (
        lg.tlv(0x01, MIME)
        + lg.tlv(0x02, b"p" * MAX_PROFILE_LENGTH)
        + lg.tlv(0x03, MIME)
        + lg.tlv(0x04, b"a" * MAX_PROFILE_LENGTH)
        + lg.tlv(0x05, CAPABILITY * MAX_CAPABILITIES)
    )
    client.send_snac(0x02, 0x04, info, 34)
    sender = lg.Sender(client, tag, abs(hash(tag)) & 0xFFFF, to)
    for _ in range(IMS_PER_SESSION):
        sender.send(lg.now_ns())
    refusals: dict[int, tuple[str, bytes, bytes]] = {}
    over = names08([f"cb{tag}y{i:04d}" for i in range(2 * MAX_BUDDIES)])
    client.send_snac(0x03, 0x04, over, 40)
    refusals[40] = (f"03,04 past {MAX_BUDDIES:,} buddies", lg.kind(0x03, 0x01), b"\x00\x15")
    for request_id, (what, tlv) in enumerate(
        (
            ("a profile one byte too long", lg.tlv(0x02, b"p" * (MAX_PROFILE_LENGTH + 1))),
            ("a 60,000-byte profile", lg.tlv(0x02, b"p" * 60_000)),
            ("a 60,000-byte away message", lg.tlv(0x04, b"a" * 60_000)),
            ("one capability too many", lg.tlv(0x05, CAPABILITY * (MAX_CAPABILITIES + 1))),
            ("3,000 capabilities", lg.tlv(0x05, CAPABILITY * 3000)),
        ),
        41,
    ):
        client.send_snac(0x02, 0x04, tlv, request_id)
        refusals[request_id] = (f"02,04 with {what}", lg.kind(0x02, 0x01), b"\x00\x0e")
    if first:
        extra = 100
        items = b"".join(
            lg.feedbag_item(f"fb{tag}e{i:03d}", 1, 0x7000 + i, CLASS_BUDDY) for i in range(extra)
        )
        client.send_snac(0x13, 0x08, items, 50)
        refusals[50] = (
            "13,08 past the buddy class limit",
            lg.K_FEEDBAG_STATUS,
            b"\x00\x0c" * extra,
        )
    client.send_snac(0x01, 0x0E, b"", 60)
    await answer(client, [lg.K_SELF_INFO])
    answered = {}
    for channel, payload in client.inbox:
        if channel == 2:
            _, _, _, request_id = lg.SNAC.unpack_from(payload)
            answered[request_id] = (payload[:4], body_of(payload))
    for request_id, (what, kind, body) in refusals.items():
        got = answered.get(request_id)
        if got != (kind, body):
            problems.append(
                f"{what}: {'not refused' if got is None else got[0].hex() + ' ' + got[1][:4].hex()}"
            )
    client.inbox.clear()
    client.on_frame = _ignore


async def maxed_session(
    auth: tuple[str, int], name: str, tag: str, to: str, first: bool, problems: list[str]
) -> lg.FlapClient:
    """A full sign-on of ``name`` (client-side list, then maxed out)."""
    client, _ = await lg.full_signon(auth, name, PASSWORD, source=address(hash(tag)), timeout=30)
    await max_out(client, tag, to, first, problems)
    return client


def address(n: int) -> str:
    n = abs(n) % (250 * 250 * 250)
    return f"127.{2 + n // 62500}.{n // 250 % 250}.{n % 250 + 1}"


async def service_connection(bos: lg.FlapClient, request_id: int) -> lg.FlapClient:
    """An alert service connection (01,04 family 0x0018) of ``bos``."""
    from bench import chat

    bos.on_frame = None
    try:
        client = await chat.open_service(bos, 0x18, b"", request_id, timeout=ANSWER_TIMEOUT)
    finally:
        bos.inbox.clear()
        bos.on_frame = _ignore
    client.on_frame = _ignore
    return client


async def close_and_wait(clients: Sequence[lg.FlapClient]) -> None:
    for client in clients:
        client.signoff()
    for client in clients:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(client.closed), ANSWER_TIMEOUT)


# -- the flood ----------------------------------------------------------------------------


#: Flood outcomes that are the server's failures.
UNEXPECTED = ("failed", "silent: not closed", "wrong password let in")


@attrs.define
class FloodTally:
    attempts: int = 0
    outcomes: dict[str, int] = attrs.Factory(dict)

    def count(self, outcome: str) -> None:
        self.attempts += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


async def flood_attempt(
    auth: tuple[str, int], n: int, names: Sequence[str], silent: list[lg.FlapClient]
) -> str:
    """Attempt ``n`` of the flood, from an address of its own; its outcome.
    A silent connection is left open, in ``silent``, for the login timeout."""
    source = address(1_000_000 + n)
    name = names[n % len(names)]
    kind = n % 5
    try:
        if kind == 0:
            client, _ = await lg.full_signon(auth, name, PASSWORD, source=source)
            client.signoff()
            await asyncio.wait_for(asyncio.shield(client.closed), ANSWER_TIMEOUT)
            return "signed on and off"
        if kind == 1:
            login = await lg.bucp_login(*auth, name, b"wrong password", source=source)
            return f"wrong password: {login.error:#06x}" if login.error else "wrong password let in"
        if kind == 2:
            client = await lg.connect(*auth, source=source)
            try:
                await client.wait_channel(1)
                client.send(1, lg.HELLO)
                client.send_snac(0x17, 0x06, lg.tlv(0x01, name.encode()), 1)
                await client.wait_snac((lg.K_CHALLENGE,))
            finally:
                client.close()
            return "challenge only"
        if kind == 3:
            login = await lg.bucp_login(*auth, name, PASSWORD, source=source)
            if login.error is not None:
                return f"login refused {login.error:#06x}"
            client = await lg.connect(login.host, login.port, source=source)
            try:
                await client.wait_channel(1)
                client.send(1, lg.HELLO + lg.tlv(0x06, login.cookie))
                await client.wait_snac((lg.K_HOST_ONLINE,))
            finally:
                client.close()
            return "dropped before client-ready"
        client = await lg.connect(*auth, source=source)
        silent.append(client)
        return "silent"
    except (OSError, TimeoutError, ConnectionError, lg.ProtocolFailure) as e:
        return f"failed: {type(e).__name__}"


async def flood(auth: tuple[str, int], seconds: float, names: Sequence[str]) -> FloodTally:
    tally = FloodTally()
    deadline = time.monotonic() + seconds
    counter = iter(range(10**9))

    silent: list[lg.FlapClient] = []

    async def worker() -> None:
        while time.monotonic() < deadline:
            tally.count(await flood_attempt(auth, next(counter), names, silent))

    await asyncio.gather(*(worker() for _ in range(FLOOD_WORKERS)))
    # The silent ones end at the login timeout, closed by the server.
    late = time.monotonic() + LOGIN_TIMEOUT + ANSWER_TIMEOUT
    for client in silent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(client.closed), max(0.0, late - time.monotonic()))
        if not client.closed.done():
            tally.outcomes["silent: not closed at the login timeout"] = (
                tally.outcomes.get("silent: not closed at the login timeout", 0) + 1
            )
            client.close()
    return tally


# -- the measurement ----------------------------------------------------------------------


@attrs.frozen
class Plan:
    """How much of each phase."""

    users: int = 10
    sessions: int = 5
    seconds: float = 15.0
    worst: bool = True
    #: Limits the subject lifts (``LIFTABLE``): the figures must then fail.
    lift: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        if self.sessions < 2 or self.users < 2:
            raise ValueError("at least 2 users of 2 sessions: the figures are differences")
        unknown = set(self.lift) - set(LIFTABLE)
        if unknown:
            raise ValueError(f"cannot lift {sorted(unknown)}; only {sorted(LIFTABLE)}")


@attrs.define
class Figures:
    """One pass's measurements (bytes), by phase."""

    kind: str
    points: dict[str, dict[str, int]] = attrs.Factory(dict)
    problems: list[str] = attrs.Factory(list)
    counts: dict[str, int] = attrs.Factory(dict)
    flood: FloodTally | None = None
    top: list[str] = attrs.Factory(list)

    def delta(self, later: str, earlier: str, key: str) -> int:
        return self.points[later][key] - self.points[earlier][key]


async def measure_pass(
    workdir: Path, db: Path, plan: Plan, trace: bool, log: Callable[[str], None]
) -> Figures:
    """Start a subject on a copy of ``db``, run every phase, stop it."""
    copy = workdir / f"{'traced' if trace else 'rss'}.sqlite"
    shutil.copy(db, copy)
    figures = Figures("traced" if trace else "rss")
    subject = await start_subject(workdir, copy, trace, plan.lift)
    auth = (HOST, subject.auth)
    users = [f"lim{u:02d}" for u in range(plan.users)]
    problems = figures.problems
    try:
        # 1. Warm-up.
        warm: list[lg.FlapClient] = []
        for w in range(2):
            name = f"warm{w}"
            bos = await maxed_session(auth, name, f"w{w}", "warm0", True, problems)
            warm += [bos, await service_connection(bos, 90)]
        await close_and_wait(warm)
        await flood(auth, 0.5, [f"fl{n:04d}" for n in range(FLOOD_ACCOUNTS - 50, FLOOD_ACCOUNTS)])
        figures.points["baseline"] = await subject.measure()
        await subject.ask("mark")
        log(f"{figures.kind}: baseline {figures.points['baseline']}")

        # 2. One maxed-out session per user.
        sessions: dict[str, list[lg.FlapClient]] = {}
        for u, name in enumerate(users):
            to = users[(u + 1) % len(users)]
            sessions[name] = [await maxed_session(auth, name, f"{u}s0", to, True, problems)]
        figures.points["users"] = await subject.measure()
        log(f"{figures.kind}: {plan.users} users {figures.points['users']}")

        # 3. The other sessions.
        for u, name in enumerate(users):
            to = users[(u + 1) % len(users)]
            for s in range(1, plan.sessions):
                client = await maxed_session(auth, name, f"{u}s{s}", to, False, problems)
                sessions[name].append(client)
        figures.points["sessions"] = await subject.measure()
        figures.top = await subject.ask("top 12")
        figures.counts["sessions"] = plan.users * plan.sessions
        log(f"{figures.kind}: {plan.users * plan.sessions} sessions {figures.points['sessions']}")

        # 4. A service connection per session.
        services = []
        for clients in sessions.values():
            for client in clients:
                services.append(await service_connection(client, 91))
        figures.points["connections"] = await subject.measure()
        figures.counts["connections"] = len(services)
        log(f"{figures.kind}: {len(services)} connections {figures.points['connections']}")

        # 5. Everyone signs off.
        await close_and_wait(services + [c for clients in sessions.values() for c in clients])
        figures.points["signed off"] = await subject.measure()
        log(f"{figures.kind}: signed off {figures.points['signed off']}")
        for line in await subject.ask("top 8"):
            log(f"{figures.kind}: signed off, still grown since the baseline: {line}")

        # 6. The sign-on flood.
        names = [f"fl{n:04d}" for n in range(FLOOD_ACCOUNTS - 50)]
        figures.flood = await flood(auth, plan.seconds, names)
        figures.points["flood"] = await subject.measure()
        for line in await subject.ask("top 8"):
            log(f"{figures.kind}: after the flood, grown since the baseline: {line}")
        log(f"{figures.kind}: flood {figures.flood.attempts} {figures.points['flood']}")

        # 7. The worst list.
        if plan.worst:
            problems_before = len(problems)
            bos = await maxed_session(auth, "worst", "wx", "warm0", True, problems)
            figures.points["worst"] = await subject.measure()
            await close_and_wait([bos])
            figures.points["worst gone"] = await subject.measure()
            del problems[problems_before:]
    finally:
        subject.stop()
    return figures


def _kib(value: float) -> str:
    return f"{value / KiB:,.0f} KiB"


#: What the worst list may leave behind once its user signed off.
WORST_LEFT = 1 * MiB


def values(figures: Figures, plan: Plan, key: str = "traced") -> dict[str, float]:
    """Bytes per session, user, connection, ... (``BOUNDS``' keys) of one
    pass; ``key`` "traced" (Python heap) or "VmRSS"."""
    n_users = plan.users
    extra_sessions = plan.users * (plan.sessions - 1)
    per_session = figures.delta("sessions", "users", key) / extra_sessions
    per_first = figures.delta("users", "baseline", key) / n_users
    found = {
        "session": per_session,
        "user": per_first - per_session,
        "connection": figures.delta("connections", "sessions", key)
        / max(1, figures.counts.get("connections", 0)),
        "while on": per_first + (plan.sessions - 1) * per_session,
    }
    table = figures.delta("signed off", "baseline", "watcher index table")
    found["watcher index table"] = table
    found["residue"] = (
        figures.delta("signed off", "baseline", key) - (table if key == "traced" else 0)
    ) / n_users
    if figures.flood is not None and "flood" in figures.points:
        found["flood"] = figures.delta("flood", "signed off", key) / max(1, figures.flood.attempts)
    if "worst" in figures.points:
        found["worst-user"] = figures.delta("worst", "flood", key) - per_session
        found["worst left"] = figures.delta("worst gone", "flood", key)
    return found


def rows_of(traced: Figures, rss: Figures | None, plan: Plan) -> list[ChaosRow]:
    """The table: each figure against its bound."""
    found = values(traced, plan)
    in_rss = values(rss, plan, "VmRSS") if rss is not None else {}
    n_sessions = plan.users * plan.sessions
    rows = []

    def row(target: str, key: str, inputs: int, extra: str = "", failures: int = 0) -> None:
        bound = BOUNDS[key]
        value = found[key]
        notes = [f"{_kib(value)} (bound {_kib(bound.bytes)})"]
        if key in in_rss:
            notes.append(f"RSS {_kib(in_rss[key])}")
        if extra:
            notes.append(extra)
        rows.append(
            ChaosRow(
                PART,
                target,
                inputs,
                failures=int(value > bound.bytes) + failures,
                note="; ".join(notes),
            )
        )

    row("session", "session", n_sessions)
    row("user", "user", plan.users)
    row("connection", "connection", traced.counts.get("connections", 0))
    row(
        "signed-off",
        "residue",
        plan.users,
        f"of {_kib(found['while on'])} while on; the watcher index table kept"
        f" {_kib(found['watcher index table'])} of its peak",
    )
    if traced.flood is not None and "flood" in found:
        outcomes = traced.flood.outcomes
        wrong = sum(n for k, n in outcomes.items() if k.startswith(UNEXPECTED))
        row(
            "sign-on flood",
            "flood",
            traced.flood.attempts,
            ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())),
            failures=wrong,
        )
    if "worst-user" in found:
        left = found["worst left"]
        row(
            "worst list",
            "worst-user",
            1,
            f"{_kib(left)} left after sign-off",
            failures=int(left > WORST_LEFT),
        )
    rows.append(
        ChaosRow(
            PART,
            "limits refused",
            n_sessions,
            failures=len(traced.problems),
            note="; ".join(traced.problems[:3])
            or "every step past a limit refused (03,01 0015, 02,01 000e, 13,0E 000c)",
        )
    )
    return rows


def prepare(workdir: Path, plan: Plan) -> Path:
    """The database every pass starts from a copy of: the users at the
    limits (bots), the worst list's user, the flood's plain accounts."""
    db = workdir / "limits.sqlite"
    users = [f"lim{u:02d}" for u in range(plan.users)]
    lists = {name: full_list(name) for name in [*users, "warm0", "warm1"]}
    if plan.worst:
        lists["worst"] = full_list("worst", MAX_ITEM_ATTRIBUTES_BYTES)
    plain = [f"fl{n:04d}" for n in range(FLOOD_ACCOUNTS)]
    create_accounts(db, [*lists], lists, plain)
    return db


async def _run(
    plan: Plan, rss: bool, keep_temp: bool, log: Callable[[str], None]
) -> tuple[Figures, Figures | None]:
    workdir = Path(tempfile.mkdtemp(prefix="aim-limits-"))
    started = time.monotonic()
    say = log

    def log(line: str) -> None:
        say(f"{time.monotonic() - started:6.1f} s {line}")

    try:
        db = prepare(workdir, plan)
        traced = await measure_pass(workdir, db, plan, True, log)
        for line in traced.top:
            log(f"  grew: {line}")
        untraced = await measure_pass(workdir, db, plan, False, log) if rss else None
        return traced, untraced
    finally:
        if keep_temp:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def measure(
    plan: Plan, *, rss: bool = False, log: Callable[[str], None] | None = None
) -> tuple[Figures, Figures | None]:
    """Every phase of ``plan`` against a fresh subject: the traced pass,
    and with ``rss`` the untraced one."""
    return asyncio.run(_run(plan, rss, False, log or (lambda _: None)))


def run(
    seconds: float = 15.0,
    *,
    users: int = 10,
    sessions: int = 5,
    worst: bool = True,
    rss: bool = True,
    lift: Sequence[str] = (),
    keep_temp: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[ChaosRow]:
    """Every phase (module docstring) with ``users`` users of ``sessions``
    sessions and a flood of ``seconds``; one row per figure. ``rss``: a
    second pass without tracemalloc for the RSS figures; ``worst``: the
    list with 8 KiB attributes per item; ``lift``: limits the subject does
    not enforce (``LIFTABLE``), to see the figures fail."""
    plan = Plan(users, sessions, seconds, worst, tuple(lift))
    if keep_temp:
        traced, untraced = asyncio.run(_run(plan, rss, True, log or (lambda _: None)))
    else:
        traced, untraced = measure(plan, rss=rss, log=log)
    return rows_of(traced, untraced, plan)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        rest = argv[argv.index("--") + 1 :]
        serve(int(argv[1]), "--trace" in argv[: argv.index("--")], rest)
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.chaos.limits", description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0, help="the sign-on flood's length")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--no-worst", action="store_true", help="skip the 20 MB list")
    parser.add_argument("--no-rss", action="store_true", help="skip the untraced RSS pass")
    parser.add_argument("--keep-temp", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    rows = run(
        args.seconds,
        users=args.users,
        sessions=args.sessions,
        worst=not args.no_worst,
        rss=not args.no_rss,
        keep_temp=args.keep_temp,
        log=say,
    )
    print(render(rows))
    for bound in BOUNDS.values():
        print(f"  {bound.name}: {_kib(bound.bytes)}: {bound.derivation}")
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
