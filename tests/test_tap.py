"""The twistd plugin's wiring: options, INI overrides and the service tree."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys

from twisted.application.service import IServiceCollection, IServiceMaker
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.python.filepath import FilePath
from twisted.trial import unittest

from aimserver.manhole import hash_password
from aimserver.store.sqlite import SCHEMA_VERSION
from aimserver.tap import Options, makeService
from tests.test_store import make_v1


class OptionsTests(unittest.SynchronousTestCase):
    def test_defaults_are_the_documented_ones(self) -> None:
        """Without options the server binds 127.0.0.1 on 5190/5191 and keeps its
        data in aimserver.sqlite."""
        options = Options()
        options.parseOptions([])
        config = options.config
        self.assertEqual(config.server.db, "aimserver.sqlite")
        self.assertEqual(config.endpoint("auth"), "tcp:5190:interface=127.0.0.1:backlog=4096")
        self.assertEqual(config.endpoint("bos"), "tcp:5191:interface=127.0.0.1:backlog=4096")
        self.assertEqual(
            (config.ports.chat, config.ports.api, config.ports.manhole), (5192, 8080, 2222)
        )

    def test_command_line_overrides_the_ini(self) -> None:
        """An option given on the command line wins over the INI file."""
        ini = FilePath(self.mktemp())
        ini.setContent(b"[ports]\nauth = 6000\nbos = 6001\n[server]\ndb = from-ini.sqlite\n")
        options = Options()
        options.parseOptions(["--config", ini.path, "--auth-port", "7000", "--db", "cli.sqlite"])
        self.assertEqual(options.config.ports.auth, 7000)
        self.assertEqual(options.config.ports.bos, 6001)
        self.assertEqual(options.config.server.db, "cli.sqlite")

    def test_bad_ini_is_a_usage_error(self) -> None:
        """A typo in the INI stops start-up with a message naming section and key."""
        ini = FilePath(self.mktemp())
        ini.setContent(b"[ports]\nauht = 1\n")
        options = Options()
        error = self.assertRaises(usage.UsageError, options.parseOptions, ["--config", ini.path])
        self.assertIn("auht", str(error))


class MakeServiceTests(unittest.SynchronousTestCase):
    def test_listeners_and_store(self) -> None:
        """makeService listens for auth, BOS and chat on the configured
        interface and ports, and runs the database; a chat room's redirect
        names the chat port."""
        options = Options()
        db = os.path.abspath(self.mktemp())
        options.parseOptions(
            ["--db", db, "--host", "127.0.0.2", "--bos-port", "6191", "--chat-port", "6192"]
        )
        reactor = MemoryReactorClock()
        service = makeService(options, reactor=reactor)
        self.assertTrue(IServiceCollection.providedBy(service))
        # The listeners only: the store's DB thread needs a real reactor.
        for name in ("auth", "bos", "chat"):
            service.getServiceNamed(name).startService()
        ports = sorted((port, interface) for port, _, _, interface in reactor.tcpServers)
        self.assertEqual(ports, [(5190, "127.0.0.2"), (6191, "127.0.0.2"), (6192, "127.0.0.2")])
        self.assertEqual(service.server.chat_address, "127.0.0.2:6192")
        # The reactor-lag probe /metrics reads runs with the server.
        self.assertIn(service.server.reactor_lag, list(service))
        self.assertTrue(FilePath(db).exists())
        self.successResultOf(service.server.store.store.stop())

    def test_auto_register_warns_loudly(self) -> None:
        """auto_register logs a warning at start, louder off loopback."""
        from twisted.logger import globalLogPublisher

        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for host, loud in (("127.0.0.1", False), ("0.0.0.0", True)):
            ini = FilePath(self.mktemp())
            ini.setContent(
                b"[auth]\nauto_register = true\n[server]\nadvertised_host = 192.0.2.1\n"
                b"[api]\ntoken = 0123456789abcdef\n"
            )
            options = Options()
            db = os.path.abspath(self.mktemp())
            options.parseOptions(["--config", ini.path, "--db", db, "--host", host])
            events.clear()
            service = makeService(options, reactor=MemoryReactorClock())
            self.successResultOf(service.server.store.store.stop())
            (warning,) = [e for e in events if "auto_register is ON" in e.get("log_format", "")]
            self.assertEqual("ANYONE" in warning["where"], loud)

    def test_api_off_loopback_needs_a_token(self) -> None:
        """The management API may listen off loopback only with a token."""
        error = self.assertRaises(
            usage.UsageError,
            Options().parseOptions,
            ["--host", "10.1.2.3", "--db", self.mktemp()],
        )
        self.assertIn("[api] token", str(error))

    def test_sighup_reloads_the_ini(self) -> None:
        """SIGHUP re-reads the INI (with the command line's overrides) and
        applies what can change live: here the MOTD and the access lists."""
        import os
        import signal

        from aimserver import tap

        ini = FilePath(self.mktemp())
        ini.setContent(b"[motd]\ntext = old\n")
        options = Options()
        options.parseOptions(["--config", ini.path, "--db", self.mktemp()])
        reactor = MemoryReactorClock()
        service = makeService(options, reactor=reactor)
        self.addCleanup(lambda: self.successResultOf(service.server.store.store.stop()))
        previous = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, previous)
        reactor.callFromThread = lambda f, *a: f(*a)  # type: ignore[method-assign]
        tap._reload_on_sighup(service.server, reactor)
        ini.setContent(b"[motd]\ntext = new\n[access]\ndeny_names = Mallory\n")
        os.kill(os.getpid(), signal.SIGHUP)
        self.assertEqual(service.server.motd.text, "new")
        self.assertFalse(service.server.access.admits_name("mallory"))
        # A broken INI keeps what is in force.
        ini.setContent(b"[motd]\ntxet = typo\n")
        os.kill(os.getpid(), signal.SIGHUP)
        self.assertEqual(service.server.motd.text, "new")

    def test_plugin_is_discoverable(self) -> None:
        """`twistd aimserver` finds the plugin."""
        import twisted.plugins

        names = [p.tapname for p in getPlugins(IServiceMaker, twisted.plugins)]
        self.assertIn("aimserver", names)


class ManholeTests(unittest.SynchronousTestCase):
    """The admin console's listener (issue 17)."""

    def options(self, ini: str, *argv: str) -> Options:
        path = FilePath(self.mktemp())
        path.setContent(ini.encode())
        options = Options()
        options.parseOptions(["--config", path.path, "--db", self.mktemp(), *argv])
        return options

    def make(self, options: Options) -> tuple[IServiceCollection, MemoryReactorClock]:
        reactor = MemoryReactorClock()
        service = makeService(options, reactor=reactor)
        self.addCleanup(lambda: self.successResultOf(service.server.store.store.stop()))
        return service, reactor

    def test_off_without_a_login(self) -> None:
        """With neither authorized_keys nor password_hash there is no console,
        and the log says how to enable it."""
        with capturedLogs() as events:
            service, _ = self.make(self.options(""))
        self.assertNotIn("manhole", [s.name for s in service])
        (line,) = [e for e in events if "manhole console off" in e["log_format"]]
        self.assertIn("password_hash", line["log_format"])

    def test_listens_on_loopback_with_a_password(self) -> None:
        """A password hash starts the console on 127.0.0.1:2222, and the first
        start makes a private host key next to the database."""
        options = self.options(f"[manhole]\npassword_hash = {hash_password('pw', 1000)}\n")
        service, reactor = self.make(options)
        service.getServiceNamed("manhole").startService()
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [(2222, "127.0.0.1")],
        )
        key = FilePath(options.config.server.db + ".manhole_host_key")
        self.assertEqual(stat.S_IMODE(os.stat(key.path).st_mode), 0o600)
        first = key.getContent()
        self.make(options)
        self.assertEqual(key.getContent(), first)

    def test_off_loopback_needs_keys(self) -> None:
        """Off loopback, a password alone is a start-up error; with an
        authorized_keys file the console may listen there."""
        ini = (
            "[api]\ntoken = 0123456789abcdef\n"
            f"[manhole]\npassword_hash = {hash_password('pw', 1000)}\n"
        )
        error = self.assertRaises(usage.UsageError, self.options, ini, "--host", "10.1.2.3")
        self.assertIn("[manhole] authorized_keys", str(error))
        keys_file = FilePath(self.mktemp())
        keys_file.setContent(b"")
        options = self.options(f"{ini}authorized_keys = {keys_file.path}\n", "--host", "10.1.2.3")
        service, reactor = self.make(options)
        service.getServiceNamed("manhole").startService()
        self.assertEqual(reactor.tcpServers[0][3], "10.1.2.3")

    def test_unreadable_authorized_keys(self) -> None:
        """An authorized_keys file that cannot be read stops start-up, naming it."""
        missing = self.mktemp()
        error = self.assertRaises(
            usage.UsageError, self.options, f"[manhole]\nauthorized_keys = {missing}\n"
        )
        self.assertIn(missing, str(error))


class UnusableDatabaseTests(unittest.TestCase):
    """Issue 19: `twistd aimserver` on a database it cannot use stops with
    the reason on stderr and status 1, no traceback, and leaves the file as
    it was."""

    timeout = 60

    def start(self, db: str) -> tuple[int, str]:
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
        ports = [arg for flag in PORT_FLAGS for arg in (flag, "0")]
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from twisted.scripts.twistd import run; run()",
                "-n",
                "--pidfile",
                "",
                "aimserver",
                "--db",
                db,
                *ports,
            ],
            env=env,
            cwd=repo,
            capture_output=True,
            timeout=30,
        )
        return done.returncode, done.stderr.decode(errors="replace") + done.stdout.decode(
            errors="replace"
        )

    def check_refused(self, db: str, reason: str) -> None:
        with open(db, "rb") as f:
            before = f.read()
        status, output = self.start(db)
        self.assertEqual(status, 1, output)
        self.assertIn(reason, output)
        self.assertNotIn("Traceback", output)
        with open(db, "rb") as f:
            self.assertEqual(f.read(), before)

    def test_not_a_database(self) -> None:
        db = os.path.abspath(self.mktemp())
        with open(db, "wb") as f:
            f.write(b"this is not SQLite at all\n" * 100)
        self.check_refused(db, "file is not a database")

    def test_a_newer_aimservers_database(self) -> None:
        db = os.path.abspath(self.mktemp())
        make_v1(db)
        conn = sqlite3.connect(db)
        conn.execute("UPDATE version SET version = ?", (SCHEMA_VERSION + 1,))
        conn.commit()
        conn.close()
        self.check_refused(db, f"version {SCHEMA_VERSION + 1}")

    def test_a_corrupt_database(self) -> None:
        """A real database with its pages overwritten in the middle."""
        db = os.path.abspath(self.mktemp())
        make_v1(db)
        with open(db, "r+b") as f:
            f.seek(4096)
            f.write(b"\xde\xad\xbe\xef" * 1024)
        self.check_refused(db, "malformed")


PORT_FLAGS = ("--auth-port", "--bos-port", "--chat-port", "--api-port", "--web-port")
