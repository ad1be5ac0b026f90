# -*- test-case-name: tests.test_protocol_auth -*-
"""The auth (login) connection: FLAP channel-1 roasted login or BUCP."""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime

from aimserver.protocols.flap import ConnectionSettings, FlapConnection, FlapFactory
from aimserver.services.auth import Authorizer, LoginResult, requested_name
from aimserver.services.base import then
from aimserver.wire.codes import BUCP, FoodGroup, LoginError, LoginTag
from aimserver.wire.errors import MalformedData
from aimserver.wire.flap import SignonPayload
from aimserver.wire.reader import string16
from aimserver.wire.screenname import normalize
from aimserver.wire.snac import SnacHeader
from aimserver.wire.tlv import TlvList

#: A login takes 3 frames; a client that needs many more is not logging in.
MAX_AUTH_FRAMES = 16


class AuthConnection(FlapConnection):
    service_name = "auth"

    def __init__(self, factory: AuthFactory) -> None:
        super().__init__(factory.settings, factory.clock, factory.sweeper, factory.writer)
        self.authorizer = factory.authorizer
        self._frames = 0
        #: The 17,07 key sent, and for which screen name (normalised): the
        #: 17,02 must answer that challenge, for that name.
        self._offered_key: str | None = None
        self._challenged_name: str | None = None
        self._done = False
        self.snac_handlers = {
            (FoodGroup.BUCP, BUCP.CHALLENGE_REQUEST): self.challenge_request,
            (FoodGroup.BUCP, BUCP.LOGIN_REQUEST): self.login_request,
        }

    @property
    def ip(self) -> str:
        return self.peer.rsplit(":", 1)[0]

    def _frame_received(self, channel: int, payload: bytes) -> None:
        self._frames += 1
        if self._frames > MAX_AUTH_FRAMES:
            self.protocol_error("too many frames during login")
            return
        super()._frame_received(channel, payload)

    def snac_allowed(self, header: SnacHeader) -> bool:
        # After the answer is out, nothing more is read from this connection.
        return not self._done

    def signon_received(self, signon: SignonPayload) -> Any:
        """A channel-1 frame with a screen name is the roasted login (method 1);
        without one the client goes on with BUCP SNACs."""
        if not signon.tlvs.has(LoginTag.SCREEN_NAME):
            return None
        self._done = True
        try:
            screen_name = requested_name(signon.tlvs)
        except MalformedData as e:
            return self._malformed(None, e)
        refusal = self.authorizer.admit(screen_name, self.ip)
        if refusal is not None:
            return self._answer_roasted(refusal)
        return then(self.authorizer.login_roasted(signon.tlvs), self._answer_roasted)

    def _answer_roasted(self, result: LoginResult) -> None:
        self.authorizer.answered(result, self.ip)
        self.close(result.tlvs())

    def _malformed(self, request: SnacHeader | None, error: MalformedData) -> None:
        """A login request that does not parse gets a login error, not silence."""
        self.log.info(
            "auth: malformed login from {peer}: {error}", peer=self.peer, error=str(error)
        )
        result = LoginResult("", error=LoginError.INVALID_SCREEN_NAME)
        if request is None:
            self.close(result.tlvs())
        else:
            self._finish(request, result)

    def challenge_request(self, request: SnacHeader, body: bytes) -> Any:
        try:
            screen_name = requested_name(TlvList.unpack_list(body, "BUCP challenge request"))
        except MalformedData as e:
            return self._malformed(request, e)
        refusal = self.authorizer.admit(screen_name, self.ip)
        if refusal is not None:
            return self._finish(request, refusal)
        return then(
            self.authorizer.challenge(screen_name), self._answer_challenge, request, screen_name
        )

    def _answer_challenge(
        self, result: str | LoginResult, request: SnacHeader, screen_name: str
    ) -> None:
        if isinstance(result, LoginResult):
            self._finish(request, result)
            return
        self._offered_key = result
        self._challenged_name = normalize(screen_name)
        self.reply(request, BUCP.CHALLENGE_RESPONSE, string16(result.encode("ascii")))

    def login_request(self, request: SnacHeader, body: bytes) -> Any:
        try:
            tlvs = TlvList.unpack_list(body, "BUCP login request")
            screen_name = requested_name(tlvs)
        except MalformedData as e:
            return self._malformed(request, e)
        self._done = True
        # The digest answers the 17,07 key sent on this connection, for the
        # name it was asked for: a 17,02 without a challenge, or for another
        # name, is no login a client makes. Refused before any lookup.
        if self._offered_key is None:
            why = "login request without a challenge"
        elif normalize(screen_name) != self._challenged_name:
            why = "login request for another name than the challenge"
        else:
            why = None
        if why is not None:
            refusal = self.authorizer.refuse(screen_name, LoginError.INTERNAL_CLIENT_ERROR, why)
            return self._finish(request, refusal)
        return then(
            self.authorizer.login_bucp(tlvs, self._offered_key), self._login_answer, request
        )

    def _login_answer(self, result: LoginResult, request: SnacHeader) -> None:
        self.authorizer.answered(result, self.ip)
        self._finish(request, result)

    def _finish(self, request: SnacHeader, result: LoginResult) -> None:
        """17,03 then an empty channel-4 frame, then close: clients expect both."""
        self._done = True
        self.reply(request, BUCP.LOGIN_RESPONSE, result.tlvs().pack_list())
        self.close()


class AuthFactory(FlapFactory):
    protocol = AuthConnection  # type: ignore[assignment]

    def __init__(
        self,
        authorizer: Authorizer,
        settings: ConnectionSettings,
        clock: IReactorTime,
        keepalive_interval: float,
    ) -> None:
        super().__init__(settings, clock, keepalive_interval)
        self.authorizer = authorizer

    def stopFactory(self) -> None:
        super().stopFactory()
        self.authorizer.flush_shed(final=True)

    def make_connection(self) -> AuthConnection:
        connection = AuthConnection(self)
        connection.factory = self
        return connection
