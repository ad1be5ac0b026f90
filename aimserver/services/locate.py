# -*- test-case-name: tests.test_service_locate -*-
"""Locate (0x0002): profiles, away messages, capabilities and directory info.

Profiles, away messages and capabilities are submitted per session. Others
see the aggregate: the user is away only when every session is away; the
profile shown is the oldest session's (MULTISESSION.md §7, §14).

Directory info (02,09, read back with 02,0B) and interest keywords (02,0F)
are one user-level record in the store (§4, §14): whichever session writes a
part replaces that part for the user, and it outlives sign-off and restarts.

* 02,09 takes the ODir name-and-address tags (FAMILIES.md §Locate, §ODir):
  every known tag is one field of the record, a tag left out clears its
  field (clients send the whole form), TLV 0x000A is the u16 "allow search"
  flag (libpurple), tags we do not know are ignored and not stored (a client
  may send more than we know of; keeping them would let it grow the record).
  Answered 02,0A with result 0x0001, as Go does.
* 02,0F takes up to five TLV 0x000B interest keywords, in order: empty ones
  are skipped and only the first five kept (Go keeps the first five); the
  rest of the body (libpurple's 0x000A) is ignored. Answered 02,10 with 0x0001.
* A value longer than ``MAX_DIRECTORY_FIELD_BYTES`` refuses the whole request
  with 02,01 0x000E, as 02,04 does for its own bounds, and nothing is stored;
  a body that does not parse (or a 0x000A that is not a u16) gets 0x000E too.
* 02,0B answers 02,0C: u16 status and a TLV block (Go's layout, unverified
  against AOL). A user others can see (``Presence.visible_to``; always
  yourself) gets status 0x0001 and the stored fields that are set, in tag
  order, then one 0x000B per keyword; anyone else, offline or invisible
  alike, gets status 0x0002 ("unavailable") and an empty block. The "allow
  search" flag is kept for a directory search and does not hide the record
  from a direct lookup by name.
"""

from __future__ import annotations

import functools
import struct

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from aimserver.registry import SessionInstance, User, UserRegistry
from aimserver.services.base import HandlerTable, Replies, Reply, SnacError, acting_user, bounded
from aimserver.services.presence import Presence
from aimserver.store.interfaces import (
    MAX_DIRECTORY_FIELD_BYTES,
    MAX_INTEREST_KEYWORDS,
    DirectoryFields,
    DirectoryInfo,
    IDirectoryStore,
    StoreError,
)
from aimserver.wire.codes import FoodGroup, Locate, SnacErrorCode
from aimserver.wire.reader import Reader
from aimserver.wire.screenname import decode_screen_name
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList

MAX_PROFILE_LENGTH = 4096
MAX_MIME_LENGTH = 128
MAX_CAPABILITIES = 64
CAPABILITY_SIZE = 16

TAG_PROFILE_MIME = 0x0001
TAG_PROFILE = 0x0002
TAG_AWAY_MIME = 0x0003
TAG_AWAY = 0x0004
TAG_CAPABILITIES = 0x0005

#: Upper bounds per submitted TLV, so no reply built from them can outgrow a frame.
LIMITS = {
    TAG_PROFILE_MIME: MAX_MIME_LENGTH,
    TAG_PROFILE: MAX_PROFILE_LENGTH,
    TAG_AWAY_MIME: MAX_MIME_LENGTH,
    TAG_AWAY: MAX_PROFILE_LENGTH,
}

# 02,05 request types (an enumeration, FAMILIES.md §Locate)
QUERY_PROFILE = 0x0001
QUERY_ONLINE_INFO = 0x0002
QUERY_AWAY = 0x0003
QUERY_CAPABILITIES = 0x0004
# 02,15 flag bits
FLAG_PROFILE = 0x01
FLAG_AWAY = 0x02
FLAG_CAPABILITIES = 0x04
#: What each 02,05 type asks for, as 02,15 flags.
QUERY_FLAGS = {
    QUERY_PROFILE: FLAG_PROFILE,
    QUERY_ONLINE_INFO: 0,
    QUERY_AWAY: FLAG_AWAY,
    QUERY_CAPABILITIES: FLAG_CAPABILITIES,
}


# 02,09 tags (the ODir search tags) and the record field each one fills.
DIRECTORY_TAGS = {
    0x0001: "first_name",
    0x0002: "last_name",
    0x0003: "middle_name",
    0x0004: "maiden_name",
    0x0006: "country",
    0x0007: "state",
    0x0008: "city",
    0x000C: "nickname",
    0x000D: "zip_code",
    0x001C: "charset",
    0x0021: "street",
}
TAG_ALLOW_SEARCH = 0x000A
TAG_INTEREST = 0x000B
#: The 02,0A and 02,10 result (Go; the only one known).
RESULT_OK = 0x0001
# 02,0C statuses (Go).
DIRECTORY_OK = 0x0001
DIRECTORY_UNAVAILABLE = 0x0002


@functools.cache
def rights_reply() -> bytes:
    return TlvList(
        (
            Tlv.u16(0x0001, MAX_PROFILE_LENGTH),
            Tlv.u16(0x0002, MAX_CAPABILITIES),
            Tlv.u16(0x0003, 10),
            Tlv.u16(0x0004, 0),
            Tlv.u16(0x0005, MAX_CAPABILITIES),
        )
    ).pack_list()


def split_capabilities(value: bytes) -> tuple[bytes, ...]:
    if len(value) % CAPABILITY_SIZE or len(value) > MAX_CAPABILITIES * CAPABILITY_SIZE:
        raise SnacError(SnacErrorCode.BUSTED_SNAC_PAYLOAD)
    return tuple(value[i : i + CAPABILITY_SIZE] for i in range(0, len(value), CAPABILITY_SIZE))


def parse_directory_fields(body: bytes) -> DirectoryFields:
    """The record fields a 02,09 body sets (module docstring for the rules).

    :raises MalformedData: the body is not a TLV list, or 0x000A is not a u16.
    :raises SnacError: 0x000E, a value is longer than ``MAX_DIRECTORY_FIELD_BYTES``.
    """
    tlvs = TlvList.unpack_list(body, "locate set directory info")
    values = {}
    for tag, name in DIRECTORY_TAGS.items():
        value = tlvs.get(tag)
        if value is not None:
            values[name] = bounded(value, MAX_DIRECTORY_FIELD_BYTES, "directory field")
    allow_search = tlvs.get_u16(TAG_ALLOW_SEARCH)
    return DirectoryFields(**values, allow_search=bool(allow_search))


def parse_interest_keywords(body: bytes) -> tuple[bytes, ...]:
    """The keywords a 02,0F body sets: the first five non-empty 0x000B values.

    :raises MalformedData: the body is not a TLV list.
    :raises SnacError: 0x000E, a keyword is longer than ``MAX_DIRECTORY_FIELD_BYTES``.
    """
    tlvs = TlvList.unpack_list(body, "locate set keyword info")
    keywords = [
        bounded(value, MAX_DIRECTORY_FIELD_BYTES, "interest keyword")
        for value in tlvs.all(TAG_INTEREST)
        if value
    ]
    return tuple(keywords[:MAX_INTEREST_KEYWORDS])


def directory_reply(status: int, info: DirectoryInfo | None = None) -> Reply:
    """02,0C: the status, then the record's set fields and keywords as a TLV block."""
    tlvs: list[Tlv] = []
    if info is not None:
        for tag, name in sorted(DIRECTORY_TAGS.items()):
            value = getattr(info.fields, name)
            if value:
                tlvs.append(Tlv(tag, value))
        tlvs.extend(Tlv(TAG_INTEREST, keyword) for keyword in info.keywords)
    body = struct.pack("!H", status) + TlvList(tuple(tlvs)).pack_block()
    return Reply(FoodGroup.LOCATE, Locate.GET_DIR_REPLY, body)


class LocateService:
    """
    :param directory: where directory records live; without one the
        directory SNACs (02,09, 02,0B, 02,0F) are not served.
    """

    log = Logger()

    def __init__(
        self,
        registry: UserRegistry,
        presence: Presence,
        directory: IDirectoryStore | None = None,
    ) -> None:
        self.registry = registry
        self.presence = presence
        self.directory = directory

    def handlers(self) -> HandlerTable:
        f = FoodGroup.LOCATE
        table: HandlerTable = {
            (f, Locate.RIGHTS_QUERY): self.rights_query,
            (f, Locate.SET_INFO): self.set_info,
            (f, Locate.USER_INFO_QUERY): self.user_info_query,
            (f, Locate.USER_INFO_QUERY2): self.user_info_query2,
        }
        if self.directory is not None:
            table[f, Locate.SET_DIR_INFO] = self.set_dir_info
            table[f, Locate.GET_DIR_INFO] = self.get_dir_info
            table[f, Locate.SET_KEYWORD_INFO] = self.set_keyword_info
        return table

    def rights_query(self, session: SessionInstance, request: SnacHeader, body: bytes) -> Replies:
        return [Reply(FoodGroup.LOCATE, Locate.RIGHTS_REPLY, rights_reply())]

    def set_info(self, session: SessionInstance, request: SnacHeader, body: bytes) -> None:
        tlvs = TlvList.unpack_list(body, "locate set info")
        for tag, limit in LIMITS.items():
            value = tlvs.get(tag)
            if value is not None and len(value) > limit:
                raise SnacError(SnacErrorCode.BUSTED_SNAC_PAYLOAD)
        changed = False
        profile = tlvs.get(TAG_PROFILE)
        if profile is not None:
            session.profile = profile or None
            session.profile_mime = tlvs.get(TAG_PROFILE_MIME) or session.profile_mime
        away = tlvs.get(TAG_AWAY)
        if away is not None:
            was_away = session.away
            session.away_message = away or None
            session.away_mime = tlvs.get(TAG_AWAY_MIME) or session.away_mime
            changed |= was_away != session.away
        capabilities = tlvs.get(TAG_CAPABILITIES)
        if capabilities is not None:
            new = split_capabilities(capabilities)
            changed |= new != session.capabilities
            session.capabilities = new
        if changed:
            self.presence.session_changed(session)

    def _target(self, session: SessionInstance, raw_name: bytes) -> User:
        user = self.registry.get(decode_screen_name(raw_name))
        if user is None or not self.presence.visible_to(user, session.user_key):
            # Offline and invisible look the same to others.
            raise SnacError(SnacErrorCode.NOT_LOGGED_ON)
        return user

    def _reply(self, session: SessionInstance, user: User, flags: int) -> Replies:
        sessions = user.online_instances()
        if session.user_key == user.key:
            # Looking up yourself shows what this session submitted.
            sessions = [session, *sessions]
        tlvs: list[Tlv] = []
        if flags & FLAG_PROFILE:
            source = next((s for s in sessions if s.profile is not None), None)
            if source is not None:
                tlvs.append(Tlv(TAG_PROFILE_MIME, source.profile_mime))
                tlvs.append(Tlv(TAG_PROFILE, source.profile or b""))
        if flags & FLAG_AWAY:
            source = next((s for s in sessions if s.away), None)
            if source is not None and all(s.away for s in user.online_instances()):
                tlvs.append(Tlv(TAG_AWAY_MIME, source.away_mime))
                tlvs.append(Tlv(TAG_AWAY, source.away_message or b""))
        if flags & FLAG_CAPABILITIES:
            capabilities: dict[bytes, None] = {}
            for s in user.online_instances():
                capabilities.update(dict.fromkeys(s.capabilities))
            tlvs.append(Tlv(TAG_CAPABILITIES, b"".join(capabilities)))
        body = self.presence.user_info(user).pack() + TlvList(tuple(tlvs)).pack_list()
        return [Reply(FoodGroup.LOCATE, Locate.USER_INFO_REPLY, body)]

    def user_info_query(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies:
        reader = Reader(body, "user info query")
        kind = reader.u16("type")
        user = self._target(session, reader.string08("screen name"))
        return self._reply(session, user, QUERY_FLAGS.get(kind, 0))

    def user_info_query2(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies:
        reader = Reader(body, "user info query 2")
        flags = reader.u32("flags")
        user = self._target(session, reader.string08("screen name"))
        return self._reply(session, user, flags)

    # -- directory info ------------------------------------------------------------------

    def _stored(
        self, written: Deferred[None], subtype: int, what: str, screen_name: str
    ) -> Deferred[Replies]:
        """The u16 0x0001 reply once ``written`` fires; 0x0005 if the store
        refused (the account was deleted meanwhile)."""

        def refused(failure: Failure) -> None:
            failure.trap(StoreError)
            self.log.info(
                "{what} of {screen_name} refused by the store: {error}",
                what=what,
                screen_name=screen_name,
                error=str(failure.value),
            )
            raise SnacError(SnacErrorCode.SERVICE_UNAVAILABLE)

        reply = [Reply(FoodGroup.LOCATE, subtype, struct.pack("!H", RESULT_OK))]
        return written.addCallbacks(lambda _: reply, refused)

    def set_dir_info(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Deferred[Replies]:
        """02,09 → 02,0A once the store has the fields."""
        assert self.directory is not None
        fields = parse_directory_fields(body)
        user = acting_user(self.registry, session)
        written = self.directory.set_directory_fields(user.screen_name, fields)
        return self._stored(written, Locate.SET_DIR_REPLY, "directory info", user.screen_name)

    def set_keyword_info(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Deferred[Replies]:
        """02,0F → 02,10 once the store has the keywords."""
        assert self.directory is not None
        keywords = parse_interest_keywords(body)
        user = acting_user(self.registry, session)
        written = self.directory.set_interest_keywords(user.screen_name, keywords)
        return self._stored(written, Locate.SET_KEYWORD_REPLY, "keywords", user.screen_name)

    def get_dir_info(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies | Deferred[Replies]:
        """02,0B → 02,0C: the record of a user the asker can see, else "unavailable"."""
        assert self.directory is not None
        reader = Reader(body, "get directory info")
        user = self.registry.get(decode_screen_name(reader.string08("screen name")))
        if user is None or not self.presence.visible_to(user, session.user_key):
            # Offline and invisible look the same to others.
            return [directory_reply(DIRECTORY_UNAVAILABLE)]
        d = self.directory.get_directory_info(user.screen_name)
        return d.addCallback(lambda info: [directory_reply(DIRECTORY_OK, info)])
