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
import os
from collections.abc import Callable, Mapping

from agora.wire import websocket as wsf

OP_BINARY = wsf.OP_BINARY
MAX_HEAD_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
CLOSE_ABNORMAL = 1006  # no close frame: the connection just ended


class HandshakeError(ConnectionError):
    """The server did not switch protocols; `status` is its HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"websocket handshake failed ({status}): {message}")
        self.status = status


class WebSocketClient(asyncio.Protocol):
    """One client connection. `opened` resolves once the server switched protocols (or
    fails with HandshakeError); `on_message(opcode, payload)` gets each data message and
    `on_closed(reason, code)` is called once when the connection ends, however it ends
    (code: the server's close code, or 1006 when it just went away)."""

    def __init__(
        self,
        host: str,
        path: str,
        headers: Mapping[str, str],
        on_message: Callable[[int, bytes], None],
        on_closed: Callable[[str, int], None],
    ) -> None:
        self._host = host
        self._path = path
        self._headers = headers
        self._on_message = on_message
        self._on_closed = on_closed
        self._key = base64.b64encode(os.urandom(16))
        self._buffer = bytearray()
        self._upgraded = False
        self._reader = wsf.FrameReader(masked=False, max_size=MAX_MESSAGE_BYTES)
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
        if not self._upgraded:
            self._buffer += data
            if not self._take_handshake():
                return
            data, self._buffer = bytes(self._buffer), bytearray()
        try:
            messages = self._reader.feed(data)
        except wsf.FrameError as error:
            self.close(error.code, str(error))
            return
        for message in messages:
            self._take_message(message)
            if self._ended:
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.opened.done():
            self.opened.set_exception(HandshakeError(0, str(exc or "connection closed")))
        self._end(str(exc) if exc else "connection closed", CLOSE_ABNORMAL)

    # ------------------------------------------------------------------ sending

    @property
    def is_open(self) -> bool:
        return self._upgraded and self._transport is not None and not self._close_sent

    def send(self, payload: bytes, opcode: int = OP_BINARY) -> None:
        """Queue one message (dropped once the connection is closing)."""
        if self.is_open:
            assert self._transport is not None
            self._transport.write(wsf.frame(opcode, payload, os.urandom(4)))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; the transport ends when the server answers."""
        if self._transport is None:
            return
        if not self._upgraded:
            self._transport.close()
            return
        if not self._close_sent:
            self._close_sent = True
            payload = wsf.close_payload(code, reason)
            self._transport.write(wsf.frame(wsf.OP_CLOSE, payload, os.urandom(4)))

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
        if headers.get("sec-websocket-accept", "").encode() != wsf.accept_token(self._key):
            self._fail(HandshakeError(status, "bad Sec-WebSocket-Accept"))
            return False
        self._upgraded = True
        self.opened.set_result(None)
        return True

    def _take_message(self, message: wsf.Message) -> None:
        opcode, payload = message
        if opcode == wsf.OP_PING:
            if self.is_open and self._transport is not None:
                self._transport.write(wsf.frame(wsf.OP_PONG, payload, os.urandom(4)))
        elif opcode == wsf.OP_CLOSE:
            self.close(wsf.CLOSE_NORMAL)
            if self._transport is not None:
                self._transport.close()
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else wsf.CLOSE_NORMAL
            self._end(wsf.close_reason(payload) or "closed by the server", code)
        elif opcode != wsf.OP_PONG:
            self._on_message(opcode, payload)

    def _fail(self, error: HandshakeError) -> None:
        if not self.opened.done():
            self.opened.set_exception(error)
        if self._transport is not None:
            self._transport.close()

    def _end(self, reason: str, code: int) -> None:
        if not self._ended:
            self._ended = True
            if self._upgraded:
                self._on_closed(reason, code)


async def connect(
    host: str,
    port: int,
    path: str,
    headers: Mapping[str, str],
    on_message: Callable[[int, bytes], None],
    on_closed: Callable[[str, int], None],
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
