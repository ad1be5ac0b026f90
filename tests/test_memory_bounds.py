"""Memory stays bounded (issue 19): what one session, one user and one
connection make the real server hold with every limit reached, what stays
after they sign off and after a flood of sign-ons, checked against the
bounds stated in ``bench/chaos/limits.py`` (``BOUNDS``, each with its
derivation).

The figures come from ``twistd aimserver`` in a child process with
tracemalloc on, measured after a garbage collection (so they count what the
server keeps, not allocator slack) and driven over loopback TCP from an
asyncio loop: these tests block the reactor while they run (nothing else is
on it). One measurement, made at the first test that needs it, serves them
all (about 20 s); the bounds are generous against it (the figures are about
half to two thirds of them) yet a server that stopped enforcing a limit
would pass them by far, which ``test_a_lifted_limit_is_caught`` shows (10 s).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bench.chaos import limits
from bench.chaos.limits import BOUNDS, Figures, KiB, Plan

#: Three users of two sessions each, a one-second flood, the worst list.
PLAN = Plan(users=3, sessions=2, seconds=1.0, worst=True)

_measured: list[tuple[Figures, dict[str, float]]] = []


def measured() -> tuple[Figures, dict[str, float]]:
    """The one measurement of ``PLAN`` (made at the first call)."""
    if not _measured:
        figures, _ = limits.measure(PLAN)
        _measured.append((figures, limits.values(figures, PLAN)))
    return _measured[0]


class MemoryBoundTests(SynchronousTestCase):
    def assertUnder(self, key: str) -> float:
        figures, found = measured()
        value, bound = found[key], BOUNDS[key]
        self.assertLessEqual(
            value,
            bound.bytes,
            f"{key}: {value / KiB:,.0f} KiB over the bound {bound.bytes / KiB:,.0f} KiB"
            f" ({bound.derivation}); measured: {figures.points}",
        )
        return value

    def test_every_step_past_a_limit_is_refused(self) -> None:
        """Each session tried 2,000 more buddies than 03,04 allows,
        60,000-byte profile and away texts, 3,000 capabilities, and its
        user's first session 100 more stored buddies: each was refused with
        its error (03,01 0x0015, 02,01 0x000E, 13,0E 0x000C)."""
        figures, _ = measured()
        self.assertEqual(figures.problems, [])

    def test_a_session_at_every_limit(self) -> None:
        """A session with 1,000 client-side buddies nobody else watches, its
        user's 1,000 stored ones, maximum profile, away message and
        capabilities, and 32 IMs sent: under 768 KiB."""
        self.assertGreater(self.assertUnder("session"), 100 * KiB)

    def test_a_user_with_a_list_at_every_class_limit(self) -> None:
        """A user whose stored list holds 2,460 items (every class limit),
        read, watched and edited: under 2.5 MiB beyond its sessions."""
        self.assertGreater(self.assertUnder("user"), 500 * KiB)

    def test_a_list_with_every_item_at_its_largest(self) -> None:
        """The same list with 8 KiB of attributes on every item (20 MB):
        under 56 MiB while its user is on, and given back at sign-off."""
        self.assertGreater(self.assertUnder("worst-user"), 20 * 1024 * KiB)
        _, found = measured()
        self.assertLess(found["worst left"], limits.WORST_LEFT)

    def test_an_idle_service_connection(self) -> None:
        """An alert service connection holding nothing: under 16 KiB."""
        self.assertUnder("connection")

    def test_signing_off_gives_the_memory_back(self) -> None:
        """After every session signed off, each user leaves under 16 KiB
        (its account cache entry; until they expire, cookie replay entries)
        of the megabytes it held."""
        _, found = measured()
        self.assertGreater(found["while on"], 1024 * KiB)
        self.assertUnder("residue")

    def test_a_flood_of_sign_ons_leaves_little(self) -> None:
        """A second of sign-ons and sign-offs, wrong passwords, abandoned
        challenges, cookies redeemed and dropped, and silent connections,
        each from its own address: every attempt got its answer, and each
        leaves under 4 KiB once the last has timed out."""
        figures, _ = measured()
        assert figures.flood is not None
        self.assertGreater(figures.flood.attempts, 20)
        self.assertEqual(
            [k for k in figures.flood.outcomes if k.startswith(limits.UNEXPECTED)],
            [],
            figures.flood.outcomes,
        )
        self.assertUnder("flood")


class LiftedLimitTests(SynchronousTestCase):
    def test_a_lifted_limit_is_caught(self) -> None:
        """A server that no longer enforces 03,04's buddy limit (lifted in
        the child by the bench's instrumentation) takes the 2,000 extra
        buddies each session tries: the session figure passes its bound
        and the missing refusals are reported."""
        plan = Plan(users=2, sessions=2, seconds=0.0, worst=False, lift=("buddies",))
        figures, _ = limits.measure(plan)
        found = limits.values(figures, plan)
        self.assertGreater(found["session"], BOUNDS["session"].bytes)
        self.assertTrue(
            figures.problems and all("03,04" in p for p in figures.problems), figures.problems
        )
        rows = {row.target: row for row in limits.rows_of(figures, None, plan)}
        self.assertFalse(rows["session"].ok)
        self.assertFalse(rows["limits refused"].ok)
