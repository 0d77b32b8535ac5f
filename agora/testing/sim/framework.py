"""A simulated framework scheduler: subscribes, launches tasks on offers or declines
them, acknowledges updates, kills, reconciles, suppresses and revives, and fails over
when its event stream breaks or its master dies. It records everything it was told, for
the invariants.

After every (re-)subscription it reconciles as Mesos recommends: it asks about every
task it does not know to have ended, and asks again, with truncated exponential
back-off, about those it heard nothing new of (a master that has just failed over does
not answer for tasks on agents that have not re-registered yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.resource_text import parse_resources
from agora.core.resources import Resources
from agora.core.task_states import TaskState

if TYPE_CHECKING:
    from agora.testing.sim.world import Simulation

RESUBSCRIBE_S = 2.0
SUBSCRIBE_TIMEOUT_S = 10.0  # no answer to SUBSCRIBE: the master is gone; try again
RECONCILE_MIN_S = 5.0
RECONCILE_MAX_S = 60.0
HOUSEKEEPING_S = 5.0
LAUNCH_TIMEOUT_S = 60.0  # like Marathon's task_launch_timeout: kill launches never heard of


@dataclass
class Observed:
    """What the framework was told about one of its tasks, in order."""

    states: list[TaskState] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)
    uuids: list[bytes] = field(default_factory=list)  # the agents' updates among them


class SimFramework:
    def __init__(
        self,
        sim: Simulation,
        index: int,
        roles: tuple[str, ...],
        partition_aware: bool,
        checkpoint: bool,
    ) -> None:
        self.sim = sim
        self.name = f"framework{index}"
        self.roles = roles
        self.partition_aware = partition_aware
        self.checkpoint = checkpoint
        self.leader: int | None = None  # the master epoch this framework believes leads
        self.framework_id: str | None = None
        self.stream_id: str | None = None
        self.subscribing = 0  # the attempt waiting for an answer (0: none)
        self._attempts = 0
        self._subscription_request = ""
        self._reconcile_round = 0
        self.budget = sim.config.tasks_per_framework
        self.launched: dict[str, str] = {}  # task id -> agent id
        self.launched_at: dict[str, float] = {}
        self.observed: dict[str, Observed] = {}
        self.offers: dict[str, cmd.OfferView] = {}
        self.suppressed = False
        self._requests = 0

    # ------------------------------------------------------------------ plumbing

    def _request_id(self) -> str:
        self._requests += 1
        return f"{self.name}-r{self._requests}"

    def call(self, event: ev.MasterEvent) -> None:
        self.sim.framework_to_master(self, event)

    def _call_args(self) -> dict[str, Any]:
        assert self.framework_id is not None
        return {
            "request_id": self._request_id(),
            "framework_id": self.framework_id,
            "stream_id": self.stream_id,
        }

    def info_json(self) -> dict[str, Any]:
        capabilities = [{"type": "MULTI_ROLE"}]
        if self.partition_aware:
            capabilities.append({"type": "PARTITION_AWARE"})
        info: dict[str, Any] = {
            "user": "sim",
            "name": self.name,
            "roles": list(self.roles),
            "capabilities": capabilities,
            "failover_timeout": 3600.0,
            "checkpoint": self.checkpoint,
        }
        if self.framework_id is not None:
            info["id"] = {"value": self.framework_id}
        return info

    # -------------------------------------------------------------- subscription

    def start(self) -> None:
        self.leader = self.sim.current_epoch()
        self.subscribe()
        self.sim.after(HOUSEKEEPING_S, self._housekeeping)

    def leader_detected(self, epoch: int) -> None:
        """A new master leads: subscribe to it (again, under our id) at once."""
        self.leader = epoch
        self.stream_id = None
        self.subscribing = 0
        self.offers.clear()
        self.subscribe()

    def subscribe(self) -> None:
        if self.stream_id is not None or self.subscribing:
            return
        self._attempts += 1
        attempt = self.subscribing = self._attempts
        self._subscription_request = self._request_id()
        self.call(
            ev.Subscribe(request_id=self._subscription_request, framework_info=self.info_json())
        )
        self.sim.after(SUBSCRIBE_TIMEOUT_S, lambda: self._subscribe_timed_out(attempt))

    def _subscribe_timed_out(self, attempt: int) -> None:
        if self.subscribing == attempt:
            self.subscribing = 0
            self.subscribe()

    def stream_opened(self, request_id: str, framework_id: str, stream_id: str) -> None:
        if request_id != self._subscription_request or not self.subscribing:
            return  # the answer to an attempt we gave up on (its master died)
        self.subscribing = 0
        self.framework_id = framework_id
        self.stream_id = stream_id
        self.suppressed = False
        self.offers.clear()
        self.reconcile()

    def subscription_refused(self, request_id: str, message: str) -> None:
        if request_id != self._subscription_request or not self.subscribing:
            return
        self.subscribing = 0
        self.sim.after(RESUBSCRIBE_S, self.subscribe)

    def stream_closed(self, stream_id: str) -> None:
        if stream_id != self.stream_id:
            return
        self.stream_id = None
        self.offers.clear()
        self.sim.after(RESUBSCRIBE_S, self.subscribe)

    def responded(self, response: cmd.Respond) -> None:
        if response.status == 403 and self.stream_id is not None:
            # Not subscribed any more (our stream was replaced or broken): fail over.
            self.stream_id = None
            self.sim.after(RESUBSCRIBE_S, self.subscribe)

    # -------------------------------------------------------------------- events

    def receive(self, stream_id: str, event: cmd.SchedulerEvent) -> None:
        if stream_id != self.stream_id:
            return
        if isinstance(event, cmd.Offers):
            for offer in event.offers:
                self._consider(offer)
        elif isinstance(event, cmd.Rescind):
            self.offers.pop(event.offer_id, None)
        elif isinstance(event, cmd.Update):
            self._on_update(event)

    def _on_update(self, event: cmd.Update) -> None:
        status = event.status
        seen = self.observed.setdefault(status.task_id, Observed())
        seen.states.append(status.state)
        seen.reasons.append(None if status.reason is None else status.reason.value)
        if status.uuid is not None:
            seen.uuids.append(status.uuid)
        if status.uuid is not None and status.agent_id is not None and self.stream_id is not None:
            self.call(
                ev.Acknowledge(
                    **self._call_args(),
                    agent_id=status.agent_id,
                    task_id=status.task_id,
                    uuid=status.uuid,
                )
            )

    def _consider(self, offer: cmd.OfferView) -> None:
        rng = self.sim.rng
        self.offers[offer.id] = offer
        room = self.sim.config.live_tasks_per_framework - self._live_count()
        if self._done_launching() or room <= 0 or rng.random() < 0.2:
            refuse = rng.choice([None, 0.0, 1.0, 10.0, 60.0])
            self.offers.pop(offer.id, None)
            self.call(ev.Decline(**self._call_args(), offer_ids=(offer.id,), refuse_seconds=refuse))
            return
        left = offer.resources
        tasks = []
        for _ in range(min(room, rng.randint(1, 4))):
            if self.budget <= 0:
                break
            cpus, mem = rng.choice([0.1, 0.5, 1.0]), rng.choice([32, 128, 512])
            want = _task_resources(cpus, mem, offer.role)
            if not left.contains(want):
                break
            left = left - want
            self.budget -= 1
            task_id = f"{self.name}-t{len(self.launched)}"
            self.launched[task_id] = offer.agent_id
            self.launched_at[task_id] = self.sim.now
            tasks.append(_task_json(task_id, offer.agent_id, cpus, mem))
        operations = ({"type": "LAUNCH", "launch": {"task_infos": tasks}},) if tasks else ()
        self.offers.pop(offer.id, None)
        self.call(ev.Accept(**self._call_args(), offer_ids=(offer.id,), operations=operations))

    # -------------------------------------------------------------- housekeeping

    def _housekeeping(self) -> None:
        rng = self.sim.rng
        if self.stream_id is not None and self.framework_id is not None:
            live = [t for t in self.launched if not self.believes_terminal(t)]
            self._kill_stuck_launches(live)
            roll = rng.random()
            if live and roll < 0.3:
                task_id = rng.choice(live)
                self.call(
                    ev.Kill(**self._call_args(), task_id=task_id, agent_id=self.launched[task_id])
                )
            elif roll < 0.5:
                self.reconcile()
            elif (roll < 0.6 or self._done_launching()) and not self.suppressed:
                self.suppressed = True
                self.call(ev.Suppress(**self._call_args()))
            elif not self._done_launching():
                self.suppressed = False
                self.call(ev.Revive(**self._call_args()))
        self.sim.after(HOUSEKEEPING_S, self._housekeeping)

    def _kill_stuck_launches(self, live: list[str]) -> None:
        for task_id in live:
            seen = self.observed.get(task_id)
            stuck = seen is None or all(s is TaskState.STAGING for s in seen.states)
            if stuck and self.sim.now - self.launched_at[task_id] > LAUNCH_TIMEOUT_S:
                self.call(
                    ev.Kill(**self._call_args(), task_id=task_id, agent_id=self.launched[task_id])
                )

    def reconcile(self) -> None:
        """Start a reconciliation: explicit for every task not known to have ended (with
        its agent id, so an unknown task gets a definite answer), then implicit; then
        ask again about those without news until none is left."""
        if self.stream_id is None or self.framework_id is None:
            return
        self._reconcile_round += 1
        live = [t for t in self.launched if not self.believes_terminal(t)]
        self._ask(live, self._reconcile_round, RECONCILE_MIN_S)
        self.call(ev.Reconcile(**self._call_args()))

    def _ask(self, task_ids: list[str], round_: int, backoff_s: float) -> None:
        if not task_ids or self.stream_id is None:
            return
        tasks = tuple((t, self.launched[t]) for t in task_ids)
        self.call(ev.Reconcile(**self._call_args(), tasks=tasks))
        heard = {t: self._news(t) for t in task_ids}
        self.sim.after(backoff_s, lambda: self._ask_again(heard, round_, backoff_s))

    def _ask_again(self, heard: dict[str, int], round_: int, backoff_s: float) -> None:
        if round_ != self._reconcile_round:
            return  # a newer reconciliation took over
        silent = [
            t for t, n in heard.items() if self._news(t) == n and not self.believes_terminal(t)
        ]
        if silent:
            self.sim.stats.reconcile_retries += 1
        self._ask(silent, round_, min(backoff_s * 2, RECONCILE_MAX_S))

    def _done_launching(self) -> bool:
        """No more tasks to launch (all launched, or the faulty phase is over): the
        framework then suppresses its offers."""
        return self.budget <= 0 or self.sim.now > self.sim.config.duration_s

    def _live_count(self) -> int:
        """Tasks not heard to have ended (TASK_LOST counts as ended here): the framework
        keeps only so many at once, so that its work spreads over the whole run."""
        count = 0
        for task_id in self.launched:
            seen = self.observed.get(task_id)
            if (
                seen is None
                or not seen.states
                or not (seen.states[-1].is_terminal or seen.states[-1] is TaskState.UNKNOWN)
            ):
                count += 1
        return count

    def _news(self, task_id: str) -> int:
        seen = self.observed.get(task_id)
        return 0 if seen is None else len(seen.states)

    def believes_terminal(self, task_id: str) -> bool:
        """Whether the task has surely ended. TASK_LOST is never sure: a task lost with
        its agent's connection may still run and be heard of again. TASK_UNKNOWN (the
        master knows neither the task nor its agent) ends it, as Marathon expunges it."""
        seen = self.observed.get(task_id)
        if seen is None or not seen.states:
            return False
        last = seen.states[-1]
        if last is TaskState.UNKNOWN:
            return True
        return last.is_terminal and last is not TaskState.LOST


def _task_resources(cpus: float, mem: int, role: str) -> Resources:
    return parse_resources(f"cpus:{cpus};mem:{mem}").allocate(role)


def _task_json(task_id: str, agent_id: str, cpus: float, mem: int) -> dict[str, Any]:
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": {"value": agent_id},
        "command": {"value": "sleep 10"},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}},
        ],
    }
