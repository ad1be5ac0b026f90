"""Tests that need a program beyond Python (tshark, Chromium): on a
developer's machine without it they skip, saying what to install; under CI
(``CI=true``, which ``.ci/run`` sets after installing them) they fail
instead, so a green CI run has always run them."""

from __future__ import annotations

import os
from collections.abc import Mapping

from twisted.trial import unittest


def in_ci(environ: Mapping[str, str] | None = None) -> bool:
    """``CI=true`` (or 1/yes), as GitHub Actions, GitLab CI and ``.ci/run`` set it."""
    value = (os.environ if environ is None else environ).get("CI", "")
    return value.strip().lower() in ("true", "1", "yes")


def unavailable(check: str, reason: str, environ: Mapping[str, str] | None = None) -> Exception:
    """What to raise when ``check`` cannot run: a skip on a developer's
    machine, a failure under CI."""
    if in_ci(environ):
        return unittest.FailTest(f"CI=true but {check} cannot run: {reason}")
    return unittest.SkipTest(reason)
