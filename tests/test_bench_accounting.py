"""The benchmark generator's accounting (bench/loadgen.py) catches a lost, a
duplicated, a reordered, a never-sent and a stale message per (sender session
-> receiving session), and counts a clean stream as clean, including when the
messages come as the server's own FLAP bytes through the generator's parser.
No network, no uvloop."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable, Sequence

from twisted.trial import unittest

from aimserver.config import load_config
from aimserver.wire.flap import FLAP_HEADER_SIZE, parse_header
from bench import baselines, capacity, loadgen
from bench import chat as s11
from bench import feedbag as s10
from bench.loadgen import Accounting, Sender, parse_im_text, percentiles
from bench.scenarios import FULL
from tests.fakes import frame, make_server, signed_on_bos

A = (b"alice", b"1")
B = (b"bob", b"2")


def deliver(acc: Accounting, sender: object, receiver: object, seqs: list[int]) -> None:
    for seq in seqs:
        acc.received(sender, receiver, seq, 1_000, 2_000)


def send(acc: Accounting, sender: object, count: int, after: int = 0) -> None:
    for seq in range(after + 1, after + count + 1):
        acc.sent(sender, seq)


class AccountingTests(unittest.SynchronousTestCase):
    def test_clean_streams_are_clean(self) -> None:
        acc = Accounting()
        acc.route(A, ["r1", "r2"])
        acc.route(B, ["r1"])
        send(acc, A, 5)
        send(acc, B, 3)
        deliver(acc, A, "r1", [1, 2, 3, 4, 5])
        deliver(acc, B, "r1", [1, 2, 3])
        deliver(acc, A, "r2", [1, 2, 3, 4, 5])
        report = acc.report()
        self.assertTrue(report.clean, report)
        self.assertEqual(
            (report.streams, report.sent, report.expected, report.received), (3, 8, 13, 13)
        )
        self.assertEqual(acc.expected(), 13)

    def test_lost_message_in_the_middle(self) -> None:
        acc = Accounting()
        acc.route(A, ["r1"])
        send(acc, A, 5)
        deliver(acc, A, "r1", [1, 2, 4, 5])
        report = acc.report()
        self.assertEqual((report.lost, report.duplicated, report.reordered), (1, 0, 0))
        self.assertFalse(report.clean)
        self.assertIn("lost 1 of 5", report.problems[0])

    def test_lost_message_at_the_end(self) -> None:
        acc = Accounting()
        acc.route(A, ["r1"])
        send(acc, A, 5)
        deliver(acc, A, "r1", [1, 2, 3, 4])
        report = acc.report()
        self.assertEqual((report.lost, report.duplicated, report.reordered), (1, 0, 0))

    def test_nothing_received_is_all_lost(self) -> None:
        acc = Accounting()
        acc.route(A, ["r1", "r2"])
        send(acc, A, 3)
        self.assertEqual(acc.report().lost, 6)

    def test_duplicated_message(self) -> None:
        acc = Accounting()
        acc.route(A, ["r1"])
        send(acc, A, 3)
        deliver(acc, A, "r1", [1, 2, 2, 3])
        report = acc.report()
        self.assertEqual((report.lost, report.duplicated, report.reordered), (0, 1, 0))
        self.assertFalse(report.clean)

    def test_reordered_message(self) -> None:
        acc = Accounting()
        acc.route(A, ["r1"])
        send(acc, A, 4)
        deliver(acc, A, "r1", [1, 3, 2, 4])
        report = acc.report()
        self.assertEqual((report.lost, report.duplicated, report.reordered), (0, 0, 1))
        self.assertFalse(report.clean)

    def test_late_duplicate_of_a_reordered_message(self) -> None:
        acc = Accounting()
        acc.route(A, ["r1"])
        send(acc, A, 3)
        deliver(acc, A, "r1", [2, 1, 1, 3])
        report = acc.report()
        self.assertEqual((report.lost, report.duplicated, report.reordered), (0, 1, 1))

    def test_streams_are_per_receiving_session(self) -> None:
        """One copy lost to one device of a user is a loss, even if the
        user's other device got it."""
        acc = Accounting()
        acc.route(A, ["phone", "laptop"])
        send(acc, A, 3)
        deliver(acc, A, "phone", [1, 2, 3])
        deliver(acc, A, "laptop", [1, 3])
        report = acc.report()
        self.assertEqual(report.lost, 1)
        self.assertEqual(len(report.problems), 1)
        self.assertIn("laptop", report.problems[0])

    def test_streams_are_per_sending_session(self) -> None:
        """The same sequence number from two sessions is two messages."""
        acc = Accounting()
        acc.route(A, ["r1"])
        acc.route(B, ["r1"])
        send(acc, A, 2)
        send(acc, B, 2)
        deliver(acc, A, "r1", [1])
        deliver(acc, B, "r1", [1, 2])
        deliver(acc, A, "r1", [2])
        self.assertTrue(acc.report().clean)

    def test_unrouted_delivery_is_unexpected(self) -> None:
        acc = Accounting()
        acc.route(A, ["r1"])
        send(acc, A, 1)
        deliver(acc, A, "r1", [1])
        deliver(acc, A, "stranger", [1])
        report = acc.report()
        self.assertEqual(report.unexpected, 1)
        self.assertFalse(report.clean)

    def test_route_after_an_earlier_run(self) -> None:
        """A new run's accounting starts after what the sender already sent."""
        acc = Accounting()
        acc.route(A, ["r1"], after=100)
        send(acc, A, 3, after=100)
        deliver(acc, A, "r1", [101, 102, 103])
        report = acc.report()
        self.assertTrue(report.clean, report)
        self.assertEqual(report.sent, 3)
        acc = Accounting()
        acc.route(A, ["r1"], after=100)
        send(acc, A, 3, after=100)
        deliver(acc, A, "r1", [101, 103])
        self.assertEqual(acc.report().lost, 1)

    def test_garbage_sequence_number(self) -> None:
        acc = Accounting()
        acc.route(A, ["r1"])
        send(acc, A, 1)
        deliver(acc, A, "r1", [1, 10**9])
        report = acc.report()
        self.assertEqual(report.garbled, 1)
        self.assertFalse(report.clean)

    def test_sequence_number_never_sent_is_a_fault(self) -> None:
        """A copy numbered past the last message the sender sent is a fault
        (an IM the server made up or mixed up), even right after the last one."""
        acc = Accounting()
        acc.route(A, ["r1"])
        send(acc, A, 3)
        deliver(acc, A, "r1", [1, 2, 3, 4])
        report = acc.report()
        self.assertEqual(report.never_sent, 1)
        self.assertEqual((report.lost, report.duplicated, report.reordered), (0, 0, 0))
        self.assertFalse(report.clean)
        self.assertEqual(report.problem_counts()["never sent"], 1)
        self.assertIn("never sent 1", report.problems[0])

    def test_never_sent_number_neither_hides_nor_invents_loss(self) -> None:
        """A bogus number does not move the stream: the real message missing
        is one loss, and the real ones after the bogus one are in order."""
        acc = Accounting()
        acc.route(A, ["r1"])
        send(acc, A, 3)
        deliver(acc, A, "r1", [1, 5, 3])
        report = acc.report()
        self.assertEqual(
            (report.lost, report.never_sent, report.duplicated, report.reordered), (1, 1, 0, 0)
        )

    def test_sequence_number_not_yet_sent_is_never_sent(self) -> None:
        """The check is against what was sent when the copy arrived: a copy of
        number 2 before number 2 was sent is a fault even if 2 is sent later."""
        acc = Accounting()
        acc.route(A, ["r1"])
        send(acc, A, 1)
        deliver(acc, A, "r1", [1, 2])
        send(acc, A, 1, after=1)
        deliver(acc, A, "r1", [2])
        report = acc.report()
        self.assertEqual((report.never_sent, report.lost, report.duplicated), (1, 0, 0))
        self.assertFalse(report.clean)

    def test_stale_sequence_number_is_a_fault(self) -> None:
        """A copy from before this run (at or below route's ``after``: a late
        delivery of an earlier run) is a fault of its own, not a duplicate,
        and does not disturb the run's stream."""
        acc = Accounting()
        acc.route(A, ["r1"], after=100)
        send(acc, A, 3, after=100)
        deliver(acc, A, "r1", [100, 101, 42, 102, 103])
        report = acc.report()
        self.assertEqual(report.stale, 2)
        self.assertEqual(
            (report.lost, report.duplicated, report.reordered, report.never_sent), (0, 0, 0, 0)
        )
        self.assertFalse(report.clean)
        self.assertEqual(report.problem_counts()["stale"], 2)
        self.assertIn("stale 2", report.problems[0])

    def test_never_sent_and_stale_copies_have_no_latency(self) -> None:
        acc = Accounting()
        acc.route(A, ["r1"], after=10)
        send(acc, A, 1, after=10)
        acc.latencies = []
        acc.received(A, "r1", 11, 100, 150)
        acc.received(A, "r1", 10, 0, 10_000)
        acc.received(A, "r1", 12, 0, 10_000)
        self.assertEqual(acc.latencies, [50])

    def test_every_fault_is_a_problem_count(self) -> None:
        """What the scenarios put in a run's problems: each fault the report
        counts, so a run with any of them is not "ok"."""
        acc = Accounting()
        acc.route(A, ["r1"], after=5)
        send(acc, A, 3, after=5)
        deliver(acc, A, "r1", [7, 6, 6, 9, 1, 10**9])
        deliver(acc, B, "r1", [1])
        counts = acc.report().problem_counts()
        self.assertEqual(
            counts,
            {
                "lost": 1,
                "duplicated": 1,
                "reordered": 1,
                "unexpected": 2,
                "never sent": 1,
                "stale": 1,
            },
        )

    def test_latencies_only_while_recording(self) -> None:
        acc = Accounting()
        acc.route(A, ["r1"])
        send(acc, A, 3)
        acc.received(A, "r1", 1, 0, 5)
        acc.latencies = []
        acc.received(A, "r1", 2, 10, 30)
        acc.received(A, "r1", 3, 10, 50)
        self.assertEqual(acc.latencies, [20, 40])


def split_frames(data: bytes) -> list[bytes]:
    """``data`` cut into whole FLAP frames, each exactly as written."""
    frames = []
    offset = 0
    while offset < len(data):
        _, _, length = parse_header(data, offset)
        end = offset + FLAP_HEADER_SIZE + length
        frames.append(data[offset:end])
        offset = end
    return frames


def through_bench_parser(
    acc: Accounting, receiver: str, data: bytes, chunk: int
) -> loadgen.FlapClient:
    """Feed ``data`` to the generator's own ``FlapClient`` in ``chunk``-byte
    reads, with the frame callback the scenarios use (an IM found by its mark
    goes to the accounting)."""

    def on_frame(client: loadgen.FlapClient, channel: int, payload: bytes) -> None:
        if channel != 2:
            return
        parsed = parse_im_text(payload)
        if parsed is not None:
            key, seq, sent = parsed
            acc.received(key, client.label, seq, sent, sent + 1)

    async def feed() -> loadgen.FlapClient:
        client = loadgen.FlapClient(receiver)
        client.on_frame = on_frame
        for start in range(0, len(data), chunk):
            client.data_received(data[start : start + chunk])
        return client

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(feed())
    finally:
        loop.close()


class ServerFramesTests(unittest.SynchronousTestCase):
    """The real server's 04,07 bytes, with faults injected between the
    server and the generator, through the generator's parser and accounting."""

    COUNT = 6

    def server_frames(self) -> list[bytes]:
        """The bytes the server writes to Bob's connection when a bench
        ``Sender`` on Alice's connection sends ``COUNT`` IMs, frame by frame."""
        config = load_config(None, {"ratelimit.enabled": False})
        server, _, _ = make_server(config, {"Alice": "secret", "Bob": "secret"})
        alice = signed_on_bos(server, "Alice")
        bob = signed_on_bos(server, "Bob")
        for wire in (alice, bob):
            wire.send_snac(0x01, 0x02, b"", request_id=1)
            wire.raw()

        class ToServer:
            sequence = 0

            def send(self, channel: int, payload: bytes) -> None:
                self.sequence += 1
                alice.feed(frame(channel, payload, self.sequence))

        sender = Sender(ToServer(), "Alice", 1, "Bob")  # type: ignore[arg-type]
        for n in range(self.COUNT):
            self.acc.sent(sender.key, sender.send(1_000 * (n + 1)))
        frames = split_frames(bob.raw())
        self.assertEqual(len(frames), self.COUNT, "one 04,07 per IM, nothing else")
        return frames

    def setUp(self) -> None:
        self.acc = Accounting()
        self.acc.route((b"Alice", b"1"), ["bob"])

    def run_stream(self, order: Callable[[list[bytes]], Sequence[bytes]], chunk: int) -> None:
        frames = self.server_frames()
        through_bench_parser(self.acc, "bob", b"".join(order(frames)), chunk)

    def test_unaltered_stream_is_clean(self) -> None:
        """The server's frames as written, in awkward reads: all counted, clean."""
        self.run_stream(lambda frames: frames, chunk=7)
        report = self.acc.report()
        self.assertTrue(report.clean, report)
        self.assertEqual((report.sent, report.received), (self.COUNT, self.COUNT))

    def test_drop_duplicate_and_reorder_are_each_counted(self) -> None:
        """IMs 1..6 as the server wrote them; on the way, the 2nd is dropped,
        the 4th delivered twice and the 5th and 6th swapped: one lost, one
        duplicated, one reordered, nothing else."""

        def tamper(frames: list[bytes]) -> list[bytes]:
            first, _second, third, fourth, fifth, sixth = frames
            return [first, third, fourth, fourth, sixth, fifth]

        for chunk in (1, 5, 4096):
            self.setUp()
            self.run_stream(tamper, chunk)
            report = self.acc.report()
            self.assertEqual(
                (report.lost, report.duplicated, report.reordered),
                (1, 1, 1),
                f"{chunk}-byte reads: {report}",
            )
            self.assertEqual(
                (report.unexpected, report.garbled, report.never_sent, report.stale),
                (0, 0, 0, 0),
                f"{chunk}-byte reads: {report}",
            )
            self.assertFalse(report.clean)


class PercentileTests(unittest.SynchronousTestCase):
    def test_nearest_rank(self) -> None:
        samples = list(range(1, 1001))
        self.assertEqual(percentiles(samples, (50, 99, 99.9, 100)), [500, 990, 999, 1000])

    def test_no_samples(self) -> None:
        (p50,) = percentiles([], (50,))
        self.assertNotEqual(p50, p50)  # NaN


class FakeClient:
    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []

    def send(self, channel: int, payload: bytes) -> None:
        self.frames.append((channel, payload))


class ImTextTests(unittest.SynchronousTestCase):
    def test_sender_text_is_found_again(self) -> None:
        """A 04,06 built by Sender (the relay baseline passes it on as is)
        carries sender, instance, sequence number and send time."""
        client = FakeClient()
        sender = Sender(client, "alice", 3, "bob")  # type: ignore[arg-type]
        sender.send(123456789)
        sender.send(123456790)
        (channel, first), (_, second) = client.frames
        self.assertEqual(channel, 2)
        self.assertEqual(first[:4], b"\x00\x04\x00\x06")
        self.assertEqual(parse_im_text(first), ((b"alice", b"3"), 1, 123456789))
        self.assertEqual(parse_im_text(second), ((b"alice", b"3"), 2, 123456790))
        self.assertNotEqual(first[10:18], second[10:18], "ICBM cookies must differ")

    def test_the_same_text_inside_a_server_04_07(self) -> None:
        """The server's 04,07 puts a user-info block before the same IM data."""
        from aimserver.wire.icbm import pack_message_to_client
        from aimserver.wire.snac import pack_snac
        from aimserver.wire.tlv import TlvList
        from aimserver.wire.userinfo import UserInfo

        client = FakeClient()
        Sender(client, "alice", 1, "bob").send(42)  # type: ignore[arg-type]
        _, to_host = client.frames[0]
        im_tlvs = to_host[10 + 8 + 2 + 1 + len(b"bob") :]
        body = pack_message_to_client(
            to_host[10:18], 1, UserInfo("alice", 0, TlvList()).pack(), im_tlvs
        )
        self.assertEqual(parse_im_text(pack_snac(4, 7, body, 99)), ((b"alice", b"1"), 1, 42))

    def test_other_frames_are_not_ims(self) -> None:
        self.assertIsNone(parse_im_text(b"\x00\x03\x00\x0b" + b"\x00" * 40))


class CapacityHelperTests(unittest.SynchronousTestCase):
    """The pure parts of the capacity scenarios (bench/capacity.py)."""

    def test_linear_fit_of_a_line(self) -> None:
        fit = capacity.linear_fit([1000, 2000, 3000, 4000], [60_000, 72_000, 84_000, 96_000])
        self.assertAlmostEqual(fit.slope, 12.0)
        self.assertAlmostEqual(fit.intercept, 48_000.0)
        self.assertAlmostEqual(fit.r2, 1.0)

    def test_linear_fit_of_noisy_points(self) -> None:
        """Least squares: the slope of (0, 1), (1, 3), (2, 2), (3, 5) is 1.1."""
        fit = capacity.linear_fit([0, 1, 2, 3], [1, 3, 2, 5])
        self.assertAlmostEqual(fit.slope, 1.1)
        self.assertAlmostEqual(fit.intercept, 1.1)
        self.assertAlmostEqual(fit.r2, 1 - 2.7 / 8.75)  # residuals² 2.7, total 8.75

    def test_linear_fit_needs_two_distinct_x(self) -> None:
        self.assertRaises(ValueError, capacity.linear_fit, [1], [1])
        self.assertRaises(ValueError, capacity.linear_fit, [2, 2], [1, 3])
        self.assertRaises(ValueError, capacity.linear_fit, [1, 2], [1])

    def test_flat_line_fits_perfectly(self) -> None:
        fit = capacity.linear_fit([1, 2, 3], [5, 5, 5])
        self.assertEqual((fit.slope, fit.r2), (0.0, 1.0))

    def test_backoff_doubles_up_to_the_cap_with_jitter(self) -> None:
        rng = capacity.random.Random(1)
        for attempt, ceiling in ((0, 0.5), (1, 1.0), (2, 2.0), (4, 8.0), (5, 8.0), (500, 8.0)):
            for _ in range(50):
                delay = capacity.backoff_delay(attempt, 0.5, 8.0, rng)
                self.assertGreaterEqual(delay, ceiling / 2)
                self.assertLessEqual(delay, ceiling)
        delays = {capacity.backoff_delay(3, 0.5, 8.0, rng) for _ in range(20)}
        self.assertGreater(len(delays), 10, "jitter spreads the retries")

    def test_ring_buddies(self) -> None:
        self.assertEqual(capacity.ring_buddies(0, 100, 4), [1, 99, 2, 98])
        lists = [capacity.ring_buddies(i, 50) for i in range(50)]
        for i, buddies in enumerate(lists):
            self.assertEqual(len(set(buddies)), 20)
            self.assertNotIn(i, buddies)
            for j in buddies:
                self.assertIn(i, lists[j], "watching is mutual on the ring")
        self.assertEqual(sorted(capacity.ring_buddies(2, 5)), [0, 1, 3, 4])

    def test_loopback_addresses_are_distinct(self) -> None:
        addresses = [capacity.loopback_address(i) for i in range(70_000)]
        self.assertEqual(len(set(addresses)), 70_000)
        self.assertEqual(addresses[0], "127.10.0.1")
        for address in addresses[::997]:
            octets = [int(x) for x in address.split(".")]
            self.assertEqual(octets[0], 127)
            self.assertTrue(all(0 <= x <= 255 for x in octets))
            self.assertNotIn(octets[3], (0, 255))

    def test_change_percent(self) -> None:
        self.assertAlmostEqual(capacity.change_percent(200.0, 210.0), 5.0)
        self.assertAlmostEqual(capacity.change_percent(200.0, 190.0), -5.0)

    def test_proc_status_of_this_process(self) -> None:
        status = capacity.proc_status(capacity.os.getpid())
        self.assertGreater(status["VmRSS"], 1000)
        self.assertGreaterEqual(status["VmHWM"], status["VmRSS"])
        self.assertGreater(capacity.open_fds(capacity.os.getpid()), 2)

    def test_gc_log_is_read_back(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("12.5 3.250 100 0\n13.0 1.000 5 0\n")
        self.assertEqual(capacity.read_gc_log(path), [(12.5, 3.25), (13.0, 1.0)])
        self.assertEqual(capacity.read_gc_log(path + ".missing"), [])


class EditTrackerTests(unittest.SynchronousTestCase):
    """S10's exactly-once accounting of feedbag edits pushed to a user's
    other sessions (bench/feedbag.py)."""

    SESSIONS = ("s0", "s1", "s2", "s3")

    def tracker(self) -> tuple[s10.EditTracker, list[object]]:
        tracker = s10.EditTracker()
        finished: list[object] = []
        tracker.on_done = finished.append
        return tracker, finished

    def test_every_sibling_once_and_a_clean_ack_is_clean(self) -> None:
        tracker, finished = self.tracker()
        tracker.sent("e1", "s0", self.SESSIONS, 1_000)
        for n, session in enumerate(("s3", "s1", "s2")):
            tracker.pushed("e1", session, 2_000 + n)
            self.assertEqual(finished, [], "not done before the 13,0E")
        tracker.acked("e1", b"\x00\x00", 1_500)
        self.assertEqual(finished, ["e1"])
        self.assertEqual(tracker.to_last("e1"), 1_002)
        self.assertEqual(tracker.to_ack("e1"), 500)
        report = tracker.report()
        self.assertTrue(report.clean, report)
        self.assertEqual(report.edits, 1)

    def test_done_once(self) -> None:
        tracker, finished = self.tracker()
        tracker.sent("e1", "s0", ("s0", "s1"), 0)
        tracker.acked("e1", b"\x00\x00", 1)
        tracker.pushed("e1", "s1", 2)
        tracker.pushed("e1", "s1", 3)
        self.assertEqual(finished, ["e1"])
        self.assertEqual(tracker.to_last("e1"), 2, "the first copy counts")

    def test_a_missing_copy(self) -> None:
        tracker, finished = self.tracker()
        tracker.sent("e1", "s0", self.SESSIONS, 0)
        tracker.pushed("e1", "s1", 1)
        tracker.pushed("e1", "s2", 1)
        tracker.acked("e1", b"\x00\x00", 1)
        self.assertEqual(finished, [])
        self.assertIsNone(tracker.to_last("e1"))
        report = tracker.report()
        self.assertEqual(report.missing, 1)
        self.assertEqual(report.problem_counts()["missing push"], 1)
        self.assertFalse(report.clean)

    def test_a_duplicated_copy(self) -> None:
        tracker, _ = self.tracker()
        tracker.sent("e1", "s0", ("s0", "s1"), 0)
        tracker.pushed("e1", "s1", 1)
        tracker.pushed("e1", "s1", 2)
        tracker.acked("e1", b"\x00\x00", 1)
        report = tracker.report()
        self.assertEqual((report.duplicated, report.missing), (1, 0))
        self.assertFalse(report.clean)

    def test_a_copy_to_the_origin(self) -> None:
        tracker, finished = self.tracker()
        tracker.sent("e1", "s0", ("s0", "s1"), 0)
        tracker.pushed("e1", "s0", 1)
        tracker.pushed("e1", "s1", 1)
        tracker.acked("e1", b"\x00\x00", 1)
        self.assertEqual(finished, ["e1"])
        self.assertEqual(tracker.report().echoed, 1)
        self.assertFalse(tracker.report().clean)

    def test_copies_of_unknown_edits_or_to_strangers(self) -> None:
        tracker, _ = self.tracker()
        tracker.sent("e1", "s0", ("s0", "s1"), 0)
        tracker.pushed("e2", "s1", 1)
        tracker.pushed("e1", "someone else", 1)
        self.assertEqual(tracker.report().unexpected, 2)

    def test_a_copy_without_the_server_request_bit(self) -> None:
        tracker, _ = self.tracker()
        tracker.sent("e1", "s0", ("s0", "s1"), 0)
        tracker.pushed("e1", "s1", 1, server_initiated=False)
        tracker.acked("e1", b"\x00\x00", 1)
        report = tracker.report()
        self.assertEqual((report.not_server_initiated, report.missing), (1, 0))
        self.assertFalse(report.clean)

    def test_statuses(self) -> None:
        """A non-zero result (or a 13,01: no results) is a bad status; a
        second 13,0E, or one for no edit, is unexpected; none is unacknowledged."""
        tracker, _ = self.tracker()
        for key in ("ok", "refused", "error", "silent"):
            tracker.sent(key, "s0", ("s0",), 0)
        tracker.acked("ok", b"\x00\x00", 1)
        tracker.acked("refused", b"\x00\x0a", 1)
        tracker.acked("error", b"", 1)
        tracker.acked("ok", b"\x00\x00", 2)
        tracker.acked("nobody", b"\x00\x00", 2)
        report = tracker.report()
        self.assertEqual(
            (report.bad_status, report.unexpected_status, report.unacknowledged), (2, 2, 1)
        )
        self.assertEqual(tracker.to_last("ok"), 1, "one session: done at its 13,0E")

    def test_an_edit_key_is_sent_once(self) -> None:
        tracker, _ = self.tracker()
        tracker.sent("e1", "s0", self.SESSIONS, 0)
        self.assertRaises(ValueError, tracker.sent, "e1", "s1", self.SESSIONS, 0)

    def test_every_fault_is_a_problem_count(self) -> None:
        report = s10.EditReport(1, 2, 3, 4, 5, 6, 7, 8, 9)
        self.assertEqual(sorted(report.problem_counts().values()), list(range(2, 10)))


class FeedbagWireTests(unittest.SynchronousTestCase):
    """The generator's feedbag items against the server's own codec, and the
    real server's 13,08 push and 13,0E through S10's parsing."""

    def test_items_match_the_server_codec(self) -> None:
        from aimserver.wire.feedbag import WireFeedbagItem, read_items

        packed = loadgen.feedbag_item("Bob", 0x0A1E, 0x1234, 0, b"\x01\x31\x00\x01x")
        packed += loadgen.feedbag_item(b"", 0, 0, 1, b"")
        self.assertEqual(
            read_items(packed),
            [
                WireFeedbagItem(b"Bob", 0x0A1E, 0x1234, 0, b"\x01\x31\x00\x01x"),
                WireFeedbagItem(b"", 0, 0, 1, b""),
            ],
        )
        self.assertEqual(
            loadgen.feedbag_items(packed),
            [(b"Bob", 0x0A1E, 0x1234, 0, b"\x01\x31\x00\x01x"), (b"", 0, 0, 1, b"")],
        )
        self.assertEqual(loadgen.first_feedbag_key(packed), (0x0A1E, 0x1234))
        self.assertEqual(baselines.count_items(packed), 2)
        self.assertRaises(loadgen.ProtocolFailure, loadgen.feedbag_items, packed[:-3])

    def test_the_big_list(self) -> None:
        """100 items: the root lists the 4 groups, each group its buddies,
        every buddy in a group; ids unique."""
        profile = FULL
        items = s10.big_list(profile)
        self.assertEqual(len(items), 100)
        keys = {(gid, iid) for _, gid, iid, _, _ in items}
        self.assertEqual(len(keys), 100)
        groups = {gid for _, gid, iid, cls, _ in items if cls == 1 and gid}
        buddies = [(gid, iid) for _, gid, iid, cls, _ in items if cls == 0]
        self.assertEqual(len(groups), 4)
        self.assertEqual(len(buddies), 95)
        self.assertTrue(all(gid in groups and iid for gid, iid in buddies))
        names = {name for name, *_ in items if name}
        self.assertTrue(set(s10.offline_names(profile)) <= names)
        self.assertTrue(set(s10.offline_names(profile)) <= set(s10.accounts(profile)))

    def test_server_push_and_status_are_accounted(self) -> None:
        """Three sessions of Alice on the real server (memory store): one
        inserts then deletes a buddy item; the others' bytes and the origin's
        go through S10's parser: each sibling once, nothing to the origin, a
        0x0000 status."""
        config = load_config(None, {"ratelimit.enabled": False, "multisession.notify": False})
        server, _, _ = make_server(config, {"Alice": "secret"})
        wires = [signed_on_bos(server, "Alice") for _ in range(3)]
        for wire in wires:
            wire.send_snac(0x01, 0x02, b"", request_id=1)
            wire.raw()
        origin = wires[0]
        setup = b"".join(loadgen.feedbag_item(*item) for item in s10.small_list())
        origin.send_snac(0x13, 0x08, setup, request_id=5)
        for wire in wires:
            wire.raw()
        tracker = s10.EditTracker()
        keys: dict[int, object] = {}
        for request_id, subtype in ((6, s10.INSERT), (7, s10.DELETE)):
            key = (subtype, s10.GROUP_ID, 0x0042)
            keys[request_id] = key
            tracker.sent(key, 0, range(3), 0)
            item = loadgen.feedbag_item("Bob", s10.GROUP_ID, 0x0042, 0)
            origin.send_snac(0x13, subtype, item, request_id=request_id)
            for label, wire in enumerate(wires):
                for f in split_frames(wire.raw()):
                    s10.observe_edit_frame(tracker, keys, label, f[6:], 1)
            self.assertTrue(tracker.done(key), tracker.report())
        report = tracker.report()
        self.assertTrue(report.clean, report)
        self.assertEqual(keys, {})

    def test_baseline_acks_and_pushes_to_siblings_only(self) -> None:
        """The ``feedbag`` baseline: the edits of one reactor turn are
        written and fsynced together, then each origin gets its 13,0E and
        the account's other connections the edit; another account nothing."""
        from twisted.internet.task import Clock
        from twisted.internet.testing import StringTransport

        class Transport(StringTransport):
            def setTcpNoDelay(self, enabled: bool) -> None:
                pass

        clock = Clock()
        self.patch(baselines, "reactor", clock)
        journal = self.mktemp()
        factory = baselines.DurableFeedbagFactory(journal)
        self.addCleanup(capacity.os.close, factory.fd)
        connections = []
        for account in (b"alice", b"alice", b"alice", b"bob"):
            proto = factory.buildProtocol(None)
            proto.makeConnection(Transport())
            proto.dataReceived(frame(1, b"\x00\x00\x00\x01" + loadgen.tlv(1, account)))
            proto.transport.clear()
            connections.append(proto)
        tracker = s10.EditTracker()
        keys = {9: (s10.INSERT, s10.GROUP_ID, 7), 10: (s10.DELETE, s10.GROUP_ID, 8)}
        tracker.sent(keys[9], 0, range(3), 0)
        tracker.sent(keys[10], 1, range(3), 0)
        item = loadgen.feedbag_item("Bob", s10.GROUP_ID, 7, 0)
        connections[0].dataReceived(frame(2, loadgen.snac(0x13, 0x08, item, 9)))
        item = loadgen.feedbag_item("Bob", s10.GROUP_ID, 8, 0)
        connections[1].dataReceived(frame(2, loadgen.snac(0x13, 0x0A, item, 10)))
        self.assertEqual([c.transport.value() for c in connections], [b""] * 4, "before fsync")
        clock.advance(0)
        for label, proto in enumerate(connections[:3]):
            for f in split_frames(proto.transport.value()):
                s10.observe_edit_frame(tracker, keys, label, f[6:], 1)
        report = tracker.report()
        self.assertTrue(report.clean, report)
        self.assertTrue(all(tracker.done(k) for k in keys.values()))
        self.assertEqual(connections[3].transport.value(), b"")
        with open(journal, "rb") as f:
            self.assertEqual(f.read().count(b"alice"), 2)


class LastMemberTests(unittest.SynchronousTestCase):
    """S11's time to the last member of a room, per line."""

    def test_sample_when_the_last_member_has_it(self) -> None:
        last = s11.LastMember({A: 3})
        last.sent(A, 1)
        last.received(A, 1, "r1", 100, 150)
        last.received(A, 1, "r2", 100, 400)
        self.assertEqual((last.latencies, last.completed, last.incomplete), ([], 0, 1))
        last.received(A, 1, "r3", 100, 250)
        self.assertEqual((last.latencies, last.completed, last.incomplete), ([150], 1, 0))

    def test_a_second_copy_to_one_member_does_not_count_as_another(self) -> None:
        last = s11.LastMember({A: 2})
        last.sent(A, 1)
        last.received(A, 1, "r1", 0, 10)
        last.received(A, 1, "r1", 0, 20)
        self.assertEqual((last.completed, last.incomplete), (0, 1))
        last.received(A, 1, "r2", 0, 30)
        last.received(A, 1, "r2", 0, 40)
        self.assertEqual((last.latencies, last.completed, last.late), ([30], 1, 1))

    def test_unknown_lines_and_not_measuring(self) -> None:
        last = s11.LastMember({A: 1, B: 1})
        last.received(A, 7, "r1", 0, 10)
        last.received(b"stranger", 1, "r1", 0, 10)
        self.assertEqual(last.unknown, 2)
        last.sent(B, 1)
        last.received(B, 1, "r1", 0, 10, measuring=False)
        self.assertEqual((last.latencies, last.completed), ([], 1))

    def test_lines_complete_independently(self) -> None:
        last = s11.LastMember({A: 2, B: 2})
        for sender in (A, B):
            for seq in (1, 2):
                last.sent(sender, seq)
        last.received(A, 2, "r1", 0, 5)
        last.received(B, 1, "r1", 0, 6)
        last.received(A, 2, "r2", 0, 7)
        self.assertEqual((last.latencies, last.incomplete), ([7], 3))


class ChatWireTests(unittest.SynchronousTestCase):
    """S11's chat bytes against the server's own chat codec, and the
    ``chat`` baseline's relay."""

    def test_line_matches_the_server_codec(self) -> None:
        from aimserver.wire.chat import (
            ChatMessage,
            message_parts,
            pack_chat_message_to_client,
            relayed_message,
        )
        from aimserver.wire.userinfo import UserInfo

        sent: list[tuple[int, bytes]] = []

        class Client:
            def send(self, channel: int, payload: bytes) -> None:
                sent.append((channel, payload))

        sender = s11.ChatSender(Client(), "s11m004")  # type: ignore[arg-type]
        self.assertEqual(sender.send(123_456_789), 1)
        ((channel, payload),) = sent
        self.assertEqual((channel, payload[:4]), (2, s11.K_CHAT_TO_HOST))
        message = ChatMessage.unpack(payload[10:])
        self.assertEqual(
            (message.channel, message.to_room, message.reflect, message.whisper_to),
            (3, True, False, None),
        )
        parts = message_parts(message.message)
        self.assertEqual(parts.get(0x0001), b"BM|s11m004|1|1|123456789")
        info = UserInfo("s11m004", 0).pack()
        relayed = pack_chat_message_to_client(
            message.cookie, 3, info, to_room=True, message=relayed_message(message.message)
        )
        out = loadgen.snac(0x0E, 0x06, relayed, 0x80000001)
        self.assertEqual(s11.parse_chat_text(out), ((b"s11m004", b"1"), 1, 123_456_789))
        self.assertIsNone(s11.parse_chat_text(out[:-40]))

    def test_room_request_and_rosters_match_the_server_codec(self) -> None:
        from aimserver.wire.chat import RoomInfo, RoomRef, pack_users
        from aimserver.wire.userinfo import UserInfo

        request = RoomInfo.unpack(s11.create_room_body("s11room"))
        self.assertEqual(request.ref, RoomRef(4, b"create", 0xFFFF))
        self.assertEqual((request.detail, request.name), (1, b"s11room"))
        info = RoomInfo(RoomRef(4, b"4-0-s11room", 0), 2).pack()
        self.assertEqual(s11.room_ref(info), RoomRef(4, b"4-0-s11room", 0).pack())
        users = pack_users([UserInfo("Alice").pack(), UserInfo("s11m001", 3).pack()])
        self.assertEqual(s11.user_names(users), [b"Alice", b"s11m001"])

    def test_baseline_relays_to_the_others_of_the_room(self) -> None:
        """The ``chat`` baseline: a line goes to every other member of the
        sender's room, as a 0E,06 the server's codec reads, not to the
        sender (unless it asks for reflection: under its request ID) nor
        to another room."""
        from twisted.internet.testing import StringTransport

        from aimserver.wire.chat import ChatMessageToClient

        class Transport(StringTransport):
            def setTcpNoDelay(self, enabled: bool) -> None:
                pass

        factory = baselines.ChatRoomFactory()
        connections = []
        for name, room in ((b"m0", b"r"), (b"m1", b"r"), (b"m2", b"r"), (b"x", b"other")):
            proto = factory.buildProtocol(None)
            proto.makeConnection(Transport())
            hello = b"\x00\x00\x00\x01" + loadgen.tlv(1, name) + loadgen.tlv(0x10, room)
            proto.dataReceived(frame(1, hello))
            proto.transport.clear()
            connections.append(proto)
        payloads: list[bytes] = []

        class Client:
            def send(self, channel: int, payload: bytes) -> None:
                payloads.append(payload)
                connections[0].dataReceived(frame(channel, payload))

        sender = s11.ChatSender(Client(), "m0")  # type: ignore[arg-type]
        sender.send(42)
        self.assertEqual(connections[0].transport.value(), b"")
        self.assertEqual(connections[3].transport.value(), b"")
        for proto in connections[1:3]:
            (received,) = split_frames(proto.transport.value())
            payload = received[6:]
            self.assertEqual(payload[:4], s11.K_CHAT_TO_CLIENT)
            self.assertEqual(s11.parse_chat_text(payload), ((b"m0", b"1"), 1, 42))
            message = ChatMessageToClient.unpack(payload[10:])
            self.assertEqual((message.sender.screen_name, message.to_room), ("m0", True))
        # With TLV 0x0006 the sender gets a copy under its own request ID.
        reflected = payloads[0][:6] + b"\x00\x00\x00\x2a" + payloads[0][10:]
        reflected += loadgen.tlv(0x0006, b"")
        connections[0].dataReceived(frame(2, reflected))
        (copy,) = split_frames(connections[0].transport.value())
        self.assertEqual(copy[6:10] + copy[12:16], s11.K_CHAT_TO_CLIENT + b"\x00\x00\x00\x2a")


class ImportTests(unittest.SynchronousTestCase):
    def test_importable_without_uvloop(self) -> None:
        saved = {k: sys.modules.get(k) for k in ("uvloop", "bench.loadgen")}
        sys.modules["uvloop"] = None  # type: ignore[assignment]  # import uvloop fails
        try:
            module = importlib.reload(loadgen)
            self.assertTrue(hasattr(module, "Accounting"))
            self.assertRaises(ImportError, module.new_event_loop)
        finally:
            for name, mod in saved.items():
                if mod is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = mod
