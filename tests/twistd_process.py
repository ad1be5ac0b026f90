"""The real server as the tests start it in a child process: ``twistd -n
aimserver`` on free ports and a given database, for what only a process
shows (kill -9, the file-descriptor cap)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import reactor, task

#: How long the child may take to listen.
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@attrs.define
class Twistd:
    process: subprocess.Popen[bytes]
    auth_port: int
    bos_port: int
    log: str

    def log_tail(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


async def start_twistd(
    case: Any,
    db: str,
    *,
    config: str | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Twistd:
    """``twistd aimserver`` on ``db`` (and the INI ``config``), every
    listener on a free port, once its BOS port accepts; the caller stops or
    kills it. Fails ``case`` with the child's log if it never listens."""
    auth_port, bos_port = free_port(), free_port()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log = os.path.abspath(case.mktemp())
    args = ["--db", db, "--auth-port", str(auth_port), "--bos-port", str(bos_port)]
    for flag in ("--chat-port", "--api-port", "--web-port"):
        args += [flag, str(free_port())]
    if config is not None:
        args += ["--config", config]
    process = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n"]
        + ["--logfile", log, "--pidfile", "", "aimserver", *args],
        env=env,
        cwd=repo,
        preexec_fn=preexec_fn,
    )
    server = Twistd(process, auth_port, bos_port, log)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", bos_port), 0.2).close()
            return server
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                server.stop()
                case.fail(f"the server did not listen; its log: {server.log_tail()}")
            await task.deferLater(reactor, 0.1, lambda: None)
