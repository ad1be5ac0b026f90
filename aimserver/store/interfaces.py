# -*- test-case-name: tests.test_store -*-
# zope.interface methods have no self:
# ruff: noqa: N805
"""
The contract between the server and whatever keeps user-level data: one
interface per role (accounts, warning levels, feedbags, offline messages,
server secrets, directory records, BART items, public chat rooms, MOTDs
seen, conversation history) and :class:`IUserStore`, all of them at once.

Everything here is free of Twisted at import time so that the pure modules
(:mod:`aimserver.passwords`) can share the error types and value classes.
Implementations: :mod:`aimserver.store.memory` (tests, the reference) and
:mod:`aimserver.store.sqlite` (the embedded default), each assembled from one
mixin per role; a role's two mixins live together in its own module
(:mod:`~aimserver.store.accounts`, :mod:`~aimserver.store.warning_levels`,
:mod:`~aimserver.store.feedbags`, :mod:`~aimserver.store.offline_messages`,
:mod:`~aimserver.store.server_secrets`, :mod:`~aimserver.store.directory`,
:mod:`~aimserver.store.bart_items`, :mod:`~aimserver.store.chat_rooms`,
:mod:`~aimserver.store.motd`, :mod:`~aimserver.store.history`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import attrs
from zope.interface import Interface
from zope.interface.interface import InterfaceClass

from aimserver.wire.bart import TYPE_BUDDY_ICON
from aimserver.wire.roomname import InvalidRoomName, room_key, room_name
from aimserver.wire.screenname import normalize

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

__all__ = [
    "Credentials",
    "DEFAULT_REGISTRATION_STATUS",
    "DIGEST_SIZE",
    "DIRECTORY_TEXT_FIELDS",
    "EMPTY_FEEDBAG_SUMMARY",
    "ICBM_COOKIE_SIZE",
    "MAX_AUTH_KEY_LENGTH",
    "MAX_BART_ITEMS_PER_ACCOUNT",
    "MAX_BART_ITEM_BYTES",
    "MAX_DIRECTORY_FIELD_BYTES",
    "MAX_EMAIL_LENGTH",
    "MAX_FEEDBAG_ITEMS",
    "MAX_HISTORY_LIMIT",
    "MAX_HISTORY_PEER_BYTES",
    "MAX_HISTORY_TEXT_BYTES",
    "MAX_INTEREST_KEYWORDS",
    "MAX_ITEM_ATTRIBUTES_BYTES",
    "MAX_ITEM_NAME_BYTES",
    "MAX_OFFLINE_BYTES_PER_RECIPIENT",
    "MAX_OFFLINE_BYTES_PER_SENDER",
    "MAX_OFFLINE_MESSAGES_PER_RECIPIENT",
    "MAX_OFFLINE_MESSAGES_PER_SENDER",
    "MAX_OFFLINE_MESSAGE_BYTES",
    "MAX_OFFLINE_SENDER_BYTES",
    "MAX_PUBLIC_ROOMS",
    "MAX_SEARCH_LIMIT",
    "MAX_SECRET_NAME_BYTES",
    "MAX_SECRET_SIZE",
    "MAX_WARNING_LEVEL",
    "REGISTRATION_FULL",
    "REGISTRATION_LIMITED",
    "REGISTRATION_NONE",
    "SEARCHABLE_FIELDS",
    "USER_STORE_ROLES",
    "Account",
    "AccountExists",
    "DirectoryEntry",
    "DirectoryFields",
    "DirectoryInfo",
    "DirectoryQuery",
    "Feedbag",
    "FeedbagSummary",
    "FeedbagItem",
    "HistoryEntry",
    "HistoryRecord",
    "IAccountStore",
    "IBartStore",
    "IChatRoomStore",
    "IMotdStore",
    "check_motd_digest",
    "IDirectoryStore",
    "IFeedbagStore",
    "IHistoryStore",
    "IOfflineMessageStore",
    "ISecretStore",
    "IUserStore",
    "IWarningStore",
    "InvalidEmail",
    "InvalidPassword",
    "InvalidRoomNameError",
    "InvalidScreenName",
    "NoSuchAccount",
    "OfflineInboxBytesFull",
    "OfflineInboxFull",
    "OfflineInboxMessagesFull",
    "OfflineMessage",
    "OfflineSenderBytesFull",
    "OfflineSenderMessagesFull",
    "PublicRoom",
    "RoomExists",
    "StoreError",
    "TooManyRooms",
    "account_now",
    "check_bart_hash",
    "check_bart_item",
    "check_bart_type",
    "check_credentials",
    "check_directory_fields",
    "check_directory_query",
    "check_email",
    "check_feedbag_item",
    "check_history_entry",
    "check_history_pruning",
    "check_history_query",
    "check_interest_keywords",
    "check_offline_message",
    "check_offline_quota",
    "check_public_room",
    "check_public_room_count",
    "check_up_to_id",
    "check_registration_status",
    "check_search_limit",
    "check_secret_request",
    "check_warning",
    "public_room_key",
]

# Bounds that every implementation enforces, so that a client (or a bug)
# cannot grow one user's record without limit. The feedbag service applies
# the tighter per-class limits it announces in 13,03; these are a backstop.
MAX_ITEM_NAME_BYTES = 255
MAX_ITEM_ATTRIBUTES_BYTES = 8 * 1024
MAX_FEEDBAG_ITEMS = 4096
MAX_SECRET_NAME_BYTES = 255
MAX_SECRET_SIZE = 1024
MAX_AUTH_KEY_LENGTH = 255
DIGEST_SIZE = 16
MAX_WARNING_LEVEL = 1000
"""Warning levels are tenths of a percent: 0 (none) to 1000 (100%)."""
MAX_OFFLINE_MESSAGE_BYTES = 8 * 1024
"""The most TLV bytes one offline message may carry."""
# The offline inbox of one recipient is shared by everyone who writes to them,
# so it has caps of its own and a smaller share for each sender: one sender
# filling their share leaves the rest of the inbox to the others. It takes at
# least 5 senders to fill an inbox by count (100 / 20) and 4 to fill it by bytes
# (256 KiB / 64 KiB). Bytes are those of the TLV blocks (``OfflineMessage.tlvs``);
# the rest of a message is at most MAX_OFFLINE_SENDER_BYTES + 8 + a few ints.
MAX_OFFLINE_MESSAGES_PER_RECIPIENT = 100
"""The most messages waiting for one recipient, from everyone together."""
MAX_OFFLINE_BYTES_PER_RECIPIENT = 256 * 1024
"""The most TLV bytes waiting for one recipient, from everyone together: 100
ordinary IMs (a few hundred bytes each) fit many times over, 32 of the biggest
(:data:`MAX_OFFLINE_MESSAGE_BYTES`) fill it. It bounds what one account can hold
on disk and what the first session to sign on is sent in one go."""
MAX_OFFLINE_MESSAGES_PER_SENDER = 20
"""The most messages one sender may have waiting for one recipient: a fifth of
the inbox, still a long backlog of "while you were away" IMs from one person."""
MAX_OFFLINE_BYTES_PER_SENDER = 64 * 1024
"""The most TLV bytes one sender may have waiting for one recipient: a quarter of
:data:`MAX_OFFLINE_BYTES_PER_RECIPIENT`, 3.2 KiB a message at the message cap
(ordinary IMs are far smaller), or 8 of the biggest messages."""
MAX_OFFLINE_SENDER_BYTES = 255
ICBM_COOKIE_SIZE = 8
MAX_DIRECTORY_FIELD_BYTES = 128
"""The longest value of one directory field or interest keyword: 64 characters
even in UTF-16, more than any AIM client's form takes."""
MAX_INTEREST_KEYWORDS = 5
"""Interest keywords per user: as many as the AIM clients' forms offer."""
MAX_BART_ITEM_BYTES = 16 * 1024
"""The biggest BART item (buddy icon) kept: twice the 7 KiB that AIM's own
clients and libpurple allow an icon, so whatever a client sends fits."""
MAX_BART_ITEMS_PER_ACCOUNT = 8
"""Uploads each account owns, newest first: a ninth drops the oldest, and an
item nobody owns is removed. An account holds at most 8 x 16 KiB of icons."""
MAX_EMAIL_LENGTH = 254
"""The longest e-mail address an account may have: what fits an SMTP path
(RFC 5321: 256 octets with its angle brackets)."""
REGISTRATION_NONE = 1
"""Registration status (Admin 07,04 tag 0x0013): nobody finds the account by
its e-mail address."""
REGISTRATION_LIMITED = 2
"""Whoever knows the account's e-mail address may find it by that address."""
REGISTRATION_FULL = 3
"""As :data:`REGISTRATION_LIMITED`: this server never shows an address to
anyone but its owner, so the two differ only in what the user chose."""
DEFAULT_REGISTRATION_STATUS = REGISTRATION_LIMITED
"""What a new account (and every account from before schema v7) has."""
MAX_SEARCH_LIMIT = 1000
"""The most results one directory search or keyword listing may ask for."""
MAX_PUBLIC_ROOMS = 10_000
"""The most public chat rooms an administrator may create: the exchange's
whole list stays small enough to read at once."""
MAX_HISTORY_TEXT_BYTES = 8000
"""The longest text (UTF-8 bytes) one conversation history entry keeps."""
MAX_HISTORY_PEER_BYTES = 255
"""The longest peer screen name (UTF-8 bytes) a history entry keeps."""
MAX_HISTORY_LIMIT = 1000
"""The most history entries one read may ask for."""
_U16_MAX = 0xFFFF
# Times and ids must fit SQLite's signed 64-bit INTEGER.
_TIMESTAMP_MAX = 2**63 - 1


class StoreError(Exception):
    """
    A store operation failed. Every error a store reports is one of these;
    the subclasses are the ones a caller is expected to handle.
    """


class AccountExists(StoreError):  # noqa: N818 (the name is the API)
    """The screen name (in any case/spacing) is already registered."""


class NoSuchAccount(StoreError):  # noqa: N818 (the name is the API)
    """The operation needs an account, and there is none by that name."""


class InvalidScreenName(StoreError):  # noqa: N818 (the name is the API)
    """The screen name breaks the AIM / ICQ naming rules."""


class InvalidPassword(StoreError):  # noqa: N818 (the name is the API)
    """The password breaks the length rules."""


class InvalidEmail(StoreError):  # noqa: N818 (the name is the API)
    """The e-mail address is not one an account may have (:func:`check_email`)."""


class InvalidRoomNameError(StoreError, InvalidRoomName):
    """The chat room name breaks the room naming rules
    (:func:`~aimserver.wire.roomname.room_name`, whose message it keeps). It
    is also an :class:`~aimserver.wire.roomname.InvalidRoomName`, so code
    that checks names itself may catch that one for both."""


class RoomExists(StoreError):  # noqa: N818 (the name is the API)
    """A public chat room by that name (in any case/spacing) already exists."""


class TooManyRooms(StoreError):  # noqa: N818 (the name is the API)
    """There are already :data:`MAX_PUBLIC_ROOMS` public chat rooms."""


class OfflineInboxFull(StoreError):  # noqa: N818 (the name is the API)
    """
    An offline message was refused because it would go over one of the inbox
    caps; nothing was stored. Stores raise one of the subclasses, which says
    which cap (:attr:`cap`, for logs); callers may handle them all as this.
    """

    cap = "offline inbox"
    """Which cap was hit, in a few words (for logs)."""


class OfflineInboxMessagesFull(OfflineInboxFull):  # noqa: N818 (the name is the API)
    """The recipient already has :data:`MAX_OFFLINE_MESSAGES_PER_RECIPIENT` messages waiting."""

    cap = "messages per recipient"


class OfflineInboxBytesFull(OfflineInboxFull):  # noqa: N818 (the name is the API)
    """The message would take the recipient past :data:`MAX_OFFLINE_BYTES_PER_RECIPIENT`."""

    cap = "bytes per recipient"


class OfflineSenderMessagesFull(OfflineInboxFull):  # noqa: N818 (the name is the API)
    """The sender already has :data:`MAX_OFFLINE_MESSAGES_PER_SENDER` messages
    waiting for this recipient."""

    cap = "messages per sender"


class OfflineSenderBytesFull(OfflineInboxFull):  # noqa: N818 (the name is the API)
    """The message would take what the sender has waiting for this recipient past
    :data:`MAX_OFFLINE_BYTES_PER_SENDER`."""

    cap = "bytes per sender"


@attrs.frozen
class Credentials:
    """A fresh auth key and both digests of one password, and MD5(password)
    when it is known: what a store keeps."""

    auth_key: str = attrs.field(repr=False)
    weak_md5: bytes = attrs.field(repr=False)
    strong_md5: bytes = attrs.field(repr=False)
    password_md5: bytes | None = attrs.field(default=None, repr=False)


@attrs.frozen
class Account:
    """
    One registered screen name and what is needed to check its password.

    The digests are password-equivalent for BUCP logins (LOGIN.md §10), so
    they and the key are kept out of ``repr`` to keep them out of logs.
    """

    screen_name: str
    """The display form, as registered (case and spaces kept)."""
    auth_key: str = attrs.field(repr=False)
    """Random ASCII salt, sent verbatim to clients in 17,07."""
    weak_md5: bytes = attrs.field(repr=False)
    """MD5(auth_key ‖ password ‖ signature)."""
    strong_md5: bytes = attrs.field(repr=False)
    """MD5(auth_key ‖ MD5(password) ‖ signature)."""
    suspended: bool = False
    created_at: int = 0
    """Unix seconds."""
    warning_level: int = 0
    """0 to :data:`MAX_WARNING_LEVEL`, tenths of a percent, as last set: the
    server works out the decay since ``warning_updated_at`` itself."""
    warning_updated_at: int = 0
    """Unix seconds when ``warning_level`` was set; 0 if it never was."""
    bot: bool = False
    """A service bot: the server exempts it from rate limits and warnings.
    Only an administrator sets it (:meth:`IAccountStore.set_bot`)."""
    email: str = ""
    """The account's e-mail address in lower case (:func:`check_email`), or
    ``""`` for none."""
    registration_status: int = DEFAULT_REGISTRATION_STATUS
    """Who may find the account by its e-mail address: :data:`REGISTRATION_NONE`
    (nobody), :data:`REGISTRATION_LIMITED` or :data:`REGISTRATION_FULL`."""
    confirmed: bool = False
    """The user confirmed the account (Admin 07,06); setting a different
    e-mail address clears it."""
    password_md5: bytes | None = attrs.field(default=None, repr=False)
    """MD5(password), 16 raw bytes: checks a strong-hash BUCP login against
    a random challenge (``[auth] allow_weak_hash = false``). ``None`` when
    not known: an account created before it was kept (until its password is
    set again or it makes one roasted login) or registered from a BUCP
    digest. Password-equivalent for BUCP logins, so kept out of ``repr``."""

    @property
    def normalized(self) -> str:
        """The key the account is stored under: no spaces, lower case."""
        return normalize(self.screen_name)


@attrs.frozen
class PublicRoom:
    """
    A public chat room: one an administrator created (exchange 5), kept
    until one deletes it, whether or not anyone is in it.
    """

    name: str
    """The display form, as :func:`~aimserver.wire.roomname.room_name` made
    it (single spaces, none at the ends; case kept)."""
    created_at: int
    """Unix seconds."""

    @property
    def key(self) -> str:
        """The key the room is stored under: names with the same key are one room."""
        return room_key(self.name)


@attrs.frozen
class FeedbagItem:
    """
    One server-stored buddy-list (feedbag) item. ``attributes`` is the raw TLV
    block from the client; the store keeps it byte for byte and never parses it.
    """

    name: str
    group_id: int
    item_id: int
    class_id: int
    attributes: bytes

    @property
    def key(self) -> tuple[int, int]:
        """The (group_id, item_id) pair that identifies the item in its list."""
        return (self.group_id, self.item_id)


@attrs.frozen
class Feedbag:
    """
    A user's whole feedbag, items ordered by (group_id, item_id).
    ``last_modified`` is 0 for a list that was never written.
    """

    items: tuple[FeedbagItem, ...]
    last_modified: int


@attrs.frozen
class FeedbagSummary:
    """
    What a sign-on needs of a stored list, kept next to it so that reading
    it builds no object per item (a 100-item list costs a sign-on several
    times what an empty one does otherwise). The server works it out from
    the whole list at each edit; the store keeps it byte for byte.
    """

    last_modified: int
    count: int
    """How many items the list holds."""
    wire: bytes
    """Every item as the 13,06 carries it, in order."""
    buddies: tuple[str, ...]
    """The buddy items' screen names, normalized, each once."""
    special: bytes
    """The items that are neither buddy nor group (privacy settings, the
    icon, preferences), packed like ``wire``."""


#: The summary of a list never written: no items, last modified 0.
EMPTY_FEEDBAG_SUMMARY = FeedbagSummary(0, 0, b"", (), b"")


@attrs.frozen
class OfflineMessage:
    """
    An IM kept for a user who was signed off when it was sent ("store if
    offline"), to be relayed to the first session that signs on.
    ``tlvs`` is the raw TLV block to relay; the store keeps it byte for byte
    and never parses it.
    """

    message_id: int
    """Assigned by the store: increasing, never reused (not even after deletes)."""
    recipient: str
    """Normalized screen name of the recipient."""
    sender: str
    """The sender's screen name in display form."""
    cookie: bytes
    """The 8-byte ICBM message cookie."""
    channel: int
    """The ICBM channel (16 bits)."""
    tlvs: bytes
    sent_at: int
    """Unix seconds."""


#: One IM's history entry: ``(peer, outgoing, text, at)``, as
#: :meth:`IHistoryStore.add_history` takes them (and
#: :meth:`IHistoryStore.add_history_many`, one after another).
HistoryRecord = tuple[str, bool, str, int]


@attrs.frozen
class HistoryEntry:
    """
    One IM in an account's conversation history, as that account saw it: the
    same conversation shown on every device the account signs on with.
    """

    peer: str
    """The other screen name, as it was given when the entry was recorded."""
    outgoing: bool
    """``True`` if the account sent the IM, ``False`` if it received it."""
    text: str
    at: int
    """Unix seconds."""
    id: int
    """Assigned by the store: the account's count of entries recorded, this
    one included (see :class:`IHistoryStore`)."""


@attrs.frozen
class DirectoryFields:
    """
    The name-and-address part of a user's directory record (Locate 02,09), each
    value as the client sent it: bytes in the client's charset (``charset``,
    when it named one), ``b""`` for a field it left out. The store keeps them
    byte for byte and never decodes them.
    """

    first_name: bytes = b""
    middle_name: bytes = b""
    last_name: bytes = b""
    maiden_name: bytes = b""
    nickname: bytes = b""
    street: bytes = b""
    city: bytes = b""
    state: bytes = b""
    zip_code: bytes = b""
    country: bytes = b""
    charset: bytes = b""
    allow_search: bool = False
    """Whether the user lets the directory be searched for them (02,09 TLV 0x000A)."""


DIRECTORY_TEXT_FIELDS: tuple[str, ...] = tuple(
    field.name for field in attrs.fields(DirectoryFields) if field.name != "allow_search"
)
"""The byte-string fields of :class:`DirectoryFields`, in declaration order."""


@attrs.frozen
class DirectoryInfo:
    """
    A user's whole directory record: one per user, whichever session wrote
    it, kept across sign-off and restart. The fields (02,09) and the interest
    keywords (02,0F) are written separately; each write replaces its part.
    """

    fields: DirectoryFields = attrs.field(factory=DirectoryFields)
    keywords: tuple[bytes, ...] = ()
    """Interest keywords in the order given, at most :data:`MAX_INTEREST_KEYWORDS`."""


SEARCHABLE_FIELDS: tuple[str, ...] = tuple(
    name for name in DIRECTORY_TEXT_FIELDS if name != "charset"
)
"""The fields of :class:`DirectoryFields` a search by name and address may name."""


@attrs.frozen
class DirectoryQuery:
    """
    What a directory search looks for: exactly one of an e-mail address, an
    interest keyword, or name-and-address fields (the non-empty
    :data:`SEARCHABLE_FIELDS` of ``fields``; its charset and ``allow_search``
    are not looked at). See :meth:`IDirectoryStore.search_directory`.
    """

    email: str = ""
    keyword: bytes = b""
    fields: DirectoryFields | None = None

    def field_values(self) -> dict[str, bytes]:
        """The name-and-address fields to match, by field name (empty ones left out)."""
        if self.fields is None:
            return {}
        values = {name: getattr(self.fields, name) for name in SEARCHABLE_FIELDS}
        return {name: value for name, value in values.items() if value}


@attrs.frozen
class DirectoryEntry:
    """One search result: the account's display name and the name-and-address
    fields it shows the directory (``DirectoryFields()`` for a user found by
    e-mail who does not allow directory searches)."""

    screen_name: str
    fields: DirectoryFields = attrs.field(factory=DirectoryFields)


def check_directory_fields(fields: DirectoryFields) -> None:
    """
    Refuse directory fields no store should keep.

    :raises StoreError: a field is not bytes or is longer than
        :data:`MAX_DIRECTORY_FIELD_BYTES`, or ``allow_search`` is not a bool.
    """
    if not isinstance(fields, DirectoryFields):
        raise StoreError(f"directory fields must be DirectoryFields, not {type(fields).__name__}")
    for name in DIRECTORY_TEXT_FIELDS:
        value = getattr(fields, name)
        if not isinstance(value, bytes) or len(value) > MAX_DIRECTORY_FIELD_BYTES:
            raise StoreError(
                f"directory field {name} must be at most {MAX_DIRECTORY_FIELD_BYTES} bytes"
            )
    if not isinstance(fields.allow_search, bool):
        raise StoreError(f"allow_search must be a bool, not {fields.allow_search!r}")


def check_interest_keywords(keywords: Sequence[bytes]) -> None:
    """
    Refuse interest keywords no store should keep.

    :raises StoreError: more than :data:`MAX_INTEREST_KEYWORDS`, or one that is
        not bytes, is empty or is longer than :data:`MAX_DIRECTORY_FIELD_BYTES`.
    """
    if len(keywords) > MAX_INTEREST_KEYWORDS:
        raise StoreError(f"at most {MAX_INTEREST_KEYWORDS} interest keywords")
    for keyword in keywords:
        if not isinstance(keyword, bytes) or not 0 < len(keyword) <= MAX_DIRECTORY_FIELD_BYTES:
            raise StoreError(f"an interest keyword must be 1-{MAX_DIRECTORY_FIELD_BYTES} bytes")


_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)


def check_email(email: str) -> str:
    """
    The form a store keeps ``email`` in: lower case (addresses are matched
    without regard to case, so that an index finds them), or ``""`` for none.

    :raises InvalidEmail: it is not a string; or it is longer than
        :data:`MAX_EMAIL_LENGTH`; or it is not ``local@domain`` in plain ASCII
        (a local part of 1-64 unquoted characters, a domain of dot-separated
        letters, digits and inner hyphens with at least one dot).
    """
    if not isinstance(email, str):
        raise InvalidEmail(f"an e-mail address must be a str, not {type(email).__name__}")
    if not email:
        return ""
    if len(email) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(f"e-mail address longer than {MAX_EMAIL_LENGTH} characters")
    if not email.isascii() or not _EMAIL.fullmatch(email):
        raise InvalidEmail("not an e-mail address")
    return email.lower()


def check_registration_status(status: int) -> None:
    """
    :raises StoreError: ``status`` is not :data:`REGISTRATION_NONE`,
        :data:`REGISTRATION_LIMITED` or :data:`REGISTRATION_FULL`.
    """
    if not _is_int(status) or not REGISTRATION_NONE <= status <= REGISTRATION_FULL:
        raise StoreError(f"registration status must be 1, 2 or 3, not {status!r}")


def check_search_limit(limit: int) -> None:
    """:raises StoreError: ``limit`` is not an integer from 1 to :data:`MAX_SEARCH_LIMIT`."""
    if not _is_int(limit) or not 1 <= limit <= MAX_SEARCH_LIMIT:
        raise StoreError(f"a search limit must be 1-{MAX_SEARCH_LIMIT}, not {limit!r}")


def check_directory_query(query: DirectoryQuery, limit: int) -> None:
    """
    Refuse a search no store should run: one that names no criterion or
    more than one kind (an empty query would list everyone), or whose
    values are out of bounds.

    :raises StoreError: as above, or the limit is out of bounds
        (:func:`check_search_limit`).
    """
    check_search_limit(limit)
    if not isinstance(query, DirectoryQuery):
        raise StoreError(f"a query must be a DirectoryQuery, not {type(query).__name__}")
    if not isinstance(query.email, str) or len(query.email) > MAX_EMAIL_LENGTH:
        raise StoreError(f"a searched e-mail address must be a str of at most {MAX_EMAIL_LENGTH}")
    if not isinstance(query.keyword, bytes) or len(query.keyword) > MAX_DIRECTORY_FIELD_BYTES:
        raise StoreError(f"a searched keyword must be bytes, at most {MAX_DIRECTORY_FIELD_BYTES}")
    if query.fields is not None:
        check_directory_fields(query.fields)
    kinds = bool(query.email) + bool(query.keyword) + bool(query.field_values())
    if kinds != 1:
        raise StoreError("a directory search needs one of an e-mail, a keyword or some fields")


def check_bart_item(data: bytes) -> None:
    """
    Refuse BART item data no store should keep.

    :raises StoreError: it is not bytes, is empty, or is longer than
        :data:`MAX_BART_ITEM_BYTES`.
    """
    if not isinstance(data, bytes):
        raise StoreError(f"BART item data must be bytes, not {type(data).__name__}")
    if not 1 <= len(data) <= MAX_BART_ITEM_BYTES:
        raise StoreError(f"BART item data must be 1-{MAX_BART_ITEM_BYTES} bytes")


def check_bart_type(bart_type: int) -> None:
    """:raises StoreError: ``bart_type`` is not an integer from 0 to 0xFFFF
    (the u16 of a BART ID: any of them is kept, not only the icon types)."""
    if not _is_int(bart_type) or not 0 <= bart_type <= _U16_MAX:
        raise StoreError(f"a BART type must be 0-{_U16_MAX:#06x}, not {bart_type!r}")


def check_bart_hash(digest: bytes) -> None:
    """:raises StoreError: ``digest`` is not bytes (any length is looked up:
    one that no item can have is not found)."""
    if not isinstance(digest, bytes):
        raise StoreError(f"a BART hash must be bytes, not {type(digest).__name__}")


def check_public_room(name: str, now: int) -> str:
    """
    The display form a store keeps a new public room's ``name`` in
    (:func:`~aimserver.wire.roomname.room_name`'s).

    :raises InvalidRoomNameError: the name breaks the room naming rules (or is
        not a str).
    :raises StoreError: ``now`` is not a non-negative integer.
    """
    if not isinstance(name, str):
        raise InvalidRoomNameError(f"a room name must be a str, not {type(name).__name__}")
    try:
        display = room_name(name)
    except InvalidRoomName as e:
        raise InvalidRoomNameError(f"invalid room name {name!r}: {e}") from None
    _check_timestamp("room creation time", now)
    return display


def check_public_room_count(count: int) -> None:
    """
    Refuse a new public room when there are ``count`` already. The caller
    counts and creates in one step (one transaction).

    :raises TooManyRooms: ``count`` is :data:`MAX_PUBLIC_ROOMS` or more.
    """
    if count >= MAX_PUBLIC_ROOMS:
        raise TooManyRooms(f"there are already {count} public rooms (at most {MAX_PUBLIC_ROOMS})")


def public_room_key(name: str) -> str | None:
    """
    The key a public room named ``name`` (any case and spacing) is kept
    under, or ``None`` for a name no room can have.

    :raises StoreError: ``name`` is not a str.
    """
    if not isinstance(name, str):
        raise StoreError(f"a room name must be a str, not {type(name).__name__}")
    try:
        return room_key(room_name(name))
    except InvalidRoomName:
        return None


def check_feedbag_item(item: FeedbagItem) -> None:
    """
    Refuse an item no store should keep.

    :raises StoreError: if an id is not a u16 (the wire size) or the name or
        attribute block is bigger than the store bounds.
    """
    for field in ("group_id", "item_id", "class_id"):
        value = getattr(item, field)
        if not 0 <= value <= _U16_MAX:
            raise StoreError(f"feedbag item {field} {value} is not a 16-bit value")
    if len(item.name.encode("utf-8", "surrogatepass")) > MAX_ITEM_NAME_BYTES:
        raise StoreError(f"feedbag item name longer than {MAX_ITEM_NAME_BYTES} bytes")
    if len(item.attributes) > MAX_ITEM_ATTRIBUTES_BYTES:
        raise StoreError(f"feedbag item attributes longer than {MAX_ITEM_ATTRIBUTES_BYTES} bytes")


def check_credentials(credentials: Credentials) -> None:
    """
    Refuse credentials that could never check out: a key that is empty, too
    long or not printable ASCII (it is sent back as-is in 17,07), or digests
    that are not 16-byte MD5 values.

    :raises StoreError: as above.
    """
    key = credentials.auth_key
    if not (0 < len(key) <= MAX_AUTH_KEY_LENGTH and key.isascii() and key.isprintable()):
        raise StoreError(f"auth key must be 1-{MAX_AUTH_KEY_LENGTH} printable ASCII characters")
    if len(credentials.weak_md5) != DIGEST_SIZE or len(credentials.strong_md5) != DIGEST_SIZE:
        raise StoreError(f"digests must be {DIGEST_SIZE} bytes")
    inner = credentials.password_md5
    if inner is not None and len(inner) != DIGEST_SIZE:
        raise StoreError(f"MD5(password) must be {DIGEST_SIZE} bytes")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_timestamp(what: str, value: object) -> None:
    if not (_is_int(value) and 0 <= value <= _TIMESTAMP_MAX):  # type: ignore[operator]
        raise StoreError(f"{what} must be a non-negative integer number of seconds, not {value!r}")


def check_warning(level: int, at: int) -> int:
    """
    The warning level a store should keep for ``level``: an integer outside the
    range 0 to :data:`MAX_WARNING_LEVEL` is clamped to the nearer end (the server's
    arithmetic may overshoot), anything else is refused.

    :return: the clamped level.
    :raises StoreError: ``level`` is not an integer, or ``at`` is not a
        non-negative integer.
    """
    if not _is_int(level):
        raise StoreError(f"warning level must be an integer, not {level!r}")
    _check_timestamp("warning time", at)
    return min(max(level, 0), MAX_WARNING_LEVEL)


def check_offline_message(
    sender: str, cookie: bytes, channel: int, tlvs: bytes, sent_at: int
) -> None:
    """
    Refuse an offline message no store should keep.

    :raises StoreError: the sender is empty or longer than
        :data:`MAX_OFFLINE_SENDER_BYTES`, the cookie is not 8 bytes, the
        channel is not a 16-bit value, the TLV block is longer than
        :data:`MAX_OFFLINE_MESSAGE_BYTES`, or ``sent_at`` is negative.
    """
    if not (
        isinstance(sender, str)
        and 0 < len(sender.encode("utf-8", "surrogatepass")) <= MAX_OFFLINE_SENDER_BYTES
    ):
        raise StoreError(f"offline message sender must be 1-{MAX_OFFLINE_SENDER_BYTES} bytes")
    if not isinstance(cookie, bytes) or len(cookie) != ICBM_COOKIE_SIZE:
        raise StoreError(f"offline message cookie must be {ICBM_COOKIE_SIZE} bytes")
    if not (_is_int(channel) and 0 <= channel <= _U16_MAX):
        raise StoreError(f"offline message channel {channel!r} is not a 16-bit value")
    if not isinstance(tlvs, bytes) or len(tlvs) > MAX_OFFLINE_MESSAGE_BYTES:
        raise StoreError(f"offline message TLVs longer than {MAX_OFFLINE_MESSAGE_BYTES} bytes")
    _check_timestamp("offline message time", sent_at)


def check_offline_quota(
    recipient: str,
    sender: str,
    size: int,
    inbox: tuple[int, int],
    from_sender: tuple[int, int],
) -> None:
    """
    Refuse a message of ``size`` TLV bytes that would take an inbox over a cap.
    The caller counts what is already stored and must store the message in the
    same step (same transaction), or another message could slip in between.
    The sender's caps are checked first: when both apply, the log names the
    sender who used up their share.

    :param inbox: (messages, TLV bytes) waiting for ``recipient``, from anyone.
    :param from_sender: (messages, TLV bytes) of those from ``sender``, as
        identified by :func:`~aimserver.wire.screenname.normalize`.
    :raises OfflineInboxFull: one of its subclasses, naming the cap.
    """
    count, stored = from_sender
    if count >= MAX_OFFLINE_MESSAGES_PER_SENDER:
        raise OfflineSenderMessagesFull(
            f"{sender} already has {count} offline messages waiting for {recipient}"
            f" (at most {MAX_OFFLINE_MESSAGES_PER_SENDER})"
        )
    if stored + size > MAX_OFFLINE_BYTES_PER_SENDER:
        raise OfflineSenderBytesFull(
            f"{sender} already has {stored} bytes of offline messages waiting for {recipient};"
            f" {size} more would pass {MAX_OFFLINE_BYTES_PER_SENDER}"
        )
    count, stored = inbox
    if count >= MAX_OFFLINE_MESSAGES_PER_RECIPIENT:
        raise OfflineInboxMessagesFull(
            f"{recipient} already has {count} offline messages"
            f" (at most {MAX_OFFLINE_MESSAGES_PER_RECIPIENT})"
        )
    if stored + size > MAX_OFFLINE_BYTES_PER_RECIPIENT:
        raise OfflineInboxBytesFull(
            f"{recipient} already has {stored} bytes of offline messages;"
            f" {size} more would pass {MAX_OFFLINE_BYTES_PER_RECIPIENT}"
        )


def check_up_to_id(up_to_id: int) -> int:
    """
    The bound to delete offline messages up to: ``up_to_id`` limited to the
    range message ids can take (which changes nothing it selects).

    :raises StoreError: ``up_to_id`` is not an integer.
    """
    if not _is_int(up_to_id):
        raise StoreError(f"message id must be an integer, not {up_to_id!r}")
    return min(max(up_to_id, 0), _TIMESTAMP_MAX)


def check_secret_request(name: str, size: int) -> None:
    """
    Refuse a secret request outside sane bounds.

    :raises StoreError: if the name is empty or too long, or the size is not
        between 1 and :data:`MAX_SECRET_SIZE` bytes.
    """
    if not name or len(name.encode("utf-8", "surrogatepass")) > MAX_SECRET_NAME_BYTES:
        raise StoreError(f"secret name must be 1-{MAX_SECRET_NAME_BYTES} bytes")
    if not 1 <= size <= MAX_SECRET_SIZE:
        raise StoreError(f"secret size must be 1-{MAX_SECRET_SIZE} bytes, not {size}")


# --- the roles ----------------------------------------------------------------------
#
# A store is split into roles, one interface each, so that a consumer names the
# part it needs and each part is implemented and tested in one place (one module
# per role under aimserver.store, one contract per role in tests/test_store.py).
# The rules every role follows are IUserStore's, below. The data of every role
# but the secrets and the public chat rooms belongs to an account: deleting the
# account removes it.


class IAccountStore(Interface):
    """
    Registered screen names, the credentials to check their passwords, and
    the flags an administrator sets. Implementations must never keep a
    plaintext password.
    """

    def get_account(screen_name: str) -> Deferred[Account | None]:
        """
        Look up an account.

        :return: fires with the :class:`Account`, or ``None`` if there is none.
        :rtype: Deferred[Account | None]
        """

    def get_accounts(screen_names: Sequence[str]) -> Deferred[dict[str, Account]]:
        """
        Look up many accounts at once (one round trip to the database).

        :return: fires with the accounts found, keyed by normalized screen
            name; names with no account are absent.
        """

    def peek_account(screen_name: str) -> Account | None:
        """
        The account if this store holds it in memory, ready now (no I/O, no
        waiting), else ``None``. ``None`` never means "no such account": ask
        ``get_account``. Lets a sign-on skip a Deferred for a cached account.
        """

    def create_account(screen_name: str, password: str) -> Deferred[Account]:
        """
        Register a screen name with a fresh auth key and both digests of the
        password; ``created_at`` is the store's clock.

        :return: fires with the new :class:`Account`.
        :rtype: Deferred[Account]
        :raises InvalidScreenName: the name breaks the naming rules.
        :raises InvalidPassword: the password is not 4-16 characters.
        :raises AccountExists: the normalized name is taken.
        """

    def create_account_with_credentials(
        screen_name: str, credentials: Credentials
    ) -> Deferred[Account]:
        """
        Register a screen name with a ready-made key and digests, for when the
        password itself is never seen (auto-registration from a BUCP digest).

        :return: fires with the new :class:`Account`.
        :rtype: Deferred[Account]
        :raises InvalidScreenName: the name breaks the naming rules.
        :raises AccountExists: the normalized name is taken.
        :raises StoreError: the credentials are malformed (:func:`check_credentials`).
        """

    def delete_account(screen_name: str) -> Deferred[bool]:
        """
        Remove an account and everything of the other roles that belongs to
        it (its feedbag, its offline messages, its directory record).

        :return: fires with ``True`` if it existed, ``False`` otherwise.
        :rtype: Deferred[bool]
        """

    def list_accounts() -> Deferred[list[Account]]:
        """
        :return: fires with every account, sorted by normalized name.
        :rtype: Deferred[list[Account]]
        """

    def set_password(screen_name: str, password: str) -> Deferred[bool]:
        """
        Replace the password. The auth key changes too, so digests captured
        under the old key stop working.

        :return: fires with ``True`` if the account exists, ``False`` otherwise.
        :rtype: Deferred[bool]
        :raises InvalidPassword: the password is not 4-16 characters.
        """

    def set_suspended(screen_name: str, suspended: bool) -> Deferred[bool]:
        """
        Suspend or reinstate an account (the login service refuses suspended
        accounts; the digests are kept).

        :return: fires with ``True`` if the account exists, ``False`` otherwise.
        :rtype: Deferred[bool]
        """

    def set_bot(screen_name: str, bot: bool) -> Deferred[bool]:
        """
        Mark an account as a service bot, or as an ordinary account again.
        New accounts are never bots.

        :return: fires with ``True`` if the account exists, ``False`` otherwise.
        :rtype: Deferred[bool]
        """

    def set_credentials(
        screen_name: str, credentials: Credentials, replacing: str | None = None
    ) -> Deferred[bool]:
        """
        Replace the auth key, digests and MD5(password) with ready-made ones
        (a password change from a client, whose password bytes are hashed as
        sent; or the same key and digests with MD5(password) learnt from a
        roasted login, ``replacing`` the same key).

        :param replacing: if given, change them only while the stored auth key
            is still this one: the credentials a caller checked the old
            password against a moment ago, not ones changed since.
        :return: fires with ``True`` if they were replaced, ``False`` if there
            is no such account or its key is no longer ``replacing``.
        :rtype: Deferred[bool]
        :raises StoreError: the credentials are malformed (:func:`check_credentials`).
        """

    def set_screen_name_format(screen_name: str, display: str) -> Deferred[bool]:
        """
        Change how the screen name is shown (case and spaces only): the
        account stays the same, ``display`` becomes its ``screen_name``.

        :return: fires with ``True`` if the account exists, ``False`` otherwise.
        :rtype: Deferred[bool]
        :raises InvalidScreenName: ``display`` breaks the naming rules or is
            not a form of ``screen_name`` (normalizes to another name).
        """

    def set_email(screen_name: str, email: str) -> Deferred[bool]:
        """
        Set the account's e-mail address (``""``: none), kept in lower case
        (:func:`check_email`). A different address than the one stored is
        unconfirmed: ``confirmed`` is cleared.

        :return: fires with ``True`` if the account exists, ``False`` otherwise.
        :rtype: Deferred[bool]
        :raises InvalidEmail: see :func:`check_email`; nothing changes.
        """

    def set_registration_status(screen_name: str, status: int) -> Deferred[bool]:
        """
        Set who may find the account by its e-mail address
        (:data:`REGISTRATION_NONE`, :data:`REGISTRATION_LIMITED`,
        :data:`REGISTRATION_FULL`; new accounts have
        :data:`DEFAULT_REGISTRATION_STATUS`).

        :return: fires with ``True`` if the account exists, ``False`` otherwise.
        :rtype: Deferred[bool]
        :raises StoreError: any other value (:func:`check_registration_status`).
        """

    def set_confirmed(screen_name: str, confirmed: bool) -> Deferred[bool]:
        """
        Mark the account confirmed (Admin 07,06) or not. New accounts are not.

        :return: fires with ``True`` if the account exists, ``False`` otherwise.
        :rtype: Deferred[bool]
        """


class IWarningStore(Interface):
    """
    The warning level of each account ("evil"), as the warning service last
    set it. Written here, read back through :class:`Account`
    (``warning_level``, ``warning_updated_at``) when the user signs on: the
    level is part of the account record, so a cache of accounts must treat
    these methods as account writes.
    """

    def set_warning(screen_name: str, level: int, at: int) -> Deferred[bool]:
        """
        Record the account's warning level and when it was set (the server
        computes any decay; the store just keeps both values).

        :param level: tenths of a percent, clamped into 0 to :data:`MAX_WARNING_LEVEL`.
        :param at: unix seconds, kept as ``warning_updated_at``.
        :return: fires with ``True`` if the account exists, ``False`` otherwise.
        :rtype: Deferred[bool]
        :raises StoreError: ``level`` or ``at`` is malformed (:func:`check_warning`).
        """


class IFeedbagStore(Interface):
    """Each account's server-stored buddy list (feedbag), kept byte for byte."""

    def get_feedbag(screen_name: str) -> Deferred[Feedbag]:
        """
        :return: fires with the user's :class:`Feedbag`, or
            ``Feedbag(items=(), last_modified=0)`` if none was ever written
            (or there is no such account).
        :rtype: Deferred[Feedbag]
        """

    def upsert_feedbag_items(
        screen_name: str,
        items: Sequence[FeedbagItem],
        now: int,
        summary: FeedbagSummary | None = None,
    ) -> Deferred[None]:
        """
        Insert the items, replacing any with the same (group_id, item_id), and
        set ``last_modified`` to ``now``. All or nothing. ``summary`` is kept
        with the list, as the caller worked it out for the list this write
        leaves; without one the list has none until it is given one.

        :rtype: Deferred[None]
        :raises NoSuchAccount: there is no such account.
        :raises StoreError: an item is out of bounds (:func:`check_feedbag_item`)
            or the list would exceed :data:`MAX_FEEDBAG_ITEMS`.
        """

    def delete_feedbag_items(
        screen_name: str,
        keys: Sequence[tuple[int, int]],
        now: int,
        summary: FeedbagSummary | None = None,
    ) -> Deferred[None]:
        """
        Remove the items with these (group_id, item_id) keys (missing ones are
        ignored) and set ``last_modified`` to ``now``. ``summary``, as for
        :meth:`upsert_feedbag_items`.

        :rtype: Deferred[None]
        :raises NoSuchAccount: there is no such account.
        """

    def get_feedbag_summary(screen_name: str) -> Deferred[FeedbagSummary | None]:
        """
        :return: fires with the summary kept with the user's list;
            :data:`EMPTY_FEEDBAG_SUMMARY` for a list never written (or no
            such account), as :meth:`get_feedbag` gives an empty list; None
            for a list last written without one.
        :rtype: Deferred[FeedbagSummary | None]
        """

    def set_feedbag_summary(screen_name: str, summary: FeedbagSummary) -> Deferred[bool]:
        """
        Keep ``summary`` with a list that has none, if the list is still as
        last modified at ``summary.last_modified`` with ``summary.count``
        items (it was read and has not changed since).

        :return: fires with whether it was kept.
        :rtype: Deferred[bool]
        """


class IOfflineMessageStore(Interface):
    """IMs kept for signed-off recipients ("store if offline"), within the caps
    of :func:`check_offline_quota`."""

    def store_offline_message(
        recipient: str, sender: str, cookie: bytes, channel: int, tlvs: bytes, sent_at: int
    ) -> Deferred[OfflineMessage]:
        """
        Keep an IM for a signed-off recipient, after any already kept.

        :return: fires with the stored :class:`OfflineMessage`, its
            ``message_id`` higher than that of every message stored before.
        :rtype: Deferred[OfflineMessage]
        :raises NoSuchAccount: there is no such recipient.
        :raises OfflineInboxFull: storing it would go over a cap
            (:func:`check_offline_quota`): the recipient's
            :data:`MAX_OFFLINE_MESSAGES_PER_RECIPIENT` messages or
            :data:`MAX_OFFLINE_BYTES_PER_RECIPIENT` TLV bytes, or the sender's
            :data:`MAX_OFFLINE_MESSAGES_PER_SENDER` messages or
            :data:`MAX_OFFLINE_BYTES_PER_SENDER` TLV bytes to this recipient.
            Senders are told apart by their normalized name. The check and the
            store are one step: nothing is stored, and nothing already stored
            changes, when it is refused.
        :raises StoreError: the message is malformed or too big
            (:func:`check_offline_message`).
        """

    def count_offline_messages() -> Deferred[dict[str, int]]:
        """
        How many offline messages wait for each recipient that has any, read
        once at start-up so sign-ons of users with none skip the store.

        :rtype: Deferred[dict[str, int]] (normalized recipient -> count)
        """

    def get_offline_messages(recipient: str) -> Deferred[list[OfflineMessage]]:
        """
        Read (without removing) the recipient's offline messages.

        :return: fires with them in the order they were stored (by
            ``message_id``); empty if there are none or no such account.
        :rtype: Deferred[list[OfflineMessage]]
        """

    def delete_offline_messages(recipient: str, up_to_id: int) -> Deferred[int]:
        """
        Remove, in one transaction, the recipient's offline messages whose
        ``message_id`` is at most ``up_to_id``: the ones a session has just
        been given. Messages stored since they were read have higher ids and
        stay.

        :return: fires with how many were removed (0 for no such account).
        :rtype: Deferred[int]
        :raises StoreError: ``up_to_id`` is not an integer.
        """


class ISecretStore(Interface):
    """Server-wide random secrets that survive restarts (no account's)."""

    def get_or_create_secret(name: str, size: int) -> Deferred[bytes]:
        """
        A random secret that survives restarts (e.g. the cookie HMAC key):
        ``size`` fresh random bytes the first time, the same bytes afterwards.

        :rtype: Deferred[bytes]
        :raises StoreError: name or size out of bounds, or a secret of that
            name exists with a different size.
        """


class IDirectoryStore(Interface):
    """
    Each account's directory record (:class:`DirectoryInfo`): user-level, one
    record whichever session writes it, kept byte for byte.
    """

    def get_directory_info(screen_name: str) -> Deferred[DirectoryInfo]:
        """
        :return: fires with the user's record, or ``DirectoryInfo()`` (every
            field empty, no keywords) if none was ever written or there is no
            such account.
        :rtype: Deferred[DirectoryInfo]
        """

    def set_directory_fields(screen_name: str, fields: DirectoryFields) -> Deferred[None]:
        """
        Replace the name-and-address part of the record; the keywords stay.

        :rtype: Deferred[None]
        :raises NoSuchAccount: there is no such account.
        :raises StoreError: a field is out of bounds (:func:`check_directory_fields`);
            nothing changes.
        """

    def set_interest_keywords(screen_name: str, keywords: Sequence[bytes]) -> Deferred[None]:
        """
        Replace the interest keywords of the record; the fields stay.

        :rtype: Deferred[None]
        :raises NoSuchAccount: there is no such account.
        :raises StoreError: the keywords are out of bounds
            (:func:`check_interest_keywords`); nothing changes.
        """

    def search_directory(query: DirectoryQuery, limit: int) -> Deferred[list[DirectoryEntry]]:
        """
        The accounts a directory search finds, ordered by normalized screen
        name, at most ``limit`` of them. Suspended accounts are never found.
        Values match when they are equal ignoring ASCII case:

        * by e-mail: accounts with that address whose registration status is
          :data:`REGISTRATION_LIMITED` or more (a user who chose
          :data:`REGISTRATION_NONE` is not found by address); the entry shows
          the directory fields only if the user allows directory searches;
        * by keyword: users who allow directory searches (the record's
          ``allow_search``) with the keyword among theirs;
        * by fields: users who allow directory searches whose record has every
          non-empty field of the query.

        :rtype: Deferred[list[DirectoryEntry]]
        :raises StoreError: the query or the limit is refused
            (:func:`check_directory_query`).
        """

    def interest_keywords(limit: int) -> Deferred[list[bytes]]:
        """
        The distinct interest keywords of the users who allow directory
        searches, in byte order, at most ``limit`` of them (the keyword
        list a client offers for a search).

        :rtype: Deferred[list[bytes]]
        :raises StoreError: the limit is out of bounds (:func:`check_search_limit`).
        """


class IBartStore(Interface):
    """
    Buddy icons and other BART items, kept once per content hash (the MD5 of
    the data) whoever uploads them, and which accounts uploaded each. An
    account owns its :data:`MAX_BART_ITEMS_PER_ACCOUNT` latest uploads; an
    item nobody owns (any longer) is gone, for every reader.
    """

    def add_bart_item(
        screen_name: str, data: bytes, now: int, bart_type: int = TYPE_BUDDY_ICON
    ) -> Deferred[bytes]:
        """
        Keep ``data`` (once, whoever else uploaded the same bytes) and make it
        the account's newest upload, ``now`` being the time of it. Uploading
        what the account already owns makes it the newest again; past
        :data:`MAX_BART_ITEMS_PER_ACCOUNT` uploads the account's oldest is
        dropped, and removed if nobody else owns it.

        The item keeps the ``bart_type`` (the 10,02 upload's type) of the
        upload that stored it: a later upload of the same bytes, by anyone and
        under another type, changes neither the item nor its type (the hash
        names the bytes, and one item has one type). Once nobody owns the
        item it is gone, and the next upload stores it anew with its own type.

        :return: fires with the item's hash, the MD5 of ``data``.
        :rtype: Deferred[bytes]
        :raises NoSuchAccount: there is no such account.
        :raises StoreError: the data or the type is out of bounds
            (:func:`check_bart_item`, :func:`check_bart_type`); nothing changes.
        """

    def get_bart_item(digest: bytes) -> Deferred[bytes | None]:
        """
        :return: fires with the data of the item whose hash is ``digest``, or
            ``None`` if there is none (any bytes may be asked for).
        :rtype: Deferred[bytes | None]
        :raises StoreError: ``digest`` is not bytes (:func:`check_bart_hash`).
        """

    def has_bart_item(digest: bytes) -> Deferred[bool]:
        """
        Whether :meth:`get_bart_item` would find the item, without reading it.

        :rtype: Deferred[bool]
        :raises StoreError: ``digest`` is not bytes (:func:`check_bart_hash`).
        """

    def list_bart_items(screen_name: str) -> Deferred[list[bytes]]:
        """
        :return: fires with the hashes of the items the account owns, newest
            upload first (empty for no such account).
        :rtype: Deferred[list[bytes]]
        """

    def list_bart_items_by_type(bart_type: int, limit: int) -> Deferred[list[bytes]]:
        """
        The items of one type, for an administrator. Only items someone owns
        are listed (each one :meth:`get_bart_item` finds); there may be up to
        :data:`MAX_BART_ITEMS_PER_ACCOUNT` per account, so one reply stops at
        ``limit``.

        :return: fires with the hashes of the items whose type (that of the
            upload that stored them, see :meth:`add_bart_item`) is
            ``bart_type``, the most recently stored first, at most ``limit``
            of them. An upload of an item already stored does not move it.
        :rtype: Deferred[list[bytes]]
        :raises StoreError: ``bart_type`` is out of bounds
            (:func:`check_bart_type`), or ``limit`` is not 1 to
            :data:`MAX_SEARCH_LIMIT` (:func:`check_search_limit`).
        """


class IChatRoomStore(Interface):
    """
    The public chat rooms (exchange 5): created and deleted by an
    administrator, at most :data:`MAX_PUBLIC_ROOMS` of them, kept whether or
    not anyone is in them. Any spelling of a name finds its room: names are
    matched by :func:`~aimserver.wire.roomname.room_key` of
    :func:`~aimserver.wire.roomname.room_name` (case, runs of spaces and
    spaces at the ends do not count). No account owns a room.
    """

    def get_public_room(name: str) -> Deferred[PublicRoom | None]:
        """
        :return: fires with the room ``name`` (in any spelling) names, or
            ``None`` if there is none (or no room can have that name).
        :rtype: Deferred[PublicRoom | None]
        :raises StoreError: ``name`` is not a str (:func:`public_room_key`).
        """

    def list_public_rooms() -> Deferred[list[PublicRoom]]:
        """
        :return: fires with every public room, sorted by key.
        :rtype: Deferred[list[PublicRoom]]
        """

    def create_public_room(name: str, now: int) -> Deferred[PublicRoom]:
        """
        Create a public room named ``name`` in the display form
        :func:`~aimserver.wire.roomname.room_name` gives it, ``now`` being its
        ``created_at``.

        :return: fires with the new :class:`PublicRoom`.
        :rtype: Deferred[PublicRoom]
        :raises InvalidRoomNameError: the name breaks the room naming rules
            (:func:`check_public_room`).
        :raises RoomExists: a room with the same key exists.
        :raises TooManyRooms: there are :data:`MAX_PUBLIC_ROOMS` rooms already
            (:func:`check_public_room_count`); the count and the creation are
            one step.
        :raises StoreError: ``now`` is not a non-negative integer.
        """

    def delete_public_room(name: str) -> Deferred[bool]:
        """
        Delete the public room ``name`` (in any spelling) names.

        :return: fires with ``True`` if it existed, ``False`` otherwise (also
            for a name no room can have).
        :rtype: Deferred[bool]
        :raises StoreError: ``name`` is not a str (:func:`public_room_key`).
        """


def check_motd_digest(digest: str) -> str:
    """A MOTD's digest: 1-64 lower-case hex characters (``services.motd``)."""
    if not isinstance(digest, str) or not 0 < len(digest) <= 64 or digest.strip("0123456789abcdef"):
        raise StoreError(f"not a MOTD digest: {digest!r}")
    return digest


def _utf8_size(text: object) -> int | None:
    """The size of ``text`` in UTF-8, or ``None`` if it is no str that has one
    (a lone surrogate has none, and SQLite could not keep it)."""
    if not isinstance(text, str):
        return None
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def _check_count(what: str, value: object, low: int, high: int) -> None:
    if not (_is_int(value) and low <= value <= high):  # type: ignore[operator]
        raise StoreError(f"{what} must be an integer from {low} to {high}, not {value!r}")


def check_history_entry(
    peer: str, outgoing: bool, text: str, at: int, limit: int, keep_seconds: int
) -> None:
    """
    Refuse a conversation history entry, or a way of pruning, that no store
    should take.

    :raises StoreError: ``peer`` is not a str of 1 to
        :data:`MAX_HISTORY_PEER_BYTES` UTF-8 bytes; ``outgoing`` is not a
        bool; ``text`` is not a str of at most :data:`MAX_HISTORY_TEXT_BYTES`
        UTF-8 bytes; ``at`` is not a non-negative integer; ``limit`` is not a
        positive integer or ``keep_seconds`` not a non-negative one (both fit
        SQLite's 64-bit INTEGER).
    """
    size = _utf8_size(peer)
    if size is None or not 0 < size <= MAX_HISTORY_PEER_BYTES:
        raise StoreError(f"a history peer must be 1-{MAX_HISTORY_PEER_BYTES} UTF-8 bytes")
    if not isinstance(outgoing, bool):
        raise StoreError(f"a history entry's direction must be a bool, not {outgoing!r}")
    size = _utf8_size(text)
    if size is None or size > MAX_HISTORY_TEXT_BYTES:
        raise StoreError(f"a history text must be at most {MAX_HISTORY_TEXT_BYTES} UTF-8 bytes")
    _check_timestamp("history entry time", at)
    check_history_pruning(limit, keep_seconds)


def check_history_pruning(limit: int, keep_seconds: int) -> None:
    """:raises StoreError: ``limit`` is not a positive integer or
    ``keep_seconds`` not a non-negative one (both fit SQLite's INTEGER)."""
    _check_count("a history length", limit, 1, _TIMESTAMP_MAX)
    _check_count("a history age", keep_seconds, 0, _TIMESTAMP_MAX)


def check_history_query(peer: str | None, limit: int) -> str | None:
    """
    The key (:func:`~aimserver.wire.screenname.normalize`) of the peer a
    history read is about, or ``None`` for every peer.

    :raises StoreError: ``peer`` is neither ``None`` nor a str, or ``limit``
        is not an integer from 1 to :data:`MAX_HISTORY_LIMIT`.
    """
    _check_count("a history read's limit", limit, 1, MAX_HISTORY_LIMIT)
    if peer is None:
        return None
    if not isinstance(peer, str):
        raise StoreError(f"a history peer must be a str, not {type(peer).__name__}")
    return normalize(peer)


class IMotdStore(Interface):
    """
    Which message of the day each user was last shown, by the MOTD's digest,
    so that it is shown once per user (MULTISESSION.md §20), across sign-offs
    and restarts. Deleting the account forgets it.
    """

    def get_motd_seen(screen_name: str) -> Deferred[str | None]:
        """
        :return: fires with the digest of the MOTD last shown to the user, or
            ``None`` (never shown one, or no such account).
        """

    def set_motd_seen(screen_name: str, digest: str) -> Deferred[bool]:
        """
        Record that the user was shown the MOTD of ``digest``.

        :return: fires with ``True``, or ``False`` if there is no such account.
        :raises StoreError: ``digest`` is not one (:func:`check_motd_digest`).
        """


class IHistoryStore(Interface):
    """
    Each account's conversation history: the IMs it sent and received, kept
    so that every device it signs on with shows the same conversation. An
    account's history holds what the caller's pruning leaves of it (see
    :meth:`add_history`); deleting the account deletes it (entries naming it
    as the peer belong to the other accounts and stay).

    Entries are ordered by ``id``: the order they were recorded in, whatever
    their ``at`` says (a clock stepping back does not reorder them). Ids
    count each account's entries, 1 for its first: an entry's id is one more
    than that of the entry the account recorded before it, pruned or not, so
    an account's ids are never held twice; once its history is gone
    (:meth:`clear_history`, a deleted account) they start again from 1. Why
    per account: the SQLite store then keeps no id per entry (a chunk's ids
    follow from its last), which the browser client's IM rate needs.
    """

    def add_history(
        owner: str, peer: str, outgoing: bool, text: str, at: int, limit: int, keep_seconds: int
    ) -> Deferred[None]:
        """
        Record one IM in ``owner``'s history: exchanged with ``peer`` (kept as
        given), sent by ``owner`` if ``outgoing``, at ``at``. Then, in the
        same step, prune that history to its ``limit`` newest entries and
        drop those whose ``at`` is before ``at - keep_seconds``; the new
        entry always stays.

        :rtype: Deferred[None]
        :raises NoSuchAccount: there is no account ``owner``.
        :raises StoreError: an argument is out of bounds
            (:func:`check_history_entry`: ``text`` longer than
            :data:`MAX_HISTORY_TEXT_BYTES` UTF-8 bytes, for one); nothing
            changes.
        """

    def add_history_many(
        batch: Mapping[str, Sequence[object]], limit: int, keep_seconds: int
    ) -> Deferred[int]:
        """
        Record many IMs in one step: ``batch`` maps an owner to its records,
        oldest first, each given as its fields one after another (``peer,
        outgoing, text, at, peer, outgoing, ...``), each recorded as
        :meth:`add_history` would, except that each owner's history is
        pruned once, after its last record here and with that record's
        ``at``. Owners that are spellings of one account are recorded one
        after the other, in the mapping's order. A record out of bounds, or
        the records of no account, are skipped, not the others (a busy
        server keeps IMs in batches, and one deleted account must not cost
        the rest); an owner's fields that are not a sequence of whole
        records are skipped whole. Grouped by owner because the caller,
        which sees each IM as it happens, groups for less than the store
        would; flat because a tuple per IM waiting for its batch was one
        more object for the garbage collector to look at (bench S13).

        :return: fires with how many were recorded.
        :rtype: Deferred[int]
        :raises StoreError: ``limit`` or ``keep_seconds`` is out of bounds;
            nothing changes.
        """

    def recent_history(owner: str, peer: str | None, limit: int) -> Deferred[list[HistoryEntry]]:
        """
        Read (without removing) the end of ``owner``'s history, or of its
        conversation with ``peer`` (any spelling: names are compared by
        :func:`~aimserver.wire.screenname.normalize`).

        :return: fires with the ``limit`` newest such entries, the oldest of
            them first; empty if there are none, or no such account.
        :rtype: Deferred[list[HistoryEntry]]
        :raises StoreError: ``limit`` is not an integer from 1 to
            :data:`MAX_HISTORY_LIMIT`, or ``peer`` is neither ``None`` nor a
            str (:func:`check_history_query`).
        """

    def clear_history(owner: str) -> Deferred[int]:
        """
        Delete all of ``owner``'s history.

        :return: fires with how many entries were deleted (0 for no such
            account).
        :rtype: Deferred[int]
        """


class IUserStore(
    IAccountStore,
    IWarningStore,
    IFeedbagStore,
    IOfflineMessageStore,
    ISecretStore,
    IDirectoryStore,
    IBartStore,
    IChatRoomStore,
    IMotdStore,
    IHistoryStore,
):
    """
    Every role at once: all user-level persistent data, as the server and its
    wiring take it ("the store"); a consumer that needs one part may name
    that role instead.

    In every role, every method but ``peek_account`` returns a Deferred;
    failures are :class:`StoreError` subclasses. Screen-name arguments may be
    in any case and spacing.
    """


USER_STORE_ROLES: tuple[InterfaceClass, ...] = IUserStore.__bases__
"""The role interfaces :class:`IUserStore` is made of, in order."""


def account_now(store: IAccountStore, screen_name: str) -> Account | Deferred[Account | None]:
    """The account at once when ``store`` holds it ready (``peek_account``:
    the sign-on of a user seen in the last seconds), else the Deferred of
    ``get_account``."""
    account = store.peek_account(screen_name)
    return account if account is not None else store.get_account(screen_name)
