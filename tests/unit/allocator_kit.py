"""Helpers shared by the allocator unit tests (not a test module itself)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping

from agora.core.allocator import AllocatorOptions, HierarchicalAllocator, OfferDecision
from agora.core.allocator.state import AgentProfile, Capability, FrameworkProfile
from agora.core.quantities import Quantities
from agora.core.resource_meta import DiskInfo, Volume, dynamic
from agora.core.resource_text import parse_resources
from agora.core.resources import EMPTY, Resources


def res(text: str) -> Resources:
    """Mesos text form; an empty string is no resources."""
    return parse_resources(text) if text else EMPTY


def qty(text: str) -> Quantities:
    return Quantities.parse(text)


def revocable(text: str) -> Resources:
    return res(text).map_meta(lambda m: m._replace(revocable=True))


def refined(text: str, *roles: str) -> Resources:
    """`text` (possibly statically reserved) with dynamic reservations pushed on top."""
    out = res(text)
    for role in roles:
        out = out.push_reservation(dynamic(role, "ops"))
    return out


def volume(text: str, persistence_id: str, shared: bool = False) -> Resources:
    """A persistent volume made of reserved disk `text`, e.g. `disk(role1):5`."""
    disk = DiskInfo(persistence_id=persistence_id, volume=Volume("data"))
    return res(text).map_meta(lambda m: m._replace(disk=disk, shared=shared))


def profile(
    *roles: str,
    caps: Iterable[str] = (),
    suppressed: Iterable[str] = (),
    min_allocatable: Mapping[str, tuple[Quantities, ...]] | None = None,
    constraints: Mapping[str, object] | None = None,
) -> FrameworkProfile:
    return FrameworkProfile(
        roles=frozenset(roles),
        capabilities=frozenset(caps),
        suppressed_roles=frozenset(suppressed),
        min_allocatable=dict(min_allocatable or {}),
        constraints=dict(constraints or {}),  # type: ignore[arg-type]
    )


MULTI = (Capability.MULTI_ROLE,)
ALL_CAPS = (
    Capability.MULTI_ROLE,
    Capability.GPU_RESOURCES,
    Capability.SHARED_RESOURCES,
    Capability.REVOCABLE_RESOURCES,
    Capability.RESERVATION_REFINEMENT,
    Capability.REGION_AWARE,
)


class Cluster:
    """An allocator with a clock and short-hands for the calls a master would make."""

    def __init__(
        self, options: AllocatorOptions | None = None, seed: int = 0, **option_kw: object
    ) -> None:
        if options is None:
            options = AllocatorOptions(**option_kw)  # type: ignore[arg-type]
        self.alloc = HierarchicalAllocator(options, random.Random(seed))
        self.now = 0.0

    # ---------------------------------------------------------------- membership

    def framework(self, framework_id: str, *roles: str, **kw: object) -> None:
        active = bool(kw.pop("active", True))
        self.alloc.add_framework(framework_id, profile(*roles, **kw), active=active)  # type: ignore[arg-type]

    def agent(
        self,
        agent_id: str,
        text: str | Resources,
        used: Mapping[str, Resources] | None = None,
        **profile_kw: object,
    ) -> None:
        total = res(text) if isinstance(text, str) else text
        agent_profile = AgentProfile(hostname=agent_id, **profile_kw)  # type: ignore[arg-type]
        self.alloc.add_agent(agent_id, agent_profile, total, used=used)

    # ---------------------------------------------------------------- allocation

    def allocate(self, full: bool = False) -> list[OfferDecision]:
        decisions = self.alloc.allocate(self.now, full=full)
        check_invariants(self.alloc)
        return decisions

    def tick(self, seconds: float = 1.0) -> list[OfferDecision]:
        """Advance the clock and run the periodic (full) allocation."""
        self.now += seconds
        return self.allocate(full=True)

    def decline(self, decision: OfferDecision, refuse_seconds: object = 0) -> None:
        self.alloc.recover_resources(
            decision.framework_id,
            decision.agent_id,
            decision.resources,
            refuse_seconds=refuse_seconds,
            now=self.now,
        )

    def decline_all(self, decisions: Iterable[OfferDecision], refuse_seconds: object = 0) -> None:
        for decision in decisions:
            self.decline(decision, refuse_seconds)


def by_framework(decisions: Iterable[OfferDecision]) -> dict[str, dict[str, Resources]]:
    """framework -> agent -> offered resources (unallocated form)."""
    out: dict[str, dict[str, Resources]] = defaultdict(dict)
    for d in decisions:
        got = out[d.framework_id].get(d.agent_id, EMPTY)
        out[d.framework_id][d.agent_id] = got + d.resources.unallocate()
    return dict(out)


def offered_to(decisions: Iterable[OfferDecision], framework_id: str) -> Resources:
    return Resources.sum(
        d.resources.unallocate() for d in decisions if d.framework_id == framework_id
    )


def agents_of(decisions: Iterable[OfferDecision], framework_id: str) -> set[str]:
    return {d.agent_id for d in decisions if d.framework_id == framework_id}


def summary(decisions: Iterable[OfferDecision]) -> list[tuple[str, str, str, str]]:
    return [(d.framework_id, d.role, d.agent_id, str(d.resources)) for d in decisions]


def check_invariants(alloc: HierarchicalAllocator) -> None:
    """No agent is over-allocated: available + what frameworks hold == total (shared
    volumes stay in `available` while held, so only non-shared holdings count).

    After an agent's total shrank below what is held (a lower oversubscription
    estimate) nothing more than total - held may be available."""
    for agent_id in alloc.agent_ids():
        held = Resources.sum(h.unallocate().non_shared() for h in alloc.holdings(agent_id).values())
        total = alloc.total(agent_id)
        available = alloc.available(agent_id)
        if total.contains(held):
            assert available + held == total, (
                f"agent {agent_id}: available {available} + held {held} != total {total}"
            )
        else:
            assert available == total.saturating_sub(held), (
                f"agent {agent_id} is overcommitted (held {held}, total {total}) "
                f"yet has {available} available"
            )
