"""The registry: what the master must not forget across a failover, and the operations
that change it (Mesos's `Registry` and registrar operations, reference §1.4).

Persisted: the admitted agents (with their AgentInfo), unreachable agents (with when
they became so), agents marked gone, role weights, quota and the maintenance schedule,
and the MasterInfo of the latest leader. Not persisted (rebuilt from agents'
re-registrations and frameworks' re-subscriptions): frameworks, tasks, executors,
offers, filters.

The master core asks for a change with `commands.Persist(operation)` *before* the
commands that depend on it (an agent hears that it is registered only after its
admission is durable; a framework hears TASK_UNREACHABLE only after the agent is
recorded unreachable). The shell carries commands out in order and holds everything
after a Persist until the store says it is durable. A new leader loads the registry
and hands it to its core as `events.RegistryRecovered`.

`Registry.apply` is the one definition of what each operation means; the stores keep
records per agent / role (see agora/master/registry/records.py) and the simulator
keeps a `Registry` as its durable store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from agora.core.allocator.quota import Quota
from agora.core.master.info import AgentInfo, MasterInfo
from agora.core.master.model import UnreachableAgent

Json = Mapping[str, Any]


# ------------------------------------------------------------------ operations


@dataclass(frozen=True)
class RecordLeader:
    """A newly elected master writes its MasterInfo (Mesos's `Recover` operation)."""

    info: MasterInfo


@dataclass(frozen=True)
class AdmitAgent:
    """A new agent, or a known one whose AgentInfo changed."""

    agent_id: str
    info: AgentInfo


@dataclass(frozen=True)
class MarkUnreachable:
    agent_id: str
    info: AgentInfo
    since: float


@dataclass(frozen=True)
class MarkReachable:
    """An unreachable (or forgotten) agent re-registered: admitted again."""

    agent_id: str
    info: AgentInfo


@dataclass(frozen=True)
class MarkGone:
    agent_id: str
    since: float


@dataclass(frozen=True)
class RemoveAgent:
    """The agent is gone for good without an operator saying so (it came back under a
    new id): forgotten, not remembered as gone."""

    agent_id: str


@dataclass(frozen=True)
class PruneAgents:
    """Forget the oldest unreachable and gone entries (registry GC)."""

    unreachable: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()


@dataclass(frozen=True)
class SetWeights:
    weights: Mapping[str, float]


@dataclass(frozen=True)
class SetQuotas:
    """Roles' quotas; the default quota (no guarantees, no limits) removes a role's."""

    quotas: Mapping[str, Quota]


@dataclass(frozen=True)
class SetMaintenanceSchedule:
    schedule: Json  # Mesos maintenance.Schedule JSON, validated by the master


Operation = (
    RecordLeader
    | AdmitAgent
    | MarkUnreachable
    | MarkReachable
    | MarkGone
    | RemoveAgent
    | PruneAgents
    | SetWeights
    | SetQuotas
    | SetMaintenanceSchedule
)


# ------------------------------------------------------------------ the registry


@dataclass(frozen=True)
class Registry:
    leader: MasterInfo | None = None
    agents: Mapping[str, AgentInfo] = field(default_factory=dict)
    unreachable: Mapping[str, UnreachableAgent] = field(default_factory=dict)
    gone: Mapping[str, float] = field(default_factory=dict)
    weights: Mapping[str, float] = field(default_factory=dict)
    quotas: Mapping[str, Quota] = field(default_factory=dict)
    maintenance_schedule: Json = field(default_factory=dict)

    def apply(self, operation: Operation) -> Registry:
        """The registry after one operation (a new value; this one is unchanged)."""
        if isinstance(operation, RecordLeader):
            return replace(self, leader=operation.info)
        if isinstance(operation, AdmitAgent | MarkReachable | MarkUnreachable) and (
            operation.agent_id in self.gone
        ):
            return self  # gone is final: the master turns such an agent away
        if isinstance(operation, AdmitAgent | MarkReachable):
            unreachable = _without(self.unreachable, operation.agent_id)
            agents = {**self.agents, operation.agent_id: operation.info}
            return replace(self, agents=agents, unreachable=unreachable)
        if isinstance(operation, MarkUnreachable):
            entry = UnreachableAgent(operation.info, operation.since)
            unreachable = {**self.unreachable, operation.agent_id: entry}
            return replace(
                self, agents=_without(self.agents, operation.agent_id), unreachable=unreachable
            )
        if isinstance(operation, MarkGone):
            return replace(
                self,
                agents=_without(self.agents, operation.agent_id),
                unreachable=_without(self.unreachable, operation.agent_id),
                gone={**self.gone, operation.agent_id: operation.since},
            )
        if isinstance(operation, RemoveAgent):
            return replace(
                self,
                agents=_without(self.agents, operation.agent_id),
                unreachable=_without(self.unreachable, operation.agent_id),
            )
        if isinstance(operation, PruneAgents):
            unreachable = {
                k: v for k, v in self.unreachable.items() if k not in operation.unreachable
            }
            gone = {k: v for k, v in self.gone.items() if k not in operation.gone}
            return replace(self, unreachable=unreachable, gone=gone)
        if isinstance(operation, SetWeights):
            return replace(self, weights={**self.weights, **operation.weights})
        if isinstance(operation, SetQuotas):
            quotas = dict(self.quotas)
            for role, quota in operation.quotas.items():
                quotas.pop(role, None)
                if not quota.is_default():
                    quotas[role] = quota
            return replace(self, quotas=quotas)
        return replace(self, maintenance_schedule=operation.schedule)


def _without(mapping: Mapping[str, Any], key: str) -> dict[str, Any]:
    out = dict(mapping)
    out.pop(key, None)
    return out


def prune(
    unreachable_agents: Mapping[str, UnreachableAgent],
    gone_agents: Mapping[str, float],
    now: float,
    max_age_s: float,
    max_count: int,
) -> PruneAgents | None:
    """Which unreachable and gone entries registry GC drops: older than `max_age_s`, and
    the oldest beyond `max_count` of each list (Mesos's registry_max_agent_age / _count).
    None when nothing is due."""
    unreachable = _expired(
        {k: v.since for k, v in unreachable_agents.items()}, now, max_age_s, max_count
    )
    gone = _expired(gone_agents, now, max_age_s, max_count)
    if not unreachable and not gone:
        return None
    return PruneAgents(unreachable=unreachable, gone=gone)


def _expired(
    since: Mapping[str, float], now: float, max_age_s: float, max_count: int
) -> tuple[str, ...]:
    by_age = sorted(since, key=lambda agent_id: (since[agent_id], agent_id))
    excess = max(0, len(by_age) - max_count)
    return tuple(
        agent_id
        for i, agent_id in enumerate(by_age)
        if i < excess or now - since[agent_id] > max_age_s
    )
