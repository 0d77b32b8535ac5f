"""Bytes waiting to go out on one streaming HTTP response (a scheduler, executor or
operator event stream). Producers push records from anywhere in the event loop; the
handler that owns the response waits on `wake` and writes everything queued in one go."""

from __future__ import annotations

import asyncio

from aiohttp import web


class Outbox:
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.wake = asyncio.Event()
        self.closed = False  # closed by this side: the handler ends the response

    def push(self, record: bytes) -> None:
        self.buffer += record
        self.wake.set()

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        self.wake.clear()
        return data

    def close(self) -> None:
        self.closed = True
        self.wake.set()

    async def drain_into(self, response: web.StreamResponse) -> None:
        """Write what is queued as it comes, until this side closes the outbox."""
        while True:
            await self.wake.wait()
            data = self.take()
            if data:
                await response.write(data)
            if self.closed:
                return
