"""The management API end to end over loopback HTTP (issue 17): an Open
OSCAR Server-style admin script works unchanged (create a user, list
sessions, send an IM, kick a session), every endpoint answers with the Go
server's paths, fields and status codes, admin changes reach live sessions
at once, and bad requests are refused with JSON errors and change nothing."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.trial import unittest
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from aimserver.config import load_config
from aimserver.wire.flap import Channel
from aimserver.wire.tlv import TlvList
from tests.client import deferred_test
from tests.harness import LoopbackServer, wait_until

ACCOUNTS = {"Alice": "secret", "Bob": "secret"}
TOKEN = "0123456789abcdef-token"


@implementer(IBodyProducer)
class Body:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Any:  # noqa: N802
        from twisted.internet.defer import succeed

        consumer.write(self.data)
        return succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802
        pass

    def stopProducing(self) -> None:  # noqa: N802
        pass


class ApiTestCase(unittest.TestCase):
    token: str | None = None

    async def start(self, **settings: object) -> LoopbackServer:
        overrides = {"multisession.notify": False, **settings}
        server = await LoopbackServer.start(load_config(None, overrides), accounts=ACCOUNTS)
        self.addCleanup(server.stop)
        self.server = server
        return server

    async def sessions(self, server: LoopbackServer, *names: str) -> list[Any]:
        """A signed-on session per name (repeat a name for several), closed
        at the test's end."""
        clients = [await server.session(name) for name in names]
        for client in clients:
            self.addCleanup(client.close)
        return clients

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        token: str | None = None,
    ) -> tuple[int, Any, str]:
        """(status, JSON or text body, content type) of one request."""
        headers = Headers()
        given = token if token is not None else self.token
        if given:
            headers.addRawHeader(b"authorization", f"Bearer {given}".encode())
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        agent = Agent(reactor)
        response = await agent.request(
            method.encode(),
            (self.server.api_url + path).encode(),
            headers,
            Body(data) if data is not None else None,
        )
        content = await readBody(response)
        kind = (response.headers.getRawHeaders(b"content-type") or [b""])[0].decode()
        if kind.startswith("application/json"):
            return response.code, json.loads(content), kind
        if not kind.startswith(("image/", "application/")):
            return response.code, content.decode(), kind
        return response.code, content, kind  # bytes: an icon, a BART item


class AdminScriptTests(ApiTestCase):
    @deferred_test
    async def test_an_open_oscar_server_admin_script(self) -> None:
        """Create a user, see it signed on, send it an IM, kick it: the Go
        server's requests and answers."""
        server = await self.start()
        status, body, _ = await self.call(
            "POST", "/user", {"screen_name": "Carol", "password": "pass12"}
        )
        self.assertEqual((status, body), (201, "User account created successfully."))
        status, users, _ = await self.call("GET", "/user")
        self.assertEqual(status, 200)
        self.assertIn(
            {
                "id": "carol",
                "screen_name": "Carol",
                "is_icq": False,
                "suspended_status": "",
                "is_bot": False,
            },
            users,
        )
        carol = await server.session("Carol", "pass12")
        carol.set_away(b"lunch")
        await carol.sync()
        status, listing, _ = await self.call("GET", "/session")
        self.assertEqual(status, 200)
        self.assertEqual(listing["count"], 1)
        (session,) = listing["sessions"]
        self.assertEqual(
            {
                k: session[k]
                for k in ("id", "screen_name", "is_away", "away_message", "instance_count")
            },
            {
                "id": "carol",
                "screen_name": "Carol",
                "is_away": True,
                "away_message": "lunch",
                "instance_count": 1,
            },
        )
        (instance,) = session["instances"]
        self.assertEqual(instance["remote_addr"], "127.0.0.1")
        self.assertTrue(instance["client_id"].startswith("AOL Instant Messenger"))
        status, body, _ = await self.call(
            "POST",
            "/instant-message",
            {"from": "Admin", "to": "carol", "text": "hello from the admin"},
        )
        self.assertEqual((status, body), (200, "Message sent successfully."))
        sender, text, _ = await carol.receive_im()
        self.assertEqual((sender.screen_name, text), ("Admin", b"hello from the admin"))
        status, one, _ = await self.call("GET", "/session/C%20AROL")
        self.assertEqual((status, one["count"]), (200, 1))
        status, _, _ = await self.call("DELETE", "/session/carol")
        self.assertEqual(status, 204)
        await carol.flap.wait_channel(Channel.SIGNOFF)
        await wait_until(lambda: server.server.registry.get("carol") is None, "Carol signed off")
        status, body, _ = await self.call("GET", "/session/carol")
        self.assertEqual(
            (status, body["error"], body["message"]),
            (404, "session not found", "session not found"),
        )
        self.assertIsNotNone(await server.store.get_account("carol"))


class UserTests(ApiTestCase):
    @deferred_test
    async def test_refusals_change_nothing(self) -> None:
        """Bad JSON, unknown fields, wrong types, an oversize body, a bad
        name or password, a duplicate: JSON errors with the Go server's
        status codes, and no account made."""
        await self.start()
        cases = [
            ("POST", "/user", None, b"{not json", 400),
            (
                "POST",
                "/user",
                {"screen_name": "Dave", "password": "pass12", "admin": True},
                None,
                400,
            ),
            ("POST", "/user", {"screen_name": "Dave", "password": 123456}, None, 400),
            ("POST", "/user", {"screen_name": "Dave"}, None, 400),
            ("POST", "/user", {"screen_name": "x", "password": "pass12"}, None, 400),
            ("POST", "/user", {"screen_name": "Dave", "password": "p"}, None, 400),
            ("POST", "/user", {"screen_name": "AOL System Msg", "password": "pass12"}, None, 400),
            ("POST", "/user", {"screen_name": "alice", "password": "pass12"}, None, 409),
            ("POST", "/user", None, b'{"screen_name": "' + b"D" * 70_000 + b'"}', 413),
            ("DELETE", "/user", {"screen_name": "Nobody"}, None, 404),
            ("PUT", "/user/password", {"screen_name": "Nobody", "password": "pass12"}, None, 404),
            ("PUT", "/user/password", {"screen_name": "Alice", "password": "p"}, None, 400),
            ("GET", "/user/nobody/account", None, None, 404),
            ("PATCH", "/user/alice/account", {"suspended_status": "maybe"}, None, 400),
            ("PATCH", "/user/alice/account", {"is_bot": "yes"}, None, 400),
            ("PATCH", "/user/alice/account", {"admin": True}, None, 400),
            ("GET", "/no/such/endpoint", None, None, 404),
            ("PUT", "/user", None, None, 405),
            ("DELETE", "/session/alice/notanumber", None, None, 404),
        ]
        for method, path, body, raw, expected in cases:
            status, answer, kind = await self.call(method, path, body, raw=raw)
            self.assertEqual(status, expected, (method, path, body, answer))
            self.assertEqual(kind, "application/json", (method, path))
            self.assertEqual(set(answer), {"error", "error_type", "message"}, answer)
        status, users, _ = await self.call("GET", "/user")
        self.assertEqual(sorted(u["id"] for u in users), ["alice", "bob"])
        account = await self.server.store.get_account("alice")
        self.assertFalse(account.suspended or account.bot)

    @deferred_test
    async def test_password_and_account_changes(self) -> None:
        """A new password is needed at the next login; suspending signs the
        live sessions off at once and refuses the next login; 304 when
        nothing changes; bot and un-suspend."""
        server = await self.start()
        status, _, _ = await self.call(
            "PUT", "/user/password", {"screen_name": "Bob", "password": "newpass1"}
        )
        self.assertEqual(status, 204)
        self.assertEqual((await server.bucp("Bob", "secret")).get_u16(0x08), 0x0005)
        bob = await server.session("Bob", "newpass1")
        status, account, _ = await self.call("GET", "/user/BOB/account")
        self.assertEqual(status, 200)
        self.assertEqual(
            set(account),
            {
                "id",
                "screen_name",
                "is_icq",
                "suspended_status",
                "is_bot",
                "profile",
                "email_address",
                "reg_status",
                "confirmed",
            },
        )
        self.assertEqual((await self.call("PATCH", "/user/bob/account", {}))[0], 304)
        self.assertEqual((await self.call("PATCH", "/user/bob/account", {"is_bot": False}))[0], 304)
        self.assertEqual(
            (await self.call("PATCH", "/user/bob/account", {"suspended_status": "suspended"}))[0],
            204,
        )
        await bob.flap.wait_channel(Channel.SIGNOFF)
        self.assertNotEqual((await server.bucp("Bob", "newpass1")).get(0x08), None)
        status, account, _ = await self.call("GET", "/user/bob/account")
        self.assertEqual(account["suspended_status"], "suspended")
        self.assertEqual(
            (
                await self.call(
                    "PATCH", "/user/bob/account", {"suspended_status": "", "is_bot": True}
                )
            )[0],
            204,
        )
        status, account, _ = await self.call("GET", "/user/bob/account")
        self.assertEqual((account["suspended_status"], account["is_bot"]), ("", True))
        self.assertIsNone((await server.bucp("Bob", "newpass1")).get(0x08))

    @deferred_test
    async def test_deleting_a_user_signs_it_off(self) -> None:
        server = await self.start()
        alice = await server.session("Alice")
        status, _, _ = await self.call("DELETE", "/user", {"screen_name": "alice"})
        self.assertEqual(status, 204)
        frame = await alice.flap.wait_channel(Channel.SIGNOFF)
        # Disconnect reason 0x0002: the account was deleted.
        self.assertEqual(TlvList.unpack_list(frame.payload).get_u16(0x0009), 0x0002)
        self.assertIsNone(await server.store.get_account("alice"))


class SessionTests(ApiTestCase):
    @deferred_test
    async def test_one_instance_of_several_is_closed(self) -> None:
        """Every instance is listed; DELETE /session/{sn}/{instance} closes that one only."""
        server = await self.start()
        first = await server.session("Alice")
        second = await server.session("Alice")
        self.addCleanup(second.close)
        status, listing, _ = await self.call("GET", "/session/alice")
        (session,) = listing["sessions"]
        self.assertEqual(session["instance_count"], 2)
        numbers = [i["num"] for i in session["instances"]]
        status, _, _ = await self.call("DELETE", f"/session/alice/{numbers[0]}")
        self.assertEqual(status, 204)
        await first.flap.wait_channel(Channel.SIGNOFF)
        await second.sync()
        status, listing, _ = await self.call("GET", "/session/alice")
        self.assertEqual([i["num"] for i in listing["sessions"][0]["instances"]], numbers[1:])
        status, _, _ = await self.call("DELETE", f"/session/alice/{numbers[0]}")
        self.assertEqual(status, 404)


class ChatRoomTests(ApiTestCase):
    @deferred_test
    async def test_public_and_private_rooms(self) -> None:
        server = await self.start()
        status, body, _ = await self.call("POST", "/chat/room/public", {"name": "Town Square"})
        self.assertEqual((status, body), (201, "Chat room created successfully."))
        self.assertEqual(
            (await self.call("POST", "/chat/room/public", {"name": "town square"}))[0], 409
        )
        self.assertEqual((await self.call("POST", "/chat/room/public", {"name": "100%"}))[0], 400)
        alice = await server.session("Alice")
        self.addCleanup(alice.close)
        public = await alice.join_room("Town Square", 5)
        self.addCleanup(public.close)
        private = await alice.join_room("Back Room")
        self.addCleanup(private.close)
        status, rooms, _ = await self.call("GET", "/chat/room/public")
        self.assertEqual(status, 200)
        (room,) = rooms
        self.assertEqual(room["name"], "Town Square")
        self.assertEqual(room["url"], "aim:gochat?roomname=Town+Square&exchange=5")
        self.assertEqual(room["participants"], [{"id": "alice", "screen_name": "Alice"}])
        status, rooms, _ = await self.call("GET", "/chat/room/private")
        self.assertEqual([r["name"] for r in rooms], ["Back Room"])
        self.assertEqual((await self.call("DELETE", "/chat/room/public", {"names": []}))[0], 400)
        status, _, _ = await self.call(
            "DELETE", "/chat/room/public", {"names": ["Town Square", "Nowhere"]}
        )
        self.assertEqual(status, 204)
        self.assertEqual((await self.call("GET", "/chat/room/public"))[1], [])


class AccessTests(ApiTestCase):
    token = TOKEN

    @deferred_test
    async def test_a_token_is_required_when_set(self) -> None:
        """With [api] token set, a request without it or with another is 401."""
        await self.start(**{"api.token": TOKEN})
        self.assertEqual((await self.call("GET", "/version", token=""))[0], 401)
        self.assertEqual((await self.call("GET", "/version", token="x" * 22))[0], 401)
        status, version, _ = await self.call("GET", "/version")
        self.assertEqual(status, 200)
        self.assertEqual(set(version), {"version", "commit", "date"})


class StatsAndBroadcastTests(ApiTestCase):
    @deferred_test
    async def test_stats_count_sessions_sign_ons_refusals_and_messages(self) -> None:
        server = await self.start()
        alice1, alice2, bob = await self.sessions(server, "Alice", "Alice", "Bob")
        self.assertEqual((await server.bucp("Bob", "wrong")).get_u16(0x08), 0x0005)
        self.assertEqual((await server.bucp("Nobody", "secret")).get_u16(0x08), 0x0005)
        bob.send_im("Alice", b"hi")
        await alice1.receive_im()
        room = await bob.join_room("Stats Room")
        self.addCleanup(room.close)
        status, stats, _ = await self.call("GET", "/stats")
        self.assertEqual(status, 200)
        self.assertEqual(
            {k: stats[k] for k in ("users_online", "sessions", "sessions_per_user", "signons")},
            {"users_online": 2, "sessions": 3, "sessions_per_user": {"1": 1, "2": 1}, "signons": 3},
        )
        # An unknown name is refused as a wrong password (names are not revealed).
        self.assertEqual(stats["refusals"]["login bad_password"], 2)
        self.assertEqual(stats["messages_routed"], 1)
        self.assertEqual((stats["chat_rooms"], stats["chat_members"]), (1, 1))
        self.assertEqual(stats["timeouts"]["idle_timeout"], None)
        self.assertEqual(stats["timeouts"]["login_timeout"], 30.0)
        self.assertGreaterEqual(stats["uptime_seconds"], 0)

    @deferred_test
    async def test_broadcast_reaches_every_session(self) -> None:
        """MULTISESSION.md §20: a broadcast reaches every session of every
        user, away ones included, from the system's name; or every session
        of one user."""
        server = await self.start()
        alice1, alice2, bob = await self.sessions(server, "Alice", "Alice", "Bob")
        alice2.set_away(b"gone")
        await alice2.sync()
        status, body, _ = await self.call("POST", "/broadcast", {"text": "Server restarts at noon"})
        self.assertEqual((status, body), (200, {"users": 2, "sessions": 3}))
        for client in (alice1, alice2, bob):
            sender, text, _ = await client.receive_im()
            self.assertEqual(
                (sender.screen_name, text), ("AOL System Msg", b"Server restarts at noon")
            )
        status, body, _ = await self.call("POST", "/broadcast", {"text": "just you", "to": "bob"})
        self.assertEqual((status, body), (200, {"users": 1, "sessions": 1}))
        self.assertEqual((await bob.receive_im())[1], b"just you")
        await alice1.sync()
        self.assertEqual(alice1.flap.snacs(0x04, 0x07), [])
        for bad in ({"text": ""}, {"text": "x", "to": "nobody"}, {"text": 5}):
            self.assertIn((await self.call("POST", "/broadcast", bad))[0], (400, 404))


class MetricsTests(ApiTestCase):
    @deferred_test
    async def test_prometheus_metrics(self) -> None:
        """GET /metrics parses as the Prometheus text format and counts what
        happened: sessions, users by session count, sign-ons, refusals by
        reason, IMs routed, deliveries."""
        from prometheus_client.parser import text_string_to_metric_families

        server = await self.start()
        alice1, alice2, bob = await self.sessions(server, "Alice", "Alice", "Bob")
        await server.bucp("Bob", "wrong")
        bob.send_im("Alice", b"hi")
        await alice1.receive_im()
        status, text, kind = await self.call("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(kind.startswith("text/plain"), kind)
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        self.assertEqual(samples[("aimserver_users_online", ())], 2)
        self.assertEqual(samples[("aimserver_sessions", ())], 3)
        self.assertEqual(samples[("aimserver_users_by_session_count", (("sessions", "2"),))], 1)
        self.assertEqual(samples[("aimserver_signons_total", ())], 3)
        self.assertEqual(
            samples[("aimserver_refusals_total", (("reason", "login bad_password"),))], 1
        )
        self.assertEqual(samples[("aimserver_ims_routed_total", ())], 1)
        self.assertGreaterEqual(samples[("aimserver_deliveries_total", ())], 2)
        self.assertIn(("aimserver_reactor_lag_seconds", ()), samples)
        self.assertIn(("aimserver_rate_limited_total", ()), samples)


class MotdTests(ApiTestCase):
    @deferred_test
    async def test_news_motd_shown_once_per_user(self) -> None:
        """MULTISESSION.md §20: the MOTD goes to the first session of a user
        that comes online after it changed, not to its other sessions, not
        again at the next sign-on (the store remembers), and once more when
        it changes."""
        server = await self.start()
        self.assertEqual(await self.call("GET", "/motd"), (200, {"text": ""}, "application/json"))
        self.assertEqual((await self.call("PUT", "/motd", {"text": "Welcome back"}))[0], 204)
        self.assertEqual((await self.call("PUT", "/motd", {"text": "x" * 1025}))[0], 400)
        first = await server.session("Alice")
        sender, text, _ = await first.receive_im()
        self.assertEqual((sender.screen_name, text), ("AOL System Msg", b"Welcome back"))
        second = await server.session("Alice")
        await second.sync()
        await wait_until(
            lambda: server.store._motd_seen.get("alice") is not None, "the MOTD recorded"
        )
        await first.close()
        await second.close()
        await wait_until(lambda: server.server.registry.get("alice") is None, "Alice gone")
        again = await server.session("Alice")
        await again.sync()
        for client in (second, again):
            self.assertEqual(client.flap.snacs(0x04, 0x07), [])
        await again.close()
        self.assertEqual((await self.call("PUT", "/motd", {"text": "New rules"}))[0], 204)
        later = await server.session("Alice")
        self.addCleanup(later.close)
        self.assertEqual((await later.receive_im())[1], b"New rules")
        bob = await server.session("Bob")
        self.addCleanup(bob.close)
        self.assertEqual((await bob.receive_im())[1], b"New rules")


class HttpTests(ApiTestCase):
    @deferred_test
    async def test_allow_header_head_and_null_fields(self) -> None:
        """A 405 names the allowed methods; HEAD answers like GET without a
        body; a PATCH field given as null changes nothing (the Go server's reading)."""
        await self.start()
        agent = Agent(reactor)
        response = await agent.request(b"PUT", (self.server.api_url + "/session").encode())
        await readBody(response)
        self.assertEqual(response.code, 405)
        self.assertEqual(response.headers.getRawHeaders(b"allow"), [b"GET"])
        response = await agent.request(b"HEAD", (self.server.api_url + "/version").encode())
        self.assertEqual((response.code, await readBody(response)), (200, b""))
        status, _, _ = await self.call(
            "PATCH", "/user/alice/account", {"suspended_status": None, "is_bot": None}
        )
        self.assertEqual(status, 304)


class MotdFromIniTests(ApiTestCase):
    @deferred_test
    async def test_the_ini_motd(self) -> None:
        """[motd] text is the MOTD from the start."""
        server = await self.start(**{"motd.text": "Read the rules"})
        self.assertEqual((await self.call("GET", "/motd"))[1], {"text": "Read the rules"})
        alice = await server.session("Alice")
        self.addCleanup(alice.close)
        self.assertEqual((await alice.receive_im())[1], b"Read the rules")


class CliThroughTheApiTests(ApiTestCase):
    @deferred_test
    async def test_cli_broadcast_and_motd(self) -> None:
        """'aimserver server broadcast|motd' act on the running server through
        its API (the token too); with no server answering, exit 1."""
        import io

        from twisted.internet.threads import deferToThread

        from aimserver.admin.cli import run

        server = await self.start(**{"api.token": TOKEN})
        alice = await server.session("Alice")
        self.addCleanup(alice.close)

        async def cli(*argv: str) -> tuple[int, str, str]:
            out, err = io.StringIO(), io.StringIO()
            code = await deferToThread(run, list(argv), out, err)
            return code, out.getvalue(), err.getvalue()

        api = ["--api", server.api_url, "--token", TOKEN]
        code, out, _ = await cli("server", "broadcast", "Maintenance at noon", *api)
        self.assertEqual((code, out), (0, "sent to 1 sessions of 1 users\n"))
        self.assertEqual((await alice.receive_im())[1], b"Maintenance at noon")
        self.assertEqual((await cli("server", "motd", "Hello all", *api))[0], 0)
        self.assertEqual(await cli("server", "motd", *api), (0, "Hello all\n", ""))
        code, _, err = await cli("server", "motd", "--api", server.api_url)
        self.assertEqual(code, 1)
        self.assertIn("a valid bearer token is required (401)", err)
        code, _, err = await cli("server", "broadcast", "x", "--to", "nobody", *api)
        self.assertEqual(code, 1)
        self.assertIn("session not found (404)", err)
