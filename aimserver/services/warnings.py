# -*- test-case-name: tests.test_service_warnings -*-
"""Warnings ("evil"): a user-level level that others raise and time lowers.

The classic rules (ICBM 04,08): a named warning adds 10 %, an anonymous one
3 %; you cannot warn yourself, someone offline, or someone already at 100 %;
and you may only warn someone who has sent you an IM you have not already
warned them for in the last hour (at most 3 outstanding). The level decays by
5 % every 5 minutes for the user, whether or not any session is connected,
and is persisted so a sign-off does not reset it (MULTISESSION.md §15).
"""

from __future__ import annotations

import struct
from collections import OrderedDict

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from aimserver.registry import SessionInstance, User, UserRegistry
from aimserver.services.base import Replies, Reply, SnacError, acting_user
from aimserver.services.events import Warned
from aimserver.services.presence import Presence, decayed
from aimserver.store.interfaces import IWarningStore
from aimserver.wire.codes import ICBM, FoodGroup, SnacErrorCode
from aimserver.wire.reader import Reader
from aimserver.wire.screenname import decode_screen_name, normalize
from aimserver.wire.snac import SnacHeader
from aimserver.wire.userinfo import UserInfo

MAX_LEVEL = 1000
NAMED_WARNING = 100
ANONYMOUS_WARNING = 30
#: How long an IM entitles its recipient to warn the sender, and how many
#: warnings one sender can owe a recipient at once.
CREDIT_LIFETIME = 3600.0
MAX_CREDITS = 3
MAX_TRACKED_PAIRS = 100_000

SEND_AS_ANONYMOUS = 0x0001


class WarningService:
    log = Logger()

    def __init__(
        self, registry: UserRegistry, presence: Presence, store: IWarningStore, clock: IReactorTime
    ) -> None:
        self.registry = registry
        self.presence = presence
        self.store = store
        self.clock = clock
        #: (warner, target) -> times the target IMed the warner (unspent credits).
        self._credits: OrderedDict[tuple[str, str], list[float]] = OrderedDict()

    def im_sent(self, sender_key: str, recipient_key: str) -> None:
        """The recipient may now warn the sender once more."""
        # On every IM: keep it to a dict lookup and an append; expired times
        # are dropped when a credit is spent.
        key = (recipient_key, sender_key)
        times = self._credits.get(key)
        if times is None:
            times = self._credits[key] = []
            if len(self._credits) > MAX_TRACKED_PAIRS:
                self._credits.popitem(last=False)
        times.append(self.clock.seconds())
        if len(times) > MAX_CREDITS:
            del times[0]

    def _spend_credit(self, warner_key: str, target_key: str) -> bool:
        now = self.clock.seconds()
        times = [
            t for t in self._credits.get((warner_key, target_key), []) if now - t < CREDIT_LIFETIME
        ]
        if not times:
            self._credits.pop((warner_key, target_key), None)
            return False
        self._credits[(warner_key, target_key)] = times[1:]
        return True

    def apply_decay(self, user: User) -> int:
        """Store the decayed level on the user (only the sweep does this, so
        every drop is announced and persisted); reads use
        ``Presence.warning_level``, which does not change anything."""
        user.warning_level, user.warning_at = decayed(
            user.warning_level, user.warning_at, self.clock.seconds()
        )
        return user.warning_level

    def evil_request(self, session: SessionInstance, request: SnacHeader, body: bytes) -> Replies:
        reader = Reader(body, "evil request")
        send_as = reader.u16("send as")
        target_key = normalize(decode_screen_name(reader.string08("screen name")))
        warner = acting_user(self.registry, session)
        if target_key == warner.key:
            raise SnacError(SnacErrorCode.NOT_SUPPORTED_BY_HOST)
        target = self.registry.by_key(target_key)
        if (
            target is None
            or not target.online_instances()
            or not self.presence.visible_to(target, warner.key)
        ):
            # Offline and invisible get the same answer, before any other check.
            raise SnacError(SnacErrorCode.NOT_LOGGED_ON)
        level = self.presence.warning_level(target)
        if target.bot or level >= MAX_LEVEL or not self._spend_credit(warner.key, target_key):
            raise SnacError(SnacErrorCode.REQUEST_DENIED)
        anonymous = bool(send_as & SEND_AS_ANONYMOUS)
        new_level = min(MAX_LEVEL, level + (ANONYMOUS_WARNING if anonymous else NAMED_WARNING))
        delta = new_level - level
        self.log.info(
            "{warner} warned {target} ({kind}): now {new_level}",
            warner=warner.screen_name,
            target=target.screen_name,
            kind="anonymous" if anonymous else "named",
            new_level=new_level,
        )
        warner_info = (
            None
            if anonymous
            else UserInfo(warner.screen_name, self.presence.warning_level(warner)).pack()
        )
        self._set_level(target, new_level, warner_info)
        return [Reply(FoodGroup.ICBM, ICBM.EVIL_REPLY, struct.pack("!HH", delta, new_level))]

    def admin_warning(self, target: User, change: int) -> int:
        """An admin raises (or, with a negative ``change``, lowers) the
        user's warning level by ``change`` tenths of a percent, within 0-100 %,
        as an anonymous warning: no credit is needed, and bots are not
        spared. Its sessions are told as of any warning; returns the new level."""
        level = self.presence.warning_level(target)
        new_level = max(0, min(MAX_LEVEL, level + change))
        self.log.info(
            "An admin changed the warning level of {target} by {change}: now {new_level}",
            target=target.screen_name,
            change=change,
            new_level=new_level,
        )
        self._set_level(target, new_level, None)
        return new_level

    def _set_level(self, target: User, new_level: int, warner_info: bytes | None) -> None:
        target.warning_level = new_level
        target.warning_at = self.clock.seconds()
        # Every attached session, those still signing on included: the level
        # is the user's, and a session that took its snapshot already must
        # not keep the old one.
        self.registry.deliver(target.live_instances(), Warned(new_level, warner_info))
        self.presence.warning_changed(target)
        self.persist(target)

    def persist(self, user: User) -> None:
        d = self.store.set_warning(user.screen_name, user.warning_level, int(user.warning_at))
        d.addErrback(
            lambda f: self.log.failure(
                "saving the warning level of {screen_name}", f, screen_name=user.screen_name
            )
        )

    def sweep(self) -> None:
        """Apply decay to every signed-on warned user; tell them and their
        watchers when it drops (their self info, and a presence update)."""
        for user in list(self.registry):
            if user.warning_level > 0:
                with self.log.failuresHandled(
                    "warning decay of {screen_name}", screen_name=user.screen_name
                ):
                    self._decay(user)

    def _decay(self, user: User) -> None:
        before = user.warning_level
        if self.apply_decay(user) == before:
            return
        self.persist(user)
        self.presence.warning_changed(user)
        self.presence.send_self_info(user)
