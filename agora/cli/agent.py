"""`agora agent`: run an agent on this host."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil

import click

from agora.agent.checkpoint import BOOT_ID_PATH, RecoveryError
from agora.agent.containerizer.containerizer import UnknownIsolatorError, isolator_names
from agora.agent.containerizer.gpu import discover_gpus
from agora.agent.containerizer.options import ContainerizerOptions, default_isolation
from agora.agent.http import serve
from agora.agent.service import RECOVER_MODES, ServiceOptions
from agora.core.agent.model import AgentConfig
from agora.core.agent.resources import MB, agent_resources, detected_text, with_gpus
from agora.core.allocator.state import AGENT_CAPABILITIES
from agora.core.attributes import parse_attributes
from agora.core.errors import InvalidResource
from agora.core.master.info import AgentInfo
from agora.core.resource_text import parse_resources
from agora.zookeeper.leader import is_zk_url
from agora.zookeeper.url import InvalidZooKeeperUrl, parse_zk_url

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


def agent_gpus(isolation: str, declared: tuple[int, ...]) -> tuple[int, ...]:
    """The GPU minor numbers to offer: --gpu-devices, else what nvidia-smi finds, and
    only with the gpu/nvidia isolator (as Mesos)."""
    if "gpu/nvidia" not in isolator_names(isolation.split(",")):
        if declared:
            raise click.BadParameter("needs gpu/nvidia in --isolation", param_hint="--gpu-devices")
        return ()
    return declared or tuple(sorted(discover_gpus()))


@click.command()
@click.option(
    "--master",
    default=None,
    help="Master HOST:PORT, or zk://HOST:PORT,.../PATH to follow the leader "
    "(default $AGORA_MASTER).",
)
@click.option("--ip", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5051, show_default=True, help="Port (0: pick a free one).")
@click.option("--hostname", default=None, help="Name advertised to the master (default: --ip).")
@click.option("--work-dir", default=None, help="Default: /tmp/agora/agent-<port>.")
@click.option("--resources", default=None, help="Mesos text form, e.g. 'cpus:2;mem:1024'.")
@click.option("--attributes", default=None, help="Mesos text form, e.g. 'rack:r1;zone:a'.")
@click.option(
    "--isolation",
    default="auto",
    show_default=True,
    help="Comma-separated isolators; auto: cgroups/cpu,cgroups/mem,cgroups/pids,disk/du,"
    "filesystem/linux where cgroups are usable, else posix/cpu,posix/mem,disk/du.",
)
@click.option("--cgroups-hierarchy", default="/sys/fs/cgroup", show_default=True)
@click.option("--cgroups-root", default="agora", show_default=True)
@click.option("--cgroups-enable-cfs", is_flag=True, help="Hard-cap CPU with CFS quotas.")
@click.option("--cgroups-limit-swap", is_flag=True, help="Limit memory+swap, not only memory.")
@click.option("--enforce-container-disk-quota", is_flag=True, help="disk/du kills over-quota.")
@click.option("--container-disk-watch-interval-s", default=15.0, show_default=True, type=float)
@click.option("--sandbox-directory", default="/mnt/mesos/sandbox", show_default=True)
@click.option("--docker-registry", default=None, help="Directory of `docker save` tarballs.")
@click.option("--docker-store-dir", default=None, help="Default: <work-dir>/store/docker.")
@click.option("--image-provisioner-backend", type=click.Choice(["overlay", "copy"]), default=None)
@click.option("--fetcher-cache-dir", default=None, help="Default: <work-dir>/fetcher-cache.")
@click.option("--fetcher-cache-size-mb", default=2048, show_default=True, type=int)
@click.option("--fetcher-stall-timeout-s", default=60.0, show_default=True, type=float)
@click.option("--frameworks-home", default=None, help="Base of relative fetcher URIs.")
@click.option(
    "--switch-user/--no-switch-user",
    default=True,
    show_default=True,
    help="Run tasks as CommandInfo.user / FrameworkInfo.user.",
)
@click.option("--gpu-devices", default=None, help="NVIDIA GPU minor numbers to offer, e.g. 0,1.")
@click.option("--executor-registration-timeout-s", default=60.0, show_default=True, type=float)
@click.option("--executor-shutdown-grace-period-s", default=5.0, show_default=True, type=float)
@click.option(
    "--executor-reregistration-timeout-s",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0.0, 15.0),
    help="After a restart, how long recovered executors have to re-subscribe (max 15).",
)
@click.option(
    "--recovery-timeout-s",
    default=900.0,
    show_default=True,
    type=click.FloatRange(min=0.0, min_open=True),
    help="How long checkpointing executors wait for a restarted agent (MESOS_RECOVERY_TIMEOUT).",
)
@click.option(
    "--recover",
    type=click.Choice(RECOVER_MODES),
    default="reconnect",
    show_default=True,
    help="reconnect: recover the checkpointed tasks of the last agent on this work dir; "
    "cleanup: kill everything it left, forget its checkpoint and id, and exit.",
)
@click.option(
    "--strict/--no-strict",
    default=True,
    show_default=True,
    help="A corrupt checkpoint stops the agent; --no-strict recovers what is left "
    "(a torn last update record is always tolerated).",
)
@click.option(
    "--boot-id-file",
    default=BOOT_ID_PATH,
    show_default=True,
    help="Where this boot's id is read (reboot detection; tests point it elsewhere).",
)
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
    cgroups_hierarchy: str,
    cgroups_root: str,
    cgroups_enable_cfs: bool,
    cgroups_limit_swap: bool,
    enforce_container_disk_quota: bool,
    container_disk_watch_interval_s: float,
    sandbox_directory: str,
    docker_registry: str | None,
    docker_store_dir: str | None,
    image_provisioner_backend: str | None,
    fetcher_cache_dir: str | None,
    fetcher_cache_size_mb: int,
    fetcher_stall_timeout_s: float,
    frameworks_home: str | None,
    switch_user: bool,
    gpu_devices: str | None,
    executor_registration_timeout_s: float,
    executor_shutdown_grace_period_s: float,
    executor_reregistration_timeout_s: float,
    recovery_timeout_s: float,
    recover: str,
    strict: bool,
    boot_id_file: str,
    cleanup_on_exit: bool,
    ready_file: str | None,
    log_level: str,
) -> None:
    """Run an Agora agent: registers with the master and runs its tasks."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    master = master or os.environ.get("AGORA_MASTER") or "127.0.0.1:5050"
    if is_zk_url(master):
        try:
            parse_zk_url(master)
        except InvalidZooKeeperUrl as error:
            raise click.BadParameter(str(error), param_hint="--master") from None
    work_dir = os.path.abspath(work_dir or f"/tmp/agora/agent-{port}")
    if isolation == "auto":
        isolation = ",".join(default_isolation(cgroups_hierarchy))
    try:
        isolator_names(isolation.split(","))
        gpus = tuple(int(d) for d in gpu_devices.split(",") if d.strip()) if gpu_devices else ()
    except UnknownIsolatorError as error:
        raise click.BadParameter(str(error), param_hint="--isolation") from None
    except ValueError:
        raise click.BadParameter(
            "must be comma-separated GPU minor numbers", param_hint="--gpu-devices"
        ) from None
    try:
        gpus = agent_gpus(isolation, gpus)
        if "gpu/nvidia" in isolator_names(isolation.split(",")):
            resources = with_gpus(resources, gpus)
    except InvalidResource as error:
        raise click.BadParameter(str(error), param_hint="--resources") from None
    containerizer = ContainerizerOptions(
        work_dir=work_dir,
        isolation=tuple(isolation.split(",")),
        agent_key=hashlib.sha1(work_dir.encode()).hexdigest()[:12],
        cgroups_hierarchy=cgroups_hierarchy,
        cgroups_root=cgroups_root,
        cgroups_enable_cfs=cgroups_enable_cfs,
        cgroups_limit_swap=cgroups_limit_swap,
        enforce_container_disk_quota=enforce_container_disk_quota,
        container_disk_watch_interval_s=container_disk_watch_interval_s,
        sandbox_directory=sandbox_directory,
        docker_registry=docker_registry,
        docker_store_dir=docker_store_dir,
        image_provisioner_backend=image_provisioner_backend,
        fetcher_cache_dir=fetcher_cache_dir,
        fetcher_cache_size_bytes=fetcher_cache_size_mb * 1024 * 1024,
        fetcher_stall_timeout_s=fetcher_stall_timeout_s,
        frameworks_home=frameworks_home,
        switch_user=switch_user,
        gpu_devices=gpus,
    )
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
        "cgroups_root": cgroups_root,
        "cgroups_enable_cfs": str(cgroups_enable_cfs).lower(),
        "enforce_container_disk_quota": str(enforce_container_disk_quota).lower(),
        "sandbox_directory": sandbox_directory,
        "switch_user": str(switch_user).lower(),
        "docker_registry": docker_registry or "",
        "nvidia_gpu_devices": ",".join(str(g) for g in gpus),
        "executor_registration_timeout": f"{executor_registration_timeout_s}secs",
        "executor_shutdown_grace_period": f"{executor_shutdown_grace_period_s}secs",
        "executor_reregistration_timeout": f"{executor_reregistration_timeout_s}secs",
        "recovery_timeout": f"{recovery_timeout_s}secs",
        "recover": recover,
        "strict": str(strict).lower(),
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
        executor_reregistration_timeout_s=executor_reregistration_timeout_s,
        recovery_timeout_s=recovery_timeout_s,
        switch_user=switch_user,
    )
    options = ServiceOptions(
        master=master,
        cleanup_on_exit=cleanup_on_exit,
        flags=flags,
        containerizer=containerizer,
        recover=recover,
        strict=strict,
        boot_id_path=boot_id_file,
    )
    try:
        asyncio.run(serve(config, options, ready_file))
    except RecoveryError as error:
        raise click.ClickException(f"cannot recover from {work_dir}/meta: {error}") from None
