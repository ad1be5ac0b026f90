# -*- test-case-name: tests.test_service_presence -*-
"""Presence across several sessions: what buddies see, and when they are told
(MULTISESSION.md §7, §8, §9, §15, §16)."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.registry import MULTICONN_MULTI
from aimserver.services.presence import DECAY_INTERVAL, aggregate_state, decayed
from aimserver.wire.codes import FoodGroup, OService
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import (
    CLASS_UNAVAILABLE,
    STATUS_INVISIBLE,
    TAG_CAPABILITIES,
    TAG_IDLE_MINUTES,
    TAG_SIGNON_TIME,
    TAG_USER_CLASS,
    UserInfo,
)
from tests.fakes_services import ServiceWorld, user_class

CAP_A = b"A" * 16
CAP_B = b"B" * 16
CAP_C = b"C" * 16


def caps_of(info: UserInfo) -> set[bytes]:
    value = info.tlvs.get(TAG_CAPABILITIES) or b""
    return {value[i : i + 16] for i in range(0, len(value), 16)}


def is_away(info: UserInfo) -> bool:
    return bool(user_class(info) & CLASS_UNAVAILABLE)


class PresenceWorld(ServiceWorld):
    def set_caps(self, session, *caps: bytes) -> None:
        self.set_info(session, Tlv(0x0005, b"".join(caps)))


class AggregateStateTests(SynchronousTestCase):
    """The one presence others see, computed from every online session."""

    @given(
        st.lists(
            st.tuples(
                st.booleans(),
                st.none() | st.integers(0, 10_000),
                st.sets(st.sampled_from([CAP_A, CAP_B, CAP_C])),
                st.booleans(),
            ),
            min_size=1,
            max_size=4,
        )
    )
    def test_aggregate(self, states) -> None:
        """Away only if every session is away; idle only if every session is
        idle (then the most recent start); capabilities the union; invisible
        only if every session is invisible."""
        world = ServiceWorld()
        sessions = [world.sign_on("Alice")[0] for _ in states]
        for session, (away, idle, caps, invisible) in zip(sessions, states, strict=True):
            session.away_message = b"gone" if away else None
            session.idle_since = None if idle is None else world.clock.seconds() - idle
            session.capabilities = tuple(sorted(caps))
            session.status = STATUS_INVISIBLE if invisible else 0
        state = aggregate_state(world.registry.get("Alice"))
        if all(s[3] for s in states):
            self.assertIsNone(state)
            return
        assert state is not None
        away, idle_since, capabilities, status = state
        self.assertEqual(away, all(s[0] for s in states))
        idles = [s[1] for s in states]
        if None in idles:
            self.assertIsNone(idle_since)
        else:
            self.assertEqual(idle_since, world.clock.seconds() - min(idles))
        self.assertEqual(set(capabilities), set().union(*(s[2] for s in states)))
        self.assertEqual(len(capabilities), len(set(capabilities)))
        self.assertFalse(status & STATUS_INVISIBLE)

    def test_sessions_not_yet_online_do_not_count(self) -> None:
        """A session still signing on (no client-ready yet) is not part of presence."""
        world = ServiceWorld()
        world.sign_on("Alice", online=False)
        self.assertIsNone(aggregate_state(world.registry.get("Alice")))


class ArrivalDepartureTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = PresenceWorld()
        self.carol, self.watcher = self.world.sign_on("Carol", buddies=["Alice"])

    def test_one_arrival_for_first_session(self) -> None:
        """Buddies are told once when the user's first session comes online,
        and not again when a second one does."""
        first, _ = self.world.sign_on("Alice")
        [arrival] = self.watcher.arrivals()
        self.assertEqual(arrival.screen_name, "Alice")
        self.assertEqual(arrival.tlvs.get_u32(TAG_SIGNON_TIME), int(self.world.clock.seconds()))
        self.world.clock.advance(60)
        self.world.sign_on("Alice")
        self.assertEqual(len(self.watcher.arrivals()), 1)

    def test_one_burst_is_one_update_with_the_final_state(self) -> None:
        """Issue 13 §2: libpurple goes away with a 02,04 (away text) and an
        01,1E (away status bit) back to back, and comes back the same way;
        each change reaches watchers as one 03,0B with the final state,
        where before the first of two was wrong (still away on the way back)."""
        alice, _ = self.world.sign_on("Alice")
        self.watcher.clear()
        mime = Tlv(0x0003, b'text/aolrtf; charset="us-ascii"')
        for text, status, away in ((b"brb", 0x10020001, True), (b"", 0x10020000, False)):
            self.world.call(
                self.world.locate.set_info,
                alice,
                FoodGroup.LOCATE,
                0x0004,
                TlvList((mime, Tlv(0x0004, text))).pack_list(),
            )
            self.world.call(
                self.world.oservice.set_user_info_fields,
                alice,
                FoodGroup.OSERVICE,
                OService.SET_USER_INFO_FIELDS,
                TlvList((Tlv.u32(0x0006, status),)).pack_list(),
            )
            self.assertEqual(self.watcher.payloads, [], "announced before the turn ended")
            self.world.end_turn()
            [update] = self.watcher.arrivals()
            self.assertEqual(is_away(update), away)
            self.assertEqual(update.tlvs.get_u32(0x0006), status)
            self.watcher.clear()

    def test_the_two_snacs_in_separate_turns_still_make_one_update(self) -> None:
        """Seen with the real libpurple: coming back, its 02,04 and 01,1E can
        arrive in two reads. Away from the first of them to the last, and an
        away bit that says what the class says: still one update per change,
        never a wrong one."""
        alice, _ = self.world.sign_on("Alice")
        self.world.set_status(alice, 0x10020000)  # libpurple's sign-on status
        self.watcher.clear()
        mime = Tlv(0x0003, b'text/aolrtf; charset="us-ascii"')
        steps = [
            ("info", b"brb", [(True, 0x10020001)]),
            ("status", 0x10020001, []),
            ("info", b"", []),
            ("status", 0x10020000, [(False, 0x10020000)]),
        ]
        for kind, value, expected in steps:
            if kind == "info":
                self.world.set_info(alice, mime, Tlv(0x0004, value))
            else:
                self.world.set_status(alice, value)
            updates = [(is_away(u), u.tlvs.get_u32(0x0006)) for u in self.watcher.arrivals()]
            self.assertEqual(updates, expected, (kind, value))
            self.watcher.clear()

    def test_changes_undone_within_a_turn_send_nothing(self) -> None:
        """Away and back within one turn: watchers saw nothing change."""
        alice, _ = self.world.sign_on("Alice")
        self.watcher.clear()
        for text in (b"brb", b""):
            self.world.call(
                self.world.locate.set_info,
                alice,
                FoodGroup.LOCATE,
                0x0004,
                TlvList((Tlv(0x0004, text),)).pack_list(),
            )
        self.world.end_turn()
        self.assertEqual(self.watcher.payloads, [])

    def test_not_online_until_client_ready(self) -> None:
        """A session that has not finished signing on is not announced."""
        session, _ = self.world.sign_on("Alice", online=False)
        self.assertEqual(self.watcher.payloads, [])
        self.world.come_online(session)
        self.assertEqual(len(self.watcher.arrivals()), 1)

    def test_update_only_when_aggregate_changes(self) -> None:
        """One of two sessions going away changes nothing for buddies; when
        both are away they get one update, and one more when one comes back."""
        first, _ = self.world.sign_on("Alice")
        second, _ = self.world.sign_on("Alice")
        self.watcher.clear()
        self.world.set_away(first, b"lunch")
        self.assertEqual(self.watcher.payloads, [])
        self.world.set_away(second, b"meeting")
        [update] = self.watcher.arrivals()
        self.assertTrue(is_away(update))
        self.world.set_away(first, b"still lunch")
        self.assertEqual(len(self.watcher.arrivals()), 1)
        self.world.set_away(first, None)
        updates = self.watcher.arrivals()
        self.assertEqual(len(updates), 2)
        self.assertFalse(is_away(updates[-1]))

    def test_departure_only_with_last_session(self) -> None:
        """Buddies see the user leave only when the last session signs off."""
        first, _ = self.world.sign_on("Alice")
        second, _ = self.world.sign_on("Alice")
        self.watcher.clear()
        self.world.sign_off(first)
        self.assertEqual(self.watcher.payloads, [])
        self.world.sign_off(second)
        [departure] = self.watcher.departures()
        self.assertEqual(departure.screen_name, "Alice")
        self.assertEqual(departure.warning_level, 0)
        self.assertEqual(list(departure.tlvs), [Tlv.u16(TAG_USER_CLASS, 0)])
        self.assertEqual(len(self.watcher.payloads), 1)

    def test_displacement_is_one_new_arrival(self) -> None:
        """A legacy login replacing the session is seen as leaving and arriving."""
        self.world.sign_on("Alice", flags=0x00)
        self.world.clock.advance(30)
        self.watcher.clear()
        self.world.sign_on("Alice", flags=0x00)
        self.assertEqual(len(self.watcher.departures()), 1)
        [arrival] = self.watcher.arrivals()
        self.assertEqual(arrival.tlvs.get_u32(TAG_SIGNON_TIME), int(self.world.clock.seconds()))

    def test_arrivals_for_already_online_buddies(self) -> None:
        """A session that signs on is told which of its buddies are already online."""
        self.world.sign_on("Alice")
        self.world.account("Bob")
        _, connection = self.world.sign_on("Dave", buddies=["Alice", "Bob", "Carol"])
        self.assertEqual(sorted(a.screen_name for a in connection.arrivals()), ["Alice", "Carol"])

    def test_second_session_gets_arrivals_too(self) -> None:
        """Each session of a user gets its own arrivals for its buddy list."""
        self.world.sign_on("Alice")
        _, connection = self.world.sign_on("Carol", buddies=["Alice"])
        self.assertEqual([a.screen_name for a in connection.arrivals()], ["Alice"])

    def test_invisible_only_if_all_invisible(self) -> None:
        """One invisible session does not hide the user; when all are
        invisible buddies see a departure, and an arrival when one reappears."""
        first, _ = self.world.sign_on("Alice")
        second, _ = self.world.sign_on("Alice")
        self.watcher.clear()
        self.world.set_status(first, STATUS_INVISIBLE)
        self.assertEqual(self.watcher.payloads, [])
        self.world.set_status(second, STATUS_INVISIBLE)
        self.assertEqual(len(self.watcher.departures()), 1)
        _, late = self.world.sign_on("Dave", buddies=["Alice"])
        self.assertEqual(late.arrivals(), [])
        self.world.set_status(first, 0)
        self.assertEqual(len(self.watcher.arrivals()), 1)

    def test_capabilities_union(self) -> None:
        """Buddies see the union of every session's capabilities."""
        first, _ = self.world.sign_on("Alice")
        second, _ = self.world.sign_on("Alice")
        self.world.set_caps(first, CAP_A, CAP_B)
        self.world.set_caps(second, CAP_B, CAP_C)
        self.assertEqual(caps_of(self.watcher.arrivals()[-1]), {CAP_A, CAP_B, CAP_C})
        count = len(self.watcher.arrivals())
        # Same union: nothing new to tell.
        self.world.set_caps(second, CAP_C, CAP_B)
        self.world.set_caps(first, CAP_A)
        self.assertEqual(len(self.watcher.arrivals()), count + 1)
        self.assertEqual(caps_of(self.watcher.arrivals()[-1]), {CAP_A, CAP_B, CAP_C})

    @given(st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.booleans()), max_size=25))
    def test_updates_track_aggregate_changes(self, steps) -> None:
        """For any sequence of away/idle changes on three sessions, buddies get
        exactly one update per change of the aggregate, and the last one they
        got says away exactly when every session is away."""
        world = PresenceWorld()
        _, watcher = world.sign_on("Carol", buddies=["Alice"])
        sessions = [world.sign_on("Alice")[0] for _ in range(3)]
        away = [False] * 3
        idle = [False] * 3
        expected = 1
        seen = (False, False)
        for index, set_away, set_idle in steps:
            # Two requests, each of which may change the aggregate.
            away[index] = set_away
            world.set_away(sessions[index], b"away" if set_away else None)
            if (all(away), all(idle)) != seen:
                expected += 1
                seen = (all(away), all(idle))
            idle[index] = set_idle
            world.set_idle(sessions[index], 600 if set_idle else 0)
            if (all(away), all(idle)) != seen:
                expected += 1
                seen = (all(away), all(idle))
        arrivals = watcher.arrivals()
        self.assertEqual(len(arrivals), expected)
        self.assertEqual(is_away(arrivals[-1]), all(away))
        self.assertEqual(arrivals[-1].tlvs.has(TAG_IDLE_MINUTES), all(idle))


class IdleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = PresenceWorld()
        self.carol, self.watcher = self.world.sign_on("Carol", buddies=["Alice"])
        self.first, _ = self.world.sign_on("Alice", flags=MULTICONN_MULTI)
        self.second, _ = self.world.sign_on("Alice", flags=MULTICONN_MULTI)
        self.watcher.clear()

    def test_idle_only_when_all_idle(self) -> None:
        """One idle session leaves the user active; when both are idle buddies
        see the most recent idle start."""
        self.world.set_idle(self.first, 1200)
        self.assertEqual(self.watcher.payloads, [])
        self.world.set_idle(self.second, 300)
        [update] = self.watcher.arrivals()
        self.assertEqual(update.tlvs.get_u16(TAG_IDLE_MINUTES), 5)

    def test_idle_minutes_follow_the_clock(self) -> None:
        """Idle minutes grow with time without any new report."""
        self.world.set_idle(self.first, 120)
        self.world.set_idle(self.second, 60)
        self.world.clock.advance(10 * 60 + 59)
        _, late = self.world.sign_on("Dave", buddies=["Alice"])
        [arrival] = late.arrivals()
        self.assertEqual(arrival.tlvs.get_u16(TAG_IDLE_MINUTES), 11)

    def test_back_from_idle(self) -> None:
        """A session that becomes active again makes the user active (one update)."""
        self.world.set_idle(self.first, 60)
        self.world.set_idle(self.second, 60)
        self.world.set_idle(self.second, 0)
        updates = self.watcher.arrivals()
        self.assertEqual(len(updates), 2)
        self.assertFalse(updates[-1].tlvs.has(TAG_IDLE_MINUTES))


class WarningLevelTests(SynchronousTestCase):
    def test_decay_steps(self) -> None:
        """A stored warning level drops by 5 % every whole 5 minutes, and
        buddies see the decayed level."""
        world = ServiceWorld()
        world.account("Alice")
        world.store.set_warning("Alice", 300, int(world.clock.seconds()))
        world.sign_on("Alice")
        user = world.registry.get("Alice")
        levels = []
        for _ in range(8):
            # A fresh legacy sign-on each time: one arrival with today's level.
            _, connection = world.sign_on("Carol", flags=0x00, buddies=["Alice"])
            [arrival] = connection.arrivals()
            levels.append((world.presence.warning_level(user), arrival.warning_level))
            world.clock.advance(DECAY_INTERVAL)
        self.assertEqual(
            levels,
            [(300, 300), (250, 250), (200, 200), (150, 150), (100, 100), (50, 50), (0, 0), (0, 0)],
        )

    def test_partial_steps(self) -> None:
        """Less than 5 minutes changes nothing; the remainder still counts later."""
        world = ServiceWorld()
        world.account("Alice")
        world.store.set_warning("Alice", 100, int(world.clock.seconds()))
        world.sign_on("Alice")
        user = world.registry.get("Alice")
        world.clock.advance(DECAY_INTERVAL - 1)
        self.assertEqual(world.presence.warning_level(user), 100)
        world.clock.advance(1)
        self.assertEqual(world.presence.warning_level(user), 50)

    @given(
        st.integers(0, 1000),
        st.floats(0, 10_000, allow_nan=False),
        st.floats(0, 10_000, allow_nan=False),
    )
    def test_decay_in_parts_equals_decay_at_once(self, level, first, second) -> None:
        """Decaying in two looks gives the same level as one look at the end."""
        since = 1000.0
        middle_level, middle_since = decayed(level, since, since + first)
        two_step = decayed(middle_level, middle_since, since + first + second)[0]
        one_step = decayed(level, since, since + first + second)[0]
        self.assertEqual(two_step, one_step)
        self.assertEqual(one_step, max(0, level - 50 * int((first + second) // 300)))


class SelfInfoTests(SynchronousTestCase):
    def test_self_info_has_own_status(self) -> None:
        """A session's own info shows its own status, not the aggregate."""
        world = PresenceWorld()
        first, _ = world.sign_on("Alice")
        second, _ = world.sign_on("Alice")
        world.set_status(first, STATUS_INVISIBLE)
        user = world.registry.get("Alice")
        own = UserInfo.unpack(world.presence.self_info_block(user, first))
        other = UserInfo.unpack(world.presence.self_info_block(user, second))
        self.assertEqual(own.tlvs.get(0x0006), struct.pack("!I", STATUS_INVISIBLE))
        self.assertEqual(other.tlvs.get(0x0006), struct.pack("!I", 0))

    def test_packed_blocks_byte_for_byte(self) -> None:
        """The info blocks, packed straight from structs, byte for byte: what
        others see (class, sign-on time, aggregate status, idle minutes,
        capabilities) and what the session sees of itself (the same without
        the aggregate status, then its own status, member-since and session
        length)."""
        world = PresenceWorld()
        session, _ = world.sign_on("Ali Ce")
        world.set_caps(session, CAP_A)
        world.set_status(session, 0x0001)
        world.set_away(session, b"out")
        world.set_idle(session, 600)
        world.clock.advance(120)
        user = world.registry.get("Ali Ce")
        signon = int(user.signon_time)
        member = int(user.member_since)
        head = (
            b"\x06Ali Ce" + struct.pack("!H", 0)  # name, warning level
        )
        common = [
            struct.pack("!HHH", 0x0001, 2, 0x0010 | 0x0020),  # free + away
            struct.pack("!HHI", 0x0003, 4, signon),
        ]
        idle_caps = [struct.pack("!HHH", 0x0004, 2, 12), struct.pack("!HH", 0x000D, 16) + CAP_A]
        others = common + [struct.pack("!HHI", 0x0006, 4, 0x0001)] + idle_caps
        self.assertEqual(
            world.presence.info_block(user), head + struct.pack("!H", 5) + b"".join(others)
        )
        own = (
            common
            + idle_caps
            + [
                struct.pack("!HHI", 0x0006, 4, 0x0001),
                struct.pack("!HHI", 0x0005, 4, member),
                struct.pack("!HHI", 0x000F, 4, int(world.clock.seconds() - session.connected_at)),
            ]
        )
        self.assertEqual(
            world.presence.self_info_block(user, session),
            head + struct.pack("!H", 7) + b"".join(own),
        )
