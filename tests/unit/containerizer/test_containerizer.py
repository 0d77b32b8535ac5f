"""The containerizer's orchestration with a recording supervisor and a recording isolator:
what reaches the supervisor, in which order the phases run, how failures are reported."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Collection, Coroutine
from typing import Any

import pytest

from agora.agent.containerizer.containerizer import (
    Containerizer,
    UnknownIsolatorError,
    isolator_names,
)
from agora.agent.containerizer.isolator import Isolator
from agora.agent.containerizer.launch_info import LaunchInfo, Mount, Overlay
from agora.agent.containerizer.model import Container
from agora.agent.containerizer.options import ContainerizerOptions
from agora.core.agent import commands as cmd
from agora.core.container.config import ContainerConfig, Limitation, task_user
from agora.core.resource_text import parse_resources
from agora.core.task_states import Reason


class RecordingSupervisor:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


class RecordingIsolator(Isolator):
    name = "test/recording"

    def __init__(self, limitation: Limitation | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.limitation = limitation

    def recover(self, known: Collection[str]) -> None:
        self.calls.append(("recover", ",".join(known)))

    def prepare(self, container: Container) -> LaunchInfo | None:
        self.calls.append(("prepare", container.id))
        return LaunchInfo(cgroups=[f"/cg/{container.id}"], env={"ISOLATED": "1"})

    def adopt(self, container: Container) -> None:
        self.calls.append(("adopt", container.id))

    def isolate(self, container: Container, pid: int) -> None:
        self.calls.append(("isolate", str(pid)))

    def update(self, container: Container, resources: Any) -> None:
        self.calls.append(("update", container.id))

    def limitation_at_exit(self, container: Container) -> Limitation | None:
        self.calls.append(("exit", container.id))
        return self.limitation

    def cleanup(self, container: Container) -> None:
        self.calls.append(("cleanup", container.id))


class Harness:
    def __init__(self, tmp: str, isolator: RecordingIsolator | None = None, **options: Any):
        self.supervisor = RecordingSupervisor()
        self.failed: list[tuple[str, str]] = []
        self.limited: list[tuple[str, Limitation]] = []
        self.containerizer = Containerizer(
            ContainerizerOptions(tmp, isolation=(), **options),
            self.supervisor,
            on_limited=lambda cid, lim: self.limited.append((cid, lim)),
            on_failed=lambda pid, error: self.failed.append((pid, error)),
        )
        self.isolator = isolator or RecordingIsolator()
        self.containerizer.isolators.append(self.isolator)
        self.tmp = tmp

    def launch(self, proc_id: str, container_id: str = "c1", **config: Any) -> None:
        sandbox = os.path.join(self.tmp, container_id)
        defaults: dict[str, Any] = {
            "container_id": container_id,
            "framework_id": "f",
            "executor_id": "e",
            "task_id": proc_id,
            "directory": sandbox,
            "sandbox": sandbox,
            "resources": parse_resources("cpus:1;mem:64"),
        }
        defaults.update(config)
        self.containerizer.launch(
            cmd.LaunchProcess(
                proc_id, ("/bin/true",), {"A": "1"}, sandbox, None, ContainerConfig(**defaults)
            )
        )


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (the containerizer schedules callbacks)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_isolator_names_resolve_aliases_and_refuse_unknown() -> None:
    names = isolator_names(["cgroups/cpu", "volume/host_path", "filesystem/posix", "cgroups/cpu"])
    assert names == ["cgroups/cpu", "filesystem/linux"]
    with pytest.raises(UnknownIsolatorError, match="unknown isolator 'cgroups/bogus'"):
        isolator_names(["cgroups/bogus"])


def test_task_user_prefers_the_command_user_only_with_switch_user() -> None:
    assert task_user({"user": "alice"}, "bob", True) == "alice"
    assert task_user({}, "bob", True) == "bob"
    assert task_user({"user": "alice"}, "bob", False) is None


@in_loop
async def test_first_launch_prepares_and_sends_the_launch_info(tmp_path: Any) -> None:
    harness = Harness(str(tmp_path))
    harness.launch("p1")
    (request,) = harness.supervisor.sent
    assert request["op"] == "launch" and request["id"] == "p1"
    assert request["container"] == {"cgroups": ["/cg/c1"]}
    assert request["env"] == {"A": "1", "ISOLATED": "1"}
    harness.containerizer.launched("p1", 42)
    assert harness.isolator.calls == [("prepare", "c1"), ("isolate", "42")]


@in_loop
async def test_a_second_process_joins_the_container(tmp_path: Any) -> None:
    harness = Harness(str(tmp_path))
    harness.launch("p1")
    harness.containerizer.launched("p1", 42)
    harness.containerizer.containers["c1"].launch_info.namespaces = ["pid", "mount"]
    harness.launch("p2", resources=parse_resources("cpus:2;mem:128"))
    second = harness.supervisor.sent[1]
    assert second["container"]["cgroups"] == ["/cg/c1"]
    assert second["container"]["join_namespaces_of"] == 42
    assert ("prepare", "c1") in harness.isolator.calls
    assert harness.isolator.calls.count(("prepare", "c1")) == 1
    assert ("update", "c1") in harness.isolator.calls


@in_loop
async def test_a_limit_found_at_the_leaders_exit_is_returned_once(tmp_path: Any) -> None:
    limitation = Limitation(Reason.CONTAINER_LIMITATION_MEMORY, "Memory limit exceeded")
    harness = Harness(str(tmp_path), RecordingIsolator(limitation))
    harness.launch("p1")
    harness.containerizer.launched("p1", 42)
    assert harness.containerizer.exited("p1") == limitation
    assert harness.containerizer.containers["c1"].limitation == limitation


@in_loop
async def test_destroy_cleans_up_and_forgets_the_container(tmp_path: Any) -> None:
    harness = Harness(str(tmp_path))
    harness.launch("p1")
    harness.containerizer.launched("p1", os.getpid() + 10**6)
    harness.containerizer.exited("p1")
    harness.containerizer.destroy("c1")
    assert ("cleanup", "c1") in harness.isolator.calls
    assert harness.containerizer.containers == {}
    harness.containerizer.destroy("c1")  # twice is harmless


@in_loop
async def test_an_unknown_user_fails_the_launch_naming_the_user(tmp_path: Any) -> None:
    harness = Harness(str(tmp_path))
    harness.launch("p1", user="no-such-user-agora")
    await settle()
    assert harness.supervisor.sent == []
    ((proc_id, error),) = harness.failed
    assert proc_id == "p1" and "'no-such-user-agora' does not exist" in error


@in_loop
async def test_docker_containers_are_refused_clearly(tmp_path: Any) -> None:
    harness = Harness(str(tmp_path))
    harness.launch("p1", container_info={"type": "DOCKER", "docker": {"image": "x"}})
    await settle()
    ((_, error),) = harness.failed
    assert "ContainerInfo.type DOCKER is not supported" in error


@in_loop
async def test_images_need_the_filesystem_isolator(tmp_path: Any) -> None:
    harness = Harness(str(tmp_path))
    image = {"type": "DOCKER", "docker": {"name": "busybox"}}
    harness.launch("p1", container_info={"type": "MESOS", "mesos": {"image": image}})
    await settle()
    ((_, error),) = harness.failed
    assert "filesystem/linux" in error
    assert harness.supervisor.sent == []


@in_loop
async def test_a_plain_launch_has_no_container_spec(tmp_path: Any) -> None:
    harness = Harness(str(tmp_path))
    harness.containerizer.isolators.clear()
    harness.launch("p1")
    (request,) = harness.supervisor.sent
    assert "container" not in request


@in_loop
async def test_an_adopted_container_is_joined_as_before_a_restart(tmp_path: Any) -> None:
    harness = Harness(str(tmp_path))
    harness.launch("p1", checkpoint=True)
    harness.launch("other", container_id="c2")  # its framework does not checkpoint
    harness.containerizer.launched("p1", 42)
    assert os.path.exists(harness.containerizer.launch_info_path("c1"))
    assert not os.path.exists(harness.containerizer.launch_info_path("c2"))
    config = harness.containerizer.containers["c1"].config
    # The agent restarts: a new containerizer adopts the container that outlived it.
    after = Harness(str(tmp_path))
    after.containerizer.adopt(config, {"p1": 42})
    after.containerizer.start()
    assert after.isolator.calls == [("adopt", "c1"), ("recover", "c1")]
    after.launch("p2", checkpoint=True)  # a later task-group process joins it
    (request,) = after.supervisor.sent
    assert request["container"]["cgroups"] == ["/cg/c1"] and request["env"]["ISOLATED"] == "1"
    assert ("prepare", "c1") not in after.isolator.calls
    after.containerizer.exited("p1")
    after.containerizer.exited("p2")
    after.containerizer.destroy("c1")
    assert not os.path.exists(os.path.dirname(after.containerizer.launch_info_path("c1")))


def test_launch_info_round_trips_through_json() -> None:
    info = LaunchInfo(
        cgroups=["/a"],
        namespaces=["mount"],
        rootfs="/r",
        overlay=Overlay(["/l1", "/l2"], "/u", "/w"),
        mounts=[Mount("/s", "/mnt/mesos/sandbox"), Mount("/h", "/ro", read_only=True)],
        uid=65534,
        gid=65534,
    )
    assert LaunchInfo.from_json(info.to_json()) == info
    assert info.needs_fork and not LaunchInfo(cgroups=["/a"]).needs_fork


def test_merge_keeps_the_first_lists_and_the_last_scalars() -> None:
    info = LaunchInfo(cgroups=["/a"], env={"X": "1"})
    info.merge(LaunchInfo(cgroups=["/a", "/b"], namespaces=["pid"], env={"Y": "2"}, uid=5))
    info.merge(None)
    assert info.cgroups == ["/a", "/b"] and info.namespaces == ["pid"]
    assert info.env == {"X": "1", "Y": "2"} and info.uid == 5
