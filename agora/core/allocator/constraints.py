"""Offer constraints (Mesos 1.11 `offer_constraints`): per-role agent exclusion.

An agent passes a role's constraints when any group has all of its constraints
satisfied. Selectors name an attribute or a pseudo-attribute (hostname, region,
zone); predicates test existence or the attribute's text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from agora.core.errors import AgoraError

MAX_REGEX_LENGTH = 4096


class InvalidConstraint(AgoraError, ValueError):  # noqa: N818
    pass


class Pseudo(StrEnum):
    HOSTNAME = "HOSTNAME"
    REGION = "REGION"
    ZONE = "ZONE"


class Predicate(StrEnum):
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"
    TEXT_EQUALS = "text_equals"
    TEXT_NOT_EQUALS = "text_not_equals"
    TEXT_MATCHES = "text_matches"
    TEXT_NOT_MATCHES = "text_not_matches"


@dataclass(frozen=True)
class AgentFacts:
    """What constraints can look at: hostname, fault domain and text attributes."""

    hostname: str
    attributes: Mapping[str, str]
    region: str | None = None
    zone: str | None = None

    def lookup(self, attribute: str | None, pseudo: Pseudo | None) -> str | None:
        if pseudo is Pseudo.HOSTNAME:
            return self.hostname
        if pseudo is Pseudo.REGION:
            return self.region
        if pseudo is Pseudo.ZONE:
            return self.zone
        assert attribute is not None
        return self.attributes.get(attribute)


@dataclass(frozen=True)
class Constraint:
    predicate: Predicate
    attribute: str | None = None
    pseudo: Pseudo | None = None
    value: str | None = None  # text for equals, regex for matches

    def __post_init__(self) -> None:
        if (self.attribute is None) == (self.pseudo is None):
            raise InvalidConstraint(
                "a selector needs exactly one of attribute_name or pseudoattribute_type"
            )
        if self.predicate in (Predicate.TEXT_MATCHES, Predicate.TEXT_NOT_MATCHES):
            if self.value is None or len(self.value) > MAX_REGEX_LENGTH:
                raise InvalidConstraint("a text_matches predicate needs a regex of at most 4 KB")
            try:
                re.compile(self.value)
            except re.error as error:
                raise InvalidConstraint(f"bad regex {self.value!r}: {error}") from None
        elif (
            self.predicate in (Predicate.TEXT_EQUALS, Predicate.TEXT_NOT_EQUALS)
            and self.value is None
        ):
            raise InvalidConstraint(f"predicate {self.predicate.value} needs a value")

    def holds(self, facts: AgentFacts) -> bool:
        text = facts.lookup(self.attribute, self.pseudo)
        p = self.predicate
        if p is Predicate.EXISTS:
            return text is not None
        if p is Predicate.NOT_EXISTS:
            return text is None
        if p is Predicate.TEXT_EQUALS:
            return text is not None and text == self.value
        if p is Predicate.TEXT_NOT_EQUALS:
            return text is None or text != self.value
        matched = text is not None and re.fullmatch(self.value or "", text) is not None
        return matched if p is Predicate.TEXT_MATCHES else not matched


@dataclass(frozen=True)
class RoleConstraints:
    groups: tuple[tuple[Constraint, ...], ...]

    def admits(self, facts: AgentFacts) -> bool:
        return any(all(c.holds(facts) for c in group) for group in self.groups)
