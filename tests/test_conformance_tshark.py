"""Conformance against an independent implementation: Wireshark's AIM dissector.

A whole session (both logins, BOS sign-on, presence, IMs with and without a
host ack, the feedbag, directory info, the BART, Admin and ODir service
connections reached through 01,04, UserLookup, a departure, an IM to an
offline user, a few bad inputs) runs over loopback while dumpcap captures
exactly the server's two ports. tshark then reads the capture back, decoding
both ports as AIM, and must find no malformed packet, no expert error, no
expert warning above TCP, plenty of AIM PDUs, and the SNACs the session is
known to have carried. A chat session (ChatNav on a service connection of
BOS, the chat service on its own port, which tshark is told to decode as AIM
too; a refused room name, an invitation, talk with reflection, a leave) is
captured and checked the same way, each chat SNAC on the listener it belongs
to. The one exception is a known gap of the dissector (``DISSECTOR_GAPS``, by
direction, family and subtype, with the reason: the ODir search reply, and the
chat messages 0E,05 and 0E,06): a malformed-packet error inside such a SNAC is
let through. tests/README.md has the same check by hand.

Skipped when ``tshark`` or ``dumpcap`` is not on PATH, or when no capture can
be started on ``lo`` (no permission, no such interface), with a reason that
says what to install or allow; under CI (``CI=true``, which ``.ci/run`` sets
after installing tshark) each of these is a failure instead, so CI cannot
pass without having run the check.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import struct
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from twisted.internet import defer, error, reactor, task
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial import unittest

from aimserver.wire.bart import BartId, BartInfo, Download, Download2, Upload
from aimserver.wire.chat import CHAT_CAPABILITY, EXCHANGE_PRIVATE, RoomInfo, RoomRef, parse_users
from aimserver.wire.icbm import Rendezvous
from aimserver.wire.tlv import Tlv, TlvList
from tests import external
from tests.client import BosClient, ChatClient, deferred_test, redeem, roasted_login
from tests.external import in_ci
from tests.harness import LoopbackServer

TSHARK = shutil.which("tshark")
DUMPCAP = shutil.which("dumpcap")
INTERFACE = "lo"
INSTALL_HINT = (
    "install Wireshark's command-line tools: apt-get install tshark (Debian/Ubuntu;"
    " .ci/run does it when run as root), dnf install wireshark-cli (Fedora),"
    " brew install wireshark (macOS)"
)

#: Bounds on the waits, in seconds.
CAPTURE_START_TIMEOUT = 10.0
CAPTURE_FLUSH_TIMEOUT = 5.0
PROCESS_EXIT_TIMEOUT = 5.0
TSHARK_TIMEOUT = 30.0
#: dumpcap stops by itself after this long even if everything else went wrong.
CAPTURE_BACKSTOP = 120

#: How much of ``tshark -V -x`` output a failure message shows, without the
#: details of these layers.
DETAIL_LINES = 250
TCP_LAYER = "Transmission Control Protocol"
LOWER_LAYERS = ("Frame ", "Ethernet II", "Linux cooked", "Internet Protocol", TCP_LAYER)

# (sent by the server?, family, subtype) of SNACs the session must have carried.
SERVER = True
CLIENT = False
REQUIRED_SNACS: dict[tuple[bool, int, int], str] = {
    (CLIENT, 0x17, 0x06): "BUCP challenge request",
    (SERVER, 0x17, 0x07): "BUCP challenge",
    (CLIENT, 0x17, 0x02): "BUCP login request",
    (SERVER, 0x17, 0x03): "BUCP login reply",
    (SERVER, 0x01, 0x03): "host online",
    (CLIENT, 0x01, 0x17): "client versions",
    (SERVER, 0x01, 0x18): "host versions",
    (CLIENT, 0x01, 0x06): "rate info request",
    (SERVER, 0x01, 0x07): "rate info",
    (CLIENT, 0x01, 0x08): "rate info ack",
    (CLIENT, 0x01, 0x0E): "self info request",
    (SERVER, 0x01, 0x0F): "self info",
    (SERVER, 0x02, 0x03): "locate rights",
    (SERVER, 0x03, 0x03): "buddy rights",
    (CLIENT, 0x03, 0x04): "add buddies",
    (SERVER, 0x03, 0x0B): "arrival",
    (SERVER, 0x03, 0x0C): "departure",
    (SERVER, 0x04, 0x05): "ICBM parameters",
    (CLIENT, 0x04, 0x06): "IM to host",
    (SERVER, 0x04, 0x07): "IM to client",
    (SERVER, 0x04, 0x0C): "host ack",
    (SERVER, 0x04, 0x01): "ICBM error",
    (SERVER, 0x09, 0x03): "BOS rights",
    (CLIENT, 0x01, 0x02): "client ready",
}
REQUIRED_SNACS.update(
    {
        (CLIENT, 0x13, 0x08): "feedbag insert",
        (CLIENT, 0x13, 0x0A): "feedbag delete",
        (SERVER, 0x13, 0x0E): "feedbag status",
        (SERVER, 0x13, 0x08): "feedbag insert synced to a sibling",
        (CLIENT, 0x13, 0x11): "feedbag cluster start",
        (CLIENT, 0x13, 0x12): "feedbag cluster end",
    }
)
#: The feedbag items of the session (FAMILIES.md, Feedbag): root, group, buddy,
#: and a deny item.
FEEDBAG_ROOT = bytes.fromhex("0000 0000 0000 0001 0006 00c8 0002 0a1e".replace(" ", ""))
FEEDBAG_GROUP = bytes.fromhex(
    "0007 427564646965 73 0a1e 0000 0001 0006 00c8 0002 1234".replace(" ", "")
)
FEEDBAG_BUDDY = bytes.fromhex("0009 426f6220536d697468 0a1e 1234 0000 0000".replace(" ", ""))
FEEDBAG_DENY_BOB = bytes.fromhex("0009 426f6220536d697468 0000 0200 0003 0000".replace(" ", ""))
#: 02,09: first name "Alice", city "Springfield", searches allowed (0x000A = 1).
DIRECTORY_INFO = bytes.fromhex(
    "0001 0005 416c696365 0008 000b 537072696e676669656c64 000a 0002 0001".replace(" ", "")
)
#: 02,0F: one interest keyword, so that 0F,05 lists something.
KEYWORD_INFO = bytes.fromhex("000b 0005 6368657373".replace(" ", ""))
#: The service connections (01,04 → 01,05 → sign-on with the cookie) and what
#: each one carries; UserLookup is on BOS.
REQUIRED_SNACS.update(
    {
        (CLIENT, 0x01, 0x04): "service request",
        (SERVER, 0x01, 0x05): "service redirect",
        (SERVER, 0x01, 0x21): "BART reply (upload the icon)",
        (CLIENT, 0x10, 0x02): "BART upload",
        (SERVER, 0x10, 0x03): "BART upload reply",
        (CLIENT, 0x10, 0x04): "BART download",
        (SERVER, 0x10, 0x05): "BART download reply",
        (CLIENT, 0x07, 0x02): "admin info query",
        (SERVER, 0x07, 0x03): "admin info reply",
        (CLIENT, 0x07, 0x04): "admin info change",
        (SERVER, 0x07, 0x05): "admin info change reply",
        (CLIENT, 0x07, 0x06): "admin account confirm",
        (SERVER, 0x07, 0x07): "admin account confirm reply",
        (CLIENT, 0x0F, 0x02): "directory search",
        (SERVER, 0x0F, 0x03): "directory search reply",
        (CLIENT, 0x0F, 0x04): "directory keyword list query",
        (SERVER, 0x0F, 0x05): "directory keyword list",
        (CLIENT, 0x0A, 0x02): "user lookup by e-mail",
        (SERVER, 0x0A, 0x03): "user lookup reply",
    }
)
#: A small GIF (1x1, one red pixel) for the BART upload, and the feedbag BART
#: item naming it (class 0x0014, name "1", TLV 0x00D5 = flags, MD5), as
#: libpurple stores it (FAMILIES.md §Feedbag).
ICON = bytes.fromhex(
    "474946383961 0100 0100 80 00 00 ff0000 000000"  # GIF89a, 1x1, 2 colours: red, black
    " 2c 0000 0000 0100 0100 00 02 02 4401 00 3b"  # one pixel, the end
)
ICON_MD5 = hashlib.md5(ICON).digest()
FEEDBAG_ICON = (
    bytes.fromhex("0001 31 0000 5555 0014 0016".replace(" ", ""))
    + Tlv(0x00D5, BartInfo(0x01, ICON_MD5).pack()).pack()
)
ICON_ID = BartId(0x0001, 0x01, ICON_MD5)
EMAIL = b"alice@example.com"
#: SNACs of a family or subtype the dissector does not know get no FNAC fields,
#: only a summary line; (sent by the server?, what that line says).
REQUIRED_SUMMARIES = {
    (CLIENT, "Family: 0x0055, Subtype: 0x0002"),
    (SERVER, "Family: 0x0055, Subtype: 0x0001"),
    (CLIENT, "AIM Messaging, Subtype: 0x0077"),
    # Wireshark's dissector (4.0) has no fields for Locate 02,09-02,10...
    (CLIENT, "AIM Location, Subtype: 0x0009"),
    (SERVER, "AIM Location, Subtype: 0x000a"),
    (CLIENT, "AIM Location, Subtype: 0x000b"),
    (SERVER, "AIM Location, Subtype: 0x000c"),
    (CLIENT, "AIM Location, Subtype: 0x000f"),
    (SERVER, "AIM Location, Subtype: 0x0010"),
    # ... nor for BART 10,06 / 10,07 (its "SST" family stops at 10,05).
    (CLIENT, "AIM SST, Subtype: 0x0006"),
    (SERVER, "AIM SST, Subtype: 0x0007"),
}
#: Known gaps of Wireshark's AIM dissector, where it misreads what we send:
#: (sent by the server?, family, subtype) -> why we are right. Only a
#: malformed-packet error raised while dissecting one of these SNACs is let
#: through; any other expert error there, and any error elsewhere, fails.
DISSECTOR_GAPS: dict[tuple[bool, int, int], str] = {
    (SERVER, 0x0F, 0x03): (
        "ODir search reply: Wireshark's dissect_aim_directory_user_repl (4.0;"
        " unchanged in later packet-aim.c) reads the whole body as bare TLVs, so"
        " status 0x0005 and the u16 0 read as TLV 0x0005 of length 0, the result"
        " count 1 and the block's TLV count 6 as TLV 0x0001 of length 6, and so"
        " on until a length runs past the end. The body is u16 status, u16"
        " unknown (0), u16 result count, then one TLV block (u16 count, TLVs)"
        " per result: FAMILIES.md §ODir (Go), and libpurple's parseresults"
        " reads it so"
    ),
    (CLIENT, 0x0E, 0x05): (
        "chat message to the room: Wireshark's dissect_aim_chat_outgoing_msg (4.0;"
        " unchanged in later packet-aim.c) calls aim_get_buddyname(tvb, 30), reading"
        " an s08 screen name at the fixed body offset 30 (length byte at 30, name"
        " from 31), then the message at offset 40 + that length. A 0E,05 names no"
        " screen name: the body is cookie (8), u16 channel, then TLVs 0x0001 (to"
        " the room), 0x0006 (reflect), 0x0005 (the message's TLVs), so offset 30"
        " falls in the text, and a text byte taken as a length runs past the end."
        " docs/chat-protocol-notes.md §6 and §8; libpurple's aim_chat_send_im"
        " sends it so"
    ),
    (SERVER, 0x0E, 0x06): (
        "chat message to a member: Wireshark's dissect_aim_chat_incoming_msg (4.0;"
        " unchanged in later packet-aim.c) reads the sender as an s08 at the fixed"
        " body offset 30 (aim_get_buddyname(tvb, 30)), then the message at 36 +"
        " its length. The body is cookie (8), u16 channel, TLV 0x0003 holding the"
        " sender's user-info block (its s08 screen name at offset 14), then TLV"
        " 0x0001 and 0x0005: for a long sender name (16 characters) offset 30 is"
        " a byte of the name, which as a length runs past the end."
        " docs/chat-protocol-notes.md §6 and §8; libpurple's incomingim_ch3"
        " reads it so"
    ),
}
#: The chat session's accounts: one with a screen name of 16 characters, the
#: longest there is, whose 0E,06 the dissector misreads (see DISSECTOR_GAPS).
LONG_NAME = "Charlotte Bronte"
CHAT_ACCOUNTS = {"Alice": "secret", "Bob": "secret", LONG_NAME: "secret"}
ROOM = "Tea Party"
#: How tshark shows the chat capability (aim.nickinfo.caps).
CHAT_CAPABILITY_UUID = str(uuid.UUID(bytes=CHAT_CAPABILITY))
#: A room name the server refuses (0D,01 0x0001 with subcode 0x0033,
#: libpurple's "Invalid chat room name").
BAD_ROOM = "100%"
#: What the chat session must have carried, by the listener the connection
#: was to: ChatNav is a service connection on the BOS port, the chat service
#: has a port of its own. (listener, sent by the server?, family, subtype) ->
#: (how many at least, what).
BOS = "BOS"
CHAT = "chat"
REQUIRED_CHAT_SNACS: dict[tuple[str, bool, int, int], tuple[int, str]] = {
    (BOS, CLIENT, 0x01, 0x04): (3, "service request: ChatNav, then the chat service"),
    (BOS, SERVER, 0x01, 0x05): (3, "service redirect"),
    (BOS, CLIENT, 0x0D, 0x02): (1, "ChatNav rights request"),
    (BOS, SERVER, 0x0D, 0x09): (4, "ChatNav rights and room info"),
    (BOS, CLIENT, 0x0D, 0x08): (4, "ChatNav create/join by name"),
    (BOS, SERVER, 0x0D, 0x01): (1, "ChatNav error: bad room name"),
    (BOS, CLIENT, 0x04, 0x06): (1, "chat invitation (channel 2)"),
    (BOS, SERVER, 0x04, 0x07): (1, "chat invitation delivered"),
    (CHAT, SERVER, 0x01, 0x03): (3, "host online"),
    (CHAT, CLIENT, 0x01, 0x17): (3, "client versions"),
    (CHAT, SERVER, 0x01, 0x18): (3, "host versions"),
    (CHAT, CLIENT, 0x01, 0x06): (3, "rate info request"),
    (CHAT, SERVER, 0x01, 0x07): (3, "rate info"),
    (CHAT, CLIENT, 0x01, 0x02): (3, "client ready"),
    (CHAT, SERVER, 0x0E, 0x03): (6, "roster, then members joining"),
    (CHAT, SERVER, 0x0E, 0x02): (3, "room info"),
    (CHAT, CLIENT, 0x0E, 0x05): (2, "message to the room"),
    (CHAT, SERVER, 0x0E, 0x06): (6, "message to the others, and reflected"),
    (CHAT, SERVER, 0x0E, 0x04): (2, "member left"),
}
#: FLAP channels each side must have used (1 sign-on, 2 SNAC data, 4 sign-off).
REQUIRED_CHANNELS = {(SERVER, 1), (SERVER, 2), (SERVER, 4), (CLIENT, 1), (CLIENT, 2)}
MIN_AIM_PDUS = 60

HTML_TEXT = b"<HTML>hi \xe9</HTML>"

#: In ``tshark -V`` output: where each AIM PDU starts, its FNAC header, the
#: TCP line that says who sent it, and an expert error.
FRAME_LINE = re.compile(r"^Frame (\d+):")
TCP_LINE = re.compile(r"^Transmission Control Protocol, Src Port: (\d+),")
AIM_PDU_LINE = "AOL Instant Messenger"
FNAC_LINE = re.compile(
    r"^    FNAC: Family: .*\((0x[0-9a-fA-F]+)\), Subtype: .*\((0x[0-9a-fA-F]+)\)$"
)
EXPERT_ERROR = "[Expert Info (Error/"
#: How a malformed PDU shows: a top-level line after its tree, and the
#: expert error under it.
MALFORMED = ("[Malformed Packet", "[Expert Info (Error/Malformed)")


class ExpertError:
    """One expert error in ``tshark -V`` output and the AIM PDU it was raised
    in: ``family`` and ``subtype`` are None outside one (or before its FNAC
    header, or in a SNAC the dissector gives no FNAC fields)."""

    def __init__(
        self,
        frame: str,
        from_server: bool | None,
        family: int | None,
        subtype: int | None,
        text: str,
    ) -> None:
        self.frame = frame
        self.from_server = from_server
        self.family = family
        self.subtype = subtype
        self.text = text

    def gap(self) -> str | None:
        """The reason from ``DISSECTOR_GAPS`` if this is a known gap's
        malformed-packet error, else None."""
        if self.from_server is None or self.family is None or self.subtype is None:
            return None
        reason = DISSECTOR_GAPS.get((self.from_server, self.family, self.subtype))
        return reason if reason is not None and self.text.startswith(MALFORMED) else None

    def __str__(self) -> str:
        if self.family is None or self.subtype is None:
            where = "outside any SNAC"
        else:
            side = "?" if self.from_server is None else _side(self.from_server)
            where = f"{side} {self.family:02x},{self.subtype:02x}"
        return f"frame {self.frame}, {where}: {self.text}"


def expert_errors(detail: Sequence[str], ports: Sequence[int]) -> list[ExpertError]:
    """Every expert error in ``tshark -V`` output, each with the AIM PDU it
    was raised in (one frame may carry several PDUs; an exception in one is
    reported after that PDU's tree, before the next PDU starts)."""
    found = []
    frame = ""
    from_server: bool | None = None
    family: int | None = None
    subtype: int | None = None
    for line in detail:
        if match := FRAME_LINE.match(line):
            frame, from_server, family, subtype = match.group(1), None, None, None
        elif match := TCP_LINE.match(line):
            from_server = int(match.group(1)) in ports
        elif line == AIM_PDU_LINE:
            family = subtype = None
        elif match := FNAC_LINE.match(line):
            family, subtype = int(match.group(1), 16), int(match.group(2), 16)
        elif EXPERT_ERROR in line or line.startswith(MALFORMED[0]):
            found.append(ExpertError(frame, from_server, family, subtype, line.strip()))
    return found


class Process(ProcessProtocol):
    """A child whose output is kept; ``wait_exit`` waits for it to end."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.running = False
        self.exit_code: int | None = None
        self._exit_waiters: list[defer.Deferred[int | None]] = []

    def connectionMade(self) -> None:
        self.running = True

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:  # type: ignore[override]
        self.running = False
        self.exit_code = reason.value.exitCode
        waiters, self._exit_waiters = self._exit_waiters, []
        for d in waiters:
            d.callback(self.exit_code)

    def stderr_text(self) -> str:
        return self.err.decode("utf-8", "replace").replace("\r", "\n").strip()

    def wait_exit(self, timeout: float) -> defer.Deferred[int | None]:
        if not self.running:
            return defer.succeed(self.exit_code)
        d: defer.Deferred[int | None] = defer.Deferred()
        self._exit_waiters.append(d)
        d.addTimeout(timeout, reactor)
        return d

    def signal(self, name: str) -> None:
        if self.running:
            with contextlib.suppress(error.ProcessExitedAlready):
                self.transport.signalProcess(name)

    async def stop(self, signal: str = "TERM") -> int | None:
        """Ask it to stop with ``signal``; kill it if it does not."""
        self.signal(signal)
        try:
            return await self.wait_exit(PROCESS_EXIT_TIMEOUT)
        except defer.TimeoutError:
            self.signal("KILL")
            return await self.wait_exit(PROCESS_EXIT_TIMEOUT)


class Capture(Process):
    """dumpcap: ``started`` fires True once it has opened its output file
    (after the interface and the filter are set up), False if it exited first."""

    def __init__(self) -> None:
        super().__init__()
        self.started: defer.Deferred[bool] = defer.Deferred()

    def errReceived(self, data: bytes) -> None:
        super().errReceived(data)
        lines = self.err.replace(b"\r", b"\n").split(b"\n")
        if not self.started.called and any(line.startswith(b"File: ") for line in lines):
            self.started.callback(True)

    def processEnded(self, reason: Failure) -> None:  # type: ignore[override]
        super().processEnded(reason)
        if not self.started.called:
            self.started.callback(False)


class Decoded:
    """What the dissector made of a capture."""

    def __init__(self) -> None:
        self.pdus = 0
        #: (sent by the server?, FLAP channel)
        self.channels: set[tuple[bool, int]] = set()
        #: (sent by the server?, family, subtype)
        self.snacs: set[tuple[bool, int, int]] = set()
        self.snac_errors: set[int] = set()
        #: Buddy names and message texts, one a line.
        self.text = ""
        #: (sent by the server?, the frame's summary line)
        self.summaries: list[tuple[bool, str]] = []
        #: How many SNACs of each (server port, sent by the server?, family,
        #: subtype): which of the server's listeners the connection was to.
        self.by_port: Counter[tuple[int, bool, int, int]] = Counter()

    def seen(self) -> str:
        return ", ".join(
            f"{'S' if side else 'C'}:{family:02x},{subtype:02x}"
            for side, family, subtype in sorted(self.snacs)
        )


def _ints(text: str) -> list[int]:
    return [int(value, 0) for value in text.split(",") if value]


def _side(from_server: bool) -> str:
    return "server" if from_server else "client"


def _without_lower_layers(detail: list[str]) -> list[str]:
    """``tshark -V`` output with the frame, Ethernet, IP and TCP trees cut
    down to their one-line headers."""
    kept = []
    folded = False
    for line in detail:
        if not line.startswith(" "):
            folded = line.startswith(LOWER_LAYERS)
            kept.append(line)
        elif not folded:
            kept.append(line)
    return kept


def missing_tools() -> str | None:
    """Why the check cannot run on this machine's PATH, or None."""
    missing = [name for name, path in (("tshark", TSHARK), ("dumpcap", DUMPCAP)) if path is None]
    if not missing:
        return None
    return f"needs {' and '.join(missing)} on PATH; {INSTALL_HINT}"


def unavailable(reason: str, environ: Mapping[str, str] | None = None) -> Exception:
    """What to raise when the check cannot run: a skip on a developer's
    machine, a failure under CI."""
    return external.unavailable("the Wireshark conformance check", reason, environ)


def sleep(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


def _reap(process: Process) -> defer.Deferred[Any] | None:
    if process.running:
        return defer.Deferred.fromCoroutine(process.stop("KILL"))
    return None


class TsharkConformanceTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        reason = missing_tools()
        if reason is not None:
            raise unavailable(reason)

    def spawn(self, process: Process, executable: str, args: Sequence[str]) -> Process:
        reactor.spawnProcess(process, executable, [executable, *args], env=dict(os.environ))
        self.addCleanup(_reap, process)
        return process

    # -- capture ------------------------------------------------------------------------

    async def start_capture(self, ports: Sequence[int]) -> tuple[Capture, str]:
        assert DUMPCAP is not None
        path = os.path.abspath(self.mktemp() + ".pcapng")
        bpf = " or ".join(f"tcp port {port}" for port in ports)
        args = ["-i", INTERFACE, "-f", bpf, "-w", path, "-a", f"duration:{CAPTURE_BACKSTOP}"]
        capture = Capture()
        self.spawn(capture, DUMPCAP, args)
        capture.started.addTimeout(CAPTURE_START_TIMEOUT, reactor)
        try:
            running = await capture.started
        except defer.TimeoutError:
            running = False
        if not running:
            await capture.stop("KILL")
            raise unavailable(
                f"cannot capture on {INTERFACE!r} with {DUMPCAP} {' '.join(args)}: "
                f"{capture.stderr_text() or 'no output'} (as a non-root user on Debian/Ubuntu:"
                " dpkg-reconfigure wireshark-common, usermod -aG wireshark $USER, log in again)"
            )
        return capture, path

    async def wait_flushed(self, capture: Capture, path: str, marker: bytes) -> None:
        """dumpcap hands packets over in blocks and writes them out a few
        hundred ms later; wait until both frames carrying ``marker`` (the last
        exchange of the session) are in the file, so that stopping it loses
        nothing that matters."""
        for _ in range(int(CAPTURE_FLUSH_TIMEOUT / 0.05)):
            with open(path, "rb") as f:
                if f.read().count(marker) >= 2:
                    return
            await sleep(0.05)
        await capture.stop("INT")
        if "Packets captured: 0" in capture.stderr_text():
            raise unavailable(
                f"the capture on {INTERFACE!r} sees no loopback traffic: {capture.stderr_text()}"
            )
        self.fail(
            f"the last exchange never reached {path} within {CAPTURE_FLUSH_TIMEOUT}s; "
            f"dumpcap said: {capture.stderr_text()}"
        )

    # -- the session --------------------------------------------------------------------

    async def drive_session(self, server: LoopbackServer) -> None:
        """The foundation e2e session plus a few bad inputs, each step checked
        just enough to know the traffic really happened."""
        login_a = await server.bucp("alice", "secret")
        alice = await BosClient.sign_on(login_a, buddies=["bobsmith"])
        login_b = await server.roasted("BOBSMITH", "hunter2")
        bob = await BosClient.sign_on(login_b, buddies=["Alice"])
        self.assertEqual((await bob.wait_arrival()).screen_name, "Alice")
        self.assertEqual((await alice.wait_arrival()).screen_name, "Bob Smith")

        alice.send_im("bob smith", HTML_TEXT, ack=True)
        sender, text, _ = await bob.receive_im()
        self.assertEqual((sender.screen_name, text), ("Alice", HTML_TEXT))
        await alice.flap.wait_snac(0x04, 0x0C)
        bob.send_im("Alice", b"hello back")
        sender, text, _ = await alice.receive_im()
        self.assertEqual((sender.screen_name, text), ("Bob Smith", b"hello back"))

        # The server-stored list (issue 15): a libpurple-style add of a buddy
        # in a cluster, synced to Alice's second session, a refusal, a block
        # and an unblock; then directory info set and read back.
        alice2 = await BosClient.sign_on(await server.bucp("Alice", "secret"))
        alice.flap.send_snac(0x13, 0x11, b"", alice.next_id())
        _, status = await alice.request(
            0x13, 0x08, FEEDBAG_ROOT + FEEDBAG_GROUP + FEEDBAG_BUDDY, 0x0E
        )
        self.assertEqual(status, b"\x00\x00" * 3)
        alice.flap.send_snac(0x13, 0x12, b"", alice.next_id())
        await alice2.flap.wait_snac(0x13, 0x08)
        _, status = await alice.request(0x13, 0x08, FEEDBAG_BUDDY, 0x0E)
        self.assertEqual(status, b"\x00\x03")
        _, status = await alice.request(0x13, 0x08, FEEDBAG_DENY_BOB, 0x0E)
        self.assertEqual(status, b"\x00\x00")
        self.assertEqual((await bob.wait_departure()).screen_name, "Alice")
        _, status = await alice.request(0x13, 0x0A, FEEDBAG_DENY_BOB, 0x0E)
        self.assertEqual(status, b"\x00\x00")
        self.assertEqual((await bob.wait_arrival()).screen_name, "Alice")
        await alice.request(0x02, 0x09, DIRECTORY_INFO, 0x0A)
        await alice.request(0x02, 0x0F, KEYWORD_INFO, 0x10)
        await bob.request(0x02, 0x0B, b"\x05Alice", 0x0C)
        await alice2.close()
        await self.drive_services(alice, bob)

        # Bad inputs on a connection of their own (Alice's second instance).
        probe = await BosClient.sign_on(await server.bucp("Alice", "secret"))
        probe.flap.send_snac(0x0055, 0x0002, b"whatever", request_id=77)
        header, body = await probe.flap.wait_snac(0x0055, 0x0001)
        self.assertEqual((header.request_id, body), (77, b"\x00\x01"))
        probe.flap.send_snac(0x0004, 0x0077, b"", request_id=78)
        header, body = await probe.flap.wait_snac(0x0004, 0x0001)
        self.assertEqual((header.request_id, body), (78, b"\x00\x01"))
        await probe.close()
        self.assertEqual((await server.bucp("Alice", "wrong")).get_u16(0x08), 0x0005)
        self.assertEqual((await server.bucp("Nobody", "secret")).get_u16(0x08), 0x0005)
        self.assertEqual((await server.roasted("Bob Smith", "wrong")).get_u16(0x08), 0x0005)

        # Departure, then an IM to the user who left.
        await bob.close()
        self.assertEqual((await alice.wait_departure()).screen_name, "Bob Smith")
        alice.send_im("Bob Smith", b"are you there?")
        _, body = await alice.flap.wait_snac(0x04, 0x01)
        self.assertEqual(body, b"\x00\x04")
        await alice.close()

    async def drive_services(self, alice: BosClient, bob: BosClient) -> None:
        """The service connections, each reached through 01,04 → 01,05 and a
        sign-on with the cookie on the BOS port: BART (after the feedbag BART
        item set, which 01,21 answers), Admin, ODir; then UserLookup on BOS."""
        _, status = await alice.request(0x13, 0x08, FEEDBAG_ICON, 0x0E)
        self.assertEqual(status, b"\x00\x00")
        _, body = await alice.flap.wait_snac(0x01, 0x21)
        self.assertEqual(body, BartId(0x0001, 0x41, ICON_MD5).pack())
        bart = await alice.open_service(0x0010)
        _, body = await bart.request(0x10, 0x02, Upload(0x0001, ICON).pack(), 0x03)
        self.assertEqual(body, b"\x00" + ICON_ID.pack())
        _, body = await bart.request(0x10, 0x04, Download(b"Alice", ICON_ID).pack(), 0x05)
        self.assertTrue(body.endswith(ICON))
        _, body = await bart.request(0x10, 0x06, Download2(b"Alice", (ICON_ID,)).pack(), 0x07)
        self.assertTrue(body.endswith(ICON))
        await bart.close()

        admin = await alice.open_service(0x0007)
        _, body = await admin.request(0x07, 0x02, Tlv(0x0001, b"").pack(), 0x03)
        self.assertEqual(body, b"\x00\x03\x00\x01" + Tlv(0x0001, b"Alice").pack())
        _, body = await admin.request(0x07, 0x04, Tlv(0x0011, EMAIL).pack(), 0x05)
        self.assertEqual(body, b"\x00\x03\x00\x01" + Tlv(0x0011, EMAIL).pack())
        _, body = await admin.request(0x07, 0x06, b"", 0x07)
        self.assertEqual(body[:2], b"\x00\x00")
        await admin.close()

        odir = await alice.open_service(0x000F)
        _, body = await odir.request(0x0F, 0x02, Tlv(0x0001, b"alice").pack(), 0x03)
        self.assertEqual(body[:6], b"\x00\x05\x00\x00\x00\x01")
        _, body = await odir.request(0x0F, 0x04, b"", 0x05)
        self.assertEqual(body, b"\x00\x01\x00\x01\x02\x00\x00\x05chess")
        await odir.close()

        _, body = await bob.request(0x0A, 0x02, EMAIL, 0x03)
        self.assertEqual(TlvList.unpack_list(body).get(0x0001), b"Alice")

    # -- tshark -------------------------------------------------------------------------

    async def tshark(self, path: str, ports: Sequence[int], *args: str) -> list[str]:
        """Lines tshark prints reading ``path`` with both ports decoded as AIM."""
        assert TSHARK is not None
        decode = [arg for port in ports for arg in ("-d", f"tcp.port=={port},aim")]
        argv = ["-n", "-r", path, *decode, *args]
        process = self.spawn(Process(), TSHARK, argv)
        try:
            code = await process.wait_exit(TSHARK_TIMEOUT)
        except defer.TimeoutError:
            await process.stop("KILL")
            self.fail(f"tshark {' '.join(argv)} ran over {TSHARK_TIMEOUT}s")
        if code != 0:
            self.fail(f"tshark {' '.join(argv)} exited {code}: {process.stderr_text()}")
        return process.out.decode("utf-8", "replace").splitlines()

    async def frame_detail(self, path: str, ports: Sequence[int], frame: str) -> str:
        detail = await self.tshark(path, ports, "-Y", f"frame.number == {frame}", "-V", "-x")
        return f"frame {frame} in full:\n" + "\n".join(_without_lower_layers(detail)[:DETAIL_LINES])

    async def protocol_errors(self, path: str, ports: Sequence[int]) -> str:
        """'' if no packet is malformed or has an expert error, but for the
        known dissector gaps (``DISSECTOR_GAPS``); else the errors and the
        first offending frame in full."""
        display_filter = "_ws.malformed || _ws.expert.severity == error"
        detail = await self.tshark(path, ports, "-Y", display_filter, "-V")
        found = [e for e in expert_errors(detail, ports) if e.gap() is None]
        if not found:
            return ""
        frame = await self.frame_detail(path, ports, found[0].frame)
        return (
            f"{len(found)} expert error(s) in {path}:\n"
            + "\n".join(str(e) for e in found)
            + f"\n\n{frame}"
        )

    async def protocol_warnings(self, path: str, ports: Sequence[int]) -> str:
        """Like ``offenders`` for expert warnings, but only those raised above
        TCP: under load, loopback TCP retransmits too (D-SACK, spurious
        retransmission...), which says nothing about AIM."""
        lines = await self.tshark(path, ports, "-Y", "_ws.expert.severity == warning", "-V")
        found = []
        frame = layer = ""
        for line in lines:
            if not line.startswith(" "):
                layer = line
                if line.startswith("Frame "):
                    frame = line.split()[1].rstrip(":")
            elif "[Expert Info (Warning/" in line and not layer.startswith(TCP_LAYER):
                found.append((frame, f"frame {frame}, {layer.split(',')[0]}: {line.strip()}"))
        if not found:
            return ""
        detail = await self.frame_detail(path, ports, found[0][0])
        return (
            f"{len(found)} expert warning(s) above TCP in {path}:\n"
            + "\n".join(text for _, text in found)
            + f"\n\n{detail}"
        )

    async def decoded(self, path: str, ports: Sequence[int]) -> Decoded:
        """One pass over every frame tshark sees as AIM."""
        fields = [
            "tcp.srcport",
            "tcp.dstport",
            "aim.channel",
            "aim.fnac.family",
            "aim.fnac.subtype",
            "aim.snac.error",
            "aim.buddyname",
            "aim.messageblock.message",
            "_ws.col.Info",
        ]
        args = ["-Y", "aim", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"]
        for field in fields:
            args += ["-e", field]
        decoded = Decoded()
        for line in await self.tshark(path, ports, *args):
            row = line.split("\t", len(fields) - 1)
            row += [""] * (len(fields) - len(row))
            srcport, dstport, channels, families, subtypes, errors, names, messages, info = row
            side = int(srcport) in ports
            server_port = int(srcport if side else dstport)
            found = _ints(channels)
            decoded.pdus += len(found)
            decoded.channels.update((side, channel) for channel in found)
            for family, subtype in zip(_ints(families), _ints(subtypes), strict=True):
                decoded.snacs.add((side, family, subtype))
                decoded.by_port[server_port, side, family, subtype] += 1
            decoded.snac_errors.update(_ints(errors))
            decoded.text += f"{names}\n{messages}\n"
            decoded.summaries.append((side, info))
        return decoded

    # -- the test -----------------------------------------------------------------------

    async def capture(
        self,
        server: LoopbackServer,
        ports: Sequence[int],
        drive: Callable[[LoopbackServer], Awaitable[None]],
    ) -> str:
        """The path of a capture of ``ports`` while ``drive`` runs a session,
        ended by a last exchange the capture is known to hold."""
        capture, path = await self.start_capture(ports)
        await drive(server)
        # The last exchange: a roasted login for a fresh unknown name, which the
        # server refuses with the name echoed, so the marker is in two frames.
        marker = f"Probe{uuid.uuid4().hex[:10]}"
        refused = await roasted_login(*server.auth_address, marker, "secret")
        self.assertEqual(refused.get_u16(0x08), 0x0005)  # as a wrong password
        await self.wait_flushed(capture, path, marker.encode())
        await capture.stop("INT")
        return path

    async def decoded_cleanly(self, path: str, ports: Sequence[int]) -> Decoded:
        """What tshark made of the capture, having failed the test on any
        malformed packet (outside ``DISSECTOR_GAPS``), expert error, or expert
        warning above TCP."""
        errors, warnings, decoded = await defer.gatherResults(
            [
                defer.Deferred.fromCoroutine(self.protocol_errors(path, ports)),
                defer.Deferred.fromCoroutine(self.protocol_warnings(path, ports)),
                defer.Deferred.fromCoroutine(self.decoded(path, ports)),
            ],
            consumeErrors=True,
        )
        for offending in (errors, warnings):
            if offending:
                self.fail(offending)
        return decoded

    @deferred_test
    async def test_wireshark_decodes_a_whole_session_cleanly(self) -> None:
        """Everything both sides sent in a whole session decodes in Wireshark's
        AIM dissector with no malformed packet and no expert error or warning,
        and the expected SNACs are all recognised."""
        server = await LoopbackServer.start(accounts={"Alice": "secret", "Bob Smith": "hunter2"})
        self.addCleanup(server.stop)
        ports = [server.auth_port.getHost().port, server.bos_port.getHost().port]
        path = await self.capture(server, ports, self.drive_session)
        decoded = await self.decoded_cleanly(path, ports)

        seen = decoded.seen()
        self.assertGreater(
            decoded.pdus, MIN_AIM_PDUS, f"only {decoded.pdus} AIM PDUs decoded; saw {seen}"
        )
        self.assertEqual(
            REQUIRED_CHANNELS - decoded.channels,
            set(),
            f"FLAP channels not seen; saw {sorted(decoded.channels)}",
        )
        missing = [
            f"{_side(side)} {family:02x},{subtype:02x} ({what})"
            for (side, family, subtype), what in REQUIRED_SNACS.items()
            if (side, family, subtype) not in decoded.snacs
        ]
        missing += [
            f"{_side(side)} {text!r}"
            for side, text in REQUIRED_SUMMARIES
            if not any(s == side and text in info for s, info in decoded.summaries)
        ]
        self.assertEqual(missing, [], f"not decoded; saw {seen}")

        # The dissector read into the bodies, not just the SNAC headers.
        for text in ("Alice", "Bob Smith", "hello back", "are you there?"):
            self.assertIn(text, decoded.text)
        self.assertLessEqual({0x0001, 0x0004}, decoded.snac_errors, "SNAC error codes decoded")

        os.remove(path)

    @deferred_test
    async def test_wireshark_decodes_a_chat_session_cleanly(self) -> None:
        """A chat session (ChatNav, the chat service on its own port, a
        refused room name, talk with reflection, an invitation, a leave)
        decodes with no malformed packet but the dissector's known misreads
        of 0E,05 and 0E,06, and carries every chat SNAC, on the listener it
        belongs to."""
        server = await LoopbackServer.start(accounts=CHAT_ACCOUNTS)
        self.addCleanup(server.stop)
        listeners = {
            server.auth_port.getHost().port: "auth",
            server.bos_port.getHost().port: BOS,
            server.chat_port.getHost().port: CHAT,
        }
        ports = list(listeners)
        path = await self.capture(server, ports, self.drive_chat_session)
        decoded = await self.decoded_cleanly(path, ports)

        counts: Counter[tuple[str, bool, int, int]] = Counter()
        for (port, side, family, subtype), count in decoded.by_port.items():
            counts[listeners[port], side, family, subtype] += count
        missing = [
            f"{listener} {_side(side)} {family:02x},{subtype:02x} ({what}):"
            f" {counts[listener, side, family, subtype]} of at least {least}"
            for (listener, side, family, subtype), (least, what) in REQUIRED_CHAT_SNACS.items()
            if counts[listener, side, family, subtype] < least
        ]
        seen = ", ".join(
            f"{listener} {'S' if side else 'C'}:{family:02x},{subtype:02x} x{count}"
            for (listener, side, family, subtype), count in sorted(counts.items())
        )
        if missing:
            self.fail("not decoded:\n" + "\n".join(missing) + f"\nsaw {seen}")
        # The dissector read into the bodies: the members in the user-info
        # blocks of 0E,03/0E,04; the SNAC error code and TLV 0x0008 (subcode)
        # of 0D,01; the capability and TLV 0x2711 (the room) of the invitation.
        for name in ("Alice", "Bob", LONG_NAME):
            self.assertIn(name, decoded.text)
        bodies = await self.fields_by_snac(
            path, ports, ["aim.snac.error", "aim.tlv.value_id", "aim.nickinfo.caps"]
        )
        refusal = bodies[SERVER, 0x0D, 0x01]
        self.assertIn("0x0001", refusal["aim.snac.error"], "0D,01 error code decoded")
        self.assertIn("8", refusal["aim.tlv.value_id"], "0D,01 TLV 0x0008 decoded")
        for invitation in (bodies[CLIENT, 0x04, 0x06], bodies[SERVER, 0x04, 0x07]):
            self.assertIn(CHAT_CAPABILITY_UUID, invitation["aim.nickinfo.caps"])
            self.assertIn(str(0x2711), invitation["aim.tlv.value_id"])

        os.remove(path)

    async def fields_by_snac(
        self, path: str, ports: Sequence[int], fields: Sequence[str]
    ) -> defaultdict[tuple[bool, int, int], defaultdict[str, set[str]]]:
        """(sent by the server?, family, subtype) -> field -> the values
        tshark shows for it in the frames carrying such a SNAC (by frame: a
        frame carrying two PDUs gives both the values of either)."""
        args = ["-Y", "aim", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|"]
        for field in ("tcp.srcport", "aim.fnac.family", "aim.fnac.subtype", *fields):
            args += ["-e", field]
        found: defaultdict[tuple[bool, int, int], defaultdict[str, set[str]]] = defaultdict(
            lambda: defaultdict(set)
        )
        for line in await self.tshark(path, ports, *args):
            srcport, families, subtypes, *values = line.split("\t")
            side = int(srcport) in ports
            for family, subtype in zip(
                _ints(families.replace("|", ",")), _ints(subtypes.replace("|", ",")), strict=True
            ):
                for field, value in zip(fields, values, strict=False):
                    found[side, family, subtype][field].update(v for v in value.split("|") if v)
        return found

    async def drive_chat_session(self, server: LoopbackServer) -> None:
        """Alice makes a room through ChatNav (after a refused name), joins
        on the chat port as libpurple does, invites Bob, who joins by the
        invitation's room; the member with the long name joins; Alice and
        the long name each say a line (reflected); the long name leaves."""
        alice = await server.session("Alice")
        bob = await server.session("Bob")
        poet = await server.session(LONG_NAME)
        bob.set_capabilities([CHAT_CAPABILITY])
        await bob.sync()

        nav = await alice.chat_nav()  # 01,04 for 0x0D, 01,05, 0D,02 -> 0D,09
        info = await alice.find_room(ROOM)  # 0D,08 -> 0D,09
        self.assertEqual((info.ref.cookie, info.detail), (f"4-0-{ROOM}".encode(), 2))
        bad = RoomInfo(
            RoomRef(EXCHANGE_PRIVATE, b"create", 0xFFFF),
            1,
            TlvList((Tlv(0xD3, BAD_ROOM.encode()), Tlv(0xD6, b"us-ascii"), Tlv(0xD7, b"en"))),
        )
        request_id = nav.next_id()
        nav.flap.send_snac(0x0D, 0x08, bad.pack(), request_id)
        header, body = await nav.flap.wait_snac(0x0D, 0x01)
        self.assertEqual((header.request_id, body[:2]), (request_id, b"\x00\x01"))
        self.assertEqual(TlvList.unpack_list(body[2:]).get_u16(0x0008), 0x0033)
        a_room = await self.enter_room(alice, info.ref)
        self.assertEqual(a_room.roster, ["Alice"])

        # The invitation, as libpurple sends it, and Bob's accept: the room
        # found by the name in its cookie, then joined.
        invitation = Rendezvous(
            Rendezvous.PROPOSE,
            b"inv00001",
            CHAT_CAPABILITY,
            TlvList(
                (
                    Tlv.u16(0x000A, 1),
                    Tlv.empty(0x000F),
                    Tlv(0x000C, b"Join me"),
                    Tlv(0x2711, RoomRef(EXCHANGE_PRIVATE, info.ref.cookie, 0).pack()),
                )
            ),
        )
        alice.send_channel("Bob", 2, [Tlv(0x05, invitation.pack())], b"inv00001")
        sender, _, tlvs = await bob.receive_im()
        self.assertEqual(sender.screen_name, "Alice")
        invited = Rendezvous.unpack(tlvs.get(0x05) or b"")
        self.assertEqual(invited.capability, CHAT_CAPABILITY)
        ref = RoomRef.unpack(invited.tlvs.get(0x2711) or b"")
        accepted = await bob.find_room(ref.cookie.split(b"-", 2)[2].decode(), ref.exchange)
        b_room = await self.enter_room(bob, accepted.ref)
        self.assertEqual(b_room.roster, ["Alice", "Bob"])
        self.assertEqual(await a_room.wait_joined(), ["Bob"])
        p_room = await self.enter_room(poet, (await poet.find_room(ROOM)).ref)
        self.assertEqual(p_room.roster, ["Alice", "Bob", LONG_NAME])
        for room in (a_room, b_room):
            self.assertEqual(await room.wait_joined(), [LONG_NAME])

        # Talk: libpurple's 0E,05 (HTML, reflection asked for), each line
        # heard by the other two and reflected to its sender.
        for speaker, text in ((a_room, b"<HTML>hey</HTML>"), (p_room, b"<HTML>good day</HTML>")):
            speaker.say(text)
            for room in (a_room, b_room, p_room):
                self.assertEqual((await room.hear())[:2], (speaker.screen_name, text))

        await p_room.close()
        for room in (a_room, b_room):
            self.assertEqual(await room.wait_left(), [LONG_NAME])
        for client in (a_room, b_room, alice, bob, poet):
            await client.close()

    async def enter_room(self, client: BosClient, ref: RoomRef) -> ChatClient:
        """libpurple's chat connection: 01,04 for the room on BOS, then on
        the chat port the cookie, 01,03, 01,17 -> 01,18, 01,06 -> 01,07,
        01,02, and the roster (0E,03) and room info (0E,02) it brings."""
        _, body = await client.request(
            0x01, 0x04, struct.pack("!H", 0x0E) + Tlv(0x01, ref.pack()).pack(), 0x05
        )
        flap = await redeem(TlvList.unpack_list(body))
        await flap.wait_snac(0x01, 0x03)
        room = ChatClient(flap, client.screen_name)
        await room.request(0x01, 0x17, struct.pack("!4H", 0x0001, 3, 0x000E, 1), 0x18)
        await room.request(0x01, 0x06, b"", 0x07)
        entries = struct.pack("!8H", 0x0001, 3, 0x0110, 0x0629, 0x000E, 1, 0x0110, 0x0629)
        flap.send_snac(0x01, 0x02, entries, room.next_id())
        _, roster = await flap.wait_snac(0x0E, 0x03)
        room.roster = [user.screen_name for user in parse_users(roster)]
        _, room_info = await flap.wait_snac(0x0E, 0x02)
        room.info = RoomInfo.unpack(room_info)
        self.assertEqual(room.info.ref.cookie, ref.cookie)
        return room


#: ``tshark -V`` output (trimmed) of one server frame carrying two PDUs.
DETAIL = """\
Frame 7: 135 bytes on wire (1080 bits), 135 bytes captured (1080 bits)
Transmission Control Protocol, Src Port: 5190, Dst Port: 40000, Seq: 1, Len: 69
AOL Instant Messenger
    Channel ID: SNAC Data (0x02)
    FNAC: Family: AIM Messaging (0x0004), Subtype: Incoming (0x0007)
        FNAC Family ID: AIM Messaging (0x0004)
AIM Messaging, Incoming
    [Expert Info (Error/Protocol): Bad ICBM]
AOL Instant Messenger
    Channel ID: SNAC Data (0x02)
    FNAC: Family: AIM Directory (0x000f), Subtype: Server reply for search (0x0003)
AIM Directory Search, Server reply for search request (found users)
    TLV: Screen name
[Malformed Packet: AIM]
    [Expert Info (Error/Malformed): Malformed Packet (Exception occurred)]
        [Malformed Packet (Exception occurred)]
Frame 8: 84 bytes on wire (672 bits), 84 bytes captured (672 bits)
Transmission Control Protocol, Src Port: 40000, Dst Port: 5190, Seq: 1, Len: 12
AOL Instant Messenger
    FNAC: Family: AIM Directory (0x000f), Subtype: Server reply for search (0x0003)
[Malformed Packet: AIM]
Frame 9: 84 bytes on wire (672 bits), 84 bytes captured (672 bits)
Transmission Control Protocol, Src Port: 5190, Dst Port: 40000, Seq: 1, Len: 12
    [Expert Info (Error/Sequence): Bad TCP]
""".splitlines()


class ExpertErrorTests(unittest.SynchronousTestCase):
    """Each expert error is put down to the AIM PDU it was raised in, and only
    a malformed-packet error in a known gap's SNAC, sent the known way, is
    let through."""

    def test_errors_are_attributed_to_their_pdu(self) -> None:
        found = expert_errors(DETAIL, [5190])
        self.assertEqual(
            [(e.frame, e.from_server, e.family, e.subtype) for e in found],
            [
                ("7", True, 0x04, 0x07),
                ("7", True, 0x0F, 0x03),
                ("7", True, 0x0F, 0x03),
                ("8", False, 0x0F, 0x03),
                ("9", True, None, None),
            ],
        )
        self.assertEqual([e.gap() is not None for e in found], [False, True, True, False, False])
        self.assertEqual(
            str(found[0]), "frame 7, server 04,07: [Expert Info (Error/Protocol): Bad ICBM]"
        )
        self.assertEqual(
            str(found[-1]), "frame 9, outside any SNAC: [Expert Info (Error/Sequence): Bad TCP]"
        )

    def test_only_malformed_errors_are_a_gap(self) -> None:
        other = ExpertError("1", SERVER, 0x0F, 0x03, "[Expert Info (Error/Protocol): x]")
        self.assertIsNone(other.gap())
        for key in DISSECTOR_GAPS:
            self.assertIsNotNone(ExpertError("1", *key, MALFORMED[1]).gap())


class AvailabilityTests(unittest.SynchronousTestCase):
    """Without tshark the conformance check is skipped on a developer's
    machine, saying what to install, and fails under CI."""

    def without_tools(self) -> None:
        self.patch(sys.modules[__name__], "TSHARK", None)
        self.patch(sys.modules[__name__], "DUMPCAP", None)

    def set_ci(self, value: str | None) -> None:
        old = os.environ.get("CI")

        def restore() -> None:
            if old is None:
                os.environ.pop("CI", None)
            else:
                os.environ["CI"] = old

        self.addCleanup(restore)
        if value is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = value

    def test_skipped_with_what_to_install_outside_ci(self) -> None:
        self.without_tools()
        self.set_ci(None)
        for name in (
            "test_wireshark_decodes_a_whole_session_cleanly",
            "test_wireshark_decodes_a_chat_session_cleanly",
        ):
            with self.assertRaises(unittest.SkipTest) as caught:
                TsharkConformanceTests(name).setUp()
            self.assertIn("needs tshark and dumpcap on PATH", str(caught.exception))
            self.assertIn("apt-get install tshark", str(caught.exception))

    def test_fails_under_ci(self) -> None:
        self.without_tools()
        for value in ("true", "TRUE", "1"):
            self.set_ci(value)
            case = TsharkConformanceTests("test_wireshark_decodes_a_whole_session_cleanly")
            with self.assertRaises(self.failureException) as caught:
                case.setUp()
            self.assertIn("CI=true", str(caught.exception))
            self.assertIn("apt-get install tshark", str(caught.exception))

    def test_ci_is_read_from_the_environment(self) -> None:
        self.assertTrue(in_ci({"CI": "true"}))
        self.assertFalse(in_ci({"CI": "false"}))
        self.assertFalse(in_ci({}))
        self.assertIsInstance(unavailable("x", {"CI": "false"}), unittest.SkipTest)
        self.assertIsInstance(unavailable("x", {"CI": "true"}), unittest.FailTest)
