"""Inputs the fuzzer (bench/fuzz, issue 19) found crashing a decoder: each
must now be refused with the decoder's documented bad-input error."""

from __future__ import annotations

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aimserver.services.cookies import COOKIE_LENGTH, CookieJar, InvalidCookie
from aimserver.web import messages
from aimserver.web.messages import WebError
from bench.fuzz import streams
from tests.fakes import make_server

#: The input found by ``ws_stream`` (mode byte, then masked frames): its first
#: message is a create_session for the screen name "\u033bice".
WS_NON_ASCII_NAME = bytes.fromhex(
    "0981e5112233446a005a20331813753d0211277e4f5e257f46117e31005036744347214e515637624b5c2a33"
    "0e1366614341257c4747216351117e31591137725056217f7d5d257c47117e3100ffff784156663d02113470"
    "5140337e5057662b02113774414121651311396c81b8112233446a005a20331813763d0211277e4f5e257f46"
    "117e31005421657d513175464a1b7d4b4030330e1366614341257c4747216351117e31594e3981c011223344"
    "6a005a20331813773d0211277e4f5e257f46117e31005220757d513175464a663d0211347050522974565636"
    "620009646a005d257c47117e3100712b73004e3981e5112233446a005a20331813703d0211277e4f5e257f46"
    "117e310040217f466c2d7c001f6433525236704f5630745040662b024866654d117e3100712b73001f643356"
    "563c65000964334a5a663d0211277d4b562a657d5e2162515223747d5a20331813667c1311396c81c2112233"
    "446a005a20331813713d0211277e4f5e257f46117e3100592b784c6c367e4d5e663d02113470505229745656"
    "36620009646a00412b7e4f117e31007f2b73404a666c5f81cd112233446a005a20331813723d0211277e4f5e"
    "257f46117e3100402568001f6433525236704f5630745040662b026866634d5c29331813665d4d512668001f"
    "643356563c65000964334a56287d4d11396c81d3112233446a005a20331813733d0211277e4f5e257f46117e"
    "31004634754347214e515637624b5c2a4e514725654711683100432563435e21654741373318133f33434425"
    "687d5e216251522374000964334d4630335f4e898411223344614b5d2388851122334412ca513d74"
)


class CookieBodyTests(SynchronousTestCase):
    def test_a_string_running_to_the_end_of_the_body(self) -> None:
        """Fuzz target ``cookie``: a body (under a valid MAC, as with a leaked
        secret) whose screen name runs to the last byte left no length byte
        for the client ID; ``_unpack_body`` read past the end (IndexError)."""
        jar = CookieJar(b"k" * 32, Clock(), lifetime=1e9)
        fixed = bytes([1]) + bytes(31)  # version 1, service 0, ..., cookie id
        body = fixed + bytes([191]) + b"a" * 191
        self.assertEqual(len(body) + 32, COOKIE_LENGTH)
        with self.assertRaises(InvalidCookie) as raised:
            jar.redeem(body + jar._sign(body), 0)
        self.assertEqual(raised.exception.reason, "malformed")


class WebCreateSessionTests(SynchronousTestCase):
    def test_a_screen_name_that_is_not_ascii(self) -> None:
        """Fuzz target ``ws_stream``: a browser's create_session for a name
        that is not ASCII made the authorizer's ``decode_screen_name`` raise
        MalformedData through ``WebService.create_session``: the socket logged
        a failure and answered "the server failed". Now it is a wrong name."""
        server, _, _ = make_server(accounts={"Alice": "secret1"})
        d = ensureDeferred(
            server.web.create_session(
                {"screen_name": "\u033bice", "password": "secret1"}, "192.0.2.1:1000"
            )
        )
        error = self.failureResultOf(d, WebError).value
        self.assertEqual(error.error_type, messages.UNAUTHORIZED)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_the_fuzzer_input(self) -> None:
        streams.ws_stream(WS_NON_ASCII_NAME)
