# -*- test-case-name: tests.test_e2e_chat -*-
"""A chat connection: one session's place in one room, on the chat port.

It signs on like any service connection of a session (a login cookie from
the session's 01,04, naming the room), is placed in the room by the chat
service, and hands every SNAC to it with its member. Its close is the
member's leave."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.python.failure import Failure

from aimserver.protocols.bos import BosConnection, BosFactory
from aimserver.services.base import then
from aimserver.services.chat import ChatService
from aimserver.services.chat_rooms import Member
from aimserver.services.session import Attached
from aimserver.wire.codes import FoodGroup


class ChatConnection(BosConnection):
    service_name = "chat"

    def __init__(self, factory: ChatFactory) -> None:
        super().__init__(factory)
        self.chat = factory.chat
        self.member: Member | None = None

    def _attached(self, attached: Attached) -> Any:
        # Known now, so that a close while the room is looked up still
        # takes the connection off its session.
        self.session = attached.session
        placed = self.chat.attach(attached.session, self, attached.room)
        return then(placed, self._placed, attached)

    def _placed(self, member: Member, attached: Attached) -> None:
        self.member = member
        super()._attached(attached)

    def call_handler(self, handler: Callable[..., Any], *args: Any) -> Any:
        member = self.member
        if member is None:
            return handler(*args)
        return handler(member, *args)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        super().connectionLost(reason)
        member, self.member = self.member, None
        if member is not None:
            self.chat.member_gone(member)


class ChatFactory(BosFactory):
    """The chat listener: it redeems chat cookies only."""

    protocol = ChatConnection  # type: ignore[assignment]

    def __init__(self, *, chat: ChatService, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chat = chat
        self.families = (int(FoodGroup.CHAT),)

    def make_connection(self) -> ChatConnection:
        return ChatConnection(self)
