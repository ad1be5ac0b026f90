"""A headless Firefox for the browser tests, driven through Marionette, the
remote protocol built into Firefox, with Mozilla's own Python client
(``marionette_driver``): Debian ships ``firefox-esr`` but no geckodriver, and
Marionette needs none. Each test starts its own Firefox on a fresh profile
and ends it in cleanup. Marionette calls block: make them in a thread
(``in_browser``) so the reactor keeps serving the page.

``FirefoxCase`` is a ``tests.browser.PageCase``, as the Chromium tests'
``BrowserCase`` is (``browser``, ``find``, ``in_browser``, ``until``...), so
page helpers written for the Chromium tests work on it too."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any, TypeVar

from twisted.internet.threads import deferToThread

from tests.browser import PageCase

T = TypeVar("T")
#: How long Firefox may take to start listening for Marionette.
STARTUP_TIMEOUT = 60.0
#: How long Firefox may take to exit once asked, before it is killed.
EXIT_TIMEOUT = 10.0
#: The window's size, as tests.browser makes Chromium's.
WINDOW_SIZE = (1100, 760)
#: No Marionette call in a test takes longer; one that does has hung.
CALL_TIMEOUT = 60.0

INSTALL_HINT = (
    "install Debian's firefox-esr (apt-get install -y firefox-esr) and "
    "marionette_driver (pip install -e '.[test]')"
)

#: The profile's user.js. Port 0: Marionette picks a free port and writes it
#: to MarionetteActivePort in the profile, so two Firefoxes never race for
#: one. The rest keeps Firefox off the network and out of first-run pages;
#: Marionette sets its own recommended prefs when the session starts.
PREFS = {
    "marionette.port": 0,
    "network.proxy.type": 0,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.page": 0,
    "app.update.disabledForTesting": True,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
}

#: Firefoxes started and not yet ended, ended at exit if a cleanup never ran.
_running: set[Firefox] = set()


def firefox_binary() -> str | None:
    return shutil.which("firefox-esr") or shutil.which("firefox")


def firefox_problem() -> str | None:
    """Why a headless Firefox cannot be driven here, or None."""
    missing = [] if firefox_binary() else ["firefox-esr (or firefox)"]
    try:
        import marionette_driver  # noqa: F401
    except ImportError:
        missing.append("marionette_driver")
    if missing:
        return f"the Firefox tests need {' and '.join(missing)}; {INSTALL_HINT}"
    return None


class Firefox:
    """One headless Firefox process, its profile and its Marionette client
    (``client``). ``end()`` stops the process, killing it if it does not
    exit in time, and deletes the profile."""

    def __init__(self, binary: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="aimserver-firefox-")
        with open(os.path.join(self.profile, "user.js"), "w", encoding="utf-8") as f:
            for name, value in PREFS.items():
                f.write(f'user_pref("{name}", {json.dumps(value)});\n')
        self.log_path = os.path.join(self.profile, "firefox.log")
        self.client: Any = None
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    "--headless",
                    "--marionette",
                    # errors_logged reads the console with system privileges,
                    # which newer Firefoxes may grant only with this flag
                    # (older ones warn about it and go on).
                    "-remote-allow-system-access",
                    "--no-remote",
                    "--profile",
                    self.profile,
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: end() reaches the content processes too.
                start_new_session=True,
            )
        _running.add(self)

    def connect(self, timeout: float = STARTUP_TIMEOUT) -> Any:
        """Wait for Marionette to listen, then start a session (blocks)."""
        from marionette_driver.marionette import Marionette

        port = self._wait_for_port(timeout)
        client = Marionette(host="127.0.0.1", port=port, socket_timeout=CALL_TIMEOUT)
        self.client = client
        client.start_session(timeout=timeout)
        # The size tests.browser gives Chromium's window.
        client.set_window_rect(width=WINDOW_SIZE[0], height=WINDOW_SIZE[1])
        return client

    def _wait_for_port(self, timeout: float) -> int:
        path = os.path.join(self.profile, "MarionetteActivePort")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Firefox exited ({self.process.returncode}) before Marionette "
                    f"listened: {self.log_tail()}"
                )
            try:
                with open(path, encoding="ascii") as f:
                    return int(f.read().strip())
            except (OSError, ValueError):  # not there yet, or half written
                time.sleep(0.05)
        raise RuntimeError(f"Marionette did not listen within {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return " | ".join(f.read().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def end(self) -> None:
        """Stop Firefox: SIGTERM to its process group, SIGKILL after
        EXIT_TIMEOUT, then whatever of the group is left (blocks)."""
        _running.discard(self)
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait(EXIT_TIMEOUT)
        self._signal_group(signal.SIGKILL)  # a content process that outlived the parent
        if self.client is not None:
            # Only now: a call hung in another thread holds the client's
            # lock until Firefox's end closes the socket under it.
            self.client.delete_session(send_request=False)
        shutil.rmtree(self.profile, ignore_errors=True)

    def _signal_group(self, number: int) -> None:
        # The group outlives its leader while any member is left, so its id
        # is not reused before then: no stranger gets the signal.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, number)


@atexit.register
def _end_all() -> None:
    for firefox in list(_running):
        firefox.end()


def start_firefox() -> Firefox:
    """A headless Firefox with a Marionette session (blocks: call it in a
    thread). Ended, even when it fails to start, unless it is returned."""
    binary = firefox_binary()
    if binary is None:
        raise RuntimeError(firefox_problem())
    firefox = Firefox(binary)
    try:
        firefox.connect()
    except BaseException:
        firefox.end()
        raise
    return firefox


#: The page's console: uncaught errors and unhandled rejections (script
#: errors without the warning or info flag) and console.error() calls, of
#: the document now in the window. Runs in the "system" sandbox, which sees
#: the content process's console service and console API storage.
CONSOLE_ERRORS = """
    const id = window.windowGlobalChild.innerWindowId;
    const quiet = Ci.nsIScriptError.warningFlag | Ci.nsIScriptError.infoFlag;
    const errors = [];
    for (const m of Services.console.getMessageArray()) {
        if (m instanceof Ci.nsIScriptError && m.innerWindowID === id && !(m.flags & quiet)) {
            errors.push(`${m.sourceName}:${m.lineNumber} ${m.errorMessage}`);
        }
    }
    const storage = Cc["@mozilla.org/consoleAPI-storage;1"].getService(Ci.nsIConsoleAPIStorage);
    for (const e of storage.getEvents(String(id))) {
        if (e.level === "error") {
            const shown = e.arguments.map((a) => {
                try { return typeof a === "string" ? a : String(a); } catch { return "?"; }
            });
            errors.push(`${e.filename}:${e.lineNumber} console.error: ${shown.join(" ")}`);
        }
    }
    return errors;
"""


class FirefoxCase(PageCase):
    """A test with a headless Firefox (``open_browser``)."""

    check = "a Firefox test"

    def problem(self) -> str | None:
        return firefox_problem()

    async def open_browser(self) -> Any:
        """The Marionette client of a new Firefox, ended in cleanup."""
        firefox = await deferToThread(start_firefox)
        self.addCleanup(deferToThread, firefox.end)
        self.firefox = firefox
        self.browser = firefox.client
        return self.browser

    async def errors_logged(self) -> list[str]:
        """What the page's console shows as errors since it was loaded."""
        return await self.in_browser(
            lambda: self.browser.execute_script(CONSOLE_ERRORS, sandbox="system")
        )

    async def save_screenshot(self, name: str) -> str:
        """The viewport as a PNG in the screenshot directory; its path."""
        png = await self.in_browser(lambda: self.browser.screenshot(format="binary", full=False))
        path = self.screenshot_path(name)
        with open(path, "wb") as f:
            f.write(png)
        return path
