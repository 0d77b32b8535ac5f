"""The agent's I/O shell: owns the agent core, feeds it master frames, supervisor reports,
executor API calls and timers, and carries out the commands it returns.

Output is batched: messages for the master leave as one WebSocket frame per event-loop
turn, requests for the supervisor as one socket write per turn, and the core's timer is
re-armed once per turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from agora.agent.checks import CheckRunner
from agora.agent.containerizer.containerizer import Containerizer
from agora.agent.containerizer.options import ContainerizerOptions
from agora.agent.supervisor_client import Message, SupervisorClient
from agora.core.agent import commands as cmd
from agora.core.agent import events as ev
from agora.core.agent.core import AgentCore
from agora.core.agent.model import AgentConfig
from agora.core.seeded import seeded
from agora.runtime.outbox import Outbox
from agora.wire import agent_channel as channel
from agora.wire.mesos_json import Json, WireError, status_to_json
from agora.wire.recordio import encode_record

log = logging.getLogger("agora.agent")

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 10.0


@dataclass
class ServiceOptions:
    master: str  # host:port
    cleanup_on_exit: bool = True
    flags: Mapping[str, str] = field(default_factory=dict)
    containerizer: ContainerizerOptions | None = None  # None: no isolators


class ExecutorStream(Outbox):
    """An executor's SUBSCRIBE response: RecordIO records queue here for its handler."""


def _json_bytes(value: Any) -> bytes:
    import json

    return json.dumps(value, separators=(",", ":")).encode()


class AgentService:
    def __init__(self, config: AgentConfig, options: ServiceOptions) -> None:
        self.config = config
        self.options = options
        self.core = AgentCore(config, seeded(int.from_bytes(os.urandom(8), "big")))
        self.supervisor = SupervisorClient(config.work_dir, self._on_supervisor)
        self.containerizer = Containerizer(
            options.containerizer or ContainerizerOptions(config.work_dir, isolation=()),
            self.supervisor,
            on_limited=lambda cid, limitation: self.dispatch(ev.ContainerLimited(cid, limitation)),
            on_failed=lambda proc_id, error: self.dispatch(ev.ProcessLaunchFailed(proc_id, error)),
        )
        self.checks = CheckRunner(self.containerizer, self.dispatch)
        self.start_time = time.time()
        self.streams: dict[tuple[str, str], ExecutorStream] = {}
        self.opened: dict[str, ExecutorStream] = {}
        self.stopping = asyncio.Event()
        self.stop_message = ""
        self._ids = itertools.count(1)
        self._master_out: list[Json] = []
        self._master_wake = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._rearm_scheduled = False
        self._tasks: list[asyncio.Task[None]] = []
        self._rng = random.Random(os.urandom(8))  # backoff jitter only

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.supervisor.connect()
        self.supervisor.send({"op": "list"})
        self.containerizer.start()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._master_loop()))

    async def stop(self) -> None:
        self.stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for stream in self.streams.values():
            stream.close()
        if self._timer is not None:
            self._timer.cancel()
        await self.containerizer.stop()
        if self.options.cleanup_on_exit:
            await self.supervisor.shutdown(kill=True)
        else:
            await self.supervisor.close()

    def next_request_id(self) -> str:
        return f"r{next(self._ids)}"

    # ------------------------------------------------------------------ core

    def dispatch(self, event: ev.AgentEvent) -> list[cmd.AgentCommand]:
        commands = self.core.handle(event, time.time())
        for command in commands:
            self._execute(command)
        if not self._rearm_scheduled:
            self._rearm_scheduled = True
            asyncio.get_running_loop().call_soon(self._rearm)
        return commands

    def _execute(self, command: cmd.AgentCommand) -> None:
        if isinstance(command, cmd.SendStatusUpdate):
            self._to_master(
                channel.status_update(
                    command.framework_id, status_to_json(command.status), command.latest_state
                )
            )
        elif isinstance(command, cmd.SendTaskEnded):
            self._to_master(
                channel.task_ended(command.framework_id, command.task_id, command.state)
            )
        elif isinstance(command, cmd.LaunchProcess):
            self.containerizer.launch(command)
        elif isinstance(command, cmd.UpdateContainer):
            self.containerizer.update(command.container_id, command.resources)
        elif isinstance(command, cmd.KillContainer):
            self.containerizer.kill(command.container_id)
        elif isinstance(command, cmd.RunCheck):
            self.checks.run(command)
        elif isinstance(command, cmd.DestroyContainer):
            self.containerizer.destroy(command.container_id)
        elif isinstance(command, cmd.ForgetProcess):
            self.supervisor.send({"op": "forget", "id": command.proc_id})
        elif isinstance(command, cmd.SignalProcess):
            self.supervisor.send({"op": "signal", "id": command.proc_id, "signal": command.signal})
        elif isinstance(command, cmd.Pong):
            self._to_master(channel.pong())
        elif isinstance(command, cmd.Register):
            self._register(command)
        elif isinstance(command, cmd.ToExecutor):
            stream = self.streams.get((command.framework_id, command.executor_id))
            if stream is not None:
                stream.push(encode_record(_json_bytes(command.event)))
        elif isinstance(command, cmd.OpenExecutorStream):
            key = (command.framework_id, command.executor_id)
            old = self.streams.get(key)
            if old is not None:
                old.close()
            stream = self.streams[key] = ExecutorStream()
            self.opened[command.request_id] = stream
        elif isinstance(command, cmd.CloseExecutorStream):
            stream = self.streams.pop((command.framework_id, command.executor_id), None)
            if stream is not None:
                stream.close()
        elif isinstance(command, cmd.SendExecutorExited):
            self._to_master(
                channel.executor_exited(
                    command.framework_id, command.executor_id, command.wait_status
                )
            )
        elif isinstance(command, cmd.SendExecutorMessage):
            self._to_master(
                channel.executor_message(command.framework_id, command.executor_id, command.data)
            )
        elif isinstance(command, cmd.Stop):
            log.warning("the master asked this agent to shut down: %s", command.message)
            self.stop_message = command.message
            self.stopping.set()
        elif isinstance(command, cmd.Log):
            log.log(
                logging.getLevelName(command.level.upper()),
                "%s %s",
                command.message,
                command.detail,
            )

    def _register(self, command: cmd.Register) -> None:
        info = self.config.info
        if command.agent_id is None:
            message = channel.register(info, self.config.capabilities, self.config.version)
        else:
            message = channel.reregister(
                command.agent_id,
                info,
                self.config.capabilities,
                self.config.version,
                command.tasks,
                command.executors,
                command.frameworks,
            )
        self._to_master(message)

    def _rearm(self) -> None:
        self._rearm_scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.core.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - time.time())
            self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.dispatch(ev.Tick())

    # ------------------------------------------------------------------ supervisor

    def _on_supervisor(self, messages: list[Message]) -> None:
        for message in messages:
            op = message.get("op")
            proc_id = str(message.get("id"))
            if op == "launched":
                self.containerizer.launched(proc_id, int(message["pid"]))
                self.dispatch(ev.ProcessLaunched(proc_id, int(message["pid"])))
            elif op == "exited":
                container_id = self.containerizer.proc_container.get(proc_id)
                limitation = self.containerizer.exited(proc_id)
                if limitation is not None and container_id is not None:
                    self.dispatch(ev.ContainerLimited(container_id, limitation))
                self.dispatch(ev.ProcessExited(proc_id, int(message["status"])))
            elif op == "failed":
                self.containerizer.launch_failed(proc_id)
                self.dispatch(ev.ProcessLaunchFailed(proc_id, str(message.get("error", ""))))
            elif op == "procs":
                self._on_leftover_procs(message.get("procs", []))

    def _on_leftover_procs(self, procs: list[Message]) -> None:
        """Processes of an earlier agent on this work dir. Recovery is a later step: for
        now finished ones are forgotten and running ones are left alone (and logged)."""
        for proc in procs:
            if proc.get("id") in self.core.procs:
                continue
            if proc.get("status") is None:
                log.warning(
                    "process %s (pid %s) of an earlier agent still runs", proc["id"], proc["pid"]
                )
            else:
                self.supervisor.send({"op": "forget", "id": proc["id"]})

    # ------------------------------------------------------------------ master

    def _to_master(self, message: Json) -> None:
        if self._ws is None:
            return
        self._master_out.append(message)
        self._master_wake.set()

    async def _writer(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            await self._master_wake.wait()
            self._master_wake.clear()
            batch, self._master_out = self._master_out, []
            if batch:
                await ws.send_bytes(channel.encode_frame(batch))

    async def _master_loop(self) -> None:
        url = f"ws://{self.options.master}{channel.PATH}"
        headers = {channel.PROTOCOL_HEADER: channel.PROTOCOL_VERSION}
        backoff_s = BACKOFF_MIN_S
        async with aiohttp.ClientSession() as session:
            while not self.stopping.is_set():
                writer: asyncio.Task[None] | None = None
                try:
                    async with session.ws_connect(
                        url, headers=headers, max_msg_size=0, autoping=True
                    ) as ws:
                        log.info("connected to the master at %s", self.options.master)
                        backoff_s = BACKOFF_MIN_S
                        self._ws = ws
                        self._master_out = []
                        writer = asyncio.get_running_loop().create_task(self._writer(ws))
                        self.dispatch(ev.MasterConnected())
                        async for frame in ws:
                            if frame.type is aiohttp.WSMsgType.BINARY:
                                self._on_frame(frame.data)
                            elif frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
                                break
                except (TimeoutError, aiohttp.ClientError, OSError) as error:
                    log.info("master %s unreachable: %s", self.options.master, error)
                finally:
                    if writer is not None:
                        writer.cancel()
                    if self._ws is not None:
                        self._ws = None
                        self._master_out = []
                        self.dispatch(ev.MasterDisconnected())
                delay_s = backoff_s * (0.5 + self._rng.random() / 2)
                backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay_s)

    def _on_frame(self, data: bytes) -> None:
        try:
            messages = channel.decode_frame(data)
        except WireError as error:
            log.warning("bad frame from the master: %s", error)
            return
        for message in messages:
            try:
                decoded = channel.agent_message_from_json(message)
            except (WireError, KeyError, TypeError) as error:
                log.warning("bad message from the master: %s", error)
                continue
            self.dispatch(ev.FromMaster(decoded))
