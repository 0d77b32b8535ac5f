"""Masters electing a leader in a real ZooKeeper: one leads, the others redirect to it
(307) or answer 503 while none leads; a killed leader is replaced once its ZooKeeper
session expires, and the successor recovers the registry the first one wrote."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agora.testing.cluster import LocalCluster, get_json, wait_until
from agora.testing.zookeeper import ZooKeeperEnsemble
from tests.integration.master_process import request

SESSION_TIMEOUT_S = "2"


@pytest.fixture
def masters(tmp_path: Path, zk_url: str) -> Iterator[LocalCluster]:
    with LocalCluster(
        agents=0,
        masters=3,
        zk=zk_url,
        work_dir=tmp_path / "cluster",
        master_args=["--allocation-interval-s", "0.2", "--zk-session-timeout-s", SESSION_TIMEOUT_S],
        start_timeout_s=60.0,
    ) as cluster:
        yield cluster


def subscribe_status(address: str) -> tuple[int, dict[str, str]]:
    body = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "f"}}}
    status, headers, _ = request(address, "POST", "/api/v1/scheduler", body)
    return status, headers


def followers(cluster: LocalCluster) -> list[str]:
    leader = cluster.master_address
    return [m.address for m in cluster.masters if m.alive and m.address and m.address != leader]


def test_one_master_leads_and_the_others_redirect_to_it(masters: LocalCluster) -> None:
    leader = masters.master_address
    assert masters.leader_index() is not None
    for address in followers(masters):
        status, headers = subscribe_status(address)
        assert status == 307
        assert headers["Location"] == f"http://{leader}/api/v1/scheduler"
        state_status, state_headers, _ = request(address, "GET", "/master/state?jsonp=f")
        assert state_status == 307 and state_headers["Location"].endswith("/master/state?jsonp=f")
        assert get_json(address, "/metrics/snapshot")["master/elected"] == 0.0
        assert request(address, "GET", "/health")[0] == 200
    assert get_json(leader, "/metrics/snapshot")["master/elected"] == 1.0


def test_a_killed_leader_is_replaced_and_the_registry_carries_over(masters: LocalCluster) -> None:
    first = masters.master_address
    weights = {
        "type": "UPDATE_WEIGHTS",
        "update_weights": {"weight_infos": [{"role": "ops", "weight": 4}]},
    }
    status, _, _ = request(first, "POST", "/api/v1", weights)
    assert status == 200
    killed = masters.kill_master()
    # The successor is elected once the dead leader's session expires (2 s here).
    second_index = (
        wait_until(
            lambda: (i := masters.leader_index()) is not None and i != killed and i + 1,
            30.0,
            "another master to lead",
        )
        - 1
    )
    second = masters.masters[second_index].address
    assert second is not None and second != first
    status, _, body = request(second, "POST", "/api/v1", {"type": "GET_WEIGHTS"})
    assert json.loads(body)["get_weights"]["weight_infos"] == [{"role": "ops", "weight": 4.0}]
    # The remaining follower now redirects to the new leader.
    (other,) = followers(masters)
    status, headers = subscribe_status(other)
    assert status == 307 and second in headers["Location"]
    # The killed master comes back as a follower of the new leader.
    masters.restart_master(index=killed, wait=False)
    restarted = masters.masters[killed].address
    assert restarted is not None
    wait_until(lambda: subscribe_status(restarted)[0] == 307, 30.0, "the old leader to follow")


def test_without_zookeeper_no_master_leads_and_all_answer_503(
    tmp_path: Path, own_zookeeper: ZooKeeperEnsemble
) -> None:
    with LocalCluster(
        agents=0,
        masters=2,
        zk=own_zookeeper.url("/agora"),
        work_dir=tmp_path / "cluster",
        master_args=["--zk-session-timeout-s", SESSION_TIMEOUT_S],
        start_timeout_s=60.0,
    ) as cluster:
        cluster.wait_for_leader()
        own_zookeeper.kill_node(0)
        addresses = [m.address for m in cluster.masters if m.address]
        # The leader stops leading as soon as its ZooKeeper connection drops.
        wait_until(lambda: cluster.leader_index() is None, 15.0, "the leader to stop leading")
        wait_until(
            lambda: all(subscribe_status(a)[0] == 503 for a in addresses),
            15.0,
            "503 without a leader",
        )
        own_zookeeper.restart_node(0)
        cluster.wait_for_leader(60.0)
        assert request(cluster.master_address, "GET", "/master/state")[0] == 200


def test_masters_announce_themselves_in_the_mesos_layout(
    masters: LocalCluster, zk_url: str
) -> None:
    from kazoo.client import KazooClient

    url = zk_url.removeprefix("zk://")
    hosts, _, path = url.partition("/")
    client = KazooClient(hosts=hosts)
    client.start(10)
    try:

        def contenders() -> list[str]:
            children = client.get_children("/" + path)
            members = sorted(c for c in children if c.startswith("json.info_"))
            return members if len(members) == 3 else []

        members = wait_until(contenders, 20.0, "three contenders")  # each contends on start
        assert all(len(c) == len("json.info_") + 10 for c in members)
        data: Any = json.loads(client.get(f"/{path}/{members[0]}")[0])
        leader = masters.master_address
        assert f"{data['address']['ip']}:{data['address']['port']}" == leader
        assert data["pid"] == f"master@{leader}"
    finally:
        client.stop()
        client.close()


def test_a_scheduler_given_the_zk_url_follows_the_leader(
    masters: LocalCluster, zk_url: str
) -> None:
    import asyncio

    from agora.client import SchedulerDriver

    async def scenario() -> None:
        info = {"user": "root", "name": "ha", "failover_timeout": 60.0}
        driver = SchedulerDriver(zk_url, info, subscribe_timeout_s=10.0)
        framework_id = await driver.wait_subscribed(30.0)
        first = driver.master
        assert first == masters.master_address
        await asyncio.to_thread(masters.kill_master)

        async def resubscribed() -> None:
            while driver.subscriptions < 2:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(resubscribed(), 40.0)
        assert driver.framework_id == framework_id and driver.master != first
        assert driver.master == await asyncio.to_thread(lambda: masters.master_address)
        await driver.stop()

    asyncio.run(scenario())


def test_agents_given_the_zk_url_follow_a_new_leader_with_their_tasks(
    tmp_path: Path, zk_url: str
) -> None:
    from tests.integration.agent_kit import Framework, command_task

    with LocalCluster(
        agents=2,
        masters=2,
        zk=zk_url,
        work_dir=tmp_path / "cluster",
        agent_resources=["cpus:2;mem:1024;disk:1024;ports:[31000-31099]"] * 2,
        master_args=["--allocation-interval-s", "0.2", "--zk-session-timeout-s", SESSION_TIMEOUT_S],
        start_timeout_s=60.0,
    ) as cluster:
        before = cluster.wait_for_agents()
        framework = Framework(cluster.master_address, ("PARTITION_AWARE",))
        framework.launch(framework.offer(), [command_task("long", "sleep 600")])
        framework.until(lambda: framework.states("long")[-1:] == ["TASK_RUNNING"], what="running")
        first = cluster.master_address
        cluster.kill_master()
        wait_until(
            lambda: cluster.leader_index() is not None and cluster.master_address != first,
            30.0,
            "a new leader",
        )
        assert cluster.wait_for_agents(60.0) == before  # the same agents under the same ids
        tasks = get_json(cluster.master_address, "/master/tasks")["tasks"]
        assert [(t["id"], t["state"]) for t in tasks] == [("long", "TASK_RUNNING")]
        framework.close()
