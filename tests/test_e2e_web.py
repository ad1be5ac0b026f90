"""The browser protocol end to end (issue 18): real WebSockets to the web
listener, next to classic OSCAR clients on the same server.

Sign-on and its refusals, IMs both ways with a classic client, the
multisession rules across web and classic sessions, resume with replay and
nothing lost or doubled, token expiry, idempotent resends, the same
conversation on every browser session, and bad input answered with errors."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from aimserver.config import load_config
from aimserver.web import service as web_service
from aimserver.wire.userinfo import UserInfo
from tests.client import deferred_test
from tests.harness import LoopbackServer, wait_until
from tests.webclient import WebClient

ACCOUNTS = {"Alice": "secret", "Bob": "secret", "Carol": "secret"}


def sleep(seconds: float) -> object:
    return task.deferLater(reactor, seconds, lambda: None)


class WebCase(unittest.TestCase):
    async def start(self, **settings: object) -> LoopbackServer:
        server = await LoopbackServer.start(load_config(None, settings), accounts=ACCOUNTS)
        self.addCleanup(server.stop)
        self.server = server
        return server

    async def web(self) -> WebClient:
        client = await WebClient.connect(self.server.web_url)
        self.addCleanup(client.close)
        return client

    async def classic(self, name: str, **kw: object) -> object:
        client = await self.server.session(name, **kw)
        self.addCleanup(client.close)
        return client


class SignOnTests(WebCase):
    @deferred_test
    async def test_sign_on_and_ims_with_a_classic_client(self) -> None:
        await self.start(**{"multisession.notify": False})
        bob = await self.classic("Bob", buddies=["Alice"])
        alice = await self.web()
        result = await alice.sign_on("alice")
        self.assertEqual(result["screen_name"], "Alice")
        self.assertEqual(len(result["session_id"]), 32)
        self.assertGreaterEqual(len(result["resume_token"]), 32)
        self.assertEqual(result["buddy_list"], {"groups": []})
        # Bob, a classic client watching Alice, sees her arrive.
        arrived: UserInfo = await bob.wait_arrival()
        self.assertEqual(arrived.screen_name, "Alice")
        # Alice to Bob: delivered to the classic client.
        sent = await alice.ok(
            "send_im", to="Bob", text="hello from the web", client_message_id="m1"
        )
        self.assertEqual(sent, {"delivered": True})
        _, text, _ = await bob.receive_im()
        self.assertEqual(text, b"hello from the web")
        # Bob to Alice, non-ASCII included (UCS-2 on the wire).
        bob.send_im("Alice", "caf\u00e9".encode("utf-16-be"))
        im = await alice.event("im")
        self.assertEqual(im["from"], "Bob")
        self.assertFalse(im["system"])
        info = await alice.ok("get_session_info")
        self.assertEqual((info["screen_name"], info["sessions"]), ("Alice", 1))
        stats = await alice.ok("get_session_statistics")
        self.assertEqual((stats["ims_sent"], stats["ims_received"], stats["resumes"]), (1, 1, 0))
        # Away, then invisible: Bob sees her away, then gone.
        await alice.ok("update_session_state", away_message="out to lunch")
        changed: UserInfo = await bob.wait_arrival()
        self.assertEqual(changed.screen_name, "Alice")
        await alice.ok("update_session_state", invisible=True)
        gone: UserInfo = await bob.wait_departure()
        self.assertEqual(gone.screen_name, "Alice")
        await alice.ok("update_session_state", invisible=False, away_message=None)
        await bob.wait_arrival()
        await alice.ok("close_session")
        await alice.lost
        departed: UserInfo = await bob.wait_departure()
        self.assertEqual(departed.screen_name, "Alice")
        self.assertIsNone(self.server.server.registry.get("alice"))

    @deferred_test
    async def test_the_page_is_told_when_the_server_stops(self) -> None:
        server = await self.start(**{"multisession.notify": False})
        alice = await self.web()
        await alice.sign_on("Alice")
        server.server.web.stopService()
        ended = await alice.event("session_ended")
        self.assertEqual(ended["reason"], "server_stopping")
        await alice.lost
        self.assertIsNone(server.server.registry.get("alice"))

    @deferred_test
    async def test_refusals(self) -> None:
        """A wrong password, an unknown name, a suspended account: the same
        refusals as a classic login, as errors; commands before sign-on are
        Unauthorized."""
        server = await self.start()
        client = await self.web()
        answer = await client.request("get_buddy_list")
        self.assertEqual(answer["error_type"], "Unauthorized")
        for name, password in (("Alice", "wrong"), ("nobody", "secret")):
            answer = await client.request("create_session", screen_name=name, password=password)
            self.assertEqual(
                (answer["status"], answer["error_type"], answer["error"]),
                ("error", "Unauthorized", "wrong screen name or password"),
            )
        await server.store.set_suspended("Carol", True)
        answer = await client.request("create_session", screen_name="Carol", password="secret")
        self.assertEqual(answer["error_type"], "Unauthorized")
        self.assertEqual(server.server.authorizer.refusals["login bad_password"], 2)
        # The socket is still usable: a right password signs on.
        await client.sign_on("Alice")


class MultisessionTests(WebCase):
    @deferred_test
    async def test_web_and_classic_sessions_of_one_user(self) -> None:
        """A browser session joins a classic one (flag 0x01): both get the
        "signed on at 2 locations" notice, an IM reaches both, and the
        browser lists both locations."""
        await self.start()
        classic = await self.classic("Alice")
        web = await self.web()
        await web.sign_on("Alice", client="Firefox on the laptop")
        notice = await web.event("im", lambda m: m["system"])
        self.assertIn("2", notice["text"])
        bob = await self.classic("Bob")
        bob.send_im("Alice", b"to every place")
        im = await web.event("im", lambda m: not m["system"])
        self.assertEqual((im["from"], im["text"]), ("Bob", "to every place"))
        while True:
            _, text, _ = await classic.receive_im()
            if text == b"to every place":
                break
        places = (await web.ok("list_client_sessions"))["sessions"]
        self.assertEqual(len(places), 2)
        mine = [p for p in places if p["this"]]
        self.assertEqual([p["client"] for p in mine], ["Firefox on the laptop"])

    @deferred_test
    async def test_the_same_conversation_on_every_browser_session(self) -> None:
        """What one browser session sends shows in the user's other browser
        sessions as sent from another location; classic ones get nothing new."""
        await self.start(**{"multisession.notify": False})
        await self.classic("Bob")
        first, second = await self.web(), await self.web()
        await first.sign_on("Alice")
        await second.sign_on("Alice")
        await first.ok("send_im", to="Bob", text="one", client_message_id="a")
        echoed = await second.event("im_sent")
        self.assertEqual(
            (echoed["to"], echoed["text"], echoed["client_message_id"]), ("Bob", "one", "a")
        )
        self.assertEqual(first.events("im_sent"), [])


class ResumeTests(WebCase):
    @deferred_test
    async def test_resume_replays_what_was_missed_once(self) -> None:
        """The socket drops; Bob's IMs meanwhile are kept; a new socket with
        the token takes the same instance over and is replayed them, once, in
        order; Bob saw no departure and no second arrival."""
        await self.start(**{"multisession.notify": False})
        bob = await self.classic("Bob", buddies=["Alice"])
        alice = await self.web()
        signed = await alice.sign_on("Alice")
        await bob.wait_arrival()
        bob.send_im("Alice", b"first")
        first = await alice.event("im")
        await alice.ok("ack", seq=first["seq"])
        alice.drop()
        await alice.lost
        for n in range(3):
            bob.send_im("Alice", f"missed {n}".encode())
        await sleep(0.2)
        again = await self.web()
        restored = await again.ok(
            "restore_session",
            session_id=signed["session_id"],
            resume_token=signed["resume_token"],
            last_seq=first["seq"],
        )
        self.assertEqual(restored["replayed"], 3)
        self.assertNotEqual(restored["resume_token"], signed["resume_token"])
        texts = [(await again.event("im"))["text"] for _ in range(3)]
        self.assertEqual(texts, ["missed 0", "missed 1", "missed 2"])
        self.assertEqual(again.seqs, [first["seq"] + 1, first["seq"] + 2, first["seq"] + 3])
        # It is the same session: an IM now arrives once, numbered next.
        bob.send_im("Alice", b"after")
        after = await again.event("im", lambda m: m["text"] == "after")
        self.assertEqual(after["seq"], first["seq"] + 4)
        await bob.sync()
        self.assertEqual(bob.flap.snacs(0x03, 0x0C), [])  # no departure
        # The old token is spent.
        stale = await (await self.web()).request(
            "restore_session",
            session_id=signed["session_id"],
            resume_token=signed["resume_token"],
            last_seq=0,
        )
        self.assertEqual(stale["error_type"], "SessionNotFound")

    @deferred_test
    async def test_after_the_window_the_session_signs_off(self) -> None:
        server = await self.start(**{"multisession.notify": False, "web.resume_seconds": 0.3})
        bob = await self.classic("Bob", buddies=["Alice"])
        alice = await self.web()
        signed = await alice.sign_on("Alice")
        await bob.wait_arrival()
        alice.drop()
        departed: UserInfo = await bob.wait_departure()
        self.assertEqual(departed.screen_name, "Alice")
        self.assertIsNone(server.server.registry.get("alice"))
        late = await (await self.web()).request(
            "restore_session",
            session_id=signed["session_id"],
            resume_token=signed["resume_token"],
            last_seq=0,
        )
        self.assertEqual(late["error_type"], "SessionNotFound")

    @deferred_test
    async def test_a_resend_is_answered_once_and_delivered_once(self) -> None:
        await self.start(**{"multisession.notify": False})
        bob = await self.classic("Bob")
        alice = await self.web()
        await alice.sign_on("Alice")
        first = await alice.ok("send_im", to="Bob", text="only once", client_message_id="x-1")
        second = await alice.ok("send_im", to="Bob", text="only once", client_message_id="x-1")
        self.assertEqual(first, second)
        await alice.ok("send_im", to="Bob", text="next", client_message_id="x-2")
        texts = [(await bob.receive_im())[1] for _ in range(2)]
        self.assertEqual(texts, [b"only once", b"next"])


class BadInputTests(WebCase):
    @deferred_test
    async def test_bad_requests_are_answered_with_errors(self) -> None:
        await self.start()
        client = await self.web()
        cases = [
            ("not json", None),
            ("[1, 2]", None),
            (json.dumps({"id": 1, "command": "fly"}), 1),
            (json.dumps({"id": 2, "command": "send_im", "parameters": {"to": "Bob"}}), 2),
            (json.dumps({"id": 3, "command": "ack", "parameters": {"seq": "1"}}), 3),
            (json.dumps({"id": 4, "command": "ack", "parameters": {"seq": 1, "x": 2}}), 4),
            (json.dumps({"id": {"no": 1}, "command": "ack"}), None),
            (
                json.dumps(
                    {
                        "id": 5,
                        "command": "create_session",
                        "parameters": {"screen_name": "A" * 65, "password": "x"},
                    }
                ),
                5,
            ),
        ]
        for text, request_id in cases:
            client.send_raw(text)
            answer = await client.wait(lambda m: m.get("status") == "error", text)
            client.received.remove(answer)
            self.assertEqual(
                (answer["id"], answer["error_type"]), (request_id, "ValidationError"), text
            )
        # Still usable after all that.
        await client.sign_on("Alice")
        # Signed on: a recipient that cannot be a screen name, a text too long.
        for request_id, parameters in (
            (6, {"to": "Bøb", "text": "hi", "client_message_id": "a"}),
            (7, {"to": "Bob", "text": "x" * 4001, "client_message_id": "b"}),
        ):
            client.send_raw(
                json.dumps({"id": request_id, "command": "send_im", "parameters": parameters})
            )
            answer = await client.wait(lambda m, i=request_id: m.get("id") == i, "the answer")
            self.assertEqual(answer["error_type"], "ValidationError", parameters)

    @deferred_test
    async def test_an_oversize_message_closes_the_socket(self) -> None:
        await self.start()
        client = await self.web()
        client.send_raw(
            json.dumps({"id": 1, "command": "ack", "parameters": {"seq": 1}}) + " " * 70_000
        )
        await client.lost
        self.assertTrue(client.closed)

    @deferred_test
    async def test_a_flood_closes_only_that_socket(self) -> None:
        await self.start(**{"multisession.notify": False})
        bob = await self.classic("Bob")
        calm = await self.web()
        await calm.sign_on("Carol")
        flood = await self.web()
        await flood.sign_on("Alice")
        for _ in range(1000):
            flood.send("get_session_info")
        await flood.lost
        limited = [m for m in flood.received if m.get("error_type") == "RateLimited"]
        self.assertGreater(len(limited), 0)
        # Carol's session and Bob's are untouched.
        await calm.ok("send_im", to="Bob", text="still here", client_message_id="c")
        _, text, _ = await bob.receive_im()
        self.assertEqual(text, b"still here")
        # The flooder was signed off, as a classic client far over the limit is.
        ended = [m for m in flood.received if m.get("event") == "session_ended"]
        self.assertEqual([m["reason"] for m in ended], ["rate_limited"])
        await wait_until(lambda: self.server.server.registry.get("alice") is None, "signed off")


class BuddyListTests(WebCase):
    @deferred_test
    async def test_add_and_remove_buddies_synced_to_every_session(self) -> None:
        """add_buddy edits the stored list as libpurple does: the buddy shows
        online at once, the user's other browser session gets the new list,
        and a classic session of the user gets the edit as SNACs; a new
        session reads it back. remove_buddy takes it out again."""
        await self.start(**{"multisession.notify": False})
        await self.classic("Bob")
        first, second = await self.web(), await self.web()
        await first.sign_on("Alice")
        await second.sign_on("Alice")
        classic = await self.classic("Alice")
        classic.flap.send_snac(0x13, 0x07, b"", classic.next_id())
        added = await first.ok("add_buddy", name="Bob", group="Friends")
        self.assertEqual(
            added["buddy_list"],
            {"groups": [{"name": "Friends", "buddies": [{"name": "Bob", "online": True}]}]},
        )
        online = await first.event("buddy_online")
        self.assertEqual(online["name"], "Bob")
        pushed = await second.event("buddy_list")
        self.assertEqual(pushed["groups"], added["buddy_list"]["groups"])
        await classic.flap.wait_snac(0x13, 0x08)
        # Adding again changes nothing; another buddy joins the same group.
        again = await first.ok("add_buddy", name="bob")
        self.assertEqual(again["buddy_list"], added["buddy_list"])
        both = await first.ok("add_buddy", name="Carol", group="friends")
        self.assertEqual(
            [b["name"] for b in both["buddy_list"]["groups"][0]["buddies"]], ["Bob", "Carol"]
        )
        third = await self.web()
        signed = await third.sign_on("Alice")
        self.assertEqual(signed["buddy_list"], both["buddy_list"])
        removed = await first.ok("remove_buddy", name="BOB")
        self.assertEqual(
            [b["name"] for b in removed["buddy_list"]["groups"][0]["buddies"]], ["Carol"]
        )
        missing = await first.request("remove_buddy", name="Bob")
        self.assertEqual(missing["error_type"], "SessionError")

    @deferred_test
    async def test_sign_off_another_location(self) -> None:
        await self.start(**{"multisession.notify": False})
        classic = await self.classic("Alice")
        web = await self.web()
        await web.sign_on("Alice")
        places = (await web.ok("list_client_sessions"))["sessions"]
        other = next(p for p in places if not p["this"])
        mine = next(p for p in places if p["this"])
        refused = await web.request("sign_off_location", instance_id=mine["instance_id"])
        self.assertEqual(refused["error_type"], "ValidationError")
        await web.ok("sign_off_location", instance_id=other["instance_id"])
        await classic.flap.wait_lost()
        self.assertEqual(len((await web.ok("list_client_sessions"))["sessions"]), 1)


class HistoryTests(WebCase):
    async def burst_of_ims(self, count: int) -> None:
        """Alice, in a browser, sends Bob (classic) ``count`` IMs at once,
        ``m0``, ``m1``, ...; Bob gets them all."""
        bob = await self.classic("Bob")
        alice = await self.web()
        await alice.sign_on("Alice")
        for n in range(count):
            alice.send("send_im", to="Bob", text=f"m{n}", client_message_id=str(n))
        for _ in range(count):
            await bob.receive_im()

    @deferred_test
    async def test_a_new_browser_session_shows_the_recent_conversation(self) -> None:
        """What Alice's browser sessions sent and received is kept once,
        oldest first, per peer if asked; a new session reads it."""
        await self.start(**{"multisession.notify": False})
        bob = await self.classic("Bob")
        await self.classic("Carol")
        first, second = await self.web(), await self.web()
        await first.sign_on("Alice")
        await second.sign_on("Alice")
        await first.ok("send_im", to="Bob", text="hi Bob", client_message_id="1")
        await bob.receive_im()
        bob.send_im("Alice", b"hi Alice")
        await first.event("im")
        await second.event("im")
        await first.ok("send_im", to="Carol", text="hi Carol", client_message_id="2")
        third = await self.web()
        await third.sign_on("Alice")
        history = (await third.ok("get_history"))["messages"]
        self.assertEqual(
            [(m["with"], m["outgoing"], m["text"]) for m in history],
            [("Bob", True, "hi Bob"), ("Bob", False, "hi Alice"), ("Carol", True, "hi Carol")],
        )
        with_bob = (await third.ok("get_history", **{"with": "bob", "limit": 1}))["messages"]
        self.assertEqual([m["text"] for m in with_bob], ["hi Alice"])

    @deferred_test
    async def test_history_is_written_in_batches(self) -> None:
        """Many IMs, few store calls: what a burst says is written together,
        and nothing of it is lost."""
        server = await self.start(**{"multisession.notify": False, "ratelimit.enabled": False})
        calls = []
        real = server.store.add_history_many

        def counting(batch: Any, limit: int, keep: int) -> Any:
            calls.append(sum(map(len, batch.values())) // 4)  # 4 fields a record
            return real(batch, limit, keep)

        server.store.add_history_many = counting  # type: ignore[method-assign]
        await self.burst_of_ims(30)
        await wait_until(lambda: sum(calls) == 30, "30 IMs written")
        self.assertLessEqual(len(calls), 3)
        kept = await server.store.recent_history("Alice", None, 100)
        self.assertEqual([e.text for e in kept], [f"m{n}" for n in range(30)])

    @deferred_test
    async def test_history_waits_for_a_store_behind_and_drops_past_its_bound(self) -> None:
        """A store that is behind gets no more than MAX_HISTORY_BATCHES_WRITING
        batches at once; IMs wait meanwhile, up to MAX_PENDING_HISTORY, past
        which they are dropped and counted in the log; once the store
        answers, what waited is written, in order."""
        self.patch(web_service, "HISTORY_BATCH", 4)
        self.patch(web_service, "MAX_PENDING_HISTORY", 10)
        server = await self.start(**{"multisession.notify": False, "ratelimit.enabled": False})
        held: list[tuple[Deferred[Any], Any, int, int]] = []
        real = server.store.add_history_many

        def behind(batch: Any, limit: int, keep: int) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            held.append((d, batch, limit, keep))
            return d

        server.store.add_history_many = behind  # type: ignore[method-assign]
        logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        await self.burst_of_ims(30)
        self.assertEqual([sum(map(len, b.values())) // 4 for _, b, _, _ in held], [4, 4])
        # Two batches writing, 10 waiting, 12 dropped.
        server.store.add_history_many = real  # type: ignore[method-assign]
        written = [real(batch, limit, keep) for _, batch, limit, keep in held]
        for (d, _, _, _), result in zip(held, written, strict=True):
            result.chainDeferred(d)
        await wait_until(lambda: not server.server.web._history_writing, "what waited written")
        kept = await server.store.recent_history("Alice", None, 100)
        self.assertEqual([e.text for e in kept], [f"m{n}" for n in range(18)])
        server.server.web._history_dropped.flush(final=True)
        self.assertTrue(
            any("history writes dropped" in str(e.get("log_format")) for e in logged), logged
        )

    @deferred_test
    async def test_history_can_be_switched_off(self) -> None:
        server = await self.start(**{"multisession.notify": False, "web.history": False})
        await self.classic("Bob")
        alice = await self.web()
        await alice.sign_on("Alice")
        await alice.ok("send_im", to="Bob", text="not kept", client_message_id="1")
        self.assertEqual((await alice.ok("get_history"))["messages"], [])
        self.assertEqual(await server.store.recent_history("Alice", None, 10), [])


class SignUpTests(WebCase):
    @deferred_test
    async def test_sign_up_when_on(self) -> None:
        """With [web] signup the page can create an account (the CLI sees it,
        it signs on at once); the naming rules, reserved names, taken names
        and the per-address limit are refused with the reason."""
        server = await self.start(**{"web.signup": True, "web.signups_per_address_per_hour": 2})
        client = await self.web()
        self.assertEqual((await client.ok("server_info"))["signup"], True)
        made = await client.ok("sign_up", screen_name="New Person", password="pass12")
        self.assertEqual(made, {"screen_name": "New Person"})
        self.assertIsNotNone(await server.store.get_account("newperson"))
        for name, password, error_type in (
            ("AOL System Msg", "pass12", "ValidationError"),
            ("1abc", "pass12", "ValidationError"),
            ("Short Pw", "abc", "ValidationError"),
            ("alice", "pass12", "SessionError"),
        ):
            answer = await client.request("sign_up", screen_name=name, password=password)
            self.assertEqual(answer["error_type"], error_type, name)
        answer = await client.request("sign_up", screen_name="Third One", password="pass12")
        self.assertEqual(answer["error_type"], "RateLimited")
        self.assertIsNone(await server.store.get_account("thirdone"))
        await client.sign_on("New Person", "pass12")

    @deferred_test
    async def test_sign_up_is_off_by_default(self) -> None:
        server = await self.start()
        client = await self.web()
        self.assertEqual((await client.ok("server_info"))["signup"], False)
        answer = await client.request("sign_up", screen_name="Someone", password="pass12")
        self.assertEqual(answer["error_type"], "Unauthorized")
        self.assertIsNone(await server.store.get_account("someone"))


class DeviceTests(WebCase):
    async def http(self, method: str, path: str, device: str | None) -> tuple[int, Any]:
        headers = Headers()
        if device is not None:
            headers.addRawHeader(b"x-device-id", device.encode())
        response = await Agent(reactor).request(
            method.encode(), (self.server.web_url + path).encode(), headers
        )
        return response.code, json.loads(await readBody(response))

    @deferred_test
    async def test_one_browser_many_sessions(self) -> None:
        """A device's sessions are listed with their state and default, one
        is made the default, one is closed from there; other devices see
        none of them; a device holds at most 10."""
        await self.start(**{"multisession.notify": False, "multisession.max_sessions": 10})
        device, other = "device-" + "a" * 20, "device-" + "b" * 20
        alice, carol, elsewhere = await self.web(), await self.web(), await self.web()
        first = await alice.sign_on("Alice", device_id=device)
        second = await carol.sign_on("Carol", device_id=device)
        await elsewhere.sign_on("Alice", device_id=other)
        code, answer = await self.http("GET", "/web/sessions", device)
        self.assertEqual((code, answer["status"], answer["code"]), (200, "success", 200))
        self.assertEqual(
            [(s["session_id"], s["screen_name"], s["is_default"]) for s in answer["results"]],
            [(first["session_id"], "Alice", True), (second["session_id"], "Carol", False)],
        )
        self.assertTrue(all(s["is_connected"] and s["is_logged_in"] for s in answer["results"]))
        code, answer = await self.http(
            "POST", f"/web/sessions/{second['session_id']}/set-default", device
        )
        self.assertEqual((code, answer["results"]["is_default"]), (200, True))
        code, answer = await self.http("GET", f"/web/sessions/{first['session_id']}/status", device)
        self.assertEqual((code, answer["results"]["is_default"]), (200, False))
        # Another device cannot see or close them.
        code, answer = await self.http("DELETE", f"/web/sessions/{first['session_id']}", other)
        self.assertEqual((code, answer["status"]), (404, "error"))
        code, answer = await self.http("GET", "/web/sessions", None)
        self.assertEqual((code, answer["status"]), (400, "error"))
        # Closed from the device list: the socket closes, the session signs off.
        code, _ = await self.http("DELETE", f"/web/sessions/{first['session_id']}", device)
        self.assertEqual(code, 200)
        await alice.lost
        code, answer = await self.http("GET", "/web/sessions", device)
        self.assertEqual([s["screen_name"] for s in answer["results"]], ["Carol"])
        # At most 10 per device.
        for _ in range(9):
            await (await self.web()).sign_on("Bob", device_id=device)
        refused = await (await self.web()).request(
            "create_session", screen_name="Bob", password="secret", device_id=device
        )
        self.assertEqual(refused["error_type"], "SessionError")
        bad = await (await self.web()).request(
            "create_session", screen_name="Bob", password="secret", device_id="short"
        )
        self.assertEqual(bad["error_type"], "ValidationError")


class ChatRoomTests(WebCase):
    @deferred_test
    async def test_a_browser_session_in_a_room_with_a_classic_client(self) -> None:
        """join_room places the session in the room as a chat connection
        would: the classic member sees it join and its lines, and the page
        gets the roster, the others' lines and its own (in order), and
        leaves; §17 applies across web and classic sessions of one user."""
        await self.start(**{"multisession.notify": False})
        bob_bos = await self.classic("Bob")
        bob = await bob_bos.join_room("Tea Room")
        self.addCleanup(bob.close)
        alice = await self.web()
        await alice.sign_on("Alice")
        joined = await alice.ok("join_room", room="tea room")
        self.assertEqual(joined["room"], "Tea Room")  # as its maker spelled it
        self.assertEqual(sorted(joined["members"]), ["Alice", "Bob"])
        roster = await alice.event("room_joined")
        self.assertEqual(sorted(roster["names"]), ["Alice", "Bob"])
        self.assertEqual(await bob.wait_joined(), ["Alice"])
        # Asked again (a reloaded page taking its rooms back): the same
        # answer, and nobody sees Alice join twice.
        again = await alice.ok("join_room", room="TEA ROOM")
        self.assertEqual((again["room"], sorted(again["members"])), ("Tea Room", ["Alice", "Bob"]))
        await alice.ok("say", room="TEA   room", text="hello, room")  # any case and spacing
        sender, text, _ = await bob.hear()
        self.assertEqual((sender, text), ("Alice", b"hello, room"))
        own = await alice.event("room_message")
        self.assertEqual((own["from"], own["text"]), ("Alice", "hello, room"))
        bob.say(b"hi Alice")
        line = await alice.event("room_message")
        self.assertEqual((line["from"], line["text"], line["whisper"]), ("Bob", "hi Alice", False))
        # A whisper reaches Bob only, marked as one.
        await alice.ok("say", room="Tea Room", text="psst", to="Bob")
        sender, text, _ = await bob.hear()
        while text == b"hi Alice":  # Bob's own line, reflected to him first
            sender, text, _ = await bob.hear()
        self.assertEqual((sender, text), ("Alice", b"psst"))
        mine = await alice.event("room_message", lambda m: m["text"] == "psst")
        self.assertTrue(mine["whisper"])
        missing = await alice.request("say", room="Other Room", text="x")
        self.assertEqual(missing["error_type"], "SessionError")
        bad = await alice.request("join_room", room="bad%name")
        self.assertEqual(bad["error_type"], "SessionError")
        await alice.ok("leave_room", room="Tea Room")
        self.assertEqual(await bob.wait_left(), ["Alice"])
        # Back in, then a classic session of Alice takes the place (§17):
        # the page is told it left, Bob sees nothing.
        await alice.ok("join_room", room="Tea Room")
        self.assertEqual(await bob.wait_joined(), ["Alice"])
        alice_classic = await self.classic("Alice")
        room = await alice_classic.join_room("Tea Room")
        self.addCleanup(room.close)
        left = await alice.event("room_left", lambda m: m["you"])
        self.assertEqual(left["room"], "Tea Room")
        # Signing off leaves every room.
        await alice.ok("join_room", room="Second Room")
        await alice.ok("close_session")
        await alice.lost
        rooms = self.server.server.chat.rooms.rooms
        await wait_until(
            lambda: not any(room.name == "Second Room" for room in rooms.values()),
            "the second room gone with its last member",
        )
