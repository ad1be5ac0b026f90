"""The admin console (issue 17): its helpers over a server in memory, the
password hash and host key, and the real manhole over loopback SSH, logged
in to with Twisted's SSH client by password and by key."""

from __future__ import annotations

import os
import stat
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch.ssh import channel, connection, keys, session, transport, userauth
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import ClientFactory
from twisted.protocols.policies import WrappingFactory
from twisted.python.filepath import FilePath
from twisted.trial import unittest

from aimserver import console
from aimserver.config import load_config
from aimserver.manhole import (
    AuthorizedKeysFile,
    PasswordHashChecker,
    check_password,
    hash_password,
    host_key_path,
    load_host_key,
    manhole_factory,
)
from aimserver.registry import MULTICONN_MULTI
from aimserver.server import AimServer
from aimserver.services.events import Warned
from tests.client import TIMEOUT, deferred_test
from tests.fakes import make_server, result_of
from tests.fakes_services import FakeConnection
from tests.harness import LoopbackServer, wait_until

#: Few iterations: the tests check the format and the logic, not the cost.
FAST_ITERATIONS = 1000
PASSWORD = "console pass"
AIM_CAPABILITY = bytes.fromhex("0946134e4c7f11d18222444553540000")


def sign_on(server: AimServer, name: str, connection: FakeConnection, **fields: Any) -> Any:
    """One online session of ``name`` in the registry, on a fake connection."""
    account = result_of(server.store.get_account(name))
    instance, _ = server.registry.add_instance(
        account,
        connection,
        instance_id=server.registry.new_instance_id(),
        multiconn_flags=MULTICONN_MULTI,
        client_id="test client",
        ip="192.0.2.7",
        now=server.clock.seconds(),
    )
    instance.online = True
    for field, value in fields.items():
        setattr(instance, field, value)
    return instance


class HelperTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.server, self.store, self.clock = make_server(
            accounts={"Alice": "secret", "Bob": "secret", "Carol": "secret"}
        )
        self.clock.advance(1_700_000_000)
        self.alice_home, self.alice_work, self.bob = (
            FakeConnection("alice home"),
            FakeConnection("alice work"),
            FakeConnection("bob"),
        )
        self.home = sign_on(
            self.server, "Alice", self.alice_home, capabilities=(AIM_CAPABILITY, b"\x13\x4e")
        )
        self.clock.advance(60)
        self.work = sign_on(
            self.server, "Alice", self.alice_work, away_message=b"lunch", idle_since=1_700_000_030.0
        )
        sign_on(self.server, "Bob", self.bob)
        self.clock.advance(30)
        self.ns = console.namespace(self.server)

    def test_namespace_holds_the_live_objects(self) -> None:
        """The console sees the running server's registry, store and config."""
        self.assertIs(self.ns["server"], self.server)
        self.assertIs(self.ns["registry"], self.server.registry)
        self.assertIs(self.ns["store"], self.server.store)
        self.assertIs(self.ns["config"], self.server.config)

    def test_users(self) -> None:
        """users() lists who is signed on, with the number of sessions each."""
        self.assertEqual(self.ns["users"](), {"Alice": 2, "Bob": 1})

    def test_sessions(self) -> None:
        """sessions(name) lists each instance, oldest first, with its client,
        address, sign-on time, idle time, away and capabilities; any spelling
        of the name works."""
        home, work = self.ns["sessions"]("A LICE")
        self.assertEqual(
            home,
            console.SessionSummary(
                instance_id=self.home.instance_id,
                client_id="test client",
                ip="192.0.2.7",
                connected_at="2023-11-14T22:13:20Z",
                idle=None,
                away=False,
                capabilities=("0946134e-4c7f-11d1-8222-444553540000", "134e"),
            ),
        )
        self.assertEqual(
            (work.instance_id, work.connected_at, work.idle, work.away),
            (self.work.instance_id, "2023-11-14T22:14:20Z", 60, True),
        )

    def test_session(self) -> None:
        """session(name, id) shows one instance in detail."""
        details = self.ns["session"]("alice", self.work.instance_id)
        self.assertEqual(details["instance_id"], self.work.instance_id)
        self.assertEqual(details["away_message"], "lunch")
        self.assertTrue(details["online"])
        self.assertEqual(details["multiconn_flags"], MULTICONN_MULTI)

    def test_unknown_names_and_instances(self) -> None:
        """Asking about someone not signed on, or an instance they do not
        have, raises NotSignedOn (a LookupError) naming it."""
        for call in (
            lambda: self.ns["sessions"]("Carol"),
            lambda: self.ns["sessions"]("nobody"),
            lambda: self.ns["session"]("alice", 1),
            lambda: self.ns["kick"]("carol"),
            lambda: self.ns["kick"]("bob", self.home.instance_id),
            lambda: self.ns["broadcast"]("hi", to="carol"),
            lambda: self.ns["warn"]("carol"),
        ):
            self.assertRaises(console.NotSignedOn, call)
        self.assertEqual((self.alice_home.disconnects, self.bob.disconnects), ([], []))

    def test_kick_one_instance(self) -> None:
        """kick(name, id) closes that instance only, with a channel-4 close."""
        self.assertEqual(self.ns["kick"]("alice", self.home.instance_id), 1)
        self.assertEqual(self.alice_home.disconnects, [None])
        self.assertEqual((self.alice_work.disconnects, self.bob.disconnects), ([], []))

    def test_kick_everyone_of_a_user(self) -> None:
        """kick(name) closes all of that user's instances."""
        self.assertEqual(self.ns["kick"]("Alice"), 2)
        self.assertEqual(
            (self.alice_home.disconnects, self.alice_work.disconnects), ([None], [None])
        )
        self.assertEqual(self.bob.disconnects, [])

    def test_broadcast(self) -> None:
        """broadcast(text) reaches every online session of everyone, as a
        system message; with ``to``, only that user's sessions."""
        self.assertEqual(self.ns["broadcast"]("restart at noon"), 3)
        for conn in (self.alice_home, self.alice_work, self.bob):
            self.assertEqual([m.text for m in conn.messages()], [b"restart at noon"])
        self.assertEqual(self.ns["broadcast"]("just you", to="bob"), 1)
        self.assertEqual(len(self.alice_home.messages()), 1)
        self.assertEqual(self.bob.messages()[-1].text, b"just you")

    def test_broadcast_text_is_checked(self) -> None:
        """An empty or oversize broadcast is refused and sends nothing."""
        self.assertRaises(ValueError, self.ns["broadcast"], "")
        self.assertRaises(ValueError, self.ns["broadcast"], "x" * 8001)
        self.assertEqual(self.bob.messages(), [])

    def test_warn(self) -> None:
        """warn(name, percent) raises the user's warning level as an
        anonymous warning: every session of the user is told (01,10, no
        warner) and it is stored; a negative percent lowers it, never below 0."""
        self.assertEqual(self.ns["warn"]("alice"), 10.0)
        self.assertEqual(self.ns["warn"]("Alice", 25), 35.0)
        for conn in (self.alice_home, self.alice_work):
            warned = [e for e in conn.events if isinstance(e, Warned)]
            self.assertEqual([(w.level, w.warner) for w in warned], [(100, None), (350, None)])
        self.assertFalse([e for e in self.bob.events if isinstance(e, Warned)])
        self.assertEqual(result_of(self.store.get_account("alice")).warning_level, 350)
        self.assertEqual(self.ns["warn"]("alice", -100), 0.0)
        self.assertEqual(self.ns["warn"]("alice", 100), 100.0)
        self.assertEqual(self.ns["warn"]("alice", 5), 100.0)

    def test_warn_amount_is_checked(self) -> None:
        """A percent that is not a number from -100 to 100 changes nothing."""
        for bad in (101, -101, float("nan"), "10", True):
            self.assertRaises(ValueError, self.ns["warn"], "alice", bad)
        self.assertFalse([e for e in self.alice_home.events if isinstance(e, Warned)])

    def test_help(self) -> None:
        """help() lists every helper with its arguments; the console shows
        it as text, not as a quoted string."""
        text = self.ns["help"]()
        for helper in (
            "users()",
            "sessions(name)",
            "kick(name, instance_id=None)",
            "warn(name, percent=10)",
            "broadcast(",
        ):
            self.assertIn(helper, text)
        self.assertEqual(repr(text), str(text))


class PasswordHashTests(unittest.SynchronousTestCase):
    def test_round_trip(self) -> None:
        """A hash accepts its password and nothing else; the INI takes it."""
        encoded = hash_password(PASSWORD, FAST_ITERATIONS)
        self.assertTrue(encoded.startswith(f"pbkdf2_sha256${FAST_ITERATIONS}$"))
        self.assertTrue(check_password(PASSWORD.encode(), encoded))
        self.assertFalse(check_password(b"console pas", encoded))
        config = load_config(None, {"manhole.password_hash": encoded})
        self.assertEqual(config.manhole.password_hash, encoded)

    def test_default_cost_and_salt(self) -> None:
        """By default the hash is salted afresh and costs 600,000 iterations."""
        first, second = hash_password("a"), hash_password("a")
        self.assertNotEqual(first, second)
        self.assertEqual(first.split("$")[1], "600000")

    def test_malformed_hashes(self) -> None:
        """A malformed hash matches no password, and the INI refuses it."""
        for bad in ("", "plain", "md5$1$00$00", "pbkdf2_sha256$x$00$00", "pbkdf2_sha256$1$zz$00"):
            self.assertFalse(check_password(b"", bad), bad)
        path = FilePath(self.mktemp())
        path.setContent(b"[manhole]\npassword_hash = hunter2\n")
        from aimserver.config import ConfigError

        error = self.assertRaises(ConfigError, load_config, path.path)
        self.assertEqual((error.section, error.key), ("manhole", "password_hash"))

    def test_checker(self) -> None:
        """The checker admits the configured user with the right password only."""
        checker = PasswordHashChecker(
            "admin", hash_password(PASSWORD, FAST_ITERATIONS), None, run=defer.maybeDeferred
        )
        self.assertEqual(
            self.successResultOf(
                checker.requestAvatarId(UsernamePassword(b"admin", PASSWORD.encode()))
            ),
            b"admin",
        )
        for user, password in ((b"admin", b"wrong"), (b"root", PASSWORD.encode())):
            self.failureResultOf(
                checker.requestAvatarId(UsernamePassword(user, password)), UnauthorizedLogin
            )


class HostKeyTests(unittest.SynchronousTestCase):
    def test_made_once_and_private(self) -> None:
        """The first start makes an Ed25519 key readable by the owner only;
        later starts use the same key."""
        path = self.mktemp()
        key = load_host_key(path)
        self.assertEqual(key.sshType(), b"ssh-ed25519")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(load_host_key(path), key)

    def test_next_to_the_database(self) -> None:
        """Unless [manhole] host_key says otherwise, the key lives next to the database."""
        config = load_config(None, {"server.db": "/var/lib/aim/db.sqlite"})
        self.assertEqual(host_key_path(config), "/var/lib/aim/db.sqlite.manhole_host_key")
        config = load_config(None, {"manhole.host_key": "/etc/aim/key"})
        self.assertEqual(host_key_path(config), "/etc/aim/key")

    def test_authorized_keys_file(self) -> None:
        """The keys file serves the console user only, and a missing file no key."""
        key = keys.Key(ed25519.Ed25519PrivateKey.generate())
        path = FilePath(self.mktemp())
        path.setContent(b"# admins\n" + key.public().toString("openssh") + b" me@host\n")
        self.assertEqual(
            list(AuthorizedKeysFile("admin", path.path).getAuthorizedKeys(b"admin")), [key.public()]
        )
        self.assertEqual(
            list(AuthorizedKeysFile("admin", path.path).getAuthorizedKeys(b"root")), []
        )
        missing = AuthorizedKeysFile("admin", self.mktemp())
        self.assertEqual(list(missing.getAuthorizedKeys(b"admin")), [])


# -- a real SSH client ----------------------------------------------------------------------


class _Terminal(channel.SSHChannel):
    """A shell channel with a pty: what ``ssh`` opens."""

    name = b"session"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.output = b""
        self.ready: defer.Deferred[None] = defer.Deferred()

    def channelOpen(self, data: bytes) -> None:  # noqa: N802
        pty = session.packRequest_pty_req(b"xterm", (24, 80, 0, 0), b"")
        d = self.conn.sendRequest(self, b"pty-req", pty, wantReply=True)
        d.addCallback(lambda _: self.conn.sendRequest(self, b"shell", b"", wantReply=True))
        d.chainDeferred(self.ready)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.output += data


class _Connection(connection.SSHConnection):
    def __init__(self, factory: _ClientFactory) -> None:
        super().__init__()
        self.factory = factory

    def serviceStarted(self) -> None:  # noqa: N802
        super().serviceStarted()
        terminal = _Terminal(conn=self)
        self.openChannel(terminal)
        self.factory.logged_in.callback(terminal)


class _UserAuth(userauth.SSHUserAuthClient):
    """Offers the factory's key and then its password, once each."""

    def __init__(self, factory: _ClientFactory) -> None:
        super().__init__(factory.user, _Connection(factory))
        self.factory = factory
        self.offered: set[str] = set()

    def getPublicKey(self) -> keys.Key | None:  # noqa: N802
        if self.factory.key is None or "key" in self.offered:
            return None
        self.offered.add("key")
        return self.factory.key.public()

    def getPrivateKey(self) -> defer.Deferred[keys.Key]:  # noqa: N802
        return defer.succeed(self.factory.key)

    def getPassword(self, prompt: bytes | None = None) -> defer.Deferred[bytes] | None:  # noqa: N802
        if self.factory.password is None or "password" in self.offered:
            return None
        self.offered.add("password")
        return defer.succeed(self.factory.password)


class _ClientTransport(transport.SSHClientTransport):
    def verifyHostKey(self, hostKey: bytes, fingerprint: bytes) -> defer.Deferred[bool]:  # noqa: N802, N803
        if keys.Key.fromString(hostKey) != self.factory.host_key.public():
            return defer.fail(Exception("unexpected host key"))
        return defer.succeed(True)

    def connectionMade(self) -> None:  # noqa: N802
        super().connectionMade()
        self.factory.transport = self.transport

    def connectionSecure(self) -> None:  # noqa: N802
        self.requestService(_UserAuth(self.factory))

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        super().connectionLost(reason)
        if not self.factory.logged_in.called:
            self.factory.logged_in.errback(NotLoggedIn(reason))
        self.factory.lost.callback(None)


class NotLoggedIn(Exception):
    """The connection ended before the console opened."""


class _ClientFactory(ClientFactory):
    protocol = _ClientTransport

    def __init__(
        self, host_key: keys.Key, user: bytes, password: bytes | None, key: keys.Key | None
    ) -> None:
        self.host_key = host_key
        self.user = user
        self.password = password
        self.key = key
        self.logged_in: defer.Deferred[_Terminal] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()


async def _until(condition: Any, what: str) -> None:
    await wait_until(condition, what, timeout=TIMEOUT)


class ManholeEndToEndTests(unittest.TestCase):
    """The manhole as ``twistd aimserver`` builds it, on a loopback port, in
    front of the same AimServer as the OSCAR listeners."""

    async def start(self, *, keys_file: str = "", password: bool = True) -> None:
        self.patch(userauth.SSHUserAuthServer, "passwordDelay", 0)
        self.client_key = keys.Key(ed25519.Ed25519PrivateKey.generate())
        settings: dict[str, object] = {"multisession.notify": False}
        if password:
            settings["manhole.password_hash"] = hash_password(PASSWORD, FAST_ITERATIONS)
        if keys_file:
            settings["manhole.authorized_keys"] = keys_file
        config = load_config(None, settings)
        self.aim = await LoopbackServer.start(config, accounts={"Alice": "secret", "Bob": "secret"})
        self.addCleanup(self.aim.stop)
        self.host_key = load_host_key(self.mktemp())
        self.listening = WrappingFactory(manhole_factory(self.aim.server, self.host_key, reactor))
        self.port = reactor.listenTCP(0, self.listening, interface="127.0.0.1")
        self.addCleanup(self.stop_manhole, self.port)

    async def stop_manhole(self, port: Any) -> None:
        await port.stopListening()
        for proto in list(self.listening.protocols):
            proto.transport.loseConnection()
        await _until(lambda: not self.listening.protocols, "the manhole connections closed")

    async def connect(
        self, *, password: str | None = None, key: keys.Key | None = None, user: bytes = b"admin"
    ) -> _ClientFactory:
        factory = _ClientFactory(
            self.host_key, user, password.encode() if password is not None else None, key
        )
        endpoint = TCP4ClientEndpoint(
            reactor, "127.0.0.1", self.port.getHost().port, timeout=TIMEOUT
        )
        await endpoint.connect(factory)
        return factory

    async def evaluate(self, terminal: _Terminal, expression: bytes, answer: bytes) -> None:
        """Type ``expression`` at the prompt and wait for ``answer`` in the output."""
        await terminal.ready
        await _until(lambda: b">>> " in terminal.output, "the console's prompt")
        terminal.write(expression + b"\r")
        await _until(
            lambda: answer in terminal.output,
            lambda: f"{answer!r} in the console output {terminal.output!r}",
        )

    async def log_out(self, factory: _ClientFactory) -> None:
        factory.transport.loseConnection()
        await factory.lost
        await _until(lambda: not self.listening.protocols, "the server end closed")

    async def refused(self, factory: _ClientFactory) -> None:
        """The server ends the connection without logging the client in."""
        await factory.lost
        self.failureResultOf(factory.logged_in, NotLoggedIn)

    @deferred_test
    async def test_password_login_sees_the_live_registry(self) -> None:
        """With the right password, the console evaluates Python against the
        running server: it sees a user who signed on over OSCAR."""
        await self.start()
        alice = await self.aim.session("Alice")
        self.addCleanup(alice.close)
        factory = await self.connect(password=PASSWORD)
        terminal = await factory.logged_in
        await self.evaluate(terminal, b"('users', len(registry.users))", b"('users', 1)")
        await self.evaluate(terminal, b"users()", b"{'Alice': 1}")
        await self.log_out(factory)

    async def answer(self, terminal: _Terminal, expression: bytes, answer: bytes) -> None:
        """``evaluate``, seeing only the output from this expression on."""
        await terminal.ready
        await _until(lambda: b">>> " in terminal.output, "the console's prompt")
        terminal.output = b""
        terminal.write(expression + b"\r")
        await _until(
            lambda: answer in terminal.output and b">>> " in terminal.output,
            lambda: f"{answer!r} in the console output {terminal.output!r}",
        )

    @deferred_test
    async def test_every_helper_against_the_running_server(self) -> None:
        """Each helper, typed at the console over SSH, acts on the server
        that real OSCAR clients are signed on to: sessions and one session
        listed, a broadcast and a warning reach the clients, kick closes one
        instance, reload applies a re-read INI's access lists, help lists them."""
        await self.start()
        ini = FilePath(self.mktemp())
        ini.setContent(b"")
        self.aim.server.config_loader = lambda: load_config(ini.path)
        home = await self.aim.session("Alice")
        work = await self.aim.session("Alice")
        bob = await self.aim.session("Bob")
        for client in (home, work, bob):
            self.addCleanup(client.close)
        factory = await self.connect(password=PASSWORD)
        terminal = await factory.logged_in

        await self.answer(terminal, b"users()", b"{'Alice': 2, 'Bob': 1}")
        await self.answer(terminal, b"('n', len(sessions('alice')))", b"('n', 2)")
        first = self.aim.server.registry.get("alice").online_instances()[0]
        await self.answer(
            terminal,
            f"session('alice', {first.instance_id})['client_id']".encode(),
            repr(first.client_id).encode(),
        )
        await self.answer(terminal, b"('sent', broadcast('Restart at noon'))", b"('sent', 3)")
        for client in (home, work, bob):
            sender, text, _ = await client.receive_im()
            self.assertEqual((sender.screen_name, text), ("AOL System Msg", b"Restart at noon"))
        await self.answer(terminal, b"warn('bob', 10)", b"10.0")
        _, warned = await bob.flap.wait_snac(0x01, 0x10)
        self.assertEqual(warned[:2], b"\x00\x64")  # 10 %, no warner
        await self.answer(
            terminal, f"('closed', kick('alice', {first.instance_id}))".encode(), b"('closed', 1)"
        )
        await _until(lambda: first.closed, "the kicked instance closed")
        await _until(
            lambda: len(self.aim.server.registry.get("alice").online_instances()) == 1,
            "one Alice session left",
        )
        ini.setContent(b"[access]\ndeny_names = Bob\n")
        await self.answer(terminal, b"reload()", b"['access lists']")
        await bob.flap.wait_lost()
        await self.answer(terminal, b"users()", b"{'Alice': 1}")
        await self.answer(terminal, b"help()", b"warn(name, percent=10)")
        await self.answer(terminal, b"sessions('bob')", b"NotSignedOn: not signed on: bob")
        await self.log_out(factory)

    @deferred_test
    async def test_key_login(self) -> None:
        """A key listed in the authorized_keys file logs in."""
        keys_file = FilePath(self.mktemp())
        await self.start(keys_file=keys_file.path, password=False)
        keys_file.setContent(self.client_key.public().toString("openssh") + b"\n")
        factory = await self.connect(key=self.client_key)
        terminal = await factory.logged_in
        await self.evaluate(terminal, b"6 * 7", b"42")
        await self.log_out(factory)

    @deferred_test
    async def test_wrong_password_is_refused(self) -> None:
        """A wrong password, or the right one for another user, gets no console."""
        await self.start()
        await self.refused(await self.connect(password="wrong"))
        await self.refused(await self.connect(password=PASSWORD, user=b"root"))
        await _until(lambda: not self.listening.protocols, "the server end closed")

    @deferred_test
    async def test_unknown_key_is_refused(self) -> None:
        """A key not in the authorized_keys file gets no console."""
        keys_file = FilePath(self.mktemp())
        await self.start(keys_file=keys_file.path, password=False)
        stranger = keys.Key(ed25519.Ed25519PrivateKey.generate())
        keys_file.setContent(self.client_key.public().toString("openssh") + b"\n")
        await self.refused(await self.connect(key=stranger))
        await _until(lambda: not self.listening.protocols, "the server end closed")
