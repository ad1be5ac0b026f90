# -*- test-case-name: tests.test_e2e_web -*-
"""The browser protocol's commands (docs/web-protocol.md), over the same
services as OSCAR.

A browser session signs on as a classic one does: the authorizer checks the
password, the limits and the access lists and issues a BOS cookie, and the
session service redeems it for a session instance (multi-connection flag
0x01). Every command that an OSCAR client would send as a SNAC is sent as
that SNAC, to the same handler table the BOS listener uses, after the same
rate-limit check: one implementation of each rule, whatever the client.
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Any, NoReturn

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from aimserver.api.userdata import groups_in_display_order
from aimserver.registry import SessionInstance, User
from aimserver.services.base import Reply, SnacError
from aimserver.services.countedlog import CountedLog
from aimserver.services.feedbag_order import CLASS_BUDDY, CLASS_GROUP, TAG_ORDER, order_of
from aimserver.services.loginlimit import LoginLimiter
from aimserver.services.session import ALLOWED, SignOnRefused
from aimserver.store.credentials import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, roast
from aimserver.store.interfaces import (
    AccountExists,
    FeedbagItem,
    InvalidPassword,
    InvalidScreenName,
)
from aimserver.web import messages
from aimserver.web.devices import Devices, check_device_id
from aimserver.web.messages import WebError, message_cookie
from aimserver.web.render import TYPING_CODES, encode_text
from aimserver.web.rooms import Rooms
from aimserver.web.session import WebSession
from aimserver.wire.codes import ICBM, Feedbag, FoodGroup, LoginError, LoginTag, OService
from aimserver.wire.errors import MalformedData
from aimserver.wire.feedbag import pack_item, read_items
from aimserver.wire.icbm import (
    TAG_AUTO_RESPONSE,
    TAG_IM_DATA,
    TAG_STORE_IF_OFFLINE,
    ClientEvent,
)
from aimserver.wire.reader import string08
from aimserver.wire.screenname import encode_screen_name, is_account_name, normalize
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import STATUS_INVISIBLE

if TYPE_CHECKING:
    from aimserver.config import WebConfig
    from aimserver.server import AimServer

_TLV_HEAD = struct.Struct("!HH")
#: Store if offline. No host ack: whether it was delivered is read off the
#: ICBM service's count, so the handler builds no reply to throw away.
_STORE_IF_OFFLINE = _TLV_HEAD.pack(TAG_STORE_IF_OFFLINE, 0)
_AUTO_RESPONSE = _TLV_HEAD.pack(TAG_AUTO_RESPONSE, 0)
#: IMs wait to be written to the history together: until this many wait, or
#: for this long. A store call costs per owner and per commit as well as per
#: entry, so the bigger the batch the less each IM pays (bench S13). A read
#: of the history writes what waits first, so nothing is missing from it.
HISTORY_BATCH = 16_384
HISTORY_FLUSH_SECONDS = 1.0
#: Batches handed to the store and not yet written: past this many, IMs wait
#: here (the store is behind)...
MAX_HISTORY_BATCHES_WRITING = 2
#: ... and past this many waiting, new ones are dropped, counted in the log.
MAX_PENDING_HISTORY = 65_536
#: send_im's two answers, one object each (never changed once made): a dict
#: per IM, remembered for idempotent resends, is one more object the garbage
#: collector looks at, and a browser IM made several (bench S13).
_DELIVERED: dict[str, Any] = {"delivered": True}
_NOT_DELIVERED: dict[str, Any] = {"delivered": False}
#: send_im's SNAC, as counted against the rate limits, as plain ints.
_ICBM, _MSG_TO_HOST = int(FoodGroup.ICBM), int(ICBM.CHANNEL_MSG_TO_HOST)
#: Where add_buddy puts a buddy when no group is named (libpurple's default).
DEFAULT_GROUP = "Buddies"
#: What a browser session says it is, in ``list_client_sessions`` and the log.
DEFAULT_CLIENT = "aimserver web client"
#: How a refused login reads in the browser.
LOGIN_ERRORS: dict[int, tuple[str, str]] = {
    int(LoginError.INVALID_SCREEN_NAME): (messages.UNAUTHORIZED, "wrong screen name or password"),
    int(LoginError.BAD_PASSWORD): (messages.UNAUTHORIZED, "wrong screen name or password"),
    int(LoginError.SUSPENDED): (messages.UNAUTHORIZED, "this screen name may not sign on"),
    int(LoginError.DELETED_ACCOUNT): (messages.UNAUTHORIZED, "this screen name was deleted"),
    int(LoginError.RATE_LIMIT_RESERVATION): (
        messages.RATE_LIMITED,
        "too many logins: wait a moment and try again",
    ),
    int(LoginError.RATE_LIMIT): (
        messages.SESSION_ERROR,
        "this screen name is signed on in as many places as it may be",
    ),
}
#: SNAC error codes, as a browser user reads them.
SNAC_ERRORS = {
    0x0004: "not signed on",
    0x0009: "you may not do that to this user",
    0x000D: "you may not do that to this user",
    0x000E: "the request was malformed",
    0x0002: "the rate limit was exceeded",
    0x0003: "the rate limit was exceeded",
}
AWAY_MIME = b'text/aolrtf; charset="utf-8"'


class WebService(Service):
    """A service only for its stop (``twistd`` stops it before the
    registry's clean shutdown)."""

    log = Logger()

    def __init__(self, server: AimServer, config: WebConfig) -> None:
        self.server = server
        self.clock = server.clock
        self.config = config
        self.resume_seconds = config.resume_seconds
        #: IMs waiting for the history's next batch write, by owner (user
        #: key), and how many in all.
        self._history_pending: dict[str, list[object]] = {}
        self._history_waiting = 0
        self._history_writing = 0
        self._history_flush: IDelayedCall | None = None
        self._history_on = config.history
        self._seconds = self.clock.seconds
        self._history_dropped = CountedLog(self.log, self.clock, "history writes lost", 60.0)
        #: Which sessions each browser holds (``GET /web/sessions``).
        self.devices = Devices()
        #: Chat rooms for browser sessions.
        self.rooms = Rooms(self)
        self._signups = LoginLimiter(
            config.signups_per_hour / 3600,
            config.signups_per_hour,
            config.signups_per_address_per_hour / 3600,
            config.signups_per_address_per_hour,
        )
        #: user key -> the last IM event kept in its history (its browser
        #: sessions each get the same event: it is kept once).
        self._last_kept: dict[str, object] = {}
        self.handlers = server.bos_factory.handlers
        self.families = server.bos_factory.families
        self._rate_check = server.sessions.rate_limits.check
        #: session id -> its WebSession, while it lives (resumable or attached).
        self.sessions: dict[str, WebSession] = {}
        self._request_ids = 0

    # -- signing on and off ---------------------------------------------------------------

    async def create_session(self, parameters: dict[str, Any], peer: str) -> WebSession:
        """Sign on a new session instance: the authorizer's checks, then the
        session service's, as for an OSCAR login (BUCP or channel 1)."""
        screen_name = parameters["screen_name"]
        ip = peer.rpartition(":")[0] or peer
        device_id = parameters.get("device_id")
        if device_id is not None:
            self.devices.admit(check_device_id(device_id), self.clock.seconds())
        authorizer = self.server.authorizer
        refusal = authorizer.admit(screen_name, ip)
        if refusal is None:
            tlvs = TlvList.of(
                [
                    Tlv(LoginTag.SCREEN_NAME, screen_name.encode("utf-8", "replace")),
                    Tlv(LoginTag.ROASTED_PASSWORD, roast(parameters["password"].encode("utf-8"))),
                    Tlv(
                        LoginTag.CLIENT_ID_STRING,
                        parameters.get("client", DEFAULT_CLIENT).encode("utf-8"),
                    ),
                    Tlv(LoginTag.MULTICONN_FLAGS, b"\x01"),
                ]
            )
            try:
                result = authorizer.login_roasted(tlvs)
            except MalformedData:
                # A screen name that is not ASCII: no account has one.
                raise WebError(*LOGIN_ERRORS[LoginError.INVALID_SCREEN_NAME]) from None
            if isinstance(result, Deferred):
                result = await result
            authorizer.answered(result, ip)
        else:
            result = refusal
        if result.error is not None:
            error_type, message = LOGIN_ERRORS.get(
                result.error, (messages.SESSION_ERROR, f"login refused ({result.error:#06x})")
            )
            raise WebError(error_type, message)
        web = WebSession(os.urandom(16).hex(), self.clock, self.resume_seconds, self._ended)
        web.on_list_changed = self.list_changed
        if self._history_on:
            web.on_im = self._keep_received
        web.leave_room = self.rooms.leave
        try:
            attached = self.server.sessions.sign_on(result.cookie, self.families, web, peer)
            if isinstance(attached, Deferred):
                attached = await attached
        except SignOnRefused:
            raise WebError(messages.SESSION_ERROR, "the sign-on was refused") from None
        web.instance = attached.session
        web.screen_name = result.screen_name
        self.sessions[web.session_id] = web
        if device_id is not None:
            self.devices.add(device_id, web)
        return web

    async def start(self, web: WebSession) -> dict[str, Any]:
        """The rest of the sign-on, as libpurple does it: read the stored
        list, use it, client ready. Returns the buddy list."""
        groups = await self.buddy_list(web, client_ready=False)
        await self.call(web, FoodGroup.FEEDBAG, Feedbag.USE, b"", client_ready=False)
        await self.call(web, FoodGroup.OSERVICE, OService.CLIENT_READY, b"", client_ready=True)
        return groups

    def restore(self, session_id: str, token: str, last_seq: int) -> tuple[WebSession, list[str]]:
        web = self.sessions.get(session_id)
        if web is None or web.closing or not web.token_matches(token):
            raise WebError(messages.SESSION_NOT_FOUND, "no such session: sign on again")
        missed = web.replay_after(last_seq)
        if missed is None:
            raise WebError(messages.SESSION_NOT_FOUND, "too much was missed: reload")
        return web, missed

    def stopService(self) -> Deferred[int] | None:
        super().stopService()
        return self.stop()

    def stop(self) -> Deferred[int] | None:
        """The server stops: every browser session ends, its page told why
        (``server_stopping``: the page keeps the entry to sign on again),
        before the registry's clean shutdown closes the classic ones; the
        history still waiting is written (the store stops after this)."""
        for web in list(self.sessions.values()):
            web.end("server_stopping")
        self._history_dropped.flush(final=True)
        return self._flush_history(waiting=True)

    def check_rate(
        self, web: WebSession, family: int, subtype: int, client_ready: bool = True
    ) -> None:
        """Count a command the server answers itself as the SNAC an OSCAR
        client would send for it: a flood of them meets the same limits."""
        session = web.instance
        assert session is not None
        decision = self._rate_check(session, family, subtype, client_ready)
        if decision is not ALLOWED and not decision.allowed:
            self._rate_refused(web, decision)

    def _rate_refused(self, web: WebSession, decision: Any) -> NoReturn:
        if decision.disconnect:
            self.clock.callLater(0, web.end, "rate_limited")
        raise WebError(messages.RATE_LIMITED, "slow down: the rate limit was exceeded")

    # -- sign-up ----------------------------------------------------------------------------

    def server_info(self) -> dict[str, Any]:
        """What the page needs before anyone signs on."""
        return {
            "signup": self.config.signup,
            "max_sessions": self.server.config.multisession.max_sessions,
            "resume_seconds": int(self.config.resume_seconds),
        }

    async def sign_up(self, parameters: dict[str, Any], peer: str) -> dict[str, Any]:
        """Create an account, as ``aimserver user add`` does, when [web]
        signup is on: the naming and password rules, the reserved names, the
        access lists, and per-address and server-wide hourly limits."""
        if not self.config.signup:
            raise WebError(messages.UNAUTHORIZED, "sign-up is off on this server")
        name = parameters["screen_name"].strip()
        if not is_account_name(name):
            raise WebError(
                messages.VALIDATION,
                "a screen name is 3-16 letters, digits and spaces, starting with a letter",
            )
        password = parameters["password"]
        if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
            raise WebError(
                messages.VALIDATION,
                f"a password is {MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH} characters",
            )
        access = self.server.access
        ip = peer.rpartition(":")[0] or peer
        if not access.admits_name(name):
            raise WebError(messages.UNAUTHORIZED, "this screen name may not be used")
        if not self._signups.admit(ip, self.clock.seconds()):
            raise WebError(messages.RATE_LIMITED, "too many new accounts: try again later")
        try:
            account = await self.server.store.create_account(name, password)
        except AccountExists:
            raise WebError(messages.SESSION_ERROR, "that screen name is taken") from None
        except InvalidPassword:
            raise WebError(messages.VALIDATION, "a password is 4-16 characters") from None
        except InvalidScreenName as e:
            raise WebError(messages.VALIDATION, str(e)) from None
        self.log.info(
            "web: {peer} created the account {screen_name}",
            peer=peer,
            screen_name=account.screen_name,
        )
        return {"screen_name": account.screen_name}

    # -- history ----------------------------------------------------------------------------

    def _keep(self, owner: str, peer: str, outgoing: bool, text: str, at: int) -> None:
        """Queue one IM for ``owner``'s (a user key) history: written in
        batches, one store call per ``HISTORY_BATCH`` IMs or
        ``HISTORY_FLUSH_SECONDS`` (a store call per IM made the database the
        bottleneck of browser IMs, and at a few thousand a second it refused
        them). Grouped by owner here, as the store wants them: a dict lookup
        per IM on the way costs less than the store's grouping afterwards.
        Called twice for most browser IMs, so as few lookups as may be: the
        callers check that the history is on."""
        waiting = self._history_waiting
        if waiting >= MAX_PENDING_HISTORY:
            # The store is not keeping up at all: this one is dropped, counted.
            self._history_dropped.note(
                "dropped", "history writes dropped: the store is not keeping up"
            )
            return
        records = self._history_pending.get(owner)
        if records is None:
            records = self._history_pending[owner] = []
        records += (peer, outgoing, text, at)  # flat: see IHistoryStore.add_history_many
        self._history_waiting = waiting = waiting + 1
        if waiting >= HISTORY_BATCH:
            self._flush_history()
        elif self._history_flush is None:
            self._history_flush = self.clock.callLater(HISTORY_FLUSH_SECONDS, self._flush_history)

    def _flush_history(self, *, waiting: bool = False) -> Deferred[int] | None:
        """Hand what waits to the store, unless it is behind (then the batch
        that is written first flushes it). ``waiting`` for a read of the
        history, which must see everything: then it goes at once."""
        if self._history_flush is not None and self._history_flush.active():
            self._history_flush.cancel()
        self._history_flush = None
        if not self._history_pending:
            return None
        if self._history_writing >= MAX_HISTORY_BATCHES_WRITING and not waiting:
            return None
        batch, self._history_pending = self._history_pending, {}
        count, self._history_waiting = self._history_waiting, 0
        self._history_writing += 1
        d = self.server.store.add_history_many(
            batch, self.config.history_messages, self.config.history_days * 86400
        )
        d.addErrback(self._history_failed, count)
        d.addBoth(self._history_written)
        return d

    def _history_written(self, result: object) -> object:
        self._history_writing -= 1
        if self._history_pending and (
            self._history_waiting >= HISTORY_BATCH or self._history_flush is None
        ):
            self._flush_history()
        return result

    def _history_failed(self, failure: Any, count: int) -> None:
        self._history_dropped.note(
            "failed",
            "history writes failed ({count} IMs): {error}",
            count=count,
            error=failure.getErrorMessage(),
        )

    def _keep_received(
        self, web: WebSession, event: object, fields: dict[str, Any], now: float
    ) -> None:
        instance = web.instance
        if instance is None:
            return
        key = instance.user_key
        last_kept = self._last_kept
        if last_kept.get(key) is event:
            return
        last_kept[key] = event
        self._keep(key, fields["from"], False, fields["text"], int(now))

    async def history(self, web: WebSession, parameters: dict[str, Any]) -> dict[str, Any]:
        me = web.instance
        assert me is not None
        user = self.server.registry.user_of(me)
        if user is None or not self.config.history:
            return {"messages": []}
        if self._history_pending:
            # Read what was said up to now, the batch not yet written included.
            flushed = self._flush_history(waiting=True)
            if flushed is not None:
                await flushed
        entries = await self.server.store.recent_history(
            user.screen_name, parameters.get("with"), parameters.get("limit", 100)
        )
        return {
            "messages": [
                {"with": e.peer, "outgoing": e.outgoing, "text": e.text, "at": e.at}
                for e in entries
            ]
        }

    def _ended(self, web: WebSession) -> None:
        self.sessions.pop(web.session_id, None)
        self.devices.remove(web)
        self.rooms.leave_all(web)
        instance = web.instance
        if instance is not None:
            user = self.server.registry.user_of(instance)
            if user is None or not any(
                isinstance(i.connection, WebSession) and i is not instance
                for i in user.instances.values()
            ):
                self._last_kept.pop(instance.user_key, None)
            self.server.sessions.closing(instance, web)
            self.server.sessions.connection_lost(instance, web)
        self.log.info(
            "web session {session_id} ended: {reason}",
            session_id=web.session_id,
            reason=web.end_reason,
        )

    # -- SNACs, as an OSCAR client sends them ------------------------------------------------

    async def call(
        self,
        web: WebSession,
        family: int,
        subtype: int,
        body: bytes,
        client_ready: bool = True,
        counted: bool = True,
    ) -> list[Reply]:
        replies = self.call_now(web, family, subtype, body, client_ready, counted)
        if isinstance(replies, Deferred):
            return await replies
        return replies

    def call_now(
        self,
        web: WebSession,
        family: int,
        subtype: int,
        body: bytes,
        client_ready: bool = True,
        counted: bool = True,
    ) -> list[Reply] | Deferred[list[Reply]]:
        """``call`` without a coroutine: the replies now when the handler
        answers at once (an IM to someone online), else a Deferred. Raises
        (or fails with) ``WebError``."""
        session = web.instance
        assert session is not None
        if counted:
            self.check_rate(web, family, subtype, client_ready)
        handler = self.handlers[(family, subtype)]
        self._request_ids = (self._request_ids + 1) & 0x7FFFFFFF
        header = SnacHeader(family, subtype, 0, self._request_ids)
        try:
            replies = handler(session, header, body)
        except SnacError as e:
            raise _refused(e) from None
        if isinstance(replies, Deferred):
            return replies.addCallbacks(lambda r: list(r or []), _refused_failure)
        return list(replies or [])

    # -- commands --------------------------------------------------------------------------

    async def _items(
        self, web: WebSession, client_ready: bool = True, counted: bool = True
    ) -> list[FeedbagItem]:
        """The stored list, read as a client reads it (13,04); ``counted``:
        against the rate limits (not when the server pushes it)."""
        replies = await self.call(
            web, FoodGroup.FEEDBAG, Feedbag.QUERY, b"", client_ready, counted=counted
        )
        items: list[FeedbagItem] = []
        for reply in replies:
            if reply.subtype != Feedbag.REPLY:
                continue
            # u8 version, u16 count, the items, u32 last-modified time.
            for item in read_items(reply.body[3:-4], "13,06 items"):
                items.append(
                    FeedbagItem(
                        item.name.decode("utf-8", "replace"),
                        item.group_id,
                        item.item_id,
                        item.class_id,
                        item.attributes,
                    )
                )
        return items

    async def buddy_list(self, web: WebSession, client_ready: bool = True) -> dict[str, Any]:
        items = await self._items(web, client_ready)
        return self._groups(web, items)

    def _groups(self, web: WebSession, items: list[FeedbagItem]) -> dict[str, Any]:
        me = web.instance
        assert me is not None
        groups = groups_in_display_order(tuple(items))
        for group in groups:
            group["name"] = group.pop("group_name")
            del group["group_id"]
            group["buddies"] = [self._buddy(b["name"], me.user_key) for b in group["buddies"]]
        return {"groups": groups}

    def list_changed(self, web: WebSession) -> None:
        """Another session of the user edited the stored list: push the new
        one, once for the whole edit (its SNACs come in one turn or a few)."""
        if web.list_refresh_pending or web.closing:
            return
        web.list_refresh_pending = True

        async def push() -> None:
            web.list_refresh_pending = False
            if web.closing or web.instance is None:
                return
            items = await self._items(web, counted=False)
            web.push("buddy_list", self._groups(web, items))

        def later() -> None:
            d = Deferred.fromCoroutine(push())
            d.addErrback(lambda f: self.log.failure("pushing the buddy list", f))

        self.clock.callLater(0, later)

    async def add_buddy(self, web: WebSession, parameters: dict[str, Any]) -> dict[str, Any]:
        """As libpurple adds one: in one cluster (13,11 .. 13,12), the group
        if it is new, the buddy, and the orders that list them (13,09)."""
        name, group_name = parameters["name"], parameters.get("group") or DEFAULT_GROUP
        items = await self._items(web)
        key = normalize(name)
        if any(i.class_id == CLASS_BUDDY and normalize(i.name) == key for i in items):
            return {"buddy_list": self._groups(web, items)}
        by_key = {i.key: i for i in items}
        root = by_key.get((0, 0)) or FeedbagItem("", 0, 0, CLASS_GROUP, b"")
        group = next(
            (
                i
                for i in items
                if i.class_id == CLASS_GROUP
                and i.group_id != 0
                and i.name.lower() == group_name.lower()
            ),
            None,
        )
        inserts: list[FeedbagItem] = []
        updates: list[FeedbagItem] = []
        if (0, 0) not in by_key:
            inserts.append(root)
        if group is None:
            group_id = _free_id({i.group_id for i in items})
            group = FeedbagItem(group_name, group_id, 0, CLASS_GROUP, b"")
            inserts.append(group)
            root = _with_order(root, [*_order(root), group_id])
            updates.append(root)
        item_id = _free_id({i.item_id for i in items})
        inserts.append(FeedbagItem(name, group.group_id, item_id, CLASS_BUDDY, b""))
        updated_group = _with_order(group, [*_order(group), item_id])
        if group in inserts:
            inserts[inserts.index(group)] = updated_group
        else:
            updates.append(updated_group)
        await self._edit(web, inserts=inserts, updates=updates)
        return {"buddy_list": await self.buddy_list(web)}

    async def remove_buddy(self, web: WebSession, parameters: dict[str, Any]) -> dict[str, Any]:
        key = normalize(parameters["name"])
        items = await self._items(web)
        gone = [i for i in items if i.class_id == CLASS_BUDDY and normalize(i.name) == key]
        if not gone:
            raise WebError(messages.SESSION_ERROR, f"{parameters['name']} is not on the list")
        by_key = {i.key: i for i in items}
        updates = []
        for buddy in gone:
            group = by_key.get((buddy.group_id, 0))
            if group is not None:
                order = [i for i in _order(group) if i != buddy.item_id]
                updates.append(_with_order(group, order))
        await self._edit(web, deletes=gone, updates=updates)
        return {"buddy_list": await self.buddy_list(web)}

    async def _edit(
        self,
        web: WebSession,
        inserts: list[FeedbagItem] = [],  # noqa: B006 (read only)
        updates: list[FeedbagItem] = [],  # noqa: B006
        deletes: list[FeedbagItem] = [],  # noqa: B006
    ) -> None:
        await self.call(web, FoodGroup.FEEDBAG, Feedbag.START_CLUSTER, b"")
        try:
            for subtype, items in (
                (Feedbag.INSERT_ITEM, inserts),
                (Feedbag.UPDATE_ITEM, updates),
                (Feedbag.DELETE_ITEM, deletes),
            ):
                if not items:
                    continue
                body = b"".join(
                    pack_item(
                        i.name.encode("utf-8"), i.group_id, i.item_id, i.class_id, i.attributes
                    )
                    for i in items
                )
                replies = await self.call(web, FoodGroup.FEEDBAG, subtype, body)
                status = b"".join(r.body for r in replies if r.subtype == Feedbag.STATUS)
                if status.strip(b"\x00"):
                    raise WebError(messages.SESSION_ERROR, "the buddy list refused the change")
        finally:
            await self.call(web, FoodGroup.FEEDBAG, Feedbag.END_CLUSTER, b"")

    async def sign_off_location(
        self, web: WebSession, parameters: dict[str, Any]
    ) -> dict[str, Any]:
        """Close another session of this screen name (the locations page)."""
        me = web.instance
        assert me is not None
        user = self.server.registry.user_of(me)
        target = None if user is None else user.instances.get(parameters["instance_id"])
        if target is None or target.closed:
            raise WebError(messages.SESSION_ERROR, "no such location")
        if target is me:
            raise WebError(messages.VALIDATION, "use close_session for this one")
        target.connection.disconnect(None)
        return {}

    def _buddy(self, name: str, viewer_key: str) -> dict[str, Any]:
        user = self.server.registry.by_key(normalize(name))
        online = (
            user is not None
            and bool(user.online_instances())
            and self.server.presence.visible_to(user, viewer_key)
        )
        return {"name": name, "online": online}

    def send_im(
        self, web: WebSession, parameters: dict[str, Any]
    ) -> dict[str, Any] | Deferred[dict[str, Any]]:
        """No coroutine on the way: most IMs are routed at once, and a
        browser IM's cost was half request machinery (bench S13)."""
        earlier = web.sends.get(parameters["client_message_id"])
        if earlier is not None:
            return earlier
        to, text = parameters["to"], parameters["text"]
        if not to.isascii():
            raise WebError(messages.VALIDATION, "to must be an ASCII screen name")
        icbm = self.server.icbm
        routed = icbm.routed
        if parameters.get("auto_response"):
            # As from an OSCAR client: the server answers for away users
            # itself, so this one is dropped (the ICBM handler's rule).
            name = encode_screen_name(to)
            data = encode_text(text)
            body = b"".join(
                (
                    message_cookie(),
                    b"\x00\x01",
                    bytes((len(name),)),
                    name,
                    _TLV_HEAD.pack(TAG_IM_DATA, len(data)),
                    data,
                    _STORE_IF_OFFLINE,
                    _AUTO_RESPONSE,
                )
            )
            replies = self.call_now(web, FoodGroup.ICBM, ICBM.CHANNEL_MSG_TO_HOST, body)
        else:
            me = web.instance
            assert me is not None
            decision = self._rate_check(me, _ICBM, _MSG_TO_HOST, True)
            if decision is not ALLOWED and not decision.allowed:
                self._rate_refused(web, decision)
            try:
                replies = icbm.send_text_im(me, message_cookie(), to, encode_text(text), text)
            except SnacError as e:
                raise _refused(e) from None
            if type(replies) is not list:
                replies.addErrback(_refused_failure)  # type: ignore[union-attr]
        if type(replies) is not list:
            # Stored for an offline recipient: answered once it is.
            return replies.addCallback(lambda _: self._sent(web, parameters, routed))  # type: ignore[union-attr]
        return self._sent(web, parameters, routed)

    def _sent(self, web: WebSession, parameters: dict[str, Any], routed: int) -> dict[str, Any]:
        result = _DELIVERED if self.server.icbm.routed > routed else _NOT_DELIVERED
        web.ims_sent += 1
        web.remember(parameters["client_message_id"], result)
        me = web.instance
        user = self.server.registry.user_of(me) if me is not None else None
        if user is not None:
            if self._history_on:
                self._keep(
                    user.key, parameters["to"], True, parameters["text"], int(self._seconds())
                )
            if len(user.instances) > 1:
                self._echo_to_siblings(web, user, parameters)
        return result

    def _echo_to_siblings(self, web: WebSession, user: User, parameters: dict[str, Any]) -> None:
        """The same conversation on every device: the user's other browser
        sessions see what this one sent (classic clients get nothing new)."""
        me = web.instance
        for sibling in user.online_instances():
            other = sibling.connection
            if sibling is not me and isinstance(other, WebSession):
                other.push(
                    "im_sent",
                    {
                        "to": parameters["to"],
                        "text": parameters["text"],
                        "client_message_id": parameters["client_message_id"],
                    },
                )

    async def typing(self, web: WebSession, parameters: dict[str, Any]) -> dict[str, Any]:
        event = ClientEvent(b"\x00" * 8, 1, parameters["to"], TYPING_CODES[parameters["state"]])
        await self.call(web, FoodGroup.ICBM, ICBM.CLIENT_EVENT, event.pack())
        return {}

    async def update_state(self, web: WebSession, parameters: dict[str, Any]) -> dict[str, Any]:
        if "away_message" in parameters:
            text = (parameters["away_message"] or "").encode("utf-8")
            body = TlvList.of([Tlv(0x0003, AWAY_MIME), Tlv(0x0004, text)]).pack_list()
            await self.call(web, FoodGroup.LOCATE, 0x0004, body)
        if "profile" in parameters:
            text = parameters["profile"].encode("utf-8")
            body = TlvList.of([Tlv(0x0001, AWAY_MIME), Tlv(0x0002, text)]).pack_list()
            await self.call(web, FoodGroup.LOCATE, 0x0004, body)
        if "invisible" in parameters:
            # 01,1E with the status word (TLV 0x0006), its invisible bit set or not.
            me = web.instance
            assert me is not None
            status = me.status & ~STATUS_INVISIBLE
            if parameters["invisible"]:
                status |= STATUS_INVISIBLE
            body = Tlv(0x0006, struct.pack("!I", status)).pack()
            await self.call(web, FoodGroup.OSERVICE, OService.SET_USER_INFO_FIELDS, body)
        if "idle_seconds" in parameters:
            body = struct.pack("!I", parameters["idle_seconds"])
            await self.call(web, FoodGroup.OSERVICE, OService.IDLE_NOTIFICATION, body)
        return {}

    async def warn(self, web: WebSession, parameters: dict[str, Any]) -> dict[str, Any]:
        body = struct.pack("!H", 1 if parameters.get("anonymous") else 0) + string08(
            encode_screen_name(parameters["name"])
        )
        replies = await self.call(web, FoodGroup.ICBM, ICBM.EVIL_REQUEST, body)
        level = next(
            (struct.unpack("!HH", r.body[:4])[1] for r in replies if r.subtype == ICBM.EVIL_REPLY),
            0,
        )
        return {"warning_level": level / 10}

    def session_info(self, web: WebSession) -> dict[str, Any]:
        me = web.instance
        assert me is not None
        user = self.server.registry.user_of(me)
        now = self.clock.seconds()
        return {
            "screen_name": user.screen_name if user else "",
            "instance_id": me.instance_id,
            "signed_on_at": int(me.connected_at),
            "away_message": (me.away_message or b"").decode("utf-8", "replace")
            if me.away
            else None,
            "idle_seconds": 0 if me.idle_since is None else int(now - me.idle_since),
            "warning_level": self.server.presence.warning_level(user) / 10 if user else 0,
            "sessions": len(user.online_instances()) if user else 0,
        }

    def session_statistics(self, web: WebSession) -> dict[str, Any]:
        """What this session has done, for the page's diagnostics."""
        return {
            "events": web.seq,
            "unacked": len(web.kept),
            "resumes": web.resumes,
            "ims_sent": web.ims_sent,
            "ims_received": web.ims_received,
            "seconds": int(self.clock.seconds() - web.created_at),
        }

    def client_sessions(self, web: WebSession) -> dict[str, Any]:
        me = web.instance
        assert me is not None
        user = self.server.registry.user_of(me)
        now = self.clock.seconds()
        return {
            "sessions": [
                _location(instance, instance is me, now)
                for instance in (user.live_instances() if user else [])
            ]
        }


def _refused(error: SnacError) -> WebError:
    return WebError(
        messages.SESSION_ERROR, SNAC_ERRORS.get(error.code, f"refused ({error.code:#06x})")
    )


def _refused_failure(failure: Any) -> Any:
    failure.trap(SnacError)
    raise _refused(failure.value)


def _order(container: FeedbagItem) -> list[int]:
    try:
        return order_of(TlvList.unpack_list(container.attributes, "order"))
    except MalformedData:
        return []


def _with_order(container: FeedbagItem, ids: list[int]) -> FeedbagItem:
    """``container`` with its order TLV (0x00C8) set to ``ids``, the rest kept."""
    try:
        others = [
            t for t in TlvList.unpack_list(container.attributes, "group") if t.tag != TAG_ORDER
        ]
    except MalformedData:
        others = []
    order = Tlv(TAG_ORDER, struct.pack(f"!{len(ids)}H", *ids))
    attributes = TlvList.of([*others, order]).pack_list()
    return FeedbagItem(
        container.name, container.group_id, container.item_id, container.class_id, attributes
    )


def _free_id(used: set[int]) -> int:
    """The lowest ID in 1-0x7FFF no item uses (as clients pick them)."""
    for candidate in range(1, 0x8000):
        if candidate not in used:
            return candidate
    raise WebError(messages.SESSION_ERROR, "the buddy list is full")


def _location(instance: SessionInstance, this: bool, now: float) -> dict[str, Any]:
    return {
        "instance_id": instance.instance_id,
        "client": instance.client_id,
        "address": instance.ip,
        "since": int(instance.connected_at),
        "idle_seconds": 0 if instance.idle_since is None else int(now - instance.idle_since),
        "away": instance.away,
        "this": this,
    }
