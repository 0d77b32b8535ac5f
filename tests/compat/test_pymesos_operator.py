"""pymesos's operator driver (`MesosOperatorMasterDriver`) against a real Agora master.

It posts JSON (no Accept header) to `/api/v1/operator`, which Mesos serves by prefix routing."""

from __future__ import annotations

import pymesos  # type: ignore[import-untyped]

from tests.compat.harness import Recorder


def test_get_health_version_state(master_only):
    address = master_only.master_address
    driver = pymesos.MesosOperatorMasterDriver(address)  # simple calls need no start()

    health = driver.getHealth()
    assert health == {"type": "GET_HEALTH", "get_health": {"healthy": True}}

    version = driver.getVersion()
    assert version["type"] == "GET_VERSION"
    info = version["get_version"]["version_info"]
    assert all(part.isdigit() for part in info["version"].split("."))

    state = driver.getState()
    assert state["type"] == "GET_STATE"
    get_state = state["get_state"]
    for key in ("get_tasks", "get_executors", "get_frameworks", "get_agents"):
        assert key in get_state

    frameworks = driver.getFrameworks()
    assert frameworks["type"] == "GET_FRAMEWORKS"

    master = driver.getMaster()
    assert master["type"] == "GET_MASTER"
    assert master["get_master"]["master_info"]["port"] == int(address.split(":")[1])


def test_get_agents_lists_the_agent(cluster):
    driver = pymesos.MesosOperatorMasterDriver(cluster.master_address)
    agents = driver.getAgents()["get_agents"]["agents"]
    assert len(agents) == 1
    assert agents[0]["agent_info"]["id"]["value"]
    state = driver.getState()["get_state"]
    assert [a["agent_info"]["id"] for a in state["get_agents"]["agents"]] == [
        agents[0]["agent_info"]["id"]
    ]


class OperatorRecorder(pymesos.OperatorMaster):  # type: ignore[misc]
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def frameworkAdded(self, framework_info):
        self.recorder._record("frameworkAdded", framework_info)

    def frameworkUpdated(self, framework_info):
        self.recorder._record("frameworkUpdated", framework_info)

    def frameworkRemoved(self, framework_info):
        self.recorder._record("frameworkRemoved", framework_info)

    def taskAdded(self, task_info):
        self.recorder._record("taskAdded", task_info)

    def taskUpdated(self, task_info):
        self.recorder._record("taskUpdated", task_info)

    def agentAdded(self, agent_info):
        self.recorder._record("agentAdded", agent_info)

    def agentRemoved(self, agent_id):
        self.recorder._record("agentRemoved", agent_id)


def test_subscribe_streams_framework_events(master_only, io_thread_failures, start_scheduler):
    events = Recorder(io_thread_failures)
    operator = pymesos.MesosOperatorMasterDriver(
        master_only.master_address, OperatorRecorder(events)
    )
    operator.start()
    try:
        wait_subscribed = Recorder(io_thread_failures)
        scheduler = start_scheduler(
            wait_subscribed, master_only.master_address, name="compat-operator-events"
        )
        framework_id = wait_subscribed.wait_for_kind("registered").args[0]["value"]
        added = events.wait_for(
            lambda evs: [
                e
                for e in evs
                if e.kind == "frameworkAdded"
                and e.args[0]["framework_info"]["id"]["value"] == framework_id
            ],
            "FRAMEWORK_ADDED",
        )
        assert added[0].args[0]["framework_info"]["name"] == "compat-operator-events"
        scheduler.stop()
        removed = events.wait_for(
            lambda evs: [
                e
                for e in evs
                if e.kind == "frameworkRemoved" and e.args[0]["id"]["value"] == framework_id
            ],
            "FRAMEWORK_REMOVED",
        )
        assert removed
    finally:
        operator.stop()
        operator.join()
