"""RFC 6455 framing, without I/O: the opening handshake's accept token, masking, frame
encoding and an incremental frame parser.

Shared by the master's own agent-channel server (agora/master/agent_server.py) and the
swarm's client (agora/testing/swarm/websocket.py): both exist because a general-purpose
WebSocket stack costs more per connection than the rest of an agent's (re)registration
when tens of thousands of agents connect at once. No extensions (permessage-deflate is
neither offered nor accepted), no subprotocols.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import NamedTuple

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
CONTROL_OPCODES = frozenset({OP_CLOSE, OP_PING, OP_PONG})
DATA_OPCODES = frozenset({OP_CONTINUATION, OP_TEXT, OP_BINARY})
CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG = 1000, 1002, 1009
MAX_CONTROL_PAYLOAD = 125


class FrameError(ValueError):
    """The peer broke the framing rules; `code` is the close code to answer with."""

    def __init__(self, message: str, code: int = CLOSE_PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


class Message(NamedTuple):
    opcode: int  # OP_TEXT / OP_BINARY for data (fragments joined), or a control opcode
    payload: bytes


def accept_token(key: bytes) -> bytes:
    """The `Sec-WebSocket-Accept` answer to a `Sec-WebSocket-Key`."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def valid_key(key: bytes) -> bool:
    """A `Sec-WebSocket-Key` must be 16 bytes, base64-encoded."""
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


def _mask_by_integers(payload: bytes, key: bytes) -> bytes:
    """XOR as one big-integer operation: in C, but through three conversions."""
    size = len(payload)
    if size == 0:
        return b""
    stream = (key * ((size >> 2) + 1))[:size]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")
    return value.to_bytes(size, "little")


try:
    # aiohttp's compiled masking (a dependency anyway, and pinned): 20x faster than
    # the integer trick, which matters for multiplexed frames of hundreds of KB.
    from aiohttp._websocket.helpers import websocket_mask as _mask_in_place

    def mask(payload: bytes, key: bytes) -> bytes:
        """XOR `payload` with the 4-byte `key` repeated (RFC 6455 §5.3)."""
        data = bytearray(payload)
        _mask_in_place(key, data)
        return bytes(data)

except ImportError:  # pragma: no cover - aiohttp without its helpers
    mask = _mask_by_integers


def frame(opcode: int, payload: bytes, mask_key: bytes | None = None) -> bytes:
    """One final frame; clients must give a fresh random `mask_key`, servers none."""
    first = 0x80 | opcode
    bit = 0x80 if mask_key is not None else 0
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", first, bit | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, bit | 126, size)
    else:
        head = struct.pack("!BBQ", first, bit | 127, size)
    if mask_key is None:
        return head + payload
    return head + mask_key + mask(payload, mask_key)


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()[: MAX_CONTROL_PAYLOAD - 2]


def close_reason(payload: bytes) -> str:
    return payload[2:].decode(errors="replace") if len(payload) > 2 else ""


class FrameReader:
    """Feed bytes as they arrive; iterate whole messages (fragments joined, control
    frames as they come). `masked` says whether frames must be masked (a server reads
    masked frames, a client unmasked ones); `max_size` bounds one message."""

    def __init__(self, masked: bool, max_size: int) -> None:
        self._masked = masked
        self._max_size = max_size
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode: int | None = None
        self._fragment_size = 0

    def feed(self, data: bytes) -> list[Message]:
        """The messages completed by `data` (raises FrameError on a broken frame)."""
        self._buffer += data
        messages = []
        while (parsed := self._next_frame()) is not None:
            message = self._assemble(*parsed)
            if message is not None:
                messages.append(message)
        return messages

    def _next_frame(self) -> tuple[bool, int, bytes] | None:
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        first, second = buffer[0], buffer[1]
        if first & 0x70:
            raise FrameError("reserved bits set (no extension was agreed)")
        if bool(second & 0x80) != self._masked:
            raise FrameError("frames must be masked" if self._masked else "frames are masked")
        size, offset = second & 0x7F, 2
        if size == 126:
            if len(buffer) < 4:
                return None
            size, offset = struct.unpack_from("!H", buffer, 2)[0], 4
        elif size == 127:
            if len(buffer) < 10:
                return None
            size, offset = struct.unpack_from("!Q", buffer, 2)[0], 10
        if first & 0x08 and size > MAX_CONTROL_PAYLOAD:
            raise FrameError("control frames must be whole and short")
        if size > self._max_size:
            raise FrameError(f"a frame of {size} bytes is over the limit", CLOSE_TOO_BIG)
        key = b""
        if self._masked:
            key = bytes(buffer[offset : offset + 4])
            offset += 4
        end = offset + size
        if len(buffer) < end:
            return None
        payload = bytes(buffer[offset:end])
        del buffer[:end]
        return bool(first & 0x80), first & 0x0F, mask(payload, key) if key else payload

    def _assemble(self, fin: bool, opcode: int, payload: bytes) -> Message | None:
        if opcode in CONTROL_OPCODES:
            if not fin or len(payload) > MAX_CONTROL_PAYLOAD:
                raise FrameError("control frames must be whole and short")
            return Message(opcode, payload)
        if opcode not in DATA_OPCODES:
            raise FrameError(f"unknown opcode {opcode}")
        if opcode == OP_CONTINUATION:
            if self._fragment_opcode is None:
                raise FrameError("a continuation frame without a first fragment")
        elif self._fragment_opcode is not None:
            raise FrameError("a new message inside a fragmented one")
        elif fin:
            return Message(opcode, payload)
        else:
            self._fragment_opcode = opcode
        self._fragment_size += len(payload)
        if self._fragment_size > self._max_size:
            raise FrameError("a fragmented message over the limit", CLOSE_TOO_BIG)
        self._fragments.append(payload)
        if not fin:
            return None
        whole = Message(self._fragment_opcode, b"".join(self._fragments))
        self._fragments, self._fragment_opcode, self._fragment_size = [], None, 0
        return whole
