"""Container launch and destroy rates on one agent: the agent's containerizer and its
supervisor, as the agent drives them, with cgroups isolation, with and without an image.

    python bench/containers.py [--containers 200] [--repeat 3] [--json]

A round launches `--containers` containers at once, each running `sleep 600` with 0.1
cpus and 32 MB (cpu, memory and pids cgroups: prepared, the process placed in them
before exec). launches/s = containers / (first launch request -> last one running, i.e.
its process exec'd inside its cgroups). Then every container is killed and destroyed:
destroys/s = containers / (kill -> the last one's cgroups removed). The image rounds do
the same in a busybox image (a rootfs directory, stacked by overlayfs, own mount
namespace, pivot_root, the sandbox bind-mounted at /mnt/mesos/sandbox). Each figure is
the median over `--repeat` rounds; with `--json` the last line is one JSON object
holding at least `launches_per_s` and `image_launches_per_s`.

Needs root and cgroups (v1 or v2 with the cpu and memory controllers); the image rounds
need /bin/busybox (Debian's busybox-static) and overlayfs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from agora.agent.containerizer.containerizer import Containerizer
from agora.agent.containerizer.options import ContainerizerOptions, cgroups_usable
from agora.agent.supervisor_client import Message, SupervisorClient
from agora.core.agent import commands as cmd
from agora.core.container.config import ContainerConfig
from agora.core.resource_text import parse_resources

ISOLATION = ("cgroups/cpu", "cgroups/mem", "cgroups/pids")
IMAGE_ISOLATION = (*ISOLATION, "filesystem/linux")
BUSYBOX = "/bin/busybox"


@dataclass
class Round:
    """One round's bookkeeping: which processes have started and exited."""

    expected: int
    running: set[str] = field(default_factory=set)
    exited: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    all_running: asyncio.Event = field(default_factory=asyncio.Event)
    all_exited: asyncio.Event = field(default_factory=asyncio.Event)
    launch_latency_s: list[float] = field(default_factory=list)
    requested_at: dict[str, float] = field(default_factory=dict)


class Bench:
    def __init__(self, work_dir: str, isolation: tuple[str, ...]) -> None:
        self.work_dir = work_dir
        self.options = ContainerizerOptions(
            work_dir=work_dir,
            isolation=isolation,
            agent_key=f"bench-{uuid.uuid4().hex[:8]}",
            switch_user=False,
        )
        self.supervisor = SupervisorClient(work_dir, self._on_messages)
        self.containerizer = Containerizer(
            self.options, self.supervisor, self._on_limited, self._on_failed
        )
        self.round: Round | None = None

    async def start(self) -> None:
        await self.supervisor.connect()
        self.containerizer.start()

    async def stop(self) -> None:
        await self.containerizer.stop()
        await self.supervisor.shutdown(kill=True)

    def _on_limited(self, container_id: str, limitation: Any) -> None:
        if self.round is not None:
            self.round.failures.append(f"{container_id}: {limitation.message}")

    def _on_failed(self, proc_id: str, error: str) -> None:
        if self.round is not None:
            self.round.failures.append(f"{proc_id}: {error}")
            self._exited(proc_id)

    def _on_messages(self, messages: list[Message]) -> None:
        for message in messages:
            proc_id = str(message.get("id"))
            op = message.get("op")
            if op == "launched":
                self.containerizer.launched(proc_id, int(message["pid"]))
                self._running(proc_id)
            elif op == "exited":
                container_id = self.containerizer.proc_container.get(proc_id)
                self.containerizer.exited(proc_id)
                self.supervisor.send({"op": "forget", "id": proc_id})
                if container_id is not None:
                    self.containerizer.destroy(container_id)
                self._exited(proc_id)
            elif op == "failed":
                self.containerizer.launch_failed(proc_id)
                self._on_failed(proc_id, str(message.get("error")))

    def _running(self, proc_id: str) -> None:
        run = self.round
        if run is None:
            return
        run.running.add(proc_id)
        run.launch_latency_s.append(time.perf_counter() - run.requested_at[proc_id])
        if len(run.running) + len(run.failures) >= run.expected:
            run.all_running.set()

    def _exited(self, proc_id: str) -> None:
        run = self.round
        if run is None:
            return
        run.exited.add(proc_id)
        if len(run.exited) >= run.expected:
            run.all_exited.set()

    def launch(self, image: str | None) -> str:
        container_id = str(uuid.uuid4())
        sandbox = os.path.join(self.work_dir, "sandboxes", container_id)
        os.makedirs(sandbox)
        info = None
        if image is not None:
            info = {
                "type": "MESOS",
                "mesos": {"image": {"type": "DOCKER", "docker": {"name": image}}},
            }
        config = ContainerConfig(
            container_id=container_id,
            framework_id="bench",
            executor_id=container_id,
            task_id=container_id,
            directory=sandbox,
            sandbox=sandbox,
            resources=parse_resources("cpus:0.1;mem:32"),
            container_info=info,
        )
        argv = ("/bin/sleep", "600")
        env = {"PATH": "/usr/bin:/bin", "MESOS_SANDBOX": sandbox}
        assert self.round is not None
        self.round.requested_at[container_id] = time.perf_counter()
        self.containerizer.launch(
            cmd.LaunchProcess(container_id, argv, env, sandbox, argv[0], config)
        )
        return container_id

    async def one_round(self, count: int, image: str | None) -> dict[str, float]:
        self.round = run = Round(count)
        started = time.perf_counter()
        ids = [self.launch(image) for _ in range(count)]
        await asyncio.wait_for(run.all_running.wait(), 120)
        launched_s = time.perf_counter() - started
        if run.failures:
            raise RuntimeError(f"{len(run.failures)} launches failed, e.g. {run.failures[0]}")
        killed = time.perf_counter()
        for container_id in ids:
            self.containerizer.kill(container_id)
        await asyncio.wait_for(run.all_exited.wait(), 120)
        deadline = time.monotonic() + 60
        while self.containerizer.containers and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        destroyed_s = time.perf_counter() - killed
        shutil.rmtree(os.path.join(self.work_dir, "sandboxes"), ignore_errors=True)
        latencies = sorted(run.launch_latency_s)
        return {
            "launches_per_s": count / launched_s,
            "destroys_per_s": count / destroyed_s,
            "launch_p50_ms": 1000 * latencies[len(latencies) // 2],
            "launch_p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        }


def busybox_rootfs(directory: str) -> str:
    """A one-layer image: a rootfs directory holding busybox and its applets."""
    rootfs = os.path.join(directory, "busybox-rootfs")
    for sub in ("bin", "etc", "tmp", "proc", "dev", "sys", "mnt/mesos/sandbox"):
        os.makedirs(os.path.join(rootfs, sub), exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(rootfs, "bin", "busybox"))
    for applet in ("sh", "sleep", "true", "cat", "ls", "echo"):
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    with open(os.path.join(rootfs, "etc", "agora-bench-image"), "w") as marker:
        marker.write("busybox\n")
    return rootfs


async def measure(
    isolation: tuple[str, ...], count: int, repeat: int, image: str | None, work_dir: str
) -> dict[str, float]:
    bench = Bench(work_dir, isolation)
    await bench.start()
    try:
        await bench.one_round(min(count, 20), image)  # warm-up: image unpacked, caches hot
        rounds = [await bench.one_round(count, image) for _ in range(repeat)]
    finally:
        await bench.stop()
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=200, help="per round")
    parser.add_argument("--image-containers", type=int, default=100, help="per image round")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-image", action="store_true", help="skip the image rounds")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    if not cgroups_usable():
        raise SystemExit("bench/containers.py needs root and cgroups (cpu and memory)")
    results: dict[str, Any] = {"containers": args.containers, "repeat": args.repeat}
    with tempfile.TemporaryDirectory(prefix="agora-bench-") as tmp:
        plain = await measure(
            ISOLATION, args.containers, args.repeat, None, os.path.join(tmp, "plain")
        )
        results.update(plain)
        print(
            f"cgroups ({','.join(ISOLATION)}): {plain['launches_per_s']:.0f} launches/s "
            f"(p50 {plain['launch_p50_ms']:.1f} ms, p99 {plain['launch_p99_ms']:.1f} ms), "
            f"{plain['destroys_per_s']:.0f} destroys/s",
            flush=True,
        )
        if not args.no_image:
            if not os.path.exists(BUSYBOX):
                raise SystemExit(f"{BUSYBOX} is missing: apt-get install busybox-static")
            image = busybox_rootfs(tmp)
            imaged = await measure(
                IMAGE_ISOLATION,
                args.image_containers,
                args.repeat,
                image,
                os.path.join(tmp, "image"),
            )
            results.update({f"image_{key}": value for key, value in imaged.items()})
            results["image_containers"] = args.image_containers
            print(
                f"cgroups + busybox image (overlay, pivot_root): "
                f"{imaged['launches_per_s']:.0f} launches/s "
                f"(p50 {imaged['launch_p50_ms']:.1f} ms, p99 {imaged['launch_p99_ms']:.1f} ms), "
                f"{imaged['destroys_per_s']:.0f} destroys/s",
                flush=True,
            )
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = asyncio.run(main_async(args))
    if args.json:
        print(
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
