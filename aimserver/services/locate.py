# -*- test-case-name: tests.test_service_locate -*-
"""Locate (0x0002): profiles, away messages and capabilities.

All three are submitted per session. Others see the aggregate: the user is
away only when every session is away; the profile shown is the oldest
session's (MULTISESSION.md §7, §14).
"""

from __future__ import annotations

import functools

from twisted.logger import Logger

from aimserver.registry import SessionInstance, User, UserRegistry
from aimserver.services.base import HandlerTable, Replies, Reply, SnacError
from aimserver.services.presence import Presence
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


class LocateService:
    log = Logger()

    def __init__(self, registry: UserRegistry, presence: Presence) -> None:
        self.registry = registry
        self.presence = presence

    def handlers(self) -> HandlerTable:
        f = FoodGroup.LOCATE
        return {
            (f, Locate.RIGHTS_QUERY): self.rights_query,
            (f, Locate.SET_INFO): self.set_info,
            (f, Locate.USER_INFO_QUERY): self.user_info_query,
            (f, Locate.USER_INFO_QUERY2): self.user_info_query2,
        }

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
