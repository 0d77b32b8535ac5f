"""The cgroups isolators on the host's real cgroups: first at the isolator level (the
test starts a process that joins the container's cgroups before exec, as the launcher
does), then end to end through a real master and `agora agent --isolation cgroups/...`.

Each test uses its own cgroups root and agent key and removes what it created."""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest

from agora.agent.containerizer.cgroup_isolators import CpuIsolator, MemoryIsolator, PidsIsolator
from agora.agent.containerizer.cgroups import CgroupsV2, open_cgroups, parse_pids, read_text
from agora.agent.containerizer.model import Container
from agora.agent.containerizer.options import ContainerizerOptions
from agora.core.container.config import ContainerConfig
from agora.core.resource_text import parse_resources
from agora.core.task_states import Reason
from tests.integration.agent_kit import Framework, agent_process, command_task
from tests.integration.master_process import get_json, master_process, wait_for

HIERARCHY = "/sys/fs/cgroup"
UNIFIED = "/sys/fs/cgroup/unified"
TEST_ROOT = "agora-test"


def need_v1(*controllers: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("cgroups need root")
    if os.path.exists(os.path.join(HIERARCHY, "cgroup.controllers")):
        pytest.skip(f"{HIERARCHY} is cgroup v2: these isolator tests drive v1 controllers")
    for controller in controllers:
        if not os.access(os.path.join(HIERARCHY, controller), os.W_OK):
            pytest.skip(f"the cgroup v1 controller '{controller}' is not mounted writable")


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def options() -> Iterator[ContainerizerOptions]:
    """This test's own agent key under a test root; everything under it is removed."""
    opts = ContainerizerOptions(
        work_dir="/tmp",
        cgroups_hierarchy=HIERARCHY,
        cgroups_root=TEST_ROOT,
        agent_key=f"t{os.getpid()}-{uuid.uuid4().hex[:8]}",
    )
    yield opts
    remove_tree(opts)


def remove_tree(opts: ContainerizerOptions) -> None:
    for mount in {os.path.realpath(os.path.join(HIERARCHY, c)) for c in os.listdir(HIERARCHY)}:
        base = os.path.join(mount, opts.cgroups_root, opts.agent_key)
        if not os.path.isdir(base):
            continue
        for directory, _, _ in sorted(os.walk(base), key=lambda w: -len(w[0])):
            for pid in parse_pids(read_text(os.path.join(directory, "cgroup.procs"))):
                os.kill(pid, 9)
            deadline = time.monotonic() + 5
            while os.path.isdir(directory):
                try:
                    os.rmdir(directory)
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
        with contextlib.suppress(OSError):  # other tests may still use the test root
            os.rmdir(os.path.dirname(base))


def make_container(resources: str, container_id: str = "c1") -> Container:
    res = parse_resources(resources)
    config = ContainerConfig(container_id, "f1", "e1", "t1", "/tmp", "/tmp", res)
    return Container(container_id, config, res)


def spawn_in(cgroup_dirs: list[str], code: str) -> subprocess.Popen[str]:
    """A Python child that joins the cgroups before exec (what the launcher does)."""

    def join() -> None:
        for directory in cgroup_dirs:
            with open(os.path.join(directory, "cgroup.procs"), "w") as f:
                f.write("0")

    return subprocess.Popen(
        [sys.executable, "-c", code],
        preexec_fn=join,  # noqa: PLW1509 (the test thread forks nothing else)
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


# ---------------------------------------------------------------------- isolator level


MEMORY_HOG = """
chunks = []
while True:
    chunks.append(bytearray(4 * 1024 * 1024))
"""


def test_memory_hog_is_oom_killed_and_reported(options: ContainerizerOptions) -> None:
    need_v1("memory")
    isolator = MemoryIsolator(options)
    container = make_container("cpus:1;mem:64")
    info = isolator.prepare(container)
    assert info is not None
    started = time.monotonic()
    hog = spawn_in(info.cgroups, MEMORY_HOG)
    container.pids["p"] = container.leader_pid = hog.pid
    assert hog.wait(30) == -9, "the memory hog was not killed by the OOM killer"
    died_s = time.monotonic() - started
    assert isolator.watch(container) is not None
    limitation = isolator.limitation_at_exit(container)
    assert limitation is not None
    assert limitation.reason == Reason.CONTAINER_LIMITATION_MEMORY
    first = limitation.message.splitlines()[0]
    assert first.startswith("Memory limit exceeded: Requested: 64MB Maximum Used: ")
    assert "MEMORY STATISTICS" in limitation.message
    stats = isolator.usage(container)
    assert stats["mem_limit_bytes"] == 64 * 1024 * 1024
    print(f"OOM kill {died_s:.2f}s after start; {first}")
    isolator.cleanup(container)
    assert not os.path.exists(info.cgroups[0])


BUSY_LOOP = """
import time
end = time.monotonic() + 2.0
while time.monotonic() < end:
    pass
"""


def test_cfs_quota_gives_half_a_core(options: ContainerizerOptions) -> None:
    need_v1("cpu", "cpuacct")
    cfs = ContainerizerOptions(**{**options.__dict__, "cgroups_enable_cfs": True})
    isolator = CpuIsolator(cfs)
    container = make_container("cpus:0.5;mem:64")
    info = isolator.prepare(container)
    assert info is not None
    started = time.monotonic()
    busy = spawn_in(info.cgroups, BUSY_LOOP)
    # The same loop beside it, unconfined: how much of a core this machine had to give
    # meanwhile (other tests run too), so that a busy host does not read as a low cap.
    control = psutil.Popen([sys.executable, "-c", BUSY_LOOP])
    container.pids["p"] = container.leader_pid = busy.pid
    assert busy.wait(30) == 0
    wall_s = time.monotonic() - started
    control_times = control.cpu_times()
    assert control.wait(30) == 0
    stats = isolator.usage(container)
    cpu_s = stats["cpus_user_time_secs"] + stats["cpus_system_time_secs"]
    share = cpu_s / wall_s
    available = min(1.0, (control_times.user + control_times.system) / wall_s)
    print(
        f"CFS 0.5 cpus: {cpu_s:.2f}s CPU over {wall_s:.2f}s wall = {share:.2f} of a core "
        f"(an unconfined loop got {available:.2f})"
    )
    assert share <= 0.65, stats
    assert share >= 0.35 * min(1.0, available / 0.9), (share, available, stats)
    assert stats["cpus_nr_throttled"] > 0 and stats["cpus_throttled_time_secs"] > 0
    isolator.cleanup(container)


FORK_BOMB = """
import os, sys, time
made = failed = 0
for _ in range(200):
    try:
        pid = os.fork()
    except OSError:
        failed += 1
        continue
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    made += 1
print(made, failed, flush=True)
time.sleep(60)
"""


def test_pids_cap_stops_a_fork_bomb(options: ContainerizerOptions) -> None:
    need_v1("pids")
    isolator = PidsIsolator(options)
    container = make_container("cpus:1;mem:64;pids:20")
    info = isolator.prepare(container)
    assert info is not None
    bomb = spawn_in(info.cgroups, FORK_BOMB)
    container.pids["p"] = container.leader_pid = bomb.pid
    assert bomb.stdout is not None
    made, failed = (int(n) for n in bomb.stdout.readline().split())
    assert made == 19 and failed == 181  # 20 tasks: the bomb itself and 19 children
    assert isolator.usage(container)["processes"] == 20
    everyone = isolator.processes(container)
    assert everyone is not None and bomb.pid in everyone
    isolator.cleanup(container)  # kills everything, then removes the cgroup
    bomb.wait(10)
    children = everyone - {bomb.pid}
    wait_until(
        lambda: not any(os.path.exists(f"/proc/{p}") for p in children), 10, "the children gone"
    )
    assert not os.path.exists(info.cgroups[0])


def test_recover_kills_and_removes_own_leftovers_only(options: ContainerizerOptions) -> None:
    need_v1("memory")
    isolator = MemoryIsolator(options)
    stale_dir = isolator.prepare(make_container("mem:64", "stale"))
    isolator.prepare(make_container("mem:64", "known"))
    assert stale_dir is not None
    sleeper = spawn_in(stale_dir.cgroups, "import time; time.sleep(60)")
    other = ContainerizerOptions(**{**options.__dict__, "agent_key": options.agent_key + "-b"})
    theirs = MemoryIsolator(other)
    theirs_info = theirs.prepare(make_container("mem:64", "theirs"))
    try:
        MemoryIsolator(options).recover({"known"})
        assert sleeper.wait(10) == -9
        assert not os.path.exists(stale_dir.cgroups[0])
        assert os.path.isdir(isolator.cgroups.path("memory", "known"))
        assert theirs_info is not None and os.path.isdir(theirs_info.cgroups[0])
    finally:
        remove_tree(other)


def test_v2_placement_and_cgroup_kill(options: ContainerizerOptions) -> None:
    if os.geteuid() != 0:
        pytest.skip("cgroups need root")
    if not os.path.exists(os.path.join(UNIFIED, "cgroup.procs")):
        pytest.skip(f"no cgroup v2 hierarchy at {UNIFIED}")
    v2 = ContainerizerOptions(**{**options.__dict__, "cgroups_hierarchy": UNIFIED})
    cgroups = open_cgroups(v2)
    assert isinstance(cgroups, CgroupsV2)
    directory = cgroups.create("unified", "c1")
    try:
        parent = spawn_in(
            [directory],
            "import subprocess, time\n"
            "kids = [subprocess.Popen(['sleep', '60']) for _ in range(3)]\n"
            "print('ready', flush=True); time.sleep(60)",
        )
        assert parent.stdout is not None and parent.stdout.readline() == "ready\n"
        procs = cgroups.procs("unified", "c1")
        assert parent.pid in procs and len(procs) == 4
        if not os.path.exists(os.path.join(directory, "cgroup.kill")):
            pytest.skip("this kernel has no cgroup.kill (Linux < 5.14)")
        cgroups.kill("unified", "c1")
        assert parent.wait(10) == -9
        wait_until(lambda: not cgroups.procs("unified", "c1"), 10, "the cgroup to empty")
        cgroups.remove("unified", "c1")
        assert not os.path.exists(directory)
    finally:
        cgroups.remove("unified", "c1")


# ---------------------------------------------------------------------- end to end

E2E_ROOT = "agora-test-e2e"
CGROUPS = "cgroups/cpu,cgroups/mem,cgroups/pids,disk/du"


def need_controllers(*controllers: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("cgroups need root")
    cgroups = open_cgroups(ContainerizerOptions(work_dir="/tmp", cgroups_hierarchy=HIERARCHY))
    for controller in controllers:
        if not cgroups.has(controller):
            pytest.skip(f"the cgroup controller '{controller}' is missing on this host")


@pytest.fixture
def e2e_root() -> Iterator[str]:
    """The agents' cgroups root for this test; removed (with anything left) after."""
    root = f"{E2E_ROOT}-{uuid.uuid4().hex[:8]}"
    yield root
    for controller in os.listdir(HIERARCHY):
        base = os.path.join(HIERARCHY, controller, root)
        if not os.path.isdir(base):
            continue
        for directory, _, _ in sorted(os.walk(base), key=lambda w: -len(w[0])):
            for pid in parse_pids(read_text(os.path.join(directory, "cgroup.procs"))):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            wait_until(functools.partial(_rmdir, directory), 5, f"{directory} removed")


def _rmdir(directory: str) -> bool:
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def container_dirs(controller: str, root: str) -> list[str]:
    """The agents' container cgroups still present for `controller`."""
    base = os.path.join(HIERARCHY, controller, root)
    if not os.path.isdir(base):
        return []
    return [
        os.path.join(base, key, cid)
        for key in os.listdir(base)
        if os.path.isdir(os.path.join(base, key))
        for cid in os.listdir(os.path.join(base, key))
        if os.path.isdir(os.path.join(base, key, cid))
    ]


def cgroups_agent(tmp_path: Path, master: str, root: str, *extra: str) -> Any:
    return agent_process(
        tmp_path,
        master,
        "--resources",
        "cpus:2;mem:1024;disk:1024;pids:1000",
        "--isolation",
        CGROUPS,
        "--cgroups-root",
        root,
        *extra,
    )


def scalar(name: str, value: float) -> dict[str, Any]:
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


def test_task_beyond_its_memory_fails_with_the_memory_reason(tmp_path: Path, e2e_root: str) -> None:
    need_controllers("cpu", "memory", "pids")
    with master_process(tmp_path) as master, cgroups_agent(tmp_path, master, e2e_root):
        fw = Framework(master)
        script = tmp_path / "hog.py"
        script.write_text(MEMORY_HOG)
        task = command_task("hog", f"exec python3 {script}")
        fw.launch(fw.offer(), [task])
        fw.until(lambda: "TASK_RUNNING" in fw.states("hog"), what="the hog running")
        running_at = time.monotonic()
        fw.until(lambda: "TASK_FAILED" in fw.states("hog"), 30.0, "the hog to fail")
        failed_s = time.monotonic() - running_at
        status = fw.last("hog")
        assert status["reason"] == "REASON_CONTAINER_LIMITATION_MEMORY", status
        assert status["message"].startswith("Memory limit exceeded: Requested: 32MB Maximum Used:")
        print(f"TASK_RUNNING -> TASK_FAILED (OOM) in {failed_s:.2f}s")
        wait_until(lambda: not container_dirs("memory", e2e_root), 10, "the cgroup removed")
        fw.close()


PIDS_SCRIPT = """
import os, time
made = failed = 0
for _ in range(50):
    try:
        pid = os.fork()
    except OSError:
        failed += 1
        continue
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    made += 1
open("counts", "w").write(f"{made} {failed}")
"""


def test_pids_cap_contains_a_fork_bomb(tmp_path: Path, e2e_root: str) -> None:
    need_controllers("cpu", "memory", "pids")
    with master_process(tmp_path) as master, cgroups_agent(tmp_path, master, e2e_root):
        fw = Framework(master)
        script = tmp_path / "bomb.py"
        script.write_text(PIDS_SCRIPT)
        task = command_task("bomb", f"exec python3 {script}")
        task["resources"].append(scalar("pids", 10))
        fw.launch(fw.offer(), [task])
        fw.until(lambda: "TASK_FINISHED" in fw.states("bomb"), 30.0, "the bomb to end")
        counts = list(tmp_path.glob("agent-work/**/runs/*/counts"))
        assert len(counts) == 1
        made, failed = (int(n) for n in counts[0].read_text().split())
        assert made == 9 and failed == 41  # 10 tasks: the bomb and 9 children
        wait_until(lambda: not container_dirs("pids", e2e_root), 10, "the children killed")
        fw.close()


def test_cfs_caps_a_busy_task_at_half_a_core(tmp_path: Path, e2e_root: str) -> None:
    need_controllers("cpu", "cpuacct", "memory", "pids")
    with (
        master_process(tmp_path) as master,
        cgroups_agent(tmp_path, master, e2e_root, "--cgroups-enable-cfs") as agent,
    ):
        fw = Framework(master)
        fw.launch(fw.offer(), [command_task("busy", "while :; do :; done", cpus=0.5)])
        fw.until(lambda: "TASK_RUNNING" in fw.states("busy"), what="the task running")

        def sample() -> dict[str, Any]:
            stats = wait_for(lambda: statistics_of(agent, "busy"), 10.0, "statistics")
            assert isinstance(stats, dict)
            return stats

        first = sample()
        wait_until(lambda: time.time() - first["timestamp"] >= 2.0, 5, "two seconds")
        second = sample()

        def cpu_s(s: dict[str, Any]) -> float:
            return float(s["cpus_user_time_secs"] + s["cpus_system_time_secs"])

        share = (cpu_s(second) - cpu_s(first)) / (second["timestamp"] - first["timestamp"])
        print(f"end to end CFS at 0.5 cpus: {share:.2f} of a core")
        assert 0.35 <= share <= 0.65, (first, second)
        assert second["cpus_limit"] == 0.5 and second["cpus_nr_throttled"] > 0
        fw.call({"type": "KILL", "kill": {"task_id": {"value": "busy"}}})
        fw.until(lambda: "TASK_KILLED" in fw.states("busy"), what="the task killed")
        fw.close()


def statistics_of(agent: str, executor_id: str) -> dict[str, Any] | None:
    for entry in get_json(agent, "/monitor/statistics"):
        if entry["executor_id"] == executor_id:
            return dict(entry["statistics"])
    return None
