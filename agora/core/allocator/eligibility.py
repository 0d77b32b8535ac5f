"""Who may be offered what: the checks shared by the allocation pass and by the
explanations of why a framework got nothing (so both always agree)."""

from __future__ import annotations

from collections.abc import Callable

from agora.core.allocator.options import AllocatorOptions
from agora.core.allocator.state import AllocAgent, AllocFramework, Capability
from agora.core.quantities import Quantities
from agora.core.resource_meta import ResourceMeta
from agora.core.resources import Resources
from agora.core.values import Kind


def stripper(
    strip_shared: bool, strip_revocable: bool, strip_refined: bool
) -> Callable[[ResourceMeta], bool]:
    """Keep-predicate removing what a framework lacks the capability for."""

    def keep(m: ResourceMeta) -> bool:
        return not (
            (strip_shared and m.shared)
            or (strip_revocable and m.revocable)
            or (strip_refined and len(m.reservations) > 1)
        )

    return keep


def fixed_part(m: ResourceMeta) -> bool:
    """Never limited by quota or headroom: reservations, non-scalars, revocable."""
    return bool(m.reservations) or m.kind is not Kind.SCALAR or m.revocable


def quota_part(m: ResourceMeta) -> bool:
    return not m.reservations and m.kind is Kind.SCALAR and not m.revocable


def minimums(options: AllocatorOptions, fw: AllocFramework, role: str) -> tuple[Quantities, ...]:
    return fw.profile.min_allocatable.get(role, options.min_allocatable)


def allocatable(resources: Resources, wanted: tuple[Quantities, ...]) -> bool:
    """Mesos's min_allocatable_resources: non-empty and covering one of the minimums."""
    if not resources:
        return False
    return not wanted or resources.covers_any(wanted)


def incapable(
    options: AllocatorOptions, fw: AllocFramework, agent: AllocAgent, role: str
) -> str | None:
    """Why this framework may not be offered this agent's resources at all, or None."""
    if agent.has_gpus and options.filter_gpu_resources and not fw.gpu_ok:
        return "the agent has GPUs and the framework lacks the GPU_RESOURCES capability"
    region = options.master_region
    if region is not None and agent.profile.region not in (None, region) and not fw.region_aware:
        return (
            f"the agent is in region {agent.profile.region!r} and the framework is not REGION_AWARE"
        )
    caps = agent.profile.capabilities
    if fw.multi_role and Capability.MULTI_ROLE not in caps:
        return "the framework is MULTI_ROLE and the agent lacks the MULTI_ROLE capability"
    if "/" in role and Capability.HIERARCHICAL_ROLE not in caps:
        return "the role is hierarchical and the agent lacks the HIERARCHICAL_ROLE capability"
    return None


def strip(avail: Resources, fw: AllocFramework) -> Resources:
    """`avail` without the kinds of resources the framework cannot take."""
    key = fw.strip_key
    if (key[0] and avail.has_atomic()) or key[1] or key[2]:
        return avail.cached(("strip", key), lambda: avail.filter(stripper(*key)))
    return avail
