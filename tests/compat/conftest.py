"""Fixtures for the compatibility tier: real Agora processes, unmodified third-party clients.

The clients are installed by `bin/install-compat` (run by `bin/test`); without them the tier is
skipped with that hint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("pymesos", reason="pymesos is not installed: run bin/install-compat")
pytest.importorskip("mesoshttp.client", reason="mesoshttp is not installed: run bin/install-compat")

import pymesos  # type: ignore[import-untyped]
import pymesos.process  # type: ignore[import-untyped]

from agora.testing.cluster import LocalCluster
from tests.compat.harness import IoThreadFailures, Recorder

AGENT_RESOURCES = "cpus:4;mem:2048;disk:4096;ports:[31000-31999]"


@pytest.fixture(scope="session")
def master_only() -> Iterator[LocalCluster]:
    """A master with no agents (registration, teardown, operator API)."""
    with LocalCluster(agents=0) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """A master and one agent; every test uses its own framework and tears it down."""
    with LocalCluster(agents=1, agent_resources=AGENT_RESOURCES) as local:
        yield local


@pytest.fixture(autouse=True)
def io_thread_failures(monkeypatch: pytest.MonkeyPatch) -> IoThreadFailures:
    """Record pymesos IO-thread deaths instead of letting them interrupt pytest's main thread."""
    failures = IoThreadFailures()
    monkeypatch.setattr(pymesos.process, "thread", failures)
    return failures


@pytest.fixture(autouse=True)
def _pymesos_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pymesos")
    caplog.set_level(logging.DEBUG, logger="mesoshttp")


@pytest.fixture
def recorder(io_thread_failures: IoThreadFailures) -> Recorder:
    return Recorder(io_thread_failures)


@pytest.fixture
def start_scheduler(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., Any]]:
    """start_scheduler(recorder, master_address, **driver_kwargs) -> a started driver.

    Every driver started here is stopped (with teardown, unless the test already stopped it)."""
    drivers: list[Any] = []

    def start(sched: Recorder, master: str, name: str | None = None, **kwargs: Any) -> Any:
        framework = {
            "user": "root",
            "name": name or f"compat-{request.node.name}"[:60],
            "hostname": "127.0.0.1",
        }
        framework.update(kwargs.pop("framework", {}))
        driver = pymesos.MesosSchedulerDriver(sched, framework, master, **kwargs)
        drivers.append(driver)
        driver.start()
        return driver

    yield start
    for driver in drivers:
        with contextlib.suppress(Exception):
            driver.stop()
        with contextlib.suppress(Exception):
            driver.join()


def get_json(address: str, path: str) -> Any:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as response:
        return json.loads(response.read())


def framework_in_state(address: str, framework_id: str) -> Any:
    """('frameworks' | 'completed_frameworks', framework) from /master/state, or None."""
    state = get_json(address, "/master/state")
    for key in ("frameworks", "completed_frameworks"):
        for framework in state.get(key, []):
            if framework.get("id") == framework_id:
                return key, framework
    return None
