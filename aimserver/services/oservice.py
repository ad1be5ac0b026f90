# -*- test-case-name: tests.test_protocol_bos,tests.test_security_review -*-
"""OService (0x0001): the generic service control present on every connection:
host online, versions, rate parameters, self info, idle, status, client ready
and service requests."""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from aimserver.registry import SessionInstance, UserRegistry
from aimserver.services import ratelimit
from aimserver.services.base import HandlerTable, Replies, Reply, SnacError, acting_user
from aimserver.services.presence import Presence, idle_since
from aimserver.services.session import SessionService
from aimserver.wire import ratelimit as rate_wire
from aimserver.wire.codes import FoodGroup, OService, SnacErrorCode
from aimserver.wire.reader import Reader
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList

#: Families the BOS connection serves, in its 01,03 (SIGNON.md §2): only
#: what this server really handles.
BOS_FAMILIES: tuple[int, ...] = (
    FoodGroup.OSERVICE,
    FoodGroup.LOCATE,
    FoodGroup.BUDDY,
    FoodGroup.ICBM,
    FoodGroup.PERMIT_DENY,
    FoodGroup.USER_LOOKUP,
    FoodGroup.STATS,
    FoodGroup.FEEDBAG,
)

TAG_STATUS = 0x0006
TAG_REDIRECT_FAMILY = 0x000D
TAG_REDIRECT_ADDRESS = 0x0005
TAG_REDIRECT_COOKIE = 0x0006
_PAIR = struct.Struct("!HH")
_RATE_CLASS_IDS = frozenset(c.class_id for c in ratelimit.DEFAULT_RATE_CLASSES)
#: The longest 01,08/01,09 read: each class listed twice.
MAX_RATE_CLASS_IDS = 2 * len(_RATE_CLASS_IDS)


@functools.cache
def default_rate_reply(extended: bool) -> bytes:
    """The 01,07 body for fresh rate state: the same for every sign-on, and
    packing its 220 class members costs ~50 us, so it is built once."""
    return rate_wire.pack_rate_params_reply(
        ratelimit.DEFAULT_RATE_CLASSES, ratelimit.DEFAULT_CLASS_MEMBERS, extended=extended
    )


def pack_families(families: Sequence[int]) -> bytes:
    """The 01,03 host-online body: u16 families until the end."""
    return b"".join(struct.pack("!H", f) for f in families)


def parse_u16_list(body: bytes, what: str) -> list[int]:
    reader = Reader(body, what)
    values = []
    while not reader.at_end():
        values.append(reader.u16(what))
    return values


def rate_class_ids(body: bytes) -> set[int]:
    """The rate classes an 01,08/01,09 names that exist: a session's
    subscriptions are bounded by the classes the server has, whatever ids a
    client sends. A list longer than every class twice over is refused
    unread (clients list each class once)."""
    if len(body) > MAX_RATE_CLASS_IDS * 2:
        raise SnacError(SnacErrorCode.BUSTED_SNAC_PAYLOAD)
    return _RATE_CLASS_IDS.intersection(parse_u16_list(body, "rate class IDs"))


def parse_versions(body: bytes) -> list[tuple[int, int]]:
    """01,17 body: (family, version) pairs until the end."""
    reader = Reader(body, "client versions")
    pairs = []
    while not reader.at_end():
        pairs.append((reader.u16("family"), reader.u16("version")))
    return pairs


def pack_versions(pairs: Sequence[tuple[int, int]]) -> bytes:
    return b"".join(_PAIR.pack(f, v) for f, v in pairs)


class OServiceService:
    """OService on a BOS connection."""

    log = Logger()

    def __init__(
        self,
        registry: UserRegistry,
        presence: Presence,
        clock: IReactorTime,
        sessions: SessionService,
        families: Sequence[int] = BOS_FAMILIES,
        rooms: Any = None,
    ) -> None:
        self.registry = registry
        self.presence = presence
        self.clock = clock
        #: Client-ready, redirects (01,04) and the live rate levels (01,07)
        #: belong to the session's life.
        self.sessions = sessions
        self.families = tuple(families)
        #: The chat service (``services.chat.ChatService``): a 01,04 for
        #: a chat connection names a room, which it checks first.
        self.rooms = rooms

    def handlers(self) -> HandlerTable:
        f = FoodGroup.OSERVICE
        return {
            (f, OService.CLIENT_READY): self.client_ready,
            (f, OService.SERVICE_REQUEST): self.service_request,
            (f, OService.RATE_PARAMS_QUERY): self.rate_params_query,
            (f, OService.RATE_PARAMS_SUB_ADD): self.rate_params_sub_add,
            (f, OService.RATE_PARAMS_SUB_DEL): self.rate_params_sub_del,
            (f, OService.USER_INFO_QUERY): self.user_info_query,
            (f, OService.IDLE_NOTIFICATION): self.idle_notification,
            (f, OService.SET_PRIVACY_FLAGS): self.set_privacy_flags,
            (f, OService.NOOP): self.noop,
            (f, OService.CLIENT_VERSIONS): self.client_versions,
            (f, OService.SET_USER_INFO_FIELDS): self.set_user_info_fields,
        }

    # -- sign-on sequence ---------------------------------------------------------------

    def client_versions(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies:
        """Echo the client's versions for the families this connection serves."""
        pairs = [(f, v) for f, v in parse_versions(body) if f in self.families]
        session.family_versions.update(pairs)
        return [Reply(FoodGroup.OSERVICE, OService.HOST_VERSIONS, pack_versions(pairs))]

    def rate_params_query(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies:
        extended = rate_wire.wants_extended_rate_records(
            session.family_versions.get(FoodGroup.OSERVICE)
        )
        snapshots = self.sessions.rate_limits.snapshots(session.user_key)
        if snapshots is None:
            body = default_rate_reply(extended)
        else:
            body = rate_wire.pack_rate_params_reply(
                ratelimit.DEFAULT_RATE_CLASSES,
                ratelimit.DEFAULT_CLASS_MEMBERS,
                extended=extended,
                snapshots=snapshots,
            )
        return [Reply(FoodGroup.OSERVICE, OService.RATE_PARAMS_REPLY, body)]

    def rate_params_sub_add(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> None:
        # aimpyfly sends this empty; that is a valid (empty) subscription.
        session.rate_subscriptions.update(rate_class_ids(body))

    def rate_params_sub_del(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> None:
        session.rate_subscriptions.difference_update(rate_class_ids(body))

    def client_ready(self, session: SessionInstance, request: SnacHeader, body: bytes) -> None:
        """Client ready: the session now counts for presence and receives IMs.
        The body (family/version/tool entries, 4 or 8 bytes each) is not needed."""
        self.sessions.client_ready(session)

    # -- self info, idle, status --------------------------------------------------------

    def user_info_query(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies:
        user = acting_user(self.registry, session)
        info = self.presence.self_info_block(user, session)
        return [Reply(FoodGroup.OSERVICE, OService.USER_INFO_UPDATE, info)]

    def idle_notification(self, session: SessionInstance, request: SnacHeader, body: bytes) -> None:
        seconds = Reader(body, "idle notification").u32("idle seconds")
        session.idle_since = idle_since(self.clock.seconds(), seconds)
        self.presence.session_changed(session)

    def set_privacy_flags(self, session: SessionInstance, request: SnacHeader, body: bytes) -> None:
        """Fire-and-forget at sign-on (idle/member-since visibility). Validated
        and accepted; the flags do not change what this server shows."""
        Reader(body, "privacy flags").u32("flags")

    def noop(self, session: SessionInstance, request: SnacHeader, body: bytes) -> None:
        pass

    def set_user_info_fields(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies:
        """Status (e.g. invisible) is per session; the reply carries this
        session's own status, which the client's invisible toggle relies on."""
        tlvs = TlvList.unpack_list(body, "set user info fields")
        status = tlvs.get_u32(TAG_STATUS)
        if status is not None and status != session.status:
            session.status = status
            self.presence.session_changed(session)
        return self.user_info_query(session, request, b"")

    # -- other services -----------------------------------------------------------------

    def service_request(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies | Deferred[Replies]:
        """01,04 -> 01,05: the address and a cookie for a service connection
        that belongs to this session (for the chat service: to the room the
        request names, if the user may join it). Services this server does
        not run get "service unavailable", which clients tolerate."""
        family = Reader(body, "service request").u16("family")
        if family == FoodGroup.CHAT and self.rooms is not None:
            return self.rooms.service_request(
                session, body[2:], lambda room: self._redirect(session, family, room)
            )
        return self._redirect(session, family)

    def _redirect(self, session: SessionInstance, family: int, room: bytes = b"") -> Replies:
        redirect = self.sessions.redirect(session, family, room)
        if redirect is None:
            self.log.info(
                "instance {instance} asked for unavailable service {family:#06x}",
                instance=session.instance_id,
                family=family,
            )
            raise SnacError(SnacErrorCode.SERVICE_UNAVAILABLE)
        address, cookie = redirect
        tlvs = TlvList(
            (
                Tlv.u16(TAG_REDIRECT_FAMILY, family),
                Tlv(TAG_REDIRECT_ADDRESS, address.encode("ascii")),
                Tlv(TAG_REDIRECT_COOKIE, cookie),
            )
        )
        return [Reply(FoodGroup.OSERVICE, OService.SERVICE_RESPONSE, tlvs.pack_list())]

    def secondary_handlers(self, families: Sequence[int]) -> HandlerTable:
        """OService on a service connection: the same sign-on steps, but its
        client-ready changes nothing (the BOS connection is the session)."""

        def client_versions(session: SessionInstance, request: SnacHeader, body: bytes) -> Replies:
            pairs = [(f, v) for f, v in parse_versions(body) if f in families]
            return [Reply(FoodGroup.OSERVICE, OService.HOST_VERSIONS, pack_versions(pairs))]

        f = FoodGroup.OSERVICE
        return {
            (f, OService.CLIENT_READY): self.noop,
            (f, OService.RATE_PARAMS_QUERY): self.rate_params_query,
            (f, OService.RATE_PARAMS_SUB_ADD): self.rate_params_sub_add,
            (f, OService.RATE_PARAMS_SUB_DEL): self.rate_params_sub_del,
            (f, OService.NOOP): self.noop,
            (f, OService.CLIENT_VERSIONS): client_versions,
        }
