"""Framework, agent and status descriptions the master core works with.

FrameworkInfo is parsed here from its Mesos JSON shape (proto `mesos.v1.FrameworkInfo`)
with Mesos's validation rules, so every refusal names the offending field. The raw
JSON is kept for echoing back in state views.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agora.core.allocator.constraints import (
    Constraint,
    InvalidConstraint,
    Predicate,
    Pseudo,
    RoleConstraints,
)
from agora.core.allocator.state import Capability
from agora.core.attributes import Attributes
from agora.core.errors import AgoraError, InvalidResource, InvalidRole
from agora.core.quantities import Quantities
from agora.core.resource_json import labels_from_json
from agora.core.resource_meta import Labels
from agora.core.resources import Resources
from agora.core.roles import DEFAULT_ROLE, validate_role
from agora.core.task_states import Reason, Source, TaskState, visible_state
from agora.core.values import scalar_to_millis

Json = dict[str, Any]


class InvalidFrameworkInfo(AgoraError, ValueError):  # noqa: N818
    pass


@dataclass(frozen=True)
class FrameworkInfo:
    user: str
    name: str
    id: str | None = None
    failover_timeout_s: float = 0.0
    checkpoint: bool = False
    roles: tuple[str, ...] = (DEFAULT_ROLE,)
    principal: str | None = None
    hostname: str | None = None
    webui_url: str | None = None
    capabilities: frozenset[str] = frozenset()
    labels: Labels = ()
    min_allocatable: Mapping[str, tuple[Quantities, ...]] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def multi_role(self) -> bool:
        return Capability.MULTI_ROLE in self.capabilities

    @property
    def partition_aware(self) -> bool:
        return Capability.PARTITION_AWARE in self.capabilities

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def with_id(self, framework_id: str) -> FrameworkInfo:
        raw = dict(self.raw)
        raw["id"] = {"value": framework_id}
        return replace(self, id=framework_id, raw=raw)


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidFrameworkInfo(f"'FrameworkInfo.{key}' must be a string")
    return value


def _id_value(value: object, what: str) -> str:
    if not isinstance(value, Mapping) or not isinstance(value.get("value"), str):
        raise InvalidFrameworkInfo(f'\'{what}\' must look like {{"value": "..."}}')
    text: str = value["value"]
    return text


def framework_info_from_json(data: object) -> FrameworkInfo:
    """Parse and validate a FrameworkInfo; raise InvalidFrameworkInfo naming the field."""
    if not isinstance(data, Mapping):
        raise InvalidFrameworkInfo("'framework_info' must be a JSON object")
    user = data.get("user")
    name = data.get("name")
    if not isinstance(user, str):
        raise InvalidFrameworkInfo("'FrameworkInfo.user' is required and must be a string")
    if not isinstance(name, str):
        raise InvalidFrameworkInfo("'FrameworkInfo.name' is required and must be a string")
    framework_id = None
    if data.get("id") is not None:
        framework_id = _id_value(data["id"], "FrameworkInfo.id")
    timeout = data.get("failover_timeout", 0.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidFrameworkInfo("'FrameworkInfo.failover_timeout' must be a number")
    if math.isnan(timeout) or timeout < 0:
        raise InvalidFrameworkInfo("'FrameworkInfo.failover_timeout' must be non-negative")
    checkpoint = data.get("checkpoint", False)
    if not isinstance(checkpoint, bool):
        raise InvalidFrameworkInfo("'FrameworkInfo.checkpoint' must be a boolean")
    capabilities = _capabilities(data.get("capabilities"))
    roles = _roles(data, Capability.MULTI_ROLE in capabilities)
    return FrameworkInfo(
        user=user,
        name=name,
        id=framework_id,
        failover_timeout_s=float(min(timeout, 1e15)),
        checkpoint=checkpoint,
        roles=roles,
        principal=_opt_str(data, "principal"),
        hostname=_opt_str(data, "hostname"),
        webui_url=_opt_str(data, "webui_url"),
        capabilities=capabilities,
        labels=_labels(data.get("labels")),
        min_allocatable=_offer_filters(data.get("offer_filters"), roles),
        raw=dict(data),
    )


def _labels(data: object) -> Labels:
    try:
        return labels_from_json(data, "FrameworkInfo.labels")
    except InvalidResource as error:
        raise InvalidFrameworkInfo(str(error)) from None


def _capabilities(data: object) -> frozenset[str]:
    if data is None:
        return frozenset()
    if not isinstance(data, list):
        raise InvalidFrameworkInfo("'FrameworkInfo.capabilities' must be a list")
    out = set()
    for i, item in enumerate(data):
        if not isinstance(item, Mapping) or not isinstance(item.get("type"), str):
            raise InvalidFrameworkInfo(f"'FrameworkInfo.capabilities[{i}]' needs a string 'type'")
        out.add(item["type"])
    return frozenset(out)


def _roles(data: Mapping[str, Any], multi_role: bool) -> tuple[str, ...]:
    role = data.get("role")
    roles = data.get("roles")
    if multi_role:
        if role is not None:
            raise InvalidFrameworkInfo(
                "'FrameworkInfo.role' must not be set when the framework is MULTI_ROLE capable"
            )
        if roles is None:
            roles = []
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise InvalidFrameworkInfo("'FrameworkInfo.roles' must be a list of strings")
        if len(set(roles)) != len(roles):
            raise InvalidFrameworkInfo("'FrameworkInfo.roles' contains duplicate items")
        chosen = tuple(roles)
    else:
        if roles:
            raise InvalidFrameworkInfo(
                "'FrameworkInfo.roles' must not be set when the framework is not MULTI_ROLE capable"
            )
        if role is None:
            role = DEFAULT_ROLE
        if not isinstance(role, str):
            raise InvalidFrameworkInfo("'FrameworkInfo.role' must be a string")
        chosen = (role,)
    for r in chosen:
        try:
            validate_role(r)
        except InvalidRole as error:
            raise InvalidFrameworkInfo(f"'FrameworkInfo.roles': {error}") from None
    return chosen


def _offer_filters(data: object, roles: Sequence[str]) -> dict[str, tuple[Quantities, ...]]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InvalidFrameworkInfo("'FrameworkInfo.offer_filters' must be an object")
    out: dict[str, tuple[Quantities, ...]] = {}
    for role, filters in data.items():
        if role not in roles:
            raise InvalidFrameworkInfo(
                f"'FrameworkInfo.offer_filters' names role {role!r}, which the framework "
                "is not subscribed to"
            )
        what = f"FrameworkInfo.offer_filters[{role!r}].min_allocatable_resources"
        spec = filters.get("min_allocatable_resources") if isinstance(filters, Mapping) else None
        if spec is None:
            continue
        groups = spec.get("quantities", []) if isinstance(spec, Mapping) else None
        if not isinstance(groups, list):
            raise InvalidFrameworkInfo(f"'{what}.quantities' must be a list")
        parsed = []
        for group in groups:
            amounts = group.get("quantities", {}) if isinstance(group, Mapping) else None
            if not isinstance(amounts, Mapping):
                raise InvalidFrameworkInfo(f"'{what}' entries need a 'quantities' object")
            try:
                parsed.append(
                    Quantities(
                        {
                            n: scalar_to_millis(v.get("value") if isinstance(v, Mapping) else v, n)
                            for n, v in amounts.items()
                        }
                    )
                )
            except InvalidResource as error:
                raise InvalidFrameworkInfo(f"'{what}': {error}") from None
        out[role] = tuple(parsed)
    return out


def offer_constraints_from_json(data: object, roles: Sequence[str]) -> dict[str, RoleConstraints]:
    """`subscribe.offer_constraints` (Mesos 1.11) -> per-role agent constraints."""
    if data is None:
        return {}
    if not isinstance(data, Mapping) or not isinstance(data.get("role_constraints", {}), Mapping):
        raise InvalidFrameworkInfo("'offer_constraints.role_constraints' must be an object")
    out: dict[str, RoleConstraints] = {}
    for role, spec in data.get("role_constraints", {}).items():
        if role not in roles:
            raise InvalidFrameworkInfo(
                f"offer constraints name role {role!r}, which the framework is not subscribed to"
            )
        groups_json = spec.get("groups", []) if isinstance(spec, Mapping) else None
        if not isinstance(groups_json, list):
            raise InvalidFrameworkInfo(f"offer constraints of role {role!r} need a 'groups' list")
        groups = []
        for group in groups_json:
            items = group.get("attribute_constraints", []) if isinstance(group, Mapping) else None
            if not isinstance(items, list):
                raise InvalidFrameworkInfo(
                    "an offer constraint group needs 'attribute_constraints'"
                )
            groups.append(tuple(_constraint(item) for item in items))
        out[role] = RoleConstraints(tuple(groups))
    return out


def _constraint(data: object) -> Constraint:
    if not isinstance(data, Mapping):
        raise InvalidFrameworkInfo("an attribute constraint must be an object")
    selector = data.get("selector")
    predicate = data.get("predicate")
    if (
        not isinstance(selector, Mapping)
        or not isinstance(predicate, Mapping)
        or len(predicate) != 1
    ):
        raise InvalidFrameworkInfo("an attribute constraint needs a 'selector' and one 'predicate'")
    ((kind, body),) = predicate.items()
    try:
        pred = Predicate(kind)
        pseudo = selector.get("pseudoattribute_type")
        value = None
        if isinstance(body, Mapping):
            value = body.get("value", body.get("regex"))
        return Constraint(
            predicate=pred,
            attribute=selector.get("attribute_name"),
            pseudo=Pseudo(pseudo) if pseudo is not None else None,
            value=value,
        )
    except (ValueError, InvalidConstraint) as error:
        raise InvalidFrameworkInfo(f"bad offer constraint: {error}") from None


@dataclass(frozen=True)
class AgentInfo:
    hostname: str
    port: int = 5051
    resources: Resources = field(default_factory=Resources)
    attributes: Attributes = field(default_factory=Attributes)
    region: str | None = None
    zone: str | None = None


@dataclass(frozen=True)
class MasterInfo:
    id: str
    ip: str = "127.0.0.1"
    port: int = 5050
    hostname: str = "localhost"
    version: str = "1.11.0"


@dataclass(frozen=True)
class TaskStatus:
    """A task status update (Mesos `TaskStatus`). `uuid` is set only on reliable updates
    (those an agent retries until acknowledged); the master's own updates have none."""

    task_id: str
    state: TaskState
    source: Source | None = None
    reason: Reason | None = None
    message: str | None = None
    agent_id: str | None = None
    executor_id: str | None = None
    timestamp: float | None = None
    uuid: bytes | None = None
    healthy: bool | None = None
    data: bytes | None = None
    unreachable_time: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def visible_to(self, partition_aware: bool) -> TaskStatus:
        state = visible_state(self.state, partition_aware)
        return self if state is self.state else replace(self, state=state)
