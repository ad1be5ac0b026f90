"""The browser client in a real headless Firefox (issue 18 asks for current
Chromium and Firefox; ``test_web_client.py`` is the Chromium side). One page
signs on two sessions (two screen names), exchanges IMs with a classic OSCAR
client, counts an unread IM on the session not in view, shows connected
status dots, keeps its sessions and conversations in IndexedDB across a
reload (both sessions resumed, every line shown once), and logs no error.
The test saves a screenshot (``web-client-firefox.png``)."""

from __future__ import annotations

from typing import Any

from aimserver.config import load_config
from tests import test_web_client as chromium
from tests.client import deferred_test
from tests.firefox import FirefoxCase
from tests.harness import LoopbackServer

#: Each sidebar entry's state dot (sidebar.js): ● is connected.
DOTS = "return [...document.querySelectorAll('#sessions .session .dot')].map((e) => e.textContent);"

#: What the page keeps in IndexedDB (store.js): the database's version, its
#: stores, the sidebar entries' screen names and every stored message's text.
STORED = """
    const done = arguments[arguments.length - 1];
    const request = indexedDB.open("aimserver-web");
    request.onerror = () => done({error: String(request.error)});
    request.onsuccess = () => {
        const db = request.result;
        const tx = db.transaction(["sessions", "messages"], "readonly");
        const sessions = tx.objectStore("sessions").getAll();
        const messages = tx.objectStore("messages").getAll();
        tx.oncomplete = () => {
            done({version: db.version, stores: [...db.objectStoreNames],
                  names: sessions.result.map((s) => s.screenName),
                  texts: messages.result.map((m) => m.text)});
            db.close();
        };
    };
"""


class FirefoxWebClientTests(chromium.WebPage, FirefoxCase):
    check = "the web client's Firefox test"

    async def load(self, url: str | None = None) -> None:
        """Open ``url`` (or reload the page) and wait until the page has wired itself up."""
        if url is None:
            await self.in_browser(self.browser.refresh)
        else:
            await self.in_browser(self.browser.navigate, url)

        async def ready() -> bool:
            script = "return document.documentElement.dataset.ready === 'true';"
            return await self.in_browser(self.browser.execute_script, script)

        await self.until(ready, "the page ready (data-ready)")

    async def page_errors(self) -> list[str]:
        """The console's errors and the page's error toasts."""
        errors = await self.errors_logged()
        toasts = await self.in_browser(
            self.browser.execute_script,
            "return [...document.querySelectorAll('#toasts .toast-error')]"
            ".map((t) => t.textContent);",
        )
        return errors + [f"error toast: {t}" for t in toasts]

    async def stored(self) -> dict[str, Any]:
        return await self.in_browser(self.browser.execute_async_script, STORED)

    @deferred_test
    async def test_two_sessions_ims_unread_and_a_reload(self) -> None:
        server = await LoopbackServer.start(load_config(None, {}), accounts=chromium.ACCOUNTS)
        self.addCleanup(server.stop)
        bob = await server.session("Bob")
        self.addCleanup(bob.close)
        await self.open_browser()
        await self.load(server.web_url + "/")
        self.assertEqual(await self.page_errors(), [])

        await self.sign_on("Alice")
        await self.wait_states([("Alice", "connected")])
        await self.sign_on("Carol")
        await self.wait_states([("Alice", "connected"), ("Carol", "connected")])
        self.assertEqual(await self.in_browser(self.browser.execute_script, DOTS), ["●", "●"])
        registry = server.server.registry
        # The page named its browser (localStorage): the server knows the two are one device's.
        device = await self.in_browser(
            self.browser.execute_script, "return localStorage.getItem('aimserver-device-id');"
        )
        held = server.server.web.devices.sessions[device]
        self.assertEqual(sorted(web.screen_name for web in held.values()), ["Alice", "Carol"])

        # Alice in view; Bob IMs Carol: Carol's entry counts it.
        alice = await self.entry("Alice")
        await self.select(alice["id"])
        bob.send_im("Carol", b"psst, Carol")

        async def carol_unread() -> bool:
            return (await self.entry("Carol"))["unread"].strip() == "1"

        await self.until(carol_unread, "an unread badge of 1 on Carol")
        self.assertEqual((await self.entry("Alice"))["unread"].strip(), "")
        carol = await chromium.carol_reads_and_answers(self, bob, "hi Bob, from Firefox")

        async def own_line_shown() -> bool:
            return any("hi Bob, from Firefox" in text for _, text in await self.messages())

        await self.until(own_line_shown, "Carol's own line in her conversation")

        # IndexedDB, not the in-memory fallback, holds both entries and both lines.
        async def both_stored() -> bool:
            self.kept = await self.stored()
            texts = self.kept.get("texts", [])
            return "psst, Carol" in texts and "hi Bob, from Firefox" in texts

        await self.until(both_stored, "both lines in IndexedDB")
        self.assertEqual(self.kept["version"], 2)
        self.assertEqual(sorted(self.kept["stores"]), ["messages", "sessions"])
        self.assertEqual(sorted(self.kept["names"]), ["Alice", "Carol"])
        self.assertEqual(await self.page_errors(), [])

        # A reload: the sidebar comes back from IndexedDB and both sessions
        # resume (the same server sessions, no new sign-on); Carol's
        # conversation shows each line once.
        instances = {
            web_id: server.server.web.sessions[web_id].instance
            for web_id in (alice["id"], carol["id"])
        }
        await self.load()
        await self.wait_states([("Alice", "connected"), ("Carol", "connected")])
        self.assertEqual(
            sorted(s["id"] for s in await self.sessions()), sorted([alice["id"], carol["id"]])
        )
        for web_id, instance in instances.items():
            self.assertIs(server.server.web.sessions[web_id].instance, instance)
        self.assertEqual(len(registry.get("carol").online_instances()), 1)
        self.assertEqual(len(registry.get("alice").online_instances()), 1)
        await self.select(carol["id"])

        async def conversation_back() -> bool:
            texts = [t for _, t in await self.messages()]
            return any("psst, Carol" in t for t in texts) and any(
                "hi Bob, from Firefox" in t for t in texts
            )

        await self.until(conversation_back, "Carol's conversation after the reload")
        texts = [t for _, t in await self.messages()]
        self.assertEqual(len([t for t in texts if "psst, Carol" in t]), 1, texts)
        self.assertEqual(len([t for t in texts if "hi Bob, from Firefox" in t]), 1, texts)
        self.assertEqual(await self.in_browser(self.browser.execute_script, DOTS), ["●", "●"])
        await self.save_screenshot("web-client-firefox.png")
        self.assertEqual(await self.page_errors(), [])
