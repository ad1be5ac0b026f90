# -*- test-case-name: tests.test_registry -*-
"""The one in-memory registry of who is signed on: normalised screen name ->
``User`` (user-level state) -> its live ``SessionInstance`` objects (one per
BOS connection).

Built for many instances per user: the multisession policy (join, or kick
the others) is decided here at sign-on, and everything that is per session
(capabilities, client id, away, idle, status, client-side buddy list) lives on
the instance, while what is per user (identity, warning level, rate state)
lives on the ``User``. Lookups are synchronous; a watcher index (who has me
on their list) makes presence fan-out proportional to the watchers, never to
everyone online.

Session objects hold no reference back to their user (only its key), so the
graph is free of cycles and the cyclic GC never has to walk it.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import attrs
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import Attribute, Interface

from aimserver.store.interfaces import Account
from aimserver.wire.bart import BartId
from aimserver.wire.screenname import normalize
from aimserver.wire.userinfo import STATUS_AWAY

MULTICONN_LEGACY = 0x00
MULTICONN_MULTI = 0x01
MULTICONN_SINGLE = 0x03

#: Class-1 SNACs a session may send before its client-ready (01,02) without
#: counting against the user's shared rate state: a real client's sign-on is
#: a burst of 30-50 of them (libpurple), and with the state shared per user,
#: two sessions signing on together would otherwise be rate limited before
#: either is online. Bounded and per session (service connections draw on
#: the same allowance), so it is no way around the limits.
SIGNON_ALLOWANCE = 64
#: Service connections one session may hold per family (alerts today; BART,
#: ChatNav later). Clients open one each; a few allow a reconnect that
#: overlaps the old connection's close.
MAX_SERVICE_CONNECTIONS = 2
#: Sessions that may have one user on their buddy lists (advertised in
#: 03,03 as "max watchers"): past it, a list naming the user does not watch
#: it, so one popular name cannot make every arrival a fan-out without bound.
MAX_WATCHERS = 3000


class ISessionConnection(Interface):
    """What a session needs from a connection of any kind (BOS, a service
    connection, later chat and the browser client)."""

    closing = Attribute("True once the connection is closing: it sends nothing more.")

    def send_event(event: Any) -> None:
        """Queue one push (a ``services.events.Event``), rendered in the
        connection's own format, with a request id of its own."""

    def disconnect(reason: int | None) -> None:
        """Close with a channel-4 frame, carrying TLV 0x0009 ``reason`` if given."""


class InstanceInUse(Exception):
    """The cookie names an instance id that a live session already has (a
    cookie from before a restart): never overwrite a live session."""


class TooManySessions(Exception):
    """The login would exceed ``max_sessions`` for a multi-capable client."""


@attrs.define(eq=False, slots=True)
class SessionInstance:
    """One signed-on place of a user: one BOS connection and what is only its own."""

    instance_id: int
    user_key: str
    connection: ISessionConnection
    client_id: str = ""
    ip: str = ""
    connected_at: float = 0.0
    multiconn_flags: int = MULTICONN_LEGACY
    online: bool = False
    closed: bool = False
    capabilities: tuple[bytes, ...] = ()
    away_message: bytes | None = None
    away_mime: bytes = b""
    profile: bytes | None = None
    profile_mime: bytes = b""
    idle_since: float | None = None
    status: int = 0
    typing_events: bool = False
    max_message_length: int = 8000
    #: A bot account's sessions are exempt from rate limits (issue 9).
    rate_exempt: bool = False
    buddies: set[str] = attrs.Factory(set)
    #: Food-group versions the client announced (01,17); OService's decides
    #: the rate-record layout.
    family_versions: dict[int, int] = attrs.Factory(dict)
    #: Rate classes the client subscribed to (01,08) for 01,0A notices.
    rate_subscriptions: set[int] = attrs.Factory(set)
    #: Feedbag "use" (13,07) seen: the stored list governs this session's buddies.
    uses_feedbag: bool = False
    #: Service connections (BART, alerts, chat, ...) opened with a cookie from
    #: this session's 01,04; they belong to it and close with it. At most
    #: ``MAX_SERVICE_CONNECTIONS`` per family (``service_connections``).
    secondary: list[ISessionConnection] = attrs.Factory(list)
    #: Family of each connection in ``secondary``, in the same order.
    secondary_families: list[int] = attrs.Factory(list)
    #: Sign-on SNACs this session and its service connections may still send
    #: before their client-ready without counting against the rate limits:
    #: one allowance per session, not per connection (each new service
    #: connection would otherwise bring a fresh one).
    signon_allowance: int = SIGNON_ALLOWANCE
    #: Hashes of the latest 04,06 bodies this session had delivered or stored,
    #: oldest first, to drop a retransmission (created at the first IM). Per
    #: session: only the connection that sent a message can resend it.
    recent_ims: dict[int, None] | None = None
    #: Rendezvous conversations this session proposed: ``(cookie, peer key)``
    #: -> ``Conversation`` (created at the first proposal, bounded, freed with
    #: the session).
    rendezvous: dict[tuple[bytes, str], Any] | None = None

    @property
    def away(self) -> bool:
        """Away by its away message (02,04) or by the status word's away bit
        (01,1E): libpurple sets both, in two SNACs that may arrive apart, and
        the session is away from the first of them to the last."""
        return bool(self.away_message) or bool(self.status & STATUS_AWAY)

    def service_connections(self, family: int) -> int:
        return self.secondary_families.count(family)

    def add_service_connection(
        self, connection: ISessionConnection, family: int, limit: int = MAX_SERVICE_CONNECTIONS
    ) -> bool:
        """Attach a service connection; False (nothing attached) when the
        session is gone or already has ``limit`` of that family."""
        if self.closed or self.service_connections(family) >= limit:
            return False
        self.secondary.append(connection)
        self.secondary_families.append(family)
        return True

    def remove_service_connection(self, connection: ISessionConnection) -> None:
        for index, held in enumerate(self.secondary):
            if held is connection:
                del self.secondary[index]
                del self.secondary_families[index]
                return


@attrs.define(eq=False, slots=True)
class User:
    """User-level state of one signed-on screen name."""

    key: str
    screen_name: str
    #: What presence shows of the account: no credentials are kept here
    #: (the auth key and digests stay in the store for as long as the user
    #: is signed on, not in memory).
    bot: bool
    member_since: float
    signon_time: float
    instances: dict[int, SessionInstance] = attrs.Factory(dict)
    #: Warning ("evil") level in tenths of a percent, as of ``warning_at``
    #: (unix seconds); decays for the user, whichever sessions are connected.
    warning_level: int = 0
    warning_at: float = 0.0
    #: Presence as last told to watchers (None: not visible to anyone yet).
    announced: tuple[object, ...] | None = None
    #: Derived from the online sessions, rebuilt lazily after any change
    #: (``Presence.invalidate``): the packed user-info block others see (with
    #: the warning level it was built with), and
    #: where an IM goes (``presence.Routing``).
    info_block: tuple[int, bytes] | None = None
    routing: tuple[Any, ...] | None = None
    #: Offline messages were handed to a session of this sign-on (they go to
    #: the first session that comes online; a failed hand-over leaves it False).
    offline_delivered: bool = False
    #: Users this user messaged while invisible (created at the first such
    #: IM, bounded, oldest first): they know it is online, so they may answer
    #: (``Presence.visible_to``). Gone at sign-off.
    revealed_to: dict[str, None] | None = None
    #: Who may see the user (``services.privacy.Privacy``), from its stored
    #: list; None allows everyone.
    privacy: Any = None
    #: The settings were read (or are being read) for this sign-on.
    privacy_loaded: bool = False
    #: Its stored buddy list (``services.feedbag.KeptList``) while it has
    #: sessions: read once at sign-on, replaced at each committed edit, so
    #: the list queries and edits of its sessions need no store read.
    feedbag: Any = None
    #: The buddy icon its feedbag's BART item names (user level: every
    #: session shows it), flagged unknown while the server lacks its data;
    #: None for no icon (``services.bart``).
    icon: BartId | None = None
    #: The digest of the MOTD this sign-on was shown, or is being shown
    #: (``services.motd``): its other sessions are not.
    motd_digest: str | None = None

    def online_instances(self) -> list[SessionInstance]:
        """Sessions that sent client-ready: they count for presence and get IMs."""
        return [i for i in self.instances.values() if i.online and not i.closed]

    def live_instances(self) -> list[SessionInstance]:
        """Every attached session that is not closing, online or still
        signing on: user-level changes (a warning) reach them all, so a
        session between its sign-on snapshot and its client-ready misses none."""
        return [i for i in self.instances.values() if not i.closed]


class UserRegistry:
    """Every user with at least one live session, and the watcher index."""

    log = Logger()

    def __init__(self, max_sessions: int = 5) -> None:
        self.max_sessions = max_sessions
        self.users: dict[str, User] = {}
        #: ``by_key(key)``: the signed-on user whose normalised screen name is
        #: ``key``, or None. The dict's own ``get``: every IM asks, and a
        #: method of ours would add a Python call.
        self.by_key = self.users.get
        #: target key -> sessions that have the target on their buddy list.
        self.watchers: dict[str, set[SessionInstance]] = {}
        # A random start: instance ids in cookies issued before a restart do
        # not collide with the new process's.
        self._instance_ids = itertools.count(random.randint(1, 1 << 30))
        #: Pushes queued by ``deliver`` since start (for /metrics).
        self.delivered = 0

    # -- identity -----------------------------------------------------------------------

    def new_instance_id(self) -> int:
        """A fresh instance id, unique for the life of the process."""
        return next(self._instance_ids)

    def get(self, screen_name: str) -> User | None:
        """The signed-on user of any spelling of ``screen_name``."""
        return self.users.get(normalize(screen_name))

    def holds(self, user: User) -> bool:
        """``user`` is still the registry's (not signed off, not replaced)."""
        return self.users.get(user.key) is user

    def __iter__(self) -> Iterator[User]:
        return iter(self.users.values())

    def sessions_per_user(self) -> Counter[int]:
        """How many users have 1, 2, ... online sessions (for /stats,
        /metrics and the status page's history): one walk of the users."""
        counts: Counter[int] = Counter()
        for user in self.users.values():
            online = 0
            for instance in user.instances.values():
                if instance.online and not instance.closed:
                    online += 1
            if online:
                counts[online] += 1
        return counts

    # -- sessions -----------------------------------------------------------------------

    def check_login(self, account: Account, multiconn_flags: int) -> None:
        """Refuse early (at the authorizer) a multi-capable login that would
        exceed the session limit; raise ``TooManySessions``."""
        user = self.users.get(account.normalized)
        if (
            user is not None
            and multiconn_flags == MULTICONN_MULTI
            and all(i.multiconn_flags == MULTICONN_MULTI for i in user.instances.values())
            and len(user.instances) >= self.max_sessions
        ):
            raise TooManySessions(account.screen_name)

    def add_instance(
        self,
        account: Account,
        connection: ISessionConnection,
        *,
        instance_id: int,
        multiconn_flags: int,
        client_id: str,
        ip: str,
        now: float,
    ) -> tuple[SessionInstance, list[SessionInstance]]:
        """Register a new session and apply the multisession policy.

        Returns the new instance and the instances it displaced: a legacy
        (0x00) or single-session (0x03) login displaces every existing session,
        and so does a multi-capable login when the existing sessions are not
        all multi-capable. The caller disconnects the displaced ones (channel 4,
        signed on elsewhere) *before* announcing the new one. Raises
        ``TooManySessions`` when a multi-capable login would exceed the limit.
        """
        self.check_login(account, multiconn_flags)
        key = account.normalized
        user = self.users.get(key)
        if user is not None and instance_id in user.instances:
            raise InstanceInUse(instance_id)
        displaced: list[SessionInstance] = []
        if user is None:
            user = User(
                key=key,
                screen_name=account.screen_name,
                bot=account.bot,
                member_since=account.created_at,
                signon_time=now,
                warning_level=account.warning_level,
                warning_at=account.warning_updated_at,
            )
            self.users[key] = user
        elif multiconn_flags != MULTICONN_MULTI or any(
            i.multiconn_flags != MULTICONN_MULTI for i in user.instances.values()
        ):
            displaced = list(user.instances.values())
            for old in displaced:
                self.detach(old, keep_user=True)
            # Nobody is left signed on: this is a new sign-on for everyone
            # watching, and messages stored meanwhile go to the new session.
            user.signon_time = now
            user.bot = account.bot
            user.offline_delivered = False
        instance = SessionInstance(
            instance_id=instance_id,
            user_key=key,
            connection=connection,
            client_id=client_id,
            ip=ip,
            connected_at=now,
            multiconn_flags=multiconn_flags,
        )
        user.instances[instance_id] = instance
        return instance, displaced

    def detach(self, instance: SessionInstance, keep_user: bool = False) -> User | None:
        """Take an instance out of the registry (idempotent). Returns its user,
        which is also removed from the registry when this was its last session
        (the caller still holds it to announce the departure), unless
        ``keep_user`` (a new session is about to replace it)."""
        user = self.users.get(instance.user_key)
        if user is None or user.instances.get(instance.instance_id) is not instance:
            return None
        instance.closed = True
        del user.instances[instance.instance_id]
        for connection in instance.secondary:
            connection.disconnect(None)
        instance.secondary.clear()
        instance.secondary_families.clear()
        instance.recent_ims = None
        instance.rendezvous = None
        self.unwatch(instance, instance.buddies)
        instance.buddies.clear()
        if not user.instances and not keep_user:
            del self.users[user.key]
        return user

    def user_of(self, instance: SessionInstance) -> User | None:
        user = self.users.get(instance.user_key)
        if user is None or user.instances.get(instance.instance_id) is not instance:
            return None
        return user

    # -- watcher index ------------------------------------------------------------------

    def watch(self, instance: SessionInstance, keys: Iterable[str]) -> list[str]:
        """Add buddies to a session's list; returns the keys that were new.
        A user already watched by ``MAX_WATCHERS`` sessions is not added."""
        added = []
        for key in keys:
            if key in instance.buddies:
                continue
            watching = self.watchers.get(key)
            if watching is None:
                watching = self.watchers[key] = set()
            elif len(watching) >= MAX_WATCHERS:
                continue
            instance.buddies.add(key)
            watching.add(instance)
            added.append(key)
        return added

    def unwatch(self, instance: SessionInstance, keys: Iterable[str]) -> None:
        for key in list(keys):
            instance.buddies.discard(key)
            sessions = self.watchers.get(key)
            if sessions is not None:
                sessions.discard(instance)
                if not sessions:
                    del self.watchers[key]

    def watching_sessions(self, key: str) -> list[SessionInstance]:
        """Online sessions that have ``key`` on their buddy list."""
        return [s for s in self.watchers.get(key, ()) if s.online and not s.closed]

    # -- delivery -----------------------------------------------------------------------

    def fan_out(self, sessions: Iterable[SessionInstance], event: Any) -> defer.Deferred[int]:
        """Queue ``event`` to every session, for callers that must wait
        (an admin broadcast reporting how many it reached, a feedbag change
        acknowledged after its commit): fires with the number queued once
        every write is queued (writes never wait). One Deferred per event,
        none per recipient; hot paths call ``deliver``."""
        return defer.succeed(self.deliver(sessions, event))

    def deliver(self, sessions: Iterable[SessionInstance], event: Any) -> int:
        """The one delivery guard: queue ``event`` to every session; one broken
        connection is logged and skipped, the rest still get it. Returns the
        number queued."""
        count = 0
        for session in sessions:
            try:
                session.connection.send_event(event)
            except Exception:
                self.log.failure(
                    "delivery to instance {instance} failed", instance=session.instance_id
                )
            else:
                count += 1
        self.delivered += count
        return count
