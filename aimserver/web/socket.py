# -*- test-case-name: tests.test_e2e_web -*-
"""One browser WebSocket after the HTTP upgrade: it reads the browser's
frames, answers requests in order, and carries its session's events.

The upgrade is Twisted's (``site.WebSocketUpgrade``); the frames are read
and written by ``frames.py`` rather than wsproto, at about a seventh of the
CPU (bench S13). What the connection writes during a reactor turn goes out
at its end in one ``send()`` (``protocols/turnwriter.py``), as a BOS
connection's does.

Requests are handled one at a time, in the order they came, so answers come
in that order too; at most ``MAX_QUEUED`` wait (a flood closes the socket
with 1008). A message over ``messages.MAX_MESSAGE_BYTES`` closes it with
1009 as soon as its frame header says so. A browser that reads too slowly
(over ``MAX_BUFFERED_BYTES`` waiting in the server) loses the socket; its
session keeps the events for a resume.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from zope.interface import implementer

from aimserver.protocols.turnwriter import TurnBatched, TurnWriter, batchable, send_now
from aimserver.web import messages
from aimserver.web.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    FrameReader,
    close_payload,
    frame,
    parse_close,
)
from aimserver.web.messages import Request, WebError, parse_request
from aimserver.web.service import WebService
from aimserver.web.session import SocketLike, WebSession
from aimserver.wire.codes import FoodGroup, OService

MAX_QUEUED = 32
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
#: A session taken over by a resume on another socket.
CLOSE_TAKEN_OVER = 4000
#: Bytes the server holds for one browser that does not read.
MAX_BUFFERED_BYTES = 4 * 1024 * 1024


@implementer(IProtocol)
class WebSocketConnection(TurnBatched, SocketLike):
    log = Logger()

    def __init__(
        self,
        service: WebService,
        peer: str,
        writer: TurnWriter | None = None,
        input_guard: Any = None,
    ) -> None:
        self.service = service
        self.peer = peer
        self.writer = writer
        self.input_guard = input_guard
        self.transport: Any = None
        self.web: WebSession | None = None
        self.closed = False
        self._reader = FrameReader(messages.MAX_MESSAGE_BYTES)
        self._queue: deque[bytes] = deque()
        self._busy = False
        self._close_sent = False
        #: The TCP transport under the HTTP channel's wrappers.
        self._raw: Any = None

    # -- IProtocol (bytes, after the upgrade) ---------------------------------------------

    def makeConnection(self, transport: Any) -> None:  # noqa: N802
        self.transport = transport
        self.connectionMade()

    def connectionMade(self) -> None:  # noqa: N802
        raw = self.transport
        while isinstance(raw, ProtocolWrapper):
            raw = raw.transport
        self._raw = raw
        self._batched = batchable(self.writer, raw)
        set_no_delay = getattr(raw, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        if self.input_guard is not None:
            # The frame reader bounds what is buffered from here on.
            self.input_guard.upgraded()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.closed:
            return
        try:
            items = self._reader.feed(data)
        except FrameError as e:
            self.log.info(
                "web: {peer} broke the WebSocket protocol ({code}): {reason}",
                peer=self.peer,
                code=e.code,
                reason=e.reason,
            )
            self.close(e.code)
            return
        for opcode, payload in items:
            if self.closed:
                return
            if opcode == OP_TEXT:
                if self._busy or self._queue:
                    self._enqueue(payload)
                else:
                    # Answered now (inline: every browser IM comes here).
                    waiting = self._handle_now(payload)
                    if waiting is not None:
                        self._wait(waiting)
            elif opcode == OP_PING:
                self._send(frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                self._close_received(payload)
            elif opcode == OP_BINARY:
                self._answer_error(None, WebError(messages.VALIDATION, "messages are JSON text"))
            # OP_PONG: nothing to do (the server sends no pings).

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        self.closed = True
        self._queue.clear()
        self._turn = None
        web, self.web = self.web, None
        if web is not None:
            web.socket_lost(self)

    def _close_received(self, payload: bytes) -> None:
        """The browser closes: the same code back (RFC 6455 §5.5.1), then the
        TCP close."""
        try:
            code, _ = parse_close(payload)
        except FrameError as e:
            self.close(e.code)
            return
        self.close(CLOSE_NORMAL if code is None else code)

    # -- writing --------------------------------------------------------------------------

    def flush_turn(self) -> None:
        """The turn ends: what this socket wrote during it, in one go."""
        data = self._take_turn()
        raw = self._raw
        if data is None or not raw.connected or raw.disconnected:
            return
        send_now(raw, data)
        if raw._tempDataLen + len(raw.dataBuffer) - raw.offset > MAX_BUFFERED_BYTES:
            self.log.info("web: {peer} does not read: dropping the socket", peer=self.peer)
            self.closed = True
            raw.abortConnection()

    # -- SocketLike -----------------------------------------------------------------------

    def send_message(self, data: bytes) -> None:
        if not self.closed:
            self._send(frame(OP_TEXT, data))

    def close(self, code: int = CLOSE_NORMAL) -> None:
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        if self.transport is None:
            return
        if not self._close_sent:
            self._close_sent = True
            self._send(frame(OP_CLOSE, close_payload(code)))
        self.flush_turn()
        self.transport.loseConnection()

    # -- requests -----------------------------------------------------------------------

    def _enqueue(self, payload: bytes) -> None:
        """A request while an earlier one is still waiting: answered after it."""
        if len(self._queue) >= MAX_QUEUED:
            self.log.info("web: {peer} floods requests: closing", peer=self.peer)
            self.close(CLOSE_POLICY)
            return
        self._queue.append(payload)

    def _wait(self, waiting: Deferred[None]) -> None:
        self._busy = True
        waiting.addErrback(
            lambda f: self.log.failure("web: request from {peer}", f, peer=self.peer)
        )
        waiting.addBoth(self._handled)

    def _handled(self, _: object) -> None:
        self._busy = False
        while self._queue and not self._busy and not self.closed:
            waiting = self._handle_now(self._queue.popleft())
            if waiting is not None:
                self._wait(waiting)

    def _handle_now(self, text: bytes) -> Deferred[None] | None:
        """A request answered at once (most IMs: no coroutine, no Deferred),
        or the Deferred of one still being answered."""
        try:
            request = parse_request(text)
        except WebError as e:
            self._answer_error(getattr(e, "request_id", None), e)
            return None
        request_id, command, parameters = request
        web = self.web
        if web is None or (command != "send_im" and command != "ack"):
            return Deferred.fromCoroutine(self._handle(request))
        if command == "ack":
            # Every few events from every browser: no coroutine either.
            web.ack(parameters["seq"])
            self.send_message(messages.success(request_id, {}, self._now_ms()))
            return None
        try:
            result = self.service.send_im(web, parameters)  # type: ignore[arg-type]
        except WebError as e:
            self._answer_error(request_id, e)
            return None
        except Exception:
            self.log.failure("web: send_im from {peer} failed", peer=self.peer)
            self._answer_error(request_id, WebError(messages.SESSION_ERROR, "the server failed"))
            return None
        if type(result) is dict:
            self.send_message(messages.success(request_id, result, self._now_ms()))
            return None
        assert isinstance(result, Deferred)

        def answered(value: dict[str, Any]) -> None:
            self.send_message(messages.success(request_id, value, self._now_ms()))

        def refused(failure: Failure) -> None:
            if failure.check(WebError):
                self._answer_error(request_id, failure.value)  # type: ignore[arg-type]
                return
            self.log.failure("web: send_im from {peer} failed", failure, peer=self.peer)
            self._answer_error(request_id, WebError(messages.SESSION_ERROR, "the server failed"))

        return result.addCallbacks(answered, refused)

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
        self.send_message(messages.success(request.id, result, self._now_ms()))
        if then is not None:
            then()

    def _answer_error(self, request_id: Any, error: WebError) -> None:
        self.send_message(messages.failure(request_id, error, self._now_ms()))

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
            for data in missed:
                self.send_message(data)

        return {
            "session_id": web.session_id,
            "resume_token": web.new_token(),
            "replayed": len(missed),
        }, replay
