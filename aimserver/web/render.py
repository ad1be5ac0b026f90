# -*- test-case-name: tests.test_web_render -*-
"""What the services push, as the browser protocol's events
(docs/web-protocol.md, "Events"), and an IM's text both ways.

Pure: the events are the same values every connection kind gets
(``services/events.py``); this reads their OSCAR fields with the wire codecs
and says what a browser needs. An event the browser has no use for (a chat
roster, a client error report) renders as None and is not sent.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from aimserver.services.events import (
    BuddyArrived,
    BuddyDeparted,
    Event,
    MessageReceived,
    TypingRelayed,
    Warned,
)
from aimserver.wire.errors import MalformedData
from aimserver.wire.icbm import (
    TAG_AUTO_RESPONSE,
    TAG_IM_DATA,
    ClientEvent,
    pack_im_data,
)
from aimserver.wire.screenname import SYSTEM_SENDER, decode_screen_name
from aimserver.wire.userinfo import (
    CLASS_UNAVAILABLE,
    STATUS_AWAY,
    TAG_IDLE_MINUTES,
    TAG_SIGNON_TIME,
    TAG_STATUS,
    TAG_USER_CLASS,
    UserInfo,
)

#: IM text charsets (ICBM channel-1 fragments).
CHARSET_ASCII = 0x0000
CHARSET_UCS2 = 0x0002
CHARSET_LATIN1 = 0x0003
#: 04,14 events by name, both ways.
TYPING_STATES = {0x0000: "none", 0x0001: "typed", 0x0002: "typing"}
TYPING_CODES = {name: code for code, name in TYPING_STATES.items()}

Rendered = tuple[str, dict[str, Any]] | None
_TLV_HEAD = struct.Struct("!HH")


def encode_text(text: str) -> bytes:
    """Channel-1 IM data for ``text``: ASCII when it is, else UCS-2 (what
    AIM 5 and libpurple send for anything else)."""
    if text.isascii():
        return pack_im_data(text.encode("ascii"), CHARSET_ASCII)
    return pack_im_data(text.encode("utf-16-be", "surrogatepass"), CHARSET_UCS2)


def decode_text(im_data: bytes) -> str:
    """The text of channel-1 IM data, every text fragment joined. Charset 0
    is read as UTF-8 when it is (libpurple sends UTF-8 there), else Latin-1.
    Read by slicing, not a ``Reader``: every IM a browser gets comes here."""
    parts = []
    offset, size = 0, len(im_data)
    while offset < size:
        if offset + 4 > size:
            raise MalformedData("IM data: a fragment header is cut")
        start = offset + 4
        end = start + ((im_data[offset + 2] << 8) | im_data[offset + 3])
        if end > size:
            raise MalformedData("IM data: a fragment runs past the end")
        if im_data[offset] == 0x01 and end - start >= 4:
            charset = (im_data[start] << 8) | im_data[start + 1]
            raw = im_data[start + 4 : end]
            if charset == CHARSET_UCS2:
                parts.append(raw.decode("utf-16-be", "replace"))
            elif charset == CHARSET_LATIN1:
                parts.append(raw.decode("latin-1"))
            else:
                try:
                    parts.append(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    parts.append(raw.decode("latin-1"))
        offset = end
    return parts[0] if len(parts) == 1 else "".join(parts)


def buddy_fields(info: UserInfo, now: float) -> dict[str, Any]:
    """What the buddy list shows of a user-info block."""
    tlvs = info.tlvs
    user_class = tlvs.get_u16(TAG_USER_CLASS) if tlvs.has(TAG_USER_CLASS) else 0
    status = 0
    raw_status = tlvs.get(TAG_STATUS)
    if raw_status is not None and len(raw_status) >= 4:
        status = struct.unpack("!I", raw_status[:4])[0]
    idle_minutes = tlvs.get_u16(TAG_IDLE_MINUTES) if tlvs.has(TAG_IDLE_MINUTES) else 0
    signon = tlvs.get(TAG_SIGNON_TIME)
    return {
        "name": info.screen_name,
        "away": bool(user_class & CLASS_UNAVAILABLE or status & STATUS_AWAY),
        "idle_seconds": idle_minutes * 60,
        "warning_level": info.warning_level / 10,
        "signed_on_at": struct.unpack("!I", signon)[0] if signon and len(signon) == 4 else None,
    }


def _message(event: MessageReceived, now: float) -> Rendered:
    """Every IM a browser gets comes here: only the sender's name (the
    user-info block's first field) and two TLVs are read, without building
    the whole block or a TLV list."""
    if event.channel != 1:
        return None  # rendezvous (file transfer, chat invitations): not in the browser yet
    sender = event.sender
    if not sender or len(sender) < 1 + sender[0]:
        raise MalformedData("04,07: the sender's user-info block is cut")
    name = decode_screen_name(sender[1 : 1 + sender[0]])
    if event.text is not None:
        # From a browser: the text it gave, no auto-response (see icbm.send_text_im).
        return (
            "im",
            {"from": name, "text": event.text, "auto_response": False, "system": False},
        )
    data, auto_response = _im_tlvs(event.tlvs)
    if data is None:
        return None
    return (
        "im",
        {
            "from": name,
            "text": decode_text(data),
            "auto_response": auto_response,
            "system": name == SYSTEM_SENDER,
        },
    )


def _im_tlvs(tlvs: bytes) -> tuple[bytes | None, bool]:
    """TLV 0x0002's value (the first) and whether TLV 0x0004 is there."""
    data = None
    auto_response = False
    offset, size = 0, len(tlvs)
    while offset < size:
        if offset + 4 > size:
            raise MalformedData("04,07: a TLV header is cut")
        tag, length = _TLV_HEAD.unpack_from(tlvs, offset)
        end = offset + 4 + length
        if end > size:
            raise MalformedData(f"04,07: TLV 0x{tag:04x} runs past the end")
        if tag == TAG_IM_DATA and data is None:
            data = tlvs[offset + 4 : end]
        elif tag == TAG_AUTO_RESPONSE:
            auto_response = True
        offset = end
    return data, auto_response


def _arrived(event: BuddyArrived, now: float) -> Rendered:
    return "buddy_online", buddy_fields(UserInfo.unpack(event.packed), now)


def _departed(event: BuddyDeparted, now: float) -> Rendered:
    return "buddy_offline", {"name": UserInfo.unpack(event.packed).screen_name}


def _typing(event: TypingRelayed, now: float) -> Rendered:
    relayed = ClientEvent.unpack(event.packed)
    state = TYPING_STATES.get(relayed.event)
    if state is None:
        return None
    return "typing", {"from": relayed.screen_name, "state": state}


def _warned(event: Warned, now: float) -> Rendered:
    by = None if event.warner is None else UserInfo.unpack(event.warner).screen_name
    return "warned", {"level": event.level / 10, "by": by}


_RENDERERS: dict[type, Callable[[Any, float], Rendered]] = {
    MessageReceived: _message,
    BuddyArrived: _arrived,
    BuddyDeparted: _departed,
    TypingRelayed: _typing,
    Warned: _warned,
}


def render(event: Event, now: float) -> Rendered:
    """``(event name, fields)`` for the browser, or None: not for it, or
    unreadable (logged by the caller; the session carries on)."""
    renderer = _RENDERERS.get(type(event))
    if renderer is None:
        return None
    try:
        return renderer(event, now)
    except MalformedData:
        return None
