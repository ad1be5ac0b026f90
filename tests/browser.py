"""A headless Chromium for the browser tests (the status page, the web
client): Debian's ``chromium`` under ``chromium-driver``, driven with
Selenium. Selenium blocks: call it in a thread (``deferToThread``) so the
reactor keeps serving the page."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet import reactor, task
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests import external

T = TypeVar("T")
#: How long a page may take to show a change.
PAGE_TIMEOUT = 15.0

INSTALL_HINT = (
    "install Debian's chromium and chromium-driver (apt-get install -y chromium "
    "chromium-driver) and Selenium (pip install -e '.[test]')"
)


def browser_problem() -> str | None:
    """Why a headless Chromium cannot be driven here, or None."""
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    if missing:
        return f"the browser tests need {' and '.join(missing)}; {INSTALL_HINT}"
    return None


def new_browser() -> Any:
    """A headless Chromium under chromedriver (called in a thread: Selenium blocks)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1100,760",
        "--no-first-run",
        "--disable-background-networking",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(options=options, service=service)


#: By.CSS_SELECTOR, the same string in Selenium and in marionette_driver.
CSS = "css selector"


class PageCase(unittest.TestCase):
    """A test driving a headless browser through ``self.browser`` (Selenium's
    or Marionette's client, which share what is used here); skipped where the
    browser is missing, saying what to install (``problem``), and failed under
    CI."""

    timeout = 120
    #: What the skip or failure names.
    check = "a browser test"
    browser: Any

    def problem(self) -> str | None:
        """Why this test's browser cannot be driven here, or None."""
        raise NotImplementedError

    def setUp(self) -> None:
        problem = self.problem()
        if problem is not None:
            raise external.unavailable(self.check, problem)

    async def in_browser(self, call: Callable[..., T], *args: Any) -> T:
        return await deferToThread(call, *args)

    async def find(self, selector: str) -> Any:
        return await self.in_browser(self.browser.find_element, CSS, selector)

    async def find_all(self, selector: str) -> list[Any]:
        return await self.in_browser(self.browser.find_elements, CSS, selector)

    async def text(self, element_id: str) -> str:
        element = await self.find(f"#{element_id}")
        return await self.in_browser(lambda: element.text)

    async def problem_shown(self) -> str:
        """What the page says is wrong, for a failure message."""
        return ""

    async def shows(self, expected: dict[str, str]) -> None:
        """Wait until each element (by id) shows its text; fail saying what it shows."""
        deadline = reactor.seconds() + PAGE_TIMEOUT
        while True:
            shown = {key: await self.text(key) for key in expected}
            if shown == expected:
                return
            if reactor.seconds() > deadline:
                problem = await self.problem_shown()
                self.fail(f"the page shows {shown}, not {expected} (problem: {problem!r})")
            await task.deferLater(reactor, 0.2, lambda: None)

    async def until(self, condition: Callable[[], Any], what: str) -> None:
        """Wait until the async ``condition()`` is true."""
        deadline = reactor.seconds() + PAGE_TIMEOUT
        while not await condition():
            if reactor.seconds() > deadline:
                self.fail(f"the page never showed {what}")
            await task.deferLater(reactor, 0.2, lambda: None)

    def screenshot_path(self, name: str) -> str:
        directory = os.environ.get("AIMSERVER_SCREENSHOT_DIR") or os.getcwd()
        return os.path.join(directory, name)


class BrowserCase(PageCase):
    """A test with a headless Chromium (``open_browser``)."""

    def problem(self) -> str | None:
        return browser_problem()

    async def open_browser(self) -> Any:
        browser = await deferToThread(new_browser)
        self.addCleanup(deferToThread, browser.quit)
        self.browser = browser
        return browser

    async def errors_logged(self) -> list[str]:
        entries = await self.in_browser(self.browser.get_log, "browser")
        return [e["message"] for e in entries if e.get("level") == "SEVERE"]
