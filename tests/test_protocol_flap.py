"""The FLAP connection every service shares (``aimserver.protocols.flap``):
framing, sequence numbers, garbage handling, SNAC dispatch and error replies,
keepalives, the login timeout and the slow-reader cut-off.

Most tests drive ``ToyConnection`` (``tests/fakes.py``), a FLAP service whose
handlers behave in known ways; a few check that the real auth and BOS
listeners greet the same way. No sockets, no wall clock: ``StringTransport``
and ``task.Clock``.
"""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from aimserver.protocols import flap as flap_module
from aimserver.protocols.flap import ConnectionSettings
from aimserver.services.base import Reply
from aimserver.wire.flap import Channel
from aimserver.wire.snac import pack_snac
from aimserver.wire.tlv import Tlv
from tests.fakes import (
    HELLO_PAYLOAD,
    ToyFactory,
    Wire,
    chunked,
    frame,
    make_server,
    parse_frames,
    signon_frame,
    snac_frame,
)

OK = Tlv(0x06, b"ok")
# Equal limits: the chunking properties are about framing, not the limit switch
# at authentication (which has its own test).
EVEN_LIMITS = ConnectionSettings(max_frame_size=4096, max_unauthenticated_frame_size=4096)


class FixedRandom:
    """Stands in for the ``random`` module to pick the first sequence number."""

    def __init__(self, start: int) -> None:
        self.start = start

    def randint(self, a: int, b: int) -> int:
        assert a <= self.start <= b
        return self.start


def toy(settings: ConnectionSettings | None = None) -> Wire:
    return Wire(ToyFactory(settings))


def signed_on_toy(settings: ConnectionSettings | None = None) -> Wire:
    wire = toy(settings)
    wire.signon(OK)
    wire.raw()
    return wire


def echo_stream() -> bytes:
    """A valid client stream: sign-on, then SNACs, a keepalive and a short SNAC."""
    return b"".join(
        [
            signon_frame(OK),
            snac_frame(0x0A, 0x02, b"first", request_id=11),
            frame(Channel.KEEP_ALIVE),
            snac_frame(0x0A, 0x02, b"x" * 300, request_id=12),
            frame(Channel.DATA, b"\x00\x0a\x00"),
            snac_frame(0x0B, 0x09, b"", request_id=13),
            snac_frame(0x0A, 0x02, b"", request_id=14),
        ]
    )


def replies_to(stream: bytes, chunks: list[bytes] | None = None) -> tuple[list[bytes], bool]:
    """Payloads and channels the toy server writes after its hello for
    ``stream`` (fed whole, or in ``chunks``), and whether it is closing."""
    wire = toy(EVEN_LIMITS)
    wire.raw()
    wire.feed_chunks(chunks if chunks is not None else [stream])
    return [bytes([f.channel]) + f.payload for f in wire.frames()], wire.closing


class HelloTests(SynchronousTestCase):
    def test_hello_is_sent_first(self) -> None:
        """On accept, before the client says anything, the server sends the
        10-byte FLAP hello: 2A 01, a sequence number, length 4, version 1."""
        wire = toy()
        data = wire.raw()
        self.assertEqual(len(data), 10)
        self.assertEqual(data[:2], b"\x2a\x01")
        self.assertEqual(data[4:], b"\x00\x04" + HELLO_PAYLOAD)
        self.assertFalse(wire.closing)

    def test_real_listeners_greet_the_same_way(self) -> None:
        """The auth and BOS listeners both open with the bare hello and
        nothing else."""
        server, _, _ = make_server()
        for factory in (server.auth_factory, server.bos_factory):
            data = Wire(factory).raw()
            self.assertEqual((data[:2], data[4:]), (b"\x2a\x01", b"\x00\x04" + HELLO_PAYLOAD))

    def test_sequence_numbers_increase_by_one_and_wrap(self) -> None:
        """Each frame the server sends carries the previous sequence number
        plus one, and after 0x7FFF comes 0."""
        self.patch(flap_module, "random", FixedRandom(0x7FFD))
        wire = toy()
        wire.signon(OK)
        for request_id in range(4):
            wire.send_snac(0x0A, 0x02, b"", request_id=request_id)
        sequences = [f.sequence for f in wire.frames()]
        self.assertEqual(sequences, [0x7FFD, 0x7FFE, 0x7FFF, 0x0000, 0x0001])

    def test_sequence_start_is_in_range(self) -> None:
        """The random first sequence number is within 0..0x7FFF."""
        for _ in range(50):
            (hello,) = toy().frames()
            self.assertTrue(0 <= hello.sequence <= 0x7FFF)


class GarbageTests(SynchronousTestCase):
    def assert_closed_with_signoff(self, wire: Wire) -> None:
        frames = wire.frames()
        self.assertEqual(frames[-1].channel, Channel.SIGNOFF)
        self.assertEqual(frames[-1].payload, b"")
        self.assertTrue(wire.closing)

    def test_wrong_start_byte_closes(self) -> None:
        """Bytes that do not start with 0x2A are answered with a channel-4
        frame, then the connection closes."""
        wire = toy()
        wire.raw()
        wire.feed(b"GET / HTTP/1.0\r\n\r\n")
        self.assert_closed_with_signoff(wire)

    def test_wrong_start_byte_after_a_good_frame_closes(self) -> None:
        """A valid frame followed by garbage: the frame is handled, then the
        garbage closes the connection."""
        wire = signed_on_toy()
        wire.feed(snac_frame(0x0A, 0x02, b"hi", request_id=3) + b"\x00garbage")
        frames = wire.frames()
        self.assertEqual(frames[0].payload, pack_snac(0x0A, 0x03, b"hi", 3))
        self.assertEqual([f.channel for f in frames[1:]], [Channel.SIGNOFF])
        self.assertTrue(wire.closing)

    def test_garbage_after_close_is_ignored(self) -> None:
        """Once closing, nothing more is read or answered."""
        wire = toy()
        wire.feed(b"\x00")
        wire.raw()
        wire.feed(signon_frame(OK) + snac_frame(0x0A, 0x02, b"x"))
        self.assertEqual(wire.raw(), b"")

    def test_oversize_frame_before_authentication_closes(self) -> None:
        """Before sign-on is accepted, a frame longer than the unauthenticated
        limit is refused by its header alone: channel 4, close."""
        wire = toy(ConnectionSettings(max_frame_size=8192, max_unauthenticated_frame_size=100))
        wire.raw()
        wire.feed(b"\x2a\x02\x00\x01\x00\x65")  # 101 bytes announced, none sent
        self.assert_closed_with_signoff(wire)

    def test_frame_at_the_unauthenticated_limit_is_read(self) -> None:
        """A frame exactly at the unauthenticated limit is accepted."""
        wire = toy(ConnectionSettings(max_frame_size=8192, max_unauthenticated_frame_size=100))
        wire.raw()
        wire.feed(frame(Channel.KEEP_ALIVE, b"k" * 100))
        self.assertEqual(wire.raw(), b"")
        self.assertFalse(wire.closing)

    def test_large_frame_after_authentication_is_read(self) -> None:
        """Once authenticated, frames up to max_frame_size are accepted."""
        wire = toy(ConnectionSettings(max_frame_size=8192, max_unauthenticated_frame_size=100))
        wire.signon(OK)
        wire.raw()
        body = b"b" * (8192 - 10)
        wire.send_snac(0x0A, 0x02, body, request_id=5)
        (reply,) = wire.frames()
        self.assertEqual(reply.payload, pack_snac(0x0A, 0x03, body, 5))

    def test_oversize_frame_after_authentication_closes(self) -> None:
        """Once authenticated, a frame over max_frame_size closes with channel 4."""
        wire = toy(ConnectionSettings(max_frame_size=8192, max_unauthenticated_frame_size=100))
        wire.signon(OK)
        wire.raw()
        wire.feed(b"\x2a\x02\x00\x01" + struct.pack("!H", 8193))
        self.assert_closed_with_signoff(wire)

    def test_frame_limit_follows_authentication_within_one_read(self) -> None:
        """A sign-on frame and a large SNAC arriving in the same TCP read are
        treated as they would be in two reads: the SNAC after the accepted
        sign-on is under the authenticated limit and gets its reply."""
        settings = ConnectionSettings(max_frame_size=8192, max_unauthenticated_frame_size=100)
        body = b"b" * 500
        stream = signon_frame(OK) + snac_frame(0x0A, 0x02, body, request_id=6)

        apart = toy(settings)
        apart.raw()
        apart.feed_chunks([signon_frame(OK), snac_frame(0x0A, 0x02, body, request_id=6)])
        self.assertEqual([f.payload for f in apart.frames()], [pack_snac(0x0A, 0x03, body, 6)])

        together = toy(settings)
        together.raw()
        together.feed(stream)
        self.assertEqual([f.payload for f in together.frames()], [pack_snac(0x0A, 0x03, body, 6)])
        self.assertFalse(together.closing)

    def test_truncated_frame_is_held(self) -> None:
        """Part of a frame gets no reply and no close; the rest completes it."""
        wire = signed_on_toy()
        data = snac_frame(0x0A, 0x02, b"abc", request_id=9)
        for cut in (1, 5, 6, len(data) - 1):
            wire.feed(data[:cut])
            self.assertEqual(wire.raw(), b"")
            self.assertFalse(wire.closing)
            wire.feed(data[cut:])
            (reply,) = wire.frames()
            self.assertEqual(reply.payload, pack_snac(0x0A, 0x03, b"abc", 9))

    def test_every_two_way_split_gives_the_same_replies(self) -> None:
        """A valid stream cut in two at any byte gives the same replies as
        the stream in one piece."""
        stream = echo_stream()
        whole = replies_to(stream)
        self.assertEqual(len(whole[0]), 4)
        for cut in range(1, len(stream)):
            self.assertEqual(replies_to(stream, [stream[:cut], stream[cut:]]), whole)

    @given(st.lists(st.integers(min_value=0, max_value=400), max_size=30))
    def test_random_chunkings_give_the_same_replies(self, cuts: list[int]) -> None:
        """However TCP splits a valid stream, the replies are the same."""
        stream = echo_stream()
        self.assertEqual(replies_to(stream, chunked(stream, cuts)), replies_to(stream))

    def test_byte_by_byte_gives_the_same_replies(self) -> None:
        """A client that dribbles one byte at a time is understood."""
        stream = echo_stream()
        bytewise = [stream[i : i + 1] for i in range(len(stream))]
        self.assertEqual(replies_to(stream, bytewise), replies_to(stream))

    @given(
        st.lists(
            st.one_of(
                st.binary(max_size=40),
                st.builds(
                    lambda channel, sequence, payload, extra: (
                        b"\x2a"
                        + bytes([channel])
                        + struct.pack("!HH", sequence, len(payload) + extra)
                        + payload
                    ),
                    st.integers(0, 7),
                    st.integers(0, 0xFFFF),
                    st.binary(max_size=60),
                    st.sampled_from([0, 0, 0, 1, 5, 5000]),
                ),
                st.sampled_from([signon_frame(OK), snac_frame(0x0A, 0x02, b"e")]),
            ),
            max_size=8,
        ),
        st.lists(st.integers(min_value=0, max_value=600), max_size=10),
    )
    def test_garbage_in_any_chunking_closes_cleanly(
        self, pieces: list[bytes], cuts: list[int]
    ) -> None:
        """Random bytes and half-valid frames, split anyhow: nothing escapes
        dataReceived, the server writes only whole frames, any chunking gives
        the same output, and a connection the server closes got a channel-4
        frame last (unless the client itself signed off)."""
        stream = b"".join(pieces)
        whole_out, whole_closing = replies_to(stream)
        out, closing = replies_to(stream, chunked(stream, cuts))
        self.assertEqual((out, closing), (whole_out, whole_closing))
        if closing and out and out[-1][0] != Channel.SIGNOFF:
            # Only a client's own channel 4 closes without our channel 4.
            self.assertIn(b"\x2a\x04", stream)
        self.flushLoggedErrors(ZeroDivisionError)


class ChannelTests(SynchronousTestCase):
    def test_snac_before_signon_closes(self) -> None:
        """A SNAC before the client's channel-1 frame closes with channel 4."""
        wire = toy()
        wire.raw()
        wire.send_snac(0x0A, 0x02, b"x")
        self.assertEqual([f.channel for f in wire.frames()], [Channel.SIGNOFF])
        self.assertTrue(wire.closing)

    def test_second_signon_closes(self) -> None:
        """A second channel-1 frame closes with channel 4."""
        wire = signed_on_toy()
        wire.signon(OK)
        self.assertEqual([f.channel for f in wire.frames()], [Channel.SIGNOFF])
        self.assertTrue(wire.closing)

    def test_malformed_signon_closes(self) -> None:
        """A channel-1 frame too short for its version word closes."""
        wire = toy()
        wire.raw()
        wire.feed(frame(Channel.SIGNON, b"\x00\x00"))
        self.assertEqual([f.channel for f in wire.frames()], [Channel.SIGNOFF])
        self.assertTrue(wire.closing)

    def test_channel_3_and_unknown_channels_close(self) -> None:
        """Channel 3 from a client, or a channel FLAP does not define, closes
        with channel 4, before or after sign-on."""
        for channel in (0, 3, 6, 0x7F, 0xFF):
            for signed_on in (False, True):
                wire = signed_on_toy() if signed_on else toy()
                wire.raw()
                wire.feed(frame(channel, b"\x00\x01"))
                self.assertEqual(
                    [f.channel for f in wire.frames()], [Channel.SIGNOFF], (channel, signed_on)
                )
                self.assertTrue(wire.closing)

    def test_keepalive_is_ignored(self) -> None:
        """A channel-5 keepalive gets no answer and keeps the connection,
        before and after sign-on."""
        wire = toy()
        wire.raw()
        wire.feed(frame(Channel.KEEP_ALIVE) + frame(Channel.KEEP_ALIVE, b"junk"))
        wire.signon(OK)
        wire.feed(frame(Channel.KEEP_ALIVE))
        self.assertEqual(wire.raw(), b"")
        self.assertFalse(wire.closing)

    def test_client_signoff_closes_without_reply(self) -> None:
        """A client's channel-4 frame ends the connection; the server sends
        nothing back."""
        for signed_on in (False, True):
            wire = signed_on_toy() if signed_on else toy()
            wire.raw()
            wire.feed(frame(Channel.SIGNOFF))
            self.assertEqual(wire.raw(), b"")
            self.assertTrue(wire.closing)


class SnacDispatchTests(SynchronousTestCase):
    def test_short_snac_is_ignored(self) -> None:
        """A channel-2 payload shorter than a SNAC header is ignored: no
        answer, no close."""
        wire = signed_on_toy()
        for size in range(10):
            wire.feed(frame(Channel.DATA, b"\x00\x0a\x00\x02\x00\x00\x00\x00\x00\x07"[:size]))
        self.assertEqual(wire.raw(), b"")
        self.assertFalse(wire.closing)

    def test_known_snac_is_answered_with_the_request_id(self) -> None:
        """A handled SNAC's reply carries the request's ID."""
        wire = signed_on_toy()
        wire.send_snac(0x0A, 0x02, b"ping", request_id=0xCAFEBABE)
        (reply,) = wire.frames()
        self.assertEqual(reply.channel, Channel.DATA)
        self.assertEqual(reply.payload, pack_snac(0x0A, 0x03, b"ping", 0xCAFEBABE))

    def test_unknown_snac_gets_invalid_snac_error(self) -> None:
        """An unknown subtype or family is answered ``family,01`` code 0x0001
        with the same request ID, and the connection stays open."""
        wire = signed_on_toy()
        wire.send_snac(0x0A, 0x99, b"body", request_id=0x18)
        wire.send_snac(0x42, 0x02, b"", request_id=0x19)
        self.assertEqual(
            [f.payload for f in wire.frames()],
            [pack_snac(0x0A, 0x01, b"\x00\x01", 0x18), pack_snac(0x42, 0x01, b"\x00\x01", 0x19)],
        )
        self.assertFalse(wire.closing)
        wire.send_snac(0x0A, 0x02, b"still here", request_id=1)
        self.assertEqual(len(wire.frames()), 1)

    def test_version_prefix_is_skipped(self) -> None:
        """With SNAC flag 0x8000 the length-prefixed block before the body is
        skipped, so the handler sees the real body."""
        wire = signed_on_toy()
        prefix = b"\x00\x06" + Tlv.u16(0x0001, 3).pack()
        wire.send_snac(0x0A, 0x02, prefix + b"body", request_id=4, flags=0x8000)
        (reply,) = wire.frames()
        self.assertEqual(reply.payload, pack_snac(0x0A, 0x03, b"body", 4))

    def test_bad_version_prefix_gets_busted_payload_error(self) -> None:
        """Flag 0x8000 with a prefix longer than the SNAC is answered with
        error 0x000E (busted payload), same request ID; still connected."""
        wire = signed_on_toy()
        for body in (b"", b"\x00", b"\x00\x09abc"):
            wire.send_snac(0x0A, 0x02, body, request_id=0x33, flags=0x8000)
            (reply,) = wire.frames()
            self.assertEqual(reply.payload, pack_snac(0x0A, 0x01, b"\x00\x0e", 0x33))
        self.assertFalse(wire.closing)

    def test_client_error_snacs_are_never_answered(self) -> None:
        """A client's ``xx,01`` error SNAC, of any family, gets no reply (two
        peers answering each other's errors would loop)."""
        wire = signed_on_toy()
        for family in (0x01, 0x0A, 0x42):
            wire.send_snac(family, 0x01, b"\x00\x01", request_id=2)
        self.assertEqual(wire.raw(), b"")
        self.assertFalse(wire.closing)

    def test_client_error_snac_with_bad_prefix_is_not_answered(self) -> None:
        """A client's error SNAC with flag 0x8000 and a broken prefix is still
        an error SNAC: it gets no reply either."""
        wire = signed_on_toy()
        wire.send_snac(0x0A, 0x01, b"\x00\x09", request_id=2, flags=0x8000)
        self.assertEqual(wire.frames(), [])
        self.assertFalse(wire.closing)

    def test_handler_bug_is_logged_and_answered(self) -> None:
        """A handler that raises a bug is logged, the request is answered
        0x0005 (service unavailable), and the connection stays open."""
        wire = signed_on_toy()
        wire.send_snac(0x0A, 0x04, b"", request_id=0x77)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        (reply,) = wire.frames()
        self.assertEqual(reply.payload, pack_snac(0x0A, 0x01, b"\x00\x05", 0x77))
        self.assertFalse(wire.closing)
        wire.send_snac(0x0A, 0x02, b"ok", request_id=0x78)
        self.assertEqual([f.payload for f in wire.frames()], [pack_snac(0x0A, 0x03, b"ok", 0x78)])

    def test_snac_error_becomes_its_error_reply(self) -> None:
        """A handler's declared refusal is answered with its code and the
        subcode in TLV 0x0008."""
        wire = signed_on_toy()
        wire.send_snac(0x0A, 0x05, b"", request_id=0x10)
        (reply,) = wire.frames()
        self.assertEqual(
            reply.payload, pack_snac(0x0A, 0x01, b"\x00\x0d" + Tlv.u16(8, 7).pack(), 0x10)
        )
        self.assertFalse(wire.closing)

    def test_unparseable_body_gets_busted_payload_error(self) -> None:
        """A body the handler cannot parse is answered 0x000E, not a disconnect."""
        wire = signed_on_toy()
        wire.send_snac(0x0A, 0x06, b"", request_id=0x11)
        (reply,) = wire.frames()
        self.assertEqual(reply.payload, pack_snac(0x0A, 0x01, b"\x00\x0e", 0x11))
        self.assertFalse(wire.closing)

    def test_snacs_wait_for_a_pending_handler(self) -> None:
        """While a handler's Deferred is pending, later SNACs of the connection
        wait; they are handled in order once it fires."""
        wire = signed_on_toy()
        pending: defer.Deferred[object] = defer.Deferred()
        wire.factory.pending.append(pending)
        wire.feed(
            snac_frame(0x0A, 0x07, b"", request_id=1) + snac_frame(0x0A, 0x02, b"a", request_id=2)
        )
        wire.send_snac(0x0A, 0x02, b"b", request_id=3)
        self.assertEqual(wire.raw(), b"")
        self.assertEqual(wire.factory.seen, [1])
        pending.callback([Reply(0x0A, 0x08, b"done")])
        self.assertEqual(wire.factory.seen, [1, 2, 3])
        self.assertEqual(
            [f.payload for f in wire.frames()],
            [
                pack_snac(0x0A, 0x08, b"done", 1),
                pack_snac(0x0A, 0x03, b"a", 2),
                pack_snac(0x0A, 0x03, b"b", 3),
            ],
        )

    def test_pending_handler_failure_is_logged_and_answered(self) -> None:
        """A handler's Deferred that fails with a bug is logged and answered
        0x0005; the SNACs held behind it are then handled."""
        wire = signed_on_toy()
        pending: defer.Deferred[object] = defer.Deferred()
        wire.factory.pending.append(pending)
        wire.send_snac(0x0A, 0x07, b"", request_id=1)
        wire.send_snac(0x0A, 0x02, b"a", request_id=2)
        pending.errback(ZeroDivisionError("late bug"))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(
            [f.payload for f in wire.frames()],
            [pack_snac(0x0A, 0x01, b"\x00\x05", 1), pack_snac(0x0A, 0x03, b"a", 2)],
        )
        self.assertFalse(wire.closing)

    def test_too_many_held_frames_close(self) -> None:
        """A client that floods frames while a handler is pending is closed,
        rather than buffered without bound."""
        wire = signed_on_toy()
        wire.factory.pending.append(defer.Deferred())
        wire.send_snac(0x0A, 0x07, b"", request_id=1)
        flood = frame(Channel.KEEP_ALIVE) * flap_module.MAX_QUEUED_FRAMES
        wire.feed(flood)
        self.assertFalse(wire.closing)
        wire.feed(frame(Channel.KEEP_ALIVE))
        self.assertEqual([f.channel for f in wire.frames()], [Channel.SIGNOFF])
        self.assertTrue(wire.closing)

    def test_held_frames_are_bounded_in_bytes_too(self) -> None:
        """Fewer frames than the count allows, but big ones: past
        MAX_QUEUED_BYTES held the connection is closed (256 frames of up to
        64 KiB would otherwise hold 16 MiB for one client)."""
        wire = signed_on_toy()
        wire.factory.pending.append(defer.Deferred())
        wire.send_snac(0x0A, 0x07, b"", request_id=1)
        big = frame(Channel.KEEP_ALIVE, b"x" * 60_000)
        held = flap_module.MAX_QUEUED_BYTES // 60_000
        self.assertLess(held, flap_module.MAX_QUEUED_FRAMES)
        wire.feed(big * held)
        self.assertFalse(wire.closing)
        wire.feed(big)
        self.assertEqual([f.channel for f in wire.frames()], [Channel.SIGNOFF])
        self.assertTrue(wire.closing)

    def test_held_bytes_are_counted_down_as_frames_are_handled(self) -> None:
        """Once the pending handler answers, the held frames are handled and
        no longer count: the same amount may be held again."""
        wire = signed_on_toy()
        for _ in range(3):
            pending: defer.Deferred[object] = defer.Deferred()
            wire.factory.pending.append(pending)
            wire.send_snac(0x0A, 0x07, b"", request_id=1)
            big = frame(Channel.KEEP_ALIVE, b"x" * 60_000)
            wire.feed(big * (flap_module.MAX_QUEUED_BYTES // 60_000))
            pending.callback(None)
            self.assertFalse(wire.closing)


class LoginTimeoutTests(SynchronousTestCase):
    def test_unauthenticated_connection_times_out(self) -> None:
        """A connection that has not authenticated within login_timeout is
        closed with channel 4; just before, it is still open."""
        factory = ToyFactory(ConnectionSettings(login_timeout=30.0))
        wire = Wire(factory)
        wire.raw()
        wire.feed(signon_frame(Tlv(0x06, b"wrong")))
        factory.clock.advance(29.9)
        self.assertFalse(wire.closing)
        factory.clock.advance(0.1)
        self.assertEqual([f.channel for f in wire.frames()], [Channel.SIGNOFF])
        self.assertTrue(wire.closing)

    def test_silent_connection_times_out(self) -> None:
        """A client that connects and says nothing is closed after login_timeout."""
        factory = ToyFactory(ConnectionSettings(login_timeout=5.0))
        wire = Wire(factory)
        factory.clock.advance(5.0)
        self.assertTrue(wire.closing)

    def test_authenticated_connection_does_not_time_out(self) -> None:
        """After authentication the login timeout no longer applies."""
        factory = ToyFactory(ConnectionSettings(login_timeout=30.0))
        wire = Wire(factory)
        wire.signon(OK)
        wire.raw()
        factory.clock.advance(3600)
        self.assertEqual(wire.raw(), b"")
        self.assertFalse(wire.closing)

    def test_closed_connection_leaves_no_timer(self) -> None:
        """A connection that closed (or was lost) leaves no pending call."""
        factory = ToyFactory(ConnectionSettings(login_timeout=30.0))
        wire = Wire(factory)
        wire.feed(frame(Channel.SIGNOFF))
        wire.lose()
        self.assertEqual(factory.clock.getDelayedCalls(), [])
        lost = Wire(factory)
        lost.lose()
        self.assertEqual(factory.clock.getDelayedCalls(), [])


class KeepaliveTests(SynchronousTestCase):
    def test_idle_timeout_closes_silent_signed_on_connections(self) -> None:
        """With [connection] idle_timeout a signed-on connection that sent
        nothing (a keepalive counts) for that long is closed with channel 4
        at a sweep; one that keeps sending, or is not signed on, is not."""
        settings = ConnectionSettings(idle_timeout=120.0, login_timeout=1000.0)
        factory = ToyFactory(settings, keepalive_interval=60.0)
        factory.doStart()
        self.addCleanup(factory.doStop)
        silent, talking, unsigned = Wire(factory), Wire(factory), Wire(factory)
        for wire in (silent, talking):
            wire.signon(OK)
        for _ in range(3):
            talking.feed(frame(Channel.KEEP_ALIVE))
            factory.clock.advance(60)
        self.assertTrue(silent.closing)
        self.assertIn(Channel.SIGNOFF, [f.channel for f in parse_frames(silent.raw())])
        self.assertFalse(talking.closing)
        self.assertFalse(unsigned.closing)

    def test_no_idle_timeout_by_default(self) -> None:
        factory = ToyFactory(keepalive_interval=60.0)
        factory.doStart()
        self.addCleanup(factory.doStop)
        wire = Wire(factory)
        wire.signon(OK)
        factory.clock.advance(3600)
        self.assertFalse(wire.closing)

    def test_sweeper_pings_only_silent_connections(self) -> None:
        """Each sweep sends an empty channel-5 frame to exactly the
        connections nothing was written to since the previous sweep."""
        factory = ToyFactory(keepalive_interval=60.0)
        factory.doStart()
        self.addCleanup(factory.doStop)
        busy, quiet = Wire(factory), Wire(factory)
        for wire in (busy, quiet):
            wire.signon(OK)
            wire.raw()
        # The hellos count as writes: the first sweep pings nobody.
        factory.clock.advance(60)
        self.assertEqual((busy.raw(), quiet.raw()), (b"", b""))

        busy.send_snac(0x0A, 0x02, b"", request_id=1)
        busy.raw()
        factory.clock.advance(60)
        self.assertEqual(busy.raw(), b"")
        (ping,) = quiet.frames()
        self.assertEqual((ping.channel, ping.payload), (Channel.KEEP_ALIVE, b""))

        # Nothing happened since: both are pinged now.
        factory.clock.advance(60)
        self.assertEqual([f.channel for f in busy.frames()], [Channel.KEEP_ALIVE])
        self.assertEqual([f.channel for f in quiet.frames()], [Channel.KEEP_ALIVE])

    def test_lost_connections_leave_the_sweep(self) -> None:
        """A connection that is gone is no longer swept."""
        factory = ToyFactory(keepalive_interval=60.0)
        factory.doStart()
        self.addCleanup(factory.doStop)
        wire = Wire(factory)
        self.assertIn(wire.proto, factory.sweeper.connections)
        wire.lose()
        self.assertNotIn(wire.proto, factory.sweeper.connections)

    def test_stopped_factory_stops_sweeping(self) -> None:
        """When the listener stops, its sweeper's timer is gone."""
        factory = ToyFactory(keepalive_interval=60.0)
        factory.doStart()
        self.assertEqual(len(factory.clock.getDelayedCalls()), 1)
        factory.doStop()
        self.assertEqual(factory.clock.getDelayedCalls(), [])


class SlowReaderTests(SynchronousTestCase):
    def test_connection_registers_as_streaming_producer(self) -> None:
        """The connection registers itself with its transport as a push
        producer, so the transport can tell it the peer stopped reading."""
        wire = toy()
        self.assertIs(wire.transport.producer, wire.proto)
        self.assertTrue(wire.transport.streaming)

    def test_paused_reader_over_the_queue_limit_is_aborted(self) -> None:
        """A peer that stops reading while more than max_send_queue bytes are
        written to it is aborted, not buffered without bound."""
        wire = toy(ConnectionSettings(max_send_queue=1000))
        wire.signon(OK)
        wire.transport.producer.pauseProducing()
        body = b"x" * 400
        wire.send_snac(0x0A, 0x02, body, request_id=1)
        wire.send_snac(0x0A, 0x02, body, request_id=2)
        self.assertFalse(wire.transport.disconnected)
        wire.send_snac(0x0A, 0x02, body, request_id=3)
        self.assertTrue(wire.transport.disconnected)
        written = len(wire.raw())
        wire.send_snac(0x0A, 0x02, body, request_id=4)
        self.assertEqual(wire.raw(), b"")
        self.assertGreater(written, 1000)

    def test_reader_that_resumes_is_kept(self) -> None:
        """A peer that pauses and resumes in time is not cut off: the count
        starts again at each pause."""
        wire = toy(ConnectionSettings(max_send_queue=1000))
        wire.signon(OK)
        wire.raw()
        body = b"x" * 400
        for request_id in range(10):
            wire.transport.producer.pauseProducing()
            wire.send_snac(0x0A, 0x02, body, request_id=request_id)
            wire.send_snac(0x0A, 0x02, body, request_id=request_id)
            wire.transport.producer.resumeProducing()
        self.assertFalse(wire.transport.disconnecting)
        self.assertEqual(len(wire.frames()), 20)

    def test_unpaused_connection_is_never_cut_off(self) -> None:
        """Without backpressure from the transport, large output is fine."""
        wire = toy(ConnectionSettings(max_send_queue=1000))
        wire.signon(OK)
        for request_id in range(10):
            wire.send_snac(0x0A, 0x02, b"y" * 900, request_id=request_id)
        self.assertFalse(wire.transport.disconnecting)


class CloseTests(SynchronousTestCase):
    def test_close_sends_its_tlvs_once(self) -> None:
        """Closing sends one channel-4 frame with the given TLVs; closing
        again sends nothing more."""
        wire = signed_on_toy()
        wire.proto.close([Tlv.u16(0x0009, 1)])
        wire.proto.close([Tlv.u16(0x0009, 2)])
        self.assertEqual(
            [(f.channel, f.payload) for f in wire.frames()],
            [(Channel.SIGNOFF, b"\x00\x09\x00\x02\x00\x01")],
        )
        self.assertTrue(wire.closing)
        self.assertIsNone(wire.transport.producer)

    def test_output_after_close_is_dropped(self) -> None:
        """SNACs sent to a connection that is closing are not written."""
        wire = signed_on_toy()
        wire.proto.close()
        wire.raw()
        wire.proto.send_snac(0x01, 0x0F, b"late")
        wire.proto.send_keepalive()
        self.assertEqual(wire.raw(), b"")

    def test_whole_output_parses(self) -> None:
        """What the server writes is a sequence of whole frames."""
        wire = toy()
        wire.feed(echo_stream())
        parse_frames(wire.raw())
