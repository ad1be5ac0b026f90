"""``.ci/run`` itself: it installs the programs the tests need beyond
Python (tshark for the Wireshark conformance check, Debian's chromium and
chromium-driver for the browser tests in Chromium, firefox-esr for the one
in Firefox) and runs exactly the README's test command, with ``CI=true``."""

from __future__ import annotations

import os
import shutil
import subprocess

from twisted.trial import unittest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The shell command each fake records its name and arguments with, as
#: "name|DEBIAN_FRONTEND|CI|arguments".
RECORD = 'echo "$(basename "$0")|${DEBIAN_FRONTEND:-}|${CI:-}|$*" >> "$LOG"'
#: What .ci/run looks for on PATH.
ALL_PROGRAMS = ("tshark", "dumpcap", "chromium", "chromedriver", "firefox-esr")


class CiScriptTests(unittest.SynchronousTestCase):
    """``.ci/run``, run against fakes (apt-get, id, python3, the venv's pip
    and python) in a scratch copy: it installs what is missing of tshark,
    chromium, chromium-driver and firefox-esr when root, then runs exactly
    the README's test command, with CI set."""

    def readme_command(self) -> str:
        with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
            lines = f.read().splitlines()
        start = lines.index("## Run the tests")
        return next(line.strip() for line in lines[start + 1 :] if line.strip())

    def test_last_line_is_the_readme_command(self) -> None:
        with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
        self.assertEqual(lines[-1], self.readme_command())

    def run_script(self, *, uid: int, have: tuple[str, ...]) -> tuple[list[list[str]], str]:
        root = os.path.abspath(self.mktemp())
        bin_dir = os.path.join(root, "bin")
        venv_bin = os.path.join(root, ".venv", "bin")
        os.makedirs(os.path.join(root, ".ci"))
        os.makedirs(bin_dir)
        os.makedirs(venv_bin)
        shutil.copy(os.path.join(REPO, ".ci", "run"), os.path.join(root, ".ci", "run"))
        fakes = {
            os.path.join(bin_dir, "apt-get"): RECORD,
            os.path.join(bin_dir, "id"): f"echo {uid}",
            os.path.join(bin_dir, "python3"): RECORD,
            os.path.join(venv_bin, "pip"): RECORD,
            os.path.join(venv_bin, "python"): RECORD,
        }
        for program in have:
            fakes[os.path.join(bin_dir, program)] = RECORD
        for path, body in fakes.items():
            with open(path, "w") as f:
                f.write(f"#!/bin/sh\n{body}\n")
            os.chmod(path, 0o755)
        for tool in ("dirname", "basename"):
            os.symlink(shutil.which(tool) or f"/usr/bin/{tool}", os.path.join(bin_dir, tool))
        log = os.path.join(root, "log")
        env = {"PATH": bin_dir, "LOG": log, "HOME": root}
        done = subprocess.run(
            ["/bin/bash", os.path.join(root, ".ci", "run")],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        with open(log) as f:
            calls = [line.split("|") for line in f.read().splitlines()]
        return calls, done.stderr

    def test_installs_what_is_missing_as_root_before_the_tests(self) -> None:
        calls, _ = self.run_script(uid=0, have=())
        self.assertEqual(
            calls,
            [
                ["apt-get", "", "true", "update"],
                [
                    "apt-get",
                    "noninteractive",
                    "true",
                    "install -y tshark chromium chromium-driver firefox-esr",
                ],
                ["python3", "", "true", "-m venv .venv"],
                ["pip", "", "true", "install -q -e .[test]"],
                ["python", "", "true", "-m twisted.trial tests"],
            ],
        )

    def test_installs_only_what_is_missing(self) -> None:
        calls, _ = self.run_script(uid=0, have=("tshark", "dumpcap", "chromedriver", "firefox-esr"))
        self.assertEqual(calls[1], ["apt-get", "noninteractive", "true", "install -y chromium"])
        calls, _ = self.run_script(
            uid=0, have=("tshark", "chromium", "chromedriver", "firefox-esr")
        )
        self.assertEqual(calls[1], ["apt-get", "noninteractive", "true", "install -y tshark"])
        calls, _ = self.run_script(uid=0, have=("tshark", "dumpcap", "chromium", "chromedriver"))
        self.assertEqual(calls[1], ["apt-get", "noninteractive", "true", "install -y firefox-esr"])

    def test_a_firefox_named_firefox_will_do(self) -> None:
        have = ("tshark", "dumpcap", "chromium", "chromedriver", "firefox")
        calls, _ = self.run_script(uid=0, have=have)
        self.assertEqual([call[0] for call in calls], ["python3", "pip", "python"])

    def test_no_install_when_present(self) -> None:
        calls, _ = self.run_script(uid=0, have=ALL_PROGRAMS)
        self.assertEqual([call[0] for call in calls], ["python3", "pip", "python"])

    def test_no_install_when_not_root_but_says_so(self) -> None:
        calls, stderr = self.run_script(uid=1000, have=("tshark", "dumpcap"))
        self.assertEqual([call[0] for call in calls], ["python3", "pip", "python"])
        self.assertIn("chromium chromium-driver firefox-esr missing", stderr)
