"""A real network partition: an agent in its own network namespace is cut off (its link
taken down, nothing reset) while its tasks run. The master marks it unreachable after
the ping timeouts; a PARTITION_AWARE framework hears TASK_UNREACHABLE, another TASK_LOST;
when the link comes back the agent re-registers and both hear TASK_RUNNING again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agora.testing.cluster import LocalCluster, get_json, wait_until
from agora.testing.netns import NetworkLab, unavailable_reason
from tests.integration.agent_kit import Framework, command_task

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))

RESOURCES = ["cpus:2;mem:1024;disk:1024;ports:[31000-31099]"] * 2
MASTER_ARGS = [
    "--allocation-interval-s",
    "0.2",
    "--agent-ping-timeout-s",
    "0.5",
    "--max-agent-ping-timeouts",
    "3",
]


@pytest.fixture
def partitioned(tmp_path: Path) -> Iterator[tuple[NetworkLab, LocalCluster]]:
    with NetworkLab(hosts=2) as lab:
        cluster = LocalCluster(
            agents=2,
            work_dir=tmp_path / "cluster",
            ip=lab.bridge_ip,
            agent_ips=[lab.host_ip(0), lab.host_ip(1)],
            agent_prefix=lambda i: lab.wrap(i, []),
            agent_resources=RESOURCES,
            master_args=MASTER_ARGS,
            start_timeout_s=60.0,
        )
        with cluster:
            yield lab, cluster


def launch_on(framework: Framework, agent_id: str, task_id: str) -> None:
    while True:
        offer = framework.offer()
        if offer["agent_id"]["value"] == agent_id:
            framework.launch(offer, [command_task(task_id, "sleep 600")])
            return
        framework.call({"type": "DECLINE", "decline": {"offer_ids": [offer["id"]]}})


def state_of(framework: Framework, task_id: str) -> Any:
    states = framework.states(task_id)
    return states[-1] if states else None


def test_a_partitioned_agent_is_unreachable_then_returns_with_its_tasks(
    partitioned: tuple[NetworkLab, LocalCluster],
) -> None:
    lab, cluster = partitioned
    agent_id = cluster.wait_for_agents()[cluster.agents[0]]
    aware = Framework(cluster.master_address, ("PARTITION_AWARE",))
    legacy = Framework(cluster.master_address)
    launch_on(aware, agent_id, "aware-task")
    launch_on(legacy, agent_id, "legacy-task")
    aware.until(lambda: state_of(aware, "aware-task") == "TASK_RUNNING", what="aware running")
    legacy.until(lambda: state_of(legacy, "legacy-task") == "TASK_RUNNING", what="legacy running")

    lab.cut(0)
    aware.until(
        lambda: state_of(aware, "aware-task") == "TASK_UNREACHABLE", what="TASK_UNREACHABLE"
    )
    legacy.until(lambda: state_of(legacy, "legacy-task") == "TASK_LOST", what="TASK_LOST")
    unreachable = aware.last("aware-task")
    assert unreachable["reason"] in ("REASON_AGENT_REMOVED", "REASON_SLAVE_REMOVED")
    assert "unreachable_time" in unreachable
    metrics = get_json(cluster.master_address, "/metrics/snapshot")
    assert metrics["master/slaves_unreachable"] == 1.0

    lab.heal(0)
    aware.until(
        lambda: state_of(aware, "aware-task") == "TASK_RUNNING", 60.0, "back to TASK_RUNNING"
    )
    legacy.until(
        lambda: state_of(legacy, "legacy-task") == "TASK_RUNNING", 60.0, "back to TASK_RUNNING"
    )
    assert aware.last("aware-task")["reason"] == "REASON_AGENT_REREGISTERED"
    assert cluster.wait_for_agents()[cluster.agents[0]] == agent_id
    wait_until(
        lambda: (
            get_json(cluster.master_address, "/metrics/snapshot")["master/slaves_unreachable"]
            == 0.0
        ),
        10.0,
        "the agent to be reachable",
    )
    # The same processes ran throughout: nothing was restarted.
    assert aware.states("aware-task").count("TASK_STARTING") == 1
    aware.close()
    legacy.close()
