"""The operator API's event stream (`{"type": "SUBSCRIBE"}` on `/api/v1`, reference §5.2).

Events are derived from what the core did: launches it ordered (TASK_ADDED), updates it
sent to frameworks (TASK_UPDATED), subscriptions it opened (FRAMEWORK_ADDED/UPDATED), and
frameworks and agents that appeared or went away (compared after each event, only while
someone is subscribed).
"""

from __future__ import annotations

from collections.abc import Iterable

from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master.core import MasterCore
from agora.master import views
from agora.runtime.outbox import Outbox
from agora.wire.mesos_json import Json, status_to_json
from agora.wire.recordio import encode_record
from agora.wire.scheduler import encode_json


class OperatorStream(Outbox):
    """One operator's SUBSCRIBE response."""


def _record(event: Json) -> bytes:
    return encode_record(encode_json(event))


class OperatorEvents:
    def __init__(self) -> None:
        self.subscribers: list[OperatorStream] = []
        self._frameworks: set[str] = set()
        self._agents: set[str] = set()

    def subscribe(
        self, core: MasterCore, ips: dict[str, str], heartbeat_s: float
    ) -> OperatorStream:
        stream = OperatorStream()
        if not self.subscribers:
            self._frameworks = set(core.frameworks)
            self._agents = set(core.agents)
        self.subscribers.append(stream)
        subscribed = {
            "get_state": views.state_v1(core, ips),
            "heartbeat_interval_seconds": heartbeat_s,
        }
        stream.push(_record({"type": "SUBSCRIBED", "subscribed": subscribed}))
        stream.push(_record({"type": "HEARTBEAT"}))
        return stream

    def unsubscribe(self, stream: OperatorStream) -> None:
        if stream in self.subscribers:
            self.subscribers.remove(stream)

    def heartbeat(self) -> None:
        self._broadcast([{"type": "HEARTBEAT"}])

    # Only these inputs add or remove frameworks and agents: status updates and
    # acknowledgements (the hot path) skip the comparison.
    MEMBERSHIP_EVENTS = (
        ev.Subscribe,
        ev.Teardown,
        ev.FrameworkDisconnected,
        ev.RegisterAgent,
        ev.ReregisterAgent,
        ev.AgentDisconnected,
        ev.Tick,
    )

    def observe(
        self,
        core: MasterCore,
        event: ev.MasterEvent,
        commands: Iterable[cmd.Command],
        ips: dict[str, str],
    ) -> None:
        events: list[Json] = []
        for command in commands:
            if isinstance(command, cmd.SendToAgent):
                message = command.message
                if isinstance(message, cmd.RunTask):
                    events.extend(self._task_added(core, message.framework.id, [message.task]))
                elif isinstance(message, cmd.RunTaskGroup):
                    events.extend(self._task_added(core, message.framework.id, message.tasks))
            elif isinstance(command, cmd.SendToFramework) and isinstance(command.event, cmd.Update):
                events.append(self._task_updated(core, command.framework_id, command.event))
            elif isinstance(command, cmd.OpenStream):
                framework = core.frameworks.get(command.framework_id)
                if framework is not None:
                    kind = (
                        "framework_updated"
                        if command.framework_id in self._frameworks
                        else "framework_added"
                    )
                    self._frameworks.add(command.framework_id)
                    events.append(
                        {
                            "type": kind.upper(),
                            kind: {"framework": views.framework_v1(framework, core)},
                        }
                    )
        if isinstance(event, self.MEMBERSHIP_EVENTS):
            events.extend(self._membership(core, ips))
        self._broadcast(events)

    def _task_added(
        self, core: MasterCore, framework_id: str | None, launches: Iterable[cmd.TaskLaunch]
    ) -> list[Json]:
        framework = core.frameworks.get(framework_id or "")
        out = []
        for launch in launches:
            task = framework.tasks.get(launch.task_id) if framework else None
            if task is not None:
                out.append({"type": "TASK_ADDED", "task_added": {"task": views.task_v1(task)}})
        return out

    def _task_updated(self, core: MasterCore, framework_id: str, update: cmd.Update) -> Json:
        framework = core.frameworks.get(framework_id)
        task = None
        if framework is not None:
            task = framework.tasks.get(update.status.task_id) or framework.unreachable_tasks.get(
                update.status.task_id
            )
        state = task.state.value if task is not None else update.status.state.value
        body = {
            "framework_id": {"value": framework_id},
            "status": status_to_json(update.status),
            "state": state,
        }
        return {"type": "TASK_UPDATED", "task_updated": body}

    def _membership(self, core: MasterCore, ips: dict[str, str]) -> list[Json]:
        out: list[Json] = []
        for framework_id in sorted(self._frameworks - set(core.frameworks)):
            self._frameworks.discard(framework_id)
            gone = core.completed_frameworks.get(framework_id)
            info = (
                dict(gone.info.raw, id={"value": framework_id})
                if gone
                else {"id": {"value": framework_id}}
            )
            out.append({"type": "FRAMEWORK_REMOVED", "framework_removed": {"framework_info": info}})
        for framework_id in sorted(set(core.frameworks) - self._frameworks):
            self._frameworks.add(framework_id)
            framework = core.frameworks[framework_id]
            out.append(
                {
                    "type": "FRAMEWORK_ADDED",
                    "framework_added": {"framework": views.framework_v1(framework, core)},
                }
            )
        for agent_id in sorted(self._agents - set(core.agents)):
            self._agents.discard(agent_id)
            out.append(
                {"type": "AGENT_REMOVED", "agent_removed": {"agent_id": {"value": agent_id}}}
            )
        for agent_id in sorted(set(core.agents) - self._agents):
            self._agents.add(agent_id)
            agent = views.agent_v1(core.agents[agent_id], core, ips)
            out.append({"type": "AGENT_ADDED", "agent_added": {"agent": agent}})
        return out

    def _broadcast(self, events: list[Json]) -> None:
        if not events:
            return
        data = b"".join(_record(e) for e in events)
        for stream in self.subscribers:
            stream.push(data)
