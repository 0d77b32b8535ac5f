"""What the allocator remembers about frameworks and agents (no copy of master state:
only what allocation needs and the master hands it through the allocator API)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agora.core.allocator.constraints import AgentFacts, RoleConstraints
from agora.core.allocator.filters import RoleFilters
from agora.core.quantities import Quantities
from agora.core.resources import Resources


class Capability:
    """Framework and agent capability names (Mesos enum values)."""

    MULTI_ROLE = "MULTI_ROLE"
    HIERARCHICAL_ROLE = "HIERARCHICAL_ROLE"
    GPU_RESOURCES = "GPU_RESOURCES"
    SHARED_RESOURCES = "SHARED_RESOURCES"
    REVOCABLE_RESOURCES = "REVOCABLE_RESOURCES"
    RESERVATION_REFINEMENT = "RESERVATION_REFINEMENT"
    REGION_AWARE = "REGION_AWARE"
    PARTITION_AWARE = "PARTITION_AWARE"
    TASK_KILLING_STATE = "TASK_KILLING_STATE"


@dataclass
class FrameworkProfile:
    """The parts of a FrameworkInfo (and subscription) that allocation looks at."""

    roles: frozenset[str]
    capabilities: frozenset[str] = frozenset()
    suppressed_roles: frozenset[str] = frozenset()
    min_allocatable: Mapping[str, tuple[Quantities, ...]] = field(default_factory=dict)
    constraints: Mapping[str, RoleConstraints] = field(default_factory=dict)


class AllocFramework:
    __slots__ = (
        "id",
        "profile",
        "active",
        "multi_role",
        "gpu_ok",
        "region_aware",
        "strip_key",
        "filter_count",
    )

    def __init__(self, framework_id: str, profile: FrameworkProfile, active: bool) -> None:
        self.id = framework_id
        self.active = active
        self.filter_count: dict[str, int] = {}  # role -> number of live decline filters
        self.profile = profile
        self.set_profile(profile)

    def set_profile(self, profile: FrameworkProfile) -> None:
        caps = profile.capabilities
        self.profile = profile
        self.multi_role = Capability.MULTI_ROLE in caps
        self.gpu_ok = Capability.GPU_RESOURCES in caps
        self.region_aware = Capability.REGION_AWARE in caps
        # Which resource kinds must be stripped from offers to this framework.
        self.strip_key = (
            Capability.SHARED_RESOURCES not in caps,
            Capability.REVOCABLE_RESOURCES not in caps,
            Capability.RESERVATION_REFINEMENT not in caps,
        )

    @property
    def roles(self) -> frozenset[str]:
        return self.profile.roles

    def wants_offers(self, role: str) -> bool:
        return (
            self.active and role in self.profile.roles and role not in self.profile.suppressed_roles
        )


# What a current agent advertises (an older agent lacking MULTI_ROLE or
# HIERARCHICAL_ROLE is not offered to frameworks that need them).
AGENT_CAPABILITIES = frozenset(
    {Capability.MULTI_ROLE, Capability.HIERARCHICAL_ROLE, Capability.RESERVATION_REFINEMENT}
)


@dataclass
class AgentProfile:
    hostname: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    region: str | None = None
    zone: str | None = None
    capabilities: frozenset[str] = AGENT_CAPABILITIES

    def facts(self) -> AgentFacts:
        return AgentFacts(self.hostname, self.attributes, self.region, self.zone)


class AllocAgent:
    __slots__ = (
        "id",
        "profile",
        "facts",
        "activated",
        "total",
        "available",
        "holdings",
        "filters",
        "has_gpus",
        "overcommitted",
    )

    def __init__(self, agent_id: str, profile: AgentProfile, total: Resources) -> None:
        self.id = agent_id
        self.profile = profile
        self.facts = profile.facts()
        self.activated = True
        self.total = total
        # Unallocated form; shared resources stay available while offered or used.
        self.available = total
        # framework id -> resources offered or allocated to it here (allocation-tagged).
        self.holdings: dict[str, Resources] = {}
        self.filters: dict[str, RoleFilters] = {}
        self.has_gpus = total.scalar("gpus") > 0
        # Holdings exceed the total (it shrank, e.g. a lower oversubscription estimate):
        # returned resources must not be added back to `available` blindly.
        self.overcommitted = False
