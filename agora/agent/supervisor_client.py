"""The agent's side of the supervisor socket: finds (or starts) the work dir's
supervisor, batches requests into one write per event-loop turn and hands reports back
in batches."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from agora.agent.supervisor import socket_address

log = logging.getLogger("agora.agent.supervisor")

Message = dict[str, Any]


class SupervisorClient:
    def __init__(self, work_dir: str, on_messages: Callable[[list[Message]], None]) -> None:
        self.work_dir = os.path.abspath(work_dir)
        self.on_messages = on_messages
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._pending: list[bytes] = []
        self._flush_scheduled = False
        self._read_task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def connect(self, start_timeout_s: float = 15.0) -> None:
        address = socket_address(self.work_dir)
        try:
            self.reader, self.writer = await asyncio.open_unix_connection(address)
        except OSError:
            self._start()
            deadline = time.monotonic() + start_timeout_s
            while True:
                try:
                    self.reader, self.writer = await asyncio.open_unix_connection(address)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"the supervisor did not start; see {self.work_dir}/supervisor.log"
                        ) from None
                    await asyncio.sleep(0.02)
        self._read_task = asyncio.get_running_loop().create_task(self._read())

    def _start(self) -> None:
        os.makedirs(self.work_dir, exist_ok=True)
        with open(os.path.join(self.work_dir, "supervisor.log"), "ab") as out:
            subprocess.Popen(
                [sys.executable, "-m", "agora.agent.supervisor", "--work-dir", self.work_dir],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                close_fds=True,
                cwd=self.work_dir,
            )

    async def _read(self) -> None:
        assert self.reader is not None
        buffer = b""
        try:
            while True:
                chunk = await self.reader.read(1 << 20)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                messages = [json.loads(line) for line in lines if line.strip()]
                if messages:
                    self.on_messages(messages)
        except (ConnectionError, OSError) as error:
            log.warning("supervisor connection lost: %s", error)
        finally:
            self.closed.set()

    def send(self, message: Message) -> None:
        self._pending.append(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.writer is None or not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        if not self.writer.is_closing():
            self.writer.write(data)

    async def shutdown(self, kill: bool = True) -> None:
        """Tell the supervisor to kill everything and exit, then wait for it to go."""
        self.send({"op": "shutdown", "kill": kill})
        self._flush()
        if self.writer is not None:
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.drain()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.closed.wait(), 10.0)
        await self.close()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()
        if self._read_task is not None:
            self._read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._read_task
