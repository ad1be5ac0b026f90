"""Service-level test helpers: no sockets, no protocols, no wall clock.

``FakeConnection`` stands in for a BOS connection (it records what the
registry and the services push to it), and ``ServiceWorld`` wires the pure
food-group services to one ``UserRegistry``, a ``MemoryUserStore`` and a
``task.Clock``, signing sessions on and off the way the BOS protocol does.
Everything recorded is decoded with our own codecs from ``aimserver.wire``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface import implementer

from aimserver.registry import (
    MULTICONN_MULTI,
    ISessionConnection,
    SessionInstance,
    UserRegistry,
)
from aimserver.services.base import Reply
from aimserver.services.buddy import BuddyService
from aimserver.services.cookies import CookieJar
from aimserver.services.icbm import IcbmService
from aimserver.services.locate import LocateService
from aimserver.services.oservice import OServiceService
from aimserver.services.presence import Presence
from aimserver.services.session import RateLimits, SessionService
from aimserver.services.warnings import WarningService
from aimserver.store.interfaces import Account, OfflineMessage
from aimserver.store.memory import MemoryUserStore
from aimserver.wire.codes import ICBM, Buddy, FoodGroup, Locate, OService
from aimserver.wire.icbm import (
    TAG_IM_DATA,
    TAG_REQUEST_HOST_ACK,
    ChannelMessageToHost,
    pack_im_data,
)
from aimserver.wire.reader import Reader, string08
from aimserver.wire.snac import SnacHeader, pack_snac
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import UserInfo
from tests.fakes import result_of

#: Unix time the test clock starts at (a realistic, non-zero "now").
START = 1_000_000_000.0
PASSWORD = "secret12"


@attrs.frozen
class Snac:
    header: SnacHeader
    body: bytes

    @property
    def kind(self) -> tuple[int, int]:
        return (self.header.family, self.header.subtype)


@attrs.frozen
class ClientMessage:
    """A decoded 04,07."""

    cookie: bytes
    channel: int
    sender: UserInfo
    tlvs: TlvList

    @property
    def text(self) -> bytes:
        return im_text(self.tlvs.get(TAG_IM_DATA) or b"")


@implementer(ISessionConnection)
class FakeConnection:
    """Records every payload queued to it and every disconnect asked of it.
    With ``broken`` set, ``send_event`` raises like a dead transport. Events
    are kept as the SNAC a FLAP connection would write, with request ids of
    its own (high bit set), so the tests decode them with our codecs."""

    def __init__(self, label: str = "", broken: bool = False) -> None:
        self.label = label
        self.broken = broken
        self.payloads: list[bytes] = []
        self.events: list[Any] = []
        self.disconnects: list[int | None] = []
        self.closing = False

    def __repr__(self) -> str:
        return f"<FakeConnection {self.label}>"

    def send_event(self, event: Any) -> None:
        if self.broken:
            raise ConnectionError(f"{self.label}: transport is gone")
        self.events.append(event)
        family, subtype, body = event.snac()
        request_id = 0x80000000 | len(self.events)
        self.payloads.append(pack_snac(family, subtype, body, request_id))

    def disconnect(self, reason: int | None) -> None:
        self.disconnects.append(reason)
        self.closing = True

    def snacs(self, family: int | None = None, subtype: int | None = None) -> list[Snac]:
        """What was pushed, decoded; only ``family``/``subtype`` if given."""
        result = []
        for payload in self.payloads:
            header, body = SnacHeader.unpack(payload)
            if family is not None and header.family != family:
                continue
            if subtype is not None and header.subtype != subtype:
                continue
            result.append(Snac(header, body))
        return result

    def messages(self) -> list[ClientMessage]:
        """Every 04,07 pushed, decoded."""
        return [
            decode_message_to_client(s.body)
            for s in self.snacs(FoodGroup.ICBM, ICBM.CHANNEL_MSG_TO_CLIENT)
        ]

    def arrivals(self) -> list[UserInfo]:
        return [UserInfo.unpack(s.body) for s in self.snacs(FoodGroup.BUDDY, Buddy.ARRIVED)]

    def departures(self) -> list[UserInfo]:
        return [UserInfo.unpack(s.body) for s in self.snacs(FoodGroup.BUDDY, Buddy.DEPARTED)]

    def clear(self) -> None:
        del self.payloads[:]


# -- decoders -----------------------------------------------------------------------------


def decode_message_to_client(body: bytes) -> ClientMessage:
    reader = Reader(body, "message to client")
    cookie = reader.take(8, "cookie")
    channel = reader.u16("channel")
    sender = UserInfo.read(reader)
    return ClientMessage(cookie, channel, sender, TlvList.read_list(reader))


def im_text(im_data: bytes) -> bytes:
    """The text of the (first) text fragment of channel-1 IM data."""
    reader = Reader(im_data, "IM data")
    while not reader.at_end():
        fragment_id = reader.u8("fragment id")
        reader.u8("fragment version")
        data = reader.take(reader.u16("fragment length"), "fragment")
        if fragment_id == 0x01:
            return data[4:]
    raise AssertionError(f"no text fragment in {im_data!r}")


def decode_user_info_reply(body: bytes) -> tuple[UserInfo, TlvList]:
    """A 02,06: the user-info block, then the requested TLVs."""
    reader = Reader(body, "locate user info reply")
    info = UserInfo.read(reader)
    return info, TlvList.read_list(reader)


def decode_evil_notification(body: bytes) -> tuple[int, UserInfo | None]:
    """A 01,10: the new level, then the warner's block unless anonymous."""
    reader = Reader(body, "evil notification")
    level = reader.u16("level")
    warner = UserInfo.read(reader) if not reader.at_end() else None
    assert reader.at_end()
    return level, warner


def user_class(info: UserInfo) -> int:
    value = info.tlvs.get_u16(0x0001)
    assert value is not None, info
    return value


# -- request bodies -----------------------------------------------------------------------


def im_body(
    recipient: str,
    text: bytes = b"hello",
    *,
    cookie: bytes | None = None,
    extra: Iterable[Tlv] = (),
    ack: bool = False,
) -> bytes:
    tlvs = [Tlv(TAG_IM_DATA, pack_im_data(text)), *extra]
    if ack:
        tlvs.append(Tlv.empty(TAG_REQUEST_HOST_ACK))
    return ChannelMessageToHost(cookie or os.urandom(8), 1, recipient, TlvList(tlvs)).pack()


def name08(screen_name: str) -> bytes:
    return string08(screen_name.encode("ascii"))


# -- a store whose offline-message reads can be held back ---------------------------------


class HoldingStore(MemoryUserStore):
    """A memory store whose ``get_offline_messages`` answers only on
    ``release()`` while ``hold`` is set (a slow database)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.hold = False
        self.held: list[tuple[defer.Deferred[list[OfflineMessage]], str]] = []

    def get_offline_messages(self, recipient: str) -> defer.Deferred[list[OfflineMessage]]:
        if not self.hold:
            return super().get_offline_messages(recipient)
        d: defer.Deferred[list[OfflineMessage]] = defer.Deferred()
        self.held.append((d, recipient))
        return d

    def release(self) -> None:
        held, self.held = self.held, []
        for d, recipient in held:
            super().get_offline_messages(recipient).chainDeferred(d)


# -- the world ----------------------------------------------------------------------------


class ServiceWorld:
    """One registry, presence, store and clock with every service under test,
    and sign-on/sign-off the way ``BosConnection`` drives them."""

    def __init__(
        self,
        *,
        max_sessions: int = 5,
        notify: bool = True,
        store: MemoryUserStore | None = None,
        clock: Clock | None = None,
    ) -> None:
        if clock is None:
            clock = Clock()
            clock.advance(START)
        self.clock = clock
        self.store = store if store is not None else MemoryUserStore(clock)
        self.registry = UserRegistry(max_sessions=max_sessions)
        self.presence = Presence(self.registry, self.clock)
        self.warnings = WarningService(self.registry, self.presence, self.store, self.clock)
        self.icbm = IcbmService(
            self.registry, self.presence, self.store, self.warnings, self.clock, notify=notify
        )
        self.locate = LocateService(self.registry, self.presence, self.store)
        self.buddy = BuddyService(self.registry, self.presence)
        self.cookies = CookieJar(b"k" * 32, self.clock)
        self.sessions = SessionService(
            registry=self.registry,
            presence=self.presence,
            store=self.store,
            cookies=self.cookies,
            rate_limits=RateLimits(self.clock),
            clock=self.clock,
            address=lambda: "192.0.2.1:5191",
        )
        self.sessions.observe(self.icbm)
        self.oservice = OServiceService(self.registry, self.presence, self.clock, self.sessions)
        self._connections = 0

    def account(self, screen_name: str) -> Account:
        existing = result_of(self.store.get_account(screen_name))
        if existing is not None:
            return existing
        return result_of(self.store.create_account(screen_name, PASSWORD))

    def stored_account(self, screen_name: str) -> Account:
        account = result_of(self.store.get_account(screen_name))
        assert account is not None
        return account

    def sign_on(
        self,
        screen_name: str,
        flags: int = MULTICONN_MULTI,
        *,
        buddies: Iterable[str] = (),
        ip: str = "192.0.2.10",
        online: bool = True,
        connection: FakeConnection | None = None,
    ) -> tuple[SessionInstance, FakeConnection]:
        """Attach a session (displacing others as the policy says), send its
        buddy list, and (``online``) its client-ready."""
        account = self.account(screen_name)
        self._connections += 1
        if connection is None:
            connection = FakeConnection(f"{screen_name}#{self._connections}")
        cookie = self.cookies.issue(
            screen_name=account.screen_name,
            instance_id=self.registry.new_instance_id(),
            multiconn_flags=flags,
            service=1,
            client_id="test client",
        )
        # Through the session service, as a connection signs on: the
        # multisession policy, displacement and the observers.
        attached = self.sessions.sign_on(cookie, (1,), connection, f"{ip}:5190")
        session = (
            result_of(attached) if isinstance(attached, defer.Deferred) else attached
        ).session
        names = list(buddies)
        if names:
            self.call(
                self.buddy.add_buddies,
                session,
                FoodGroup.BUDDY,
                Buddy.ADD_BUDDIES,
                b"".join(name08(n) for n in names),
            )
        if online:
            self.come_online(session)
        return session, connection

    def come_online(self, session: SessionInstance) -> None:
        self.call(self.oservice.client_ready, session, FoodGroup.OSERVICE, OService.CLIENT_READY)

    def sign_off(self, session: SessionInstance) -> None:
        self.sessions.connection_lost(session, session.connection)

    @staticmethod
    def call(
        handler: Any, session: SessionInstance, family: int, subtype: int, body: bytes = b""
    ) -> Any:
        """Run a handler as the dispatcher would; its return value as is."""
        return handler(session, SnacHeader(family, subtype, 0, 1), body)

    # -- common requests ------------------------------------------------------------------

    def send_im(self, session: SessionInstance, recipient: str, text: bytes = b"hi", **kw: Any):
        return self.call(
            self.icbm.channel_msg_to_host,
            session,
            FoodGroup.ICBM,
            ICBM.CHANNEL_MSG_TO_HOST,
            im_body(recipient, text, **kw),
        )

    def end_turn(self) -> None:
        """End the reactor turn: presence changes made in it are announced."""
        self.clock.advance(0)

    def set_info(self, session: SessionInstance, *tlvs: Tlv) -> None:
        """02,04 in a reactor turn of its own."""
        self.call(
            self.locate.set_info,
            session,
            FoodGroup.LOCATE,
            Locate.SET_INFO,
            TlvList(tlvs).pack_list(),
        )
        self.end_turn()

    def set_away(self, session: SessionInstance, message: bytes | None) -> None:
        self.set_info(
            session,
            Tlv(0x0003, b'text/aolrtf; charset="us-ascii"'),
            Tlv(0x0004, message or b""),
        )

    def set_status(self, session: SessionInstance, status: int) -> None:
        """01,1E with a status word (e.g. invisible), in a turn of its own."""
        self.call(
            self.oservice.set_user_info_fields,
            session,
            FoodGroup.OSERVICE,
            OService.SET_USER_INFO_FIELDS,
            TlvList((Tlv.u32(0x0006, status),)).pack_list(),
        )
        self.end_turn()

    def set_idle(self, session: SessionInstance, seconds: int) -> None:
        self.call(
            self.oservice.idle_notification,
            session,
            FoodGroup.OSERVICE,
            OService.IDLE_NOTIFICATION,
            struct.pack("!I", seconds),
        )
        self.end_turn()


def replies_kinds(replies: list[Reply] | None) -> list[tuple[int, int]]:
    return [(r.family, r.subtype) for r in replies or []]
