# -*- test-case-name: tests.test_e2e_web -*-
"""One browser WebSocket (Twisted's own WebSocket support): it parses
requests, answers them in order, and carries its session's events.

Requests are handled one at a time, in the order they came, so answers come
in that order too; at most ``MAX_QUEUED`` wait (a flood closes the socket
with 1008). A message over ``messages.MAX_MESSAGE_BYTES`` closes it with
1009; ``site.BoundedInput`` stops a message from growing that big first.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from wsproto.utilities import LocalProtocolError

from aimserver.web import messages
from aimserver.web.messages import Request, WebError, parse_request
from aimserver.web.service import WebService
from aimserver.web.session import SocketLike, WebSession
from aimserver.wire.codes import FoodGroup, OService

MAX_QUEUED = 32
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
#: A session taken over by a resume on another socket.
CLOSE_TAKEN_OVER = 4000


class WebSocketChannel(SocketLike):
    log = Logger()

    def __init__(self, service: WebService, peer: str, input_guard: Any = None) -> None:
        self.service = service
        self.peer = peer
        self.input_guard = input_guard
        self.transport: Any = None
        self.web: WebSession | None = None
        self.closed = False
        self._queue: deque[str] = deque()
        self._busy = False

    # -- WebSocketProtocol ----------------------------------------------------------------

    def negotiationStarted(self, transport: Any) -> None:  # noqa: N802
        self.transport = transport

    def negotiationFinished(self) -> None:  # noqa: N802
        pass

    def pongReceived(self, payload: bytes) -> None:  # noqa: N802
        pass

    def textMessageReceived(self, message: str) -> None:  # noqa: N802
        if self.input_guard is not None:
            self.input_guard.message_done()
        if self.closed:
            return
        if len(message) > messages.MAX_MESSAGE_BYTES or (
            len(message.encode("utf-8", "surrogatepass")) > messages.MAX_MESSAGE_BYTES
        ):
            self.log.info("web: {peer} sent an oversize message", peer=self.peer)
            self.close(CLOSE_TOO_BIG)
            return
        if len(self._queue) >= MAX_QUEUED:
            self.log.info("web: {peer} floods requests: closing", peer=self.peer)
            self.close(CLOSE_POLICY)
            return
        self._queue.append(message)
        self._pump()

    def bytesMessageReceived(self, data: bytes) -> None:  # noqa: N802
        if self.input_guard is not None:
            self.input_guard.message_done()
        self._answer_error(None, WebError(messages.VALIDATION, "messages are JSON text"))

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        self.closed = True
        self._queue.clear()
        web, self.web = self.web, None
        if web is not None:
            web.socket_lost(self)

    # -- SocketLike -----------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        if self.closed or self.transport is None:
            return
        try:
            self.transport.sendTextMessage(text)
        except LocalProtocolError:
            # The browser's close frame came in: nothing more can be sent,
            # and the TCP close follows (then the session waits for a resume).
            self.closed = True

    def close(self, code: int = 1000) -> None:
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        if self.transport is not None:
            try:
                self.transport.loseConnection(code)
            except LocalProtocolError:
                # The browser's close frame came first: the TCP close follows.
                self.transport.transport.loseConnection()

    # -- requests -------------------------------------------------------------------------

    def _pump(self) -> None:
        while self._queue and not self._busy and not self.closed:
            text = self._queue.popleft()
            waiting = self._handle_now(text)
            if waiting is None:
                continue
            self._busy = True
            waiting.addErrback(
                lambda f: self.log.failure("web: request from {peer}", f, peer=self.peer)
            )
            waiting.addBoth(self._handled)

    def _handle_now(self, text: str) -> Deferred[None] | None:
        """A request answered at once (most IMs: no coroutine, no Deferred),
        or the Deferred of one still being answered."""
        try:
            request = parse_request(text)
        except WebError as e:
            self._answer_error(getattr(e, "request_id", None), e)
            return None
        if request.command != "send_im" or self.web is None:
            return Deferred.fromCoroutine(self._handle(request))
        try:
            result = self.service.send_im(self.web, dict(request.parameters))
        except WebError as e:
            self._answer_error(request.id, e)
            return None
        except Exception:
            self.log.failure("web: send_im from {peer} failed", peer=self.peer)
            self._answer_error(request.id, WebError(messages.SESSION_ERROR, "the server failed"))
            return None
        if not isinstance(result, Deferred):
            self.send_text(messages.success(request.id, result, self._now_ms()))
            return None

        def answered(value: dict[str, Any]) -> None:
            self.send_text(messages.success(request.id, value, self._now_ms()))

        def refused(failure: Failure) -> None:
            if failure.check(WebError):
                self._answer_error(request.id, failure.value)  # type: ignore[arg-type]
                return
            self.log.failure("web: send_im from {peer} failed", failure, peer=self.peer)
            self._answer_error(request.id, WebError(messages.SESSION_ERROR, "the server failed"))

        return result.addCallbacks(answered, refused)

    def _handled(self, _: object) -> None:
        self._busy = False
        self._pump()

    async def _handle(self, request: Request) -> None:
        try:
            result, then = await self._dispatch(request)
        except WebError as e:
            self._answer_error(request.id, e)
            return
        except Exception:
            self.log.failure(
                "web: {command} from {peer} failed", command=request.command, peer=self.peer
            )
            self._answer_error(request.id, WebError(messages.SESSION_ERROR, "the server failed"))
            return
        self.send_text(messages.success(request.id, result, self._now_ms()))
        if then is not None:
            then()

    def _answer_error(self, request_id: Any, error: WebError) -> None:
        self.send_text(messages.failure(request_id, error, self._now_ms()))

    def _now_ms(self) -> int:
        return int(self.service.clock.seconds() * 1000)

    async def _dispatch(self, request: Request) -> tuple[Any, Any]:
        command, parameters = request.command, dict(request.parameters)
        service = self.service
        if command == "create_session":
            return await self._create(parameters), None
        if command == "restore_session":
            return self._restore(parameters)
        if command == "server_info":
            return service.server_info(), None
        if command == "sign_up":
            return await service.sign_up(parameters, self.peer), None
        web = self.web
        if web is None:
            raise WebError(messages.UNAUTHORIZED, "sign on first (create_session)")
        if command == "close_session":
            return {}, lambda: web.end("closed")
        if command == "ack":
            web.ack(parameters["seq"])
            return {}, None
        if command == "get_session_info":
            service.check_rate(web, FoodGroup.OSERVICE, OService.USER_INFO_QUERY)
            return service.session_info(web), None
        if command == "get_session_statistics":
            service.check_rate(web, FoodGroup.OSERVICE, OService.USER_INFO_QUERY)
            return service.session_statistics(web), None
        if command == "list_client_sessions":
            service.check_rate(web, FoodGroup.OSERVICE, OService.USER_INFO_QUERY)
            return service.client_sessions(web), None
        if command == "get_history":
            service.check_rate(web, FoodGroup.OSERVICE, OService.USER_INFO_QUERY)
            return await service.history(web, parameters), None
        if command == "get_buddy_list":
            return await service.buddy_list(web), None
        if command == "typing":
            return await service.typing(web, parameters), None
        if command == "update_session_state":
            return await service.update_state(web, parameters), None
        if command == "warn":
            return await service.warn(web, parameters), None
        if command == "join_room":
            return await service.rooms.join(web, parameters), None
        if command == "leave_room":
            return service.rooms.leave_named(web, parameters), None
        if command == "say":
            return await service.rooms.say(web, parameters), None
        if command == "add_buddy":
            return await service.add_buddy(web, parameters), None
        if command == "remove_buddy":
            return await service.remove_buddy(web, parameters), None
        if command == "sign_off_location":
            service.check_rate(web, FoodGroup.OSERVICE, OService.USER_INFO_QUERY)
            return await service.sign_off_location(web, parameters), None
        raise WebError(messages.VALIDATION, f"unknown command: {command}")

    async def _create(self, parameters: dict[str, Any]) -> dict[str, Any]:
        if self.web is not None:
            raise WebError(messages.SESSION_ERROR, "this socket holds a session already")
        web = await self.service.create_session(parameters, self.peer)
        if self.closed:
            # The socket went while the login was checked: keep the session
            # for a resume, as if it had dropped a moment later.
            web.attach(self)
            web.socket_lost(self)
            raise WebError(messages.SESSION_ERROR, "the socket closed")
        web.attach(self)
        self.web = web
        buddy_list = await self.service.start(web)
        instance = web.instance
        assert instance is not None
        user = self.service.server.registry.user_of(instance)
        return {
            "session_id": web.session_id,
            "resume_token": web.resume_token,
            "screen_name": user.screen_name if user else parameters["screen_name"],
            "instance_id": instance.instance_id,
            "resume_seconds": int(web.resume_seconds),
            "buddy_list": buddy_list,
        }

    def _restore(self, parameters: dict[str, Any]) -> tuple[Any, Any]:
        if self.web is not None:
            raise WebError(messages.SESSION_ERROR, "this socket holds a session already")
        web, missed = self.service.restore(
            parameters["session_id"], parameters["resume_token"], parameters["last_seq"]
        )
        previous = web.socket
        if previous is not None and previous is not self:
            # Resumed from elsewhere while the old socket still looked open.
            web.socket = None
            previous.close(CLOSE_TAKEN_OVER)
        web.attach(self)
        self.web = web
        web.resumes += 1
        web.ack(parameters["last_seq"])

        def replay() -> None:
            for text in missed:
                self.send_text(text)

        return {
            "session_id": web.session_id,
            "resume_token": web.new_token(),
            "replayed": len(missed),
        }, replay
