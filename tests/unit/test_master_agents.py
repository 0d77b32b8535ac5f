"""Agents on the master core: registration, pings, unreachability and return,
disconnection and re-registration (Mesos internals §4.3, §4.4)."""

from __future__ import annotations

import pytest

from agora.core.allocator.state import AGENT_CAPABILITIES
from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master import registry as reg
from agora.core.master.info import AgentInfo
from agora.core.master.model import MasterOptions
from agora.core.task_states import Reason, Source, TaskState
from tests.unit.master_kit import (
    AGENT_RESOURCES,
    MASTER_ID,
    Driver,
    Out,
    launch,
    res,
    task_info,
)

FAST_PINGS = MasterOptions(agent_ping_timeout_s=2.0, max_agent_ping_timeouts=3)


def _with_task(
    partition_aware: bool = False,
    checkpoint: bool = False,
    options: MasterOptions | None = None,
    task_ids: tuple[str, ...] = ("t1",),
):
    d = Driver(options)
    agent_id, connection = d.register_agent()
    caps = ["PARTITION_AWARE"] if partition_aware else []
    fw = d.subscribe(caps=caps, checkpoint=checkpoint)
    offer = d.offer(fw)
    tasks = [task_info(t, agent_id, cpus=1, mem=128) for t in task_ids]
    d.accept(fw, offer, launch(*tasks), refuse_seconds=0)
    for task_id in task_ids:
        d.status(fw, agent_id, task_id, TaskState.RUNNING)
    return d, agent_id, connection, fw


def _agent_task(fw, task_id: str, state: TaskState = TaskState.RUNNING, **kw) -> ev.AgentTask:
    return ev.AgentTask(
        framework_id=fw.id,
        task_id=task_id,
        name=task_id,
        state=state,
        resources=res("cpus:1;mem:128").allocate("*"),
        **kw,
    )


def _reregister(d: Driver, agent_id: str, *tasks: ev.AgentTask, hostname: str = "h1"):
    connection = d.new_connection()
    out = d.do(
        ev.ReregisterAgent(
            connection_id=connection,
            agent_id=agent_id,
            info=AgentInfo(hostname=hostname, resources=res(AGENT_RESOURCES)),
            capabilities=AGENT_CAPABILITIES,
            tasks=tasks,
        )
    )
    d.ponging[agent_id] = connection
    return connection, out


def _go_silent(d: Driver, agent_id: str) -> float:
    """Stop answering pings; return when the agent is marked unreachable."""
    del d.ponging[agent_id]
    options = d.core.options
    limit = options.agent_ping_timeout_s * (options.max_agent_ping_timeouts + 1)
    start = d.now
    while agent_id in d.core.agents and d.now - start < limit + 1:
        d.advance(0.25)
    assert agent_id in d.core.unreachable_agents
    return d.core.unreachable_agents[agent_id].since


# --------------------------------------------------------------- registration


def test_registration_accepts_the_agent_and_starts_pinging():
    d = Driver()
    out = d.do(
        ev.RegisterAgent(
            connection_id="conn",
            info=AgentInfo(hostname="h1", resources=res("cpus:2;mem:512")),
            capabilities=AGENT_CAPABILITIES,
        )
    )
    agent_id = f"{MASTER_ID}-S0"
    assert list(out) == [
        cmd.Persist(
            reg.AdmitAgent(agent_id, AgentInfo(hostname="h1", resources=res("cpus:2;mem:512")))
        ),
        cmd.AcceptAgent("conn", agent_id),
        cmd.SendToAgent(agent_id, cmd.AgentRegistered(agent_id, MASTER_ID)),
    ]
    agent = d.core.agents[agent_id]
    assert agent.connected and agent.active and agent.connection_id == "conn"
    assert d.core.allocator.total(agent_id) == res("cpus:2;mem:512")
    assert d.tick().to_agent(agent_id, cmd.Ping) == []  # registering shows it alive
    pings = d.advance(d.core.options.agent_ping_timeout_s).to_agent(agent_id, cmd.Ping)
    assert pings == [cmd.Ping()]


def test_agents_get_distinct_ids():
    d = Driver()
    ids = [d.register_agent(f"h{i}")[0] for i in range(3)]
    assert ids == [f"{MASTER_ID}-S0", f"{MASTER_ID}-S1", f"{MASTER_ID}-S2"]


def test_repeated_registration_on_the_same_connection_is_answered_again():
    d = Driver()
    agent_id, connection = d.register_agent()
    out = d.do(
        ev.RegisterAgent(
            connection_id=connection,
            info=AgentInfo(hostname="h1", resources=res(AGENT_RESOURCES)),
            capabilities=AGENT_CAPABILITIES,
        )
    )
    assert list(out) == [cmd.SendToAgent(agent_id, cmd.AgentRegistered(agent_id, MASTER_ID))]
    assert list(d.core.agents) == [agent_id]


@pytest.mark.parametrize(
    ("partition_aware", "expected"), [(False, TaskState.LOST), (True, TaskState.GONE)]
)
def test_same_host_and_port_on_a_new_connection_replaces_the_agent(partition_aware, expected):
    d, old_id, _, fw = _with_task(partition_aware)
    offer = d.offer(fw)
    new_id, _ = d.register_agent("h1")
    assert new_id != old_id
    assert old_id not in d.core.agents and new_id in d.core.agents
    # The replacing registration's output was consumed by register_agent; replay checks.
    assert "t1" not in d.framework(fw).tasks
    (task,) = d.framework(fw).completed_tasks
    status = task.latest_status()
    assert status is not None
    assert (status.state, status.reason, status.source) == (
        expected,
        Reason.AGENT_RESTARTED,
        Source.MASTER,
    )
    assert offer.id not in d.core.offers


def test_replacing_registration_tells_the_framework():
    d, old_id, _, fw = _with_task()
    offer = d.offer(fw)
    out = d.do(
        ev.RegisterAgent(
            connection_id="fresh",
            info=AgentInfo(hostname="h1", resources=res(AGENT_RESOURCES)),
            capabilities=AGENT_CAPABILITIES,
        )
    )
    status = out.update(fw.id, "t1")
    assert (status.state, status.reason, status.agent_id) == (
        TaskState.LOST,
        Reason.AGENT_RESTARTED,
        old_id,
    )
    assert out.rescinds(fw.id) == [offer.id]
    assert cmd.Failure(agent_id=old_id) in out.events(fw.id)


def _remove_by_new_registration(d: Driver, agent_id: str) -> list[cmd.Command]:
    info = AgentInfo(hostname="h1", resources=res(AGENT_RESOURCES))
    return d.do(ev.RegisterAgent(connection_id="fresh", info=info))


def _remove_by_operator(d: Driver, agent_id: str) -> list[cmd.Command]:
    return d.do(ev.MarkAgentGone(request_id="g", agent_id=agent_id))


@pytest.mark.parametrize("remove", [_remove_by_new_registration, _remove_by_operator])
@pytest.mark.parametrize("delivered", [True, False])
def test_a_removed_agents_ended_task_is_reported_as_it_ended(remove, delivered):
    """The agent said the task FINISHED (its update delivered, or only its latest_state
    while an earlier update is still being delivered) but never got the acknowledgement
    before it was removed: the framework is told FINISHED, never a second, different
    terminal state such as TASK_GONE_BY_OPERATOR (found by the simulator, seed 68)."""
    d, agent_id, _, fw = _with_task(partition_aware=True, checkpoint=True)
    if delivered:
        d.status(fw, agent_id, "t1", TaskState.FINISHED)
    else:
        d.status(fw, agent_id, "t1", TaskState.RUNNING, latest_state=TaskState.FINISHED)
    out = Out(remove(d, agent_id))
    status = out.update(fw.id, "t1")
    assert status.state is TaskState.FINISHED and status.source is Source.MASTER
    (task,) = d.framework(fw).completed_tasks
    assert task.state is TaskState.FINISHED


def test_a_disconnected_agents_ended_task_is_not_revealed_ahead_of_its_updates():
    """A framework that does not checkpoint loses its tasks when their agent disconnects
    (TASK_LOST). One the agent reported FINISHED only as latest_state, with an earlier
    update still being delivered, is TASK_LOST too, not FINISHED: the agent may yet
    deliver its updates, in order (found by the simulator, seed 1067)."""
    d, agent_id, connection, fw = _with_task(partition_aware=True, checkpoint=False)
    d.status(fw, agent_id, "t1", TaskState.RUNNING, latest_state=TaskState.FINISHED)
    out = d.do(ev.AgentDisconnected(agent_id=agent_id, connection_id=connection))
    status = out.update(fw.id, "t1")
    assert (status.state, status.reason) == (TaskState.LOST, Reason.AGENT_DISCONNECTED)


def test_another_port_on_the_same_host_is_another_agent():
    d = Driver()
    a, _ = d.register_agent("h1", port=5051)
    b, _ = d.register_agent("h1", port=5052)
    assert a != b and set(d.core.agents) == {a, b}


# ---------------------------------------------------------------------- pings


def test_answered_pings_keep_the_agent():
    d = Driver(FAST_PINGS)
    agent_id, _ = d.register_agent()
    out = d.advance(60)
    assert len(out.to_agent(agent_id, cmd.Ping)) >= 25
    assert agent_id in d.core.agents


def test_ping_timeouts_mark_the_agent_unreachable_after_timeout_times_max():
    d = Driver(FAST_PINGS)
    agent_id, _ = d.register_agent()
    del d.ponging[agent_id]
    # The first ping goes one interval after registering, then 3 go unanswered.
    d.advance(7.9)
    assert agent_id in d.core.agents
    d.advance(0.2)
    assert agent_id not in d.core.agents
    assert d.core.unreachable_agents[agent_id].since == 8.0
    assert not d.core.allocator.has_agent(agent_id)


def test_a_late_pong_resets_the_count():
    d = Driver(FAST_PINGS)
    agent_id, connection = d.register_agent()
    del d.ponging[agent_id]
    d.advance(5)
    d.do(ev.AgentPong(agent_id=agent_id, connection_id=connection))
    d.advance(5)
    assert agent_id in d.core.agents
    d.advance(2)
    assert agent_id not in d.core.agents


def test_a_pong_from_an_old_connection_does_not_count():
    d = Driver(FAST_PINGS)
    agent_id, _ = d.register_agent()
    del d.ponging[agent_id]
    for _ in range(17):
        d.advance(0.5)
        d.do(ev.AgentPong(agent_id=agent_id, connection_id="stale"))
    assert agent_id in d.core.unreachable_agents


@pytest.mark.parametrize(
    ("partition_aware", "expected"),
    [(True, TaskState.UNREACHABLE), (False, TaskState.LOST)],
)
def test_unreachable_agent_tasks_and_offers(partition_aware, expected):
    d, agent_id, _, fw = _with_task(partition_aware, options=FAST_PINGS)
    offer = d.offer(fw)
    other = d.subscribe("other")
    del d.ponging[agent_id]
    out = d.advance(10)
    since = d.core.unreachable_agents[agent_id].since
    status = out.update(fw.id, "t1")
    assert status.state is expected
    assert status.reason is Reason.AGENT_REMOVED
    assert status.source is Source.MASTER
    assert status.uuid is None
    assert status.agent_id == agent_id
    assert status.unreachable_time == since
    assert out.rescinds(fw.id) == [offer.id]
    assert cmd.Failure(agent_id=agent_id) in out.events(fw.id)
    assert cmd.Failure(agent_id=agent_id) in out.events(other.id)
    framework = d.framework(fw)
    assert "t1" not in framework.tasks
    assert framework.unreachable_tasks["t1"].state is TaskState.UNREACHABLE


# --------------------------------------------------------- return of the agent


@pytest.mark.parametrize(
    ("partition_aware", "expected"), [(True, TaskState.DROPPED), (False, TaskState.LOST)]
)
def test_a_never_started_task_missing_from_a_returning_agent_was_dropped(partition_aware, expected):
    d = Driver(FAST_PINGS)
    agent_id, _ = d.register_agent()
    fw = d.subscribe(caps=["PARTITION_AWARE"] if partition_aware else [])
    d.accept(fw, d.offer(fw), launch(task_info("t1", agent_id, cpus=1, mem=128)))
    _go_silent(d, agent_id)  # the launch never reached the agent; no update ever came
    _, out = _reregister(d, agent_id)
    dropped = out.update(fw.id, "t1")
    assert (dropped.state, dropped.reason) == (expected, Reason.TASK_UNKNOWN)


@pytest.mark.parametrize("partition_aware", [True, False])
def test_unreachable_agent_comes_back_with_its_tasks(partition_aware):
    d, agent_id, _, fw = _with_task(partition_aware, options=FAST_PINGS, task_ids=("t1", "t2"))
    _go_silent(d, agent_id)
    _, out = _reregister(d, agent_id, _agent_task(fw, "t1", TaskState.RUNNING))
    assert out.of(cmd.AcceptAgent) == [
        cmd.AcceptAgent(out.of(cmd.AcceptAgent)[0].connection_id, agent_id)
    ]
    assert out.to_agent(agent_id, cmd.AgentReregistered) == [
        cmd.AgentReregistered(agent_id, MASTER_ID)
    ]
    back = out.update(fw.id, "t1")
    assert (back.state, back.reason, back.source) == (
        TaskState.RUNNING,
        Reason.AGENT_REREGISTERED,
        Source.MASTER,
    )
    assert back.uuid is None
    gone = out.update(fw.id, "t2")
    assert gone.state is (TaskState.GONE if partition_aware else TaskState.LOST)
    assert gone.source is Source.MASTER
    framework = d.framework(fw)
    assert framework.tasks["t1"].state is TaskState.RUNNING
    assert framework.tasks["t1"].unreachable_time is None
    assert "t2" not in framework.tasks and "t2" not in framework.unreachable_tasks
    assert agent_id in d.core.agents and agent_id not in d.core.unreachable_agents
    # t1 still holds its resources; the rest is offered again.
    offer = d.offer(fw)
    assert offer.resources.scalar("cpus") == 3000


def test_returning_agent_reports_the_current_state():
    d, agent_id, _, fw = _with_task(options=FAST_PINGS)
    _go_silent(d, agent_id)
    _, out = _reregister(d, agent_id, _agent_task(fw, "t1", TaskState.FINISHED))
    assert out.update(fw.id, "t1").state is TaskState.FINISHED
    assert d.task(fw, "t1").state is TaskState.FINISHED


def test_returning_agent_with_a_task_of_a_removed_framework_shuts_it_down():
    d, agent_id, _, fw = _with_task(options=FAST_PINGS)
    _go_silent(d, agent_id)
    d.call(ev.Teardown, fw)
    _, out = _reregister(d, agent_id, _agent_task(fw, "t1"))
    assert cmd.ShutdownFramework(fw.id) in out.to_agent(agent_id)


def test_reregistration_of_a_gone_agent_is_refused():
    d = Driver()
    d.core.gone_agents["old"] = 0.0
    connection, out = _reregister(d, "old")
    assert list(out) == [
        cmd.DropAgentConnection(connection, "Agent has been marked gone", refused=True)
    ]
    assert "old" not in d.core.agents


# -------------------------------------------------------------- disconnection


def test_disconnect_loses_tasks_of_frameworks_that_do_not_checkpoint():
    d, agent_id, connection, fw = _with_task(partition_aware=True)
    offer = d.offer(fw)
    out = d.do(ev.AgentDisconnected(agent_id=agent_id, connection_id=connection))
    status = out.update(fw.id, "t1")
    assert (status.state, status.reason, status.source) == (
        TaskState.LOST,
        Reason.AGENT_DISCONNECTED,
        Source.MASTER,
    )
    assert out.rescinds(fw.id) == [offer.id]
    assert "t1" not in d.framework(fw).tasks
    agent = d.core.agents[agent_id]
    assert not agent.connected
    assert agent.tasks == {}


def test_disconnect_keeps_tasks_of_checkpointing_frameworks():
    d, agent_id, connection, fw = _with_task(checkpoint=True)
    out = d.do(ev.AgentDisconnected(agent_id=agent_id, connection_id=connection))
    assert out.updates(fw.id) == []
    assert d.task(fw, "t1").state is TaskState.RUNNING
    # No offers from a disconnected agent.
    assert d.advance(3).offers(fw.id) == []


def test_disconnect_of_an_old_connection_is_ignored():
    d, agent_id, _, _fw = _with_task(checkpoint=True)
    out = d.do(ev.AgentDisconnected(agent_id=agent_id, connection_id="stale"))
    assert list(out) == []
    assert d.core.agents[agent_id].connected


def test_reregister_timeout_marks_a_disconnected_agent_unreachable():
    options = MasterOptions(agent_reregister_timeout_s=10.0)
    d, agent_id, connection, fw = _with_task(checkpoint=True, options=options)
    d.do(ev.AgentDisconnected(agent_id=agent_id, connection_id=connection))
    start = d.now
    d.advance(9.5)
    assert agent_id in d.core.agents
    out = d.advance(start + 10.5 - d.now)
    assert agent_id in d.core.unreachable_agents
    status = out.update(fw.id, "t1")
    assert (status.state, status.reason) == (TaskState.LOST, Reason.AGENT_REMOVED)


def test_unanswered_pings_also_mark_a_disconnected_agent_unreachable():
    d, agent_id, connection, _fw = _with_task(checkpoint=True, options=FAST_PINGS)
    d.do(ev.AgentDisconnected(agent_id=agent_id, connection_id=connection))
    del d.ponging[agent_id]
    d.advance(10)
    assert agent_id in d.core.unreachable_agents


def test_disconnected_agent_reconnects_in_time():
    options = MasterOptions(agent_reregister_timeout_s=10.0)
    d, agent_id, connection, fw = _with_task(checkpoint=True, options=options)
    d.do(ev.AgentDisconnected(agent_id=agent_id, connection_id=connection))
    d.advance(5)
    new_connection, out = _reregister(d, agent_id, _agent_task(fw, "t1"))
    assert cmd.AcceptAgent(new_connection, agent_id) in out
    assert out.to_agent(agent_id, cmd.AgentReregistered) == [
        cmd.AgentReregistered(agent_id, MASTER_ID)
    ]
    assert out.updates(fw.id) == []  # nothing changed for the framework
    d.advance(30)
    assert agent_id in d.core.agents and d.core.agents[agent_id].connected
    assert d.task(fw, "t1").state is TaskState.RUNNING


def test_reconnecting_agent_that_forgot_a_task_ends_it():
    d, agent_id, connection, fw = _with_task(checkpoint=True, task_ids=("t1", "t2"))
    d.do(ev.AgentDisconnected(agent_id=agent_id, connection_id=connection))
    _, out = _reregister(d, agent_id, _agent_task(fw, "t1"))
    status = out.update(fw.id, "t2")
    assert (status.state, status.reason) == (TaskState.LOST, Reason.TASK_UNKNOWN)
    assert "t2" not in d.framework(fw).tasks
    assert d.task(fw, "t1").state is TaskState.RUNNING


def test_repeated_reregistration_on_the_same_connection_is_answered_again():
    d, agent_id, connection, fw = _with_task(checkpoint=True)
    d.do(ev.AgentDisconnected(agent_id=agent_id, connection_id=connection))
    new_connection, _ = _reregister(d, agent_id, _agent_task(fw, "t1"))
    out = d.do(
        ev.ReregisterAgent(
            connection_id=new_connection,
            agent_id=agent_id,
            info=AgentInfo(hostname="h1", resources=res(AGENT_RESOURCES)),
            capabilities=AGENT_CAPABILITIES,
        )
    )
    assert list(out) == [cmd.SendToAgent(agent_id, cmd.AgentReregistered(agent_id, MASTER_ID))]
    assert d.task(fw, "t1").state is TaskState.RUNNING


def test_status_updates_from_a_disconnected_agent_are_ignored():
    d, agent_id, connection, fw = _with_task(checkpoint=True)
    d.do(ev.AgentDisconnected(agent_id=agent_id, connection_id=connection))
    _, out = d.status(fw, agent_id, "t1", TaskState.FINISHED)
    assert list(out) == []
    assert d.task(fw, "t1").state is TaskState.RUNNING


# ------------------------------------------------------------- master failover


def test_after_master_failover_agents_bring_back_frameworks_and_tasks():
    d = Driver()
    framework_id = "old-0001"
    fw_json = {"user": "u", "name": "f", "id": {"value": framework_id}}
    task = ev.AgentTask(
        framework_id=framework_id,
        task_id="t1",
        name="t1",
        state=TaskState.RUNNING,
        resources=res("cpus:1;mem:128").allocate("*"),
    )
    out = d.do(
        ev.ReregisterAgent(
            connection_id="c",
            agent_id="old-S3",
            info=AgentInfo(hostname="h1", resources=res(AGENT_RESOURCES)),
            capabilities=AGENT_CAPABILITIES,
            tasks=(task,),
        )
    )
    d.ponging["old-S3"] = "c"
    assert cmd.AcceptAgent("c", "old-S3") in out
    assert out.of(cmd.SendToFramework) == []
    recovered = d.core.frameworks[framework_id]
    assert recovered.recovered and not recovered.connected
    assert recovered.tasks["t1"].state is TaskState.RUNNING
    # The scheduler comes back with its id and finds its task.
    out = d.subscribe_call(fw_json)
    (stream,) = out.of(cmd.OpenStream)
    assert stream.framework_id == framework_id
    assert not d.core.frameworks[framework_id].recovered
    out = d.do(ev.Reconcile(request_id="r", framework_id=framework_id, stream_id=stream.stream_id))
    (status,) = out.updates(framework_id)
    assert (status.task_id, status.state, status.agent_id) == ("t1", TaskState.RUNNING, "old-S3")
    # The task's resources stay in use: only the rest of the agent is offered.
    offers = d.advance(2).offers(framework_id)
    assert [o.resources.scalar("cpus") for o in offers] == [3000]


# ------------------------------------------------------- returning agents, kills


def test_kill_while_the_agent_is_away_is_sent_when_it_returns():
    d, agent_id, connection, fw = _with_task(checkpoint=True)
    d.do(ev.AgentDisconnected(agent_id=agent_id, connection_id=connection))
    out = d.call(ev.Kill, fw, task_id="t1")
    assert out.to_agent(agent_id, cmd.KillTask) == []
    assert out.update(fw.id, "t1").reason is Reason.RECONCILIATION  # where it stands now
    _, out = _reregister(d, agent_id, _agent_task(fw, "t1"))
    assert out.to_agent(agent_id, cmd.KillTask) == [cmd.KillTask(fw.id, "t1", None)]
    # ...once only.
    _, again = _reregister(d, agent_id, _agent_task(fw, "t1"))
    assert again.to_agent(agent_id, cmd.KillTask) == []


def test_kill_of_an_unreachable_task_is_sent_when_the_agent_returns():
    d, agent_id, _, fw = _with_task(partition_aware=True, checkpoint=True, options=FAST_PINGS)
    _go_silent(d, agent_id)
    out = d.call(ev.Kill, fw, task_id="t1")
    assert out.update(fw.id, "t1").state is TaskState.UNREACHABLE
    _, out = _reregister(d, agent_id, _agent_task(fw, "t1"))
    assert out.to_agent(agent_id, cmd.KillTask) == [cmd.KillTask(fw.id, "t1", None)]


def test_returning_agent_does_not_revive_tasks_the_framework_was_told_were_lost():
    d, agent_id, connection, fw = _with_task(checkpoint=False)
    out = d.do(ev.AgentDisconnected(agent_id=agent_id, connection_id=connection))
    assert out.update(fw.id, "t1").state is TaskState.LOST
    _, out = _reregister(d, agent_id, _agent_task(fw, "t1"))
    assert out.to_agent(agent_id, cmd.KillTask) == [cmd.KillTask(fw.id, "t1")]
    assert "t1" not in d.framework(fw).tasks
    assert out.updates(fw.id) == []


def test_update_framework_reaches_agents_running_its_tasks():
    d, agent_id, _, fw = _with_task(checkpoint=True)
    info = dict(d.framework(fw).info.raw)
    info["name"] = "renamed"
    out = d.call(ev.UpdateFramework, fw, framework_info=info)
    [message] = out.to_agent(agent_id, cmd.UpdateFrameworkInfo)
    assert message.framework.name == "renamed"
