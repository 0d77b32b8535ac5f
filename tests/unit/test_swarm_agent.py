"""A swarm's simulated agent (agora.testing.swarm.agent) speaks the channel: hello as
REGISTER then REREGISTER with its report, PONG for PING, tasks run and killed, and a
SHUTDOWN_AGENT keeps it away. Also the workload it reports."""

from __future__ import annotations

from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master.info import framework_info_from_json
from agora.core.resource_text import parse_resources
from agora.core.task_states import TaskState
from agora.testing.swarm import Phase, SwarmAgent, SwarmSpec
from agora.wire import agent_channel as channel

SPEC = SwarmSpec(tasks_per_agent=3, frameworks=2, labels_per_task=2)


def agent() -> SwarmAgent:
    return SwarmAgent(4, SPEC.agent_info(4), SPEC.tasks(4), SPEC.framework_infos)


def hello_event(a: SwarmAgent) -> ev.MasterEvent | None:
    return channel.master_event(a.hello(), "c1", None)


def reregistration(a: SwarmAgent) -> ev.ReregisterAgent:
    event = hello_event(a)
    assert isinstance(event, ev.ReregisterAgent)
    return event


def test_it_registers_until_it_has_an_id_then_reregisters_with_its_report():
    a = agent()
    assert isinstance(hello_event(a), ev.RegisterAgent)
    a.hello_sent()
    assert a.phase is Phase.WAITING
    assert a.take({"type": "REGISTERED", "agent_id": "A4", "master_id": "m"}) == []
    assert (a.phase, a.agent_id, a.registrations) == (Phase.REGISTERED, "A4", 1)
    again = reregistration(a)
    assert again.agent_id == "A4"
    assert [t.task_id for t in again.tasks] == [SPEC.task_id(4, i) for i in range(3)]
    assert {f.id for f in again.frameworks} == {SPEC.framework_id(0), SPEC.framework_id(1)}
    assert a.hello() is a.hello()  # encoded once


def test_it_answers_pings_and_counts_what_else_it_hears():
    a = agent()
    assert a.take({"type": "PING"}) == [channel.pong()] and a.pings == 1
    assert a.take({"type": "CHECKPOINT_RESOURCES", "total": []}) == []
    assert a.other_messages == {"CHECKPOINT_RESOURCES": 1}


def test_tasks_it_is_given_run_are_reported_and_killed():
    a = agent()
    a.agent_id = "A4"
    framework = framework_info_from_json({"user": "u", "name": "n", "id": {"value": "F9"}})
    launch = cmd.TaskLaunch("t9", "t9", "A4", parse_resources("cpus:1").allocate("*"))
    run = channel.agent_message_to_json(cmd.RunTask(framework, launch))
    (update,) = a.take(run)
    assert update["type"] == "STATUS_UPDATE" and update["framework_id"] == "F9"
    assert update["status"]["state"] == "TASK_RUNNING" and update["status"]["uuid"]
    assert a.tasks[("F9", "t9")].state is TaskState.RUNNING
    assert "t9" in {t.task_id for t in reregistration(a).tasks}
    kill = channel.agent_message_to_json(cmd.KillTask("F9", "t9"))
    (killed,) = a.take(kill)
    assert killed["status"]["state"] == "TASK_KILLED" and ("F9", "t9") not in a.tasks
    assert a.take(kill) == []  # not there any more


def test_a_refused_id_is_forgotten_with_its_tasks():
    a = agent()
    a.take({"type": "REGISTERED", "agent_id": "A4", "master_id": "m"})
    a.disconnected()
    assert (a.agent_id, len(a.tasks)) == ("A4", 3)
    a.disconnected(refused=True)
    assert (a.agent_id, len(a.tasks)) == (None, 0)
    assert isinstance(hello_event(a), ev.RegisterAgent)


def test_a_shutdown_keeps_it_away():
    a = agent()
    a.take({"type": "SHUTDOWN_AGENT", "message": "gone"})
    assert a.phase is Phase.STOPPED
    a.disconnected()
    assert a.phase is Phase.STOPPED


def test_the_workload_is_mesos_failover_benchmarks():
    spec = SwarmSpec()
    info = spec.agent_info(12)
    assert (info.hostname, info.port) == ("swarm-12", 5051)
    assert info.resources == parse_resources("cpus:20;mem:10240")
    tasks = spec.tasks(12)
    assert len(tasks) == 10
    assert {t.framework_id for t in tasks} == {spec.framework_id(i) for i in range(5)}
    assert all(t.resources == parse_resources("cpus:0.1;mem:5").allocate("*") for t in tasks)
    assert all(len(t.raw["labels"]["labels"]) == 10 for t in tasks)
    assert all(f.checkpoint for f in spec.framework_infos)
