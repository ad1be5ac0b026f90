# -*- test-case-name: tests.test_e2e_web -*-
"""Devices: one browser holding several sessions (docs/web-protocol.md,
"Devices").

A browser names itself with a device id (random, made by the page, sent with
``create_session`` and in the ``X-Device-Id`` header of the HTTP endpoints
below). The server keeps which live sessions belong to each device and which
one is its default, at most ``MAX_SESSIONS_PER_DEVICE`` each, and limits how
fast a device makes new ones. Knowing a device id is what lets one list and
close that device's sessions, so it is long and random, as a token is.

``GET /web/sessions``, ``GET /web/sessions/{id}/status``, ``POST
/web/sessions/{id}/set-default`` and ``DELETE /web/sessions/{id}`` answer in
one envelope: ``{"status", "code", "message", "results"}``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import orjson
from twisted.web.resource import Resource
from twisted.web.server import Request

from aimserver.services.loginlimit import LoginLimiter
from aimserver.web import messages
from aimserver.web.messages import WebError

if TYPE_CHECKING:
    from aimserver.web.service import WebService
    from aimserver.web.session import WebSession

MAX_SESSIONS_PER_DEVICE = 10
#: New sessions one device may make: a burst of 20 (all ten again after a
#: server restart, twice), then one every 6 s.
DEVICE_SIGNONS_BURST = 20
DEVICE_SIGNONS_PER_SECOND = 1 / 6
#: Devices remembered for the rate limit (oldest forgotten first).
MAX_TRACKED_DEVICES = 100_000
DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def check_device_id(device_id: Any) -> str:
    if not isinstance(device_id, str) or DEVICE_ID.match(device_id) is None:
        raise WebError(messages.VALIDATION, "a device id is 16-64 letters, digits, - or _")
    return device_id


class Devices:
    """Which live sessions each device holds, and its default."""

    def __init__(self) -> None:
        self.sessions: dict[str, OrderedDict[str, WebSession]] = {}
        self.defaults: dict[str, str] = {}
        self._rates = LoginLimiter(0, 0, DEVICE_SIGNONS_PER_SECOND, DEVICE_SIGNONS_BURST)

    def admit(self, device_id: str, now: float) -> None:
        """Before a sign-on from this device: refused at its session cap or
        over its sign-on rate."""
        if len(self.sessions.get(device_id, ())) >= MAX_SESSIONS_PER_DEVICE:
            raise WebError(
                messages.SESSION_ERROR,
                f"this browser holds {MAX_SESSIONS_PER_DEVICE} sessions: close one first",
            )
        if not self._rates.admit(device_id, now):
            raise WebError(messages.RATE_LIMITED, "too many sign-ons from this browser")

    def add(self, device_id: str, web: WebSession) -> None:
        held = self.sessions.setdefault(device_id, OrderedDict())
        held[web.session_id] = web
        self.defaults.setdefault(device_id, web.session_id)
        web.device_id = device_id

    def remove(self, web: WebSession) -> None:
        device_id = web.device_id
        if device_id is None:
            return
        held = self.sessions.get(device_id)
        if held is None:
            return
        held.pop(web.session_id, None)
        if self.defaults.get(device_id) == web.session_id:
            if held:
                self.defaults[device_id] = next(iter(held))
            else:
                self.defaults.pop(device_id, None)
        if not held:
            del self.sessions[device_id]

    def describe(self, device_id: str, web: WebSession) -> dict[str, Any]:
        instance = web.instance
        return {
            "session_id": web.session_id,
            "screen_name": web.screen_name,
            "instance_id": instance.instance_id if instance is not None else None,
            "is_connected": web.socket is not None,
            "is_logged_in": not web.closing,
            "is_default": self.defaults.get(device_id) == web.session_id,
        }


class DevicesResource(Resource):
    """``/web/sessions`` and below, JSON in the envelope."""

    isLeaf = True

    def __init__(self, service: WebService) -> None:
        super().__init__()
        self.service = service
        self.devices = service.devices

    def render(self, request: Request) -> bytes:
        try:
            device_id = check_device_id(
                (request.getHeader(b"x-device-id") or b"").decode("ascii", "replace")
            )
            results = self._answer(request, device_id)
            return self._envelope(request, 200, "ok", results)
        except _HttpError as e:
            return self._envelope(request, e.code, e.message, None)
        except WebError as e:
            return self._envelope(request, 400, e.message, None)

    def _answer(self, request: Request, device_id: str) -> Any:
        method = request.method.decode("ascii", "replace")
        parts = [p for p in request.postpath if p]
        held = self.devices.sessions.get(device_id, OrderedDict())
        if not parts:
            if method != "GET":
                raise _HttpError(405, "use GET")
            return [self.devices.describe(device_id, web) for web in held.values()]
        web = held.get(parts[0].decode("ascii", "replace"))
        if web is None:
            raise _HttpError(404, "no such session on this device")
        action = parts[1].decode("ascii", "replace") if len(parts) > 1 else None
        if action == "status" and method == "GET" and len(parts) == 2:
            return self.devices.describe(device_id, web)
        if action == "set-default" and method == "POST" and len(parts) == 2:
            self.devices.defaults[device_id] = web.session_id
            return self.devices.describe(device_id, web)
        if action is None and method == "DELETE":
            web.end("closed")
            return {"session_id": web.session_id}
        raise _HttpError(404, "no such endpoint")

    def _envelope(self, request: Request, code: int, message: str, results: Any) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        status = "success" if code < 400 else "error"
        return orjson.dumps(
            {"status": status, "code": code, "message": message, "results": results}
        )


class _HttpError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
