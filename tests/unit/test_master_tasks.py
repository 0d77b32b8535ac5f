"""Status updates, ACKNOWLEDGE, KILL, SHUTDOWN and MESSAGE on the master core."""

from __future__ import annotations

import pytest

from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master.info import TaskStatus
from agora.core.task_states import Reason, Source, TaskState
from tests.unit.master_kit import Driver, executor_info, launch, res, task_info


def _launched(task_id: str = "t1", **subscribe):
    d = Driver()
    agent_id, _ = d.register_agent()
    fw = d.subscribe(**subscribe)
    d.launch_one(fw, task_id, cpus=1, mem=128)
    return d, agent_id, fw


# -------------------------------------------------------------- status updates


def test_update_is_forwarded_with_the_agent_id():
    d, agent_id, fw = _launched()
    uuid, out = d.status(fw, agent_id, "t1", TaskState.RUNNING, message="up")
    (status,) = out.updates(fw.id)
    assert status.task_id == "t1"
    assert status.state is TaskState.RUNNING
    assert status.agent_id == agent_id
    assert status.uuid == uuid
    assert status.source is Source.EXECUTOR
    assert status.message == "up"
    assert status.timestamp == d.now
    task = d.task(fw, "t1")
    assert task.state is TaskState.RUNNING
    assert (task.status_update_state, task.status_update_uuid) == (TaskState.RUNNING, uuid)
    assert task.latest_status() == status


def test_task_state_follows_latest_state_not_the_update_being_delivered():
    d, agent_id, fw = _launched()
    _, out = d.status(fw, agent_id, "t1", TaskState.STARTING, latest_state=TaskState.RUNNING)
    (status,) = out.updates(fw.id)
    assert status.state is TaskState.STARTING  # the framework sees updates in order
    task = d.task(fw, "t1")
    assert task.state is TaskState.RUNNING
    assert task.status_update_state is TaskState.STARTING


def test_terminal_latest_state_frees_resources_before_the_ack():
    d, agent_id, fw = _launched()
    # All of the agent but t1's share is offered and then declined for a long time.
    offer = d.offer(fw)
    d.call(ev.Decline, fw, offer_ids=(offer.id,), refuse_seconds=3600)
    _, out = d.status(fw, agent_id, "t1", TaskState.RUNNING, latest_state=TaskState.FINISHED)
    assert out.update(fw.id, "t1").state is TaskState.RUNNING
    task = d.task(fw, "t1")
    assert task.state is TaskState.FINISHED
    assert "t1" in d.framework(fw).tasks  # kept until the terminal update is acknowledged
    # t1's share is back: the agent is offered whole again (a filter only refuses
    # offers it covers entirely, and it does not cover t1's share).
    freed = d.allocate().offers(fw.id)
    assert [o.resources for o in freed] == [d.agent_info(agent_id).resources.allocate("*")]


def test_task_ended_on_agent_frees_resources_and_reoffers_at_once():
    d, agent_id, fw = _launched()
    starting, _ = d.status(fw, agent_id, "t1", TaskState.STARTING)
    offer = d.offer(fw)
    d.call(ev.Decline, fw, offer_ids=(offer.id,), refuse_seconds=3600)
    out = d.do(
        ev.TaskEndedOnAgent(
            agent_id=agent_id, framework_id=fw.id, task_id="t1", state=TaskState.FINISHED
        )
    )
    assert not out.updates(fw.id)  # the framework still gets its updates in order
    task = d.task(fw, "t1")
    assert task.state is TaskState.FINISHED
    assert task.status_update_state is TaskState.STARTING
    # An event-triggered pass is due now, not at the next batch allocation.
    assert d.core.next_deadline() == d.now
    freed = d.tick().offers(fw.id)
    assert [o.resources for o in freed] == [d.agent_info(agent_id).resources.allocate("*")]
    # The queued updates still arrive; the acknowledged terminal one completes the task.
    d.ack(fw, agent_id, "t1", starting)
    finished, out = d.status(fw, agent_id, "t1", TaskState.FINISHED)
    assert out.update(fw.id, "t1").state is TaskState.FINISHED
    d.ack(fw, agent_id, "t1", finished)
    assert "t1" not in d.framework(fw).tasks


@pytest.mark.parametrize("state", [TaskState.RUNNING, TaskState.KILLING])
def test_task_ended_on_agent_ignores_non_terminal_states(state):
    d, agent_id, fw = _launched()
    d.do(ev.TaskEndedOnAgent(agent_id=agent_id, framework_id=fw.id, task_id="t1", state=state))
    assert d.task(fw, "t1").state is TaskState.STAGING


def test_task_ended_on_another_agent_is_ignored():
    d, _, fw = _launched()
    other, _ = d.register_agent(hostname="h2")
    d.do(
        ev.TaskEndedOnAgent(
            agent_id=other, framework_id=fw.id, task_id="t1", state=TaskState.FAILED
        )
    )
    assert d.task(fw, "t1").state is TaskState.STAGING


def test_resources_of_finished_tasks_wait_for_the_batch_when_reoffer_is_off():
    from agora.core.master.model import MasterOptions

    d = Driver(MasterOptions(reoffer_freed_resources=False))
    agent_id, _ = d.register_agent()
    fw = d.subscribe()
    d.launch_one(fw, "t1", cpus=1, mem=128)
    d.status(fw, agent_id, "t1", TaskState.FINISHED)
    assert d.core.next_deadline() != d.now


def test_ack_of_the_terminal_update_removes_the_task():
    d, agent_id, fw = _launched()
    running, _ = d.status(fw, agent_id, "t1", TaskState.RUNNING)
    out = d.ack(fw, agent_id, "t1", running)
    assert out.to_agent(agent_id) == [cmd.AcknowledgeUpdate(fw.id, "t1", running)]
    assert out.statuses() == [202]
    assert "t1" in d.framework(fw).tasks
    finished, _ = d.status(fw, agent_id, "t1", TaskState.FINISHED)
    assert "t1" in d.framework(fw).tasks
    out = d.ack(fw, agent_id, "t1", finished)
    assert out.to_agent(agent_id) == [cmd.AcknowledgeUpdate(fw.id, "t1", finished)]
    framework = d.framework(fw)
    assert "t1" not in framework.tasks
    assert [t.task_id for t in framework.completed_tasks] == ["t1"]
    assert framework.completed_tasks[0].state is TaskState.FINISHED
    assert d.core.agents[agent_id].tasks == {}


def test_ack_of_an_older_update_keeps_the_terminal_task():
    d, agent_id, fw = _launched()
    running, _ = d.status(fw, agent_id, "t1", TaskState.RUNNING, latest_state=TaskState.FAILED)
    d.ack(fw, agent_id, "t1", running)
    assert "t1" in d.framework(fw).tasks  # the terminal update is not delivered yet
    failed, _ = d.status(fw, agent_id, "t1", TaskState.FAILED)
    d.ack(fw, agent_id, "t1", failed)
    assert "t1" not in d.framework(fw).tasks


def test_duplicate_of_an_acknowledged_update_is_reacknowledged_not_forwarded():
    d, agent_id, fw = _launched()
    running, _ = d.status(fw, agent_id, "t1", TaskState.RUNNING)
    d.ack(fw, agent_id, "t1", running)
    # The agent did not get the acknowledgement and retries the same update.
    _, out = d.status(fw, agent_id, "t1", TaskState.RUNNING, uuid=running)
    assert out.updates(fw.id) == []
    assert out.to_agent(agent_id) == [cmd.AcknowledgeUpdate(fw.id, "t1", running)]


def test_duplicate_of_an_acknowledged_terminal_update_after_removal():
    d, agent_id, fw = _launched()
    finished, _ = d.status(fw, agent_id, "t1", TaskState.FINISHED)
    d.ack(fw, agent_id, "t1", finished)
    _, out = d.status(fw, agent_id, "t1", TaskState.FINISHED, uuid=finished)
    assert out.updates(fw.id) == []
    assert out.to_agent(agent_id) == [cmd.AcknowledgeUpdate(fw.id, "t1", finished)]
    assert "t1" not in d.framework(fw).tasks


def test_unacknowledged_duplicate_is_forwarded_again():
    d, agent_id, fw = _launched()
    running, _ = d.status(fw, agent_id, "t1", TaskState.RUNNING)
    _, out = d.status(fw, agent_id, "t1", TaskState.RUNNING, uuid=running)
    assert [s.uuid for s in out.updates(fw.id)] == [running]


def test_illegal_transition_never_leaves_a_terminal_state():
    d, agent_id, fw = _launched()
    d.status(fw, agent_id, "t1", TaskState.FINISHED)
    d.status(fw, agent_id, "t1", TaskState.RUNNING)
    assert d.task(fw, "t1").state is TaskState.FINISHED
    d.status(fw, agent_id, "t1", TaskState.FAILED)
    assert d.task(fw, "t1").state is TaskState.FINISHED


def test_terminal_state_releases_resources_only_once():
    d, agent_id, fw = _launched()
    offer = d.offer(fw)
    d.call(ev.Decline, fw, offer_ids=(offer.id,), refuse_seconds=3600)
    d.status(fw, agent_id, "t1", TaskState.FAILED)
    d.status(fw, agent_id, "t1", TaskState.KILLED)
    d.status(fw, agent_id, "t1", TaskState.FINISHED, latest_state=TaskState.FINISHED)
    # The allocator's books are not corrupted: the agent adds up to its total.
    holdings = d.core.allocator.holdings(agent_id)
    available = d.core.allocator.available(agent_id)
    total = d.core.allocator.total(agent_id)
    assert available + sum(holdings.values(), res("")).unallocate() == total


def test_update_from_an_unknown_agent_is_ignored():
    d, _, fw = _launched()
    _, out = d.status(fw, "nobody", "t1", TaskState.RUNNING)
    assert list(out) == []


def test_update_for_a_removed_framework_shuts_it_down_on_the_agent():
    d, agent_id, fw = _launched(failover_timeout=0)
    d.call(ev.Teardown, fw)
    _, out = d.status(fw, agent_id, "t1", TaskState.KILLED)
    assert out.to_agent(agent_id) == [cmd.ShutdownFramework(fw.id)]


def test_updates_to_a_disconnected_framework_are_dropped():
    d, agent_id, fw = _launched(failover_timeout=60)
    d.do(ev.FrameworkDisconnected(framework_id=fw.id, stream_id=fw.stream_id))
    _, out = d.status(fw, agent_id, "t1", TaskState.RUNNING)
    assert out.of(cmd.SendToFramework) == []
    assert d.task(fw, "t1").state is TaskState.RUNNING  # still recorded


# ------------------------------------------------------------------ ACKNOWLEDGE


@pytest.mark.parametrize("uuid", [b"", b"short", b"x" * 17])
def test_ack_with_a_bad_uuid_is_400(uuid):
    d, agent_id, fw = _launched()
    out = d.ack(fw, agent_id, "t1", uuid)
    (answer,) = out
    assert isinstance(answer, cmd.Respond) and answer.status == 400
    assert "'acknowledge.uuid'" in answer.message


def test_ack_needs_the_current_stream():
    d, agent_id, fw = _launched()
    running, _ = d.status(fw, agent_id, "t1", TaskState.RUNNING)
    out = d.call(ev.Acknowledge, fw, agent_id=agent_id, task_id="t1", uuid=running, stream_id="old")
    assert out.statuses() == [400]
    assert out.of(cmd.SendToAgent) == []


# ------------------------------------------------------------------------ KILL


def test_kill_of_a_known_task_goes_to_its_agent():
    d, agent_id, fw = _launched()
    policy = {"grace_period": {"nanoseconds": 5_000_000_000}}
    out = d.call(ev.Kill, fw, task_id="t1", kill_policy=policy)
    assert out.statuses() == [202]
    assert out.to_agent(agent_id) == [cmd.KillTask(fw.id, "t1", policy)]
    assert out.updates(fw.id) == []
    assert d.task(fw, "t1").state is TaskState.STAGING  # until the agent reports


@pytest.mark.parametrize(
    ("partition_aware", "expected"), [(False, TaskState.LOST), (True, TaskState.UNKNOWN)]
)
def test_kill_of_an_unknown_task_answers_as_reconciliation(partition_aware, expected):
    d, _agent_id, fw = _launched(caps=["PARTITION_AWARE"] if partition_aware else [])
    out = d.call(ev.Kill, fw, task_id="ghost")
    assert out.of(cmd.SendToAgent) == []
    status = out.update(fw.id, "ghost")
    assert status.state is expected
    assert status.reason is Reason.RECONCILIATION
    assert status.source is Source.MASTER
    assert status.uuid is None


def test_kill_of_an_unknown_task_on_a_registered_agent_is_gone():
    d, agent_id, fw = _launched(caps=["PARTITION_AWARE"])
    out = d.call(ev.Kill, fw, task_id="ghost", agent_id=agent_id)
    assert out.update(fw.id, "ghost").state is TaskState.GONE


def test_kill_of_a_finished_task_answers_its_state():
    d, agent_id, fw = _launched()
    d.status(fw, agent_id, "t1", TaskState.FINISHED)
    out = d.call(ev.Kill, fw, task_id="t1")
    assert out.of(cmd.SendToAgent) == []
    status = out.update(fw.id, "t1")
    assert status.state is TaskState.FINISHED
    assert status.reason is Reason.RECONCILIATION


# --------------------------------------------------------- SHUTDOWN and MESSAGE


def test_shutdown_goes_to_the_agent():
    d, agent_id, fw = _launched()
    out = d.call(ev.Shutdown, fw, executor_id="e1", agent_id=agent_id)
    assert out.statuses() == [202]
    assert out.to_agent(agent_id) == [cmd.ShutdownExecutor(fw.id, "e1")]


def test_message_goes_to_the_executor():
    d, agent_id, fw = _launched()
    out = d.call(ev.Message, fw, agent_id=agent_id, executor_id="e1", data=b"hi")
    assert out.statuses() == [202]
    assert out.to_agent(agent_id) == [cmd.MessageToExecutor(fw.id, "e1", b"hi")]


def test_executor_exited_is_a_failure_event():
    d = Driver()
    agent_id, _ = d.register_agent()
    fw = d.subscribe()
    offer = d.offer(fw)
    execu = executor_info("e1")
    d.accept(fw, offer, launch(task_info("t1", agent_id, command=None, executor=execu)))
    assert d.framework(fw).executor(agent_id, "e1") is not None
    out = d.do(
        ev.ExecutorExited(agent_id=agent_id, framework_id=fw.id, executor_id="e1", status=256)
    )
    assert out.events(fw.id) == [cmd.Failure(agent_id=agent_id, executor_id="e1", status=256)]
    assert d.framework(fw).executor(agent_id, "e1") is None


def test_executor_message_reaches_the_framework():
    d, agent_id, fw = _launched()
    out = d.do(
        ev.ExecutorMessage(agent_id=agent_id, framework_id=fw.id, executor_id="e1", data=b"yo")
    )
    assert out.events(fw.id) == [cmd.FrameworkMessage(agent_id, "e1", b"yo")]


def test_master_statuses_have_no_uuid():
    status = TaskStatus(task_id="t", state=TaskState.LOST)
    assert status.visible_to(True) is status
