"""The fuzz harness (bench/fuzz, issue 19): every target runs its seeds and
its committed corpus without a crash, the seeds are in the committed corpus,
the stream targets notice a bug that the server only logs, crashes are told
apart, ``bench.chaos.fuzz`` makes its rows, and ``python -m bench.fuzz
--list`` works. No atheris needed: the targets are plain functions the driver
hands to atheris."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from bench import fuzz

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TargetTests(SynchronousTestCase):
    def test_every_target_runs_its_seeds_and_corpus(self) -> None:
        table = fuzz.load_targets()
        self.assertEqual(tuple(table), fuzz.NAMES)
        for name, target in table.items():
            inputs = target.seeds() + fuzz.corpus_inputs(name)
            self.assertTrue(inputs, name)
            for data in inputs:
                self.assertLessEqual(len(data), target.max_len, name)
                target.run(data)

    def test_the_seeds_are_committed(self) -> None:
        """``python -m bench.fuzz --write-seeds`` was run after the seeds last changed."""
        for name, target in fuzz.load_targets().items():
            directory = os.path.join(fuzz.CORPUS, name)
            for seed in target.seeds():
                path = os.path.join(directory, "seed-" + hashlib.sha1(seed).hexdigest()[:16])
                self.assertTrue(os.path.exists(path), path)

    def test_empty_and_tiny_inputs(self) -> None:
        for target in fuzz.load_targets().values():
            for data in (b"", b"\x00", b"\xff", b"\x10" + b"\x2a" * 7):
                target.run(data)

    def test_the_stream_targets_notice_a_handler_bug(self) -> None:
        """A handler's unexpected exception (logged, answered as "service
        unavailable") fails the stream target, as a crash."""
        from aimserver.services import oservice

        def broken(body: bytes) -> list[tuple[int, int]]:
            raise IndexError("planted")

        self.patch(oservice, "parse_versions", broken)
        table = fuzz.load_targets()
        with self.assertRaises(AssertionError) as raised:
            table["bos_stream"].run(table["bos_stream"].seeds()[0])
        self.assertIn("planted", str(raised.exception))
        self.assertEqual(len(self.flushLoggedErrors(IndexError)), 1)

    def test_the_http_targets_notice_a_500(self) -> None:
        """A resource's unexpected exception (twisted.web logs it and
        answers 500) fails the HTTP stream targets, as a crash."""
        from aimserver.api import management
        from aimserver.web import devices

        def broken(*args: object) -> object:
            raise IndexError("planted")

        table = fuzz.load_targets()
        self.patch(devices.DevicesResource, "_answer", broken)
        with self.assertRaises(AssertionError) as raised:
            table["web_http"].run(table["web_http"].seeds()[0])
        self.assertIn("planted", str(raised.exception))
        self.patch(management, "_user_json", broken)
        with self.assertRaises(AssertionError) as raised:
            table["api_http"].run(table["api_http"].seeds()[0])
        self.assertIn("planted", str(raised.exception))
        self.flushLoggedErrors(IndexError)

    def test_a_logged_failure_is_signed_by_where_it_was_raised(self) -> None:
        """Two different bugs that a stream target reports the same way (a
        logged failure) are two crashes: the signature names the logged
        exception's type and line, not the target's assertion."""
        from bench.fuzz.runner import signature

        logged = (
            "logged failure or error:\nTraceback (most recent call last):\n"
            '  File "/x/site-packages/h11/_events.py", line 117, in __init__\n'
            "h11._util.LocalProtocolError: Missing mandatory Host: header\n"
        )
        try:
            raise AssertionError(logged)
        except AssertionError as e:
            self.assertEqual(
                signature(e), "logged h11._util.LocalProtocolError at h11/_events.py:117"
            )
        try:
            raise ValueError("plain")
        except ValueError as e:
            self.assertEqual(signature(e).split(" at ")[0], "ValueError")

    def test_chaos_rows(self) -> None:
        """``bench.chaos.fuzz`` counts a bystander closed as a session wrongly
        dropped, anything else as a crash, a worker that did not end well as
        a failure."""
        from bench.chaos.fuzz import row
        from bench.fuzz.runner import Crash, TargetRun

        result = TargetRun(
            "web_http",
            1000,
            10.0,
            "killed (wall-clock limit)",
            (
                Crash("AssertionError at a:1", "/c/1", "AssertionError: x went unanswered"),
                Crash(
                    "AssertionError at a:2",
                    "/c/2",
                    "AssertionError: the well-behaved HTTP connection was closed",
                ),
            ),
        )
        chaos = row(result)
        self.assertEqual(
            (chaos.part, chaos.target, chaos.inputs, chaos.crashes, chaos.wrongly_dropped),
            ("fuzz", "web_http", 1000, 1, 1),
        )
        self.assertEqual(chaos.failures, 1)
        self.assertIn("100 inputs/s", chaos.note)
        self.assertTrue(row(TargetRun("tlv", 5, 1.0, "ok")).ok)

    def test_list(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "bench.fuzz", "--list"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        listed = [line.split()[0] for line in result.stdout.splitlines()]
        self.assertEqual(listed, list(fuzz.NAMES))
