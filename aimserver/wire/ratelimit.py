# -*- test-case-name: tests.test_ratelimit -*-
"""Rate limits on the wire: the rate-class record of ``01,07`` and ``01,0A``
and the codes that open a ``01,0A`` (SIGNON.md §3, ERRORS.md §3). The
limiter that decides them is ``aimserver.services.ratelimit``.

These run once per connection or per state change and favour clarity.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from enum import IntEnum
from typing import NamedTuple

import attrs

__all__ = [
    "RateChange",
    "RateClass",
    "RateSnapshot",
    "pack_rate_change",
    "pack_rate_params_reply",
    "pack_rate_record",
    "wants_extended_rate_records",
]

_U16 = struct.Struct("!H")
_U16_PAIR = struct.Struct("!HH")
# class ID, window, clear, alert, limit, disconnect, current, max (SIGNON.md §3.2)
_RECORD = struct.Struct("!HIIIIIII")
# the two trailing fields newer clients expect: last-arrival delta, dropping flag
_RECORD_TAIL = struct.Struct("!IB")
_U32_MAX = 0xFFFFFFFF


@attrs.frozen
class RateClass:
    """The fixed parameters of one rate class, as sent in ``01,07``/``01,0A``.

    Levels are average milliseconds between SNACs of the class: higher is
    better. ``max`` caps the average and is also its starting value.
    """

    class_id: int
    window: int
    clear: int
    alert: int
    limit: int
    disconnect: int
    max: int

    def __attrs_post_init__(self) -> None:
        # A table that breaks these orderings would make check() skip states
        # (e.g. never warn) or divide by zero, so refuse it where it is built.
        if not 0 <= self.class_id <= 0xFFFF:
            raise ValueError(f"rate class ID {self.class_id} is not a u16")
        if not 1 <= self.window <= _U32_MAX:
            raise ValueError(f"rate class {self.class_id}: window {self.window} must be >= 1")
        if not 0 <= self.disconnect < self.limit < self.alert < self.clear <= self.max <= _U32_MAX:
            raise ValueError(
                f"rate class {self.class_id}: levels must satisfy"
                " disconnect < limit < alert < clear <= max"
            )


class RateChange(IntEnum):
    """The code that opens a ``01,0A`` body (ERRORS.md §3.2)."""

    PARAMS_CHANGED = 1
    WARNING = 2
    LIMITED = 3
    CLEARED = 4


class RateSnapshot(NamedTuple):
    """A class's live values for the record of ``01,07``/``01,0A``."""

    current: int
    last_delta_ms: int
    dropping: bool


def wants_extended_rate_records(oservice_version: int | None) -> bool:
    """Whether rate records carry the trailing last-time and dropping fields.

    SIGNON.md §3.2 recommends them for OService version 3 and up (libpurple
    reads them from 3 on). ``None`` means the client never sent ``01,17``
    (aimpyfly): treat it as version 1, i.e. the short records.
    """
    return oservice_version is not None and oservice_version >= 3


def pack_rate_record(
    rate_class: RateClass,
    current: int,
    last_delta_ms: int,
    dropping: bool,
    *,
    extended: bool,
) -> bytes:
    """One rate-class record, the unit shared by ``01,07`` and ``01,0A``.

    ``last_delta_ms`` is clamped into a u32 because a user idle for 50 days
    must not turn into a packing error.
    """
    record = _RECORD.pack(
        rate_class.class_id,
        rate_class.window,
        rate_class.clear,
        rate_class.alert,
        rate_class.limit,
        rate_class.disconnect,
        current,
        rate_class.max,
    )
    if extended:
        record += _RECORD_TAIL.pack(min(max(last_delta_ms, 0), _U32_MAX), 1 if dropping else 0)
    return record


def pack_rate_params_reply(
    classes: Sequence[RateClass],
    members: Mapping[int, Iterable[tuple[int, int]]],
    *,
    extended: bool,
    snapshots: Mapping[int, RateSnapshot] | None = None,
) -> bytes:
    """The ``01,07`` body: class count, one record per class, then per class its
    ID, pair count and (family, subtype) pairs (SIGNON.md §3.1).

    Rate state is per user, so a second session of a user who is already
    sending should see the live levels: pass ``snapshots`` (class ID →
    :meth:`RateLimiter.snapshot`). Classes missing from it are reported fresh
    (current = max, no last SNAC, not dropping).

    :raises ValueError: ``members`` names a class that is not in ``classes``.
    """
    known = {c.class_id for c in classes}
    stray = set(members) - known
    if stray:
        raise ValueError(f"members given for unknown rate classes {sorted(stray)}")
    snapshots = snapshots or {}
    parts = [_U16.pack(len(classes))]
    for rate_class in classes:
        snap = snapshots.get(rate_class.class_id)
        if snap is None:
            snap = RateSnapshot(rate_class.max, 0, False)
        parts.append(pack_rate_record(rate_class, *snap, extended=extended))
    for rate_class in classes:
        pairs = tuple(members.get(rate_class.class_id, ()))
        parts.append(_U16_PAIR.pack(rate_class.class_id, len(pairs)))
        parts.extend(_U16_PAIR.pack(family, subtype) for family, subtype in pairs)
    return b"".join(parts)


def pack_rate_change(
    code: RateChange,
    rate_class: RateClass,
    current: int,
    last_delta_ms: int,
    dropping: bool,
    *,
    extended: bool,
) -> bytes:
    """The ``01,0A`` body (without any 0x8000 family-version prefix): u16 code
    then the class's record with its live values (ERRORS.md §3.2)."""
    return _U16.pack(code) + pack_rate_record(
        rate_class, current, last_delta_ms, dropping, extended=extended
    )
