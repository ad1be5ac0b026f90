"""At the file-descriptor cap (issue 19, resource limits): the real server
(twistd, in a child with RLIMIT_NOFILE lowered) refuses new connections
cleanly, closing them at once, while signed-on sessions carry on; once
descriptors are free again, new logins work."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from tests.client import BosClient, bucp_login, deferred_test
from tests.fakes import result_of
from tests.test_store import open_inline
from tests.test_store_durability import LINE_TIMEOUT, free_port

#: Descriptors the child may have: its listeners, database, log and threads
#: take some 30; the rest is for connections.
FD_CAP = 96
#: Connections opened against it: well past the cap.
FLOOD = 160


def lower_fd_cap() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_CAP, FD_CAP))


class FdCapTests(TestCase):
    timeout = 60

    @deferred_test
    async def test_at_the_fd_cap_new_connections_are_closed_and_sessions_carry_on(
        self,
    ) -> None:
        path = os.path.abspath(self.mktemp())
        store = open_inline(path)
        for name in ("Alice", "Bob"):
            result_of(store.create_account(name, "secret"))
        result_of(store.stop())
        auth_port, bos_port = free_port(), free_port()
        ini = os.path.abspath(self.mktemp())
        with open(ini, "w") as f:
            f.write(
                "[connection]\nmax_connections_per_address = 0\n[multisession]\nnotify = false\n"
            )
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
        log = os.path.abspath(self.mktemp())
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from twisted.scripts.twistd import run; run()",
                "-n",
                "--logfile",
                log,
                "--pidfile",
                "",
                "aimserver",
                "--db",
                path,
                "--config",
                ini,
                "--auth-port",
                str(auth_port),
                "--bos-port",
                str(bos_port),
                "--chat-port",
                str(free_port()),
                "--api-port",
                str(free_port()),
                "--web-port",
                str(free_port()),
            ],
            env=env,
            cwd=repo,
            preexec_fn=lower_fd_cap,
        )
        flood: list[socket.socket] = []
        try:
            deadline = time.monotonic() + LINE_TIMEOUT
            while True:
                try:
                    socket.create_connection(("127.0.0.1", bos_port), 0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        self.fail(f"the server did not listen; its log: {tail(log)}")
                    await task.deferLater(reactor, 0.1, lambda: None)
            alice = await BosClient.sign_on(
                await bucp_login("127.0.0.1", auth_port, "Alice", "secret")
            )
            self.addCleanup(alice.close)
            bob = await BosClient.sign_on(await bucp_login("127.0.0.1", auth_port, "Bob", "secret"))
            self.addCleanup(bob.close)

            # The flood: each connection either stays open (a descriptor of
            # the server's) or, past the cap, is closed by the server at once.
            for _ in range(FLOOD):
                s = socket.create_connection(("127.0.0.1", bos_port), 2)
                flood.append(s)
            await task.deferLater(reactor, 1.0, lambda: None)
            closed = sum(1 for s in flood if connection_closed(s))
            self.assertGreater(closed, 0, "no connection was refused: the cap was not reached")
            self.assertLess(closed, FLOOD)
            self.assertIsNone(process.poll(), "the server died at the cap")

            # The signed-on sessions carry on.
            alice.send_im("Bob", b"still here at the cap")
            _, text, _ = await bob.receive_im()
            self.assertEqual(text, b"still here at the cap")

            # Descriptors free again: a new login works.
            for s in flood:
                s.close()
            flood.clear()
            await task.deferLater(reactor, 0.5, lambda: None)
            again = await bucp_login("127.0.0.1", auth_port, "Alice", "secret")
            self.assertIsNone(again.get(0x08))
            with open(log, errors="replace") as f:
                self.assertNotIn("Traceback", f.read())
        finally:
            for s in flood:
                s.close()
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def connection_closed(s: socket.socket) -> bool:
    """Whether the server closed ``s`` (EOF or reset), without waiting."""
    s.setblocking(False)
    try:
        data = s.recv(1)
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        s.setblocking(True)
    return data == b""


def tail(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-2000:]
    except OSError:
        return "(no log)"
