"""Pushes as values (``aimserver.services.events``): each event's OSCAR
rendering, pinned to bytes from the protocol reference; rendered once per
event however many sessions get it; and written by a FLAP connection under
request ids of its own."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aimserver.protocols.flap import FlapConnection
from aimserver.services.events import (
    BuddyArrived,
    BuddyDeparted,
    ClientErrorRelayed,
    MessageReceived,
    SelfInfoChanged,
    TypingRelayed,
    Warned,
)
from aimserver.wire.flap import Channel
from tests.fakes import make_server, parse_frames, parse_snac, signed_on_bos
from tests.fakes_services import ServiceWorld

#: "Bob", warning 0, one TLV: user class 0x0010 (OSCAR.md §7 user-info block).
BOB = bytes.fromhex("03426f62 0000 0001 0001 0002 0010".replace(" ", ""))


class RenderingTests(SynchronousTestCase):
    def test_message_received(self) -> None:
        """04,07: cookie, channel, the sender's block, the TLVs (FAMILIES.md)."""
        tlvs = bytes.fromhex("0002 0004 01010000".replace(" ", ""))
        event = MessageReceived(b"12345678", 1, BOB, tlvs)
        self.assertEqual(event.snac(), (0x0004, 0x0007, b"12345678" + b"\x00\x01" + BOB + tlvs))

    def test_the_others(self) -> None:
        self.assertEqual(BuddyArrived(BOB).snac(), (0x0003, 0x000B, BOB))
        self.assertEqual(BuddyDeparted(BOB).snac(), (0x0003, 0x000C, BOB))
        self.assertEqual(TypingRelayed(b"t").snac(), (0x0004, 0x0014, b"t"))
        self.assertEqual(ClientErrorRelayed(b"e").snac(), (0x0004, 0x000B, b"e"))
        self.assertEqual(SelfInfoChanged(BOB).snac(), (0x0001, 0x000F, BOB))
        # 01,10: the new level (u16), then the warner's block unless anonymous.
        self.assertEqual(Warned(100, None).snac(), (0x0001, 0x0010, b"\x00\x64"))
        self.assertEqual(Warned(30, BOB).snac(), (0x0001, 0x0010, b"\x00\x1e" + BOB))


class CountingEvent(BuddyArrived):
    __slots__ = ("renders",)

    def __init__(self, info: bytes) -> None:
        super().__init__(info)
        self.renders = 0

    def _snac_body(self) -> bytes:
        self.renders += 1
        return super()._snac_body()


class RenderOnceTests(SynchronousTestCase):
    def test_a_fan_out_renders_once(self) -> None:
        """A thousand recipients, one rendering: a fan-out packs once."""
        world = ServiceWorld()
        sessions = [world.sign_on(f"Watcher{n}")[0] for n in range(50)]
        event = CountingEvent(BOB)
        self.assertEqual(world.registry.deliver(sessions, event), 50)
        self.assertEqual(event.renders, 1)


class FlapRenderingTests(SynchronousTestCase):
    """A FLAP connection writes an event as one frame with its own request id."""

    def test_request_ids_are_the_connections_own(self) -> None:
        server, _, _ = make_server(None, {"Alice": "secret12", "Bob": "secret12"})
        alice = signed_on_bos(server, "Alice")
        bob = signed_on_bos(server, "Bob")
        sessions = [
            next(iter(server.registry.get(name).instances.values())) for name in ("Alice", "Bob")
        ]
        for _ in range(3):
            server.registry.deliver(sessions, BuddyArrived(BOB))
        for wire in (alice, bob):
            frames = parse_frames(wire.raw())
            self.assertEqual([f.channel for f in frames], [Channel.DATA] * 3)
            ids = [parse_snac(f)[0].request_id for f in frames]
            # High bit set, never 0, counted per connection (its 01,03 was
            # the first): both see 2, 3, 4.
            self.assertEqual([i & 0x7FFFFFFF for i in ids], [2, 3, 4])
            self.assertTrue(all(i & 0x80000000 for i in ids))
            header, body = parse_snac(frames[0])
            self.assertEqual((header.family, header.subtype, header.flags, body), (3, 0x0B, 0, BOB))

    def test_request_id_wraps_past_zero(self) -> None:
        server, _, _ = make_server(None, {"Alice": "secret12"})
        wire = signed_on_bos(server, "Alice")
        connection: FlapConnection = wire.proto
        connection._push_id = 0x7FFFFFFE
        for _ in range(3):
            connection.send_event(BuddyArrived(BOB))
        ids = [parse_snac(f)[0].request_id for f in parse_frames(wire.raw())]
        self.assertEqual(ids, [0xFFFFFFFF, 0x80000001, 0x80000002])

    def test_an_oversize_event_is_dropped_not_sent(self) -> None:
        server, _, _ = make_server(None, {"Alice": "secret12"})
        wire = signed_on_bos(server, "Alice")
        wire.proto.send_event(BuddyArrived(b"x" * 70_000))
        self.assertEqual(wire.raw(), b"")
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        self.assertFalse(wire.closing)

    def test_nothing_is_written_once_closing(self) -> None:
        server, _, _ = make_server(None, {"Alice": "secret12"})
        wire = signed_on_bos(server, "Alice")
        wire.proto.close()
        wire.raw()
        wire.proto.send_event(BuddyArrived(BOB))
        self.assertEqual(wire.raw(), b"")
