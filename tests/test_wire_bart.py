# -*- test-case-name: tests.test_wire_bart -*-
"""Tests for L{aimserver.wire.bart}: BART IDs and the BART (0x0010) bodies
(FAMILIES.md §BART): known bytes both ways, every truncation, round trips
both ways, and arbitrary bytes decoding or raising MalformedData only."""

from __future__ import annotations

import contextlib
import hashlib
import struct
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from aimserver.wire.bart import (
    BLANK_ICON,
    CLEAR_ICON_HASH,
    BartId,
    BartInfo,
    Download,
    Download2,
    Download2Reply,
    DownloadReply,
    Upload,
    UploadReply,
)
from aimserver.wire.errors import MalformedData
from aimserver.wire.reader import Reader
from tests.strategies import fuzz, u8s, u16s

GIF = b"GIF89a\x00\x00\x00\x00"
MD5 = hashlib.md5(GIF).digest()
BOB = b"Bob"

# FAMILIES.md §BART (10,02-10,05), §`01,21` and the feedbag BART item's TLV 0xD5.
KNOWN: list[tuple[Callable[[bytes], Any], bytes, Any]] = [
    (BartInfo.unpack, b"\x01\x10" + MD5, BartInfo(0x01, MD5)),
    (BartId.unpack, b"\x00\x01\x41\x10" + MD5, BartId(1, 0x41, MD5)),
    (Upload.unpack, bytes.fromhex("0001 000a") + GIF, Upload(1, GIF)),
    (UploadReply.unpack, bytes.fromhex("00 0001 01 10") + MD5, UploadReply(0, BartId(1, 1, MD5))),
    (
        Download.unpack,
        b"\x03Bob" + bytes.fromhex("01 0001 01 10") + MD5,
        Download(BOB, BartId(1, 1, MD5), 1),
    ),
    (
        DownloadReply.unpack,
        b"\x03Bob" + bytes.fromhex("0001 01 10") + MD5 + b"\x00\x0a" + GIF,
        DownloadReply(BOB, BartId(1, 1, MD5), GIF),
    ),
    (
        Download2.unpack,
        b"\x03Bob\x02" + bytes.fromhex("0001 01 10") + MD5 + bytes.fromhex("0000 00 05 0201d20472"),
        Download2(BOB, (BartId(1, 1, MD5), BartId(0, 0, CLEAR_ICON_HASH))),
    ),
    (
        Download2Reply.unpack,
        b"\x03Bob"
        + bytes.fromhex("0001 01 10")
        + MD5
        + b"\x07"
        + bytes.fromhex("0001 01 10")
        + MD5
        + b"\x00\x00",
        Download2Reply(BOB, BartId(1, 1, MD5), 7, BartId(1, 1, MD5), b""),
    ),
]

hashes = st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=24))
bart_ids = st.builds(BartId, u16s, u8s, hashes)
names = st.binary(max_size=20)
data = st.binary(max_size=64)
uploads = st.builds(Upload, u16s, data)
upload_replies = st.builds(UploadReply, u8s, bart_ids)
downloads = st.builds(Download, names, bart_ids, u8s)
download_replies = st.builds(DownloadReply, names, bart_ids, data)
downloads2 = st.builds(Download2, names, st.lists(bart_ids, max_size=4).map(tuple))
download2_replies = st.builds(Download2Reply, names, bart_ids, u8s, bart_ids, data)
VALUES = [
    (st.builds(BartInfo, u8s, hashes), BartInfo.unpack),
    (bart_ids, BartId.unpack),
    (uploads, Upload.unpack),
    (upload_replies, UploadReply.unpack),
    (downloads, Download.unpack),
    (download_replies, DownloadReply.unpack),
    (downloads2, Download2.unpack),
    (download2_replies, Download2Reply.unpack),
]
# Hand-built encodings (struct, not the codecs under test).
bart_id_bytes = st.builds(lambda t, f, h: struct.pack("!HBB", t, f, len(h)) + h, u16s, u8s, hashes)


@st.composite
def download2_bytes(draw: st.DrawFn) -> bytes:
    name = draw(names)
    ids = draw(st.lists(bart_id_bytes, max_size=4))
    return bytes([len(name)]) + name + bytes([len(ids)]) + b"".join(ids)


@st.composite
def download2_reply_bytes(draw: st.DrawFn) -> bytes:
    name = draw(names)
    payload = draw(data)
    return (
        bytes([len(name)])
        + name
        + draw(bart_id_bytes)
        + bytes([draw(u8s)])
        + draw(bart_id_bytes)
        + struct.pack("!H", len(payload))
        + payload
    )


ENCODINGS = [
    (bart_id_bytes, BartId.unpack),
    (download2_bytes(), Download2.unpack),
    (download2_reply_bytes(), Download2Reply.unpack),
    (
        st.builds(lambda t, d: struct.pack("!HH", t, len(d)) + d, u16s, data),
        Upload.unpack,
    ),
]


class KnownBytesTests(SynchronousTestCase):
    def test_decode_known(self) -> None:
        """The FAMILIES.md examples decode to the values they describe."""
        for unpack, body, value in KNOWN:
            self.assertEqual(unpack(body), value, body.hex())

    def test_encode_known(self) -> None:
        """... and those values pack to exactly those bytes."""
        for _, body, value in KNOWN:
            self.assertEqual(value.pack(), body, value)

    def test_every_truncation_is_malformed(self) -> None:
        """Each example cut short anywhere is MalformedData, never IndexError
        or struct.error."""
        for unpack, body, _ in KNOWN:
            for end in range(len(body)):
                with self.assertRaises(MalformedData, msg=f"{body[:end].hex()}"):
                    unpack(body[:end])

    def test_exact_structures_refuse_stray_bytes(self) -> None:
        """A BART ID or TLV 0xD5 value followed by more is malformed (they are
        whole TLV values); the requests ignore what follows their fields."""
        with self.assertRaises(MalformedData):
            BartId.unpack(BartId(1, 1, MD5).pack() + b"\x00")
        with self.assertRaises(MalformedData):
            BartInfo.unpack(BartInfo(1, MD5).pack() + b"\x00")
        download = Download(BOB, BartId(1, 1, MD5))
        self.assertEqual(Download.unpack(download.pack() + b"\x00\x02\x01\x00"), download)

    def test_read_leaves_the_rest(self) -> None:
        """``BartId.read`` takes one ID off a reader (IDs follow each other
        in TLV 0x001D)."""
        reader = Reader(BartId(0, 0, b"").pack() + BartId(1, 1, MD5).pack(), "test")
        self.assertEqual(BartId.read(reader), BartId(0, 0, b""))
        self.assertEqual(BartId.read(reader), BartId(1, 1, MD5))
        self.assertTrue(reader.at_end())

    def test_info_is_the_id_without_its_type(self) -> None:
        self.assertEqual(BartId(1, 0x41, MD5).info, BartInfo(0x41, MD5))
        self.assertEqual(BartId(1, 0x41, MD5).pack()[2:], BartInfo(0x41, MD5).pack())

    def test_too_long_fields_do_not_pack(self) -> None:
        """What the wire cannot carry is a programming error (ValueError)."""
        for value in (
            BartId(1, 1, b"x" * 256),
            Download(b"x" * 256, BartId(1, 1, MD5)),
            Upload(1, b"x" * 0x10000),
            Download2(BOB, (BartId(1, 1, MD5),) * 256),
        ):
            with self.assertRaises(ValueError):
                value.pack()

    def test_blank_icon_is_a_transparent_gif(self) -> None:
        """What "no icon" downloads as: a whole 1x1 GIF89a whose one colour is
        transparent (header, screen, colour table, graphic control, image,
        trailer)."""
        self.assertEqual(BLANK_ICON[:6], b"GIF89a")
        width, height, packed = struct.unpack_from("<HHB", BLANK_ICON, 6)
        self.assertEqual((width, height, packed & 0x80), (1, 1, 0x80))
        table = 3 * 2 ** ((packed & 0x07) + 1)
        offset = 13 + table
        self.assertEqual(BLANK_ICON[offset : offset + 3], b"\x21\xf9\x04")
        self.assertEqual(BLANK_ICON[offset + 3] & 0x01, 1)  # transparency on
        offset += 8
        self.assertEqual(BLANK_ICON[offset], 0x2C)
        self.assertEqual(struct.unpack_from("<HHHH", BLANK_ICON, offset + 1), (0, 0, 1, 1))
        offset += 10
        offset += 1  # LZW minimum code size
        while BLANK_ICON[offset]:
            offset += 1 + BLANK_ICON[offset]
        self.assertEqual(BLANK_ICON[offset + 1 :], b"\x3b")


class PropertyTests(SynchronousTestCase):
    @given(st.data())
    def test_values_round_trip(self, draw: st.DataObject) -> None:
        """unpack(pack(x)) == x for every codec."""
        for strategy, unpack in VALUES:
            value = draw.draw(strategy)
            self.assertEqual(unpack(value.pack()), value)

    @given(st.data())
    def test_encodings_round_trip(self, draw: st.DataObject) -> None:
        """pack(unpack(b)) == b for encodings built with struct."""
        for strategy, unpack in ENCODINGS:
            encoded = draw.draw(strategy)
            self.assertEqual(unpack(encoded).pack(), encoded)

    @given(st.data())
    def test_any_bytes_decode_or_are_malformed(self, draw: st.DataObject) -> None:
        """Every decoder, given random bytes or near misses of valid bodies,
        returns a value or raises MalformedData: nothing else escapes."""
        for strategy, unpack in VALUES:
            valid = strategy.map(lambda v: v.pack())
            body = draw.draw(fuzz(valid))
            with contextlib.suppress(MalformedData):
                unpack(body)
