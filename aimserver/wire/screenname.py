"""Screen names: identity comparison and validity.

Identity ignores case and spaces ("Bob Smith" == "bobsmith"); the display form
is kept separately by the account and sent in every user-info block.
"""

from __future__ import annotations

import re

from aimserver.wire.errors import MalformedData

_AIM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9 ]{2,15}")
_ICQ_UIN = re.compile(r"[0-9]{5,9}")


def normalize(screen_name: str) -> str:
    """The identity key of a screen name: spaces removed, lowercased."""
    return screen_name.replace(" ", "").lower()


def is_valid_screen_name(screen_name: str) -> bool:
    """AIM names: 3-16 letters, digits and spaces, starting with a letter, not
    ending in a space, at least 3 letters/digits; or an ICQ UIN of 5-9 digits."""
    if _ICQ_UIN.fullmatch(screen_name):
        return True
    if not _AIM_NAME.fullmatch(screen_name) or screen_name.endswith(" "):
        return False
    return len(normalize(screen_name)) >= 3


#: The name the server itself speaks as (system messages, the multisession
#: notice, admin broadcasts). No account may have it, so nobody can pass
#: for the server.
SYSTEM_SENDER = "AOL System Msg"
#: Identity keys no account may have.
RESERVED_SCREEN_NAMES = frozenset({normalize(SYSTEM_SENDER)})


def is_account_name(screen_name: str) -> bool:
    """A name an account may have: valid, and not one the server speaks as."""
    return is_valid_screen_name(screen_name) and normalize(screen_name) not in RESERVED_SCREEN_NAMES


def decode_screen_name(raw: bytes) -> str:
    """Screen names travel as ASCII; anything else is malformed input."""
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedData("screen name is not ASCII") from None


def encode_screen_name(screen_name: str) -> bytes:
    return screen_name.encode("ascii")
