"""Mesos `QuotaConfig` JSON (`{"role", "guarantees": {"cpus": {"value": 1}}, "limits": ...}`)
to and from the core's `Quota` (milli-unit quantities and limits)."""

from __future__ import annotations

from collections.abc import Mapping

from agora.core.allocator.quota import Quota
from agora.core.errors import InvalidResource
from agora.core.quantities import Limits, Quantities
from agora.core.values import millis_to_float, scalar_to_millis
from agora.wire.mesos_json import Json, WireError


def quota_config_to_json(role: str, quota: Quota) -> Json:
    return {
        "role": role,
        "guarantees": _amounts_to_json(quota.guarantees),
        "limits": _amounts_to_json(quota.limits),
    }


def quota_config_from_json(data: object, where: str) -> tuple[str, Quota]:
    """(role, quota) from a QuotaConfig, or WireError naming the field."""
    if not isinstance(data, Mapping):
        raise WireError(f"'{where}' must be an object")
    role = data.get("role")
    if not isinstance(role, str) or not role:
        raise WireError(f"'{where}.role' is required and must be a string")
    guarantees = _amounts_from_json(data.get("guarantees"), f"{where}.guarantees")
    limits = _amounts_from_json(data.get("limits"), f"{where}.limits")
    return role, Quota(Quantities(guarantees), Limits(limits))


def _amounts_to_json(amounts: Mapping[str, int]) -> Json:
    return {name: {"value": millis_to_float(v)} for name, v in sorted(amounts.items())}


def _amounts_from_json(data: object, where: str) -> dict[str, int]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise WireError(f"'{where}' must be an object of name -> {{\"value\": number}}")
    out = {}
    for name, value in data.items():
        number = value.get("value") if isinstance(value, Mapping) else None
        try:
            out[str(name)] = scalar_to_millis(number, f"'{where}.{name}.value'")
        except InvalidResource as error:
            raise WireError(str(error)) from None
    return out
