"""The agent's I/O shell: owns the agent core, feeds it master frames, supervisor reports,
executor API calls and timers, and carries out the commands it returns.

Output is batched: messages for the master leave as one WebSocket frame per event-loop
turn, requests for the supervisor as one socket write per turn, and the core's timer is
re-armed once per turn. Checkpoint records are written as the core emits them; after an
urgent one (all but acknowledgements and run removals, see agora/agent/checkpoint.py)
they are made durable (`CheckpointStore.sync`) before the next command is carried out,
so nothing that depends on a record happens before the record is on disk; the others
are group-committed within LAZY_SYNC_S. A checkpoint the disk refuses stops the agent
as a crash would, leaving the tasks to the next agent's recovery.

Start-up is recovery (agora/core/agent/recovery.py): read the checkpoint and the boot id,
connect to the supervisor and ask it what it still runs, hand both to the core as one
`Recovered` event, let the containerizer adopt what survived and clean up the rest, and
connect to the master only when the core says recovery is complete. Until the core has
the recovered state, executor API calls are answered 503 and the supervisor's reports
are held back (they are about processes the core does not know yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import os
import random
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import aiohttp

from agora.agent.checkpoint import (
    BOOT_ID_PATH,
    LAZY_SYNC_S,
    CheckpointStore,
    RecoveryError,
    read_boot_id,
)
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
from agora.zookeeper.leader import LeaderAddress, is_zk_url

log = logging.getLogger("agora.agent")
T = TypeVar("T")

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 10.0


RECOVER_MODES = ("reconnect", "cleanup")


class CheckpointFailedError(Exception):
    """Writing or syncing the checkpoint failed (disk full, I/O error)."""


@dataclass
class ServiceOptions:
    master: str  # host:port
    cleanup_on_exit: bool = True
    flags: Mapping[str, str] = field(default_factory=dict)
    containerizer: ContainerizerOptions | None = None  # None: no isolators
    # reconnect: recover checkpointed tasks and executors; cleanup: kill everything an
    # earlier agent left, forget its checkpoint (and id) and exit (Mesos's --recover).
    recover: str = "reconnect"
    strict: bool = True  # a corrupt checkpoint stops the agent (Mesos's --strict)
    boot_id_path: str = BOOT_ID_PATH  # where this boot's id is read (tests fake reboots)


class _Link(enum.Enum):
    OPENED = "opened"  # the WebSocket was up (and has ended)
    MOVED = "moved"  # a master that does not lead sent the agent to the one that does
    FAILED = "failed"  # no link: unreachable, refused, no leader


MAX_MOVES = 3  # redirects followed without a pause (two masters pointing at each other)


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
        self.checkpoint = CheckpointStore(config.work_dir, options.strict)
        self.recovered = False  # the core has the recovered state
        self._held: list[Message] = []  # supervisor reports that came before it
        self._procs_reply: asyncio.Future[list[Message]] | None = None
        self._lazy_sync: asyncio.TimerHandle | None = None
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
        # Silence after which the link counts as dead: told by the master on registration.
        self._master_silence_s: float | None = None
        self._master_address = options.master  # host:port now (a zk:// master: the leader)
        self._leader_changed = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._rearm_scheduled = False
        self._tasks: list[asyncio.Task[None]] = []
        self._rng = random.Random(os.urandom(8))  # backoff jitter only

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Recover, then (once the core says so) connect to the master. Raises
        checkpoint.RecoveryError when a strict recovery finds a corrupt checkpoint."""
        await self.supervisor.connect()
        procs = await self._list_processes()
        if self.options.recover == "cleanup":  # no need to read what is wiped
            await self._clean_up(len(procs))
            return
        state = self.checkpoint.recover()
        boot_id = read_boot_id(self.options.boot_id_path)
        previous = self.checkpoint.previous_boot_id()
        rebooted = None not in (boot_id, previous) and boot_id != previous
        processes = tuple(
            ev.SupervisedProcess(str(p["id"]), int(p["pid"]), p.get("status")) for p in procs
        )
        if state.agent_id is not None:
            log.info(
                "recovering agent %s: %d frameworks, %d executor runs, %d processes%s",
                state.agent_id,
                len(state.frameworks),
                len(state.runs),
                len(processes),
                " (the host rebooted since)" if rebooted else "",
            )
        self.dispatch(ev.Recovered(state, processes, rebooted))
        self.containerizer.start()
        self.checkpoint.save_boot_id(boot_id)
        self.recovered = True
        held, self._held = self._held, []
        self._on_supervisor(held)

    async def _list_processes(self, timeout_s: float = 30.0) -> list[Message]:
        self._procs_reply = asyncio.get_running_loop().create_future()
        self.supervisor.send({"op": "list"})
        try:
            return await asyncio.wait_for(self._procs_reply, timeout_s)
        except TimeoutError:
            raise RecoveryError(
                f"the supervisor did not list its processes within {timeout_s:g} s "
                f"(see {self.config.work_dir}/supervisor.log)"
            ) from None
        finally:
            self._procs_reply = None

    async def _clean_up(self, count: int) -> None:
        """--recover=cleanup: kill what the earlier agent left, forget its checkpoint."""
        log.warning(
            "--recover=cleanup: killing %d leftover processes, forgetting the checkpoint", count
        )
        await self.supervisor.shutdown(kill=True)
        self.checkpoint.forget_all()
        self.containerizer.start(known=())
        self.stop_message = "recovery cleanup done"
        self.stopping.set()

    def _start_master_loop(self) -> None:
        if not self._tasks:
            self._tasks.append(asyncio.get_running_loop().create_task(self._master_loop()))

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
        if self._lazy_sync is not None:
            self._lazy_sync.cancel()
        with contextlib.suppress(OSError):
            self.checkpoint.sync()
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
        try:
            for command in commands:
                if isinstance(command, cmd.Checkpoint):
                    self._checkpoint(command.record)
                    continue
                if self.checkpoint.urgent:
                    self._sync()
                self._execute(command)
            if self.checkpoint.urgent:
                self._sync()
            elif self.checkpoint.pending and self._lazy_sync is None:
                loop = asyncio.get_running_loop()
                self._lazy_sync = loop.call_later(LAZY_SYNC_S, self._sync_lazily)
        except CheckpointFailedError as error:
            self._checkpoint_failed(error)
        if not self._rearm_scheduled:
            self._rearm_scheduled = True
            asyncio.get_running_loop().call_soon(self._rearm)
        return commands

    def _sync(self) -> None:
        try:
            self.checkpoint.sync()
        except OSError as error:
            raise CheckpointFailedError(str(error)) from error

    def _sync_lazily(self) -> None:
        self._lazy_sync = None
        try:
            self._sync()
        except CheckpointFailedError as error:
            self._checkpoint_failed(error)

    def _checkpoint(self, record: Any) -> None:
        try:
            self.checkpoint.write(record)
        except ValueError as error:  # an id that cannot be a path: refused, not fatal
            log.error("not checkpointed: %s", error)
        except OSError as error:
            raise CheckpointFailedError(str(error)) from error

    def _checkpoint_failed(self, error: CheckpointFailedError) -> None:
        """The disk refused a checkpoint: going on would forward what is not durable.
        Stop as a crash would (tasks keep running), so a restart can recover."""
        log.critical("checkpointing failed, stopping without killing tasks: %s", error)
        self.options = replace(self.options, cleanup_on_exit=False)
        self.stop_message = f"checkpointing failed: {error}"
        self.stopping.set()

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
        elif isinstance(command, cmd.RecoverContainer):
            self.containerizer.adopt(command.config, command.pids)
        elif isinstance(command, cmd.RecoveryComplete):
            self._start_master_loop()
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
            if op == "procs" and self._procs_reply is not None:
                if not self._procs_reply.done():
                    self._procs_reply.set_result(list(message.get("procs", [])))
                continue
            if not self.recovered:
                self._held.append(message)
                continue
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
        """Connect to the master (the leader ZooKeeper names, for a zk:// master, or
        the one a 307 points to), register, and reconnect with back-off when the link
        ends; a new leader ends the link at once."""
        leader = LeaderAddress(self.options.master) if is_zk_url(self.options.master) else None
        if leader is not None:
            leader.add_listener(self._on_leader)
            await leader.start()
        headers = {channel.PROTOCOL_HEADER: channel.PROTOCOL_VERSION}
        backoff_s = BACKOFF_MIN_S
        moves = 0
        try:
            async with aiohttp.ClientSession() as session:
                while not self.stopping.is_set():
                    if leader is not None:
                        host, port = await self._until_stopping(leader.wait())
                        self._master_address = f"{host}:{port}"
                    link = await self._connect_once(session, headers)
                    if link is _Link.MOVED and moves < MAX_MOVES:
                        moves += 1
                        continue  # sent to the leader: go there at once
                    moves = 0
                    if link is _Link.OPENED:
                        backoff_s = BACKOFF_MIN_S
                    delay_s = backoff_s * (0.5 + self._rng.random() / 2)
                    backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
                    await self._back_off(delay_s)
        finally:
            if leader is not None:
                await leader.close()

    async def _until_stopping(self, waiting: Awaitable[T]) -> T:
        task = asyncio.ensure_future(waiting)
        stopping = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not task.done():
            task.cancel()
            raise asyncio.CancelledError
        return task.result()

    async def _connect_once(self, session: aiohttp.ClientSession, headers: dict[str, str]) -> _Link:
        """One link's life, from connecting until it ends."""
        url = f"ws://{self._master_address}{channel.PATH}"
        writer: asyncio.Task[None] | None = None
        refusal: str | None = None
        outcome = _Link.FAILED
        try:
            async with session.ws_connect(
                url, headers=headers, max_msg_size=0, autoping=True
            ) as ws:
                log.info("connected to the master at %s", self._master_address)
                self._ws = ws
                self._master_out = []
                self._master_silence_s = None
                writer = asyncio.get_running_loop().create_task(self._writer(ws))
                outcome = _Link.OPENED
                self.dispatch(ev.MasterConnected())
                refusal = await self._read_master(ws)
        except aiohttp.WSServerHandshakeError as error:
            location = error.headers.get("Location", "") if error.headers else ""
            if error.status == 307 and "//" in location:
                self._master_address = location.split("//", 1)[1].split("/", 1)[0]
                log.info("the master sent this agent to the leader at %s", self._master_address)
                outcome = _Link.MOVED
            else:
                log.info("master %s refused the link: %s", self._master_address, error)
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            log.info("master %s unreachable: %s", self._master_address, error)
        finally:
            if writer is not None:
                writer.cancel()
            if self._ws is not None:
                self._ws = None
                self._master_out = []
                self.dispatch(ev.MasterDisconnected(refusal))
        return outcome

    async def _back_off(self, delay_s: float) -> None:
        """Wait before connecting again; a new leader ends the wait at once."""
        self._leader_changed.clear()
        stopping = asyncio.ensure_future(self.stopping.wait())
        changed = asyncio.ensure_future(self._leader_changed.wait())
        await asyncio.wait({stopping, changed}, timeout=delay_s, return_when="FIRST_COMPLETED")
        stopping.cancel()
        changed.cancel()

    def _on_leader(self, address: tuple[str, int] | None) -> None:
        """ZooKeeper names another leading master: leave the current one now."""
        target = None if address is None else f"{address[0]}:{address[1]}"
        if address is not None:
            self._leader_changed.set()
        if self._ws is not None and target != self._master_address:
            asyncio.get_running_loop().create_task(self._ws.close())

    async def _read_master(self, ws: aiohttp.ClientWebSocketResponse) -> str | None:
        """Feed the master's frames to the core until the link ends; returns the
        master's message if it refused this agent's id (channel.CLOSE_REFUSED)."""
        while True:
            try:
                frame = await ws.receive(timeout=self._master_silence_s)
            except TimeoutError:
                log.warning(
                    "nothing from the master for %.0f s: taking the link for dead",
                    self._master_silence_s,
                )
                return None
            if frame.type is aiohttp.WSMsgType.BINARY:
                self._on_frame(frame.data)
            elif frame.type is aiohttp.WSMsgType.CLOSE:
                if frame.data == channel.CLOSE_REFUSED:
                    return str(frame.extra or "refused by the master")
                if frame.extra:
                    log.info("the master closed the link: %s", frame.extra)
                return None
            elif frame.type in (
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                return None

    def _on_frame(self, data: bytes) -> None:
        try:
            messages = channel.decode_frame(data)
        except WireError as error:
            log.warning("bad frame from the master: %s", error)
            return
        for message in messages:
            timeout_s = message.get(channel.PING_TIMEOUT_FIELD)
            if isinstance(timeout_s, int | float) and timeout_s > 0:
                self._master_silence_s = float(timeout_s)
            try:
                decoded = channel.agent_message_from_json(message)
            except (WireError, KeyError, TypeError) as error:
                log.warning("bad message from the master: %s", error)
                continue
            self.dispatch(ev.FromMaster(decoded))
