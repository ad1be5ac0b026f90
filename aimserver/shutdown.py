# -*- test-case-name: tests.test_e2e_shutdown -*-
"""A clean shutdown (SIGTERM): every session is closed with a FLAP
channel-4 frame, as a client expects of a server going away, before the
store stops (it is the first service ``tap`` started, so the last to stop),
instead of connections simply dropping when the reactor ends."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

#: Seconds the shutdown waits for the closed sessions to be gone.
GRACE = 2.0
_POLL = 0.05


class CloseSessionsOnStop(Service):
    log = Logger()

    def __init__(self, registry: Any, clock: IReactorTime, grace: float = GRACE) -> None:
        self.registry = registry
        self.clock = clock
        self.grace = grace

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        sessions = [s for user in list(self.registry) for s in list(user.instances.values())]
        if not sessions:
            return None
        self.log.info("shutting down: closing {count} sessions", count=len(sessions))
        for session in sessions:
            session.connection.disconnect(None)
        deadline = self.clock.seconds() + self.grace
        done: Deferred[None] = Deferred()

        def poll() -> None:
            if not self.registry.users or self.clock.seconds() >= deadline:
                loop.stop()

        loop = LoopingCall(poll)
        loop.clock = self.clock
        loop.start(_POLL).addBoth(lambda _: done.callback(None))
        return done
