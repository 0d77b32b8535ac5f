"""The unmodified pymesos 0.3.15 scheduler driver against a real Agora master and agent."""

from __future__ import annotations

import threading

import pytest

from agora.testing.cluster import wait_until
from tests.compat.conftest import framework_in_state
from tests.compat.harness import LaunchOnce, Recorder, command_task, decline_all, task_state


def test_registers_and_teardown_completes_the_framework(master_only, recorder, start_scheduler):
    address = master_only.master_address
    driver = start_scheduler(recorder, address, use_addict=False)
    event = recorder.wait_for_kind("registered")
    framework_id, master_info = event.args
    assert framework_id["value"]
    assert driver.framework_id == framework_id["value"]
    host, port = address.split(":")
    assert master_info["hostname"] == host
    assert master_info["port"] == int(port)
    # pymesos reads GET /version and parses it as dotted integers.
    assert all(part.isdigit() for part in master_info["version"].split("."))
    assert driver.version == master_info["version"]
    assert framework_in_state(address, framework_id["value"])[0] == "frameworks"

    driver.stop()  # stop(failover=False) sends TEARDOWN
    driver.join()
    where = wait_until(
        lambda: framework_in_state(address, framework_id["value"]),
        10,
        "the framework in /master/state",
    )
    wait_until(
        lambda: framework_in_state(address, framework_id["value"])[0] == "completed_frameworks",
        10,
        "the framework to be completed",
    )
    assert where is not None


def test_framework_info_passes_through(master_only, recorder, start_scheduler):
    address = master_only.master_address
    start_scheduler(
        recorder,
        address,
        name="compat-info",
        use_addict=True,
        framework={
            "roles": ["compat"],
            "capabilities": [{"type": "MULTI_ROLE"}],
            "checkpoint": True,
            "failover_timeout": 7.5,
        },
    )
    framework_id = recorder.wait_for_kind("registered").args[0]
    assert framework_id.value  # addict
    _, framework = framework_in_state(address, framework_id["value"])
    assert framework["name"] == "compat-info"
    assert framework["roles"] == ["compat"]
    assert framework["checkpoint"] is True
    assert framework["failover_timeout"] == 7.5
    types = set(framework["capabilities"])  # /master/state lists capability names
    # pymesos adds GPU_RESOURCES itself once /version says >= 1.0.0
    assert {"MULTI_ROLE", "GPU_RESOURCES"} <= types


def test_reconcile_unknown_task_is_lost_or_unknown(master_only, recorder, start_scheduler):
    """Explicit reconciliation of a task the master never saw (Mesos: TASK_UNKNOWN for
    PARTITION_AWARE frameworks, TASK_LOST otherwise), reason REASON_RECONCILIATION, no uuid."""

    recorder.on_registered = lambda driver: driver.reconcileTasks(
        [{"task_id": {"value": "never-launched"}}]
    )
    start_scheduler(recorder, master_only.master_address)
    status = recorder.wait_for(
        lambda evs: [e.args[0] for e in evs if (task_state(e) or ("",))[0] == "never-launched"],
        "the reconciliation update",
    )[0]
    assert status["state"] == "TASK_LOST"
    assert status["reason"] == "REASON_RECONCILIATION"
    assert status["source"] == "SOURCE_MASTER"
    assert "uuid" not in status


@pytest.mark.parametrize("use_addict", [False, True])
def test_command_task_finishes_with_implicit_acks(cluster, recorder, start_scheduler, use_addict):
    address = cluster.master_address
    recorder.on_offers = LaunchOnce(lambda offer: [command_task("hi", offer, "echo hi")])
    start_scheduler(recorder, address, use_addict=use_addict)
    framework_id = recorder.wait_for_kind("registered").args[0]["value"]
    status = recorder.wait_for_state("hi", "TASK_FINISHED")
    assert status["agent_id"]["value"]
    assert "uuid" in status
    assert status["source"] == "SOURCE_EXECUTOR"
    assert "TASK_RUNNING" in recorder.states("hi")
    # The implicit ACKNOWLEDGE of the terminal update lets the master complete the task.
    wait_until(
        lambda: any(
            t["id"] == "hi" and t["state"] == "TASK_FINISHED"
            for t in framework_in_state(address, framework_id)[1]["completed_tasks"]
        ),
        15,
        "the acknowledged task in completed_tasks",
    )


def test_failing_command_fails_with_explicit_acks(cluster, recorder, start_scheduler):
    acked = threading.Event()

    def ack(driver, status):
        driver.acknowledgeStatusUpdate(status)
        if status["state"] == "TASK_FAILED":
            acked.set()

    recorder.on_offers = LaunchOnce(lambda offer: [command_task("fail", offer, "exit 3")])
    recorder.on_update = ack
    start_scheduler(recorder, cluster.master_address, implicit_acknowledgements=False)
    status = recorder.wait_for_state("fail", "TASK_FAILED")
    assert status["source"] == "SOURCE_EXECUTOR"
    assert "3" in status.get("message", "")
    assert acked.wait(10)


def test_kill_running_task(cluster, recorder, start_scheduler):
    def kill_when_running(driver, status):
        if status["state"] == "TASK_RUNNING":
            driver.killTask(status["task_id"])

    recorder.on_offers = LaunchOnce(lambda offer: [command_task("sleeper", offer, "sleep 100")])
    recorder.on_update = kill_when_running
    start_scheduler(recorder, cluster.master_address)
    recorder.wait_for_state("sleeper", "TASK_RUNNING")
    status = recorder.wait_for_state("sleeper", "TASK_KILLED", timeout_s=20)
    assert status["agent_id"]["value"]


def test_reconcile_running_task(cluster, recorder, start_scheduler):
    """Explicit, then implicit reconciliation of a running task: TASK_RUNNING updates with
    REASON_RECONCILIATION and no uuid; then the task is killed."""
    steps: list[str] = []

    def on_update(driver, status):
        reconciled = status.get("reason") == "REASON_RECONCILIATION"
        if status["state"] == "TASK_RUNNING" and not reconciled and not steps:
            steps.append("explicit")
            driver.reconcileTasks([{"task_id": status["task_id"], "agent_id": status["agent_id"]}])
        elif reconciled and steps == ["explicit"]:
            steps.append("implicit")
            driver.reconcileTasks([])
        elif reconciled and steps == ["explicit", "implicit"]:
            steps.append("kill")
            driver.killTask(status["task_id"])

    recorder.on_offers = LaunchOnce(lambda offer: [command_task("rec", offer, "sleep 100")])
    recorder.on_update = on_update
    start_scheduler(recorder, cluster.master_address)
    recorder.wait_for_state("rec", "TASK_KILLED", timeout_s=20)
    reconciled = [
        e.args[0]
        for e in recorder.of_kind("statusUpdate")
        if e.args[0].get("reason") == "REASON_RECONCILIATION"
    ]
    assert len(reconciled) >= 2
    for status in reconciled:
        assert status["state"] == "TASK_RUNNING"
        assert status["task_id"]["value"] == "rec"
        assert status["agent_id"]["value"]
        assert "uuid" not in status
    assert steps == ["explicit", "implicit", "kill"]


def test_decline_with_filters_then_revive(cluster, recorder, start_scheduler):
    declined = threading.Event()

    def decline_for_an_hour(driver, offers):
        if not declined.is_set():
            decline_all(driver, offers, refuse_seconds=3600)
            declined.set()
        else:
            decline_all(driver, offers)

    recorder.on_offers = decline_for_an_hour
    driver = start_scheduler(recorder, cluster.master_address)
    recorder.wait_for_kind("resourceOffers")
    assert declined.wait(10)
    # The only agent is filtered for an hour: no offer may arrive (a short negative wait).
    with pytest.raises(AssertionError, match="timed out"):
        recorder.wait_for(
            lambda evs: len([e for e in evs if e.kind == "resourceOffers"]) > 1,
            "a second offer",
            timeout_s=3,
        )
    # No updates or offers are in flight, so calling from the test thread is safe here.
    driver.reviveOffers()
    recorder.wait_for(
        lambda evs: len([e for e in evs if e.kind == "resourceOffers"]) > 1, "an offer after REVIVE"
    )


def test_failover_keeps_the_framework_for_a_new_driver(
    master_only, io_thread_failures, start_scheduler
):
    address = master_only.master_address
    first = Recorder(io_thread_failures)
    driver = start_scheduler(first, address, framework={"failover_timeout": 60})
    framework_id = first.wait_for_kind("registered").args[0]["value"]
    driver.stop(failover=True)  # no TEARDOWN: the framework waits for a failover
    driver.join()
    wait_until(
        lambda: framework_in_state(address, framework_id)[1].get("active") is False,
        10,
        "the framework to be inactive",
    )
    second = Recorder(io_thread_failures)
    start_scheduler(
        second, address, framework={"id": {"value": framework_id}, "failover_timeout": 60}
    )
    master_info = second.wait_for_kind("reregistered").args[0]
    assert master_info["port"] == int(address.split(":")[1])
    where, framework = framework_in_state(address, framework_id)
    assert where == "frameworks"
    assert framework["active"] is True
