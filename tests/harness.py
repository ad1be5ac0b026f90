"""Real services on loopback for end-to-end tests: the auth and BOS listeners
of one ``AimServer`` over a memory store, on free ports."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor, task

from aimserver.config import Config
from aimserver.server import AimServer
from aimserver.store.cache import CachedUserStore
from aimserver.store.memory import MemoryUserStore
from tests.client import BosClient, FlapClient, TlvList, bucp_login, roasted_login

LOOPBACK = "127.0.0.1"
SECRET = b"0123456789abcdef0123456789abcdef"


class LoopbackServer:
    """Start with ``await LoopbackServer.start(...)``; ``stop()`` in cleanup
    stops listening and waits until every connection, both ends, is gone."""

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
        self.ports = [self.auth_port, self.bos_port]
        server.bos_address = f"{LOOPBACK}:{self.bos_port.getHost().port}"
        return self

    @property
    def auth_address(self) -> tuple[str, int]:
        return LOOPBACK, self.auth_port.getHost().port

    def server_connections(self) -> set[Any]:
        return (
            self.server.auth_factory.sweeper.connections
            | self.server.bos_factory.sweeper.connections
        )

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
    ) -> BosClient:
        """BUCP login plus the BOS sign-on: one signed-on session."""
        login = await self.bucp(screen_name, password, flags=flags)
        if login.get(0x08) is not None:
            raise AssertionError(f"login refused: {login.get_u16(0x08):#06x}")
        return await BosClient.sign_on(login, buddies=buddies, client_ready=ready)

    async def stop(self) -> None:
        await defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self.ports])
        for connection in list(self.server_connections()):
            connection.transport.loseConnection()
        for client in list(FlapClient.open_clients):
            client.transport.loseConnection()
        for _ in range(500):
            if not self.server_connections() and not FlapClient.open_clients:
                break
            await task.deferLater(reactor, 0.01, lambda: None)
