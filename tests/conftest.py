"""Test-wide settings, and the ZooKeeper servers that ZooKeeper-backed tests share."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from agora.testing.zookeeper import ZooKeeperEnsemble, missing_zookeeper

# No per-example time limit: CI machines are slower and busier than laptops, and a
# slow example is not a failing one. Failures print the blob that reproduces them.
settings.register_profile("agora", deadline=None, print_blob=True)
settings.load_profile("agora")


# ---------------------------------------------------------------- ZooKeeper servers


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEnsemble]:
    """One standalone ZooKeeper server per test worker; give each test its own root
    (`zk_url`). Skipped, naming the Debian package, only where ZooKeeper is not installed."""
    reason = missing_zookeeper()
    if reason:
        pytest.skip(reason)
    with ZooKeeperEnsemble(work_dir=tmp_path_factory.mktemp("zookeeper")) as server:
        yield server


@pytest.fixture
def zk_url(zookeeper: ZooKeeperEnsemble) -> str:
    """A zk:// URL with a root path no other test uses, on the shared server."""
    return zookeeper.url(f"/test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def own_zookeeper(tmp_path: Path) -> Iterator[ZooKeeperEnsemble]:
    """A standalone server for this test alone (for tests that kill or restart it)."""
    reason = missing_zookeeper()
    if reason:
        pytest.skip(reason)
    with ZooKeeperEnsemble(work_dir=tmp_path / "zookeeper") as server:
        yield server


@pytest.fixture
def zookeeper_ensemble(tmp_path: Path) -> Iterator[ZooKeeperEnsemble]:
    """A 3-node ensemble for this test alone."""
    reason = missing_zookeeper()
    if reason:
        pytest.skip(reason)
    with ZooKeeperEnsemble(size=3, work_dir=tmp_path / "ensemble") as ensemble:
        yield ensemble
