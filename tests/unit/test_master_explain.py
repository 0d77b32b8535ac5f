"""The master's "why is my task pending" answer, per agent."""

from __future__ import annotations

import random

from agora.core.allocator.explain import Verdict
from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master.core import MasterCore
from agora.core.master.info import AgentInfo, MasterInfo
from agora.core.resource_text import parse_resources


def test_explain_covers_offers_disconnection_and_filters() -> None:
    master = MasterCore(MasterInfo(id="m"), rng=random.Random(1))
    for i in range(3):
        info = AgentInfo(hostname=f"h{i}", resources=parse_resources("cpus:2;mem:1024"))
        master.handle(ev.RegisterAgent(connection_id=f"c{i}", info=info), 0.0)
    out = master.handle(
        ev.Subscribe(request_id="r", framework_info={"user": "u", "name": "f"}), 0.0
    )
    opened = next(c for c in out if isinstance(c, cmd.OpenStream))
    offers = [
        o
        for c in master.handle(ev.Tick(), 0.0)
        if isinstance(c, cmd.SendToFramework) and isinstance(c.event, cmd.Offers)
        for o in c.event.offers
    ]
    assert len(offers) == 3
    declined, disconnected, held = offers
    master.handle(
        ev.Decline(
            request_id="d",
            framework_id=opened.framework_id,
            stream_id=opened.stream_id,
            offer_ids=(declined.id,),
            refuse_seconds=60,
        ),
        0.5,
    )
    agent = master.agents[disconnected.agent_id]
    master.handle(ev.AgentDisconnected(agent_id=agent.id, connection_id=agent.connection_id), 0.6)
    why = {w.agent_id: w for w in master.explain(opened.framework_id)}
    assert why[declined.agent_id].verdict is Verdict.FILTERED
    assert why[disconnected.agent_id].verdict is Verdict.AGENT_DISCONNECTED
    assert why[held.agent_id].verdict is Verdict.OUTSTANDING_OFFER
    assert held.id in why[held.agent_id].message
