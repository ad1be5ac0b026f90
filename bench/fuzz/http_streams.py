"""Stream targets over HTTP: the web listener's HTTP layer (``web_http``) and
the management API's site (``api_http``).

An input is a mode byte and then the bytes of one to four hostile
connections, separated by ``NEXT_CONNECTION``. Each connection's bytes are
cut into chunks as ``streams`` cuts them (mode bits 0-3), and the
connections take turns, a chunk each, so that several requests are in flight
at once. The connections are ``StringTransport``s, and the site's reactor is
the world's ``task.Clock``. Once the input is in, on every hostile
connection:

* no exception escaped ``dataReceived``, and nothing was logged as a
  failure or an error (twisted.web logs a resource's exception, then answers
  500);
* every request that arrived whole (``Request.process``) has its answer
  (``finished``), and it is not a 500: that means an unhandled exception, so
  it counts as a crash even if nothing was logged (a 501 for an unknown
  method is an answer). The one exception is an accepted WebSocket upgrade:
  its connection belongs to the socket from then on.

Then the connections close, and the bystanders must be unaffected.

``web_http`` runs in the world of ``streams`` and checks its BOS, chat and
browser bystanders as the other stream targets do. It adds two bystanders
on the web listener itself: a keep-alive HTTP connection whose
``GET /web/sessions`` must still get a 200 in the device envelope, and a
WebSocket upgraded through the listener that must still answer a ping.

``api_http`` has its own server. Its store is the one production runs:
SQLite (in memory, run inline) behind the account cache. It holds the
accounts, a buddy list with an icon, a public room, and Bob signed on over
BOS. Mode bit 6 turns the bearer token off for the input, so every route can
be reached without it. After each input the stored data must be sound:
SQLite's integrity and foreign-key checks pass, every listed account reads
back under its own name, and a keep-alive bystander connection's ``GET /user``
gets a 200 that lists exactly the stored accounts. Then the database is put
back as it was (from a backup of the pristine one): each input starts from
the same data, and the store stays small.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import h11
from twisted.internet import _producer_helpers, defer
from twisted.internet.task import Clock, Cooperator
from twisted.python.failure import Failure
from twisted.web.server import Request

from aimserver.config import (
    ApiConfig,
    AuthConfig,
    Config,
    MultisessionConfig,
    RateLimitConfig,
)
from aimserver.server import AimServer
from aimserver.services.bart import CLASS_BART, ICON_ITEM_NAME, TAG_BART_INFO
from aimserver.services.feedbag_order import CLASS_BUDDY, CLASS_GROUP, TAG_ORDER
from aimserver.store.cache import DEFAULT_TTL, CachedUserStore
from aimserver.store.interfaces import FeedbagItem
from aimserver.store.sqlite import SQLiteUserStore, connect
from aimserver.wire.bart import BartInfo
from aimserver.wire.screenname import normalize
from aimserver.wire.tlv import Tlv
from bench.fuzz import streams

#: A device id no input is likely to name (the HTTP bystander's).
BYSTANDER_DEVICE = "fuzz-bystander-device-0001"
#: The management API's bearer token.
TOKEN = "fuzz-token-0123456789abcdef"
#: A buddy icon's bytes (GIF signature).
ICON = b"GIF89a" + bytes(26)
#: Seconds without a probe after which the web bystanders are connected
#: again (twisted.web closes an HTTP connection idle for 60 s).
IDLE_BYSTANDER = 30
#: Between two hostile connections' bytes in an input.
NEXT_CONNECTION = b"\xff\x00\xff\x00"
#: The fixed key of every upgrade the harness sends (RFC 6455's example).
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


class _CountedRequest(Request):
    """A twisted.web request that lists itself once it has arrived whole, so
    that the target can check each one was answered."""

    arrived: ClassVar[list[Request]] = []

    def process(self) -> None:
        _CountedRequest.arrived.append(self)
        super().process()


def _result(d: defer.Deferred[Any]) -> Any:
    """The result of a Deferred that has already fired (an inline store)."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the store did not answer at once"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def http_request(
    method: str, target: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
) -> bytes:
    """One HTTP/1.1 request as h11 (wsproto's HTTP layer) writes it."""
    client = h11.Connection(h11.CLIENT)
    fields = [("Host", "fuzz"), *headers]
    if body or method in ("POST", "PUT", "PATCH", "DELETE"):
        fields.append(("Content-Length", str(len(body))))
    data = client.send(h11.Request(method=method, target=target, headers=fields)) or b""
    if body:
        data += client.send(h11.Data(data=body)) or b""
    return data + (client.send(h11.EndOfMessage()) or b"")


def upgrade_request(target: str = "/ws") -> bytes:
    return http_request(
        "GET",
        target,
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", WS_KEY),
            ("Sec-WebSocket-Version", "13"),
        ],
    )


def responses(data: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each whole response a server wrote (Content-Length
    or chunked; nothing else is needed to read our own server)."""
    answers = []
    while True:
        head, found, rest = data.partition(b"\r\n\r\n")
        if not found:
            return answers
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                body, rest = body + rest[:size], rest[size + 2 :]
                if size == 0:
                    break
        else:
            length = int(headers.get(b"content-length", b"0"))
            body, rest = rest[:length], rest[length:]
        answers.append((status, body))
        data = rest


@contextlib.contextmanager
def _files_sent_on(cooperator: Cooperator) -> Iterator[None]:
    """twisted.web sends a static file from a pull producer driven by the
    global cooperator on the global reactor, which nothing runs here. While
    the block runs, ``cooperator`` (on the world's clock) drives it instead,
    so a file goes out in the ``clock.advance(0)`` after its request and the
    requests pipelined behind it are read. Only while the block runs: the
    test suite runs these targets in trial's process, whose real-reactor
    tests need the global cooperator."""
    saved = _producer_helpers.cooperate
    _producer_helpers.cooperate = cooperator.cooperate
    try:
        yield
    finally:
        _producer_helpers.cooperate = saved


def _upgraded(channel: Any) -> bool:
    """The channel hands its bytes to a WebSocket now (twisted.web's upgrade
    replaces its ``dataReceived``)."""
    return getattr(channel.dataReceived, "__self__", channel) is not channel


def _check_answered(requests: list[Request]) -> None:
    for request in requests:
        what = f"{request.method!r} {request.uri!r}"
        if request.code == 500:
            raise AssertionError(f"{what} was answered {request.code}")
        if not request.finished and not (request.channel and _upgraded(request.channel)):
            raise AssertionError(f"{what} arrived whole but was never answered")


def _hostile_http(
    clock: Clock, cooperator: Cooperator, factory: Any, data: bytes, mode: int
) -> list[str]:
    """Feed the input to 1-4 new connections of ``factory``; what was logged
    as a problem meanwhile. Raises if a request went unanswered."""
    del _CountedRequest.arrived[:]
    parts = data.split(NEXT_CONNECTION, 3)
    with streams.logged_problems() as problems, _files_sent_on(cooperator):
        wires = [streams._Wire(factory) for _ in parts]
        try:
            turns = itertools.zip_longest(*(streams._chunks(part, mode) for part in parts))
            for chunks in turns:
                for wire, chunk in zip(wires, chunks, strict=True):
                    if chunk is not None and not wire.transport.disconnecting:
                        wire.feed(chunk)
                        clock.advance(0)
            if not problems:
                _check_answered(_CountedRequest.arrived)
        finally:
            del _CountedRequest.arrived[:]
            for wire in wires:
                wire.lose()
            clock.advance(0)
    return problems


# -- the web listener --------------------------------------------------------------------


class _WebListener:
    """The web listener of the ``streams`` world, set up for HTTP inputs,
    and its two bystanders."""

    def __init__(self, world: streams.World) -> None:
        self.world = world
        self.factory = world.server.web_factory
        site = self.factory.wrappedFactory
        site.reactor = world.clock
        site.requestFactory = _CountedRequest
        self.cooperator = Cooperator(scheduler=lambda f: world.clock.callLater(0, f))
        self.probe_request = http_request(
            "GET", "/web/sessions", [("X-Device-Id", BYSTANDER_DEVICE)]
        )
        self.connect()

    def connect(self) -> None:
        """The two bystanders, connected afresh."""
        self.http = streams._Wire(self.factory)
        self.socket = streams._Wire(self.factory)
        self.socket.feed(upgrade_request())
        self.world.clock.advance(0)
        assert b" 101 " in self.socket.take(), "the bystander's upgrade was refused"
        self.probed_at = self.world.clock.seconds()

    def run(self, data: bytes, mode: int) -> None:
        clock = self.world.clock
        if clock.seconds() - self.probed_at > IDLE_BYSTANDER:
            # Other targets of the same world ran meanwhile (the test suite
            # runs them all in one process): the bystanders sat idle for
            # longer than twisted.web keeps an idle connection.
            for wire in (self.http, self.socket):
                wire.lose()
            self.connect()
        try:
            problems = _hostile_http(clock, self.cooperator, self.factory, data, mode)
        finally:
            clock.advance(1)  # as the other stream targets do
            # Whatever the input did: an HTTP connection idle for a minute
            # is closed (twisted.web's timeout), and so would the bystander be
            # after a run of crashing inputs.
            answers, pong = self.probe()
        if problems:
            raise AssertionError("logged failure or error:\n" + problems[0])
        http, socket = self.http, self.socket
        if http.transport.disconnecting or http.lost:
            raise AssertionError("the well-behaved HTTP connection was closed")
        if len(answers) != 1 or answers[0][0] != 200 or b'"success"' not in answers[0][1]:
            raise AssertionError(f"the well-behaved HTTP connection got {answers!r}")
        if socket.transport.disconnecting or socket.lost:
            raise AssertionError("the well-behaved upgraded WebSocket was closed")
        if b"\x8a\x05probe" not in pong:
            raise AssertionError("the well-behaved upgraded WebSocket did not answer a ping")
        self.world.check_bystanders()

    def probe(self) -> tuple[list[tuple[int, bytes]], bytes]:
        """The HTTP bystander's answers to ``GET /web/sessions``, and what the
        upgraded one wrote after a ping."""
        clock = self.world.clock
        self.probed_at = clock.seconds()
        self.http.take()
        self.http.feed(self.probe_request)
        self.socket.take()
        self.socket.feed(streams.masked(0x9, b"probe"))
        clock.advance(0)
        del _CountedRequest.arrived[:]
        return responses(self.http.take()), self.socket.take()


_WEB: list[_WebListener] = []


def web_http(data: bytes) -> None:
    """Hostile HTTP on the web listener: static files, /web/sessions, /ws."""
    if not data:
        return
    if not _WEB:
        _WEB.append(_WebListener(streams.world()))
    _WEB[0].run(data[1:], data[0])


def web_http_seeds() -> list[bytes]:
    device = [("X-Device-Id", "abcdefghijklmnop0123")]
    browse = b"".join(
        [
            http_request("GET", "/"),
            http_request("GET", "/js/app.js"),
            http_request("HEAD", "/style.css", [("Range", "bytes=0-99")]),
            http_request("GET", "/web/sessions", device),
            http_request("GET", "/web/sessions/s1/status", device),
            http_request("POST", "/web/sessions/s1/set-default", device),
            http_request("DELETE", "/web/sessions/s1", device),
            http_request("GET", "/nowhere?x=1"),
        ]
    )
    socket = upgrade_request() + streams.masked(
        0x1, streams.web_command("create_session", 1, screen_name="Alice", password="secret1")
    )
    return [
        b"\x00" + browse,
        b"\x05" + NEXT_CONNECTION.join([browse, socket, browse]),  # 5-byte chunks
        b"\x09" + http_request("GET", "/ws") + upgrade_request("/ws/"),
        b"\x07" + socket + streams.masked(0x9, b"ping"),
        b"\x00" + http_request("POST", "/", body=b"x" * 100) + http_request("OPTIONS", "*"),
    ]


# -- the management API ------------------------------------------------------------------


class _ApiWorld:
    """A server for the management API, over SQLite, and its bystanders."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.conn = connect(":memory:")
        store = SQLiteUserStore(":memory:", self.conn, self.clock, defer.maybeDeferred, None)
        #: The store without the account cache, to check what is really stored.
        self.stored = store
        for name, password in streams.ACCOUNTS:
            _result(store.create_account(name, password))
        icon_hash = _result(store.add_bart_item("Carol", ICON, 0))
        self.icon_hash = icon_hash
        order = Tlv(TAG_ORDER, b"\x00\x01").pack()
        icon_item = Tlv(TAG_BART_INFO, BartInfo(0, icon_hash).pack()).pack()
        items = [
            FeedbagItem("", 0, 0, CLASS_GROUP, order),
            FeedbagItem("Buddies", 1, 0, CLASS_GROUP, Tlv(TAG_ORDER, b"\x00\x02").pack()),
            FeedbagItem("Bob", 1, 2, CLASS_BUDDY, b""),
            FeedbagItem(ICON_ITEM_NAME, 0, 3, CLASS_BART, icon_item),
        ]
        _result(store.upsert_feedbag_items("Carol", items, 0))
        _result(store.create_public_room("Lobby", 0))
        config = Config(
            api=ApiConfig(token=TOKEN),
            ratelimit=RateLimitConfig(enabled=False),
            auth=AuthConfig(max_logins_per_second=0, max_logins_per_ip_per_minute=0),
            multisession=MultisessionConfig(max_sessions=1000),
        )
        self.server = AimServer(config, CachedUserStore(store, self.clock), b"a" * 32, self.clock)
        self.site = self.server.api_site
        self.site.reactor = self.clock
        self.site.requestFactory = _CountedRequest
        self.resource = self.site.resource
        self.cooperator = Cooperator(scheduler=lambda f: self.clock.callLater(0, f))
        self.pristine = sqlite3.connect(":memory:")
        self.conn.backup(self.pristine)
        self.bob = self.sign_on_bob()
        self.bystander = streams._Wire(self.site)
        self.probe_request = http_request("GET", "/user", [("Authorization", f"Bearer {TOKEN}")])

    def sign_on_bob(self) -> streams._Wire:
        """Bob, online (so that sessions can be listed, messaged and kicked)."""
        bob = streams.signed_on(self.server, "Bob")
        bob.feed(streams._snac(0x01, 0x02))
        self.clock.advance(0)
        bob.take()
        return bob

    def run(self, data: bytes, mode: int) -> None:
        if self.bob.transport.disconnecting or self.bob.lost:
            self.bob.lose()
            self.bob = self.sign_on_bob()
        self.resource.token = b"" if mode & 0x40 else TOKEN.encode()
        try:
            try:
                problems = _hostile_http(self.clock, self.cooperator, self.site, data, mode)
            finally:
                self.resource.token = TOKEN.encode()
                self.bob.take()
                # Whatever the input did: an HTTP connection idle for a
                # minute is closed (twisted.web's timeout).
                answers = self.probe()
            if problems:
                raise AssertionError("logged failure or error:\n" + problems[0])
            self.check_store(answers)
        finally:
            self.pristine.backup(self.conn)
            # Past the account cache's life: what the input read is forgotten,
            # as what it wrote has just been.
            self.clock.advance(DEFAULT_TTL + 1)

    def probe(self) -> list[tuple[int, bytes]]:
        """The bystander's answers to ``GET /user``."""
        self.bystander.take()
        self.bystander.feed(self.probe_request)
        self.clock.advance(0)
        del _CountedRequest.arrived[:]
        return responses(self.bystander.take())

    def check_store(self, answers: list[tuple[int, bytes]]) -> None:
        """The stored data is sound, and ``answers`` (the bystander's) list it."""
        (integrity,) = self.conn.execute("PRAGMA integrity_check").fetchall()
        if integrity != ("ok",):
            raise AssertionError(f"the database is damaged: {integrity}")
        if self.conn.execute("PRAGMA foreign_key_check").fetchall():
            raise AssertionError("the database breaks a foreign key")
        keys = set()
        for account in _result(self.stored.list_accounts()):
            key = normalize(account.screen_name)
            again = _result(self.stored.get_account(account.screen_name))
            if key in keys or again is None or normalize(again.screen_name) != key:
                raise AssertionError(f"account {account.screen_name!r} does not read back")
            keys.add(key)
        if self.bystander.transport.disconnecting or self.bystander.lost:
            raise AssertionError("the well-behaved API connection was closed")
        if len(answers) != 1 or answers[0][0] != 200:
            raise AssertionError(f"the well-behaved API connection got {answers!r}")
        listed = {user["id"] for user in json.loads(answers[0][1])}
        if listed != keys:
            raise AssertionError(f"GET /user lists {sorted(listed)}, the store {sorted(keys)}")


_API: list[_ApiWorld] = []


def _api_world() -> _ApiWorld:
    if not _API:
        _API.append(_ApiWorld())
    return _API[0]


def api_http(data: bytes) -> None:
    """Hostile HTTP on the management API (every route, with or without the token)."""
    if not data:
        return
    _api_world().run(data[1:], data[0])


def api_http_seeds() -> list[bytes]:
    world = _api_world()
    auth = [("Authorization", f"Bearer {TOKEN}"), ("Content-Type", "application/json")]
    values = {
        "screenname": "Carol",
        "screen_name": "Carol",
        "instance": "1",
        "hash": world.icon_hash.hex(),
    }
    requests = []
    for route in world.resource.routes:
        path = route.pattern.pattern.strip("^$")
        for name in route.pattern.groupindex:
            # Bob is the one online; his instance IDs are random.
            value = "Bob" if path.startswith("/session") and name == "screenname" else values[name]
            path = path.replace(f"(?P<{name}>[^/]+)", value)
        body = b""
        if route.method != "GET":
            body = _api_body(route.method, path)
        if path == "/bart":
            path += "?type=1"
        requests.append(http_request(route.method, path, auth, body))
    half = len(requests) // 2
    return [
        b"\x00" + b"".join(requests[:half]),
        b"\x00" + b"".join(requests[half:]),
        b"\x09" + NEXT_CONNECTION.join(requests[:4]),  # 4 connections
        b"\x40" + b"".join(requests[half:]),  # no token
        b"\x00" + http_request("GET", "/stats") + http_request("PUT", "/motd", body=b"{"),
    ]


def _api_body(method: str, path: str) -> bytes:
    if path in ("/motd", "/broadcast"):
        return b'{"text":"hello"}'
    if path == "/instant-message":
        return b'{"from":"admin","to":"Bob","text":"hi"}'
    if path.endswith("/account"):
        return b'{"suspended_status":"suspended","is_bot":true}'
    if path == "/chat/room/public":
        return b'{"names":["Lobby"]}' if method == "DELETE" else b'{"name":"Den"}'
    if path == "/user" and method == "DELETE":
        return b'{"screen_name":"Alice"}'
    if path.startswith("/session"):
        return b""
    return b'{"screen_name":"Erin","password":"erin1234"}'
