# -*- test-case-name: tests.test_service_icbm -*-
"""ICBM (0x0004): instant messages, host acks, typing events, client errors,
rendezvous, offline messages and auto-responses.

Routing to a user with several sessions (MULTISESSION.md §7, §10-§12, §16,
§18; docs/multisession.md):

* an IM goes to every session that is neither away nor idle, or to all of
  them when none is;
* when every session is away, the server answers the sender with one
  auto-response per session that has an away message (clients' own
  auto-responses are dropped, so the sender gets exactly those);
* a typing event goes to every session that is not away;
* a rendezvous proposal (file transfer, direct IM, chat invitation) goes only
  to sessions that advertise the capability it needs; the replies to it
  (accept, cancel) go only to the session that proposed, and once one session
  accepted, the proposer's further messages go only to that session;
* "store if offline" IMs to a signed-off user are kept and handed, in order,
  to the first session that comes online;
* a retransmitted IM (the same 04,06 again, byte for byte, from the same
  session, among its latest) is delivered once;
* a user whose every session is invisible gets from everyone else exactly the
  answers an offline user gets; an IM over the size a recipient's session
  asked for (04,02) is refused with 0x000A, never acknowledged and lost.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Sequence

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from aimserver.registry import MULTICONN_MULTI, SessionInstance, User, UserRegistry
from aimserver.services.base import HandlerTable, Replies, Reply, SnacError, acting_user
from aimserver.services.countedlog import CountedLog
from aimserver.services.events import ClientErrorRelayed, MessageReceived, TypingRelayed
from aimserver.services.presence import Presence, message_targets
from aimserver.services.privacy import UNREAD
from aimserver.services.warnings import WarningService
from aimserver.store.interfaces import (
    IOfflineMessageStore,
    NoSuchAccount,
    OfflineInboxFull,
    OfflineMessage,
    StoreError,
)
from aimserver.wire.codes import ICBM, FoodGroup, SnacErrorCode
from aimserver.wire.errors import MalformedData
from aimserver.wire.icbm import (
    COOKIE_SIZE,
    PARAM_FLAG_TYPING,
    TAG_AUTO_RESPONSE,
    TAG_IM_DATA,
    TAG_OFFLINE_TIME,
    TAG_RENDEZVOUS,
    TAG_REQUEST_HOST_ACK,
    TAG_STORE_IF_OFFLINE,
    TAG_WANT_EVENTS,
    ChannelMessageToHost,
    ClientError,
    ClientEvent,
    IcbmParameters,
    Rendezvous,
    pack_im_data,
    split_message,
)
from aimserver.wire.screenname import SYSTEM_SENDER, decode_screen_name, normalize
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import CLASS_FREE, STATUS_INVISIBLE, TAG_USER_CLASS, UserInfo

MAX_MESSAGE_LENGTH = 8000
#: The smallest ICBM length a client may ask for in 04,02 (NINA: 80-8000).
MIN_MESSAGE_LENGTH = 80
#: TLVs besides the message text that a channel-1 IM may carry (features,
#: icon hints, BART ids: tens of bytes in practice).
MAX_IM_EXTRAS = 1024
#: What the server offers in 04,05: 2 parameter slots, channel messages and
#: missed-call notices allowed, 8000-byte messages, any warning level.
DEFAULT_PARAMETERS = IcbmParameters(2, 0x00000003, MAX_MESSAGE_LENGTH, 999, 999, 0)
#: TLVs of a 04,06 that are for the server only and never relayed.
_NOT_RELAYED = frozenset({TAG_REQUEST_HOST_ACK, TAG_STORE_IF_OFFLINE, TAG_WANT_EVENTS})
_WANT_EVENTS = Tlv.empty(TAG_WANT_EVENTS).pack()
_BIT_ACK = 1 << TAG_REQUEST_HOST_ACK
_BIT_AUTO_RESPONSE = 1 << TAG_AUTO_RESPONSE
_BIT_RENDEZVOUS = 1 << TAG_RENDEZVOUS
_BIT_STORE = 1 << TAG_STORE_IF_OFFLINE
_ICBM = int(FoodGroup.ICBM)
_TLV_HEAD = struct.Struct("!HH")
_TO_CLIENT = int(ICBM.CHANNEL_MSG_TO_CLIENT)
SUBCODE_OFFLINE_INBOX_FULL = 0x000F

MULTISESSION_NOTICE = (
    "Your AOL screen name ({screen_name}) is now signed into AOL(R) Instant Messenger (TM)"
    " in {count} locations. Click here for more information."
)

#: How many of a session's latest IMs are remembered to drop
#: retransmissions, and how many rendezvous conversations it may have open.
RECENT_IMS_PER_SESSION = 32
MAX_RENDEZVOUS_PER_SESSION = 32

CANCEL_ACCEPTED_ELSEWHERE = 3
CHANNEL_IM = 1
CHANNEL_RENDEZVOUS = 2
ICBM_OFFLINE_RETRIEVE = 0x10
ICBM_OFFLINE_RETRIEVE_DONE = 0x17

_CHARSET = re.compile(rb'charset="?([A-Za-z0-9_.:-]+)', re.IGNORECASE)


def typing_targets(presence: Presence, user: User) -> list[SessionInstance]:
    """The sessions a typing event for ``user`` reaches: exactly those an IM
    would reach now (MULTISESSION.md §10, §11), so an idle or away session
    hears nothing while an active sibling is there, and all of them do when
    none is active."""
    return presence.routing(user).targets


def charset_of(mime: bytes) -> int:
    """The ICBM charset for a profile/away MIME type: 2 for UTF-16/UCS-2,
    3 for Latin-1, otherwise 0 (ASCII)."""
    match = _CHARSET.search(mime)
    name = match.group(1).lower() if match else b"us-ascii"
    if name.startswith((b"unicode", b"utf-16", b"ucs-2")):
        return 0x0002
    if name in (b"iso-8859-1", b"latin1", b"latin-1", b"windows-1252"):
        return 0x0003
    return 0x0000


def offline_sender_info(screen_name: str) -> UserInfo:
    return UserInfo(screen_name, 0, TlvList((Tlv.u16(TAG_USER_CLASS, CLASS_FREE),)))


def system_message(text: str, sender: str = SYSTEM_SENDER) -> MessageReceived:
    """A message from a pseudo user (the multisession notice; later MOTD and
    broadcasts): plain ASCII text on channel 1."""
    return MessageReceived(
        b"\x00" * 8,
        CHANNEL_IM,
        offline_sender_info(sender).pack(),
        Tlv(TAG_IM_DATA, pack_im_data(text.encode("ascii", "replace"), 0x0000)).pack(),
    )


def remember(session: SessionInstance, seen: int) -> None:
    """Note the hash of a 04,06 body that ``session`` had delivered or stored.

    Only the connection that sent a message can resend it: another session
    of the same user is another client, whose cookies may well repeat its
    sibling's (libpurple's are 7 digits from an equally seeded generator), so
    the memory is the session's, freed when it closes. It compares the whole
    body (cookie, recipient, every TLV), so no two distinct messages are one;
    Python's bytes hash is keyed per process, and a 64-bit collision among 32
    entries is negligible. A dict (insertion-ordered): a hash lookup is
    45 ns where a scan of a 32-int list is 565 ns."""
    recent = session.recent_ims
    if recent is None:
        session.recent_ims = {seen: None}
        return
    if len(recent) >= RECENT_IMS_PER_SESSION:
        del recent[next(iter(recent))]
    recent[seen] = None


@attrs.define(slots=True, eq=False)
class Conversation:
    """One rendezvous this session proposed, kept on the proposing session
    (so it goes with it) and naming the peer's sessions by instance id (so it
    keeps none of them alive)."""

    #: The peer's sessions the proposal went to.
    offered: tuple[int, ...]
    #: The peer's session that accepted, once one has.
    accepted: int | None = None


def _conversation(
    user: User, cookie: bytes, peer_key: str
) -> tuple[SessionInstance, Conversation] | None:
    """The conversation about ``cookie`` that one of ``user``'s sessions
    proposed to ``peer_key``, with that session."""
    for session in user.instances.values():
        table = session.rendezvous
        if table is not None:
            conversation = table.get((cookie, peer_key))
            if conversation is not None:
                return session, conversation
    return None


def _live(user: User, instance_ids: Sequence[int]) -> list[SessionInstance]:
    sessions = []
    for instance_id in instance_ids:
        session = user.instances.get(instance_id)
        if session is not None and not session.closed:
            sessions.append(session)
    return sessions


def im_text_size(channel: int, relayed: bytes) -> int:
    """What an ICBM's size is measured by against a recipient's 04,02 limit:
    the message text (TLV 0x0002) of a channel-1 IM, everything relayed on
    other channels. Only called for messages longer than the smallest limit;
    an IM whose other TLVs alone are oversize counts as its whole length."""
    if channel != CHANNEL_IM or len(relayed) > MAX_MESSAGE_LENGTH + MAX_IM_EXTRAS:
        return len(relayed)
    data = TlvList.unpack_list(relayed, "IM TLVs").get(TAG_IM_DATA)
    return 0 if data is None else len(data)


class IcbmService:
    log = Logger()

    def __init__(
        self,
        registry: UserRegistry,
        presence: Presence,
        store: IOfflineMessageStore,
        warnings: WarningService,
        clock: IReactorTime,
        notify: bool = True,
    ) -> None:
        self.registry = registry
        #: Send the multisession notice (``[multisession] notify``).
        self.notify = notify
        self.presence = presence
        self.store = store
        self.warnings = warnings
        self.clock = clock
        #: Waiting offline messages per recipient, so that the sign-on of a
        #: user with none skips the store. Until the start-up count arrives,
        #: changes accumulate here and every sign-on asks the store.
        self._inbox_counts: dict[str, int] = {}
        self._inbox_counts_loaded = False
        #: Offline deliveries under way, by user key.
        self._deliveries: dict[str, defer.Deferred[None]] = {}
        #: Retransmissions dropped and messages refused, one log line a burst.
        self.dropped = CountedLog(self.log, clock, "IMs not delivered")
        #: Messages routed to online sessions since start (for /stats).
        self.routed = 0
        presence.on_visible.append(self.became_visible)

    def handlers(self) -> HandlerTable:
        f = FoodGroup.ICBM
        return {
            (f, ICBM.ADD_PARAMETERS): self.add_parameters,
            (f, ICBM.DEL_PARAMETERS): self.del_parameters,
            (f, ICBM.PARAMETER_QUERY): self.parameter_query,
            (f, ICBM.CHANNEL_MSG_TO_HOST): self.channel_msg_to_host,
            (f, ICBM.EVIL_REQUEST): self.warnings.evil_request,
            (f, ICBM.CLIENT_ERROR): self.client_error,
            (f, ICBM.CLIENT_EVENT): self.client_event,
            (f, ICBM_OFFLINE_RETRIEVE): self.offline_retrieve,
        }

    # -- parameters ---------------------------------------------------------------------

    def parameter_query(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies:
        return [Reply(FoodGroup.ICBM, ICBM.PARAMETER_REPLY, DEFAULT_PARAMETERS.pack())]

    def add_parameters(self, session: SessionInstance, request: SnacHeader, body: bytes) -> None:
        params = IcbmParameters.unpack(body)
        session.typing_events = bool(params.flags & PARAM_FLAG_TYPING)
        session.max_message_length = max(
            MIN_MESSAGE_LENGTH, min(params.max_message_length, MAX_MESSAGE_LENGTH)
        )
        user = self.registry.user_of(session)
        if user is not None:
            self.presence.invalidate(user)

    def del_parameters(self, session: SessionInstance, request: SnacHeader, body: bytes) -> None:
        pass

    # -- messages -----------------------------------------------------------------------

    def channel_msg_to_host(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies | defer.Deferred[Replies]:
        """The hot path: split the body without building TLV objects, find the
        recipient's sessions from the cached routing, and send one payload
        built once around the sender's cached user-info block. The host ack
        goes back only for a message delivered or stored (or a resend of one)."""
        cookie, channel, raw_name, tags, relayed = split_message(body, _NOT_RELAYED)
        # acting_user, inlined: this is every IM's path.
        sender = self.registry.user_of(session)
        if sender is None:
            raise SnacError(SnacErrorCode.NOT_LOGGED_ON)
        recipient_key = normalize(decode_screen_name(raw_name))
        ack = (
            [Reply(FoodGroup.ICBM, ICBM.HOST_ACK, body[: COOKIE_SIZE + 3 + len(raw_name)])]
            if tags & _BIT_ACK
            else []
        )
        is_im = channel == CHANNEL_IM
        if is_im and tags & _BIT_AUTO_RESPONSE:
            # The server answers for away users itself (one per away session);
            # a client's own auto-response would be a duplicate.
            return ack
        seen = hash(body) if is_im else 0
        recent = session.recent_ims
        if is_im and recent is not None and seen in recent:
            # This session sent exactly this message already, and it was
            # delivered or stored: a retransmission.
            self.dropped.note(
                "retransmissions",
                "dropped a retransmitted IM from {sender} (instance {instance}) to {recipient}",
                sender=sender.screen_name,
                instance=session.instance_id,
                recipient=recipient_key,
            )
            return ack
        return self._route(
            session, sender, cookie, channel, recipient_key, tags, relayed, ack, seen, body
        )

    def send_text_im(
        self, session: SessionInstance, cookie: bytes, recipient: str, im_data: bytes, text: str
    ) -> Replies | defer.Deferred[Replies]:
        """A channel-1 IM from a client that speaks text, not SNACs (the
        browser): routed as ``channel_msg_to_host`` routes a 04,06 asking
        to be stored if the recipient is offline, without building one to
        split again. ``text`` is what ``im_data`` says: an ASCII one rides
        on the event, so a browser receiving it need not decode it back.

        :raises SnacError: as ``channel_msg_to_host`` would.
        """
        sender = self.registry.user_of(session)
        if sender is None:
            raise SnacError(SnacErrorCode.NOT_LOGGED_ON)
        relayed = _TLV_HEAD.pack(TAG_IM_DATA, len(im_data)) + im_data
        return self._route(
            session,
            sender,
            cookie,
            CHANNEL_IM,
            normalize(recipient),
            _BIT_STORE,
            relayed,
            [],
            0,
            None,
            text if text.isascii() else None,
        )

    def _route(
        self,
        session: SessionInstance,
        sender: User,
        cookie: bytes,
        channel: int,
        recipient_key: str,
        tags: int,
        relayed: bytes,
        ack: Replies,
        seen: int,
        body: bytes | None,
        text: str | None = None,
    ) -> Replies | defer.Deferred[Replies]:
        """Where a message goes, once read: the recipient's sessions, its
        offline store, or a refusal. ``seen`` is its retransmission hash (0:
        none to remember); ``body`` the whole 04,06, which a rendezvous
        needs (None for one that never was a SNAC)."""
        is_im = channel == CHANNEL_IM
        size = len(relayed)
        recipient = self.registry.by_key(recipient_key)
        if recipient is None:
            targets: list[SessionInstance] = []
        else:
            targets, all_away, visible, limit = self.presence.routing(recipient)
            if not (visible and recipient.privacy is None) and not self.presence.visible_to(
                recipient, sender.key
            ):
                # Invisible, or blocking the sender: the answers for an offline
                # user. A blocked sender's stored message is never handed over.
                targets = []
            elif (
                sender.privacy is not None
                and sender.privacy is not UNREAD
                and recipient is not sender
                and not sender.privacy.allows(recipient.key)
            ):
                # The sender blocks the recipient (FAMILIES.md, 04,06 step 1).
                raise SnacError(SnacErrorCode.IN_LOCAL_PERMIT_DENY)
            elif size > limit and targets:
                size = im_text_size(channel, relayed)
                if size > limit:
                    targets = [t for t in targets if size <= t.max_message_length]
                    if not targets:
                        raise self._too_big(sender, recipient_key, size)
        if not targets:
            if is_im and tags & _BIT_STORE:
                if size > MAX_MESSAGE_LENGTH:
                    size = im_text_size(channel, relayed)
                    if size > MAX_MESSAGE_LENGTH:
                        raise self._too_big(sender, recipient_key, size)
                return self._store_offline(
                    session, sender, recipient_key, cookie, channel, relayed, ack, seen
                )
            # Not remembered as seen: a retry once the recipient is back is delivered.
            raise SnacError(SnacErrorCode.NOT_LOGGED_ON)
        if channel == CHANNEL_RENDEZVOUS and tags & _BIT_RENDEZVOUS and body is not None:
            message = ChannelMessageToHost.unpack(body)
            targets, tlvs = self._rendezvous_route(session, sender, recipient, message)
            relayed = b"".join(t.pack() for t in tlvs if t.tag not in _NOT_RELAYED)
        if session.typing_events:
            relayed += _WANT_EVENTS
        info = self.presence.info_block(sender)
        event = MessageReceived(cookie, channel, info, relayed, text)
        if body is not None:
            # Rendered here already: the 04,06 head is the 04,07's, as it
            # came. (A browser's IM is rendered only if a classic session
            # gets it: a browser reads the event's fields.)
            event._snac = (_ICBM, _TO_CLIENT, body[: COOKIE_SIZE + 2] + info + relayed)
        running = self._deliveries.get(recipient.key)
        if running is None:
            if not self.registry.deliver(targets, event):
                raise SnacError(SnacErrorCode.NOT_LOGGED_ON)
            self.routed += 1
        else:
            # Stored messages are still being handed over: this one goes after them.
            running.addBoth(lambda result: (self.registry.deliver(targets, event), result)[1])
        if session.status & STATUS_INVISIBLE and not self.presence.routing(sender).visible:
            # The recipient now knows the sender is online: it may answer.
            self.presence.reveal(sender, recipient.key)
        if is_im:
            if seen:
                remember(session, seen)
            self.warnings.im_sent(sender.key, recipient.key)
            if all_away:
                self._auto_respond(session, recipient)
        return ack

    def _too_big(self, sender: User, recipient_key: str, size: int) -> SnacError:
        """An IM larger than the recipient asked for (04,02): 0x000A, "refused
        by client", and no ack."""
        self.dropped.note(
            "over the recipient's size",
            "refused a {size}-byte IM from {sender} to {recipient}: over its limit",
            size=size,
            sender=sender.screen_name,
            recipient=recipient_key,
        )
        return SnacError(SnacErrorCode.REFUSED_BY_CLIENT)

    def _auto_respond(self, to_session: SessionInstance, recipient: User) -> None:
        """Every session of the recipient is away: each one with an away
        message answers the sending session."""
        sender_info = self.presence.info_block(recipient)
        for away in recipient.online_instances():
            if not away.away_message:
                continue
            im_data = pack_im_data(away.away_message or b"", charset_of(away.away_mime))
            tlvs = Tlv(TAG_IM_DATA, im_data).pack() + Tlv.empty(TAG_AUTO_RESPONSE).pack()
            event = MessageReceived(os.urandom(8), CHANNEL_IM, sender_info, tlvs)
            self.registry.deliver((to_session,), event)

    # -- rendezvous ---------------------------------------------------------------------

    def _rendezvous_route(
        self,
        session: SessionInstance,
        sender: User,
        recipient: User,
        message: ChannelMessageToHost,
    ) -> tuple[list[SessionInstance], Sequence[Tlv]]:
        """Where a channel-2 message goes (docs/multisession.md, Rendezvous).

        A conversation lives on the session that proposed it, under (cookie,
        recipient key), naming the recipient's sessions by instance id."""
        try:
            rendezvous = Rendezvous.unpack(message.tlvs.get(TAG_RENDEZVOUS) or b"")
        except MalformedData:
            return message_targets(recipient), message.tlvs
        found = _conversation(recipient, message.cookie, sender.key)
        if found is not None:
            # A reply from the recipient's side: only the proposing session hears it.
            proposer, conversation = found
            if proposer.closed:
                raise SnacError(SnacErrorCode.NOT_LOGGED_ON)
            if rendezvous.kind == Rendezvous.ACCEPT and session.instance_id in conversation.offered:
                conversation.accepted = session.instance_id
                others = [s for s in _live(sender, conversation.offered) if s is not session]
                if others:
                    # This message goes to the proposer: ``recipient`` proposed.
                    self._cancel_elsewhere(recipient, rendezvous, message.cookie, others)
            return [proposer], message.tlvs
        found = _conversation(sender, message.cookie, recipient.key)
        if found is not None:
            # The proposer again (a cancel, a retry): the accepting session,
            # or else the sessions the proposal reached.
            conversation = found[1]
            accepted = (
                _live(recipient, (conversation.accepted,))
                if conversation.accepted is not None
                else []
            )
            targets = accepted or _live(recipient, conversation.offered)
            if not targets:
                raise SnacError(SnacErrorCode.NOT_LOGGED_ON)
            return targets, message.tlvs
        if rendezvous.kind != Rendezvous.PROPOSE:
            # An answer or cancel about a conversation nobody here proposed:
            # its proposing session is gone (with it, its conversations), or
            # it never was. Only that session may hear it.
            raise SnacError(SnacErrorCode.NOT_LOGGED_ON)
        capable = [
            s for s in recipient.online_instances() if rendezvous.capability in s.capabilities
        ]
        if not capable:
            raise SnacError(SnacErrorCode.NOT_LOGGED_ON)
        active = [s for s in capable if not s.away and s.idle_since is None]
        targets = active or capable
        table = session.rendezvous
        if table is None:
            table = session.rendezvous = {}
        elif len(table) >= MAX_RENDEZVOUS_PER_SESSION:
            del table[next(iter(table))]
        table[(message.cookie, recipient.key)] = Conversation(tuple(s.instance_id for s in targets))
        tlvs = message.tlvs
        if rendezvous.tlvs.has(Rendezvous.TAG_CLIENT_IP) and session.ip:
            tlvs = self._with_verified_ip(message.tlvs, rendezvous, session.ip)
        return targets, tlvs

    def _cancel_elsewhere(
        self,
        proposer: User,
        rendezvous: Rendezvous,
        cookie: bytes,
        sessions: list[SessionInstance],
    ) -> None:
        """One session accepted: the others that were offered the proposal get
        a cancel from the proposer, reason 3 ("accepted elsewhere"), so their
        prompts close."""
        data = Rendezvous(
            Rendezvous.CANCEL,
            cookie,
            rendezvous.capability,
            TlvList((Tlv.u16(Rendezvous.TAG_CANCEL_REASON, CANCEL_ACCEPTED_ELSEWHERE),)),
        ).pack()
        event = MessageReceived(
            cookie,
            CHANNEL_RENDEZVOUS,
            self.presence.info_block(proposer),
            Tlv(TAG_RENDEZVOUS, data).pack(),
        )
        self.registry.deliver(sessions, event)

    @staticmethod
    def _with_verified_ip(tlvs: TlvList, rendezvous: Rendezvous, ip: str) -> TlvList:
        """Replace the client's idea of its IP with the one the server sees and
        add it as the verified IP (helps clients behind NAT)."""
        try:
            packed_ip = bytes(int(part) for part in ip.split("."))
        except ValueError:
            return tlvs
        if len(packed_ip) != 4:
            return tlvs
        inner = [
            t
            for t in rendezvous.tlvs
            if t.tag not in (Rendezvous.TAG_CLIENT_IP, Rendezvous.TAG_VERIFIED_IP)
        ]
        inner += [
            Tlv(Rendezvous.TAG_CLIENT_IP, packed_ip),
            Tlv(Rendezvous.TAG_VERIFIED_IP, packed_ip),
        ]
        data = Rendezvous(
            rendezvous.kind, rendezvous.cookie, rendezvous.capability, TlvList(tuple(inner))
        ).pack()
        return TlvList(
            tuple(Tlv(TAG_RENDEZVOUS, data) if t.tag == TAG_RENDEZVOUS else t for t in tlvs)
        )

    # -- offline messages ---------------------------------------------------------------

    def _store_offline(
        self,
        session: SessionInstance,
        sender: User,
        recipient_key: str,
        cookie: bytes,
        channel: int,
        relayed: bytes,
        ack: Replies,
        seen: int,
    ) -> defer.Deferred[Replies]:
        """Keep the IM for the recipient; ``seen`` is its retransmission hash,
        remembered for ``session`` once it is stored."""
        d = self.store.store_offline_message(
            recipient_key, sender.screen_name, cookie, channel, relayed, int(self.clock.seconds())
        )

        def stored(_: object) -> Replies:
            if seen:
                remember(session, seen)
            self._count_inbox(recipient_key, 1)
            # The user may be between sessions (one signed off or displaced,
            # the next not ready yet): the next one to come online takes it.
            # An invisible user's messages wait until it is seen again
            # (``became_visible``) or its next sign-on, as an offline user's do.
            waiting = self.registry.by_key(recipient_key)
            if waiting is not None:
                waiting.offline_delivered = False
                online = waiting.online_instances()
                if online and self.presence.visible_to(waiting, sender.key):
                    # A session came online while the write was in flight; its
                    # hand-over may have read the store before the write landed.
                    self.deliver_offline(online[0], force=True)
            self.log.info(
                "stored an offline message from {sender} to {recipient}",
                sender=sender.screen_name,
                recipient=recipient_key,
            )
            return ack

        def refused(failure: object) -> Replies:
            if failure.check(OfflineInboxFull):  # type: ignore[attr-defined]
                self.dropped.note(
                    "offline inbox full",
                    "offline message from {sender} to {recipient} refused: {cap} full",
                    sender=sender.screen_name,
                    recipient=recipient_key,
                    cap=failure.value.cap,  # type: ignore[attr-defined]
                )
                raise SnacError(SnacErrorCode.NOT_LOGGED_ON, SUBCODE_OFFLINE_INBOX_FULL)
            if not failure.check(NoSuchAccount):  # type: ignore[attr-defined]
                failure.trap(StoreError)  # type: ignore[attr-defined]
                self.log.info(
                    "offline message to {recipient} refused: {error}",
                    recipient=recipient_key,
                    error=str(failure.value),
                )  # type: ignore[attr-defined]
            raise SnacError(SnacErrorCode.NOT_LOGGED_ON)

        return d.addCallbacks(stored, refused)

    def load_inbox_counts(self) -> defer.Deferred[None]:
        """Read the waiting-message counts once (at start-up). Stores and
        deletes run in order on the store, so counts read before them plus
        the changes seen since are exact."""

        def loaded(counts: dict[str, int]) -> None:
            for key, count in counts.items():
                self._count_inbox(key, count)
            self._inbox_counts_loaded = True

        d = self.store.count_offline_messages().addCallback(loaded)
        d.addErrback(lambda f: self.log.failure("reading offline-message counts", f))
        return d

    def _count_inbox(self, key: str, delta: int) -> None:
        count = self._inbox_counts.get(key, 0) + delta
        if count > 0:
            self._inbox_counts[key] = count
        else:
            self._inbox_counts.pop(key, None)

    def deliver_offline(
        self, session: SessionInstance, force: bool = False
    ) -> defer.Deferred[None]:
        """Hand stored messages to ``session``, in order, then delete exactly
        those. Only once per sign-on of the user (unless ``force``: a message
        was stored after that); if the session goes away first, they stay for
        the next session that comes online."""
        user = self.registry.user_of(session)
        if user is None or (user.offline_delivered and not force):
            return defer.succeed(None)
        if self._inbox_counts_loaded and self._inbox_counts.get(user.key, 0) <= 0:
            # Nothing waits: most sign-ons skip the store round trip.
            user.offline_delivered = True
            return defer.succeed(None)
        running = self._deliveries.get(user.key)
        if running is not None:
            # Someone's 04,10 while the push at client-ready is still going:
            # answer when it is done, so 04,17 comes after the messages.
            waiting: defer.Deferred[None] = defer.Deferred()

            def again(result: object) -> object:
                # The running hand-over may have ended without delivering
                # (its session closed): then this session takes them.
                self.deliver_offline(session, force).chainDeferred(waiting)
                return result

            running.addBoth(again)
            return waiting

        def deliver(messages: list[OfflineMessage]) -> defer.Deferred[object] | None:
            last_id = None
            privacy = user.privacy
            for message in messages:
                if session.closed:
                    break
                if privacy is None or privacy.allows(normalize(message.sender)):
                    # Stored before its sender was blocked: not handed over.
                    self.registry.deliver((session,), self._offline_event(message, user.key))
                last_id = message.message_id
            if session.closed:
                return None
            user.offline_delivered = True
            if last_id is None:
                return None
            self.log.info(
                "delivered {count} offline messages to {screen_name}",
                count=len(messages),
                screen_name=user.screen_name,
            )
            return self.store.delete_offline_messages(user.key, last_id).addCallback(
                lambda deleted: self._count_inbox(user.key, -deleted)
            )

        def done(result: object) -> None:
            self._deliveries.pop(user.key, None)

        d = self.store.get_offline_messages(user.key).addCallback(deliver)
        d.addErrback(
            lambda f: self.log.failure(
                "offline delivery to {screen_name}", f, screen_name=user.screen_name
            )
        )
        d.addBoth(done)
        if not d.called:
            self._deliveries[user.key] = d
        return d

    def became_visible(self, user: User) -> None:
        """An invisible user is seen again: what was stored for it meanwhile."""
        online = user.online_instances()
        if online and not user.offline_delivered:
            self.deliver_offline(online[0], force=True)

    def _offline_event(self, message: OfflineMessage, recipient_key: str) -> MessageReceived:
        online = self.registry.get(message.sender)
        sender = (
            self.presence.info_block(online)
            if online is not None
            and online.announced
            and self.presence.visible_to(online, recipient_key)
            else offline_sender_info(message.sender).pack()
        )
        tlvs = (
            message.tlvs
            + Tlv.empty(TAG_STORE_IF_OFFLINE).pack()
            + Tlv.u32(TAG_OFFLINE_TIME, message.sent_at).pack()
        )
        return MessageReceived(message.cookie, message.channel, sender, tlvs)

    def offline_retrieve(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> defer.Deferred[Replies]:
        """04,10 (AIM 6, libpurple): the messages if nobody got them yet, then
        04,17. Classic clients never ask; they get them at client-ready."""
        d = self.deliver_offline(session)
        return d.addCallback(lambda _: [Reply(FoodGroup.ICBM, ICBM_OFFLINE_RETRIEVE_DONE)])

    # -- typing, client errors, system messages -----------------------------------------

    def client_event(self, session: SessionInstance, request: SnacHeader, body: bytes) -> None:
        """Typing events come from the session that typed and go where an IM
        would (``typing_targets``); silently dropped when the recipient is not
        there or cannot be seen (they are not worth an error)."""
        event = ClientEvent.unpack(body)
        sender = acting_user(self.registry, session)
        recipient = self.registry.get(event.screen_name)
        if recipient is None or not self.presence.visible_to(recipient, sender.key):
            return
        relayed = ClientEvent(event.cookie, event.channel, sender.screen_name, event.event)
        targets = typing_targets(self.presence, recipient)
        self.registry.deliver(targets, TypingRelayed(relayed.pack()))

    def client_error(self, session: SessionInstance, request: SnacHeader, body: bytes) -> None:
        """Relayed to the named user with the name replaced by the reporter's."""
        error = ClientError.unpack(body)
        sender = acting_user(self.registry, session)
        recipient = self.registry.get(error.screen_name)
        if recipient is None or not self.presence.visible_to(recipient, sender.key):
            return
        relayed = ClientError(
            error.cookie, error.channel, sender.screen_name, error.reason, error.data
        )
        found = _conversation(recipient, error.cookie, sender.key)
        targets = (
            [found[0]]
            if found is not None and not found[0].closed
            else recipient.online_instances()
        )
        self.registry.deliver(targets, ClientErrorRelayed(relayed.pack()))

    def session_online(self, session: SessionInstance) -> None:
        """After client ready: offline messages (first session only), then the
        multisession notice when a 2nd or later multi-capable session joined."""
        user = self.registry.user_of(session)
        if user is None:
            return
        self.deliver_offline(session)
        if (
            self.notify
            and session.multiconn_flags == MULTICONN_MULTI
            and len(user.online_instances()) >= 2
        ):
            self.multisession_notice(user)

    def multisession_notice(self, user: User) -> None:
        """Tell every online session how many places the user is signed on in."""
        count = len(user.online_instances())
        self.deliver_notice(
            user, MULTISESSION_NOTICE.format(screen_name=user.screen_name, count=count)
        )

    def deliver_notice(self, user: User, text: str, sender: str = SYSTEM_SENDER) -> int:
        """A message from the server (or an admin, as ``sender``) to every
        online session of ``user``: notices reach all of them
        (MULTISESSION.md §20), away or idle. How many it reached."""
        return self.registry.deliver(user.online_instances(), system_message(text, sender))
