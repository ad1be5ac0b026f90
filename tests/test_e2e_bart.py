"""Buddy icons end to end over loopback TCP, on the store ``twistd aimserver``
runs (SQLite on its DB thread, behind the account cache): Alice stores her
icon's hash in her feedbag, is told (01,21 flags 0x41) to upload it, opens
a BART connection (01,04 for 0x0010) and uploads it; Bob, watching her, gets
an 03,0B with TLV 0x001D and downloads the very bytes (10,04 and 10,06) on a
BART connection of his own; a second session of Alice shows the same icon;
and after a restart of the server on the same file, it is all still there."""

from __future__ import annotations

import hashlib

from twisted.internet import reactor
from twisted.trial import unittest

from aimserver.config import load_config
from aimserver.server import AimServer
from aimserver.store.cache import CachedUserStore
from aimserver.store.sqlite import SQLiteUserStore
from aimserver.wire.bart import (
    BartId,
    BartInfo,
    Download,
    Download2,
    Download2Reply,
    DownloadReply,
    Upload,
    UploadReply,
)
from aimserver.wire.feedbag import WireFeedbagItem
from aimserver.wire.flap import Channel, FlapFrame, SignonPayload
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import TAG_BART_INFO, UserInfo
from tests.client import TIMEOUT, BosClient, connect, deferred_test, split_address
from tests.harness import LOOPBACK, SECRET, LoopbackServer, wait_until

ACCOUNTS = {"Alice": "secret", "Bob": "secret"}
ICON = b"GIF89a\x30\x00\x30\x00" + bytes(range(256)) * 8  # 2 KiB, every byte value
MD5 = hashlib.md5(ICON).digest()
ROOT = WireFeedbagItem(b"", 0, 0, 1)
#: The BART item as libpurple stores it (FAMILIES.md 13,08 example).
ICON_ITEM = WireFeedbagItem(
    b"1",
    0,
    0x5555,
    0x0014,
    Tlv(0x00D5, BartInfo(0x01, MD5).pack()).pack() + Tlv(0x0131, b"").pack(),
)
SHOWN = BartId(1, 0x01, MD5)


def shown(info: UserInfo) -> BartId | None:
    value = info.tlvs.get(TAG_BART_INFO)
    return None if value is None else BartId.unpack(value)


class Server:
    """One server process over one SQLite file, as twistd builds it."""

    def __init__(self, path: str) -> None:
        self.store = SQLiteUserStore.open(path, reactor)
        self.store.start()
        config = load_config(None, {"multisession.notify": False})
        self.aim = AimServer(config, CachedUserStore(self.store, reactor), SECRET, reactor)
        self.loop = LoopbackServer(self.aim, self.store)  # type: ignore[arg-type]
        self.loop.auth_port = reactor.listenTCP(0, self.aim.auth_factory, interface=LOOPBACK)
        self.loop.bos_port = reactor.listenTCP(0, self.aim.bos_factory, interface=LOOPBACK)
        self.loop.ports = [self.loop.auth_port, self.loop.bos_port]
        self.aim.bos_address = f"{LOOPBACK}:{self.loop.bos_port.getHost().port}"
        self.running = True

    async def stop(self) -> None:
        if self.running:
            self.running = False
            await self.loop.stop()
            await self.store.stop()


async def bart_connection(client: BosClient) -> BosClient:
    """01,04 for BART, then that service connection's sign-on."""
    _, body = await client.request(0x01, 0x04, b"\x00\x10", 0x05)
    redirect = TlvList.unpack_list(body)
    assert redirect.get_u16(0x000D) == 0x0010, redirect
    flap = await connect(*split_address(redirect))
    await flap.wait_channel(Channel.SIGNON)
    cookie = Tlv(0x06, redirect.get(0x06) or b"")
    flap.send_frame(Channel.SIGNON, SignonPayload(1, TlvList((cookie,))).pack())
    _, families = await flap.wait_snac(0x01, 0x03)
    assert families == b"\x00\x01\x00\x10", families.hex()
    service = BosClient(flap, client.screen_name)
    await service.request(0x01, 0x17, b"\x00\x01\x00\x03\x00\x10\x00\x01", 0x18)
    await service.request(0x01, 0x06, b"", 0x07)
    flap.send_snac(0x01, 0x02, b"\x00\x01\x00\x03\x01\x10\x06\x29", service.next_id())
    return service


async def arrival_showing(client: BosClient, icon: BartId, timeout: float = TIMEOUT) -> UserInfo:
    """The first 03,0B whose TLV 0x001D is ``icon`` (earlier ones, of Alice
    before her icon, go by)."""
    while True:
        info = await client.wait_arrival(timeout)
        if shown(info) == icon:
            return info


class BartEndToEndTests(unittest.TestCase):
    async def start(self, path: str) -> Server:
        server = Server(path)
        self.addCleanup(server.stop)
        for name, password in ACCOUNTS.items():
            if await server.store.get_account(name) is None:
                await server.store.create_account(name, password)
        return server

    async def feedbag_session(self, server: Server, name: str) -> BosClient:
        """A session that uses its stored list, as libpurple's does."""
        client = await server.loop.session(name)
        await client.request(0x13, 0x04, b"", 0x06)
        client.flap.send_snac(0x13, 0x07, b"", client.next_id())
        await client.sync()
        return client

    async def self_info(self, client: BosClient) -> UserInfo:
        """The answer to a 01,0E (a 01,0F the server pushed may come first)."""
        request_id = client.next_id()
        client.flap.send_snac(0x01, 0x0E, b"", request_id)

        def answer(frame: FlapFrame) -> bool:
            header, _ = SnacHeader.unpack(frame.payload)
            return (header.family, header.subtype, header.request_id) == (1, 0x0F, request_id)

        frame = await client.flap.wait(answer, what="the 01,0F answering 01,0E")
        return UserInfo.unpack(SnacHeader.unpack(frame.payload)[1])

    @deferred_test
    async def test_set_upload_show_download_restart(self) -> None:
        path = self.mktemp()
        server = await self.start(path)
        alice = await self.feedbag_session(server, "Alice")
        bob = await server.loop.session("Bob", buddies=["Alice"])

        # Alice stores the hash: the server lacks the data, so it says upload.
        edit = alice.next_id()
        alice.flap.send_snac(0x13, 0x08, ROOT.pack() + ICON_ITEM.pack(), edit)
        header, status = await alice.flap.wait_snac(0x13, 0x0E)
        self.assertEqual((header.request_id, status), (edit, b"\x00\x00\x00\x00"))
        _, reply = await alice.flap.wait_snac(0x01, 0x21)
        self.assertEqual(BartId.unpack(reply), BartId(1, 0x41, MD5))

        # Her BART connection: an upload bigger than the limit is refused
        # (code 4), the icon itself is kept.
        alice_bart = await bart_connection(alice)
        _, body = await alice_bart.request(0x10, 0x02, Upload(1, b"x" * 20000).pack(), 0x03)
        self.assertEqual(UploadReply.unpack(body).code, 4)
        _, body = await alice_bart.request(0x10, 0x02, Upload(1, ICON).pack(), 0x03)
        self.assertEqual(UploadReply.unpack(body), UploadReply(0, SHOWN))

        # Her session is told it is shown now; Bob sees it.
        while True:
            _, body = await alice.flap.wait_snac(0x01, 0x0F)
            if shown(UserInfo.unpack(body)) == SHOWN:
                break
        arrival = await arrival_showing(bob, SHOWN)
        self.assertEqual(arrival.screen_name, "Alice")

        # Bob fetches it on his own BART connection, both ways.
        bob_bart = await bart_connection(bob)
        _, body = await bob_bart.request(0x10, 0x04, Download(b"Alice", SHOWN).pack(), 0x05)
        self.assertEqual(DownloadReply.unpack(body), DownloadReply(b"Alice", SHOWN, ICON))
        _, body = await bob_bart.request(0x10, 0x06, Download2(b"Alice", (SHOWN,)).pack(), 0x07)
        self.assertEqual(
            Download2Reply.unpack(body), Download2Reply(b"Alice", SHOWN, 0, SHOWN, ICON)
        )

        # A second session of Alice shows the same icon (user level).
        second = await server.loop.session("Alice")
        self.assertEqual(shown(await self.self_info(second)), SHOWN)

        # Restart on the same file: signed on again, Alice shows her icon
        # (read from her list at sign-on), Bob sees it and fetches it.
        await server.stop()
        server = await self.start(path)
        alice = await server.loop.session("Alice")
        await wait_until(
            lambda: getattr(server.aim.registry.get("alice"), "icon", None) == SHOWN,
            "Alice's icon read from her list after the restart",
        )
        self.assertEqual(shown(await self.self_info(alice)), SHOWN)
        bob = await server.loop.session("Bob", buddies=["Alice"])
        await arrival_showing(bob, SHOWN)
        bob_bart = await bart_connection(bob)
        _, body = await bob_bart.request(0x10, 0x04, Download(b"Alice", SHOWN).pack(), 0x05)
        self.assertEqual(DownloadReply.unpack(body).data, ICON)

    @deferred_test
    async def test_unknown_hash_and_bad_bodies(self) -> None:
        """Not found: 10,05 with no data, 10,07 code 7; a malformed body is a
        10,01 error and the connection stays up."""
        server = await self.start(self.mktemp())
        bob = await server.loop.session("Bob")
        bart = await bart_connection(bob)
        missing = BartId(1, 1, b"\x00" * 16)
        _, body = await bart.request(0x10, 0x04, Download(b"Alice", missing).pack(), 0x05)
        self.assertEqual(DownloadReply.unpack(body), DownloadReply(b"Alice", missing, b""))
        _, body = await bart.request(0x10, 0x06, Download2(b"Alice", (missing,)).pack(), 0x07)
        self.assertEqual(Download2Reply.unpack(body).code, 7)
        header, body = await bart.request(0x10, 0x04, b"\x05Ali", 0x01)
        self.assertEqual(body[:2], b"\x00\x0e")
        _, body = await bart.request(0x10, 0x04, Download(b"Alice", missing).pack(), 0x05)
        self.assertEqual(DownloadReply.unpack(body).data, b"")
        self.assertTrue(bart.flap.connected_now)
