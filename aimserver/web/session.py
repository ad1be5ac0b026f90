# -*- test-case-name: tests.test_e2e_web -*-
"""A browser session: one session instance that outlives its WebSocket.

``WebSession`` is what the registry holds (an ``ISessionConnection``, like a
BOS connection): the services hand it events, which it numbers (``seq``) and
keeps until the browser acks them, bounded. A socket (``web.socket``) is
attached to it while the browser is connected; when the socket drops, the
session stays for ``resume_seconds`` and keeps what it is sent, so a socket
that comes back with the resume token (``restore_session``) takes over the
same instance and is replayed what it missed: buddies see no departure and
arrival, nothing is lost or doubled. After the window it signs off as any
session does.
"""

from __future__ import annotations

import hmac
import os
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from aimserver.registry import ISessionConnection, SessionInstance
from aimserver.services.events import Event, FeedbagSynced
from aimserver.web import messages
from aimserver.web.render import render
from aimserver.wire.codes import DisconnectReason

#: Events kept for a resume, per session: past this many unacked, the
#: oldest are dropped and a resume from before them is told to reload.
MAX_KEPT_EVENTS = 1000
#: ... and past this many bytes of them: an IM event can be ~48 KB (control
#: characters escaped to six bytes), so 1,000 could pin ~48 MB per browser
#: that stops acking.
MAX_KEPT_BYTES = 1024 * 1024
#: Client message ids remembered per session (idempotent sends).
MAX_REMEMBERED_SENDS = 256
#: Why a session ended, as ``session_ended`` says it.
END_REASONS = {
    int(DisconnectReason.SIGNED_ON_ELSEWHERE): "signed_on_elsewhere",
    int(DisconnectReason.ACCOUNT_DELETED): "deleted",
}


class SocketLike:
    """What a session needs of its socket (``web.socket.WebSocketConnection``)."""

    def send_message(self, data: bytes) -> None:
        """One message (UTF-8 JSON) to the browser."""
        raise NotImplementedError

    def close(self, code: int = 1000) -> None:
        raise NotImplementedError


@implementer(ISessionConnection)
class WebSession:
    log = Logger()

    def __init__(
        self,
        session_id: str,
        clock: IReactorTime,
        resume_seconds: float,
        on_end: Callable[[WebSession], None],
    ) -> None:
        self.session_id = session_id
        self.clock = clock
        self.resume_seconds = resume_seconds
        self.on_end = on_end
        #: The registry's instance, once signed on.
        self.instance: SessionInstance | None = None
        self.socket: SocketLike | None = None
        self.resume_token = _new_token()
        self.seq = 0
        #: The events the browser has not acked, oldest first: the last is
        #: number ``seq``, and the ones before it count down from there (no
        #: tuple per event: bytes alone are nothing the garbage collector
        #: has to look at, bench S13).
        self.kept: deque[bytes] = deque()
        self.kept_bytes = 0
        #: Events up to here were dropped unacked: a resume from before them
        #: cannot be replayed in full.
        self.dropped_through = 0
        #: client_message_id -> the answer's result (idempotent sends), and
        #: the ids in the order remembered (made at the first send).
        self.sends: dict[str, Any] = {}
        self._send_order: deque[str] | None = None
        self._closing = False
        self._expiry: IDelayedCall | None = None
        #: What get_session_statistics reports.
        self.created_at = clock.seconds()
        self.resumes = 0
        self.ims_sent = 0
        self.ims_received = 0
        #: Its places in chat rooms (``web.rooms``), by lower-case room name.
        self.rooms: dict[str, Any] = {}
        #: Takes a place out of its room (set by the service).
        self.leave_room: Callable[[Any], None] | None = None
        #: The browser that holds it (``web.devices``), if it said.
        self.device_id: str | None = None
        #: The screen name as the account spells it, once signed on.
        self.screen_name = ""
        #: Why the session ended, once it has.
        self.end_reason: str | None = None
        #: Called when another session edits the stored list (the service
        #: then pushes the new list, once per edit).
        self.on_list_changed: Callable[[WebSession], None] | None = None
        self.list_refresh_pending = False
        #: Called with each IM this session is handed (the service keeps it
        #: in the user's history, once however many sessions get it).
        self.on_im: Callable[[WebSession, Event, dict[str, Any], float], None] | None = None

    # -- ISessionConnection --------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self._closing

    def send_event(self, event: Event) -> None:
        if self._closing:
            return
        if isinstance(event, FeedbagSynced):
            # Another session edited the stored list: the browser gets the
            # whole new list, not the edit's items.
            if self.on_list_changed is not None:
                self.on_list_changed(self)
            return
        now = self.clock.seconds()
        rendered = render(event, now)
        if rendered is None:
            return
        name, fields = rendered
        self.push(name, fields, now)
        if name == "im":
            self.ims_received += 1
            if not fields["system"] and self.on_im is not None:
                self.on_im(self, event, fields, now)

    def disconnect(self, reason: int | None) -> None:
        """The server ends the session (displaced, kicked, deleted)."""
        self.end(END_REASONS.get(reason or 0, "kicked"))

    # -- events ---------------------------------------------------------------------------

    def push(self, name: str, fields: dict[str, Any], now: float | None = None) -> None:
        """An event for the browser: numbered, kept until acked, sent if a
        socket is attached. ``now``, if the caller has read the clock."""
        self.seq += 1
        now_ms = self.now_ms() if now is None else int(now * 1000)
        data = messages.event(name, self.seq, now_ms, fields)
        self.kept.append(data)
        self.kept_bytes += len(data)
        if len(self.kept) > MAX_KEPT_EVENTS or self.kept_bytes > MAX_KEPT_BYTES:
            self._drop_oldest()
        if self.socket is not None:
            self.socket.send_message(data)

    def _drop_oldest(self) -> None:
        """Past a bound, the oldest unacked go (the newest always stays)."""
        kept = self.kept
        while len(kept) > 1 and (len(kept) > MAX_KEPT_EVENTS or self.kept_bytes > MAX_KEPT_BYTES):
            self.dropped_through = self.seq - len(kept) + 1
            self.kept_bytes -= len(kept.popleft())

    def ack(self, seq: int) -> None:
        kept = self.kept
        count = seq - (self.seq - len(kept))  # how many of the kept it covers
        if count <= 0:
            return
        if count >= len(kept):
            kept.clear()
            self.kept_bytes = 0
            return
        popleft = kept.popleft
        dropped = 0
        for _ in range(count):
            dropped += len(popleft())
        self.kept_bytes -= dropped

    def kept_events(self) -> list[tuple[int, bytes]]:
        """``(seq, event)`` of each event kept, oldest first."""
        first = self.seq - len(self.kept) + 1
        return list(enumerate(self.kept, first))

    def replay_after(self, last_seq: int) -> list[bytes] | None:
        """What the browser missed after ``last_seq``, or None when some of
        it was dropped (the browser must reload)."""
        if last_seq < self.dropped_through or last_seq > self.seq:
            return None
        kept = self.kept
        missed = self.seq - last_seq  # the newest this many
        return list(islice(kept, max(0, len(kept) - missed), None))

    # -- sockets --------------------------------------------------------------------------

    def attach(self, socket: SocketLike) -> None:
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None
        self.socket = socket

    def socket_lost(self, socket: SocketLike) -> None:
        """The socket dropped: keep the session for a resume, then end it."""
        if self.socket is not socket or self._closing:
            return
        self.socket = None
        self._expiry = self.clock.callLater(self.resume_seconds, self._expired)

    def _expired(self) -> None:
        self._expiry = None
        self.log.info(
            "web session {session_id} not resumed in {seconds:g}s: signing off",
            session_id=self.session_id,
            seconds=self.resume_seconds,
        )
        self.end("expired")

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(token.encode("utf-8"), self.resume_token.encode("utf-8"))

    def new_token(self) -> str:
        self.resume_token = _new_token()
        return self.resume_token

    # -- the end --------------------------------------------------------------------------

    def end(self, reason: str) -> None:
        """Sign off: tell the browser why (if it is there), close the socket,
        leave the registry."""
        if self._closing:
            return
        if self.socket is not None and reason not in ("closed", "expired"):
            self.push("session_ended", {"reason": reason})
        self._closing = True
        self.end_reason = reason
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None
        socket, self.socket = self.socket, None
        if socket is not None:
            socket.close(1000)
        self.on_end(self)

    # -- idempotent sends -----------------------------------------------------------------

    def remember(self, client_message_id: str, result: Any) -> None:
        self.sends[client_message_id] = result
        order = self._send_order
        if order is None:
            order = self._send_order = deque()
        order.append(client_message_id)
        if len(order) > MAX_REMEMBERED_SENDS:
            # The oldest goes. Not the dict's first key: a dict whose oldest
            # keys are deleted finds its first by passing every deleted slot
            # (400 ns an IM at 256, against 200 for this).
            self.sends.pop(order.popleft(), None)

    def now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)


def _new_token() -> str:
    return os.urandom(24).hex()
