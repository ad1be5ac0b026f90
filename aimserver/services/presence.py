# -*- test-case-name: tests.test_service_presence -*-
"""Presence: what others see of a user, and telling them only when it changes.

A user's presence is the aggregate of its online sessions: away only when
every session is away, idle only when every session is idle (then the most
recent idle start), capabilities the union, invisible only when every session
is invisible. Watchers get one arrival when the user first becomes visible,
one departure when it stops being visible, and an update (03,0B) only when
the aggregate they see changes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import NamedTuple

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from aimserver.registry import SessionInstance, User, UserRegistry
from aimserver.services.events import BuddyArrived, BuddyDeparted, SelfInfoChanged
from aimserver.services.privacy import Privacy
from aimserver.wire.bart import FLAG_UNKNOWN, BartId
from aimserver.wire.reader import string08
from aimserver.wire.screenname import encode_screen_name
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import (
    CLASS_BOT,
    CLASS_FREE,
    CLASS_UNAVAILABLE,
    STATUS_AWAY,
    STATUS_INVISIBLE,
    TAG_BART_INFO,
    TAG_CAPABILITIES,
    TAG_IDLE_MINUTES,
    TAG_MEMBER_SINCE,
    TAG_SESSION_LENGTH,
    TAG_SIGNON_TIME,
    TAG_STATUS,
    TAG_USER_CLASS,
    UserInfo,
)

_TLV_HEADER = struct.Struct("!HH")
_TLV_U16 = struct.Struct("!HHH")
_TLV_U32 = struct.Struct("!HHI")
_WARNING_AND_COUNT = struct.Struct("!HH")

#: A departure carries only the user class, set to 0: a full block makes AIM
#: ignore the event, and ICQ clients need the class TLV (OSCAR.md §7).
DEPARTURE_TLVS = TlvList((Tlv.u16(TAG_USER_CLASS, 0),))


#: Users an invisible user may have messaged and so be answered by.
MAX_REVEALED = 256

#: A warning level drops by 5 % (50) every 5 minutes.
DECAY_STEP = 50
DECAY_INTERVAL = 300.0


def decayed(level: int, since: float, now: float) -> tuple[int, float]:
    """``(level, since)`` after the whole decay steps between ``since`` and
    ``now``; ``since`` advances by those steps so partial steps are not lost."""
    if level <= 0:
        return 0, now
    steps = int((now - since) // DECAY_INTERVAL)
    if steps <= 0:
        return level, since
    return max(0, level - DECAY_STEP * steps), since + steps * DECAY_INTERVAL


class Routing(NamedTuple):
    """Where an IM to a user goes, derived from its online sessions and
    cached on the ``User`` until one of them changes."""

    #: The sessions an IM goes to (``message_targets``).
    targets: list[SessionInstance]
    #: Every online session is away (the server sends the auto-responses).
    all_away: bool
    #: Others can see the user (not every session invisible): when False,
    #: everyone but the user gets the answers for an offline user.
    visible: bool
    #: The smallest ICBM length one of ``targets`` accepts (04,02).
    limit: int


def message_targets(user: User) -> list[SessionInstance]:
    """Sessions that get an IM: the active ones (not away, not idle), else all."""
    sessions = user.online_instances()
    active = [s for s in sessions if not s.away and s.idle_since is None]
    return active or sessions


def aggregate_state(user: User) -> tuple[bool, float | None, tuple[bytes, ...], int] | None:
    """``(away, idle_since, capabilities, status)`` over the online sessions, or
    None when no session is online or every one is invisible."""
    sessions = user.online_instances()
    if not sessions:
        return None
    status = 0xFFFFFFFF
    for session in sessions:
        status &= session.status
    if status & STATUS_INVISIBLE:
        return None
    away = all(s.away for s in sessions)
    # The away bit others see says what the user class says, whichever of
    # its two SNACs a client sent first: one change, one update.
    status = (status | STATUS_AWAY) if away else (status & ~STATUS_AWAY)
    idle_times = [s.idle_since for s in sessions]
    idle_since = None if None in idle_times else max(idle_times)  # type: ignore[type-var]
    capabilities: dict[bytes, None] = {}
    for session in sessions:
        for capability in session.capabilities:
            capabilities[capability] = None
    return away, idle_since, tuple(capabilities), status


def shown_icon(user: User) -> BartId | None:
    """The buddy icon others see (user-info TLV 0x001D): none while the
    server lacks its data, so nobody is sent to fetch what is not there."""
    icon = user.icon
    return None if icon is None or icon.flags & FLAG_UNKNOWN else icon


class Presence:
    """Builds user-info blocks and sends arrivals, updates and departures."""

    log = Logger()

    def __init__(self, registry: UserRegistry, clock: IReactorTime) -> None:
        self.registry = registry
        self.clock = clock
        #: Users whose sessions changed this reactor turn, announced together
        #: at its end (``session_changed``).
        self._changed: dict[str, User] = {}
        self._flush_call: IDelayedCall | None = None
        #: Called with a user that was online but invisible and is now seen
        #: by others (the ICBM service hands over what was held meanwhile).
        self.on_visible: list[Callable[[User], object]] = []

    # -- what others see ----------------------------------------------------------------

    def user_info(self, user: User, state: tuple | None = None) -> UserInfo:
        """The aggregate user-info block others see, as an object (locate)."""
        if state is None:
            state = aggregate_state(user)
        return UserInfo.unpack(self._pack_info(user, state))

    def _pack_info(
        self, user: User, state: tuple | None, session: SessionInstance | None = None
    ) -> bytes:
        """The packed user-info block: what others see (the aggregate status),
        or with ``session`` what that session is told about itself (its own
        status, member-since, session length). Packed straight from structs:
        it is in every arrival, IM and self-info, and the TLV objects cost
        more than the rest of a 01,0E."""
        away, idle_since, capabilities, status = state or (False, None, (), 0)
        user_class = (
            CLASS_FREE | (CLASS_UNAVAILABLE if away else 0) | (CLASS_BOT if user.bot else 0)
        )
        tlvs = [
            _TLV_U16.pack(TAG_USER_CLASS, 2, user_class),
            _TLV_U32.pack(TAG_SIGNON_TIME, 4, int(user.signon_time)),
        ]
        if session is None:
            tlvs.append(_TLV_U32.pack(TAG_STATUS, 4, status & ~STATUS_INVISIBLE))
        now = self.clock.seconds()
        if idle_since is not None:
            minutes = max(0, int(now - idle_since) // 60)
            tlvs.append(_TLV_U16.pack(TAG_IDLE_MINUTES, 2, min(minutes, 0xFFFF)))
        # The user itself is told of an icon the server still lacks (flagged
        # unknown: upload it), others only of one they can download.
        icon = user.icon if session is not None else shown_icon(user)
        if icon is not None:
            packed = icon.pack()
            tlvs.append(_TLV_HEADER.pack(TAG_BART_INFO, len(packed)) + packed)
        if capabilities:
            joined = b"".join(capabilities)
            tlvs.append(_TLV_HEADER.pack(TAG_CAPABILITIES, len(joined)) + joined)
        if session is not None:
            tlvs.append(_TLV_U32.pack(TAG_STATUS, 4, session.status))
            tlvs.append(_TLV_U32.pack(TAG_MEMBER_SINCE, 4, int(user.member_since)))
            length = max(0, int(now - session.connected_at))
            tlvs.append(_TLV_U32.pack(TAG_SESSION_LENGTH, 4, length))
        return (
            string08(encode_screen_name(user.screen_name))
            + _WARNING_AND_COUNT.pack(self.warning_level(user), len(tlvs))
            + b"".join(tlvs)
        )

    def warning_level(self, user: User) -> int:
        """The level others see now (the periodic sweep also stores it)."""
        return decayed(user.warning_level, user.warning_at, self.clock.seconds())[0]

    def info_block(self, user: User) -> bytes:
        """The packed aggregate user-info block, built once per change (it is
        in every IM the user sends). Rebuilt when the decayed warning level
        moves, and each time for an idle user, whose idle minutes move with
        the clock."""
        level = self.warning_level(user) if user.warning_level else 0
        cached = user.info_block
        if cached is not None and cached[0] == level:
            return cached[1]
        state = aggregate_state(user)
        block = self._pack_info(user, state)
        if state is None or state[1] is None:
            user.info_block = (level, block)
        return block

    def routing(self, user: User) -> Routing:
        """Where an IM to ``user`` goes: the active sessions (neither away nor
        idle), or all when none is active; cached until a session changes."""
        routing = user.routing
        if routing is None:
            sessions = user.online_instances()
            targets = message_targets(user)
            routing = user.routing = Routing(
                targets,
                bool(sessions) and all(s.away for s in sessions),
                aggregate_state(user) is not None,
                min((s.max_message_length for s in targets), default=0),
            )
        return routing

    def visible_to(self, user: User, viewer_key: str) -> bool:
        """Whether ``viewer_key`` may see that ``user`` is online: everyone
        when it is visible; when every session is invisible, only the user
        itself and those it has messaged since (they know already, and may
        answer). The one rule behind every answer that could tell an
        invisible user from an offline one (IMs, warnings, lookups,
        rendezvous)."""
        if user.key == viewer_key:
            return True
        privacy = user.privacy
        if privacy is not None and not privacy.allows(viewer_key):
            return False
        if self.routing(user).visible:
            return True
        revealed = user.revealed_to
        return revealed is not None and viewer_key in revealed

    def reveal(self, user: User, viewer_key: str) -> None:
        """``user``, invisible, messaged ``viewer_key``: let it answer."""
        revealed = user.revealed_to
        if revealed is None:
            revealed = user.revealed_to = {}
        elif viewer_key in revealed:
            return
        elif len(revealed) >= MAX_REVEALED:
            del revealed[next(iter(revealed))]
        revealed[viewer_key] = None

    def invalidate(self, user: User) -> None:
        user.info_block = None
        user.routing = None

    def self_info_block(self, user: User, session: SessionInstance) -> bytes:
        """What a session is told about itself (01,0F): its own status, and the
        account's member-since and session length as well."""
        return self._pack_info(user, aggregate_state(user), session)

    def send_self_info(self, user: User, sessions: Iterable[SessionInstance] | None = None) -> None:
        """Send the user's ``sessions`` (every live one by default) their
        self info again (01,0F), after a change to what it shows."""
        for session in user.live_instances() if sessions is None else sessions:
            self.registry.deliver((session,), SelfInfoChanged(self.self_info_block(user, session)))

    def departure_block(self, user: User) -> bytes:
        return UserInfo(user.screen_name, 0, DEPARTURE_TLVS).pack()

    # -- events -------------------------------------------------------------------------

    def session_online(self, session: SessionInstance) -> None:
        """The session finished signing on (client ready): it now counts for
        presence; tell watchers if that changes what they see, and tell the
        session which of its buddies are online."""
        user = self.registry.user_of(session)
        if user is None:
            return
        session.online = True
        self.announce(user)
        self.send_arrivals_to(session, session.buddies)

    def session_changed(self, session: SessionInstance) -> None:
        """Away, idle, capabilities or status of one session changed. Routing
        follows at once; watchers are told at the end of the reactor turn, so
        what a client changes in one burst (libpurple's away is a 02,04 and
        an 01,1E) reaches them as one update with the final state."""
        user = self.registry.user_of(session)
        if user is None or not session.online:
            return
        self.invalidate(user)
        self._changed[user.key] = user
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        """Announce the users whose sessions changed since the last flush."""
        call, self._flush_call = self._flush_call, None
        if call is not None and call.active():
            call.cancel()
        changed, self._changed = self._changed, {}
        for user in changed.values():
            was_visible = user.announced is not None
            self.announce(user)
            if user.announced is not None and not was_visible:
                for hook in self.on_visible:
                    with self.log.failuresHandled(
                        "after {screen_name} became visible", screen_name=user.screen_name
                    ):
                        hook(user)

    def session_gone(self, user: User | None, session: SessionInstance | None = None) -> None:
        """A session of ``user`` was detached from the registry."""
        if user is not None:
            self.announce(user)

    def warning_changed(self, user: User) -> None:
        self.announce(user)

    def announce(self, user: User) -> None:
        """Compare the aggregate with what watchers were last told and send the
        difference: an arrival/update, a departure, or nothing."""
        self.invalidate(user)
        state = aggregate_state(user) if self.registry.holds(user) else None
        key = None if state is None else (*state, user.warning_level, shown_icon(user))
        if key == user.announced:
            return
        user.announced = key
        watchers = self.registry.watching_sessions(user.key)
        if user.privacy is not None:
            # Those the user blocks saw it leave when they were blocked.
            watchers = [w for w in watchers if user.privacy.allows(w.user_key)]
        if not watchers:
            return
        event = (
            BuddyDeparted(self.departure_block(user))
            if state is None
            else BuddyArrived(self.info_block(user))
        )
        self.registry.deliver(watchers, event)

    def privacy_changed(self, user: User, before: Privacy | None) -> None:
        """``user``'s permit/deny settings changed: watchers it now blocks see
        it leave, those it now allows see it arrive."""
        if user.announced is None:
            return
        after = user.privacy
        gone, back = [], []
        for watcher in self.registry.watching_sessions(user.key):
            was = before is None or before.allows(watcher.user_key)
            now = after is None or after.allows(watcher.user_key)
            if was and not now:
                gone.append(watcher)
            elif now and not was:
                back.append(watcher)
        if gone:
            self.registry.deliver(gone, BuddyDeparted(self.departure_block(user)))
        if back:
            self.registry.deliver(back, BuddyArrived(self.info_block(user)))

    def send_arrivals_to(self, session: SessionInstance, keys: object) -> None:
        """One 03,0B per buddy in ``keys`` that is visible now."""
        if not session.online:
            return
        for key in list(keys):  # type: ignore[call-overload]
            buddy = self.registry.by_key(key)
            if buddy is None or buddy.announced is None:
                continue
            if buddy.privacy is not None and not buddy.privacy.allows(session.user_key):
                continue
            self.registry.deliver((session,), BuddyArrived(self.info_block(buddy)))


def idle_since(now: float, idle_seconds: int) -> float | None:
    """Per-session idle start from an 01,11 report (0 = active again)."""
    return None if idle_seconds == 0 else now - idle_seconds
