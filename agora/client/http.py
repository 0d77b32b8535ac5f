"""A lean HTTP/1.1 client over asyncio streams for the hot path of the drivers.

Scheduler and executor calls are small POSTs answered by `202 Accepted`; a framework pushing
thousands of tasks makes several such calls per task (ACCEPT, one ACKNOWLEDGE per status
update). aiohttp's client spends far more CPU per request than the request itself needs, so
the drivers keep a pool of keep-alive connections here instead: several calls in flight at
once, no per-call session, headers written with one `bytes` join. The same connection code
also reads chunked streaming responses (SUBSCRIBE), so redirects and errors are handled once.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_MAX_HEADER_BYTES = 64 * 1024


class HttpError(Exception):
    """The connection failed or the peer spoke something other than HTTP/1.1."""


@dataclass(slots=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""

    def text(self) -> str:
        return self.body.decode("utf-8", "replace").strip()


def split_address(address: str, default_port: int = 5050) -> tuple[str, int]:
    """`host:port`, `http://host:port/...` or `//host:port` -> (host, port)."""
    text = address.strip()
    if "//" not in text:
        text = "//" + text
    parts = urlsplit(text)
    if not parts.hostname:
        raise ValueError(f"not a host:port address: {address!r}")
    try:
        port = parts.port or default_port
    except ValueError:
        raise ValueError(f"bad port in address: {address!r}") from None
    return parts.hostname, port


def redirect_target(location: str, fallback: tuple[str, int]) -> tuple[str, int]:
    """A Mesos 307 `Location` (protocol-relative `//host:port/path`) -> (host, port)."""
    if not location or (location.startswith("/") and not location.startswith("//")):
        return fallback
    return split_address(location, fallback[1])


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    __slots__ = ("_reader", "_writer", "host_header", "reusable", "used")

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host_header: bytes
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.host_header = host_header
        self.reusable = True
        self.used = False

    @classmethod
    async def open(cls, host: str, port: int, timeout_s: float) -> Connection:
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        except (OSError, TimeoutError) as error:
            raise HttpError(f"cannot connect to {host}:{port}: {error or 'timed out'}") from None
        return cls(reader, writer, f"{host}:{port}".encode())

    def close(self) -> None:
        self.reusable = False
        self._writer.close()

    def send(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str] | None,
        content_type: bytes = b"application/json",
    ) -> None:
        lines = [
            b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nAccept: application/json\r\n"
            b"Content-Length: %d\r\n"
            % (method.encode(), path.encode(), self.host_header, content_type, len(body))
        ]
        if headers:
            lines.extend(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in headers.items())
        lines.append(b"\r\n")
        lines.append(body)
        self.used = True
        self._writer.write(b"".join(lines))

    async def read_head(self) -> Response:
        try:
            head = await self._reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            raise HttpError("connection closed before a response") from error
        except asyncio.LimitOverrunError as error:
            raise HttpError("response headers too long") from error
        except OSError as error:
            raise HttpError(f"connection failed: {error}") from error
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
            raise HttpError(f"not an HTTP response: {lines[0][:80]!r}")
        response = Response(int(status_line[1]), status_line[2] if len(status_line) > 2 else "")
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                response.headers[name.strip().lower()] = value.strip()
        if status_line[0] == "HTTP/1.0" or response.headers.get("connection") == "close":
            self.reusable = False
        return response

    async def read_body(self, response: Response) -> None:
        headers = response.headers
        try:
            if headers.get("transfer-encoding", "").lower() == "chunked":
                parts = [chunk async for chunk in self.chunks()]
                response.body = b"".join(parts)
            elif "content-length" in headers:
                response.body = await self._reader.readexactly(int(headers["content-length"]))
            elif response.status in (204, 304) or 100 <= response.status < 200:
                response.body = b""
            else:
                self.reusable = False
                response.body = await self._reader.read()
        except (asyncio.IncompleteReadError, OSError) as error:
            self.reusable = False
            raise HttpError(f"connection failed while reading a response: {error}") from error

    async def chunks(self) -> AsyncIterator[bytes]:
        """The chunks of a chunked body; ends at the last (empty) chunk."""
        reader = self._reader
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return
            data = await reader.readexactly(size + 2)
            yield data[:-2]

    async def stream(self, response: Response) -> AsyncIterator[bytes]:
        """A streaming body as it arrives (chunked, or until the peer closes)."""
        if response.headers.get("transfer-encoding", "").lower() == "chunked":
            async for chunk in self.chunks():
                yield chunk
            return
        self.reusable = False
        while data := await self._reader.read(65536):
            yield data

    async def request(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str] | None
    ) -> Response:
        self.send(method, path, body, headers)
        response = await self.read_head()
        await self.read_body(response)
        return response


class HttpPool:
    """Keep-alive connections to one host:port; at most `size` requests in flight."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        size: int = 8,
        connect_timeout_s: float = 5.0,
        request_timeout_s: float = 75.0,
    ) -> None:
        self.host = host
        self.port = port
        self._idle: collections.deque[Connection] = collections.deque()
        self._slots = asyncio.Semaphore(size)
        self._connect_timeout_s = connect_timeout_s
        self._request_timeout_s = request_timeout_s
        self._closed = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """One request; a stale keep-alive connection is replaced once, transparently."""
        if self._closed:
            raise HttpError("the HTTP pool is closed")
        async with self._slots:
            for attempt in range(2):
                connection = self._idle.pop() if self._idle else None
                reused = connection is not None
                if connection is None:
                    connection = await Connection.open(
                        self.host, self.port, self._connect_timeout_s
                    )
                try:
                    async with asyncio.timeout(self._request_timeout_s):
                        response = await connection.request(method, path, body, headers)
                except HttpError:
                    connection.close()
                    if reused and attempt == 0:
                        continue  # the server closed an idle connection: retry on a fresh one
                    raise
                except TimeoutError:
                    connection.close()
                    raise HttpError(
                        f"no answer from {self.address} within {self._request_timeout_s:g}s"
                    ) from None
                except BaseException:
                    connection.close()
                    raise
                if connection.reusable and not self._closed:
                    self._idle.append(connection)
                else:
                    connection.close()
                return response
        raise HttpError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
