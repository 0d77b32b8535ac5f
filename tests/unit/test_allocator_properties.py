"""Property test: random sequences of allocator calls never over-allocate an agent.

For every agent, at every step: available + (non-shared holdings, unallocated) ==
total, and every offer is made of resources that were available, to a framework that
wants offers for the offer's role, tagged with that role and allocatable to it.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from agora.core.allocator import AllocatorOptions, HierarchicalAllocator, Quota
from agora.core.allocator.state import AgentProfile, Capability
from agora.core.operations import Reserve, conversion
from agora.core.quantities import Limits
from agora.core.resource_meta import dynamic
from agora.core.resources import Resources
from tests.unit.allocator_kit import ALL_CAPS, check_invariants, profile, qty, res, revocable

ROLES = ["a", "b", "a/x", "*"]
AGENT_IDS = [f"s{i}" for i in range(5)]
FRAMEWORK_IDS = [f"f{i}" for i in range(4)]
AGENT_TOTALS = [
    res("cpus:2;mem:1024"),
    res("cpus:4;mem:2048;disk:100;ports:[31000-31009]"),
    res("cpus:1;mem:512;cpus(a):1;mem(a):256"),
    res("cpus:2;mem:1024;gpus:1"),
    res("cpus:1;mem:512") + revocable("cpus:2"),
    res("cpus(b):2;mem(b):512;disk(a/x):50"),
    res("mem:16;cpus:0.005"),
]
REFUSE = [0, 1, 5, 1000, None, -1]
CAPS = [(), (Capability.MULTI_ROLE,), ALL_CAPS]


class AllocatorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.alloc = HierarchicalAllocator(AllocatorOptions(), random.Random(7))
        self.now = 0.0

    @initialize(
        totals=st.lists(st.sampled_from(AGENT_TOTALS), min_size=1, max_size=4),
        frameworks=st.lists(
            st.tuples(
                st.sets(st.sampled_from(ROLES), min_size=1, max_size=3), st.sampled_from(CAPS)
            ),
            min_size=1,
            max_size=3,
        ),
    )
    def start(self, totals, frameworks):
        for agent, total in zip(AGENT_IDS, totals, strict=False):
            self.add_agent(agent, total)
        for framework, (roles, caps) in zip(FRAMEWORK_IDS, frameworks, strict=False):
            self.add_framework(framework, roles, caps)

    # ------------------------------------------------------------- membership

    @rule(agent=st.sampled_from(AGENT_IDS), total=st.sampled_from(AGENT_TOTALS))
    def add_agent(self, agent, total):
        if not self.alloc.has_agent(agent):
            self.alloc.add_agent(agent, AgentProfile(hostname=agent), total)

    @rule(agent=st.sampled_from(AGENT_IDS))
    def remove_agent(self, agent):
        self.alloc.remove_agent(agent)

    @rule(
        framework=st.sampled_from(FRAMEWORK_IDS),
        roles=st.sets(st.sampled_from(ROLES), min_size=1, max_size=3),
        caps=st.sampled_from(CAPS),
    )
    def add_framework(self, framework, roles, caps):
        if not self.alloc.has_framework(framework):
            if len(roles) > 1:
                caps = (*caps, Capability.MULTI_ROLE)
            self.alloc.add_framework(framework, profile(*roles, caps=caps))

    @rule(framework=st.sampled_from(FRAMEWORK_IDS))
    def remove_framework(self, framework):
        self.alloc.remove_framework(framework)

    @rule(framework=st.sampled_from(FRAMEWORK_IDS), active=st.booleans())
    def toggle_framework(self, framework, active):
        if self.alloc.has_framework(framework):
            if active:
                self.alloc.activate_framework(framework)
            else:
                self.alloc.deactivate_framework(framework)

    @rule(
        framework=st.sampled_from(FRAMEWORK_IDS),
        roles=st.lists(st.sampled_from(ROLES), max_size=2),
        suppress=st.booleans(),
    )
    def suppress_or_revive(self, framework, roles, suppress):
        if self.alloc.has_framework(framework):
            if suppress:
                self.alloc.suppress(framework, roles)
            else:
                self.alloc.revive(framework, roles)

    @rule(
        framework=st.sampled_from(FRAMEWORK_IDS),
        roles=st.sets(st.sampled_from(ROLES), min_size=1, max_size=2),
    )
    def change_roles(self, framework, roles):
        if self.alloc.has_framework(framework):
            self.alloc.update_framework(framework, profile(*roles, caps=ALL_CAPS))

    @rule(
        role=st.sampled_from(["a", "b", "*"]),
        cpus=st.integers(0, 6),
        kind=st.sampled_from(["guarantee", "limit", "both", "none"]),
    )
    def set_quota(self, role, cpus, kind):
        q = qty(f"cpus:{cpus}")
        limits = Limits({"cpus": cpus * 1000})
        quota = {
            "guarantee": Quota(guarantees=q),
            "limit": Quota(limits=limits),
            "both": Quota(guarantees=q, limits=limits),
            "none": Quota(),
        }[kind]
        self.alloc.update_quota(role, quota)

    @rule(role=st.sampled_from(ROLES), weight=st.sampled_from([0.5, 1.0, 3.0]))
    def set_weight(self, role, weight):
        self.alloc.update_weight(role, weight)

    @rule(agent=st.sampled_from(AGENT_IDS), extra=st.sampled_from(["cpus:1", "mem:64"]))
    def grow_agent(self, agent, extra):
        if self.alloc.has_agent(agent):
            self.alloc.update_agent(agent, total=self.alloc.total(agent) + res(extra))

    # ------------------------------------------------------------- allocation

    @rule(full=st.booleans(), advance=st.sampled_from([0.0, 0.5, 1.0, 6.0]))
    def allocate(self, full, advance):
        self.now += advance
        before = {a: self.alloc.available(a) for a in self.alloc.agent_ids()}
        decisions = self.alloc.allocate(self.now, full=full)
        offered: dict[str, Resources] = {}
        for d in decisions:
            fw = self.alloc.framework(d.framework_id)
            assert fw.wants_offers(d.role), d
            assert d.resources, d
            assert d.resources.allocation_role() == d.role
            plain = d.resources.unallocate()
            assert plain.allocatable_to(d.role) == plain
            offered[d.agent_id] = offered.get(d.agent_id, Resources()) + plain.non_shared()
            if not fw.multi_role:
                assert len(fw.roles) == 1
        for agent_id, total in offered.items():
            assert before[agent_id].contains(total), (agent_id, before[agent_id], total)

    @rule(
        pick=st.integers(0, 1000),
        refuse=st.sampled_from(REFUSE),
        part=st.sampled_from(["all", "role"]),
    )
    def recover(self, pick, refuse, part):
        held = [
            (agent, fw, resources)
            for agent in self.alloc.agent_ids()
            for fw, resources in self.alloc.holdings(agent).items()
        ]
        if not held:
            return
        agent, fw, resources = held[pick % len(held)]
        if part == "role":
            split = resources.allocations()
            resources = split[sorted(split, key=str)[pick % len(split)]]
        self.alloc.recover_resources(fw, agent, resources, refuse_seconds=refuse, now=self.now)

    @rule(pick=st.integers(0, 1000))
    def reserve_held(self, pick):
        """A framework reserves one of the unreserved cpus it holds (RESERVE)."""
        candidates = []
        for agent in self.alloc.agent_ids():
            for fw, resources in self.alloc.holdings(agent).items():
                for role, part in resources.allocations().items():
                    plain = part.unallocate()
                    free_cpus = plain.unreserved().non_revocable().scalar("cpus")
                    if role not in (None, "*") and free_cpus >= 1000:
                        candidates.append((agent, fw, role))
        if not candidates:
            return
        agent, fw, role = candidates[pick % len(candidates)]
        assert role is not None
        reserved = res("cpus:1").push_reservation(dynamic(role, "p")).allocate(role)
        self.alloc.update_allocation(fw, agent, [conversion(Reserve(reserved))])

    @rule(pick=st.integers(0, 1000))
    def toggle_agent(self, pick):
        agents = self.alloc.agent_ids()
        if not agents:
            return
        agent = agents[pick % len(agents)]
        if self.alloc.agent(agent).activated:
            self.alloc.deactivate_agent(agent)
        else:
            self.alloc.activate_agent(agent)

    # ------------------------------------------------------------- invariants

    @invariant()
    def never_over_allocated(self):
        check_invariants(self.alloc)

    @invariant()
    def totals_add_up(self):
        total = qty("")
        for agent in self.alloc.agent_ids():
            total = total + self.alloc.total(agent).scalar_quantities()
        assert self.alloc.cluster_total() == total

    @invariant()
    def filters_only_for_frameworks_that_want_offers(self):
        for agent in self.alloc.agent_ids():
            for role, rf in self.alloc.agent(agent).filters.items():
                for group in rf.groups.values():
                    for fw in group:
                        assert self.alloc.framework(fw).wants_offers(role)


AllocatorMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_allocator_never_over_allocates = AllocatorMachine.TestCase
