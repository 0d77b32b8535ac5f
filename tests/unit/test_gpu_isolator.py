"""gpu/nvidia: whole devices, lowest free first, back to the pool at cleanup; a devices
cgroup denies the host's other NVIDIA devices where real device nodes exist."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from agora.agent.containerizer.gpu import NvidiaGpuIsolator, parse_query
from agora.agent.containerizer.model import Container, ContainerError
from agora.agent.containerizer.options import ContainerizerOptions
from agora.core.container.config import ContainerConfig
from agora.core.resource_text import parse_resources


def make_container(container_id: str, resources: str) -> Container:
    res = parse_resources(resources)
    config = ContainerConfig(container_id, "f1", "e1", "t1", "/tmp", "/tmp", res)
    return Container(container_id, config, res)


def isolator(
    tmp_path: Path, devices: tuple[int, ...] = (0, 1, 2), hierarchy: str | None = None
) -> NvidiaGpuIsolator:
    options = ContainerizerOptions(
        work_dir=str(tmp_path / "work"),
        isolation=("gpu/nvidia",),
        gpu_devices=devices,
        cgroups_hierarchy=hierarchy or str(tmp_path / "no-cgroups"),
        agent_key="test-" + uuid.uuid4().hex[:8],
    )
    return NvidiaGpuIsolator(options, dev=str(tmp_path / "dev"))


def test_lowest_free_devices_first_and_freed_at_cleanup(tmp_path: Path) -> None:
    gpu = isolator(tmp_path, devices=(3, 1, 0))
    a, b = make_container("a", "cpus:1;gpus:2"), make_container("b", "cpus:1;gpus:1")
    info_a = gpu.prepare(a)
    info_b = gpu.prepare(b)
    assert info_a is not None and info_b is not None
    assert info_a.env["NVIDIA_VISIBLE_DEVICES"] == "0,1"
    assert info_a.env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert info_b.env["NVIDIA_VISIBLE_DEVICES"] == "3"
    assert info_a.cgroups == []  # no devices controller here
    with pytest.raises(ContainerError, match="only 0"):
        gpu.prepare(make_container("c", "cpus:1;gpus:1"))
    gpu.cleanup(make_container("c", "cpus:1"))  # the refused one held nothing
    gpu.cleanup(a)
    assert gpu.free == {0, 1}
    info_d = gpu.prepare(make_container("d", "cpus:1;gpus:1"))
    assert info_d is not None and info_d.env["NVIDIA_VISIBLE_DEVICES"] == "0"


def test_fractional_gpus_are_refused(tmp_path: Path) -> None:
    gpu = isolator(tmp_path)
    with pytest.raises(ContainerError, match="whole numbers"):
        gpu.prepare(make_container("a", "cpus:1;gpus:0.5"))
    assert gpu.free == {0, 1, 2}


def test_no_gpus_no_variables(tmp_path: Path) -> None:
    gpu = isolator(tmp_path)
    info = gpu.prepare(make_container("a", "cpus:1"))
    assert info is not None and info.env == {}
    none = isolator(tmp_path, devices=())
    assert none.prepare(make_container("b", "cpus:1")) is None
    with pytest.raises(ContainerError, match="has none"):
        none.prepare(make_container("c", "cpus:1;gpus:1"))


def test_update_grows_and_shrinks(tmp_path: Path) -> None:
    gpu = isolator(tmp_path)
    a = make_container("a", "gpus:1")
    a.launch_info.merge(gpu.prepare(a))
    gpu.update(a, parse_resources("gpus:3"))
    assert gpu.held["a"] == [0, 1, 2] and gpu.free == set()
    assert a.launch_info.env["CUDA_VISIBLE_DEVICES"] == "0,1,2"
    gpu.update(a, parse_resources("gpus:1"))
    assert gpu.held["a"] == [0] and gpu.free == {1, 2}


def test_recover_keeps_known_containers_devices(tmp_path: Path) -> None:
    gpu = isolator(tmp_path)
    gpu.prepare(make_container("a", "gpus:1"))
    gpu.prepare(make_container("b", "gpus:1"))
    again = isolator(tmp_path)
    again.recover({"b"})
    assert again.held == {"b": [1]} and again.free == {0, 2}
    assert sorted(os.listdir(tmp_path / "work" / "gpus")) == ["b"]


def test_parse_nvidia_smi_query() -> None:
    assert parse_query("0, 2\n1, 0\nbad line\n") == {2: 0, 0: 1}


def fake_nodes(tmp_path: Path, minors: tuple[int, ...]) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    for minor in minors:
        os.mknod(dev / f"nvidia{minor}", stat.S_IFCHR | 0o600, os.makedev(195, minor))


@pytest.mark.skipif(os.geteuid() != 0, reason="creating device nodes needs root")
def test_devices_cgroup_denies_other_gpus(tmp_path: Path) -> None:
    """A directory stands in for the hierarchy: the isolator's writes are files."""
    fake_nodes(tmp_path, (0, 1))
    hierarchy = tmp_path / "cgroup"
    (hierarchy / "devices").mkdir(parents=True)
    gpu = isolator(tmp_path, devices=(0, 1), hierarchy=str(hierarchy))
    info = gpu.prepare(make_container("a", "gpus:1"))
    assert info is not None and len(info.cgroups) == 1
    assert info.cgroups[0].endswith(f"/devices/agora/{gpu.options.agent_key}/a")
    assert (Path(info.cgroups[0]) / "devices.deny").read_text() == "c 195:1 rwm"


REAL_DEVICES = "/sys/fs/cgroup/devices"
PROBE = """
import errno, os, sys
for name in ("nvidia0", "nvidia1"):
    try:
        os.close(os.open(os.path.join(sys.argv[1], name), os.O_RDWR))
        print(name, "OK")
    except OSError as error:
        print(name, errno.errorcode[error.errno])
"""


def open_errors(cgroup: str, dev: Path) -> dict[str, str]:
    """Open each node from a process placed in `cgroup`."""
    script = f'echo $$ > {cgroup}/cgroup.procs && exec "$0" -c "$1" "$2"'
    out = subprocess.run(
        ["sh", "-c", script, sys.executable, PROBE, str(dev)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split() for line in out.splitlines())


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.access(REAL_DEVICES, os.W_OK),
    reason="needs root and a writable cgroup v1 devices controller",
)
def test_real_devices_cgroup(tmp_path: Path) -> None:
    fake_nodes(tmp_path, (0, 1))
    gpu = isolator(tmp_path, devices=(0, 1), hierarchy="/sys/fs/cgroup")
    container = make_container("a", "gpus:1")
    try:
        info = gpu.prepare(container)
        assert info is not None
        assert open_errors(info.cgroups[0], tmp_path / "dev") == {
            "nvidia0": "ENXIO",  # allowed: the node opens, but no driver answers
            "nvidia1": "EPERM",  # denied by the cgroup
        }
        empty = gpu.prepare(make_container("b", "cpus:1"))
        assert empty is not None and empty.env == {} and len(empty.cgroups) == 1
    finally:
        gpu.cleanup(container)
        gpu.cleanup(make_container("b", "cpus:1"))
        root = Path(gpu.devices_root)
        assert not (root / "a").exists()
        root.rmdir()
