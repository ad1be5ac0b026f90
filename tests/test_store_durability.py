"""A killed server loses nothing it reported committed: an account, or a
feedbag edit it acknowledged (SQLite WAL, synchronous=FULL)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time

from twisted.trial.unittest import FailTest, SynchronousTestCase, TestCase

from aimserver.wire.feedbag import WireFeedbagItem
from aimserver.wire.tlv import Tlv
from tests.client import BosClient, bucp_login, deferred_test
from tests.fakes import result_of
from tests.test_store import open_inline
from tests.twistd_process import start_twistd

#: How long the child may take to report each step. Starting Python, Twisted
#: and SQLite takes about a second; a child that says nothing for this long
#: has hung, and the test fails instead of hanging the suite.
LINE_TIMEOUT = 30.0

WRITER = textwrap.dedent(
    """
    import sys, time
    from twisted.internet import reactor
    from aimserver.store.sqlite import SQLiteUserStore

    store = SQLiteUserStore.open(sys.argv[1], reactor)
    store.start()

    def created(account):
        print("committed", account.screen_name, flush=True)

    def go():
        d = store.create_account("Durable One", "secret")
        d.addCallback(created)
        d.addCallback(lambda _: store.set_warning("Durable One", 300, 1000))
        d.addCallback(lambda _: print("warned", flush=True))

    reactor.callWhenRunning(go)
    reactor.run()
    """
)


ROOT = WireFeedbagItem(b"", 0, 0, 1, Tlv(0x00C8, b"\x0a\x1e").pack()).pack()
GROUP = WireFeedbagItem(b"Buddies", 0x0A1E, 0, 1).pack()
BUDDY = WireFeedbagItem(b"Bob", 0x0A1E, 0x1234, 0).pack()


class ChildTimeout(FailTest):
    """The child printed no whole line in time, or ended first: the test fails."""


class LineReader:
    """Lines from a child's stdout, each awaited for at most a bound.

    ``readline`` on the pipe itself would block for as long as the child
    stays alive and silent, out of reach of trial's timeout (it only
    interrupts a test that gives the reactor a turn)."""

    def __init__(self, process: subprocess.Popen[bytes], stderr_path: str) -> None:
        assert process.stdout is not None
        self.process = process
        self.fd = process.stdout.fileno()
        self.stderr_path = stderr_path
        self.pending = b""

    def _stderr(self) -> str:
        with open(self.stderr_path, "rb") as f:
            return f.read()[-2000:].decode("utf-8", "replace").strip() or "nothing"

    def readline(self, timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.pending:
            remaining = deadline - time.monotonic()
            readable = remaining > 0 and select.select([self.fd], [], [], remaining)[0]
            if not readable:
                raise ChildTimeout(
                    f"the child printed no {what!r} line within {timeout:g}s"
                    f" (so far: {self.pending!r}); its stderr: {self._stderr()}"
                )
            chunk = os.read(self.fd, 4096)
            if not chunk:
                raise ChildTimeout(
                    f"the child ended (exit code {self.process.wait()}) before"
                    f" printing a {what!r} line (so far: {self.pending!r});"
                    f" its stderr: {self._stderr()}"
                )
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()


class KilledServerTests(TestCase):
    def test_committed_account_survives_kill_9(self) -> None:
        """An account whose creation was reported done (on the real DB thread)
        is there after the process is killed with SIGKILL, with its later write."""
        path = os.path.abspath(self.mktemp())
        env = {
            **os.environ,
            "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        stderr_path = self.mktemp()
        with open(stderr_path, "wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-c", WRITER, path],
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            )
        try:
            lines = LineReader(process, stderr_path)
            committed = lines.readline(LINE_TIMEOUT, "committed")
            self.assertEqual(committed.split(), ["committed", "Durable", "One"])
            self.assertEqual(lines.readline(LINE_TIMEOUT, "warned").strip(), "warned")
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            assert process.stdout is not None
            process.stdout.close()
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        account = self.successResultOf(store.get_account("durableone"))
        self.assertIsNotNone(account)
        self.assertEqual((account.screen_name, account.warning_level), ("Durable One", 300))


class LineReaderTests(SynchronousTestCase):
    """The bound on waiting for the child: a hung or dead child fails the
    test in bounded time instead of hanging the suite."""

    def spawn(self, code: str) -> LineReader:
        stderr_path = self.mktemp()
        with open(stderr_path, "wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=stderr
            )

        def reap() -> None:
            process.kill()
            process.wait(timeout=10)
            assert process.stdout is not None
            process.stdout.close()

        self.addCleanup(reap)
        return LineReader(process, stderr_path)

    def test_lines_are_read_one_at_a_time(self) -> None:
        lines = self.spawn("print('one'); print('two', flush=True)")
        self.assertEqual(lines.readline(LINE_TIMEOUT, "one"), "one")
        self.assertEqual(lines.readline(LINE_TIMEOUT, "two"), "two")

    def test_silent_child_fails_within_the_bound(self) -> None:
        """A child that hangs after half a line: ChildTimeout (a test
        failure) after the bound, quoting what it did say."""
        lines = self.spawn(
            "import sys, time; sys.stdout.write('commi'); sys.stdout.flush();"
            " sys.stderr.write('stuck here'); sys.stderr.flush(); time.sleep(60)"
        )
        started = time.monotonic()
        with self.assertRaises(ChildTimeout) as caught:
            lines.readline(0.5, "committed")
        self.assertLess(time.monotonic() - started, 5)
        self.assertIsInstance(caught.exception, self.failureException)
        self.assertIn("no 'committed' line within 0.5s", str(caught.exception))
        self.assertIn("b'commi'", str(caught.exception))

    def test_child_that_dies_fails_at_once(self) -> None:
        lines = self.spawn("import sys; sys.stderr.write('boom'); sys.exit(3)")
        with self.assertRaises(ChildTimeout) as caught:
            lines.readline(LINE_TIMEOUT, "committed")
        self.assertIn("exit code 3", str(caught.exception))
        self.assertIn("boom", str(caught.exception))


class KilledServerFeedbagTests(TestCase):
    """Issue 15: a feedbag edit acknowledged with 13,0E by the real server
    (twistd, SQLite) is there after the server is killed with SIGKILL."""

    timeout = 60

    @deferred_test
    async def test_acknowledged_feedbag_edit_survives_kill_9(self) -> None:
        path = os.path.abspath(self.mktemp())
        store = open_inline(path)
        result_of(store.create_account("Alice", "secret"))
        result_of(store.stop())
        server = await start_twistd(self, path)
        try:
            login = await bucp_login("127.0.0.1", server.auth_port, "Alice", "secret")
            alice = await BosClient.sign_on(login)
            _, status = await alice.request(0x13, 0x08, ROOT + GROUP + BUDDY, 0x0E)
            self.assertEqual(status, b"\x00\x00" * 3)
        finally:
            server.kill()
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        items = self.successResultOf(store.get_feedbag("Alice")).items
        self.assertEqual([i.key for i in items], [(0, 0), (0x0A1E, 0), (0x0A1E, 0x1234)])
