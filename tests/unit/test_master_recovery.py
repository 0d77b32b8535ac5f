"""The registry in the master core: what is persisted before what depends on it, and
how a newly elected master recovers from it (reference §1.4, §4.3-4.7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agora.core.allocator.quota import Quota
from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master import registry as reg
from agora.core.master.info import AgentInfo
from agora.core.master.maintenance import InvalidSchedule, validate_schedule
from agora.core.master.model import MasterOptions, UnreachableAgent
from agora.core.quantities import Limits, Quantities
from agora.core.task_states import Reason, TaskState
from tests.unit.master_kit import AGENT_RESOURCES, MASTER_ID, Driver, Out, res

INFO = AgentInfo(hostname="h1", resources=res(AGENT_RESOURCES))


def persisted(out: Out) -> list[reg.Operation]:
    return [c.operation for c in out.of(cmd.Persist)]


def index_of(out: Out, kind: type) -> int:
    return next(i for i, c in enumerate(out) if isinstance(c, kind))


def recovered_driver(registry: reg.Registry, options: MasterOptions | None = None) -> Driver:
    d = Driver(options)
    out = d.do(ev.RegistryRecovered(registry=registry))
    assert persisted(out)[0] == reg.RecordLeader(d.core.info)
    return d


def reregister(d: Driver, agent_id: str, info: AgentInfo = INFO, tasks=()) -> Out:
    connection = d.new_connection()
    d.ponging[agent_id] = connection
    return d.do(
        ev.ReregisterAgent(connection_id=connection, agent_id=agent_id, info=info, tasks=tasks)
    )


# ------------------------------------------------------------ persisted first


def test_a_new_agent_is_admitted_durably_before_it_hears_it_is_registered():
    d = Driver()
    out = d.do(ev.RegisterAgent(connection_id="c", info=INFO))
    agent_id = f"{MASTER_ID}-S0"
    assert persisted(out) == [reg.AdmitAgent(agent_id, INFO)]
    assert index_of(out, cmd.Persist) < index_of(out, cmd.AcceptAgent)
    assert index_of(out, cmd.Persist) < index_of(out, cmd.SendToAgent)


def test_unreachable_is_recorded_before_any_framework_is_told():
    options = MasterOptions(agent_ping_timeout_s=1, max_agent_ping_timeouts=2)
    d = Driver(options)
    agent_id, _ = d.register_agent()
    fw = d.subscribe(caps=["PARTITION_AWARE"])
    d.launch_one(fw)
    del d.ponging[agent_id]
    out = d.advance(5)
    (operation,) = persisted(out)
    assert isinstance(operation, reg.MarkUnreachable) and operation.agent_id == agent_id
    assert out.update(fw.id, "t1").state is TaskState.UNREACHABLE
    assert index_of(out, cmd.Persist) < index_of(out, cmd.SendToFramework)


def test_an_unreachable_agent_that_returns_is_marked_reachable_first():
    options = MasterOptions(agent_ping_timeout_s=1, max_agent_ping_timeouts=2)
    d = Driver(options)
    agent_id, _ = d.register_agent()
    del d.ponging[agent_id]
    d.advance(5)
    assert agent_id in d.core.unreachable_agents
    out = reregister(d, agent_id)
    assert persisted(out) == [reg.MarkReachable(agent_id, INFO)]
    assert index_of(out, cmd.Persist) < index_of(out, cmd.AcceptAgent)


def test_weights_and_quota_are_persisted_before_the_200():
    d = Driver()
    out = d.do(ev.UpdateWeights(request_id="w", weights={"eng": 3}))
    assert persisted(out) == [reg.SetWeights({"eng": 3.0})]
    assert index_of(out, cmd.Persist) < index_of(out, cmd.Respond)
    quota = Quota(Quantities({"cpus": 1000}), Limits({"cpus": 2000}))
    out = d.do(ev.UpdateQuota(request_id="q", configs=(("eng", quota),)))
    assert persisted(out) == [reg.SetQuotas({"eng": quota})]
    assert index_of(out, cmd.Persist) < index_of(out, cmd.Respond)


def test_a_refused_change_persists_nothing():
    d = Driver()
    out = d.do(ev.UpdateWeights(request_id="w", weights={"eng": -1}))
    assert persisted(out) == [] and out.statuses() == [400]


def test_a_known_agent_reregistering_unchanged_writes_nothing():
    d = Driver()
    agent_id, _ = d.register_agent()
    assert persisted(reregister(d, agent_id)) == []
    bigger = AgentInfo(hostname="h1", resources=res("cpus:8;mem:4096"))
    assert persisted(reregister(d, agent_id, bigger)) == [reg.AdmitAgent(agent_id, bigger)]


# ------------------------------------------------------------------- recovery


def test_recovery_restores_weights_quota_schedule_and_agent_lists():
    quota = Quota(Quantities({"cpus": 1000}))
    schedule = validate_schedule(
        {
            "windows": [
                {
                    "machine_ids": [{"hostname": "h9"}],
                    "unavailability": {"start": {"nanoseconds": 5}},
                }
            ]
        }
    )
    d = recovered_driver(
        reg.Registry(
            agents={"a1": INFO},
            unreachable={"a2": UnreachableAgent(INFO, 7.0)},
            gone={"a3": 8.0},
            weights={"eng": 2.0},
            quotas={"eng": quota},
            maintenance_schedule=schedule,
        )
    )
    assert d.core.recovered_agents == {"a1": INFO}
    assert d.core.unreachable_agents["a2"].since == 7.0
    assert d.core.gone_agents == {"a3": 8.0}
    assert d.core.allocator.weight("eng") == 2.0
    assert d.core.allocator.roles().quota("eng") == quota
    assert d.core.maintenance_schedule == schedule


def test_a_recovered_agent_reregisters_without_a_write_and_keeps_its_tasks():
    d = recovered_driver(reg.Registry(agents={"a1": INFO}))
    fw = d.subscribe(checkpoint=True)
    report = ev.AgentTask(
        framework_id=fw.id,
        task_id="t1",
        name="t1",
        state=TaskState.RUNNING,
        resources=res("cpus:1;mem:128").allocate("*"),
    )
    out = reregister(d, "a1", tasks=(report,))
    assert persisted(out) == []
    assert d.core.recovered_agents == {}
    assert d.task(fw, "t1").state is TaskState.RUNNING


def test_recovered_agents_that_stay_away_become_unreachable_at_the_timeout():
    options = MasterOptions(agent_reregister_timeout_s=30)
    d = recovered_driver(reg.Registry(agents={"a1": INFO, "a2": INFO}), options)
    fw = d.subscribe(caps=["PARTITION_AWARE"])
    reregister(d, "a1")
    assert d.advance(29).of(cmd.Persist) == []
    out = d.advance(2)
    assert persisted(out) == [reg.MarkUnreachable("a2", INFO, 30.0)]
    assert set(d.core.unreachable_agents) == {"a2"} and d.core.recovered_agents == {}
    assert cmd.Failure(agent_id="a2") in out.events(fw.id)


@pytest.mark.parametrize(
    ("aware", "expected"), [(True, TaskState.UNREACHABLE), (False, TaskState.LOST)]
)
def test_unknown_tasks_get_no_answer_while_their_agent_may_still_return(aware, expected):
    options = MasterOptions(agent_reregister_timeout_s=30)
    d = recovered_driver(reg.Registry(agents={"a1": INFO}), options)
    fw = d.subscribe(caps=["PARTITION_AWARE"] if aware else [])
    assert d.call(ev.Reconcile, fw, tasks=(("t1", "a1"),)).updates(fw.id) == []
    assert d.call(ev.Reconcile, fw, tasks=(("t1", None),)).updates(fw.id) == []
    # A task said to be on another agent is answered at once.
    (other,) = d.call(ev.Reconcile, fw, tasks=(("t1", "elsewhere"),)).updates(fw.id)
    assert other.state is (TaskState.UNKNOWN if aware else TaskState.LOST)
    d.advance(31)
    (status,) = d.call(ev.Reconcile, fw, tasks=(("t1", "a1"),)).updates(fw.id)
    assert (status.state, status.reason) == (expected, Reason.RECONCILIATION)


def test_an_agent_new_to_the_registry_is_admitted_when_it_reregisters():
    d = recovered_driver(reg.Registry())
    out = reregister(d, "stranger")
    assert persisted(out) == [reg.AdmitAgent("stranger", INFO)]


def test_registry_gc_prunes_old_and_excess_entries():
    options = MasterOptions(
        registry_gc_interval_s=10, registry_max_agent_age_s=100, registry_max_agent_count=2
    )
    d = recovered_driver(
        reg.Registry(
            unreachable={f"u{i}": UnreachableAgent(INFO, float(i)) for i in range(3)},
            gone={"old": -500.0, "new": 0.0},
        ),
        options,
    )
    out = d.advance(10)
    assert persisted(out) == [reg.PruneAgents(unreachable=("u0",), gone=("old",))]
    assert set(d.core.unreachable_agents) == {"u1", "u2"} and set(d.core.gone_agents) == {"new"}


# ------------------------------------------------------------------ agent gone


@pytest.mark.parametrize(
    ("aware", "expected"), [(True, TaskState.GONE_BY_OPERATOR), (False, TaskState.LOST)]
)
def test_marking_a_registered_agent_gone(aware, expected):
    d = Driver()
    agent_id, _ = d.register_agent()
    fw = d.subscribe(caps=["PARTITION_AWARE"] if aware else [])
    d.launch_one(fw)
    out = d.do(ev.MarkAgentGone(request_id="g", agent_id=agent_id))
    assert isinstance(persisted(out)[0], reg.MarkGone)
    assert index_of(out, cmd.Persist) < index_of(out, cmd.SendToFramework)
    assert out.to_agent(agent_id, cmd.ShutdownAgent)
    status = out.update(fw.id, "t1")
    assert (status.state, status.reason) == (expected, Reason.AGENT_REMOVED_BY_OPERATOR)
    assert out.response("g").status == 200
    assert agent_id not in d.core.agents and agent_id in d.core.gone_agents
    again = d.do(ev.MarkAgentGone(request_id="g2", agent_id=agent_id))
    assert persisted(again) == [] and again.response("g2").status == 200
    back = reregister(d, agent_id)
    assert back.of(cmd.DropAgentConnection) and not back.of(cmd.AcceptAgent)


def test_marking_an_unreachable_agent_gone_ends_its_unreachable_tasks():
    options = MasterOptions(agent_ping_timeout_s=1, max_agent_ping_timeouts=2)
    d = Driver(options)
    agent_id, _ = d.register_agent()
    fw = d.subscribe(caps=["PARTITION_AWARE"])
    d.launch_one(fw)
    del d.ponging[agent_id]
    d.advance(5)
    out = d.do(ev.MarkAgentGone(request_id="g", agent_id=agent_id))
    assert out.update(fw.id, "t1").state is TaskState.GONE_BY_OPERATOR
    assert "t1" not in d.framework(fw).unreachable_tasks
    assert agent_id not in d.core.unreachable_agents


def test_marking_an_unknown_agent_gone_is_404():
    out = Driver().do(ev.MarkAgentGone(request_id="g", agent_id="nobody"))
    assert out.response("g").status == 404 and "nobody" in out.response("g").message
    assert persisted(out) == []


def test_marking_gone_is_refused_on_reconcile_as_gone_by_operator():
    d = Driver()
    agent_id, _ = d.register_agent()
    fw = d.subscribe(caps=["PARTITION_AWARE"])
    d.do(ev.MarkAgentGone(request_id="g", agent_id=agent_id))
    (status,) = d.call(ev.Reconcile, fw, tasks=(("t9", agent_id),)).updates(fw.id)
    assert status.state is TaskState.GONE_BY_OPERATOR


# ---------------------------------------------------------- maintenance schedule


def test_a_valid_schedule_is_persisted_and_kept():
    d = Driver()
    schedule = {
        "windows": [
            {
                "machine_ids": [{"hostname": "H1", "ip": "10.0.0.1"}],
                "unavailability": {"start": {"nanoseconds": "100"}, "duration": {"nanoseconds": 5}},
            }
        ]
    }
    out = d.do(ev.UpdateMaintenanceSchedule(request_id="s", schedule=schedule))
    (operation,) = persisted(out)
    assert isinstance(operation, reg.SetMaintenanceSchedule)
    window = operation.schedule["windows"][0]
    assert window["machine_ids"] == [{"hostname": "h1", "ip": "10.0.0.1"}]
    assert window["unavailability"] == {
        "start": {"nanoseconds": 100},
        "duration": {"nanoseconds": 5},
    }
    assert d.core.maintenance_schedule == operation.schedule
    assert out.response("s").status == 200


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ([], "'schedule' must be an object"),
        ({"windows": [{"machine_ids": []}]}, "schedule.windows[0].machine_ids"),
        ({"windows": [{"machine_ids": [{}]}]}, "needs a hostname or an ip"),
        ({"windows": [{"machine_ids": [{"hostname": "a"}]}]}, "schedule.windows[0].unavailability"),
        (
            {"windows": [{"machine_ids": [{"hostname": "a"}], "unavailability": {"start": {}}}]},
            "unavailability.start.nanoseconds",
        ),
        (
            {
                "windows": [
                    {
                        "machine_ids": [{"hostname": "a"}],
                        "unavailability": {"start": {"nanoseconds": 1}},
                    },
                    {
                        "machine_ids": [{"hostname": "A"}],
                        "unavailability": {"start": {"nanoseconds": 2}},
                    },
                ]
            },
            "in two windows",
        ),
    ],
)
def test_a_bad_schedule_is_400_naming_the_field(schedule, field):
    out = Driver().do(ev.UpdateMaintenanceSchedule(request_id="s", schedule=schedule))
    assert out.response("s").status == 400 and field in out.response("s").message
    assert persisted(out) == []
    with pytest.raises(InvalidSchedule):
        validate_schedule(schedule)


# ------------------------------------------------------------- registry laws

agent_ids = st.sampled_from(["a", "b", "c", "d"])
operations = st.one_of(
    st.builds(reg.AdmitAgent, agent_ids, st.just(INFO)),
    st.builds(reg.MarkReachable, agent_ids, st.just(INFO)),
    st.builds(reg.MarkUnreachable, agent_ids, st.just(INFO), st.floats(0, 100)),
    st.builds(reg.MarkGone, agent_ids, st.floats(0, 100)),
    st.builds(reg.RemoveAgent, agent_ids),
    st.builds(
        reg.PruneAgents,
        st.lists(agent_ids, max_size=2).map(tuple),
        st.lists(agent_ids, max_size=2).map(tuple),
    ),
)


@given(st.lists(operations, max_size=30))
def test_an_agent_is_never_both_admitted_and_unreachable(ops):
    registry = reg.Registry()
    for operation in ops:
        before = registry
        registry = registry.apply(operation)
        assert before.apply(operation) == registry  # apply never mutates
        assert not set(registry.agents) & set(registry.unreachable)
        assert not set(registry.gone) & (set(registry.agents) | set(registry.unreachable))
