"""Quota (guarantees and limits) and the role tree that tracks what roles consume.

Consumption follows Mesos 1.9+: a role consumes its reservations (allocated or not,
sub-roles included) plus the unreserved, non-revocable scalars offered or allocated
to it or its sub-roles. Amounts are aggregated up the tree on every change so a
role's consumption is a dictionary read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from agora.core.errors import AgoraError
from agora.core.quantities import EMPTY_QUANTITIES, NO_LIMITS, Limits, Quantities
from agora.core.resources import Resources
from agora.core.roles import ancestors, validate_role
from agora.core.values import Kind


class InvalidQuota(AgoraError, ValueError):  # noqa: N818
    pass


class Quota(NamedTuple):
    guarantees: Quantities = EMPTY_QUANTITIES
    limits: Limits = NO_LIMITS

    def is_default(self) -> bool:
        return not self.guarantees and not self.limits


NO_QUOTA = Quota()


def validate_quota(role: str, quota: Quota) -> None:
    """Mesos's UPDATE_QUOTA rules that do not depend on the cluster state."""
    validate_role(role)
    if "/" in role:
        raise InvalidQuota(f"quota on nested role {role!r} is not supported (MESOS-7402)")
    for name, amount in quota.guarantees.items():
        if name in quota.limits and quota.limits[name] < amount:
            raise InvalidQuota(f"role {role!r}: guarantee of {name!r} exceeds its limit")


def quota_scalars(resources: Resources) -> Quantities:
    """Unreserved, non-revocable scalar quantities: what quota guarantees and counts."""
    return resources.scalar_quantities(unreserved_only=True, include_revocable=False)


def reserved_scalars_by_role(resources: Resources) -> dict[str, dict[str, int]]:
    """Reserved scalar quantities keyed by the innermost reservation role."""
    out: dict[str, dict[str, int]] = {}
    for entry in resources:
        meta = entry.meta
        if meta.reservations and meta.kind is Kind.SCALAR:
            by_name = out.setdefault(meta.reservations[-1].role, {})
            by_name[meta.name] = by_name.get(meta.name, 0) + entry.value  # type: ignore[operator]
    return out


@dataclass
class RoleNode:
    name: str
    weight: float = 1.0
    quota: Quota = NO_QUOTA
    frameworks: set[str] = field(default_factory=set)
    reserved: dict[str, int] = field(default_factory=dict)  # subtree reservations
    held_unreserved: dict[str, int] = field(default_factory=dict)  # subtree, offered+allocated

    def consumed(self) -> Quantities:
        return Quantities(self.reserved) + self.held_unreserved


def _bump(target: dict[str, int], delta: Mapping[str, int], sign: int) -> None:
    for name, amount in delta.items():
        value = target.get(name, 0) + sign * amount
        if value:
            target[name] = value
        else:
            target.pop(name, None)


class RoleTree:
    """Weights, quota, and per-role consumption aggregated up the role hierarchy."""

    def __init__(self, track_held: bool = True) -> None:
        self._nodes: dict[str, RoleNode] = {}
        self._quota_roles: set[str] = set()
        self._chains: dict[str, list[RoleNode]] = {}
        # Offered/allocated consumption is only needed once some role has quota; the
        # allocator starts tracking then (`start_tracking_held`), sparing every offer
        # the bookkeeping in clusters without quota.
        self._track_held = track_held

    @property
    def tracking_held(self) -> bool:
        return self._track_held

    def start_tracking_held(self, held: Iterable[tuple[str, Resources]]) -> None:
        """Begin tracking consumption, from what each role holds now (unallocated form)."""
        self._track_held = True
        for role, resources in held:
            self.add_held(role, resources, +1)

    def node(self, role: str) -> RoleNode:
        node = self._nodes.get(role)
        if node is None:
            node = self._nodes[role] = RoleNode(role)
        return node

    def get(self, role: str) -> RoleNode | None:
        return self._nodes.get(role)

    def roles(self) -> list[str]:
        return sorted(self._nodes)

    def _chain(self, role: str) -> list[RoleNode]:
        """The role's node and its ancestors' (nodes are never dropped, so cacheable)."""
        chain = self._chains.get(role)
        if chain is None:
            chain = self._chains[role] = [self.node(role)] + [self.node(a) for a in ancestors(role)]
        return chain

    def weight(self, role: str) -> float:
        node = self._nodes.get(role)
        return 1.0 if node is None else node.weight

    def set_weight(self, role: str, weight: float) -> None:
        self.node(role).weight = weight

    def quota(self, role: str) -> Quota:
        node = self._nodes.get(role)
        return NO_QUOTA if node is None else node.quota

    def set_quota(self, role: str, quota: Quota) -> None:
        self.node(role).quota = quota
        if quota.is_default():
            self._quota_roles.discard(role)
        else:
            self._quota_roles.add(role)

    def quota_roles(self) -> list[str]:
        return sorted(self._quota_roles)

    def has_quota(self) -> bool:
        return bool(self._quota_roles)

    def has_guarantees(self) -> bool:
        return any(self._nodes[r].quota.guarantees for r in self._quota_roles)

    def add_reservations(self, resources: Resources, sign: int) -> None:
        for role, amounts in reserved_scalars_by_role(resources).items():
            for node in self._chain(role):
                _bump(node.reserved, amounts, sign)

    def add_held(self, role: str, resources: Resources, sign: int) -> None:
        """Offered or allocated (unallocated-form) resources of `role` change by sign."""
        if not self._track_held:
            return
        amounts = quota_scalars(resources)
        if not amounts:
            return
        for node in self._chain(role):
            _bump(node.held_unreserved, amounts, sign)

    def consumed(self, role: str) -> Quantities:
        node = self._nodes.get(role)
        return EMPTY_QUANTITIES if node is None else node.consumed()

    def limit_headroom(self, role: str) -> dict[str, int] | None:
        """How much more unreserved scalar `role` may take under its and its ancestors'
        limits (names absent are unlimited); None when nothing limits it."""
        headroom: dict[str, int] | None = None
        for name in (role, *ancestors(role)):
            node = self._nodes.get(name)
            if node is None or not node.quota.limits:
                continue
            consumed = node.consumed()
            headroom = {} if headroom is None else headroom
            for res, cap in node.quota.limits.items():
                left = max(0, cap - consumed[res])
                headroom[res] = min(left, headroom.get(res, left))
        return headroom

    def unsatisfied_guarantee(self, role: str) -> Quantities:
        node = self._nodes.get(role)
        if node is None or not node.quota.guarantees:
            return EMPTY_QUANTITIES
        return node.quota.guarantees - node.consumed()

    def required_headroom(self) -> Quantities:
        """Σ over top-level roles with guarantees of what their guarantee still lacks."""
        total = EMPTY_QUANTITIES
        for role in self._quota_roles:
            if "/" not in role:
                total = total + self.unsatisfied_guarantee(role)
        return total
