"""The fuzz harness (bench/fuzz, issue 19): every target runs its seeds and
its committed corpus without a crash, the seeds are in the committed corpus,
and ``python -m bench.fuzz --list`` works. No atheris needed: the targets are
plain functions the driver hands to atheris."""

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
