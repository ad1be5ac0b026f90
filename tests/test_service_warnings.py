# -*- test-case-name: tests.test_service_warnings -*-
"""Warnings: who may warn whom, what everyone is told, decay and persistence
(MULTISESSION.md §15)."""

from __future__ import annotations

import struct

from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.base import SnacError
from aimserver.services.presence import DECAY_INTERVAL
from aimserver.wire.codes import ICBM, FoodGroup, OService
from aimserver.wire.userinfo import UserInfo
from tests.fakes import result_of
from tests.fakes_services import ServiceWorld, decode_evil_notification, name08

NAMED = 0x0000
ANONYMOUS = 0x0001


class WarningWorld(ServiceWorld):
    def warn(self, session, target: str, send_as: int = NAMED):
        return self.call(
            self.warnings.evil_request,
            session,
            FoodGroup.ICBM,
            ICBM.EVIL_REQUEST,
            struct.pack("!H", send_as) + name08(target),
        )


def notices(connection) -> list[tuple[int, UserInfo | None]]:
    return [
        decode_evil_notification(s.body)
        for s in connection.snacs(FoodGroup.OSERVICE, OService.EVIL_NOTIFICATION)
    ]


class EvilRequestTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = WarningWorld()
        self.carol, self.watcher = self.world.sign_on("Carol", buddies=["Alice"])
        self.alice1, self.alice1_conn = self.world.sign_on("Alice")
        self.alice2, self.alice2_conn = self.world.sign_on("Alice")
        self.bob, self.bob_conn = self.world.sign_on("Bob")
        self.user = self.world.registry.get("Alice")

    def refused(self, *args) -> int:
        return self.assertRaises(SnacError, self.world.warn, *args).code

    def test_named_warning(self) -> None:
        """A named warning raises the level by 10 % and the warner learns the
        increase and the new level."""
        self.world.send_im(self.alice1, "Bob")
        [reply] = self.world.warn(self.bob, "Alice")
        self.assertEqual((reply.family, reply.subtype), (FoodGroup.ICBM, ICBM.EVIL_REPLY))
        self.assertEqual(reply.body, struct.pack("!HH", 100, 100))
        self.assertEqual(self.user.warning_level, 100)

    def test_anonymous_warning(self) -> None:
        """An anonymous warning raises the level by 3 %."""
        self.world.send_im(self.alice1, "Bob")
        [reply] = self.world.warn(self.bob, "Alice", ANONYMOUS)
        self.assertEqual(reply.body, struct.pack("!HH", 30, 30))

    def test_named_notice_to_all_sessions(self) -> None:
        """Every session of the warned user is told the new level and who warned."""
        self.world.send_im(self.alice1, "Bob")
        self.world.warn(self.bob, "Alice")
        for connection in (self.alice1_conn, self.alice2_conn):
            [(level, warner)] = notices(connection)
            self.assertEqual(level, 100)
            assert warner is not None
            self.assertEqual(warner.screen_name, "Bob")
            self.assertEqual(warner.warning_level, 0)
        self.assertEqual(notices(self.bob_conn), [])

    def test_session_between_snapshot_and_client_ready_is_told(self) -> None:
        """The sign-on race: a third session of Alice has taken its 01,0F
        snapshot (warning 0) but not yet sent client-ready when Bob warns
        her. It is told the new level too, or it would show 0 for good."""
        pending, pending_conn = self.world.sign_on("Alice", online=False)
        self.world.call(
            self.world.oservice.user_info_query,
            pending,
            FoodGroup.OSERVICE,
            OService.USER_INFO_QUERY,
        )
        self.world.send_im(self.alice1, "Bob")
        self.world.warn(self.bob, "Alice")
        [(level, warner)] = notices(pending_conn)
        self.assertEqual(level, 100)
        self.assertFalse(pending.online)
        # IMs still follow the online rules: none reaches it before client-ready.
        self.world.send_im(self.bob, "Alice", b"sorry")
        self.assertEqual(pending_conn.messages(), [])

    def test_anonymous_notice_has_no_warner(self) -> None:
        """An anonymous warning does not say who warned."""
        self.world.send_im(self.alice1, "Bob")
        self.world.warn(self.bob, "Alice", ANONYMOUS)
        for connection in (self.alice1_conn, self.alice2_conn):
            self.assertEqual(notices(connection), [(30, None)])

    def test_buddies_see_new_level(self) -> None:
        """Buddies of the warned user get an update with the new level."""
        self.world.send_im(self.alice1, "Bob")
        self.watcher.clear()
        self.world.warn(self.bob, "Alice")
        [update] = self.watcher.arrivals()
        self.assertEqual(update.warning_level, 100)

    def test_persisted(self) -> None:
        """The new level is saved with its time, so signing off does not reset it."""
        self.world.send_im(self.alice1, "Bob")
        self.world.warn(self.bob, "Alice")
        account = self.world.stored_account("Alice")
        self.assertEqual(
            (account.warning_level, account.warning_updated_at),
            (100, int(self.world.clock.seconds())),
        )
        self.world.sign_off(self.alice1)
        self.world.sign_off(self.alice2)
        self.world.clock.advance(DECAY_INTERVAL)
        self.world.sign_on("Alice")
        user = self.world.registry.get("Alice")
        self.assertEqual(self.world.presence.warning_level(user), 50)

    def test_cannot_warn_self(self) -> None:
        """Warning yourself (from any session) is not supported."""
        self.world.send_im(self.alice2, "Alice")
        self.assertEqual(self.refused(self.alice1, "A L I C E"), 0x0008)

    def test_cannot_warn_a_bot(self) -> None:
        """A bot account (issue 9's per-account flag) is exempt from warnings."""
        self.world.account("Robot")
        result_of(self.world.store.set_bot("Robot", True))
        robot, _ = self.world.sign_on("Robot")
        self.world.send_im(robot, "Bob")
        self.assertEqual(self.refused(self.bob, "Robot"), 0x000D)

    def test_cannot_warn_offline(self) -> None:
        """Someone not signed on cannot be warned."""
        self.world.account("Dave")
        self.assertEqual(self.refused(self.bob, "Dave"), 0x0004)
        self.assertEqual(self.refused(self.bob, "Nobody"), 0x0004)

    def test_needs_an_im(self) -> None:
        """You may only warn someone who has sent you an IM."""
        self.assertEqual(self.refused(self.bob, "Alice"), 0x000D)
        self.world.send_im(self.bob, "Alice")
        # Bob IMing Alice gives Alice, not Bob, the right to warn.
        self.assertEqual(self.refused(self.bob, "Alice"), 0x000D)
        self.assertEqual(self.user.warning_level, 0)

    def test_at_most_three_per_hour(self) -> None:
        """However many IMs they sent, one can warn the same sender at most
        three times for them, and only within the hour."""
        for _ in range(5):
            self.world.send_im(self.alice1, "Bob")
        for _ in range(3):
            self.world.warn(self.bob, "Alice")
        self.assertEqual(self.refused(self.bob, "Alice"), 0x000D)
        self.assertEqual(self.user.warning_level, 300)

    def test_credit_expires(self) -> None:
        """An IM older than an hour no longer allows a warning."""
        self.world.send_im(self.alice1, "Bob")
        self.world.clock.advance(3600)
        self.assertEqual(self.refused(self.bob, "Alice"), 0x000D)

    def test_at_maximum(self) -> None:
        """Someone already at 100 % cannot be warned further."""
        self.user.warning_level = 1000
        self.user.warning_at = self.world.clock.seconds()
        self.world.send_im(self.alice1, "Bob")
        self.assertEqual(self.refused(self.bob, "Alice"), 0x000D)

    def test_capped_at_maximum(self) -> None:
        """A warning never takes the level past 100 %; the reply says by how
        much it really rose."""
        self.user.warning_level = 950
        self.user.warning_at = self.world.clock.seconds()
        self.world.send_im(self.alice1, "Bob")
        [reply] = self.world.warn(self.bob, "Alice")
        self.assertEqual(reply.body, struct.pack("!HH", 50, 1000))

    def test_warning_from_decayed_level(self) -> None:
        """A warning adds to the level as decayed so far."""
        self.user.warning_level = 200
        self.user.warning_at = self.world.clock.seconds()
        self.world.clock.advance(2 * DECAY_INTERVAL)
        self.world.send_im(self.alice1, "Bob")
        [reply] = self.world.warn(self.bob, "Alice")
        self.assertEqual(reply.body, struct.pack("!HH", 100, 200))


class DecayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = WarningWorld()
        self.carol, self.watcher = self.world.sign_on("Carol", buddies=["Alice"])
        self.alice1, self.alice1_conn = self.world.sign_on("Alice")
        self.alice2, self.alice2_conn = self.world.sign_on("Alice")
        bob_session, self.bob_conn = self.world.sign_on("Bob")
        self.bob = self.world.registry.get("Bob")
        self.world.send_im(self.alice1, "Bob")
        self.world.warn(bob_session, "Alice")
        self.user = self.world.registry.get("Alice")
        for connection in (self.watcher, self.alice1_conn, self.alice2_conn, self.bob_conn):
            connection.clear()

    def self_levels(self, connection) -> list[int]:
        return [
            UserInfo.unpack(s.body).warning_level
            for s in connection.snacs(FoodGroup.OSERVICE, OService.USER_INFO_UPDATE)
        ]

    def test_sweep_before_a_step(self) -> None:
        """Less than 5 minutes after a warning the sweep changes nothing and
        tells nobody."""
        self.world.clock.advance(DECAY_INTERVAL - 1)
        self.world.warnings.sweep()
        for connection in (self.watcher, self.alice1_conn, self.alice2_conn):
            self.assertEqual(connection.payloads, [])
        self.assertEqual(self.user.warning_level, 100)

    def test_sweep_decays_and_tells_everyone(self) -> None:
        """Every 5 minutes the level drops by 5 %: every session gets its new
        self info, buddies an update, and the store the new level."""
        self.world.clock.advance(DECAY_INTERVAL)
        self.world.warnings.sweep()
        self.assertEqual(self.self_levels(self.alice1_conn), [50])
        self.assertEqual(self.self_levels(self.alice2_conn), [50])
        self.assertEqual([a.warning_level for a in self.watcher.arrivals()], [50])
        self.assertEqual(self.bob_conn.payloads, [])
        account = self.world.stored_account("Alice")
        self.assertEqual(
            (account.warning_level, account.warning_updated_at),
            (50, int(self.world.clock.seconds())),
        )

    def test_self_info_through_presence(self) -> None:
        """The decayed self info is Presence.send_self_info's, to every live
        session of the user."""
        told = []
        presence = self.world.presence
        real = presence.send_self_info

        def recording(user, sessions=None) -> None:
            told.append((user.key, sessions))
            real(user, sessions)

        presence.send_self_info = recording
        self.world.clock.advance(DECAY_INTERVAL)
        self.world.warnings.sweep()
        self.assertEqual(told, [("alice", None)])
        self.assertEqual(self.self_levels(self.alice2_conn), [50])

    def test_decay_reaches_a_session_still_signing_on(self) -> None:
        """A session attached but not yet ready gets the decayed self info."""
        pending, pending_conn = self.world.sign_on("Alice", online=False)
        pending_conn.clear()
        self.world.clock.advance(DECAY_INTERVAL)
        self.world.warnings.sweep()
        self.assertEqual(self.self_levels(pending_conn), [50])

    def test_sweep_to_zero(self) -> None:
        """The level decays to 0 and stops there; later sweeps are silent."""
        levels = []
        for _ in range(3):
            self.world.clock.advance(DECAY_INTERVAL)
            self.world.warnings.sweep()
            levels.append(self.world.stored_account("Alice").warning_level)
        self.assertEqual(levels, [50, 0, 0])
        self.assertEqual(self.self_levels(self.alice1_conn), [50, 0])
        self.assertEqual(self.self_levels(self.alice2_conn), [50, 0])
        self.assertEqual([a.warning_level for a in self.watcher.arrivals()], [50, 0])

    def test_late_sweep_catches_up(self) -> None:
        """A sweep that runs late applies every whole step missed at once,
        and keeps the partial step for next time."""
        self.world.clock.advance(2 * DECAY_INTERVAL - 10)
        self.world.warnings.sweep()
        self.assertEqual(self.user.warning_level, 50)
        self.world.clock.advance(10)
        self.world.warnings.sweep()
        self.assertEqual(self.user.warning_level, 0)

    def test_one_bad_user_does_not_stop_the_sweep(self) -> None:
        """A failure decaying one user is logged; the others still decay."""
        self.bob.warning_level = 100
        self.bob.warning_at = self.user.warning_at
        self.alice1_conn.broken = True
        self.world.clock.advance(DECAY_INTERVAL)
        self.world.warnings.sweep()
        self.assertEqual(self.bob.warning_level, 50)
        self.assertEqual(self.world.stored_account("Bob").warning_level, 50)
        self.flushLoggedErrors(ConnectionError)

    def test_dead_session_does_not_block_decay_news(self) -> None:
        """One dead connection of the user is logged and skipped: the user's
        other session still gets its new self info and the store still gets
        the new level."""
        self.alice1_conn.broken = True
        self.world.clock.advance(DECAY_INTERVAL)
        self.world.warnings.sweep()
        self.assertEqual(len(self.flushLoggedErrors(ConnectionError)), 1)
        self.assertEqual(self.self_levels(self.alice2_conn), [50])
        self.assertEqual(self.world.stored_account("Alice").warning_level, 50)
