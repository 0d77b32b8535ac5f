"""`agora agent`: run an agent on this host."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil

import click

from agora.agent.http import serve
from agora.agent.service import ServiceOptions
from agora.core.agent.model import AgentConfig
from agora.core.agent.resources import MB, agent_resources, detected_text
from agora.core.allocator.state import AGENT_CAPABILITIES
from agora.core.attributes import parse_attributes
from agora.core.errors import InvalidResource
from agora.core.master.info import AgentInfo
from agora.core.resource_text import parse_resources

_ENV_KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL")


def detect_resources(work_dir: str, override: str | None) -> str:
    os.makedirs(work_dir, exist_ok=True)
    try:
        mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MB
    except (OSError, ValueError):  # Mesos's fallback: 1 GB usable
        mem_mb = 2048
    try:
        disk_mb = shutil.disk_usage(work_dir).total // MB
    except OSError:
        disk_mb = 15 * 1024
    detected = detected_text(os.cpu_count() or 1, mem_mb, disk_mb)
    return str(agent_resources(detected, override))


@click.command()
@click.option("--master", default=None, help="Master HOST:PORT (default $AGORA_MASTER).")
@click.option("--ip", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5051, show_default=True, help="Port (0: pick a free one).")
@click.option("--hostname", default=None, help="Name advertised to the master (default: --ip).")
@click.option("--work-dir", default=None, help="Default: /tmp/agora/agent-<port>.")
@click.option("--resources", default=None, help="Mesos text form, e.g. 'cpus:2;mem:1024'.")
@click.option("--attributes", default=None, help="Mesos text form, e.g. 'rack:r1;zone:a'.")
@click.option("--isolation", default="posix/cpu,posix/mem", show_default=True)
@click.option("--executor-registration-timeout-s", default=60.0, show_default=True, type=float)
@click.option("--executor-shutdown-grace-period-s", default=5.0, show_default=True, type=float)
@click.option(
    "--cleanup-on-exit/--no-cleanup-on-exit",
    default=True,
    show_default=True,
    help="On SIGTERM/SIGINT kill the tasks and stop the supervisor.",
)
@click.option("--ready-file", default=None, help="Write {address, pid} here once serving.")
@click.option("--log-level", default="info", show_default=True)
def agent(
    master: str | None,
    ip: str,
    port: int,
    hostname: str | None,
    work_dir: str | None,
    resources: str | None,
    attributes: str | None,
    isolation: str,
    executor_registration_timeout_s: float,
    executor_shutdown_grace_period_s: float,
    cleanup_on_exit: bool,
    ready_file: str | None,
    log_level: str,
) -> None:
    """Run an Agora agent: registers with the master and runs its tasks."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    master = master or os.environ.get("AGORA_MASTER") or "127.0.0.1:5050"
    work_dir = os.path.abspath(work_dir or f"/tmp/agora/agent-{port}")
    try:
        total = detect_resources(work_dir, resources)
        parsed_attributes = parse_attributes(attributes or "")
        info = AgentInfo(
            hostname=hostname or ip,
            port=port or 1,
            resources=parse_resources(total),
            attributes=parsed_attributes,
        )
    except InvalidResource as error:
        raise click.BadParameter(str(error)) from None
    flags = {
        "master": master,
        "ip": ip,
        "port": str(port),
        "hostname": hostname or ip,
        "work_dir": work_dir,
        "resources": total,
        "attributes": attributes or "",
        "isolation": isolation,
        "executor_registration_timeout": f"{executor_registration_timeout_s}secs",
        "executor_shutdown_grace_period": f"{executor_shutdown_grace_period_s}secs",
        "cleanup_on_exit": str(cleanup_on_exit).lower(),
    }
    config = AgentConfig(
        work_dir=work_dir,
        info=info,
        ip=ip,
        port=port,
        capabilities=frozenset(AGENT_CAPABILITIES),
        base_env={k: os.environ[k] for k in _ENV_KEPT if k in os.environ},
        executor_registration_timeout_s=executor_registration_timeout_s,
        executor_shutdown_grace_period_s=executor_shutdown_grace_period_s,
    )
    options = ServiceOptions(master=master, cleanup_on_exit=cleanup_on_exit, flags=flags)
    asyncio.run(serve(config, options, ready_file))
