"""Unmodified pymesos and mesoshttp given a zk:// URL find real Agora masters' leader and
subscribe to it; pymesos follows it through a failover."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agora.testing.cluster import LocalCluster
from agora.testing.zookeeper import ZooKeeperEnsemble
from tests.compat.harness import Recorder
from tests.compat.test_mesoshttp import SLOW_WAIT_S, Client


def ha_masters(tmp_path: Path, zk: str) -> LocalCluster:
    return LocalCluster(
        agents=0,
        masters=2,
        zk=zk,
        work_dir=tmp_path / "cluster",
        master_args=["--zk-session-timeout-s", "2"],
        start_timeout_s=60.0,
    )


@pytest.fixture
def masters(tmp_path: Path, own_zookeeper: ZooKeeperEnsemble) -> Iterator[LocalCluster]:
    # mesoshttp reads `/mesos/<child>` whatever its URL says: the root is /mesos.
    with ha_masters(tmp_path, own_zookeeper.url("/mesos")) as cluster:
        yield cluster


def test_pymesos_registers_with_the_leader_and_follows_it(
    masters: LocalCluster, recorder: Recorder, start_scheduler: Any
) -> None:
    assert masters.zk is not None
    start_scheduler(recorder, masters.zk, framework={"failover_timeout": 60})
    framework_id = recorder.wait_for_kind("registered").args[0]["value"]
    first = masters.master_address
    masters.kill_master()
    # pymesos sees the new leader in ZooKeeper and subscribes again with its id.
    recorder.wait_for(
        lambda events: (
            [e for e in events if e.kind == "reregistered"]
            or [e for e in events if e.kind == "registered"][1:]
        ),
        "pymesos to subscribe to the new leader",
        timeout_s=40.0,
    )
    second = masters.master_address
    assert second != first
    state = masters.master_state()
    assert framework_id in [f["id"] for f in state["frameworks"]]


def test_mesoshttp_subscribes_to_the_leader(masters: LocalCluster, recorder: Recorder) -> None:
    assert masters.zk is not None
    client = Client(masters.zk, "compat-mesoshttp-ha", recorder)
    client.thread.start()
    try:
        framework_id = recorder.wait_for_kind("registered", timeout_s=SLOW_WAIT_S).args[0]
        state = masters.master_state()
        assert framework_id in [f["id"] for f in state["frameworks"]]
    finally:
        client.stop()
