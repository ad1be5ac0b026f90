"""A killed server loses no committed account (SQLite WAL, synchronous=FULL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from twisted.trial.unittest import TestCase

from tests.test_store import open_inline

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


class KilledServerTests(TestCase):
    def test_committed_account_survives_kill_9(self) -> None:
        """An account whose creation was reported done (on the real DB thread)
        is there after the process is killed with SIGKILL, with its later write."""
        path = os.path.abspath(self.mktemp())
        env = {
            **os.environ,
            "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, path],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        try:
            self.assertEqual(process.stdout.readline().split(), ["committed", "Durable", "One"])
            self.assertEqual(process.stdout.readline().strip(), "warned")
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            process.stdout.close()
        store = open_inline(path)
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        account = self.successResultOf(store.get_account("durableone"))
        self.assertIsNotNone(account)
        self.assertEqual((account.screen_name, account.warning_level), ("Durable One", 300))
