"""LocalCluster with real processes: it starts, agents register, an agent can be killed and
restarted, and stopping leaves no process behind."""

from __future__ import annotations

from pathlib import Path

import psutil  # type: ignore[import-untyped]

from agora.testing.cluster import LocalCluster, get_json, wait_until
from tests.integration.conftest import make_cluster


def test_cluster_starts_registers_agents_and_stops_without_leftovers(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path / "c")
    with cluster:
        state = cluster.master_state()
        registered = {a["pid"].split("@", 1)[1] for a in state["slaves"]}
        assert registered == set(cluster.agents)
        assert all(a["active"] for a in state["slaves"])
        assert get_json(cluster.agents[0], "/state")["pid"].endswith(cluster.agents[0])
        pids = [p.popen.pid for p in [cluster.master, *cluster.agent_processes] if p.popen]
        assert all(psutil.pid_exists(pid) for pid in pids)
    assert cluster.leftover_processes() == []
    assert not any(
        psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids
    )
    assert (tmp_path / "c" / "master.log").exists()  # logs stay in a given work dir


def test_killed_agent_is_restarted_and_registers_again(cluster: LocalCluster) -> None:
    before = cluster.wait_for_agents()
    address = cluster.agents[1]
    cluster.kill_agent(1)
    assert not cluster.agent_processes[1].alive
    assert cluster.restart_agent(1) == address
    after = cluster.wait_for_agents()
    assert address in after and len(after) >= len(before)


def test_temporary_work_dir_is_removed(tmp_path: Path) -> None:
    cluster = LocalCluster(agents=1, master_args=["--allocation-interval-s", "0.2"])
    with cluster:
        work_dir = cluster.work_dir
        assert work_dir.exists()
        wait_until((work_dir / "agent-0.log").exists, 5.0, "the agent log")
    assert not work_dir.exists()
    assert cluster.leftover_processes() == []
