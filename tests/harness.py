"""Real services on loopback for end-to-end tests: the auth and BOS listeners
of one ``AimServer`` over a memory store, on free ports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer, reactor, task

from aimserver.config import Config
from aimserver.server import AimServer
from aimserver.store.cache import CachedUserStore
from aimserver.store.memory import MemoryUserStore
from tests.client import (
    CLIENT_ID,
    TIMEOUT,
    BosClient,
    FlapClient,
    TlvList,
    WaitTimeout,
    bucp_login,
    roasted_login,
)

LOOPBACK = "127.0.0.1"
SECRET = b"0123456789abcdef0123456789abcdef"
#: How often ``wait_until`` looks again.
POLL_INTERVAL = 0.01


async def wait_until(
    condition: Callable[[], object], what: str | Callable[[], str], timeout: float = TIMEOUT
) -> None:
    """Poll ``condition`` (server-side state a client cannot see) until it
    holds; ``WaitTimeout`` naming ``what`` (a text, or a function giving it at
    the time of failure) if it still does not after ``timeout`` seconds."""
    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() >= deadline:
            raise WaitTimeout(f"{what() if callable(what) else what} (after {timeout:g}s)")
        await task.deferLater(reactor, POLL_INTERVAL, lambda: None)


def _describe_server_connection(connection: Any) -> str:
    return f"server {getattr(connection, 'service_name', '?')} connection from {connection.peer}"


class LoopbackServer:
    """Start with ``await LoopbackServer.start(...)``; ``stop()`` in cleanup
    stops listening and waits until every connection, both ends, is gone, and
    fails the test naming the ones that are not."""

    def __init__(self, server: AimServer, store: MemoryUserStore) -> None:
        self.server = server
        self.store = store
        self.ports: list[Any] = []

    @classmethod
    async def start(
        cls,
        config: Config | None = None,
        accounts: dict[str, str] | None = None,
        *,
        cached: bool = False,
    ) -> LoopbackServer:
        """With ``cached`` the server sees the store through the account cache,
        as ``twistd aimserver`` runs it."""
        store = MemoryUserStore()
        for name, password in (accounts or {}).items():
            await store.create_account(name, password)
        front = CachedUserStore(store, reactor) if cached else store
        server = AimServer(config or Config(), front, SECRET, reactor)
        self = cls(server, store)
        self.auth_port = reactor.listenTCP(0, server.auth_factory, interface=LOOPBACK)
        self.bos_port = reactor.listenTCP(0, server.bos_factory, interface=LOOPBACK)
        self.chat_port = reactor.listenTCP(0, server.chat_factory, interface=LOOPBACK)
        self.api_port = reactor.listenTCP(0, server.api_site, interface=LOOPBACK)
        self.web_port = reactor.listenTCP(0, server.web_factory, interface=LOOPBACK)
        self.ports = [self.auth_port, self.bos_port, self.chat_port, self.api_port, self.web_port]
        server.bos_address = f"{LOOPBACK}:{self.bos_port.getHost().port}"
        server.chat_address = f"{LOOPBACK}:{self.chat_port.getHost().port}"
        return self

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.api_port.getHost().port}"

    @property
    def web_url(self) -> str:
        return f"http://{LOOPBACK}:{self.web_port.getHost().port}"

    @property
    def auth_address(self) -> tuple[str, int]:
        return LOOPBACK, self.auth_port.getHost().port

    def server_connections(self) -> set[Any]:
        return (
            self.server.auth_factory.sweeper.connections
            | self.server.bos_factory.sweeper.connections
            | self.server.chat_factory.sweeper.connections
        )

    def server_side(self, client: FlapClient) -> Any | None:
        """The server's end of ``client``'s connection (None once it is gone)."""
        local = client.transport.getHost()
        for connection in self.server_connections():
            peer = connection.transport.getPeer()
            if (peer.host, peer.port) == (local.host, local.port):
                return connection
        return None

    async def bucp(self, screen_name: str, password: str, **kw: Any) -> TlvList:
        return await bucp_login(*self.auth_address, screen_name, password, **kw)

    async def roasted(self, screen_name: str, password: str, **kw: Any) -> TlvList:
        return await roasted_login(*self.auth_address, screen_name, password, **kw)

    async def session(
        self,
        screen_name: str,
        password: str = "secret",
        *,
        flags: int | None = 0x01,
        buddies: tuple[str, ...] | list[str] = (),
        ready: bool = True,
        client_id: bytes = CLIENT_ID,
        bind: str | None = None,
    ) -> BosClient:
        """BUCP login plus the BOS sign-on: one signed-on session, both
        connections made from ``bind`` if given."""
        login = await self.bucp(screen_name, password, flags=flags, client_id=client_id, bind=bind)
        if login.get(0x08) is not None:
            raise AssertionError(f"login refused: {login.get_u16(0x08):#06x}")
        return await BosClient.sign_on(login, buddies=buddies, client_ready=ready, bind=bind)

    def open_connections(self) -> list[str]:
        """Every connection, server or client end, that is still open."""
        return sorted(_describe_server_connection(c) for c in self.server_connections()) + sorted(
            c.describe() for c in FlapClient.open_clients
        )

    async def stop(self, timeout: float = TIMEOUT) -> None:
        """Stop listening, close every connection, and wait until both ends of
        each have seen it; ``WaitTimeout`` naming the connections still open
        after ``timeout`` seconds."""
        stopped = defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self.ports])

        def not_stopped(result: object, timeout: float) -> None:
            raise WaitTimeout(f"the listening ports {self.ports} did not stop within {timeout:g}s")

        stopped.addTimeout(timeout, reactor, onTimeoutCancel=not_stopped)
        await stopped
        for connection in list(self.server_connections()):
            connection.transport.loseConnection()
        for client in list(FlapClient.open_clients):
            client.transport.loseConnection()
        # Browser sessions kept for a resume end with the server.
        self.server.web.stop()
        await wait_until(
            lambda: not self.server_connections() and not FlapClient.open_clients,
            lambda: "connections still open after stop(): " + "; ".join(self.open_connections()),
            timeout,
        )
