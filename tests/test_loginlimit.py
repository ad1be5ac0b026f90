"""Login admission buckets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.loginlimit import (
    FAILURES_BEFORE_BACKOFF,
    FIRST_BACKOFF,
    FORGET_AFTER,
    MAX_BACKOFF,
    MAX_TRACKED_ADDRESSES,
    FailedLogins,
    LoginLimiter,
)


class LoginLimiterTests(SynchronousTestCase):
    def test_server_bucket(self) -> None:
        """The whole server admits its burst at once, then its rate."""
        limiter = LoginLimiter(10, 20, 0, 0)
        admitted = [limiter.admit(f"10.0.0.{i}", 100.0) for i in range(30)]
        self.assertEqual(admitted.count(True), 20)
        self.assertFalse(limiter.admit("10.0.1.1", 100.0))
        self.assertTrue(limiter.admit("10.0.1.1", 100.2))

    def test_address_bucket(self) -> None:
        """One address gets its own burst and refill; others are unaffected."""
        limiter = LoginLimiter(0, 0, 1.0, 3)
        self.assertEqual([limiter.admit("a", 0.0) for _ in range(5)], [True] * 3 + [False] * 2)
        self.assertTrue(limiter.admit("b", 0.0))
        self.assertTrue(limiter.admit("a", 1.0))
        self.assertFalse(limiter.admit("a", 1.0))

    def test_refused_by_address_costs_the_server_nothing(self) -> None:
        """A refused address does not use up the server-wide allowance."""
        limiter = LoginLimiter(1, 1, 0.001, 1)
        self.assertTrue(limiter.admit("a", 0.0))
        self.assertFalse(limiter.admit("a", 0.5))
        self.assertTrue(limiter.admit("b", 1.0))

    def test_tracked_addresses_are_bounded(self) -> None:
        """The per-address table never grows past its bound."""
        limiter = LoginLimiter(0, 0, 1.0, 1)
        for i in range(MAX_TRACKED_ADDRESSES + 10):
            limiter.admit(str(i), 0.0)
        self.assertEqual(len(limiter._addresses), MAX_TRACKED_ADDRESSES)

    @given(st.lists(st.floats(min_value=0, max_value=1000), max_size=200))
    def test_never_more_than_rate_times_time_plus_burst(self, times: list[float]) -> None:
        """Over any run, admissions never exceed burst + rate x elapsed time."""
        times = sorted(times)
        limiter = LoginLimiter(2.0, 5.0, 0, 0)
        admitted = sum(limiter.admit("x", t) for t in times)
        if times:
            self.assertLessEqual(admitted, 5 + 2.0 * (times[-1] - times[0]) + 1e-9)


class FailedLoginsTests(SynchronousTestCase):
    """Back-off after wrong passwords, per address and per screen name."""

    def test_backoff_starts_doubles_and_ends(self) -> None:
        failures = FailedLogins()
        for n in range(FAILURES_BEFORE_BACKOFF - 1):
            failures.failed("192.0.2.1", "alice", 100.0 + n)
            self.assertFalse(failures.blocked("192.0.2.1", "alice", 100.0 + n))
        failures.failed("192.0.2.1", "alice", 110.0)
        # Both the address (for any name) and the name (from anywhere) wait.
        self.assertTrue(failures.blocked("192.0.2.1", "bob", 110.0))
        self.assertTrue(failures.blocked("198.51.100.7", "alice", 110.0))
        self.assertFalse(failures.blocked("198.51.100.7", "bob", 110.0))
        self.assertFalse(failures.blocked("192.0.2.1", "alice", 110.0 + FIRST_BACKOFF))
        failures.failed("192.0.2.1", "alice", 120.0)
        self.assertTrue(failures.blocked("198.51.100.7", "alice", 120.0 + FIRST_BACKOFF))
        self.assertFalse(failures.blocked("198.51.100.7", "alice", 120.0 + 2 * FIRST_BACKOFF))

    def test_backoff_is_capped_and_forgotten(self) -> None:
        failures = FailedLogins()
        for n in range(60):
            failures.failed("192.0.2.1", "alice", float(n))
        self.assertTrue(failures.blocked("192.0.2.1", "x", 59 + MAX_BACKOFF - 1))
        self.assertFalse(failures.blocked("192.0.2.1", "x", 59 + MAX_BACKOFF))
        # A failure long after the last starts a new count.
        failures.failed("192.0.2.1", "alice", 59 + MAX_BACKOFF + FORGET_AFTER + 1)
        self.assertFalse(
            failures.blocked("192.0.2.1", "alice", 59 + MAX_BACKOFF + FORGET_AFTER + 1)
        )

    def test_success_clears_the_name_not_the_address(self) -> None:
        failures = FailedLogins()
        for n in range(FAILURES_BEFORE_BACKOFF):
            failures.failed("192.0.2.1", "alice", float(n))
        failures.succeeded("alice")
        self.assertFalse(failures.blocked("198.51.100.7", "alice", 5.0))
        self.assertTrue(failures.blocked("192.0.2.1", "bob", 5.0))

    def test_tables_are_bounded(self) -> None:
        failures = FailedLogins(max_tracked=3)
        for n in range(10):
            failures.failed(f"192.0.2.{n}", f"user{n}", 0.0)
        self.assertEqual((len(failures._addresses), len(failures._names)), (3, 3))
