"""A test client of the browser protocol (docs/web-protocol.md) over a real
WebSocket, with Twisted's own WebSocket client."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, reactor
from twisted.python.failure import Failure
from twisted.web.websocket import WebSocketClientEndpoint
from wsproto.utilities import LocalProtocolError

from tests.client import TIMEOUT
from tests.harness import WaitTimeout


class WebClient:
    """One socket. ``received`` holds every message; ``event()`` and
    ``request()`` wait for theirs."""

    open_clients: set[WebClient] = set()

    def __init__(self) -> None:
        self.transport: Any = None
        self.received: list[dict[str, Any]] = []
        self.consumed = 0
        self.closed = False
        self.close_code: int | None = None
        self.lost: defer.Deferred[None] = defer.Deferred()
        self._ids = itertools.count(1)
        self._waiters: list[tuple[Callable[[dict[str, Any]], bool], defer.Deferred[Any]]] = []
        #: seq of every event seen, to check for gaps and doubles.
        self.seqs: list[int] = []

    @classmethod
    async def connect(cls, url: str) -> WebClient:
        client = cls()

        class Factory:
            def buildProtocol(self, url: str) -> WebClient:  # noqa: N802
                return client

        ws_url = url.replace("http://", "ws://") + "/ws"
        await WebSocketClientEndpoint.new(reactor, ws_url).connect(Factory())
        cls.open_clients.add(client)
        return client

    # -- WebSocketProtocol ----------------------------------------------------------------

    def negotiationStarted(self, transport: Any) -> None:  # noqa: N802
        self.transport = transport

    def negotiationFinished(self) -> None:  # noqa: N802
        pass

    def pongReceived(self, payload: bytes) -> None:  # noqa: N802
        pass

    def textMessageReceived(self, text: str) -> None:  # noqa: N802
        message = json.loads(text)
        self.received.append(message)
        if "event" in message:
            self.seqs.append(message["seq"])
        for waiter in list(self._waiters):
            match, d = waiter
            if match(message):
                self._waiters.remove(waiter)
                d.callback(message)

    def bytesMessageReceived(self, data: bytes) -> None:  # noqa: N802
        raise AssertionError("the server sent a binary message")

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        self.closed = True
        WebClient.open_clients.discard(self)
        if not self.lost.called:
            self.lost.callback(None)
        for _, d in self._waiters:
            d.errback(AssertionError("the socket closed while waiting"))
        self._waiters.clear()

    # -- use ------------------------------------------------------------------------------

    def send_raw(self, text: str) -> None:
        self.transport.sendTextMessage(text)

    def send(self, command: str, **parameters: Any) -> int:
        request_id = next(self._ids)
        self.send_raw(json.dumps({"id": request_id, "command": command, "parameters": parameters}))
        return request_id

    async def wait(
        self, match: Callable[[dict[str, Any]], bool], what: str, timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        d: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self._waiters.append((match, d))
        if self.closed:
            raise AssertionError(f"the socket is closed: {what}")

        def timed_out(result: object, timeout: float) -> None:
            raise WaitTimeout(f"{what} (after {timeout:g}s); received {self.received[-5:]!r}")

        d.addTimeout(timeout, reactor, onTimeoutCancel=timed_out)
        return await d

    async def request(self, command: str, **parameters: Any) -> dict[str, Any]:
        """The whole answer (success or error)."""
        request_id = self.send(command, **parameters)
        return await self.wait(lambda m: m.get("id") == request_id, f"the answer to {command}")

    async def ok(self, command: str, **parameters: Any) -> Any:
        answer = await self.request(command, **parameters)
        assert answer["status"] == "success", answer
        return answer["result"]

    async def sign_on(self, name: str, password: str = "secret", **extra: Any) -> dict[str, Any]:
        return await self.ok("create_session", screen_name=name, password=password, **extra)

    async def event(
        self, name: str, match: Callable[[dict[str, Any]], bool] = lambda m: True
    ) -> dict[str, Any]:
        """The first event ``name`` (matching) not returned before."""
        for message in self.received:
            if message.get("event") == name and match(message) and not message.get("_seen"):
                message["_seen"] = True
                return message
        found = await self.wait(lambda m: m.get("event") == name and match(m), f"event {name}")
        found["_seen"] = True
        return found

    def events(self, name: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("event") == name]

    def drop(self) -> None:
        """The network goes: the TCP connection closes without a close frame."""
        self.transport.transport.abortConnection()

    async def close(self) -> None:
        if not self.closed:
            # LocalProtocolError: the server's close frame came first; the
            # TCP close follows.
            with contextlib.suppress(LocalProtocolError):
                self.transport.loseConnection()
        await self.lost
