"""The browser client in a real headless Chromium (issue 18): one page signs
on three sessions (two screen names, one of them twice), exchanges IMs with
a classic OSCAR client, shows unread badges and status dots changing, and
survives the server dropping one socket: that session shows reconnecting,
resumes, and misses nothing. The test saves a screenshot
(``web-client.png``); README.md shows one."""

from __future__ import annotations

from typing import Any

from aimserver.config import load_config
from tests.browser import BrowserCase
from tests.client import deferred_test
from tests.harness import LoopbackServer

ACCOUNTS = {"Alice": "secret", "Bob": "secret", "Carol": "secret"}


async def carol_reads_and_answers(case: Any, bob: Any, answer: str) -> dict[str, Any]:
    """Carol's session in view: its badge goes, Bob's "psst, Carol" shows,
    she answers ``answer``, and Bob gets it. Her sidebar entry. (Shared by
    the Chromium and Firefox tests: ``case`` has WebClientTests' helpers.)"""
    carol = await case.entry("Carol")
    await case.select(carol["id"])

    async def bob_line_shown() -> bool:
        return any("psst, Carol" in text for _, text in await case.messages())

    await case.until(bob_line_shown, "Bob's line in Carol's conversation")
    case.assertEqual((await case.entry("Carol"))["unread"].strip(), "")
    field = await case.find("#im-text")
    await case.in_browser(field.send_keys, answer)
    await case.click("#im-send")
    _, text, _ = await bob.receive_im()
    case.assertEqual(text, answer.encode())
    return carol


class WebPage:
    """The page as the tests drive it, in any browser: these use only
    ``find``, ``in_browser``, ``until`` and ``browser.execute_script(script)``
    (tests.browser.PageCase), the same in Chromium and Firefox."""

    browser: Any
    find: Any
    in_browser: Any
    until: Any

    async def sign_on(self, name: str) -> None:
        """Through the page's own form, as a user would."""
        form = await self.find("#signon-form")
        if not await self.in_browser(form.is_displayed):
            await self.click("#add-session")
        for selector, value in (("#signon-name", name), ("#signon-password", "secret")):
            field = await self.find(selector)
            await self.in_browser(field.clear)
            await self.in_browser(field.send_keys, value)
        await self.click("#signon-submit")

    async def click(self, selector: str) -> None:
        element = await self.find(selector)
        await self.in_browser(element.click)

    async def sessions(self) -> list[dict[str, Any]]:
        """The sidebar: each entry's name, state, unread count and whether it is in view."""
        script = """
            return [...document.querySelectorAll('#sessions .session')].map((e) => ({
                name: e.dataset.screenName, state: e.dataset.state, id: e.dataset.sessionId,
                unread: (e.querySelector('.unread') || {}).textContent || '',
                current: e.classList.contains('current'),
            }));
        """
        return await self.in_browser(self.browser.execute_script, script)

    async def states(self) -> list[tuple[str, str]]:
        return [(s["name"], s["state"]) for s in await self.sessions()]

    async def wait_states(self, expected: list[tuple[str, str]]) -> None:
        async def matches() -> bool:
            return sorted(await self.states()) == sorted(expected)

        await self.until(matches, f"the sessions {expected} (shown: {await self.states()})")

    async def entry(self, name: str, index: int = 0) -> dict[str, Any]:
        return [s for s in await self.sessions() if s["name"].lower() == name.lower()][index]

    async def select(self, session_id: str) -> None:
        await self.click(f'#sessions .session[data-session-id="{session_id}"]')

    async def messages(self) -> list[tuple[str, str]]:
        script = """
            return [...document.querySelectorAll('#conversation .message')].map(
                (e) => [e.dataset.from || '', e.textContent]);
        """
        return [tuple(m) for m in await self.in_browser(self.browser.execute_script, script)]


class WebClientTests(WebPage, BrowserCase):
    check = "the web client's browser test"

    async def start(self) -> LoopbackServer:
        server = await LoopbackServer.start(load_config(None, {}), accounts=ACCOUNTS)
        self.addCleanup(server.stop)
        self.server = server
        await self.open_browser()
        await self.in_browser(self.browser.get, server.web_url + "/")
        return server

    @deferred_test
    async def test_three_sessions_ims_unread_and_a_resume(self) -> None:
        server = await self.start()
        bob = await server.session("Bob")
        self.addCleanup(bob.close)
        # Three sessions: Alice, Carol, and Alice again.
        await self.sign_on("Alice")
        await self.wait_states([("Alice", "connected")])
        await self.sign_on("Carol")
        await self.wait_states([("Alice", "connected"), ("Carol", "connected")])
        await self.sign_on("Alice")
        await self.wait_states(
            [("Alice", "connected"), ("Carol", "connected"), ("Alice", "connected")]
        )
        registry = server.server.registry
        self.assertEqual(len(registry.get("alice").online_instances()), 2)
        # The page named its browser: the server knows the three are one device's.
        device = await self.in_browser(
            self.browser.execute_script, "return localStorage.getItem('aimserver-device-id')"
        )
        held = server.server.web.devices.sessions[device]
        self.assertEqual(
            sorted(web.screen_name for web in held.values()), ["Alice", "Alice", "Carol"]
        )
        self.assertEqual(len(registry.get("carol").online_instances()), 1)

        # Alice's first session in view; Bob IMs Carol: Carol's entry counts it.
        first_alice = await self.entry("Alice")
        await self.select(first_alice["id"])
        bob.send_im("Carol", b"psst, Carol")

        async def carol_unread() -> bool:
            return (await self.entry("Carol"))["unread"].strip() == "1"

        await self.until(carol_unread, "an unread badge of 1 on Carol")
        carol = await carol_reads_and_answers(self, bob, "hi Bob, from the browser")

        # The server drops Carol's socket: her entry shows reconnecting, then
        # the browser resumes the same session (no new sign-on) and an IM
        # sent meanwhile shows once.
        carol_web = server.server.web.sessions[carol["id"]]
        instance = carol_web.instance
        # Record every state Carol's entry shows from now on.
        await self.in_browser(
            self.browser.execute_script,
            """
            const id = arguments[0];
            window.carolStates = [];
            const watch = () => {
                const e = document.querySelector(
                    '#sessions .session[data-session-id="' + id + '"]');
                if (e) window.carolStates.push(e.dataset.state);
            };
            new MutationObserver(watch).observe(
                document.querySelector('#sessions'),
                {attributes: true, subtree: true, childList: true});
            """,
            carol["id"],
        )
        carol_web.socket.transport.transport.abortConnection()  # type: ignore[union-attr]
        bob.send_im("Carol", b"while you were away")

        async def carol_back() -> bool:
            return (await self.entry("Carol"))["state"] == "connected" and (
                carol_web.socket is not None
            )

        await self.until(carol_back, "Carol's session resumed")
        self.assertIs(server.server.web.sessions[carol["id"]].instance, instance)
        shown = await self.in_browser(self.browser.execute_script, "return window.carolStates")
        self.assertIn("reconnecting", shown)
        self.assertEqual(shown[-1], "connected")

        async def away_line_shown() -> bool:
            lines = [t for _, t in await self.messages() if "while you were away" in t]
            return len(lines) == 1

        await self.until(away_line_shown, "the IM sent while the socket was down, once")
        self.assertEqual(len(registry.get("carol").online_instances()), 1)
        await self.in_browser(self.browser.save_screenshot, self.screenshot_path("web-client.png"))
        errors = [e for e in await self.errors_logged() if "/ws" not in e]
        self.assertEqual(errors, [])


class StoredConversationTests(BrowserCase):
    check = "the web client's browser test"

    @deferred_test
    async def test_a_version_1_store_is_upgraded_in_place(self) -> None:
        """A browser that last ran the page when its IndexedDB schema was
        version 1 keeps its conversations: the page upgrades the database
        to version 2 in place (the sessions store and the index added, the
        version-1 messages kept)."""
        server = await LoopbackServer.start(load_config(None, {}), accounts=ACCOUNTS)
        self.addCleanup(server.stop)
        await self.open_browser()
        # A same-origin document that does not run the page: make the old store.
        await self.in_browser(self.browser.get, server.web_url + "/style.css")
        made = await self.in_browser(
            self.browser.execute_async_script,
            """
            const done = arguments[arguments.length - 1];
            const request = indexedDB.open("aimserver-web", 1);
            request.onupgradeneeded = () => {
                const messages = request.result.createObjectStore(
                    "messages", {keyPath: "id", autoIncrement: true});
                messages.createIndex("conversation", ["sessionKey", "buddy"]);
                messages.add({sessionKey: "alice:old", buddy: "bob", text: "kept from v1"});
            };
            request.onsuccess = () => { request.result.close(); done("made"); };
            request.onerror = () => done("failed: " + request.error);
            """,
        )
        self.assertEqual(made, "made")
        await self.in_browser(self.browser.get, server.web_url + "/")
        await self.find("#signon-form")

        async def upgraded() -> bool:
            state = await self.in_browser(
                self.browser.execute_async_script,
                """
                const done = arguments[arguments.length - 1];
                const request = indexedDB.open("aimserver-web");
                request.onsuccess = () => {
                    const db = request.result;
                    const names = [...db.objectStoreNames];
                    if (db.version < 2) { db.close(); done({version: db.version}); return; }
                    const tx = db.transaction("messages", "readonly");
                    const all = tx.objectStore("messages").getAll();
                    all.onsuccess = () => {
                        const indexes = [...tx.objectStore("messages").indexNames];
                        done({version: db.version, names, indexes,
                              texts: all.result.map((m) => m.text)});
                        db.close();
                    };
                };
                request.onerror = () => done({error: String(request.error)});
                """,
            )
            self.state = state
            return state.get("version") == 2

        await self.until(upgraded, "the store at version 2")
        self.assertEqual(sorted(self.state["names"]), ["messages", "sessions"])
        self.assertEqual(sorted(self.state["indexes"]), ["conversation", "session"])
        self.assertIn("kept from v1", self.state["texts"])
