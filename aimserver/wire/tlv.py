"""TLVs and their three containers.

A *TLV list* runs to the end of its data, a *TLV block* is prefixed by a u16
count, and a *TLV L-block* by a u16 byte length (OSCAR.md §4). One value class,
``TlvList``, holds the TLVs in order; the container is chosen when packing or
unpacking.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

import attrs

from aimserver.wire.errors import MalformedData
from aimserver.wire.reader import Reader

_TLV_HEADER = struct.Struct("!HH")


@attrs.frozen
class Tlv:
    tag: int
    value: bytes

    def pack(self) -> bytes:
        if len(self.value) > 0xFFFF:
            raise ValueError(f"TLV 0x{self.tag:04x} longer than 65535 bytes")
        return _TLV_HEADER.pack(self.tag, len(self.value)) + self.value

    @classmethod
    def u8(cls, tag: int, value: int) -> Tlv:
        return cls(tag, bytes((value,)))

    @classmethod
    def u16(cls, tag: int, value: int) -> Tlv:
        return cls(tag, struct.pack("!H", value))

    @classmethod
    def u32(cls, tag: int, value: int) -> Tlv:
        return cls(tag, struct.pack("!I", value))

    @classmethod
    def empty(cls, tag: int) -> Tlv:
        return cls(tag, b"")


def _read_tlv(reader: Reader) -> Tlv:
    tag = reader.u16("TLV tag")
    length = reader.u16("TLV length")
    return Tlv(tag, reader.take(length, f"TLV 0x{tag:04x} value"))


def _read_tlvs(reader: Reader, count: int | None = None) -> tuple[Tlv, ...]:
    """``count`` TLVs (None: until the end of ``reader``). Every login and
    sign-on SNAC is TLVs, so this is one struct call per TLV; one that runs
    past the end is read again field by field for the exact error."""
    data, offset, end = reader.data, reader.offset, reader.end
    unpack = _TLV_HEADER.unpack_from
    tlvs = []
    while (offset < end) if count is None else (len(tlvs) < count):
        start = offset
        if end - start >= 4:
            tag, length = unpack(data, start)
            offset = start + 4 + length
            if offset <= end:
                tlvs.append(Tlv(tag, data[start + 4 : offset]))
                continue
        reader.offset = start
        _read_tlv(reader)  # raises MalformedData naming the field that ran out
        raise AssertionError("a TLV past the end was read")  # pragma: no cover
    reader.offset = offset
    return tuple(tlvs)


@attrs.frozen
class TlvList:
    """Ordered TLVs. Lookups return the first occurrence of a tag, since a tag
    repeats only where a layout says so (use ``all`` there)."""

    # Converted so that a list compares (and hashes) like the tuple a decoder builds.
    tlvs: tuple[Tlv, ...] = attrs.field(default=(), converter=tuple)

    @classmethod
    def of(cls, tlvs: Iterable[Tlv]) -> TlvList:
        return cls(tuple(tlvs))

    def __iter__(self) -> Iterator[Tlv]:
        return iter(self.tlvs)

    def __len__(self) -> int:
        return len(self.tlvs)

    def get(self, tag: int) -> bytes | None:
        for tlv in self.tlvs:
            if tlv.tag == tag:
                return tlv.value
        return None

    def has(self, tag: int) -> bool:
        return any(tlv.tag == tag for tlv in self.tlvs)

    def all(self, tag: int) -> list[bytes]:
        return [tlv.value for tlv in self.tlvs if tlv.tag == tag]

    def get_u8(self, tag: int) -> int | None:
        value = self.get(tag)
        if value is None:
            return None
        if len(value) != 1:
            raise MalformedData(f"TLV 0x{tag:04x} should hold a u8, has {len(value)} bytes")
        return value[0]

    def get_u16(self, tag: int) -> int | None:
        value = self.get(tag)
        if value is None:
            return None
        if len(value) != 2:
            raise MalformedData(f"TLV 0x{tag:04x} should hold a u16, has {len(value)} bytes")
        return int.from_bytes(value, "big")

    def get_u32(self, tag: int) -> int | None:
        value = self.get(tag)
        if value is None:
            return None
        if len(value) != 4:
            raise MalformedData(f"TLV 0x{tag:04x} should hold a u32, has {len(value)} bytes")
        return int.from_bytes(value, "big")

    def pack_list(self) -> bytes:
        return b"".join(tlv.pack() for tlv in self.tlvs)

    def pack_block(self) -> bytes:
        if len(self.tlvs) > 0xFFFF:
            raise ValueError("TLV block of more than 65535 TLVs")
        return struct.pack("!H", len(self.tlvs)) + self.pack_list()

    def pack_lblock(self) -> bytes:
        body = self.pack_list()
        if len(body) > 0xFFFF:
            raise ValueError("TLV L-block longer than 65535 bytes")
        return struct.pack("!H", len(body)) + body

    @classmethod
    def read_list(cls, reader: Reader) -> TlvList:
        """TLVs until the end of ``reader``."""
        return cls(_read_tlvs(reader))

    @classmethod
    def read_block(cls, reader: Reader) -> TlvList:
        count = reader.u16("TLV block count")
        # Each TLV takes at least 4 bytes: a count promising more cannot be satisfied.
        if count * 4 > reader.remaining():
            raise MalformedData(
                f"{reader.what}: TLV block promises {count} TLVs in {reader.remaining()} bytes"
            )
        return cls(_read_tlvs(reader, count))

    @classmethod
    def read_lblock(cls, reader: Reader) -> TlvList:
        length = reader.u16("TLV L-block length")
        start = reader.offset
        reader.take(length, "TLV L-block")
        return cls.read_list(Reader(reader.data, reader.what + " L-block", start, start + length))

    @classmethod
    def unpack_list(cls, data: bytes, what: str = "TLV list") -> TlvList:
        return cls.read_list(Reader(data, what))
