# -*- test-case-name: tests.test_crash_safety -*-
"""Issue 19, crash safety: the real server (twistd, SQLite) killed with
SIGKILL while it acknowledges writes under load loses none of them and
leaves nothing half written; it refuses to start on a database it cannot
use, saying why in one line and changing nothing. The driver is the bench's
(bench/chaos/crash.py), run here with small bounds."""

from __future__ import annotations

import copy
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from bench.chaos import crash
from bench.chaos import twistd_launch as launch

#: Kills of the shared run: enough for writes in flight at several kills and
#: for a later kill to be checked against an earlier one's writes.
KILLS = 3
#: Its time budget: the kill count ends it first (about 2 s a round).
SECONDS = 20.0

_shared: crash.CrashRun | None = None


def shared_run() -> crash.CrashRun:
    """One run of ``KILLS`` rounds for the whole module (each costs a few
    seconds of two busy cores), in the trial working directory."""
    global _shared
    if _shared is None:
        directory = Path(os.path.abspath("crash-safety-run"))
        shutil.rmtree(directory, ignore_errors=True)
        _shared = crash.crash_run(SECONDS, directory=directory, rounds=KILLS)
    return _shared


class KilledUnderLoadTests(SynchronousTestCase):
    """kill -9 under load, ``KILLS`` times, on one database."""

    def test_every_acknowledged_write_survives_kill_9(self) -> None:
        """After each kill every write acknowledged so far (this round's and
        the earlier ones') is on disk as acknowledged, no unacknowledged
        write is half there, PRAGMA integrity_check says ok, and the server
        restarts on the file each time."""
        run = shared_run()
        rows = run.rows()
        self.assertEqual(run.problems, [])
        self.assertEqual(
            [r.target for r in rows],
            ["feedbag edits", "offline messages", "account changes", "history writes"],
        )
        for row in rows:
            self.assertGreater(row.inputs, 0, row)
            self.assertEqual((row.crashes, row.lost_writes, row.failures), (0, 0, 0), row)

    def test_the_kills_came_while_writes_were_in_flight(self) -> None:
        """Each kill interrupted writes (found whole or absent afterwards),
        so the run checked the moment of a crash, not a quiet server."""
        run = shared_run()
        self.assertEqual(run.kills, KILLS)
        in_flight = sum(
            ledger.tally.unacked_whole + ledger.tally.unacked_absent
            for ledger in (run.feedbag, run.offline, run.accounts, run.history)
        )
        self.assertGreaterEqual(in_flight, KILLS)

    def test_a_write_gone_from_the_file_is_counted_lost(self) -> None:
        """The check can fail: on a copy of the file with one acknowledged
        write of each kind removed or changed, each kind counts a lost
        write."""
        run = shared_run()
        before = {kind: ledger.tally.lost for kind, ledger in ledgers(run).items()}
        tampered = Path(self.mktemp())
        shutil.copyfile(run.db, tampered)
        account = next(n for n, p in run.accounts.state.items() if p and p != crash.SOME_PASSWORD)
        cookie = next(c for c, w in run.offline.writes.items() if w.state in ("acked", "kept"))
        conn = sqlite3.connect(tampered)
        with conn:
            conn.execute(
                "DELETE FROM feedbag_items WHERE normalized = ? AND group_id = 0 AND item_id = 0",
                (run.editors[0],),
            )
            conn.execute("DELETE FROM offline_messages WHERE cookie = ?", (cookie,))
            conn.execute(
                "UPDATE accounts SET strong_md5 = zeroblob(16) WHERE normalized = ?", (account,)
            )
            conn.execute(
                "DELETE FROM history_chunks WHERE rowid = (SELECT MIN(rowid) FROM history_chunks)"
            )
        conn.close()
        again = copy.deepcopy(run)
        again.check(tampered)
        for kind, ledger in ledgers(again).items():
            self.assertGreater(ledger.tally.lost, before[kind], kind)


def ledgers(run: crash.CrashRun) -> dict[str, object]:
    return {
        "feedbag": run.feedbag,
        "offline": run.offline,
        "account": run.accounts,
        "history": run.history,
    }


# -- the checks themselves, on fabricated files -----------------------------------------------

ROOT = ("", 0, 0, crash.CLASS_GROUP, b"")
GROUP = ("Buddies", crash.GROUP_ID, 0, crash.CLASS_GROUP, b"")
BOB = ("bob", crash.GROUP_ID, 1, crash.CLASS_BUDDY, b"")
CAROL = ("carol", crash.GROUP_ID, 2, crash.CLASS_BUDDY, b"")


def listed(*items: crash.Item) -> dict[crash.Key, crash.Item]:
    return {(i[1], i[2]): i for i in items}


class FeedbagLedgerTests(SynchronousTestCase):
    def ledger(self) -> crash.FeedbagLedger:
        ledger = crash.FeedbagLedger()
        ledger.seed("alice", [ROOT, GROUP])
        ledger.sent("alice", (crash.INSERT, (BOB, CAROL)))
        ledger.answered("alice", [0, 0])
        return ledger

    def test_acknowledged_edit_on_disk(self) -> None:
        ledger = self.ledger()
        ledger.check({"alice": (listed(ROOT, GROUP, BOB, CAROL), None)})
        self.assertEqual((ledger.tally.acked, ledger.tally.lost), (1, 0))

    def test_acknowledged_edit_missing_is_lost(self) -> None:
        """A buddy acknowledged by 13,0E and not in the file is a lost write."""
        ledger = self.ledger()
        ledger.check({"alice": (listed(ROOT, GROUP, BOB), None)})
        self.assertEqual(ledger.tally.lost, 1)

    def test_edit_in_flight_whole_or_absent(self) -> None:
        """The edit unanswered at the kill may be there whole, or not at all."""
        for stored in (listed(ROOT, GROUP, BOB, CAROL), listed(ROOT, GROUP)):
            ledger = self.ledger()
            ledger.sent("alice", (crash.DELETE, (BOB, CAROL)))
            ledger.check({"alice": (stored, None)})
            self.assertEqual(ledger.tally.lost, 0)
            self.assertEqual(ledger.tally.unacked_whole + ledger.tally.unacked_absent, 1)

    def test_edit_in_flight_half_there_is_lost(self) -> None:
        """One item of a two-item edit in flight, without the other: half there."""
        ledger = self.ledger()
        ledger.sent("alice", (crash.DELETE, (BOB, CAROL)))
        ledger.check({"alice": (listed(ROOT, GROUP, CAROL), None)})
        self.assertEqual(ledger.tally.lost, 1)

    def test_summary_of_another_list_is_lost(self) -> None:
        """The summary sign-on reads must describe the stored items."""
        ledger = self.ledger()
        items = listed(ROOT, GROUP, BOB, CAROL)
        ledger.check({"alice": (items, listed(ROOT, GROUP, BOB))})
        self.assertEqual(ledger.tally.lost, 1)


def message(cookie: bytes, inbox: str = "box1", data: bytes = b"data") -> crash.StoredMessage:
    return crash.StoredMessage(inbox, "alice", cookie, b"\x00\x02" + data)


class OfflineLedgerTests(SynchronousTestCase):
    def ledger(self) -> crash.OfflineLedger:
        ledger = crash.OfflineLedger()
        ledger.sent(b"c1", "box1", "alice", b"data")
        ledger.answered(b"c1", True)
        return ledger

    def test_acknowledged_message_missing_is_lost(self) -> None:
        ledger = self.ledger()
        ledger.check([])
        self.assertEqual(ledger.tally.lost, 1)

    def test_a_loss_is_counted_once(self) -> None:
        """Missing at two checks in a row, one acknowledged message is one
        lost write."""
        ledger = self.ledger()
        ledger.check([])
        ledger.check([])
        self.assertEqual(ledger.tally.lost, 1)

    def test_refused_message_present_is_lost(self) -> None:
        """A message answered 04,01 (not stored) must not be in the file."""
        ledger = self.ledger()
        ledger.sent(b"c2", "box1", "alice", b"data")
        ledger.answered(b"c2", False)
        ledger.check([message(b"c1"), message(b"c2")])
        self.assertEqual(ledger.tally.lost, 1)

    def test_changed_or_repeated_message_is_lost(self) -> None:
        ledger = self.ledger()
        ledger.check([message(b"c1", data=b"other")])
        self.assertEqual(ledger.tally.lost, 1)
        ledger = self.ledger()
        ledger.check([message(b"c1"), message(b"c1")])
        self.assertEqual(ledger.tally.lost, 1)

    def test_message_in_flight_found_must_stay(self) -> None:
        """Found after one kill, an unacknowledged message must be there
        after the next; not found, it must never appear."""
        ledger = self.ledger()
        ledger.sent(b"c2", "box1", "alice", b"data")
        ledger.sent(b"c3", "box1", "alice", b"data")
        ledger.check([message(b"c1"), message(b"c2")])
        self.assertEqual((ledger.tally.lost, ledger.tally.unacked_whole), (0, 1))
        ledger.check([message(b"c1"), message(b"c3")])
        self.assertEqual(ledger.tally.lost, 2)


def account(password: str) -> crash.StoredAccount:
    from aimserver.store.credentials import strong_digest

    return crash.StoredAccount("key", strong_digest(b"key", password.encode()))


class AccountLedgerTests(SynchronousTestCase):
    def ledger(self) -> crash.AccountLedger:
        ledger = crash.AccountLedger()
        ledger.sent("alice", "first")
        ledger.answered("alice", True, "create")
        ledger.sent("alice", "second")
        ledger.answered("alice", True, "change")
        return ledger

    def test_acknowledged_change_missing_is_lost(self) -> None:
        """The password of the last acknowledged change, not an older one."""
        ledger = self.ledger()
        ledger.check({"alice": account("first")})
        self.assertEqual(ledger.tally.lost, 1)

    def test_acknowledged_create_missing_is_lost(self) -> None:
        ledger = self.ledger()
        ledger.check({"alice": None})
        self.assertEqual(ledger.tally.lost, 1)

    def test_change_in_flight_either_way(self) -> None:
        for stored in (account("second"), None):
            ledger = self.ledger()
            ledger.sent("alice", None)
            ledger.check({"alice": stored})
            self.assertEqual(ledger.tally.lost, 0)


def entry(owner: str, outgoing: bool, text: str, entry_id: int) -> crash.StoredEntry:
    peer = "bob" if owner == "alice" else "alice"
    return crash.StoredEntry(owner, peer, outgoing, text, entry_id)


class HistoryLedgerTests(SynchronousTestCase):
    def ledger(self) -> crash.HistoryLedger:
        ledger = crash.HistoryLedger()
        ledger.sent("one", "alice", "bob", 1)
        ledger.sent("two", "alice", "bob", 2)
        ledger.returned("alice", [{"with": "bob", "outgoing": True, "text": "one"}])
        return ledger

    def test_acknowledged_entry_missing_is_lost(self) -> None:
        """An entry a get_history answer held must be in the file."""
        ledger = self.ledger()
        self.assertEqual(ledger.tally.acked, 1)
        ledger.check([entry("bob", False, "one", 1)])
        self.assertEqual(ledger.tally.lost, 1)

    def test_whole_or_absent_is_not_lost(self) -> None:
        ledger = self.ledger()
        ledger.check([entry("alice", True, "one", 1), entry("bob", False, "one", 2)])
        self.assertEqual(ledger.tally.lost, 0)
        self.assertEqual(ledger.tally.unacked_absent, 1)

    def test_im_half_in_the_history_is_lost(self) -> None:
        """An IM in the sender's history and not in the recipient's."""
        ledger = self.ledger()
        ledger.check(
            [
                entry("alice", True, "one", 1),
                entry("bob", False, "one", 2),
                entry("alice", True, "two", 3),
            ]
        )
        self.assertEqual(ledger.tally.lost, 1)

    def test_ids_out_of_order_or_repeated_fail(self) -> None:
        """An owner's ids follow the order of the IMs, each used once (two
        owners may each have an id 2)."""
        ledger = self.ledger()
        ledger.check(
            [
                entry("alice", True, "two", 1),
                entry("alice", True, "one", 2),
                entry("bob", False, "one", 2),
                entry("bob", False, "two", 2),
            ]
        )
        self.assertEqual(ledger.tally.failures, 2)
        self.assertEqual(len([p for p in ledger.tally.problems if "ids" in p]), 2)


# -- start-up on a database the server cannot use ---------------------------------------------


class StartupFaultTests(SynchronousTestCase):
    """Each start-up exits non-zero with one line ``aimserver: <why>`` and no
    traceback, and leaves every file beside the database as it was."""

    def refused(self, name: str) -> crash.FaultRun:
        fault = next(f for f in crash.FAULTS if f.name == name)
        directory = Path(self.mktemp())
        directory.mkdir()
        try:
            done = crash.start_with_fault(fault, directory)
        except subprocess.SubprocessError as e:
            raise SkipTest(f"cannot make the fault here: {e}") from None
        self.assertFalse(done.outcome.listened, done.outcome.output)
        self.assertEqual(done.outcome.status, 1, done.outcome.output)
        self.assertNotIn("Traceback", done.outcome.output)
        self.assertEqual(len(done.lines), 1, done.outcome.output)
        self.assertTrue(done.lines[0].startswith("aimserver: "), done.lines)
        self.assertIn(fault.reason(), done.lines[0])
        self.assertEqual(sorted(done.after), sorted(done.before))
        self.assertEqual(done.after, done.before)
        self.assertEqual(done.problems(), [])
        return done

    def test_corrupt_database_is_refused_unchanged(self) -> None:
        self.refused("corrupt database")

    def test_corrupt_page_opening_does_not_read_is_refused_unchanged(self) -> None:
        """Damage in a page only a user's sign-on would read (their stored
        list): refused at start-up, not at that sign-on."""
        self.refused("corrupt page read late")

    def test_newer_database_is_refused_unchanged(self) -> None:
        self.refused("newer version")

    def test_read_only_database_is_refused_unchanged(self) -> None:
        """A file the server may not write (mode 0444; as root, with root's
        override of file modes taken from the child): it would open it and
        fail every write later."""
        done = self.refused("read-only file")
        self.assertIn("fault.sqlite", done.lines[0])

    def test_full_disk_is_refused_unchanged(self) -> None:
        """No room beside the database (no file may grow past its size):
        refused at start-up, not write by write."""
        done = self.refused("full disk")
        self.assertIn("fault.sqlite", done.lines[0])


class FaultMakingTests(SynchronousTestCase):
    """The faults are real: the child cannot write, or cannot grow a file."""

    def child_writes(self, path: Path, preexec_fn: object, code: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            preexec_fn=preexec_fn,  # type: ignore[arg-type]
            capture_output=True,
            timeout=30,
        )
        return done.stdout.decode().strip()

    def test_read_only_file_cannot_be_opened_for_writing(self) -> None:
        path = Path(self.mktemp())
        path.write_bytes(b"x")
        preexec_fn = launch.deny_writes(path)
        try:
            said = self.child_writes(
                path,
                preexec_fn,
                "import os, sys\ntry:\n os.open(sys.argv[1], os.O_RDWR); print('wrote')\n"
                "except OSError as e:\n print(e.strerror)",
            )
        except subprocess.SubprocessError as e:
            raise SkipTest(f"cannot make the fault here: {e}") from None
        self.assertEqual(said, "Permission denied")

    def test_file_cannot_grow_past_the_limit(self) -> None:
        path = Path(self.mktemp())
        said = self.child_writes(
            path,
            launch.file_size_limit(4096),
            "import os, sys\nfd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)\n"
            "try:\n os.write(fd, bytes(4096)); os.write(fd, b'x'); print('grew')\n"
            "except OSError as e:\n print(e.strerror)",
        )
        self.assertEqual(said, "File too large")
        self.assertEqual(path.stat().st_size, 4096)
