# -*- test-case-name: tests.test_e2e_web -*-
"""The web listener (``[ports] web``): the browser client's static files at
``/`` and its WebSocket at ``/ws``.

The page runs only its own modules and talks only to this server (a strict
Content-Security-Policy). Until a connection is upgraded to a WebSocket its
input passes ``BoundedInput``: more than a message's worth of bytes in one
HTTP exchange aborts it; after the upgrade the frame reader bounds it.
"""

from __future__ import annotations

import importlib.resources
from typing import Any

from h11 import ProtocolError as HttpProtocolError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.static import File
from wsproto import ConnectionType
from wsproto.events import AcceptConnection
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from aimserver.protocols.turnwriter import TurnWriter
from aimserver.web.devices import DevicesResource
from aimserver.web.messages import MAX_MESSAGE_BYTES
from aimserver.web.service import WebService
from aimserver.web.socket import WebSocketConnection

#: Room for the HTTP upgrade request and the frame headers around a message.
INPUT_SLACK = 16 * 1024
SECURITY_HEADERS = {
    b"Content-Security-Policy": (
        b"default-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; "
        b"style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        b"frame-ancestors 'none'"
    ),
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
}


class BoundedInput(ProtocolWrapper):
    """Counts the bytes of the HTTP request being read (reset as each one is
    answered), so that a request too big to be one of ours is cut off."""

    log = Logger()

    def __init__(self, factory: WrappingFactory, wrapped: Any) -> None:
        super().__init__(factory, wrapped)
        self.pending = 0

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.pending += len(data)
        if self.pending > MAX_MESSAGE_BYTES + INPUT_SLACK:
            self.log.info(
                "web: {peer} sent over {limit} bytes in one request: aborted",
                peer=self.getPeer(),
                limit=MAX_MESSAGE_BYTES,
            )
            self.transport.abortConnection()
            return
        super().dataReceived(data)

    def upgraded(self) -> None:
        """A WebSocket now: its frame reader bounds the input, so the bytes
        go straight through."""
        self.dataReceived = self.wrappedProtocol.dataReceived  # type: ignore[method-assign]


class WebSocketUpgrade(Resource):
    """``/ws``: the HTTP upgrade as Twisted's ``WebSocketResource`` does it
    (wsproto's handshake, then the HTTP channel hands its connection over),
    to a ``WebSocketConnection``, which frames the data itself: wsproto's
    frames cost ~7 µs each, three per browser IM (bench S13)."""

    isLeaf = True
    log = Logger()

    def __init__(self, service: WebService, clock: IReactorTime) -> None:
        super().__init__()
        self.service = service
        self.writer = TurnWriter(clock)

    def render_GET(self, request: Request) -> bytes | int:  # noqa: N802
        handshake = H11Handshake(ConnectionType.SERVER)
        headers = [
            (name, value)
            for name, values in request.requestHeaders.getAllRawHeaders()
            for value in values
        ]
        address = request.getClientAddress()
        peer = f"{getattr(address, 'host', '?')}:{getattr(address, 'port', 0)}"
        try:
            handshake.initiate_upgrade_connection(headers, request.path)
        except (RemoteProtocolError, HttpProtocolError, ValueError) as e:
            # wsproto checks the request by building an h11 one from it (h11
            # refuses a missing or second Host, a path twisted.web lets
            # through) and decodes headers as ASCII (UnicodeDecodeError).
            self.log.info("web: {peer} sent a bad WebSocket upgrade: {error}", peer=peer, error=e)
            request.setResponseCode(400)
            request.setHeader(b"content-type", b"text/plain")
            return b"not a WebSocket upgrade\n"
        channel = request.channel
        guard = channel.transport
        connection = WebSocketConnection(
            self.service, peer, self.writer, guard if isinstance(guard, BoundedInput) else None
        )
        accept = handshake.send(AcceptConnection())
        channel._protocolUpgradeForWebsockets(connection)
        guard.write(accept)
        return NOT_DONE_YET


class _SecureSite(Site):
    def getResourceFor(self, request: Request) -> Any:  # noqa: N802
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        guard = request.channel.transport if request.channel is not None else None
        if isinstance(guard, BoundedInput):
            # This request is in: the bound starts again for the next one on
            # the connection (a page's files come over one or two).
            guard.pending = 0
        return super().getResourceFor(request)


class _StaticFiles(File):
    """The client's files, without twisted.web's two tracebacks for bad
    input: a path segment that is not UTF-8 (logged as an error, then 404)
    and a Range header that is malformed and not UTF-8 (500)."""

    def getChild(self, path: bytes, request: Request) -> Any:  # noqa: N802
        try:
            path.decode("utf-8")
        except UnicodeDecodeError:
            return self.childNotFound
        return super().getChild(path, request)

    def makeProducer(self, request: Request, opened: Any) -> Any:  # noqa: N802
        byte_range = request.getHeader(b"range")
        if byte_range is not None and not byte_range.isascii():
            # Asks for no range we could serve: the whole file, as for any
            # malformed Range.
            request.requestHeaders.removeHeader(b"range")
        return super().makeProducer(request, opened)


def static_root() -> File:
    directory = importlib.resources.files("aimserver.web").joinpath("static")
    root = _StaticFiles(str(directory))
    root.indexNames = ["index.html"]
    root.contentTypes = {**root.contentTypes, ".js": "text/javascript", ".css": "text/css"}
    return root


def web_factory(service: WebService) -> WrappingFactory:
    """The listener's factory: the site behind the input bound."""
    root = static_root()
    root.putChild(b"ws", WebSocketUpgrade(service, service.clock))
    web = Resource()
    web.putChild(b"sessions", DevicesResource(service))
    root.putChild(b"web", web)
    # Neither the page nor /web/sessions reads a form post; parsing one
    # (twisted.web's default) raises out of the HTTP channel for a
    # Content-Type that Python splits as lines (\x0b, \x1c-\x1e, \x85).
    site = _SecureSite(root, parsePOSTFormSubmission=False)
    site.displayTracebacks = False
    factory = WrappingFactory(site)
    factory.protocol = BoundedInput
    return factory
