# -*- test-case-name: tests.test_wire_redact -*-
"""What ``[logging] trace_flap`` writes of a frame, with the secrets taken
out: a roasted password is a public XOR of the password, an MD5 login
digest logs in as well as the password does (it is replayed, not
recomputed), and a cookie is a bearer token for a BOS or chat connection.

Their values become ``<N bytes redacted>``; everything else is hex, as
before. Pure: a frame that does not parse is not shown at all (its length
is), since where the secret sits in it cannot be known.
"""

from __future__ import annotations

from aimserver.wire.codes import LoginTag
from aimserver.wire.errors import MalformedData
from aimserver.wire.flap import Channel
from aimserver.wire.snac import SNAC_HEADER_SIZE, SnacHeader
from aimserver.wire.tlv import TlvList

#: TLVs whose values are secrets wherever they are traced.
SECRET_TAGS = frozenset(
    {int(LoginTag.ROASTED_PASSWORD), int(LoginTag.COOKIE), int(LoginTag.PASSWORD_MD5)}
)
#: SNACs whose bodies are a TLV list that may carry them: BUCP (0x17) login
#: and its reply, and 01,05 (a service's address and cookie).
_TLV_SNACS = frozenset({(0x17, 0x02), (0x17, 0x03), (0x01, 0x05)})
#: A FLAP sign-on frame: a u32 version, then TLVs (a login or a cookie); a
#: sign-off frame: TLVs only.
_VERSION_SIZE = 4


def trace_text(channel: int, payload: bytes) -> str:
    """The payload of one FLAP frame as a trace shows it."""
    try:
        if channel == Channel.SIGNON and len(payload) > _VERSION_SIZE:
            return payload[:_VERSION_SIZE].hex() + _tlvs(payload[_VERSION_SIZE:])
        if channel == Channel.SIGNOFF and payload:
            # TLVs: a roasted login's answer carries the BOS cookie.
            return _tlvs(payload).lstrip()
        if channel == Channel.DATA and len(payload) >= SNAC_HEADER_SIZE:
            header, body = SnacHeader.unpack(payload)
            if (header.family, header.subtype) in _TLV_SNACS and body:
                return payload[: len(payload) - len(body)].hex() + _tlvs(body)
    except MalformedData:
        return f"<{len(payload)} bytes, not parsed: not shown>"
    return payload.hex()


def _tlvs(data: bytes) -> str:
    parts = []
    for tlv in TlvList.unpack_list(data, "traced TLVs"):
        head = tlv.tag.to_bytes(2, "big") + len(tlv.value).to_bytes(2, "big")
        if tlv.tag in SECRET_TAGS:
            parts.append(f" {head.hex()}<{len(tlv.value)} bytes redacted>")
        else:
            parts.append(" " + head.hex() + tlv.value.hex())
    return "".join(parts)
