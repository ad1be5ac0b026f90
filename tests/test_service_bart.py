"""The BART service (0x0010) and the buddy icon a user shows: set through the
feedbag's BART item (01,21 says whether to upload), uploaded (10,02),
downloaded (10,04, 10,06), and shown in user-info TLV 0x001D to the user's
sessions and its watchers, user-level (MULTISESSION.md §14). Deterministic:
a memory store (or one whose lookups wait), a Clock, fake connections."""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.logger import capturedLogs, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.bart import (
    CLEARED,
    MAX_DOWNLOAD2_IDS,
    MAX_ICON_BYTES,
    BartService,
    icon_of,
)
from aimserver.services.base import SnacError
from aimserver.services.feedbag import FeedbagService
from aimserver.store.interfaces import FeedbagItem, StoreError
from aimserver.store.memory import MemoryUserStore
from aimserver.wire.bart import (
    BLANK_ICON,
    CLEAR_ICON_HASH,
    BartId,
    BartInfo,
    Download,
    Download2,
    Download2Reply,
    DownloadReply,
    Upload,
    UploadReply,
)
from aimserver.wire.codes import Bart, BartReplyCode, FoodGroup, SnacErrorCode
from aimserver.wire.errors import MalformedData
from aimserver.wire.feedbag import WireFeedbagItem
from aimserver.wire.tlv import Tlv
from aimserver.wire.userinfo import TAG_BART_INFO, UserInfo
from tests.fakes import result_of
from tests.fakes_services import FakeConnection, ServiceWorld
from tests.strategies import fuzz

ICON = b"GIF89a Alice's icon"
MD5 = hashlib.md5(ICON).digest()
OTHER = b"GIF89a another icon"
OTHER_MD5 = hashlib.md5(OTHER).digest()
INSERT, UPDATE, DELETE = 0x08, 0x09, 0x0A
bart_ids = st.builds(
    BartId,
    st.integers(0, 2),
    st.integers(0, 0xFF),
    st.one_of(st.just(MD5), st.just(CLEAR_ICON_HASH), st.binary(max_size=20)),
)
ROOT = WireFeedbagItem(b"", 0, 0, 1)


def icon_item(digest: bytes, flags: int = 0x01, item_id: int = 0x5555) -> WireFeedbagItem:
    """The BART item as libpurple sends it (FAMILIES.md 13,08 example)."""
    attributes = Tlv(0x00D5, BartInfo(flags, digest).pack()).pack() + Tlv(0x0131, b"").pack()
    return WireFeedbagItem(b"1", 0, item_id, 0x0014, attributes)


def stored(item: WireFeedbagItem) -> FeedbagItem:
    return FeedbagItem(
        item.name.decode(), item.group_id, item.item_id, item.class_id, item.attributes
    )


def shown(info: UserInfo) -> BartId | None:
    value = info.tlvs.get(TAG_BART_INFO)
    return None if value is None else BartId.unpack(value)


def self_infos(connection: FakeConnection) -> list[UserInfo]:
    return [UserInfo.unpack(s.body) for s in connection.snacs(0x01, 0x0F)]


class HeldLookups(MemoryUserStore):
    """A memory store whose ``has_bart_item`` answers only on ``release``
    while ``hold`` is set (a slow database)."""

    def __init__(self, clock: Any) -> None:
        super().__init__(clock)
        self.hold = False
        self.held: list[tuple[defer.Deferred[bool], bytes]] = []

    def has_bart_item(self, digest: bytes) -> defer.Deferred[bool]:
        if not self.hold:
            return super().has_bart_item(digest)
        d: defer.Deferred[bool] = defer.Deferred()
        self.held.append((d, digest))
        return d

    def release(self, index: int = 0) -> None:
        d, digest = self.held.pop(index)
        super().has_bart_item(digest).chainDeferred(d)


class BartWorld(ServiceWorld):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.bart = BartService(self.registry, self.presence, self.store, self.clock)
        self.feedbag = FeedbagService(
            self.registry, self.presence, self.store, self.clock, icons=self.bart
        )
        self.sessions.observe(self.feedbag)

    def edit(self, session: Any, subtype: int, *items: WireFeedbagItem) -> Any:
        body = b"".join(i.pack() for i in items)
        return self.call(self.feedbag.edit, session, FoodGroup.FEEDBAG, subtype, body)

    def upload(self, session: Any, data: bytes, type_: int = 1) -> Any:
        body = Upload(type_, data).pack()
        return self.call(self.bart.upload, session, FoodGroup.BART, Bart.UPLOAD, body)

    def download(self, session: Any, owner: bytes, bart_id: BartId) -> DownloadReply:
        body = Download(owner, bart_id).pack()
        replies = settled(
            self.call(self.bart.download, session, FoodGroup.BART, Bart.DOWNLOAD, body)
        )
        [reply] = replies
        self.expect(reply, 0x10, 0x05)
        return DownloadReply.unpack(reply.body)

    def download2(self, session: Any, owner: bytes, *ids: BartId) -> list[Download2Reply]:
        body = Download2(owner, ids).pack()
        replies = settled(
            self.call(self.bart.download2, session, FoodGroup.BART, Bart.DOWNLOAD2, body)
        )
        for reply in replies:
            self.expect(reply, 0x10, 0x07)
        return [Download2Reply.unpack(r.body) for r in replies]

    @staticmethod
    def expect(reply: Any, family: int, subtype: int) -> None:
        assert (reply.family, reply.subtype) == (family, subtype), reply


def settled(result: Any) -> Any:
    """A handler's answer, given at once or by a fired Deferred."""
    return result_of(result) if isinstance(result, defer.Deferred) else result


def upload_reply(replies: Any) -> UploadReply:
    [reply] = settled(replies)
    BartWorld.expect(reply, 0x10, 0x03)
    return UploadReply.unpack(reply.body)


def bart_reply(replies: Any) -> BartId:
    """The 01,21 after the 13,0E of an edit."""
    status, reply = replies
    BartWorld.expect(status, 0x13, 0x0E)
    BartWorld.expect(reply, 0x01, 0x21)
    return BartId.unpack(reply.body)


class IconOfTests(SynchronousTestCase):
    """Which icon a feedbag names."""

    def test_the_bart_item_named_1(self) -> None:
        self.assertEqual(icon_of([stored(icon_item(MD5))]), BartId(1, 1, MD5))
        self.assertIsNone(icon_of([]))
        self.assertIsNone(icon_of([stored(ROOT)]))

    def test_unusable_items_name_nothing(self) -> None:
        """Another name or class, no TLV 0xD5, a malformed one, an empty
        hash: no icon (the feedbag keeps them as sent)."""
        usable = icon_item(MD5)
        for item in (
            WireFeedbagItem(b"0", 0, 1, 0x14, usable.attributes),
            WireFeedbagItem(b"1", 0, 1, 0x13, usable.attributes),
            WireFeedbagItem(b"1", 0, 1, 0x14, b""),
            WireFeedbagItem(b"1", 0, 1, 0x14, Tlv(0x00D5, b"\x01\x10abc").pack()),
            WireFeedbagItem(b"1", 0, 1, 0x14, b"\x00\xd5\x00"),
            icon_item(b""),
        ):
            self.assertIsNone(icon_of([stored(item)]), item)

    def test_first_usable_by_item_id(self) -> None:
        """Several "1" items: the first usable one by (group, item) ID, in
        whatever order they come."""
        items = [
            stored(icon_item(OTHER_MD5, item_id=9)),
            stored(icon_item(b"", item_id=1)),
            stored(icon_item(MD5, item_id=5)),
        ]
        self.assertEqual(icon_of(items), BartId(1, 1, MD5))


class IconFlowTests(SynchronousTestCase):
    """Alice (two sessions) sets her icon; Bob watches her."""

    def setUp(self) -> None:
        self.world = BartWorld()
        self.bob, self.bob_conn = self.world.sign_on("Bob", buddies=["Alice"])
        self.alice1, self.conn1 = self.world.sign_on("Alice")
        self.alice2, self.conn2 = self.world.sign_on("Alice")
        settled(self.world.edit(self.alice1, INSERT, ROOT))
        for connection in (self.bob_conn, self.conn1, self.conn2):
            connection.clear()
        self.user = self.world.registry.get("alice")

    def test_unknown_icon_asks_for_an_upload_and_is_not_shown(self) -> None:
        """An icon the server lacks: 01,21 flags 0x41 to the editing session
        only; Alice's sessions see it flagged unknown; Bob is shown nothing."""
        replies = settled(self.world.edit(self.alice1, INSERT, icon_item(MD5)))
        self.assertEqual(bart_reply(replies), BartId(1, 0x41, MD5))
        self.assertEqual(self.user.icon, BartId(1, 0x41, MD5))
        for connection in (self.conn1, self.conn2):
            [info] = self_infos(connection)
            self.assertEqual(shown(info), BartId(1, 0x41, MD5))
        self.assertEqual(self.conn2.snacs(0x01, 0x21), [])
        self.assertEqual(self.bob_conn.arrivals(), [])
        self.assertIsNone(shown(self.world.presence.user_info(self.user)))

    def test_upload_shows_it_to_everyone(self) -> None:
        """10,03 code 0 with the MD5; then Alice's sessions get 01,0F and Bob
        an 03,0B, both with the icon (flags 0x01)."""
        settled(self.world.edit(self.alice1, INSERT, icon_item(MD5)))
        self.conn1.clear()
        self.conn2.clear()
        reply = upload_reply(settled(self.world.upload(self.alice1, ICON)))
        self.assertEqual(reply, UploadReply(BartReplyCode.SUCCESS, BartId(1, 0x01, MD5)))
        for connection in (self.conn1, self.conn2):
            [info] = self_infos(connection)
            self.assertEqual(shown(info), BartId(1, 0x01, MD5))
        [arrival] = self.bob_conn.arrivals()
        self.assertEqual(shown(arrival), BartId(1, 0x01, MD5))
        self.assertEqual(result_of(self.world.store.get_bart_item(MD5)), ICON)

    def test_self_info_through_presence(self) -> None:
        """The sessions' 01,0F is Presence.send_self_info's: every live one
        of the user on an upload."""
        told: list[tuple[str, Any]] = []
        presence = self.world.presence
        real = presence.send_self_info

        def recording(user: Any, sessions: Any = None) -> None:
            told.append((user.key, sessions))
            real(user, sessions)

        presence.send_self_info = recording  # type: ignore[method-assign]
        settled(self.world.edit(self.alice1, INSERT, icon_item(MD5)))
        settled(self.world.upload(self.alice1, ICON))
        self.assertEqual([key for key, _ in told], ["alice", "alice"])
        self.assertIsNone(told[-1][1])
        self.assertEqual(len(self_infos(self.conn2)), 2)

    def test_known_icon_shown_at_once(self) -> None:
        """An icon the server has: 01,21 flags 0x01, and Bob sees it at once."""
        upload_reply(settled(self.world.upload(self.alice2, ICON)))
        self.assertEqual(self.bob_conn.arrivals(), [])
        replies = settled(self.world.edit(self.alice1, INSERT, icon_item(MD5)))
        self.assertEqual(bart_reply(replies), BartId(1, 0x01, MD5))
        [arrival] = self.bob_conn.arrivals()
        self.assertEqual(shown(arrival), BartId(1, 0x01, MD5))

    def test_same_icon_in_every_self_info_and_lookup(self) -> None:
        """User-level: each session's own 01,0E and a 02,06 of Alice show the
        same icon."""
        settled(self.world.upload(self.alice1, ICON))
        settled(self.world.edit(self.alice2, INSERT, icon_item(MD5)))
        for session in (self.alice1, self.alice2):
            [reply] = self.world.call(self.world.oservice.user_info_query, session, 1, 0x0E)
            self.assertEqual(shown(UserInfo.unpack(reply.body)), BartId(1, 1, MD5))
        self.assertEqual(shown(self.world.presence.user_info(self.user)), BartId(1, 1, MD5))

    def test_update_to_another_icon_and_back(self) -> None:
        """13,09 of the item: the new icon, asked for again if unknown; Bob's
        last update shows whatever is shown now."""
        settled(self.world.upload(self.alice1, ICON))
        settled(self.world.edit(self.alice1, INSERT, icon_item(MD5)))
        replies = settled(self.world.edit(self.alice1, UPDATE, icon_item(OTHER_MD5)))
        self.assertEqual(bart_reply(replies), BartId(1, 0x41, OTHER_MD5))
        # Watchers are not shown an icon they cannot fetch: none.
        self.assertIsNone(shown(self.bob_conn.arrivals()[-1]))
        settled(self.world.upload(self.alice1, OTHER))
        self.assertEqual(shown(self.bob_conn.arrivals()[-1]), BartId(1, 1, OTHER_MD5))

    def test_upload_of_something_else_changes_nothing(self) -> None:
        """An upload that is not the icon's data is kept, but nobody is told."""
        settled(self.world.edit(self.alice1, INSERT, icon_item(MD5)))
        self.conn1.clear()
        self.conn2.clear()
        reply = upload_reply(settled(self.world.upload(self.alice1, OTHER)))
        self.assertEqual(reply.code, BartReplyCode.SUCCESS)
        self.assertEqual(self.user.icon, BartId(1, 0x41, MD5))
        self.assertEqual(self_infos(self.conn2), [])
        self.assertEqual(self.bob_conn.arrivals(), [])

    def test_clear_icon_hash(self) -> None:
        """The "no icon" hash is known (01,21 flags 0x00), shown as it is,
        and downloads as the blank image."""
        replies = settled(self.world.edit(self.alice1, INSERT, icon_item(CLEAR_ICON_HASH, 0)))
        self.assertEqual(bart_reply(replies), BartId(1, 0x00, CLEAR_ICON_HASH))
        [arrival] = self.bob_conn.arrivals()
        self.assertEqual(shown(arrival), BartId(1, 0, CLEAR_ICON_HASH))
        reply = self.world.download(self.bob, b"Alice", BartId(1, 0, CLEAR_ICON_HASH))
        self.assertEqual(reply.data, BLANK_ICON)

    def test_deleting_the_item_clears_a_shown_icon(self) -> None:
        """Deleting the item (libpurple's "remove icon") of a shown icon shows
        the "no icon" hash, so watchers drop the old one; no 01,21."""
        settled(self.world.upload(self.alice1, ICON))
        settled(self.world.edit(self.alice1, INSERT, icon_item(MD5)))
        self.bob_conn.clear()
        replies = settled(self.world.edit(self.alice2, DELETE, icon_item(MD5)))
        self.assertEqual([(r.family, r.subtype) for r in replies], [(0x13, 0x0E)])
        self.assertEqual(self.user.icon, CLEARED)
        [arrival] = self.bob_conn.arrivals()
        self.assertEqual(shown(arrival), CLEARED)

    def test_deleting_an_unshown_icon_leaves_none(self) -> None:
        settled(self.world.edit(self.alice1, INSERT, icon_item(MD5)))
        settled(self.world.edit(self.alice1, DELETE, icon_item(MD5)))
        self.assertIsNone(self.user.icon)
        self.assertEqual(self.bob_conn.arrivals(), [])

    def test_other_edits_leave_the_icon_alone(self) -> None:
        """Edits of other items neither answer 01,21 nor push anything."""
        settled(self.world.edit(self.alice1, INSERT, icon_item(MD5)))
        self.conn1.clear()
        replies = result_of(
            self.world.edit(self.alice1, INSERT, WireFeedbagItem(b"Buddies", 7, 0, 1))
        )
        self.assertEqual([(r.family, r.subtype) for r in replies], [(0x13, 0x0E)])
        self.assertEqual(self_infos(self.conn1), [])

    def test_sign_on_loads_the_icon(self) -> None:
        """Signed off and on again, Alice's icon comes from her list: in the
        sign-on's self info and in Bob's arrival, and no 01,0F overtakes the
        sign-on (the lookup answered at once)."""
        settled(self.world.upload(self.alice1, ICON))
        settled(self.world.edit(self.alice1, INSERT, icon_item(MD5)))
        self.world.sign_off(self.alice1)
        self.world.sign_off(self.alice2)
        self.assertIsNone(self.world.registry.get("alice"))
        self.bob_conn.clear()
        alice, connection = self.world.sign_on("Alice", online=False)
        self.assertEqual(connection.payloads, [])
        [reply] = self.world.call(self.world.oservice.user_info_query, alice, 1, 0x0E)
        self.assertEqual(shown(UserInfo.unpack(reply.body)), BartId(1, 1, MD5))
        self.world.come_online(alice)
        [arrival] = self.bob_conn.arrivals()
        self.assertEqual(shown(arrival), BartId(1, 1, MD5))


class DownloadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = BartWorld()
        self.alice, _ = self.world.sign_on("Alice")
        self.bob, _ = self.world.sign_on("Bob")
        settled(self.world.upload(self.alice, ICON))

    def test_download_by_hash(self) -> None:
        """10,05 echoes the name and ID asked for, with the data."""
        reply = self.world.download(self.bob, b"alice", BartId(1, 1, MD5))
        self.assertEqual(reply, DownloadReply(b"alice", BartId(1, 1, MD5), ICON))

    def test_unknown_hash_is_empty(self) -> None:
        for bart_id in (BartId(1, 1, OTHER_MD5), BartId(1, 1, b""), BartId(2, 0, CLEAR_ICON_HASH)):
            reply = self.world.download(self.bob, b"Alice", bart_id)
            self.assertEqual(reply, DownloadReply(b"Alice", bart_id, b""))

    def test_download2_one_reply_per_id(self) -> None:
        """10,06: one 10,07 per ID in order, code 0 with the data or code 7
        (not found) with none; the "no icon" hash is the blank image."""
        ids = (BartId(1, 1, MD5), BartId(1, 1, OTHER_MD5), BartId(1, 0, CLEAR_ICON_HASH))
        replies = self.world.download2(self.bob, b"Alice", *ids)
        self.assertEqual(
            replies,
            [
                Download2Reply(b"Alice", ids[0], BartReplyCode.SUCCESS, ids[0], ICON),
                Download2Reply(b"Alice", ids[1], BartReplyCode.NOT_FOUND, ids[1], b""),
                Download2Reply(b"Alice", ids[2], BartReplyCode.SUCCESS, ids[2], BLANK_ICON),
            ],
        )

    def test_download2_count_bounded(self) -> None:
        """None, or more than MAX_DOWNLOAD2_IDS, is a SNAC error, logged."""
        for count in (0, MAX_DOWNLOAD2_IDS + 1):
            body = Download2(b"Alice", (BartId(1, 1, MD5),) * count).pack()
            with capturedLogs() as events, self.assertRaises(SnacError) as caught:
                self.world.call(self.world.bart.download2, self.bob, 0x10, 0x06, body)
            self.assertEqual(caught.exception.code, SnacErrorCode.BUSTED_SNAC_PAYLOAD)
            [event] = events
            self.assertEqual((event["screen_name"], event["count"]), ("Bob", count))
        self.assertEqual(
            len(self.world.download2(self.bob, b"Alice", *(BartId(1, 1, MD5),) * 8)), 8
        )

    def test_answer_depends_on_the_hash_alone(self) -> None:
        """Alice blocks Bob: Bob is shown nothing of her, and a download
        naming her is answered exactly as one naming nobody (by hash): he
        learns nothing about her, not even that she blocks him."""
        deny = WireFeedbagItem(b"Bob", 0, 0x0200, 3)
        pd = WireFeedbagItem(b"", 0, 0x0100, 4, Tlv(0x00CA, b"\x04").pack())
        settled(self.world.edit(self.alice, INSERT, ROOT, pd, deny, icon_item(MD5)))
        self.assertFalse(self.world.presence.visible_to(self.world.registry.get("alice"), "bob"))
        for bart_id in (BartId(1, 1, MD5), BartId(1, 1, OTHER_MD5)):
            answers = {
                name: self.world.download(self.bob, name, bart_id).data
                for name in (b"Alice", b"Nobody", b"")
            }
            self.assertEqual(len(set(answers.values())), 1, answers)
            answers2 = {
                name: [(r.code, r.data) for r in self.world.download2(self.bob, name, bart_id)]
                for name in (b"Alice", b"Nobody")
            }
            self.assertEqual(answers2[b"Alice"], answers2[b"Nobody"])


class UploadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = BartWorld()
        self.alice, _ = self.world.sign_on("Alice")

    def test_refusals_store_nothing(self) -> None:
        """Too big (code 4), empty (code 3), or not a buddy icon (code 5): the
        ID answered names no data, and nothing is stored."""
        cases = [
            (b"x" * (MAX_ICON_BYTES + 1), 1, BartReplyCode.TOO_BIG),
            (b"", 1, BartReplyCode.TOO_SMALL),
            (ICON, 2, BartReplyCode.INVALID_TYPE),
            (ICON, 0x0C, BartReplyCode.INVALID_TYPE),
        ]
        for data, type_, code in cases:
            with capturedLogs() as events:
                reply = upload_reply(self.world.upload(self.alice, data, type_))
            self.assertEqual(reply, UploadReply(code, BartId(type_, 0, b"")))
            [event] = events
            self.assertEqual(
                (event["screen_name"], event["code"], event["type"], event["length"]),
                ("Alice", code, type_, len(data)),
            )
        self.assertEqual(result_of(self.world.store.list_bart_items("Alice")), [])

    def test_largest_and_small_icon_accepted(self) -> None:
        """Up to MAX_ICON_BYTES is kept, for the small icon (type 0) too."""
        data = b"\x89" * MAX_ICON_BYTES
        reply = upload_reply(settled(self.world.upload(self.alice, data, 0)))
        digest = hashlib.md5(data).digest()
        self.assertEqual(reply, UploadReply(BartReplyCode.SUCCESS, BartId(0, 1, digest)))

    def test_store_refusal_is_invalid(self) -> None:
        """A store that refuses answers code 1 (invalid), logged, no failure."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        def refuse(*args: Any) -> defer.Deferred[bytes]:
            return defer.fail(StoreError("disk full"))

        self.world.store.add_bart_item = refuse  # type: ignore[method-assign]
        reply = upload_reply(settled(self.world.upload(self.alice, ICON)))
        self.assertEqual(reply.code, BartReplyCode.INVALID)
        self.assertFalse([e for e in events if "log_failure" in e])
        self.assertTrue([e for e in events if "disk full" in str(e.get("error"))])


class MalformedTests(SynchronousTestCase):
    """Every handler raises MalformedData (the dispatcher's 0x0E) for a body
    cut short, and nothing changes."""

    def test_truncated_bodies(self) -> None:
        world = BartWorld()
        alice, _ = world.sign_on("Alice")
        bodies = {
            world.bart.upload: Upload(1, ICON).pack(),
            world.bart.download: Download(b"Alice", BartId(1, 1, MD5)).pack(),
            world.bart.download2: Download2(b"Alice", (BartId(1, 1, MD5),)).pack(),
        }
        for handler, body in bodies.items():
            for end in range(len(body)):
                with self.assertRaises(MalformedData):
                    world.call(handler, alice, 0x10, 0, body[:end])
        self.assertEqual(result_of(world.store.list_bart_items("Alice")), [])

    @given(st.data())
    def test_any_body(self, data: st.DataObject) -> None:
        """Random bodies and near misses of valid ones: each handler answers
        BART replies, or raises MalformedData or SnacError, nothing else."""
        world = BartWorld()
        alice, _ = world.sign_on("Alice")
        valid = {
            world.bart.upload: st.builds(Upload, st.integers(0, 2), st.binary(max_size=40)),
            world.bart.download: st.builds(Download, st.binary(max_size=8), bart_ids),
            world.bart.download2: st.builds(
                Download2, st.binary(max_size=8), st.lists(bart_ids, max_size=10).map(tuple)
            ),
        }
        for handler, strategy in valid.items():
            body = data.draw(fuzz(strategy.map(lambda v: v.pack())))
            try:
                replies = settled(world.call(handler, alice, 0x10, 0, body))
            except (MalformedData, SnacError):
                continue
            self.assertTrue(replies)
            self.assertEqual({r.family for r in replies}, {0x10})

    def test_session_gone(self) -> None:
        """A request of a session that signed off is "not logged on"."""
        world = BartWorld()
        alice, _ = world.sign_on("Alice")
        world.sign_off(alice)
        with self.assertRaises(SnacError) as caught:
            world.upload(alice, ICON)
        self.assertEqual(caught.exception.code, SnacErrorCode.NOT_LOGGED_ON)


class SlowStoreTests(SynchronousTestCase):
    """Lookups that answer later, in any order."""

    def setUp(self) -> None:
        self.world = BartWorld(store=HeldLookups(None))
        self.store = self.world.store
        self.bob, self.bob_conn = self.world.sign_on("Bob", buddies=["Alice"])
        alice, _ = self.world.sign_on("Alice")
        settled(self.world.edit(alice, INSERT, ROOT, icon_item(MD5)))
        settled(self.world.upload(alice, ICON))
        settled(self.world.upload(alice, OTHER))
        self.world.sign_off(alice)
        self.store.hold = True

    def test_late_lookup_no_push_while_signing_on(self) -> None:
        """A session still signing on when the lookup answers gets no 01,0F
        (it could cut into its sign-on); its 01,0E shows the icon."""
        alice, connection = self.world.sign_on("Alice", online=False)
        self.store.release()
        self.assertEqual(connection.payloads, [])
        [reply] = self.world.call(self.world.oservice.user_info_query, alice, 1, 0x0E)
        self.assertEqual(shown(UserInfo.unpack(reply.body)), BartId(1, 1, MD5))

    def test_late_lookup_pushes_self_info(self) -> None:
        """Loaded at sign-on by a lookup that answers after the session came
        online: it gets a 01,0F then, and watchers the icon."""
        alice, connection = self.world.sign_on("Alice")
        self.assertEqual(self_infos(connection), [])
        self.assertEqual(len(self.store.held), 1)
        self.store.release()
        [info] = self_infos(connection)
        self.assertEqual(shown(info), BartId(1, 1, MD5))
        self.assertEqual(shown(self.bob_conn.arrivals()[-1]), BartId(1, 1, MD5))

    def test_latest_lookup_wins(self) -> None:
        """The sign-on lookup (the old icon) answers after an edit's (the
        new one): the edit's icon stays."""
        alice, connection = self.world.sign_on("Alice")
        d = self.world.edit(alice, UPDATE, icon_item(OTHER_MD5))
        self.assertEqual(len(self.store.held), 2)
        self.store.release(1)
        self.assertEqual(bart_reply(settled(d)), BartId(1, 1, OTHER_MD5))
        self.store.release(0)
        self.assertEqual(self.world.registry.get("alice").icon, BartId(1, 1, OTHER_MD5))

    def test_upload_while_looking_up(self) -> None:
        """An upload of the icon being looked up makes it known at once,
        whatever the lookup says later."""
        alice, _ = self.world.sign_on("Alice")
        new = b"GIF89a a third icon"
        digest = hashlib.md5(new).digest()
        d = self.world.edit(alice, UPDATE, icon_item(digest))
        self.assertEqual(len(self.store.held), 2)
        self.store.hold = False
        settled(self.world.upload(alice, new))
        self.assertEqual(self.world.registry.get("alice").icon, BartId(1, 1, digest))
        while self.store.held:
            self.store.release()
        self.assertEqual(self.world.registry.get("alice").icon, BartId(1, 1, digest))
        self.assertEqual(bart_reply(settled(d)), BartId(1, 1, digest))
