"""``[auth] allow_weak_hash`` (issue 19): with it off, every 17,07 carries a
fresh random challenge, only the strong digest (TLV 0x4C) is accepted,
checked against MD5(password), and a captured 17,02 does not replay; with it
on (the default) logins behave as before. Byte level over ``Wire`` with the
memory store, and end to end over TCP with the real server."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aimserver.config import load_config
from aimserver.services.auth import UPGRADE_REQUIRED
from aimserver.store.credentials import (
    Credentials,
    challenged_digest,
    check_challenged_digest,
    credentials_for,
    new_credentials,
    strong_digest,
)
from aimserver.wire.flap import Channel, SignonPayload
from aimserver.wire.reader import Reader
from aimserver.wire.tlv import Tlv, TlvList
from tests.client import bucp_login, connect, deferred_test
from tests.fakes import (
    Wire,
    bucp_login_tlvs,
    login_key,
    make_server,
    result_of,
    roasted_signon_tlvs,
)
from tests.harness import LoopbackServer

ACCOUNTS = {"Alice": "secret", "Bob Smith": "hunter2"}
#: MD5 of "secret", 16 raw bytes.
SECRET_MD5 = hashlib.md5(b"secret").digest()


def strict_config(**more: object):
    return load_config(None, {"auth.allow_weak_hash": False, **more})


class CredentialsTests(SynchronousTestCase):
    """The pure functions behind the setting."""

    def test_credentials_for_keeps_md5_of_password(self) -> None:
        """Every way of setting a password stores MD5(password) beside the
        digests, out of ``repr``."""
        credentials = credentials_for(b"secret")
        self.assertEqual(credentials.password_md5, SECRET_MD5)
        self.assertEqual(new_credentials("secret").password_md5, SECRET_MD5)
        self.assertNotIn("password_md5", repr(credentials))
        self.assertNotIn(SECRET_MD5.hex(), repr(credentials))

    def test_challenged_digest_is_the_strong_digest(self) -> None:
        """MD5(challenge ‖ MD5(P) ‖ S) is what a strong-hash client sends
        for that challenge (LOGIN.md §3.4 worked example)."""
        expected = bytes.fromhex("054B2494F6D223078F90B1D1333B757F")
        self.assertEqual(challenged_digest(b"1234567890", SECRET_MD5), expected)
        self.assertEqual(strong_digest(b"1234567890", b"secret"), expected)

    def test_check_challenged_digest(self) -> None:
        """Right digest for this challenge: yes; another challenge, another
        password, or no MD5(password) known: no."""
        credentials = credentials_for(b"secret")
        digest = strong_digest(b"abc", b"secret")
        self.assertTrue(check_challenged_digest(credentials, "abc", digest))
        self.assertFalse(check_challenged_digest(credentials, "abd", digest))
        self.assertFalse(
            check_challenged_digest(credentials, "abc", strong_digest(b"abc", b"secreT"))
        )
        bare = Credentials(
            auth_key="abc", weak_md5=b"\0" * 16, strong_md5=digest, password_md5=None
        )
        self.assertFalse(check_challenged_digest(bare, "abc", digest))


class StrictBucpTests(SynchronousTestCase):
    """``allow_weak_hash = false``, byte level."""

    def setUp(self) -> None:
        self.server, self.store, self.clock = make_server(strict_config(), ACCOUNTS)
        self.logged: list[str] = []

        def observe(event: dict) -> None:
            self.logged.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def connect(self) -> Wire:
        return Wire(self.server.auth_factory)

    def login(self, name: bytes, password: bytes, *, strong: bool = True) -> tuple[bytes, TlvList]:
        """A whole BUCP login: the 17,02 body sent and the 17,03 TLVs."""
        wire = self.connect()
        key = login_key(wire, name)
        body = bucp_login_tlvs(name, key, password, strong=strong)
        return body, self.send_login(wire, body)

    def send_login(self, wire: Wire, body: bytes) -> TlvList:
        wire.send_snac(0x17, 0x02, body, request_id=2)
        answer, signoff = wire.frames()
        self.assertEqual((signoff.channel, signoff.payload), (Channel.SIGNOFF, b""))
        self.assertTrue(wire.closing)
        return TlvList.unpack_list(answer.payload[10:])

    def assert_refused(self, tlvs: TlvList, code: int) -> None:
        self.assertEqual(tlvs.get(0x08), code.to_bytes(2, "big"))
        self.assertIsNone(tlvs.get(0x06))

    def assert_granted(self, tlvs: TlvList, name: str) -> None:
        cookie = tlvs.get(0x06) or b""
        self.assertIsNone(tlvs.get(0x08))
        self.assertEqual(self.server.cookies.redeem(cookie, 1).screen_name, name)

    def test_challenges_are_fresh(self) -> None:
        """Two 17,06 for the same name get different challenges, neither of
        them the account's stored key."""
        stored = result_of(self.store.get_account("alice")).auth_key.encode("ascii")
        first = login_key(self.connect(), b"alice")
        second = login_key(self.connect(), b"Alice")
        self.assertNotEqual(first, second)
        self.assertNotIn(stored, (first, second))
        self.assertEqual(len(first), len(stored))

    def test_unknown_names_get_random_challenges(self) -> None:
        """An unknown name gets a challenge like a known one, a new one each
        time, and its 17,02 is a wrong password (0x0005)."""
        first = login_key(self.connect(), b"Nobody")
        second = login_key(self.connect(), b"Nobody")
        self.assertNotEqual(first, second)
        self.assertEqual(len(first), len(login_key(self.connect(), b"alice")))
        _, tlvs = self.login(b"Nobody", b"secret")
        self.assert_refused(tlvs, 0x0005)

    def test_strong_login_succeeds(self) -> None:
        """The strong digest of the right password for this challenge logs in."""
        _, tlvs = self.login(b"BOBSMITH", b"hunter2")
        self.assert_granted(tlvs, "Bob Smith")
        self.assertEqual(tlvs.get(0x01), b"Bob Smith")

    def test_wrong_password(self) -> None:
        """A strong digest of another password is a wrong password (0x0005)."""
        _, tlvs = self.login(b"alice", b"secreT")
        self.assert_refused(tlvs, 0x0005)

    def test_digest_of_stored_key_refused(self) -> None:
        """A digest salted with the account's fixed key (what a client would
        send under allow_weak_hash) does not answer the random challenge."""
        stored = result_of(self.store.get_account("alice")).auth_key.encode("ascii")
        wire = self.connect()
        login_key(wire, b"alice")
        tlvs = self.send_login(wire, bucp_login_tlvs(b"alice", stored, b"secret"))
        self.assert_refused(tlvs, 0x0005)

    def test_replay_refused(self) -> None:
        """The 17,02 of a successful login, sent again on a new connection
        (which got a new challenge), is refused as a wrong password."""
        body, tlvs = self.login(b"alice", b"secret")
        self.assert_granted(tlvs, "Alice")
        wire = self.connect()
        login_key(wire, b"alice")
        self.assert_refused(self.send_login(wire, body), 0x0005)

    def test_weak_login_refused(self) -> None:
        """A weak digest (no TLV 0x4C), even of the right password, gets
        0x001B ("client too old: upgrade required"), and the log says why."""
        self.assertEqual(UPGRADE_REQUIRED, 0x001B)
        _, tlvs = self.login(b"alice", b"secret", strong=False)
        self.assert_refused(tlvs, 0x001B)
        self.assertTrue(any("allow_weak_hash" in line for line in self.logged), self.logged)
        # Same answer for a name that does not exist: it tells nothing.
        _, tlvs = self.login(b"Nobody", b"secret", strong=False)
        self.assert_refused(tlvs, 0x001B)

    def test_old_account_refused_until_roasted_login(self) -> None:
        """An account without MD5(password) (made before it was kept) is
        refused (0x0005, with a log line saying what to do); one roasted
        login fills it in, and then strong BUCP logins work."""
        old = result_of(self.store.get_account("alice"))
        bare = Credentials(auth_key=old.auth_key, weak_md5=old.weak_md5, strong_md5=old.strong_md5)
        self.assertTrue(result_of(self.store.set_credentials("alice", bare)))
        self.assertIsNone(result_of(self.store.get_account("alice")).password_md5)

        _, tlvs = self.login(b"alice", b"secret")
        self.assert_refused(tlvs, 0x0005)
        self.assertTrue(
            any("must be reset, or one roasted login made" in line for line in self.logged),
            self.logged,
        )

        # A wrong roasted password learns nothing.
        wire = self.connect()
        wire.raw()
        wire.signon(*roasted_signon_tlvs(b"alice", b"secreT"))
        (answer,) = wire.frames()
        self.assertEqual(TlvList.unpack_list(answer.payload).get(0x08), b"\x00\x05")
        self.assertIsNone(result_of(self.store.get_account("alice")).password_md5)

        wire = self.connect()
        wire.raw()
        wire.signon(*roasted_signon_tlvs(b"alice", b"secret"))
        (answer,) = wire.frames()
        self.assert_granted(TlvList.unpack_list(answer.payload), "Alice")
        learnt = result_of(self.store.get_account("alice"))
        self.assertEqual(learnt.password_md5, SECRET_MD5)
        self.assertEqual(
            (learnt.auth_key, learnt.weak_md5, learnt.strong_md5),
            (old.auth_key, old.weak_md5, old.strong_md5),
        )

        _, tlvs = self.login(b"alice", b"secret")
        self.assert_granted(tlvs, "Alice")

    def test_roasted_login_still_works(self) -> None:
        """Channel-1 logins carry the password itself and are unaffected."""
        wire = self.connect()
        wire.raw()
        wire.signon(*roasted_signon_tlvs(b"Bob Smith", b"hunter2"))
        (answer,) = wire.frames()
        self.assert_granted(TlvList.unpack_list(answer.payload), "Bob Smith")

    def test_no_auto_registration_from_challenged_digest(self) -> None:
        """With auto-registration, an unknown name's strong BUCP login does
        not create the account (a digest of a random challenge is no use
        later) and says so in the log; a roasted login still registers it,
        MD5(password) included, and its BUCP logins then work."""
        self.server, self.store, self.clock = make_server(
            strict_config(**{"auth.auto_register": True}), ACCOUNTS
        )
        _, tlvs = self.login(b"Newbie", b"pass1")
        self.assert_refused(tlvs, 0x0005)
        self.assertIsNone(result_of(self.store.get_account("newbie")))
        self.assertTrue(
            any("auto-registration of 'Newbie' refused" in line for line in self.logged),
            self.logged,
        )
        wire = self.connect()
        wire.raw()
        wire.signon(*roasted_signon_tlvs(b"Newbie", b"pass1"))
        (answer,) = wire.frames()
        self.assert_granted(TlvList.unpack_list(answer.payload), "Newbie")
        account = result_of(self.store.get_account("newbie"))
        self.assertEqual(account.password_md5, hashlib.md5(b"pass1").digest())
        _, tlvs = self.login(b"newbie", b"pass1")
        self.assert_granted(tlvs, "Newbie")

    def test_reveal_unknown_names(self) -> None:
        """With reveal_unknown_names an unknown name is refused at 17,06
        (0x0001) as before; known names still get random challenges."""
        self.server, self.store, self.clock = make_server(
            strict_config(**{"auth.reveal_unknown_names": True}), ACCOUNTS
        )
        wire = self.connect()
        wire.frames()
        wire.signon()
        wire.send_snac(0x17, 0x06, Tlv(0x01, b"Nobody").pack(), request_id=1)
        answer, _ = wire.frames()
        self.assertEqual(TlvList.unpack_list(answer.payload[10:]).get(0x08), b"\x00\x01")
        self.assertNotEqual(
            login_key(self.connect(), b"alice"), login_key(self.connect(), b"alice")
        )
        _, tlvs = self.login(b"alice", b"secret")
        self.assert_granted(tlvs, "Alice")


class WeakAllowedTests(SynchronousTestCase):
    """``allow_weak_hash = true`` (the default): the fixed key, both forms,
    and (as before) a captured login replays."""

    def setUp(self) -> None:
        self.server, self.store, self.clock = make_server(None, ACCOUNTS)

    def test_default_is_on(self) -> None:
        self.assertTrue(self.server.authorizer.allow_weak_hash)

    def test_fixed_key_both_forms(self) -> None:
        stored = result_of(self.store.get_account("alice")).auth_key.encode("ascii")
        for strong in (True, False):
            wire = Wire(self.server.auth_factory)
            self.assertEqual(login_key(wire, b"alice"), stored)
            wire.send_snac(0x17, 0x02, bucp_login_tlvs(b"alice", stored, b"secret", strong=strong))
            answer, _ = wire.frames()
            self.assertIsNone(TlvList.unpack_list(answer.payload[10:]).get(0x08))


class EndToEndTests(TestCase):
    """Over TCP with the real server, ``allow_weak_hash = false``."""

    async def start(self) -> LoopbackServer:
        server = await LoopbackServer.start(strict_config(), accounts=dict(ACCOUNTS))
        self.addCleanup(server.stop)
        return server

    async def exchange(
        self, server: LoopbackServer, name: bytes, body_for: Callable[[bytes], bytes]
    ) -> tuple[bytes, TlvList]:
        """Hello, 17,06, then the 17,02 ``body_for(challenge)``: the body
        sent and the 17,03 TLVs."""
        client = await connect(*server.auth_address)
        await client.wait_channel(Channel.SIGNON)
        client.send_frame(Channel.SIGNON, SignonPayload().pack())
        client.send_snac(0x17, 0x06, Tlv(0x01, name).pack())
        _, body = await client.wait_snac(0x17, 0x07)
        login = body_for(Reader(body, "challenge").string16("key"))
        client.send_snac(0x17, 0x02, login, request_id=2)
        _, answer = await client.wait_snac(0x17, 0x03)
        await client.wait_lost()
        return login, TlvList.unpack_list(answer)

    @deferred_test
    async def test_login_works_weak_refused(self) -> None:
        """A strong-hash client logs in; an old-digest one gets 0x001B."""
        server = await self.start()
        tlvs = await bucp_login(*server.auth_address, "Bob Smith", "hunter2", strong=True)
        self.assertIsNone(tlvs.get(0x08))
        self.assertEqual(tlvs.get(0x01), b"Bob Smith")
        tlvs = await bucp_login(*server.auth_address, "Bob Smith", "hunter2", strong=False)
        self.assertEqual(tlvs.get(0x08), b"\x00\x1b")
        self.assertIsNone(tlvs.get(0x06))

    @deferred_test
    async def test_replay_refused(self) -> None:
        """The 17,02 of a successful login, replayed on a new connection
        (with its new challenge), is refused."""
        server = await self.start()
        body, tlvs = await self.exchange(
            server, b"alice", lambda key: bucp_login_tlvs(b"alice", key, b"secret")
        )
        self.assertIsNone(tlvs.get(0x08))
        self.assertEqual(tlvs.get(0x01), b"Alice")
        self.assertTrue(tlvs.get(0x06))
        _, replayed = await self.exchange(server, b"alice", lambda key: body)
        self.assertEqual(replayed.get(0x08), b"\x00\x05")
        self.assertIsNone(replayed.get(0x06))
