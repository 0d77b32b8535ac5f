"""The supervisor's launcher, through a real supervisor process: launch requests with a
`container` spec (LaunchInfo.to_json()) and what the started process sees."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agora.agent.supervisor_client import SupervisorClient
from tests.async_wait import until

PATH = "/usr/local/bin:/usr/bin:/bin"
BUSYBOX = shutil.which("busybox")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and mounts need root")


class Supervised:
    """A real supervisor on a temp work dir, and what it reported per process id."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.client = SupervisorClient(str(work_dir), self._on_messages)

    def _on_messages(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            self.messages.setdefault(str(message.get("id")), []).append(message)

    def sandbox(self, proc_id: str) -> Path:
        return self.work_dir / "sandboxes" / proc_id

    def launch(self, proc_id: str, argv: list[str], container: dict[str, Any] | None) -> None:
        request: dict[str, Any] = {
            "op": "launch",
            "id": proc_id,
            "argv": argv,
            "env": {"PATH": PATH},
            "cwd": str(self.sandbox(proc_id)),
        }
        if container is not None:
            request["container"] = container
        self.client.send(request)

    def ops(self, proc_id: str) -> list[str]:
        return [m["op"] for m in self.messages.get(proc_id, [])]

    async def started(self, proc_id: str) -> dict[str, Any]:
        await until(lambda: {"launched", "failed"} & set(self.ops(proc_id)), 10.0)
        return self.messages[proc_id][0]

    async def run(
        self, proc_id: str, argv: list[str], container: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Launch and wait for the end: the `failed` or `exited` report."""
        self.launch(proc_id, argv, container)
        await until(lambda: {"exited", "failed"} & set(self.ops(proc_id)), 10.0)
        return self.messages[proc_id][-1]

    def output(self, proc_id: str, name: str = "stdout") -> str:
        return (self.sandbox(proc_id) / name).read_text()


@contextlib.asynccontextmanager
async def supervised(work_dir: Path) -> AsyncIterator[Supervised]:
    supervisor = Supervised(work_dir)
    await supervisor.client.connect()
    try:
        yield supervisor
    finally:
        await supervisor.client.shutdown()


def run_async(body: Callable[[Supervised], Any], work_dir: Path) -> None:
    async def main() -> None:
        async with supervised(work_dir) as supervisor:
            await body(supervisor)

    asyncio.run(main())


@contextlib.contextmanager
def temp_cgroups(*hierarchies: str) -> Iterator[list[str]]:
    """A fresh cgroup in each hierarchy under /sys/fs/cgroup, removed afterwards."""
    name = f"agora-test-{uuid.uuid4().hex[:8]}"
    created = []
    for hierarchy in hierarchies:
        root = Path("/sys/fs/cgroup") / hierarchy
        if not (root / "cgroup.procs").exists() or not os.access(root, os.W_OK):
            pytest.skip(f"no writable cgroup hierarchy at {root}")
    try:
        for hierarchy in hierarchies:
            path = Path("/sys/fs/cgroup") / hierarchy / name
            path.mkdir()
            created.append(str(path))
        yield created
    finally:
        for created_path in created:
            remove_cgroup(created_path)


def remove_cgroup(path: str) -> None:
    """rmdir, once the kernel has let go of the exited processes (EBUSY meanwhile)."""

    async def removed() -> None:
        def attempt() -> bool:
            try:
                os.rmdir(path)
            except FileNotFoundError:
                return True
            except OSError:
                return False
            return True

        await until(attempt, 5.0)

    asyncio.run(removed())


def busybox_rootfs(base: Path) -> Path:
    """A tiny image layer: a static busybox and links to the applets the tests use."""
    if BUSYBOX is None:
        pytest.skip("busybox (static) is not installed: apt-get install busybox-static")
    layer = base / "layer"
    (layer / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, layer / "bin" / "busybox")
    for applet in ("sh", "ls", "cat", "echo", "id", "touch", "mount"):
        (layer / "bin" / applet).symlink_to("busybox")
    (layer / "etc").mkdir()
    (layer / "etc" / "image-release").write_text("tiny\n")
    return layer


# ---------------------------------------------------------------------- cgroups


@needs_root
def test_the_process_is_in_its_cgroups_before_it_execs(tmp_path: Path) -> None:
    with temp_cgroups("pids", "cpu", "unified") as cgroups:
        names = {Path(c).name for c in cgroups}

        async def body(sup: Supervised) -> None:
            done = await sup.run("c1", ["cat", "/proc/self/cgroup"], {"cgroups": cgroups})
            assert done["op"] == "exited" and done["status"] == 0, done
            lines = sup.output("c1").splitlines()
            paths = {}
            for line in lines:
                _, controllers, path = line.split(":", 2)
                for controller in controllers.split(","):
                    paths[controller] = path
            (name,) = names
            assert paths["pids"] == paths["cpu"] == f"/{name}"
            assert paths[""] == f"/{name}"  # the v2 hierarchy

        run_async(body, tmp_path)


@needs_root
def test_a_cgroup_that_cannot_be_joined_fails_the_launch_and_the_supervisor_goes_on(
    tmp_path: Path,
) -> None:
    async def body(sup: Supervised) -> None:
        missing = "/sys/fs/cgroup/pids/agora-test-no-such-cgroup"
        failed = await sup.run("c1", ["true"], {"cgroups": [missing]})
        assert failed["op"] == "failed"
        assert failed["error"].startswith(f"Cannot join cgroup {missing}: ")
        ok = await sup.run("c2", ["sh", "-c", "echo fine"], {"namespaces": ["mount"]})
        assert ok["op"] == "exited" and ok["status"] == 0
        assert sup.output("c2") == "fine\n"

    run_async(body, tmp_path)


# ---------------------------------------------------------------------- exec failures


@needs_root
def test_exec_failures_come_back_with_the_reason(tmp_path: Path) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho no\n")
    pid_ns = {"namespaces": ["pid"]}

    async def body(sup: Supervised) -> None:
        missing = await sup.run("e1", ["/no/such/binary"], pid_ns)
        assert missing == {
            "op": "failed",
            "id": "e1",
            "error": "/no/such/binary: No such file or directory",
        }
        unknown = await sup.run("e2", ["no-such-command-here"], pid_ns)
        assert unknown["error"] == "no-such-command-here: not found on PATH"
        denied = await sup.run("e3", [str(script)], pid_ns)
        assert denied["error"] == f"{script}: Permission denied"
        # Nothing of the failed children is left: only e4 itself remains in the journal.
        ok = await sup.run("e4", ["sh", "-c", "exit 7"], pid_ns)
        assert ok["op"] == "exited" and os.WEXITSTATUS(ok["status"]) == 7

    run_async(body, tmp_path)


# ---------------------------------------------------------------------- namespaces


@needs_root
def test_a_pid_namespace_makes_the_process_pid_1_and_proc_shows_only_the_container(
    tmp_path: Path,
) -> None:
    spec = {"namespaces": ["pid", "mount"], "mount_proc": True}

    async def body(sup: Supervised) -> None:
        done = await sup.run("p1", ["sh", "-c", "echo $$; ls /proc; true"], spec)
        assert done["op"] == "exited" and done["status"] == 0, sup.output("p1", "stderr")
        first, *entries = sup.output("p1").split()
        assert first == "1"
        assert {e for e in entries if e.isdigit()} == {"1", "2"}  # sh and ls
        assert done["pid"] != 1  # the supervisor sees the host pid
        # The fresh /proc stayed in the container's mount namespace.
        assert Path(f"/proc/{os.getpid()}").exists()

    run_async(body, tmp_path)


@needs_root
def test_a_later_process_joins_the_namespaces_of_the_container(tmp_path: Path) -> None:
    spec = {"namespaces": ["pid", "mount"], "mount_proc": True}

    async def body(sup: Supervised) -> None:
        sup.launch("leader", ["sh", "-c", "echo leader > /tmp/agora-ns-mark-$$; sleep 30"], spec)
        leader = await sup.started("leader")
        assert leader["op"] == "launched"
        joined = {"join_namespaces_of": leader["pid"]}
        done = await sup.run("member", ["sh", "-c", "echo $$; ls /proc; true"], joined)
        assert done["op"] == "exited" and done["status"] == 0, sup.output("member", "stderr")
        first, *entries = sup.output("member").split()
        assert first != "1"
        pids = {e for e in entries if e.isdigit()}
        assert "1" in pids and first in pids and len(pids) <= 4
        sup.client.send({"op": "signal", "id": "leader", "signal": 9})
        await until(lambda: "exited" in sup.ops("leader"), 10.0)
        gone = await sup.run("late", ["true"], {"join_namespaces_of": leader["pid"]})
        assert gone["op"] == "failed"
        assert f"pid {leader['pid']}" in gone["error"]

    run_async(body, tmp_path)


# ---------------------------------------------------------------------- users


@needs_root
def test_the_process_runs_as_the_containers_user(tmp_path: Path) -> None:
    async def body(sup: Supervised) -> None:
        spec = {"uid": 65534, "gid": 65534, "groups": [65534]}
        done = await sup.run("u1", ["sh", "-c", "id -u; id -g; id -G; echo $$"], spec)
        assert done["op"] == "exited" and done["status"] == 0, sup.output("u1", "stderr")
        uid, gid, groups, _ = sup.output("u1").splitlines()
        assert (uid, gid, groups) == ("65534", "65534", "65534")

    run_async(body, tmp_path)


# ---------------------------------------------------------------------- filesystems


@needs_root
def test_overlay_mounts_and_pivot_root_into_a_busybox_rootfs(tmp_path: Path) -> None:
    layer = busybox_rootfs(tmp_path)
    upper, work, rootfs = (tmp_path / n for n in ("upper", "work", "rootfs"))
    for directory in (upper, work, rootfs):
        directory.mkdir()
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello").write_text("from the host\n")
    spec = {
        "namespaces": ["pid", "mount"],
        "mount_proc": True,
        "rootfs": str(rootfs),
        "overlay": {"lower": [str(layer)], "upper": str(upper), "work": str(work)},
        "working_directory": "/mnt/mesos/sandbox",
    }
    script = (
        "pwd; echo $$; cat /etc/image-release; cat /data/hello; ls /proc | grep -c '^[0-9]'; "
        "echo written > /new-file; echo mine > /mnt/mesos/sandbox/out; "
        "touch /scratch/x && echo tmpfs-ok; ls /bin | grep -c busybox"
    )

    async def body(sup: Supervised) -> None:
        sandbox = sup.sandbox("o1")
        sandbox.mkdir(parents=True)
        spec["mounts"] = [
            {"source": str(sandbox), "target": "/mnt/mesos/sandbox"},
            {"source": str(shared), "target": "/data", "read_only": True},
            {"source": "tmpfs", "target": "/scratch", "fstype": "tmpfs", "options": "size=1m"},
        ]
        done = await sup.run("o1", ["sh", "-c", script], spec)
        assert done["op"] == "exited" and done["status"] == 0, sup.output("o1", "stderr")
        lines = sup.output("o1").splitlines()
        assert lines == [
            "/mnt/mesos/sandbox",
            "1",
            "tiny",
            "from the host",
            "3",  # sh, ls and grep
            "tmpfs-ok",
            "1",
        ]
        assert (sandbox / "out").read_text() == "mine\n"

    run_async(body, tmp_path)
    # Writes went to the container's upper layer; nothing stayed mounted on the host.
    assert (upper / "new-file").read_text() == "written\n"
    assert not (layer / "new-file").exists()
    assert not os.path.ismount(rootfs)
    assert list(rootfs.iterdir()) == []
    assert (upper / "mnt" / "mesos" / "sandbox").is_dir()  # the created mount target


@needs_root
def test_a_read_only_bind_mount_refuses_writes(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    target.mkdir()
    (source / "data").write_text("keep\n")
    spec = {"mounts": [{"source": str(source), "target": str(target), "read_only": True}]}
    script = f"cat {target}/data; echo changed > {target}/data || echo refused"

    async def body(sup: Supervised) -> None:
        done = await sup.run("r1", ["sh", "-c", script], spec)
        assert done["op"] == "exited" and done["status"] == 0
        assert sup.output("r1") == "keep\nrefused\n"
        assert "Read-only file system" in sup.output("r1", "stderr")

    run_async(body, tmp_path)
    assert (source / "data").read_text() == "keep\n"
    assert not os.path.ismount(target)  # the bind mount lived in the container only


@needs_root
def test_a_failing_mount_fails_the_launch(tmp_path: Path) -> None:
    spec = {"mounts": [{"source": str(tmp_path / "absent"), "target": str(tmp_path / "t")}]}

    async def body(sup: Supervised) -> None:
        failed = await sup.run("m1", ["true"], spec)
        assert failed["op"] == "failed"
        assert failed["error"].startswith(f"mount {tmp_path / 'absent'} on ")

    run_async(body, tmp_path)


@needs_root
def test_tasks_start_with_default_signal_dispositions_and_an_empty_mask(tmp_path: Path) -> None:
    """Neither path lets a task inherit what the supervisor ignores (SIGPIPE, SIGINT...)."""

    async def body(sup: Supervised) -> None:
        for proc_id, spec in (("plain", None), ("forked", {"namespaces": ["mount"]})):
            done = await sup.run(proc_id, ["cat", "/proc/self/status"], spec)
            assert done["op"] == "exited" and done["status"] == 0
            fields = dict(
                line.split(":\t", 1) for line in sup.output(proc_id).splitlines() if ":\t" in line
            )
            ignored = int(fields["SigIgn"], 16)
            for number in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGHUP):
                assert not ignored & (1 << (number - 1)), (proc_id, number)
            assert int(fields["SigBlk"], 16) == 0, proc_id

    run_async(body, tmp_path)


def test_mount_targets_resolve_symlinks_inside_the_rootfs(tmp_path: Path) -> None:
    """An image's link cannot point a mount at the host: links resolve within the root."""
    from agora.agent.launcher import _inside

    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "mnt").symlink_to("/etc")
    (root / "up").symlink_to("../../..")
    assert _inside(str(root), "/mnt/x") == f"{root}/etc/x"
    assert _inside(str(root), "/up/etc") == f"{root}/etc"
    assert _inside(str(root), "/a/./b") == f"{root}/a/b"
