"""What an agent offers: detected resources (Mesos's defaults) merged with `--resources`."""

from __future__ import annotations

from agora.core.errors import InvalidResource
from agora.core.resource_text import parse_resources
from agora.core.resources import Resources

MB = 1024 * 1024
DEFAULT_PORTS = "[31000-32000]"


def usable_mem_mb(total_mb: int) -> int:
    """Mesos leaves 1 GB to the system, or half the memory on machines under 2 GB."""
    return total_mb - 1024 if total_mb >= 2048 else total_mb // 2


def usable_disk_mb(total_mb: int) -> int:
    """Mesos leaves 5 GB of the work dir's disk, or half of a disk under 10 GB."""
    return total_mb - 5 * 1024 if total_mb >= 10 * 1024 else total_mb // 2


def detected_text(cpus: int, mem_total_mb: int, disk_total_mb: int) -> str:
    return (
        f"cpus:{max(cpus, 1)};mem:{max(usable_mem_mb(mem_total_mb), 0)};"
        f"disk:{max(usable_disk_mb(disk_total_mb), 0)};ports:{DEFAULT_PORTS}"
    )


def agent_resources(detected: str, override: str | None) -> Resources:
    """`override` (Mesos text form) replaces detected entries of the same names."""
    if not override:
        return parse_resources(detected)
    given = parse_resources(override)
    names = given.names()
    kept = [e for e in detected.split(";") if e and e.split(":", 1)[0].split("(")[0] not in names]
    return parse_resources(";".join([*kept, override]))


def with_gpus(override: str | None, devices: tuple[int, ...]) -> str | None:
    """`--resources` with `gpus` set to the number of GPU devices, unless it names `gpus`
    itself, in which case the two must agree (Mesos's NvidiaGpuAllocator)."""
    given = parse_resources(override) if override else Resources()
    if "gpus" not in given.names():
        return ";".join(p for p in (override, f"gpus:{len(devices)}" if devices else "") if p)
    milli = given.scalar("gpus")
    if milli % 1000:
        raise InvalidResource(f"gpus:{milli / 1000:g} must be a whole number")
    if milli // 1000 != len(devices):
        raise InvalidResource(
            f"gpus:{milli // 1000} does not match the {len(devices)} GPU devices "
            "of --gpu-devices (or found by nvidia-smi)"
        )
    return override
