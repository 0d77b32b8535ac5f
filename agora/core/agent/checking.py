"""Health checks and checks of built-in executors' tasks: when they run, what a probe's
verdict means for the task (an update, or a kill when it is unhealthy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agora.core.agent import commands as cmd
from agora.core.agent import events as ev
from agora.core.agent import health, launching, processes
from agora.core.agent.launch import command_environment, kill_grace_s
from agora.core.agent.model import Executor, Task, TimerKind
from agora.core.task_states import Reason, TaskState

if TYPE_CHECKING:
    from agora.core.agent.core import AgentCore


def start_checks(core: AgentCore, task: Task) -> None:
    """A built-in executor's task runs: start its health check and check."""
    try:
        specs = health.task_specs(task.launch.raw)
    except health.InvalidCheck as error:  # Mesos's executor, too, runs on unchecked
        core.emit(cmd.Log("warning", f"task {task.task_id} is not checked: {error}"))
        return
    core.health.start(task.framework_id, task.task_id, specs, core.now)
    for key, due in core.health.deadlines(task.framework_id, task.task_id):
        core.arm(due, TimerKind.CHECK, key)


def _checked_task(core: AgentCore, key: health.Key) -> tuple[Task, Executor] | None:
    """The task of a checker while it still runs; checks stop at a kill or its end."""
    task = core.tasks.get(key[:2])
    run = core.run_of(task) if task is not None else None
    if task is None or run is None or task.killing or task.state is not TaskState.RUNNING:
        core.health.stop(*key[:2])
        return None
    return task, run


def run_check(core: AgentCore, key: health.Key) -> None:
    checker = core.health.due(key, core.now)
    found = _checked_task(core, key) if checker is not None else None
    if checker is None or found is None:
        return
    task, run = found
    check_id = f"{key[0]}/{key[1]}/{key[2]}/{checker.probes + 1}"
    checker.begin(check_id)
    sandbox = launching.builtin_sandbox(run, task)
    env = launching.task_env(core, run, task.task_id, sandbox, task.launch.raw.get("command"))
    env.update(command_environment(checker.spec.command))
    core.emit(cmd.RunCheck(check_id, key[0], key[1], run.container_id, checker.spec, env, sandbox))


def on_check_result(core: AgentCore, event: ev.CheckResult) -> None:
    key = (event.framework_id, event.task_id, event.kind)
    found = _checked_task(core, key)
    if found is None:
        return
    task = found[0]
    verdict = core.health.finish(key, event.check_id, event.probe, core.now)
    for timer_key, due in core.health.deadlines(*task.key):
        if timer_key == key:
            core.arm(due, TimerKind.CHECK, key)
    if verdict is None:
        return
    if verdict.healthy is None:
        core.update(
            task,
            TaskState.RUNNING,
            reason=Reason.TASK_CHECK_STATUS_UPDATED,
            healthy=core.health.last_healthy(*task.key),
            check_status=verdict.check_status,
        )
        return
    if verdict.message is not None:
        core.emit(cmd.Log("info", verdict.message, {"task": task.task_id}))
    core.update(
        task,
        TaskState.RUNNING,
        reason=Reason.TASK_HEALTH_CHECK_STATUS_UPDATED,
        healthy=verdict.healthy,
        check_status=core.health.last_check_status(*task.key),
    )
    if verdict.kill:
        core.health.killed_unhealthy.add(task.key)
        core.health.stop(*task.key)
        processes.kill_builtin(core, task, kill_grace_s(task.launch.raw, None))
