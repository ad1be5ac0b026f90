"""In-memory helpers for the protocol tests: a server over a memory store and
a ``task.Clock``, connections on ``StringTransport``s, and a reader that turns
what a connection wrote back into FLAP frames with our own codecs.

Nothing here opens a socket or reads the wall clock, so every test that uses
it is deterministic and synchronous.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from aimserver.config import Config
from aimserver.protocols.flap import ConnectionSettings, FlapConnection, FlapFactory
from aimserver.server import AimServer
from aimserver.services.base import Reply, SnacError
from aimserver.store.credentials import roast, strong_digest, weak_digest
from aimserver.store.memory import MemoryUserStore
from aimserver.wire.errors import MalformedData
from aimserver.wire.flap import FLAP_HEADER_SIZE, Channel, FlapFrame, SignonPayload, parse_header
from aimserver.wire.reader import Reader
from aimserver.wire.snac import SnacHeader, pack_snac
from aimserver.wire.tlv import Tlv, TlvList

SECRET = b"0123456789abcdef0123456789abcdef"
PEER = IPv4Address("TCP", "192.0.2.7", 40000)
#: The bytes every server sends first, after its 2-byte sequence number.
HELLO_PAYLOAD = b"\x00\x00\x00\x01"
CLIENT_ID = b"AOL Instant Messenger, version 5.1.3036/WIN32"


def result_of(d: defer.Deferred[Any]) -> Any:
    """The result of a Deferred that has already fired (memory store calls)."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def frame(channel: int, payload: bytes = b"", sequence: int = 0) -> bytes:
    """One client frame, packed by our codec."""
    return FlapFrame(channel, sequence, payload).pack()


def snac_frame(
    family: int, subtype: int, body: bytes = b"", request_id: int = 1, flags: int = 0
) -> bytes:
    return frame(Channel.DATA, pack_snac(family, subtype, body, request_id, flags))


def signon_frame(*tlvs: Tlv) -> bytes:
    return frame(Channel.SIGNON, SignonPayload(1, TlvList(tlvs)).pack())


def parse_frames(data: bytes) -> list[FlapFrame]:
    """Every whole frame in ``data``; trailing bytes are an error (a server
    never writes half a frame)."""
    frames = []
    offset = 0
    while offset < len(data):
        _, _, length = parse_header(data, offset)
        end = offset + FLAP_HEADER_SIZE + length
        frames.append(FlapFrame.unpack(data[offset:end]))
        offset = end
    return frames


def parse_snac(f: FlapFrame) -> tuple[SnacHeader, bytes]:
    assert f.channel == Channel.DATA, f
    return SnacHeader.unpack(f.payload)


class Wire:
    """One server connection on a ``StringTransport``, seen from the client."""

    def __init__(self, factory: Any, peer: IPv4Address = PEER) -> None:
        self.factory = factory
        self.proto: FlapConnection = factory.buildProtocol(peer)
        self.transport = StringTransport(peerAddress=peer)
        self.proto.makeConnection(self.transport)
        self._lost = False

    # -- input --------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.proto.dataReceived(data)

    def feed_chunks(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.proto.dataReceived(chunk)

    def send_snac(
        self, family: int, subtype: int, body: bytes = b"", request_id: int = 1, flags: int = 0
    ) -> None:
        self.feed(snac_frame(family, subtype, body, request_id, flags))

    def signon(self, *tlvs: Tlv) -> None:
        self.feed(signon_frame(*tlvs))

    # -- output -------------------------------------------------------------------------

    def raw(self) -> bytes:
        """Everything written since the last read, and forget it."""
        data = self.transport.value()
        self.transport.clear()
        return data

    def frames(self) -> list[FlapFrame]:
        return parse_frames(self.raw())

    def snacs(self) -> list[tuple[SnacHeader, bytes]]:
        """The SNACs written since the last read; any other channel is an error."""
        return [parse_snac(f) for f in self.frames()]

    def only_snac(self) -> tuple[SnacHeader, bytes]:
        snacs = self.snacs()
        assert len(snacs) == 1, snacs
        return snacs[0]

    @property
    def closing(self) -> bool:
        return self.transport.disconnecting

    def lose(self) -> None:
        """The TCP connection ends (as the reactor would report it)."""
        if not self._lost:
            self._lost = True
            self.proto.connectionLost(Failure(ConnectionDone()))


# -- a whole server ---------------------------------------------------------------------


def make_server(
    config: Config | None = None, accounts: dict[str, str] | None = None
) -> tuple[AimServer, MemoryUserStore, Clock]:
    """An ``AimServer`` over a memory store, driven by a fresh ``Clock``."""
    clock = Clock()
    store = MemoryUserStore(clock)
    for name, password in (accounts or {}).items():
        result_of(store.create_account(name, password))
    server = AimServer(config or Config(), store, SECRET, clock)
    return server, store, clock


def bucp_login_tlvs(
    screen_name: bytes,
    key: bytes,
    password: bytes,
    *,
    strong: bool = True,
    flags: bytes | None = b"\x01",
) -> bytes:
    """The body of a 17,02 login request."""
    digest = strong_digest(key, password) if strong else weak_digest(key, password)
    tlvs = [Tlv(0x01, screen_name), Tlv(0x25, digest), Tlv(0x03, CLIENT_ID)]
    if strong:
        tlvs.append(Tlv.empty(0x4C))
    if flags is not None:
        tlvs.append(Tlv(0x4A, flags))
    return TlvList(tlvs).pack_list()


def roasted_signon_tlvs(
    screen_name: bytes, password: bytes, flags: bytes | None = None
) -> list[Tlv]:
    tlvs = [
        Tlv(0x01, screen_name),
        Tlv(0x02, roast(password)),
        Tlv(0x03, b"AOL Instant Messenger (SM), version 3.0.1464/WIN32"),
    ]
    if flags is not None:
        tlvs.append(Tlv(0x4A, flags))
    return tlvs


def issue_cookie(server: AimServer, screen_name: str, flags: int = 0x01, service: int = 1) -> bytes:
    """A cookie as the authorizer would hand out for ``screen_name``."""
    return server.cookies.issue(
        screen_name=screen_name,
        instance_id=server.registry.new_instance_id(),
        multiconn_flags=flags,
        service=service,
        client_id="test client",
    )


def signed_on_bos(server: AimServer, screen_name: str, flags: int = 0x01) -> Wire:
    """A BOS connection that presented a fresh valid cookie and got its 01,03;
    its output is cleared."""
    wire = Wire(server.bos_factory)
    wire.frames()
    wire.signon(Tlv(0x06, issue_cookie(server, screen_name, flags)))
    (header, _), *rest = wire.snacs()
    assert (header.family, header.subtype) == (0x01, 0x03), header
    assert not rest, rest
    return wire


def login_key(wire: Wire, screen_name: bytes) -> bytes:
    """Send the hello and 17,06 on an auth connection; return the 17,07 key."""
    wire.frames()
    wire.feed(frame(Channel.SIGNON, HELLO_PAYLOAD))
    wire.send_snac(0x17, 0x06, Tlv(0x01, screen_name).pack(), request_id=1)
    header, body = wire.only_snac()
    assert (header.family, header.subtype) == (0x17, 0x07), header
    return Reader(body, "17,07").string16("key")


# -- a minimal FLAP service for the base-class tests ------------------------------------


class ToyConnection(FlapConnection):
    """A FLAP service with a few handlers that behave in known ways, so the
    base class can be tested on its own:

    * sign-on with TLV 0x06 = ``b"ok"`` authenticates; anything else does not;
    * ``0A,02`` echoes its body in ``0A,03``;
    * ``0A,04`` raises a bug, ``0A,05`` a ``SnacError(0x0D, 7)``, ``0A,06``
      ``MalformedData``;
    * ``0A,07`` returns the next Deferred from ``factory.pending`` (the test
      fires it), recording the request IDs it saw in ``factory.seen``.
    """

    service_name = "toy"

    def __init__(self, factory: ToyFactory) -> None:
        super().__init__(factory.settings, factory.clock, factory.sweeper, factory.writer)
        self.toy = factory
        self.snac_handlers = {
            (0x0A, 0x02): self.echo,
            (0x0A, 0x04): self.bug,
            (0x0A, 0x05): self.refuse,
            (0x0A, 0x06): self.malformed,
            (0x0A, 0x07): self.later,
        }

    def signon_received(self, signon: SignonPayload) -> None:
        if signon.tlvs.get(0x06) == b"ok":
            self.authenticated()

    def echo(self, request: SnacHeader, body: bytes) -> list[Reply]:
        self.toy.seen.append(request.request_id)
        return [Reply(0x0A, 0x03, body)]

    def bug(self, request: SnacHeader, body: bytes) -> None:
        raise ZeroDivisionError("a bug in a handler")

    def refuse(self, request: SnacHeader, body: bytes) -> None:
        raise SnacError(0x0D, 7)

    def malformed(self, request: SnacHeader, body: bytes) -> None:
        raise MalformedData("toy body does not parse")

    def later(self, request: SnacHeader, body: bytes) -> defer.Deferred[Any]:
        self.toy.seen.append(request.request_id)
        return self.toy.pending.pop(0)


class ToyFactory(FlapFactory):
    def __init__(
        self,
        settings: ConnectionSettings | None = None,
        clock: Clock | None = None,
        keepalive_interval: float = 60.0,
    ) -> None:
        super().__init__(settings or ConnectionSettings(), clock or Clock(), keepalive_interval)
        self.seen: list[int] = []
        self.pending: list[defer.Deferred[Any]] = []

    def make_connection(self) -> ToyConnection:
        connection = ToyConnection(self)
        connection.factory = self
        return connection


def chunked(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at the given offsets (sorted, duplicates allowed)."""
    points = [0, *sorted(min(max(c, 0), len(data)) for c in cuts), len(data)]
    # A transport never delivers an empty read.
    return [data[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]
