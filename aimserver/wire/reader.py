"""A bounds-checked cursor over a byte string, shared by every decoder."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TypeVar

from aimserver.wire.errors import MalformedData

T = TypeVar("T")

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


class Reader:
    """Reads big-endian OSCAR datatypes from ``data`` and raises ``MalformedData``
    naming ``what`` when a read would run past the end."""

    __slots__ = ("data", "offset", "end", "what")

    def __init__(self, data: bytes, what: str, offset: int = 0, end: int | None = None) -> None:
        end = len(data) if end is None else end
        # A window reaching past ``data`` would make take() return short bytes and
        # unpack_from() raise struct.error: that is a caller's bug, not bad input.
        if not 0 <= offset <= end <= len(data):
            raise ValueError(f"{what}: window {offset}..{end} outside {len(data)} bytes")
        self.data = data
        self.offset = offset
        self.end = end
        self.what = what

    def _need(self, n: int, field: str) -> None:
        if n < 0:
            raise ValueError(f"{self.what}: {field}: cannot read {n} bytes")
        if self.offset + n > self.end:
            raise MalformedData(
                f"{self.what}: {field} needs {n} bytes at offset {self.offset},"
                f" only {self.end - self.offset} left"
            )

    def remaining(self) -> int:
        return self.end - self.offset

    def at_end(self) -> bool:
        return self.offset >= self.end

    def expect_end(self) -> None:
        """The structure read must have used every byte: stray bytes after it
        are malformed input, not something to ignore."""
        if self.offset != self.end:
            raise MalformedData(f"{self.what}: {self.end - self.offset} stray bytes after the end")

    def u8(self, field: str = "u8") -> int:
        self._need(1, field)
        value = self.data[self.offset]
        self.offset += 1
        return value

    def u16(self, field: str = "u16") -> int:
        self._need(2, field)
        (value,) = _U16.unpack_from(self.data, self.offset)
        self.offset += 2
        return value

    def u32(self, field: str = "u32") -> int:
        self._need(4, field)
        (value,) = _U32.unpack_from(self.data, self.offset)
        self.offset += 4
        return value

    def take(self, n: int, field: str = "bytes") -> bytes:
        self._need(n, field)
        value = self.data[self.offset : self.offset + n]
        self.offset += n
        return value

    def rest(self) -> bytes:
        value = self.data[self.offset : self.end]
        self.offset = self.end
        return value

    def string08(self, field: str = "string08") -> bytes:
        return self.take(self.u8(field + " length"), field)

    def string16(self, field: str = "string16") -> bytes:
        return self.take(self.u16(field + " length"), field)


def string08(value: bytes) -> bytes:
    """``u8 length ‖ bytes``; raises ValueError (a programming error) when too long."""
    if len(value) > 0xFF:
        raise ValueError("string08 longer than 255 bytes")
    return bytes((len(value),)) + value


def string16(value: bytes) -> bytes:
    """``u16 length ‖ bytes``."""
    if len(value) > 0xFFFF:
        raise ValueError("string16 longer than 65535 bytes")
    return _U16.pack(len(value)) + value


def u16(value: int) -> bytes:
    return _U16.pack(value)


def u32(value: int) -> bytes:
    return _U32.pack(value)


def read_whole(read: Callable[[Reader], T], data: bytes, what: str) -> T:
    """``read`` over all of ``data`` (a whole TLV value or SNAC body): stray
    bytes after the structure are malformed."""
    reader = Reader(data, what)
    value = read(reader)
    reader.expect_end()
    return value
