"""End-to-end task throughput: one framework (agora.client) runs N command tasks on a
local cluster of real processes (1 master, 2 agents, each task 0.1 cpus and 32 MB).

    python bench/throughput.py [--tasks 2000] [--repeat 3] [--json]
    python bench/throughput.py --sleep          # 200 tasks of `sleep 1` at once
    python bench/throughput.py --checkpoint     # the framework checkpoints (agents fsync
                                                # every task, update and acknowledgement)

Prints tasks/s (first launch to last terminal update), the submit -> finish latency of
each task (ACCEPT sent -> TASK_FINISHED received; p50, p99), and the CPU seconds per task
spent by the master and by the agents (agent processes plus their supervisors; the task
processes themselves are counted apart). Each figure is the median over `--repeat` runs
on one cluster; with `--json` the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import psutil  # type: ignore[import-untyped]

from agora.cli.local import split_host_resources
from agora.client import (
    FrameworkInfo,
    SchedulerDriver,
    command_info,
    offer_role,
    offer_scalars,
    scalar_resources,
    task_info,
)
from agora.client.types import Event
from agora.testing.cluster import MARKER_VARIABLE, LocalCluster
from bench.slurm_peer import measure as measure_slurm

TASK_CPUS = 0.1
TASK_MEM = 32.0


@dataclass
class Run:
    tasks: int
    command: str
    submitted: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    first_launch: float | None = None
    accepts: int = 0


async def run_workload(
    master: str, tasks: int, command: str, name: str, checkpoint: bool = False
) -> Run:
    run = Run(tasks, command)
    done = asyncio.Event()
    driver = SchedulerDriver(master, FrameworkInfo(name=name, checkpoint=checkpoint))
    next_index = 0

    async def on_offers(event: Event) -> None:
        nonlocal next_index
        for offer in event.offers:
            have = offer_scalars(offer)
            fit = int(min(have.get("cpus", 0) / TASK_CPUS, have.get("mem", 0) / TASK_MEM) + 1e-9)
            count = min(fit, tasks - next_index)
            offer_id = offer["id"]["value"]
            if count <= 0:
                await driver.decline([offer_id], refuse_seconds=60 if next_index >= tasks else 1)
                continue
            role, agent_id = offer_role(offer), offer["agent_id"]["value"]
            resources = scalar_resources(TASK_CPUS, TASK_MEM, role=role)
            infos = []
            now = time.perf_counter()
            for index in range(next_index, next_index + count):
                task_id = f"{name}-{index}"
                run.submitted[task_id] = now
                infos.append(
                    task_info(task_id, agent_id, command=command_info(command), resources=resources)
                )
            next_index += count
            if run.first_launch is None:
                run.first_launch = now
            run.accepts += 1
            await driver.launch([offer_id], infos)
            if next_index >= tasks:
                await driver.suppress()

    def on_update(event: Event) -> None:
        status = event.status
        state = status["state"]
        if state in ("TASK_STARTING", "TASK_RUNNING", "TASK_STAGING"):
            return
        task_id = status["task_id"]["value"]
        if task_id in run.finished:
            return
        run.finished[task_id] = time.perf_counter()
        if state != "TASK_FINISHED":
            run.failed.append(f"{task_id}: {state} {status.get('message', '')}")
        if len(run.finished) == tasks:
            done.set()

    driver.on("OFFERS", on_offers)
    driver.on("UPDATE", on_update)
    driver.start()
    try:
        await driver.wait_subscribed()
        await asyncio.wait_for(done.wait(), timeout=max(120.0, tasks / 10))
    finally:
        await driver.stop(teardown=True)
    return run


def cluster_cpu(cluster: LocalCluster) -> dict[str, float]:
    """CPU seconds so far: master, agents (+ supervisors), and reaped task processes."""
    out = {"master": 0.0, "agents": 0.0, "tasks": 0.0}
    for process in psutil.process_iter(["environ", "pid"]):
        try:
            env = process.info["environ"] or {}
            if env.get(MARKER_VARIABLE) != cluster.marker:
                continue
            times = process.cpu_times()
            cmdline = " ".join(process.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        own = times.user + times.system
        if " master " in f" {cmdline} ":
            out["master"] += own
        elif "agora agent" in cmdline or "agora.agent.supervisor" in cmdline:
            out["agents"] += own
            out["tasks"] += times.children_user + times.children_system
    return out


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(
    cluster: LocalCluster, tasks: int, command: str, index: int, checkpoint: bool = False
) -> dict[str, Any]:
    before = cluster_cpu(cluster)
    own = psutil.Process().cpu_times()
    run = asyncio.run(
        run_workload(cluster.master_address, tasks, command, f"bench{index}", checkpoint)
    )
    after = cluster_cpu(cluster)
    own_after = psutil.Process().cpu_times()
    framework_s = own_after.user + own_after.system - own.user - own.system
    assert run.first_launch is not None
    elapsed = max(run.finished.values()) - run.first_launch
    latencies = [run.finished[t] - run.submitted[t] for t in run.finished]
    edges = sorted(
        [(run.submitted[t], 1) for t in run.finished]
        + [(run.finished[t], -1) for t in run.finished]
    )
    in_flight = peak = 0
    for _, step in edges:
        in_flight += step
        peak = max(peak, in_flight)
    return {
        "tasks_per_s": tasks / elapsed,
        "elapsed_s": elapsed,
        "peak_in_flight": peak,
        "tasks_per_accept": tasks / max(1, run.accepts),
        "latency_s_p50": percentile(latencies, 0.50),
        "latency_s_p99": percentile(latencies, 0.99),
        "master_cpu_ms_per_task": 1000 * (after["master"] - before["master"]) / tasks,
        "agents_cpu_ms_per_task": 1000 * (after["agents"] - before["agents"]) / tasks,
        "framework_cpu_ms_per_task": 1000 * framework_s / tasks,
        "task_processes_cpu_ms_per_task": 1000 * (after["tasks"] - before["tasks"]) / tasks,
        "failed": len(run.failed),
        "failures": run.failed[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks", type=int, default=None, help="tasks per run (2000; 200 with --sleep)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sleep", action="store_true", help="tasks of `sleep 1`, all at once")
    parser.add_argument(
        "--agent-resources",
        default=None,
        help="each agent's resources (default: the host split in two; "
        "with --sleep, enough for every task at once)",
    )
    parser.add_argument(
        "--master-arg", action="append", default=[], help="extra `agora master` flag"
    )
    parser.add_argument(
        "--peer",
        choices=["slurm"],
        default=None,
        help="also run tuned Slurm side by side (bench/slurm_peer.py) and print the ratio",
    )
    parser.add_argument("--peer-jobs", type=int, default=500, help="jobs per Slurm run")
    parser.add_argument(
        "--checkpoint", action="store_true", help="the framework checkpoints (FrameworkInfo)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tasks = args.tasks or (200 if args.sleep else 2000)
    command = "sleep 1" if args.sleep else "/bin/true"
    resources = args.agent_resources
    if resources is None:
        if args.sleep:
            per_agent = tasks / 2
            resources = f"cpus:{per_agent * TASK_CPUS:g};mem:{per_agent * TASK_MEM:g};disk:1024"
        else:
            resources = split_host_resources(2, Path(tempfile.gettempdir()))[0]
    results = []
    with LocalCluster(agents=2, agent_resources=resources, master_args=args.master_arg) as cluster:
        for index in range(args.repeat):
            result = measure(cluster, tasks, command, index, args.checkpoint)
            results.append(result)
            if not args.json:
                print(
                    f"run {index + 1}: {result['tasks_per_s']:.0f} tasks/s, "
                    f"p50 {result['latency_s_p50'] * 1000:.0f} ms, "
                    f"p99 {result['latency_s_p99'] * 1000:.0f} ms, "
                    f"master {result['master_cpu_ms_per_task']:.2f} ms/task, "
                    f"agents {result['agents_cpu_ms_per_task']:.2f} ms/task, "
                    f"framework {result['framework_cpu_ms_per_task']:.2f} ms/task, "
                    f"peak in flight {result['peak_in_flight']}, "
                    f"{result['tasks_per_accept']:.1f} tasks/accept, failed {result['failed']}"
                )
    keys = [k for k in results[0] if k not in ("failures",)]
    summary: dict[str, Any] = {k: statistics.median(r[k] for r in results) for k in keys}
    summary.update(
        mode="sleep 1" if args.sleep else "/bin/true",
        checkpoint=args.checkpoint,
        tasks=tasks,
        repeat=args.repeat,
        agent_resources=resources,
        failures=[f for r in results for f in r["failures"]][:5],
    )
    if args.peer == "slurm":
        peer = measure_slurm(args.peer_jobs, args.repeat)
        summary.update(peer)
        summary["ratio_vs_slurm"] = summary["tasks_per_s"] / peer["slurm_jobs_per_s"]
        if not args.json:
            print(
                f"tuned Slurm side by side: {peer['slurm_jobs_per_s']:.1f} jobs/s "
                f"({args.peer_jobs} x true) -> Agora {summary['ratio_vs_slurm']:.1f}x"
            )
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"median of {args.repeat}: {summary['tasks_per_s']:.0f} tasks/s "
            f"({tasks} x {command}, agents {resources}), latency p50 "
            f"{summary['latency_s_p50'] * 1000:.0f} ms "
            f"p99 {summary['latency_s_p99'] * 1000:.0f} ms, "
            f"CPU per task: master {summary['master_cpu_ms_per_task']:.2f} ms, agents "
            f"{summary['agents_cpu_ms_per_task']:.2f} ms, task processes "
            f"{summary['task_processes_cpu_ms_per_task']:.2f} ms"
        )


if __name__ == "__main__":
    main()
