# -*- test-case-name: tests.test_e2e_api -*-
"""The API's HTTP plumbing: routes, the bearer token, JSON in and out, and
errors as ``{"error": ..., "error_type": ...}``.

Handlers are plain functions of the parsed request (``ApiRequest``) that
return an ``ApiResponse`` (or a Deferred of one) or raise ``ApiError``:
they know nothing of twisted.web, so they are tested without HTTP.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import orjson
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

log = Logger()

#: The largest request body read (JSON for a user, a room, an IM).
MAX_BODY = 64 * 1024


class ApiError(Exception):
    """Answer with ``status`` and ``{"error": message, "error_type": kind}``
    (and ``headers``, such as a 405's ``Allow``)."""

    def __init__(
        self, status: int, kind: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status, kind, message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = dict(headers or {})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


@attrs.frozen
class ApiResponse:
    status: int = 200
    #: Serialised as JSON; None sends no body.
    body: Any = None
    content_type: str = "application/json"
    headers: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class ApiRequest:
    method: str
    path: str
    #: Named parts of the route's path (``{screenname}``), percent-decoded.
    params: Mapping[str, str]
    query: Mapping[str, Sequence[str]]
    body: bytes

    def json(self) -> Any:
        """The body as JSON; 400 for anything else."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise bad_request("the body is not JSON") from None

    def fields(
        self, required: Mapping[str, type], optional: Mapping[str, type] = {}
    ) -> dict[str, Any]:
        """The body as a JSON object with exactly these fields, each of its
        type: unknown fields, missing ones and wrong types are 400. An
        optional field given as ``null`` is as if absent (the Go server's
        PATCH reads it so)."""
        data = self.json()
        if not isinstance(data, dict):
            raise bad_request("the body must be a JSON object")
        unknown = set(data) - set(required) - set(optional)
        if unknown:
            raise bad_request(f"unknown fields: {', '.join(sorted(unknown))}")
        for name in optional:
            if name in data and data[name] is None:
                del data[name]
        for name, kind in {**required, **optional}.items():
            if name not in data:
                if name in required:
                    raise bad_request(f"missing field: {name}")
                continue
            value = data[name]
            if type(value) is not kind:
                raise bad_request(f"{name} must be a {kind.__name__}")
        return data


Handler = Callable[[ApiRequest], "ApiResponse | Deferred[ApiResponse]"]


@attrs.frozen
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    #: Answered without the bearer token: only what holds no data (the status
    #: page's HTML and script, which then ask the API with the token).
    public: bool = False


def route(method: str, path: str, handler: Handler, *, public: bool = False) -> Route:
    """``path`` with ``{name}`` parts matching one path segment each."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    return Route(method, re.compile(f"^{regex}$"), handler, public)


class ApiResource(Resource):
    """The whole API as one leaf resource over a route table."""

    isLeaf = True

    def __init__(self, routes: Sequence[Route], token: str = "") -> None:
        super().__init__()
        self.routes = tuple(routes)
        #: Every request must carry ``Authorization: Bearer <token>`` when set.
        self.token = token.encode("utf-8")

    def render(self, request: Request) -> Any:
        d = maybeDeferred(self._answer, request)
        d.addErrback(self._failed, request)
        d.addCallback(self._write, request)
        return NOT_DONE_YET

    def _answer(self, request: Request) -> Any:
        authorized = not self.token or self._authorized(request)
        method = request.method.decode("ascii", "replace")
        if method == "HEAD":
            # A GET's answer without its body (twisted.web drops the body of a HEAD).
            method = "GET"
        path = request.path.decode("utf-8", "replace").rstrip("/") or "/"
        allowed = []
        for candidate in self.routes:
            match = candidate.pattern.match(path)
            if match is None:
                continue
            if candidate.method != method:
                allowed.append(candidate.method)
                continue
            if not (authorized or candidate.public):
                raise _unauthorized()
            body = request.content.read(MAX_BODY + 1) if request.content is not None else b""
            if len(body) > MAX_BODY:
                raise ApiError(413, "too_large", f"the body is over {MAX_BODY} bytes")
            query = {
                k.decode("utf-8", "replace"): [v.decode("utf-8", "replace") for v in vs]
                for k, vs in request.args.items()
            }
            params = {k: _unquote(v) for k, v in match.groupdict().items()}
            return candidate.handler(ApiRequest(method, path, params, query, body))
        if not authorized:
            # Without the token, nothing says which paths exist.
            raise _unauthorized()
        if allowed:
            raise ApiError(
                405,
                "method_not_allowed",
                f"{method} is not allowed on {path}",
                {"Allow": ", ".join(sorted(set(allowed)))},
            )
        raise not_found(f"no such endpoint: {path}")

    def _authorized(self, request: Request) -> bool:
        given = request.getHeader(b"authorization") or b""
        scheme, _, token = given.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.token)

    def _failed(self, failure: Failure, request: Request) -> ApiResponse:
        if failure.check(ApiError):
            error: ApiError = failure.value  # type: ignore[assignment]
        else:
            log.failure(
                "API {method} {path} failed", failure, method=request.method, path=request.path
            )
            error = ApiError(500, "internal", "the server failed to answer")
        if error.status >= 400:
            log.info(
                "API {method} {path}: {status} {message}",
                method=request.method.decode("ascii", "replace"),
                path=request.path.decode("utf-8", "replace"),
                status=error.status,
                message=error.message,
            )
        # "message" is the Go server's field, for scripts written against it.
        body = {"error": error.message, "error_type": error.kind, "message": error.message}
        return ApiResponse(error.status, body, headers=error.headers)

    def _write(self, response: ApiResponse, request: Request) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.setResponseCode(response.status)
        for name, value in response.headers.items():
            request.setHeader(name.encode("ascii"), value.encode("ascii"))
        if response.body is not None:
            if response.content_type == "application/json":
                # A handler may hand over its JSON already encoded (GET /session).
                data = (
                    response.body
                    if isinstance(response.body, bytes)
                    else orjson.dumps(response.body)
                )
            else:
                data = (
                    response.body
                    if isinstance(response.body, bytes)
                    else str(response.body).encode()
                )
            request.setHeader(b"content-type", response.content_type.encode("ascii"))
            request.write(data)
        request.finish()


def _unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", "a valid bearer token is required")


def _unquote(value: str) -> str:
    from urllib.parse import unquote

    return unquote(value)
