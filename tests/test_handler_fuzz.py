"""Every SNAC handler of the BOS connection, of each service connection
(Alert, Admin, ODir, BART, ChatNav, reached through 01,04) and of a chat
connection (on the chat listener), fed bodies that are cut short, oversize
or random (ERRORS.md §2, STYLE.md §4).

The handler tables are the server's own (``AimServer.bos_handlers()``,
``service_handlers()`` and the chat listener's, through the connections a
real listener builds), and the tests iterate over the table a connection
holds, so a handler added later is fuzzed without touching this file. Each
entry gets bodies drawn for it (mostly in its layout, when ``LAYOUTS`` knows
it) and a fixed set of edge bodies. The connection must answer with replies,
nothing, or an error SNAC of the request's family, stay open and keep
answering, and log no failure and no error: a logged failure means a handler
let an unexpected exception out (the generic "service unavailable" answer
hides it from the client, not from us). A request of a family whose every
request has an answer (``ANSWERED``: Admin, UserLookup, ODir, BART, ChatNav)
must get one, and the answers to a ChatNav or chat request are of the kinds
it has (``REPLY_SUBTYPES``). Afterwards each connection's probes (``PROBES``)
must still get their normal reply: the connection, and what the server keeps
for it (account, directory, icons, rooms), are still usable. Rate limiting
is off, so that every SNAC reaches its handler.

BOS and Alert share their tests (as before the other services came); Admin,
ODir, BART, ChatNav and Alice's chat connection have their own, with edge
bodies of their layouts and half the random examples (``SERVICE_EXAMPLES``),
to keep the module quick. Alice's chat connection is in a private room with
chat connections of Bob's and Carol's (bystanders: lines and whispers are
relayed to them), and a public room is in the store, so that ChatNav's
lookups find rooms of both exchanges.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from aimserver.config import ChatConfig, load_config
from aimserver.server import AimServer
from aimserver.services.bart import MAX_ICON_BYTES
from aimserver.store.interfaces import DirectoryFields
from aimserver.wire.bart import CLEAR_ICON_HASH, BartId, Download
from aimserver.wire.flap import Channel
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList
from tests.fakes import Wire, make_server, parse_frames, result_of, signed_on_bos

ACCOUNTS = {"Alice": "secret", "Bob Smith": "hunter2", "Carol": "carol1"}
#: Request IDs of the fuzzed SNACs; the server's own SNACs have the top bit set.
FIRST_REQUEST_ID = 0x100
#: The largest SNAC body one FLAP frame can carry (65535 minus the SNAC header).
MAX_BODY = 0xFFFF - 10
#: The service connection fuzzed along with BOS, with the same bodies; the
#: others (Admin, ODir, BART, any the server gains) have tests of their own.
ALERT = (0x0018,)
#: Examples of the service connections' random property: half the profile's,
#: so each of their handlers gets 100 random bodies (the BOS ones 200) and
#: the module takes a few seconds more than it did without them.
SERVICE_EXAMPLES = 100
#: The families of ChatNav and of a chat connection (``World.chat``).
CHAT_NAV = 0x000D
CHAT = 0x000E
#: Families every request of which gets an answer (a reply or an error SNAC).
ANSWERED = frozenset({0x0007, 0x000A, 0x000F, 0x0010, CHAT_NAV})
#: Families whose requests are answered in their own family, with an error
#: SNAC or one of these subtypes: ChatNav's 0D,09, a chat line's reflection.
REPLY_SUBTYPES = {CHAT_NAV: frozenset({0x09}), CHAT: frozenset({0x06})}
#: The request ID of a connection's first probe (``PROBES``), the next one's + 1.
PROBE_ID = 0x7777

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
#: What Carol has stored (``World``): an address, a directory record and a
#: keyword found by searches, an icon; and other values a request may carry.
CAROL_EMAIL = b"carol@example.com"
EMAILS = [
    CAROL_EMAIL,
    b"CAROL@Example.COM",
    b"alice@example.com",
    b"nobody@example.com",
    b"",
    b"@",
    b"carol@example.com\x00",
    b"\xe9@example.com",
    b"a" * 250 + b"@b.cc",
]
#: The private room Alice, Bob and Carol are in (``World``), and the public
#: room an admin made; names of rooms that are not, and names no room may have.
ROOM = b"Fuzz Room"
PUBLIC_ROOM = b"Lobby"
ROOM_NAMES = [
    ROOM,
    b"  FUZZ   room ",
    PUBLIC_ROOM,
    b"lobby",
    b"Other Room",
    b"Gone Room",
    b"A" * 48,
    b"!#$&~",
    b"",
    b"   ",
    b"A" * 49,
    b"100%",
    b"caf\xe9",
    b"a\x00b",
    b"tab\there",
    b"\xff" * 16,
    b"x" * 255,
]
#: Room cookies (0D,04, the 01,04 for a chat connection): of the two rooms,
#: in other spellings, of no room, and not cookies at all.
ROOM_COOKIES = [
    b"4-0-" + ROOM,
    b"4-0-fuzz room",
    b"5-0-" + PUBLIC_ROOM,
    b"5-0-LOBBY",
    b"4-0-Nowhere",
    b"5-0-Nowhere",
    b"4-1-" + ROOM,
    b"04-0-" + ROOM,
    b"4-0- Fuzz Room",
    b"4-0-",
    b"99999-0-Room",
    b"create",
    b"",
    b"\xff" * 8,
    b"4-0-" + b"A" * 200,
]
#: Names a whisper (0E,05 TLV 0x0002) goes to: the room's members, Alice
#: herself, someone online but not in the room, nobody, and garbage.
WHISPER_NAMES = [
    b"Bob Smith",
    b"bobsmith",
    b"carol",
    b"CAROL",
    b"alice",
    b"nobody",
    b"",
    b" ",
    b"carol\x00",
    b"\xe9lice",
    b"\xff" * 16,
    b"A" * 255,
]
#: The longest text (0E,05 TLV 0x0005's inner TLV 0x0001) a room takes.
MAX_CHAT_TEXT = ChatConfig().max_message_length
ICON = b"GIF89a\x01\x00\x01\x00" + bytes(range(32))
ICON_ID = BartId(1, 0x01, hashlib.md5(ICON).digest())
FIELD_VALUES = [b"Carol", b"carol", b"CAROL", b"Springfield", b"", b"\xe9", b"x" * 128, b"x" * 129]
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


def room_ref(exchange: int, cookie: bytes, instance: int = 0) -> bytes:
    return struct.pack("!H", exchange) + string08(cookie) + struct.pack("!H", instance)


def room_info(exchange: int, name: bytes, detail: int = 1) -> bytes:
    """A 0D,08 as libpurple sends it: find or make the room ``name``."""
    tlvs = [tlv(0xD3, name), tlv(0xD6, b"us-ascii"), tlv(0xD7, b"en")]
    head = room_ref(exchange, b"create", 0xFFFF) + bytes((detail,))
    return head + struct.pack("!H", len(tlvs)) + b"".join(tlvs)


def chat_line(text: bytes, charset: bytes = b"us-ascii") -> bytes:
    """A 0E,05 as libpurple sends it: to the room, reflected."""
    data = tlv(0x01, text) + tlv(0x02, charset) + tlv(0x03, b"en")
    return COOKIE + struct.pack("!H", 3) + tlv(0x01, b"") + tlv(0x06, b"") + tlv(0x05, data)


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


quarter = st.integers(0, 3)


@st.composite
def mostly(draw: st.DrawFn, usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> Any:
    """``usual`` three times in four, else ``other``. The rare choice is the
    top value: Hypothesis draws 0 far more often than one time in four, so
    every rare branch here is taken on the top value of its draw."""
    return draw(other if draw(quarter) == 3 else usual)


def u16_values(*values: int) -> st.SearchStrategy[bytes]:
    """A u16: mostly one of ``values``, else any, or a value of the wrong size."""
    return mostly(
        st.sampled_from(values).map(lambda v: struct.pack("!H", v)),
        st.one_of(u16s.map(lambda v: struct.pack("!H", v)), st.binary(max_size=3)),
    )


fields = st.sampled_from(FIELD_VALUES)
#: The Admin tags (FAMILIES.md §Admin): display format, new and old password,
#: e-mail, registration status.
ADMIN_VALUES = {
    0x01: st.sampled_from([b"Alice", b"ALICE", b"a lice", b"Carol", b"al", b"A" * 17, b"Al\xe9ce"]),
    0x02: st.sampled_from([b"newpass", b"abc", b"x" * 17, b"\xff\xfe\x00pass"]),
    0x11: st.sampled_from([*EMAILS, b"no-at-sign"]),
    0x12: st.sampled_from([b"secret", b"wrong", b"newpass"]),
    0x13: u16_values(1, 2, 3, 0, 4),
}
#: The ODir search tags (FAMILIES.md §ODir): names and address, e-mail,
#: keyword, search type, charset.
ODIR_VALUES = {
    **{tag: fields for tag in (0x01, 0x02, 0x03, 0x04, 0x06, 0x07, 0x08, 0x0C, 0x0D, 0x21)},
    0x05: st.sampled_from(EMAILS),
    0x0A: u16_values(0, 1),
    0x0B: st.sampled_from([b"chess", b"CHESS", b"", b"x" * 129]),
    0x1C: st.sampled_from([b"us-ascii", b"utf-8"]),
}


#: ChatNav: exchanges (4 private, 5 public, others none), room references,
#: and a 0D,08's room info (mostly one name TLV first, with its count).
exchanges = mostly(st.sampled_from([4, 5]), st.one_of(st.sampled_from([0, 3, 6, 0xFFFF]), u16s))


@st.composite
def room_refs(draw: st.DrawFn, cookies: st.SearchStrategy[bytes]) -> bytes:
    """A room reference: mostly the exchange its cookie names (if it names
    one), else any."""
    cookie = draw(cookies)
    named = cookie.split(b"-", 1)[0]
    if named.isdigit() and int(named) <= 0xFFFF:
        exchange = draw(mostly(st.just(int(named)), exchanges))
    else:
        exchange = draw(exchanges)
    return room_ref(exchange, cookie, draw(mostly(st.sampled_from([0, 0xFFFF]), u16s)))


room_cookies = mostly(st.sampled_from(ROOM_COOKIES), st.binary(max_size=12))
room_requests = st.builds(lambda ref, detail: ref + bytes((detail,)), room_refs(room_cookies), u8s)
room_tlvs = st.builds(
    tlv,
    mostly(st.sampled_from([0xD3, 0xD6, 0xD7]), tags),
    mostly(st.sampled_from([b"us-ascii", b"en", *ROOM_NAMES]), inner_atoms),
)
room_name_tlvs = st.sampled_from(ROOM_NAMES).map(lambda name: tlv(0xD3, name))


@st.composite
def room_infos(draw: st.DrawFn) -> bytes:
    ref = draw(room_refs(mostly(st.just(b"create"), st.sampled_from(ROOM_COOKIES))))
    detail = draw(mostly(st.sampled_from([1, 2]), u8s))
    tlvs = draw(st.lists(room_tlvs, max_size=3))
    if draw(quarter) != 3:
        tlvs.insert(
            draw(st.integers(0, len(tlvs))) if draw(quarter) == 3 else 0, draw(room_name_tlvs)
        )
    count = draw(mostly(st.just(len(tlvs)), u16s))
    return ref + bytes((detail,)) + struct.pack("!H", count) + b"".join(tlvs)


#: A chat line's text: around the room's limit, or any.
chat_texts = mostly(
    st.sampled_from(
        [0, 1, 64, MAX_CHAT_TEXT - 1, MAX_CHAT_TEXT, MAX_CHAT_TEXT + 1, 4 * MAX_CHAT_TEXT]
    ).map(lambda n: b"<b>" + b"x" * n),
    st.binary(max_size=32),
)
#: The text's charset and language; Kopete's charset, renamed when relayed;
#: long ones, which count against no limit.
chat_part_values = mostly(
    st.sampled_from([b"us-ascii", b"unicode-2-0", b"ISO 8859", b"utf-8", b"en", b""]),
    st.one_of(
        st.binary(max_size=16), st.sampled_from([300, 4 * MAX_CHAT_TEXT]).map(lambda n: b"c" * n)
    ),
)


@st.composite
def chat_data(draw: st.DrawFn) -> bytes:
    """A chat line's TLV 0x0005: mostly its text, then charset and language
    (each maybe), in any order, sometimes with other TLVs; else cut short."""
    parts = []
    if draw(mostly(st.just(True), st.booleans())):
        parts.append(tlv(0x01, draw(chat_texts)))
    for tag in (0x02, 0x03):
        if draw(st.booleans()):
            parts.append(tlv(tag, draw(chat_part_values)))
    if draw(quarter) == 3:
        parts += draw(st.lists(st.builds(tlv, tags, short_binary), min_size=1, max_size=2))
    data = b"".join(draw(st.permutations(parts)) if draw(quarter) == 3 else parts)
    if draw(quarter) == 3:
        data = data[: draw(st.integers(0, len(data)))]
    return data


#: The 0E,05 tags: to the room, whisper to, message data, reflect, auto-response.
CHAT_VALUES = {
    0x01: mostly(st.just(b""), short_binary),
    0x02: st.sampled_from(WHISPER_NAMES),
    0x05: chat_data(),
    0x06: mostly(st.just(b""), short_binary),
    0x07: mostly(st.just(b""), short_binary),
}


@st.composite
def chat_tlvs(draw: st.DrawFn) -> bytes:
    """A chat line's TLVs: mostly the ones libpurple sends (to the room,
    reflect, data), sometimes a whisper's (to a name, no 0x0001), each tag
    maybe left out or given a value that does not fit, in any order."""
    whisper = draw(st.integers(0, 2)) == 2
    wanted = {0x01: not whisper, 0x02: whisper, 0x05: True, 0x06: True, 0x07: False}
    out = []
    for tag, usual in wanted.items():
        if draw(st.booleans()) if draw(quarter) == 3 else usual:
            value = draw(inner_atoms if draw(quarter) == 3 else CHAT_VALUES[tag])
            out.append(tlv(tag, value))
    if draw(quarter) == 3:
        out = draw(st.permutations(out))
    return b"".join(out)


@st.composite
def tlv_lists(
    draw: st.DrawFn,
    tag_lists: st.SearchStrategy[list[int]],
    fitting: dict[int, st.SearchStrategy[bytes]],
    kinds: st.SearchStrategy[int],
) -> bytes:
    """TLVs of the tags ``tag_lists`` draws; each value (by ``kinds``) 0
    empty, 1 atoms, 2 one that fits its tag (by ``fitting``)."""
    out = []
    for tag in draw(tag_lists):
        kind = draw(kinds)
        if kind == 0:
            value = b""
        elif kind == 1:
            value = draw(inner_atoms)
        else:
            value = draw(fitting.get(tag, other_values))
        out.append(tlv(tag, value))
    return b"".join(out)


def own_tlv_lists(fitting: dict[int, st.SearchStrategy[bytes]]) -> st.SearchStrategy[bytes]:
    """TLVs of a family with tags of its own: at least one, mostly its own
    tags, and mostly with values that fit."""
    own_tags = mostly(st.sampled_from(sorted(fitting)), tags)
    return tlv_lists(
        st.lists(own_tags, min_size=1, max_size=4), fitting, mostly(st.just(2), st.integers(0, 1))
    )


#: A BART ID: mostly a buddy icon's type, flags, and the hash of Carol's
#: icon, of "no icon", or none, with a length byte that tells the truth;
#: else any of these.
bart_ids = st.builds(
    lambda kind, flags, digest, lie: (
        struct.pack("!HBB", kind, flags, (len(digest) + lie) & 0xFF) + digest
    ),
    mostly(st.sampled_from([1, 0]), u16s),
    mostly(st.sampled_from([1, 0, 0x41]), u8s),
    mostly(st.sampled_from([ICON_ID.hash, CLEAR_ICON_HASH, b""]), st.binary(max_size=17)),
    mostly(st.just(0), st.sampled_from([1, -1, 200])),
)
#: BART upload data: mostly Carol's icon, a GIF's start or nothing; else any,
#: or just at or over the bound.
icon_data = mostly(
    st.sampled_from([ICON, b"GIF89a", b""]),
    st.one_of(
        st.binary(max_size=32),
        st.sampled_from([MAX_ICON_BYTES, MAX_ICON_BYTES + 1]).map(lambda n: b"G" * n),
    ),
)
#: The fixed fields a body starts with: the same kinds of heads serve many
#: handlers (an ICBM message head, a lookup, a list of names or of u16s,
#: feedbag times, nothing, an e-mail address, BART requests, a service
#: request (mostly for a chat room), ChatNav's exchange, room and room-info
#: requests, a chat line's head, or anything).
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
    "email": st.sampled_from(EMAILS),
    "bart upload": st.builds(
        lambda kind, data, lie: (
            struct.pack("!H", kind) + struct.pack("!H", (len(data) + lie) & 0xFFFF) + data
        ),
        mostly(st.sampled_from([1, 0]), u16s),
        icon_data,
        mostly(st.just(0), st.sampled_from([1, -1])),
    ),
    "bart download": st.builds(
        lambda name, command, bart_id: name + bytes((command,)) + bart_id,
        names,
        mostly(st.just(1), u8s),
        bart_ids,
    ),
    "bart download2": st.builds(
        lambda name, count, ids: (
            name + bytes((len(ids) if count is None else count,)) + b"".join(ids)
        ),
        names,
        mostly(st.none(), st.one_of(st.sampled_from([0, 1, 9, 0xFF]), u8s)),
        st.lists(bart_ids, min_size=1, max_size=9),
    ),
    "service": mostly(
        room_refs(room_cookies).map(lambda ref: struct.pack("!H", CHAT) + tlv(0x0001, ref)),
        u16_values(CHAT, CHAT_NAV, 0x0007, 0x000F, 0x0010, 0x0018),
    ),
    "exchange": u16_values(4, 5, 0xFFFF),
    "room request": mostly(room_requests, st.lists(room_requests, max_size=3).map(b"".join)),
    "room info": room_infos(),
    "chat line": st.builds(
        lambda cookie, channel: cookie + struct.pack("!H", channel),
        cookies,
        mostly(st.sampled_from([3, 0xFFFF]), u16s),
    ),
}
any_head = st.sampled_from(sorted(HEADS)).flatmap(HEADS.__getitem__)
#: The head each known handler's body starts with (FAMILIES.md), so that most
#: of its bodies get past the fixed fields. A handler not listed here (a new
#: one) gets every kind of head alike.
LAYOUTS = {
    (0x01, 0x04): "service",
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
    (0x07, 0x02): "none",
    (0x07, 0x04): "none",
    (0x07, 0x06): "none",
    (0x0A, 0x02): "email",
    (0x0D, 0x02): "none",
    (0x0D, 0x03): "exchange",
    (0x0D, 0x04): "room request",
    (0x0D, 0x08): "room info",
    (0x0E, 0x05): "chat line",
    (0x0F, 0x02): "none",
    (0x0F, 0x04): "none",
    (0x10, 0x02): "bart upload",
    (0x10, 0x04): "bart download",
    (0x10, 0x06): "bart download2",
    (0x13, 0x05): "times",
}
#: The TLVs after a head: any tags, with values that fit some BOS handler's
#: reading; for a family with tags of its own, mostly its tags and values;
#: none after an e-mail address (0A,02 reads it to the end of the body);
#: mostly none after a ChatNav request (its head is the whole body).
ANY_TLVS = tlv_lists(st.lists(tags, max_size=4), FITTING_VALUES, st.integers(0, 2))
FAMILY_TLVS = {
    0x07: own_tlv_lists(ADMIN_VALUES),
    0x0A: st.just(b""),
    CHAT_NAV: mostly(st.just(b""), ANY_TLVS),
    CHAT: mostly(chat_tlvs(), own_tlv_lists(CHAT_VALUES)),
    0x0F: own_tlv_lists(ODIR_VALUES),
}
random_bodies = st.binary(max_size=64)
HOW = st.sampled_from(["whole", "whole", "cut", "trailing", "repeated", "long"])


@st.composite
def bodies(
    draw: st.DrawFn, head: st.SearchStrategy[bytes], tlv_strategy: st.SearchStrategy[bytes]
) -> bytes:
    """Random bytes, or a head and TLVs: kept whole, cut short anywhere, with
    garbage after them, or oversize (the TLVs repeated, or one more TLV, up
    to what one frame can carry). (The rare branches on the top value, as
    in ``mostly``.)"""
    if draw(st.integers(0, 5)) == 5:
        return draw(random_bodies)
    start = draw(any_head if draw(quarter) == 3 else head)
    tlvs = draw(tlv_strategy)
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
BODIES = {
    key: bodies(HEADS[layout], FAMILY_TLVS.get(key[0], ANY_TLVS)) for key, layout in LAYOUTS.items()
}
ANY_BODIES = bodies(any_head, ANY_TLVS)


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
    return out + edges_after(starts, (0x01, 0x02, 0x04, 0x05, 0x06, 0x0D))


def service_edge_bodies() -> list[bytes]:
    """The edge bodies of the service connections and the chat connection:
    those of no layout, then the BART heads and a bare TLV list (Admin,
    ODir), each alone, cut by one byte, followed by one TLV as long as a
    frame can carry (of a tag Admin or ODir reads), or by as many empty TLVs
    as fit; the same after ChatNav's heads (an exchange, a room request, a
    room info whose block counts one TLV more) and a chat line's (to the
    room, or a whisper), with the tags they read; and chat lines whose
    text, or charset, fills the frame. (The BOS layouts' heads say nothing
    to these handlers, and cost a whole frame each.)"""
    out = [b"", b"\x00", b"\x00" * MAX_BODY, b"\xff" * MAX_BODY]
    starts = [
        b"",
        struct.pack("!H", 1) + string16(ICON),
        string08(b"carol") + b"\x01" + ICON_ID.pack(),
        string08(b"carol") + b"\x02" + ICON_ID.pack() * 2,
    ]
    chat_starts = [
        struct.pack("!H", 4),
        room_ref(5, b"5-0-" + PUBLIC_ROOM) + b"\x02",
        room_ref(4, b"create", 0xFFFF) + b"\x01" + struct.pack("!H", 2) + tlv(0xD6, b"us-ascii"),
        COOKIE + struct.pack("!H", 3) + tlv(0x06, b"") + tlv(0x01, b""),
        COOKIE + struct.pack("!H", 0xFFFF) + tlv(0x06, b"") + tlv(0x05, tlv(0x01, b"hi")),
    ]
    fill = MAX_BODY - len(chat_line(b""))
    lines = [chat_line(b"x" * fill), chat_line(b"hi", b"c" * (fill + 6))]
    return (
        out
        + edges_after(starts, (0x01, 0x05, 0x0B, 0x11, 0x13))
        + edges_after(chat_starts, (0x01, 0x02, 0x05, 0xD3))
        + lines
    )


def edges_after(starts: list[bytes], long_tags: tuple[int, ...]) -> list[bytes]:
    out = []
    for head in starts:
        out += [head, head[:-1], head + tlv(0x0B, b"") * ((MAX_BODY - len(head)) // 4)]
        for tag in long_tags:
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


def chat_connection(server: AimServer, bos: Wire, cookie: bytes) -> Wire:
    """A chat connection of ``bos``'s session to the private room ``cookie``
    names, opened as a client does (01,04 for 0x000E with the room, the
    01,05's cookie at the chat listener) and ready: it got the roster and the
    room info, and its output is cleared."""
    bos.raw()
    request = struct.pack("!H", CHAT) + tlv(0x0001, room_ref(4, cookie))
    bos.send_snac(0x01, 0x04, request, request_id=0x0104)
    ((header, body),) = bos.snacs()
    assert (header.family, header.subtype) == (0x01, 0x05), header
    login = TlvList.unpack_list(body).get(0x06)
    wire = Wire(server.chat_factory)
    wire.raw()
    wire.signon(Tlv(0x06, login or b""))
    ((header, _),) = wire.snacs()
    assert (header.family, header.subtype) == (0x01, 0x03), header
    wire.send_snac(0x01, 0x02)
    pushed = [(header.family, header.subtype) for header, _ in wire.snacs()]
    assert pushed == [(CHAT, 0x03), (CHAT, 0x02)], pushed
    return wire


#: What each connection must still answer normally once fuzzed, by the family
#: it was opened for (0: BOS; 0x000E: the chat connection): (family, subtype,
#: body, the reply's subtype, bytes the reply carries). Every service
#: connection answers 01,06. ChatNav still finds rooms of both exchanges, and
#: a chat line asking for reflection comes back to its sender.
RATES = (0x01, 0x06, b"", 0x07, b"")
PROBES = {
    0: [(0x01, 0x0E, b"", 0x0F, b""), (0x0A, 0x02, CAROL_EMAIL, 0x03, b"Carol")],
    0x0007: [RATES, (0x07, 0x02, tlv(0x0001, b""), 0x03, b"")],
    0x000F: [
        RATES,
        (0x0F, 0x02, tlv(0x0001, b"carol"), 0x03, b"Carol"),
        (0x0F, 0x04, b"", 0x05, b"chess"),
    ],
    0x0010: [RATES, (0x10, 0x04, Download(b"carol", ICON_ID).pack(), 0x05, ICON)],
    CHAT_NAV: [
        RATES,
        (0x0D, 0x02, b"", 0x09, b"us-ascii"),
        (0x0D, 0x08, room_info(4, b"Probe Room"), 0x09, b"Probe Room"),
        (0x0D, 0x04, room_ref(5, b"5-0-" + PUBLIC_ROOM) + b"\x02", 0x09, PUBLIC_ROOM),
    ],
    CHAT: [RATES, (0x0E, 0x05, chat_line(b"probe line"), 0x06, b"probe line")],
}


class World:
    """A fresh server per example (so a failure replays the same): Alice
    signed on with a BOS connection and a service connection of each kind
    asked for, or of each the server has (``services``, by family); Bob (two
    sessions, one able to take files) and Carol (away) online and watching
    her, so relays, rendezvous, auto-responses, arrivals and lookups have
    somewhere to go. Carol has an e-mail address, a directory record and a
    keyword that searches find, and an icon stored, so that lookups, searches
    and downloads find something. The public room ``PUBLIC_ROOM`` is in the
    store; with ``chat``, Bob's first session, Carol and then Alice have a
    chat connection in the private room ``ROOM`` (Alice's is ``chat``, the
    others' ``members``), so that lines and whispers have somewhere to go."""

    def __init__(self, services: tuple[int, ...] | None = None, chat: bool = False) -> None:
        config = load_config(None, {"ratelimit.enabled": False})
        self.server, self.store, self.clock = make_server(config, ACCOUNTS)
        self.peers = [
            online(self.server, "Bob Smith", b"alice", tlv(0x05, CAPABILITIES[0])),
            online(self.server, "Bob Smith", b"alice"),
            online(self.server, "Carol", b"alice", tlv(0x03, b"text/plain") + tlv(0x04, b"away")),
        ]
        result_of(self.store.set_email("Carol", CAROL_EMAIL.decode()))
        carol = DirectoryFields(first_name=b"Carol", city=b"Springfield", allow_search=True)
        result_of(self.store.set_directory_fields("Carol", carol))
        result_of(self.store.set_interest_keywords("Carol", [b"chess"]))
        result_of(self.store.add_bart_item("Carol", ICON, 0))
        result_of(self.store.create_public_room(PUBLIC_ROOM.decode(), 0))
        self.alice = online(self.server, "Alice", b"bobsmith")
        if services is None:
            services = tuple(sorted(self.server.service_handlers()))
        self.services = {
            family: service_connection(self.server, self.alice, family) for family in services
        }
        cookie = b"4-0-" + ROOM
        self.members = (
            [chat_connection(self.server, peer, cookie) for peer in (self.peers[0], self.peers[2])]
            if chat
            else []
        )
        self.chat = chat_connection(self.server, self.alice, cookie) if chat else None
        for member in self.members:
            member.raw()  # Alice's arrival

    def connections(self) -> list[tuple[int, Wire]]:
        """Alice's connections, with the family each was opened for (0: BOS;
        0x000E: the chat connection)."""
        chat = [] if self.chat is None else [(CHAT, self.chat)]
        return [(0, self.alice), *self.services.items(), *chat]

    def bystanders(self, wire: Wire) -> list[Wire]:
        return [
            *self.peers,
            *self.members,
            *(other for _, other in self.connections() if other is not wire),
        ]


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

    def world(self, services: tuple[int, ...] | None = None, chat: bool = False) -> World:
        self.failures.clear()  # each example starts clean, replays included
        world = World(services, chat)
        self.assertEqual(self.failures, [])
        return world

    # -- checks -------------------------------------------------------------------------

    def fuzz(
        self, world: World, wire: Wire, body_for: Callable[[int, int], bytes], served: int = 0
    ) -> None:
        """``body_for(family, subtype)`` to each handler of ``wire``'s table
        (the table itself, so a new handler is covered), then the probes of
        the family the connection was opened for (``served``, 0: BOS)."""
        table = wire.proto.snac_handlers
        self.assertTrue(table)
        for offset, (family, subtype) in enumerate(sorted(table)):
            body = body_for(family, subtype)
            request_id = FIRST_REQUEST_ID + offset
            wire.send_snac(family, subtype, body, request_id=request_id)
            where = f"{family:02x},{subtype:02x} body {body[:48].hex()} ({len(body)} bytes)"
            answered = self.check_answer(wire, family, request_id, where)
            if family in ANSWERED:
                self.assertTrue(answered, f"no answer to {where}")
            for other in world.bystanders(wire):
                # What was relayed or pushed must be whole frames.
                parse_frames(other.raw())
            for member in world.members:
                self.assertFalse(member.closing, f"a room member closed by {where}")
        for offset, (family, subtype, body, reply, carried) in enumerate(
            PROBES.get(served, [RATES])
        ):
            self.assertIn((family, subtype), table)
            request_id = PROBE_ID + offset
            wire.send_snac(family, subtype, body, request_id=request_id)
            answers = [(h, b) for h, b in self.answers(wire) if h.request_id == request_id]
            what = f"{family:02x},{subtype:02x} after the fuzzing"
            self.assertEqual([(h.family, h.subtype) for h, _ in answers], [(family, reply)], what)
            self.assertIn(carried, answers[0][1], what)
        self.assertEqual(self.failures, [])

    def answers(self, wire: Wire) -> list[tuple[SnacHeader, bytes]]:
        frames = parse_frames(wire.raw())
        self.assertEqual([f.channel for f in frames], [Channel.DATA] * len(frames), frames)
        return [SnacHeader.unpack(f.payload) for f in frames]

    def check_answer(self, wire: Wire, family: int, request_id: int, where: str) -> int:
        """No failure logged, the connection open, and every answer to the
        request carries its ID; an error SNAC is of the request's family,
        and so is every answer of a family in ``REPLY_SUBTYPES``, of one of
        its subtypes. How many answers there were."""
        self.assertEqual(self.failures, [], where)
        self.assertFalse(wire.closing, where)
        replies = REPLY_SUBTYPES.get(family)
        count = 0
        for header, _ in self.answers(wire):
            if header.request_id & 0x80000000:
                continue  # the server's own (arrivals, auto-responses, rate notices)
            self.assertEqual(header.request_id, request_id, where)
            if header.subtype == 0x0001 or replies is not None:
                self.assertEqual(header.family, family, where)
            if replies is not None:
                self.assertIn(header.subtype, {0x0001, *replies}, where)
            count += 1
        return count

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
        entry of ``bos_handlers()``, of each ``service_handlers()`` table
        (Alert, Admin, ODir, BART and ChatNav among them) and of the chat
        listener's table, which has the chat line."""
        world = self.world(chat=True)
        server = world.server
        self.assertEqual(set(world.alice.proto.snac_handlers), set(server.bos_handlers()))
        tables = server.service_handlers()
        self.assertEqual(set(world.services), set(tables))
        self.assertLessEqual({0x0007, CHAT_NAV, 0x000F, 0x0010, 0x0018}, set(world.services))
        for family, (_, table) in tables.items():
            self.assertEqual(set(world.services[family].proto.snac_handlers), set(table))
        self.assertIn((0x0A, 0x02), server.bos_handlers())
        assert world.chat is not None
        self.assertEqual(set(server.chat_factory.services), {CHAT})
        _, chat_table = server.chat_factory.services[CHAT]
        self.assertEqual(set(world.chat.proto.snac_handlers), set(chat_table))
        self.assertIn((CHAT, 0x05), chat_table)

    def test_edge_bodies(self) -> None:
        """Every handler of the BOS and alert tables answers the edge bodies
        (one fresh server per body)."""
        for body in edge_bodies():
            world = self.world(ALERT)
            for served, wire in world.connections():
                self.fuzz(world, wire, lambda family, subtype, body=body: body, served)

    def test_service_edge_bodies(self) -> None:
        """Every handler of every other service connection (Admin, ODir,
        BART, ChatNav, and any the server gains) and of the chat connection
        answers the service edge bodies (one fresh server per body)."""
        for body in service_edge_bodies():
            world = self.world(chat=True)
            for served, wire in world.connections():
                if served not in (0, *ALERT):
                    self.fuzz(world, wire, lambda family, subtype, body=body: body, served)

    @given(st.data())
    def test_random_bodies(self, data: st.DataObject) -> None:
        """Every handler answers any body with replies, nothing or an error
        SNAC, and logs no failure: on Alice's BOS connection, on its alert
        service connection, and on a second session of Alice's that has not
        sent its 01,02 (client ready) yet (the same bodies again)."""
        world = self.world(ALERT)
        body_for = self.drawn(data)
        for served, wire in world.connections():
            self.fuzz(world, wire, body_for, served)
        self.fuzz(world, signed_on_bos(world.server, "Alice"), body_for)

    @settings(max_examples=SERVICE_EXAMPLES)
    @given(st.data())
    def test_random_service_bodies(self, data: st.DataObject) -> None:
        """The same on each other service connection of Alice's (Admin, ODir,
        BART, ChatNav, and any the server gains) and on her chat connection,
        the 01,xx handlers of all of them getting the same bodies."""
        world = self.world(chat=True)
        body_for = self.drawn(data)
        for served, wire in world.connections():
            if served not in (0, *ALERT):
                self.fuzz(world, wire, body_for, served)
