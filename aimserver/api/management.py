# -*- test-case-name: tests.test_e2e_api -*-
"""The management API's endpoints: the paths, methods, JSON fields and
status codes of Open OSCAR Server's (docs/management-api-notes.md), so that
admins' scripts written against it work unchanged, plus what multisession
needs (each session instance listed, one instance closed).

Unlike the Go server, every error is JSON: ``{"error": ..., "error_type":
..., "message": ...}`` (``message`` is the Go server's field), and changes
an admin makes reach the live server at once: deleting or suspending an
account signs its sessions off.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib.metadata
import importlib.resources
import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime

from aimserver import console
from aimserver.api.http import (
    ApiError,
    ApiRequest,
    ApiResponse,
    Route,
    bad_request,
    not_found,
    route,
)
from aimserver.registry import SessionInstance, User, UserRegistry
from aimserver.services.auth import Authorizer
from aimserver.services.chat import ChatService
from aimserver.services.icbm import IcbmService
from aimserver.services.motd import MotdService
from aimserver.services.session import SessionService
from aimserver.store.interfaces import (
    AccountExists,
    InvalidPassword,
    InvalidRoomNameError,
    InvalidScreenName,
    IUserStore,
    RoomExists,
)
from aimserver.wire.chat import EXCHANGE_PRIVATE, EXCHANGE_PUBLIC
from aimserver.wire.codes import DisconnectReason
from aimserver.wire.screenname import normalize
from aimserver.wire.userinfo import STATUS_INVISIBLE

if TYPE_CHECKING:
    from aimserver.server import AimServer

#: The Go server's values of ``suspended_status``; this server keeps one
#: flag, so any of them suspends and "" lifts it.
SUSPENDED_STATUSES = frozenset({"deleted", "expired", "suspended", "suspended_age"})


def text(status: int, sentence: str) -> ApiResponse:
    """The Go server's plain-text success sentences (scripts may print them)."""
    return ApiResponse(status, sentence.encode("utf-8"), "text/plain; charset=utf-8")


NO_CONTENT = ApiResponse(204)


class ManagementApi:
    def __init__(self, server: AimServer, timeouts: dict[str, float | None]) -> None:
        #: The console's helpers act on the server (kick, broadcast): the
        #: API answers with them, so both do the same.
        self.server = server
        self.registry: UserRegistry = server.registry
        self.store: IUserStore = server.store
        self.chat: ChatService = server.chat
        self.icbm: IcbmService = server.icbm
        self.sessions: SessionService = server.sessions
        self.authorizer: Authorizer = server.authorizer
        self.motd: MotdService = server.motd
        self.clock: IReactorTime = server.clock
        #: The server's default timeouts, in seconds, as /stats shows them.
        self.timeouts = timeouts
        self.started = self.clock.seconds()

    def routes(self) -> list[Route]:
        return [
            route("GET", "/user", self.list_users),
            route("POST", "/user", self.create_user),
            route("DELETE", "/user", self.delete_user),
            route("PUT", "/user/password", self.set_password),
            route("GET", "/user/{screenname}/account", self.get_account),
            route("PATCH", "/user/{screenname}/account", self.patch_account),
            route("GET", "/session", self.list_sessions),
            route("GET", "/session/{screenname}", self.get_session),
            route("DELETE", "/session/{screenname}", self.close_sessions),
            route("DELETE", "/session/{screenname}/{instance}", self.close_instance),
            route("GET", "/chat/room/public", self.public_rooms),
            route("POST", "/chat/room/public", self.create_public_room),
            route("DELETE", "/chat/room/public", self.delete_public_rooms),
            route("GET", "/chat/room/private", self.private_rooms),
            route("POST", "/instant-message", self.instant_message),
            route("GET", "/version", self.version),
            route("GET", "/stats", self.stats),
            route("GET", "/openapi.json", self.openapi),
            route("POST", "/broadcast", self.broadcast),
            route("GET", "/motd", self.get_motd),
            route("PUT", "/motd", self.set_motd),
        ]

    # -- users --------------------------------------------------------------------------

    def list_users(self, request: ApiRequest) -> Deferred[ApiResponse]:
        return self.store.list_accounts().addCallback(
            lambda accounts: ApiResponse(200, [_user_json(a) for a in accounts])
        )

    def create_user(self, request: ApiRequest) -> Deferred[ApiResponse]:
        data = request.fields({"screen_name": str, "password": str})

        async def create() -> ApiResponse:
            try:
                await self.store.create_account(data["screen_name"], data["password"])
            except AccountExists:
                raise ApiError(409, "conflict", "user already exists") from None
            except (InvalidScreenName, InvalidPassword) as e:
                raise bad_request(str(e)) from None
            return text(201, "User account created successfully.")

        return ensureDeferred(create())

    def delete_user(self, request: ApiRequest) -> Deferred[ApiResponse]:
        """The account goes, and so do its live sessions (the Go server
        leaves them signed on)."""
        name = request.fields({"screen_name": str})["screen_name"]

        def deleted(existed: bool) -> ApiResponse:
            if not existed:
                raise not_found("user does not exist")
            self._sign_off(name, DisconnectReason.ACCOUNT_DELETED)
            return NO_CONTENT

        return self.store.delete_account(name).addCallback(deleted)

    def set_password(self, request: ApiRequest) -> Deferred[ApiResponse]:
        """Live sessions stay signed on (they proved the old password); the
        next login needs the new one."""
        data = request.fields({"screen_name": str, "password": str})

        async def change() -> ApiResponse:
            try:
                found = await self.store.set_password(data["screen_name"], data["password"])
            except InvalidPassword as e:
                raise bad_request(str(e)) from None
            if not found:
                raise not_found("user does not exist")
            return NO_CONTENT

        return ensureDeferred(change())

    def get_account(self, request: ApiRequest) -> Deferred[ApiResponse]:
        name = request.params["screenname"]
        return self.store.get_account(name).addCallback(self._account_json, name)

    def _account_json(self, account: Any, name: str) -> ApiResponse:
        if account is None:
            raise not_found("user not found")
        user = self.registry.get(name)
        profile = ""
        if user is not None:
            profiles = [s.profile for s in user.instances.values() if s.profile]
            profile = profiles[-1].decode("utf-8", "replace") if profiles else ""
        return ApiResponse(
            200,
            {
                **_user_json(account),
                "profile": profile,
                "email_address": f"<{account.email}>" if account.email else "",
                "reg_status": account.registration_status,
                "confirmed": account.confirmed,
            },
        )

    def patch_account(self, request: ApiRequest) -> Deferred[ApiResponse]:
        """``suspended_status`` (any of the Go server's values suspends, ""
        lifts it) and ``is_bot``; 304 when nothing changes. Suspending signs
        the account's live sessions off at once."""
        name = request.params["screenname"]

        async def patch() -> ApiResponse:
            account = await self.store.get_account(name)
            if account is None:
                raise not_found("user not found")
            data = request.fields({}, {"suspended_status": str, "is_bot": bool})
            status = data.get("suspended_status")
            if status is not None and status != "" and status not in SUSPENDED_STATUSES:
                raise bad_request(
                    "suspended_status must be empty str or one of"
                    " deleted,expired,suspended,suspended_age"
                )
            changed = False
            if status is not None and (status != "") != account.suspended:
                await self.store.set_suspended(name, status != "")
                changed = True
                if status != "":
                    self._sign_off(name, None)
            bot = data.get("is_bot")
            if bot is not None and bot != account.bot:
                await self.store.set_bot(name, bot)
                changed = True
            return NO_CONTENT if changed else ApiResponse(304)

        return ensureDeferred(patch())

    # -- sessions -----------------------------------------------------------------------

    def list_sessions(self, request: ApiRequest) -> ApiResponse:
        """Every online user with its instances. Built in the reactor thread
        (the registry is only safe there), so it is kept cheap: about 3 us a
        user, 10,000 sessions in a fraction of the 100 ms the API promises
        (bench S12). The cyclic collector is paused meanwhile: the 20,000
        dicts would otherwise set off collections that walk every live
        session's objects, doubling the time, and they are all freed once
        encoded, so there is nothing for it to find."""
        now = self.clock.seconds()
        with _collector_paused():
            sessions = [
                entry
                for entry in (_session_json(user, now) for user in self.registry)
                if entry is not None
            ]
            data = orjson.dumps({"count": len(sessions), "sessions": sessions})
            del sessions
        return ApiResponse(200, data)

    def get_session(self, request: ApiRequest) -> ApiResponse:
        user = self._online(request.params["screenname"])
        return ApiResponse(
            200, {"count": 1, "sessions": [_session_json(user, self.clock.seconds())]}
        )

    def close_sessions(self, request: ApiRequest) -> ApiResponse:
        """Every instance of the user is signed off; the account is untouched."""
        name = request.params["screenname"]
        self._online(name)
        console.kick(self.server, name)
        return NO_CONTENT

    def close_instance(self, request: ApiRequest) -> ApiResponse:
        """One session instance (by its ``instance_id``) is signed off."""
        name = request.params["screenname"]
        self._online(name)
        try:
            instance_id = int(request.params["instance"])
        except ValueError:
            raise bad_request("the instance must be a number") from None
        try:
            console.kick(self.server, name, instance_id)
        except console.NotSignedOn:
            raise not_found("session instance not found") from None
        return NO_CONTENT

    def _online(self, name: str) -> User:
        user = self.registry.get(name)
        if user is None or not user.online_instances():
            raise not_found("session not found")
        return user

    def _sign_off(self, name: str, reason: int | None) -> None:
        user = self.registry.get(name)
        if user is not None:
            for session in list(user.instances.values()):
                session.connection.disconnect(reason)

    # -- chat rooms ---------------------------------------------------------------------

    def public_rooms(self, request: ApiRequest) -> Deferred[ApiResponse]:
        def listed(rooms: list[Any]) -> ApiResponse:
            return ApiResponse(
                200,
                [self._room_json(EXCHANGE_PUBLIC, room.name, room.created_at) for room in rooms],
            )

        return self.store.list_public_rooms().addCallback(listed)

    def create_public_room(self, request: ApiRequest) -> Deferred[ApiResponse]:
        name = request.fields({"name": str})["name"]

        async def create() -> ApiResponse:
            try:
                await self.store.create_public_room(name, int(time.time()))
            except RoomExists:
                raise ApiError(409, "conflict", "Chat room already exists.") from None
            except InvalidRoomNameError as e:
                raise bad_request(str(e)) from None
            return text(201, "Chat room created successfully.")

        return ensureDeferred(create())

    def delete_public_rooms(self, request: ApiRequest) -> Deferred[ApiResponse]:
        """Rooms that do not exist are ignored; members of a deleted room
        stay until they leave, and nobody new gets in."""
        names = request.fields({"names": list})["names"]
        if not names:
            raise bad_request("no chat room names provided")
        if not all(isinstance(n, str) for n in names) or len(names) > 1000:
            raise bad_request("names must be at most 1000 strings")

        async def delete() -> ApiResponse:
            for name in names:
                await self.store.delete_public_room(name)
            return NO_CONTENT

        return ensureDeferred(delete())

    def private_rooms(self, request: ApiRequest) -> ApiResponse:
        rooms = [
            self._room_json(room.exchange, room.name, room.created_at)
            for room in self.chat.rooms.rooms.values()
            if room.exchange == EXCHANGE_PRIVATE
        ]
        return ApiResponse(200, rooms)

    def _room_json(self, exchange: int, name: str, created_at: int) -> dict[str, Any]:
        from urllib.parse import quote_plus

        room = self.chat.rooms.find(exchange, name)
        participants = (
            [{"id": m.user.key, "screen_name": m.user.screen_name} for m in room.ready_members()]
            if room is not None
            else []
        )
        return {
            "name": name,
            "create_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created_at)),
            "url": f"aim:gochat?roomname={quote_plus(name)}&exchange={exchange}",
            "participants": participants,
        }

    # -- messages and version -----------------------------------------------------------

    def instant_message(self, request: ApiRequest) -> ApiResponse:
        """A channel-1 IM from ``from`` (any name) to ``to``'s sessions; like
        the Go server, nothing is stored for a user who is not online."""
        data = request.fields({"from": str, "to": str, "text": str})
        if len(data["text"].encode("utf-8")) > 8000:
            raise bad_request("text over 8000 bytes")
        if not data["from"] or len(data["from"]) > 64 or not data["from"].isascii():
            raise bad_request("from must be 1-64 ASCII characters")
        recipient = self.registry.get(data["to"])
        if recipient is not None:
            self.icbm.deliver_notice(recipient, data["text"], data["from"])
        return text(200, "Message sent successfully.")

    def broadcast(self, request: ApiRequest) -> ApiResponse:
        """A system message to every online session of every user, or of the
        user ``to`` (MULTISESSION.md §20: notices reach all sessions)."""
        data = request.fields({"text": str}, {"to": str})
        to = data.get("to")
        users = 1 if to is not None else sum(1 for u in self.registry if u.online_instances())
        if to is not None:
            self._online(to)
        try:
            reached = console.broadcast(self.server, data["text"], to)
        except ValueError as e:
            raise bad_request(str(e)) from None
        return ApiResponse(200, {"users": users, "sessions": reached})

    def get_motd(self, request: ApiRequest) -> ApiResponse:
        return ApiResponse(200, {"text": self.motd.text})

    def set_motd(self, request: ApiRequest) -> ApiResponse:
        """A new MOTD, shown once to every user from its next session on
        (until the server restarts: keep it in ``[motd] text``)."""
        text = request.fields({"text": str})["text"]
        try:
            self.motd.set_text(text)
        except ValueError as e:
            raise bad_request(str(e)) from None
        return NO_CONTENT

    def stats(self, request: ApiRequest) -> ApiResponse:
        """What the server is doing now, and has done since it started."""
        per_user = self.registry.sessions_per_user()
        sessions = sum(n * users for n, users in per_user.items())
        rooms = self.chat.rooms.rooms.values()
        return ApiResponse(
            200,
            {
                "uptime_seconds": int(self.clock.seconds() - self.started),
                "users_online": sum(per_user.values()),
                "sessions": sessions,
                "sessions_per_user": {str(n): per_user[n] for n in sorted(per_user)},
                "signons": self.sessions.signons,
                "refusals": dict(sorted(self.server.refusals().items())),
                "messages_routed": self.icbm.routed,
                "chat_rooms": len(rooms),
                "chat_members": sum(len(room.members) for room in rooms),
                "reactor_lag_ms": round(self.server.reactor_lag.worst() * 1000, 1),
                "timeouts": self.timeouts,
            },
        )

    def openapi(self, request: ApiRequest) -> ApiResponse:
        """The OpenAPI document of this API (``api/openapi.json``)."""
        document = importlib.resources.files("aimserver.api").joinpath("openapi.json")
        return ApiResponse(200, json.loads(document.read_text("utf-8")))

    def version(self, request: ApiRequest) -> ApiResponse:
        try:
            version = importlib.metadata.version("aimserver")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return ApiResponse(200, {"version": version, "commit": "", "date": ""})


def _user_json(account: Any) -> dict[str, Any]:
    return {
        "id": normalize(account.screen_name),
        "screen_name": account.screen_name,
        "is_icq": normalize(account.screen_name).isdigit(),
        "suspended_status": "suspended" if account.suspended else "",
        "is_bot": account.bot,
    }


def _session_json(user: User, now: float) -> dict[str, Any] | None:
    """The Go server's session fields for the user as a whole (away and idle
    only when every instance is), plus its instances; None when none is online."""
    sessions = [s for s in user.instances.values() if s.online and not s.closed]
    if not sessions:
        return None
    instances = [_instance_json(s, now) for s in sessions]
    if len(instances) == 1:
        only = instances[0]
        all_away, away_message = only["is_away"], only["away_message"]
        idle_seconds, invisible = only["idle_seconds"], only["is_invisible"]
    else:
        all_away = all(i["is_away"] for i in instances)
        away_message = instances[-1]["away_message"] if all_away else ""
        idle = [s.idle_since for s in sessions]
        idle_seconds = 0 if None in idle else int(now - max(idle))  # type: ignore[type-var]
        invisible = all(i["is_invisible"] for i in instances)
    return {
        "id": user.key,
        "screen_name": user.screen_name,
        "online_seconds": int(now - user.signon_time),
        "is_away": all_away,
        "away_message": away_message if all_away else "",
        "idle_seconds": idle_seconds,
        "is_invisible": invisible,
        "is_icq": user.key.isdigit(),
        "instance_count": len(instances),
        "instances": instances,
    }


def _instance_json(session: SessionInstance, now: float) -> dict[str, Any]:
    away = session.away
    idle_since = session.idle_since
    return {
        "num": session.instance_id,
        "idle_seconds": 0 if idle_since is None else int(now - idle_since),
        "is_away": away,
        "away_message": (session.away_message or b"").decode("utf-8", "replace") if away else "",
        "is_invisible": bool(session.status & STATUS_INVISIBLE),
        "remote_addr": session.ip,
        "remote_port": 0,
        "client_id": session.client_id,
        "connected_at": int(session.connected_at),
        "capabilities": _capabilities_json(session.capabilities),
    }


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@functools.lru_cache(maxsize=256)
def _capabilities_json(capabilities: tuple[bytes, ...]) -> orjson.Fragment:
    """Sessions of one client announce the same capabilities: each distinct
    set is encoded once (hex strings), not once a session per request."""
    return orjson.Fragment(orjson.dumps([c.hex() for c in capabilities]))
