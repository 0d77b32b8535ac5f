"""A simulated operator: calls the operator API of whichever master leads, and calls
again (a new request) until some leader answers.

It sets role weights now and then, and after a host reboots it marks the agent that
host was before the reboot gone (MARK_AGENT_GONE: "this agent instance has failed and is
never coming back"), as an operator or a machine-replacement automation would. Without
that the old identity's tasks stay unreachable until registry GC, weeks later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from agora.core.master import commands as cmd
from agora.core.master import events as ev

if TYPE_CHECKING:
    from agora.testing.sim.world import Simulation

CALL_TIMEOUT_S = 10.0
WEIGHTS = (0.5, 1.0, 2.0, 3.0)

Request = Callable[[str], ev.MasterEvent]  # builds the call for a request id


class SimOperator:
    name = "operator"

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.leader: int | None = None
        self._requests = 0
        self._waiting: dict[str, Request] = {}  # request id -> the call it made
        self.answers: list[tuple[ev.MasterEvent, cmd.Respond]] = []

    def leader_detected(self, epoch: int) -> None:
        self.leader = epoch

    # ---------------------------------------------------------------- the calls

    def set_weight(self, role: str, weight: float) -> None:
        self._call(lambda rid: ev.UpdateWeights(request_id=rid, weights={role: weight}))

    def mark_gone(self, agent_id: str) -> None:
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
            self.answers.append((request(response.request_id), response))
