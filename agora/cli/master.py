"""`agora master`: run a master on this host."""

from __future__ import annotations

import asyncio
import logging

import click

from agora.core.allocator.options import AllocatorOptions
from agora.core.master.model import MasterOptions
from agora.master.app import serve
from agora.master.service import MasterConfig
from agora.zookeeper.url import InvalidZooKeeperUrl, parse_zk_url


@click.command()
@click.option("--ip", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5050, show_default=True, help="Port (0: pick a free one).")
@click.option("--hostname", default=None, help="Name advertised to frameworks (default: --ip).")
@click.option("--work-dir", default="/tmp/agora/master", show_default=True)
@click.option("--allocation-interval-s", default=1.0, show_default=True, type=float)
@click.option("--offer-timeout-s", default=None, type=float, help="Rescind unused offers.")
@click.option("--agent-ping-timeout-s", default=15.0, show_default=True, type=float)
@click.option("--max-agent-ping-timeouts", default=5, show_default=True, type=int)
@click.option("--agent-reregister-timeout-s", default=600.0, show_default=True, type=float)
@click.option(
    "--registry",
    type=click.Choice(["sqlite", "in_memory"]),
    default="sqlite",
    show_default=True,
    help="Where the registry lives: <work-dir>/registry.sqlite, or memory only.",
)
@click.option(
    "--zk",
    default=None,
    help="zk://host:port[,host:port...]/path: elect a leader among masters with this URL "
    "(the registry then lives in ZooKeeper).",
)
@click.option(
    "--quorum",
    default=None,
    type=click.IntRange(min=1),
    help="Accepted with --zk for Mesos compatibility: ZooKeeper's own quorum makes "
    "registry writes durable.",
)
@click.option("--zk-session-timeout-s", default=10.0, show_default=True, type=float)
@click.option("--ready-file", default=None, help="Write {address, pid} here once serving.")
@click.option("--log-level", default="info", show_default=True)
def master(
    ip: str,
    port: int,
    hostname: str | None,
    work_dir: str,
    allocation_interval_s: float,
    offer_timeout_s: float | None,
    agent_ping_timeout_s: float,
    max_agent_ping_timeouts: int,
    agent_reregister_timeout_s: float,
    registry: str,
    zk: str | None,
    quorum: int | None,
    zk_session_timeout_s: float,
    ready_file: str | None,
    log_level: str,
) -> None:
    """Run an Agora master (Mesos v1 scheduler and operator APIs)."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    options = MasterOptions(
        allocation_interval_s=allocation_interval_s,
        offer_timeout_s=offer_timeout_s,
        agent_ping_timeout_s=agent_ping_timeout_s,
        max_agent_ping_timeouts=max_agent_ping_timeouts,
        agent_reregister_timeout_s=agent_reregister_timeout_s,
        allocator=AllocatorOptions(allocation_interval_s=allocation_interval_s),
    )
    flags = {
        "ip": ip,
        "port": str(port),
        "hostname": hostname or ip,
        "work_dir": work_dir,
        "allocation_interval": f"{allocation_interval_s}secs",
        "agent_ping_timeout": f"{agent_ping_timeout_s}secs",
        "max_agent_ping_timeouts": str(max_agent_ping_timeouts),
        "agent_reregister_timeout": f"{agent_reregister_timeout_s}secs",
        "registry": "zookeeper" if zk else registry,
    }
    if zk:
        try:
            flags["zk"] = str(parse_zk_url(zk))  # the password masked
        except InvalidZooKeeperUrl as error:
            raise click.BadParameter(str(error), param_hint="--zk") from None
        flags["zk_session_timeout"] = f"{zk_session_timeout_s}secs"
        if quorum is not None:
            flags["quorum"] = str(quorum)
    config = MasterConfig(
        ip=ip,
        port=port,
        hostname=hostname,
        work_dir=work_dir,
        registry="zookeeper" if zk else registry,
        zk=zk,
        zk_session_timeout_s=zk_session_timeout_s,
        options=options,
        flags=flags,
    )
    asyncio.run(serve(config, ready_file))
