"""Part "crash" of the robustness runs (issue 19, "Crash safety"): kill -9
the server while it acknowledges writes under load, and check after every
kill that each acknowledged write is on disk, that nothing unacknowledged is
half there, and that ``PRAGMA integrity_check`` passes.

``python -m bench.chaos.crash --seconds 60`` prints the table
(bench/chaos/table.py): ``run()``'s rows, one per write kind, then
``startup_faults()``'s, one per database a start-up must refuse (corrupt,
from a newer aimserver, read-only, on a full disk: exit non-zero with one
line saying why, and leave the database's directory as it was).

One round, repeated until the time or the round budget is spent:

1. With no server running, the database gets what the round needs and is
   not under test: a fresh pair of browser accounts per history pair, and
   empty offline inboxes.
2. ``twistd -n aimserver`` starts on the database: the restart after the
   previous round's kill. A start-up that fails is a failure (and the end).
3. The writers sign on over real TCP: feedbag editors (OSCAR with the stored
   list; the 13,06 each gets must hold as many items as the last check found
   on disk: the restarted server serves what is there), offline senders
   (OSCAR), history pairs (two browser sessions over the WebSocket).
4. They all write at once, each a closed loop recording every write it sends
   and every answer it gets; the management API's workers (HTTP) join them.
5. After a random stretch of load (uniform in ``LOAD_SECONDS``) the server
   gets SIGKILL.
6. With the server dead, the file is opened directly: ``PRAGMA
   integrity_check``, then every write of every round so far is compared
   with what is stored (so a later crash that loses an older write is caught
   too). A write in flight at the kill is settled here, once: found whole, it
   must stay from then on; found absent, it must never appear.

What counts as acknowledged is only what the server told a client succeeded:

* **feedbag**: a 13,08/13,09/13,0A answered by 13,0E, each item with status
  0x0000 (an item refused is not written). The feedbag service sends 13,0E
  only once the store has committed the edit (services/feedbag.py). An edit
  carries one to three items and is all there or not at all; the stored
  summary the sign-on reads must describe the same list.
* **offline**: a 04,06 with TLVs 0x03 (host ack requested) and 0x06 (store if
  offline) to a signed-off user, answered by 04,0C, which the ICBM service
  sends once the message is committed (services/icbm.py ``_store_offline``);
  a 04,01 means not stored, and such a message must not be there.
* **account**: the management API's 201 (POST /user) and 204 (PUT
  /user/password, DELETE /user), answered from the store's Deferred, which
  fires after the commit (store/group_commit.py). An account is expected with
  the password of its last acknowledged change; one change may be in flight.
* **history**: nothing acknowledges an IM's history entry as such: the
  ``send_im`` answer says the IM was delivered, and the entries wait up to 1 s
  (``HISTORY_FLUSH_SECONDS``) for their batch. But ``get_history`` first
  writes what waits and awaits the commit, then reads back from the store
  (web/service.py ``history``): an entry it returns is committed. So an entry
  is acknowledged once a ``get_history`` answer has held it; each pair polls
  both sides every ``HISTORY_POLL`` s. Each IM makes two entries (the
  sender's outgoing, the recipient's incoming) written in one batch: one
  without the other is half there. An owner's entry ids must be unique and
  follow the order the IMs were sent.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import shutil
import signal
import sqlite3
import struct
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import attrs
import orjson

from bench import loadgen as lg
from bench import wsclient as ws
from bench.chaos import twistd_launch as launch
from bench.chaos.table import ChaosRow, render

PART = "crash"
PASSWORD = "crashpw"
#: The subject's INI: no rate limits (the writers are a load, not abuse),
#: every client from one address.
SETTINGS = {
    "server": {"host": launch.HOST},
    "ratelimit": {"enabled": "false"},
    "connection": {"max_connections_per_address": "0"},
}
#: Load before the kill, uniform in this range (seconds).
LOAD_SECONDS = (0.5, 2.5)
#: A round's length before any was timed: start-up, sign-on, load, check.
FIRST_ROUND_ESTIMATE = 5.0
#: A request the server does not answer in this long counts as unanswered.
ANSWER_TIMEOUT = 10.0

FEEDBAG_EDITORS = 4
OFFLINE_SENDERS = 2
#: Offline IMs each sender has in flight.
OFFLINE_WINDOW = 4
API_WORKERS = 2
HISTORY_PAIRS = 2
#: IMs each history pair has in flight.
HISTORY_WINDOW = 2
HISTORY_POLL = 0.3
#: IMs a history pair sends a second at most: unpaced, one pair alone sends
#: a thousand a second and would reach the cap below before the kill.
HISTORY_RATE = 300.0
#: IMs per history pair and round (each pair is fresh): each makes one entry
#: per side, and the server keeps 1,000 per user (``[web]
#: history_messages``) while a read returns at most 1,000
#: (``MAX_HISTORY_LIMIT``): below that, every entry stays and can be read.
HISTORY_IMS_PER_ROUND = 900
#: The most messages one sender may leave for one recipient
#: (``MAX_OFFLINE_MESSAGES_PER_SENDER``): a sender moves to a new inbox
#: after this many.
PER_INBOX = 20
#: Offline IMs a sender must have room for at a round's start: more than it
#: sends in the longest load (about 250 a second here); a sender out of
#: room stops sending.
OFFLINE_ROOM = 1500

GROUP_ID = 0x0C1A
CLASS_BUDDY, CLASS_GROUP = 0, 1
TAG_ORDER = 0x00C8
TAG_ALIAS = 0x0131
INSERT, UPDATE, DELETE = 0x08, 0x09, 0x0A
_MAX_ITEM_ID = 0x7FFF

#: One feedbag item as stored: name, group ID, item ID, class ID, attributes.
Item = tuple[str, int, int, int, bytes]
Key = tuple[int, int]
Edit = tuple[int, tuple[Item, ...]]

TARGETS = {
    "feedbag": "feedbag edits",
    "offline": "offline messages",
    "account": "account changes",
    "history": "history writes",
}


# -- the ledgers: what was written, what was acknowledged, what the disk holds ------------


@dataclass
class Tally:
    """One write kind's account over the run."""

    #: Acknowledged writes, each checked after every kill that followed it.
    acked: int = 0
    #: Acknowledged writes missing, and unacknowledged ones half there (or
    #: there though refused, or back after being found gone).
    lost: int = 0
    #: Other checks that did not hold, each in ``problems``: a write the
    #: server refused (none should be: the writers make only valid ones), a
    #: wrong ``get_history`` answer, entry ids.
    failures: int = 0
    #: Writes in flight at a kill, settled by the next check: found whole / absent.
    unacked_whole: int = 0
    unacked_absent: int = 0
    problems: list[str] = field(default_factory=list)

    def lose(self, count: int, why: str) -> None:
        self.lost += count
        self.problems.append(why)

    def fail(self, why: str) -> None:
        """A failed check, counted once however many later checks see it again."""
        if why not in self.problems:
            self.failures += 1
            self.problems.append(why)


def applied(items: Mapping[Key, Item], edit: Edit) -> dict[Key, Item]:
    """``items`` after ``edit`` (every item of it accepted)."""
    subtype, changed = edit
    after = dict(items)
    for item in changed:
        if subtype == DELETE:
            after.pop((item[1], item[2]), None)
        else:
            after[(item[1], item[2])] = item
    return after


class FeedbagLedger:
    """Per editor: the list as its last acknowledged edit left it, and the
    edit in flight (one at a time). After a kill the stored list must be the
    first, or the first with the whole edit in flight applied."""

    def __init__(self) -> None:
        self.tally = Tally()
        self.lists: dict[str, dict[Key, Item]] = {}
        self.pending: dict[str, Edit] = {}

    def seed(self, name: str, items: Iterable[Item]) -> None:
        self.lists[name] = {(i[1], i[2]): i for i in items}

    def sent(self, name: str, edit: Edit) -> None:
        self.pending[name] = edit

    def answered(self, name: str, statuses: list[int]) -> None:
        """The 13,0E (or a 13,01: every status nonzero): the items with
        status 0 are written, the others are not."""
        subtype, items = self.pending.pop(name)
        accepted = tuple(i for i, s in zip(items, statuses, strict=False) if s == 0)
        if len(accepted) != len(items):
            self.tally.fail(f"{name}: edit {subtype:#04x} refused, statuses {statuses}")
        if accepted:
            self.lists[name] = applied(self.lists[name], (subtype, accepted))
            self.tally.acked += 1

    def check(self, stored: Mapping[str, tuple[dict[Key, Item], dict[Key, Item] | None]]) -> None:
        """``stored``: per editor, its items and what its stored summary
        says they are (None: no summary). Then the stored list is the truth
        the next round starts from."""
        for name, expected in self.lists.items():
            seen, summary = stored.get(name, ({}, None))
            edit = self.pending.pop(name, None)
            after = applied(expected, edit) if edit is not None else None
            if seen == expected:
                if edit is not None:
                    self.tally.unacked_absent += 1
            elif seen == after:
                self.tally.unacked_whole += 1
            else:
                touched = {(i[1], i[2]) for i in edit[1]} if edit is not None else set()
                wrong = [
                    k
                    for k in expected.keys() | seen.keys()
                    if k not in touched and expected.get(k) != seen.get(k)
                ]
                if wrong:
                    self.tally.lose(
                        len(wrong),
                        f"{name}: acknowledged items wrong or missing at {sorted(wrong)}",
                    )
                if edit is not None and after is not None:
                    as_before = all(seen.get(k) == expected.get(k) for k in touched)
                    as_after = all(seen.get(k) == after.get(k) for k in touched)
                    if not (as_before or as_after):
                        self.tally.lose(1, f"{name}: the edit in flight is half there")
            if summary is not None and _without_orders(summary) != _without_orders(seen):
                self.tally.lose(1, f"{name}: the stored summary describes another list")
            self.lists[name] = dict(seen)


def _without_orders(items: Mapping[Key, Item]) -> dict[Key, Item]:
    """The items with the groups' attributes left out: the summary holds a
    group's order TLV (0x00C8) as the server makes it consistent with the
    items, not as the client sent it (services/feedbag_order.py)."""
    return {k: i[:4] + (b"" if i[3] == CLASS_GROUP else i[4],) for k, i in items.items()}


@dataclass
class OfflineWrite:
    inbox: str
    sender: str
    #: The IM data TLV (0x0002) as sent: the stored message must carry it.
    tlv: bytes
    #: pending, acked, refused; after a check: kept (found), gone (not found;
    #: an acknowledged one missing is counted lost once, then expected gone).
    state: str = "pending"


@dataclass(frozen=True)
class StoredMessage:
    inbox: str
    sender: str
    cookie: bytes
    tlvs: bytes


class OfflineLedger:
    """Every offline IM sent, by its (unique) cookie."""

    def __init__(self) -> None:
        self.tally = Tally()
        self.writes: dict[bytes, OfflineWrite] = {}

    def sent(self, cookie: bytes, inbox: str, sender: str, tlv: bytes) -> None:
        self.writes[cookie] = OfflineWrite(inbox, sender, tlv)

    def answered(self, cookie: bytes, stored: bool) -> None:
        write = self.writes[cookie]
        write.state = "acked" if stored else "refused"
        if stored:
            self.tally.acked += 1
        else:
            self.tally.fail(f"offline IM to {write.inbox} refused")

    def check(self, stored: Iterable[StoredMessage]) -> None:
        found: dict[bytes, int] = Counter()
        for message in stored:
            found[message.cookie] += 1
            write = self.writes.get(message.cookie)
            if write is None:
                self.tally.lose(1, f"a message never sent in {message.inbox}'s inbox")
            elif (message.inbox, message.sender) != (write.inbox, write.sender) or (
                write.tlv not in message.tlvs
            ):
                self.tally.lose(1, f"a message to {write.inbox} stored changed")
        for count in found.values():
            if count > 1:
                self.tally.lose(count - 1, f"a message stored {count} times")
        for cookie, write in self.writes.items():
            there = found.get(cookie, 0) > 0
            if write.state in ("acked", "kept") and not there:
                self.tally.lose(1, f"an acknowledged message to {write.inbox} is missing")
                write.state = "gone"
            elif write.state in ("refused", "gone") and there:
                self.tally.lose(1, f"a message to {write.inbox} not stored is there")
                write.state = "kept"
            elif write.state == "pending":
                if there:
                    write.state = "kept"
                    self.tally.unacked_whole += 1
                else:
                    write.state = "gone"
                    self.tally.unacked_absent += 1


@dataclass(frozen=True)
class StoredAccount:
    """An account as stored: what a password check needs."""

    auth_key: str
    strong_md5: bytes


#: An account's expected state after a check found it wrong: it exists,
#: with whatever password it was found with.
SOME_PASSWORD = "\0any"


def password_matches(account: StoredAccount | None, password: str | None) -> bool:
    """``account`` is the state "no account" (``password`` None) or an
    account whose password is ``password`` (any for ``SOME_PASSWORD``)."""
    if password is None or account is None:
        return password is None and account is None
    if password == SOME_PASSWORD:
        return True
    from aimserver.store.credentials import strong_digest

    return strong_digest(account.auth_key.encode("ascii"), password.encode()) == (
        account.strong_md5
    )


class AccountLedger:
    """Per screen name the API touched: its password as the last
    acknowledged call left it (None: no account), and the call in flight."""

    def __init__(self) -> None:
        self.tally = Tally()
        self.state: dict[str, str | None] = {}
        self.pending: dict[str, str | None] = {}

    def sent(self, name: str, after: str | None) -> None:
        self.state.setdefault(name, None)
        self.pending[name] = after

    def answered(self, name: str, ok: bool, what: str) -> None:
        after = self.pending.pop(name)
        if ok:
            self.state[name] = after
            self.tally.acked += 1
        else:
            self.tally.fail(f"{name}: {what}")

    def check(self, stored: Mapping[str, StoredAccount | None]) -> None:
        for name, password in self.state.items():
            account = stored.get(name)
            flying = name in self.pending
            after = self.pending.pop(name, None)
            if password_matches(account, password):
                if flying:
                    self.tally.unacked_absent += 1
            elif flying and password_matches(account, after):
                self.tally.unacked_whole += 1
                self.state[name] = after
            else:
                self.tally.lose(1, f"{name}: not as its last acknowledged change left it")
                self.state[name] = None if account is None else SOME_PASSWORD


@dataclass
class HistoryIm:
    sender: str
    recipient: str
    #: Its place in its pair's stream: entries follow it.
    seq: int
    acked_out: bool = False
    acked_in: bool = False
    #: unknown; after a check: kept (both entries found), gone (neither),
    #: half (one: counted lost once, then expected so).
    state: str = "unknown"


@dataclass(frozen=True)
class StoredEntry:
    owner: str
    peer: str
    outgoing: bool
    text: str
    id: int


class HistoryLedger:
    """Every IM the history pairs sent, by its (unique) text."""

    def __init__(self) -> None:
        self.tally = Tally()
        self.ims: dict[str, HistoryIm] = {}
        self.owners: set[str] = set()

    def sent(self, text: str, sender: str, recipient: str, seq: int) -> None:
        self.ims[text] = HistoryIm(sender, recipient, seq)
        self.owners.update((sender, recipient))

    def returned(self, owner: str, messages: Iterable[Mapping[str, Any]]) -> None:
        """A ``get_history`` answer to ``owner``: the entries in it are
        committed, hence acknowledged."""
        for message in messages:
            im = self.ims.get(message.get("text", ""))
            if im is None:
                self.tally.fail(f"get_history gave {owner} an entry never sent")
                continue
            if owner == im.sender and message.get("outgoing") and message["with"] == im.recipient:
                if not im.acked_out:
                    im.acked_out = True
                    self.tally.acked += 1
            elif (
                owner == im.recipient
                and not message.get("outgoing")
                and message["with"] == im.sender
            ):
                if not im.acked_in:
                    im.acked_in = True
                    self.tally.acked += 1
            else:
                self.tally.fail(f"get_history gave {owner} a wrong entry")

    def check(self, stored: Iterable[StoredEntry]) -> None:
        entries = list(stored)
        # An id names an entry within its owner's history (the store may
        # number each owner's entries on its own).
        ids = Counter((e.owner, e.id) for e in entries)
        repeated = sorted(key for key, n in ids.items() if n > 1)
        if repeated:
            self.tally.fail(f"history ids used twice: {repeated[:3]}")
        found: Counter[tuple[str, str, bool]] = Counter()
        order: dict[str, list[tuple[int, int]]] = {}
        for entry in entries:
            im = self.ims.get(entry.text)
            if im is None:
                self.tally.lose(1, f"an entry never sent in {entry.owner}'s history")
                continue
            right = (
                (entry.owner, entry.peer) == (im.sender, im.recipient)
                if entry.outgoing
                else (entry.owner, entry.peer) == (im.recipient, im.sender)
            )
            if not right:
                self.tally.lose(1, f"an entry in {entry.owner}'s history stored changed")
                continue
            found[(entry.owner, entry.text, entry.outgoing)] += 1
            order.setdefault(entry.owner, []).append((entry.id, im.seq))
        for key, count in found.items():
            if count > 1:
                self.tally.lose(count - 1, f"an entry in {key[0]}'s history stored {count} times")
        for owner, pairs in order.items():
            seqs = [seq for _, seq in sorted(pairs)]
            if any(b <= a for a, b in itertools.pairwise(seqs)):
                self.tally.fail(f"{owner}'s history ids do not follow the order of the IMs")
        for text, im in self.ims.items():
            out = found[(im.sender, text, True)] > 0
            inn = found[(im.recipient, text, False)] > 0
            whole, absent = out and inn, not (out or inn)
            pair = f"{im.sender}->{im.recipient}"
            missing = (im.acked_out and not out) + (im.acked_in and not inn)
            if missing:
                self.tally.lose(missing, f"an acknowledged entry of {pair} is missing")
            elif im.state == "kept" and not whole:
                self.tally.lose(1, f"an IM {pair} found whole before is not")
            elif im.state == "gone" and not absent:
                self.tally.lose(1, f"an IM {pair} found absent before is back")
            elif im.state == "unknown" and not (whole or absent):
                self.tally.lose(1, f"an IM {pair} is half in the history")
            elif im.state == "unknown":
                im.state = "kept" if whole else "gone"
                if absent:
                    self.tally.unacked_absent += 1
                elif not (im.acked_out and im.acked_in):
                    self.tally.unacked_whole += 1
                continue
            else:
                continue
            # Counted once: from now on it is expected as it was found.
            im.acked_out, im.acked_in = out, inn
            im.state = "kept" if whole else "gone" if absent else "half"


# -- the database, read directly ------------------------------------------------------------


def integrity(db: Path) -> str:
    """``PRAGMA integrity_check`` of the file: ``ok``, or what SQLite found."""
    conn = sqlite3.connect(str(db))
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.Error as e:
        return f"integrity_check failed: {e}"
    finally:
        conn.close()
    return "; ".join(str(r[0]) for r in rows[:5])


@dataclass
class Snapshot:
    """What the file holds of everything under test."""

    feedbags: dict[str, tuple[dict[Key, Item], dict[Key, Item] | None]]
    offline: list[StoredMessage]
    accounts: dict[str, StoredAccount | None]
    history: list[StoredEntry]


def _items(raw: Iterable[tuple[Any, ...]]) -> dict[Key, Item]:
    return {(i[1], i[2]): (str(i[0]), i[1], i[2], i[3], bytes(i[4])) for i in raw}


def read_snapshot(
    db: Path,
    editors: Iterable[str],
    inboxes: Iterable[str],
    accounts: Iterable[str],
    owners: Iterable[str],
) -> Snapshot:
    """Read the file with the store's own operations, in one read transaction."""
    from aimserver.store import sqlite
    from aimserver.store.accounts import _get_account
    from aimserver.store.feedbags import _get_feedbag, _get_feedbag_summary
    from aimserver.store.history import _recent_history
    from aimserver.store.interfaces import MAX_HISTORY_LIMIT
    from aimserver.store.offline_messages import _get_offline_messages

    def read(conn: sqlite3.Connection) -> Snapshot:
        feedbags = {}
        for name in editors:
            items = _items(
                (i.name, i.group_id, i.item_id, i.class_id, i.attributes)
                for i in _get_feedbag(conn, name).items
            )
            summary = _get_feedbag_summary(conn, name)
            described = None
            if summary is not None:
                described = _items(
                    (n.decode(), g, i, c, a) for n, g, i, c, a in lg.feedbag_items(summary.wire)
                )
            feedbags[name] = (items, described)
        offline = [
            StoredMessage(m.recipient, m.sender, m.cookie, m.tlvs)
            for inbox in inboxes
            for m in _get_offline_messages(conn, inbox)
        ]
        stored_accounts: dict[str, StoredAccount | None] = {}
        for name in accounts:
            account = _get_account(conn, name)
            stored_accounts[name] = (
                None if account is None else StoredAccount(account.auth_key, account.strong_md5)
            )
        history = [
            StoredEntry(owner, e.peer, e.outgoing, e.text, e.id)
            for owner in owners
            for e in _recent_history(conn, owner, None, MAX_HISTORY_LIMIT)
        ]
        return Snapshot(feedbags, offline, stored_accounts, history)

    conn = sqlite.connect(str(db), create=False)
    try:
        return sqlite.transact(conn, read, write=False)
    finally:
        conn.close()


def add_accounts(
    db: Path, names: Iterable[str], feedbags: Mapping[str, Iterable[Item]] = {}
) -> None:
    """Accounts (password ``PASSWORD``) and stored lists, in one transaction,
    with the store's own operations: set-up, never under test."""
    from aimserver.store import accounts, sqlite
    from aimserver.store import feedbags as stored
    from aimserver.store.interfaces import FeedbagItem

    now = int(time.time())

    def create(conn: sqlite3.Connection) -> None:
        for name in names:
            accounts._create_account(conn, name, PASSWORD, now)
        for name, items in feedbags.items():
            stored._upsert_feedbag_items(conn, name, [FeedbagItem(*i) for i in items], now)

    conn = sqlite.connect(str(db))
    try:
        sqlite.transact(conn, create)
    finally:
        conn.close()


# -- the writers ---------------------------------------------------------------------------


class Unanswered(Exception):
    """The connection went (or the answer took too long): the write stays in flight."""


class SnacRequests:
    """Requests on one OSCAR session matched to their answers by request ID."""

    def __init__(self, client: lg.FlapClient) -> None:
        self.client = client
        self.waiting: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self.ids = itertools.count(0x100)
        client.on_frame = self.on_frame
        client.closed.add_done_callback(lambda _: self.fail_all())

    def on_frame(self, client: lg.FlapClient, channel: int, payload: bytes) -> None:
        if channel != 2 or len(payload) < 10:
            return
        _, subtype, flags, request_id = lg.SNAC.unpack_from(payload)
        future = self.waiting.pop(request_id, None)
        if future is None or future.done():
            return
        offset = 10
        if flags & 0x8000:
            offset += 2 + lg.U16.unpack_from(payload, 10)[0]
        future.set_result((subtype, payload[offset:]))

    def fail_all(self) -> None:
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(Unanswered("the connection went"))
        self.waiting.clear()

    async def request(self, family: int, subtype: int, body: bytes) -> tuple[int, bytes]:
        """The answer's (subtype, body). Raises Unanswered."""
        if self.client.closed.done():
            raise Unanswered("the connection went")
        request_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = future
        self.client.send_snac(family, subtype, body, request_id)
        try:
            return await asyncio.wait_for(future, ANSWER_TIMEOUT)
        except TimeoutError:
            raise Unanswered("no answer") from None
        finally:
            self.waiting.pop(request_id, None)


def feedbag_seed() -> list[Item]:
    """The root group and the group every buddy goes into."""
    return [
        ("", 0, 0, CLASS_GROUP, lg.tlv(TAG_ORDER, struct.pack("!H", GROUP_ID))),
        ("Buddies", GROUP_ID, 0, CLASS_GROUP, b""),
    ]


def next_edit(items: Mapping[Key, Item], ids: Callable[[], int]) -> Edit:
    """The editors' cycle, from the list as it is: insert two buddies in one
    13,08, give each an alias (13,09), delete both in one 13,0A."""
    buddies = sorted((i for i in items.values() if i[3] == CLASS_BUDDY), key=lambda i: i[2])
    if not buddies:
        new = []
        for _ in range(2):
            item_id = ids()
            new.append((f"crbud{item_id}", GROUP_ID, item_id, CLASS_BUDDY, b""))
        return INSERT, tuple(new)
    plain = [b for b in buddies if not b[4]]
    if plain:
        name, group_id, item_id, class_id, _ = plain[0]
        alias = lg.tlv(TAG_ALIAS, f"alias {item_id}".encode())
        return UPDATE, ((name, group_id, item_id, class_id, alias),)
    return DELETE, tuple(buddies)


async def feedbag_editor(
    client: lg.FlapClient, name: str, ledger: FeedbagLedger, stop: asyncio.Event
) -> None:
    requests = SnacRequests(client)
    counter = itertools.count(1)

    def ids() -> int:
        return next(counter) % _MAX_ITEM_ID + 1

    while not stop.is_set():
        edit = next_edit(ledger.lists[name], ids)
        subtype, items = edit
        body = b"".join(lg.feedbag_item(*item) for item in items)
        ledger.sent(name, edit)
        try:
            answer, reply = await requests.request(0x13, subtype, body)
        except Unanswered:
            return
        if answer == 0x0E and len(reply) == 2 * len(items):
            ledger.answered(name, list(struct.unpack(f"!{len(items)}H", reply)))
        else:
            ledger.answered(name, [0xFFFF] * len(items))


class Inboxes:
    """Each sender's offline recipients, ``PER_INBOX`` messages each."""

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = {}
        self.used: dict[str, int] = Counter()
        self.made = 0

    def add(self, sender: str, count: int) -> list[str]:
        new = [f"crbox{self.made + n}" for n in range(count)]
        self.made += count
        self.names.setdefault(sender, []).extend(new)
        return new

    def spare(self, sender: str) -> int:
        return len(self.names.get(sender, ())) * PER_INBOX - self.used[sender]

    def take(self, sender: str) -> str | None:
        index = self.used[sender] // PER_INBOX
        boxes = self.names.get(sender, [])
        if index >= len(boxes):
            return None
        self.used[sender] += 1
        return boxes[index]

    def all(self) -> list[str]:
        return [box for boxes in self.names.values() for box in boxes]


_cookies = itertools.count(random.getrandbits(40) << 20)


def im_body(cookie: bytes, recipient: str, data_tlv: bytes, *flags: int) -> bytes:
    """A channel-1 04,06: cookie, channel, recipient, IM data, flag TLVs."""
    name = recipient.encode()
    return (
        cookie
        + b"\x00\x01"
        + bytes([len(name)])
        + name
        + data_tlv
        + b"".join(lg.tlv(tag, b"") for tag in flags)
    )


def im_data_tlv(text: bytes) -> bytes:
    data = lg.IM_DATA_HEAD + lg.U16.pack(len(text) + 4) + b"\x00\x00\x00\x00" + text
    return lg.tlv(0x0002, data)


async def offline_sender(
    client: lg.FlapClient,
    name: str,
    ledger: OfflineLedger,
    inboxes: Inboxes,
    stop: asyncio.Event,
) -> None:
    requests = SnacRequests(client)

    async def one_lane() -> None:
        while not stop.is_set():
            inbox = inboxes.take(name)
            if inbox is None:
                return
            cookie = lg.COOKIE.pack(next(_cookies) & 0xFFFF_FFFF_FFFF_FFFF)
            data = im_data_tlv(b"CR|off|%s|%s" % (name.encode(), cookie.hex().encode()))
            ledger.sent(cookie, inbox, name, data)
            try:
                answer, _ = await requests.request(
                    0x04, 0x06, im_body(cookie, inbox, data, 0x0003, 0x0006)
                )
            except Unanswered:
                return
            ledger.answered(cookie, answer == 0x0C)

    await asyncio.gather(*(one_lane() for _ in range(OFFLINE_WINDOW)))


async def api_call(
    address: tuple[str, int], method: str, path: str, body: Mapping[str, Any]
) -> int:
    """One management-API request (HTTP/1.0, read to EOF): its status.
    Raises Unanswered if the connection goes first."""
    payload = orjson.dumps(body)
    head = (
        f"{method} {path} HTTP/1.0\r\nHost: {address[0]}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), ANSWER_TIMEOUT)
    except (OSError, TimeoutError):
        raise Unanswered("no connection") from None
    try:
        writer.write(head.encode() + payload)
        answer = await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT)
    except (OSError, TimeoutError):
        raise Unanswered("no answer") from None
    finally:
        writer.close()
    status_line = answer.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise Unanswered("no status line")
    return int(status_line[1])


async def api_worker(
    address: tuple[str, int],
    worker: int,
    ledger: AccountLedger,
    stop: asyncio.Event,
    numbers: list[int],
) -> None:
    """Create an account, change its password twice, delete it; again.
    ``numbers[0]`` numbers the next account (a new one each round)."""
    while not stop.is_set():
        number = numbers[0]
        numbers[0] += 1
        name = f"cra{worker}n{number}"
        passwords = [f"pw{number}x{step}" for step in range(3)]
        calls = [
            ("POST", "/user", {"screen_name": name, "password": passwords[0]}, passwords[0], 201),
            (
                "PUT",
                "/user/password",
                {"screen_name": name, "password": passwords[1]},
                passwords[1],
                204,
            ),
            (
                "PUT",
                "/user/password",
                {"screen_name": name, "password": passwords[2]},
                passwords[2],
                204,
            ),
            ("DELETE", "/user", {"screen_name": name}, None, 204),
        ]
        for method, path, body, after, expected in calls:
            if stop.is_set():
                return
            ledger.sent(name, after)
            try:
                status = await api_call(address, method, path, body)
            except Unanswered:
                return
            ledger.answered(name, status == expected, f"{method} {path} answered {status}")


async def history_pair(
    a: ws.WsClient,
    b: ws.WsClient,
    ledger: HistoryLedger,
    stop: asyncio.Event,
    seqs: Iterable[int],
) -> None:
    """``a`` sends ``b`` IMs (``HISTORY_WINDOW`` in flight, at most
    ``HISTORY_RATE`` a second) while both read their history every
    ``HISTORY_POLL`` s."""
    sender, recipient = a.screen_name, b.screen_name
    numbers = iter(seqs)
    loop = asyncio.get_running_loop()
    began = loop.time()
    slots = itertools.count(1)

    async def send() -> None:
        while not stop.is_set():
            await asyncio.sleep(max(0.0, began + next(slots) / HISTORY_RATE - loop.time()))
            # The number is taken when the IM goes, with no wait between the
            # two: IMs leave in the order of their numbers, whichever lane
            # woke first (the entries' ids are checked against it).
            seq = next(numbers, None)
            if seq is None or stop.is_set():
                return
            text = f"CR|h|{sender}|{seq}"
            ledger.sent(text, sender, recipient, seq)
            try:
                await a.call(
                    "send_im",
                    {"to": recipient, "text": text, "client_message_id": str(seq)},
                    ANSWER_TIMEOUT,
                )
            except (OSError, TimeoutError, ws.WebFailure):
                return

    async def poll() -> None:
        while not stop.is_set():
            await asyncio.sleep(HISTORY_POLL)
            for client, peer in ((a, recipient), (b, sender)):
                try:
                    result = await client.call(
                        "get_history", {"with": peer, "limit": 1000}, ANSWER_TIMEOUT
                    )
                except (OSError, TimeoutError, ws.WebFailure):
                    return
                ledger.returned(client.screen_name, result.get("messages", ()))

    await asyncio.gather(*(send() for _ in range(HISTORY_WINDOW)), poll())


# -- rounds -------------------------------------------------------------------------------


class CrashRun:
    """The database, the ledgers, and the rounds run on them."""

    def __init__(self, workdir: Path, rng: random.Random) -> None:
        self.workdir = workdir
        self.rng = rng
        self.db = workdir / "crash.sqlite"
        self.ini = workdir / "crash.ini"
        self.feedbag = FeedbagLedger()
        self.offline = OfflineLedger()
        self.accounts = AccountLedger()
        self.history = HistoryLedger()
        self.editors = [f"crfb{i}" for i in range(FEEDBAG_EDITORS)]
        self.senders = [f"crof{i}" for i in range(OFFLINE_SENDERS)]
        self.inboxes = Inboxes()
        self.api_numbers = [[0] for _ in range(API_WORKERS)]
        self.kills = 0
        #: Start-ups (or sign-ons) that failed after a kill, integrity checks
        #: that did not say ok: the database's, so each row counts them.
        self.restart_failures = 0
        self.integrity_failures = 0
        #: Writers that stopped on an exception of their own (a bench bug):
        #: their kind's writes after it went unchecked.
        self.writer_errors = 0
        #: Times the server died on its own before its kill.
        self.crashes = 0
        self.problems: list[str] = []
        self.round_seconds: list[float] = []
        #: The whole run's wall time: every row's (the writers ran together).
        self.seconds = 0.0

    def prepare(self) -> None:
        launch.write_ini(self.ini, SETTINGS)
        add_accounts(
            self.db,
            self.editors + self.senders,
            {name: feedbag_seed() for name in self.editors},
        )
        for name in self.editors:
            self.feedbag.seed(name, feedbag_seed())

    def _round_accounts(self, number: int) -> list[tuple[str, str]]:
        """Fresh history pairs for round ``number`` (made before it), and
        fresh inboxes for every sender that would run short."""
        pairs = [(f"crh{number}a{p}", f"crh{number}b{p}") for p in range(HISTORY_PAIRS)]
        boxes: list[str] = []
        for sender in self.senders:
            short = OFFLINE_ROOM - self.inboxes.spare(sender)
            if short > 0:
                boxes += self.inboxes.add(sender, -(-short // PER_INBOX))
        add_accounts(self.db, [n for pair in pairs for n in pair] + boxes)
        return pairs

    async def start(self) -> launch.Subject | None:
        try:
            return await launch.start(
                self.db, self.workdir / f"server-{self.kills:03d}.log", config=self.ini
            )
        except launch.StartFailed as e:
            self.restart_failures += 1
            self.problems.append(f"restart after kill {self.kills}: {e}")
            return None

    async def round(self) -> bool:
        """One round: start, sign on, load, kill, check. False if the
        server could not be started (the run ends)."""
        began = time.monotonic()
        pairs = self._round_accounts(self.kills)
        subject = await self.start()
        if subject is None:
            return False
        stop = asyncio.Event()
        flap: list[lg.FlapClient] = []
        webs: list[ws.WsClient] = []
        tasks: list[asyncio.Task[Any]] = []
        try:
            auth = subject.address("auth")
            editors = await asyncio.gather(
                *(lg.full_signon(auth, n, PASSWORD.encode(), feedbag=True) for n in self.editors)
            )
            senders = await asyncio.gather(
                *(lg.full_signon(auth, n, PASSWORD.encode()) for n in self.senders)
            )
            flap = [c for c, _ in editors] + [c for c, _ in senders]
            for name, (client, _) in zip(self.editors, editors, strict=True):
                if client.feedbag_items != len(self.feedbag.lists[name]):
                    self.feedbag.tally.lose(
                        1,
                        f"{name}: the restarted server serves {client.feedbag_items} items,"
                        f" the file holds {len(self.feedbag.lists[name])}",
                    )
            for a_name, b_name in pairs:
                for name in (a_name, b_name):
                    client = ws.WsClient(subject.address("web"), name)
                    await client.connect()
                    await client.create_session(name, PASSWORD)
                    webs.append(client)
            for (client, _), name in zip(editors, self.editors, strict=True):
                tasks.append(
                    asyncio.ensure_future(feedbag_editor(client, name, self.feedbag, stop))
                )
            for (client, _), name in zip(senders, self.senders, strict=True):
                tasks.append(
                    asyncio.ensure_future(
                        offline_sender(client, name, self.offline, self.inboxes, stop)
                    )
                )
            for worker, numbers in enumerate(self.api_numbers):
                tasks.append(
                    asyncio.ensure_future(
                        api_worker(subject.address("api"), worker, self.accounts, stop, numbers)
                    )
                )
            for index in range(HISTORY_PAIRS):
                a, b = webs[2 * index], webs[2 * index + 1]
                tasks.append(
                    asyncio.ensure_future(
                        history_pair(a, b, self.history, stop, range(1, HISTORY_IMS_PER_ROUND + 1))
                    )
                )
            await asyncio.sleep(self.rng.uniform(*LOAD_SECONDS))
            if subject.exited() is not None:
                self.crashes += 1
                self.problems.append(
                    f"the server died on its own (status {subject.exited()}): {subject.log_tail()}"
                )
        except (OSError, TimeoutError, lg.ProtocolFailure, ws.WebFailure) as e:
            # The restarted server does not let its users back on.
            self.restart_failures += 1
            self.problems.append(f"round {self.kills}: sign-on failed: {e!r}")
        finally:
            subject.kill()
            self.kills += 1
            stop.set()
            if tasks:
                _, late = await asyncio.wait(tasks, timeout=ANSWER_TIMEOUT)
                for task in late:
                    task.cancel()
                for task in tasks:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        self.writer_errors += 1
                        self.problems.append(f"a writer failed: {task.exception()!r}")
            for client in flap:
                client.close()
            for web in webs:
                web.drop()
        self.check()
        self.round_seconds.append(time.monotonic() - began)
        return True

    def check(self, db: Path | None = None) -> None:
        """The file (``db``, default the run's) against every ledger, with
        the server dead."""
        db = self.db if db is None else db
        verdict = integrity(db)
        if verdict != "ok":
            self.integrity_failures += 1
            self.problems.append(f"integrity_check after kill {self.kills}: {verdict}")
        snapshot = read_snapshot(
            db,
            self.editors,
            self.inboxes.all(),
            self.accounts.state,
            sorted(self.history.owners),
        )
        self.feedbag.check(snapshot.feedbags)
        self.offline.check(snapshot.offline)
        self.accounts.check(snapshot.accounts)
        self.history.check(snapshot.history)

    async def final_restart(self) -> None:
        """After the last kill: the server starts on the file, serves every
        editor the list the last check found, and stops cleanly; the file
        is still sound after it."""
        subject = await self.start()
        if subject is None:
            return
        try:
            auth = subject.address("auth")
            for name in self.editors:
                client, _ = await lg.full_signon(auth, name, PASSWORD.encode(), feedbag=True)
                client.close()
                if client.feedbag_items != len(self.feedbag.lists[name]):
                    self.feedbag.tally.lose(1, f"{name}: the final restart serves another list")
        except (OSError, TimeoutError, lg.ProtocolFailure) as e:
            self.restart_failures += 1
            self.problems.append(f"final restart: sign-on failed: {e!r}")
        finally:
            status = subject.stop()
        # twistd ends by the signal that stopped it, once it has stopped cleanly.
        if status not in (0, -signal.SIGTERM):
            self.problems.append(f"final restart: the server stopped with status {status}")
        verdict = integrity(self.db)
        if verdict != "ok":
            self.integrity_failures += 1
            self.problems.append(f"integrity_check after the final restart: {verdict}")

    def rows(self) -> list[ChaosRow]:
        """One row per write kind. The failures of the run as a whole (a
        restart, an integrity check, a writer that stopped on an error) are
        counted in every row: each kind's check depends on them."""
        database = self.restart_failures + self.integrity_failures + self.writer_errors
        rows = []
        for kind, ledger in (
            ("feedbag", self.feedbag),
            ("offline", self.offline),
            ("account", self.accounts),
            ("history", self.history),
        ):
            tally = ledger.tally
            note = (
                f"{self.kills} kills; in flight at a kill: {tally.unacked_whole} whole,"
                f" {tally.unacked_absent} absent"
            )
            if database:
                note += (
                    f"; the run's: {self.restart_failures} failed restarts,"
                    f" {self.integrity_failures} failed integrity checks,"
                    f" {self.writer_errors} writers stopped by an error"
                )
            shown = (tally.problems if tally.lost or tally.failures else []) + self.problems
            if shown:
                note += "; " + "; ".join(dict.fromkeys(shown))[:300]
            rows.append(
                ChaosRow(
                    part=PART,
                    target=TARGETS[kind],
                    inputs=tally.acked,
                    crashes=self.crashes,
                    lost_writes=tally.lost,
                    failures=tally.failures + database,
                    seconds=self.seconds,
                    note=note,
                )
            )
        return rows


# -- start-up faults -------------------------------------------------------------------------


def make_database(db: Path) -> None:
    """A database as a server that ran and stopped leaves it: an account
    with a stored list, and the cookie secret (so that a start-up has
    nothing it must write)."""
    from aimserver.server import COOKIE_SECRET_NAME, COOKIE_SECRET_SIZE
    from aimserver.store import sqlite
    from aimserver.store.server_secrets import _get_or_create_secret

    add_accounts(db, ["crfault"], {"crfault": feedbag_seed()})
    conn = sqlite.connect(str(db), create=False)
    try:
        sqlite.transact(conn, _get_or_create_secret, COOKIE_SECRET_NAME, COOKIE_SECRET_SIZE)
    finally:
        conn.close()


def _corrupt(db: Path) -> None:
    """Pages in the middle overwritten, as a bad disk or a stray write would."""
    with open(db, "r+b") as f:
        f.seek(4096)
        f.write(b"\xde\xad\xbe\xef" * 1024)


#: Buddies in the stored list of the database ``_corrupt_deep`` damages:
#: enough for its items to fill several pages.
_DEEP_BUDDIES = 400


def _corrupt_deep(db: Path) -> None:
    """One page of stored buddy-list items overwritten: a page opening the
    database never reads (only a sign-on of that user would). The list is
    made first; ``dbstat`` says which pages hold it."""
    from aimserver.store import sqlite as store

    def fill(conn: sqlite3.Connection) -> None:
        from aimserver.store.feedbags import _upsert_feedbag_items
        from aimserver.store.interfaces import FeedbagItem

        buddies = [
            FeedbagItem(f"deep{n}", GROUP_ID, n, CLASS_BUDDY, lg.tlv(TAG_ALIAS, bytes(100)))
            for n in range(1, _DEEP_BUDDIES + 1)
        ]
        _upsert_feedbag_items(conn, "crfault", buddies, int(time.time()))

    conn = store.connect(str(db), create=False)
    try:
        store.transact(conn, fill)
        leaves = conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'feedbag_items' AND pagetype = 'leaf'"
            " ORDER BY pageno"
        ).fetchall()
    finally:
        conn.close()
    page = leaves[len(leaves) // 2][0]
    with open(db, "r+b") as f:
        f.seek((page - 1) * 4096)
        f.write(b"\xde\xad\xbe\xef" * 1024)


def _newer(db: Path) -> None:
    from aimserver.store.sqlite import SCHEMA_VERSION

    conn = sqlite3.connect(str(db))
    try:
        conn.execute("UPDATE version SET version = ?", (SCHEMA_VERSION + 1,))
        conn.commit()
    finally:
        conn.close()


def _newer_reason() -> str:
    from aimserver.store.sqlite import SCHEMA_VERSION

    return f"schema version {SCHEMA_VERSION + 1}"


@dataclass(frozen=True)
class Fault:
    """A start-up the server must refuse: what is done to a sound database
    (and the ``preexec_fn`` that makes it so for the child), and the words
    its one line of explanation must hold."""

    name: str
    make: Callable[[Path], Callable[[], None] | None]
    reason: Callable[[], str]


FAULTS = (
    Fault("corrupt database", lambda db: _corrupt(db), lambda: "malformed"),
    Fault("corrupt page read late", lambda db: _corrupt_deep(db), lambda: "is corrupt"),
    Fault("newer version", lambda db: _newer(db), _newer_reason),
    Fault("read-only file", launch.deny_writes, lambda: "cannot write to database"),
    # No file may grow past the database's size: it cannot grow, nor can a
    # log be written beside it (RLIMIT_FSIZE: unprivileged and exact, where
    # a real full file system would need a mount).
    Fault(
        "full disk",
        lambda db: launch.file_size_limit(db.stat().st_size),
        lambda: "no room",
    ),
)


def directory_state(directory: Path) -> dict[str, bytes]:
    """Every file in ``directory`` and its bytes."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@dataclass(frozen=True)
class FaultRun:
    fault: Fault
    outcome: launch.StartOutcome
    before: dict[str, bytes]
    after: dict[str, bytes]

    @property
    def lines(self) -> list[str]:
        return [line for line in self.outcome.output.splitlines() if line.strip()]

    def problems(self) -> list[str]:
        """What the start-up did that a refusal must not: empty if it
        exited non-zero with one line, ``aimserver: ...`` holding the
        reason, and left the database's directory as it was."""
        problems = []
        if self.outcome.listened:
            problems.append("it started and listened")
        elif self.outcome.status == 0:
            problems.append("it exited with status 0")
        if "Traceback" in self.outcome.output:
            problems.append("it printed a traceback")
        lines = self.lines
        reason = self.fault.reason()
        if len(lines) != 1 or not lines[0].startswith("aimserver: ") or reason not in lines[0]:
            problems.append(f"not one line 'aimserver: ...{reason}...' but {lines[-3:]}")
        if self.before != self.after:
            changed = sorted(
                name
                for name in self.before.keys() | self.after.keys()
                if self.before.get(name) != self.after.get(name)
            )
            problems.append(f"it changed {changed}")
        return problems


def start_with_fault(fault: Fault, directory: Path) -> FaultRun:
    """A sound database in ``directory`` (empty), ``fault`` done to it, and
    the server started on it to its end."""
    db = directory / "fault.sqlite"
    make_database(db)
    preexec_fn = fault.make(db)
    before = directory_state(directory)
    outcome = launch.start_to_exit(db, preexec_fn=preexec_fn)
    return FaultRun(fault, outcome, before, directory_state(directory))


def startup_faults(workdir: str | None = None) -> list[ChaosRow]:
    """One row per start-up fault: ``failures`` is 1 unless the start-up was
    refused cleanly (``FaultRun.problems``)."""
    base = Path(tempfile.mkdtemp(prefix="aimchaos-startup-") if workdir is None else workdir)
    rows = []
    for number, fault in enumerate(FAULTS):
        directory = base / f"fault-{number}"
        directory.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            done = start_with_fault(fault, directory)
        except subprocess.SubprocessError as e:
            # Root without CAP_SETPCAP cannot take its own override away.
            rows.append(ChaosRow(PART, f"start-up: {fault.name}", 0, note=f"not run: {e}"))
            continue
        problems = done.problems()
        rows.append(
            ChaosRow(
                PART,
                f"start-up: {fault.name}",
                1,
                failures=1 if problems else 0,
                seconds=time.monotonic() - started,
                note="; ".join(problems) if problems else f"refused: {done.lines[0]}",
            )
        )
    if workdir is None and all(r.ok for r in rows):
        shutil.rmtree(base, ignore_errors=True)
    return rows


async def _run(run: CrashRun, seconds: float, rounds: int | None) -> None:
    started = time.monotonic()
    while rounds is None or run.kills < rounds:
        elapsed = time.monotonic() - started
        estimate = max(run.round_seconds, default=FIRST_ROUND_ESTIMATE)
        if run.kills and elapsed + estimate > seconds:
            break
        if not await run.round():
            return
    await run.final_restart()


def crash_run(
    seconds: float, *, directory: Path, rounds: int | None = None, seed: int | None = None
) -> CrashRun:
    """The rounds in ``directory`` (made if missing): kill the server under
    load until ``seconds`` are spent or ``rounds`` kills are done (at least
    one), then restart it once more. Returns the run, ledgers and all."""
    directory.mkdir(parents=True, exist_ok=True)
    crash = CrashRun(directory, random.Random(seed))
    started = time.monotonic()
    crash.prepare()
    asyncio.run(_run(crash, seconds, rounds))
    crash.seconds = time.monotonic() - started
    return crash


def run(
    seconds: float,
    *,
    rounds: int | None = None,
    workdir: str | None = None,
    seed: int | None = None,
) -> list[ChaosRow]:
    """``crash_run``'s rows, one per write kind. ``workdir`` keeps the
    database and the server logs (a temporary directory otherwise, removed
    unless a row is not ok)."""
    own = workdir is None
    directory = Path(tempfile.mkdtemp(prefix="aimchaos-crash-") if own else workdir)
    rows = crash_run(seconds, directory=directory, rounds=rounds, seed=seed).rows()
    if all(r.ok for r in rows):
        if own:
            shutil.rmtree(directory, ignore_errors=True)
    else:
        rows = [attrs.evolve(r, note=f"{r.note}; kept in {directory}") for r in rows]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos.crash", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="time budget (default 60)")
    parser.add_argument("--rounds", type=int, default=None, help="at most this many kills")
    parser.add_argument("--workdir", default=None, help="keep the database and logs here")
    parser.add_argument("--seed", type=int, default=None, help="the kill moments' random seed")
    args = parser.parse_args(argv)
    rows = run(args.seconds, rounds=args.rounds, workdir=args.workdir, seed=args.seed)
    rows += startup_faults(None if args.workdir is None else str(Path(args.workdir) / "startup"))
    print(render(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
