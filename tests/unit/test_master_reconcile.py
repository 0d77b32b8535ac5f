"""RECONCILE: implicit and explicit (Mesos internals §4.7)."""

from __future__ import annotations

import pytest

from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master.info import TaskStatus
from agora.core.master.model import MasterOptions
from agora.core.task_states import Reason, Source, TaskState
from tests.unit.master_kit import Driver, launch, task_info

PING = MasterOptions(agent_ping_timeout_s=1.0, max_agent_ping_timeouts=2)


def _setup(partition_aware: bool = False, options: MasterOptions | None = None):
    d = Driver(options)
    agent_id, _ = d.register_agent()
    fw = d.subscribe(caps=["PARTITION_AWARE"] if partition_aware else [])
    return d, agent_id, fw


def _launch(d: Driver, fw, *task_ids: str) -> str:
    offer = d.offer(fw)
    tasks = [task_info(t, offer.agent_id, cpus=0.5, mem=32) for t in task_ids]
    out = d.accept(fw, offer, launch(*tasks), refuse_seconds=0)
    assert len(out.to_agent(offer.agent_id, cmd.RunTask)) == len(task_ids)
    return offer.agent_id


def _reconcile(d: Driver, fw, *tasks: tuple[str, str | None]):
    out = d.call(ev.Reconcile, fw, tasks=tuple(tasks))
    assert out.statuses() == [202]
    return out


def _is_reconciliation(status: TaskStatus, state: TaskState) -> None:
    assert status.state is state, status
    assert status.reason is Reason.RECONCILIATION
    assert status.source is Source.MASTER
    assert status.uuid is None


# ------------------------------------------------------------------- implicit


def test_implicit_reconciliation_reports_every_known_task():
    d, agent_id, fw = _setup()
    _launch(d, fw, "a", "b", "c")
    d.status(fw, agent_id, "b", TaskState.RUNNING)
    d.status(fw, agent_id, "c", TaskState.FINISHED)
    out = _reconcile(d, fw)
    by_id = {s.task_id: s for s in out.updates(fw.id)}
    assert sorted(by_id) == ["a", "b", "c"]
    _is_reconciliation(by_id["a"], TaskState.STAGING)
    _is_reconciliation(by_id["b"], TaskState.RUNNING)
    _is_reconciliation(by_id["c"], TaskState.FINISHED)  # terminal but not yet acknowledged
    for status in by_id.values():
        assert status.agent_id == agent_id
        assert status.message == "Reconciliation: Latest task state"


def test_implicit_reconciliation_uses_the_state_being_delivered():
    d, agent_id, fw = _setup()
    _launch(d, fw, "a")
    d.status(fw, agent_id, "a", TaskState.STARTING, latest_state=TaskState.FINISHED)
    (status,) = _reconcile(d, fw).updates(fw.id)
    _is_reconciliation(status, TaskState.STARTING)
    assert d.task(fw, "a").state is TaskState.FINISHED


def test_implicit_reconciliation_skips_acknowledged_terminal_tasks():
    d, agent_id, fw = _setup()
    _launch(d, fw, "a", "b")
    uuid, _ = d.status(fw, agent_id, "a", TaskState.FINISHED)
    d.ack(fw, agent_id, "a", uuid)
    assert [s.task_id for s in _reconcile(d, fw).updates(fw.id)] == ["b"]


def test_implicit_reconciliation_of_nothing_sends_nothing():
    d, _, fw = _setup()
    assert _reconcile(d, fw).updates(fw.id) == []


def test_implicit_reconciliation_does_not_repeat_message_or_data():
    d, agent_id, fw = _setup()
    _launch(d, fw, "a")
    d.status(fw, agent_id, "a", TaskState.RUNNING, message="secret", data=b"blob", healthy=True)
    (status,) = _reconcile(d, fw).updates(fw.id)
    assert status.data is None
    assert status.message == "Reconciliation: Latest task state"
    assert status.healthy is True


@pytest.mark.parametrize(
    ("partition_aware", "expected"),
    [(True, TaskState.UNREACHABLE), (False, TaskState.LOST)],
)
def test_implicit_reconciliation_includes_unreachable_tasks(partition_aware, expected):
    d, agent_id, fw = _setup(partition_aware, PING)
    _launch(d, fw, "a")
    d.status(fw, agent_id, "a", TaskState.RUNNING)
    del d.ponging[agent_id]
    d.advance(5)
    assert agent_id in d.core.unreachable_agents
    (status,) = _reconcile(d, fw).updates(fw.id)
    _is_reconciliation(status, expected)
    assert status.unreachable_time == d.core.unreachable_agents[agent_id].since


# ------------------------------------------------------------------- explicit


@pytest.mark.parametrize("give_agent", [False, True])
def test_explicit_known_task(give_agent):
    d, agent_id, fw = _setup()
    _launch(d, fw, "a", "b")
    d.status(fw, agent_id, "a", TaskState.RUNNING)
    out = _reconcile(d, fw, ("a", agent_id if give_agent else None))
    (status,) = out.updates(fw.id)
    assert status.task_id == "a"
    _is_reconciliation(status, TaskState.RUNNING)
    assert status.agent_id == agent_id


@pytest.mark.parametrize(
    ("partition_aware", "expected"), [(True, TaskState.GONE), (False, TaskState.LOST)]
)
def test_explicit_unknown_task_on_a_registered_agent(partition_aware, expected):
    d, agent_id, fw = _setup(partition_aware)
    (status,) = _reconcile(d, fw, ("ghost", agent_id)).updates(fw.id)
    _is_reconciliation(status, expected)
    assert status.agent_id == agent_id


@pytest.mark.parametrize(
    ("partition_aware", "expected"),
    [(True, TaskState.UNREACHABLE), (False, TaskState.LOST)],
)
def test_explicit_unknown_task_on_an_unreachable_agent(partition_aware, expected):
    d, agent_id, fw = _setup(partition_aware, PING)
    del d.ponging[agent_id]
    d.advance(5)
    since = d.core.unreachable_agents[agent_id].since
    (status,) = _reconcile(d, fw, ("ghost", agent_id)).updates(fw.id)
    _is_reconciliation(status, expected)
    assert status.unreachable_time == since
    assert status.agent_id == agent_id


@pytest.mark.parametrize(
    ("partition_aware", "expected"),
    [(True, TaskState.UNREACHABLE), (False, TaskState.LOST)],
)
def test_explicit_task_on_an_unreachable_agent(partition_aware, expected):
    d, agent_id, fw = _setup(partition_aware, PING)
    _launch(d, fw, "a")
    d.status(fw, agent_id, "a", TaskState.RUNNING)
    del d.ponging[agent_id]
    d.advance(5)
    since = d.core.unreachable_agents[agent_id].since
    (status,) = _reconcile(d, fw, ("a", agent_id)).updates(fw.id)
    _is_reconciliation(status, expected)
    assert status.unreachable_time == since


@pytest.mark.parametrize(
    ("partition_aware", "expected"),
    [(True, TaskState.GONE_BY_OPERATOR), (False, TaskState.LOST)],
)
def test_explicit_unknown_task_on_a_gone_agent(partition_aware, expected):
    d, _, fw = _setup(partition_aware)
    d.core.gone_agents["gone-agent"] = 0.0
    (status,) = _reconcile(d, fw, ("ghost", "gone-agent")).updates(fw.id)
    _is_reconciliation(status, expected)


@pytest.mark.parametrize(
    ("partition_aware", "expected"), [(True, TaskState.UNKNOWN), (False, TaskState.LOST)]
)
@pytest.mark.parametrize("agent", ["never-seen", None])
def test_explicit_unknown_task_on_an_unknown_agent(partition_aware, expected, agent):
    d, _, fw = _setup(partition_aware)
    (status,) = _reconcile(d, fw, ("ghost", agent)).updates(fw.id)
    _is_reconciliation(status, expected)
    assert status.task_id == "ghost"


def test_explicit_answers_one_update_per_task_in_order():
    d, agent_id, fw = _setup(partition_aware=True)
    _launch(d, fw, "a")
    out = _reconcile(d, fw, ("ghost", agent_id), ("a", None), ("other", None))
    assert [(s.task_id, s.state) for s in out.updates(fw.id)] == [
        ("ghost", TaskState.GONE),
        ("a", TaskState.STAGING),
        ("other", TaskState.UNKNOWN),
    ]


def test_explicit_acknowledged_terminal_task_is_unknown():
    d, agent_id, fw = _setup(partition_aware=True)
    _launch(d, fw, "a")
    uuid, _ = d.status(fw, agent_id, "a", TaskState.FINISHED)
    d.ack(fw, agent_id, "a", uuid)
    (status,) = _reconcile(d, fw, ("a", agent_id)).updates(fw.id)
    _is_reconciliation(status, TaskState.GONE)


def test_reconcile_needs_a_subscribed_framework():
    d, _, fw = _setup()
    out = d.call(ev.Reconcile, fw, stream_id=None)
    assert out.statuses() == [400]
    assert out.of(cmd.SendToFramework) == []


def test_explicit_reconciliation_trusts_the_master_over_a_wrong_agent_id():
    d, agent_id, fw = _setup()
    _launch(d, fw, "t1")
    status = _reconcile(d, fw, ("t1", "some-other-agent")).update(fw.id, "t1")
    _is_reconciliation(status, TaskState.STAGING)
    assert status.agent_id == agent_id
