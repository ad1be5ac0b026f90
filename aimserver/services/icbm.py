# -*- test-case-name: tests.test_service_icbm -*-
"""ICBM (0x0004): instant messages, host acks, typing events, client errors.

Routing to a user with several sessions (MULTISESSION.md §10, §11): a message
goes to every session that is neither away nor idle, or to all of them when
none is; a typing event goes to every session that is not away.
"""

from __future__ import annotations

from twisted.logger import Logger

from aimserver.registry import SessionInstance, User, UserRegistry
from aimserver.services.base import HandlerTable, Replies, Reply, SnacError
from aimserver.services.presence import Presence
from aimserver.wire.codes import ICBM, FoodGroup, SnacErrorCode
from aimserver.wire.icbm import (
    PARAM_FLAG_TYPING,
    TAG_REQUEST_HOST_ACK,
    TAG_STORE_IF_OFFLINE,
    TAG_WANT_EVENTS,
    ChannelMessageToHost,
    ClientError,
    ClientEvent,
    HostAck,
    IcbmParameters,
    pack_message_to_client,
)
from aimserver.wire.screenname import normalize
from aimserver.wire.snac import SnacHeader, pack_snac
from aimserver.wire.tlv import Tlv

MAX_MESSAGE_LENGTH = 8000
#: What the server offers in 04,05: 2 parameter slots, channel messages and
#: missed-call notices allowed, 8000-byte messages, any warning level.
DEFAULT_PARAMETERS = IcbmParameters(2, 0x00000003, MAX_MESSAGE_LENGTH, 999, 999, 0)
#: TLVs of a 04,06 that are for the server only and never relayed.
_NOT_RELAYED = frozenset({TAG_REQUEST_HOST_ACK, TAG_STORE_IF_OFFLINE, TAG_WANT_EVENTS})
_WANT_EVENTS = Tlv.empty(TAG_WANT_EVENTS).pack()


def message_targets(user: User) -> list[SessionInstance]:
    """Sessions that get an IM: the active ones (not away, not idle), else all."""
    sessions = user.online_instances()
    active = [s for s in sessions if not s.away and s.idle_since is None]
    return active or sessions


def typing_targets(user: User) -> list[SessionInstance]:
    return [s for s in user.online_instances() if not s.away]


class IcbmService:
    log = Logger()

    def __init__(self, registry: UserRegistry, presence: Presence) -> None:
        self.registry = registry
        self.presence = presence

    def handlers(self) -> HandlerTable:
        f = FoodGroup.ICBM
        return {
            (f, ICBM.ADD_PARAMETERS): self.add_parameters,
            (f, ICBM.DEL_PARAMETERS): self.del_parameters,
            (f, ICBM.PARAMETER_QUERY): self.parameter_query,
            (f, ICBM.CHANNEL_MSG_TO_HOST): self.channel_msg_to_host,
            (f, ICBM.CLIENT_ERROR): self.client_error,
            (f, ICBM.CLIENT_EVENT): self.client_event,
        }

    def parameter_query(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies:
        return [Reply(FoodGroup.ICBM, ICBM.PARAMETER_REPLY, DEFAULT_PARAMETERS.pack())]

    def add_parameters(self, session: SessionInstance, request: SnacHeader, body: bytes) -> None:
        params = IcbmParameters.unpack(body)
        session.typing_events = bool(params.flags & PARAM_FLAG_TYPING)
        session.max_message_length = min(params.max_message_length, MAX_MESSAGE_LENGTH)

    def del_parameters(self, session: SessionInstance, request: SnacHeader, body: bytes) -> None:
        pass

    def _sender(self, session: SessionInstance) -> User:
        user = self.registry.user_of(session)
        if user is None:
            raise SnacError(SnacErrorCode.NOT_LOGGED_ON)
        return user

    def channel_msg_to_host(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies:
        message = ChannelMessageToHost.unpack(body)
        sender = self._sender(session)
        recipient = self.registry.users.get(normalize(message.screen_name))
        targets = message_targets(recipient) if recipient is not None else []
        if not targets:
            raise SnacError(SnacErrorCode.NOT_LOGGED_ON)
        relayed = b"".join(t.pack() for t in message.tlvs if t.tag not in _NOT_RELAYED)
        if session.typing_events:
            relayed += _WANT_EVENTS
        payload = pack_snac(
            FoodGroup.ICBM,
            ICBM.CHANNEL_MSG_TO_CLIENT,
            pack_message_to_client(
                message.cookie, message.channel, self.presence.user_info(sender).pack(), relayed
            ),
            self.registry.next_request_id(),
        )
        self.registry.deliver(targets, payload)
        if message.tlvs.has(TAG_REQUEST_HOST_ACK):
            ack = HostAck(message.cookie, message.channel, message.screen_name)
            return [Reply(FoodGroup.ICBM, ICBM.HOST_ACK, ack.pack())]
        return []

    def client_event(self, session: SessionInstance, request: SnacHeader, body: bytes) -> None:
        """Typing events come from the session that typed; silently dropped
        when the recipient is not there (they are not worth an error)."""
        event = ClientEvent.unpack(body)
        sender = self._sender(session)
        recipient = self.registry.users.get(normalize(event.screen_name))
        if recipient is None:
            return
        relayed = ClientEvent(event.cookie, event.channel, sender.screen_name, event.event)
        payload = pack_snac(
            FoodGroup.ICBM, ICBM.CLIENT_EVENT, relayed.pack(), self.registry.next_request_id()
        )
        self.registry.deliver(typing_targets(recipient), payload)

    def client_error(self, session: SessionInstance, request: SnacHeader, body: bytes) -> None:
        """Relayed to the named user with the name replaced by the reporter's."""
        error = ClientError.unpack(body)
        sender = self._sender(session)
        recipient = self.registry.users.get(normalize(error.screen_name))
        if recipient is None:
            return
        relayed = ClientError(
            error.cookie, error.channel, sender.screen_name, error.reason, error.data
        )
        payload = pack_snac(
            FoodGroup.ICBM, ICBM.CLIENT_ERROR, relayed.pack(), self.registry.next_request_id()
        )
        self.registry.deliver(recipient.online_instances(), payload)
