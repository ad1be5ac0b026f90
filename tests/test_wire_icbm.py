# -*- test-case-name: tests.test_wire_icbm -*-
"""Tests for L{aimserver.wire.icbm}: the ICBM (0x0004) bodies (FAMILIES.md §ICBM),
the hot path's ``split_message`` against the field-by-field reader, and the
charsets of IM data."""

from __future__ import annotations

import struct
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.icbm import charset_of
from aimserver.wire.errors import MalformedData
from aimserver.wire.icbm import (
    COOKIE_SIZE,
    TAG_IM_DATA,
    TAG_REQUEST_HOST_ACK,
    TAG_STORE_IF_OFFLINE,
    TAG_WANT_EVENTS,
    ChannelMessageToHost,
    ClientError,
    ClientEvent,
    HostAck,
    IcbmParameters,
    Rendezvous,
    pack_im_data,
    pack_message_to_client,
    split_message,
)
from aimserver.wire.reader import Reader
from aimserver.wire.screenname import decode_screen_name
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import UserInfo
from tests.fakes_services import ServiceWorld
from tests.strategies import (
    ascii_name_bytes,
    channel_message_bytes,
    channel_messages_to_host,
    client_error_bytes,
    client_errors,
    client_event_bytes,
    client_events,
    fuzz,
    icbm_cookies,
    icbm_parameter_bytes,
    icbm_parameters,
    im_charsets,
    rendezvous_blocks,
    rendezvous_bytes,
    tags,
    u16s,
)

COOKIE = b"12345678"
#: The TLVs of a 04,06 that are for the server only (FAMILIES.md §04,07): host-ack
#: request, store-if-offline, and 0x0B, which only the server adds.
SERVER_ONLY = frozenset({0x0003, 0x0006, 0x000B})

# FAMILIES.md 04,06: "hi" to Bob with a host-ack request.
HI_IM_DATA = bytes.fromhex("05 01 00 04 01 01 01 02  01 01 00 06 00 00 00 00 68 69")
HI_TO_BOB = bytes.fromhex(
    """
    31 32 33 34 35 36 37 38  00 01  03 42 6F 62
    00 02 00 12  05 01 00 04 01 01 01 02  01 01 00 06 00 00 00 00 68 69
    00 03 00 00
    """
)
HI_TO_BOB_MESSAGE = ChannelMessageToHost(
    COOKIE, 1, "Bob", TlvList((Tlv(TAG_IM_DATA, HI_IM_DATA), Tlv.empty(TAG_REQUEST_HOST_ACK)))
)
# The same message's head alone: cookie, channel 1, "Bob" (11 + 3 bytes).
HEAD = HI_TO_BOB[: COOKIE_SIZE + 3 + 3]

# FAMILIES.md 04,07: that message as Bob receives it from Alice.
HI_FROM_ALICE = bytes.fromhex(
    """
    31 32 33 34 35 36 37 38  00 01
    05 41 6C 69 63 65  00 00  00 03
       00 01 00 02 00 10  00 03 00 04 65 00 00 00  00 06 00 04 00 00 00 00
    00 02 00 12 05 01 00 04 01 01 01 02 01 01 00 06 00 00 00 00 68 69
    """
)
ALICE_INFO = UserInfo(
    "Alice", 0, TlvList((Tlv.u16(0x01, 0x0010), Tlv.u32(0x03, 0x65000000), Tlv.u32(0x06, 0)))
)

# FAMILIES.md 04,0C host ack and 04,14 typing begun, bodies.
HOST_ACK_TO_BOB = bytes.fromhex("31 32 33 34 35 36 37 38  00 01  03 42 6F 62")
TYPING_TO_BOB = bytes.fromhex("00 00 00 00 00 00 00 00  00 01  03 42 6F 62  00 02")

# FAMILIES.md §Parameters: Shutko's 04,05 and libpurple's 04,02.
PARAMETER_REPLY = bytes.fromhex("00 02  00 00 00 03  02 00  03 E7  03 E7  00 00 03 E8")
PARAMETER_REPLY_VALUES = IcbmParameters(2, 3, 512, 999, 999, 1000)
ADD_PARAMETERS = bytes.fromhex("00 00  00 00 00 0B  1F 40  03 E7  03 E7  00 00 00 00")
ADD_PARAMETERS_VALUES = IcbmParameters(0, 0x0B, 8000, 999, 999, 0)

# 04,0B: Bob reports a busted payload (reason 2) with two bytes of data.
CLIENT_ERROR = bytes.fromhex("31 32 33 34 35 36 37 38  00 02  03 42 6F 62  00 02  AB CD")

CAP_FILE = bytes.fromhex("09461343 4C7F11D1 82224445 53540000")
# A file-transfer proposal (FAMILIES.md §Channel 2): kind 0, cookie, the send-file
# capability, TLV 0x0A sequence number 1 and TLV 0x0F host check.
PROPOSAL = (
    bytes.fromhex("00 00") + COOKIE + CAP_FILE + bytes.fromhex("00 0A 00 02 00 01  00 0F 00 00")
)
PROPOSAL_VALUE = Rendezvous(0, COOKIE, CAP_FILE, TlvList((Tlv.u16(0x0A, 1), Tlv.empty(0x0F))))


def assert_every_prefix_malformed(
    case: SynchronousTestCase,
    decode: Callable[[bytes], object],
    data: bytes,
    upto: int | None = None,
) -> None:
    """Every prefix of ``data`` shorter than ``upto`` (default: all of it) is MalformedData."""
    for cut in range(len(data) if upto is None else upto):
        try:
            decode(data[:cut])
        except MalformedData:
            continue
        case.fail(f"{cut}-byte prefix of {data.hex()} decoded")


def tlv_boundaries(data: bytes, start: int) -> list[int]:
    """The offsets at which the TLV list starting at ``start`` of ``data``
    could be cut and still be a (shorter) TLV list, read with struct."""
    offsets = [start]
    while offsets[-1] < len(data):
        (length,) = struct.unpack_from("!H", data, offsets[-1] + 2)
        offsets.append(offsets[-1] + 4 + length)
    return offsets


def read_im_data(im_data: bytes) -> list[tuple[int, int, bytes]]:
    """A reference decoder of channel-1 IM data, independent of the packer:
    the fragments as ``(id, version, data)``."""
    reader = Reader(im_data, "IM data")
    fragments = []
    while not reader.at_end():
        fragment_id = reader.u8("fragment ID")
        version = reader.u8("fragment version")
        fragments.append((fragment_id, version, reader.string16("fragment")))
    return fragments


class ChannelMessageToHostTests(SynchronousTestCase):
    """04,06: cookie, channel, string08 recipient, TLV list."""

    def test_known_value(self) -> None:
        """The FAMILIES.md example packs and unpacks both ways."""
        self.assertEqual(HI_TO_BOB_MESSAGE.pack(), HI_TO_BOB)
        self.assertEqual(ChannelMessageToHost.unpack(HI_TO_BOB), HI_TO_BOB_MESSAGE)

    def test_no_tlvs(self) -> None:
        """A message may end right after the recipient (no TLVs at all)."""
        self.assertEqual(ChannelMessageToHost.unpack(HEAD), ChannelMessageToHost(COOKIE, 1, "Bob"))

    def test_truncated(self) -> None:
        """A prefix cut inside the head or inside a TLV is MalformedData; one cut
        between TLVs is the message with the TLVs before the cut."""
        boundaries = tlv_boundaries(HI_TO_BOB, len(HEAD))
        for cut in range(len(HI_TO_BOB) + 1):
            data = HI_TO_BOB[:cut]
            if cut in boundaries:
                message = ChannelMessageToHost.unpack(data)
                self.assertEqual(message.tlvs.pack_list(), data[len(HEAD) :])
            else:
                self.assertRaises(MalformedData, ChannelMessageToHost.unpack, data)

    def test_non_ascii_recipient(self) -> None:
        """A recipient that is not ASCII is malformed."""
        body = COOKIE + b"\x00\x01\x03B\xf6b"
        self.assertRaises(MalformedData, ChannelMessageToHost.unpack, body)

    def test_bad_cookie_refused_when_packing(self) -> None:
        """A cookie that is not 8 bytes is a programming error (ValueError)."""
        self.assertRaises(ValueError, ChannelMessageToHost(b"short", 1, "Bob").pack)

    @given(channel_messages_to_host())
    def test_round_trip(self, message: ChannelMessageToHost) -> None:
        """unpack(pack(x)) == x."""
        self.assertEqual(ChannelMessageToHost.unpack(message.pack()), message)

    @given(channel_message_bytes())
    def test_bytes_round_trip(self, body: bytes) -> None:
        """pack(unpack(b)) == b for a valid body b."""
        self.assertEqual(ChannelMessageToHost.unpack(body).pack(), body)

    @given(fuzz(channel_message_bytes()))
    def test_any_bytes(self, body: bytes) -> None:
        """Any bytes unpack to a message that packs back to them, or are MalformedData."""
        try:
            message = ChannelMessageToHost.unpack(body)
        except MalformedData:
            return
        self.assertEqual(message.pack(), body)


def split_by_fields(body: bytes, not_relayed: frozenset[int]) -> tuple[bytes, int, str, int, bytes]:
    """What ``split_message`` should say, from the field-by-field reader:
    ``(cookie, channel, recipient, tags seen, relayed TLV bytes)``."""
    message = ChannelMessageToHost.unpack(body)
    seen = 0
    for tlv in message.tlvs:
        if tlv.tag < 32:
            seen |= 1 << tlv.tag
    relayed = b"".join(t.pack() for t in message.tlvs if t.tag not in not_relayed)
    return message.cookie, message.channel, message.screen_name, seen, relayed


def split_fast(body: bytes, not_relayed: frozenset[int]) -> tuple[bytes, int, str, int, bytes]:
    """``split_message`` with the name decoded as its caller does (the fast
    path leaves the ASCII check to ``decode_screen_name``)."""
    cookie, channel, raw_name, seen, relayed = split_message(body, not_relayed)
    return cookie, channel, decode_screen_name(raw_name), seen, relayed


def outcome(
    split: Callable[[bytes, frozenset[int]], object], body: bytes, not_relayed: frozenset[int]
) -> object:
    """The split, or ``"MalformedData"``; any other exception escapes (and fails)."""
    try:
        return split(body, not_relayed)
    except MalformedData:
        return "MalformedData"


NOT_RELAYED_SETS = st.one_of(st.just(SERVER_ONLY), st.frozensets(tags, max_size=4))


class SplitMessageTests(SynchronousTestCase):
    """The hot path's split of a 04,06 body (``split_message``)."""

    def test_known_value(self) -> None:
        """The FAMILIES.md example: cookie, channel 1, "Bob", tags 2 and 3 seen,
        and only the IM data relayed (the ack request is for the server)."""
        self.assertEqual(
            split_message(HI_TO_BOB, SERVER_ONLY),
            (COOKIE, 1, b"Bob", (1 << 2) | (1 << 3), bytes.fromhex("00 02 00 12") + HI_IM_DATA),
        )

    def test_server_only_tlvs_cut_out_byte_exact(self) -> None:
        """TLVs 3, 6 and 0x0B are removed wherever they are; the others are
        relayed in order, byte for byte, including repeats and unknown tags."""
        kept = [Tlv(0x02, b"im"), Tlv(0x0D, b"bart"), Tlv(0x02, b"again"), Tlv(0x7777, b"?")]
        dropped = [
            Tlv.empty(TAG_REQUEST_HOST_ACK),
            Tlv.empty(TAG_STORE_IF_OFFLINE),
            Tlv.empty(TAG_WANT_EVENTS),
        ]
        tlvs = [dropped[0], kept[0], kept[1], dropped[1], dropped[2], kept[2], kept[3], dropped[0]]
        body = HEAD + TlvList(tlvs).pack_list()
        _, _, _, seen, relayed = split_message(body, SERVER_ONLY)
        self.assertEqual(relayed, TlvList(kept).pack_list())
        self.assertEqual(seen, (1 << 2) | (1 << 3) | (1 << 6) | (1 << 0x0B) | (1 << 0x0D))

    def test_tags_from_32_not_in_mask(self) -> None:
        """Only tags below 32 have a bit; tag 32 and above set none."""
        body = HEAD + TlvList((Tlv.empty(31), Tlv.empty(32), Tlv.empty(0xFFFF))).pack_list()
        self.assertEqual(split_message(body, frozenset())[3], 1 << 31)

    # -- one test per bounds check: each input is refused by exactly that check --

    def test_head_shorter_than_eleven_bytes(self) -> None:
        """Bounds check 1: a body too short for cookie, channel and the name's
        length byte is MalformedData, for every length from 0 to 10."""
        for size in range(COOKIE_SIZE + 3):
            body = HEAD[:size]
            self.assertRaises(MalformedData, split_message, body, SERVER_ONLY)
            self.assertRaises(MalformedData, ChannelMessageToHost.unpack, body)

    def test_name_runs_past_the_end(self) -> None:
        """Bounds check 2: a name length byte promising more than is left is
        MalformedData (not a shorter name)."""
        for body in [
            COOKIE + b"\x00\x01\x05Bob",
            COOKIE + b"\x00\x01\x01",
            COOKIE + b"\x00\x01\xff" + b"B" * 254,
        ]:
            self.assertRaises(MalformedData, split_message, body, SERVER_ONLY)
            self.assertRaises(MalformedData, ChannelMessageToHost.unpack, body)

    def test_tlv_header_cut(self) -> None:
        """Bounds check 3: one to three bytes after the name or after a whole
        TLV (a TLV header cut short) are MalformedData."""
        im = Tlv(TAG_IM_DATA, HI_IM_DATA).pack()
        for tail in [b"\x00", b"\x00\x02", b"\x00\x02\x00"]:
            for body in [HEAD + tail, HEAD + im + tail]:
                self.assertRaises(MalformedData, split_message, body, SERVER_ONLY)
                self.assertRaises(MalformedData, ChannelMessageToHost.unpack, body)

    def test_tlv_runs_past_the_end(self) -> None:
        """Bounds check 4: a TLV whose length runs past the end of the body is
        MalformedData (not a shorter value), whether relayed or cut out."""
        for body in [
            HEAD + bytes.fromhex("00 02 00 05 68 69"),
            HEAD + bytes.fromhex("00 02 00 01"),
            HEAD + Tlv.empty(TAG_REQUEST_HOST_ACK).pack() + bytes.fromhex("00 02 ff ff 00"),
            HEAD + bytes.fromhex("00 03 00 01"),
        ]:
            self.assertRaises(MalformedData, split_message, body, SERVER_ONLY)
            self.assertRaises(MalformedData, ChannelMessageToHost.unpack, body)

    def test_truncated(self) -> None:
        """Every prefix of the example cut inside the head or inside a TLV is
        MalformedData; one cut between TLVs splits like the field-by-field reader."""
        boundaries = tlv_boundaries(HI_TO_BOB, len(HEAD))
        for cut in range(len(HI_TO_BOB) + 1):
            data = HI_TO_BOB[:cut]
            if cut in boundaries:
                self.assertEqual(split_fast(data, SERVER_ONLY), split_by_fields(data, SERVER_ONLY))
            else:
                self.assertRaises(MalformedData, split_message, data, SERVER_ONLY)

    def test_name_left_raw(self) -> None:
        """The fast path hands the recipient's bytes over undecoded: a name that
        is not ASCII is refused by the caller's ``decode_screen_name``, as the
        field-by-field reader refuses it."""
        body = COOKIE + b"\x00\x01\x03B\xf6b"
        self.assertEqual(split_message(body, SERVER_ONLY)[2], b"B\xf6b")
        self.assertRaises(MalformedData, split_fast, body, SERVER_ONLY)
        self.assertRaises(MalformedData, ChannelMessageToHost.unpack, body)

    @given(channel_message_bytes(), NOT_RELAYED_SETS)
    def test_agrees_with_field_by_field_on_valid_bodies(
        self, body: bytes, not_relayed: frozenset[int]
    ) -> None:
        """On a valid body the fast path says exactly what the TLV objects say."""
        self.assertEqual(split_fast(body, not_relayed), split_by_fields(body, not_relayed))

    @given(fuzz(channel_message_bytes()), NOT_RELAYED_SETS)
    def test_agrees_with_field_by_field_on_any_bytes(
        self, body: bytes, not_relayed: frozenset[int]
    ) -> None:
        """On any bytes both give the same split or both raise MalformedData;
        nothing else (IndexError, struct.error) escapes either."""
        self.assertEqual(
            outcome(split_fast, body, not_relayed), outcome(split_by_fields, body, not_relayed)
        )

    @given(channel_message_bytes(), st.data())
    def test_agrees_on_every_prefix(self, body: bytes, data: st.DataObject) -> None:
        """Any prefix of a valid body: same split, or MalformedData from both."""
        cut = data.draw(st.integers(min_value=0, max_value=len(body)))
        self.assertEqual(
            outcome(split_fast, body[:cut], SERVER_ONLY),
            outcome(split_by_fields, body[:cut], SERVER_ONLY),
        )


class MessageToClientTests(SynchronousTestCase):
    """04,07: cookie, channel, the sender's user-info block, TLVs."""

    def test_known_value(self) -> None:
        """The FAMILIES.md example: the pieces are laid end to end, unchanged."""
        body = pack_message_to_client(
            COOKIE, 1, ALICE_INFO.pack(), Tlv(TAG_IM_DATA, HI_IM_DATA).pack()
        )
        self.assertEqual(body, HI_FROM_ALICE)


class HostAckTests(SynchronousTestCase):
    """04,0C: the head of the 04,06 it acknowledges."""

    def test_known_value(self) -> None:
        """The FAMILIES.md example."""
        self.assertEqual(HostAck(COOKIE, 1, "Bob").pack(), HOST_ACK_TO_BOB)

    def test_is_the_messages_head(self) -> None:
        """The ack is the 04,06's cookie, channel and recipient, as sent."""
        self.assertEqual(HostAck(COOKIE, 1, "Bob").pack(), HEAD)

    @given(icbm_cookies, u16s, ascii_name_bytes())
    def test_matches_hand_built_head(self, cookie: bytes, channel: int, name: bytes) -> None:
        """For any cookie, channel and ASCII name: cookie, u16 channel, string08 name."""
        expected = cookie + struct.pack("!HB", channel, len(name)) + name
        self.assertEqual(HostAck(cookie, channel, name.decode("ascii")).pack(), expected)

    def test_bad_cookie(self) -> None:
        """A cookie that is not 8 bytes is a programming error (ValueError)."""
        self.assertRaises(ValueError, HostAck(b"123456789", 1, "Bob").pack)


class ClientEventTests(SynchronousTestCase):
    """04,14: the ICBM head, then a u16 event."""

    def test_known_value(self) -> None:
        """The FAMILIES.md example, "typing begun" to Bob."""
        event = ClientEvent(b"\x00" * 8, 1, "Bob", 2)
        self.assertEqual(event.pack(), TYPING_TO_BOB)
        self.assertEqual(ClientEvent.unpack(TYPING_TO_BOB), event)

    def test_truncated(self) -> None:
        """Every prefix of the example is MalformedData."""
        assert_every_prefix_malformed(self, ClientEvent.unpack, TYPING_TO_BOB)

    def test_trailing_bytes_ignored(self) -> None:
        """Bytes after the event are not part of it (and not an error)."""
        self.assertEqual(
            ClientEvent.unpack(TYPING_TO_BOB + b"\x99"), ClientEvent.unpack(TYPING_TO_BOB)
        )

    @given(fuzz(client_event_bytes()))
    def test_any_bytes(self, body: bytes) -> None:
        """Any bytes start with an event that packs back to them, or are MalformedData."""
        try:
            event = ClientEvent.unpack(body)
        except MalformedData:
            return
        self.assertEqual(event.pack(), body[: len(event.pack())])
        self.assertEqual(len(event.pack()), COOKIE_SIZE + 3 + body[COOKIE_SIZE + 2] + 2)

    @given(client_events())
    def test_round_trip(self, event: ClientEvent) -> None:
        """unpack(pack(x)) == x."""
        self.assertEqual(ClientEvent.unpack(event.pack()), event)

    @given(client_event_bytes())
    def test_bytes_round_trip(self, body: bytes) -> None:
        """pack(unpack(b)) == b, and every prefix of b is MalformedData."""
        self.assertEqual(ClientEvent.unpack(body).pack(), body)
        assert_every_prefix_malformed(self, ClientEvent.unpack, body)


class ClientErrorTests(SynchronousTestCase):
    """04,0B: the ICBM head, a u16 reason, channel-specific data to the end."""

    def test_known_value(self) -> None:
        """A busted-payload report with two bytes of data, both ways."""
        error = ClientError(COOKIE, 2, "Bob", 2, b"\xab\xcd")
        self.assertEqual(error.pack(), CLIENT_ERROR)
        self.assertEqual(ClientError.unpack(CLIENT_ERROR), error)

    def test_truncated(self) -> None:
        """A prefix without the whole reason is MalformedData; after the reason,
        a cut shortens the data."""
        head_and_reason = COOKIE_SIZE + 2 + 4 + 2
        assert_every_prefix_malformed(self, ClientError.unpack, CLIENT_ERROR, head_and_reason)
        for cut in range(head_and_reason, len(CLIENT_ERROR) + 1):
            self.assertEqual(
                ClientError.unpack(CLIENT_ERROR[:cut]).data, CLIENT_ERROR[head_and_reason:cut]
            )

    @given(client_errors())
    def test_round_trip(self, error: ClientError) -> None:
        """unpack(pack(x)) == x."""
        self.assertEqual(ClientError.unpack(error.pack()), error)

    @given(client_error_bytes())
    def test_bytes_round_trip(self, body: bytes) -> None:
        """pack(unpack(b)) == b."""
        self.assertEqual(ClientError.unpack(body).pack(), body)

    @given(fuzz(client_error_bytes()))
    def test_any_bytes(self, body: bytes) -> None:
        """Any bytes unpack to an error that packs back to them, or are MalformedData."""
        try:
            error = ClientError.unpack(body)
        except MalformedData:
            return
        self.assertEqual(error.pack(), body)


class IcbmParametersTests(SynchronousTestCase):
    """04,02 / 04,05: u16, u32 flags, u16 max length, two u16 warning levels, u32 interval."""

    def test_known_values(self) -> None:
        """The FAMILIES.md 04,05 and 04,02 examples, both ways."""
        for data, value in [
            (PARAMETER_REPLY, PARAMETER_REPLY_VALUES),
            (ADD_PARAMETERS, ADD_PARAMETERS_VALUES),
        ]:
            self.assertEqual(value.pack(), data)
            self.assertEqual(IcbmParameters.unpack(data), value)

    def test_truncated(self) -> None:
        """Every prefix of a 16-byte body is MalformedData."""
        assert_every_prefix_malformed(self, IcbmParameters.unpack, PARAMETER_REPLY)

    @given(icbm_parameters())
    def test_round_trip(self, params: IcbmParameters) -> None:
        """unpack(pack(x)) == x."""
        self.assertEqual(IcbmParameters.unpack(params.pack()), params)

    @given(icbm_parameter_bytes())
    def test_bytes_round_trip(self, body: bytes) -> None:
        """pack(unpack(b)) == b, and every prefix of b is MalformedData."""
        self.assertEqual(IcbmParameters.unpack(body).pack(), body)
        assert_every_prefix_malformed(self, IcbmParameters.unpack, body)

    @given(st.binary(max_size=24))
    def test_any_bytes(self, body: bytes) -> None:
        """Any bytes are parameters (the first 16 of them) or MalformedData."""
        try:
            params = IcbmParameters.unpack(body)
        except MalformedData:
            self.assertLess(len(body), 16)
            return
        self.assertEqual(params.pack(), body[:16])


class RendezvousTests(SynchronousTestCase):
    """TLV 0x05 of a channel-2 ICBM: u16 kind, cookie, capability, TLV list."""

    def test_known_value(self) -> None:
        """A file-transfer proposal, both ways."""
        self.assertEqual(PROPOSAL_VALUE.pack(), PROPOSAL)
        self.assertEqual(Rendezvous.unpack(PROPOSAL), PROPOSAL_VALUE)

    def test_truncated(self) -> None:
        """A prefix cut before the TLVs or inside one is MalformedData; one cut
        between TLVs has the TLVs before the cut."""
        boundaries = tlv_boundaries(PROPOSAL, 2 + 8 + 16)
        for cut in range(len(PROPOSAL) + 1):
            data = PROPOSAL[:cut]
            if cut in boundaries:
                self.assertEqual(Rendezvous.unpack(data).pack(), data)
            else:
                self.assertRaises(MalformedData, Rendezvous.unpack, data)

    @given(rendezvous_blocks())
    def test_round_trip(self, block: Rendezvous) -> None:
        """unpack(pack(x)) == x."""
        self.assertEqual(Rendezvous.unpack(block.pack()), block)

    @given(rendezvous_bytes())
    def test_bytes_round_trip(self, data: bytes) -> None:
        """pack(unpack(b)) == b."""
        self.assertEqual(Rendezvous.unpack(data).pack(), data)

    @given(fuzz(rendezvous_bytes()))
    def test_any_bytes(self, data: bytes) -> None:
        """Any bytes unpack to a block that packs back to them, or are MalformedData."""
        try:
            block = Rendezvous.unpack(data)
        except MalformedData:
            return
        self.assertEqual(block.pack(), data)


class ImDataCharsetTests(SynchronousTestCase):
    """Channel-1 IM data (TLV 0x02) carries text in ASCII (0), UCS-2 (2) or
    Latin-1 (3); the server never decodes it, so every byte must survive."""

    def test_ascii(self) -> None:
        """Charset 0 (ASCII): the FAMILIES.md example "hi"."""
        self.assertEqual(pack_im_data(b"hi"), HI_IM_DATA)
        self.assertEqual(pack_im_data(b"hi", 0x0000, 0x0000), HI_IM_DATA)

    def test_ucs2(self) -> None:
        """Charset 2 (UCS-2 big-endian): "é€" is 4 bytes, the fragment 8 long."""
        text = "\u00e9\u20ac".encode("utf-16-be")
        self.assertEqual(text, bytes.fromhex("00 E9 20 AC"))
        self.assertEqual(
            pack_im_data(text, 0x0002),
            bytes.fromhex("05 01 00 04 01 01 01 02  01 01 00 08 00 02 00 00 00 E9 20 AC"),
        )

    def test_latin1_with_subset(self) -> None:
        """Charset 3 (Latin-1) with subset 0xFFFF: "café" as 4 Latin-1 bytes."""
        self.assertEqual(
            pack_im_data("café".encode("latin-1"), 0x0003, 0xFFFF),
            bytes.fromhex("05 01 00 04 01 01 01 02  01 01 00 08 00 03 FF FF 63 61 66 E9"),
        )

    def test_invalid_utf8_kept(self) -> None:
        """Bytes that are not UTF-8 (nor anything) are packed as they are."""
        self.assertEqual(
            pack_im_data(b"\xc3\x28\xff\x00", 0x0000),
            bytes.fromhex("05 01 00 04 01 01 01 02  01 01 00 08 00 00 00 00 C3 28 FF 00"),
        )

    def test_empty_text(self) -> None:
        """An empty message is a text fragment of 4 bytes: charset and subset only."""
        self.assertEqual(
            pack_im_data(b"", 0x0002),
            bytes.fromhex("05 01 00 04 01 01 01 02  01 01 00 04 00 02 00 00"),
        )

    @given(st.binary(max_size=64), im_charsets, im_charsets)
    def test_fragments(self, text: bytes, charset: int, subset: int) -> None:
        """For any text, charset and subset: a features fragment 0x0501, then
        one text fragment 0x0101 of u16 charset, u16 subset and the text."""
        self.assertEqual(
            read_im_data(pack_im_data(text, charset, subset)),
            [(5, 1, b"\x01\x01\x01\x02"), (1, 1, struct.pack("!HH", charset, subset) + text)],
        )

    def test_relayed_byte_for_byte(self) -> None:
        """A 04,06 whose IM data has UCS-2, Latin-1 and invalid UTF-8 fragments
        relays that TLV unchanged: the split does not look inside it."""
        im_data = (
            pack_im_data("\u00e9".encode("utf-16-be"), 0x0002)
            + bytes.fromhex("01 01 00 06 00 03 00 00 E9 E8")
            + bytes.fromhex("01 01 00 07 00 00 00 00 C3 28 FF")
        )
        tlv = Tlv(TAG_IM_DATA, im_data).pack()
        body = HEAD + tlv + Tlv.empty(TAG_REQUEST_HOST_ACK).pack()
        self.assertEqual(split_message(body, SERVER_ONLY)[4], tlv)
        self.assertEqual(ChannelMessageToHost.unpack(body).tlvs.get(TAG_IM_DATA), im_data)


class CharsetOfTests(SynchronousTestCase):
    """``charset_of``: the IM charset of an away message's MIME type, used for
    the server's auto-responses (FAMILIES.md charset table)."""

    def assert_charsets(self, expected: int, mimes: list[bytes]) -> None:
        for mime in mimes:
            self.assertEqual((mime, charset_of(mime)), (mime, expected))

    def test_ucs2(self) -> None:
        """Unicode, UTF-16 and UCS-2 MIME types are charset 0x0002, in any case,
        quoted or not (AIM 5 says "unicode-2-0")."""
        self.assert_charsets(
            0x0002,
            [
                b'text/aolrtf; charset="unicode-2-0"',
                b"text/aolrtf; charset=unicode-2-0",
                b'text/x-aolrtf; charset="UNICODE-2-0"',
                b'text/aolrtf; charset="utf-16"',
                b'text/aolrtf; charset="UTF-16BE"',
                b"text/plain; charset=utf-16le",
                b'text/aolrtf; charset="ucs-2"',
                b"text/aolrtf; CHARSET=UCS-2",
            ],
        )

    def test_latin1(self) -> None:
        """Latin-1 in its spellings, and windows-1252, are charset 0x0003."""
        self.assert_charsets(
            0x0003,
            [
                b'text/aolrtf; charset="iso-8859-1"',
                b"text/aolrtf; charset=ISO-8859-1",
                b'text/aolrtf; charset="latin1"',
                b'text/aolrtf; charset="Latin-1"',
                b'text/aolrtf; charset="windows-1252"',
            ],
        )

    def test_everything_else_ascii(self) -> None:
        """US-ASCII, no charset at all, an empty type, and charsets with no
        ICBM number (UTF-8, other ISO-8859 parts) are charset 0x0000."""
        self.assert_charsets(
            0x0000,
            [
                b'text/aolrtf; charset="us-ascii"',
                b"text/aolrtf",
                b"",
                b'text/aolrtf; charset="utf-8"',
                b'text/aolrtf; charset="iso-8859-15"',
                b'text/aolrtf; charset="x-unknown"',
            ],
        )


class AutoResponseCharsetTests(SynchronousTestCase):
    """The one place the server writes IM data of its own choosing: the
    auto-response for an away user carries the away message in the charset
    its MIME type names. (A service-tier test, kept beside ``charset_of``'s
    because it checks the same table; it belongs in test_service_icbm.py.)"""

    def auto_response_charset(self, mime: bytes, away: bytes) -> tuple[int, bytes]:
        world = ServiceWorld()
        alice, _ = world.sign_on("Alice")
        carol, connection = world.sign_on("Carol")
        world.set_info(alice, Tlv(0x0003, mime), Tlv(0x0004, away))
        world.send_im(carol, "Alice")
        [response] = connection.messages()
        [_, (fragment_id, _, text)] = read_im_data(response.tlvs.get(TAG_IM_DATA) or b"")
        self.assertEqual(fragment_id, 1)
        (charset,) = struct.unpack_from("!H", text)
        return charset, text[4:]

    def test_ucs2_away_message(self) -> None:
        """A UCS-2 away message is answered as charset 0x0002, its bytes unchanged."""
        away = "\u00e9t\u00e9".encode("utf-16-be")
        self.assertEqual(
            self.auto_response_charset(b'text/aolrtf; charset="unicode-2-0"', away),
            (0x0002, away),
        )

    def test_latin1_away_message(self) -> None:
        """A Latin-1 away message is answered as charset 0x0003."""
        away = "caf\u00e9".encode("latin-1")
        self.assertEqual(
            self.auto_response_charset(b'text/aolrtf; charset="iso-8859-1"', away),
            (0x0003, away),
        )

    def test_ascii_away_message(self) -> None:
        """A US-ASCII away message is answered as charset 0x0000."""
        self.assertEqual(
            self.auto_response_charset(b'text/aolrtf; charset="us-ascii"', b"lunch"),
            (0x0000, b"lunch"),
        )
