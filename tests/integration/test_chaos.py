"""Chaos with real processes: a 3-node ZooKeeper ensemble, 3 masters and 3 agents, each
agent on its own host (a network namespace on a bridge). A framework keeps a few
hundred tasks starting and finishing while the test kills the leading master with
SIGKILL, kills an agent and starts it again, kills task processes, and cuts an agent
off the network and brings it back. Afterwards every task ended in a state the
framework was told, no task ran twice, no update was lost (agora.testing.chaos.judge)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agora.testing.chaos import ChaosFramework, Truth, judge
from agora.testing.cluster import LocalCluster
from agora.testing.netns import NetworkLab, unavailable_reason
from agora.testing.zookeeper import ZooKeeperEnsemble, missing_zookeeper

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
    pytest.mark.skipif(missing_zookeeper() is not None, reason=str(missing_zookeeper())),
]

AGENTS = 3
MASTER_ARGS = [
    "--allocation-interval-s",
    "0.2",
    "--zk-session-timeout-s",
    "3",
    "--agent-ping-timeout-s",
    "0.5",
    "--max-agent-ping-timeouts",
    "4",
    "--agent-reregister-timeout-s",
    "20",
]
AGENT_RESOURCES = ["cpus:2;mem:2048;disk:2048;ports:[31000-31099]"] * AGENTS


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[NetworkLab, ZooKeeperEnsemble, LocalCluster]]:
    with NetworkLab(hosts=AGENTS) as lab:
        ensemble = ZooKeeperEnsemble(size=3, work_dir=tmp_path / "zk", host=lab.bridge_ip)
        with ensemble:
            cluster = LocalCluster(
                agents=AGENTS,
                masters=3,
                zk=ensemble.url("/agora"),
                work_dir=tmp_path / "cluster",
                ip=lab.bridge_ip,
                agent_ips=[lab.host_ip(i) for i in range(AGENTS)],
                agent_prefix=lambda i: lab.wrap(i, []),
                agent_resources=AGENT_RESOURCES,
                master_args=MASTER_ARGS,
                start_timeout_s=90.0,
            )
            with cluster:
                try:
                    yield lab, ensemble, cluster
                except BaseException:
                    print(cluster.logs(60))
                    raise


async def until(predicate: Callable[[], object], what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def busiest_host(
    lab: NetworkLab, agent_ids: dict[str, str], framework: ChaosFramework
) -> int | None:
    """The host whose agent runs the most unfinished tasks (at least 3): cutting an
    agent the framework happens to have left idle would show no partition at all."""
    host_of = {
        agent_id: index
        for address, agent_id in agent_ids.items()
        for index in range(AGENTS)
        if address.rsplit(":", 1)[0] == lab.host_ip(index)
    }
    on_agent = Counter(framework.tasks[task].agent_id for task in framework.open_tasks())
    for agent_id, count in on_agent.most_common(1):
        if count >= 3 and agent_id in host_of:
            return host_of[agent_id]
    return None


async def chaos(
    lab: NetworkLab,
    cluster: LocalCluster,
    framework: ChaosFramework,
    truth_log: Path,
    agent_ids: dict[str, str],
) -> set[str]:
    """The faults, each once enough tasks have finished since the one before; returns
    the tasks whose process it killed."""
    killed: set[str] = set()

    def finished(count: int) -> Callable[[], bool]:
        return lambda: framework.count("TASK_FINISHED") >= count

    await until(finished(20), "20 tasks to finish")
    first = await asyncio.to_thread(cluster.kill_master)
    await until(lambda: cluster.leader_index() not in (None, first), "a new leader")
    await until(finished(60), "60 tasks to finish")
    await asyncio.to_thread(cluster.kill_agent, 1)
    await asyncio.to_thread(cluster.restart_agent, 1, wait=False)
    await until(finished(100), "100 tasks to finish")
    for task_id, pid in list(Truth.read(truth_log).running().items())[:3]:
        with contextlib.suppress(ProcessLookupError):  # it may just have ended by itself
            os.kill(pid, signal.SIGKILL)
            killed.add(task_id)
    await until(finished(130), "130 tasks to finish")
    await until(lambda: busiest_host(lab, agent_ids, framework) is not None, "a busy agent")
    cut = busiest_host(lab, agent_ids, framework)
    assert cut is not None
    lab.cut(cut)
    await until(lambda: framework.count("TASK_UNREACHABLE") > 0, "the cut agent's tasks")
    lab.heal(cut)
    await until(finished(170), "170 tasks to finish")
    await asyncio.to_thread(cluster.restart_master, index=first, wait=False)
    return killed


def test_tasks_survive_master_agent_executor_and_network_faults(
    world: tuple[NetworkLab, ZooKeeperEnsemble, LocalCluster], tmp_path: Path
) -> None:
    lab, _ensemble, cluster = world
    agent_ids = cluster.wait_for_agents()
    truth_log = tmp_path / "truth.log"
    framework = ChaosFramework(cluster.zk or "", truth_log, total=300, in_flight=40)

    killed: set[str] = set()

    async def scenario() -> None:
        run = asyncio.ensure_future(framework.run(timeout_s=150.0))
        killed.update(await chaos(lab, cluster, framework, truth_log, agent_ids))
        with contextlib.suppress(TimeoutError):  # judged below: it names what is missing
            await run

    started = time.monotonic()
    asyncio.run(scenario())
    problems = judge(framework, Truth.read(truth_log), killed)
    assert problems == [], "\n".join(problems[:40])
    # The faults really happened and the cluster came back whole.
    assert framework.count("TASK_FINISHED") > 200, framework.count("TASK_FINISHED")
    assert cluster.wait_for_agents(60.0) == agent_ids  # every agent under its old id
    print(f"chaos: {len(framework.tasks)} tasks in {time.monotonic() - started:.1f} s")
