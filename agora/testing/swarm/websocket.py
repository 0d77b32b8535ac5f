"""The client side of RFC 6455 on asyncio's Protocol API: just enough WebSocket for many
thousands of simulated agents on one event loop.

aiohttp's client is built for one application talking to a few servers: a session, a
request object, a response object, a reader task and an extra buffering layer per
connection. A swarm opens tens of thousands of connections at once, so that cost lands
in the very measurement it is meant to drive. This one is a protocol object with a
buffer: it writes the upgrade request, checks the 101 answer, then parses frames as
bytes arrive and calls back with each whole message. Client frames are masked as the
RFC requires; server pings are answered; a close is echoed. No extensions
(permessage-deflate is never offered), no subprotocols.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import Callable, Mapping

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
MAX_HEAD_BYTES = 64 * 1024


class HandshakeError(ConnectionError):
    """The server did not switch protocols; `status` is its HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"websocket handshake failed ({status}): {message}")
        self.status = status


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR `payload` with the 4-byte `key` repeated (RFC 6455 §5.3), as one big-integer
    operation: linear, but in C rather than a Python loop over bytes."""
    size = len(payload)
    if size == 0:
        return b""
    stream = (key * ((size >> 2) + 1))[:size]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")
    return value.to_bytes(size, "little")


def frame_header(opcode: int, size: int, masked: bool) -> bytes:
    first = 0x80 | opcode  # FIN: this client never fragments what it sends
    bit = 0x80 if masked else 0
    if size < 126:
        return struct.pack("!BB", first, bit | size)
    if size < 1 << 16:
        return struct.pack("!BBH", first, bit | 126, size)
    return struct.pack("!BBQ", first, bit | 127, size)


def client_frame(opcode: int, payload: bytes) -> bytes:
    key = os.urandom(4)
    return frame_header(opcode, len(payload), masked=True) + key + mask(payload, key)


def accept_token(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


class WebSocketClient(asyncio.Protocol):
    """One client connection. `opened` resolves once the server switched protocols (or
    fails with HandshakeError); `on_message(opcode, payload)` gets each data message and
    `on_closed(reason)` is called once when the connection ends, however it ends."""

    def __init__(
        self,
        host: str,
        path: str,
        headers: Mapping[str, str],
        on_message: Callable[[int, bytes], None],
        on_closed: Callable[[str], None],
    ) -> None:
        self._host = host
        self._path = path
        self._headers = headers
        self._on_message = on_message
        self._on_closed = on_closed
        self._key = base64.b64encode(os.urandom(16))
        self._buffer = bytearray()
        self._upgraded = False
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._transport: asyncio.Transport | None = None
        self._close_sent = False
        self._ended = False
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # ------------------------------------------------------------------ asyncio side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        lines = [
            f"GET {self._path} HTTP/1.1",
            f"Host: {self._host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self._key.decode()}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in self._headers.items()),
        ]
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._upgraded and not self._take_handshake():
            return
        self._take_frames()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.opened.done():
            self.opened.set_exception(HandshakeError(0, str(exc or "connection closed")))
        self._end(str(exc) if exc else "connection closed")

    # ------------------------------------------------------------------ sending

    @property
    def is_open(self) -> bool:
        return self._upgraded and self._transport is not None and not self._close_sent

    def send(self, payload: bytes, opcode: int = OP_BINARY) -> None:
        """Queue one message (dropped once the connection is closing)."""
        if self.is_open:
            assert self._transport is not None
            self._transport.write(client_frame(opcode, payload))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; the transport ends when the server answers."""
        if self._transport is None:
            return
        if not self._upgraded:
            self._transport.close()
            return
        if not self._close_sent:
            self._close_sent = True
            payload = struct.pack("!H", code) + reason.encode()[:120]
            self._transport.write(client_frame(OP_CLOSE, payload))

    def abort(self) -> None:
        """Drop the connection at once (no closing handshake)."""
        if self._transport is not None:
            self._transport.abort()

    # ------------------------------------------------------------------ parsing

    def _take_handshake(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                self._fail(HandshakeError(0, "response head too long"))
            return False
        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[: end + 4]
        status_line, *header_lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status != 101:
            self._fail(HandshakeError(status, parts[2] if len(parts) > 2 else status_line))
            return False
        if headers.get("sec-websocket-accept", "").encode() != accept_token(self._key):
            self._fail(HandshakeError(status, "bad Sec-WebSocket-Accept"))
            return False
        self._upgraded = True
        self.opened.set_result(None)
        return True

    def _take_frames(self) -> None:
        buffer = self._buffer
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            size = second & 0x7F
            offset = 2
            if size == 126:
                if len(buffer) < 4:
                    return
                size = struct.unpack_from("!H", buffer, 2)[0]
                offset = 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                size = struct.unpack_from("!Q", buffer, 2)[0]
                offset = 10
            key = b""
            if second & 0x80:  # servers must not mask, but tolerate it
                key = bytes(buffer[offset : offset + 4])
                offset += 4
            if len(buffer) < offset + size:
                return
            payload = bytes(buffer[offset : offset + size])
            del buffer[: offset + size]
            if key:
                payload = mask(payload, key)
            self._take_frame(bool(first & 0x80), first & 0x0F, payload)
            if self._ended:
                return

    def _take_frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            if self.is_open and self._transport is not None:
                self._transport.write(client_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self.close(1000)
            if self._transport is not None:
                self._transport.close()
            reason = payload[2:].decode(errors="replace") if len(payload) > 2 else ""
            self._end(reason or "closed by the server")
        elif opcode == OP_PONG:
            return
        elif opcode == OP_CONTINUATION:
            self._fragments.append(payload)
            if fin:
                whole = b"".join(self._fragments)
                self._fragments = []
                self._on_message(self._fragment_opcode, whole)
        elif fin:
            self._on_message(opcode, payload)
        else:
            self._fragment_opcode = opcode
            self._fragments = [payload]

    def _fail(self, error: HandshakeError) -> None:
        if not self.opened.done():
            self.opened.set_exception(error)
        if self._transport is not None:
            self._transport.close()

    def _end(self, reason: str) -> None:
        if not self._ended:
            self._ended = True
            if self._upgraded:
                self._on_closed(reason)


async def connect(
    host: str,
    port: int,
    path: str,
    headers: Mapping[str, str],
    on_message: Callable[[int, bytes], None],
    on_closed: Callable[[str], None],
    local_ip: str | None = None,
) -> WebSocketClient:
    """Open a connection and finish the upgrade; `local_ip` picks the source address
    (several 127.0.0.x spread tens of thousands of connections over more ports)."""
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: WebSocketClient(f"{host}:{port}", path, headers, on_message, on_closed),
        host,
        port,
        local_addr=None if local_ip is None else (local_ip, 0),
    )
    try:
        await client.opened
    except BaseException:
        client.abort()
        raise
    return client
