"""Container images end to end, without a Docker daemon: a real master and `agora agent
--isolation filesystem/linux,...` run command tasks in a plain rootfs directory, a
`docker save` tarball found through --docker-registry and an OCI image layout (all built
from busybox by tests/image_kit). Each task sees the image (its marker file, not the
host's files, whiteouts applied), writes into /mnt/mesos/sandbox land in the host
sandbox, volumes are bound read-only or read-write, and the container's writable layer
is gone once the task ends."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests import image_kit
from tests.integration.agent_kit import Framework, agent_process, command_task
from tests.integration.master_process import get_json, master_process, wait_for

ISOLATION = "filesystem/linux,posix/cpu,posix/mem"

# Runs inside the image: each check leaves a file in the sandbox for the test to read.
SCRIPT = """
cat /etc/marker > /mnt/mesos/sandbox/marker.txt
test -e /etc/debian_version && echo host > leaked.txt
test -e /etc/doomed && echo present > doomed.txt
ls /opt/dir > optdir.txt
echo "$MESOS_SANDBOX" > sandbox.txt
echo "$IMAGE_VAR" > imagevar.txt
pwd > pwd.txt
cat /data/hello > ro-read.txt
if touch /data/new 2>/dev/null; then echo writable; else echo readonly; fi > ro.txt
echo rw > scratch/file
"""


@pytest.fixture(autouse=True)
def _needs_root_and_busybox() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (mount namespaces, overlayfs, pivot_root)")
    image_kit.need_busybox()


def image_task(task_id: str, name: str, host_data: Path) -> dict[str, Any]:
    container = {
        "type": "MESOS",
        "mesos": {"image": {"type": "DOCKER", "docker": {"name": name}}},
        "volumes": [
            {"container_path": "/data", "host_path": str(host_data), "mode": "RO"},
            {
                "container_path": "scratch",
                "mode": "RW",
                "source": {"type": "SANDBOX_PATH", "sandbox_path": {"type": "SELF", "path": "vol"}},
            },
        ],
    }
    return command_task(task_id, SCRIPT, container=container)


def sandbox_of(agent: str, task_id: str) -> Path:
    state = get_json(agent, "/state")
    for framework in state["frameworks"] + state["completed_frameworks"]:
        for executor in framework["executors"] + framework["completed_executors"]:
            if executor["id"] == task_id:
                return Path(executor["directory"])
    raise AssertionError(f"no executor {task_id} in /state")


def check_sandbox(sandbox: Path, host_data: Path) -> None:
    def read(name: str) -> str:
        return (sandbox / name).read_text().strip()

    assert read("marker.txt") == "agora test image"
    assert not (sandbox / "leaked.txt").exists(), "the host's /etc is visible"
    assert not (sandbox / "doomed.txt").exists(), "a whited-out file is visible"
    assert read("optdir.txt") == "new"  # the opaque whiteout hid the lower layer's file
    assert read("sandbox.txt") == "/mnt/mesos/sandbox"
    assert read("pwd.txt") == "/mnt/mesos/sandbox"
    assert read("ro-read.txt") == "hello"
    assert read("ro.txt") == "readonly"
    assert not (host_data / "new").exists()
    assert read("vol/file") == "rw"


def run_images(tmp_path: Path, backend: str, images: dict[str, str]) -> None:
    registry = tmp_path / "registry"
    registry.mkdir()
    image_kit.docker_archive(registry / "busybox.tar")
    host_data = tmp_path / "data"
    host_data.mkdir()
    (host_data / "hello").write_text("hello\n")
    work = tmp_path / "agent-work"
    args = ["--resources", "cpus:4;mem:1024", "--isolation", ISOLATION]
    args += ["--docker-registry", str(registry), "--image-provisioner-backend", backend]
    with master_process(tmp_path) as master, agent_process(tmp_path, master, *args) as agent:
        fw = Framework(master)
        tasks = [image_task(task_id, name, host_data) for task_id, name in images.items()]
        tasks.append(image_task("missing", "no-such-image", host_data))
        fw.launch(fw.offer(), tasks)

        def ended(task_id: str) -> bool:
            states = fw.states(task_id)
            return bool(states) and states[-1] not in ("TASK_STARTING", "TASK_RUNNING")

        fw.until(lambda: all(ended(t) for t in [*images, "missing"]), 60.0, "tasks to end")
        missing = fw.last("missing")
        assert missing["state"] == "TASK_FAILED"
        assert missing["reason"] == "REASON_CONTAINER_LAUNCH_FAILED"
        assert "Failed to provision image 'no-such-image'" in missing["message"]
        for task_id in images:
            last = fw.last(task_id)
            assert last["state"] == "TASK_FINISHED", (task_id, last.get("message"))
            check_sandbox(sandbox_of(agent, task_id), host_data)
        containers = work / "provisioner" / "containers"
        wait_for(
            lambda: not containers.exists() or not os.listdir(containers),
            10.0,
            "the containers' writable layers to be removed",
        )
        with open("/proc/self/mountinfo") as f:
            assert str(work) not in f.read(), "a container mount leaked onto the host"
        fw.close()


def test_tasks_in_every_kind_of_image(tmp_path: Path) -> None:
    images = {
        "rootfs": str(image_kit.rootfs_dir(tmp_path / "rootfs")),
        "docker": "busybox",
        "oci": str(image_kit.oci_layout(tmp_path / "oci")),
    }
    run_images(tmp_path, "overlay", images)
    assert (tmp_path / "rootfs" / "etc" / "marker").exists()
    assert not (tmp_path / "rootfs" / "mnt").exists(), "the rootfs image was written to"


def test_copy_backend(tmp_path: Path) -> None:
    run_images(tmp_path, "copy", {"docker": "busybox:latest"})
