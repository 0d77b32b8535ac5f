"""Agent recovery (reference §5.2): an agent started on the work dir of an earlier one
picks up its checkpoint (agora/core/agent/checkpoint.py) and the supervisor's process
list, and goes on where the earlier agent stopped.

One `Recovered` event brings both in. Then:

  * the agent id is the checkpointed one, so the agent re-registers under it;
  * every checkpointed run and task comes back with its status stream replayed from its
    update log (unacknowledged updates are sent again once the agent is registered);
  * built-in tasks whose process still runs are adopted untouched (same pids); a
    process that ended while the agent was away is reported as if the agent had seen it
    end (FINISHED, FAILED, ...); a task whose process never started (it was queued) is
    TASK_DROPPED, or TASK_LOST for frameworks that are not PARTITION_AWARE, with
    REASON_AGENT_RESTARTED; one whose process is gone without a trace is TASK_GONE /
    TASK_LOST with REASON_EXECUTOR_TERMINATED;
  * custom executors still running get `executor_reregistration_timeout` (2 s) to
    re-subscribe; tasks they never received (still STAGING and not in the SUBSCRIBE's
    unacknowledged_tasks) are dropped as above; executors that do not come back are
    killed and their tasks fail with REASON_EXECUTOR_REREGISTRATION_TIMEOUT;
  * every other process the supervisor runs (a framework that does not checkpoint, or
    one this agent never recorded) is killed: nothing it started survives unrecorded.

Recovery ends (commands.RecoveryComplete: connect to the master) once no recovered
executor is left to wait for; as in Mesos, the agent registers only then, so its
re-registration already reports the outcome.

After a reboot (the host's boot id changed) no checkpointed process can still exist:
tasks are gone (or dropped, if never started) and their updates wait for the master;
the agent keeps its id where it can, as Mesos does.

An id the master no longer wants is forgotten, as Mesos removes meta/slaves/latest when
its master shuts an agent down: on ShutdownAgent the agent forgets its checkpoint before
it stops, so the next agent on the work dir registers as new; and if the master refuses
a re-registration (it closes the link with a reason before the agent is registered: the
id was marked gone), the agent destroys what is left of the old identity's containers
(the master has already told their frameworks the tasks are gone), forgets the id and
registers as a new agent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agora.core.agent import checking, launching, processes
from agora.core.agent import commands as cmd
from agora.core.agent import events as ev
from agora.core.agent.checkpoint import ForgetAgent, RecoveredRun, RecoveredTask
from agora.core.agent.launch import kill_grace_s, sandbox_path
from agora.core.agent.model import Executor, ExecutorKind, ExecutorState, Task, TimerKind
from agora.core.agent.stream import StatusStream
from agora.core.durations import stout_duration
from agora.core.task_states import Reason, Source, TaskState

if TYPE_CHECKING:
    from agora.core.agent.core import AgentCore

Processes = dict[str, ev.SupervisedProcess]
UNKNOWN_EXIT = 9  # how a vanished executor's end is reported: as killed (SIGKILL)


def on_recovered(core: AgentCore, event: ev.Recovered) -> None:
    state = event.state
    core.rebooted = event.rebooted and state.agent_id is not None
    if state.agent_id is not None:
        core.agent_id = state.agent_id
    for warning in state.warnings:
        core.emit(cmd.Log("warning", f"checkpoint recovery: {warning}"))
    for info in state.frameworks:
        if info.id is not None:
            core.frameworks[info.id] = info
    # After a reboot the supervisor's processes are not the checkpointed ones.
    known: Processes = {} if core.rebooted else {p.proc_id: p for p in event.processes}
    claimed: set[str] = set()
    for recovered in sorted(state.runs, key=lambda r: r.latest):  # current runs last
        if recovered.record.path.framework_id in core.frameworks:
            _recover_run(core, recovered, known, claimed)
        else:
            core.emit(cmd.Log("warning", f"run {recovered.record.path} has no framework info"))
    for proc in event.processes:
        if proc.proc_id not in claimed:
            _leftover(core, proc)
    waiting = [run for run in core.runs.values() if run.reregistering]
    if not waiting:
        _finish(core)
        return
    core.recovering = True
    deadline = core.now + core.config.executor_reregistration_timeout_s
    for run in waiting:
        core.arm(deadline, TimerKind.REREGISTRATION, run.container_id)


def _leftover(core: AgentCore, proc: ev.SupervisedProcess) -> None:
    """A process no checkpointed task owns: kill it (it ends in ProcessExited, which
    makes the supervisor forget it), or forget it if it already ended."""
    if proc.wait_status is not None:
        core.emit(cmd.ForgetProcess(proc.proc_id))
        return
    why = "the host rebooted since" if core.rebooted else "no checkpointed task owns it"
    core.emit(cmd.Log("info", f"killing leftover process {proc.proc_id} (pid {proc.pid}): {why}"))
    core.emit(cmd.SignalProcess(proc.proc_id, cmd.SIGKILL))


def _finish(core: AgentCore) -> None:
    core.recovering = False
    core.emit(cmd.RecoveryComplete())


# ------------------------------------------------------------------ runs and tasks


def _recover_run(
    core: AgentCore, recovered: RecoveredRun, known: Processes, claimed: set[str]
) -> None:
    record = recovered.record
    path = record.path
    directory = sandbox_path(
        core.config.work_dir,
        core.agent_id or "",
        path.framework_id,
        path.executor_id,
        path.container_id,
    )
    run = Executor(
        path.framework_id,
        path.executor_id,
        record.kind,
        path.container_id,
        directory,
        record.raw,
        record.resources,
        state=ExecutorState.RUNNING,
        recovered=True,
    )
    if recovered.latest or run.key not in core.executors:
        core.executors[run.key] = run
    core.runs[run.container_id] = run
    for recovered_task in recovered.tasks:
        stream = recovered_task.stream()
        if not stream.closed:  # a closed stream: the task is over and acknowledged
            _recover_task(core, run, recovered_task, stream)
    run.next_group = max((t.group for t in run.tasks.values()), default=0) + 1
    if run.kind is ExecutorKind.CUSTOM:
        _recover_custom_executor(core, run, known, claimed)
    else:
        _recover_builtin_tasks(core, run, known, claimed)


def _recover_task(
    core: AgentCore, run: Executor, recovered: RecoveredTask, stream: StatusStream
) -> None:
    record = recovered.record
    task = Task(
        run.framework_id,
        record.launch.task_id,
        record.launch,
        run.executor_id,
        state=recovered.state(),
        proc_id=record.proc_id,
        group=record.group,
        container_id=run.container_id,
    )
    task.delivered = task.state is not TaskState.STAGING
    task.exited = task.state.is_terminal and run.kind is not ExecutorKind.CUSTOM
    run.tasks[task.task_id] = task
    core.tasks[task.key] = task
    if stream.seen:
        core.streams[task.key] = stream


def _recover_builtin_tasks(
    core: AgentCore, run: Executor, known: Processes, claimed: set[str]
) -> None:
    """Command tasks and task groups: one supervised process per task."""
    adopted: dict[str, int] = {}
    exits: list[ev.SupervisedProcess] = []
    for task in list(run.tasks.values()):
        proc = known.get(task.proc_id) if task.proc_id is not None else None
        if proc is None:
            if not task.state.is_terminal:
                _vanished(core, task)
            task.exited = True
            continue
        claimed.add(proc.proc_id)
        core.procs[proc.proc_id] = (run.container_id, task.task_id)
        if proc.wait_status is None:
            adopted[proc.proc_id] = proc.pid
        else:
            exits.append(proc)
    if adopted:
        first = next(t for t in run.tasks.values() if t.proc_id in adopted)
        command = first.launch.raw.get("command")
        sandbox = launching.builtin_sandbox(run, first)
        config = launching.container_config(core, run, first, sandbox, command)
        core.emit(cmd.RecoverContainer(config, adopted))
    for task in run.tasks.values():
        if task.proc_id not in adopted:
            continue
        if task.state is TaskState.STARTING:
            processes.task_started(core, task)  # the agent died before it heard of the start
        elif task.state is TaskState.RUNNING:
            checking.start_checks(core, task)
        elif task.state is TaskState.KILLING:  # a kill was under way: see it through
            grace_s = kill_grace_s(task.launch.raw, None)
            processes.kill_builtin(core, task, grace_s, announce=False)
    for proc in exits:  # ended while the agent was away: as if it had seen them end
        assert proc.wait_status is not None
        processes.on_exited(core, ev.ProcessExited(proc.proc_id, proc.wait_status))
    processes.builtin_done(core, run)


def _recover_custom_executor(
    core: AgentCore, run: Executor, known: Processes, claimed: set[str]
) -> None:
    proc = known.get(run.proc_id)
    if proc is None:
        for task in run.tasks.values():
            if not task.state.is_terminal:
                _vanished(core, task)
        core.terminate(run)
        core.executor_exited(run, UNKNOWN_EXIT)
        core.retire(run)
        return
    claimed.add(proc.proc_id)
    core.procs[run.proc_id] = (run.container_id, None)
    if proc.wait_status is not None:
        processes.on_exited(core, ev.ProcessExited(proc.proc_id, proc.wait_status))
        return
    run.state = ExecutorState.LAUNCHING
    run.reregistering = True
    config = launching.container_config(core, run, None, run.directory, run.raw.get("command"))
    core.emit(cmd.RecoverContainer(config, {run.proc_id: proc.pid}))


def _vanished(core: AgentCore, task: Task) -> None:
    """A checkpointed task whose process is not there: it never started (it was queued
    when the agent stopped) or it is gone with no exit status to report."""
    never_started = task.state is TaskState.STAGING or (
        task.state is TaskState.STARTING and not core.rebooted and task.proc_id is not None
    )
    if never_started:
        drop(core, task, "The agent restarted before the task started")
        return
    why = (
        "the agent's host rebooted"
        if core.rebooted
        else "its process is unknown to the supervisor after the agent restarted"
    )
    core.update(
        task,
        _gone_state(core, task, TaskState.GONE),
        source=Source.AGENT,
        reason=Reason.EXECUTOR_TERMINATED,
        message=f"The task is gone: {why}",
    )


def drop(core: AgentCore, task: Task, message: str) -> None:
    """A task the agent had but that never started: TASK_DROPPED (TASK_LOST)."""
    core.update(
        task,
        _gone_state(core, task, TaskState.DROPPED),
        source=Source.AGENT,
        reason=Reason.AGENT_RESTARTED,
        message=message,
    )


def _gone_state(core: AgentCore, task: Task, state: TaskState) -> TaskState:
    """PARTITION_AWARE frameworks are told `state`; the others TASK_LOST (as Mesos)."""
    framework = core.frameworks.get(task.framework_id)
    return state if framework is not None and framework.partition_aware else TaskState.LOST


# ------------------------------------------------------------------ recovered executors


def executor_resubscribed(core: AgentCore, run: Executor, unacknowledged: tuple[str, ...]) -> None:
    """A recovered executor subscribed again (its unacknowledged updates already taken):
    tasks it lists or has sent updates for are its own; a task still STAGING that it
    does not list never reached it before the agent restarted."""
    run.reregistering = False
    for task in list(run.tasks.values()):
        if task.task_id in unacknowledged or task.state is not TaskState.STAGING:
            task.delivered = True
        elif not task.state.is_terminal:
            drop(core, task, "The executor never received the task before the agent restarted")
    _finish_when_done(core)


def reregistration_timeout(core: AgentCore, run: Executor | None) -> None:
    if run is not None and run.reregistering:
        run.reregistering = False
        timeout = stout_duration(core.config.executor_reregistration_timeout_s)
        processes.destroy_unsubscribed(
            core,
            run,
            Reason.EXECUTOR_REREGISTRATION_TIMEOUT,
            f"Executor did not reregister within {timeout}",
        )
    _finish_when_done(core)


def _finish_when_done(core: AgentCore) -> None:
    if core.recovering and not any(run.reregistering for run in core.runs.values()):
        _finish(core)


# ------------------------------------------------------------------ refused by the master


def on_shutdown(core: AgentCore, message: str) -> None:
    """The master shut this agent down: its id is done with (the agent stops)."""
    if core.agent_id is not None:
        core.emit(cmd.Checkpoint(ForgetAgent(core.agent_id)))
    core.emit(cmd.Stop(message))


def on_refused(core: AgentCore, message: str) -> None:
    """The master closed the link before this agent was registered again: it does not
    take the old id back. Destroy what is left of it, forget it, register as new."""
    if core.agent_id is None:
        core.emit(cmd.Log("warning", f"the master refused this agent: {message}"))
        return
    core.emit(
        cmd.Log(
            "warning",
            f"the master refused agent {core.agent_id} ({message}): destroying its "
            "containers and registering as a new agent",
        )
    )
    for run in core.runs.values():
        if not run.destroyed:
            core.emit(cmd.DestroyContainer(run.container_id))
    core.emit(cmd.Checkpoint(ForgetAgent(core.agent_id)))
    core.agent_id = None
    core.rebooted = False
    core.frameworks.clear()
    core.executors.clear()
    core.runs.clear()
    core.tasks.clear()
    core.streams.clear()
    core.procs.clear()
