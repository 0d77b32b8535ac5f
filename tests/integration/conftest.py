"""Fixtures that run real `agora master` and `agora agent` processes (agora.testing.cluster).

`cluster` is a fresh two-agent cluster per test; `shared_cluster` is one per module for tests
that only read or run short tasks. A failing test prints the processes' log tails."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from agora.testing.cluster import LocalCluster

AGENT_RESOURCES = [
    "cpus:2;mem:1024;disk:2048;ports:[31000-31499]",
    "cpus:2;mem:1024;disk:2048;ports:[31500-31999]",
]
MASTER_ARGS = ["--allocation-interval-s", "0.2"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _show_logs_on_failure(node: pytest.Item, cluster: LocalCluster) -> None:
    failed = any(
        getattr(getattr(node, f"report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )
    if failed:
        print(f"\n===== local cluster logs ({cluster.work_dir}) =====\n{cluster.logs(80)}")


def make_cluster(work_dir: Path, agents: int = 2) -> LocalCluster:
    return LocalCluster(
        agents=agents,
        work_dir=work_dir,
        agent_resources=AGENT_RESOURCES[:agents] if agents <= 2 else None,
        master_args=MASTER_ARGS,
        start_timeout_s=60.0,
    )


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalCluster]:
    with make_cluster(tmp_path / "cluster") as running:
        yield running
        _show_logs_on_failure(request.node, running)


@pytest.fixture(scope="module")
def shared_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    with make_cluster(tmp_path_factory.mktemp("shared-cluster")) as running:
        yield running
        failed = [
            item
            for item in request.session.items
            if getattr(item, "module", None) is request.module
            and getattr(getattr(item, "report_call", None), "failed", False)
        ]
        if failed:
            print(f"\n===== shared cluster logs ({running.work_dir}) =====\n{running.logs(80)}")
