# -*- test-case-name: tests.test_store_group_commit -*-
"""Group commit: the store's operations of one reactor turn, and those that
arrive while a transaction is being committed, share one transaction.

With ``synchronous=FULL`` every COMMIT waits for the disk (an fsync of the
WAL), and the DB thread does nothing else meanwhile: one transaction per
operation caps durable writes at one per fsync, whatever the load. Here an
operation waits at most for the transaction in flight; everything that queued
behind it goes together in the next one, so the fsyncs per second stay the
same while the writes per fsync grow with the load. Each operation still
succeeds or fails on its own (a SAVEPOINT each), and its Deferred fires only
once the transaction holding it is committed: an acknowledgement sent from
that callback is durable.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from aimserver.store.interfaces import StoreError

__all__ = ["MAX_BATCH", "MAX_PENDING", "GroupCommitter", "run_batch"]

#: Operations one transaction carries at most: a burst larger than this is
#: committed in several, so no transaction holds the write lock for long.
MAX_BATCH = 256
#: Operations waiting at most: past this the store is not keeping up (a
#: stalled disk), and a new one fails at once rather than queue without end.
MAX_PENDING = 20_000

_Op = Callable[..., Any]
_Runner = Callable[..., Deferred[Any]]
#: What one operation came to: (True, result) or (False, failure).
Outcome = tuple[bool, Any]


#: Batches whose durations are kept for /metrics.
RECENT_BATCHES = 64


def _failure(error: BaseException) -> Failure:
    if isinstance(error, sqlite3.Error):
        try:
            raise StoreError(f"database error: {error}") from error
        except StoreError:
            return Failure()
    return Failure(error)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def run_batch(
    conn: sqlite3.Connection, batch: Sequence[tuple[_Op, tuple[Any, ...], bool]]
) -> list[Outcome]:
    """Run ``op(conn, *args)`` for each ``(op, args, write)``, in order, each
    inside its own savepoint: consecutive writes share one transaction (one
    commit, one fsync), consecutive reads another. Reads never run inside a
    write transaction: while another process (the admin CLI) holds the write
    lock they still go ahead, as WAL allows, instead of waiting for it. On
    the DB thread."""
    outcomes: list[Outcome] = []
    start = 0
    while start < len(batch):
        write = batch[start][2]
        end = start + 1
        while end < len(batch) and batch[end][2] == write:
            end += 1
        outcomes += _run_transaction(conn, batch[start:end], write)
        start = end
    return outcomes


def _run_transaction(
    conn: sqlite3.Connection, ops: Sequence[tuple[_Op, tuple[Any, ...], bool]], write: bool
) -> list[Outcome]:
    """One transaction for ``ops``, committed once. An operation that raises
    is rolled back alone; if the transaction itself is lost (the commit
    fails, or an error ended it), every operation fails, those that had
    succeeded included: none of them is stored."""
    try:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    except sqlite3.Error as e:
        return [(False, _failure(e))] * len(ops)
    outcomes: list[Outcome] = []
    try:
        for op, args, _ in ops:
            conn.execute("SAVEPOINT op")
            try:
                result = op(conn, *args)
            except Exception as e:
                failure = _failure(e)
                if not conn.in_transaction:
                    # SQLite ended the transaction (e.g. disk full): the work
                    # of the earlier operations is gone too.
                    lost = _failure(StoreError(f"transaction rolled back: {failure.value}"))
                    return [(False, lost)] * len(outcomes) + [(False, failure)] * (
                        len(ops) - len(outcomes)
                    )
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                outcomes.append((False, failure))
            else:
                conn.execute("RELEASE op")
                outcomes.append((True, result))
        conn.execute("COMMIT")
    except Exception as e:
        _rollback(conn)
        return [(False, _failure(e))] * len(ops)
    except BaseException:
        _rollback(conn)
        raise
    return outcomes


@attrs.define
class _Pending:
    op: _Op
    args: tuple[Any, ...]
    write: bool
    done: Deferred[Any] = attrs.field(factory=Deferred)


class GroupCommitter:
    """Queues operations and hands them to the DB thread in batches: one
    transaction in flight at a time, the next made of everything that queued
    meanwhile.

    :param run: ``(f, *args) -> Deferred`` that runs ``f`` where the
        connection may be used (the DB thread, or inline in tests).
    :param schedule: ``schedule(f)`` calls ``f`` at the end of the current
        reactor turn (``reactor.callLater(0, f)``), so a turn's operations
        start together; ``None`` starts a batch at once (inline runners).
    """

    def __init__(
        self,
        run: _Runner,
        conn: sqlite3.Connection,
        schedule: Callable[[Callable[[], None]], object] | None = None,
        max_batch: int = MAX_BATCH,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._run = run
        self._conn = conn
        self._schedule = schedule
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._pending: deque[_Pending] = deque()
        self._in_flight = False
        self._scheduled = False
        self._idle: list[Deferred[None]] = []
        #: Transactions committed and operations run, for the tests and the
        #: benchmark's notes.
        self.transactions = 0
        self.operations = 0
        #: Seconds the latest batches took, queued work to answer (for
        #: /metrics), the last ``RECENT_BATCHES`` of them.
        self.recent_seconds: deque[float] = deque(maxlen=RECENT_BATCHES)

    def submit(self, op: _Op, *args: Any, write: bool = True) -> Deferred[Any]:
        if len(self._pending) >= self._max_pending:
            return defer.fail(StoreError("the database is not keeping up; try again later"))
        pending = _Pending(op, args, write)
        self._pending.append(pending)
        self._kick()
        return pending.done

    def idle(self) -> Deferred[None]:
        """Fires once nothing is queued or in flight (at once if so now)."""
        if not self._pending and not self._in_flight:
            return defer.succeed(None)
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        return d

    def _kick(self) -> None:
        if self._in_flight or self._scheduled or not self._pending:
            return
        if self._schedule is None:
            self._start()
        else:
            self._scheduled = True
            self._schedule(self._start)

    def _start(self) -> None:
        self._scheduled = False
        if self._in_flight or not self._pending:
            return
        count = min(len(self._pending), self._max_batch)
        batch = [self._pending.popleft() for _ in range(count)]
        self._in_flight = True
        self.transactions += 1
        self.operations += count
        started = time.monotonic()
        d = self._run(run_batch, self._conn, [(p.op, p.args, p.write) for p in batch])
        d.addBoth(self._timed, started)
        d.addBoth(self._finished, batch)

    def _timed(self, result: Any, started: float) -> Any:
        self.recent_seconds.append(time.monotonic() - started)
        return result

    def _finished(self, outcomes: list[Outcome] | Failure, batch: list[_Pending]) -> None:
        self._in_flight = False
        # What queued during this commit goes next, before the callbacks
        # below queue more.
        self._kick()
        if isinstance(outcomes, Failure):
            outcomes = [(False, outcomes)] * len(batch)
        for pending, (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                pending.done.callback(value)
            else:
                pending.done.errback(value)
        if not self._pending and not self._in_flight:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)
