"""Tests for aimserver.config: INI file and command line -> one validated Config."""

from __future__ import annotations

import configparser
from pathlib import Path

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from aimserver.config import (
    LISTENER_NAMES,
    Config,
    ConfigError,
    ConnectionConfig,
    PortsConfig,
    ServerConfig,
    load_config,
)

SHIPPED_INI = Path(__file__).resolve().parent.parent / "etc" / "aimserver.ini"


class ConfigTestCase(SynchronousTestCase):
    def write_ini(self, text: str, encoding: str = "utf-8") -> str:
        """A temporary INI file holding ``text``; returns its path."""
        path = self.mktemp()
        Path(path).write_text(text, encoding=encoding)
        return path

    def assertConfigError(
        self, path: str | None, overrides: dict[str, object], section: str | None, key: str | None
    ) -> ConfigError:
        """``load_config`` refuses, and its message names the source, section and key."""
        error = self.assertRaises(ConfigError, load_config, path, overrides)
        self.assertEqual((error.section, error.key), (section, key))
        message = str(error)
        self.assertIn(path if path is not None else "command line", message)
        if section is not None:
            self.assertIn(f"[{section}]", message)
        if key is not None:
            self.assertIn(key, message)
        return error


class DefaultsTests(ConfigTestCase):
    def test_defaults(self) -> None:
        """The built-in defaults are a private server on the classic ports."""
        config = Config()
        self.assertEqual(
            attrs.asdict(config),
            {
                "server": {"host": "127.0.0.1", "advertised_host": "", "db": "aimserver.sqlite"},
                "ports": {
                    "auth": 5190,
                    "bos": 5191,
                    "chat": 5192,
                    "api": 8080,
                    "manhole": 2222,
                    "web": 8081,
                },
                "listeners": {name: "" for name in LISTENER_NAMES},
                "auth": {
                    "auto_register": False,
                    "reveal_unknown_names": False,
                    "allow_weak_hash": True,
                    "cookie_lifetime": 60.0,
                    "login_timeout": 30.0,
                    "max_logins_per_second": 1000.0,
                    "max_logins_per_ip_per_minute": 60.0,
                },
                "connection": {
                    "max_frame_size": 65535,
                    "max_unauthenticated_frame_size": 2048,
                    "keepalive_interval": 60.0,
                    "listen_backlog": 4096,
                    "idle_timeout": 0.0,
                    "max_connections_per_address": 200,
                    "max_pending_connections": 10_000,
                    "max_send_queue": 1 << 20,
                },
                "multisession": {"max_sessions": 5, "notify": True},
                "chat": {
                    "max_occupancy": 100,
                    "max_message_length": 1024,
                    "max_rooms_per_user": 10,
                    "max_private_rooms": 10_000,
                },
                "api": {"token": ""},
                "motd": {"text": ""},
                "access": {
                    "allow_names": (),
                    "deny_names": (),
                    "allow_networks": (),
                    "deny_networks": (),
                },
                "ratelimit": {"enabled": True},
                "logging": {"trace_flap": False},
                "manhole": {
                    "user": "admin",
                    "authorized_keys": "",
                    "password_hash": "",
                    "host_key": "",
                },
                "web": {
                    "resume_seconds": 120.0,
                    "history": True,
                    "history_days": 30,
                    "history_messages": 1000,
                    "signup": False,
                    "signups_per_address_per_hour": 3,
                    "signups_per_hour": 60,
                },
            },
        )

    def test_no_file(self) -> None:
        """Without a file and overrides, load_config gives the defaults."""
        self.assertEqual(load_config(None, {}), Config())

    def test_shipped_ini_is_defaults(self) -> None:
        """etc/aimserver.ini changes nothing: its values are the built-in defaults."""
        self.assertEqual(load_config(str(SHIPPED_INI), {}), Config())

    def test_shipped_ini_lists_every_knob(self) -> None:
        """etc/aimserver.ini mentions every setting, so it documents them all."""
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(SHIPPED_INI, encoding="utf-8-sig")
        expected = {
            section.name: {key.name for key in attrs.fields(section.default.factory)}
            for section in attrs.fields(Config)
        }
        self.assertEqual({s: set(parser[s]) for s in parser.sections()}, expected)

    def test_construction_validates(self) -> None:
        """Code that builds a Config directly gets the same checks, as ValueError."""
        self.assertRaises(ValueError, PortsConfig, auth=70000)
        self.assertRaises(ValueError, PortsConfig, auth=True)
        self.assertRaises(ValueError, ServerConfig, host="0.0.0.0")
        self.assertRaises(ValueError, ConnectionConfig, max_frame_size=1000)


class LayeringTests(ConfigTestCase):
    def test_ini_over_defaults(self) -> None:
        """Values in the INI replace the defaults; the rest stay."""
        path = self.write_ini(
            "[ports]\nauth = 6190\n[auth]\nauto_register = yes\ncookie_lifetime = 5\n"
            "[multisession]\nnotify = off\n"
        )
        config = load_config(path, {})
        self.assertEqual(config.ports.auth, 6190)
        self.assertEqual(config.ports.bos, 5191)
        self.assertTrue(config.auth.auto_register)
        self.assertEqual(config.auth.cookie_lifetime, 5.0)
        self.assertFalse(config.multisession.notify)

    def test_allow_weak_hash(self) -> None:
        """[auth] allow_weak_hash is on unless the INI or an override turns
        it off, in any of the boolean spellings."""
        self.assertTrue(load_config(self.write_ini("[auth]\n"), {}).auth.allow_weak_hash)
        for text in ("false", "no", "off", "0"):
            path = self.write_ini(f"[auth]\nallow_weak_hash = {text}\n")
            self.assertFalse(load_config(path, {}).auth.allow_weak_hash, text)
        for text in ("true", "yes", "on", "1"):
            path = self.write_ini(f"[auth]\nallow_weak_hash = {text}\n")
            self.assertTrue(load_config(path, {}).auth.allow_weak_hash, text)
        path = self.write_ini("[auth]\nallow_weak_hash = true\n")
        config = load_config(path, {"auth.allow_weak_hash": "false"})
        self.assertFalse(config.auth.allow_weak_hash)

    def test_overrides_over_ini(self) -> None:
        """Command-line overrides win over the INI, typed or as text."""
        path = self.write_ini("[server]\nhost = 10.0.0.1\ndb = from-ini.sqlite\n[ports]\nbos = 1\n")
        config = load_config(
            path, {"server.db": "cli.sqlite", "ports.bos": 7000, "server.host": None}
        )
        self.assertEqual(config.server.db, "cli.sqlite")
        self.assertEqual(config.ports.bos, 7000)
        # None means "option not given": the INI value stays.
        self.assertEqual(config.server.host, "10.0.0.1")

    def test_overrides_without_file(self) -> None:
        """Overrides apply to the defaults when there is no file; 0 is a valid port."""
        config = load_config(None, {"ports.auth": 0, "ports.bos": "0", "server.host": "::1"})
        self.assertEqual((config.ports.auth, config.ports.bos), (0, 0))
        self.assertEqual(config.server.host, "::1")

    def test_byte_order_mark(self) -> None:
        """A file saved with a UTF-8 byte order mark is read normally."""
        path = self.write_ini("[ports]\nauth = 6190\n", encoding="utf-8-sig")
        self.assertEqual(load_config(path, {}).ports.auth, 6190)

    def test_case_and_whitespace(self) -> None:
        """Keys are case-insensitive and values are stripped, as configparser does."""
        path = self.write_ini("[ports]\nAUTH =   6190  \n[server]\nhost =  ::1 \n")
        config = load_config(path, {})
        self.assertEqual((config.ports.auth, config.server.host), (6190, "::1"))

    def test_percent_is_literal(self) -> None:
        """No interpolation: a "%" in a value is kept as is."""
        path = self.write_ini("[server]\ndb = /tmp/100%.sqlite\n")
        self.assertEqual(load_config(path, {}).server.db, "/tmp/100%.sqlite")

    @given(st.integers(-(2**20), 2**20))
    def test_port_range(self, port: int) -> None:
        """A port is accepted exactly when it is 0-65535, from the INI or the command line."""
        for overrides in [{"ports.chat": port}, {"ports.chat": str(port)}]:
            if 0 <= port <= 65535:
                self.assertEqual(load_config(None, overrides).ports.chat, port)
            else:
                self.assertConfigError(None, overrides, "ports", "chat")


class BadValueTests(ConfigTestCase):
    BAD_VALUES = [
        ("server", "host", ""),
        ("server", "host", "127.0.0.1:5190"),
        ("server", "host", "my host"),
        ("server", "advertised_host", "aim.example.com:5191"),
        # Not ASCII: it would go in every login reply's BOS address.
        ("server", "advertised_host", "aim.exämple.com"),
        ("server", "host", "hôst"),
        ("server", "db", ""),
        ("ports", "auth", "70000"),
        ("ports", "auth", "-1"),
        ("ports", "bos", "5191.5"),
        ("ports", "chat", "chat"),
        ("auth", "auto_register", "maybe"),
        ("auth", "allow_weak_hash", "sometimes"),
        ("auth", "allow_weak_hash", ""),
        ("auth", "cookie_lifetime", "0"),
        ("auth", "cookie_lifetime", "-5"),
        ("auth", "login_timeout", "nan"),
        ("auth", "login_timeout", "inf"),
        ("auth", "login_timeout", "soon"),
        ("connection", "max_frame_size", "15"),
        ("connection", "max_frame_size", "65536"),
        ("connection", "max_unauthenticated_frame_size", "0"),
        ("connection", "keepalive_interval", "0"),
        ("connection", "listen_backlog", "0"),
        ("connection", "max_send_queue", "1000"),
        ("multisession", "max_sessions", "0"),
        ("multisession", "notify", "2"),
        ("ratelimit", "enabled", "maybe"),
        ("logging", "trace_flap", ""),
    ]

    def test_bad_values_in_file(self) -> None:
        """Each kind of bad value in the INI is refused, naming file, section and key."""
        for section, key, text in self.BAD_VALUES:
            path = self.write_ini(f"[{section}]\n{key} = {text}\n")
            self.assertConfigError(path, {}, section, key)

    def test_bad_values_on_command_line(self) -> None:
        """The same values are refused as overrides, naming the command line."""
        for section, key, text in self.BAD_VALUES:
            self.assertConfigError(None, {f"{section}.{key}": text}, section, key)

    def test_bad_typed_overrides(self) -> None:
        """Typed overrides are checked too: a bool is not a port, a str port is parsed."""
        self.assertConfigError(None, {"ports.auth": True}, "ports", "auth")
        self.assertConfigError(None, {"ports.auth": 5190.0}, "ports", "auth")
        self.assertConfigError(None, {"multisession.notify": 1}, "multisession", "notify")

    def test_message(self) -> None:
        """The message says where, what and what was expected."""
        path = self.write_ini("[ports]\nauth = 70000\n")
        error = self.assertConfigError(path, {}, "ports", "auth")
        self.assertEqual(
            str(error),
            f"{path}: [ports] auth: expected a port number from 0 to 65535"
            " (0: any free port), got '70000'",
        )
        self.assertEqual(error.source, path)


class UnknownSettingTests(ConfigTestCase):
    def test_unknown_section(self) -> None:
        """A section no setting lives in is refused, with a suggestion."""
        path = self.write_ini("[port]\nauth = 5190\n")
        error = self.assertConfigError(path, {}, "port", None)
        self.assertIn("did you mean 'ports'", str(error))

    def test_unknown_key(self) -> None:
        """A key that is no setting of its section is refused, with a suggestion."""
        path = self.write_ini("[ports]\nauht = 5190\n")
        error = self.assertConfigError(path, {}, "ports", "auht")
        self.assertIn("did you mean 'auth'", str(error))

    def test_key_in_wrong_section(self) -> None:
        """A real key in the wrong section is still unknown there."""
        path = self.write_ini("[server]\nauth = 5190\n")
        self.assertConfigError(path, {}, "server", "auth")

    def test_default_section(self) -> None:
        """[DEFAULT] is not special: it is an unknown section like any other."""
        path = self.write_ini("[DEFAULT]\nhost = 127.0.0.1\n")
        self.assertConfigError(path, {}, "DEFAULT", None)

    def test_unknown_override(self) -> None:
        """An override for no setting is a bug in the caller, reported the same way."""
        self.assertConfigError(None, {"ports.www": 80}, "ports", "www")
        self.assertConfigError(None, {"www.port": 80}, "www", None)
        self.assertConfigError(None, {"ports": 80}, "ports", "")


class UnreadableFileTests(ConfigTestCase):
    def assertFileError(self, path: str) -> None:
        error = self.assertRaises(ConfigError, load_config, path, {})
        self.assertEqual((error.source, error.section, error.key), (path, None, None))
        self.assertIn(path, str(error))

    def test_missing_file(self) -> None:
        """A config file named explicitly must exist."""
        self.assertFileError(self.mktemp())

    def test_not_ini(self) -> None:
        """A file that is not INI syntax is refused with the file's name."""
        self.assertFileError(self.write_ini("host = 127.0.0.1\n"))

    def test_duplicate_key(self) -> None:
        """A key given twice is a mistake, not a silent override."""
        self.assertFileError(self.write_ini("[ports]\nauth = 1\nauth = 2\n"))

    def test_not_utf8(self) -> None:
        """A file in another encoding is refused, not misread."""
        path = self.mktemp()
        Path(path).write_bytes(b"[server]\ndb = caf\xe9.sqlite\n")
        self.assertFileError(path)


class ConflictTests(ConfigTestCase):
    def test_wildcard_host_needs_advertised_host(self) -> None:
        """Listening on every interface requires saying which address clients use."""
        for host in ["0.0.0.0", "::"]:
            error = self.assertConfigError(None, {"server.host": host}, "server", "advertised_host")
            self.assertIn("wildcard", str(error))
        config = load_config(
            None, {"server.host": "0.0.0.0", "server.advertised_host": "aim.example.com"}
        )
        self.assertEqual(config.advertised_address("bos"), "aim.example.com:5191")

    def test_conflict_names_the_file(self) -> None:
        """A conflict is reported against the source that set one of its keys."""
        path = self.write_ini("[server]\nhost = 0.0.0.0\n")
        self.assertConfigError(path, {}, "server", "advertised_host")

    def test_unauthenticated_frame_limit(self) -> None:
        """The limit before authentication cannot exceed the limit after it."""
        self.assertConfigError(
            None,
            {"connection.max_frame_size": 1000},
            "connection",
            "max_unauthenticated_frame_size",
        )


class EndpointTests(SynchronousTestCase):
    def listen(self, description: str) -> tuple[int, str]:
        """``(port, interface)`` that ``description`` listens on, in memory."""
        reactor = MemoryReactor()
        serverFromString(reactor, description).listen(Factory())
        [(port, _, _, interface)] = reactor.tcpServers
        return port, interface

    def test_ipv4(self) -> None:
        """By default each listener is TCP on the configured host and its port."""
        config = Config()
        self.assertEqual(config.endpoint("auth"), "tcp:5190:interface=127.0.0.1:backlog=4096")
        self.assertEqual(config.endpoint("manhole"), "tcp:2222:interface=127.0.0.1:backlog=4096")
        self.assertEqual(self.listen(config.endpoint("bos")), (5191, "127.0.0.1"))

    def test_ipv6(self) -> None:
        """Colons of an IPv6 host are escaped, so Twisted reads the address whole."""
        config = load_config(None, {"server.host": "::1", "ports.chat": 0})
        self.assertEqual(config.endpoint("chat"), r"tcp:0:interface=\:\:1:backlog=4096")
        self.assertEqual(self.listen(config.endpoint("chat")), (0, "::1"))

    def test_explicit_listener(self) -> None:
        """An explicit listener description wins over host and port."""
        description = "ssl:5191:interface=0.0.0.0:privateKey=key.pem"
        config = load_config(None, {"listeners.bos": description})
        self.assertEqual(config.endpoint("bos"), description)
        self.assertEqual(config.endpoint("auth"), "tcp:5190:interface=127.0.0.1:backlog=4096")

    def test_unknown_listener(self) -> None:
        """Asking for a listener that does not exist is a programming error."""
        self.assertRaises(ValueError, Config().endpoint, "www")
        self.assertRaises(ValueError, Config().advertised_address, "www")


class AdvertisedAddressTests(SynchronousTestCase):
    def test_defaults_to_host(self) -> None:
        """Without advertised_host, clients are sent to the listening host."""
        self.assertEqual(Config().advertised_address("bos"), "127.0.0.1:5191")
        self.assertEqual(Config().advertised_address("chat"), "127.0.0.1:5192")

    def test_advertised_host(self) -> None:
        """advertised_host replaces the host, not the port."""
        config = load_config(None, {"server.advertised_host": "aim.example.com"})
        self.assertEqual(config.advertised_address("bos"), "aim.example.com:5191")

    def test_ipv6_brackets(self) -> None:
        """IPv6 literals are bracketed so that the port stays separable."""
        config = load_config(None, {"server.host": "::1"})
        self.assertEqual(config.advertised_address("bos"), "[::1]:5191")

    def test_bound_port(self) -> None:
        """The caller can supply the port actually bound (port 0 in tests)."""
        config = load_config(None, {"ports.bos": 0})
        self.assertEqual(config.advertised_address("bos", 40123), "127.0.0.1:40123")
