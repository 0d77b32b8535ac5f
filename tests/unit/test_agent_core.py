"""The agent core, driven by events: status update streams, kills, executors."""

from __future__ import annotations

import itertools
from typing import Any

from agora.core.agent import commands as cmd
from agora.core.agent import events as ev
from agora.core.agent.core import AgentCore
from agora.core.agent.launch import describe_exit
from agora.core.agent.model import AgentConfig
from agora.core.agent.resources import agent_resources, detected_text, usable_mem_mb
from agora.core.agent.stream import RETRY_MAX_S, StatusStream
from agora.core.durations import stout_duration
from agora.core.master import commands as mcmd
from agora.core.master.info import AgentInfo, FrameworkInfo, TaskStatus
from agora.core.resource_text import parse_resources
from agora.core.seeded import seeded
from agora.core.task_states import Reason, Source, TaskState

FW = "fw-1"


def make_core(**config: Any) -> AgentCore:
    info = AgentInfo("host", 5051, parse_resources("cpus:4;mem:4096"))
    core = AgentCore(
        AgentConfig(work_dir="/w", info=info, ip="127.0.0.1", port=5051, **config), seeded(7)
    )
    core.handle(ev.MasterConnected(), 0.0)
    core.handle(ev.FromMaster(mcmd.AgentRegistered("A1", "M")), 0.0)
    return core


def framework(*capabilities: str) -> FrameworkInfo:
    return FrameworkInfo(user="u", name="f", id=FW, capabilities=frozenset(capabilities))


def run_task(
    core: AgentCore, task_id: str, raw: dict[str, Any], now: float = 0.0, **kw: Any
) -> list[cmd.AgentCommand]:
    info = kw.pop("fw", framework())
    launch = mcmd.TaskLaunch(task_id, task_id, "A1", parse_resources("cpus:1"), raw=raw, **kw)
    return core.handle(ev.FromMaster(mcmd.RunTask(info, launch)), now)


def updates(commands: list[cmd.AgentCommand]) -> list[TaskStatus]:
    return [c.status for c in commands if isinstance(c, cmd.SendStatusUpdate)]


def of(commands: list[cmd.AgentCommand], kind: type) -> list[Any]:
    return [c for c in commands if isinstance(c, kind)]


def ack(core: AgentCore, status: TaskStatus, now: float = 0.0) -> list[cmd.AgentCommand]:
    assert status.uuid is not None
    return core.handle(ev.FromMaster(mcmd.AcknowledgeUpdate(FW, status.task_id, status.uuid)), now)


def test_command_task_launches_and_streams_updates_in_order() -> None:
    core = make_core()
    out = run_task(core, "t1", {"command": {"value": "echo hi"}})
    (launch,) = of(out, cmd.LaunchProcess)
    assert launch.argv == ("/bin/sh", "-c", "echo hi")
    assert launch.sandbox.startswith("/w/slaves/A1/frameworks/fw-1/executors/t1/runs/")
    assert launch.env["MESOS_TASK_ID"] == "t1" and launch.env["MESOS_SANDBOX"] == launch.sandbox
    (starting,) = updates(out)
    assert starting.state is TaskState.STARTING and starting.source is Source.EXECUTOR
    assert (
        starting.executor_id == "t1"
        and starting.agent_id == "A1"
        and len(starting.uuid or b"") == 16
    )
    # RUNNING and FINISHED queue behind the unacknowledged STARTING.
    assert updates(core.handle(ev.ProcessLaunched(launch.proc_id, 42), 1.0)) == []
    assert updates(core.handle(ev.ProcessExited(launch.proc_id, 0), 2.0)) == []
    (running,) = updates(ack(core, starting))
    assert running.state is TaskState.RUNNING
    (finished,) = updates(ack(core, running))
    assert (
        finished.state is TaskState.FINISHED and finished.message == "Command exited with status 0"
    )
    assert ("fw-1", "t1") in core.tasks
    ack(core, finished)
    assert ("fw-1", "t1") not in core.tasks and not core.runs  # completed, resources freed
    assert core.completed_executors[0].completed_tasks[0].task_id == "t1"


def test_latest_state_runs_ahead_of_the_head() -> None:
    core = make_core()
    out = run_task(core, "t1", {"command": {"value": "x"}})
    proc = of(out, cmd.LaunchProcess)[0].proc_id
    core.handle(ev.ProcessLaunched(proc, 1), 0.0)
    core.handle(ev.ProcessExited(proc, 3 << 8), 0.0)
    sent = of(core.handle(ev.MasterConnected(), 1.0), cmd.Register)
    assert sent[0].tasks[0].state is TaskState.FAILED
    assert sent[0].tasks[0].status_update_state is TaskState.STARTING


def test_an_end_queued_behind_updates_is_reported_at_once() -> None:
    core = make_core()
    out = run_task(core, "t1", {"command": {"value": "/bin/true"}})
    (launch,) = of(out, cmd.LaunchProcess)
    assert launch.argv == ("/bin/true",)  # a plain absolute command skips the shell
    assert of(core.handle(ev.ProcessLaunched(launch.proc_id, 42), 1.0), cmd.SendTaskEnded) == []
    out = core.handle(ev.ProcessExited(launch.proc_id, 0), 2.0)
    assert updates(out) == []  # FINISHED still waits behind STARTING and RUNNING
    (ended,) = of(out, cmd.SendTaskEnded)
    assert (ended.framework_id, ended.task_id, ended.state) == (FW, "t1", TaskState.FINISHED)


def test_an_end_that_is_sent_at_once_needs_no_separate_report() -> None:
    core = make_core()
    out = run_task(core, "t1", {"command": {"value": "x"}})
    (launch,) = of(out, cmd.LaunchProcess)
    (starting,) = updates(out)
    core.handle(ev.ProcessLaunched(launch.proc_id, 42), 1.0)
    (running,) = updates(ack(core, starting))
    ack(core, running)
    out = core.handle(ev.ProcessExited(launch.proc_id, 0), 2.0)
    assert of(out, cmd.SendTaskEnded) == []
    (finished,) = updates(out)
    assert finished.state is TaskState.FINISHED


def test_retry_doubles_up_to_ten_minutes_and_unexpected_acks_are_ignored() -> None:
    core = make_core()
    (starting,) = updates(run_task(core, "t1", {"command": {"value": "x"}}))
    assert core.next_deadline() == 10.0
    assert updates(core.handle(ev.Tick(), 9.9)) == []
    times = []
    now = 10.0
    for _ in range(8):
        resent = updates(core.handle(ev.Tick(), now))
        assert [s.uuid for s in resent] == [starting.uuid]
        times.append(now)
        deadline = core.next_deadline()
        assert deadline is not None
        now = deadline
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[:3] == [20.0, 40.0, 80.0] and max(gaps) == RETRY_MAX_S
    assert updates(ack(core, TaskStatus("t1", TaskState.STARTING, uuid=b"x" * 16))) == []
    assert core.streams[(FW, "t1")].head == starting


def test_disconnect_pauses_and_reregistration_resends_heads() -> None:
    core = make_core()
    (starting,) = updates(run_task(core, "t1", {"command": {"value": "x"}}))
    core.handle(ev.MasterDisconnected(), 1.0)
    assert updates(core.handle(ev.Tick(), 30.0)) == []
    register = of(core.handle(ev.MasterConnected(), 31.0), cmd.Register)[0]
    assert register.agent_id == "A1" and register.tasks[0].task_id == "t1"
    assert register.tasks[0].status_update_uuid == starting.uuid
    out = core.handle(ev.FromMaster(mcmd.AgentReregistered("A1", "M")), 32.0)
    assert [s.uuid for s in updates(out)] == [starting.uuid]


def test_stream_drops_duplicate_uuids_and_closes_on_terminal_ack() -> None:
    stream = StatusStream(FW, "t")
    first = TaskStatus("t", TaskState.RUNNING, uuid=b"1" * 16)
    last = TaskStatus("t", TaskState.FINISHED, uuid=b"2" * 16)
    assert stream.push(first, 0.0, True) == first
    assert stream.push(first, 0.0, True) is None
    assert stream.push(last, 0.0, True) is None
    assert stream.acknowledge(b"2" * 16, 0.0, True) == (False, None)
    assert stream.acknowledge(b"1" * 16, 1.0, True) == (True, last)
    assert stream.acknowledge(b"2" * 16, 2.0, True) == (True, None)
    assert stream.closed


def test_kill_sends_sigterm_then_sigkill_after_the_grace_period() -> None:
    core = make_core()
    raw = {"command": {"value": "sleep 9"}, "kill_policy": {"grace_period": {"nanoseconds": 2e9}}}
    out = run_task(core, "t1", raw, fw=framework("TASK_KILLING_STATE"))
    proc = of(out, cmd.LaunchProcess)[0].proc_id
    out = core.handle(ev.FromMaster(mcmd.KillTask(FW, "t1")), 5.0)
    assert of(out, cmd.SignalProcess) == [cmd.SignalProcess(proc, cmd.SIGTERM)]
    assert core.tasks[(FW, "t1")].state is TaskState.KILLING
    assert of(core.handle(ev.Tick(), 6.9), cmd.SignalProcess) == []
    assert of(core.handle(ev.Tick(), 7.0), cmd.SignalProcess) == [
        cmd.SignalProcess(proc, cmd.SIGKILL)
    ]
    core.handle(ev.ProcessExited(proc, 9), 7.1)
    assert core.tasks[(FW, "t1")].state is TaskState.KILLED
    assert core.streams[(FW, "t1")].pending[-1].message == "Command terminated with signal SIGKILL"


def test_kill_override_and_no_killing_state_without_the_capability() -> None:
    core = make_core()
    run_task(core, "t1", {"command": {"value": "sleep 9"}})
    core.handle(ev.FromMaster(mcmd.KillTask(FW, "t1", {"grace_period": {"nanoseconds": 0}})), 1.0)
    assert core.tasks[(FW, "t1")].state is TaskState.STARTING  # no TASK_KILLING
    assert core.next_deadline() == 1.0


def test_default_grace_is_three_seconds() -> None:
    core = make_core()
    run_task(core, "t1", {"command": {"value": "sleep 9"}})
    core.handle(ev.FromMaster(mcmd.KillTask(FW, "t1")), 100.0)
    assert core.tasks[(FW, "t1")].kill_deadline == 103.0


def test_unlaunchable_command_fails_the_task() -> None:
    core = make_core()
    out = run_task(core, "t1", {"command": {"shell": False, "value": "/nope", "arguments": ["x"]}})
    proc = of(out, cmd.LaunchProcess)[0]
    assert proc.argv == ("x",) and proc.executable == "/nope"
    core.handle(ev.ProcessLaunchFailed(proc.proc_id, "/nope: No such file or directory"), 0.0)
    failed = core.streams[(FW, "t1")].pending[-1]
    assert failed.state is TaskState.FAILED and "/nope" in (failed.message or "")
    out = run_task(core, "t2", {"command": {"shell": False}})
    assert not of(out, cmd.LaunchProcess)
    assert updates(out)[0].state is TaskState.FAILED


def custom(core: AgentCore, task_id: str = "t1", now: float = 0.0) -> list[cmd.AgentCommand]:
    spec = mcmd.ExecutorSpec(
        "ex", FW, parse_resources("cpus:0.1"), {"command": {"value": "run-ex"}}
    )
    return run_task(core, task_id, {"task_id": {"value": task_id}}, now, executor=spec)


def test_custom_executor_environment_and_registration_timeout() -> None:
    core = make_core(executor_registration_timeout_s=5.0)
    out = custom(core)
    (launch,) = of(out, cmd.LaunchProcess)
    env = launch.env
    assert env["MESOS_EXECUTOR_ID"] == "ex" and env["MESOS_FRAMEWORK_ID"] == FW
    assert env["MESOS_AGENT_ENDPOINT"] == "127.0.0.1:5051"
    assert env["MESOS_SLAVE_PID"] == "slave(1)@127.0.0.1:5051"
    assert env["MESOS_CHECKPOINT"] == "0" and env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"] == "5secs"
    assert "MESOS_RECOVERY_TIMEOUT" not in env
    assert of(custom(core, "t2"), cmd.LaunchProcess) == []  # one executor per id
    out = core.handle(ev.Tick(), 5.0)
    assert of(out, cmd.SignalProcess) == [cmd.SignalProcess(launch.proc_id, cmd.SIGKILL)]
    failed = updates(out)
    assert failed[0].reason is Reason.EXECUTOR_REGISTRATION_TIMEOUT
    assert core.tasks[(FW, "t2")].state is TaskState.FAILED
    out = core.handle(ev.ProcessExited(launch.proc_id, 9), 5.1)
    assert of(out, cmd.SendExecutorExited) == [cmd.SendExecutorExited(FW, "ex", 9)]


def test_subscribe_delivers_queued_tasks_and_acknowledges_updates() -> None:
    core = make_core()
    custom(core)
    out = core.handle(ev.ExecutorSubscribe("r1", FW, "ex"), 1.0)
    events = [c.event for c in of(out, cmd.ToExecutor)]
    assert [e["type"] for e in events] == ["SUBSCRIBED", "LAUNCH"]
    assert events[0]["subscribed"]["executor_info"]["executor_id"] == {"value": "ex"}
    assert events[0]["subscribed"]["framework_info"]["id"] == {"value": FW}
    bad = core.handle(
        ev.ExecutorUpdate("r2", FW, "ex", TaskStatus("t1", TaskState.STAGING, uuid=b"u" * 16)), 2.0
    )
    assert of(bad, cmd.Reply)[0].status == 400
    out = core.handle(
        ev.ExecutorUpdate("r3", FW, "ex", TaskStatus("t1", TaskState.RUNNING, uuid=b"u" * 16)), 2.0
    )
    assert of(out, cmd.Reply)[0].status == 202
    assert updates(out)[0].source is Source.EXECUTOR
    assert [c.event["type"] for c in of(out, cmd.ToExecutor)] == ["ACKNOWLEDGED"]
    unknown = core.handle(ev.ExecutorMessage("r4", FW, "nope", b""), 3.0)
    assert of(unknown, cmd.Reply)[0].status == 400


def test_executor_exit_fails_its_tasks() -> None:
    core = make_core()
    proc = of(custom(core), cmd.LaunchProcess)[0].proc_id
    core.handle(ev.ExecutorSubscribe("r1", FW, "ex"), 1.0)
    core.handle(ev.ProcessExited(proc, 1 << 8), 2.0)
    failed = core.streams[(FW, "t1")].pending[-1]
    assert failed.state is TaskState.FAILED and failed.reason is Reason.EXECUTOR_TERMINATED


def test_helpers() -> None:
    assert describe_exit(3 << 8) == "Command exited with status 3"
    assert describe_exit(15) == "Command terminated with signal SIGTERM"
    texts = [stout_duration(s) for s in (5.0, 900.0, 0.25, 2.0, 1209600.0, 1.5, 3e-9)]
    assert texts == ["5secs", "15mins", "250ms", "2secs", "2weeks", "1.5secs", "3ns"]
    assert usable_mem_mb(8192) == 7168 and usable_mem_mb(1024) == 512
    resources = agent_resources(detected_text(2, 8192, 100 * 1024), "cpus:8;gpus:1")
    assert str(resources) == "cpus:8;gpus:1;mem:7168;disk:97280;ports:[31000-32000]"
