"""At the file-descriptor cap (issue 19, resource limits): the real server
(twistd, in a child with RLIMIT_NOFILE lowered) refuses new connections
cleanly, closing them at once, while signed-on sessions carry on; once
descriptors are free again, new logins work."""

from __future__ import annotations

import os
import resource
import socket

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from tests.client import BosClient, bucp_login, deferred_test
from tests.fakes import result_of
from tests.test_store import open_inline
from tests.twistd_process import start_twistd

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
        ini = os.path.abspath(self.mktemp())
        with open(ini, "w") as f:
            f.write(
                "[connection]\nmax_connections_per_address = 0\n[multisession]\nnotify = false\n"
            )
        server = await start_twistd(self, path, config=ini, preexec_fn=lower_fd_cap)
        auth_port, bos_port, process, log = (
            server.auth_port,
            server.bos_port,
            server.process,
            server.log,
        )
        flood: list[socket.socket] = []
        try:
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
            server.stop()


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
