# -*- test-case-name: tests.test_e2e_web -*-
"""The web listener (``[ports] web``): the browser client's static files at
``/`` and its WebSocket at ``/ws``.

The page runs only its own modules and talks only to this server (a strict
Content-Security-Policy). Twisted's WebSocket support reassembles a message
without a bound, so every connection's input passes ``BoundedInput``: more
than a message's worth of bytes without a message completing aborts it.
"""

from __future__ import annotations

import importlib.resources
from typing import Any

from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.static import File
from twisted.web.websocket import WebSocketResource

from aimserver.web.devices import DevicesResource
from aimserver.web.messages import MAX_MESSAGE_BYTES
from aimserver.web.service import WebService
from aimserver.web.socket import WebSocketChannel

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
    """Counts the bytes since the last complete WebSocket message."""

    log = Logger()

    def __init__(self, factory: WrappingFactory, wrapped: Any) -> None:
        super().__init__(factory, wrapped)
        self.pending = 0

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.pending += len(data)
        if self.pending > MAX_MESSAGE_BYTES + INPUT_SLACK:
            self.log.info(
                "web: {peer} sent over {limit} bytes without a message: aborted",
                peer=self.getPeer(),
                limit=MAX_MESSAGE_BYTES,
            )
            self.transport.abortConnection()
            return
        super().dataReceived(data)

    def message_done(self) -> None:
        self.pending = 0


class _Sockets:
    """Twisted's WebSocketServerFactory: a channel per upgraded request."""

    def __init__(self, service: WebService) -> None:
        self.service = service

    def buildProtocol(self, request: Request) -> WebSocketChannel:  # noqa: N802
        address = request.getClientAddress()
        peer = f"{getattr(address, 'host', '?')}:{getattr(address, 'port', 0)}"
        guard = request.channel.transport if request.channel is not None else None
        return WebSocketChannel(
            self.service, peer, guard if isinstance(guard, BoundedInput) else None
        )


class _SecureSite(Site):
    def getResourceFor(self, request: Request) -> Any:  # noqa: N802
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        return super().getResourceFor(request)


def static_root() -> File:
    directory = importlib.resources.files("aimserver.web").joinpath("static")
    root = File(str(directory))
    root.indexNames = ["index.html"]
    root.contentTypes = {**root.contentTypes, ".js": "text/javascript", ".css": "text/css"}
    return root


def web_factory(service: WebService) -> WrappingFactory:
    """The listener's factory: the site behind the input bound."""
    root = static_root()
    root.putChild(b"ws", WebSocketResource(_Sockets(service)))
    web = Resource()
    web.putChild(b"sessions", DevicesResource(service))
    root.putChild(b"web", web)
    site = _SecureSite(root)
    site.displayTracebacks = False
    factory = WrappingFactory(site)
    factory.protocol = BoundedInput
    return factory
