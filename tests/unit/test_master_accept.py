"""ACCEPT (offer validation, task validation, LAUNCH, LAUNCH_GROUP, RESERVE, UNRESERVE,
CREATE, DESTROY, implicit declines), DECLINE, REVIVE, SUPPRESS and offer expiry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master.info import TaskStatus
from agora.core.master.model import MasterOptions
from agora.core.resource_json import resources_from_json
from agora.core.task_states import Reason, Source, TaskState
from tests.unit.master_kit import (
    Driver,
    dynamic,
    executor_info,
    launch,
    launch_group,
    res,
    scalar,
    task_info,
)


def _setup(**subscribe: Any):
    d = Driver()
    agent_id, _ = d.register_agent()
    fw = d.subscribe(**subscribe)
    return d, agent_id, fw


def _assert_master_status(status: TaskStatus, state: TaskState, reason: Reason) -> None:
    assert status.state is state
    assert status.reason is reason
    assert status.source is Source.MASTER
    assert status.uuid is None


# ------------------------------------------------------------------ LAUNCH


def test_launch_sends_run_task_and_stages_the_task():
    d, agent_id, fw = _setup()
    offer = d.offer(fw)
    assert offer.agent_id == agent_id and offer.role == "*"
    out = d.accept(fw, offer, launch(task_info("t1", agent_id, cpus=1, mem=128)))
    assert out.statuses() == [202]
    (run,) = out.to_agent(agent_id, cmd.RunTask)
    assert run.framework == d.framework(fw).info
    assert run.task.task_id == "t1" and run.task.name == "t1"
    assert run.task.agent_id == agent_id
    assert run.task.executor is None
    # Resources carry the offer's allocation role.
    assert run.task.resources == res("cpus:1;mem:128").allocate("*")
    assert run.task.raw["command"] == {"value": "true"}
    assert out.updates(fw.id) == []  # STAGING is not announced
    task = d.task(fw, "t1")
    assert task.state is TaskState.STAGING
    assert task.role == "*"
    assert task.resources == run.task.resources
    assert offer.id not in d.core.offers
    assert d.core.agents[agent_id].tasks[fw.id]["t1"] is task


def test_launch_under_a_multi_role_offer_tags_the_role():
    d = Driver()
    agent_id, _ = d.register_agent()
    fw = d.subscribe(roles=["eng"])
    offer = d.offer(fw)
    assert offer.role == "eng"
    assert offer.resources.allocation_role() == "eng"
    out = d.accept(fw, offer, launch(task_info("t1", agent_id)))
    (run,) = out.to_agent(agent_id, cmd.RunTask)
    assert run.task.resources == res("cpus:1;mem:128").allocate("eng")
    assert d.task(fw, "t1").role == "eng"


def test_task_resources_allocated_to_another_role_are_refused():
    d = Driver()
    agent_id, _ = d.register_agent()
    fw = d.subscribe(roles=["eng", "ops"])
    offer = d.offer(fw)
    other = "ops" if offer.role == "eng" else "eng"
    resources = [scalar("cpus", 1, allocation_info={"role": other})]
    out = d.accept(fw, offer, launch(task_info("t1", agent_id, resources=resources)))
    status = out.update(fw.id, "t1")
    _assert_master_status(status, TaskState.ERROR, Reason.TASK_INVALID)
    assert f"'{other}'" in (status.message or "")


def test_offer_lists_executors_already_on_the_agent():
    d, agent_id, fw = _setup()
    offer = d.offer(fw)
    execu = executor_info("e1")
    d.accept(fw, offer, launch(task_info("t1", agent_id, command=None, executor=execu)))
    again = d.offer(fw)
    assert again.executor_ids == ("e1",)


def test_executor_resources_are_consumed_once():
    d, agent_id, fw = _setup()
    offer = d.offer(fw)
    execu = executor_info("e1")  # cpus 0.5, mem 32
    out = d.accept(
        fw,
        offer,
        launch(
            task_info("t1", agent_id, cpus=1.5, mem=100, command=None, executor=execu),
            task_info("t2", agent_id, cpus=2, mem=100, command=None, executor=execu),
        ),
    )
    runs = out.to_agent(agent_id, cmd.RunTask)
    assert [r.task.task_id for r in runs] == ["t1", "t2"]
    assert runs[0].task.executor.resources == res("cpus:0.5;mem:32").allocate("*")
    assert out.updates(fw.id) == []
    # 1.5 + 2 + 0.5 = 4 cpus: nothing left for a third task.
    again = d.offer(fw)
    assert again.resources.scalar("cpus") == 0
    assert again.resources.scalar("mem") == (4096 - 232) * 1000


def test_executor_resources_count_against_the_offer():
    d, agent_id, fw = _setup()
    offer = d.offer(fw)
    execu = executor_info("e1")
    out = d.accept(
        fw, offer, launch(task_info("t1", agent_id, cpus=3.6, command=None, executor=execu))
    )
    status = out.update(fw.id, "t1")
    _assert_master_status(status, TaskState.ERROR, Reason.TASK_INVALID)
    assert "uses more resources" in (status.message or "")


# ------------------------------------------------------------- invalid offers


@pytest.mark.parametrize("partition_aware", [False, True])
@pytest.mark.parametrize("case", ["unknown", "other_framework", "duplicate", "two_agents", "none"])
def test_invalid_offers_lose_or_drop_every_task(case, partition_aware):
    d, agent_id, fw = _setup(caps=["PARTITION_AWARE"] if partition_aware else [])
    tasks = launch(task_info("t1", agent_id), task_info("t2", agent_id))
    kept_offer = None
    if case == "unknown":
        ids = ["no-such-offer"]
        words = "no longer valid"
    elif case == "other_framework":
        d.register_agent("h2")
        other = d.subscribe("other")
        d.allocate()
        kept_offer = next(o for o in d.core.offers.values() if o.framework_id == other.id)
        ids = [kept_offer.id]
        words = "invalid framework"
    elif case == "duplicate":
        offer = d.offer(fw)
        ids = [offer.id, offer.id]
        words = "more than once"
    elif case == "two_agents":
        d.register_agent("h2")
        ids = [o.id for o in d.allocate().offers(fw.id)]
        assert len({d.core.offers[i].agent_id for i in ids}) == 2
        words = "one single agent"
    else:
        ids = []
        words = "No offers"
    out = d.accept(fw, ids, tasks)
    assert out.statuses() == [202]
    assert out.of(cmd.SendToAgent) == []
    expected = TaskState.DROPPED if partition_aware else TaskState.LOST
    for task_id in ("t1", "t2"):
        status = out.update(fw.id, task_id)
        _assert_master_status(status, expected, Reason.INVALID_OFFERS)
        assert words in (status.message or ""), status.message
    assert d.framework(fw).tasks == {}
    if kept_offer is not None:
        # Another framework's offer is not touched by a bad ACCEPT.
        assert kept_offer.id in d.core.offers
    for offer_id in ids:
        offer = d.core.offers.get(offer_id)
        assert offer is None or offer.framework_id != fw.id


def test_invalid_offers_give_back_the_valid_ones_unfiltered():
    d, agent_id, fw = _setup()
    offer = d.offer(fw)
    d.accept(fw, [offer.id, "bogus"], launch(task_info("t1", agent_id)))
    assert offer.id not in d.core.offers
    # No filter: the next allocation offers the agent again.
    assert d.allocate().offers(fw.id)


def test_an_offer_can_be_used_only_once():
    d, agent_id, fw = _setup()
    offer = d.offer(fw)
    d.accept(fw, offer, launch(task_info("t1", agent_id)))
    out = d.accept(fw, offer, launch(task_info("t2", agent_id)))
    _assert_master_status(out.update(fw.id, "t2"), TaskState.LOST, Reason.INVALID_OFFERS)


def test_offers_of_one_agent_can_be_combined():
    d, agent_id, fw = _setup()
    offer = d.offer(fw)
    d.accept(fw, offer, launch(task_info("t1", agent_id, cpus=1, mem=1024)), refuse_seconds=0)
    first = d.offer(fw)  # the rest of the agent
    d.status(fw, agent_id, "t1", TaskState.FINISHED)
    second = d.offer(fw)  # what t1 held, freed by its terminal update
    assert (first.agent_id, second.agent_id) == (agent_id, agent_id)
    assert first.resources.scalar("cpus") + second.resources.scalar("cpus") == 4000
    out = d.accept(fw, [first.id, second.id], launch(task_info("big", agent_id, cpus=4, mem=4096)))
    (run,) = out.to_agent(agent_id, cmd.RunTask)
    assert run.task.resources == res("cpus:4;mem:4096").allocate("*")
    assert out.updates(fw.id) == []


# ------------------------------------------------------------- invalid tasks


def _health(**check: Any) -> dict[str, Any]:
    return {"health_check": check}


Change = Callable[[dict[str, Any]], dict[str, Any]]

INVALID_TASKS: dict[str, tuple[Change, str]] = {
    "missing name": (lambda t: {k: v for k, v in t.items() if k != "name"}, "'name'"),
    "both command and executor": (
        lambda t: {**t, "executor": executor_info("e1")},
        "at least one (but not both)",
    ),
    "neither command nor executor": (
        lambda t: {k: v for k, v in t.items() if k != "command"},
        "at least one (but not both)",
    ),
    "no resources": (lambda t: {**t, "resources": []}, "no resources"),
    "too many cpus": (lambda t: {**t, "resources": [scalar("cpus", 100)]}, "uses more resources"),
    "port outside the offer": (
        lambda t: {
            **t,
            "resources": [
                scalar("cpus", 1),
                {
                    "name": "ports",
                    "type": "RANGES",
                    "ranges": {"range": [{"begin": 80, "end": 80}]},
                },
            ],
        },
        "uses more resources",
    ),
    "negative scalar": (
        lambda t: {**t, "resources": [scalar("cpus", -1)]},
        "invalid resources in 'resources'",
    ),
    "unknown resource type": (
        lambda t: {**t, "resources": [{"name": "cpus", "type": "BOGUS"}]},
        "invalid resources in 'resources'",
    ),
    "resources not a list": (lambda t: {**t, "resources": "cpus:1"}, "'resources'"),
    "health check without type": (
        lambda t: {**t, **_health(command={"value": "true"})},
        "'health_check' must specify 'type'",
    ),
    "COMMAND health check without command": (
        lambda t: {**t, **_health(type="COMMAND")},
        "'health_check.command'",
    ),
    "HTTP health check without port": (
        lambda t: {**t, **_health(type="HTTP", http={"path": "/"})},
        "'health_check.http.port'",
    ),
    "HTTP health check without http": (
        lambda t: {**t, **_health(type="HTTP")},
        "'health_check.http'",
    ),
    "TCP health check with port 0": (
        lambda t: {**t, **_health(type="TCP", tcp={"port": 0})},
        "'health_check.tcp.port'",
    ),
    "negative health check interval": (
        lambda t: {**t, **_health(type="TCP", tcp={"port": 80}, interval_seconds=-1)},
        "'health_check.interval_seconds'",
    ),
    "negative health check timeout": (
        lambda t: {**t, **_health(type="TCP", tcp={"port": 80}, timeout_seconds=-0.5)},
        "'health_check.timeout_seconds'",
    ),
    "unknown health check type": (
        lambda t: {**t, **_health(type="UDP")},
        "'health_check.type'",
    ),
    "negative kill policy grace": (
        lambda t: {**t, "kill_policy": {"grace_period": {"nanoseconds": -1}}},
        "'kill_policy.grace_period'",
    ),
    "negative max_completion_time": (
        lambda t: {**t, "max_completion_time": {"nanoseconds": -5}},
        "'max_completion_time'",
    ),
    "task id with a slash": (lambda t: {**t, "task_id": {"value": "a/b"}}, "'task_id'"),
    "empty task id": (lambda t: {**t, "task_id": {"value": ""}}, "'task_id'"),
    "agent id of another agent": (lambda t: {**t, "agent_id": {"value": "zzz"}}, "'agent_id'"),
    "command without value": (lambda t: {**t, "command": {"shell": True}}, "'command.value'"),
    "executor without executor_id": (
        lambda t: {
            k: v
            for k, v in {**t, "executor": {"command": {"value": "x"}}}.items()
            if k != "command"
        },
        "'executor.executor_id'",
    ),
    "executor of another framework": (
        lambda t: {
            k: v
            for k, v in {**t, "executor": executor_info("e1", framework_id={"value": "f9"})}.items()
            if k != "command"
        },
        "'executor.framework_id'",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID_TASKS))
def test_invalid_task_is_task_error_naming_the_problem(case):
    change, words = INVALID_TASKS[case]
    d, agent_id, fw = _setup()
    offer = d.offer(fw)
    good = task_info("good", agent_id)
    bad = change(task_info("bad", agent_id))
    out = d.accept(fw, offer, launch(bad, good))
    bad_id = bad.get("task_id", {}).get("value", "")
    status = out.update(fw.id, bad_id)
    _assert_master_status(status, TaskState.ERROR, Reason.TASK_INVALID)
    assert words in (status.message or ""), status.message
    assert status.agent_id == agent_id
    # The valid task of the same call is launched all the same.
    runs = out.to_agent(agent_id, cmd.RunTask)
    assert [r.task.task_id for r in runs] == ["good"]
    assert bad_id not in d.framework(fw).tasks


def test_duplicate_task_id_is_task_error():
    d, agent_id, fw = _setup()
    d.launch_one(fw, "t1")
    offer = d.offer(fw)
    out = d.accept(fw, offer, launch(task_info("t1", agent_id)))
    status = out.update(fw.id, "t1")
    _assert_master_status(status, TaskState.ERROR, Reason.TASK_INVALID)
    assert "duplicate ID" in (status.message or "")
    assert out.to_agent(agent_id, cmd.RunTask) == []
    # The running task is untouched.
    assert d.task(fw, "t1").state is TaskState.STAGING


def test_duplicate_task_id_within_one_call():
    d, agent_id, fw = _setup()
    offer = d.offer(fw)
    out = d.accept(fw, offer, launch(task_info("t1", agent_id), task_info("t1", agent_id)))
    assert len(out.to_agent(agent_id, cmd.RunTask)) == 1
    status = out.update(fw.id, "t1")
    _assert_master_status(status, TaskState.ERROR, Reason.TASK_INVALID)
    assert "duplicate ID" in (status.message or "")


def test_incompatible_executor_info_for_a_known_executor_id():
    d, agent_id, fw = _setup()
    offer = d.offer(fw)
    e1 = executor_info("e1", "run-a")
    d.accept(fw, offer, launch(task_info("t1", agent_id, command=None, executor=e1)))
    offer = d.offer(fw)
    changed = executor_info("e1", "run-b")
    same = executor_info("e1", "run-a")
    out = d.accept(
        fw,
        offer,
        launch(
            task_info("t2", agent_id, command=None, executor=changed),
            task_info("t3", agent_id, command=None, executor=same),
        ),
    )
    status = out.update(fw.id, "t2")
    _assert_master_status(status, TaskState.ERROR, Reason.TASK_INVALID)
    assert "'e1'" in (status.message or "") and "not compatible" in (status.message or "")
    (run,) = out.to_agent(agent_id, cmd.RunTask)
    assert run.task.task_id == "t3"


def test_incompatible_executor_info_within_one_call():
    d, agent_id, fw = _setup()
    offer = d.offer(fw)
    out = d.accept(
        fw,
        offer,
        launch(
            task_info("t1", agent_id, command=None, executor=executor_info("e1", "a")),
            task_info("t2", agent_id, command=None, executor=executor_info("e1", "b")),
        ),
    )
    assert [r.task.task_id for r in out.to_agent(agent_id, cmd.RunTask)] == ["t1"]
    _assert_master_status(out.update(fw.id, "t2"), TaskState.ERROR, Reason.TASK_INVALID)


def test_invalid_task_leftovers_are_declined_not_lost():
    d, _agent_id, fw = _setup()
    offer = d.offer(fw)
    d.accept(fw, offer, launch({"name": "x"}), refuse_seconds=0)
    again = d.offer(fw)
    assert again.resources == offer.resources


# --------------------------------------------------------------- LAUNCH_GROUP


def _default_executor(executor_id: str = "ex") -> dict[str, Any]:
    return {
        "type": "DEFAULT",
        "executor_id": {"value": executor_id},
        "resources": [scalar("cpus", 0.1), scalar("mem", 32)],
    }


def _group_task(task_id: str, agent_id: str, **extra: Any) -> dict[str, Any]:
    return task_info(task_id, agent_id, cpus=0.5, mem=64, **extra)


def test_launch_group_sends_one_run_task_group():
    d, agent_id, fw = _setup()
    offer = d.offer(fw)
    out = d.accept(
        fw,
        offer,
        launch_group(_default_executor(), _group_task("a", agent_id), _group_task("b", agent_id)),
    )
    (group,) = out.to_agent(agent_id, cmd.RunTaskGroup)
    assert group.executor.executor_id == "ex"
    assert group.executor.resources == res("cpus:0.1;mem:32").allocate("*")
    assert [t.task_id for t in group.tasks] == ["a", "b"]
    assert all(t.executor == group.executor for t in group.tasks)
    assert out.updates(fw.id) == []
    assert d.task(fw, "a").state is TaskState.STAGING
    assert d.task(fw, "b").executor_id == "ex"


@pytest.mark.parametrize(
    ("tasks", "executor", "words"),
    [
        (
            lambda a: [
                _group_task("a", a),
                {**_group_task("b", a), "resources": [scalar("cpus", 99)]},
            ],
            _default_executor(),
            "uses more resources",
        ),
        (
            lambda a: [_group_task("a", a), _group_task("b", a, executor=executor_info("e9"))],
            _default_executor(),
            "must not set 'executor'",
        ),
        (lambda a: [_group_task("a", a), _group_task("a", a)], _default_executor(), "duplicate"),
        (lambda a: [_group_task("a", a), _group_task("b", a)], {"type": "DEFAULT"}, "executor_id"),
        (
            lambda a: [
                _group_task("a", a),
                {k: v for k, v in _group_task("b", a).items() if k != "name"},
            ],
            _default_executor(),
            "'name'",
        ),
    ],
)
def test_launch_group_is_all_or_nothing(tasks, executor, words):
    d, agent_id, fw = _setup()
    offer = d.offer(fw)
    group = tasks(agent_id)
    out = d.accept(fw, offer, launch_group(executor, *group))
    assert out.to_agent(agent_id, cmd.RunTaskGroup) == []
    statuses = out.updates(fw.id)
    assert {s.task_id for s in statuses} == {t["task_id"]["value"] for t in group}
    for status in statuses:
        _assert_master_status(status, TaskState.ERROR, Reason.TASK_GROUP_INVALID)
        assert words in (status.message or ""), status.message
    assert d.framework(fw).tasks == {}
    assert d.framework(fw).executors == {}


def test_launch_group_with_a_known_task_id_fails_whole():
    d, agent_id, fw = _setup()
    d.launch_one(fw, "a")
    offer = d.offer(fw)
    out = d.accept(
        fw,
        offer,
        launch_group(_default_executor(), _group_task("a", agent_id), _group_task("b", agent_id)),
    )
    assert out.to_agent(agent_id, cmd.RunTaskGroup) == []
    for status in out.updates(fw.id):
        _assert_master_status(status, TaskState.ERROR, Reason.TASK_GROUP_INVALID)
    assert "b" not in d.framework(fw).tasks


# ---------------------------------------------------- speculative operations


def _reserved(d: Driver, fw, agent_id: str, role: str = "r"):
    return d.core.allocator.total(agent_id).reserved(role)


def _reserve(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"type": "RESERVE", "reserve": {"resources": list(resources)}}


def _reserved_json(name: str, value: float, role: str = "r", **extra: Any) -> dict[str, Any]:
    return scalar(name, value, reservations=dynamic(role), **extra)


def _setup_role(resources: str = "cpus:4;mem:1024;disk:1024"):
    d = Driver()
    agent_id, _ = d.register_agent(resources=resources)
    fw = d.subscribe(role="r", principal="p")
    return d, agent_id, fw


def test_reserve_then_launch_on_the_reservation_in_one_accept():
    d, agent_id, fw = _setup_role()
    offer = d.offer(fw)
    reserved_cpus = _reserved_json("cpus", 2)
    reserved_mem = _reserved_json("mem", 256)
    out = d.accept(
        fw,
        offer,
        _reserve(reserved_cpus, reserved_mem),
        launch(
            task_info(
                "t1", agent_id, resources=[_reserved_json("cpus", 1), _reserved_json("mem", 128)]
            )
        ),
    )
    (run,) = out.to_agent(agent_id, cmd.RunTask)
    expected = resources_from_json(
        [_reserved_json("cpus", 1), _reserved_json("mem", 128)]
    ).allocate("r")
    assert run.task.resources == expected
    assert out.updates(fw.id) == []
    # The agent checkpoints its new total, with the reservation in it.
    (checkpoint,) = out.to_agent(agent_id, cmd.CheckpointResources)
    assert checkpoint.total == d.core.allocator.total(agent_id)
    assert checkpoint.total.reserved("r") == resources_from_json([reserved_cpus, reserved_mem])
    # The order of commands: the checkpoint is not sent before the task that uses it...
    # (Mesos sends the operation's effects first; here both go to the same agent.)
    assert _reserved(d, fw, agent_id) == resources_from_json([reserved_cpus, reserved_mem])


def test_launch_cannot_use_a_reservation_that_comes_later():
    d, agent_id, fw = _setup_role()
    offer = d.offer(fw)
    out = d.accept(
        fw,
        offer,
        launch(task_info("t1", agent_id, resources=[_reserved_json("cpus", 1)])),
        _reserve(_reserved_json("cpus", 2)),
    )
    _assert_master_status(out.update(fw.id, "t1"), TaskState.ERROR, Reason.TASK_INVALID)
    assert _reserved(d, fw, agent_id).scalar("cpus") == 2000


def test_converted_leftovers_come_back_unfiltered_untouched_ones_filtered():
    d, _agent_id, fw = _setup_role()
    offer = d.offer(fw)
    d.accept(fw, offer, _reserve(_reserved_json("cpus", 1)), refuse_seconds=100)
    # The reservation came back without a filter, so the agent is offered again at once
    # (a filter only refuses offers it covers entirely, as in Mesos).
    again = d.allocate().offers(fw.id)
    assert [o.resources for o in again] == [
        res("cpus:3;mem:1024;disk:1024").allocate("r")
        + resources_from_json([_reserved_json("cpus", 1)]).allocate("r")
    ]
    # Without the conversion, the same ACCEPT filters the whole agent.
    d.accept(fw, again[0], refuse_seconds=100)
    assert d.advance(99).offers(fw.id) == []
    assert d.advance(2).offers(fw.id)


def test_implicit_decline_filters_only_what_was_left_untouched():
    d, agent_id, fw = _setup_role()
    offer = d.offer(fw)
    d.accept(fw, offer, launch(task_info("t1", agent_id)), refuse_seconds=100)
    assert d.advance(50).offers(fw.id) == []
    # The task's resources come back on its terminal update: offered, though the rest
    # of the agent is still filtered (the offer is not covered by the filter).
    d.status(fw, agent_id, "t1", TaskState.FINISHED)
    back = d.allocate().offers(fw.id)
    assert [o.resources for o in back] == [res("cpus:4;mem:1024;disk:1024").allocate("r")]


def test_failed_speculative_operation_is_dropped_and_the_rest_proceeds():
    d, agent_id, fw = _setup_role()
    offer = d.offer(fw)
    out = d.accept(
        fw,
        offer,
        _reserve(_reserved_json("cpus", 100)),  # more than offered: dropped
        _reserve(_reserved_json("cpus", 1, role="elsewhere")),  # not the offer's role
        {"type": "UNRESERVE", "unreserve": {"resources": [_reserved_json("mem", 10)]}},
        {"type": "DESTROY", "destroy": {"volumes": [{"name": "disk"}]}},
        {"type": "GROW_VOLUME", "grow_volume": {}},  # unsupported: dropped
        launch(task_info("t1", agent_id)),
    )
    (run,) = out.to_agent(agent_id, cmd.RunTask)
    assert run.task.task_id == "t1"
    assert out.updates(fw.id) == []
    assert out.to_agent(agent_id, cmd.CheckpointResources) == []
    assert d.core.allocator.total(agent_id).reserved() == res("")


def test_unreserve_returns_resources_to_the_unreserved_pool():
    d, agent_id, fw = _setup_role()
    offer = d.offer(fw)
    d.accept(fw, offer, _reserve(_reserved_json("cpus", 2)), refuse_seconds=0)
    offer = d.offer(fw)
    assert offer.resources.reserved("r").scalar("cpus") == 2000
    out = d.accept(
        fw,
        offer,
        {"type": "UNRESERVE", "unreserve": {"resources": [_reserved_json("cpus", 2)]}},
        refuse_seconds=0,
    )
    (checkpoint,) = out.to_agent(agent_id, cmd.CheckpointResources)
    assert checkpoint.total.reserved() == res("")
    assert d.core.allocator.total(agent_id) == d.agent_info(agent_id).resources
    again = d.offer(fw)
    assert again.resources.reserved() == res("")
    assert again.resources.scalar("cpus") == 4000


def _volume(size: float = 128, persistence_id: str = "v1") -> dict[str, Any]:
    return _reserved_json(
        "disk",
        size,
        disk={
            "persistence": {"id": persistence_id, "principal": "p"},
            "volume": {"mode": "RW", "container_path": "data"},
        },
    )


def test_create_then_destroy_a_persistent_volume():
    d, agent_id, fw = _setup_role()
    offer = d.offer(fw)
    out = d.accept(
        fw,
        offer,
        _reserve(_reserved_json("disk", 128)),
        {"type": "CREATE", "create": {"volumes": [_volume()]}},
        refuse_seconds=0,
    )
    (checkpoint,) = out.to_agent(agent_id, cmd.CheckpointResources)
    volumes = checkpoint.total.persistent_volumes()
    assert volumes == resources_from_json([_volume()])
    # The volume is offered back (converted: no filter) and can be destroyed.
    offer = d.offer(fw)
    assert offer.resources.persistent_volumes() == volumes.allocate("r")
    out = d.accept(
        fw, offer, {"type": "DESTROY", "destroy": {"volumes": [_volume()]}}, refuse_seconds=0
    )
    (checkpoint,) = out.to_agent(agent_id, cmd.CheckpointResources)
    assert checkpoint.total.persistent_volumes() == res("")
    assert checkpoint.total.reserved("r") == resources_from_json([_reserved_json("disk", 128)])


def test_create_with_a_persistence_id_in_use_is_dropped():
    d, agent_id, fw = _setup_role()
    offer = d.offer(fw)
    d.accept(
        fw,
        offer,
        _reserve(_reserved_json("disk", 256)),
        {"type": "CREATE", "create": {"volumes": [_volume(128)]}},
        refuse_seconds=0,
    )
    offer = d.offer(fw)
    out = d.accept(
        fw, offer, {"type": "CREATE", "create": {"volumes": [_volume(128)]}}, refuse_seconds=0
    )
    assert out.to_agent(agent_id, cmd.CheckpointResources) == []
    assert d.core.allocator.total(agent_id).persistent_volumes().scalar("disk") == 128000


def test_destroy_of_a_volume_in_use_is_dropped():
    d, agent_id, fw = _setup_role()
    offer = d.offer(fw)
    d.accept(
        fw,
        offer,
        _reserve(_reserved_json("disk", 128)),
        {"type": "CREATE", "create": {"volumes": [_volume()]}},
        launch(task_info("t1", agent_id, resources=[scalar("cpus", 1), _volume()])),
    )
    assert d.task(fw, "t1").resources.persistent_volumes()
    offer = d.offer(fw, within=10)
    out = d.accept(fw, offer, {"type": "DESTROY", "destroy": {"volumes": [_volume()]}})
    assert out.to_agent(agent_id, cmd.CheckpointResources) == []
    assert d.core.allocator.total(agent_id).persistent_volumes()


# ------------------------------------------------ implicit and explicit declines


def test_leftovers_are_declined_with_the_accept_filter():
    d, agent_id, fw = _setup()
    offer = d.offer(fw)
    d.accept(fw, offer, launch(task_info("t1", agent_id)), refuse_seconds=30)
    assert d.advance(29).offers(fw.id) == []
    later = d.advance(2).offers(fw.id)
    assert later and later[0].resources.scalar("cpus") == 3000


def test_leftovers_default_filter_is_five_seconds():
    d, agent_id, fw = _setup()
    offer = d.offer(fw)
    d.accept(fw, offer, launch(task_info("t1", agent_id)))
    assert d.advance(4.5).offers(fw.id) == []
    assert d.advance(1.5).offers(fw.id)


def test_decline_default_filter_is_five_seconds():
    d, _, fw = _setup()
    offer = d.offer(fw)
    out = d.call(ev.Decline, fw, offer_ids=(offer.id,))
    assert out.statuses() == [202]
    assert offer.id not in d.core.offers
    assert d.advance(4.5).offers(fw.id) == []
    assert d.advance(1.5).offers(fw.id)


def test_decline_with_refuse_seconds():
    d, _, fw = _setup()
    offer = d.offer(fw)
    d.call(ev.Decline, fw, offer_ids=(offer.id,), refuse_seconds=60)
    assert d.advance(59).offers(fw.id) == []
    assert d.advance(2).offers(fw.id)


def test_decline_with_zero_refuse_seconds_is_reoffered_at_once():
    d, _, fw = _setup()
    offer = d.offer(fw)
    d.call(ev.Decline, fw, offer_ids=(offer.id,), refuse_seconds=0)
    again = d.allocate().offers(fw.id)
    assert [o.resources for o in again] == [offer.resources]


def test_declined_resources_go_to_another_framework():
    d, agent_id, fw = _setup()
    offer = d.offer(fw)
    other = d.subscribe("g")
    d.call(ev.Decline, fw, offer_ids=(offer.id,), refuse_seconds=3600)
    assert d.offer(other).agent_id == agent_id


def test_decline_of_unknown_or_foreign_offers_is_harmless():
    d, _, fw = _setup()
    other = d.subscribe("g")
    offer = d.offer(fw) if d.core.offers == {} else next(iter(d.core.offers.values()))
    owner = fw if offer.framework_id == fw.id else other
    stranger = other if owner is fw else fw
    out = d.call(ev.Decline, stranger, offer_ids=(offer.id, "nope"))
    assert out.statuses() == [202]
    assert offer.id in d.core.offers
    assert d.core.offers[offer.id].framework_id == owner.id


def test_revive_clears_filters():
    d, _, fw = _setup()
    offer = d.offer(fw)
    d.call(ev.Decline, fw, offer_ids=(offer.id,), refuse_seconds=3600)
    assert d.advance(10).offers(fw.id) == []
    out = d.call(ev.Revive, fw)
    assert out.statuses() == [202]
    assert d.allocate().offers(fw.id)


def test_suppress_stops_offers_and_revive_resumes_them():
    d, _, fw = _setup()
    out = d.call(ev.Suppress, fw)
    assert out.statuses() == [202]
    assert d.framework(fw).suppressed_roles == {"*"}
    assert d.advance(10).offers(fw.id) == []
    d.call(ev.Revive, fw)
    assert d.framework(fw).suppressed_roles == frozenset()
    assert d.allocate().offers(fw.id)


def test_suppress_one_role_of_a_multi_role_framework():
    d = Driver()
    d.register_agent("h1", "cpus:1;mem:256")
    d.register_agent("h2", "cpus:1;mem:256")
    fw = d.subscribe(roles=["a", "b"])
    d.call(ev.Suppress, fw, roles=("a",))
    offers = d.advance(3).offers(fw.id)
    assert offers and {o.role for o in offers} == {"b"}


def test_suppress_or_revive_of_a_foreign_role_is_400():
    d, _, fw = _setup(role="a")
    for kind in (ev.Suppress, ev.Revive):
        out = d.call(kind, fw, roles=("zzz",))
        (answer,) = out
        assert isinstance(answer, cmd.Respond) and answer.status == 400
        assert "'zzz'" in answer.message


def test_subscribe_with_suppressed_roles_gets_no_offers():
    d = Driver()
    d.register_agent()
    out = d.do(
        ev.Subscribe(
            request_id="r",
            framework_info={"user": "u", "name": "f", "role": "a"},
            suppressed_roles=("a",),
        )
    )
    (stream,) = out.of(cmd.OpenStream)
    assert d.advance(5).offers(stream.framework_id) == []


def test_offer_timeout_rescinds_and_reoffers_unfiltered():
    d = Driver(MasterOptions(offer_timeout_s=10))
    d.register_agent()
    fw = d.subscribe()
    offer = d.offer(fw)
    expiry = d.core.offers[offer.id].expires_at
    assert expiry is not None
    out = d.advance(expiry - 0.5 - d.now)
    assert out.rescinds(fw.id) == []
    out = d.advance(1.0)
    assert out.rescinds(fw.id) == [offer.id]
    assert offer.id not in d.core.offers
    again = out.offers(fw.id) or d.allocate().offers(fw.id)
    assert again and again[0].resources == offer.resources


def test_accepting_an_expired_offer_loses_the_tasks():
    d = Driver(MasterOptions(offer_timeout_s=2))
    agent_id, _ = d.register_agent()
    fw = d.subscribe()
    offer = d.offer(fw)
    d.advance(3)
    out = d.accept(fw, offer, launch(task_info("t1", agent_id)))
    _assert_master_status(out.update(fw.id, "t1"), TaskState.LOST, Reason.INVALID_OFFERS)


def test_no_offers_for_an_agent_without_multi_role_to_multi_role_frameworks():
    d = Driver()
    d.register_agent(capabilities=frozenset())
    multi = d.subscribe(roles=["a"])
    assert d.advance(3).offers(multi.id) == []
    single = d.subscribe("legacy", role="a")
    assert d.advance(3).offers(single.id)
