# -*- test-case-name: tests.test_service_events -*-
"""What services push to sessions, as values.

A service says what happened (an IM arrived, a buddy came or went, the user
was warned); each connection kind renders it in its own format: the FLAP
connection as a SNAC (``snac()``: family, subtype and body, the request id
is the connection's own), the browser client as JSON next. A rendering is
built once per event and format and cached on the event, so a fan-out to a
thousand sessions packs once. Pushes go through ``UserRegistry.deliver``,
the one delivery guard.
"""

from __future__ import annotations

import struct

from aimserver.wire.codes import ICBM, Buddy, Chat, FoodGroup, OService

_U16 = struct.Struct("!H")


class Event:
    """A push. Subclasses set ``family``/``subtype``, build the body in
    ``_snac_body`` and set ``_snac = None`` in ``__init__``; their other
    fields are what happened."""

    __slots__ = ("_snac",)
    family: int = 0
    subtype: int = 0
    #: The OSCAR rendering once built (``snac()``); None before. A connection
    #: reads it directly: on a fan-out every recipient after the first does.
    _snac: tuple[int, int, bytes] | None

    def snac(self) -> tuple[int, int, bytes]:
        """The OSCAR rendering: ``(family, subtype, body)``, built once."""
        snac = self._snac
        if snac is None:
            snac = self._snac = (self.family, self.subtype, self._snac_body())
        return snac

    def _snac_body(self) -> bytes:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for cls in type(self).__mro__
            for name in getattr(cls, "__slots__", ())
            if name != "_snac"
        )
        return f"{type(self).__name__}({fields})"


class MessageReceived(Event):
    """04,07: a message for the session (an IM, an auto-response, a stored
    message, a rendezvous, a notice from the system), from ``sender``."""

    __slots__ = ("cookie", "channel", "sender", "tlvs", "text")
    family = int(FoodGroup.ICBM)
    subtype = int(ICBM.CHANNEL_MSG_TO_CLIENT)

    def __init__(
        self, cookie: bytes, channel: int, sender: bytes, tlvs: bytes, text: str | None = None
    ) -> None:
        self._snac = None
        #: The 8-byte ICBM cookie.
        self.cookie = cookie
        self.channel = channel
        #: The sender's packed user-info block, as its watchers see it.
        self.sender = sender
        #: The packed TLVs relayed to the recipient.
        self.tlvs = tlvs
        #: The IM's text, when its sender gave it as text (a browser) and it
        #: is ASCII: exactly what the IM data says, so a browser receiving it
        #: need not decode that. Not on the wire.
        self.text = text

    def _snac_body(self) -> bytes:
        return self.cookie + _U16.pack(self.channel) + self.sender + self.tlvs


class PackedEvent(Event):
    """An event whose one field is its whole body, already packed by the
    service that made it (a user-info block, a relayed 04,14 or 04,0B); the
    class says what it is."""

    __slots__ = ("packed",)

    def __init__(self, packed: bytes) -> None:
        self._snac = None
        self.packed = packed

    def _snac_body(self) -> bytes:
        return self.packed


class TypingRelayed(PackedEvent):
    """04,14: a typing event (or another client event), packed with the
    typing user's name."""

    __slots__ = ()
    family = int(FoodGroup.ICBM)
    subtype = int(ICBM.CLIENT_EVENT)


class ClientErrorRelayed(PackedEvent):
    """04,0B: a client's error report about a message, packed with the
    reporter's name."""

    __slots__ = ()
    family = int(FoodGroup.ICBM)
    subtype = int(ICBM.CLIENT_ERROR)


class BuddyArrived(PackedEvent):
    """03,0B: a watched user is online, or what watchers see of it changed;
    the packed user-info block they see."""

    __slots__ = ()
    family = int(FoodGroup.BUDDY)
    subtype = int(Buddy.ARRIVED)


class BuddyDeparted(PackedEvent):
    """03,0C: a watched user is no longer visible; the departure block (the
    name and a user class of 0)."""

    __slots__ = ()
    family = int(FoodGroup.BUDDY)
    subtype = int(Buddy.DEPARTED)


class SelfInfoChanged(PackedEvent):
    """01,0F pushed: what the session is told about itself changed (its
    warning level decayed); its own user-info block."""

    __slots__ = ()
    family = int(FoodGroup.OSERVICE)
    subtype = int(OService.USER_INFO_UPDATE)


class Warned(Event):
    """01,10: the user's warning level is now ``level``; ``warner`` is the
    packed user-info block of who warned, or None (anonymous, or decay)."""

    __slots__ = ("level", "warner")
    family = int(FoodGroup.OSERVICE)
    subtype = int(OService.EVIL_NOTIFICATION)

    def __init__(self, level: int, warner: bytes | None) -> None:
        self._snac = None
        self.level = level
        self.warner = warner

    def _snac_body(self) -> bytes:
        return _U16.pack(self.level) + (self.warner or b"")


class FeedbagSynced(Event):
    """13,08/13,09/13,0A (the items as stored) or 13,11/13,12 (cluster
    bounds), pushed to a user's other sessions when one session edits the
    shared list (MULTISESSION.md §13)."""

    __slots__ = ("edit", "packed")
    family = int(FoodGroup.FEEDBAG)

    def __init__(self, edit: int, packed: bytes) -> None:
        self._snac = None
        #: The subtype of the edit the session made.
        self.edit = edit
        self.packed = packed

    def snac(self) -> tuple[int, int, bytes]:
        snac = self._snac
        if snac is None:
            snac = self._snac = (self.family, self.edit, self.packed)
        return snac


class ChatUsersJoined(PackedEvent):
    """0E,03 on a chat connection: members now in the room (the roster for
    a joiner, the joiner for the others); their packed user-info blocks."""

    __slots__ = ()
    family = int(FoodGroup.CHAT)
    subtype = int(Chat.USERS_JOINED)


class ChatUsersLeft(PackedEvent):
    """0E,04: members gone from the room; their packed user-info blocks."""

    __slots__ = ()
    family = int(FoodGroup.CHAT)
    subtype = int(Chat.USERS_LEFT)


class ChatRoomInfo(PackedEvent):
    """0E,02: what the room is and its limits, packed once per room."""

    __slots__ = ()
    family = int(FoodGroup.CHAT)
    subtype = int(Chat.ROOM_INFO_UPDATE)


class ChatMessageReceived(PackedEvent):
    """0E,06: a member's line (or whisper), packed once for every recipient."""

    __slots__ = ()
    family = int(FoodGroup.CHAT)
    subtype = int(Chat.CHANNEL_MSG_TO_CLIENT)
