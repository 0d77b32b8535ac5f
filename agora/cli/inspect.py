"""`agora ps`, `agora agents`, `agora frameworks`: tables from the master's `/master/state`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from agora.cli.common import CliError, master_option, number, run_async
from agora.client.state import StateClient, UnreachableError, agent_address


async def _state(master: str) -> dict[str, Any]:
    try:
        async with StateClient(timeout_s=10.0) as client:
            return await client.master_state(master)
    except UnreachableError as error:
        raise CliError(f"master {master}: {error}") from None
    except ValueError as error:  # a malformed --master
        raise CliError(str(error)) from None


def _resources(resources: Mapping[str, Any] | None) -> tuple[str, str]:
    resources = resources or {}
    return number(resources.get("cpus", 0)), number(resources.get("mem", 0))


def _print(table: Table, empty: str) -> None:
    console = Console()
    if table.row_count:
        console.print(table)
    else:
        console.print(empty)


@click.command()
@master_option
@click.option("--all", "show_all", is_flag=True, help="also completed tasks")
def ps(master: str, show_all: bool) -> None:
    """List tasks: id, name, framework, agent, state, cpus, mem."""
    state = run_async(_state(master))
    hosts = {a.get("id"): a.get("hostname", "") for a in state.get("slaves", [])}
    table = Table(title=f"tasks on {master}")
    for column in ("id", "name", "framework", "agent", "state", "cpus", "mem"):
        table.add_column(column, justify="right" if column in ("cpus", "mem") else "left")
    frameworks = list(state.get("frameworks", []))
    if show_all:
        frameworks += state.get("completed_frameworks", [])
    for framework in frameworks:
        tasks = list(framework.get("tasks", [])) + list(framework.get("unreachable_tasks", []))
        if show_all:
            tasks += framework.get("completed_tasks", [])
        for task in tasks:
            cpus, mem = _resources(task.get("resources"))
            agent = task.get("slave_id", "")
            table.add_row(
                str(task.get("id", "")),
                str(task.get("name", "")),
                str(framework.get("name") or framework.get("id", "")),
                str(hosts.get(agent) or agent),
                str(task.get("state", "")),
                cpus,
                mem,
            )
    _print(table, "no tasks" if show_all else "no active tasks (--all shows completed ones)")


@click.command()
@master_option
def agents(master: str) -> None:
    """List agents: id, address, resources used/total."""
    state = run_async(_state(master))
    table = Table(title=f"agents of {master}")
    for column in ("id", "hostname", "address", "active", "cpus", "mem", "disk"):
        table.add_column(column)
    for agent in state.get("slaves", []):
        total = agent.get("resources") or {}
        used = agent.get("used_resources") or {}
        cells = [
            f"{number(used.get(name, 0))}/{number(total.get(name, 0))}"
            for name in ("cpus", "mem", "disk")
        ]
        table.add_row(
            str(agent.get("id", "")),
            str(agent.get("hostname", "")),
            agent_address(agent),
            "yes" if agent.get("active", True) else "no",
            *cells,
        )
    _print(table, "no agents registered")


@click.command()
@master_option
@click.option("--all", "show_all", is_flag=True, help="also completed frameworks")
def frameworks(master: str, show_all: bool) -> None:
    """List frameworks: id, name, active, tasks, used resources."""
    state = run_async(_state(master))
    table = Table(title=f"frameworks on {master}")
    for column in ("id", "name", "roles", "active", "tasks", "cpus", "mem"):
        table.add_column(column)
    entries = list(state.get("frameworks", []))
    if show_all:
        entries += state.get("completed_frameworks", [])
    for framework in entries:
        cpus, mem = _resources(framework.get("used_resources"))
        roles = framework.get("roles") or [framework.get("role", "*")]
        table.add_row(
            str(framework.get("id", "")),
            str(framework.get("name", "")),
            ",".join(str(r) for r in roles),
            "yes" if framework.get("active") else "no",
            str(len(framework.get("tasks", []))),
            cpus,
            mem,
        )
    _print(table, "no frameworks")
