# -*- test-case-name: tests.test_web_frames -*-
"""RFC 6455 WebSocket framing for the server's data phase, without wsproto.

The HTTP upgrade stays with Twisted and wsproto; once a socket is open, every
browser IM, typing notice and ack is one small frame, and wsproto's general
event machinery costs ~7-8 µs of CPU for each. This module does only what the
server needs after the upgrade with no extensions negotiated: read a client's
masked frames back into whole messages (enforcing RFC 6455 §5.2-5.5 and the
close codes of §7.4) and write unmasked, unfragmented server frames. It is pure
(no sockets, no Twisted) so it can be tested exhaustively, and kept to a short
per-frame path: precompiled structs, one loop, no generators.
"""

from __future__ import annotations

import struct

try:
    # The ``websockets`` project's C masking: 95 ns for a browser IM's frame
    # against 550 for the big-int XOR below, a few per cent of a browser
    # IM's server CPU (bench S13).
    from websockets.speedups import apply_mask as _c_apply_mask
except ImportError:  # no compiled extension for this platform
    _c_apply_mask = None

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
_HEAD2 = struct.Struct("!BB")
_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")
_FIN = 0x80
_MAX_REASON = 123  # a close payload is at most 125 bytes, 2 of them the code


class FrameError(Exception):
    """The peer broke the protocol: close with ``code``.

    1002 protocol error, 1007 invalid UTF-8, 1009 message too big.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class FrameReader:
    """Reads a client's frames (which must be masked) and hands back whole messages.

    Input that does not yet complete a frame is kept as a list of chunks and
    joined only once enough has arrived (``_need`` bytes), so a large frame
    trickling in byte by byte costs linear, not quadratic, copying. What is
    kept is bounded: a frame is refused (1009) as soon as its header declares
    more than the message may still grow by.
    """

    def __init__(self, max_message: int) -> None:
        self._max = max_message
        self._pending: list[bytes] = []  # received bytes not yet parsed
        self._have = 0  # their total length
        self._need = 2  # bytes the next frame needs before parsing can progress
        self._op = 0  # OP_TEXT / OP_BINARY of a fragmented message in progress, else 0
        self._parts: list[bytes] = []  # its payloads so far
        self._size = 0  # and their total length
        self._error: FrameError | None = None

    def _fail(self, code: int, reason: str) -> FrameError:
        self._error = FrameError(code, reason)
        return self._error

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Every complete item in the data received so far, in order.

        ``(OP_TEXT, payload)`` / ``(OP_BINARY, payload)`` for a whole data
        message (reassembled if fragmented); ``(OP_PING | OP_PONG | OP_CLOSE,
        payload)`` for a control frame, which may arrive between fragments.

        Payloads are unmasked bytes; a text message is checked to be UTF-8
        (1007) but returned as bytes. Raises FrameError on a violation, after
        which every call raises it again: the caller closes the connection.
        """
        if self._error is not None:
            raise self._error
        if self._pending:
            self._pending.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []
            data = b"".join(self._pending)
        out: list[tuple[int, bytes]] = []
        pos = 0
        end = len(data)
        need = 2
        while end - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            op = b0 & 0x0F
            n = b1 & 0x7F
            if b0 & 0x70:
                raise self._fail(1002, "reserved bits set")
            if not b1 & 0x80:
                raise self._fail(1002, "client frame not masked")
            if op & 8:
                if op > OP_PONG:
                    raise self._fail(1002, f"unknown opcode {op:#x}")
                if not b0 & _FIN:
                    raise self._fail(1002, "fragmented control frame")
                if n > 125:
                    raise self._fail(1002, "control frame longer than 125 bytes")
                head = pos + 6
            else:
                if op > OP_BINARY:
                    raise self._fail(1002, f"unknown opcode {op:#x}")
                if n < 126:
                    head = pos + 6
                elif n == 126:
                    if end - pos < 4:
                        need = 8
                        break
                    n = _U16.unpack_from(data, pos + 2)[0]
                    if n < 126:
                        raise self._fail(1002, "length not minimally encoded")
                    head = pos + 8
                else:
                    if end - pos < 10:
                        need = 14
                        break
                    n = _U64.unpack_from(data, pos + 2)[0]
                    if n >> 63:
                        raise self._fail(1002, "64-bit length has its top bit set")
                    if n < 0x10000:
                        raise self._fail(1002, "length not minimally encoded")
                    head = pos + 14
                if op:
                    if self._op:
                        raise self._fail(1002, "new message inside a fragmented one")
                    if n > self._max:
                        raise self._fail(1009, "message too big")
                else:
                    if not self._op:
                        raise self._fail(1002, "continuation frame with no message")
                    if n > self._max - self._size:
                        raise self._fail(1009, "message too big")
            stop = head + n
            if stop > end:
                need = stop - pos
                break
            payload = apply_mask(data[head:stop], data[head - 4 : head])
            pos = stop
            if op & 8:
                out.append((op, payload))
                continue
            if op:
                if not b0 & _FIN:
                    self._op, self._parts, self._size = op, [payload], n
                    continue
            else:
                self._parts.append(payload)
                if not b0 & _FIN:
                    self._size += n
                    continue
                op, payload = self._op, b"".join(self._parts)
                self._op, self._parts, self._size = 0, [], 0
            if op == OP_TEXT and not payload.isascii():
                try:
                    payload.decode()
                except UnicodeDecodeError:
                    raise self._fail(1007, "text message is not UTF-8") from None
            out.append((op, payload))
        if pos < end:
            rest = data[pos:]
            self._pending = [rest]
            self._have = end - pos
            self._need = need
        elif self._pending:
            self._pending = []
        return out


def xor_mask(payload: bytes, key: bytes) -> bytes:
    """``payload`` XORed with the 4-byte ``key`` repeated over it (RFC 6455
    §5.3), as one big-int operation: what :func:`apply_mask` is without
    the compiled one."""
    n = len(payload)
    return (int.from_bytes(payload) ^ int.from_bytes((key * ((n + 3) >> 2))[:n])).to_bytes(n)


apply_mask = _c_apply_mask or xor_mask


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final (FIN) server frame; a control frame's payload must be <= 125 bytes."""
    n = len(payload)
    if n < 126:
        return _HEAD2.pack(_FIN | opcode, n) + payload
    if opcode & 8:
        raise ValueError("control frame payload longer than 125 bytes")
    if n < 0x10000:
        return _HEAD16.pack(_FIN | opcode, 126, n) + payload
    return _HEAD64.pack(_FIN | opcode, 127, n) + payload


def close_payload(code: int, reason: str = "") -> bytes:
    """A close frame's payload: the code, then the UTF-8 reason cut to fit 125 bytes.

    The cut never splits a character, since the peer must fail a close
    whose reason is not UTF-8.
    """
    encoded = reason.encode()
    if len(encoded) > _MAX_REASON:
        encoded = encoded[:_MAX_REASON].decode(errors="ignore").encode()
    return _U16.pack(code) + encoded


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """(code, reason) of a received close payload; (None, "") for an empty one.

    FrameError 1002 for a 1-byte payload or a code that may not be sent on the
    wire (RFC 6455 §7.4); 1007 for a reason that is not UTF-8.
    """
    if not payload:
        return None, ""
    if len(payload) < 2:
        raise FrameError(1002, "close payload of 1 byte")
    code = _U16.unpack_from(payload)[0]
    if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        raise FrameError(1002, f"close code {code} may not be sent")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(1007, "close reason is not UTF-8") from None
    return code, reason
