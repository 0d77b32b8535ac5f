"""A small driver for the master core (not a test module itself).

`Driver` wraps a `MasterCore` with a clock, auto-numbered request ids and short-hands
for what agents and schedulers do: register agents, subscribe frameworks, run the
allocation, accept offers, send status updates. Every call returns an `Out`, the
commands the core produced, with filters by command type and recipient.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from agora.core.allocator.state import AGENT_CAPABILITIES
from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master.core import MasterCore
from agora.core.master.info import AgentInfo, MasterInfo, TaskStatus
from agora.core.master.model import Framework, MasterOptions, Task
from agora.core.resource_text import parse_resources
from agora.core.resources import Resources
from agora.core.task_states import Source, TaskState

MASTER_ID = "m1"
AGENT_RESOURCES = "cpus:4;mem:4096;disk:1024;ports:[31000-32000]"

T = TypeVar("T")


def res(text: str) -> Resources:
    return parse_resources(text) if text else Resources()


def scalar(name: str, value: float, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}, **extra}


def dynamic(role: str, principal: str | None = "p") -> list[dict[str, Any]]:
    reservation: dict[str, Any] = {"type": "DYNAMIC", "role": role}
    if principal is not None:
        reservation["principal"] = principal
    return [reservation]


def task_info(
    task_id: str,
    agent_id: str,
    cpus: float = 1,
    mem: float = 128,
    *,
    resources: Sequence[Mapping[str, Any]] | None = None,
    command: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A TaskInfo in its Mesos JSON shape; `command` defaults to `true` unless an
    `executor` is given (pass `command=None, executor=...`)."""
    if resources is None:
        resources = [scalar("cpus", cpus), scalar("mem", mem)]
    info: dict[str, Any] = {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": {"value": agent_id},
        "resources": list(resources),
    }
    if command is None and "executor" not in extra:
        command = {"value": "true"}
    if command is not None:
        info["command"] = command
    info.update(extra)
    return info


def executor_info(executor_id: str, value: str = "exec", **extra: Any) -> dict[str, Any]:
    return {
        "executor_id": {"value": executor_id},
        "command": {"value": value},
        "resources": [scalar("cpus", 0.5), scalar("mem", 32)],
        **extra,
    }


def launch(*tasks: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "LAUNCH", "launch": {"task_infos": list(tasks)}}


def launch_group(executor: Mapping[str, Any], *tasks: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "LAUNCH_GROUP",
        "launch_group": {"executor": dict(executor), "task_group": {"tasks": list(tasks)}},
    }


class Out(list[cmd.Command]):
    """The commands one or more `handle` calls returned, with filters."""

    def of(self, kind: type[T]) -> list[T]:
        return [c for c in self if isinstance(c, kind)]

    def events(self, framework_id: str, kind: type[T] | None = None) -> list[Any]:
        out = [
            c.event
            for c in self
            if isinstance(c, cmd.SendToFramework) and c.framework_id == framework_id
        ]
        return out if kind is None else [e for e in out if isinstance(e, kind)]

    def updates(self, framework_id: str) -> list[TaskStatus]:
        return [e.status for e in self.events(framework_id, cmd.Update)]

    def update(self, framework_id: str, task_id: str) -> TaskStatus:
        """The one update about `task_id` (fails if there is not exactly one)."""
        found = [s for s in self.updates(framework_id) if s.task_id == task_id]
        assert len(found) == 1, f"expected one update for {task_id}, got {found}"
        return found[0]

    def offers(self, framework_id: str) -> list[cmd.OfferView]:
        return [o for e in self.events(framework_id, cmd.Offers) for o in e.offers]

    def rescinds(self, framework_id: str) -> list[str]:
        return [e.offer_id for e in self.events(framework_id, cmd.Rescind)]

    def to_agent(self, agent_id: str, kind: type[T] | None = None) -> list[Any]:
        out = [c.message for c in self if isinstance(c, cmd.SendToAgent) and c.agent_id == agent_id]
        return out if kind is None else [m for m in out if isinstance(m, kind)]

    def statuses(self) -> list[int]:
        """The HTTP statuses of the responses, in order."""
        return [r.status for r in self.of(cmd.Respond)]

    def refusals(self) -> list[str]:
        return [r.message for r in self.of(cmd.RefuseSubscription)]

    def response(self, request_id: str) -> cmd.Respond:
        found = [c for c in self.of(cmd.Respond) if c.request_id == request_id]
        assert len(found) == 1, f"expected one response to {request_id}, got {found}"
        return found[0]


@dataclass(frozen=True)
class Fw:
    """A subscribed framework as its scheduler knows it."""

    id: str
    stream_id: str
    info: dict[str, Any]


class Driver:
    def __init__(self, options: MasterOptions | None = None, seed: int = 1) -> None:
        self.core = MasterCore(MasterInfo(id=MASTER_ID), options, rng=random.Random(seed))
        self.now = 0.0
        self._ids = itertools.count()
        self._connections = itertools.count()
        self._uuids = itertools.count(1)
        # agent id -> connection id of agents that answer pings (see `advance`)
        self.ponging: dict[str, str] = {}

    # ----------------------------------------------------------------- plumbing

    def rid(self) -> str:
        return f"r{next(self._ids)}"

    def do(self, event: ev.MasterEvent) -> Out:
        return Out(self.core.handle(event, self.now))

    def advance(self, seconds: float) -> Out:
        """Let `seconds` pass, running every Tick that falls due on the way. Agents in
        `ponging` answer each Ping at once (their pongs are not in the output)."""
        end = self.now + seconds
        out = Out()
        while True:
            deadline = self.core.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            step = self.do(ev.Tick())
            out.extend(step)
            for c in step:
                if isinstance(c, cmd.SendToAgent) and isinstance(c.message, cmd.Ping):
                    connection = self.ponging.get(c.agent_id)
                    if connection is not None:
                        self.do(ev.AgentPong(agent_id=c.agent_id, connection_id=connection))
        self.now = end
        return out

    def tick(self) -> Out:
        """Run the allocation now (the pass that is due, or a full one)."""
        return self.do(ev.Tick())

    def allocate(self) -> Out:
        """Move to the next full allocation and run it."""
        return self.advance(self.core.options.allocation_interval_s)

    def uuid(self) -> bytes:
        return next(self._uuids).to_bytes(16, "big")

    # ------------------------------------------------------------------- agents

    def new_connection(self) -> str:
        return f"c{next(self._connections)}"

    def register_agent(
        self,
        hostname: str = "h1",
        resources: str = AGENT_RESOURCES,
        port: int = 5051,
        capabilities: frozenset[str] = AGENT_CAPABILITIES,
    ) -> tuple[str, str]:
        """Register an agent (with a current agent's capabilities); return
        (agent id, connection id)."""
        connection = self.new_connection()
        out = self.do(
            ev.RegisterAgent(
                connection_id=connection,
                info=AgentInfo(hostname=hostname, port=port, resources=res(resources)),
                capabilities=capabilities,
            )
        )
        (accepted,) = out.of(cmd.AcceptAgent)
        self.ponging[accepted.agent_id] = connection
        return accepted.agent_id, connection

    def agent_info(self, agent_id: str) -> AgentInfo:
        return self.core.agents[agent_id].info

    # --------------------------------------------------------------- frameworks

    def subscribe_call(self, info: Mapping[str, Any], **kw: Any) -> Out:
        return self.do(ev.Subscribe(request_id=self.rid(), framework_info=info, **kw))

    def subscribe(
        self,
        name: str = "f",
        *,
        caps: Iterable[str] = (),
        roles: Sequence[str] | None = None,
        role: str | None = None,
        **fields: Any,
    ) -> Fw:
        info: dict[str, Any] = {"user": "u", "name": name, **fields}
        caps = list(caps)
        if roles is not None:
            caps.append("MULTI_ROLE")
            info["roles"] = list(roles)
        if role is not None:
            info["role"] = role
        if caps:
            info["capabilities"] = [{"type": c} for c in caps]
        out = self.subscribe_call(info)
        (stream,) = out.of(cmd.OpenStream)
        return Fw(
            stream.framework_id, stream.stream_id, {**info, "id": {"value": stream.framework_id}}
        )

    def resubscribe(self, fw: Fw, **changes: Any) -> tuple[Fw, Out]:
        info = {**fw.info, **changes}
        out = self.subscribe_call(info)
        streams = out.of(cmd.OpenStream)
        assert streams, f"re-subscription refused: {list(out)}"
        return Fw(fw.id, streams[0].stream_id, info), out

    def framework(self, fw: Fw) -> Framework:
        return self.core.frameworks[fw.id]

    def task(self, fw: Fw, task_id: str) -> Task:
        return self.core.frameworks[fw.id].tasks[task_id]

    # ------------------------------------------------------------------- calls

    def call(self, kind: type[ev.SchedulerCall], fw: Fw, **kw: Any) -> Out:
        """A scheduler call from `fw` on its current stream (unless `stream_id=` says)."""
        kw.setdefault("stream_id", fw.stream_id)
        call: Any = kind(request_id=self.rid(), framework_id=fw.id, **kw)
        return self.do(call)

    def offer(self, fw: Fw, within: float = 10.0) -> cmd.OfferView:
        """Run allocation passes until `fw` gets an offer; return the first one."""
        end = self.now + within
        while self.now < end:
            offers = self.allocate().offers(fw.id)
            if offers:
                return offers[0]
        raise AssertionError(f"no offer for {fw.id}")

    def accept(
        self,
        fw: Fw,
        offers: cmd.OfferView | Sequence[str],
        *operations: Mapping[str, Any],
        refuse_seconds: object = None,
    ) -> Out:
        ids = (offers.id,) if isinstance(offers, cmd.OfferView) else tuple(offers)
        return self.call(
            ev.Accept,
            fw,
            offer_ids=ids,
            operations=tuple(operations),
            refuse_seconds=refuse_seconds,
        )

    def launch_one(self, fw: Fw, task_id: str = "t1", cpus: float = 1, mem: float = 128) -> Out:
        """Get an offer and launch one task on it."""
        offer = self.offer(fw)
        out = self.accept(fw, offer, launch(task_info(task_id, offer.agent_id, cpus, mem)))
        assert out.to_agent(offer.agent_id, cmd.RunTask), list(out)
        return out

    def status(
        self,
        fw: Fw,
        agent_id: str,
        task_id: str,
        state: TaskState,
        *,
        uuid: bytes | None = None,
        latest_state: TaskState | None = None,
        **fields: Any,
    ) -> tuple[bytes, Out]:
        """An agent forwards a reliable status update; return (its uuid, output)."""
        uuid = uuid if uuid is not None else self.uuid()
        status = TaskStatus(
            task_id=task_id, state=state, source=Source.EXECUTOR, uuid=uuid, **fields
        )
        out = self.do(
            ev.StatusUpdateFromAgent(
                agent_id=agent_id, framework_id=fw.id, status=status, latest_state=latest_state
            )
        )
        return uuid, out

    def ack(self, fw: Fw, agent_id: str, task_id: str, uuid: bytes) -> Out:
        return self.call(ev.Acknowledge, fw, agent_id=agent_id, task_id=task_id, uuid=uuid)
