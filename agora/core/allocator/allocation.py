"""One allocation pass (Mesos hierarchical.cpp `__allocate`), run by the allocator.

Agents are visited in seeded random order. Stage 1 gives roles below their quota
guarantee what they lack; stage 2 shares the rest by DRF (roles by weighted share,
frameworks by share within their role). Both stages cap roles at their quota limits
and hold back headroom for guarantees still unmet. Sorter updates are applied after
each agent, which gives Mesos's snapshot-per-agent ordering.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

from agora.core.allocator.eligibility import (
    allocatable,
    fixed_part,
    incapable,
    minimums,
    quota_part,
    strip,
)
from agora.core.allocator.filters import FilterGroup, RoleFilters
from agora.core.allocator.quota import quota_scalars
from agora.core.allocator.state import AllocAgent, AllocFramework
from agora.core.quantities import EMPTY_QUANTITIES, Quantities
from agora.core.resources import EMPTY, Resources
from agora.core.seeded import Rng

if TYPE_CHECKING:
    from agora.core.allocator.allocator import HierarchicalAllocator


class Stage(StrEnum):
    QUOTA_GUARANTEE = "quota-guarantee"
    FAIR_SHARE = "fair-share"


class OfferDecision(NamedTuple):
    """One offer to make: `resources` (tagged with `role`) of `agent_id` to a framework."""

    framework_id: str
    role: str
    agent_id: str
    resources: Resources
    stage: Stage
    role_share: float
    framework_share: float

    def why(self) -> str:
        if self.stage is Stage.QUOTA_GUARANTEE:
            return f"role {self.role!r} is below its quota guarantee"
        return (
            f"role {self.role!r} had the lowest weighted DRF share ({self.role_share:.4f}) "
            f"and the framework the lowest within it ({self.framework_share:.4f})"
        )


def _in_any(framework_id: str, groups: list[FilterGroup]) -> bool:
    # A plain loop: any() with a generator costs more on this per-framework hot path.
    for group in groups:  # noqa: SIM110
        if framework_id in group:
            return True
    return False


_SorterUpdate = tuple[str, str, dict[str, int]]  # framework id, role, scalar amounts


class AllocationPass:
    """One allocation pass over some agents: its scratch state and the algorithm."""

    __slots__ = (
        "now",
        "decisions",
        "offered_shared",
        "quota_on",
        "required",
        "headroom",
        "guaranteed",
        "allocator",
    )

    def __init__(self, allocator: HierarchicalAllocator, now: float) -> None:
        self.allocator = allocator
        self.now = now
        self.decisions: list[OfferDecision] = []
        self.offered_shared: dict[str, Resources] = {}
        self.quota_on = False
        self.required: dict[str, int] = {}
        self.headroom: dict[str, int] = {}
        # Stage 1: the guaranteed part of the offer being granted (it alone lowers
        # the required headroom; the extra above it does not satisfy other roles).
        self.guaranteed = EMPTY_QUANTITIES

    def run(self, agents: list[AllocAgent], rng: Rng) -> list[OfferDecision]:
        """Allocate over `agents` (already shuffled); return the offers to make."""
        if self.allocator._roles.has_quota():
            self._prepare_quota()
            if self.allocator._roles.has_guarantees():
                self._stage(agents, Stage.QUOTA_GUARANTEE)
                rng.shuffle(agents)
        self._stage(agents, Stage.FAIR_SHARE)
        return self.decisions

    def _prepare_quota(self) -> None:
        self.quota_on = True
        self.required = self.allocator._roles.required_headroom().as_dict()
        headroom: dict[str, int] = {}
        for agent in self.allocator._agents.values():
            for name, amount in quota_scalars(agent.available).items():
                headroom[name] = headroom.get(name, 0) + amount
        self.headroom = headroom

    def _stage(self, agents: list[AllocAgent], stage: Stage) -> None:
        role_sorter = self.allocator._role_sorter
        fw_sorters = self.allocator._fw_sorters
        frameworks = self.allocator._frameworks
        roles = self.allocator._roles
        now = self.now
        guarantee_stage = stage is Stage.QUOTA_GUARANTEE
        for agent in agents:
            if not agent.available:
                continue
            updates: list[_SorterUpdate] = []
            for role in role_sorter.order():
                if guarantee_stage and not roles.quota(role).guarantees:
                    continue
                fsorter = fw_sorters[role]
                active = fsorter.active_count()
                if not active:
                    continue
                avail = agent.available.allocatable_to(role)
                if not avail:
                    continue
                rf = agent.filters.get(role)
                covering: list[FilterGroup] = []
                if rf is not None:
                    for gone in rf.prune(now):
                        self.allocator._count_filter(gone, role, -1)
                    covering = rf.covering(avail)
                    if covering and rf.distinct(covering) >= active:
                        continue
                for framework_id in fsorter.order():
                    if covering and _in_any(framework_id, covering):
                        continue
                    fw = frameworks[framework_id]
                    if guarantee_stage:
                        offer = self._guaranteed_offer(agent, role, fw, avail, rf)
                    else:
                        offer = self._fair_offer(agent, role, fw, avail, rf)
                    if offer is None:
                        continue
                    self._grant(agent, fw, role, offer, stage, updates)
                    avail = agent.available
                    if not avail:
                        break
                    avail = avail.allocatable_to(role)
                    if not avail:
                        break
                if not agent.available:
                    break
            for framework_id, role, quantities in updates:
                fw_sorters[role].allocated(framework_id, quantities)
                role_sorter.allocated(role, quantities)

    def _candidate(
        self, agent: AllocAgent, role: str, fw: AllocFramework, avail: Resources
    ) -> Resources | None:
        """What this framework could be offered here before quota: checks shared by both
        stages (constraints, minimum size, capabilities, stripping)."""
        constraints = fw.profile.constraints.get(role)
        if constraints is not None and not constraints.admits(agent.facts):
            return None
        if avail.has_atomic():
            shared = self.offered_shared.get(agent.id)
            if shared is not None:
                avail = avail.saturating_sub(shared)
        if (
            not allocatable(avail, minimums(self.allocator.options, fw, role))
            or incapable(self.allocator.options, fw, agent, role) is not None
        ):
            return None
        whole = avail
        avail = strip(avail, fw)
        # Stripping may leave nothing, or too little (e.g. only revocable cpus).
        if avail is not whole and not allocatable(
            avail, minimums(self.allocator.options, fw, role)
        ):
            return None
        return avail

    def _fair_offer(
        self,
        agent: AllocAgent,
        role: str,
        fw: AllocFramework,
        avail: Resources,
        rf: RoleFilters | None,
    ) -> Resources | None:
        candidate = self._candidate(agent, role, fw, avail)
        if candidate is None:
            return None
        offer = candidate
        if self.quota_on:
            extra = offer.filter(quota_part)
            if extra:
                chopped = self._chop_extra(role, extra, EMPTY_QUANTITIES)
                if chopped is not extra:
                    offer = offer.filter(fixed_part) + chopped
        return self._final(offer, offer is not candidate, role, fw, rf)

    def _guaranteed_offer(
        self,
        agent: AllocAgent,
        role: str,
        fw: AllocFramework,
        avail: Resources,
        rf: RoleFilters | None,
    ) -> Resources | None:
        unsatisfied = self.allocator._roles.unsatisfied_guarantee(role)
        if not unsatisfied:
            return None
        candidate = self._candidate(agent, role, fw, avail)
        if candidate is None:
            return None
        quota_counted = candidate.filter(quota_part)
        guaranteed = quota_counted.shrink_to(unsatisfied)
        if not guaranteed:
            return None
        guaranteed_q = guaranteed.scalar_quantities()
        extra = self._chop_extra(role, quota_counted - guaranteed, guaranteed_q)
        offer = guaranteed + candidate.filter(fixed_part) + extra
        if self._final(offer, True, role, fw, rf) is None:
            return None
        self.guaranteed = guaranteed_q
        return offer

    def _final(
        self, offer: Resources, changed: bool, role: str, fw: AllocFramework, rf: RoleFilters | None
    ) -> Resources | None:
        """The last checks of both stages: still big enough (if quota changed it), and
        not refused by one of the framework's decline filters."""
        if changed and not allocatable(offer, minimums(self.allocator.options, fw, role)):
            return None
        if rf is not None and rf.blocking(fw.id, offer, self.now) is not None:
            return None
        return offer

    def _chop_extra(self, role: str, extra: Resources, already: Quantities) -> Resources:
        """Cap `extra` by the role's quota limits and by headroom held for guarantees.

        `already` (the guaranteed part of a stage-1 offer) counts against the limits
        only: it lowers the available and the required headroom alike, so the surplus
        headroom left for `extra` is still available - required (as in Mesos).
        """
        limit = self.allocator._roles.limit_headroom(role)
        if limit is not None:
            extra = extra.shrink_to(
                {k: max(0, v - already[k]) for k, v in limit.items()}, absent_unlimited=True
            )
        if self.required:
            cap = {
                name: max(0, self.headroom.get(name, 0) - need)
                for name, need in self.required.items()
            }
            extra = extra.shrink_to(cap, absent_unlimited=True)
        return extra

    def _grant(
        self,
        agent: AllocAgent,
        fw: AllocFramework,
        role: str,
        offer: Resources,
        stage: Stage,
        updates: list[_SorterUpdate],
    ) -> None:
        tagged = offer.allocate(role)
        framework_id = fw.id
        quantities = self.allocator._sorter_delta(agent, framework_id, role, tagged, +1)
        agent.available = agent.available - offer.non_shared()
        held = agent.holdings.get(framework_id)
        agent.holdings[framework_id] = tagged if held is None else held + tagged
        self.allocator._roles.add_held(role, offer, +1)
        if self.quota_on:
            for name, amount in quota_scalars(offer).items():
                self.headroom[name] = self.headroom.get(name, 0) - amount
            if stage is Stage.QUOTA_GUARANTEE:
                for name, amount in self.guaranteed.items():
                    if name in self.required:
                        self.required[name] = max(0, self.required[name] - amount)
        if offer.has_atomic():
            shared = offer.shared()
            if shared:
                self.offered_shared[agent.id] = self.offered_shared.get(agent.id, EMPTY) + shared
        updates.append((framework_id, role, quantities.amounts))
        role_key = self.allocator._role_sorter.key(role)
        fw_key = self.allocator._fw_sorters[role].key(framework_id)
        self.decisions.append(
            OfferDecision(
                framework_id,
                role,
                agent.id,
                tagged,
                stage,
                role_key[0] if role_key else 0.0,
                fw_key[0] if fw_key else 0.0,
            )
        )
