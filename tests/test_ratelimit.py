# -*- test-case-name: tests.test_ratelimit -*-
"""The rate table and limiter (aimserver.services.ratelimit) and the 01,07/01,0A
bodies (aimserver.wire.ratelimit)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.ratelimit import (
    DEFAULT_CLASS_MEMBERS,
    DEFAULT_RATE_CLASSES,
    RateLimiter,
    RateState,
    class_of,
)
from aimserver.wire.ratelimit import (
    RateChange,
    RateClass,
    RateSnapshot,
    pack_rate_change,
    pack_rate_params_reply,
    pack_rate_record,
    wants_extended_rate_records,
)
from aimserver.wire.reader import Reader

# SIGNON.md §3.4, "Go sends, on every connection type", copied row by row so the
# mapping is checked against the document rather than against itself.
_GO_MEMBER_TABLE = """
0x01 | 0x01–0x23
0x02 | 0x01–0x15
0x03 | 0x01–0x0C, 0x0F, 0x10
0x04 | 0x01–0x14
0x05 | 0x01–0x03
0x06 | 0x01–0x03
0x07 | 0x01–0x09
0x08 | 0x01–0x02
0x09 | 0x01–0x0B
0x0A | 0x01–0x03
0x0B | 0x01–0x04
0x0C | 0x01–0x03
0x0D | 0x01–0x09
0x0E | 0x01–0x09
0x0F | 0x01–0x04
0x10 | 0x01, 0x02, 0x04, 0x06
0x13 | 0x01–0x28
0x15 | 0x01–0x03
0x17 | 0x01, 0x02, 0x04, 0x06, 0x08, 0x0A, 0x0C
0x18 | 0x01, 0x02, 0x04, 0x06, 0x07, 0x08, 0x0A, 0x0D–0x12, 0x15–0x17
"""

# SIGNON.md §3.4, the classes other than 1.
_SPECIAL = {
    2: {(0x03, 0x04), (0x03, 0x05), (0x09, 0x05), (0x09, 0x06), (0x09, 0x07), (0x09, 0x08)}
    | {(0x0E, 0x05)},
    3: {(0x02, 0x05), (0x04, 0x06)},
    4: {(0x02, 0x09), (0x02, 0x0B)},
    5: set(),
}


def _documented_pairs() -> set[tuple[int, int]]:
    pairs = set()
    for line in _GO_MEMBER_TABLE.strip().splitlines():
        family_text, subtypes_text = line.split("|")
        family = int(family_text, 16)
        for item in subtypes_text.split(","):
            bounds = [int(x, 16) for x in re.split("–", item.strip())]
            for subtype in range(bounds[0], bounds[-1] + 1):
                pairs.add((family, subtype))
    return pairs


def _parse_record(reader: Reader, extended: bool) -> tuple[RateClass, RateSnapshot]:
    class_id = reader.u16("class ID")
    window, clear, alert, limit, disconnect, current, maximum = (reader.u32() for _ in range(7))
    last, dropping = (reader.u32(), bool(reader.u8())) if extended else (0, False)
    rate_class = RateClass(class_id, window, clear, alert, limit, disconnect, maximum)
    return rate_class, RateSnapshot(current, last, dropping)


def _parse_rate_params_reply(
    body: bytes, extended: bool
) -> tuple[list[tuple[RateClass, RateSnapshot]], dict[int, tuple[tuple[int, int], ...]]]:
    """An independent 01,07 decoder, written from SIGNON.md §3.1/§3.2."""
    reader = Reader(body, "01,07")
    count = reader.u16("count")
    records = [_parse_record(reader, extended) for _ in range(count)]
    members = {}
    for _ in range(count):
        class_id = reader.u16("member class ID")
        pairs = tuple((reader.u16(), reader.u16()) for _ in range(reader.u16("pair count")))
        members[class_id] = pairs
    assert reader.at_end(), f"{reader.remaining()} trailing bytes"
    return records, members


class DefaultTableTests(SynchronousTestCase):
    """The default classes and SNAC→class mapping are those of SIGNON.md §3.3/§3.4."""

    def test_default_classes(self) -> None:
        """The five default classes carry Go's window and levels, in ID order."""
        self.assertEqual(
            [
                (c.class_id, c.window, c.clear, c.alert, c.limit, c.disconnect, c.max)
                for c in DEFAULT_RATE_CLASSES
            ],
            [
                (1, 80, 2500, 2000, 1500, 800, 6000),
                (2, 80, 3000, 2000, 1500, 1000, 6000),
                (3, 20, 5100, 5000, 4000, 3000, 6000),
                (4, 20, 5500, 5300, 4200, 3000, 8000),
                (5, 10, 5500, 5300, 4200, 3000, 8000),
            ],
        )

    def test_spot_checks(self) -> None:
        """Buddy adds are class 2, IMs class 3, directory info class 4, the rate
        query itself class 1."""
        self.assertEqual(class_of(0x03, 0x04), 2)
        self.assertEqual(class_of(0x04, 0x06), 3)
        self.assertEqual(class_of(0x02, 0x09), 4)
        self.assertEqual(class_of(0x01, 0x06), 1)

    def test_unknown_is_class_one(self) -> None:
        """A SNAC the reply does not list falls into class 1, as libpurple assumes."""
        self.assertEqual(class_of(0x0099, 0x0001), 1)
        self.assertEqual(class_of(0x0001, 0x00FF), 1)
        self.assertEqual(class_of(0xFFFF, 0xFFFF), 1)

    def test_every_documented_snac_listed_once(self) -> None:
        """Each SNAC of Go's member table appears in exactly one class, and
        nothing else is listed, so clients find a rule for every SNAC."""
        listed = [pair for pairs in DEFAULT_CLASS_MEMBERS.values() for pair in pairs]
        self.assertEqual(len(listed), len(set(listed)))
        self.assertEqual(set(listed), _documented_pairs())
        self.assertEqual(len(listed), 220)

    def test_special_classes(self) -> None:
        """Classes 2–4 hold exactly the SNACs the table names; class 5 holds none;
        everything else is class 1."""
        self.assertEqual(sorted(DEFAULT_CLASS_MEMBERS), [1, 2, 3, 4, 5])
        for class_id, pairs in _SPECIAL.items():
            self.assertEqual(set(DEFAULT_CLASS_MEMBERS[class_id]), pairs, class_id)
        special = set().union(*_SPECIAL.values())
        self.assertEqual(set(DEFAULT_CLASS_MEMBERS[1]), _documented_pairs() - special)

    def test_class_of_agrees_with_members(self) -> None:
        """class_of answers, for every listed SNAC, the class 01,07 lists it in."""
        for class_id, pairs in DEFAULT_CLASS_MEMBERS.items():
            for family, subtype in pairs:
                self.assertEqual(class_of(family, subtype), class_id, (family, subtype))

    def test_members_sorted(self) -> None:
        """Member lists are in (family, subtype) order, so the reply is stable."""
        for pairs in DEFAULT_CLASS_MEMBERS.values():
            self.assertEqual(list(pairs), sorted(pairs))

    def test_bad_levels_rejected(self) -> None:
        """A class whose levels are out of order, or with a zero window, cannot be
        built: the limiter's state machine depends on the ordering."""
        with self.assertRaises(ValueError):
            RateClass(1, window=80, clear=2000, alert=2500, limit=1500, disconnect=800, max=6000)
        with self.assertRaises(ValueError):
            RateClass(1, window=0, clear=2500, alert=2000, limit=1500, disconnect=800, max=6000)
        with self.assertRaises(ValueError):
            RateClass(1, window=80, clear=7000, alert=2000, limit=1500, disconnect=800, max=6000)


_CLASS_1 = DEFAULT_RATE_CLASSES[0]
_CLASS_3 = DEFAULT_RATE_CLASSES[2]
_CLASS_5 = DEFAULT_RATE_CLASSES[4]

# SIGNON.md §8: the class 1 record of a real 01,07, extended.
_CLASS_1_RECORD = bytes.fromhex(
    "0001 00000050 000009C4 000007D0 000005DC 00000320 00001770 00001770 00000000 00"
)
_CLASS_5_RECORD = bytes.fromhex(
    "0005 0000000A 0000157C 000014B4 00001068 00000BB8 00001F40 00001F40 00000000 00"
)
_TINY_MEMBERS = bytes.fromhex("0001 0002 0001 0006 0001 0008  0005 0000")


class RateParamsReplyTests(SynchronousTestCase):
    """The 01,07 body (SIGNON.md §3.1/§3.2) and the extended-record rule."""

    def test_tiny_table_extended(self) -> None:
        """Extended records end with the u32 last-time and u8 dropping fields."""
        body = pack_rate_params_reply(
            (_CLASS_1, _CLASS_5), {1: ((1, 6), (1, 8)), 5: ()}, extended=True
        )
        self.assertEqual(
            body, bytes.fromhex("0002") + _CLASS_1_RECORD + _CLASS_5_RECORD + _TINY_MEMBERS
        )

    def test_tiny_table_short(self) -> None:
        """Short records stop after the max level: 30 bytes each."""
        body = pack_rate_params_reply(
            (_CLASS_1, _CLASS_5), {1: ((1, 6), (1, 8)), 5: ()}, extended=False
        )
        self.assertEqual(
            body,
            bytes.fromhex("0002") + _CLASS_1_RECORD[:-5] + _CLASS_5_RECORD[:-5] + _TINY_MEMBERS,
        )

    def test_missing_members_listed_empty(self) -> None:
        """A class absent from the member mapping is still announced, with no pairs."""
        body = pack_rate_params_reply((_CLASS_1, _CLASS_5), {1: ((1, 6), (1, 8))}, extended=True)
        self.assertTrue(body.endswith(_TINY_MEMBERS))

    def test_stray_members_rejected(self) -> None:
        """Members of a class the reply does not define are a caller's bug."""
        with self.assertRaises(ValueError):
            pack_rate_params_reply((_CLASS_1,), {1: (), 9: ((1, 2),)}, extended=True)

    def test_full_default_reply_fits_one_read(self) -> None:
        """The default reply stays well below aimpyfly's single 4096-byte read
        (SIGNON.md §1.2), even with the SNAC and FLAP headers added."""
        extended = pack_rate_params_reply(
            DEFAULT_RATE_CLASSES, DEFAULT_CLASS_MEMBERS, extended=True
        )
        short = pack_rate_params_reply(DEFAULT_RATE_CLASSES, DEFAULT_CLASS_MEMBERS, extended=False)
        # count + 5 records + 5 member headers + 220 pairs
        self.assertEqual(len(extended), 2 + 5 * 35 + 5 * 4 + 220 * 4)
        self.assertEqual(len(short), len(extended) - 5 * 5)
        self.assertLess(6 + 10 + len(extended), 4096)

    def test_full_default_reply_parses_back(self) -> None:
        """Decoding the default reply gives back the table and the members, every
        class at max level, no last SNAC and not dropping."""
        for extended in (True, False):
            body = pack_rate_params_reply(
                DEFAULT_RATE_CLASSES, DEFAULT_CLASS_MEMBERS, extended=extended
            )
            records, members = _parse_rate_params_reply(body, extended)
            self.assertEqual([c for c, _ in records], list(DEFAULT_RATE_CLASSES))
            self.assertEqual(
                [s for _, s in records],
                [RateSnapshot(c.max, 0, False) for c in DEFAULT_RATE_CLASSES],
            )
            self.assertEqual(members, dict(DEFAULT_CLASS_MEMBERS))

    def test_live_snapshots(self) -> None:
        """A second session of a flooding user is told the live levels, not a fresh
        allowance: the records carry the limiter's snapshots."""
        limiter = RateLimiter()
        for _ in range(9):
            limiter.check(3, 1000)
        body = pack_rate_params_reply(
            DEFAULT_RATE_CLASSES,
            DEFAULT_CLASS_MEMBERS,
            extended=True,
            snapshots=limiter.snapshots(1250),
        )
        records, _ = _parse_rate_params_reply(body, True)
        self.assertEqual(records[2][1], RateSnapshot(3977, 250, True))
        self.assertEqual(records[0][1], RateSnapshot(6000, 0, False))

    def test_extended_rule(self) -> None:
        """Extended records go to clients that announced OService 3 or later; a
        client that never sent 01,17 counts as version 1."""
        self.assertFalse(wants_extended_rate_records(None))
        self.assertFalse(wants_extended_rate_records(1))
        self.assertFalse(wants_extended_rate_records(2))
        self.assertTrue(wants_extended_rate_records(3))
        self.assertTrue(wants_extended_rate_records(4))

    def test_record_clamps_last_delta(self) -> None:
        """A last-SNAC gap beyond a u32 is sent as the largest u32, not an error."""
        record = pack_rate_record(_CLASS_1, 6000, 2**40, True, extended=True)
        self.assertEqual(record[-5:], bytes.fromhex("FFFFFFFF 01"))


class RateChangeTests(SynchronousTestCase):
    """The 01,0A body (ERRORS.md §3.2)."""

    def test_documented_warning(self) -> None:
        """The class 3 warning of the AOL capture, current 4887, matches byte for
        byte from the code onwards."""
        body = pack_rate_change(RateChange.WARNING, _CLASS_3, 4887, 0, False, extended=True)
        self.assertEqual(
            body,
            bytes.fromhex(
                "00020003 00000014 000013EC 00001388 00000FA0 00000BB800001317 00001770 00000000 00"
            ),
        )

    def test_short_record(self) -> None:
        """For older clients the notice omits the last-time and dropping fields."""
        body = pack_rate_change(RateChange.WARNING, _CLASS_3, 4887, 0, False, extended=False)
        self.assertEqual(len(body), 2 + 30)
        self.assertEqual(
            body, pack_rate_change(RateChange.WARNING, _CLASS_3, 4887, 0, False, extended=True)[:-5]
        )

    def test_codes(self) -> None:
        """The codes are Shutko's: changed 1, warning 2, limited 3, cleared 4."""
        self.assertEqual([int(c) for c in (RateChange.PARAMS_CHANGED, RateChange.WARNING)], [1, 2])
        self.assertEqual([int(c) for c in (RateChange.LIMITED, RateChange.CLEARED)], [3, 4])

    def test_limited_notice_from_check(self) -> None:
        """The notice for a limited result carries its level and the dropping flag."""
        limiter = RateLimiter()
        results = [limiter.check(3, 0) for _ in range(9)]
        result = results[-1]
        self.assertEqual(result.changed_to, RateChange.LIMITED)
        body = pack_rate_change(
            result.changed_to, _CLASS_3, result.current, 0, not result.allowed, extended=True
        )
        self.assertEqual(body[:4], bytes.fromhex("0003 0003"))
        self.assertEqual(body[-13:], bytes.fromhex("00000F89 00001770 00000000 01"))


def _burst(limiter: RateLimiter, class_id: int, now_ms: int, count: int) -> list:
    return [limiter.check(class_id, now_ms) for _ in range(count)]


class RateLimiterTests(SynchronousTestCase):
    """The NINA/Go algorithm of ERRORS.md §3.1 with explicit timestamps."""

    def test_slow_sender_stays_clear(self) -> None:
        """A client sending one SNAC every 3 s in class 1 is never warned."""
        limiter = RateLimiter()
        for i in range(1000):
            result = limiter.check(1, i * 3000)
            self.assertEqual(
                (result.state, result.allowed, result.changed_to),
                (RateState.CLEAR, True, None),
            )
        self.assertTrue(3000 <= result.current <= 6000)

    def test_first_snac_keeps_max(self) -> None:
        """The first SNAC a user ever sends leaves the level at max, whatever
        the clock reads."""
        for now in (0, 5, 10**12):
            result = RateLimiter().check(3, now)
            self.assertEqual((result.state, result.current), (RateState.CLEAR, 6000))

    def test_burst_escalates(self) -> None:
        """Class 3 SNACs with no gap: warned once at the 5th, limited once at the
        9th (dropped from then on), disconnected at the 15th."""
        limiter = RateLimiter()
        results = _burst(limiter, 3, 1000, 15)
        self.assertEqual(
            [r.current for r in results],
            [6000, 5700, 5415, 5144, 4886, 4641, 4408, 4187, 3977]
            + [3778, 3589, 3409, 3238, 3076, 2922],
        )
        self.assertEqual(
            [r.state for r in results],
            [RateState.CLEAR] * 4
            + [RateState.ALERT] * 4
            + [RateState.LIMITED] * 6
            + [RateState.DISCONNECT],
        )
        self.assertEqual(
            [(i, r.changed_to) for i, r in enumerate(results, 1) if r.changed_to],
            [(5, RateChange.WARNING), (9, RateChange.LIMITED)],
        )
        self.assertEqual([r.allowed for r in results], [True] * 8 + [False] * 7)
        self.assertEqual(limiter.state(3), RateState.DISCONNECT)

    def _limited(self) -> RateLimiter:
        limiter = RateLimiter()
        result = _burst(limiter, 3, 1000, 9)[-1]
        self.assertEqual((result.state, result.current), (RateState.LIMITED, 3977))
        return limiter

    def test_limited_clears_at_clear_level(self) -> None:
        """Once limited, a pause that lifts the average exactly to the clear level
        (5100) clears the class and asks for a CLEARED notice."""
        limiter = self._limited()
        result = limiter.check(3, 1000 + 26437)
        self.assertEqual(
            (result.state, result.allowed, result.changed_to, result.current),
            (RateState.CLEAR, True, RateChange.CLEARED, 5100),
        )

    def test_limited_below_clear_stays_limited(self) -> None:
        """Once limited, rising above the alert level is not enough: one ms short
        of the clear level the SNAC is still dropped, with no new notice."""
        limiter = self._limited()
        result = limiter.check(3, 1000 + 26436)
        self.assertEqual(
            (result.state, result.allowed, result.changed_to, result.current),
            (RateState.LIMITED, False, None, 5099),
        )

    def test_alert_recovers_silently(self) -> None:
        """A warned class that slows down is clear again with no 01,0A (only
        leaving *limited* is announced)."""
        limiter = RateLimiter()
        self.assertEqual(_burst(limiter, 3, 1000, 5)[-1].state, RateState.ALERT)
        result = limiter.check(3, 1000 + 7166)
        self.assertEqual(
            (result.state, result.changed_to, result.current), (RateState.CLEAR, None, 5000)
        )

    def test_rewarned_after_recovery(self) -> None:
        """Warning is emitted once per entry into alert: recover, burst again, and
        a second WARNING follows."""
        limiter = RateLimiter()
        _burst(limiter, 3, 1000, 5)
        limiter.check(3, 10**6)
        again = _burst(limiter, 3, 10**6, 10)
        self.assertEqual(
            [r.changed_to for r in again if r.changed_to],
            [RateChange.WARNING, RateChange.LIMITED],
        )

    def test_disconnected_user_returning_soon_is_limited(self) -> None:
        """Rate state outlives the connection: a user disconnected for flooding who
        sends again soon is still dropped, and told so."""
        limiter = RateLimiter()
        _burst(limiter, 3, 1000, 15)
        result = limiter.check(3, 21000)
        self.assertEqual(
            (result.state, result.allowed, result.changed_to, result.current),
            (RateState.LIMITED, False, RateChange.LIMITED, 3775),
        )

    def test_disconnect_counts_as_limited(self) -> None:
        """After a disconnect the class must climb back to the clear level, as
        after a limit: a level above alert (4500) but below clear keeps it dropped."""
        limiter = RateLimiter()
        _burst(limiter, 3, 1000, 15)
        result = limiter.check(3, 1000 + 34482)
        self.assertEqual(
            (result.state, result.allowed, result.current), (RateState.LIMITED, False, 4500)
        )

    def test_disconnected_user_returning_late_is_cleared(self) -> None:
        """After a long enough pause a disconnected user's class is clear again."""
        limiter = RateLimiter()
        _burst(limiter, 3, 1000, 15)
        result = limiter.check(3, 10**6)
        self.assertEqual(
            (result.state, result.allowed, result.changed_to, result.current),
            (RateState.CLEAR, True, RateChange.CLEARED, 6000),
        )

    def test_classes_independent(self) -> None:
        """Flooding IMs (class 3) does not touch the user's class 1 budget."""
        limiter = RateLimiter()
        _burst(limiter, 3, 1000, 12)
        result = limiter.check(1, 1000)
        self.assertEqual((result.state, result.current), (RateState.CLEAR, 6000))

    def test_clock_backwards(self) -> None:
        """A timestamp earlier than the last counts as a zero gap."""
        limiter = RateLimiter()
        limiter.check(3, 5000)
        self.assertEqual(limiter.check(3, 4000).current, 5700)
        self.assertEqual(limiter.snapshot(3, 3000), RateSnapshot(5700, 0, False))

    def test_snapshot(self) -> None:
        """Snapshots report the level, ms since the class's last SNAC, and
        whether the class is being dropped."""
        limiter = RateLimiter()
        self.assertEqual(limiter.snapshot(3, 500), RateSnapshot(6000, 0, False))
        _burst(limiter, 3, 1000, 9)
        self.assertEqual(limiter.snapshot(3, 1400), RateSnapshot(3977, 400, True))
        self.assertEqual(set(limiter.snapshots(1400)), {1, 2, 3, 4, 5})

    def test_unknown_class(self) -> None:
        """Checking a class the limiter does not have is a caller's bug."""
        with self.assertRaises(KeyError):
            RateLimiter().check(6, 0)

    def test_duplicate_class_ids_rejected(self) -> None:
        """Two classes with one ID would share a budget silently; refuse them."""
        with self.assertRaises(ValueError):
            RateLimiter((_CLASS_1, _CLASS_1))

    def test_custom_classes(self) -> None:
        """A limiter over a custom table uses that table's thresholds."""
        tiny = RateClass(7, window=2, clear=40, alert=30, limit=20, disconnect=10, max=50)
        limiter = RateLimiter((tiny,))
        states = [limiter.check(7, 0).state for _ in range(4)]
        # 50 → 25 (alert) → 12 (limited) → 6 (disconnect)
        self.assertEqual(
            states,
            [RateState.CLEAR, RateState.ALERT, RateState.LIMITED, RateState.DISCONNECT],
        )


def _reference_state(rate_class: RateClass, previous: RateState, current: int) -> RateState:
    """ERRORS.md §3.1's table, read top to bottom."""
    if current < rate_class.disconnect:
        return RateState.DISCONNECT
    was_limited = previous in (RateState.LIMITED, RateState.DISCONNECT)
    if was_limited and current >= rate_class.clear:
        return RateState.CLEAR
    if was_limited:
        return RateState.LIMITED
    if current < rate_class.limit:
        return RateState.LIMITED
    if current < rate_class.alert:
        return RateState.ALERT
    return RateState.CLEAR


_EXPECTED_NOTICE = {
    RateState.ALERT: RateChange.WARNING,
    RateState.LIMITED: RateChange.LIMITED,
}


# Runs of equal gaps (bursts, steady rates, long pauses): plain random gaps almost
# never push a class past alert, so the limited/disconnect rows would go untested.
_runs = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 300), st.integers(0, 20_000), st.integers(0, 2**33)),
        st.integers(1, 150),
    ),
    max_size=8,
)


class RateLimiterPropertyTests(SynchronousTestCase):
    """Properties of the limiter over arbitrary non-decreasing timestamps."""

    @given(
        class_index=st.integers(0, len(DEFAULT_RATE_CLASSES) - 1),
        start=st.integers(0, 2**45),
        runs=_runs,
    )
    def test_follows_table(self, class_index: int, start: int, runs: list[tuple[int, int]]) -> None:
        """The level stays within [0, max] and equals the integer moving average;
        each state is the table's verdict given the previous state; SNACs are
        allowed exactly when clear or alert; a notice is emitted exactly on
        entering alert or limited, or on leaving limited/disconnect for clear."""
        rate_class = DEFAULT_RATE_CLASSES[class_index]
        limiter = RateLimiter()
        now = start
        previous = RateState.CLEAR
        current = rate_class.max
        last = None
        for gap in (gap for gap, repeat in runs for _ in range(repeat)):
            now += gap
            result = limiter.check(rate_class.class_id, now)
            delta = rate_class.max if last is None else now - last
            current = min(
                (current * (rate_class.window - 1) + delta) // rate_class.window, rate_class.max
            )
            last = now
            self.assertTrue(0 <= result.current <= rate_class.max)
            self.assertEqual(result.current, current)
            expected = _reference_state(rate_class, previous, current)
            self.assertEqual(result.state, expected)
            self.assertEqual(result.allowed, expected in (RateState.CLEAR, RateState.ALERT))
            if expected == previous:
                notice = None
            elif expected == RateState.CLEAR:
                notice = RateChange.CLEARED if previous >= RateState.LIMITED else None
            else:
                notice = _EXPECTED_NOTICE.get(expected)
            self.assertEqual(result.changed_to, notice)
            self.assertEqual(limiter.state(rate_class.class_id), expected)
            previous = expected
