"""One simulated agent of a swarm: who it is, what it reports, and how it answers the
master, in the messages of the real agent channel (agora/wire/agent_channel.py).

It registers (REGISTER) until it has an agent id and re-registers (REREGISTER, with
its tasks, executors and frameworks) after that, as a real agent does after a master
failover. It answers PING with PONG; a RUN_TASK becomes a running task (one
TASK_RUNNING update, reliable, retried by nobody: a swarm is for load, not for
checking update delivery) and KILL_TASK a TASK_KILLED one; SHUTDOWN_AGENT stops it.
The transport (a socket each, or a multiplexed one) lives in swarm.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from enum import Enum
from typing import Any

import msgspec

from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master.info import AgentInfo, FrameworkInfo, TaskStatus
from agora.core.task_states import Source, TaskState
from agora.wire import agent_channel as channel
from agora.wire.mesos_json import Json, WireError, status_to_json

CAPABILITIES = frozenset({"MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"})
VERSION = "agora-swarm"

_encode = msgspec.msgpack.Encoder().encode


class Phase(Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    WAITING = "waiting"  # (re)registration sent, no answer yet
    REGISTERED = "registered"
    STOPPED = "stopped"  # told to shut down: stays away


class SwarmAgent:
    def __init__(
        self,
        index: int,
        info: AgentInfo,
        tasks: list[ev.AgentTask],
        frameworks: tuple[FrameworkInfo, ...],
    ) -> None:
        self.index = index
        self.key = 0  # its key on a multiplexed socket
        self.info = info
        self.tasks = {(t.framework_id, t.task_id): t for t in tasks}
        self.frameworks = {f.id: f for f in frameworks if f.id is not None}
        self.agent_id: str | None = None
        self.master_id: str | None = None
        self.phase = Phase.DISCONNECTED
        self.hello_sent_at: float | None = None  # time.monotonic() of the last hello
        self.acked_at: float | None = None  # ... and of the master's answer to it
        self.registrations = 0  # answers to a hello received, over the agent's life
        self.pings = 0
        self.other_messages: dict[str, int] = {}
        self._hello: tuple[str | None, bytes] | None = None

    # ------------------------------------------------------------------ to the master

    def hello(self) -> bytes:
        """The (re)registration message, msgpack-encoded. Cached: an agent's report
        changes only when its tasks or identity do, and a swarm of thousands sends it
        again after every failover."""
        if self._hello is None or self._hello[0] != self.agent_id:
            self._hello = (self.agent_id, _encode(self._hello_message()))
        return self._hello[1]

    def _hello_message(self) -> Json:
        if self.agent_id is None:
            return channel.register(self.info, CAPABILITIES, VERSION)
        wanted = {t.framework_id for t in self.tasks.values()}
        return channel.reregister(
            self.agent_id,
            self.info,
            CAPABILITIES,
            VERSION,
            list(self.tasks.values()),
            [],
            [f for f_id, f in sorted(self.frameworks.items()) if f_id in wanted],
        )

    def hello_sent(self) -> None:
        self.phase = Phase.WAITING
        self.hello_sent_at = time.monotonic()
        self.acked_at = None

    def disconnected(self, refused: bool = False) -> None:
        """The connection ended; a master that refused the id for good (the agent was
        marked gone) makes the agent forget it and its tasks, and register anew, as a
        real one does."""
        if refused:
            self.agent_id = None
            self.tasks.clear()
            self._hello = None
        if self.phase is not Phase.STOPPED:
            self.phase = Phase.DISCONNECTED

    # ------------------------------------------------------------------ from the master

    def take(self, message: Mapping[str, Any]) -> list[Json]:
        """Apply one master message; the replies to send back."""
        kind = message.get("type")
        if kind == "PING":
            self.pings += 1
            return [channel.pong()]
        if kind in ("REGISTERED", "REREGISTERED"):
            self.agent_id = str(message["agent_id"])
            self.master_id = str(message["master_id"])
            if self.phase is Phase.WAITING:
                self.phase = Phase.REGISTERED
                self.acked_at = time.monotonic()
                self.registrations += 1
            return []
        self.other_messages[str(kind)] = self.other_messages.get(str(kind), 0) + 1
        try:
            decoded = channel.agent_message_from_json(message)
        except (WireError, KeyError, TypeError):
            return []
        if isinstance(decoded, cmd.RunTask):
            return [self._run(decoded)]
        if isinstance(decoded, cmd.KillTask):
            return self._kill(decoded)
        if isinstance(decoded, cmd.ShutdownAgent):
            self.phase = Phase.STOPPED
        return []

    def _run(self, run: cmd.RunTask) -> Json:
        framework, launch = run.framework, run.task
        if framework.id is not None:
            self.frameworks[framework.id] = framework
        uuid = os.urandom(16)
        key = (framework.id or "", launch.task_id)
        self.tasks[key] = ev.AgentTask(
            framework_id=key[0],
            task_id=launch.task_id,
            name=launch.name,
            state=TaskState.RUNNING,
            resources=launch.resources,
            raw=launch.raw,
        )
        self._hello = None
        return self._update(key[0], launch.task_id, TaskState.RUNNING, uuid)

    def _kill(self, kill: cmd.KillTask) -> list[Json]:
        if self.tasks.pop((kill.framework_id, kill.task_id), None) is None:
            return []
        self._hello = None
        return [self._update(kill.framework_id, kill.task_id, TaskState.KILLED, os.urandom(16))]

    def _update(self, framework_id: str, task_id: str, state: TaskState, uuid: bytes) -> Json:
        status = TaskStatus(
            task_id=task_id,
            state=state,
            source=Source.EXECUTOR,
            agent_id=self.agent_id,
            timestamp=time.time(),
            uuid=uuid,
        )
        return channel.status_update(framework_id, status_to_json(status))
