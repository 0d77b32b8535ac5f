"""Processes the supervisor started: their launches, failures and exits, what those mean
for tasks and executor runs, and stopping them (kills, grace periods, executor shutdown)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agora.core.agent import checking
from agora.core.agent import commands as cmd
from agora.core.agent import events as ev
from agora.core.agent.launch import describe_exit, exit_code, kill_grace_s
from agora.core.agent.model import Executor, ExecutorKind, ExecutorState, Task, TimerKind
from agora.core.container.config import Limitation
from agora.core.durations import stout_duration
from agora.core.task_states import Reason, Source, TaskState

if TYPE_CHECKING:
    from agora.core.agent.core import AgentCore, Json

TASK_KILLING_STATE = "TASK_KILLING_STATE"


# ================================================================ launches and exits


def on_launched(core: AgentCore, event: ev.ProcessLaunched) -> None:
    proc = core.procs.get(event.proc_id)
    if proc is None or proc[1] is None:
        return
    run = core.runs.get(proc[0])
    task = run.tasks.get(proc[1]) if run is not None else None
    if task is not None:
        task_started(core, task)


def task_started(core: AgentCore, task: Task) -> None:
    """A built-in task's process runs: it is RUNNING (and checked) unless a kill came first."""
    if task.state is TaskState.STARTING and not task.killing:
        core.update(task, TaskState.RUNNING)
        checking.start_checks(core, task)


def on_launch_failed(core: AgentCore, event: ev.ProcessLaunchFailed) -> None:
    proc = core.procs.pop(event.proc_id, None)
    if proc is None:
        return
    core.emit(cmd.ForgetProcess(event.proc_id))
    run = core.runs.get(proc[0])
    if run is None:
        return
    if proc[1] is None:
        core.terminate(run)
        for queued in list(run.tasks.values()):
            if not queued.state.is_terminal:
                core.update(
                    queued,
                    TaskState.FAILED,
                    source=Source.AGENT,
                    reason=Reason.CONTAINER_LAUNCH_FAILED,
                    message=f"Failed to launch the executor: {event.error}",
                )
        core.executor_exited(run, 1 << 8)
        core.retire(run)
        return
    task = run.tasks.get(proc[1])
    if task is None:
        return
    task.exited = True
    if not task.state.is_terminal:
        core.update(
            task,
            TaskState.FAILED,
            reason=Reason.CONTAINER_LAUNCH_FAILED,
            message=f"Failed to launch the command: {event.error}",
        )
    builtin_done(core, run)


def on_exited(core: AgentCore, event: ev.ProcessExited) -> None:
    proc = core.procs.pop(event.proc_id, None)
    if proc is not None:
        run = core.runs.get(proc[0])
        if run is not None and proc[1] is None:
            custom_executor_exited(core, run, event.wait_status)
        elif run is not None and proc[1] in run.tasks:
            builtin_task_exited(core, run, run.tasks[proc[1]], event.wait_status)
    # Only now, its end handled (and checkpointed), may the supervisor drop it.
    core.emit(cmd.ForgetProcess(event.proc_id))


def builtin_task_exited(core: AgentCore, run: Executor, task: Task, wait_status: int) -> None:
    task.exited = True
    task.kill_deadline = None
    core.health.stop(*task.key)
    unhealthy = task.key in core.health.killed_unhealthy
    core.health.killed_unhealthy.discard(task.key)
    if not task.state.is_terminal:
        message = describe_exit(wait_status)
        if run.limitation is not None:
            core.update(
                task,
                TaskState.FAILED,
                source=Source.AGENT,
                reason=run.limitation.reason,
                message=run.limitation.message,
            )
        elif task.killing:  # killed by a failing health check: healthy=false
            healthy = False if unhealthy else None
            core.update(task, TaskState.KILLED, message=message, healthy=healthy)
        elif exit_code(wait_status) == 0:
            core.update(task, TaskState.FINISHED, message=message)
        else:
            core.update(task, TaskState.FAILED, message=message)
            if task.group:  # the default executor kills the rest of a failed group
                for sibling in run.tasks.values():
                    if sibling.group == task.group:
                        kill_builtin(core, sibling, kill_grace_s(sibling.launch.raw, None))
    builtin_done(core, run)


def builtin_done(core: AgentCore, run: Executor) -> None:
    """A built-in task ended: the run ends once none of its processes is left."""
    if any(not t.exited for t in run.tasks.values()):
        return
    if run.kind is ExecutorKind.DEFAULT and run.state is not ExecutorState.TERMINATED:
        core.executor_exited(run, 0)
    core.terminate(run)
    core.retire(run)


def custom_executor_exited(
    core: AgentCore, run: Executor, wait_status: int, limitation: Limitation | None = None
) -> None:
    """A custom executor's process is gone: its unfinished tasks fail (with `limitation`,
    else the containerizer's, else REASON_EXECUTOR_TERMINATED)."""
    core.terminate(run)
    run.proc_exited = True
    run.wait_status = wait_status
    run.subscribed = False
    core.emit(cmd.CloseExecutorStream(run.framework_id, run.executor_id))
    core.executor_exited(run, wait_status)
    limitation = (
        limitation
        or run.limitation
        or Limitation(
            Reason.EXECUTOR_TERMINATED, f"Executor terminated: {describe_exit(wait_status)[8:]}"
        )
    )
    for task in list(run.tasks.values()):
        if not task.state.is_terminal:
            core.update(
                task,
                TaskState.FAILED,
                source=Source.AGENT,
                reason=limitation.reason,
                message=limitation.message,
            )
    core.retire(run)


def on_limited(core: AgentCore, event: ev.ContainerLimited) -> None:
    run = core.runs.get(event.container_id)
    if run is None or run.destroyed or run.limitation is not None:
        return
    run.limitation = event.limitation
    core.emit(cmd.Log("info", event.limitation.message, {"container": run.container_id}))
    core.emit(cmd.KillContainer(run.container_id))


# ================================================================ killing


def kill(
    core: AgentCore, framework_id: str, task_id: str, policy: Mapping[str, Any] | None
) -> None:
    task = core.tasks.get((framework_id, task_id))
    if task is None or task.state.is_terminal:
        return
    run = core.run_of(task)
    if run is None:
        return
    if run.kind is ExecutorKind.CUSTOM:
        if not task.delivered:
            core.update(
                task,
                TaskState.KILLED,
                source=Source.AGENT,
                reason=Reason.TASK_KILLED_DURING_LAUNCH,
                message="Killed before it was delivered to the executor",
            )
            return
        body: Json = {"task_id": {"value": task_id}}
        if policy is not None:
            body["kill_policy"] = dict(policy)
        core.to_executor(run, {"type": "KILL", "kill": body})
        return
    grace = kill_grace_s(task.launch.raw, policy)
    targets = [task]
    if task.group:
        targets += [t for t in run.tasks.values() if t.group == task.group and t is not task]
    for target in targets:
        kill_builtin(core, target, grace)


def kill_builtin(core: AgentCore, task: Task, grace_s: float, announce: bool = True) -> None:
    """SIGTERM a built-in task's process, SIGKILL after `grace_s`; TASK_KILLING first
    for frameworks that want it (unless `announce` is false: it was sent already)."""
    if task.exited or task.state.is_terminal or task.proc_id is None:
        return
    deadline = core.now + grace_s
    if task.killing:
        if task.kill_deadline is not None and deadline < task.kill_deadline:
            task.kill_deadline = deadline
            core.arm(deadline, TimerKind.KILL, task.key)
        return
    task.killing = True
    framework = core.frameworks.get(task.framework_id)
    if announce and framework is not None and framework.has(TASK_KILLING_STATE):
        core.update(task, TaskState.KILLING)
    core.emit(cmd.SignalProcess(task.proc_id, cmd.SIGTERM))
    task.kill_deadline = deadline
    core.arm(deadline, TimerKind.KILL, task.key)


def kill_due(core: AgentCore, task: Task | None) -> None:
    """A kill's grace period is over: SIGKILL what still runs."""
    if (
        task is not None
        and not task.exited
        and task.kill_deadline is not None
        and task.kill_deadline <= core.now
        and task.proc_id is not None
    ):
        task.kill_deadline = None
        core.emit(cmd.SignalProcess(task.proc_id, cmd.SIGKILL))


def shutdown_executor(core: AgentCore, run: Executor) -> None:
    if run.state in (ExecutorState.TERMINATING, ExecutorState.TERMINATED):
        return
    if run.kind is not ExecutorKind.CUSTOM:
        for task in list(run.tasks.values()):
            kill_builtin(core, task, kill_grace_s(task.launch.raw, None))
        return
    run.state = ExecutorState.TERMINATING
    for task in list(run.tasks.values()):
        if not task.delivered and not task.state.is_terminal:
            core.update(
                task,
                TaskState.KILLED,
                source=Source.AGENT,
                reason=Reason.EXECUTOR_TERMINATED,
                message="The executor was shut down before the task was delivered",
            )
    if run.subscribed:
        core.to_executor(run, {"type": "SHUTDOWN"})
        run.shutdown_deadline = core.now + core.executor_grace_s(run)
        core.arm(run.shutdown_deadline, TimerKind.SHUTDOWN, run.container_id)
    else:
        core.emit(cmd.SignalProcess(run.proc_id, cmd.SIGKILL))


def shutdown_due(core: AgentCore, run: Executor | None) -> None:
    """An executor's shutdown grace period is over: SIGKILL it."""
    if run is not None and run.state is not ExecutorState.TERMINATED:
        core.emit(cmd.SignalProcess(run.proc_id, cmd.SIGKILL))


def registration_timeout(core: AgentCore, run: Executor | None) -> None:
    if run is None or run.subscribed or run.state is not ExecutorState.LAUNCHING:
        return
    if run.registration_deadline is None or run.registration_deadline > core.now:
        return
    timeout = stout_duration(core.config.executor_registration_timeout_s)
    destroy_unsubscribed(
        core,
        run,
        Reason.EXECUTOR_REGISTRATION_TIMEOUT,
        f"Executor did not register within {timeout}",
    )


def destroy_unsubscribed(core: AgentCore, run: Executor, reason: Reason, message: str) -> None:
    """An executor that did not (re-)subscribe in time: kill it, fail its tasks."""
    run.state = ExecutorState.TERMINATING
    core.emit(cmd.SignalProcess(run.proc_id, cmd.SIGKILL))
    for task in list(run.tasks.values()):
        if not task.state.is_terminal:
            core.update(task, TaskState.FAILED, source=Source.AGENT, reason=reason, message=message)
