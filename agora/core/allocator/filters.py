"""Decline filters for one (agent, role): "framework F refused these resources until T".

A filter blocks a candidate offer when it has not expired and its refused resources
contain the offer. Filters are grouped by the refused value: after a decline the
agent's resources come back unchanged, so thousands of frameworks' filters share one
group, and "does every active framework refuse what is available here?" becomes a
count comparison instead of a walk over all frameworks.
"""

from __future__ import annotations

import math

from agora.core.resources import Resources

FilterGroup = dict[str, float]  # framework id -> expiry


class RoleFilters:
    __slots__ = ("groups", "min_expiry")

    def __init__(self) -> None:
        self.groups: dict[Resources, FilterGroup] = {}
        self.min_expiry = math.inf

    def __len__(self) -> int:
        return sum(len(g) for g in self.groups.values())

    def add(self, framework_id: str, refused: Resources, expiry: float) -> None:
        group = self.groups.get(refused)
        if group is None:
            group = self.groups[refused] = {}
        if group.get(framework_id, -math.inf) < expiry:
            group[framework_id] = expiry
        self.min_expiry = min(self.min_expiry, expiry)

    def remove_framework(self, framework_id: str) -> int:
        removed = 0
        for refused in list(self.groups):
            group = self.groups[refused]
            if group.pop(framework_id, None) is not None:
                removed += 1
                if not group:
                    del self.groups[refused]
        return removed

    def prune(self, now: float) -> list[str]:
        """Drop expired filters; return the frameworks whose filters went away."""
        if now < self.min_expiry:
            return []
        gone: list[str] = []
        smallest = math.inf
        for refused in list(self.groups):
            group = self.groups[refused]
            for fw, expiry in list(group.items()):
                if expiry <= now:
                    del group[fw]
                    gone.append(fw)
                elif expiry < smallest:
                    smallest = expiry
            if not group:
                del self.groups[refused]
        self.min_expiry = smallest
        return gone

    def covering(self, available: Resources) -> list[FilterGroup]:
        """Groups whose refused resources contain all of `available` (so block any offer
        carved from it). Call `prune` first."""
        return [
            group
            for refused, group in self.groups.items()
            if refused is available or refused.contains(available)
        ]

    @staticmethod
    def distinct(covering: list[FilterGroup]) -> int:
        if len(covering) == 1:
            return len(covering[0])
        return len(set().union(*covering))

    def blocking(self, framework_id: str, offer: Resources, now: float) -> float | None:
        """Expiry of a filter of `framework_id` that blocks `offer`, if any."""
        for refused, group in self.groups.items():
            expiry = group.get(framework_id)
            if (
                expiry is not None
                and expiry > now
                and (refused is offer or refused.contains(offer))
            ):
                return expiry
        return None

    def of_framework(self, framework_id: str, now: float) -> list[tuple[Resources, float]]:
        return [
            (refused, group[framework_id])
            for refused, group in self.groups.items()
            if group.get(framework_id, -math.inf) > now
        ]
