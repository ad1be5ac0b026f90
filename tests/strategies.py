"""Hypothesis strategies for wire values, small and composable.

Two kinds: strategies of *values* (``tlvs``, ``user_infos``, ...) to check
``unpack(pack(x)) == x``, and strategies of *bytes* built by hand with
``struct`` (``tlv_bytes``, ``flap_frame_bytes``, ...) so that
``pack(unpack(b)) == b`` is checked against an encoder that is not the one
under test. Sizes are kept small: the properties are about structure, and the
suite must stay fast.
"""

from __future__ import annotations

import string
import struct

from hypothesis import strategies as st

from aimserver.wire.flap import FlapFrame, SignonPayload
from aimserver.wire.snac import FLAG_VERSION_PREFIX, SnacHeader
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import UserInfo

__all__ = [
    "u8s",
    "u16s",
    "u32s",
    "tags",
    "tlv_values",
    "tlvs",
    "tlv_lists",
    "tlv_bytes",
    "tlv_list_bytes",
    "tlv_block_bytes",
    "tlv_lblock_bytes",
    "screen_names",
    "icq_uins",
    "user_infos",
    "user_info_bytes",
    "flap_frames",
    "flap_frame_bytes",
    "signon_payloads",
    "snac_headers",
    "snac_payloads",
    "mangled",
    "fuzz",
]

u8s = st.integers(min_value=0, max_value=0xFF)
u16s = st.integers(min_value=0, max_value=0xFFFF)
u32s = st.integers(min_value=0, max_value=0xFFFFFFFF)

# Small tags make repeated tags (first-wins, ``all``) likely; the rest cover the range.
tags = st.one_of(st.integers(min_value=0, max_value=8), u16s)


def tlv_values(max_size: int = 24) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=max_size)


def tlvs(max_size: int = 24) -> st.SearchStrategy[Tlv]:
    return st.builds(Tlv, tags, tlv_values(max_size))


def tlv_lists(max_tlvs: int = 6) -> st.SearchStrategy[TlvList]:
    return st.lists(tlvs(), max_size=max_tlvs).map(TlvList.of)


def tlv_bytes() -> st.SearchStrategy[bytes]:
    """One TLV on the wire: ``u16 tag, u16 length, value``."""
    return st.tuples(tags, tlv_values()).map(
        lambda tv: struct.pack("!HH", tv[0], len(tv[1])) + tv[1]
    )


def tlv_list_bytes(max_tlvs: int = 6) -> st.SearchStrategy[list[bytes]]:
    """The encoded TLVs of a list, one ``bytes`` per TLV (join them for the list)."""
    return st.lists(tlv_bytes(), max_size=max_tlvs)


def tlv_block_bytes(max_tlvs: int = 6) -> st.SearchStrategy[bytes]:
    """A count-prefixed TLV block."""
    return tlv_list_bytes(max_tlvs).map(lambda raw: struct.pack("!H", len(raw)) + b"".join(raw))


def tlv_lblock_bytes(max_tlvs: int = 6) -> st.SearchStrategy[bytes]:
    """A byte-length-prefixed TLV L-block."""
    return (
        tlv_list_bytes(max_tlvs).map(b"".join).map(lambda body: struct.pack("!H", len(body)) + body)
    )


_ALNUM = string.ascii_letters + string.digits


def screen_names() -> st.SearchStrategy[str]:
    """Valid AIM screen names: a letter, then letters, digits and spaces, not
    ending in a space, 3-16 characters of which at least 3 are not spaces."""
    return st.builds(
        lambda first, middle, last: first + middle + last,
        st.sampled_from(string.ascii_letters),
        st.text(alphabet=_ALNUM + " ", min_size=1, max_size=14),
        st.sampled_from(_ALNUM),
    ).filter(lambda name: len(name.replace(" ", "")) >= 3)


def icq_uins() -> st.SearchStrategy[str]:
    return st.text(alphabet=string.digits, min_size=5, max_size=9)


def user_infos() -> st.SearchStrategy[UserInfo]:
    return st.builds(UserInfo, screen_names(), u16s, tlv_lists())


def user_info_bytes() -> st.SearchStrategy[bytes]:
    """A user-info block: string08 ASCII name (any ASCII, as a decoder sees it),
    u16 warning level, TLV block."""
    return st.builds(
        lambda name, warning, block: (
            bytes((len(name),)) + name + struct.pack("!H", warning) + block
        ),
        st.binary(max_size=20).map(lambda raw: bytes(b & 0x7F for b in raw)),
        u16s,
        tlv_block_bytes(),
    )


def flap_frames(max_payload: int = 64) -> st.SearchStrategy[FlapFrame]:
    return st.builds(FlapFrame, u8s, u16s, st.binary(max_size=max_payload))


def flap_frame_bytes(max_payload: int = 64) -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda channel, sequence, payload: (
            struct.pack("!BBHH", 0x2A, channel, sequence, len(payload)) + payload
        ),
        u8s,
        u16s,
        st.binary(max_size=max_payload),
    )


def signon_payloads() -> st.SearchStrategy[SignonPayload]:
    return st.builds(SignonPayload, u32s, tlv_lists())


def snac_headers(flags: st.SearchStrategy[int] = u16s) -> st.SearchStrategy[SnacHeader]:
    return st.builds(SnacHeader, u16s, u16s, flags, u32s)


def snac_payloads() -> st.SearchStrategy[tuple[bytes, SnacHeader, bytes]]:
    """``(channel-2 payload, its header, its body)``; when the header has flag
    0x8000 the payload carries a version prefix between header and body."""

    def build(header: SnacHeader, prefix: TlvList, body: bytes) -> tuple[bytes, SnacHeader, bytes]:
        raw = header.pack()
        if header.flags & FLAG_VERSION_PREFIX:
            raw += prefix.pack_lblock()
        return raw + body, header, body

    return st.builds(build, snac_headers(), tlv_lists(max_tlvs=2), st.binary(max_size=32))


@st.composite
def mangled(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding, then maybe cut short, one byte changed, or one byte
    inserted: near misses reach deeper into a decoder than random bytes do."""
    data = draw(valid)
    where = draw(st.integers(min_value=0, max_value=len(data)))
    how = draw(st.sampled_from(["keep", "cut", "change", "insert"]))
    if how == "cut":
        return data[:where]
    if how == "change" and where < len(data):
        return data[:where] + bytes((draw(u8s),)) + data[where + 1 :]
    if how == "insert":
        return data[:where] + bytes((draw(u8s),)) + data[where:]
    return data


def fuzz(valid: st.SearchStrategy[bytes], max_size: int = 48) -> st.SearchStrategy[bytes]:
    """Random bytes or near misses of ``valid``: input for "decodes or raises
    MalformedData, nothing else" properties."""
    return st.one_of(st.binary(max_size=max_size), mangled(valid))


# -- ICBM (0x0004) and feedbag (0x0013) bodies ---------------------------------------------
# Imported here rather than at the top so that this block stays an append.

from aimserver.wire.feedbag import WireFeedbagItem  # noqa: E402
from aimserver.wire.icbm import (  # noqa: E402
    ChannelMessageToHost,
    ClientError,
    ClientEvent,
    IcbmParameters,
    Rendezvous,
)

__all__ += [
    "icbm_cookies",
    "ascii_name_bytes",
    "channel_messages_to_host",
    "channel_message_bytes",
    "client_events",
    "client_event_bytes",
    "client_errors",
    "client_error_bytes",
    "icbm_parameters",
    "icbm_parameter_bytes",
    "rendezvous_blocks",
    "rendezvous_bytes",
    "im_charsets",
    "feedbag_items",
    "feedbag_item_bytes",
]

icbm_cookies = st.binary(min_size=8, max_size=8)
_capabilities = st.binary(min_size=16, max_size=16)
#: The three charsets clients use (ASCII, UCS-2, Latin-1), then any u16.
im_charsets = st.one_of(st.sampled_from([0x0000, 0x0002, 0x0003]), u16s)


def ascii_name_bytes(max_size: int = 20) -> st.SearchStrategy[bytes]:
    """A string08 name's bytes as a decoder accepts them: any ASCII."""
    return st.binary(max_size=max_size).map(lambda raw: bytes(b & 0x7F for b in raw))


def _icbm_head(cookie: bytes, channel: int, name: bytes) -> bytes:
    """cookie, u16 channel, string08 name: the head of 04,06, 04,0B, 04,0C and 04,14."""
    return cookie + struct.pack("!HB", channel, len(name)) + name


def channel_messages_to_host() -> st.SearchStrategy[ChannelMessageToHost]:
    return st.builds(ChannelMessageToHost, icbm_cookies, u16s, screen_names(), tlv_lists())


def channel_message_bytes() -> st.SearchStrategy[bytes]:
    """A 04,06 body: cookie, u16 channel, string08 ASCII recipient, TLV list."""
    return st.builds(
        lambda cookie, channel, name, raw: _icbm_head(cookie, channel, name) + b"".join(raw),
        icbm_cookies,
        u16s,
        ascii_name_bytes(),
        tlv_list_bytes(),
    )


def client_events() -> st.SearchStrategy[ClientEvent]:
    return st.builds(ClientEvent, icbm_cookies, u16s, screen_names(), u16s)


def client_event_bytes() -> st.SearchStrategy[bytes]:
    """A 04,14 body: the ICBM head, then a u16 event."""
    return st.builds(
        lambda cookie, channel, name, event: (
            _icbm_head(cookie, channel, name) + struct.pack("!H", event)
        ),
        icbm_cookies,
        u16s,
        ascii_name_bytes(),
        u16s,
    )


def client_errors() -> st.SearchStrategy[ClientError]:
    return st.builds(ClientError, icbm_cookies, u16s, screen_names(), u16s, st.binary(max_size=16))


def client_error_bytes() -> st.SearchStrategy[bytes]:
    """A 04,0B body: the ICBM head, u16 reason, channel-specific data to the end."""
    return st.builds(
        lambda cookie, channel, name, reason, data: (
            _icbm_head(cookie, channel, name) + struct.pack("!H", reason) + data
        ),
        icbm_cookies,
        u16s,
        ascii_name_bytes(),
        u16s,
        st.binary(max_size=16),
    )


def icbm_parameters() -> st.SearchStrategy[IcbmParameters]:
    return st.builds(IcbmParameters, u16s, u32s, u16s, u16s, u16s, u32s)


def icbm_parameter_bytes() -> st.SearchStrategy[bytes]:
    """A 04,02 / 04,05 body: u16, u32 flags, three u16s, u32 interval."""
    return st.tuples(u16s, u32s, u16s, u16s, u16s, u32s).map(
        lambda fields: struct.pack("!HIHHHI", *fields)
    )


def rendezvous_blocks() -> st.SearchStrategy[Rendezvous]:
    return st.builds(Rendezvous, u16s, icbm_cookies, _capabilities, tlv_lists())


def rendezvous_bytes() -> st.SearchStrategy[bytes]:
    """A rendezvous block (TLV 0x05 of a channel-2 ICBM): u16 kind, 8-byte
    cookie, 16-byte capability, TLV list."""
    return st.builds(
        lambda kind, cookie, capability, raw: (
            struct.pack("!H", kind) + cookie + capability + b"".join(raw)
        ),
        u16s,
        icbm_cookies,
        _capabilities,
        tlv_list_bytes(),
    )


def feedbag_items(max_attributes: int = 24) -> st.SearchStrategy[WireFeedbagItem]:
    return st.builds(
        WireFeedbagItem,
        st.binary(max_size=20),
        u16s,
        u16s,
        u16s,
        st.binary(max_size=max_attributes),
    )


def feedbag_item_bytes() -> st.SearchStrategy[bytes]:
    """One feedbag item: string16 name, u16 group ID, u16 item ID, u16 class,
    attributes as an L-block (a real TLV list, or any bytes: the codec keeps
    them opaque)."""
    return st.builds(
        lambda name, ids, attributes: (
            struct.pack("!H", len(name))
            + name
            + struct.pack("!HHHH", *ids, len(attributes))
            + attributes
        ),
        st.binary(max_size=20),
        st.tuples(u16s, u16s, u16s),
        st.one_of(tlv_list_bytes(max_tlvs=3).map(b"".join), st.binary(max_size=24)),
    )


# -- ChatNav (0x000D) and Chat (0x000E) bodies, room names -----------------------------------

from aimserver.wire.chat import ChatMessage, RoomInfo, RoomRef  # noqa: E402
from aimserver.wire.roomname import MAX_ROOM_NAME_LENGTH  # noqa: E402

__all__ += [
    "room_names",
    "room_refs",
    "room_ref_bytes",
    "room_infos",
    "room_info_bytes",
    "chat_messages",
]

#: Printable ASCII but space and "%": what a room name's words are made of.
_ROOM_WORD_CHARACTERS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def room_names() -> st.SearchStrategy[str]:
    """Valid room names in their canonical form: words of printable ASCII
    (no "%") joined by single spaces, 1 to MAX_ROOM_NAME_LENGTH characters."""
    return (
        st.lists(
            st.text(alphabet=_ROOM_WORD_CHARACTERS, min_size=1, max_size=12), min_size=1, max_size=4
        )
        .map(" ".join)
        .filter(lambda name: len(name) <= MAX_ROOM_NAME_LENGTH)
    )


def room_refs() -> st.SearchStrategy[RoomRef]:
    """Any cookie the wire carries (a string08), not only the server's own."""
    return st.builds(RoomRef, u16s, st.binary(max_size=40), u16s)


def room_ref_bytes() -> st.SearchStrategy[bytes]:
    """``u16 exchange | string08 cookie | u16 instance``."""
    return st.builds(
        lambda exchange, cookie, instance: (
            struct.pack("!HB", exchange, len(cookie)) + cookie + struct.pack("!H", instance)
        ),
        u16s,
        st.binary(max_size=40),
        u16s,
    )


def room_infos() -> st.SearchStrategy[RoomInfo]:
    return st.builds(RoomInfo, room_refs(), u8s, tlv_lists())


def room_info_bytes() -> st.SearchStrategy[bytes]:
    """A room reference, u8 detail level, TLV block."""
    return st.builds(
        lambda ref, detail, block: ref + bytes((detail,)) + block,
        room_ref_bytes(),
        u8s,
        tlv_block_bytes(),
    )


def chat_messages() -> st.SearchStrategy[ChatMessage]:
    """0E,05 values; ``message`` is any bytes (the codec keeps it raw)."""
    return st.builds(
        ChatMessage,
        cookie=icbm_cookies,
        channel=u16s,
        to_room=st.booleans(),
        whisper_to=st.one_of(st.none(), ascii_name_bytes()),
        reflect=st.booleans(),
        auto_response=st.booleans(),
        message=st.binary(max_size=48),
    )
