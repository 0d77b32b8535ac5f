"""`HierarchicalAllocator`: Mesos's hierarchical DRF allocator as a synchronous object.

The master core calls it directly; it keeps no timer of its own and no copy of the
master's state, only what allocation needs (agents' totals and holdings, frameworks'
roles and filters, role weights and quota). `allocate(now)` runs one allocation pass
(the agents that changed since the last pass, or all of them) and returns the offers
to make as `OfferDecision`s, each saying why it was made.

The pass follows Mesos 1.9+ (hierarchical.cpp): agents in seeded random order; stage 1
satisfies quota guarantees, stage 2 shares the rest by DRF; both hold back headroom
for unsatisfied guarantees and cap roles at their quota limits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from agora.core.allocator.allocation import AllocationPass, OfferDecision
from agora.core.allocator.explain import WhyNot, explain
from agora.core.allocator.filters import RoleFilters
from agora.core.allocator.options import AllocatorOptions, refuse_duration_s
from agora.core.allocator.quota import Quota, RoleTree, validate_quota
from agora.core.allocator.sorter import DRFSorter
from agora.core.allocator.state import (
    AgentProfile,
    AllocAgent,
    AllocFramework,
    FrameworkProfile,
)
from agora.core.errors import AgoraError
from agora.core.operations import Conversion
from agora.core.quantities import EMPTY_QUANTITIES, Quantities
from agora.core.resources import EMPTY, Resources
from agora.core.seeded import Rng, seeded


class AllocatorError(AgoraError, ValueError):
    """The master asked for something inconsistent (unknown agent, resources not held)."""


class HierarchicalAllocator:
    def __init__(self, options: AllocatorOptions | None = None, rng: Rng | None = None) -> None:
        self.options = options or AllocatorOptions()
        self._rng = rng if rng is not None else seeded(0)
        self._frameworks: dict[str, AllocFramework] = {}
        self._agents: dict[str, AllocAgent] = {}
        self._roles = RoleTree(track_held=False)
        excluded = self.options.fairness_excluded_names
        self._role_sorter = DRFSorter(excluded)
        self._fw_sorters: dict[str, DRFSorter] = {}
        self._tracked: dict[str, set[str]] = {}  # role -> frameworks tracked under it
        self._total = EMPTY_QUANTITIES  # cluster scalar total (sorter denominators)
        self._candidates: dict[str, None] = {}
        self._full_pass_pending = False
        self._expiry_intern: dict[float, float] = {}
        self.allocation_runs = 0

    # =============================================================== queries

    def framework_ids(self) -> list[str]:
        return list(self._frameworks)

    def agent_ids(self) -> list[str]:
        return list(self._agents)

    def has_agent(self, agent_id: str) -> bool:
        return agent_id in self._agents

    def has_framework(self, framework_id: str) -> bool:
        return framework_id in self._frameworks

    def available(self, agent_id: str) -> Resources:
        return self._agents[agent_id].available

    def total(self, agent_id: str) -> Resources:
        return self._agents[agent_id].total

    def holdings(self, agent_id: str) -> dict[str, Resources]:
        return dict(self._agents[agent_id].holdings)

    def framework(self, framework_id: str) -> AllocFramework:
        return self._frameworks[framework_id]

    def agent(self, agent_id: str) -> AllocAgent:
        return self._agents[agent_id]

    def roles(self) -> RoleTree:
        """Weights, quota and consumption per role (consumption is brought up to date)."""
        self._track_consumption()
        return self._roles

    def _track_consumption(self) -> None:
        if self._roles.tracking_held:
            return
        self._roles.start_tracking_held(
            (role, part.unallocate())
            for agent in self._agents.values()
            for held in agent.holdings.values()
            for role, part in self._by_role(held).items()
        )

    def role_share(self, role: str) -> float:
        return self._role_sorter.share(role) if role in self._role_sorter else 0.0

    def framework_share(self, framework_id: str, role: str) -> float:
        sorter = self._fw_sorters.get(role)
        if sorter is None or framework_id not in sorter:
            return 0.0
        return sorter.share(framework_id)

    def framework_order(self, role: str) -> list[str]:
        """Frameworks that want offers for `role`, in the DRF order they would get them."""
        sorter = self._fw_sorters.get(role)
        return [] if sorter is None else list(sorter.order())

    def explain(self, framework_id: str, agent_id: str, now: float) -> list[WhyNot]:
        """Why this framework gets (or would get) nothing from this agent, per role."""
        return explain(self, framework_id, agent_id, now)

    def cluster_total(self) -> Quantities:
        return self._total

    def pending(self) -> bool:
        """True when an event asked for an allocation that has not run yet."""
        return self._full_pass_pending or bool(self._candidates)

    def request_full_pass(self) -> None:
        self._full_pass_pending = True

    def has_offer_seekers(self) -> bool:
        """True when some framework wants offers (active, unsuppressed) in some role."""
        return any(sorter.active_count() for sorter in self._fw_sorters.values())

    def _known_framework(self, framework_id: str) -> AllocFramework:
        fw = self._frameworks.get(framework_id)
        if fw is None:
            raise AllocatorError(f"framework {framework_id} is not known to the allocator")
        return fw

    def _known_agent(self, agent_id: str) -> AllocAgent:
        agent = self._agents.get(agent_id)
        if agent is None:
            raise AllocatorError(f"agent {agent_id} is not known to the allocator")
        return agent

    def filter_count(self, role: str | None = None) -> int:
        return sum(
            len(rf)
            for agent in self._agents.values()
            for r, rf in agent.filters.items()
            if role is None or r == role
        )

    # ============================================================ frameworks

    def add_framework(
        self,
        framework_id: str,
        profile: FrameworkProfile,
        active: bool = True,
        used: Mapping[str, Resources] | None = None,
    ) -> None:
        if framework_id in self._frameworks:
            raise AllocatorError(f"framework {framework_id} is already known to the allocator")
        fw = AllocFramework(framework_id, profile, active)
        self._frameworks[framework_id] = fw
        for role in sorted(profile.roles):
            self._track(framework_id, role)
        self._refresh_activation(fw)
        try:
            for agent_id, tagged in (used or {}).items():
                agent = self._agents.get(agent_id)
                if agent is not None and tagged:
                    self._add_holding(agent, framework_id, tagged)
        except AllocatorError:
            self.remove_framework(framework_id)  # all or nothing
            raise
        if active:
            self._full_pass_pending = True

    def remove_framework(self, framework_id: str) -> None:
        fw = self._frameworks.get(framework_id)
        if fw is None:
            return
        for agent in self._agents.values():
            held = agent.holdings.get(framework_id)
            if held is not None:
                self._remove_holding(agent, framework_id, held)
        self._clear_filters(fw, None)
        for role in list(self._tracked):
            self._untrack(framework_id, role, force=True)
        del self._frameworks[framework_id]

    def activate_framework(self, framework_id: str) -> None:
        fw = self._known_framework(framework_id)
        fw.active = True
        self._refresh_activation(fw)
        self._full_pass_pending = True

    def deactivate_framework(self, framework_id: str) -> None:
        """Disconnected: no offers, and (as in Mesos) all its decline filters are dropped."""
        fw = self._known_framework(framework_id)
        fw.active = False
        self._clear_filters(fw, None)
        self._refresh_activation(fw)

    def update_framework(self, framework_id: str, profile: FrameworkProfile) -> None:
        fw = self._known_framework(framework_id)
        old = fw.profile
        fw.set_profile(profile)
        for role in sorted(profile.roles - old.roles):
            self._track(framework_id, role)
        for role in sorted(old.roles - profile.roles):
            self._clear_filters(fw, [role])
            self._untrack(framework_id, role)
        unsuppressed = (old.suppressed_roles - profile.suppressed_roles) & profile.roles
        newly_suppressed = profile.suppressed_roles - old.suppressed_roles
        self._clear_filters(fw, sorted(unsuppressed | newly_suppressed))
        self._refresh_activation(fw)
        if fw.active and (profile.roles - old.roles or unsuppressed):
            self._full_pass_pending = True

    def suppress(self, framework_id: str, roles: Iterable[str] = ()) -> None:
        """Stop offers for `roles` (all subscribed roles when empty)."""
        fw = self._known_framework(framework_id)
        chosen = frozenset(roles) or fw.roles
        self._set_suppressed(fw, fw.profile.suppressed_roles | (chosen & fw.roles))

    def revive(self, framework_id: str, roles: Iterable[str] = ()) -> None:
        """Resume offers for `roles` (all when empty), clear their filters, allocate now."""
        fw = self._known_framework(framework_id)
        chosen = frozenset(roles) or fw.roles
        self._clear_filters(fw, sorted(chosen & fw.roles))
        self._set_suppressed(fw, fw.profile.suppressed_roles - chosen)
        self._full_pass_pending = True

    def _set_suppressed(self, fw: AllocFramework, suppressed: frozenset[str]) -> None:
        newly = suppressed - fw.profile.suppressed_roles
        # A copy: the caller's profile object (maybe shared) must not change under it.
        fw.profile = dataclasses.replace(fw.profile, suppressed_roles=suppressed)
        # A suppressed role's filters can never matter again: un-suppressing (revive or
        # UPDATE_FRAMEWORK) clears them in Mesos. Dropping them now keeps the invariant
        # that filters exist only for frameworks that want offers for the role.
        self._clear_filters(fw, sorted(newly))
        self._refresh_activation(fw)

    def _refresh_activation(self, fw: AllocFramework) -> None:
        for role, tracked in self._tracked.items():
            if fw.id not in tracked:
                continue
            sorter = self._fw_sorters[role]
            if fw.wants_offers(role):
                sorter.activate(fw.id)
            else:
                sorter.deactivate(fw.id)

    def _track(self, framework_id: str, role: str) -> None:
        tracked = self._tracked.get(role)
        if tracked is None:
            tracked = self._tracked[role] = set()
            sorter = DRFSorter(self.options.fairness_excluded_names)
            sorter.add_total(self._total)
            self._fw_sorters[role] = sorter
            self._role_sorter.add(role)
            self._role_sorter.activate(role)
        if framework_id in tracked:
            return
        tracked.add(framework_id)
        self._roles.node(role).frameworks.add(framework_id)
        self._fw_sorters[role].add(framework_id)
        fw = self._frameworks.get(framework_id)
        if fw is not None and fw.wants_offers(role):
            self._fw_sorters[role].activate(framework_id)

    def _untrack(self, framework_id: str, role: str, force: bool = False) -> None:
        """Stop tracking a framework under a role it left, once it holds nothing there."""
        tracked = self._tracked.get(role)
        if tracked is None or framework_id not in tracked:
            return
        sorter = self._fw_sorters[role]
        if not force and sorter.allocation(framework_id):
            sorter.deactivate(framework_id)
            return
        tracked.discard(framework_id)
        sorter.remove(framework_id)
        node = self._roles.get(role)
        if node is not None:
            node.frameworks.discard(framework_id)
        if not tracked:
            del self._tracked[role]
            del self._fw_sorters[role]
            self._role_sorter.remove(role)

    # ================================================================ agents

    def add_agent(
        self,
        agent_id: str,
        profile: AgentProfile,
        total: Resources,
        used: Mapping[str, Resources] | None = None,
    ) -> None:
        if agent_id in self._agents:
            raise AllocatorError(f"agent {agent_id} is already known to the allocator")
        if any(entry.meta.allocation_role is not None for entry in total):
            raise AllocatorError(
                f"agent {agent_id}: total resources must not carry allocation roles"
            )
        agent = AllocAgent(agent_id, profile, total)
        self._agents[agent_id] = agent
        self._change_total(total.scalar_quantities(), +1)
        self._roles.add_reservations(total, +1)
        try:
            for framework_id, tagged in (used or {}).items():
                if framework_id not in self._frameworks:
                    raise AllocatorError(
                        f"agent {agent_id} reports resources of framework {framework_id}, "
                        "which must be added to the allocator first"
                    )
                if tagged:
                    self._add_holding(agent, framework_id, tagged)
        except AllocatorError:
            self.remove_agent(agent_id)  # all or nothing
            raise
        self._candidates[agent_id] = None

    def remove_agent(self, agent_id: str) -> None:
        agent = self._agents.get(agent_id)
        if agent is None:
            return
        for framework_id, held in list(agent.holdings.items()):
            self._remove_holding(agent, framework_id, held)
        for role, rf in agent.filters.items():
            for group in rf.groups.values():
                for framework_id in group:
                    self._count_filter(framework_id, role, -1)
        self._change_total(agent.total.scalar_quantities(), -1)
        self._roles.add_reservations(agent.total, -1)
        del self._agents[agent_id]
        self._candidates.pop(agent_id, None)

    def update_agent(
        self, agent_id: str, profile: AgentProfile | None = None, total: Resources | None = None
    ) -> None:
        """New attributes, capabilities or total (e.g. an oversubscription estimate)."""
        agent = self._known_agent(agent_id)
        if profile is not None and profile != agent.profile:
            if (profile.hostname, profile.attributes) != (
                agent.profile.hostname,
                agent.profile.attributes,
            ):
                self._drop_agent_filters(agent)
            agent.profile = profile
            agent.facts = profile.facts()
        if total is not None and total != agent.total:
            self._change_total(agent.total.scalar_quantities(), -1)
            self._roles.add_reservations(agent.total, -1)
            agent.total = total
            agent.has_gpus = total.scalar("gpus") > 0
            self._change_total(total.scalar_quantities(), +1)
            self._roles.add_reservations(total, +1)
            self._recompute_available(agent)
        self._candidates[agent_id] = None

    def activate_agent(self, agent_id: str) -> None:
        self._known_agent(agent_id).activated = True
        self._candidates[agent_id] = None

    def deactivate_agent(self, agent_id: str) -> None:
        self._known_agent(agent_id).activated = False

    def update_agent_resources(self, agent_id: str, conversions: Iterable[Conversion]) -> None:
        """Operator RESERVE/UNRESERVE/CREATE/DESTROY applied to unallocated resources."""
        agent = self._known_agent(agent_id)
        total, available = agent.total, agent.available
        for consumed, converted in conversions:
            if not available.contains(consumed):
                raise AllocatorError(
                    f"agent {agent_id}: {consumed} is not available (offered or in use)"
                )
            available = available - consumed + converted
            total = total - consumed + converted
        self._roles.add_reservations(agent.total, -1)
        agent.total = total
        self._roles.add_reservations(total, +1)
        self._recompute_available(agent)
        self._candidates[agent_id] = None

    def _recompute_available(self, agent: AllocAgent) -> None:
        held = EMPTY
        for holding in agent.holdings.values():
            held = held + holding.unallocate().non_shared()
        agent.available = agent.total.saturating_sub(held)
        agent.overcommitted = not agent.total.contains(held)

    def _drop_agent_filters(self, agent: AllocAgent) -> None:
        for role, rf in agent.filters.items():
            for group in rf.groups.values():
                for framework_id in group:
                    self._count_filter(framework_id, role, -1)
        agent.filters.clear()

    def _change_total(self, quantities: Quantities, sign: int) -> None:
        self._total = self._total + quantities if sign > 0 else self._total - quantities
        sorters = [self._role_sorter, *self._fw_sorters.values()]
        for sorter in sorters:
            if sign > 0:
                sorter.add_total(quantities)
            else:
                sorter.remove_total(quantities)

    # =========================================================== resources

    def recover_resources(
        self,
        framework_id: str,
        agent_id: str,
        resources: Resources,
        refuse_seconds: object = 0,
        now: float = 0.0,
        reoffer: bool = False,
    ) -> None:
        """Offered or allocated resources come back (decline, task end, rescind).

        With `refuse_seconds` not 0 (None means the 5 s default), a decline filter is
        installed for the framework on this agent under each role the resources
        were allocated to. Resources of unknown agents or frameworks are ignored.
        `reoffer` asks for an event-triggered pass over this agent instead of waiting
        for the next batch (Mesos waits; Agora re-offers what finished tasks free).
        """
        agent = self._agents.get(agent_id)
        fw = self._frameworks.get(framework_id)
        if agent is None or fw is None or not resources:
            return
        self._remove_holding(agent, framework_id, resources)
        if reoffer:
            self._candidates[agent_id] = None
        duration = refuse_duration_s(refuse_seconds, self.options.allocation_interval_s)
        if duration is None:
            return
        expiry = self._expiry(now + duration)
        for role, part in self._by_role(resources).items():
            if not fw.wants_offers(role):
                continue
            rf = agent.filters.get(role)
            if rf is None:
                rf = agent.filters[role] = RoleFilters()
            before = len(rf.groups.get(part.unallocate(), ()))
            rf.add(framework_id, part.unallocate(), expiry)
            if len(rf.groups[part.unallocate()]) > before:
                self._count_filter(framework_id, role, +1)

    def update_allocation(
        self,
        framework_id: str,
        agent_id: str,
        conversions: Iterable[Conversion],
    ) -> None:
        """Speculative operations (RESERVE, CREATE...) changed resources a framework holds.

        Conversions are in allocation-tagged form, as the master applied them to offers,
        and apply in order: a later one may consume what an earlier one produced (RESERVE,
        then CREATE a volume on the reservation).
        """
        agent = self._known_agent(agent_id)
        for consumed, converted in conversions:
            holding = agent.holdings.get(framework_id)
            if holding is None or not holding.contains(consumed):
                raise AllocatorError(
                    f"framework {framework_id} does not hold {consumed} on {agent_id}"
                )
            self._remove_holding(agent, framework_id, consumed)
            self._roles.add_reservations(agent.total, -1)
            agent.total = agent.total - consumed.unallocate() + converted.unallocate()
            self._roles.add_reservations(agent.total, +1)
            # Hold the converted resources first: available = total - everything held.
            self._add_holding(agent, framework_id, converted, from_available=False)
            self._recompute_available(agent)

    def _by_role(self, tagged: Resources) -> dict[str, Resources]:
        role = tagged.allocation_role()
        if role is not None:
            return {role: tagged}
        split = tagged.allocations()
        if None in split:
            raise AllocatorError(f"resources {tagged} lack an allocation role")
        return split  # type: ignore[return-value]

    def _add_holding(
        self, agent: AllocAgent, framework_id: str, tagged: Resources, from_available: bool = True
    ) -> list[tuple[str, Quantities]]:
        updates: list[tuple[str, Quantities]] = []
        for role, part in self._by_role(tagged).items():
            unallocated = part.unallocate()
            if from_available:
                try:
                    available = agent.available - unallocated.non_shared()
                except AgoraError as error:
                    raise AllocatorError(
                        f"agent {agent.id}: {unallocated} is not available "
                        f"for {framework_id}: {error}"
                    ) from None
                agent.available = available
            self._track(framework_id, role)
            quantities = self._sorter_delta(agent, framework_id, role, part, +1)
            held = agent.holdings.get(framework_id)
            agent.holdings[framework_id] = part if held is None else held + part
            self._roles.add_held(role, unallocated, +1)
            self._fw_sorters[role].allocated(framework_id, quantities)
            self._role_sorter.allocated(role, quantities)
            updates.append((role, quantities))
        return updates

    def _remove_holding(self, agent: AllocAgent, framework_id: str, tagged: Resources) -> None:
        held = agent.holdings.get(framework_id)
        if held is None or not held.contains(tagged):
            raise AllocatorError(
                f"framework {framework_id} does not hold {tagged} on agent {agent.id}"
            )
        for role, part in self._by_role(tagged).items():
            quantities = self._sorter_delta(agent, framework_id, role, part, -1)
            unallocated = part.unallocate()
            held = agent.holdings[framework_id] - part
            if held:
                agent.holdings[framework_id] = held
            else:
                del agent.holdings[framework_id]
            if agent.overcommitted:
                # The total shrank below what is held: only total - held is free.
                self._recompute_available(agent)
            else:
                agent.available = agent.available + unallocated.non_shared()
            self._roles.add_held(role, unallocated, -1)
            self._fw_sorters[role].unallocated(framework_id, quantities)
            self._role_sorter.unallocated(role, quantities)
            fw = self._frameworks.get(framework_id)
            if fw is None or role not in fw.roles:
                self._untrack(framework_id, role)

    def _sorter_delta(
        self, agent: AllocAgent, framework_id: str, role: str, part: Resources, sign: int
    ) -> Quantities:
        """Scalar quantities the sorters gain or lose. A shared volume counts once per
        agent per client, however many tasks use it (Mesos sorter semantics)."""
        quantities = part.scalar_quantities()
        if not part.has_atomic():
            return quantities
        held = agent.holdings.get(framework_id, EMPTY)
        after = held + part if sign > 0 else held - part
        before_q, after_q = held.scalar_quantities(), after.scalar_quantities()
        return after_q - before_q if sign > 0 else before_q - after_q

    def _expiry(self, value: float) -> float:
        """Interned float: filters set in one decline burst share one float object."""
        interned = self._expiry_intern.setdefault(value, value)
        if len(self._expiry_intern) > 4096:
            self._expiry_intern.clear()
        return interned

    def _count_filter(self, framework_id: str, role: str, delta: int) -> None:
        fw = self._frameworks.get(framework_id)
        if fw is not None:
            fw.filter_count[role] = fw.filter_count.get(role, 0) + delta

    def _clear_filters(self, fw: AllocFramework, roles: list[str] | None) -> None:
        chosen = list(fw.filter_count) if roles is None else roles
        for role in chosen:
            if not fw.filter_count.get(role):
                continue
            for agent in self._agents.values():
                rf = agent.filters.get(role)
                if rf is not None and rf.remove_framework(fw.id) and not rf.groups:
                    del agent.filters[role]
            fw.filter_count.pop(role, None)

    # ========================================================= quota, weights

    def update_quota(self, role: str, quota: Quota) -> None:
        validate_quota(role, quota)
        self._track_consumption()
        self._roles.set_quota(role, quota)

    def weight(self, role: str) -> float:
        return self._roles.weight(role)

    def update_weight(self, role: str, weight: float) -> None:
        if not weight > 0:
            raise AllocatorError(f"weight of role {role!r} must be positive, got {weight}")
        self._roles.set_weight(role, weight)
        self._role_sorter.update_weight(role, weight)

    # ============================================================= allocation

    def allocate(self, now: float, full: bool = False) -> list[OfferDecision]:
        """Run one allocation pass and return the offers to make."""
        if full or self._full_pass_pending:
            ids: Iterable[str] = self._agents
        else:
            ids = [a for a in self._candidates if a in self._agents]
        agents = [a for a in map(self._agents.__getitem__, ids) if a.activated]
        self._candidates.clear()
        self._full_pass_pending = False
        self.allocation_runs += 1
        if not agents or not self.has_offer_seekers():
            return []  # no framework wants offers: nothing to decide (nor to shuffle)
        self._rng.shuffle(agents)
        return AllocationPass(self, now).run(agents, self._rng)
