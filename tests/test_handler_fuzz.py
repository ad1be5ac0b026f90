"""Every SNAC handler of the BOS and alert connections, fed bodies that are
cut short, oversize or random (ERRORS.md §2, STYLE.md §4).

The handler tables are the server's own (``AimServer.bos_handlers()`` and
``service_handlers()``, through the connections a real listener builds), and
the tests iterate over the table a connection holds, so a handler added later
is fuzzed without touching this file. Each entry gets bodies drawn for it
(mostly in its layout, when ``LAYOUTS`` knows it) and a fixed set of edge
bodies. The connection must answer with replies, nothing, or an error SNAC of
the request's family, stay open and keep answering, and log no failure and no
error: a logged failure means a handler let an unexpected exception out (the
generic "service unavailable" answer hides it from the client, not from us).
Rate limiting is off, so that every SNAC reaches its handler.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from aimserver.config import load_config
from aimserver.server import AimServer
from aimserver.wire.flap import Channel
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList
from tests.fakes import Wire, make_server, parse_frames, signed_on_bos

ACCOUNTS = {"Alice": "secret", "Bob Smith": "hunter2", "Carol": "carol1"}
#: Request IDs of the fuzzed SNACs; the server's own SNACs have the top bit set.
FIRST_REQUEST_ID = 0x100
#: The largest SNAC body one FLAP frame can carry (65535 minus the SNAC header).
MAX_BODY = 0xFFFF - 10
#: Sent after the fuzzed SNACs: its answer shows the connection still works
#: (nothing left half-handled, no frames held behind a Deferred that never fired).
SENTINEL = (0x01, 0x0E)
SENTINEL_ID = 0x7777

# -- bodies -----------------------------------------------------------------------------
# Every strategy is built once, here: building them inside the draws costs
# more than running the handlers.

u8s = st.integers(0, 0xFF)
u16s = st.one_of(
    st.sampled_from([0, 1, 2, 3, 4, 5, 6, 0x18, 0x7F, 0x80, 0xFFFF]), st.integers(0, 0xFFFF)
)
u32s = st.one_of(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF]), st.integers(0, 0xFFFFFFFF))
#: Names of users that are signed on (so relays and lookups go somewhere), of
#: nobody, and names no account can have.
ONLINE = [b"alice", b"Bob Smith", b"bobsmith", b"carol"]
NAMES = [
    *ONLINE,
    b"nobody",
    b"",
    b" ",
    b"alice\x00",
    b"\xe9lice",
    b"\xff" * 16,
    b"A" * 255,
]
COOKIE = b"fuzzcook"
CAPABILITIES = [
    bytes.fromhex("094613434C7F11D18222444553540000"),  # file transfer
    bytes.fromhex("094613454C7F11D18222444553540000"),  # direct IM
    b"\x00" * 16,
]


def string08(value: bytes) -> bytes:
    return bytes((len(value) & 0xFF,)) + value[:255]


def string16(value: bytes) -> bytes:
    return struct.pack("!H", len(value) & 0xFFFF) + value[:0xFFFF]


def tlv(tag: int, value: bytes) -> bytes:
    return struct.pack("!HH", tag, len(value) & 0xFFFF) + value[:0xFFFF]


def im_data(text: bytes) -> bytes:
    """Channel-1 message fragments: features, then one text fragment."""
    return b"\x05\x01\x00\x01\x01" + b"\x01\x01" + string16(b"\x00\x00\x00\x00" + text)


#: Tags the handlers look for (ICBM, locate, oservice, feedbag, rendezvous), and any.
tags = st.one_of(
    st.integers(0, 0x30), st.sampled_from([0x4A, 0x4C, 0x2711]), st.integers(0, 0xFFFF)
)
names = st.one_of(st.sampled_from(ONLINE), st.sampled_from(NAMES)).map(string08)
cookies = st.sampled_from([COOKIE, b"\x00" * 8])
capabilities = st.sampled_from(CAPABILITIES)
short_binary = st.binary(max_size=24)


def atoms(depth: int) -> st.SearchStrategy[bytes]:
    """One OSCAR datatype: integers, screen names, cookies, capabilities,
    bytes, and (while ``depth`` allows) TLVs, string16s and counted blocks
    made of atoms again."""
    flat = [
        u8s.map(lambda v: bytes((v,))),
        u16s.map(lambda v: struct.pack("!H", v)),
        u32s.map(lambda v: struct.pack("!I", v)),
        names,
        cookies,
        capabilities,
        short_binary,
    ]
    if depth == 0:
        return st.one_of(*flat)
    inner = st.lists(atoms(depth - 1), max_size=4).map(b"".join)
    nested = [
        st.builds(tlv, tags, inner),
        inner.map(string16),
        st.builds(lambda n, rest: struct.pack("!H", n) + rest, st.integers(0, 6), inner),
    ]
    return st.one_of(*flat, *nested)


#: A channel-2 rendezvous block: kind, cookie, capability, TLVs.
rendezvous = st.builds(
    lambda kind, capability, inner: struct.pack("!H", kind) + COOKIE + capability + inner,
    st.one_of(st.sampled_from([0, 1, 2]), u16s),
    capabilities,
    st.lists(
        st.builds(tlv, st.sampled_from([2, 3, 4, 5, 0x0A, 0x0B, 0x2711]), st.binary(max_size=8)),
        max_size=3,
    ).map(b"".join),
)
#: Values that fit some handler's reading of a tag (message data, rendezvous
#: or capabilities, store-if-offline or a status), or anything.
FITTING_VALUES = {
    0x02: st.one_of(st.binary(max_size=16).map(im_data), st.binary(max_size=16)),
    0x05: st.one_of(rendezvous, st.lists(capabilities, max_size=3).map(b"".join)),
    0x06: st.sampled_from([b"", struct.pack("!I", 0x100), struct.pack("!I", 0)]),
}
other_values = st.one_of(
    st.binary(max_size=8), st.sampled_from([b'text/x-aolrtf; charset="us-ascii"', b"away"])
)
inner_atoms = st.lists(atoms(1), max_size=3).map(b"".join)


@st.composite
def tlv_lists(draw: st.DrawFn) -> bytes:
    """TLVs whose values mostly fit their tag."""
    out = []
    for tag in draw(st.lists(tags, max_size=4)):
        kind = draw(st.integers(0, 2))
        if kind == 0:
            value = b""
        elif kind == 1:
            value = draw(inner_atoms)
        else:
            value = draw(FITTING_VALUES.get(tag, other_values))
        out.append(tlv(tag, value))
    return b"".join(out)


#: The fixed fields a body starts with: the same kinds of heads serve many
#: handlers (an ICBM message head, a lookup, a list of names or of u16s,
#: feedbag times, nothing, or anything).
HEADS = {
    "icbm": st.builds(
        lambda cookie, channel, name: cookie + struct.pack("!H", channel) + name,
        cookies,
        st.sampled_from([1, 2, 3, 0xFFFF]),
        names,
    ),
    "u16 name": st.builds(lambda v, name: struct.pack("!H", v) + name, u16s, names),
    "u32 name": st.builds(lambda v, name: struct.pack("!I", v) + name, u32s, names),
    "names": st.lists(names, max_size=4).map(b"".join),
    "u16s": st.lists(u16s.map(lambda v: struct.pack("!H", v)), max_size=8).map(b"".join),
    "times": st.builds(lambda t, n: struct.pack("!IH", t, n), u32s, u16s),
    "none": st.just(b""),
    "atoms": st.lists(atoms(1), max_size=4).map(b"".join),
}
any_head = st.sampled_from(sorted(HEADS)).flatmap(HEADS.__getitem__)
#: The head each known handler's body starts with (FAMILIES.md), so that most
#: of its bodies get past the fixed fields. A handler not listed here (a new
#: one) gets every kind of head alike.
LAYOUTS = {
    (0x01, 0x04): "u16s",
    (0x01, 0x08): "u16s",
    (0x01, 0x09): "u16s",
    (0x01, 0x11): "u32 name",
    (0x01, 0x14): "u32 name",
    (0x01, 0x17): "u16s",
    (0x01, 0x1E): "none",
    (0x02, 0x04): "none",
    (0x02, 0x05): "u16 name",
    (0x02, 0x15): "u32 name",
    (0x03, 0x04): "names",
    (0x03, 0x05): "names",
    (0x03, 0x0F): "names",
    (0x03, 0x10): "names",
    (0x04, 0x02): "u16s",
    (0x04, 0x06): "icbm",
    (0x04, 0x08): "u16 name",
    (0x04, 0x0B): "icbm",
    (0x04, 0x14): "icbm",
    (0x13, 0x05): "times",
}
random_bodies = st.binary(max_size=64)
HOW = st.sampled_from(["whole", "whole", "cut", "trailing", "repeated", "long"])


@st.composite
def bodies(draw: st.DrawFn, head: st.SearchStrategy[bytes]) -> bytes:
    """Random bytes, or a head and TLVs: kept whole, cut short anywhere, with
    garbage after them, or oversize (the TLVs repeated, or one more TLV, up
    to what one frame can carry)."""
    if draw(st.integers(0, 5)) == 0:
        return draw(random_bodies)
    start = draw(head if draw(st.integers(0, 3)) else any_head)
    tlvs = draw(tlv_lists())
    body = start + tlvs
    how = draw(HOW)
    if how == "cut":
        return body[: draw(st.integers(0, len(body)))]
    if how == "trailing":
        return body + draw(st.binary(min_size=1, max_size=16))
    room = MAX_BODY - len(body)
    if how == "repeated" and tlvs:
        most = room // len(tlvs)
        return body + tlvs * draw(st.one_of(st.just(most), st.integers(0, most)))
    if how == "long" and room >= 4:
        size = draw(st.one_of(st.just(room - 4), st.integers(0, room - 4)))
        return body + tlv(draw(tags), bytes((draw(u8s),)) * size)
    return body


#: Per handler: its layout's bodies, or any head's for a handler not in LAYOUTS.
BODIES = {key: bodies(HEADS[layout]) for key, layout in LAYOUTS.items()}
ANY_BODIES = bodies(any_head)


def edge_bodies() -> list[bytes]:
    """Bodies at the edges, sent to every handler whatever the random ones
    hit: empty, one byte, a whole frame of zeros or of 0xFF; and for each
    layout, its fixed fields alone, cut by one byte, followed by one TLV as
    long as a frame can carry (for the tags handlers read), or by as many
    empty TLVs as fit."""
    out = [b"", b"\x00", b"\x00" * MAX_BODY, b"\xff" * MAX_BODY]
    starts = [COOKIE + struct.pack("!H", c) + string08(n) for c in (1, 2) for n in ONLINE]
    starts += [
        struct.pack("!H", 1) + string08(b"carol"),
        struct.pack("!I", 0xFFFFFFFF) + string08(b"bobsmith"),
        string08(b"alice") + string08(b"carol"),
        struct.pack("!HH", 0x0001, 0x0004),
        struct.pack("!IH", 0, 0),
    ]
    for head in starts:
        out += [head, head[:-1], head + tlv(0x0B, b"") * ((MAX_BODY - len(head)) // 4)]
        for tag in (0x01, 0x02, 0x04, 0x05, 0x06, 0x0D):
            out.append(head + tlv(tag, b"\x01" * (MAX_BODY - len(head) - 4)))
    return out


# -- the connections --------------------------------------------------------------------


def online(server: AimServer, name: str, buddy: bytes, info: bytes = b"") -> Wire:
    """A session that watches ``buddy``, has set its locate ``info``, and is ready."""
    wire = signed_on_bos(server, name)
    wire.send_snac(0x03, 0x04, string08(buddy))
    wire.send_snac(0x02, 0x04, info)
    wire.send_snac(0x01, 0x02)
    wire.raw()
    return wire


def service_connection(server: AimServer, bos: Wire, family: int) -> Wire:
    """A service connection of ``bos``'s session, opened as a client does: the
    cookie of the 01,05 that its 01,04 gets."""
    bos.send_snac(0x01, 0x04, struct.pack("!H", family), request_id=0x0104)
    ((header, body),) = bos.snacs()
    assert (header.family, header.subtype) == (0x01, 0x05), header
    cookie = TlvList.unpack_list(body).get(0x06)
    wire = Wire(server.bos_factory)
    wire.raw()
    wire.signon(Tlv(0x06, cookie or b""))
    ((header, _),) = wire.snacs()
    assert (header.family, header.subtype) == (0x01, 0x03), header
    return wire


class World:
    """A fresh server per example (so a failure replays the same): Alice
    signed on with a BOS connection and its alert service connection; Bob
    (two sessions, one able to take files) and Carol (away) online and
    watching her, so relays, rendezvous, auto-responses, arrivals and lookups
    have somewhere to go."""

    def __init__(self) -> None:
        config = load_config(None, {"ratelimit.enabled": False})
        self.server, self.store, self.clock = make_server(config, ACCOUNTS)
        self.peers = [
            online(self.server, "Bob Smith", b"alice", tlv(0x05, CAPABILITIES[0])),
            online(self.server, "Bob Smith", b"alice"),
            online(self.server, "Carol", b"alice", tlv(0x03, b"text/plain") + tlv(0x04, b"away")),
        ]
        self.alice = online(self.server, "Alice", b"bobsmith")
        self.alert = service_connection(self.server, self.alice, 0x0018)


class HandlerFuzzTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.failures: list[dict[str, Any]] = []

        def observer(event: dict[str, Any]) -> None:
            if "log_failure" in event or event.get("log_level") in (
                LogLevel.error,
                LogLevel.critical,
            ):
                self.failures.append(event)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def world(self) -> World:
        self.failures.clear()  # each example starts clean, replays included
        world = World()
        self.assertEqual(self.failures, [])
        return world

    # -- checks -------------------------------------------------------------------------

    def fuzz(self, world: World, wire: Wire, body_for: Callable[[int, int], bytes]) -> None:
        """``body_for(family, subtype)`` to each handler of ``wire``'s table
        (the table itself, so a new handler is covered), then the sentinel."""
        table = wire.proto.snac_handlers
        self.assertTrue(table)
        for offset, (family, subtype) in enumerate(sorted(table)):
            body = body_for(family, subtype)
            request_id = FIRST_REQUEST_ID + offset
            wire.send_snac(family, subtype, body, request_id=request_id)
            where = f"{family:02x},{subtype:02x} body {body[:48].hex()} ({len(body)} bytes)"
            self.check_answer(wire, family, request_id, where)
            for peer in world.peers:
                # What was relayed must be whole frames.
                parse_frames(peer.raw())
        if SENTINEL in table:
            wire.send_snac(*SENTINEL, request_id=SENTINEL_ID)
            answers = [h for h, _ in self.answers(wire) if h.request_id == SENTINEL_ID]
            self.assertEqual(len(answers), 1, "the connection stopped answering")
            self.assertEqual(self.failures, [])

    def answers(self, wire: Wire) -> list[tuple[SnacHeader, bytes]]:
        frames = parse_frames(wire.raw())
        self.assertEqual([f.channel for f in frames], [Channel.DATA] * len(frames), frames)
        return [SnacHeader.unpack(f.payload) for f in frames]

    def check_answer(self, wire: Wire, family: int, request_id: int, where: str) -> None:
        """No failure logged, the connection open, and every answer to the
        request carries its ID; an error SNAC is of the request's family."""
        self.assertEqual(self.failures, [], where)
        self.assertFalse(wire.closing, where)
        for header, _ in self.answers(wire):
            if header.request_id & 0x80000000:
                continue  # the server's own (arrivals, auto-responses, rate notices)
            self.assertEqual(header.request_id, request_id, where)
            if header.subtype == 0x0001:
                self.assertEqual(header.family, family, where)

    # -- the properties -----------------------------------------------------------------

    @staticmethod
    def drawn(data: st.DataObject) -> Callable[[int, int], bytes]:
        """A body of its own for each handler, mostly in the handler's
        layout; drawn once, so that a second connection gets the same."""
        drawn: dict[tuple[int, int], bytes] = {}

        def body_for(family: int, subtype: int) -> bytes:
            key = (family, subtype)
            if key not in drawn:
                strategy = BODIES.get(key, ANY_BODIES)
                drawn[key] = data.draw(strategy, label=f"{family:02x},{subtype:02x}")
            return drawn[key]

        return body_for

    def test_tables_are_the_servers(self) -> None:
        """The connections fuzzed use the tables the server builds: every
        entry of ``bos_handlers()`` and of the alert ``service_handlers()``."""
        world = self.world()
        server = world.server
        self.assertEqual(set(world.alice.proto.snac_handlers), set(server.bos_handlers()))
        _, table = server.service_handlers()[0x0018]
        self.assertEqual(set(world.alert.proto.snac_handlers), set(table))

    def test_edge_bodies(self) -> None:
        """Every handler of the BOS and alert tables answers the edge bodies
        (one fresh server per body)."""
        for body in edge_bodies():
            world = self.world()
            for wire in (world.alice, world.alert):
                self.fuzz(world, wire, lambda family, subtype, body=body: body)

    @given(st.data())
    def test_random_bodies(self, data: st.DataObject) -> None:
        """Every handler answers any body with replies, nothing or an error
        SNAC, and logs no failure: on Alice's BOS connection, on its alert
        service connection, and on a second session of Alice's that has not
        sent its 01,02 (client ready) yet (the same bodies again)."""
        world = self.world()
        body_for = self.drawn(data)
        self.fuzz(world, world.alice, body_for)
        self.fuzz(world, world.alert, body_for)
        self.fuzz(world, signed_on_bos(world.server, "Alice"), body_for)
