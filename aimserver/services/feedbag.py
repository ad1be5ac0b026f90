# -*- test-case-name: tests.test_service_feedbag -*-
"""Feedbag (0x0013): the server-stored buddy list.

The list is user-level and lives in the store. This module answers the
sign-on queries (rights, query, query-if-modified) and "use", after which the
stored buddy items govern the session's presence subscriptions, and the edits
(13,08 insert, 13,09 update, 13,0A delete, 13,11/13,12 clusters):

* every item is checked against the stored list (``plan_edit``) and gets its
  own 13,0E status, in order; the accepted items are written in one store
  call, so an edit is never half-written, and 13,0E goes out only once the
  store has committed it;
* one user's edits are applied one at a time, whichever session makes them;
* buddy items added or removed change the watch set of every session of the
  user that uses the list, with arrivals for buddies online now;
* every accepted edit, and the cluster bounds, are pushed to the user's other
  live sessions, those still signing on included (MULTISESSION.md §13).

The group order TLVs (0x00C8) are stored as the client sends them: clients
keep them in step with their items themselves (FAMILIES.md, Root group); the
list a client is given always has them consistent with the items
(:mod:`~aimserver.services.feedbag_order`).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from aimserver.registry import SessionInstance, User, UserRegistry
from aimserver.services.bart import BartService
from aimserver.services.base import HandlerTable, Replies, Reply, acting_user, then
from aimserver.services.events import FeedbagSynced
from aimserver.services.feedbag_order import consistent_orders
from aimserver.services.presence import Presence
from aimserver.services.privacy import (
    ALLOW_PERMITTED,
    BLOCK_DENIED,
    CLASS_BUDDY,
    CLASS_DENY,
    CLASS_PD_INFO,
    CLASS_PERMIT,
    TAG_PD_MODE,
    UNREAD,
    Privacy,
    pd_mode,
    privacy_of,
)
from aimserver.store.interfaces import Feedbag as StoredFeedbag
from aimserver.store.interfaces import (
    FeedbagItem,
    FeedbagSummary,
    IFeedbagStore,
    StoreError,
)
from aimserver.wire.codes import Feedbag, FoodGroup
from aimserver.wire.errors import MalformedData
from aimserver.wire.feedbag import (
    MAX_REPLY_PART,
    WireFeedbagItem,
    pack_item,
    pack_not_modified,
    pack_packed_reply_parts,
    pack_reply,
    read_items,
)
from aimserver.wire.reader import Reader
from aimserver.wire.screenname import is_valid_screen_name, normalize
from aimserver.wire.snac import FLAG_MORE_REPLIES, SnacHeader
from aimserver.wire.tlv import Tlv, TlvList

CLASS_GROUP = 0x0001
#: Classes whose item name is a screen name.
_NAMED_CLASSES = frozenset({CLASS_BUDDY, CLASS_PERMIT, CLASS_DENY})
#: 13,0E results (FAMILIES.md, Edits).
OK = 0x0000
NOT_FOUND = 0x0002
ALREADY_EXISTS = 0x0003
INVALID = 0x000A
CLASS_LIMIT = 0x000C
#: What 13,03 advertises (TLVs 0x0003 and 0x0006), enforced on every edit.
MAX_ITEM_ATTRIBUTES = 200
MAX_ITEM_NAME_LENGTH = 200
#: Bytes of names and attributes one list may hold in all. The class limits
#: bound the items (2,460), not their size, and a signed-on user's list is
#: kept about three times over (the 13,06 summary, the non-buddy items, every
#: item after an edit): at the store's 8 KiB an item that was ~50 MB a user
#: (bench/chaos/limits.py, "worst list"). Real lists hold ~100 B an item.
MAX_LIST_BYTES = 512 * 1024
#: Max items per class ID, indexed by class (13,03 TLV 0x0004): buddies,
#: groups, permits, denies, PD info, buddy prefs, non-buddies, client prefs,
#: ... generous where clients keep many, 1 where only one makes sense.
MAX_ITEMS_PER_CLASS = (
    1000,
    200,
    200,
    200,
    1,
    1,
    50,
    3,
    128,
    255,
    20,
    200,
    1,
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    200,
)


@functools.cache
def rights_reply() -> bytes:
    return TlvList(
        (
            Tlv.u16(0x0003, MAX_ITEM_ATTRIBUTES),
            Tlv(0x0004, struct.pack(f"!{len(MAX_ITEMS_PER_CLASS)}H", *MAX_ITEMS_PER_CLASS)),
            Tlv.u16(0x0005, 200),
            Tlv.u16(0x0006, MAX_ITEM_NAME_LENGTH),
        )
    ).pack_list()


def packed(items: Sequence[FeedbagItem]) -> list[bytes]:
    """Stored items in their wire form."""
    return [
        pack_item(i.name.encode("utf-8"), i.group_id, i.item_id, i.class_id, i.attributes)
        for i in items
    ]


def _item_error(item: WireFeedbagItem, user_key: str) -> tuple[int, FeedbagItem | None]:
    """The checks of one item on its own: ``(INVALID or CLASS_LIMIT, None)``,
    or ``(OK, the item as stored)``."""
    if item.class_id >= len(MAX_ITEMS_PER_CLASS):
        return INVALID, None
    if MAX_ITEMS_PER_CLASS[item.class_id] == 0:
        return CLASS_LIMIT, None
    try:
        name = item.name.decode("utf-8")
        attributes = TlvList.unpack_list(item.attributes, "item attributes")
    except (UnicodeDecodeError, MalformedData):
        return INVALID, None
    if len(item.name) > MAX_ITEM_NAME_LENGTH or len(attributes) > MAX_ITEM_ATTRIBUTES:
        return INVALID, None
    if item.class_id == CLASS_GROUP:
        # Groups have item ID 0; the root group (ID 0) has no name, others one.
        if item.item_id != 0 or (item.group_id == 0) != (name == ""):
            return INVALID, None
    elif item.item_id == 0 or (item.class_id == CLASS_BUDDY) != (item.group_id != 0):
        # Every other item has an item ID; buddies sit in a group, the rest in the root.
        return INVALID, None
    if item.class_id in _NAMED_CLASSES and not is_valid_screen_name(name):
        return INVALID, None
    if item.class_id == CLASS_DENY and normalize(name) == user_key:
        return INVALID, None
    stored = FeedbagItem(name, item.group_id, item.item_id, item.class_id, item.attributes)
    return OK, stored


def plan_edit(
    stored: StoredFeedbag, subtype: int, items: Sequence[WireFeedbagItem], user_key: str
) -> tuple[list[int], list[FeedbagItem]]:
    """What an edit does to ``stored``: one 13,0E result per item, in order,
    and the items to write (insert/update) or remove (delete). Each item is
    checked against the list as the items before it in the same SNAC leave
    it; a refused item changes nothing."""
    current = {i.key: i for i in stored.items}
    per_class: dict[int, int] = {}
    for existing in current.values():
        per_class[existing.class_id] = per_class.get(existing.class_id, 0) + 1
    size = sum(map(_size, current.values()))
    results: list[int] = []
    accepted: list[FeedbagItem] = []
    for wire in items:
        status, item = _item_error(wire, user_key)
        if item is None:
            results.append(status)
            continue
        before = current.get(item.key)
        if subtype == Feedbag.INSERT_ITEM and before is not None:
            status = ALREADY_EXISTS
        elif subtype != Feedbag.INSERT_ITEM and before is None:
            status = NOT_FOUND
        elif before is not None and before.class_id != item.class_id:
            status = INVALID
        elif subtype == Feedbag.DELETE_ITEM:
            status = _delete_error(current, item)
        else:
            status = _placement_error(current, item)
            if (
                status == OK
                and before is None
                and per_class.get(item.class_id, 0) >= MAX_ITEMS_PER_CLASS[item.class_id]
            ):
                status = CLASS_LIMIT
            grows = _size(item) - (_size(before) if before is not None else 0)
            if status == OK and grows > 0 and size + grows > MAX_LIST_BYTES:
                status = CLASS_LIMIT
        results.append(status)
        if status != OK:
            continue
        accepted.append(item)
        if subtype == Feedbag.DELETE_ITEM:
            assert before is not None
            size -= _size(before)
            del current[item.key]
            per_class[item.class_id] -= 1
        else:
            if before is None:
                per_class[item.class_id] = per_class.get(item.class_id, 0) + 1
            size += _size(item) - (_size(before) if before is not None else 0)
            current[item.key] = item
    return results, accepted


def _size(item: FeedbagItem) -> int:
    """What an item counts against :data:`MAX_LIST_BYTES`."""
    return len(item.name.encode("utf-8")) + len(item.attributes)


def _placement_error(current: dict[tuple[int, int], FeedbagItem], item: FeedbagItem) -> int:
    """A buddy needs its group, and a group holds a screen name once."""
    if item.class_id != CLASS_BUDDY:
        return OK
    group = current.get((item.group_id, 0))
    if group is None or group.class_id != CLASS_GROUP:
        return INVALID
    key = normalize(item.name)
    for other in current.values():
        if (
            other.class_id == CLASS_BUDDY
            and other.group_id == item.group_id
            and other.item_id != item.item_id
            and normalize(other.name) == key
        ):
            return INVALID
    return OK


def _delete_error(current: dict[tuple[int, int], FeedbagItem], item: FeedbagItem) -> int:
    """A group goes only once it is empty (the root once no other group is left)."""
    if item.class_id != CLASS_GROUP:
        return OK
    for other in current.values():
        if item.group_id == 0:
            if other.class_id == CLASS_GROUP and other.group_id != 0:
                return INVALID
        elif other.group_id == item.group_id and other.class_id != CLASS_GROUP:
            return INVALID
    return OK


def buddy_keys(items: Sequence[FeedbagItem]) -> set[str]:
    return {normalize(i.name) for i in items if i.class_id == CLASS_BUDDY}


def special_items(items: Sequence[FeedbagItem]) -> tuple[FeedbagItem, ...]:
    """The items that are neither buddy nor group: privacy settings, icon."""
    return tuple(i for i in items if i.class_id not in (CLASS_BUDDY, CLASS_GROUP))


def summary_of(feedbag: StoredFeedbag) -> FeedbagSummary:
    """What a sign-on needs of ``feedbag``: the items as served (group orders
    naming exactly the items), its buddies' keys, the other special items."""
    items = feedbag.items
    return FeedbagSummary(
        feedbag.last_modified,
        len(items),
        b"".join(packed(consistent_orders(items))),
        tuple(sorted(buddy_keys(items))),
        b"".join(packed(special_items(items))),
    )


def unpacked(data: bytes) -> tuple[FeedbagItem, ...]:
    """Items packed by :func:`packed` (stored by this server: valid UTF-8)."""
    return tuple(
        FeedbagItem(i.name.decode("utf-8"), i.group_id, i.item_id, i.class_id, i.attributes)
        for i in read_items(data, "stored feedbag summary")
    )


@attrs.frozen
class KeptList:
    """A signed-on user's list (``User.feedbag``), in the forms its sessions
    read, worked out once per version of the list. A sign-on is served from
    the summary alone (no object per item); ``feedbag``, every item, is read
    when an edit needs it."""

    summary: FeedbagSummary
    buddies: frozenset[str]
    #: :func:`special_items`, the privacy settings and the icon.
    special: tuple[FeedbagItem, ...]
    feedbag: StoredFeedbag | None = None

    @classmethod
    def of(cls, feedbag: StoredFeedbag) -> KeptList:
        summary = summary_of(feedbag)
        return cls(summary, frozenset(summary.buddies), special_items(feedbag.items), feedbag)

    @classmethod
    def from_summary(cls, summary: FeedbagSummary) -> KeptList:
        return cls(summary, frozenset(summary.buddies), unpacked(summary.special))


@attrs.frozen
class _Edit:
    subtype: int
    items: list[WireFeedbagItem]


class FeedbagService:
    log = Logger()

    def __init__(
        self,
        registry: UserRegistry,
        presence: Presence,
        store: IFeedbagStore,
        clock: IReactorTime,
        icons: BartService | None = None,
    ) -> None:
        self.registry = registry
        self.presence = presence
        self.store = store
        self.clock = clock
        #: Follows the BART item (the buddy icon) at sign-on and after edits.
        self.icons = icons
        #: The edit of each user that is being applied, so the next one of the
        #: same user (from any session) starts only after it: each is checked
        #: against the list the previous one left.
        self._editing: dict[str, defer.Deferred[object]] = {}

    # -- privacy -------------------------------------------------------------------------

    def session_attached(self, session: SessionInstance) -> defer.Deferred[None] | None:
        """The user's first session: read its permit/deny settings before it
        can come online (a later session finds them on the user)."""
        user = self.registry.user_of(session)
        if user is None or user.privacy_loaded:
            return None
        user.privacy_loaded = True
        # Closed until the settings are read: a client-ready that comes first
        # shows the user to nobody, rather than to someone it blocks.
        user.privacy = UNREAD

        def loaded(kept: KeptList) -> object:
            if user.feedbag is None:
                # (An edit committed meanwhile has set a newer one.)
                user.feedbag = kept
            kept = user.feedbag
            self._set_privacy(user, privacy_of(kept.special, kept.buddies))
            # The icon too is user-level and named by the list.
            return None if self.icons is None else self.icons.load(user, kept.special)

        def failed(failure: object) -> None:
            # Still closed; the next session of the user reads them again.
            user.privacy_loaded = False
            self.log.failure(
                "reading the privacy settings of {screen_name}",
                failure,
                screen_name=user.screen_name,
            )

        return self._read(user.screen_name).addCallbacks(loaded, failed)

    def _read(self, screen_name: str) -> defer.Deferred[KeptList]:
        """A list from the store: its summary, or (a list stored without one)
        every item, and then the summary is kept for the next sign-on."""

        def summarized(summary: FeedbagSummary | None) -> object:
            if summary is not None:
                try:
                    return KeptList.from_summary(summary)
                except (MalformedData, UnicodeDecodeError) as e:
                    # Damaged (it is only a copy): the items are the truth.
                    self.log.warn(
                        "the feedbag summary of {screen_name} is unreadable ({error});"
                        " reading the items",
                        screen_name=screen_name,
                        error=str(e),
                    )
            return self.store.get_feedbag(screen_name).addCallback(whole)

        def whole(feedbag: StoredFeedbag) -> KeptList:
            kept = KeptList.of(feedbag)
            if feedbag.last_modified:
                self.store.set_feedbag_summary(screen_name, kept.summary).addErrback(
                    self._summary_not_kept, screen_name
                )
            return kept

        return self.store.get_feedbag_summary(screen_name).addCallback(summarized)

    def _summary_not_kept(self, failure: object, screen_name: str) -> None:
        # Only a sign-on's shortcut: the next one reads every item again.
        self.log.info(
            "keeping the feedbag summary of {screen_name} failed: {error}",
            screen_name=screen_name,
            error=str(failure.value),  # type: ignore[attr-defined]
        )

    def _set_privacy(self, user: User, privacy: Privacy | None) -> None:
        before, user.privacy = user.privacy, privacy
        if before != privacy:
            self.presence.invalidate(user)
            self.presence.privacy_changed(user, before)

    def handlers(self) -> HandlerTable:
        f = FoodGroup.FEEDBAG
        return {
            (f, Feedbag.RIGHTS_QUERY): self.rights_query,
            (f, Feedbag.QUERY): self.query,
            (f, Feedbag.QUERY_IF_MODIFIED): self.query_if_modified,
            (f, Feedbag.USE): self.use,
            (f, Feedbag.INSERT_ITEM): self.edit,
            (f, Feedbag.UPDATE_ITEM): self.edit,
            (f, Feedbag.DELETE_ITEM): self.edit,
            (f, Feedbag.START_CLUSTER): self.cluster,
            (f, Feedbag.END_CLUSTER): self.cluster,
        }

    def rights_query(self, session: SessionInstance, request: SnacHeader, body: bytes) -> Replies:
        return [Reply(FoodGroup.FEEDBAG, Feedbag.RIGHTS_REPLY, rights_reply())]

    def _kept(self, user: User) -> defer.Deferred[KeptList]:
        """The user's list: its copy on the user, or the store's while that
        is not read yet."""
        if user.feedbag is not None:
            return defer.succeed(user.feedbag)
        return self._read(user.screen_name)

    def _kept_now(self, user_key: str, screen_name: str) -> defer.Deferred[KeptList]:
        """The whole list an edit starts from: the copy on the user signed on
        *now*, or the store's. Not the User the request came from: an edit
        queued behind others can start after that one's sessions are gone and
        the user is back as a new User, whose copy has the edits made since."""
        user = self.registry.by_key(user_key)
        kept = user.feedbag if user is not None else None
        if kept is not None and kept.feedbag is not None:
            return defer.succeed(kept)

        def whole(feedbag: StoredFeedbag) -> KeptList:
            full = KeptList.of(feedbag)
            current = self.registry.by_key(user_key)
            if current is not None and current.feedbag is kept:
                current.feedbag = full
            return full

        return self.store.get_feedbag(screen_name).addCallback(whole)

    def _committed(self, user_key: str, after: KeptList) -> None:
        """The list as the store now holds it, kept on the user if online."""
        user = self.registry.by_key(user_key)
        if user is not None:
            user.feedbag = after

    def _list_replies(self, kept: KeptList, screen_name: str) -> Replies | defer.Deferred[Replies]:
        """The 13,06 of a list: from its summary, in one part; a list too long
        for one is packed again from every item, in parts."""
        summary = kept.summary
        if len(summary.wire) <= MAX_REPLY_PART:
            body = pack_reply(summary.count, summary.wire, summary.last_modified)
            return [Reply(FoodGroup.FEEDBAG, Feedbag.REPLY, body)]
        if kept.feedbag is None:
            return self.store.get_feedbag(screen_name).addCallback(
                lambda feedbag: self._list_replies(KeptList.of(feedbag), screen_name)
            )
        parts = pack_packed_reply_parts(
            packed(consistent_orders(kept.feedbag.items)), summary.last_modified
        )
        return [
            Reply(
                FoodGroup.FEEDBAG,
                Feedbag.REPLY,
                part,
                FLAG_MORE_REPLIES if n < len(parts) - 1 else 0,
            )
            for n, part in enumerate(parts)
        ]

    def query(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> defer.Deferred[Replies]:
        user = acting_user(self.registry, session)
        return self._kept(user).addCallback(self._list_replies, user.screen_name)

    def query_if_modified(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> defer.Deferred[Replies]:
        """13,0F when the client's cached time and count both match, else the list."""
        reader = Reader(body, "feedbag query if modified")
        cached_time = reader.u32("last modified")
        cached_count = reader.u16("item count")

        user = acting_user(self.registry, session)

        def answer(kept: KeptList) -> Replies | defer.Deferred[Replies]:
            summary = kept.summary
            if summary.last_modified == cached_time and summary.count == cached_count:
                body = pack_not_modified(summary.last_modified, summary.count)
                return [Reply(FoodGroup.FEEDBAG, Feedbag.REPLY_NOT_MODIFIED, body)]
            return self._list_replies(kept, user.screen_name)

        return self._kept(user).addCallback(answer)

    def use(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> defer.Deferred[None]:
        """From now on the stored buddy items are this session's buddy list."""

        def activate(kept: KeptList) -> None:
            if session.closed:
                # Gone while the list was read: it must not re-enter the index.
                return
            session.uses_feedbag = True
            added = self.registry.watch(session, kept.buddies)
            self.presence.send_arrivals_to(session, added)

        return self._kept(acting_user(self.registry, session)).addCallback(activate)

    # -- edits ---------------------------------------------------------------------------

    def edit(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> defer.Deferred[Replies]:
        """13,08/13,09/13,0A: one 13,0E result per item, sent once the
        accepted items are committed; the other sessions get the edit."""
        user = acting_user(self.registry, session)
        edit = _Edit(request.subtype, read_items(body))
        return self._one_at_a_time(
            user.key, lambda: self._apply(session, user.key, user.screen_name, edit)
        )

    def _one_at_a_time(self, user_key: str, work: Callable[[], defer.Deferred[Any]]) -> Any:
        """Run ``work`` once the user's previous edit is done: each edit is
        checked against the list the one before it left."""
        previous = self._editing.get(user_key)
        if previous is None:
            d = work()
        else:
            waiting: defer.Deferred[Any] = defer.Deferred()
            previous.addBoth(lambda result: (work().chainDeferred(waiting), result)[1])
            d = waiting
        self._editing[user_key] = d

        def done(result: object) -> object:
            if self._editing.get(user_key) is d:
                del self._editing[user_key]
            return result

        return d.addBoth(done)

    def _apply(
        self, session: SessionInstance, user_key: str, screen_name: str, edit: _Edit
    ) -> defer.Deferred[Replies]:
        d = self._kept_now(user_key, screen_name)

        def write(kept: KeptList) -> defer.Deferred[Replies]:
            stored = kept.feedbag
            results, accepted = plan_edit(stored, edit.subtype, edit.items, user_key)
            if not accepted:
                return defer.succeed(self._status(results))
            now = int(self.clock.seconds())
            after = {i.key: i for i in stored.items}
            for item in accepted:
                if edit.subtype == Feedbag.DELETE_ITEM:
                    after.pop(item.key, None)
                else:
                    after[item.key] = item
            kept_after = kept_list(after.values(), now)
            if edit.subtype == Feedbag.DELETE_ITEM:
                written = self.store.delete_feedbag_items(
                    screen_name, [i.key for i in accepted], now, kept_after.summary
                )
            else:
                written = self.store.upsert_feedbag_items(
                    screen_name, accepted, now, kept_after.summary
                )

            def committed(_: object) -> Replies | defer.Deferred[Replies]:
                self._committed(user_key, kept_after)
                status = self._status(results)
                more = self._follow(
                    session, user_key, [(edit.subtype, accepted)], kept.buddies, kept_after
                )
                if isinstance(more, defer.Deferred):
                    # The edit is stored whatever the icon work does: the
                    # client must get its 13,0E, or it rolls the edit back.
                    more.addErrback(self._follow_failed, screen_name)
                return then(more, lambda more: status + more)

            def refused(failure: object) -> Replies:
                self._store_refused("feedbag edit", screen_name, failure)
                return self._status([INVALID] * len(results))

            return written.addCallbacks(committed, refused)

        return d.addCallback(write)

    @staticmethod
    def _status(results: list[int]) -> Replies:
        return [
            Reply(FoodGroup.FEEDBAG, Feedbag.STATUS, struct.pack(f"!{len(results)}H", *results))
        ]

    def _follow(
        self,
        origin: SessionInstance | None,
        user_key: str,
        pushes: list[tuple[int, list[FeedbagItem]]],
        before: frozenset[str],
        kept: KeptList,
    ) -> Replies | defer.Deferred[Replies]:
        """After a commit: the user's privacy, the watch sets of its sessions
        that use the list, the edits (``(subtype, items)``) pushed to its
        other live sessions (to all of them for a change the server made),
        and its buddy icon. Returns what else to answer ``origin`` (the 01,21
        of an icon it set)."""
        user = self.registry.by_key(user_key)
        if user is None:
            return []
        after_items = kept.feedbag.items
        self._set_privacy(user, privacy_of(after_items, kept.buddies))
        # The edit first: a client shows an arrival only for a buddy it
        # already has (libpurple drops the 03,0B of anyone else).
        for subtype, items in pushes:
            body = b"".join(packed(items))
            self._to_siblings(origin, user, FeedbagSynced(subtype, body))
        added, removed = kept.buddies - before, before - kept.buddies
        for session in user.live_instances():
            if session.uses_feedbag and (added or removed):
                self.registry.unwatch(session, removed)
                new = self.registry.watch(session, added)
                self.presence.send_arrivals_to(session, new)
        if self.icons is None:
            return []
        return self.icons.feedbag_changed(origin, user, pushes, after_items)

    def _follow_failed(self, failure: object, screen_name: str) -> Replies:
        self.log.failure("after a feedbag edit of {screen_name}", failure, screen_name=screen_name)
        return []

    def _to_siblings(
        self, origin: SessionInstance | None, user: object, event: FeedbagSynced
    ) -> None:
        siblings = [s for s in user.live_instances() if s is not origin]  # type: ignore[attr-defined]
        if siblings:
            self.registry.deliver(siblings, event)

    def cluster(self, session: SessionInstance, request: SnacHeader, body: bytes) -> None:
        """13,11/13,12: no answer; the other sessions get them too, so they
        batch the edits between them as the origin does."""
        user = acting_user(self.registry, session)
        self._to_siblings(session, user, FeedbagSynced(request.subtype, body))

    # -- the legacy permit/deny edits (09,05-09,08) -------------------------------------

    def legacy_list_edit(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> defer.Deferred[None]:
        """09,05/09,06 add/remove permits, 09,07/09,08 denies: AIM 3-4's way
        of editing the lists the feedbag holds (one model for both). An add
        also sets the mode it implies (3 allow only the permit list, 4 block
        only the deny list), as those clients expect. No reply; every session
        of the user, this one included, gets the change as feedbag edits."""
        user = acting_user(self.registry, session)
        reader = Reader(body, "permit/deny list")
        names: list[str] = []
        while not reader.at_end():
            name = reader.string08("screen name").decode("ascii", "replace")
            if is_valid_screen_name(name) and len(names) < MAX_LEGACY_NAMES:
                names.append(name)
        class_id = CLASS_PERMIT if request.subtype in (0x05, 0x06) else CLASS_DENY
        adding = request.subtype in (0x05, 0x07)
        return self._one_at_a_time(
            user.key,
            lambda: self._apply_legacy(user.key, user.screen_name, class_id, adding, names),
        )

    def _apply_legacy(
        self, user_key: str, screen_name: str, class_id: int, adding: bool, names: list[str]
    ) -> defer.Deferred[None]:
        def write(kept: KeptList) -> defer.Deferred[None] | None:
            stored = kept.feedbag
            listed = {normalize(i.name): i for i in stored.items if i.class_id == class_id}
            now = int(self.clock.seconds())
            if not adding:
                gone = [
                    listed[k] for k in dict.fromkeys(normalize(n) for n in names) if k in listed
                ]
                if not gone:
                    return None
                after = [i for i in stored.items if i not in gone]
                kept_after = kept_list(after, now)
                d = self.store.delete_feedbag_items(
                    screen_name, [i.key for i in gone], now, kept_after.summary
                )
                pushes = [(Feedbag.DELETE_ITEM, gone)]
            else:
                used = {i.item_id for i in stored.items if i.group_id == 0}
                room = MAX_ITEMS_PER_CLASS[class_id] - len(listed)
                new: list[FeedbagItem] = []
                for name in names:
                    key = normalize(name)
                    if key in listed or len(new) >= room:
                        continue
                    listed[key] = item = FeedbagItem(name, 0, _free_id(used), class_id, b"")
                    new.append(item)
                pd = next((i for i in stored.items if i.class_id == CLASS_PD_INFO), None)
                mode = ALLOW_PERMITTED if class_id == CLASS_PERMIT else BLOCK_DENIED
                pushes = [(Feedbag.INSERT_ITEM, new)] if new else []
                writes = list(new)
                if pd is None or pd_mode(pd) != mode:
                    pd_item = FeedbagItem(
                        "",
                        0,
                        pd.item_id if pd else _free_id(used),
                        CLASS_PD_INFO,
                        _with_mode(pd, mode),
                    )
                    writes.append(pd_item)
                    pushes.append((Feedbag.UPDATE_ITEM if pd else Feedbag.INSERT_ITEM, [pd_item]))
                if not writes:
                    return None
                replaced = {i.key for i in writes}
                after = [i for i in stored.items if i.key not in replaced] + writes
                kept_after = kept_list(after, now)
                d = self.store.upsert_feedbag_items(screen_name, writes, now, kept_after.summary)

            def committed(_: object) -> None:
                self._committed(user_key, kept_after)
                self._follow(None, user_key, pushes, kept.buddies, kept_after)

            return d.addCallback(committed)

        def failed(failure: object) -> None:
            self._store_refused("permit/deny edit", screen_name, failure)

        return self._kept_now(user_key, screen_name).addCallback(write).addErrback(failed)

    def _store_refused(self, what: str, screen_name: str, failure: object) -> None:
        """A store refusal (StoreError) of an edit: logged; anything else goes on."""
        failure.trap(StoreError)  # type: ignore[attr-defined]
        self.log.info(
            "{what} of {screen_name} refused by the store: {error}",
            what=what,
            screen_name=screen_name,
            error=str(failure.value),  # type: ignore[attr-defined]
        )


#: Names one 09,05-09,08 may carry (the 09,03 limits are 200 per list).
MAX_LEGACY_NAMES = 200


def _item_key(item: FeedbagItem) -> tuple[int, int]:
    return item.key


def kept_list(items: Iterable[FeedbagItem], now: int) -> KeptList:
    """The list an edit leaves, as the store will hold it."""
    return KeptList.of(StoredFeedbag(tuple(sorted(items, key=_item_key)), now))


def _free_id(used: set[int]) -> int:
    """An item id not in use in the root group (marked used)."""
    item_id = 1
    while item_id in used:
        item_id += 1
    used.add(item_id)
    return item_id


def _with_mode(item: FeedbagItem | None, mode: int) -> bytes:
    """A PD-info item's attributes with its mode set, the rest kept."""
    kept = b""
    if item is not None:
        try:
            kept = b"".join(
                t.pack()
                for t in TlvList.unpack_list(item.attributes, "PD info")
                if t.tag != TAG_PD_MODE
            )
        except MalformedData:
            kept = b""
    return Tlv(TAG_PD_MODE, bytes([mode])).pack() + kept
