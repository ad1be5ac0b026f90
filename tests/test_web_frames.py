# -*- test-case-name: tests.test_web_frames -*-
"""The browser WebSocket's data-phase framing (``aimserver.web.frames``).

wsproto is the independent oracle: its client builds the masked frames a
browser would send, and reads the frames the server writes. Violations are
built by hand (``client_frame``) since no well-behaved encoder makes them.
"""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from aimserver.web import frames
from aimserver.web.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    FrameReader,
    close_payload,
    frame,
    parse_close,
)

KEY = b"\x37\xfa\x21\x3d"
LIMIT = 65536


def client_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
    width: int | None = None,
) -> bytes:
    """A client frame built independently of the code under test.

    ``length`` declares a length other than the payload's; ``width`` forces the
    length encoding (0 for 7-bit, 2 or 8 bytes extended) to make odd headers.
    """
    n = len(payload) if length is None else length
    if width is None:
        width = 0 if n < 126 else 2 if n < 65536 else 8
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    code = {0: n, 2: 126, 8: 127}[width]
    head += bytes([(0x80 if masked else 0) | code])
    if width == 2:
        head += struct.pack("!H", n)
    elif width == 8:
        head += struct.pack("!Q", n)
    if not masked:
        return head + payload
    return head + KEY + bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))


def feed_all(reader: FrameReader, chunks: list[bytes]) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    for chunk in chunks:
        out.extend(reader.feed(chunk))
    return out


def split(wire: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(wire)]
    return [wire[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


texts = st.one_of(
    st.text(max_size=80),
    st.text(st.characters(min_codepoint=0x80), max_size=40),
    st.text(st.characters(min_codepoint=0x10000), max_size=20),
)
controls = st.tuples(st.sampled_from([OP_PING, OP_PONG]), st.binary(max_size=125))
# Codes a close may carry (1014 too, but wsproto, the oracle, predates it).
close_codes = st.one_of(
    st.sampled_from([1000, 1001, 1002, 1003, 1007, 1011, 1013]), st.integers(3000, 4999)
)


@st.composite
def client_messages(draw: st.DrawFn) -> tuple[int, str | bytes, list, list]:
    """A data message, where it is cut into fragments, and controls between them."""
    data: str | bytes
    if draw(st.booleans()):
        opcode, data = OP_TEXT, draw(texts)
    else:
        opcode, data = OP_BINARY, draw(st.one_of(st.binary(max_size=80), st.binary(max_size=400)))
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=4))
    pieces = [
        data[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(data)], strict=False)
    ]
    between = [draw(st.lists(controls, max_size=2)) for _ in pieces[1:]]
    return opcode, data, pieces, between


def send_control(client: Connection, opcode: int, payload: bytes) -> bytes:
    return client.send(Ping(payload) if opcode == OP_PING else Pong(payload))


class ReaderTestCase(unittest.SynchronousTestCase):
    """Shared by the reader's tests: feeding a fresh reader must fail with a code."""

    def assertFails(self, code: int, *chunks: bytes) -> FrameError:
        reader = FrameReader(LIMIT)
        with self.assertRaises(FrameError) as caught:
            for chunk in chunks:
                reader.feed(chunk)
        self.assertEqual(caught.exception.code, code, caught.exception.reason)
        return caught.exception


class ClientRoundTripTests(ReaderTestCase):
    """What wsproto's client sends comes out of the reader as the same messages."""

    @given(
        st.lists(st.one_of(client_messages(), controls), max_size=6),
        st.none() | st.tuples(close_codes, st.text(max_size=20)),
        st.data(),
    )
    def test_messages_survive_fragmenting_and_chunking(self, items, close, data) -> None:
        client = Connection(ConnectionType.CLIENT)
        wire = b""
        expected: list[tuple[int, bytes]] = []
        for item in items:
            if len(item) == 2:
                wire += send_control(client, *item)
                expected.append(item)
                continue
            opcode, whole, pieces, between = item
            kind = TextMessage if opcode == OP_TEXT else BytesMessage
            for i, piece in enumerate(pieces):
                last = i == len(pieces) - 1
                wire += client.send(kind(data=piece, message_finished=last))
                for control in [] if last else between[i]:
                    wire += send_control(client, *control)
                    expected.append(control)
            expected.append((opcode, whole.encode() if opcode == OP_TEXT else whole))
        if close is not None:
            wire += client.send(CloseConnection(*close))
            expected.append((OP_CLOSE, close_payload(*close)))
        cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=8))
        got = feed_all(FrameReader(1 << 20), split(wire, cuts))
        self.assertEqual(got, expected)
        if close is not None:
            self.assertEqual(parse_close(got[-1][1]), close)

    def test_byte_at_a_time(self) -> None:
        """Every length encoding, fed one byte per call, still comes out whole."""
        client = Connection(ConnectionType.CLIENT)
        wire = client.send(TextMessage(data="h\u00e9llo \U0001f600", message_finished=False))
        wire += client.send(Ping(b"p"))
        wire += client.send(TextMessage(data="!"))
        wire += client.send(BytesMessage(data=bytes(range(256)) * 2))
        wire += client.send(BytesMessage(data=b"\x00" * 70000))
        wire += client.send(Pong(b""))
        wire += client.send(BytesMessage(data=b""))
        reader = FrameReader(1 << 20)
        got = feed_all(reader, [wire[i : i + 1] for i in range(len(wire))])
        self.assertEqual(
            got,
            [
                (OP_PING, b"p"),
                (OP_TEXT, "h\u00e9llo \U0001f600!".encode()),
                (OP_BINARY, bytes(range(256)) * 2),
                (OP_BINARY, b"\x00" * 70000),
                (OP_PONG, b""),
                (OP_BINARY, b""),
            ],
        )

    def test_incomplete_input_waits(self) -> None:
        wire = client_frame(OP_TEXT, b"hello")
        reader = FrameReader(LIMIT)
        self.assertEqual(reader.feed(b""), [])
        self.assertEqual(reader.feed(wire[:3]), [])
        self.assertEqual(reader.feed(wire[3:-1]), [])
        self.assertEqual(reader.feed(wire[-1:] + wire[:1]), [(OP_TEXT, b"hello")])
        self.assertEqual(reader.feed(wire[1:]), [(OP_TEXT, b"hello")])

    def test_empty_payloads(self) -> None:
        wire = b"".join(
            [
                client_frame(OP_TEXT),
                client_frame(OP_BINARY),
                client_frame(OP_PING),
                client_frame(OP_TEXT, fin=False),
                client_frame(OP_CONT, fin=False),
                client_frame(OP_CONT),
                client_frame(OP_CLOSE),
            ]
        )
        self.assertEqual(
            FrameReader(LIMIT).feed(wire),
            [(OP_TEXT, b""), (OP_BINARY, b""), (OP_PING, b""), (OP_TEXT, b""), (OP_CLOSE, b"")],
        )

    def test_message_at_the_limit(self) -> None:
        """65,536 bytes is allowed, whole or in fragments; one more is not."""
        payload = bytes(range(256)) * 256
        self.assertEqual(
            FrameReader(LIMIT).feed(client_frame(OP_BINARY, payload)), [(OP_BINARY, payload)]
        )
        fragmented = client_frame(OP_BINARY, payload[:1000], fin=False)
        fragmented += client_frame(OP_CONT, payload[1000:])
        self.assertEqual(FrameReader(LIMIT).feed(fragmented), [(OP_BINARY, payload)])
        self.assertFails(1009, client_frame(OP_BINARY, payload + b"x"))
        self.assertFails(
            1009, client_frame(OP_BINARY, payload, fin=False) + client_frame(OP_CONT, b"x")
        )

    def test_utf8_split_between_fragments(self) -> None:
        """A character cut between fragments is fine once the message is whole."""
        encoded = "a\U0001f600b".encode()
        wire = client_frame(OP_TEXT, encoded[:3], fin=False) + client_frame(OP_CONT, encoded[3:])
        self.assertEqual(FrameReader(LIMIT).feed(wire), [(OP_TEXT, encoded)])


class ViolationTests(ReaderTestCase):
    """Each rule of RFC 6455 §5 the reader enforces, with the close code it asks for."""

    def test_reserved_bits(self) -> None:
        for rsv in (1, 2, 4, 7):
            self.assertFails(1002, client_frame(OP_TEXT, b"x", rsv=rsv))

    def test_unknown_opcodes(self) -> None:
        for opcode in [*range(3, 8), *range(0xB, 0x10)]:
            self.assertFails(1002, client_frame(opcode, b"x"))

    def test_unmasked_client_frame(self) -> None:
        self.assertFails(1002, client_frame(OP_TEXT, b"hi", masked=False))

    def test_fragmented_control_frame(self) -> None:
        for opcode in (OP_PING, OP_PONG, OP_CLOSE):
            self.assertFails(1002, client_frame(opcode, b"x", fin=False))

    def test_control_frame_too_long(self) -> None:
        self.assertEqual(
            FrameReader(LIMIT).feed(client_frame(OP_PING, b"p" * 125)), [(OP_PING, b"p" * 125)]
        )
        self.assertFails(1002, client_frame(OP_PING, b"p" * 126))
        self.assertFails(1002, client_frame(OP_PONG, b"p" * 10, width=2))

    def test_continuation_with_no_message(self) -> None:
        self.assertFails(1002, client_frame(OP_CONT, b"x"))
        self.assertFails(1002, client_frame(OP_TEXT, b"x") + client_frame(OP_CONT, b"y"))

    def test_new_message_inside_fragmented_one(self) -> None:
        for opcode in (OP_TEXT, OP_BINARY):
            self.assertFails(
                1002, client_frame(OP_BINARY, b"a", fin=False) + client_frame(opcode, b"b")
            )

    def test_length_top_bit_set(self) -> None:
        self.assertFails(1002, client_frame(OP_BINARY, length=1 << 63, width=8)[:10])

    def test_length_not_minimal(self) -> None:
        """Stricter than required: the RFC says senders MUST use the shortest encoding."""
        self.assertFails(1002, client_frame(OP_BINARY, b"x" * 100, width=2))
        self.assertFails(1002, client_frame(OP_BINARY, b"x" * 100, width=8))

    def test_too_big_refused_at_the_header(self) -> None:
        """Only the header arrives: the reader refuses before buffering a payload byte."""
        self.assertFails(1009, client_frame(OP_BINARY, length=LIMIT + 1, width=8)[:10])
        self.assertFails(1009, client_frame(OP_TEXT, length=1 << 40)[:10])
        small = FrameReader(1000)
        with self.assertRaises(FrameError) as caught:
            small.feed(client_frame(OP_TEXT, length=1001)[:4])
        self.assertEqual(caught.exception.code, 1009)

    def test_fragments_too_big_refused_at_the_header(self) -> None:
        first = client_frame(OP_TEXT, b"x" * 60000, fin=False)
        self.assertFails(1009, first, client_frame(OP_CONT, length=LIMIT - 59999)[:4])

    def test_invalid_utf8(self) -> None:
        self.assertFails(1007, client_frame(OP_TEXT, b"\xff"))
        self.assertFails(1007, client_frame(OP_TEXT, "\U0001f600".encode()[:3]))
        self.assertFails(1007, client_frame(OP_TEXT, b"\xed\xa0\x80"))  # a surrogate
        cut = "\U0001f600".encode()
        self.assertFails(
            1007, client_frame(OP_TEXT, cut[:2], fin=False), client_frame(OP_CONT, cut[3:])
        )
        self.assertEqual(
            FrameReader(LIMIT).feed(client_frame(OP_BINARY, b"\xff")), [(OP_BINARY, b"\xff")]
        )

    def test_a_failed_reader_stays_failed(self) -> None:
        reader = FrameReader(LIMIT)
        self.assertRaises(FrameError, reader.feed, client_frame(OP_TEXT, b"x", masked=False))
        with self.assertRaises(FrameError) as caught:
            reader.feed(client_frame(OP_TEXT, b"x"))
        self.assertEqual(caught.exception.code, 1002)


def wsproto_reads(wire: bytes) -> list[tuple[int, bytes]]:
    """What wsproto's client makes of the server's frames, as (opcode, payload)."""
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(wire)
    out: list[tuple[int, bytes]] = []
    partial = b""
    for event in client.events():
        if isinstance(event, TextMessage | BytesMessage):
            data = event.data.encode() if isinstance(event, TextMessage) else event.data
            partial += data
            if event.message_finished:
                out.append((OP_TEXT if isinstance(event, TextMessage) else OP_BINARY, partial))
                partial = b""
        elif isinstance(event, Ping | Pong):
            out.append((OP_PING if isinstance(event, Ping) else OP_PONG, event.payload))
        elif isinstance(event, CloseConnection):
            out.append((OP_CLOSE, close_payload(event.code, event.reason or "")))
        else:
            raise AssertionError(f"unexpected event {event!r}")
    return out


server_items = st.one_of(
    st.tuples(st.just(OP_TEXT), texts.map(str.encode)),
    st.tuples(st.just(OP_BINARY), st.binary(max_size=300)),
    controls,
)


class ServerFrameTests(unittest.SynchronousTestCase):
    """What ``frame`` writes, wsproto's client reads back as the same messages."""

    @given(st.lists(server_items, max_size=8), st.none() | st.tuples(close_codes, texts))
    def test_frames_read_back(self, items, close) -> None:
        if close is not None:
            items = [*items, (OP_CLOSE, close_payload(*close))]
        self.assertEqual(wsproto_reads(b"".join(frame(op, p) for op, p in items)), items)

    def test_every_length_encoding(self) -> None:
        for n in (0, 1, 125, 126, 127, 65535, 65536, 70000):
            payload = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
            wire = frame(OP_BINARY, payload)
            self.assertEqual(len(wire) - n, 2 if n < 126 else 4 if n < 65536 else 10, n)
            self.assertEqual(wsproto_reads(wire), [(OP_BINARY, payload)])

    def test_control_frame_too_long(self) -> None:
        self.assertEqual(frame(OP_PING, b"p" * 125)[:2], b"\x89\x7d")
        self.assertRaises(ValueError, frame, OP_PING, b"p" * 126)


class CloseTests(unittest.SynchronousTestCase):
    @given(close_codes, st.text(max_size=200))
    def test_round_trip_within_125_bytes(self, code: int, reason: str) -> None:
        payload = close_payload(code, reason)
        self.assertLessEqual(len(payload), 125)
        parsed_code, parsed_reason = parse_close(payload)
        self.assertEqual(parsed_code, code)
        self.assertTrue(reason.startswith(parsed_reason))

    def test_truncation_keeps_whole_characters(self) -> None:
        payload = close_payload(1000, "\u00e9" * 100)
        self.assertEqual(payload, b"\x03\xe8" + "\u00e9".encode() * 61)
        self.assertEqual(close_payload(1001, "x" * 200), b"\x03\xe9" + b"x" * 123)
        self.assertEqual(close_payload(1000), b"\x03\xe8")

    def test_parse(self) -> None:
        self.assertEqual(parse_close(b""), (None, ""))
        self.assertEqual(parse_close(b"\x03\xe8"), (1000, ""))
        self.assertEqual(parse_close(b"\x0f\xa0bye \xc3\xa9"), (4000, "bye \u00e9"))

    def test_codes_that_may_not_be_sent(self) -> None:
        for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535):
            with self.assertRaises(FrameError) as caught:
                parse_close(struct.pack("!H", code))
            self.assertEqual(caught.exception.code, 1002, code)
        for code in (1000, 1003, 1007, 1014, 3000, 4999):
            self.assertEqual(parse_close(struct.pack("!H", code)), (code, ""))

    def test_malformed(self) -> None:
        with self.assertRaises(FrameError) as caught:
            parse_close(b"\x03")
        self.assertEqual(caught.exception.code, 1002)
        with self.assertRaises(FrameError) as caught:
            parse_close(b"\x03\xe8\xff")
        self.assertEqual(caught.exception.code, 1007)


class MaskTests(unittest.SynchronousTestCase):
    """Unmasking: the compiled one (``websockets``), when there is one, and
    the pure one it falls back to give RFC 6455 §5.3's XOR byte for byte."""

    @given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
    def test_both_ways_are_the_xor(self, payload: bytes, key: bytes) -> None:
        expected = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.assertEqual(frames.xor_mask(payload, key), expected)
        self.assertEqual(frames.apply_mask(payload, key), expected)

    def test_compiled_one_is_used(self) -> None:
        """``websockets`` is a dependency: its compiled masking is there."""
        self.assertIsNot(frames.apply_mask, frames.xor_mask)

    def test_reader_without_the_compiled_one(self) -> None:
        self.patch(frames, "apply_mask", frames.xor_mask)
        reader = FrameReader(LIMIT)
        self.assertEqual(
            reader.feed(client_frame(OP_TEXT, b"hello there") + client_frame(OP_TEXT, b"")),
            [(OP_TEXT, b"hello there"), (OP_TEXT, b"")],
        )
