"""When the core checkpoints: the records of agora/core/agent/checkpoint.py, emitted as
`commands.Checkpoint` right before the commands that depend on them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agora.core.agent import commands as cmd
from agora.core.agent.checkpoint import (
    AckRecord,
    AgentRecord,
    FrameworkRecord,
    RunCompleted,
    RunPath,
    RunRecord,
    TaskRecord,
    UpdateRecord,
)
from agora.core.agent.model import Executor, Task
from agora.core.master.info import FrameworkInfo, TaskStatus

if TYPE_CHECKING:
    from agora.core.agent.core import AgentCore


def run_path(run: Executor) -> RunPath:
    return RunPath(run.framework_id, run.executor_id, run.container_id)


def agent_record(core: AgentCore, agent_id: str) -> AgentRecord:
    return AgentRecord(agent_id, core.config.info)


def framework(core: AgentCore, info: FrameworkInfo) -> None:
    if info.checkpoint and core.agent_id is not None:
        core.emit(cmd.Checkpoint(FrameworkRecord(info)))


def new_run(core: AgentCore, run: Executor) -> None:
    if core.checkpoints(run.framework_id):
        core.emit(cmd.Checkpoint(RunRecord(run_path(run), run.kind, run.raw, run.resources)))


def new_task(core: AgentCore, run: Executor, task: Task) -> None:
    if core.checkpoints(run.framework_id):
        record = TaskRecord(run_path(run), task.launch, task.proc_id, task.group)
        core.emit(cmd.Checkpoint(record))


def update(core: AgentCore, task: Task, status: TaskStatus) -> None:
    run = core.runs.get(task.container_id)
    if run is not None and core.checkpoints(task.framework_id):
        core.emit(cmd.Checkpoint(UpdateRecord(run_path(run), task.task_id, status)))


def acknowledgement(core: AgentCore, task: Task, uuid: bytes) -> None:
    run = core.runs.get(task.container_id)
    if run is not None and core.checkpoints(task.framework_id):
        core.emit(cmd.Checkpoint(AckRecord(run_path(run), task.task_id, uuid)))


def run_completed(core: AgentCore, run: Executor) -> None:
    if core.checkpoints(run.framework_id):
        core.emit(cmd.Checkpoint(RunCompleted(run_path(run))))
