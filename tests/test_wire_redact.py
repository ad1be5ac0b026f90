"""``[logging] trace_flap`` with the secrets taken out (issue 19, security
review): roasted passwords, MD5 login digests and cookies never reach the
log; the rest of each frame is traced as before. Unit cases, a hypothesis
property, and a real login over TCP with tracing on."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest
from twisted.trial.unittest import SynchronousTestCase

from aimserver.config import load_config
from aimserver.store.credentials import roast
from aimserver.wire.flap import Channel
from aimserver.wire.redact import SECRET_TAGS, trace_text
from aimserver.wire.snac import pack_snac
from aimserver.wire.tlv import Tlv, TlvList
from tests.client import BosClient, deferred_test, roasted_login
from tests.harness import LoopbackServer

SECRET = b"SECRET-PASSWORD!"
VERSION = b"\x00\x00\x00\x01"


def tlvs(*items: Tlv) -> bytes:
    return TlvList(items).pack_list()


class TraceTextTests(SynchronousTestCase):
    def test_roasted_password_on_channel_1(self) -> None:
        payload = VERSION + tlvs(Tlv(0x01, b"Alice"), Tlv(0x02, roast(SECRET)))
        text = trace_text(Channel.SIGNON, payload)
        self.assertNotIn(roast(SECRET).hex(), text)
        self.assertIn(b"Alice".hex(), text)
        self.assertIn(f"<{len(SECRET)} bytes redacted>", text)

    def test_cookie_on_channel_1(self) -> None:
        payload = VERSION + tlvs(Tlv(0x06, SECRET * 16))
        self.assertNotIn(SECRET.hex(), trace_text(Channel.SIGNON, payload))

    def test_cookie_on_channel_4(self) -> None:
        """A roasted login is answered on channel 4, with the BOS cookie."""
        payload = tlvs(Tlv(0x01, b"Alice"), Tlv(0x06, SECRET * 16))
        text = trace_text(Channel.SIGNOFF, payload)
        self.assertNotIn(SECRET.hex(), text)
        self.assertIn(b"Alice".hex(), text)

    def test_bucp_digest_and_reply_cookie_and_service_cookie(self) -> None:
        for family, subtype in ((0x17, 0x02), (0x17, 0x03), (0x01, 0x05)):
            body = tlvs(Tlv(0x01, b"alice"), Tlv(0x25, SECRET), Tlv(0x06, SECRET))
            text = trace_text(Channel.DATA, pack_snac(family, subtype, body, 7))
            self.assertNotIn(SECRET.hex(), text, (family, subtype))
            self.assertIn(b"alice".hex(), text)

    def test_other_frames_traced_whole(self) -> None:
        payload = pack_snac(0x04, 0x06, b"anything at all", 3)
        self.assertEqual(trace_text(Channel.DATA, payload), payload.hex())
        self.assertEqual(trace_text(Channel.KEEP_ALIVE, b""), "")

    def test_a_frame_that_does_not_parse_is_not_shown(self) -> None:
        cut = pack_snac(0x17, 0x02, tlvs(Tlv(0x25, SECRET))[:-3], 1)
        text = trace_text(Channel.DATA, cut)
        self.assertNotIn(SECRET[:10].hex(), text)
        self.assertIn(f"<{len(cut)} bytes, not parsed", text)

    @given(
        st.lists(
            st.tuples(
                st.integers(0, 0xFFFF).filter(lambda t: t not in SECRET_TAGS),
                st.binary(max_size=40).filter(lambda b: SECRET not in b),
            ),
            max_size=6,
        ),
        st.sampled_from(sorted(SECRET_TAGS)),
        st.integers(0, 6),
        st.sampled_from(["signon", "signoff", (0x17, 0x02), (0x17, 0x03), (0x01, 0x05)]),
    )
    def test_a_secret_never_shows(self, others, tag, where, kind) -> None:
        items = [Tlv(t, v) for t, v in others]
        items.insert(min(where, len(items)), Tlv(tag, SECRET))
        if kind == "signon":
            channel, payload = Channel.SIGNON, VERSION + tlvs(*items)
        elif kind == "signoff":
            channel, payload = Channel.SIGNOFF, tlvs(*items)
        else:
            channel, payload = Channel.DATA, pack_snac(*kind, tlvs(*items), 1)
        self.assertNotIn(SECRET.hex(), trace_text(channel, payload))


class TracedLoginTests(unittest.TestCase):
    @deferred_test
    async def test_a_traced_login_logs_no_password_or_cookie(self) -> None:
        """A roasted (FLAP channel 1) login and the BOS sign-on with its
        cookie, with trace_flap on: the frames are in the log, the roasted
        password and the cookie are not."""
        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        password = "TopSecret9"
        server = await LoopbackServer.start(
            load_config(None, {"logging.trace_flap": True}), accounts={"Alice": password}
        )
        self.addCleanup(server.stop)
        port = server.auth_port.getHost().port
        reply = await roasted_login("127.0.0.1", port, "Alice", password)
        cookie = reply.get(0x06)
        self.assertIsNotNone(cookie)
        bos = await BosClient.sign_on(reply)
        self.addCleanup(bos.close)
        logged = "\n".join(formatEvent(e) or "" for e in events)
        self.assertIn("bos 127.0.0.1", logged)
        self.assertIn("<- ch1", logged)
        self.assertNotIn(roast(password.encode()).hex(), logged)
        self.assertNotIn(cookie.hex(), logged)  # type: ignore[union-attr]
