"""Stream targets: whole connections fed arbitrary bytes in arbitrary chunks.

One in-memory server (a memory store, a ``task.Clock``, rate limiting off so
every SNAC reaches its handler) per process holds two well-behaved BOS
connections, Bob's and Carol's, signed on once and kept for the whole run.
Each input opens one hostile connection, feeds it the input (after a mode
byte) cut as the mode says, and closes it. Afterwards the well-behaved
connections must still be open and must each answer a 01,0E with a 01,0F;
and no exception may have escaped ``dataReceived``, nor been logged as a
failure or an error (a handler's unexpected exception is logged and hidden
from the client as "service unavailable": for the fuzzer it is a crash).

Carol also has a chat connection in a private room (``chat_stream``'s
hostile connections are Alice's, in the same room), and Dave is signed on
from a browser (he must still answer a ping). Once ``service_stream`` runs,
Carol also holds one connection of each service reached by 01,04 on the BOS
listener (``SERVICES``), and each must still answer a 01,06.

The mode byte: bits 0-3 pick the chunking (``_chunks``); for ``bos_stream``
bit 4 says whether the hostile connection first signs on as Alice with a
valid cookie (so its frames reach the handlers) or starts raw; for
``service_stream`` bits 4-6 pick the service (``SERVICES``, modulo its
length) whose connection Alice opens.
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Iterator
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from aimserver.config import AuthConfig, Config, MultisessionConfig, RateLimitConfig
from aimserver.server import AimServer
from aimserver.store.credentials import strong_digest
from aimserver.store.memory import MemoryUserStore
from aimserver.web.socket import WebSocketConnection
from aimserver.wire.codes import FoodGroup
from aimserver.wire.flap import FLAP_HEADER_SIZE, Channel, FlapFrame, SignonPayload, parse_header
from aimserver.wire.snac import SnacHeader, pack_snac
from aimserver.wire.tlv import Tlv, TlvList
from bench.fuzz import targets

PEER = IPv4Address("TCP", "192.0.2.9", 41000)
PROBE_REQUEST_ID = 0x7777
#: Alice is the hostile one, Bob and Carol the BOS bystanders, Dave the browser.
CHAT_ROOM = b"4-0-Fuzz"
ACCOUNTS = (("Alice", "secret1"), ("Bob", "hunter22"), ("Carol", "carol11"), ("Dave", "dave111"))
#: The services a session opens a connection to with 01,04 on the BOS
#: listener (``AimServer.service_handlers``), as ``service_stream`` picks them.
SERVICES = (FoodGroup.ALERT, FoodGroup.ADMIN, FoodGroup.ODIR, FoodGroup.BART, FoodGroup.CHAT_NAV)


@contextlib.contextmanager
def logged_problems() -> Iterator[list[str]]:
    """A list that gathers, while the block runs, what is logged as a
    failure (its traceback) or an error (its format): for a target, a crash."""
    problems: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        level = event.get("log_level")
        if "log_failure" in event or level in (LogLevel.error, LogLevel.critical):
            failure = event.get("log_failure")
            # A legacy log.err (twisted.web's) carries its traceback in the text.
            what = failure.getTraceback() if failure is not None else formatEvent(event)
            problems.append(what)

    globalLogPublisher.addObserver(observe)
    try:
        yield problems
    finally:
        globalLogPublisher.removeObserver(observe)


def _chunks(data: bytes, mode: int) -> list[bytes]:
    scheme = mode & 0x0F
    if scheme == 0 or not data:
        return [data]
    if scheme < 8:
        size = (1, 2, 3, 5, 6, 7, 64)[scheme - 1]
        return [data[i : i + size] for i in range(0, len(data), size)]
    # Sizes 1..16 drawn from the data itself (a cheap deterministic generator).
    chunks, offset, state = [], 0, scheme * 2654435761
    while offset < len(data):
        state = (state * 1103515245 + 12345 + data[offset]) & 0xFFFFFFFF
        size = 1 + (state >> 16) % 16
        chunks.append(data[offset : offset + size])
        offset += size
    return chunks


class _Wire:
    def __init__(self, factory: Any) -> None:
        self.proto = factory.buildProtocol(PEER)
        self.transport = StringTransport(peerAddress=PEER)
        self.proto.makeConnection(self.transport)
        self.lost = False

    def feed(self, data: bytes) -> None:
        self.proto.dataReceived(data)

    def take(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def lose(self) -> None:
        if not self.lost:
            self.lost = True
            self.proto.connectionLost(Failure(ConnectionDone()))


def _frames(data: bytes) -> list[FlapFrame]:
    frames, offset = [], 0
    while offset + FLAP_HEADER_SIZE <= len(data):
        _, _, length = parse_header(data, offset)
        end = offset + FLAP_HEADER_SIZE + length
        frames.append(FlapFrame.unpack(data[offset:end]))
        offset = end
    return frames


def _frame(channel: int, payload: bytes) -> bytes:
    return FlapFrame(channel, 0, payload).pack()


def _snac(family: int, subtype: int, body: bytes = b"", request_id: int = 1) -> bytes:
    return _frame(Channel.DATA, pack_snac(family, subtype, body, request_id))


def signed_on(server: AimServer, name: str) -> _Wire:
    """A BOS connection of ``server`` signed on as ``name`` with a cookie made
    for it (the login is ``auth_stream``'s business)."""
    cookie = server.cookies.issue(
        screen_name=name,
        instance_id=server.registry.new_instance_id(),
        multiconn_flags=0x01,
        service=1,
        client_id="fuzz",
    )
    wire = _Wire(server.bos_factory)
    wire.feed(_frame(Channel.SIGNON, SignonPayload(1, TlvList([Tlv(0x06, cookie)])).pack()))
    frames = _frames(wire.take())
    assert frames and frames[-1].channel == Channel.DATA, frames
    return wire


class World:
    """The server and its well-behaved connections, built once per process."""

    def __init__(self) -> None:
        self.clock = Clock()
        store = MemoryUserStore(self.clock)
        for name, password in ACCOUNTS:
            store.create_account(name, password)
        # No rate or login limits, room for every session a hostile input
        # leaves waiting for its resume: the limits would refuse most inputs
        # (all hostile connections come from one address) before a parser
        # sees them.
        config = Config(
            ratelimit=RateLimitConfig(enabled=False),
            auth=AuthConfig(max_logins_per_second=0, max_logins_per_ip_per_minute=0),
            multisession=MultisessionConfig(max_sessions=1000),
        )
        self.server = AimServer(config, store, b"f" * 32, self.clock)
        #: Carol's service connections, by family (``open_service_bystanders``).
        self.service_bystanders: dict[int, _Wire] = {}
        self.bystanders = [self.signed_on("Bob"), self.signed_on("Carol")]
        for wire in self.bystanders:
            wire.feed(_snac(0x01, 0x02, b""))  # client ready
            wire.take()
        #: Carol's chat connection, in the private room the hostile chat
        #: connections join.
        self.chat_bystander = self.chat_connection(self.bystanders[1])
        #: A browser signed on as Dave, on the same server.
        self.browser = self.web_socket()
        self.browser.feed(
            masked(0x1, web_command("create_session", screen_name="Dave", password="dave111"))
        )
        self.clock.advance(0)
        assert b'"success"' in self.browser.take(), "the browser bystander did not sign on"

    def signed_on(self, name: str) -> _Wire:
        return signed_on(self.server, name)

    def chat_connection(self, bos: _Wire) -> _Wire:
        """A chat connection of ``bos``'s session to ``CHAT_ROOM``, opened as a
        client does (01,04 for 0x000E, the 01,05's cookie at the chat listener)."""
        ref = struct.pack("!H", 4) + bytes([len(CHAT_ROOM)]) + CHAT_ROOM + b"\x00\x00"
        return self.service_connection(
            bos, FoodGroup.CHAT, self.server.chat_factory, Tlv(0x01, ref).pack()
        )

    def service_connection(
        self, bos: _Wire, family: int, factory: Any = None, request: bytes = b""
    ) -> _Wire:
        """A connection of ``bos``'s session to the service ``family``, opened
        as a client does: 01,04 for it (``request`` after the family), then
        the 01,05's cookie signed on at ``factory`` (the BOS listener unless
        given), and its client-ready."""
        bos.take()
        bos.feed(_snac(0x01, 0x04, struct.pack("!H", family) + request, 0x0104))
        self.clock.advance(0)
        (redirect,) = [f for f in _frames(bos.take()) if f.channel == Channel.DATA]
        header, body = SnacHeader.unpack(redirect.payload)
        assert (header.family, header.subtype) == (0x01, 0x05), header
        cookie = TlvList.unpack_list(body).get(0x06) or b""
        wire = _Wire(factory or self.server.bos_factory)
        wire.feed(_frame(Channel.SIGNON, SignonPayload(1, TlvList([Tlv(0x06, cookie)])).pack()))
        wire.feed(_snac(0x01, 0x02))
        self.clock.advance(0)
        assert not wire.transport.disconnecting, f"the {family:#x} connection was refused"
        wire.take()
        return wire

    def open_service_bystanders(self) -> None:
        """Carol's connection to each of ``SERVICES`` (once per process)."""
        if not self.service_bystanders:
            for family in SERVICES:
                self.service_bystanders[family] = self.service_connection(
                    self.bystanders[1], family
                )

    def web_socket(self) -> _Socket:
        return _Socket(WebSocketConnection(self.server.web, "192.0.2.10:42000", None))

    def _check_rate_query(self, wire: _Wire, what: str) -> None:
        """``wire`` (a chat or service connection) is open and answers 01,06."""
        if wire.transport.disconnecting or wire.lost:
            raise AssertionError(f"the well-behaved {what} connection was closed")
        wire.take()
        wire.feed(_snac(0x01, 0x06, b"", PROBE_REQUEST_ID))
        self.clock.advance(0)
        if not any(
            f.channel == Channel.DATA and f.payload[:4] == b"\x00\x01\x00\x07"
            for f in _frames(wire.take())
        ):
            raise AssertionError(f"the well-behaved {what} connection did not answer 01,06")

    def check_bystanders(self) -> None:
        self._check_rate_query(self.chat_bystander, "chat")
        for family, wire in self.service_bystanders.items():
            self._check_rate_query(wire, f"{family:#06x} service")
        browser = self.browser
        if browser.proto.closed or browser.transport.disconnecting:
            raise AssertionError("the well-behaved browser was closed")
        browser.take()
        browser.feed(masked(0x9, b"probe"))
        self.clock.advance(0)
        if b"\x8a\x05probe" not in browser.take():
            raise AssertionError("the well-behaved browser did not answer a ping")
        for i, wire in enumerate(self.bystanders):
            if wire.transport.disconnecting or wire.lost:
                raise AssertionError(f"well-behaved connection {i} was closed")
            wire.take()
            wire.feed(_snac(0x01, 0x0E, b"", PROBE_REQUEST_ID))
            self.clock.advance(0)
            answers = [
                SnacHeader.unpack(f.payload)[0]
                for f in _frames(wire.take())
                if f.channel == Channel.DATA
            ]
            if not any(
                (h.family, h.subtype, h.request_id) == (0x01, 0x0F, PROBE_REQUEST_ID)
                for h in answers
            ):
                raise AssertionError(f"well-behaved connection {i} did not answer 01,0E")

    def run_hostile(self, factory: Any, data: bytes, mode: int, sign_on_as: str | None) -> None:
        with logged_problems() as problems:
            owner = None
            if factory == "web":
                hostile: Any = self.web_socket()
            elif factory == "chat":
                owner = self.signed_on("Alice")
                hostile = self.chat_connection(owner)
            elif isinstance(factory, tuple):  # ("service", family)
                owner = self.signed_on("Alice")
                hostile = self.service_connection(owner, factory[1])
            else:
                hostile = self.signed_on(sign_on_as) if sign_on_as else _Wire(factory)
            try:
                for chunk in _chunks(data, mode):
                    if hostile.transport.disconnecting or getattr(hostile.proto, "closed", False):
                        break
                    hostile.feed(chunk)
                    self.clock.advance(0)
            finally:
                hostile.lose()
                if owner is not None:
                    owner.lose()
                # A second per input: what a hostile connection left behind
                # (a browser session waiting for its resume, a login key)
                # expires in a few hundred inputs, and timers run.
                self.clock.advance(1)
        if problems:
            raise AssertionError("logged failure or error:\n" + problems[0])
        self.check_bystanders()


class _Socket(_Wire):
    """A browser's WebSocket after the upgrade, on a StringTransport."""

    def __init__(self, proto: WebSocketConnection) -> None:
        self.proto = proto  # type: ignore[assignment]
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        self.lost = False


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A client frame of a stream target's browser (its own mask key)."""
    return targets.masked(opcode, payload, fin, key=b"\x11\x22\x33\x44")


def web_command(command: str, request_id: int = 1, **parameters: object) -> bytes:
    return json.dumps({"id": request_id, "command": command, "parameters": parameters}).encode()


_WORLD: list[World] = []


def world() -> World:
    if not _WORLD:
        _WORLD.append(World())
    return _WORLD[0]


def bos_stream(data: bytes) -> None:
    if not data:
        return
    w = world()
    w.run_hostile(w.server.bos_factory, data[1:], data[0], "Alice" if data[0] & 0x10 else None)


def auth_stream(data: bytes) -> None:
    """The authorizer's login paths (FLAP channel 1 roasted and BUCP)."""
    if not data:
        return
    w = world()
    w.run_hostile(w.server.auth_factory, data[1:], data[0], None)


def chat_stream(data: bytes) -> None:
    """Alice's chat connection, in Carol's room, fed arbitrary frames."""
    if not data:
        return
    w = world()
    w.run_hostile("chat", data[1:], data[0], None)


def chat_stream_seeds() -> list[bytes]:
    line = (
        b"12345678"
        + struct.pack("!H", 3)
        + TlvList(
            [
                Tlv.empty(0x01),
                Tlv.empty(0x06),
                Tlv(0x05, TlvList([Tlv(0x01, b"hello"), Tlv(0x02, b"us-ascii")]).pack_list()),
            ]
        ).pack_list()
    )
    whisper = b"abcdefgh" + struct.pack("!H", 3) + Tlv(0x02, b"Carol").pack()
    whisper += Tlv(0x05, Tlv(0x01, b"psst").pack()).pack()
    session = _snac(0x0E, 0x05, line) + _snac(0x0E, 0x05, whisper) + _snac(0x01, 0x06)
    return [b"\x00" + session, b"\x02" + session, b"\x0a" + session + _frame(Channel.SIGNOFF, b"")]


def ws_stream(data: bytes) -> None:
    """A browser's WebSocket (after the upgrade) fed arbitrary frames."""
    if not data:
        return
    w = world()
    w.run_hostile("web", data[1:], data[0], None)


def ws_stream_seeds() -> list[bytes]:
    session = b"".join(
        [
            masked(0x1, web_command("create_session", 1, screen_name="Alice", password="secret1")),
            masked(0x1, web_command("get_buddy_list", 2)),
            masked(0x1, web_command("add_buddy", 3, name="Bob")),
            masked(0x1, web_command("send_im", 4, to="Bob", text="hi", client_message_id="m1")),
            masked(0x1, web_command("join_room", 5, room="Lobby")),
            masked(0x1, web_command("say", 6, room="Lobby", text="hello")),
            masked(0x1, web_command("update_session_state", 7, away_message="out")),
            masked(0x9, b"ping"),
        ]
    )
    fragmented = masked(0x1, b'{"id":1,"comm', fin=False) + masked(0x0, b'and":"server_info"}')
    return [
        b"\x00" + session,
        b"\x03" + session,
        b"\x09" + session + masked(0x8, b"\x03\xe8bye"),
        b"\x00" + fragmented + masked(0x1, web_command("close_session", 9)),
    ]


_HELLO = _frame(Channel.SIGNON, b"\x00\x00\x00\x01")


def bos_stream_seeds() -> list[bytes]:
    signed_on = 0x10
    im = (
        b"abcdefgh"
        + struct.pack("!H", 1)
        + b"\x03Bob"
        + TlvList(
            [Tlv(0x02, b"\x05\x01\x00\x01\x01\x01\x01\x00\x06\x00\x00\x00\x00hi")]
        ).pack_list()
    )
    session = b"".join(
        [
            _snac(0x01, 0x17, struct.pack("!HHHH", 1, 4, 2, 1)),
            _snac(0x01, 0x06),
            _snac(0x01, 0x0E),
            _snac(0x02, 0x04, TlvList([Tlv(0x01, b"text/aolrtf"), Tlv(0x02, b"hi")]).pack_list()),
            _snac(0x03, 0x04, b"\x03Bob\x05Carol"),
            _snac(0x01, 0x02),
            _snac(0x04, 0x06, im),
            _snac(0x13, 0x02),
            _frame(Channel.KEEP_ALIVE, b""),
        ]
    )
    cookie_signon = _frame(
        Channel.SIGNON, SignonPayload(1, TlvList([Tlv(0x06, b"x" * 256)])).pack()
    )
    return [
        bytes([signed_on]) + session,
        bytes([signed_on | 1]) + session,
        bytes([signed_on | 9]) + session,
        bytes([0]) + cookie_signon + session,
        bytes([signed_on]) + _frame(Channel.SIGNOFF, b""),
    ]


def auth_stream_seeds() -> list[bytes]:
    key_request = _snac(0x17, 0x06, Tlv(0x01, b"Alice").pack())
    login = _snac(
        0x17,
        0x02,
        TlvList(
            [
                Tlv(0x01, b"Alice"),
                Tlv(0x25, strong_digest(b"0000000000", b"secret1")),
                Tlv(0x03, b"AIM 5.1"),
                Tlv.empty(0x4C),
                Tlv(0x4A, b"\x01"),
            ]
        ).pack_list(),
    )
    roasted = _frame(
        Channel.SIGNON,
        SignonPayload(
            1, TlvList([Tlv(0x01, b"Alice"), Tlv(0x02, b"\x00" * 7), Tlv(0x03, b"AIM 3.0")])
        ).pack(),
    )
    return [
        bytes([0]) + _HELLO + key_request + login,
        bytes([1]) + _HELLO + key_request,
        bytes([9]) + roasted,
        bytes([0]) + _HELLO + _snac(0x17, 0x04, Tlv(0x01, b"Dave").pack()),
    ]


def service_stream(data: bytes) -> None:
    """Alice's connection to one of ``SERVICES`` (mode bits 4-6 pick it),
    opened through her BOS 01,04 and signed on, fed arbitrary frames."""
    if not data:
        return
    w = world()
    w.open_service_bystanders()
    family = SERVICES[(data[0] >> 4 & 0x07) % len(SERVICES)]
    w.run_hostile(("service", family), data[1:], data[0], None)


def service_stream_seeds() -> list[bytes]:
    from aimserver.wire import bart
    from aimserver.wire.chat import TAG_ROOM_NAME, RoomInfo, RoomRef

    icon = b"GIF89a" + bytes(32)
    icon_id = bart.BartId(1, 1, bytes(16))
    room = RoomRef(4, b"create", 0xFFFF)
    sessions = {
        FoodGroup.ALERT: [
            _snac(0x18, 0x06, Tlv.u32(0x01, 1).pack()),
            _snac(0x18, 0x16, b""),
        ],
        FoodGroup.ADMIN: [
            _snac(0x07, 0x02, TlvList([Tlv.empty(0x01), Tlv.empty(0x11)]).pack_list()),
            _snac(0x07, 0x02, Tlv.empty(0x13).pack()),
            _snac(0x07, 0x04, Tlv(0x11, b"alice@example.com").pack()),
            _snac(0x07, 0x04, Tlv(0x01, b"A lice").pack()),
            _snac(0x07, 0x04, Tlv.u16(0x13, 2).pack()),
            # The same password again: nothing another target relies on changes.
            _snac(0x07, 0x04, TlvList([Tlv(0x02, b"secret1"), Tlv(0x12, b"secret1")]).pack_list()),
            _snac(0x07, 0x06, b""),
        ],
        FoodGroup.ODIR: [
            _snac(0x0F, 0x02, Tlv(0x05, b"alice@example.com").pack()),
            _snac(0x0F, 0x02, Tlv(0x0B, b"chess").pack()),
            _snac(0x0F, 0x02, TlvList([Tlv(0x01, b"Alice"), Tlv(0x02, b"Liddell")]).pack_list()),
            _snac(0x0F, 0x04, b""),
        ],
        FoodGroup.BART: [
            _snac(0x10, 0x02, bart.Upload(1, icon).pack()),
            _snac(0x10, 0x04, bart.Download(b"Carol", icon_id).pack()),
            _snac(0x10, 0x06, bart.Download2(b"Alice", (icon_id, bart.BartId(0, 0, b""))).pack()),
        ],
        FoodGroup.CHAT_NAV: [
            _snac(0x0D, 0x02, b""),
            _snac(0x0D, 0x03, struct.pack("!H", 4)),
            _snac(0x0D, 0x08, RoomInfo(room, 1, TlvList([Tlv(TAG_ROOM_NAME, b"Fuzz")])).pack()),
            _snac(0x0D, 0x04, RoomRef(4, CHAT_ROOM, 0).pack() + b"\x02"),
        ],
    }
    common = [_snac(0x01, 0x06), _snac(0x01, 0x08, struct.pack("!HHHHH", 1, 2, 3, 4, 5))]
    seeds = []
    for index, family in enumerate(SERVICES):
        session = b"".join(sessions[family] + common)
        seeds.append(bytes([index << 4]) + session)
        seeds.append(bytes([index << 4 | 9]) + session + _frame(Channel.SIGNOFF, b""))
    return seeds
