"""Why a framework gets nothing from an agent: the answer behind "why is my task pending".

`explain` walks the same checks as the allocation pass, in the same order, using the
same functions (agora.core.allocator.eligibility), and stops at the first that
excludes the framework, once per role the framework is subscribed to.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from agora.core.allocator.eligibility import (
    allocatable,
    fixed_part,
    incapable,
    minimums,
    quota_part,
    strip,
)
from agora.core.allocator.quota import quota_scalars
from agora.core.resources import Resources
from agora.core.values import format_millis

if TYPE_CHECKING:
    from agora.core.allocator.allocator import HierarchicalAllocator
    from agora.core.allocator.state import AllocAgent, AllocFramework


class Verdict(StrEnum):
    ELIGIBLE = "eligible"
    OUTSTANDING_OFFER = "outstanding-offer"
    AGENT_DISCONNECTED = "agent-disconnected"
    FRAMEWORK_UNKNOWN = "framework-unknown"
    AGENT_UNKNOWN = "agent-unknown"
    FRAMEWORK_INACTIVE = "framework-inactive"
    SUPPRESSED = "suppressed"
    AGENT_DEACTIVATED = "agent-deactivated"
    INCAPABLE = "incapable"
    CONSTRAINTS = "constraints"
    NOTHING_FREE = "nothing-free"
    RESERVED_FOR_OTHER_ROLES = "reserved-for-other-roles"
    UNUSABLE_KINDS = "unusable-kinds"
    BELOW_MINIMUM = "below-minimum"
    QUOTA_LIMIT = "quota-limit"
    HELD_FOR_GUARANTEES = "held-for-guarantees"
    FILTERED = "filtered"


@dataclass(frozen=True)
class WhyNot:
    framework_id: str
    agent_id: str
    role: str | None
    verdict: Verdict
    message: str
    until: float | None = None  # for FILTERED: when the filter expires

    def __str__(self) -> str:
        where = f"role {self.role!r}: " if self.role is not None else ""
        return f"{self.agent_id}: {where}{self.message}"


def explain(
    allocator: HierarchicalAllocator, framework_id: str, agent_id: str, now: float
) -> list[WhyNot]:
    """One explanation per role of the framework for this agent."""
    if not allocator.has_framework(framework_id):
        return [
            _why(
                framework_id, agent_id, None, Verdict.FRAMEWORK_UNKNOWN, "the framework is unknown"
            )
        ]
    if not allocator.has_agent(agent_id):
        return [_why(framework_id, agent_id, None, Verdict.AGENT_UNKNOWN, "the agent is unknown")]
    fw = allocator.framework(framework_id)
    agent = allocator.agent(agent_id)
    return [_explain_role(allocator, fw, agent, role, now) for role in sorted(fw.roles)]


def _why(
    framework_id: str,
    agent_id: str,
    role: str | None,
    verdict: Verdict,
    message: str,
    until: float | None = None,
) -> WhyNot:
    return WhyNot(framework_id, agent_id, role, verdict, message, until)


def _explain_role(
    allocator: HierarchicalAllocator, fw: AllocFramework, agent: AllocAgent, role: str, now: float
) -> WhyNot:
    def why(verdict: Verdict, message: str, until: float | None = None) -> WhyNot:
        return _why(fw.id, agent.id, role, verdict, message, until)

    options = allocator.options
    if not fw.active:
        return why(Verdict.FRAMEWORK_INACTIVE, "the framework is disconnected (inactive)")
    if role in fw.profile.suppressed_roles:
        return why(
            Verdict.SUPPRESSED, "the framework suppressed offers for this role (REVIVE to resume)"
        )
    if not agent.activated:
        return why(
            Verdict.AGENT_DEACTIVATED, "the agent is deactivated (draining or by the operator)"
        )
    reason = incapable(options, fw, agent, role)
    if reason is not None:
        return why(Verdict.INCAPABLE, reason)
    constraints = fw.profile.constraints.get(role)
    if constraints is not None and not constraints.admits(agent.facts):
        return why(Verdict.CONSTRAINTS, "the framework's offer constraints exclude this agent")
    if not agent.available:
        return why(Verdict.NOTHING_FREE, "nothing is free: " + _holders(agent))
    avail = agent.available.allocatable_to(role)
    if not avail:
        others = sorted(agent.available.roles())
        return why(Verdict.RESERVED_FOR_OTHER_ROLES, f"the free resources are reserved to {others}")
    wanted = minimums(options, fw, role)
    usable = strip(avail, fw)
    if not allocatable(usable, wanted):
        if usable is not avail and allocatable(avail, wanted):
            return why(
                Verdict.UNUSABLE_KINDS,
                f"what is free ({avail}) is revocable, shared or refined, which the framework "
                "has not declared it can use",
            )
        return why(
            Verdict.BELOW_MINIMUM,
            f"what is free ({usable}) is below the minimum offer size ({_minimums(wanted)})",
        )
    offer = _after_quota(allocator, role, usable)
    if offer is None:
        return why(Verdict.QUOTA_LIMIT, _quota_message(allocator, role))
    if not allocatable(offer, wanted):
        return why(
            Verdict.HELD_FOR_GUARANTEES,
            "the free resources are held back for roles whose quota guarantee is not yet met",
        )
    filters = agent.filters.get(role)
    until = None if filters is None else filters.blocking(fw.id, offer, now)
    if until is not None:
        return why(
            Verdict.FILTERED,
            f"the framework declined these resources; filtered until t={until:.3f}s "
            f"({until - now:.1f}s from now)",
            until,
        )
    message = _eligible_message(allocator, fw, role, offer)
    if offer != usable:
        message += f"; {usable.saturating_sub(offer)} is held back by quota"
    return why(Verdict.ELIGIBLE, message)


def _after_quota(
    allocator: HierarchicalAllocator, role: str, usable: Resources
) -> Resources | None:
    """The offer after quota limits (None if the limit leaves nothing allocatable)."""
    limit = allocator.roles().limit_headroom(role)
    quota_counted = usable.filter(quota_part)
    if limit is not None and quota_counted:
        capped = quota_counted.shrink_to(limit, absent_unlimited=True)
        if not capped and not usable.filter(fixed_part):
            return None
        quota_counted = capped
    required = allocator.roles().required_headroom()
    if required and quota_counted:
        headroom: dict[str, int] = {}
        for agent_id in allocator.agent_ids():
            for name, amount in quota_scalars(allocator.available(agent_id)).items():
                headroom[name] = headroom.get(name, 0) + amount
        cap = {name: max(0, headroom.get(name, 0) - need) for name, need in required.items()}
        quota_counted = quota_counted.shrink_to(cap, absent_unlimited=True)
    return usable.filter(fixed_part) + quota_counted


def _holders(agent: AllocAgent) -> str:
    if not agent.holdings:
        return "the agent has no resources"
    parts = [
        f"{framework_id} holds {held.unallocate()}"
        for framework_id, held in sorted(agent.holdings.items())
    ]
    return "offered or allocated: " + "; ".join(parts)


def _minimums(wanted: tuple[object, ...]) -> str:
    texts = []
    for minimum in wanted:
        texts.append(";".join(f"{k}:{format_millis(v)}" for k, v in minimum.items()))  # type: ignore[attr-defined]
    return " or ".join(texts)


def _quota_message(allocator: HierarchicalAllocator, role: str) -> str:
    limit = allocator.roles().limit_headroom(role) or {}
    full = sorted(name for name, left in limit.items() if left <= 0)
    return f"the role has reached its quota limit for {full}" if full else "the role's quota limit"


def _eligible_message(
    allocator: HierarchicalAllocator, fw: AllocFramework, role: str, offer: Resources
) -> str:
    share = allocator.framework_share(fw.id, role)
    order = allocator.framework_order(role)
    place = order.index(fw.id) + 1 if fw.id in order else 0
    return (
        f"eligible: {offer} would be offered at the next allocation unless a framework "
        f"ahead in DRF order takes it first (framework {place} of {len(order)} in the role, "
        f"share {share:.4f}; role share {allocator.role_share(role):.4f})"
    )
