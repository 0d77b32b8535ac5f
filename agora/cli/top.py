"""`agora top`: the cluster's running tasks with what they use right now.

Each sample reads the master's `/master/state` (which tasks run where) and every agent's
`/monitor/statistics` at once, one request per agent. A task's CPU % is the growth of its
container's user+system CPU time between two samples over the time between them (100 %
is one core), so the first figures appear after the second sample. Statistics are per
executor container: a command task's executor id is its task id; the tasks of one task
group share their executor's figures."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from agora.cli.common import CliError, master_option, number
from agora.client.state import StateClient, UnreachableError, agent_address

Json = Mapping[str, Any]
Key = tuple[str, str]  # (framework id, executor id)
ACTIVE = ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING")


@dataclass
class Sample:
    taken_at: float  # local wall time when the sample completed
    state: Json
    stats: dict[Key, Json]  # executor's ResourceStatistics
    unreachable: list[str]  # agents that did not answer


@dataclass
class Row:
    task: str
    framework: str
    agent: str
    state: str
    cpu_percent: float | None
    cpus: float | None
    rss: int | None
    mem_limit: int | None
    disk: int | None


async def _agent_stats(client: StateClient, address: str) -> list[Json] | None:
    try:
        entries = await client.get_json(address, "/monitor/statistics")
    except UnreachableError:
        return None
    return [e for e in entries if isinstance(e, Mapping)] if isinstance(entries, list) else []


async def sample(client: StateClient, master: str) -> Sample:
    """The master's state and every agent's statistics, fetched concurrently."""
    try:
        state = await client.master_state(master)
    except UnreachableError as error:
        raise CliError(f"master {master}: {error}") from None
    except ValueError as error:  # a malformed --master
        raise CliError(str(error)) from None
    addresses = [agent_address(a) for a in state.get("slaves", [])]
    answers = await asyncio.gather(*(_agent_stats(client, a) for a in addresses))
    stats: dict[Key, Json] = {}
    unreachable = []
    for address, entries in zip(addresses, answers, strict=True):
        if entries is None:
            unreachable.append(address)
            continue
        for entry in entries:
            key = (str(entry.get("framework_id", "")), str(entry.get("executor_id", "")))
            statistics = entry.get("statistics")
            if isinstance(statistics, Mapping):
                stats[key] = statistics
    return Sample(time.time(), state, stats, unreachable)


def _cpu_seconds(stats: Json | None) -> float | None:
    if stats is None or "cpus_user_time_secs" not in stats:
        return None
    return float(stats.get("cpus_user_time_secs", 0)) + float(stats.get("cpus_system_time_secs", 0))


def cpu_percent(before: Json | None, after: Json | None, wall_s: float) -> float | None:
    """CPU time used between two samples over the wall time between them, in %."""
    start, end = _cpu_seconds(before), _cpu_seconds(after)
    if start is None or end is None or after is None or before is None:
        return None
    elapsed = float(after.get("timestamp", 0)) - float(before.get("timestamp", 0))
    if elapsed <= 0:
        elapsed = wall_s
    if elapsed <= 0:
        return None
    return max(end - start, 0.0) / elapsed * 100.0


def _int(stats: Json | None, name: str) -> int | None:
    value = stats.get(name) if stats is not None else None
    return int(value) if isinstance(value, int | float) else None


def rows(before: Sample | None, after: Sample) -> list[Row]:
    hosts = {a.get("id"): str(a.get("hostname", "")) for a in after.state.get("slaves", [])}
    wall_s = after.taken_at - before.taken_at if before is not None else 0.0
    out = []
    for framework in after.state.get("frameworks", []):
        framework_id = str(framework.get("id", ""))
        name = str(framework.get("name") or framework_id)
        for task in framework.get("tasks", []):
            if task.get("state") not in ACTIVE:
                continue
            key = (framework_id, str(task.get("executor_id") or task.get("id", "")))
            stats = after.stats.get(key)
            previous = before.stats.get(key) if before is not None else None
            limit = stats.get("cpus_limit") if stats is not None else None
            out.append(
                Row(
                    task=str(task.get("id", "")),
                    framework=name,
                    agent=hosts.get(task.get("slave_id")) or str(task.get("slave_id", "")),
                    state=str(task.get("state", "")).removeprefix("TASK_"),
                    cpu_percent=cpu_percent(previous, stats, wall_s),
                    cpus=float(limit) if isinstance(limit, int | float) else None,
                    rss=_int(stats, "mem_rss_bytes"),
                    mem_limit=_int(stats, "mem_limit_bytes"),
                    disk=_int(stats, "disk_used_bytes"),
                )
            )
    return out


def sort_rows(items: list[Row], by: str) -> list[Row]:
    if by == "mem":
        return sorted(items, key=lambda r: (-(r.rss or 0), r.task))
    return sorted(items, key=lambda r: (-(r.cpu_percent or 0.0), r.task))


def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "K", "M", "G", "T"):
        if size < 1024 or unit == "T":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{value}B"


def table(items: list[Row], master: str, after: Sample, limit: int | None = None) -> Table:
    shown = items if limit is None else items[:limit]
    caption = f"{len(items)} tasks"
    if limit is not None and len(items) > limit:
        caption += f", {limit} shown"
    if after.unreachable:
        caption += f"; no statistics from {', '.join(after.unreachable)}"
    out = Table(title=f"tasks on {master}", caption=caption)
    for column in ("task", "framework", "agent", "state"):
        out.add_column(column)
    for column in ("cpu%", "cpus", "mem", "disk"):
        out.add_column(column, justify="right")
    for row in shown:
        memory = f"{human_bytes(row.rss)} / {human_bytes(row.mem_limit)}"
        out.add_row(
            row.task,
            row.framework,
            row.agent,
            row.state,
            f"{row.cpu_percent:.1f}" if row.cpu_percent is not None else "-",
            number(row.cpus) if row.cpus is not None else "-",
            memory if row.rss is not None or row.mem_limit is not None else "-",
            human_bytes(row.disk),
        )
    return out


async def _once(master: str, interval_s: float, sort: str) -> None:
    async with StateClient(timeout_s=10.0) as client:
        first = await sample(client, master)
        await asyncio.sleep(interval_s)
        second = await sample(client, master)
    items = sort_rows(rows(first, second), sort)
    console = Console(width=max(Console().width, 120))
    if items:
        console.print(table(items, master, second))
    else:
        console.print("no active tasks")


async def _live(master: str, interval_s: float, sort: str) -> None:
    console = Console()
    async with StateClient(timeout_s=max(interval_s * 2, 5.0)) as client:
        before = await sample(client, master)
        limit = max(console.height - 8, 5)
        with Live(
            table(sort_rows(rows(None, before), sort), master, before, limit),
            console=console,
            auto_refresh=False,
            vertical_overflow="crop",
        ) as live:
            while True:
                await asyncio.sleep(interval_s)
                after = await sample(client, master)
                items = sort_rows(rows(before, after), sort)
                live.update(table(items, master, after, limit), refresh=True)
                before = after


@click.command()
@master_option
@click.option(
    "--interval-s", default=2.0, show_default=True, type=click.FloatRange(min=0.1), help="refresh"
)
@click.option("--sort", type=click.Choice(["cpu", "mem"]), default="cpu", show_default=True)
@click.option("--once", is_flag=True, help="print one snapshot (two samples) and exit")
def top(master: str, interval_s: float, sort: str, once: bool) -> None:
    """Running tasks with their CPU %, memory and disk, refreshed live."""
    if once:
        asyncio.run(_once(master, interval_s, sort))
        return
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_live(master, interval_s, sort))
