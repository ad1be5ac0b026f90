"""The status page (``GET /status``) in a real headless Chromium over
loopback: it loads, takes the token from the address, shows the live
numbers, and sees them change as sessions sign on and IMs are routed; its
sparklines fill from ``/stats/history``; without the token it asks for one;
the browser logs no error (a Content-Security-Policy violation would be one).
The test saves a screenshot (``status-page.png`` in the trial directory, or
in ``$AIMSERVER_SCREENSHOT_DIR``); README.md shows one.

Needs Debian's ``chromium`` and ``chromium-driver`` and Selenium (the
``test`` extra): without them the test skips saying so, and fails under CI.
"""

from __future__ import annotations

import os
import shutil

from twisted.internet import reactor, task
from twisted.trial import unittest

from aimserver.config import load_config
from tests.browser import PAGE_TIMEOUT, BrowserCase
from tests.client import deferred_test
from tests.harness import LoopbackServer

TOKEN = "status-page-token-0123456789"
ACCOUNTS = {"Alice": "secret", "Bob": "secret"}


class StatusPageTests(BrowserCase):
    check = "the status page's browser test"

    async def start(self) -> LoopbackServer:
        config = load_config(None, {"api.token": TOKEN, "multisession.notify": False})
        server = await LoopbackServer.start(config, accounts=ACCOUNTS)
        self.addCleanup(server.stop)
        # Samples twice a second instead of every 10 s, so the sparklines
        # gather points while the test watches.
        history = server.server.stats_history
        history.interval = 0.5
        history.startService()
        self.addCleanup(history.stopService)
        await self.open_browser()
        return server

    async def problem_shown(self) -> str:
        return await self.text("problem")

    async def sparkline_points(self, name: str) -> int:
        from selenium.webdriver.common.by import By

        svg = await self.in_browser(self.browser.find_element, By.ID, f"spark-{name}")
        return int(await self.in_browser(svg.get_attribute, "data-points") or 0)

    async def errors_logged(self) -> list[str]:
        entries = await self.in_browser(self.browser.get_log, "browser")
        return [e["message"] for e in entries if e.get("level") == "SEVERE"]

    @deferred_test
    async def test_the_page_shows_the_live_numbers_changing(self) -> None:
        server = await self.start()
        await self.in_browser(self.browser.get, f"{server.api_url}/status#token={TOKEN}")
        await self.shows({"users_online": "0", "sessions": "0", "messages_routed": "0"})
        # The token left the address bar (kept for the tab, not in history).
        url = await self.in_browser(lambda: self.browser.current_url)
        self.assertNotIn(TOKEN, url)

        alice_home, alice_work, bob = [
            await server.session(name) for name in ("Alice", "Alice", "Bob")
        ]
        for client in (alice_home, alice_work, bob):
            self.addCleanup(client.close)
        await server.bucp("Bob", "wrong password")
        await self.shows({"users_online": "2", "sessions": "3", "signons": "3", "refusals": "1"})
        self.assertIn("with 2", await self.text("sessions_per_user"))
        self.assertIn("bad_password 1", await self.text("refusal_reasons"))

        for n in range(5):
            alice_home.send_im("Bob", f"hello {n}".encode())
            _, text, _ = await bob.receive_im()
            self.assertEqual(text, f"hello {n}".encode())
            await task.deferLater(reactor, 0.3, lambda: None)  # a stream, for the sparkline
        routed = server.server.icbm.routed
        self.assertGreaterEqual(routed, 5)
        await self.shows({"messages_routed": f"{routed:,}"})
        # The sparklines gathered points from /stats/history as it sampled.
        deadline = reactor.seconds() + PAGE_TIMEOUT
        while await self.sparkline_points("sessions") < 3:
            self.assertLess(reactor.seconds(), deadline, "the sparkline did not fill")
            await task.deferLater(reactor, 0.2, lambda: None)
        self.assertGreaterEqual(await self.sparkline_points("ims_per_second"), 2)

        await self.in_browser(self.browser.save_screenshot, self.screenshot_path("status-page.png"))
        self.assertEqual(await self.errors_logged(), [])

        await bob.close()
        await self.shows({"users_online": "1", "sessions": "2"})

    @deferred_test
    async def test_without_the_token_the_page_asks_for_it(self) -> None:
        from selenium.webdriver.common.by import By

        server = await self.start()
        await self.in_browser(self.browser.get, f"{server.api_url}/status")
        await self.shows({"problem": "The API needs its token.", "sessions": "–"})
        form = await self.in_browser(self.browser.find_element, By.ID, "token-form")
        self.assertTrue(await self.in_browser(form.is_displayed))
        field = await self.in_browser(self.browser.find_element, By.ID, "token")
        await self.in_browser(field.send_keys, "not the token\n")
        await self.shows({"problem": "The API refused this token."})
        await self.in_browser(field.send_keys, TOKEN + "\n")
        await self.shows({"problem": "", "sessions": "0"})
        self.assertFalse(await self.in_browser(form.is_displayed))
        # The browser logged the two 401s it was answered, and nothing else.
        errors = await self.errors_logged()
        self.assertTrue(all("401" in message for message in errors), errors)


class AvailabilityTests(unittest.SynchronousTestCase):
    """Without Chromium the browser test skips saying what to install, and
    fails under CI (where ``.ci/run`` installs it)."""

    def without_chromium(self, ci: str | None) -> None:
        real_which = shutil.which
        self.patch(shutil, "which", lambda name: None if "chrom" in name else real_which(name))
        old = os.environ.pop("CI", None)
        self.addCleanup(lambda: os.environ.update({} if old is None else {"CI": old}))
        if ci is not None:
            os.environ["CI"] = ci
        self.addCleanup(os.environ.pop, "CI", None)

    def test_skipped_with_what_to_install_outside_ci(self) -> None:
        self.without_chromium(None)
        with self.assertRaises(unittest.SkipTest) as caught:
            StatusPageTests("test_the_page_shows_the_live_numbers_changing").setUp()
        self.assertIn("need chromium and chromedriver", str(caught.exception))
        self.assertIn("apt-get install -y chromium chromium-driver", str(caught.exception))

    def test_fails_under_ci(self) -> None:
        self.without_chromium("true")
        with self.assertRaises(self.failureException) as caught:
            StatusPageTests("test_the_page_shows_the_live_numbers_changing").setUp()
        self.assertIn(
            "CI=true but the status page's browser test cannot run", str(caught.exception)
        )
