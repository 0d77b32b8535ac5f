"""The agent core's checkpointing and recovery: which records it emits, and what a core
recovered from them (and from the supervisor's process list) does next."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agora.core.agent import commands as cmd
from agora.core.agent import events as ev
from agora.core.agent.checkpoint import (
    AckRecord,
    AgentRecord,
    ForgetAgent,
    FrameworkRecord,
    RunCompleted,
    RunRecord,
    TaskRecord,
    UpdateRecord,
)
from agora.core.agent.model import ExecutorKind
from agora.core.master import commands as mcmd
from agora.core.master.info import TaskStatus
from agora.core.task_states import Reason, Source, TaskState
from tests.unit.agent_kit import (
    FW,
    CheckpointedAgent,
    agent_id,
    exited,
    framework,
    of,
    records,
    recovering,
    running,
    updates,
)

SLEEP = {"command": {"value": "sleep 100"}}


def launched(agent: CheckpointedAgent, task_id: str, **kw: Any) -> tuple[str, TaskStatus]:
    """A command task whose process started: (its proc id, its STARTING update)."""
    out = agent.run_task(task_id, SLEEP, **kw)
    (launch,) = of(out, cmd.LaunchProcess)
    agent.handle(ev.ProcessLaunched(launch.proc_id, 4242))
    return launch.proc_id, updates(out)[0]


# ------------------------------------------------------------------ what is checkpointed


def test_records_come_before_what_depends_on_them(tmp_path: Path) -> None:
    agent = CheckpointedAgent(tmp_path)
    out = agent.start()
    assert records(out) == [AgentRecord("A1", agent.config.info)]
    out = agent.run_task("t1", SLEEP)
    kinds = [type(c.record) if isinstance(c, cmd.Checkpoint) else type(c) for c in out]
    assert kinds.index(FrameworkRecord) < kinds.index(RunRecord) < kinds.index(TaskRecord)
    assert kinds.index(UpdateRecord) < kinds.index(cmd.SendStatusUpdate)
    assert kinds.index(TaskRecord) < kinds.index(cmd.LaunchProcess)
    (run,) = [r for r in records(out) if isinstance(r, RunRecord)]
    assert run.kind is ExecutorKind.COMMAND and run.path.executor_id == "t1"
    (launch,) = of(out, cmd.LaunchProcess)
    assert launch.container is not None and launch.container.checkpoint
    (starting,) = updates(out)
    out = agent.ack(starting)
    assert records(out) == [AckRecord(run.path, "t1", starting.uuid or b"")]
    out = agent.handle(ev.ProcessLaunched(launch.proc_id, 1))
    out += agent.handle(ev.ProcessExited(launch.proc_id, 0))
    assert [r.status.state for r in records(out)] == [TaskState.RUNNING, TaskState.FINISHED]
    assert records(agent.ack(starting)) == []  # a stale acknowledgement is not logged


def test_a_framework_that_does_not_checkpoint_leaves_nothing(tmp_path: Path) -> None:
    agent = CheckpointedAgent(tmp_path)
    agent.start()
    out = agent.run_task("t1", SLEEP, fw=framework(checkpoint=False))
    assert records(out) == []
    (launch,) = of(out, cmd.LaunchProcess)
    assert launch.container is not None and not launch.container.checkpoint
    assert not (tmp_path / "meta" / "slaves" / "A1" / "frameworks").exists()


def test_a_finished_and_acknowledged_run_is_removed(tmp_path: Path) -> None:
    agent = CheckpointedAgent(tmp_path)
    agent.start()
    proc, starting = launched(agent, "t1")
    agent.handle(ev.ProcessExited(proc, 0))
    status = starting
    for _ in range(3):  # STARTING, RUNNING, FINISHED
        out = agent.ack(status)
        status = updates(out)[0] if updates(out) else status
    completed = [r for r in records(out) if isinstance(r, RunCompleted)]
    assert completed and completed[0].path.executor_id == "t1"
    executors = tmp_path / "meta" / "slaves" / "A1" / "frameworks" / FW / "executors"
    assert not (executors / "t1").exists()
    assert agent.restart() == [cmd.RecoveryComplete()]


# ------------------------------------------------------------------ recovering built-in tasks


def test_a_running_task_is_adopted_untouched_and_reported_on_reregistration(
    tmp_path: Path,
) -> None:
    agent = CheckpointedAgent(tmp_path)
    agent.start()
    proc, starting = launched(agent, "t1")
    agent.ack(starting)  # RUNNING is in flight, unacknowledged
    out = agent.restart((running(proc, 77),))
    (adopt,) = of(out, cmd.RecoverContainer)
    assert adopt.pids == {proc: 77} and adopt.config.task_id == "t1"
    assert of(out, cmd.LaunchProcess) == of(out, cmd.SignalProcess) == []
    assert updates(out) == [] and out[-1] == cmd.RecoveryComplete()
    assert agent.core.agent_id == "A1"
    (register,) = of(agent.handle(ev.MasterConnected(), 101.0), cmd.Register)
    assert register.agent_id == "A1" and register.frameworks[0].id == FW
    (task,) = register.tasks
    assert task.state is TaskState.RUNNING and task.status_update_state is TaskState.RUNNING
    resent = updates(agent.handle(ev.FromMaster(mcmd.AgentReregistered("A1", "M2")), 101.0))
    assert [s.state for s in resent] == [TaskState.RUNNING]
    assert resent[0].uuid == task.status_update_uuid  # the same update, sent again
    # A kill still reaches the adopted process.
    out = agent.handle(ev.FromMaster(mcmd.KillTask(FW, "t1")), 102.0)
    assert of(out, cmd.SignalProcess) == [cmd.SignalProcess(proc, cmd.SIGTERM)]


def test_a_start_the_agent_did_not_hear_of_is_reported(tmp_path: Path) -> None:
    agent = CheckpointedAgent(tmp_path)
    agent.start()
    (launch,) = of(agent.run_task("t1", SLEEP), cmd.LaunchProcess)  # died before "launched"
    agent.restart((running(launch.proc_id),))
    stream = agent.core.streams[(FW, "t1")]
    assert [s.state for s in stream.pending] == [TaskState.STARTING, TaskState.RUNNING]


def test_a_kill_under_way_is_seen_through(tmp_path: Path) -> None:
    agent = CheckpointedAgent(tmp_path)
    agent.start()
    proc, _ = launched(agent, "t1", fw=framework("TASK_KILLING_STATE"))
    agent.handle(ev.FromMaster(mcmd.KillTask(FW, "t1")))
    out = agent.restart((running(proc),))
    assert of(out, cmd.SignalProcess) == [cmd.SignalProcess(proc, cmd.SIGTERM)]
    assert updates(out) == [] and [s.state for s in agent.core.streams[(FW, "t1")].pending] == [
        TaskState.STARTING,
        TaskState.RUNNING,
        TaskState.KILLING,
    ]
    out = agent.handle(ev.Tick(), 103.0)  # the built-in 3 s grace
    assert of(out, cmd.SignalProcess) == [cmd.SignalProcess(proc, cmd.SIGKILL)]


def test_exits_while_the_agent_was_away_are_reported_as_they_ended(tmp_path: Path) -> None:
    agent = CheckpointedAgent(tmp_path)
    agent.start()
    ok, _ = launched(agent, "ok")
    bad, _ = launched(agent, "bad")
    out = agent.restart((exited(ok, 0), exited(bad, 3 << 8)))
    for task_id, state, message in (
        ("ok", TaskState.FINISHED, "Command exited with status 0"),
        ("bad", TaskState.FAILED, "Command exited with status 3"),
    ):
        final = agent.core.streams[(FW, task_id)].pending[-1]
        assert (final.state, final.message, final.source) == (state, message, Source.EXECUTOR)
        assert agent.core.tasks[(FW, task_id)].state is state
    assert {c.proc_id for c in of(out, cmd.ForgetProcess)} == {ok, bad}
    assert len(of(out, cmd.DestroyContainer)) == 2 and not of(out, cmd.RecoverContainer)


def test_a_task_that_never_started_is_dropped(tmp_path: Path) -> None:
    for capabilities, state in (((), TaskState.LOST), (("PARTITION_AWARE",), TaskState.DROPPED)):
        agent = CheckpointedAgent(tmp_path / state.value)
        agent.start()
        agent.run_task("t1", SLEEP, fw=framework(*capabilities))  # no process ever launched
        agent.restart()
        final = agent.core.streams[(FW, "t1")].pending[-1]
        assert (final.state, final.reason, final.source) == (
            state,
            Reason.AGENT_RESTARTED,
            Source.AGENT,
        )


def test_processes_no_checkpointed_task_owns_are_killed_or_forgotten(tmp_path: Path) -> None:
    agent = CheckpointedAgent(tmp_path)
    agent.start()
    agent.run_task("plain", SLEEP, fw=framework(checkpoint=False))
    out = agent.restart((running("plain-proc", 5), exited("done-proc", 0)))
    assert of(out, cmd.SignalProcess) == [cmd.SignalProcess("plain-proc", cmd.SIGKILL)]
    assert of(out, cmd.ForgetProcess) == [cmd.ForgetProcess("done-proc")]
    assert not agent.core.tasks and not agent.core.runs
    out = agent.handle(ev.ProcessExited("plain-proc", 9))  # it died: forget it, report nothing
    assert of(out, cmd.ForgetProcess) == [cmd.ForgetProcess("plain-proc")] and not updates(out)


def test_after_a_reboot_tasks_are_gone_and_leftover_processes_killed(tmp_path: Path) -> None:
    agent = CheckpointedAgent(tmp_path)
    agent.start()
    proc, starting = launched(agent, "t1", fw=framework("PARTITION_AWARE"))
    out = agent.restart((running(proc),), rebooted=True)
    assert of(out, cmd.SignalProcess) == [cmd.SignalProcess(proc, cmd.SIGKILL)]
    assert not of(out, cmd.RecoverContainer)
    final = agent.core.streams[(FW, "t1")].pending[-1]
    assert (final.state, final.reason) == (TaskState.GONE, Reason.EXECUTOR_TERMINATED)
    assert "rebooted" in (final.message or "")
    assert agent.core.agent_id == "A1" and agent.core.rebooted
    # The pending updates go out in order once the master takes the agent back.
    agent.handle(ev.MasterConnected(), 101.0)
    resent = updates(agent.handle(ev.FromMaster(mcmd.AgentReregistered("A1", "M")), 101.0))
    assert [s.uuid for s in resent] == [starting.uuid]


def test_a_master_refusing_a_rebooted_agent_makes_it_start_over(tmp_path: Path) -> None:
    agent = CheckpointedAgent(tmp_path)
    agent.start()
    launched(agent, "t1")
    agent.restart(rebooted=True)
    agent.handle(ev.MasterConnected(), 101.0)
    out = agent.handle(ev.MasterDisconnected("Agent has been marked gone"), 101.0)
    assert records(out) == [ForgetAgent("A1")]
    assert agent.core.agent_id is None and not agent.core.tasks and not agent.core.frameworks
    (register,) = of(agent.handle(ev.MasterConnected(), 102.0), cmd.Register)
    assert register.agent_id is None
    out = agent.handle(ev.FromMaster(mcmd.AgentRegistered("A2", "M")), 102.0)
    assert records(out) == [AgentRecord("A2", agent.config.info)]
    assert agent.restart().count(cmd.RecoveryComplete()) == 1
    assert agent_id(agent) == "A2" and not agent.core.tasks


def test_a_refused_id_is_forgotten_and_what_it_ran_destroyed(tmp_path: Path) -> None:
    agent = CheckpointedAgent(tmp_path)
    agent.start()
    proc, _ = launched(agent, "t1")
    agent.restart((running(proc),))
    run = next(iter(agent.core.runs))
    agent.handle(ev.MasterConnected(), 101.0)
    out = agent.handle(ev.MasterDisconnected("Agent has been marked gone"), 101.0)
    assert of(out, cmd.DestroyContainer) == [cmd.DestroyContainer(run)]
    assert records(out) == [ForgetAgent("A1")] and agent_id(agent) is None
    out = agent.handle(ev.ProcessExited(proc, 9), 101.5)  # the destroyed process ends
    assert of(out, cmd.ForgetProcess) and not updates(out)


def test_a_refusal_of_a_registered_agent_or_of_a_new_one_forgets_nothing(
    tmp_path: Path,
) -> None:
    agent = CheckpointedAgent(tmp_path)
    agent.start()
    out = agent.handle(ev.MasterDisconnected("agent marked unreachable"), 1.0)
    assert records(out) == [] and agent_id(agent) == "A1"  # it was registered
    fresh = CheckpointedAgent(tmp_path / "fresh")
    fresh.restart()
    fresh.handle(ev.MasterConnected())
    assert records(fresh.handle(ev.MasterDisconnected("no"))) == []


def test_an_agent_the_master_shuts_down_forgets_its_id(tmp_path: Path) -> None:
    agent = CheckpointedAgent(tmp_path)
    agent.start()
    launched(agent, "t1")
    out = agent.handle(ev.FromMaster(mcmd.ShutdownAgent("marked gone")), 1.0)
    assert records(out) == [ForgetAgent("A1")]
    assert out[-1] == cmd.Stop("marked gone")
    assert agent.restart() == [cmd.RecoveryComplete()]  # the next agent starts afresh
    assert agent_id(agent) is None


# ------------------------------------------------------------------ recovering custom executors


def subscribed(agent: CheckpointedAgent, task_id: str = "t1") -> str:
    """A custom executor, subscribed, running `task_id`: returns its proc id."""
    (launch,) = of(agent.custom(task_id), cmd.LaunchProcess)
    agent.handle(ev.ExecutorSubscribe("r1", FW, "ex"))
    running_update = TaskStatus(task_id, TaskState.RUNNING, uuid=b"r" * 16)
    agent.handle(ev.ExecutorUpdate("r2", FW, "ex", running_update))
    proc_id: str = launch.proc_id
    return proc_id


def test_a_recovered_executor_resubscribes_and_tasks_it_never_got_are_dropped(
    tmp_path: Path,
) -> None:
    agent = CheckpointedAgent(tmp_path)
    agent.start()
    proc = subscribed(agent)
    agent.custom("given")  # delivered: LAUNCH sent, no update yet
    agent.handle(ev.ExecutorStreamClosed(FW, "ex"))
    agent.custom("queued")  # not delivered: the executor is not subscribed
    out = agent.restart((running(proc, 99),))
    assert of(out, cmd.RecoverContainer)[0].pids == {proc: 99}
    assert cmd.RecoveryComplete() not in out and agent.core.recovering
    assert agent.core.next_deadline() == 102.0  # executor_reregistration_timeout: 2 s
    out = agent.handle(ev.ExecutorSubscribe("r9", FW, "ex", unacknowledged_tasks=("given",)), 100.5)
    events = [c.event["type"] for c in of(out, cmd.ToExecutor)]
    assert events == ["SUBSCRIBED"]  # nothing is launched again
    assert out[-1] == cmd.RecoveryComplete() and not recovering(agent)
    queued = agent.core.streams[(FW, "queued")].pending[-1]
    assert (queued.state, queued.reason) == (TaskState.LOST, Reason.AGENT_RESTARTED)
    assert agent.core.tasks[(FW, "given")].delivered
    assert agent.core.tasks[(FW, "t1")].state is TaskState.RUNNING
    assert not of(agent.handle(ev.Tick(), 102.0), cmd.SignalProcess)


def test_a_recovered_executor_that_does_not_come_back_is_destroyed(tmp_path: Path) -> None:
    agent = CheckpointedAgent(tmp_path)
    agent.start()
    proc = subscribed(agent)
    agent.restart((running(proc),), executor_reregistration_timeout_s=5.0)
    assert agent.core.next_deadline() == 105.0
    out = agent.handle(ev.Tick(), 105.0)
    assert of(out, cmd.SignalProcess) == [cmd.SignalProcess(proc, cmd.SIGKILL)]
    assert out[-1] == cmd.RecoveryComplete()
    failed = agent.core.streams[(FW, "t1")].pending[-1]
    assert (failed.state, failed.reason, failed.source) == (
        TaskState.FAILED,
        Reason.EXECUTOR_REREGISTRATION_TIMEOUT,
        Source.AGENT,
    )
    assert failed.message == "Executor did not reregister within 5secs"
    late = agent.handle(ev.ExecutorSubscribe("r5", FW, "ex"), 106.0)
    assert [c.event["type"] for c in of(late, cmd.ToExecutor)] == ["SUBSCRIBED", "SHUTDOWN"]
    out = agent.handle(ev.ProcessExited(proc, 9), 106.0)
    assert of(out, cmd.DestroyContainer) and not updates(out)


def test_an_executor_that_exited_while_the_agent_was_away_fails_its_tasks(
    tmp_path: Path,
) -> None:
    agent = CheckpointedAgent(tmp_path)
    agent.start()
    proc = subscribed(agent)
    out = agent.restart((exited(proc, 1 << 8),))
    assert out[-1] == cmd.RecoveryComplete()
    failed = agent.core.streams[(FW, "t1")].pending[-1]
    assert (failed.state, failed.reason) == (TaskState.FAILED, Reason.EXECUTOR_TERMINATED)
    # The master hears of the exit (and frees the executor) once the agent is registered.
    assert not of(out, cmd.SendExecutorExited)
    out = agent.register()
    assert of(out, cmd.SendExecutorExited) == [cmd.SendExecutorExited(FW, "ex", 1 << 8)]
    assert not of(agent.register(), cmd.SendExecutorExited)  # told once


def test_an_unacknowledged_executor_update_is_not_taken_twice(tmp_path: Path) -> None:
    agent = CheckpointedAgent(tmp_path)
    agent.start()
    proc = subscribed(agent)
    agent.restart((running(proc),))
    again = TaskStatus("t1", TaskState.RUNNING, uuid=b"r" * 16)  # its ack was lost
    out = agent.handle(ev.ExecutorSubscribe("r3", FW, "ex", (again,), ("t1",)), 100.5)
    acks = [c.event for c in of(out, cmd.ToExecutor) if c.event["type"] == "ACKNOWLEDGED"]
    assert len(acks) == 1 and not records(out)
    assert len(agent.core.streams[(FW, "t1")].pending) == 1


def test_an_agent_with_no_checkpoint_registers_as_new(tmp_path: Path) -> None:
    agent = CheckpointedAgent(tmp_path)
    assert agent.restart((running("stray"),)) == [
        cmd.Log("info", "killing leftover process stray (pid 4242): no checkpointed task owns it"),
        cmd.SignalProcess("stray", cmd.SIGKILL),
        cmd.RecoveryComplete(),
    ]
    (register,) = of(agent.handle(ev.MasterConnected()), cmd.Register)
    assert register.agent_id is None
