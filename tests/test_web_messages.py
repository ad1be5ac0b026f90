"""The browser protocol's envelopes and IM text (``aimserver.web.messages``,
``aimserver.web.render``): pure, so checked exhaustively here."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from aimserver.services.events import BuddyArrived, BuddyDeparted, MessageReceived, Warned
from aimserver.web import messages
from aimserver.web.messages import WebError, parse_request
from aimserver.web.render import decode_text, encode_text, render
from aimserver.wire.icbm import TAG_AUTO_RESPONSE, TAG_IM_DATA, pack_im_data
from aimserver.wire.tlv import Tlv, TlvList
from aimserver.wire.userinfo import CLASS_UNAVAILABLE, TAG_IDLE_MINUTES, TAG_USER_CLASS, UserInfo


def request(**fields: object) -> str:
    return json.dumps(fields)


class ParseTests(unittest.SynchronousTestCase):
    def test_a_good_request(self) -> None:
        parsed = parse_request(
            request(
                id="7",
                command="send_im",
                parameters={"to": "Bob", "text": "hi", "client_message_id": "c"},
            )
        )
        self.assertEqual((parsed.id, parsed.command), ("7", "send_im"))
        self.assertEqual(parsed.parameters["text"], "hi")

    def test_refusals_name_the_problem_and_keep_the_id(self) -> None:
        cases = [
            ("{", None, "not JSON"),
            ("[]", None, "JSON object"),
            (request(id=True, command="ack"), None, "id must be"),
            (request(id="x" * 65, command="ack"), None, "id must be"),
            (request(id=1, command="ack", parameters={"seq": 1}, extra=1), 1, "unknown fields"),
            (request(id=2, command="nope"), 2, "unknown command"),
            (request(id=3, command="ack", parameters=[1]), 3, "must be a JSON object"),
            (request(id=4, command="ack"), 4, "missing parameter: seq"),
            (request(id=5, command="ack", parameters={"seq": True}), 5, "seq must be an integer"),
            (request(id=6, command="ack", parameters={"seq": -1}), 6, "at least 0"),
            (request(id=7, command="typing", parameters={"to": "a", "state": "x"}), 7, "one of"),
            (
                request(
                    id=8,
                    command="send_im",
                    parameters={"to": "a", "text": "t" * 4001, "client_message_id": "c"},
                ),
                8,
                "longer than 4000",
            ),
        ]
        for text, request_id, problem in cases:
            with self.assertRaises(WebError) as caught:
                parse_request(text)
            self.assertEqual(caught.exception.error_type, messages.VALIDATION, text)
            self.assertIn(problem, caught.exception.message, text)
            self.assertEqual(getattr(caught.exception, "request_id", None), request_id, text)

    def test_null_only_where_allowed(self) -> None:
        parsed = parse_request(
            request(id=1, command="update_session_state", parameters={"away_message": None})
        )
        self.assertIsNone(parsed.parameters["away_message"])
        with self.assertRaises(WebError):
            parse_request(request(id=1, command="ack", parameters={"seq": None}))

    @given(st.text(max_size=200))
    def test_any_text_parses_or_is_refused(self, text: str) -> None:
        try:
            parse_request(text)
        except WebError as e:
            self.assertEqual(e.error_type, messages.VALIDATION)

    @given(
        st.one_of(st.integers(-(2**54), 2**54), st.text(max_size=70), st.booleans(), st.none()),
        st.sampled_from(["send_im", "ack", "typing", "nope", 1]),
        st.dictionaries(
            st.sampled_from(["to", "text", "client_message_id", "auto_response", "seq", "x"]),
            st.one_of(
                st.text(max_size=70),
                st.sampled_from(["t" * 4000, "t" * 4001, "c" * 64, "c" * 65]),
                st.integers(-2, 2),
                st.booleans(),
                st.none(),
            ),
        ),
        st.booleans(),
    )
    def test_quick_path_takes_only_what_the_checks_take(
        self, request_id: object, command: object, parameters: dict[str, object], extra: bool
    ) -> None:
        """The quick path for send_im and ack gives the general checks'
        answer whenever it answers at all, and answers the usual IM."""
        data = {"id": request_id, "command": command, "parameters": parameters}
        if extra:
            data["more"] = 1
        quick = messages._plain_request(data)
        if quick is None:
            return
        self.assertIs(type(quick), messages.Request)
        self.assertEqual(quick, messages._checked_request(dict(data)))

    def test_quick_path_takes_the_usual_im_and_ack(self) -> None:
        for data in (
            {
                "id": 7,
                "command": "send_im",
                "parameters": {"to": "Bob", "text": "hi", "client_message_id": "c1"},
            },
            {"id": "a", "command": "ack", "parameters": {"seq": 12}},
        ):
            self.assertEqual(messages._plain_request(data), messages._checked_request(data))

    def test_envelopes(self) -> None:
        self.assertEqual(
            json.loads(messages.success(1, {"a": 1}, 5)),
            {"id": 1, "status": "success", "result": {"a": 1}, "timestamp": 5},
        )
        error = WebError(messages.RATE_LIMITED, "slow down")
        self.assertEqual(
            json.loads(messages.failure("x", error, 5)),
            {
                "id": "x",
                "status": "error",
                "error": "slow down",
                "error_type": "RateLimited",
                "timestamp": 5,
            },
        )
        self.assertEqual(
            json.loads(messages.event("im", 3, 5, {"from": "Bob"})),
            {"event": "im", "seq": 3, "timestamp": 5, "from": "Bob"},
        )


class TextTests(unittest.SynchronousTestCase):
    @given(st.text(max_size=300))
    def test_round_trip(self, text: str) -> None:
        text = text.encode("utf-16-be", "surrogatepass").decode("utf-16-be", "replace")
        self.assertEqual(decode_text(encode_text(text)), text)

    def test_charsets(self) -> None:
        self.assertEqual(decode_text(pack_im_data(b"plain", 0)), "plain")
        self.assertEqual(decode_text(pack_im_data("caf\u00e9".encode(), 0)), "caf\u00e9")
        self.assertEqual(decode_text(pack_im_data(b"caf\xe9", 0)), "caf\u00e9")
        self.assertEqual(decode_text(pack_im_data(b"caf\xe9", 3)), "caf\u00e9")
        self.assertEqual(decode_text(pack_im_data("\u263a".encode("utf-16-be"), 2)), "\u263a")
        self.assertTrue(encode_text("plain").endswith(b"\x00\x00\x00\x00plain"))


class RenderTests(unittest.SynchronousTestCase):
    def test_im(self) -> None:
        sender = UserInfo("Bob").pack()
        tlvs = Tlv(TAG_IM_DATA, encode_text("hi")).pack() + Tlv.empty(TAG_AUTO_RESPONSE).pack()
        self.assertEqual(
            render(MessageReceived(b"c" * 8, 1, sender, tlvs), 0),
            ("im", {"from": "Bob", "text": "hi", "auto_response": True, "system": False}),
        )
        # A rendezvous (channel 2) is not for the browser; garbage renders as None.
        self.assertIsNone(render(MessageReceived(b"c" * 8, 2, sender, tlvs), 0))
        self.assertIsNone(render(MessageReceived(b"c" * 8, 1, b"\x05Bo", tlvs), 0))

    def test_presence_and_warnings(self) -> None:
        info = UserInfo(
            "Bob",
            250,
            TlvList.of([Tlv.u16(TAG_USER_CLASS, CLASS_UNAVAILABLE), Tlv.u16(TAG_IDLE_MINUTES, 3)]),
        )
        name, fields = render(BuddyArrived(info.pack()), 0)  # type: ignore[misc]
        self.assertEqual(name, "buddy_online")
        self.assertEqual(
            (fields["name"], fields["away"], fields["idle_seconds"], fields["warning_level"]),
            ("Bob", True, 180, 25.0),
        )
        self.assertEqual(
            render(BuddyDeparted(UserInfo("Bob").pack()), 0), ("buddy_offline", {"name": "Bob"})
        )
        self.assertEqual(render(Warned(100, None), 0), ("warned", {"level": 10.0, "by": None}))
        self.assertEqual(
            render(Warned(300, UserInfo("Eve").pack()), 0), ("warned", {"level": 30.0, "by": "Eve"})
        )


class FastImRenderingTests(unittest.SynchronousTestCase):
    """The IM renderer reads the sender and the TLVs without the full
    codecs: it must agree with them, and never raise on garbage."""

    @given(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ", min_size=1, max_size=16),
        st.integers(0, 1000),
        st.text(max_size=50),
        st.booleans(),
        st.lists(st.tuples(st.integers(5, 40), st.binary(max_size=8)), max_size=3),
    )
    def test_agrees_with_the_codecs(
        self, name: str, warning: int, text: str, auto: bool, others: list[tuple[int, bytes]]
    ) -> None:
        text = text.encode("utf-16-be", "surrogatepass").decode("utf-16-be", "replace")
        sender = UserInfo(name, warning, TlvList.of([Tlv.u16(1, 0x10)])).pack()
        tlvs = [Tlv(tag, value) for tag, value in others]
        tlvs.insert(len(tlvs) // 2, Tlv(TAG_IM_DATA, encode_text(text)))
        if auto:
            tlvs.append(Tlv.empty(TAG_AUTO_RESPONSE))
        packed = b"".join(t.pack() for t in tlvs)
        rendered = render(MessageReceived(b"c" * 8, 1, sender, packed), 0)
        slow = TlvList.unpack_list(packed)
        self.assertEqual(
            rendered,
            (
                "im",
                {
                    "from": UserInfo.unpack(sender).screen_name,
                    "text": decode_text(slow.get(TAG_IM_DATA) or b""),
                    "auto_response": slow.has(TAG_AUTO_RESPONSE),
                    "system": False,
                },
            ),
        )

    @given(st.binary(max_size=40), st.binary(max_size=60))
    def test_garbage_renders_as_nothing_or_something(self, sender: bytes, tlvs: bytes) -> None:
        rendered = render(MessageReceived(b"c" * 8, 1, sender, tlvs), 0)
        self.assertTrue(rendered is None or rendered[0] == "im")
