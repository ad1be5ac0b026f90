# -*- test-case-name: tests.test_service_privacy -*-
"""Who may see a user: its permit/deny settings, from its feedbag.

The feedbag's PD-info item (class 0x04, TLV 0x00CA: the mode) and its
permit and deny items (classes 0x02, 0x03) say who may see the user online,
reach it, warn it or look it up (FAMILIES.md, Feedbag). ``Presence.visible_to``
asks ``Privacy.allows``; a user with no PD-info item, or mode 1, and nobody
on its deny list allows everyone and has no ``Privacy`` at all, so the
common case costs nothing. A deny item blocks in mode 1 too: see
``privacy_of``.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from aimserver.store.interfaces import FeedbagItem
from aimserver.wire.errors import MalformedData
from aimserver.wire.screenname import normalize
from aimserver.wire.tlv import TlvList

CLASS_BUDDY = 0x0000
CLASS_PERMIT = 0x0002
CLASS_DENY = 0x0003
CLASS_PD_INFO = 0x0004
TAG_PD_MODE = 0x00CA

ALLOW_ALL = 1
BLOCK_ALL = 2
ALLOW_PERMITTED = 3
BLOCK_DENIED = 4
ALLOW_BUDDIES = 5


@attrs.frozen
class Privacy:
    """A user's permit/deny mode and the lists it uses."""

    mode: int
    permit: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()
    buddies: frozenset[str] = frozenset()

    def allows(self, viewer_key: str) -> bool:
        mode = self.mode
        if mode == BLOCK_ALL:
            return False
        if mode == ALLOW_PERMITTED:
            return viewer_key in self.permit
        if mode == BLOCK_DENIED:
            return viewer_key not in self.deny
        if mode == ALLOW_BUDDIES:
            return viewer_key in self.buddies
        return True


#: A user's settings while they are being read: nobody but itself sees it.
#: Its own sends are not refused meanwhile (whom it blocks is not known yet:
#: a send right after client-ready must not read as "you block them").
UNREAD = Privacy(BLOCK_ALL)


def pd_mode(item: FeedbagItem) -> int | None:
    """The mode a PD-info item's TLV 0x00CA says, if it says one."""
    try:
        value = TlvList.unpack_list(item.attributes, "PD info").get(TAG_PD_MODE)
    except MalformedData:
        return None
    return value[0] if value is not None and len(value) == 1 else None


def privacy_of(
    items: Iterable[FeedbagItem], buddies: frozenset[str] | None = None
) -> Privacy | None:
    """The settings a stored feedbag says, or None for "allow everyone"
    (no PD-info item, mode 1, or a mode this server does not know).
    ``buddies``: the list's buddy keys, when the caller has them already."""
    mode = ALLOW_ALL
    names: dict[int, set[str]] = {CLASS_PERMIT: set(), CLASS_DENY: set()}
    found_buddies: set[str] = set()
    for item in items:
        if item.class_id in names:
            names[item.class_id].add(normalize(item.name))
        elif item.class_id == CLASS_BUDDY:
            if buddies is None:
                found_buddies.add(normalize(item.name))
        elif item.class_id == CLASS_PD_INFO:
            mode = pd_mode(item) or mode
    if mode not in (BLOCK_ALL, ALLOW_PERMITTED, BLOCK_DENIED, ALLOW_BUDDIES):
        if not names[CLASS_DENY]:
            return None
        # "Allow all" with people on the deny list: libpurple's block (as
        # BitlBee drives it) adds the deny item and leaves the mode at 1, and
        # the user means to block them. AIM 5 kept a dormant block list under
        # "allow all"; here a deny item always blocks.
        mode = BLOCK_DENIED
    return Privacy(
        mode,
        frozenset(names[CLASS_PERMIT]),
        frozenset(names[CLASS_DENY]),
        frozenset(found_buddies) if buddies is None else buddies,
    )
