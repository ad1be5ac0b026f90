"""What trying the server with Pidgin found (issue 13 §1, §2), end to end over
loopback TCP with the SNAC sequences libpurple sends
(``../shared/protocol/CLIENTS.md``):

* IMs from a user's second session, whose cookies repeat the first's, were
  dropped as retransmissions and acked as delivered;
* one away (or back) change reached watchers as two 03,0B, the first wrong.
"""

from __future__ import annotations

import struct

from twisted.trial import unittest

from aimserver.config import load_config
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import UserInfo
from tests.client import BosClient, deferred_test, parse_im
from tests.harness import LoopbackServer

ACCOUNTS = {"Alice": "secret", "Bob": "secret"}
CLASS_AWAY = 0x0020
#: libpurple's status words (01,1E TLV 0x06): "web aware" flags with away or not.
PURPLE_AWAY = 0x10020001
PURPLE_AVAILABLE = 0x10020000
MIME = b'text/aolrtf; charset="us-ascii"'


def libpurple_set_away(client: BosClient, text: bytes) -> None:
    """What libpurple sends to go away, back to back: 02,04 with the away
    message, then 01,1E with the away status bit."""
    client.flap.send_snac(
        0x02, 0x04, TlvList((Tlv(0x03, MIME), Tlv(0x04, text))).pack_list(), client.next_id()
    )
    client.flap.send_snac(
        0x01, 0x1E, TlvList((Tlv.u32(0x06, PURPLE_AWAY),)).pack_list(), client.next_id()
    )


def libpurple_set_back(client: BosClient) -> None:
    """And back: 02,04 with an empty away message, then 01,1E without the bit."""
    client.flap.send_snac(0x02, 0x04, TlvList((Tlv(0x04, b""),)).pack_list(), client.next_id())
    client.flap.send_snac(
        0x01, 0x1E, TlvList((Tlv.u32(0x06, PURPLE_AVAILABLE),)).pack_list(), client.next_id()
    )


def updates(client: BosClient) -> list[UserInfo]:
    return [UserInfo.unpack(body) for _, body in client.flap.snacs(0x03, 0x0B)]


def status_of(info: UserInfo) -> int | None:
    return info.tlvs.get_u32(0x06)


class PidginTestCase(unittest.TestCase):
    async def start(self) -> LoopbackServer:
        # Rate limits off: these tests are about what is delivered, and
        # libpurple's bursts of IMs would otherwise be (rightly) limited.
        config = load_config(None, {"multisession.notify": False, "ratelimit.enabled": False})
        server = await LoopbackServer.start(config, accounts=ACCOUNTS)
        self.addCleanup(server.stop)
        return server


class SecondSessionImTests(PidginTestCase):
    @deferred_test
    async def test_same_cookies_from_two_sessions_each_delivered_once(self) -> None:
        """Two sessions of one user drawing the same cookie sequence, their
        IMs interleaved, every one acked: each distinct message arrives
        exactly once (5 of 7 from the second session were lost before)."""
        server = await self.start()
        bob = await server.session("Bob")
        first = await server.session("Alice")
        second = await server.session("Alice")
        cookies = [b"%07d\x00" % n for n in (4081520, 1734811, 6095313, 2227012, 9120301)]
        sent = []
        for n in range(7):
            cookie = cookies[n % len(cookies)]
            for client, name in ((first, b"one"), (second, b"two")):
                text = b"<HTML><BODY>%s %d</BODY></HTML>" % (name, n)
                client.send_im("Bob", text, ack=True, cookie=cookie)
                await client.flap.wait_snac(0x04, 0x0C)
                sent.append(text)
        # A true resend on the second connection is dropped (and acked).
        second.send_im("Bob", sent[-1], ack=True, cookie=cookies[6 % len(cookies)])
        await second.flap.wait_snac(0x04, 0x0C)
        await bob.sync()
        received = [parse_im(body)[1] for _, body in bob.flap.snacs(0x04, 0x07)]
        self.assertEqual(sorted(received), sorted(sent))
        self.assertEqual(len(received), 14)


class AwayUpdateTests(PidginTestCase):
    async def watched_alice(self) -> tuple[LoopbackServer, BosClient, BosClient]:
        server = await self.start()
        alice = await server.session("Alice")
        bob = await server.session("Bob", buddies=["Alice"])
        await bob.wait_arrival()
        await alice.sync()
        await bob.sync()
        bob.flap.received.clear()
        return server, alice, bob

    @deferred_test
    async def test_libpurple_away_is_one_update_with_the_final_state(self) -> None:
        """Going away (02,04 + 01,1E) reaches a watcher as one 03,0B, away
        and with the away status."""
        _, alice, bob = await self.watched_alice()
        libpurple_set_away(alice, b"brb")
        info = await bob.wait_arrival()
        await alice.flap.wait_snac(0x01, 0x0F)  # the 01,1E's answer
        await alice.sync()
        await bob.sync()
        self.assertEqual(updates(bob), [], "a second 03,0B for one change")
        self.assertTrue(info.tlvs.get_u16(0x01) & CLASS_AWAY)
        self.assertEqual(status_of(info), PURPLE_AWAY)

    @deferred_test
    async def test_libpurple_back_is_one_update_not_away(self) -> None:
        """Coming back (02,04 empty + 01,1E) is one 03,0B, and it says
        available: before, the first of two still said away."""
        _, alice, bob = await self.watched_alice()
        libpurple_set_away(alice, b"brb")
        await bob.wait_arrival()
        await alice.flap.wait_snac(0x01, 0x0F)
        await alice.sync()
        await bob.sync()
        bob.flap.received.clear()
        libpurple_set_back(alice)
        info = await bob.wait_arrival()
        await alice.flap.wait_snac(0x01, 0x0F)
        await alice.sync()
        await bob.sync()
        self.assertEqual(updates(bob), [], "a second 03,0B for one change")
        self.assertFalse(info.tlvs.get_u16(0x01) & CLASS_AWAY)
        self.assertEqual(status_of(info), PURPLE_AVAILABLE)

    @deferred_test
    async def test_back_in_two_reads_is_still_one_update(self) -> None:
        """The real libpurple's 02,04 and 01,1E can reach the server in two
        reads (seen in a capture of it coming back): a round trip between
        them forces that here, and watchers still get one update, right."""
        _, alice, bob = await self.watched_alice()
        libpurple_set_away(alice, b"brb")
        await bob.wait_arrival()
        await alice.flap.wait_snac(0x01, 0x0F)
        await alice.sync()
        await bob.sync()
        bob.flap.received.clear()
        alice.flap.send_snac(0x02, 0x04, TlvList((Tlv(0x04, b""),)).pack_list(), alice.next_id())
        await alice.sync()
        alice.flap.send_snac(
            0x01, 0x1E, TlvList((Tlv.u32(0x06, PURPLE_AVAILABLE),)).pack_list(), alice.next_id()
        )
        info = await bob.wait_arrival()
        await alice.flap.wait_snac(0x01, 0x0F)
        await alice.sync()
        await bob.sync()
        self.assertEqual(updates(bob), [], "a second 03,0B for one change")
        self.assertFalse(info.tlvs.get_u16(0x01) & CLASS_AWAY)
        self.assertEqual(status_of(info), PURPLE_AVAILABLE)

    @deferred_test
    async def test_idle_report_with_no_change_sends_nothing(self) -> None:
        """libpurple's periodic 01,11 with idle 0 while active changes nothing
        watchers see: no 03,0B at all."""
        _, alice, bob = await self.watched_alice()
        alice.flap.send_snac(0x01, 0x11, struct.pack("!I", 0), alice.next_id())
        await alice.sync()
        await bob.sync()
        self.assertEqual(updates(bob), [])
