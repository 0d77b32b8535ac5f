"""An agent core with its checkpoint: every Checkpoint command it emits goes through a
real CheckpointStore in a temp dir, and `restart()` starts a new core from what that
store recovers (the way the agent shell does), with a made-up supervisor process list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agora.agent.checkpoint import CheckpointStore
from agora.core.agent import commands as cmd
from agora.core.agent import events as ev
from agora.core.agent.core import AgentCore
from agora.core.agent.model import AgentConfig
from agora.core.master import commands as mcmd
from agora.core.master.info import AgentInfo, FrameworkInfo, TaskStatus
from agora.core.resource_text import parse_resources
from agora.core.seeded import seeded

FW = "fw-1"


def framework(*capabilities: str, checkpoint: bool = True) -> FrameworkInfo:
    raw = {"user": "u", "name": "f", "id": {"value": FW}, "checkpoint": checkpoint}
    if capabilities:
        raw["capabilities"] = [{"type": c} for c in capabilities]
    return FrameworkInfo(
        user="u",
        name="f",
        id=FW,
        checkpoint=checkpoint,
        capabilities=frozenset(capabilities),
        raw=raw,
    )


def of(commands: list[cmd.AgentCommand], kind: type) -> list[Any]:
    return [c for c in commands if isinstance(c, kind)]


def updates(commands: list[cmd.AgentCommand]) -> list[TaskStatus]:
    return [c.status for c in of(commands, cmd.SendStatusUpdate)]


def records(commands: list[cmd.AgentCommand]) -> list[Any]:
    return [c.record for c in of(commands, cmd.Checkpoint)]


class CheckpointedAgent:
    def __init__(self, work_dir: Path, **config: Any) -> None:
        self.work_dir = work_dir
        self.config = AgentConfig(
            work_dir=str(work_dir),
            info=AgentInfo("host", 5051, parse_resources("cpus:4;mem:4096")),
            ip="127.0.0.1",
            port=5051,
            **config,
        )
        self.store = CheckpointStore(str(work_dir))
        self.core = AgentCore(self.config, seeded(7))
        self.seed = 7

    def handle(self, event: ev.AgentEvent, now: float = 0.0) -> list[cmd.AgentCommand]:
        out = self.core.handle(event, now)
        for command in out:
            if isinstance(command, cmd.Checkpoint):
                self.store.write(command.record)
        self.store.sync()  # the shell syncs urgent records at once, the rest within 1 s
        return out

    def register(self, agent_id: str = "A1", now: float = 0.0) -> list[cmd.AgentCommand]:
        out = self.handle(ev.MasterConnected(), now)
        return out + self.handle(ev.FromMaster(mcmd.AgentRegistered(agent_id, "M")), now)

    def start(self) -> list[cmd.AgentCommand]:
        """A fresh agent: recovery of an empty checkpoint, then registration."""
        return self.restart() + self.register()

    def run_task(
        self, task_id: str, raw: dict[str, Any], now: float = 0.0, **kw: Any
    ) -> list[cmd.AgentCommand]:
        """RunTask from the master; `fw` picks the FrameworkInfo, `executor` an ExecutorSpec."""
        info = kw.pop("fw", framework())
        launch = mcmd.TaskLaunch(task_id, task_id, "A1", parse_resources("cpus:1"), raw=raw, **kw)
        return self.handle(ev.FromMaster(mcmd.RunTask(info, launch)), now)

    def custom(self, task_id: str, executor_id: str = "ex", **kw: Any) -> list[cmd.AgentCommand]:
        spec = mcmd.ExecutorSpec(
            executor_id, FW, parse_resources("cpus:0.1"), {"command": {"value": "run-ex"}}
        )
        return self.run_task(task_id, {"task_id": {"value": task_id}}, executor=spec, **kw)

    def ack(self, status: TaskStatus, now: float = 0.0) -> list[cmd.AgentCommand]:
        assert status.uuid is not None
        message = mcmd.AcknowledgeUpdate(FW, status.task_id, status.uuid)
        return self.handle(ev.FromMaster(message), now)

    def restart(
        self,
        processes: tuple[ev.SupervisedProcess, ...] = (),
        rebooted: bool = False,
        now: float = 100.0,
        **config: Any,
    ) -> list[cmd.AgentCommand]:
        """The agent died: a new one recovers from the checkpoint on disk."""
        self.store = CheckpointStore(str(self.work_dir))
        state = self.store.recover()
        self.seed += 1
        if config:
            from dataclasses import replace

            self.config = replace(self.config, **config)
        self.core = AgentCore(self.config, seeded(self.seed))
        return self.handle(ev.Recovered(state, processes, rebooted), now)


def agent_id(agent: CheckpointedAgent) -> str | None:
    """Read through a call, so mypy does not keep an earlier check narrowed."""
    return agent.core.agent_id


def recovering(agent: CheckpointedAgent) -> bool:
    return agent.core.recovering


def running(proc_id: str, pid: int = 4242) -> ev.SupervisedProcess:
    return ev.SupervisedProcess(proc_id, pid)


def exited(proc_id: str, wait_status: int, pid: int = 4242) -> ev.SupervisedProcess:
    return ev.SupervisedProcess(proc_id, pid, wait_status)
