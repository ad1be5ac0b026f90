"""Group commit (aimserver.store.group_commit): the operations that queue
while a transaction is in flight share the next one, each still succeeds or
fails alone, and none is reported done before its transaction commits."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aimserver.store.group_commit import RECENT_BATCHES, GroupCommitter, run_batch
from aimserver.store.interfaces import AccountExists, StoreError


class ManualRunner:
    """Runs nothing until told: each ``run(f, *args)`` waits in ``calls``."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []

    def __call__(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.calls.append((f, args, d))
        return d

    def step(self) -> None:
        f, args, d = self.calls.pop(0)
        d.callback(f(*args))


def database() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
    conn.execute("CREATE TABLE child (k TEXT REFERENCES t (k))")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def put(conn: sqlite3.Connection, key: str, value: int) -> int:
    conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (key, value))
    return value


def get(conn: sqlite3.Connection, key: str) -> int | None:
    row = conn.execute("SELECT v FROM t WHERE k = ?", (key,)).fetchone()
    return None if row is None else row[0]


def refuse(conn: sqlite3.Connection, key: str) -> None:
    put(conn, key, 0)
    raise AccountExists(key)


def stored(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT k, v FROM t").fetchall())


class GroupCommitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.conn = database()
        self.addCleanup(self.conn.close)
        self.runner = ManualRunner()
        self.committer = GroupCommitter(self.runner, self.conn)

    def test_operations_queued_during_a_commit_share_the_next_transaction(self) -> None:
        """The first write goes alone; the three that queue behind it go
        together, in one transaction, in order."""
        first = self.committer.submit(put, "a", 1)
        rest = [self.committer.submit(put, k, v) for k, v in (("b", 2), ("c", 3), ("d", 4))]
        self.assertEqual(len(self.runner.calls), 1)
        self.runner.step()
        self.assertEqual(self.successResultOf(first), 1)
        self.assertEqual(len(self.runner.calls), 1)
        self.assertEqual(len(self.runner.calls[0][1][1]), 3)
        self.runner.step()
        self.assertEqual([self.successResultOf(d) for d in rest], [2, 3, 4])
        self.assertEqual((self.committer.transactions, self.committer.operations), (2, 4))
        self.assertEqual(stored(self.conn), {"a": 1, "b": 2, "c": 3, "d": 4})

    def test_each_batch_is_timed_and_the_record_bounded(self) -> None:
        """Every batch's duration is kept for /metrics, the latest only."""
        for n in range(RECENT_BATCHES + 5):
            self.committer.submit(put, f"k{n}", n)
            self.runner.step()
        self.assertEqual(len(self.committer.recent_seconds), RECENT_BATCHES)
        self.assertTrue(all(seconds >= 0 for seconds in self.committer.recent_seconds))

    def test_nothing_is_reported_before_its_commit(self) -> None:
        """A Deferred fires only once the transaction holding it has
        committed: an acknowledgement sent from it is durable."""
        self.committer.submit(put, "a", 1)
        queued = self.committer.submit(put, "b", 2)
        self.runner.step()
        self.assertNoResult(queued)
        self.assertNotIn("b", stored(self.conn))
        self.runner.step()
        self.assertEqual(self.successResultOf(queued), 2)

    def test_a_failing_operation_fails_alone(self) -> None:
        """An operation that raises is rolled back to its savepoint: its own
        partial write is gone, the others of the batch are committed."""
        self.committer.submit(put, "a", 1)
        ok = self.committer.submit(put, "b", 2)
        bad = self.committer.submit(refuse, "c")
        duplicate = self.committer.submit(put, "a", 9)
        after = self.committer.submit(put, "d", 4)
        self.runner.step()
        self.runner.step()
        self.assertEqual(self.successResultOf(ok), 2)
        self.failureResultOf(bad, AccountExists)
        # An sqlite3 error comes out as a StoreError, as transact() gives it.
        self.failureResultOf(duplicate, StoreError)
        self.assertEqual(self.successResultOf(after), 4)
        self.assertEqual(stored(self.conn), {"a": 1, "b": 2, "d": 4})

    def test_a_failed_commit_fails_every_operation(self) -> None:
        """When COMMIT itself fails nothing of the batch is stored, and every
        operation of it fails, those that had succeeded included."""

        def orphan(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA defer_foreign_keys = ON")
            conn.execute("INSERT INTO child (k) VALUES ('nobody')")

        d1 = self.committer.submit(put, "a", 1)
        ok = self.committer.submit(put, "b", 2)
        broken = self.committer.submit(orphan)
        self.runner.step()
        self.successResultOf(d1)
        self.runner.step()
        self.failureResultOf(ok, StoreError)
        self.failureResultOf(broken, StoreError)
        self.assertEqual(stored(self.conn), {"a": 1})
        self.assertFalse(self.conn.in_transaction)

    def test_an_operation_that_ends_the_transaction_fails_the_batch(self) -> None:
        """If an error ends the whole transaction (SQLite does so for a full
        disk, for one), the earlier operations' work is lost with it: they
        fail too, and so does the rest."""

        def lose_transaction(conn: sqlite3.Connection) -> None:
            conn.execute("ROLLBACK")
            raise StoreError("disk full")

        self.committer.submit(put, "a", 1)
        before = self.committer.submit(put, "b", 2)
        losing = self.committer.submit(lose_transaction)
        later = self.committer.submit(put, "c", 3)
        self.runner.step()
        self.runner.step()
        self.failureResultOf(before, StoreError)
        self.failureResultOf(losing, StoreError)
        self.failureResultOf(later, StoreError)
        self.assertEqual(stored(self.conn), {"a": 1})

    def test_reads_alone_take_no_write_lock(self) -> None:
        """A batch of reads begins a deferred transaction: another writer is
        not kept out while it runs."""
        statements: list[str] = []
        self.conn.set_trace_callback(statements.append)
        self.assertEqual(run_batch(self.conn, [(get, ("a",), False)]), [(True, None)])
        self.assertIn("BEGIN", statements)
        self.assertNotIn("BEGIN IMMEDIATE", statements)
        run_batch(self.conn, [(get, ("a",), False), (put, ("a", 1), True)])
        self.assertIn("BEGIN IMMEDIATE", statements)

    def test_a_batch_is_bounded(self) -> None:
        """A burst larger than the bound is committed in several transactions."""
        committer = GroupCommitter(self.runner, self.conn, max_batch=2)
        results = [committer.submit(put, str(n), n) for n in range(5)]
        while self.runner.calls:
            self.assertLessEqual(len(self.runner.calls[0][1][1]), 2)
            self.runner.step()
        self.assertEqual([self.successResultOf(d) for d in results], list(range(5)))
        self.assertEqual(committer.transactions, 3)

    def test_one_turn_starts_together(self) -> None:
        """With a scheduler (the reactor's callLater(0)), the operations of
        one turn wait for its end and go in one transaction."""
        clock = Clock()
        committer = GroupCommitter(self.runner, self.conn, lambda f: clock.callLater(0, f))
        results = [committer.submit(put, k, v) for k, v in (("a", 1), ("b", 2))]
        self.assertEqual(self.runner.calls, [])
        clock.advance(0)
        self.assertEqual(len(self.runner.calls), 1)
        self.runner.step()
        self.assertEqual([self.successResultOf(d) for d in results], [1, 2])
        self.assertEqual(committer.transactions, 1)

    def test_idle_waits_for_queued_and_in_flight_work(self) -> None:
        """What ``stop()`` waits for before it closes the connection."""
        self.successResultOf(self.committer.idle())
        self.committer.submit(put, "a", 1)
        self.committer.submit(put, "b", 2)
        idle = self.committer.idle()
        self.runner.step()
        self.assertNoResult(idle)
        self.runner.step()
        self.successResultOf(idle)

    def test_the_runner_failing_fails_the_batch(self) -> None:
        """If the DB thread cannot run the batch at all, its operations fail
        rather than wait forever, and the next batch still goes."""
        calls: list[int] = []

        def flaky(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
            calls.append(1)
            if len(calls) == 1:
                return defer.fail(StoreError("the store is closed"))
            return defer.maybeDeferred(f, *args)

        committer = GroupCommitter(flaky, self.conn)
        self.failureResultOf(committer.submit(put, "a", 1), StoreError)
        self.assertEqual(self.successResultOf(committer.submit(put, "b", 2)), 2)

    def test_callbacks_that_queue_more_are_run(self) -> None:
        """A caller that writes again from its callback (a read, then the
        write it decides on) is not stranded, inline runner or not."""
        committer = GroupCommitter(defer.maybeDeferred, self.conn)
        d = committer.submit(get, "a").addCallback(
            lambda value: committer.submit(put, "a", (value or 0) + 1)
        )
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(stored(self.conn), {"a": 1})

    def test_the_queue_is_bounded(self) -> None:
        """A stalled disk does not make the queue grow without end: past its
        bound a new operation fails at once."""
        committer = GroupCommitter(self.runner, self.conn, max_pending=2)
        committer.submit(put, "a", 1)  # in flight
        queued = [committer.submit(put, k, 0) for k in "bc"]
        self.failureResultOf(committer.submit(put, "d", 4), StoreError)
        while self.runner.calls:
            self.runner.step()
        for d in queued:
            self.successResultOf(d)


class RunBatchTests(SynchronousTestCase):
    def test_writes_share_a_commit_reads_never_join_it(self) -> None:
        """Consecutive writes: one transaction. A read between them gets its
        own (deferred) one, and everything still runs in order."""
        conn = database()
        self.addCleanup(conn.close)
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        outcomes = run_batch(
            conn,
            [
                (put, ("a", 1), True),
                (put, ("b", 2), True),
                (get, ("a",), False),
                (put, ("c", 3), True),
            ],
        )
        self.assertEqual([value for _, value in outcomes], [1, 2, 1, 3])
        begins = [s for s in statements if s.startswith("BEGIN")]
        self.assertEqual(begins, ["BEGIN IMMEDIATE", "BEGIN", "BEGIN IMMEDIATE"])
        self.assertEqual(statements.count("COMMIT"), 3)

    def test_reads_go_ahead_while_another_process_holds_the_write_lock(self) -> None:
        """The admin CLI writing (WAL mode): the server's reads of the same
        batch are answered; only its writes wait (and here, time out)."""
        path = self.mktemp()
        conn = sqlite3.connect(path, isolation_level=None, timeout=0.05)
        self.addCleanup(conn.close)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
        put(conn, "a", 1)
        other = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(other.close)
        other.execute("BEGIN IMMEDIATE")
        self.addCleanup(other.execute, "ROLLBACK")
        (read, written) = run_batch(conn, [(get, ("a",), False), (put, ("b", 2), True)])
        self.assertEqual(read, (True, 1))
        self.assertFalse(written[0])
        self.assertIsInstance(written[1].value, StoreError)
