# -*- test-case-name: tests.test_status_page -*-
"""``GET /status``: a read-only page of the live numbers with sparklines of
the last hour, so an admin looks instead of reading logs.

One HTML page and one small script (``status.html``, ``status.js`` beside
this module, no build step). Both hold no data and are served without the
bearer token; the script asks ``/stats`` and ``/stats/history`` with the
token the admin gives it (in the address's ``#token=`` fragment, which a
browser never sends to a server, or typed into the page), so a page left
open somewhere shows nothing to whoever lacks the token.
"""

from __future__ import annotations

import importlib.resources

from aimserver.api.history import StatsHistory
from aimserver.api.http import ApiRequest, ApiResponse, Route, route

#: The page runs only its own script and talks only to this server.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; "
        "style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> bytes:
    return importlib.resources.files("aimserver.api").joinpath(name).read_bytes()


class StatusPage:
    def __init__(self, history: StatsHistory) -> None:
        self.history = history
        self._html = ApiResponse(
            200, _asset("status.html"), "text/html; charset=utf-8", SECURITY_HEADERS
        )
        self._script = ApiResponse(
            200, _asset("status.js"), "text/javascript; charset=utf-8", SECURITY_HEADERS
        )

    def routes(self) -> list[Route]:
        return [
            route("GET", "/status", self.page, public=True),
            route("GET", "/status.js", self.script, public=True),
            route("GET", "/stats/history", self.history_json),
        ]

    def page(self, request: ApiRequest) -> ApiResponse:
        return self._html

    def script(self, request: ApiRequest) -> ApiResponse:
        return self._script

    def history_json(self, request: ApiRequest) -> ApiResponse:
        """The last hour's samples, oldest first, the last one taken now."""
        return ApiResponse(200, self.history.as_json())
