"""`agora local`: a whole cluster on this machine.

Until the master and agent services exist, this runs the real master core (allocator,
offers, task lifecycle) against simulated agents and frameworks on a simulated clock,
and prints what happened.
"""

from __future__ import annotations

import collections

import click
from rich.console import Console
from rich.table import Table

from agora.core.master import commands as cmd
from agora.core.task_states import TaskState
from agora.testing.sim import InvariantViolation, SimConfig, Simulation


@click.command()
@click.option("--agents", default=4, show_default=True, help="simulated agents")
@click.option("--frameworks", default=3, show_default=True, help="simulated frameworks")
@click.option("--tasks", default=30, show_default=True, help="tasks per framework")
@click.option("--seconds", default=120.0, show_default=True, help="simulated seconds")
@click.option("--faults/--no-faults", default=True, show_default=True, help="inject network faults")
@click.option("--seed", default=1, show_default=True, help="seed of the whole run")
def local(
    agents: int, frameworks: int, tasks: int, seconds: float, faults: bool, seed: int
) -> None:
    """Run a local cluster (for now: the master core with simulated agents)."""
    console = Console()
    config = SimConfig(
        agents=agents,
        frameworks=frameworks,
        tasks_per_framework=tasks,
        duration_s=seconds,
        quiesce_s=max(60.0, seconds),
        drop_rate=0.02 if faults else 0.0,
        duplicate_rate=0.02 if faults else 0.0,
        slow_rate=0.02 if faults else 0.0,
        partitions=1 if faults else 0,
        stream_breaks=1 if faults else 0,
    )
    sim = Simulation(seed, config)
    offers = collections.Counter[str]()

    def count_offers(command: cmd.Command) -> None:
        if isinstance(command, cmd.SendToFramework) and isinstance(command.event, cmd.Offers):
            offers[command.framework_id] += len(command.event.offers)

    sim.command_observers.append(count_offers)
    console.print(
        f"[bold]agora local[/bold] (simulated): {agents} agents, {frameworks} frameworks, "
        f"{tasks} tasks each, seed {seed}, faults {'on' if faults else 'off'}"
    )
    try:
        sim.run()
    except InvariantViolation as violation:
        console.print(f"[red]invariant violated:[/red] {violation}")
        raise SystemExit(1) from None
    _print_agents(console, sim)
    _print_frameworks(console, sim, offers)
    console.print(
        f"{sim.steps} events over {sim.now:.0f} simulated seconds; network: "
        f"{sim.network.stats.sent} agent messages, {sim.network.stats.dropped} lost, "
        f"{sim.network.stats.duplicated} duplicated, {sim.network.stats.partitioned} cut off "
        "by partitions. Every invariant held."
    )


def _print_agents(console: Console, sim: Simulation) -> None:
    table = Table(title="agents")
    for column in ("agent", "hostname", "resources", "tasks run"):
        table.add_column(column)
    ran = collections.Counter(key for key in sim.checker.final_states)
    per_host = collections.Counter[str]()
    for agent in sim.agents:
        per_host[agent.hostname] = sum(1 for key in agent.finished if key in ran)
    for agent in sim.agents:
        table.add_row(
            agent.agent_id or "-",
            agent.hostname,
            str(agent.info.resources),
            str(per_host[agent.hostname]),
        )
    console.print(table)


def _print_frameworks(console: Console, sim: Simulation, offers: collections.Counter[str]) -> None:
    table = Table(title="frameworks")
    for column in (
        "framework",
        "roles",
        "offers",
        "launched",
        "finished",
        "failed",
        "killed",
        "lost/gone",
    ):
        table.add_column(column)
    for framework in sim.frameworks:
        ends = collections.Counter[TaskState]()
        for task_id in framework.launched:
            seen = framework.observed.get(task_id)
            if seen and seen.states:
                ends[seen.states[-1]] += 1
        lost = sum(ends[s] for s in (TaskState.LOST, TaskState.GONE, TaskState.DROPPED))
        table.add_row(
            framework.framework_id or "-",
            ",".join(framework.roles),
            str(offers[framework.framework_id or ""]),
            str(len(framework.launched)),
            str(ends[TaskState.FINISHED]),
            str(ends[TaskState.FAILED]),
            str(ends[TaskState.KILLED]),
            str(lost),
        )
    console.print(table)
