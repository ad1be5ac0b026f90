# -*- test-case-name: tests.test_ratelimit -*-
"""The server's rate classes and the per-user rate limiter (SIGNON.md §3,
ERRORS.md §3); how they are said on the wire is ``aimserver.wire.ratelimit``.

Everything here is pure: no sockets, no reactor, no clock. Callers pass the time
in as integer milliseconds from a monotonic source, so tests can drive the
algorithm with explicit timestamps.

:func:`class_of` and :meth:`RateLimiter.check` run for every SNAC a client
sends, so they use plain ints, one dict lookup and slotted state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import IntEnum

from aimserver.wire.codes import FoodGroup
from aimserver.wire.ratelimit import RateChange, RateClass, RateSnapshot

__all__ = [
    "DEFAULT_CLASS_MEMBERS",
    "DEFAULT_RATE_CLASSES",
    "RateLimiter",
    "RateResult",
    "RateState",
    "class_of",
]

#: Go's defaults, "used at one point by the original AIM service" (SIGNON.md §3.3).
DEFAULT_RATE_CLASSES: tuple[RateClass, ...] = (
    RateClass(1, window=80, clear=2500, alert=2000, limit=1500, disconnect=800, max=6000),
    RateClass(2, window=80, clear=3000, alert=2000, limit=1500, disconnect=1000, max=6000),
    RateClass(3, window=20, clear=5100, alert=5000, limit=4000, disconnect=3000, max=6000),
    RateClass(4, window=20, clear=5500, alert=5300, limit=4200, disconnect=3000, max=8000),
    RateClass(5, window=10, clear=5500, alert=5300, limit=4200, disconnect=3000, max=8000),
)


def _span(first: int, last: int) -> tuple[int, ...]:
    return tuple(range(first, last + 1))


# Every SNAC Go lists on every connection type (SIGNON.md §3.4). Clients may
# silently fail on a SNAC with no class in 01,07, so the reply lists all of them,
# whether or not this server implements the family.
_LISTED_SUBTYPES: dict[int, tuple[int, ...]] = {
    FoodGroup.OSERVICE: _span(0x01, 0x23),
    FoodGroup.LOCATE: _span(0x01, 0x15),
    FoodGroup.BUDDY: _span(0x01, 0x0C) + (0x0F, 0x10),
    FoodGroup.ICBM: _span(0x01, 0x14),
    FoodGroup.ADVERT: _span(0x01, 0x03),
    FoodGroup.INVITE: _span(0x01, 0x03),
    FoodGroup.ADMIN: _span(0x01, 0x09),
    FoodGroup.POPUP: _span(0x01, 0x02),
    FoodGroup.PERMIT_DENY: _span(0x01, 0x0B),
    FoodGroup.USER_LOOKUP: _span(0x01, 0x03),
    FoodGroup.STATS: _span(0x01, 0x04),
    FoodGroup.TRANSLATE: _span(0x01, 0x03),
    FoodGroup.CHAT_NAV: _span(0x01, 0x09),
    FoodGroup.CHAT: _span(0x01, 0x09),
    FoodGroup.ODIR: _span(0x01, 0x04),
    FoodGroup.BART: (0x01, 0x02, 0x04, 0x06),
    FoodGroup.FEEDBAG: _span(0x01, 0x28),
    FoodGroup.ICQ: _span(0x01, 0x03),
    FoodGroup.BUCP: (0x01, 0x02, 0x04, 0x06, 0x08, 0x0A, 0x0C),
    FoodGroup.ALERT: (0x01, 0x02, 0x04, 0x06, 0x07, 0x08, 0x0A)
    + _span(0x0D, 0x12)
    + _span(0x15, 0x17),
}

# The SNACs SIGNON.md §3.4 takes out of class 1; everything else listed is class 1.
_SPECIAL_CLASSES: dict[tuple[int, int], int] = {
    (FoodGroup.BUDDY, 0x04): 2,  # add buddies
    (FoodGroup.BUDDY, 0x05): 2,  # delete buddies
    (FoodGroup.PERMIT_DENY, 0x05): 2,  # permit/deny list edits
    (FoodGroup.PERMIT_DENY, 0x06): 2,
    (FoodGroup.PERMIT_DENY, 0x07): 2,
    (FoodGroup.PERMIT_DENY, 0x08): 2,
    (FoodGroup.CHAT, 0x05): 2,  # chat message
    (FoodGroup.LOCATE, 0x05): 3,  # user-info query
    (FoodGroup.ICBM, 0x06): 3,  # send ICBM
    (FoodGroup.LOCATE, 0x09): 4,  # set directory info
    (FoodGroup.LOCATE, 0x0B): 4,  # get directory info
}


def _build_default_members() -> dict[int, tuple[tuple[int, int], ...]]:
    members: dict[int, list[tuple[int, int]]] = {c.class_id: [] for c in DEFAULT_RATE_CLASSES}
    for family, subtypes in sorted(_LISTED_SUBTYPES.items()):
        for subtype in subtypes:
            pair = (int(family), subtype)
            members[_SPECIAL_CLASSES.get(pair, 1)].append(pair)
    return {class_id: tuple(pairs) for class_id, pairs in members.items()}


#: class ID → the (family, subtype) pairs ``01,07`` lists for it; class 5 is empty.
DEFAULT_CLASS_MEMBERS: Mapping[int, tuple[tuple[int, int], ...]] = _build_default_members()

# (family << 16 | subtype) → class ID. An int key hashes faster than a tuple and
# needs no allocation on the per-SNAC path.
_CLASS_BY_SNAC: dict[int, int] = {
    (family << 16) | subtype: class_id
    for class_id, pairs in DEFAULT_CLASS_MEMBERS.items()
    for family, subtype in pairs
}


def class_of(family: int, subtype: int) -> int:
    """The default rate class of a SNAC; 1 for a SNAC ``01,07`` does not list,
    which is also what libpurple assumes for unlisted SNACs."""
    return _CLASS_BY_SNAC.get((family << 16) | subtype, 1)


class RateState(IntEnum):
    """Where a class stands after a SNAC. Ordered so that ``>= LIMITED`` means
    "the server drops this class's SNACs"."""

    CLEAR = 0
    ALERT = 1
    LIMITED = 2
    DISCONNECT = 3


_CLEAR = RateState.CLEAR
_ALERT = RateState.ALERT
_LIMITED = RateState.LIMITED
_DISCONNECT = RateState.DISCONNECT


class RateResult:
    """What :meth:`RateLimiter.check` decided for one SNAC.

    ``allowed`` is False while the class is limited or the user must be
    disconnected: the caller drops the SNAC without a reply (ERRORS.md §3.3).
    ``changed_to`` is the ``01,0A`` code to send, or None when nothing worth a
    notice happened; ``current`` is the level to put in that notice's record.
    """

    __slots__ = ("state", "allowed", "changed_to", "current")

    def __init__(
        self, state: RateState, allowed: bool, changed_to: RateChange | None, current: int
    ) -> None:
        self.state = state
        self.allowed = allowed
        self.changed_to = changed_to
        self.current = current

    def __repr__(self) -> str:
        return (
            f"RateResult(state={self.state.name}, allowed={self.allowed},"
            f" changed_to={self.changed_to and self.changed_to.name}, current={self.current})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RateResult):
            return NotImplemented
        return (self.state, self.allowed, self.changed_to, self.current) == (
            other.state,
            other.allowed,
            other.changed_to,
            other.current,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-looking; compare, don't hash


# (previous state, new state) → 01,0A code. Leaving DISCONNECT counts like
# leaving LIMITED: the user's SNACs were being dropped until now.
_NOTICE: dict[tuple[RateState, RateState], RateChange] = {}
for _previous in RateState:
    if _previous is not _ALERT:
        _NOTICE[_previous, _ALERT] = RateChange.WARNING
    if _previous is not _LIMITED:
        _NOTICE[_previous, _LIMITED] = RateChange.LIMITED
    if _previous >= _LIMITED:
        _NOTICE[_previous, _CLEAR] = RateChange.CLEARED
del _previous


class _ClassState:
    """One class's thresholds (copied as plain ints) and its moving state."""

    __slots__ = (
        "rate_class",
        "window",
        "window_less_one",
        "clear",
        "alert",
        "limit",
        "disconnect",
        "max",
        "current",
        "last_ms",
        "state",
    )

    def __init__(self, rate_class: RateClass) -> None:
        self.rate_class = rate_class
        self.window = rate_class.window
        self.window_less_one = rate_class.window - 1
        self.clear = rate_class.clear
        self.alert = rate_class.alert
        self.limit = rate_class.limit
        self.disconnect = rate_class.disconnect
        self.max = rate_class.max
        self.current = rate_class.max
        self.last_ms: int | None = None
        self.state = _CLEAR


class RateLimiter:
    """Rate state of one user across all classes.

    Rate state is per user, not per connection (SIGNON.md §3.4, spec item 19):
    the owner keeps one limiter per screen name for all of its sessions and
    across sign-off/sign-on, so opening more sessions or reconnecting does not
    buy a fresh allowance.

    :raises KeyError: from :meth:`check`/:meth:`snapshot` for a class ID that is
        not in ``classes`` (a caller's bug: :func:`class_of` only yields known IDs
        for the default table).
    """

    __slots__ = ("classes", "_states")

    def __init__(self, classes: Sequence[RateClass] = DEFAULT_RATE_CLASSES) -> None:
        ids = [c.class_id for c in classes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate rate class IDs in {ids}")
        self.classes: tuple[RateClass, ...] = tuple(classes)
        self._states: dict[int, _ClassState] = {c.class_id: _ClassState(c) for c in classes}

    def check(self, class_id: int, now_ms: int) -> RateResult:
        """Account one incoming SNAC of ``class_id`` at ``now_ms`` and say whether
        to process it (ERRORS.md §3.1, NINA/Go).

        The moving average is updated for every SNAC, including ones that end up
        dropped: a client that keeps sending while limited sinks towards
        disconnect. The first SNAC ever seen counts as arriving after a long
        pause, so it leaves the level at max. A clock step backwards counts as
        a zero gap rather than a negative one.
        """
        s = self._states[class_id]
        last = s.last_ms
        if last is None:
            delta = s.max
        else:
            delta = now_ms - last
            if delta < 0:
                delta = 0
        current = (s.current * s.window_less_one + delta) // s.window
        if current > s.max:
            current = s.max
        s.current = current
        s.last_ms = now_ms
        previous = s.state
        # The order of these tests is the table of ERRORS.md §3.1.
        if current < s.disconnect:
            state = _DISCONNECT
        elif previous >= _LIMITED:
            state = _CLEAR if current >= s.clear else _LIMITED
        elif current < s.limit:
            state = _LIMITED
        elif current < s.alert:
            state = _ALERT
        else:
            state = _CLEAR
        if state is previous:
            return RateResult(state, state < _LIMITED, None, current)
        s.state = state
        return RateResult(state, state < _LIMITED, _NOTICE.get((previous, state)), current)

    def snapshot(self, class_id: int, now_ms: int) -> RateSnapshot:
        """The class's live values for a ``01,07`` or ``01,0A`` record.

        ``last_delta_ms`` is the time since the last SNAC of the class (0 if
        there was none, or the clock stepped back); ``dropping`` is True while
        the server drops the class's SNACs.
        """
        s = self._states[class_id]
        last = s.last_ms
        delta = 0 if last is None else max(now_ms - last, 0)
        return RateSnapshot(s.current, delta, s.state >= _LIMITED)

    def snapshots(self, now_ms: int) -> dict[int, RateSnapshot]:
        """:meth:`snapshot` of every class, keyed by ID, for
        :func:`pack_rate_params_reply`."""
        return {class_id: self.snapshot(class_id, now_ms) for class_id in self._states}

    def state(self, class_id: int) -> RateState:
        """The class's state after the last :meth:`check` (CLEAR initially)."""
        return self._states[class_id].state
