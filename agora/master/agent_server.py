"""The master's listening socket: the agent channel's WebSockets are served here, every
other connection is handed to aiohttp with the bytes read so far.

Why not aiohttp's WebSocket server: after a failover every agent reconnects at once,
and aiohttp's per-connection machinery (a request handler with its task and keep-alive
timer, a request object, the middleware chain, a WebSocketResponse with its reader,
writer and queue, a task per received message) cost about 370 µs of master CPU per
connection here, against about 170 µs for a bare asyncio protocol doing the same
upgrade and exchange, and about 150 µs for the agent's whole re-registration. So the
first request of each connection is looked at: `GET /api/v1/agent` is upgraded here
(RFC 6455 with agora/wire/websocket.py's framing) and its messages go to the channels
of agent_socket.py; anything else gets aiohttp's request handler, which then owns the
connection. An agent-channel upgrade later on a kept-alive connection reaches aiohttp's
route, which refuses it with a message saying why.

The upgrade answers like the rest of the master: 400 naming a missing or wrong header,
426 for another WebSocket version, and 307 to the leader or 503 while not leading.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from agora.master.agent_socket import Channel, open_channel
from agora.master.service import MasterService
from agora.wire import agent_channel as channel
from agora.wire import agent_mux as mux
from agora.wire import websocket as wsf

log = logging.getLogger("agora.master")

MAX_HEAD_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
# An agent that does not read what it is sent is dropped before it fills the memory.
MAX_UNSENT_BYTES = 256 * 1024 * 1024
CLOSE_WAIT_S = 5.0  # after sending a close, how long the peer has to answer it
_AGENT_PATH = channel.PATH.encode()
_STATUS_TEXT = {
    307: "Temporary Redirect",
    400: "Bad Request",
    426: "Upgrade Required",
    503: "Service Unavailable",
}


class FrontDoor(asyncio.Protocol):
    """The first protocol of every connection: it reads the first request line and
    hands the connection to AgentSocket or to aiohttp (`http()` makes its handler)."""

    def __init__(self, service: MasterService, http: Callable[[], asyncio.Protocol]) -> None:
        self._service = service
        self._http = http
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n")
        if end < 0 and len(self._buffer) <= MAX_HEAD_BYTES:
            return
        parts = bytes(self._buffer[:end]).split(b" ") if end >= 0 else []
        agent = len(parts) == 3 and parts[0] == b"GET" and parts[1].split(b"?")[0] == _AGENT_PATH
        self._hand_over(AgentSocket(self._service) if agent else self._http())

    def eof_received(self) -> bool | None:
        if self._transport is not None:
            self._transport.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def _hand_over(self, protocol: asyncio.Protocol) -> None:
        transport = self._transport
        assert transport is not None
        data, self._buffer = bytes(self._buffer), bytearray()
        self._transport = None
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(data)


def _response(status: int, body: str, headers: dict[str, str] | None = None) -> bytes:
    payload = body.encode()
    lines = [f"HTTP/1.1 {status} {_STATUS_TEXT.get(status, '')}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines += [
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(payload)}",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def _headers(head: bytes) -> tuple[str, dict[str, str]]:
    """The request target and the headers (names lower-cased; repeated ones joined)."""
    request_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return request_line.split(" ")[1], headers


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


class AgentSocket(asyncio.Protocol):
    """One agent-channel WebSocket, server side: the upgrade, then frames to and from
    its Channel (it is the channel's FrameSink)."""

    def __init__(self, service: MasterService) -> None:
        self._service = service
        self._transport: asyncio.Transport | None = None
        self._head = bytearray()
        self._channel: Channel | None = None
        self._reader = wsf.FrameReader(masked=True, max_size=MAX_MESSAGE_BYTES)
        self._closing = False  # a close was sent: data from the peer is ignored
        self._close_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._channel is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > MAX_HEAD_BYTES:
                    self._refuse(400, "request head too long")
                return
            head, data = bytes(self._head[:end]), bytes(self._head[end + 4 :])
            self._head = bytearray()
            if not self._upgrade(head):
                return
        try:
            messages = self._reader.feed(data)
        except wsf.FrameError as error:
            log.warning("dropping agent socket from %s: %s", self._peer_ip(), error)
            self._send_close(error.code, str(error))
            return
        for message in messages:
            if not self._take(message):
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._close_timer is not None:
            self._close_timer.cancel()
        if self._channel is not None:
            channel_, self._channel = self._channel, None
            channel_.ended()

    # ---------------------------------------------------------------- the upgrade

    def _upgrade(self, head: bytes) -> bool:
        target, headers = _headers(head)
        refusal = self._refusal(headers)
        if refusal is not None:
            self._refuse(*refusal)
            return False
        service = self._service
        if not service.leading:
            leader = service.leader
            if leader is None:
                self._refuse(503, "no master is currently leading")
            else:
                location = f"http://{leader.hostname}:{leader.port}{target}"
                self._refuse(307, "", {"Location": location})
            return False
        key = headers["sec-websocket-key"].encode()
        assert self._transport is not None
        self._transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + wsf.accept_token(key) + b"\r\n\r\n"
        )
        muxed = mux.MUX_HEADER.lower() in headers
        self._channel = open_channel(service, self, self._peer_ip(), muxed)
        return True

    @staticmethod
    def _refusal(headers: dict[str, str]) -> tuple[int, str, dict[str, str]] | None:
        version = headers.get(channel.PROTOCOL_HEADER.lower())
        if version != channel.PROTOCOL_VERSION:
            return (
                400,
                f"agent protocol {version!r} is not spoken here "
                f"(send '{channel.PROTOCOL_HEADER}: {channel.PROTOCOL_VERSION}')",
                {},
            )
        mux_version = headers.get(mux.MUX_HEADER.lower())
        if mux_version is not None and mux_version != mux.MUX_VERSION:
            return (
                400,
                f"multiplexed agent channel {mux_version!r} is not spoken here "
                f"(send '{mux.MUX_HEADER}: {mux.MUX_VERSION}')",
                {},
            )
        if "websocket" not in _tokens(headers.get("upgrade", "")) or "upgrade" not in _tokens(
            headers.get("connection", "")
        ):
            return 400, "the agent channel is a WebSocket: send 'Upgrade: websocket'", {}
        if headers.get("sec-websocket-version") != "13":
            return 426, "WebSocket version 13 only", {"Sec-WebSocket-Version": "13"}
        if not wsf.valid_key(headers.get("sec-websocket-key", "").encode()):
            return 400, "'Sec-WebSocket-Key' must be 16 bytes in base64", {}
        return None

    def _refuse(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
        if self._transport is not None:
            self._transport.write(_response(status, body, headers))
            self._transport.close()

    # ---------------------------------------------------------------- frames

    def _take(self, message: wsf.Message) -> bool:
        opcode, payload = message
        if opcode == wsf.OP_CLOSE:
            self._send_close(wsf.CLOSE_NORMAL, "")
            if self._transport is not None:
                self._transport.close()
            return False
        if opcode == wsf.OP_PING:
            self._write(wsf.frame(wsf.OP_PONG, payload))
        elif opcode in (wsf.OP_BINARY, wsf.OP_TEXT) and not self._closing:
            assert self._channel is not None
            data: bytes | str = payload
            if opcode == wsf.OP_TEXT:
                data = payload.decode(errors="replace")
            return self._channel.take(data)
        return True

    def _peer_ip(self) -> str:
        peer = self._transport.get_extra_info("peername") if self._transport else None
        return str(peer[0]) if peer else ""

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
            log.warning("dropping agent socket from %s: it does not read", self._peer_ip())
            transport.abort()

    def _send_close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        self._write(wsf.frame(wsf.OP_CLOSE, wsf.close_payload(code, reason)))
        if self._transport is not None:
            self._close_timer = asyncio.get_running_loop().call_later(
                CLOSE_WAIT_S, self._transport.close
            )

    # ---------------------------------------------------------------- FrameSink

    def send(self, payload: bytes) -> None:
        if not self._closing:
            self._write(wsf.frame(wsf.OP_BINARY, payload))

    def close(self, reason: str, code: int = wsf.CLOSE_NORMAL) -> None:
        self._send_close(code, reason)
