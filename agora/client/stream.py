"""The streaming half of the v1 APIs: POST a SUBSCRIBE, then read RecordIO records from the
chunked response until the peer closes it or goes quiet for too long."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from agora.client.http import Connection, HttpError, Response
from agora.wire.recordio import RecordIODecoder, RecordIOError

_decoder = msgspec.json.Decoder()
encode = msgspec.json.Encoder().encode


class StreamError(Exception):
    """The stream broke: bad framing or JSON, or no record within the idle timeout."""


def decode(payload: bytes) -> Any:
    return _decoder.decode(payload)


async def open_stream(
    host: str,
    port: int,
    path: str,
    payload: bytes,
    *,
    headers: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> tuple[Connection, Response]:
    """POST `payload` and read the response head. A non-200 answer comes back with its body
    read and the connection closed; a 200 leaves the connection open for `records()`."""
    connection = await Connection.open(host, port, timeout_s)
    try:
        connection.send("POST", path, payload, headers)
        async with asyncio.timeout(timeout_s):
            head = await connection.read_head()
            if head.status != 200:
                await connection.read_body(head)
                connection.close()
    except TimeoutError:
        connection.close()
        raise HttpError(
            f"no answer to SUBSCRIBE from {host}:{port} within {timeout_s:g}s"
        ) from None
    except BaseException:
        connection.close()
        raise
    return connection, head


async def records(
    connection: Connection, head: Response, idle_timeout_s: Callable[[], float | None]
) -> AsyncIterator[Any]:
    """Decoded records until the stream ends; StreamError when it goes quiet or breaks."""
    decoder = RecordIODecoder()
    chunks = connection.stream(head).__aiter__()
    while True:
        timeout_s = idle_timeout_s()
        try:
            async with asyncio.timeout(timeout_s):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise StreamError(f"no event for {timeout_s:g}s: the connection is dead") from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as error:
            raise StreamError(f"the stream broke: {error}") from None
        except ValueError as error:
            raise StreamError(f"bad chunked framing: {error}") from None
        try:
            payloads = decoder.feed(chunk)
        except RecordIOError as error:
            raise StreamError(f"bad RecordIO framing: {error}") from None
        for payload in payloads:
            try:
                record = _decoder.decode(payload)
            except msgspec.DecodeError as error:
                raise StreamError(f"an event is not JSON: {error}") from None
            yield record
