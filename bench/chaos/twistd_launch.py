"""The subject as the chaos parts start it: ``twistd -n aimserver`` in a child
process, on free loopback ports and a given database.

Two ways to run it:

* ``start`` (asyncio): a server that runs until it is killed or stopped, its
  log in a file, once every listener accepts connections;
* ``start_to_exit`` (blocking): a start-up that should be *refused*, run to
  its end with its output captured through a pipe (a file-size limit on the
  child would stop it writing a log file), and reported as what it did:
  exited with a status, or came up and listened (then it is killed).

Plus the two start-up faults a test needs a child for: a database file it
may not write (``deny_writes``) and a full disk (``file_size_limit``).

bench/ does not import tests/: this is its own small launcher, with the same
command line as ``tests/twistd_process.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]
#: How long a child may take to listen (Python, Twisted, SQLite: about 1 s).
START_TIMEOUT = 30.0
#: How long a stopped or killed child may take to be reaped.
STOP_TIMEOUT = 10.0
#: Every listener the subject has, in the order its options name them.
LISTENERS = ("auth", "bos", "chat", "api", "web")

#: Linux capabilities that let root write a file its mode forbids
#: (CAP_DAC_OVERRIDE), read one (CAP_DAC_READ_SEARCH) or change its mode
#: without owning it (CAP_FOWNER).
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER = 1, 2, 3
_PR_CAPBSET_DROP = 24


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def write_ini(path: Path, settings: Mapping[str, Mapping[str, str]]) -> None:
    """An INI of ``settings`` (section -> key -> value)."""
    lines = ["# Written by bench/chaos for the subject server."]
    for section, keys in settings.items():
        lines += ["", f"[{section}]"] + [f"{key} = {value}" for key, value in keys.items()]
    path.write_text("\n".join(lines) + "\n")


def command(
    db: Path, ports: Mapping[str, int], *, config: Path | None = None, log: str = "-"
) -> list[str]:
    """``twistd -n aimserver`` on ``db`` and ``ports``; ``log`` is twistd's
    ``--logfile`` (``-``: standard output). Paths are made absolute: the
    child runs in the repository."""
    args = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n"]
    args += ["--logfile", log, "--pidfile", "", "aimserver", "--db", str(Path(db).absolute())]
    for name in LISTENERS:
        args += [f"--{name}-port", str(ports[name])]
    if config is not None:
        args += ["--config", str(Path(config).absolute())]
    return args


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


class StartFailed(Exception):
    """The subject exited, or did not listen in time; the message quotes its log."""


@attrs.define
class Subject:
    """One running server process."""

    process: subprocess.Popen[bytes]
    ports: dict[str, int]
    log: Path

    def address(self, listener: str) -> tuple[str, int]:
        return HOST, self.ports[listener]

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> int | None:
        """Its exit status if it has ended (on its own or killed), else None."""
        return self.process.poll()

    def kill(self) -> None:
        """SIGKILL to its pid (a crash), then reap it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)

    def stop(self) -> int:
        """SIGTERM (a clean stop), SIGKILL if it takes too long; its status."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.wait(STOP_TIMEOUT)

    def log_tail(self, size: int = 2000) -> str:
        try:
            with open(self.log, "rb") as f:
                return f.read()[-size:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"


async def start(
    db: Path, log: Path, *, config: Path | None = None, timeout: float = START_TIMEOUT
) -> Subject:
    """The subject on ``db``, every listener on a free port, once all of them
    accept. Its output (twistd's log included) goes to ``log``.

    :raises StartFailed: it exited first (a refused database, a bug), or did
        not listen within ``timeout``; it is not left running.
    """
    ports = {name: free_port() for name in LISTENERS}
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command(db, ports, config=config, log=str(Path(log).absolute())),
            env=_environment(),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    subject = Subject(process, ports, log)
    deadline = time.monotonic() + timeout
    waiting = list(LISTENERS)
    while waiting:
        status = process.poll()
        if status is not None:
            raise StartFailed(f"the server exited with status {status}: {subject.log_tail()}")
        if time.monotonic() > deadline:
            subject.kill()
            raise StartFailed(
                f"the server did not listen within {timeout:g} s: {subject.log_tail()}"
            )
        try:
            _, writer = await asyncio.open_connection(HOST, ports[waiting[0]])
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        waiting.pop(0)
    return subject


@attrs.frozen
class StartOutcome:
    """What a start-up did: ``status`` is its exit status, or None if it
    came up and listened (it was killed then); ``output`` is its stdout and
    stderr together."""

    status: int | None
    output: str

    @property
    def listened(self) -> bool:
        return self.status is None


def start_to_exit(
    db: Path,
    *,
    config: Path | None = None,
    preexec_fn: Callable[[], None] | None = None,
    timeout: float = START_TIMEOUT,
) -> StartOutcome:
    """Start the subject on ``db`` and wait until it exits or listens (then
    kill it): for start-ups that must be refused. Blocks.

    The output goes through a pipe, never a file, so that a child under a
    file-size limit can still say why it stops; a start-up says far less than
    a pipe holds before it is read.
    """
    ports = {name: free_port() for name in LISTENERS}
    process = subprocess.Popen(
        command(db, ports, config=config),
        env=_environment(),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=preexec_fn,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    status: int | None = None
    try:
        while True:
            status = process.poll()
            if status is not None:
                break
            with contextlib.suppress(OSError):
                socket.create_connection((HOST, ports["auth"]), 0.2).close()
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        output, _ = process.communicate(timeout=STOP_TIMEOUT)
    return StartOutcome(status, output.decode("utf-8", "replace"))


# -- start-up faults ------------------------------------------------------------------------


def _drop_write_override() -> None:
    """In the child, before exec: take away root's power to ignore file
    modes, for this process and whatever it runs (the bounding set: exec
    gives root only what is left in it). CAP_SETPCAP is needed for that."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_CAPBSET_DROP, {cap}): {os.strerror(errno)}")


def deny_writes(path: Path) -> Callable[[], None] | None:
    """Make ``path`` read-only for a child: mode 0444, and when we are root
    (whom a mode does not stop) the ``preexec_fn`` that drops root's
    override of file modes in the child. Why not run the child as nobody:
    the interpreter may live where nobody can reach it (``/root/.pyenv``)."""
    os.chmod(path, 0o444)
    return _drop_write_override if os.geteuid() == 0 else None


def file_size_limit(limit: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes a full disk, deterministically and without
    privileges: no file the child writes may grow past ``limit`` bytes
    (RLIMIT_FSIZE), and SIGXFSZ is ignored so that such a write fails with
    EFBIG, as it would with ENOSPC, instead of killing the child."""

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limited
