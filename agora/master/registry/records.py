"""How registry operations become Store records and records become a `Registry` again.

Kinds and their records (values are compact JSON):

    leader        "master"        {"id", "ip", "port", "hostname", "version"}
    agents        <agent id>      AgentInfo in the agent channel's JSON form
    unreachable   <agent id>      {"info": AgentInfo, "since": seconds}
    gone          <agent id>      {"since": seconds}
    weights       <role>          {"weight": w}
    quotas        <role>          QuotaConfig JSON
    maintenance   "schedule"      maintenance.Schedule JSON
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from agora.core.master import registry as reg
from agora.core.master.info import MasterInfo
from agora.core.master.model import UnreachableAgent
from agora.master.registry.store import Change, Delete, Put, StoreError, Transaction
from agora.wire.agent_channel import (
    agent_info_from_json,
    agent_info_from_json_bytes,
    agent_info_to_json,
)
from agora.wire.mesos_json import WireError
from agora.wire.quota import quota_config_from_json, quota_config_to_json

LEADER, AGENTS, UNREACHABLE, GONE = "leader", "agents", "unreachable", "gone"
WEIGHTS, QUOTAS, MAINTENANCE = "weights", "quotas", "maintenance"

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def transaction(operation: reg.Operation) -> Transaction:
    """The one atomic Store transaction that records `operation`."""
    if isinstance(operation, reg.RecordLeader):
        info = operation.info
        value = {"id": info.id, "ip": info.ip, "port": info.port, "hostname": info.hostname}
        return [Put(LEADER, "master", _encode({**value, "version": info.version}))]
    if isinstance(operation, reg.AdmitAgent | reg.MarkReachable):
        return [
            Delete(UNREACHABLE, operation.agent_id),
            Put(AGENTS, operation.agent_id, _encode(agent_info_to_json(operation.info))),
        ]
    if isinstance(operation, reg.MarkUnreachable):
        entry = {"info": agent_info_to_json(operation.info), "since": operation.since}
        return [
            Delete(AGENTS, operation.agent_id),
            Put(UNREACHABLE, operation.agent_id, _encode(entry)),
        ]
    if isinstance(operation, reg.MarkGone):
        return [
            Delete(AGENTS, operation.agent_id),
            Delete(UNREACHABLE, operation.agent_id),
            Put(GONE, operation.agent_id, _encode({"since": operation.since})),
        ]
    if isinstance(operation, reg.RemoveAgent):
        return [Delete(AGENTS, operation.agent_id), Delete(UNREACHABLE, operation.agent_id)]
    if isinstance(operation, reg.PruneAgents):
        changes: list[Change] = [Delete(UNREACHABLE, a) for a in operation.unreachable]
        return changes + [Delete(GONE, a) for a in operation.gone]
    if isinstance(operation, reg.SetWeights):
        return [
            Put(WEIGHTS, role, _encode({"weight": weight}))
            for role, weight in sorted(operation.weights.items())
        ]
    if isinstance(operation, reg.SetQuotas):
        return [
            Delete(QUOTAS, role)
            if quota.is_default()
            else Put(QUOTAS, role, _encode(quota_config_to_json(role, quota)))
            for role, quota in sorted(operation.quotas.items())
        ]
    return [Put(MAINTENANCE, "schedule", _encode(dict(operation.schedule)))]


def registry_from_records(records: Mapping[str, Mapping[str, bytes]]) -> reg.Registry:
    """The registry the records describe, or StoreError naming a record that is not
    one this master wrote."""
    try:
        return _registry(records)
    except (WireError, msgspec.DecodeError, KeyError, TypeError, ValueError) as error:
        raise StoreError(f"the registry holds a record this master cannot read: {error}") from None


def _registry(records: Mapping[str, Mapping[str, bytes]]) -> reg.Registry:
    leader = None
    if "master" in records.get(LEADER, {}):
        data = _decode(records[LEADER]["master"])
        leader = MasterInfo(
            id=data["id"],
            ip=data["ip"],
            port=data["port"],
            hostname=data["hostname"],
            version=data["version"],
        )
    unreachable = {}
    for agent_id, value in records.get(UNREACHABLE, {}).items():
        data = _decode(value)
        unreachable[agent_id] = UnreachableAgent(
            agent_info_from_json(data["info"]), float(data["since"])
        )
    quotas = {}
    for role, value in records.get(QUOTAS, {}).items():
        _, quotas[role] = quota_config_from_json(_decode(value), f"registry quota {role}")
    schedule: Any = records.get(MAINTENANCE, {}).get("schedule")
    return reg.Registry(
        leader=leader,
        agents={
            agent_id: agent_info_from_json_bytes(value)
            for agent_id, value in records.get(AGENTS, {}).items()
        },
        unreachable=unreachable,
        gone={a: float(_decode(v)["since"]) for a, v in records.get(GONE, {}).items()},
        weights={r: float(_decode(v)["weight"]) for r, v in records.get(WEIGHTS, {}).items()},
        quotas=quotas,
        maintenance_schedule={} if schedule is None else _decode(schedule),
    )
