"""`agora local`: a real master and N agents on this host, until Ctrl-C.

The host's CPUs, memory, disk and the port range 31000-32000 are split between the agents
unless `--resources` is given. Flags this command does not know are passed to every agent.
`--ha` runs three masters that elect a leader in a ZooKeeper server this command starts
(Debian's `zookeeper` package) or in `--zk URL`; the agents follow the leader.
(`agora simulate` runs the deterministic simulator instead.)
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import threading
from pathlib import Path
from types import FrameType

import click
import psutil  # type: ignore[import-untyped]
from rich.console import Console

from agora.testing.cluster import ClusterError, LocalCluster
from agora.testing.zookeeper import ZooKeeperEnsemble, ZooKeeperStartError, missing_zookeeper

PORTS_BEGIN = 31000
PORTS_END = 32000


def split_host_resources(agents: int, work_dir: Path) -> list[str]:
    """One `--resources` text per agent: an equal share of this host (Mesos-like defaults
    leave some memory and disk to the system)."""
    cpus = (psutil.cpu_count() or 1) / agents
    total_mb = psutil.virtual_memory().total / 2**20
    mem_mb = (total_mb - min(1024.0, total_mb / 2)) / agents
    free_mb = shutil.disk_usage(work_dir).free / 2**20
    disk_mb = (free_mb - min(5 * 1024.0, free_mb / 2)) / agents
    span = (PORTS_END - PORTS_BEGIN + 1) // agents
    out = []
    for index in range(agents):
        begin = PORTS_BEGIN + index * span
        out.append(
            f"cpus:{max(0.1, round(cpus, 1)):g};mem:{max(32, int(mem_mb))};"
            f"disk:{max(0, int(disk_mb))};ports:[{begin}-{begin + span - 1}]"
        )
    return out


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--agents", default=2, show_default=True, help="number of agents")
@click.option("--port", default=5050, show_default=True, help="master port (0: any free port)")
@click.option("--ip", default="127.0.0.1", show_default=True, help="address to serve on")
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="keep state and logs here (default: a temporary directory, removed at exit)",
)
@click.option("--resources", default=None, help='each agent\'s resources, e.g. "cpus:2;mem:1024"')
@click.option("--isolation", default=None, help="agent isolation, e.g. posix/cpu,posix/mem")
@click.option("--attributes", default=None, help='agent attributes, e.g. "rack:r1"')
@click.option("--start-timeout-s", default=60.0, show_default=True, help="start-up limit")
@click.option("--ha", is_flag=True, help="three masters electing a leader in ZooKeeper")
@click.option("--zk", default=None, help="with --ha: an existing zk://... (default: run one)")
@click.pass_context
def local(
    context: click.Context,
    agents: int,
    port: int,
    ip: str,
    work_dir: Path | None,
    resources: str | None,
    isolation: str | None,
    attributes: str | None,
    start_timeout_s: float,
    ha: bool,
    zk: str | None,
) -> None:
    """Run one master and N agents on this host until Ctrl-C (extra flags go to the agents)."""
    console = Console(highlight=False)
    if agents < 1:
        raise click.BadParameter("at least one agent", param_hint="--agents")
    agent_args: list[str] = []
    if isolation:
        agent_args += ["--isolation", isolation]
    if attributes:
        agent_args += ["--attributes", attributes]
    agent_args += context.args
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    shares = split_host_resources(agents, work_dir or Path.cwd())
    with contextlib.ExitStack() as resources_held:
        if ha and zk is None:
            zk = _start_zookeeper(console, resources_held, work_dir, start_timeout_s)
        cluster = LocalCluster(
            agents=agents,
            work_dir=work_dir,
            master_port=port,
            agent_resources=resources if resources else shares,
            agent_args=agent_args,
            ip=ip,
            start_timeout_s=start_timeout_s,
            masters=3 if ha else 1,
            zk=zk if ha else None,
        )
        _run(console, cluster, agents)


def _start_zookeeper(
    console: Console, stack: contextlib.ExitStack, work_dir: Path | None, timeout_s: float
) -> str:
    reason = missing_zookeeper()
    if reason is not None:
        raise click.ClickException(f"--ha needs ZooKeeper: {reason} (or give --zk)")
    server = ZooKeeperEnsemble(
        work_dir=work_dir / "zookeeper" if work_dir is not None else None,
        start_timeout_s=timeout_s,
    )
    console.print("starting ZooKeeper ...")
    try:
        stack.enter_context(server)
    except ZooKeeperStartError as error:
        raise click.ClickException(str(error)) from None
    return server.url("/agora")


def _run(console: Console, cluster: LocalCluster, agents: int) -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    masters = len(cluster.masters)
    try:
        console.print(
            f"starting {masters} master(s) and {agents} agent(s) in {cluster.work_dir} ..."
        )
        try:
            cluster.start()
        except ClusterError as error:
            raise click.ClickException(str(error)) from None
        _print_addresses(console, cluster)
        console.print("press Ctrl-C to stop")
        while not stop.wait(0.5):
            if not any(m.alive for m in cluster.masters):
                console.print("[red]the master exited[/]\n" + cluster.master.log_tail())
                raise SystemExit(1)
            for process in cluster.agent_processes:
                if not process.alive:
                    console.print(f"[red]{process.name} exited[/]\n" + process.log_tail())
                    raise SystemExit(1)
    finally:
        console.print("stopping ...")
        cluster.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        console.print("stopped")


def _print_addresses(console: Console, cluster: LocalCluster) -> None:
    master = cluster.master_address
    console.print(f"[bold green]master[/]   {master}" + ("  (leading)" if cluster.zk else ""))
    console.print(f"  scheduler API  http://{master}/api/v1/scheduler")
    console.print(f"  operator API   http://{master}/api/v1")
    console.print(f"  state          http://{master}/master/state")
    for process in cluster.masters:
        if process.address not in (None, master):
            console.print(f"[green]master[/]   {process.address}  (standby: 307 to the leader)")
    if cluster.zk:
        console.print(
            f"[bold]zookeeper[/] {cluster.zk}  (give it as --master to follow the leader)"
        )
    for index, address in enumerate(cluster.agents):
        console.print(f"[bold cyan]agent {index}[/]  {address}  http://{address}/state")
    console.print(f"logs in {cluster.work_dir}; export AGORA_MASTER={cluster.zk or master}")
