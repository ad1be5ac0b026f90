# -*- test-case-name: tests.test_wire_bart -*-
"""BART (0x0010) bodies: buddy-icon ids, uploads and downloads (FAMILIES.md §BART).

A BART ID names one item by its type and the MD5 of its data; it travels in
user-info TLV 0x001D, in 01,21 and in every BART SNAC. The feedbag's BART
item (class 0x0014) carries only its ``flags, hash`` half (``BartInfo``, TLV
0x00D5); the type is the item's name ("1").

The request decoders read what they need and ignore any bytes after it
(10,04's count byte is 1 for every client seen, so it names one ID); the
replies pack exactly their layout.
"""

from __future__ import annotations

import struct

import attrs

from aimserver.wire.reader import Reader, read_whole, string08, string16

__all__ = [
    "BLANK_ICON",
    "CLEAR_ICON_HASH",
    "FLAG_CUSTOM",
    "FLAG_UNKNOWN",
    "TYPE_BUDDY_ICON",
    "TYPE_SMALL_BUDDY_ICON",
    "BartId",
    "BartInfo",
    "Download",
    "Download2",
    "Download2Reply",
    "DownloadReply",
    "Upload",
    "UploadReply",
]

#: BART types: the two buddy icons (FAMILIES.md, BART ID).
TYPE_SMALL_BUDDY_ICON = 0x0000
TYPE_BUDDY_ICON = 0x0001
#: BART ID flags: a custom item (an uploaded icon), and "the server does not
#: have it": upload it (01,21).
FLAG_CUSTOM = 0x01
FLAG_UNKNOWN = 0x40
#: The hash a client sets to say "no icon" (libpurple, Miranda, AOL's own
#: arrivals for users without one); it names no uploaded data.
CLEAR_ICON_HASH = bytes.fromhex("0201d20472")
#: What a download of the "no icon" hash gets: a valid, fully transparent
#: 1x1 GIF89a (2-colour table, graphic control extension with colour 0
#: transparent, one LZW-coded pixel), which every client shows as nothing.
BLANK_ICON = bytes.fromhex(
    "474946383961"  # GIF89a
    "0100 0100 80 00 00"  # 1x1, global colour table of 2, background 0
    "000000 ffffff"  # the colour table
    "21f904 01 0000 00 00"  # graphic control: colour 0 transparent
    "2c 0000 0000 0100 0100 00"  # image descriptor: 1x1 at 0,0
    "02 02 4401 00"  # LZW minimum code size 2: clear, 0, end
    "3b"  # trailer
)

_TYPE = struct.Struct("!H")
_U8 = struct.Struct("!B")


@attrs.frozen
class BartInfo:
    """``flags, hash``: the feedbag BART item's TLV 0x00D5, a BART ID without its type."""

    flags: int
    hash: bytes

    def pack(self) -> bytes:
        return _U8.pack(self.flags) + string08(self.hash)

    @classmethod
    def read(cls, reader: Reader) -> BartInfo:
        flags = reader.u8("BART flags")
        return cls(flags, reader.string08("BART hash"))

    @classmethod
    def unpack(cls, data: bytes) -> BartInfo:
        """Exactly one ``flags, hash`` (the whole TLV value)."""
        return read_whole(cls.read, data, "BART info")


@attrs.frozen
class BartId:
    """u16 type, u8 flags, string08 hash."""

    type: int
    flags: int
    hash: bytes

    @property
    def info(self) -> BartInfo:
        return BartInfo(self.flags, self.hash)

    def pack(self) -> bytes:
        return _TYPE.pack(self.type) + _U8.pack(self.flags) + string08(self.hash)

    @classmethod
    def read(cls, reader: Reader) -> BartId:
        type_ = reader.u16("BART type")
        flags = reader.u8("BART flags")
        return cls(type_, flags, reader.string08("BART hash"))

    @classmethod
    def unpack(cls, data: bytes) -> BartId:
        """Exactly one BART ID."""
        return read_whole(cls.read, data, "BART ID")


@attrs.frozen
class Upload:
    """10,02: u16 type, string16 data."""

    type: int
    data: bytes

    def pack(self) -> bytes:
        return _TYPE.pack(self.type) + string16(self.data)

    @classmethod
    def unpack(cls, body: bytes) -> Upload:
        reader = Reader(body, "BART upload")
        type_ = reader.u16("BART type")
        return cls(type_, reader.string16("BART data"))


@attrs.frozen
class UploadReply:
    """10,03: u8 result code, the item's BART ID."""

    code: int
    id: BartId

    def pack(self) -> bytes:
        return _U8.pack(self.code) + self.id.pack()

    @classmethod
    def unpack(cls, body: bytes) -> UploadReply:
        reader = Reader(body, "BART upload reply")
        code = reader.u8("BART reply code")
        return cls(code, BartId.read(reader))


@attrs.frozen
class Download:
    """10,04: string08 owner, u8 command (1), one BART ID. ``screen_name``
    is kept as sent: the reply echoes it."""

    screen_name: bytes
    id: BartId
    command: int = 1

    def pack(self) -> bytes:
        return string08(self.screen_name) + _U8.pack(self.command) + self.id.pack()

    @classmethod
    def unpack(cls, body: bytes) -> Download:
        reader = Reader(body, "BART download")
        name = reader.string08("owner screen name")
        command = reader.u8("BART download command")
        return cls(name, BartId.read(reader), command)


@attrs.frozen
class DownloadReply:
    """10,05: string08 owner, the BART ID asked for, string16 data."""

    screen_name: bytes
    id: BartId
    data: bytes

    def pack(self) -> bytes:
        return string08(self.screen_name) + self.id.pack() + string16(self.data)

    @classmethod
    def unpack(cls, body: bytes) -> DownloadReply:
        reader = Reader(body, "BART download reply")
        name = reader.string08("owner screen name")
        bart_id = BartId.read(reader)
        return cls(name, bart_id, reader.string16("BART data"))


@attrs.frozen
class Download2:
    """10,06: string08 owner, u8 count, that many BART IDs."""

    screen_name: bytes
    ids: tuple[BartId, ...]

    def pack(self) -> bytes:
        if len(self.ids) > 0xFF:
            raise ValueError("a 10,06 names at most 255 BART IDs")
        return (
            string08(self.screen_name)
            + _U8.pack(len(self.ids))
            + b"".join(i.pack() for i in self.ids)
        )

    @classmethod
    def unpack(cls, body: bytes) -> Download2:
        reader = Reader(body, "BART download 2")
        name = reader.string08("owner screen name")
        count = reader.u8("BART ID count")
        return cls(name, tuple(BartId.read(reader) for _ in range(count)))


@attrs.frozen
class Download2Reply:
    """10,07, one per ID asked for: string08 owner, the ID asked for, u8
    result code, the ID answered, string16 data."""

    screen_name: bytes
    query: BartId
    code: int
    reply: BartId
    data: bytes

    def pack(self) -> bytes:
        return (
            string08(self.screen_name)
            + self.query.pack()
            + _U8.pack(self.code)
            + self.reply.pack()
            + string16(self.data)
        )

    @classmethod
    def unpack(cls, body: bytes) -> Download2Reply:
        reader = Reader(body, "BART download 2 reply")
        name = reader.string08("owner screen name")
        query = BartId.read(reader)
        code = reader.u8("BART reply code")
        reply = BartId.read(reader)
        return cls(name, query, code, reply, reader.string16("BART data"))
