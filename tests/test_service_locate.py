# -*- test-case-name: tests.test_service_locate -*-
"""Locate across several sessions: profiles, away messages and capabilities
as others see them, and the user-level directory record (MULTISESSION.md §4,
§7, §14, §16)."""

from __future__ import annotations

import struct

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.base import SnacError
from aimserver.services.locate import LocateService
from aimserver.store.interfaces import MAX_DIRECTORY_FIELD_BYTES, DirectoryFields, DirectoryInfo
from aimserver.wire.codes import FoodGroup, Locate
from aimserver.wire.errors import MalformedData
from aimserver.wire.reader import Reader
from aimserver.wire.tlv import Tlv, TlvList
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


INVISIBLE = 0x00000100
#: A full 02,09 form, as AIM and libpurple send it (0x000A: allow search).
FORM = (
    Tlv.u16(0x000A, 1),
    Tlv(0x0001, b"Robert"),
    Tlv(0x0002, b"Smith"),
    Tlv(0x0003, b"J"),
    Tlv(0x0004, b"Jones"),
    Tlv(0x0006, b"us"),
    Tlv(0x0007, b"NV"),
    Tlv(0x0008, b"Reno"),
    Tlv(0x000C, b"Bobby"),
    Tlv(0x000D, b"89501"),
    Tlv(0x001C, b"us-ascii"),
    Tlv(0x0021, b"1 Main St"),
)
FORM_FIELDS = DirectoryFields(
    first_name=b"Robert",
    middle_name=b"J",
    last_name=b"Smith",
    maiden_name=b"Jones",
    nickname=b"Bobby",
    street=b"1 Main St",
    city=b"Reno",
    state=b"NV",
    zip_code=b"89501",
    country=b"us",
    charset=b"us-ascii",
    allow_search=True,
)


def decode_directory_reply(body: bytes) -> tuple[int, TlvList]:
    reader = Reader(body, "02,0C")
    status = reader.u16("status")
    tlvs = TlvList.read_block(reader)
    assert reader.remaining() == 0
    return status, tlvs


class LocateWorld(ServiceWorld):
    """The world with a Locate service that keeps directory records in its store."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.locate = LocateService(self.registry, self.presence, self.store)

    def request(self, session, subtype: int, body: bytes):
        """A Locate request and its replies (a Deferred that has fired, or a list)."""
        handler = self.locate.handlers()[FoodGroup.LOCATE, subtype]
        return self.call(handler, session, FoodGroup.LOCATE, subtype, body)

    def set_directory(self, session, *tlvs: Tlv):
        return self.request(session, Locate.SET_DIR_INFO, TlvList(tlvs).pack_list())

    def set_keywords(self, session, *tlvs: Tlv):
        return self.request(session, Locate.SET_KEYWORD_INFO, TlvList(tlvs).pack_list())

    def get_directory(self, session, target: str):
        return self.request(session, Locate.GET_DIR_INFO, name08(target))

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


class DirectoryTests(SynchronousTestCase):
    """§4, §14: directory info and interest keywords are one user-level record."""

    def setUp(self) -> None:
        self.world = LocateWorld()
        self.carol, _ = self.world.sign_on("Carol")
        self.bob1, _ = self.world.sign_on("Bob")
        self.bob2, _ = self.world.sign_on("Bob")

    def replies(self, result):
        """The replies of a handler that may answer at once or with a Deferred."""
        return self.successResultOf(result) if isinstance(result, Deferred) else result

    def stored(self, name: str = "Bob") -> DirectoryInfo:
        return self.successResultOf(self.world.store.get_directory_info(name))

    def read(self, session, target: str = "Bob") -> tuple[int, TlvList]:
        [reply] = self.replies(self.world.get_directory(session, target))
        self.assertEqual((reply.family, reply.subtype), (FoodGroup.LOCATE, Locate.GET_DIR_REPLY))
        return decode_directory_reply(reply.body)

    def test_set_directory_info_acknowledged_and_stored(self) -> None:
        """02,09 is answered 02,0A with result 0x0001 once the record is stored."""
        replies = self.successResultOf(self.world.set_directory(self.bob1, *FORM))
        self.assertEqual(
            [(r.family, r.subtype, r.body) for r in replies],
            [(FoodGroup.LOCATE, Locate.SET_DIR_REPLY, b"\x00\x01")],
        )
        self.assertEqual(self.stored(), DirectoryInfo(FORM_FIELDS))

    def test_read_back_by_every_session_and_others(self) -> None:
        """What one session set, the user's other session and another user read
        back with 02,0B: status 0x0001 and the fields set, in tag order."""
        self.successResultOf(self.world.set_directory(self.bob1, *FORM))
        expected = TlvList(tuple(t for t in sorted(FORM, key=lambda t: t.tag) if t.tag != 0x000A))
        for session in (self.bob1, self.bob2, self.carol):
            self.assertEqual(self.read(session, "b o b"), (0x0001, expected))

    def test_reply_bytes(self) -> None:
        """02,0C is a u16 status and a TLV block (a u16 count, then the TLVs)."""
        self.successResultOf(self.world.set_directory(self.bob1, Tlv(0x0001, b"Robert")))
        self.successResultOf(self.world.set_keywords(self.bob1, Tlv(0x000B, b"Chess")))
        [reply] = self.replies(self.world.get_directory(self.carol, "Bob"))
        self.assertEqual(
            reply.body,
            b"\x00\x01" + b"\x00\x02" + b"\x00\x01\x00\x06Robert" + b"\x00\x0b\x00\x05Chess",
        )

    def test_any_session_replaces_the_record(self) -> None:
        """A later 02,09 from another session replaces the whole record: a
        field it leaves out is cleared."""
        self.successResultOf(self.world.set_directory(self.bob1, *FORM))
        self.successResultOf(self.world.set_directory(self.bob2, Tlv(0x0008, b"Elko")))
        self.assertEqual(self.stored(), DirectoryInfo(DirectoryFields(city=b"Elko")))
        self.assertEqual(self.read(self.carol), (0x0001, TlvList((Tlv(0x0008, b"Elko"),))))

    def test_keywords_in_the_same_record(self) -> None:
        """02,0F (answered 02,10 with 0x0001) sets the keywords of the same
        record: the fields stay, and later fields keep the keywords."""
        self.successResultOf(self.world.set_directory(self.bob1, *FORM))
        replies = self.successResultOf(
            self.world.set_keywords(
                self.bob2, Tlv.u16(0x000A, 1), Tlv(0x000B, b"Chess"), Tlv(0x000B, b"Go")
            )
        )
        self.assertEqual(
            [(r.family, r.subtype, r.body) for r in replies],
            [(FoodGroup.LOCATE, Locate.SET_KEYWORD_REPLY, b"\x00\x01")],
        )
        self.assertEqual(self.stored(), DirectoryInfo(FORM_FIELDS, (b"Chess", b"Go")))
        self.successResultOf(self.world.set_directory(self.bob1, Tlv(0x0001, b"Bob")))
        self.assertEqual(self.stored().keywords, (b"Chess", b"Go"))
        _, tlvs = self.read(self.carol)
        self.assertEqual(tlvs.all(0x000B), [b"Chess", b"Go"])

    def test_first_five_keywords_kept(self) -> None:
        """Empty keywords are skipped and only the first five kept, in order."""
        words = [b"a", b"", b"b", b"c", b"d", b"e", b"f"]
        self.successResultOf(self.world.set_keywords(self.bob1, *(Tlv(0x000B, w) for w in words)))
        self.assertEqual(self.stored().keywords, (b"a", b"b", b"c", b"d", b"e"))
        self.successResultOf(self.world.set_keywords(self.bob1))
        self.assertEqual(self.stored().keywords, ())

    def test_unknown_tags_ignored(self) -> None:
        """Tags that are not directory fields are accepted but not stored."""
        self.successResultOf(
            self.world.set_directory(self.bob1, Tlv(0x0001, b"Robert"), Tlv(0x0099, b"junk"))
        )
        self.assertEqual(self.stored(), DirectoryInfo(DirectoryFields(first_name=b"Robert")))
        self.assertEqual(self.read(self.carol), (0x0001, TlvList((Tlv(0x0001, b"Robert"),))))

    def test_allow_search_flag(self) -> None:
        """TLV 0x000A is the u16 allow-search flag; absent means not allowed."""
        self.successResultOf(self.world.set_directory(self.bob1, Tlv.u16(0x000A, 1)))
        self.assertTrue(self.stored().fields.allow_search)
        self.successResultOf(self.world.set_directory(self.bob1, Tlv(0x0001, b"x")))
        self.assertFalse(self.stored().fields.allow_search)

    def test_oversize_field_refused(self) -> None:
        """A field or keyword over MAX_DIRECTORY_FIELD_BYTES refuses the whole
        request with 0x000E; the record is unchanged."""
        self.successResultOf(self.world.set_directory(self.bob1, *FORM))
        self.successResultOf(self.world.set_keywords(self.bob1, Tlv(0x000B, b"Chess")))
        before = self.stored()
        longest = b"x" * MAX_DIRECTORY_FIELD_BYTES
        too_long = longest + b"x"
        for tag in (0x0001, 0x0021, 0x001C):
            error = self.assertRaises(
                SnacError,
                self.world.set_directory,
                self.bob2,
                Tlv(0x0008, b"Elko"),
                Tlv(tag, too_long),
            )
            self.assertEqual(error.code, 0x000E)
        error = self.assertRaises(
            SnacError,
            self.world.set_keywords,
            self.bob2,
            Tlv(0x000B, b"Go"),
            Tlv(0x000B, too_long),
        )
        self.assertEqual(error.code, 0x000E)
        self.assertEqual(self.stored(), before)
        self.successResultOf(self.world.set_directory(self.bob2, Tlv(0x0021, longest)))
        self.assertEqual(self.stored().fields.street, longest)

    def test_malformed_requests(self) -> None:
        """Bodies that do not parse, and an allow-search flag that is not a
        u16, are MalformedData (answered 0x000E); nothing is stored."""
        truncated = Tlv(0x0001, b"Robert").pack()[:-1]
        self.assertRaises(
            MalformedData, self.world.request, self.bob1, Locate.SET_DIR_INFO, truncated
        )
        self.assertRaises(
            MalformedData, self.world.request, self.bob1, Locate.SET_KEYWORD_INFO, b"\x00\x0b\x00"
        )
        self.assertRaises(MalformedData, self.world.set_directory, self.bob1, Tlv(0x000A, b"\x01"))
        self.assertRaises(MalformedData, self.world.request, self.bob1, Locate.GET_DIR_INFO, b"")
        self.assertRaises(
            MalformedData, self.world.request, self.bob1, Locate.GET_DIR_INFO, b"\x05Bo"
        )
        self.assertEqual(self.stored(), DirectoryInfo())

    def test_user_with_no_record(self) -> None:
        """A user online with nothing stored reads as status 0x0001 and no TLVs."""
        self.assertEqual(self.read(self.carol), (0x0001, TlvList()))

    def test_offline_user_unavailable_record_kept(self) -> None:
        """Once the user signs off others get status 0x0002 and nothing else;
        the record is kept and is there again at the next sign-on."""
        self.successResultOf(self.world.set_directory(self.bob1, *FORM))
        self.world.sign_off(self.bob1)
        self.world.sign_off(self.bob2)
        self.assertEqual(self.read(self.carol), (0x0002, TlvList()))
        self.assertEqual(self.read(self.carol, "Nobody"), (0x0002, TlvList()))
        bob3, _ = self.world.sign_on("Bob")
        status, tlvs = self.read(self.carol)
        self.assertEqual((status, tlvs.get(0x0008)), (0x0001, b"Reno"))
        self.assertEqual(self.read(bob3), (status, tlvs))

    def test_invisible_user_reads_as_offline(self) -> None:
        """An invisible user's record is answered exactly as an offline user's
        (byte for byte); the user itself still reads it."""
        self.successResultOf(self.world.set_directory(self.bob1, *FORM))
        self.world.set_status(self.bob1, INVISIBLE)
        self.world.set_status(self.bob2, INVISIBLE)
        [invisible] = self.replies(self.world.get_directory(self.carol, "Bob"))
        [offline] = self.replies(self.world.get_directory(self.carol, "Nobody"))
        self.assertEqual(invisible, offline)
        self.assertEqual(decode_directory_reply(invisible.body), (0x0002, TlvList()))
        self.assertEqual(self.read(self.bob2)[0], 0x0001)

    def test_target_still_signing_on(self) -> None:
        """A user whose only session has not finished signing on reads as offline."""
        dave, _ = self.world.sign_on("Dave", online=False)
        self.successResultOf(self.world.set_directory(dave, Tlv(0x0001, b"Dave")))
        self.assertEqual(self.read(self.carol, "Dave"), (0x0002, TlvList()))

    def test_store_refusal(self) -> None:
        """When the store refuses (the account was deleted meanwhile) the
        request is answered 0x0005 and logged."""
        self.successResultOf(self.world.store.delete_account("Bob"))
        failure = self.failureResultOf(self.world.set_directory(self.bob1, *FORM), SnacError)
        self.assertEqual(failure.value.code, 0x0005)
        failure = self.failureResultOf(
            self.world.set_keywords(self.bob1, Tlv(0x000B, b"x")), SnacError
        )
        self.assertEqual(failure.value.code, 0x0005)

    def test_not_served_without_a_store(self) -> None:
        """A Locate service with no directory store does not claim the directory SNACs."""
        plain = LocateService(self.world.registry, self.world.presence).handlers()
        for subtype in (Locate.SET_DIR_INFO, Locate.GET_DIR_INFO, Locate.SET_KEYWORD_INFO):
            self.assertNotIn((FoodGroup.LOCATE, subtype), plain)
            self.assertIn((FoodGroup.LOCATE, subtype), self.world.locate.handlers())
