"""A simulated operator: calls the operator API of whichever master leads, and calls
again (a new request) until some leader answers.

It sets role weights now and then, and it marks gone (MARK_AGENT_GONE: "this agent
instance has failed and is never coming back") the identities a host no longer goes
by, as an operator or a machine-replacement automation would: the one a host had before
a reboot that wiped its work dir, and any unreachable or recovered agent whose address
is now registered under another id (an agent that never heard its id registers anew;
Mesos keeps the old identity, and its tasks unreachable, until registry GC weeks later).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from agora.core.master import commands as cmd
from agora.core.master import events as ev

if TYPE_CHECKING:
    from agora.testing.sim.world import Simulation

CALL_TIMEOUT_S = 10.0
SWEEP_S = 20.0  # how often the operator looks for replaced agents

Request = Callable[[str], ev.MasterEvent]  # builds the call for a request id


class SimOperator:
    name = "operator"

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.leader: int | None = None
        self._requests = 0
        self._waiting: dict[str, Request] = {}  # request id -> the call it made
        self._marking: set[str] = set()  # agents being marked gone
        self.answers: list[tuple[ev.MasterEvent, cmd.Respond]] = []

    def start(self) -> None:
        self.sim.after(SWEEP_S, self._sweep)

    def leader_detected(self, epoch: int) -> None:
        self.leader = epoch

    def _sweep(self) -> None:
        """Read the agents of the master it follows (GET_AGENTS) and mark gone the ones
        replaced at their address."""
        leader = self.sim.leader
        if leader is not None and leader.epoch == self.leader:
            core = leader.core
            registered = {(a.info.hostname, a.info.port): a.id for a in core.agents.values()}
            silent = {i: e.info for i, e in core.unreachable_agents.items()}
            silent.update(core.recovered_agents)
            for agent_id, info in sorted(silent.items()):
                replaced = registered.get((info.hostname, info.port), agent_id) != agent_id
                if replaced and agent_id not in self._marking:
                    self.mark_gone(agent_id)
        self.sim.after(SWEEP_S, self._sweep)

    # ---------------------------------------------------------------- the calls

    def set_weight(self, role: str, weight: float) -> None:
        self._call(lambda rid: ev.UpdateWeights(request_id=rid, weights={role: weight}))

    def mark_gone(self, agent_id: str) -> None:
        self._marking.add(agent_id)
        self._call(lambda rid: ev.MarkAgentGone(request_id=rid, agent_id=agent_id))

    # ---------------------------------------------------------------- plumbing

    def _call(self, request: Request) -> None:
        if self.leader is None:
            self.leader = self.sim.current_epoch()
        self._requests += 1
        request_id = f"operator-r{self._requests}"
        self._waiting[request_id] = request
        self.sim.framework_to_master(self, request(request_id))
        self.sim.after(CALL_TIMEOUT_S, lambda: self._timed_out(request_id))

    def _timed_out(self, request_id: str) -> None:
        request = self._waiting.pop(request_id, None)
        if request is not None:
            self._call(request)  # no answer: that master died, or never was; ask again

    def responded(self, response: cmd.Respond) -> None:
        request = self._waiting.pop(response.request_id, None)
        if request is not None:
            call = request(response.request_id)
            self.answers.append((call, response))
            if isinstance(call, ev.MarkAgentGone):
                self._marking.discard(call.agent_id)
