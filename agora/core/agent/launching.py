"""Starting work: command tasks, task groups of the default executor and custom
executors, with the sandbox, environment and container each process gets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from agora.core.agent import checkpointing, processes
from agora.core.agent import commands as cmd
from agora.core.agent.launch import InvalidCommandError, command_argv, command_environment
from agora.core.agent.model import Executor, ExecutorKind, ExecutorState, Task, TimerKind
from agora.core.container.config import ContainerConfig, task_user
from agora.core.durations import stout_duration
from agora.core.master import commands as mcmd
from agora.core.master.info import FrameworkInfo
from agora.core.resource_json import resources_to_json
from agora.core.task_states import Reason, Source, TaskState

if TYPE_CHECKING:
    from agora.core.agent.core import AgentCore


def run_task(core: AgentCore, framework: FrameworkInfo, launch: mcmd.TaskLaunch) -> None:
    framework_id = framework.id or ""
    core.remember_framework(framework)
    if (framework_id, launch.task_id) in core.tasks or core.agent_id is None:
        core.emit(cmd.Log("warning", "ignoring a duplicate launch", {"task": launch.task_id}))
        return
    if launch.executor is None:
        _launch_command_task(core, framework_id, launch)
    else:
        _launch_custom_task(core, framework_id, launch.executor, launch)


def _launch_command_task(core: AgentCore, framework_id: str, launch: mcmd.TaskLaunch) -> None:
    command = launch.raw.get("command")
    raw = {
        "executor_id": {"value": launch.task_id},
        "framework_id": {"value": framework_id},
        "name": f"Command Executor (Task: {launch.task_id})",
        "source": launch.task_id,
        "command": command if isinstance(command, Mapping) else {},
    }
    run = core.new_run(framework_id, launch.task_id, ExecutorKind.COMMAND, raw, launch.resources)
    run.state = ExecutorState.RUNNING
    task = Task(
        framework_id,
        launch.task_id,
        launch,
        launch.task_id,
        proc_id=run.proc_id,
        container_id=run.container_id,
    )
    _start_builtin(core, run, task, run.directory, command)


def _start_builtin(
    core: AgentCore, run: Executor, task: Task, sandbox: str, command: object
) -> None:
    add_task(core, run, task)
    try:
        argv = command_argv(command)
    except InvalidCommandError as error:
        task.exited = True
        core.update(task, TaskState.FAILED, reason=Reason.TASK_INVALID, message=str(error))
        processes.builtin_done(core, run)
        return
    env = task_env(core, run, task.task_id, sandbox, command)
    core.update(task, TaskState.STARTING)
    assert task.proc_id is not None
    core.procs[task.proc_id] = (run.container_id, task.task_id)
    container = container_config(core, run, task, sandbox, command)
    core.emit(cmd.LaunchProcess(task.proc_id, argv.argv, env, sandbox, argv.executable, container))


def add_task(core: AgentCore, run: Executor, task: Task) -> None:
    run.tasks[task.task_id] = task
    core.tasks[task.key] = task
    checkpointing.new_task(core, run, task)


def builtin_sandbox(run: Executor, task: Task) -> str:
    """A command task runs in its run's sandbox; a task group's tasks in their own."""
    if run.kind is ExecutorKind.COMMAND:
        return run.directory
    return f"{run.directory}/tasks/{task.task_id}"


def run_task_group(core: AgentCore, message: mcmd.RunTaskGroup) -> None:
    framework_id = message.framework.id or ""
    core.remember_framework(message.framework)
    spec = message.executor
    if core.agent_id is None:
        return
    run = core.executors.get((framework_id, spec.executor_id))
    if run is None or run.state is not ExecutorState.RUNNING:
        run = core.new_run(
            framework_id, spec.executor_id, ExecutorKind.DEFAULT, spec.raw, spec.resources
        )
        run.state = ExecutorState.RUNNING
    group = run.next_group
    run.next_group += 1
    for launch in message.tasks:
        if (framework_id, launch.task_id) in core.tasks:
            continue
        task = Task(
            framework_id,
            launch.task_id,
            launch,
            spec.executor_id,
            proc_id=f"{run.container_id}/{launch.task_id}",
            group=group,
            container_id=run.container_id,
        )
        _start_builtin(core, run, task, builtin_sandbox(run, task), launch.raw.get("command"))


def _launch_custom_task(
    core: AgentCore, framework_id: str, spec: mcmd.ExecutorSpec, launch: mcmd.TaskLaunch
) -> None:
    run = core.executors.get((framework_id, spec.executor_id))
    if run is None or run.state in (ExecutorState.TERMINATING, ExecutorState.TERMINATED):
        run = _start_custom_executor(core, framework_id, spec)
    task = Task(
        framework_id, launch.task_id, launch, spec.executor_id, container_id=run.container_id
    )
    add_task(core, run, task)
    if run.state is not ExecutorState.TERMINATED:
        resources = run.resources
        for other in run.tasks.values():
            if not other.state.is_terminal:
                resources = resources + other.launch.resources
        core.emit(cmd.UpdateContainer(run.container_id, resources))
    if run.state is ExecutorState.TERMINATED:  # it failed to start
        core.update(
            task,
            TaskState.FAILED,
            source=Source.AGENT,
            reason=Reason.CONTAINER_LAUNCH_FAILED,
            message="The executor could not be started",
        )
    elif run.subscribed:
        deliver(core, run, task)


def _start_custom_executor(core: AgentCore, framework_id: str, spec: mcmd.ExecutorSpec) -> Executor:
    raw = dict(spec.raw)
    raw["executor_id"] = {"value": spec.executor_id}
    raw["framework_id"] = {"value": framework_id}
    run = core.new_run(framework_id, spec.executor_id, ExecutorKind.CUSTOM, raw, spec.resources)
    command = raw.get("command")
    try:
        argv = command_argv(command, "ExecutorInfo.command")
    except InvalidCommandError as error:
        run.state = ExecutorState.TERMINATED
        run.destroyed = True  # no container was ever created
        core.emit(cmd.Log("warning", f"cannot launch executor: {error}"))
        return run
    env = dict(core.config.base_env)
    env.update(common_env(core, run, run.directory))
    env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"] = stout_duration(core.executor_grace_s(run))
    if env["MESOS_CHECKPOINT"] == "1":
        env["MESOS_RECOVERY_TIMEOUT"] = stout_duration(core.config.recovery_timeout_s)
        env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] = stout_duration(
            core.config.executor_reregistration_timeout_s
        )
    env.update(command_environment(command))
    core.procs[run.proc_id] = (run.container_id, None)
    container = container_config(core, run, None, run.directory, command)
    core.emit(
        cmd.LaunchProcess(run.proc_id, argv.argv, env, run.directory, argv.executable, container)
    )
    run.registration_deadline = core.now + core.config.executor_registration_timeout_s
    core.arm(run.registration_deadline, TimerKind.REGISTRATION, run.container_id)
    return run


def deliver(core: AgentCore, run: Executor, task: Task) -> None:
    task.delivered = True
    raw = dict(task.launch.raw)
    raw["agent_id"] = {"value": core.agent_id or ""}
    raw.setdefault("task_id", {"value": task.task_id})
    raw.setdefault("name", task.launch.name)
    if "resources" not in raw:
        raw["resources"] = resources_to_json(task.launch.resources)
    core.to_executor(run, {"type": "LAUNCH", "launch": {"task": raw}})


# ------------------------------------------------------------------ what a process gets


def container_config(
    core: AgentCore, run: Executor, task: Task | None, sandbox: str, command: object
) -> ContainerConfig:
    framework = core.frameworks.get(run.framework_id)
    info = task.launch.raw.get("container") if task is not None else None
    if not isinstance(info, Mapping):
        info = run.raw.get("container")
    uris = command.get("uris") if isinstance(command, Mapping) else None
    resources = run.resources
    if run.kind is not ExecutorKind.COMMAND:  # a container holds all its run's tasks
        for other in run.tasks.values():
            if other is not task and not other.state.is_terminal:
                resources = resources + other.launch.resources
        if task is not None:
            resources = resources + task.launch.resources
    return ContainerConfig(
        container_id=run.container_id,
        framework_id=run.framework_id,
        executor_id=run.executor_id,
        task_id=task.task_id if task is not None else None,
        directory=run.directory,
        sandbox=sandbox,
        resources=resources,
        user=task_user(command, framework.user if framework else None, core.config.switch_user),
        container_info=info if isinstance(info, Mapping) else None,
        uris=tuple(u for u in uris if isinstance(u, Mapping)) if isinstance(uris, list) else (),
        checkpoint=core.checkpoints(run.framework_id),
    )


def task_env(
    core: AgentCore, run: Executor, task_id: str, sandbox: str, command: object
) -> dict[str, str]:
    env = dict(core.config.base_env)
    env.update(common_env(core, run, sandbox))
    env["MESOS_TASK_ID"] = task_id
    env.update(command_environment(command))
    return env


def common_env(core: AgentCore, run: Executor, sandbox: str) -> dict[str, str]:
    framework = core.frameworks.get(run.framework_id)
    checkpoint = framework is not None and framework.checkpoint
    env = {
        "MESOS_FRAMEWORK_ID": run.framework_id,
        "MESOS_EXECUTOR_ID": run.executor_id,
        "MESOS_AGENT_ID": core.agent_id or "",
        "MESOS_SLAVE_ID": core.agent_id or "",
        "MESOS_AGENT_ENDPOINT": core.config.endpoint,
        "MESOS_SLAVE_PID": f"slave(1)@{core.config.endpoint}",
        "MESOS_DIRECTORY": sandbox,
        "MESOS_SANDBOX": sandbox,
        "MESOS_CONTAINER_ID": run.container_id,
        "MESOS_CONTAINER_NAME": f"mesos-{run.container_id}",
        "MESOS_CHECKPOINT": "1" if checkpoint else "0",
        "MESOS_HTTP_COMMAND_EXECUTOR": "0",
        "LIBPROCESS_PORT": "0",
    }
    role = run.resources.allocation_role() if run.resources else None
    if role is not None:
        env["MESOS_ALLOCATION_ROLE"] = role
    return env
