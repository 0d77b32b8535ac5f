"""SUBSCRIBE, failover, disconnection, TEARDOWN and UPDATE_FRAMEWORK on the master core."""

from __future__ import annotations

import pytest

from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.task_states import Reason, Source, TaskState
from tests.unit.master_kit import MASTER_ID, Driver, launch, task_info

# ------------------------------------------------------------------ SUBSCRIBE


def test_new_framework_gets_a_stream_then_subscribed():
    d = Driver()
    out = d.subscribe_call({"user": "u", "name": "f"})
    assert [type(c) for c in out] == [cmd.OpenStream, cmd.SendToFramework]
    stream, sent = out
    assert isinstance(stream, cmd.OpenStream) and isinstance(sent, cmd.SendToFramework)
    assert stream.framework_id == f"{MASTER_ID}-0000"
    assert stream.stream_id
    assert sent.framework_id == stream.framework_id
    assert sent.event == cmd.Subscribed(
        f"{MASTER_ID}-0000", d.core.options.heartbeat_interval_s, d.core.info
    )
    framework = d.core.frameworks[stream.framework_id]
    assert framework.connected and framework.active
    assert framework.info.id == stream.framework_id
    assert framework.info.raw["id"] == {"value": stream.framework_id}


def test_framework_ids_are_numbered_in_order():
    d = Driver()
    assert [d.subscribe(f"f{i}").id for i in range(3)] == [
        f"{MASTER_ID}-0000",
        f"{MASTER_ID}-0001",
        f"{MASTER_ID}-0002",
    ]


@pytest.mark.parametrize(
    ("info", "words"),
    [
        (
            {"capabilities": [{"type": "MULTI_ROLE"}], "role": "a"},
            ["'FrameworkInfo.role'", "must not be set", "MULTI_ROLE"],
        ),
        (
            {"roles": ["a"]},
            ["'FrameworkInfo.roles'", "must not be set", "not MULTI_ROLE"],
        ),
        (
            {"capabilities": [{"type": "MULTI_ROLE"}], "roles": ["a", "a"]},
            ["'FrameworkInfo.roles'", "duplicate"],
        ),
        ({"role": "a b"}, ["'FrameworkInfo.roles'", "'a b'", "whitespace"]),
        ({"role": "/a"}, ["'FrameworkInfo.roles'", "'/a'", "'/'"]),
        ({"role": "a//b"}, ["'FrameworkInfo.roles'", "'//'"]),
        ({"role": "-a"}, ["'FrameworkInfo.roles'", "'-'"]),
        ({"role": ".."}, ["'FrameworkInfo.roles'", "'..'"]),
        ({"role": "a/*"}, ["'FrameworkInfo.roles'", "'*'"]),
        (
            {"capabilities": [{"type": "MULTI_ROLE"}], "roles": ["ok", "no way"]},
            ["'FrameworkInfo.roles'", "'no way'"],
        ),
        ({"failover_timeout": -1}, ["'FrameworkInfo.failover_timeout'", "non-negative"]),
        ({"checkpoint": "yes"}, ["'FrameworkInfo.checkpoint'", "boolean"]),
    ],
)
def test_invalid_framework_info_is_refused_naming_the_problem(info, words):
    d = Driver()
    out = d.subscribe_call({"user": "u", "name": "f", **info})
    (refusal,) = out
    assert isinstance(refusal, cmd.RefuseSubscription)
    for word in words:
        assert word in refusal.message, refusal.message
    assert not d.core.frameworks


def test_missing_user_or_name_is_refused():
    d = Driver()
    (refusal,) = d.subscribe_call({"name": "f"})
    assert isinstance(refusal, cmd.RefuseSubscription)
    assert "'FrameworkInfo.user'" in refusal.message
    (refusal,) = d.subscribe_call({"user": "u"})
    assert isinstance(refusal, cmd.RefuseSubscription)
    assert "'FrameworkInfo.name'" in refusal.message


def test_suppressed_roles_must_be_the_frameworks():
    d = Driver()
    out = d.do(
        ev.Subscribe(
            request_id="r",
            framework_info={"user": "u", "name": "f", "role": "a"},
            suppressed_roles=("b",),
        )
    )
    (refusal,) = out
    assert isinstance(refusal, cmd.RefuseSubscription)
    assert "'b'" in refusal.message


def test_call_framework_id_must_match_framework_info_id():
    d = Driver()
    fw = d.subscribe()
    out = d.do(ev.Subscribe(request_id="r", framework_info=fw.info, framework_id="someone-else"))
    assert out == [
        cmd.Respond("r", 400, "'framework_id' differs from 'subscribe.framework_info.id'")
    ]


def test_failover_closes_the_old_stream_and_issues_a_new_one():
    d = Driver()
    fw = d.subscribe()
    new, out = d.resubscribe(fw)
    assert new.stream_id != fw.stream_id
    assert out.of(cmd.CloseStream) == [
        cmd.CloseStream(fw.id, fw.stream_id, "Framework failed over")
    ]
    (stream,) = out.of(cmd.OpenStream)
    assert stream.framework_id == fw.id
    assert out.events(fw.id, cmd.Subscribed) == [
        cmd.Subscribed(fw.id, d.core.options.heartbeat_interval_s, d.core.info)
    ]
    # Order: the old stream is closed before the new one opens.
    kinds = [type(c) for c in out]
    assert kinds.index(cmd.CloseStream) < kinds.index(cmd.OpenStream)
    # The old stream id is no longer good for calls; the new one is.
    old = d.call(ev.Revive, fw)
    assert old.statuses() == [400]
    fresh = d.call(ev.Revive, new)
    assert fresh.statuses() == [202]
    assert len(d.core.frameworks) == 1


def test_failover_keeps_user_and_checkpoint_but_refuses_a_new_principal():
    d = Driver()
    fw = d.subscribe(principal="p", checkpoint=True)
    new, _ = d.resubscribe(fw, user="other", checkpoint=False, name="renamed")
    info = d.framework(new).info
    assert (info.user, info.checkpoint, info.name) == ("u", True, "renamed")
    out = d.subscribe_call({**new.info, "principal": "q"})
    assert len(out) == 1
    assert out.refusals() == ["Changing framework's principal is not allowed."]
    # The current subscription is untouched.
    assert d.framework(new).stream_id == new.stream_id
    assert d.framework(new).connected


def test_failover_rescinds_nothing_but_regenerates_offers():
    d = Driver()
    d.register_agent()
    fw = d.subscribe()
    first = d.offer(fw)
    new, out = d.resubscribe(fw)
    assert out.rescinds(fw.id) == []  # the old stream got "failed over"; no RESCIND
    assert first.id not in d.core.offers
    again = d.offer(new)
    assert again.id != first.id
    assert again.resources == first.resources


def test_resubscribing_a_removed_framework_is_refused():
    d = Driver()
    fw = d.subscribe()
    d.call(ev.Teardown, fw)
    out = d.subscribe_call(fw.info)
    assert len(out) == 1
    assert out.refusals() == ["Framework has been removed"]


def test_unknown_framework_id_in_subscribe_is_accepted_as_recovered():
    d = Driver()
    out = d.subscribe_call({"user": "u", "name": "f", "id": {"value": "old-master-0007"}})
    (stream,) = out.of(cmd.OpenStream)
    assert stream.framework_id == "old-master-0007"
    assert d.core.frameworks["old-master-0007"].connected


# ------------------------------------------------------------ call envelope checks


@pytest.mark.parametrize(
    "call",
    [
        lambda fw: ev.Revive(request_id="x", framework_id=fw.id, stream_id=None),
        lambda fw: ev.Decline(request_id="x", framework_id=fw.id, stream_id=None, offer_ids=()),
        lambda fw: ev.Teardown(request_id="x", framework_id=fw.id, stream_id=None),
    ],
)
def test_call_without_stream_id_is_400(call):
    d = Driver()
    fw = d.subscribe()
    out = d.do(call(fw))
    assert out == [
        cmd.Respond("x", 400, "All non-subscribe calls should include 'Mesos-Stream-Id'")
    ]
    assert fw.id in d.core.frameworks


def test_call_with_wrong_stream_id_is_400_naming_both():
    d = Driver()
    fw = d.subscribe()
    out = d.call(ev.Teardown, fw, stream_id="bogus")
    (answer,) = out
    assert isinstance(answer, cmd.Respond) and answer.status == 400
    assert "'bogus'" in answer.message and fw.id in answer.message
    assert fw.id in d.core.frameworks


def test_call_for_unknown_framework_is_400():
    d = Driver()
    out = d.do(ev.Revive(request_id="x", framework_id="nope", stream_id="s"))
    assert out == [cmd.Respond("x", 400, "Framework cannot be found")]


def test_call_from_disconnected_framework_is_403():
    d = Driver()
    fw = d.subscribe(failover_timeout=60)
    d.do(ev.FrameworkDisconnected(framework_id=fw.id, stream_id=fw.stream_id))
    out = d.call(ev.Revive, fw)
    assert [(r.status, r.message) for r in out.of(cmd.Respond)] == [
        (403, "Framework is not subscribed")
    ]
    assert len(out) == 1


# ------------------------------------------------------- disconnect and failover


def _running(d: Driver, fw, task_id: str = "t1") -> str:
    if not d.core.agents:
        d.register_agent()
    out = d.launch_one(fw, task_id)
    (run,) = out.of(cmd.SendToAgent)
    d.status(fw, run.agent_id, task_id, TaskState.RUNNING)
    return run.agent_id


def test_disconnect_rescinds_offers_silently_and_deactivates():
    d = Driver()
    agent_id, _ = d.register_agent()
    fw = d.subscribe(failover_timeout=60)
    offer = d.offer(fw)
    out = d.do(ev.FrameworkDisconnected(framework_id=fw.id, stream_id=fw.stream_id))
    assert list(out) == []  # nothing is sent: the stream is gone
    assert offer.id not in d.core.offers
    framework = d.framework(fw)
    assert not framework.connected and not framework.active
    assert framework.offers == set()
    # No offers while disconnected, but the resources went back to the allocator.
    assert d.allocate().offers(fw.id) == []
    other = d.subscribe("g")
    assert d.offer(other).agent_id == agent_id


def test_disconnect_of_an_old_stream_is_ignored():
    d = Driver()
    fw = d.subscribe(failover_timeout=60)
    new, _ = d.resubscribe(fw)
    d.do(ev.FrameworkDisconnected(framework_id=fw.id, stream_id=fw.stream_id))
    assert d.framework(new).connected


def test_failover_timeout_removes_the_framework_and_kills_its_tasks():
    d = Driver()
    fw = d.subscribe(failover_timeout=30)
    agent_id = _running(d, fw)
    d.do(ev.FrameworkDisconnected(framework_id=fw.id, stream_id=fw.stream_id))
    assert d.advance(29.0).to_agent(agent_id, cmd.ShutdownFramework) == []
    assert fw.id in d.core.frameworks
    out = d.advance(1.5)
    assert out.to_agent(agent_id, cmd.ShutdownFramework) == [cmd.ShutdownFramework(fw.id)]
    assert out.events(fw.id) == []  # the framework is gone: nothing to tell it
    assert fw.id not in d.core.frameworks
    removed = d.core.completed_frameworks[fw.id]
    (task,) = removed.completed_tasks
    assert task.state is TaskState.KILLED
    status = task.latest_status()
    assert status is not None
    assert (status.state, status.reason, status.source) == (
        TaskState.KILLED,
        Reason.FRAMEWORK_REMOVED,
        Source.MASTER,
    )
    assert d.core.agents[agent_id].tasks == {}
    # Its resources are free again for others.
    other = d.subscribe("g")
    assert d.offer(other).resources == d.agent_info(agent_id).resources.allocate("*")


def test_resubscribing_within_the_failover_timeout_keeps_tasks():
    d = Driver()
    fw = d.subscribe(failover_timeout=30)
    agent_id = _running(d, fw)
    d.do(ev.FrameworkDisconnected(framework_id=fw.id, stream_id=fw.stream_id))
    d.advance(20)
    new, out = d.resubscribe(fw)
    assert out.of(cmd.CloseStream) == []  # the old stream was already gone
    out = d.advance(60)
    assert out.to_agent(agent_id, cmd.ShutdownFramework) == []
    assert d.task(new, "t1").state is TaskState.RUNNING
    assert d.framework(new).active


def test_zero_failover_timeout_removes_at_the_next_tick():
    d = Driver()
    fw = d.subscribe()
    agent_id = _running(d, fw)
    d.do(ev.FrameworkDisconnected(framework_id=fw.id, stream_id=fw.stream_id))
    assert d.core.next_deadline() == d.now
    out = d.tick()
    assert out.to_agent(agent_id, cmd.ShutdownFramework) == [cmd.ShutdownFramework(fw.id)]
    assert fw.id in d.core.completed_frameworks


# -------------------------------------------------------------------- TEARDOWN


def test_teardown_removes_everything_at_once():
    d = Driver()
    fw = d.subscribe(failover_timeout=3600)
    agent_id = _running(d, fw)
    offer = d.offer(fw)
    out = d.call(ev.Teardown, fw)
    assert out.statuses() == [202]
    assert out.to_agent(agent_id, cmd.ShutdownFramework) == [cmd.ShutdownFramework(fw.id)]
    assert out.of(cmd.CloseStream) == [cmd.CloseStream(fw.id, fw.stream_id)]
    assert out.updates(fw.id) == []
    assert offer.id not in d.core.offers
    assert fw.id in d.core.completed_frameworks
    (task,) = d.core.completed_frameworks[fw.id].completed_tasks
    assert task.state is TaskState.KILLED
    assert task.statuses[-1].reason is Reason.FRAMEWORK_REMOVED
    # Later calls: the framework no longer exists.
    again = d.call(ev.Revive, fw)
    assert [(r.status, r.message) for r in again.of(cmd.Respond)] == [
        (400, "Framework has been removed")
    ]


# ------------------------------------------------------------ UPDATE_FRAMEWORK


def test_update_framework_changes_name_and_answers_200():
    d = Driver()
    fw = d.subscribe()
    out = d.call(ev.UpdateFramework, fw, framework_info={**fw.info, "name": "renamed"})
    assert len(out) == 1 and out.statuses() == [200]
    assert d.framework(fw).info.name == "renamed"


@pytest.mark.parametrize(
    ("field", "value"), [("principal", "other"), ("user", "root"), ("checkpoint", True)]
)
def test_update_framework_refuses_immutable_fields(field, value):
    d = Driver()
    fw = d.subscribe()
    out = d.call(ev.UpdateFramework, fw, framework_info={**fw.info, field: value})
    (answer,) = out
    assert isinstance(answer, cmd.Respond)
    assert answer.status == 400
    assert f"'FrameworkInfo.{field}'" in answer.message
    assert d.framework(fw).info.user == "u"


def test_update_framework_with_invalid_info_is_400():
    d = Driver()
    fw = d.subscribe()
    out = d.call(ev.UpdateFramework, fw, framework_info={**fw.info, "roles": ["x"]})
    (answer,) = out
    assert isinstance(answer, cmd.Respond) and answer.status == 400
    assert "'FrameworkInfo.roles'" in answer.message


def test_update_framework_removing_a_role_rescinds_its_offers():
    d = Driver()
    d.register_agent("h1", "cpus:2;mem:1024")
    d.register_agent("h2", "cpus:2;mem:1024")
    fw = d.subscribe(roles=["a", "b"])
    out = d.allocate()
    offers = out.offers(fw.id)
    assert sorted(o.role for o in offers) == ["a", "b"]
    doomed = next(o for o in offers if o.role == "b")
    kept = next(o for o in offers if o.role == "a")
    info = {**fw.info, "roles": ["a"]}
    out = d.call(ev.UpdateFramework, fw, framework_info=info)
    assert out.statuses() == [200]
    assert out.rescinds(fw.id) == [doomed.id]
    assert kept.id in d.core.offers and doomed.id not in d.core.offers
    # The rescinded agent is re-offered, for the remaining role.
    again = d.offer(fw)
    assert (again.agent_id, again.role) == (doomed.agent_id, "a")


def test_update_framework_suppressed_roles_must_be_the_frameworks():
    d = Driver()
    fw = d.subscribe(role="a")
    out = d.call(ev.UpdateFramework, fw, framework_info=fw.info, suppressed_roles=("b",))
    (answer,) = out
    assert isinstance(answer, cmd.Respond) and answer.status == 400
    assert "'b'" in answer.message


def test_subscribing_framework_info_is_sent_to_agents_on_failover():
    d = Driver()
    fw = d.subscribe(failover_timeout=60)
    agent_id, _ = d.register_agent()
    offer = d.offer(fw)
    execu = {
        "executor_id": {"value": "e1"},
        "command": {"value": "exec"},
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}],
    }
    d.accept(fw, offer, launch(task_info("t1", agent_id, command=None, executor=execu)))
    _, out = d.resubscribe(fw, name="v2")
    (update,) = out.to_agent(agent_id, cmd.UpdateFrameworkInfo)
    assert update.framework.name == "v2"


def test_update_framework_adding_a_role_brings_offers_for_it():
    d = Driver()
    d.register_agent("h1", "cpus:2;mem:1024")
    fw = d.subscribe(roles=["a"])
    offer = d.offer(fw)
    d.call(ev.Decline, fw, offer_ids=(offer.id,), refuse_seconds=1000)
    out = d.call(ev.UpdateFramework, fw, framework_info={**fw.info, "roles": ["a", "b"]})
    assert out.statuses() == [200]
    assert [o.role for o in d.advance(3).offers(fw.id)] == ["b"]
