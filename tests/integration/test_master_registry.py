"""The registry with a real master: what an operator sets survives a master crash, agents
come back under their ids, silent ones become unreachable, gone agents stay gone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agora.testing.cluster import LocalCluster, get_json, wait_until
from tests.integration.conftest import AGENT_RESOURCES, MASTER_ARGS
from tests.integration.master_process import request


def operator(address: str, body: dict[str, Any]) -> tuple[int, Any]:
    status, _, data = request(address, "POST", "/api/v1", body)
    try:
        return status, json.loads(data) if data else None
    except ValueError:
        return status, data.decode()


SCHEDULE = {
    "windows": [
        {
            "machine_ids": [{"hostname": "maintained.example", "ip": "10.0.0.9"}],
            "unavailability": {"start": {"nanoseconds": 2_000_000_000_000_000_000}},
        }
    ]
}


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    with LocalCluster(
        agents=2,
        work_dir=tmp_path / "cluster",
        agent_resources=AGENT_RESOURCES,
        master_args=MASTER_ARGS,
        start_timeout_s=60.0,
    ) as running:
        yield running


def test_weights_quota_schedule_and_agent_ids_survive_a_master_crash(
    cluster: LocalCluster,
) -> None:
    master = cluster.master_address
    before = cluster.wait_for_agents()
    weights = {
        "type": "UPDATE_WEIGHTS",
        "update_weights": {"weight_infos": [{"role": "eng", "weight": 3}]},
    }
    assert operator(master, weights)[0] == 200
    quota = {
        "type": "UPDATE_QUOTA",
        "update_quota": {
            "quota_configs": [
                {
                    "role": "eng",
                    "guarantees": {"cpus": {"value": 1}},
                    "limits": {"mem": {"value": 512}},
                }
            ]
        },
    }
    assert operator(master, quota)[0] == 200
    status, _, _ = request(master, "POST", "/master/maintenance/schedule", SCHEDULE)
    assert status == 200

    cluster.restart_master()
    after = cluster.wait_for_agents()
    assert after == before  # same addresses under the same agent ids

    status, body = operator(master, {"type": "GET_WEIGHTS"})
    assert body["get_weights"]["weight_infos"] == [{"role": "eng", "weight": 3.0}]
    status, body = operator(master, {"type": "GET_QUOTA"})
    (config,) = body["get_quota"]["status"]["configs"]
    assert config == {
        "role": "eng",
        "guarantees": {"cpus": {"value": 1.0}},
        "limits": {"mem": {"value": 512.0}},
    }
    schedule = get_json(master, "/master/maintenance/schedule")
    assert schedule["windows"][0]["machine_ids"] == SCHEDULE["windows"][0]["machine_ids"]
    status, body = operator(master, {"type": "GET_MAINTENANCE_STATUS"})
    draining = body["get_maintenance_status"]["status"]["draining_machines"]
    assert [m["id"]["hostname"] for m in draining] == ["maintained.example"]


def test_an_agent_that_does_not_return_after_a_failover_becomes_unreachable(
    cluster: LocalCluster,
) -> None:
    registered = cluster.wait_for_agents()
    gone_address = cluster.agents[1]
    cluster.kill_agent(1)
    cluster.restart_master("--agent-reregister-timeout-s", "2", wait=False)
    master = cluster.master_address

    def unreachable() -> Any:
        metrics = get_json(master, "/metrics/snapshot")
        return metrics["master/slaves_unreachable"] == 1.0 and metrics

    wait_until(unreachable, 20.0, "the silent agent to become unreachable")
    state = get_json(master, "/master/state")
    assert [a["id"] for a in state["slaves"]] == [registered[cluster.agents[0]]]
    assert state["unreachable_slaves"] == 1
    # It comes back: reachable again, under its old id.
    cluster.restart_agent(1)
    assert cluster.wait_for_agents()[gone_address] == registered[gone_address]
    wait_until(
        lambda: get_json(master, "/metrics/snapshot")["master/slaves_unreachable"] == 0.0,
        20.0,
        "the agent to be reachable again",
    )


def test_an_agent_marked_gone_is_shut_down_and_stays_gone_across_a_failover(
    cluster: LocalCluster,
) -> None:
    master = cluster.master_address
    registered = cluster.wait_for_agents()
    address = cluster.agents[0]
    agent_id = registered[address]
    body = {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": agent_id}}}
    assert operator(master, body)[0] == 200
    assert operator(master, body)[0] == 200  # idempotent
    process = cluster.agent_processes[0]
    wait_until(lambda: not process.alive, 20.0, "the gone agent to shut down")
    cluster.restart_master(wait=False)
    cluster.wait_for_agents()  # the other one
    # Still known as gone to the new master (an unknown agent would be 404).
    assert operator(master, body)[0] == 200
    # Started again, the machine joins as a new agent (Mesos forgets the old id of an
    # agent the master shut down); the gone id never comes back.
    cluster.restart_agent(0)
    assert cluster.wait_for_agents()[address] != agent_id
    state = get_json(master, "/master/state")
    assert agent_id not in [a["id"] for a in state["slaves"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "MARK_AGENT_GONE", "mark_agent_gone": {}}, "mark_agent_gone.agent_id.value"),
        (
            {"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [{}]}},
            "quota_configs[0].role",
        ),
        (
            {
                "type": "UPDATE_QUOTA",
                "update_quota": {
                    "quota_configs": [{"role": "a", "limits": {"cpus": {"value": -1}}}]
                },
            },
            "limits.cpus.value",
        ),
        ({"type": "UPDATE_MAINTENANCE_SCHEDULE", "update_maintenance_schedule": {}}, "'schedule'"),
        (
            {
                "type": "UPDATE_MAINTENANCE_SCHEDULE",
                "update_maintenance_schedule": {"schedule": {"windows": [{}]}},
            },
            "schedule.windows[0].machine_ids",
        ),
    ],
)
def test_bad_operator_changes_are_400_naming_the_field(
    cluster: LocalCluster, body: Any, field: str
) -> None:
    status, text = operator(cluster.master_address, body)
    assert status == 400 and field in str(text), (status, text)


def test_marking_an_unknown_agent_gone_is_404(cluster: LocalCluster) -> None:
    body = {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": "nope"}}}
    status, text = operator(cluster.master_address, body)
    assert status == 404 and "nope" in str(text)
