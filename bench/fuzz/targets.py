"""The fuzz targets: plain ``def target(data: bytes) -> None`` functions.

Each one feeds ``data`` to one decoder (or picks one of a family of decoders
with the first byte) and lets through only the exception that decoder is
documented to raise for bad input (``MalformedData`` for the wire layer,
``FrameError``, ``WebError``, ``ApiError``, ``ConfigError``, ``InvalidCookie``,
a service's ``SnacError``). Anything else escapes: that is a crash. The
stream targets (``streams.py``) do the same for whole connections.

Nothing here needs atheris: the suite runs every target over its seeds
(``tests/test_fuzz_targets.py``), and ``bench/fuzz/__main__.py`` hands the
same functions to atheris.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from aimserver.api.http import ApiError, ApiRequest
from aimserver.config import ConfigError, load_config
from aimserver.services import admin as admin_service
from aimserver.services import buddy, locate, odir, oservice
from aimserver.services.base import SnacError
from aimserver.services.cookies import CookieJar, InvalidCookie
from aimserver.web.frames import FrameError, FrameReader, parse_close
from aimserver.web.frames import frame as ws_frame
from aimserver.web.messages import WebError, parse_request
from aimserver.wire import admin as wire_admin
from aimserver.wire import bart, chat, icbm, redact, roomname
from aimserver.wire import odir as wire_odir
from aimserver.wire.errors import MalformedData
from aimserver.wire.feedbag import pack_item, read_items
from aimserver.wire.flap import (
    FLAP_HEADER_SIZE,
    Channel,
    FlapFrame,
    SignonPayload,
    parse_header,
)
from aimserver.wire.reader import Reader
from aimserver.wire.screenname import decode_screen_name
from aimserver.wire.snac import SnacHeader, pack_snac
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import UserInfo


@attrs.frozen
class Target:
    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    #: libFuzzer's -max_len for it.
    max_len: int
    about: str


def _tlvs(*pairs: tuple[int, bytes]) -> bytes:
    return TlvList([Tlv(tag, value) for tag, value in pairs]).pack_list()


# -- FLAP, SNAC, TLVs, user info ---------------------------------------------------------


def flap(data: bytes) -> None:
    """FlapFrame.unpack, parse_header at every offset, SignonPayload.unpack."""
    with contextlib.suppress(MalformedData):
        FlapFrame.unpack(data)
    for offset in range(0, max(0, len(data) - FLAP_HEADER_SIZE + 1), 7):
        with contextlib.suppress(MalformedData):
            parse_header(data, offset)
    with contextlib.suppress(MalformedData):
        SignonPayload.unpack(data)
    redact.trace_text(Channel.SIGNON, data)
    redact.trace_text(Channel.SIGNOFF, data)


def flap_seeds() -> list[bytes]:
    return [
        FlapFrame(Channel.SIGNON, 1, b"\x00\x00\x00\x01").pack(),
        FlapFrame(Channel.DATA, 2, pack_snac(0x01, 0x02, b"")).pack(),
        SignonPayload(1, TlvList([Tlv(0x06, b"c" * 32)])).pack(),
        FlapFrame(Channel.KEEP_ALIVE, 0xFFFF).pack(),
    ]


def snac(data: bytes) -> None:
    with contextlib.suppress(MalformedData):
        SnacHeader.unpack(data)
    redact.trace_text(Channel.DATA, data)


def snac_seeds() -> list[bytes]:
    return [
        pack_snac(0x17, 0x02, _tlvs((0x01, b"alice"), (0x25, b"d" * 16))),
        SnacHeader(0x04, 0x06, 0x8000, 7).pack() + b"\x00\x04abcd" + b"body",
        pack_snac(0x01, 0x17, struct.pack("!HH", 1, 4)),
    ]


def tlv(data: bytes) -> None:
    """A TLV list, block and L-block over the same bytes, then typed lookups."""
    results = []
    for read in (TlvList.read_list, TlvList.read_block, TlvList.read_lblock):
        with contextlib.suppress(MalformedData):
            results.append(read(Reader(data, "fuzzed TLVs")))
    for tlvs in results:
        for item in tlvs:
            for get in (tlvs.get_u8, tlvs.get_u16, tlvs.get_u32):
                with contextlib.suppress(MalformedData):
                    get(item.tag)
        assert TlvList.unpack_list(tlvs.pack_list()) == tlvs


def tlv_seeds() -> list[bytes]:
    items = TlvList([Tlv.u8(1, 1), Tlv.u16(2, 2), Tlv.u32(3, 3), Tlv.empty(4)])
    return [items.pack_list(), items.pack_block(), items.pack_lblock()]


def userinfo(data: bytes) -> None:
    for decode in (UserInfo.unpack, chat.parse_users):
        with contextlib.suppress(MalformedData):
            decode(data)


def userinfo_seeds() -> list[bytes]:
    info = UserInfo("Alice", 10, TlvList([Tlv.u16(0x01, 0x10), Tlv.u32(0x03, 1234)]))
    return [info.pack(), info.pack() + UserInfo("Bob").pack()]


# -- the food groups' request parsers ----------------------------------------------------


def _parse_query(body: bytes) -> object:
    try:
        return odir.parse_query(TlvList.unpack_list(body))
    except odir.NoMatch:
        return None


#: (name, parser): the first input byte picks one, modulo the table's length.
FOOD_GROUP_PARSERS: Sequence[tuple[str, Callable[[bytes], Any]]] = (
    ("admin info reply", wire_admin.AdminInfoReply.unpack),
    ("admin confirm reply", wire_admin.ConfirmReply.unpack),
    ("admin e-mail", admin_service.parse_email),
    ("BART info", bart.BartInfo.unpack),
    ("BART ID", bart.BartId.unpack),
    ("BART upload", bart.Upload.unpack),
    ("BART upload reply", bart.UploadReply.unpack),
    ("BART download", bart.Download.unpack),
    ("BART download reply", bart.DownloadReply.unpack),
    ("BART download2", bart.Download2.unpack),
    ("BART download2 reply", bart.Download2Reply.unpack),
    ("chat room ref", chat.RoomRef.unpack),
    ("chat room info", chat.RoomInfo.unpack),
    ("chatnav exchange request", chat.parse_exchange_request),
    ("chatnav room info request", chat.parse_room_info_request),
    ("chat message", chat.ChatMessage.unpack),
    ("chat message parts", chat.message_parts),
    ("chat message text length", chat.message_text_length),
    ("chat relayed message", chat.relayed_message),
    ("chat message to client", chat.ChatMessageToClient.unpack),
    ("chat invite", chat.parse_chat_invite),
    ("feedbag items", read_items),
    ("ICBM channel message", icbm.ChannelMessageToHost.unpack),
    ("ICBM split message", lambda body: icbm.split_message(body, frozenset({0x03, 0x06}))),
    ("ICBM client event", icbm.ClientEvent.unpack),
    ("ICBM client error", icbm.ClientError.unpack),
    ("ICBM parameters", icbm.IcbmParameters.unpack),
    ("ICBM rendezvous", icbm.Rendezvous.unpack),
    ("odir info reply", wire_odir.ODirInfoReply.unpack),
    ("odir keyword list reply", wire_odir.KeywordListReply.unpack),
    ("odir query", _parse_query),
    ("room cookie", roomname.parse_room_cookie),
    ("screen name", decode_screen_name),
    ("buddy names", lambda body: buddy.parse_names(body, "buddy names")),
    ("oservice versions", oservice.parse_versions),
    ("oservice u16 list", lambda body: oservice.parse_u16_list(body, "u16 list")),
    ("oservice rate class ids", oservice.rate_class_ids),
    ("locate directory fields", locate.parse_directory_fields),
    ("locate interest keywords", locate.parse_interest_keywords),
)


def foodgroups(data: bytes) -> None:
    if not data:
        return
    _, parse = FOOD_GROUP_PARSERS[data[0] % len(FOOD_GROUP_PARSERS)]
    with contextlib.suppress(MalformedData, SnacError):
        parse(data[1:])


def foodgroups_seeds() -> list[bytes]:
    index = {name: i for i, (name, _) in enumerate(FOOD_GROUP_PARSERS)}
    ref = chat.RoomRef(4, b"!aol://2719:10-4-test", 0)
    message = chat.ChatMessage(b"12345678", 3, True, None, True, False, _tlvs((1, b"hi")))
    im = icbm.ChannelMessageToHost(b"abcdefgh", 1, "Bob", TlvList([Tlv(0x02, b"text")]))
    bodies = {
        "BART ID": bart.BartId(1, 0, b"h" * 16).pack(),
        "chat room ref": ref.pack(),
        "chat message": message.pack(),
        "chat message parts": _tlvs((1, b"hello"), (2, b"us-ascii"), (3, b"en")),
        "chat invite": ref.pack(),
        "feedbag items": pack_item(b"Buddies", 1, 0, 1, _tlvs((0xC8, b"\x00\x01"))),
        "ICBM channel message": im.pack(),
        "ICBM split message": im.pack(),
        "room cookie": roomname.room_cookie(4, 0, "Test"),
        "screen name": b"Bob Smith",
        "buddy names": b"\x03Bob\x05Carol",
        "oservice versions": struct.pack("!HHHH", 1, 4, 2, 1),
        "locate directory fields": _tlvs((1, b"Alice"), (0x0A, b"\x00\x01")),
        "locate interest keywords": _tlvs((0x0B, b"chess"), (0x0B, b"go")),
        "odir query": _tlvs((0x05, b"a@example.com")),
        "admin e-mail": b"alice@example.com",
    }
    return [bytes([index[name]]) + body for name, body in bodies.items()]


# -- the cookie reader -------------------------------------------------------------------

_JAR = CookieJar(b"fuzz-secret-fuzz-secret-32-bytes", Clock(), lifetime=1e9)


def cookie(data: bytes) -> None:
    """A cookie whose MAC is right (as with a leaked secret): the body reader
    sees the fuzzed bytes; a cookie sent as is must be refused as forged."""
    body_length = 224
    body = data[:body_length].ljust(body_length, b"\x00")
    with contextlib.suppress(InvalidCookie):
        _JAR.redeem(body + _JAR._sign(body), 1)
    with contextlib.suppress(InvalidCookie):
        _JAR.redeem(data, 1)


def cookie_seeds() -> list[bytes]:
    jar = CookieJar(
        b"fuzz-secret-fuzz-secret-32-bytes", Clock(), lifetime=1e9, random_bytes=lambda n: bytes(n)
    )
    issued = jar.issue(
        screen_name="Alice", instance_id=1, multiconn_flags=1, service=1, client_id="x"
    )
    return [issued[:224], issued]


# -- the browser's WebSocket frames and JSON messages ------------------------------------


def masked(
    opcode: int, payload: bytes, fin: bool = True, key: bytes = b"\x01\x02\x03\x04"
) -> bytes:
    """A client frame (masked with ``key``, as RFC 6455 wants them)."""
    unmasked = ws_frame(opcode, payload)
    header_length = len(unmasked) - len(payload)
    first = unmasked[0] if fin else unmasked[0] & 0x7F
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([first, unmasked[1] | 0x80]) + unmasked[2:header_length] + key + body


def ws_frames(data: bytes) -> None:
    """A FrameReader fed ``data`` in chunks whose sizes the first byte picks."""
    if not data:
        return
    step = data[0] % 17 or len(data)
    reader = FrameReader(4096)
    try:
        for start in range(1, len(data), step):
            for opcode, payload in reader.feed(data[start : start + step]):
                if opcode == 0x8:
                    parse_close(payload)
    except FrameError:
        pass


def ws_frames_seeds() -> list[bytes]:
    return [
        b"\x00" + masked(0x1, b'{"id":1,"command":"ping"}'),
        b"\x03" + masked(0x1, b"ab", fin=False) + masked(0x0, b"cd") + masked(0x9, b"p"),
        b"\x01" + masked(0x8, struct.pack("!H", 1000) + b"bye"),
        b"\x05" + masked(0x2, b"x" * 300),
    ]


def web_messages(data: bytes) -> None:
    with contextlib.suppress(WebError):
        parse_request(data)


def web_messages_seeds() -> list[bytes]:
    return [
        b'{"id":1,"command":"send_im","parameters":{"to":"Bob","text":"hi"}}',
        b'{"id":"x","command":"join_room","parameters":{"room":"Test"}}',
        b'{"id":2,"command":"update_session_state","parameters":{"away_message":null}}',
        b"[]",
    ]


# -- the management API's JSON bodies ----------------------------------------------------

_API: list[Any] = []


def _api_routes() -> list[Any]:
    if not _API:
        from aimserver.api.management import ManagementApi
        from aimserver.config import Config
        from aimserver.server import AimServer
        from aimserver.store.memory import MemoryUserStore

        clock = Clock()
        store = MemoryUserStore(clock)
        store.create_account("Alice", "secret1")
        server = AimServer(Config(), store, b"s" * 32, clock)
        api = ManagementApi(server, {})
        _API.append(clock)
        _API.extend(r for r in api.routes() if r.method in ("POST", "PUT", "DELETE", "PATCH"))
    return _API


def api_json(data: bytes) -> None:
    """The body of a route that reads one (the first byte picks the route);
    a path parameter is "alice". Only ApiError may come back."""
    if not data:
        return
    clock, *routes = _api_routes()
    chosen = routes[data[0] % len(routes)]
    params = dict.fromkeys(chosen.pattern.groupindex, "alice")
    request = ApiRequest(chosen.method, chosen.pattern.pattern, params, {}, data[1:])
    try:
        result = chosen.handler(request)
    except ApiError:
        return
    if isinstance(result, defer.Deferred):
        outcome: list[object] = []
        result.addBoth(outcome.append)
        clock.advance(0)
        assert outcome, f"{chosen.method} {chosen.pattern.pattern}: no answer"
        if isinstance(outcome[0], Failure) and not outcome[0].check(ApiError):
            outcome[0].raiseException()


def api_json_seeds() -> list[bytes]:
    clock, *routes = _api_routes()
    index = {(r.method, r.pattern.pattern): i for i, r in enumerate(routes)}
    bodies = []
    for (method, pattern), i in index.items():
        if "motd" in pattern or "broadcast" in pattern:
            body = b'{"text":"hello"}'
        elif "instant-message" in pattern:
            body = b'{"from":"admin","to":"Alice","text":"hi"}'
        elif "account" in pattern:
            body = b'{"suspended_status":"","is_bot":false}'
        elif "public" in pattern and method == "DELETE":
            body = b'{"names":["Lobby"]}'
        elif "public" in pattern:
            body = b'{"name":"Lobby"}'
        else:
            body = b'{"screen_name":"Bob","password":"hunter22"}'
        bodies.append(bytes([i]) + body)
    return bodies


# -- the INI reader ----------------------------------------------------------------------

_INI_PATH: list[str] = []


def config(data: bytes) -> None:
    """load_config over a file holding ``data``: ConfigError or a Config."""
    if not _INI_PATH:
        directory = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, path = tempfile.mkstemp(prefix="aimserver-fuzz-", suffix=".ini", dir=directory)
        os.close(fd)
        _INI_PATH.append(path)
    with open(_INI_PATH[0], "wb") as f:
        f.write(data)
    with contextlib.suppress(ConfigError):
        load_config(_INI_PATH[0])


def config_seeds() -> list[bytes]:
    return [
        b"[ports]\nauth = 5190\nbos = 5191\n\n[server]\nhost = 127.0.0.1\n",
        b"[ratelimit]\nenabled = false\n[access]\nallow = 10.0.0.0/8, ::1\n",
        b"\xef\xbb\xbf[connection]\nkeepalive_interval = 30\n",
    ]
