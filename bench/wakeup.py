"""What one loopback ``send`` costs the sender, to a peer that is busy and to
one that sleeps: ``python -m bench.wakeup``.

Why it matters: a server's cost per message depends on whether its peer is
awake. On a VM a send that wakes a process sleeping on another core pays for
the cross-core wake-up (an IPI, a VM exit); in a closed loop the load client
is always busy and sends are cheap, in an open loop at a fraction of the
maximum it sleeps between ticks and nearly every send wakes it. This is why
S3's open loop at "50 % of the maximum" keeps the server (and the relay
baseline) near 100 % busy (bench/README.md). Plain sockets, no Twisted:
this measures the machine, not the server.
"""

from __future__ import annotations

import os
import socket
import sys
import time

SERVER_CORE, PEER_CORE = 0, 1
MESSAGES = 20_000
MESSAGE = b"x" * 120


def peer(port: int) -> None:
    """The reading end, on the other core: reads until the sender closes."""
    os.sched_setaffinity(0, {PEER_CORE})
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while sock.recv(65536):
            pass
    os._exit(0)


def measure(sleeping_peer: bool) -> float:
    """CPU microseconds per send. With ``sleeping_peer`` each send waits until
    the peer has drained the last one (and gone back to sleep)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    pid = os.fork()
    if pid == 0:
        peer(port)
    sock, _ = listener.accept()
    listener.close()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cpu = 0.0
    for _ in range(MESSAGES):
        if sleeping_peer:
            time.sleep(0.0002)
        started = time.thread_time()
        sock.send(MESSAGE)
        cpu += time.thread_time() - started
    sock.close()
    os.waitpid(pid, 0)
    return cpu / MESSAGES * 1e6


def main() -> int:
    if len(os.sched_getaffinity(0)) < 2:
        print("needs two cores")
        return 1
    os.sched_setaffinity(0, {SERVER_CORE})
    busy = measure(sleeping_peer=False)
    asleep = measure(sleeping_peer=True)
    print(f"send to a busy peer:     {busy:6.1f} us CPU")
    print(f"send to a sleeping peer: {asleep:6.1f} us CPU ({asleep / busy:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
