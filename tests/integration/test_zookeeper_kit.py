"""The ZooKeeper test kit (agora.testing.zookeeper): real servers come up serving, fail and
come back on demand, and leave no process behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from agora.testing.zookeeper import (
    DEBIAN_PACKAGE,
    ZooKeeperEnsemble,
    ZooKeeperMissing,
    four_letter_word,
    missing_zookeeper,
)
from tests.integration.agent_kit import alive


def test_a_standalone_server_serves_and_leaves_nothing(tmp_path: Path) -> None:
    if missing_zookeeper():
        pytest.skip(missing_zookeeper() or "")
    server = ZooKeeperEnsemble(work_dir=tmp_path / "zk")
    with server:
        assert server.nodes[0].mode() == "standalone"
        assert server.url("/mesos") == f"zk://127.0.0.1:{server.nodes[0].client_port}/mesos"
        assert "Zookeeper version: 3.8" in (four_letter_word(server.nodes[0].client_port) or "")
        pids = server.pids()
        assert len(pids) == 1
        log = (server.nodes[0].log_dir / "zookeeper.log").read_text()
        assert "binding to port" in log  # log4j writes the server's log where we said
    assert not any(alive(pid) for pid in pids)
    assert not server.pids()


def test_an_ensemble_fails_over_and_takes_a_node_back(
    zookeeper_ensemble: ZooKeeperEnsemble,
) -> None:
    modes = sorted(node.mode() or "-" for node in zookeeper_ensemble.nodes)
    assert modes == ["follower", "follower", "leader"]
    leader = zookeeper_ensemble.leader_index()
    killed_pid = zookeeper_ensemble.nodes[leader].popen.pid  # type: ignore[union-attr]
    zookeeper_ensemble.kill_node(leader)
    assert not alive(killed_pid)
    zookeeper_ensemble.wait_serving(timeout_s=30)  # the two left elect a new leader
    assert zookeeper_ensemble.leader_index() != leader
    zookeeper_ensemble.restart_node(leader)
    assert zookeeper_ensemble.nodes[leader].mode() == "follower"
    pids = zookeeper_ensemble.pids()
    assert len(pids) == 3
    zookeeper_ensemble.stop()
    assert not any(alive(pid) for pid in pids)


def test_missing_zookeeper_is_named_clearly(tmp_path: Path) -> None:
    reason = missing_zookeeper(jars=[tmp_path / "zookeeper.jar"])
    assert reason is not None
    assert f"'{DEBIAN_PACKAGE}' package" in reason and "zookeeper.jar" in reason
    expected = "needs Java" if missing_zookeeper() is None else "is not installed"
    with pytest.raises(ZooKeeperMissing, match=expected):
        ZooKeeperEnsemble(work_dir=tmp_path / "zk", java="no-such-java").start()
