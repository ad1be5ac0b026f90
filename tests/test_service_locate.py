# -*- test-case-name: tests.test_service_locate -*-
"""Locate across several sessions: profiles, away messages and capabilities
as others see them (MULTISESSION.md §7, §14, §16)."""

from __future__ import annotations

import struct

from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.base import SnacError
from aimserver.wire.codes import FoodGroup, Locate
from aimserver.wire.tlv import Tlv
from aimserver.wire.userinfo import CLASS_UNAVAILABLE
from tests.fakes_services import ServiceWorld, decode_user_info_reply, name08, user_class

MIME = b'text/aolrtf; charset="us-ascii"'
CAP_A = b"A" * 16
CAP_B = b"B" * 16
CAP_C = b"C" * 16

QUERY_PROFILE = 0x0001
QUERY_ONLINE = 0x0002
QUERY_AWAY = 0x0003
QUERY_CAPABILITIES = 0x0004


class LocateWorld(ServiceWorld):
    def query(self, session, target: str, kind: int):
        [reply] = self.call(
            self.locate.user_info_query,
            session,
            FoodGroup.LOCATE,
            Locate.USER_INFO_QUERY,
            struct.pack("!H", kind) + name08(target),
        )
        self.last_reply_kind = (reply.family, reply.subtype)
        return decode_user_info_reply(reply.body)

    def query2(self, session, target: str, flags: int):
        [reply] = self.call(
            self.locate.user_info_query2,
            session,
            FoodGroup.LOCATE,
            Locate.USER_INFO_QUERY2,
            struct.pack("!I", flags) + name08(target),
        )
        return decode_user_info_reply(reply.body)

    def set_profile(self, session, profile: bytes) -> None:
        self.set_info(session, Tlv(0x0001, MIME), Tlv(0x0002, profile))


class LocateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = LocateWorld()
        self.carol, _ = self.world.sign_on("Carol")
        self.bob1, _ = self.world.sign_on("Bob")
        self.bob2, _ = self.world.sign_on("Bob")

    def test_reply_kind(self) -> None:
        """A user-info query is answered with a user-info reply naming the user."""
        info, tlvs = self.world.query(self.carol, "B O B", QUERY_ONLINE)
        self.assertEqual(self.world.last_reply_kind, (FoodGroup.LOCATE, Locate.USER_INFO_REPLY))
        self.assertEqual(info.screen_name, "Bob")
        self.assertEqual(list(tlvs), [])

    def test_profile_is_per_session(self) -> None:
        """Each session keeps the profile it submitted."""
        self.world.set_profile(self.bob1, b"first")
        self.world.set_profile(self.bob2, b"second")
        self.assertEqual((self.bob1.profile, self.bob2.profile), (b"first", b"second"))

    def test_oldest_sessions_profile_shown(self) -> None:
        """Others see the profile of the session that signed on first."""
        self.world.set_profile(self.bob2, b"second")
        self.world.set_profile(self.bob1, b"first")
        _, tlvs = self.world.query(self.carol, "Bob", QUERY_PROFILE)
        self.assertEqual(tlvs.get(0x0002), b"first")
        self.assertEqual(tlvs.get(0x0001), MIME)

    def test_next_oldest_after_sign_off(self) -> None:
        """When the oldest session signs off, the next oldest's profile shows."""
        self.world.set_profile(self.bob1, b"first")
        self.world.set_profile(self.bob2, b"second")
        self.world.sign_off(self.bob1)
        _, tlvs = self.world.query(self.carol, "Bob", QUERY_PROFILE)
        self.assertEqual(tlvs.get(0x0002), b"second")

    def test_own_profile_when_looking_at_yourself(self) -> None:
        """A session looking itself up sees what it submitted."""
        self.world.set_profile(self.bob1, b"first")
        self.world.set_profile(self.bob2, b"second")
        _, tlvs = self.world.query(self.bob2, "Bob", QUERY_PROFILE)
        self.assertEqual(tlvs.get(0x0002), b"second")

    def test_away_only_when_all_away(self) -> None:
        """The away message is shown only when every session is away."""
        self.world.set_away(self.bob1, b"at lunch")
        _, tlvs = self.world.query(self.carol, "Bob", QUERY_AWAY)
        self.assertFalse(tlvs.has(0x0004))
        info, _ = self.world.query(self.carol, "Bob", QUERY_ONLINE)
        self.assertFalse(user_class(info) & CLASS_UNAVAILABLE)
        self.world.set_away(self.bob2, b"in a meeting")
        info, tlvs = self.world.query(self.carol, "Bob", QUERY_AWAY)
        self.assertEqual(tlvs.get(0x0004), b"at lunch")
        self.assertEqual(tlvs.get(0x0003), MIME)
        self.assertTrue(user_class(info) & CLASS_UNAVAILABLE)

    def test_away_cleared(self) -> None:
        """An empty away message means back: the user is no longer away."""
        self.world.set_away(self.bob1, b"at lunch")
        self.world.set_away(self.bob2, b"in a meeting")
        self.world.set_away(self.bob2, None)
        self.assertIsNone(self.bob2.away_message)
        _, tlvs = self.world.query(self.carol, "Bob", QUERY_AWAY)
        self.assertFalse(tlvs.has(0x0004))

    def test_capability_query(self) -> None:
        """A capability query (type 4) lists every session's capabilities once."""
        self.world.set_info(self.bob1, Tlv(0x0005, CAP_A + CAP_B))
        self.world.set_info(self.bob2, Tlv(0x0005, CAP_B + CAP_C))
        _, tlvs = self.world.query(self.carol, "Bob", QUERY_CAPABILITIES)
        value = tlvs.get(0x0005)
        chunks = [value[i : i + 16] for i in range(0, len(value), 16)]
        self.assertEqual(sorted(chunks), [CAP_A, CAP_B, CAP_C])
        self.assertFalse(tlvs.has(0x0002))

    def test_query2_flags(self) -> None:
        """The flag-based query returns the parts asked for, together."""
        self.world.set_profile(self.bob1, b"first")
        self.world.set_info(self.bob1, Tlv(0x0005, CAP_A))
        self.world.set_away(self.bob1, b"lunch")
        self.world.set_away(self.bob2, b"meeting")
        _, tlvs = self.world.query2(self.carol, "Bob", 0x01 | 0x02 | 0x04)
        self.assertEqual(tlvs.get(0x0002), b"first")
        self.assertEqual(tlvs.get(0x0004), b"lunch")
        self.assertEqual(tlvs.get(0x0005), CAP_A)

    def test_offline_target(self) -> None:
        """Asking about someone not signed on is "not logged on"."""
        self.world.account("Dave")
        for name in ("Dave", "Nobody"):
            error = self.assertRaises(SnacError, self.world.query, self.carol, name, QUERY_PROFILE)
            self.assertEqual(error.code, 0x0004)

    def test_target_still_signing_on(self) -> None:
        """A user whose only session has not finished signing on is not there yet."""
        self.world.sign_on("Dave", online=False)
        error = self.assertRaises(SnacError, self.world.query, self.carol, "Dave", QUERY_ONLINE)
        self.assertEqual(error.code, 0x0004)

    def test_profile_too_long(self) -> None:
        """A profile over the announced limit is refused and not kept."""
        error = self.assertRaises(SnacError, self.world.set_profile, self.bob1, b"x" * 4097)
        self.assertEqual(error.code, 0x000E)
        self.assertIsNone(self.bob1.profile)

    def test_bad_capabilities(self) -> None:
        """Capabilities must be whole 16-byte UUIDs."""
        error = self.assertRaises(SnacError, self.world.set_info, self.bob1, Tlv(0x0005, b"short"))
        self.assertEqual(error.code, 0x000E)
