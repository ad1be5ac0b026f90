# -*- test-case-name: tests.test_service_bart -*-
"""BART (0x0010): buddy icons, on a service connection (01,04 for 0x0010).

The icon is user-level (MULTISESSION.md §14): the feedbag's BART item
(class 0x0014, name "1", TLV 0x00D5 = flags and MD5) names it, and the
``User`` keeps it (``User.icon``) from the first session's sign-on (read with
the privacy settings, ``FeedbagService.session_attached``) and from every
edit of that item. Every session of the user and every watcher sees the same
one, in user-info TLV 0x001D.

* An edit that sets the item is answered with 01,21 to the editing session:
  flags 0x41 (custom | unknown) when the server lacks the data, and the
  client uploads it here; 0x01 when it has it.
* Others are shown an icon only once its data is here (``presence.shown_icon``);
  the user's own sessions are told of it at once, flagged unknown until then.
  Each change reaches the user's sessions as 01,0F and its watchers as an
  03,0B update.
* 10,02 stores the data once per MD5 (the store's ``IBartStore``); if that is
  the user's icon, it is now shown. 10,04 and 10,06 serve data by hash.
* The "no icon" hash (02 01 D2 04 72) is shown as it is (AOL's arrivals
  carried it for users without an icon) and downloads as a transparent GIF.
  Deleting the item after an icon was shown shows that hash, so watchers'
  clients drop the old icon (libpurple removes its icon by deleting the item).

Privacy: a download is answered by hash alone. The owner's name is echoed,
never looked up, so the answer says nothing about the named user (not even
whether it blocks the requester), and a user it blocks never learns the hash
of its icon, which only presence shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from aimserver.registry import SessionInstance, User, UserRegistry
from aimserver.services.base import HandlerTable, Replies, Reply, SnacError, acting_user, then
from aimserver.services.presence import Presence, shown_icon
from aimserver.store.interfaces import MAX_BART_ITEM_BYTES, FeedbagItem, IBartStore, StoreError
from aimserver.wire.bart import (
    BLANK_ICON,
    CLEAR_ICON_HASH,
    FLAG_CUSTOM,
    FLAG_UNKNOWN,
    TYPE_BUDDY_ICON,
    TYPE_SMALL_BUDDY_ICON,
    BartId,
    BartInfo,
    Download,
    Download2,
    Download2Reply,
    DownloadReply,
    Upload,
    UploadReply,
)
from aimserver.wire.codes import Bart, BartReplyCode, Feedbag, FoodGroup, OService, SnacErrorCode
from aimserver.wire.errors import MalformedData
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import TlvList

#: What a BART service connection serves (its 01,03).
FAMILIES = (FoodGroup.OSERVICE, FoodGroup.BART)
#: The feedbag item that names the icon: class, name (the BART type), TLV.
CLASS_BART = 0x0014
ICON_ITEM_NAME = str(TYPE_BUDDY_ICON)
TAG_BART_INFO = 0x00D5
#: What 10,02 accepts: the two buddy icons, up to the store's bound (16 KiB,
#: twice what AOL's clients and libpurple allow an icon).
ICON_TYPES = frozenset({TYPE_SMALL_BUDDY_ICON, TYPE_BUDDY_ICON})
MAX_ICON_BYTES = MAX_BART_ITEM_BYTES
#: IDs one 10,06 may ask for: one reply each, so at most 8 x 16 KiB queued
#: for one request. Clients ask for one (libpurple) or a few types of one user.
MAX_DOWNLOAD2_IDS = 8
#: What the user shows once it deletes the item of an icon it showed.
CLEARED = BartId(TYPE_BUDDY_ICON, 0, CLEAR_ICON_HASH)


def is_icon_item(item: FeedbagItem) -> bool:
    return item.class_id == CLASS_BART and item.name == ICON_ITEM_NAME


def item_icon(item: FeedbagItem) -> BartId | None:
    """The icon one BART item names: its TLV 0x00D5, if that parses and has a hash."""
    try:
        value = TlvList.unpack_list(item.attributes, "BART item").get(TAG_BART_INFO)
        info = None if value is None else BartInfo.unpack(value)
    except MalformedData:
        return None
    if info is None or not info.hash:
        return None
    return BartId(TYPE_BUDDY_ICON, info.flags, info.hash)


def icon_of(items: Iterable[FeedbagItem]) -> BartId | None:
    """The icon a feedbag names: its first usable BART item "1" by (group ID,
    item ID), whatever order ``items`` are in."""
    for item in sorted((i for i in items if is_icon_item(i)), key=lambda i: i.key):
        icon = item_icon(item)
        if icon is not None:
            return icon
    return None


def flagged(icon: BartId, known: bool) -> BartId:
    """``icon`` with the flags the server gives it: custom, and unknown while
    its data is not here; the "no icon" hash is a known, non-custom item."""
    if icon.hash == CLEAR_ICON_HASH:
        return BartId(icon.type, 0, icon.hash)
    return BartId(icon.type, FLAG_CUSTOM | (0 if known else FLAG_UNKNOWN), icon.hash)


class BartService:
    log = Logger()

    def __init__(
        self,
        registry: UserRegistry,
        presence: Presence,
        store: IBartStore,
        clock: IReactorTime,
    ) -> None:
        self.registry = registry
        self.presence = presence
        self.store = store
        self.clock = clock
        #: The icon being looked up for each user (a token, the icon): the
        #: latest lookup wins, whichever store answer comes back last.
        self._resolving: dict[str, tuple[object, BartId | None]] = {}

    def handlers(self) -> HandlerTable:
        f = FoodGroup.BART
        return {
            (f, Bart.UPLOAD): self.upload,
            (f, Bart.DOWNLOAD): self.download,
            (f, Bart.DOWNLOAD2): self.download2,
        }

    # -- the user's icon -----------------------------------------------------------------

    def load(self, user: User, items: Sequence[FeedbagItem]) -> Any:
        """The user's first session signed on and its feedbag was read: the
        icon it names. Only sessions already online get a 01,0F for it: one
        still signing on asks for its self info (01,0E) itself, and a push
        could come before its 01,03 or in the middle of its sign-on."""
        return self._resolve(user, icon_of(items), User.online_instances)

    def feedbag_changed(
        self,
        origin: SessionInstance | None,
        user: User,
        pushes: Sequence[tuple[int, Sequence[FeedbagItem]]],
        after: Sequence[FeedbagItem],
    ) -> Replies | defer.Deferred[Replies]:
        """After a committed edit (``pushes``: ``(subtype, items)``) that left
        the list ``after``: follow the icon item, and answer an edit that set
        it with 01,21 (to ``origin``, the session that made it)."""
        if not any(is_icon_item(i) for _, items in pushes for i in items):
            return []
        set_icons = [
            item_icon(i)
            for subtype, items in pushes
            if subtype != Feedbag.DELETE_ITEM
            for i in items
            if is_icon_item(i)
        ]
        wanted = icon_of(after)
        showing = shown_icon(user)
        if wanted is None and showing is not None and showing.hash != CLEAR_ICON_HASH:
            wanted = CLEARED
        resolved = self._resolve(user, wanted, User.live_instances)
        asked = set_icons[-1] if origin is not None and set_icons else None
        if asked is None:
            return then(resolved, lambda _: [])

        def answer(icon: BartId | None) -> Replies | defer.Deferred[Replies]:
            if icon is not None and icon.hash == asked.hash:
                return [_bart_reply(icon)]
            return then(self._known(asked.hash), lambda known: [_bart_reply(flagged(asked, known))])

        return then(resolved, answer)

    def _resolve(
        self,
        user: User,
        wanted: BartId | None,
        told: Callable[[User], list[SessionInstance]],
    ) -> Any:
        """Make ``wanted`` the user's icon once the store says whether it has
        the data (``told(user)``: the sessions to give their self info); the
        icon as set (or a Deferred of it)."""
        token = object()
        self._resolving[user.key] = (token, wanted)

        def settle(known: bool) -> BartId | None:
            icon = None if wanted is None else flagged(wanted, known)
            pending = self._resolving.get(user.key)
            if pending is not None and pending[0] is token:
                del self._resolving[user.key]
                self.set_icon(user, icon, told(user))
            return icon

        if wanted is None:
            return settle(True)
        return then(self._known(wanted.hash), settle)

    def _known(self, digest: bytes) -> bool | defer.Deferred[bool]:
        """Whether the server has the data of ``digest`` (a store failure
        counts as no: the client uploads it again)."""
        if digest == CLEAR_ICON_HASH:
            return True

        def failed(failure: Any) -> bool:
            self.log.failure("looking up BART item {digest}", failure, digest=digest.hex())
            return False

        return self.store.has_bart_item(digest).addErrback(failed)

    def set_icon(
        self, user: User, icon: BartId | None, told: Iterable[SessionInstance] | None = None
    ) -> None:
        """The user's icon is now ``icon``: its sessions (``told``; every live
        one by default) get their self info again, watchers an update if what
        they see changed."""
        if user.icon == icon:
            return
        user.icon = icon
        self.presence.invalidate(user)
        self.presence.send_self_info(user, told)
        self.presence.announce(user)

    # -- requests ------------------------------------------------------------------------

    def upload(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies | defer.Deferred[Replies]:
        """10,02 -> 10,03: keep the data (once per MD5); if it is the user's
        icon, the user's sessions and watchers see it now."""
        user = acting_user(self.registry, session)
        upload = Upload.unpack(body)
        if upload.type not in ICON_TYPES:
            return self._upload_refused(user, upload, BartReplyCode.INVALID_TYPE)
        if not upload.data:
            return self._upload_refused(user, upload, BartReplyCode.TOO_SMALL)
        if len(upload.data) > MAX_ICON_BYTES:
            return self._upload_refused(user, upload, BartReplyCode.TOO_BIG)
        refused = BartId(upload.type, 0, b"")

        def stored(digest: bytes) -> Replies:
            self._uploaded(user.key, digest)
            return [_upload_reply(BartReplyCode.SUCCESS, BartId(upload.type, FLAG_CUSTOM, digest))]

        def failed(failure: Any) -> Replies:
            failure.trap(StoreError)
            self.log.info(
                "BART upload of {screen_name} refused by the store: {error}",
                screen_name=user.screen_name,
                error=str(failure.value),
            )
            return [_upload_reply(BartReplyCode.INVALID, refused)]

        now = int(self.clock.seconds())
        return self.store.add_bart_item(
            user.screen_name, upload.data, now, upload.type
        ).addCallbacks(stored, failed)

    def _upload_refused(self, user: User, upload: Upload, code: int) -> Replies:
        self.log.info(
            "BART upload of {screen_name} refused ({code:#06x}): type {type:#06x}, {length} bytes",
            screen_name=user.screen_name,
            code=code,
            type=upload.type,
            length=len(upload.data),
        )
        return [_upload_reply(code, BartId(upload.type, 0, b""))]

    def _uploaded(self, user_key: str, digest: bytes) -> None:
        """The data of ``digest`` is here: the user's icon, or the one being
        looked up for it, is known now."""
        user = self.registry.by_key(user_key)
        if user is None:
            return
        pending = self._resolving.get(user_key)
        if pending is not None and pending[1] is not None and pending[1].hash == digest:
            del self._resolving[user_key]
            self.set_icon(user, flagged(pending[1], True))
        elif user.icon is not None and user.icon.hash == digest:
            self.set_icon(user, flagged(user.icon, True))

    def download(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies | defer.Deferred[Replies]:
        """10,04 -> 10,05: the data of the ID asked for (empty when unknown)."""
        acting_user(self.registry, session)
        asked = Download.unpack(body)

        def reply(data: bytes | None) -> Replies:
            packed = DownloadReply(asked.screen_name, asked.id, data or b"").pack()
            return [Reply(FoodGroup.BART, Bart.DOWNLOAD_REPLY, packed)]

        return then(self._data(asked.id), reply)

    def download2(
        self, session: SessionInstance, request: SnacHeader, body: bytes
    ) -> Replies | defer.Deferred[Replies]:
        """10,06 -> one 10,07 per ID asked for, in order: code 0 and the
        data, or code 7 (not found) and none. 1 to ``MAX_DOWNLOAD2_IDS`` IDs."""
        user = acting_user(self.registry, session)
        asked = Download2.unpack(body)
        if not 1 <= len(asked.ids) <= MAX_DOWNLOAD2_IDS:
            self.log.info(
                "BART download of {screen_name} refused: {count} IDs, not 1 to {limit}",
                screen_name=user.screen_name,
                count=len(asked.ids),
                limit=MAX_DOWNLOAD2_IDS,
            )
            raise SnacError(SnacErrorCode.BUSTED_SNAC_PAYLOAD)

        def replies(found: Sequence[bytes | None]) -> Replies:
            return [
                Reply(
                    FoodGroup.BART,
                    Bart.DOWNLOAD2_REPLY,
                    Download2Reply(
                        asked.screen_name,
                        bart_id,
                        BartReplyCode.NOT_FOUND if data is None else BartReplyCode.SUCCESS,
                        bart_id,
                        data or b"",
                    ).pack(),
                )
                for bart_id, data in zip(asked.ids, found, strict=True)
            ]

        lookups = [self._data(i) for i in asked.ids]
        if not any(isinstance(d, defer.Deferred) for d in lookups):
            return replies(lookups)  # type: ignore[arg-type]
        waits = [d if isinstance(d, defer.Deferred) else defer.succeed(d) for d in lookups]
        return defer.gatherResults(waits).addCallback(replies)

    def _data(self, bart_id: BartId) -> bytes | None | defer.Deferred[bytes | None]:
        """The data of an ID: the blank image for "no icon", else the stored
        item with its hash (None if there is none, or the store fails)."""
        if bart_id.hash == CLEAR_ICON_HASH and bart_id.type in ICON_TYPES:
            return BLANK_ICON
        if not bart_id.hash:
            return None

        def failed(failure: Any) -> None:
            failure.trap(StoreError)
            self.log.info(
                "reading BART item {digest}: {error}",
                digest=bart_id.hash.hex(),
                error=str(failure.value),
            )

        return self.store.get_bart_item(bart_id.hash).addErrback(failed)


def _bart_reply(icon: BartId) -> Reply:
    return Reply(FoodGroup.OSERVICE, OService.BART_REPLY, icon.pack())


def _upload_reply(code: int, bart_id: BartId) -> Reply:
    return Reply(FoodGroup.BART, Bart.UPLOAD_REPLY, UploadReply(code, bart_id).pack())
