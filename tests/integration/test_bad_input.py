"""Bad input against a real master and agent: each gets a 4xx naming the problem or the
Mesos task state and reason, and both keep serving correctly afterwards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.agent_kit import Framework, agent_process, command_task
from tests.integration.master_process import master_process, request


def _ended(fw: Framework, task_id: str) -> dict[str, Any] | None:
    updates = [u for u in fw.updates if u["task_id"]["value"] == task_id]
    return updates[-1] if updates and updates[-1]["state"] != "TASK_STAGING" else None


def test_bad_launches_get_task_states_with_reasons(tmp_path: Path) -> None:
    with (
        master_process(tmp_path) as master,
        agent_process(tmp_path, master, "--resources", "cpus:2;mem:1024") as _agent,
    ):
        fw = Framework(master)
        other = Framework(master)
        other.call({"type": "SUPPRESS"})  # offers go to `fw` only
        offer = fw.offer()
        # Tasks bigger than the offer, absurd values, a duplicate id, no command at all.
        fw.launch(
            offer,
            [
                command_task("big", "true", cpus=64),
                {
                    **command_task("neg", "true"),
                    "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": -1}}],
                },
                command_task("dup", "true"),
                command_task("dup", "true"),
                {"task_id": {"value": "nocmd"}, "resources": []},
            ],
        )
        for task_id in ("big", "neg", "nocmd"):
            status = fw.until(lambda t=task_id: _ended(fw, t), what=f"{task_id}'s state")
            assert status["state"] == "TASK_ERROR", status
            assert status["reason"] == "REASON_TASK_INVALID" and status["message"]
        dup_states = fw.until(lambda: fw.states("dup") or None, what="dup's state")
        assert "TASK_ERROR" in dup_states
        # Another framework's offer: its tasks are lost, the offer stays the owner's.
        second = fw.offer() if fw.offers else None
        offer_id = (second or offer)["id"]
        other.call(
            {
                "type": "ACCEPT",
                "accept": {
                    "offer_ids": [offer_id],
                    "operations": [
                        {
                            "type": "LAUNCH",
                            "launch": {
                                "task_infos": [
                                    {
                                        **command_task("stolen", "true"),
                                        "name": "s",
                                        "agent_id": offer["agent_id"],
                                    }
                                ]
                            },
                        }
                    ],
                },
            }
        )
        status = other.until(lambda: _ended(other, "stolen"), what="stolen's state")
        assert status["state"] == "TASK_LOST" and status["reason"] == "REASON_INVALID_OFFERS"
        # The framework still gets offers and runs tasks.
        fw.launch(fw.offer(), [command_task("fine", "true")])
        fw.until(lambda: "TASK_FINISHED" in fw.states("fine"), what="a good task to finish")
        fw.close()
        other.close()


def test_hundreds_of_malformed_requests_leave_the_agent_serving(tmp_path: Path) -> None:
    with (
        master_process(tmp_path) as master,
        agent_process(tmp_path, master, "--resources", "cpus:2;mem:1024") as agent,
    ):
        bodies: list[Any] = [
            "",
            "{",
            "null",
            "[]",
            '"x"',
            {"type": 7},
            {"type": "SUBSCRIBE"},
            {"type": "UPDATE", "framework_id": {"value": "f"}, "executor_id": {"value": "e"}},
            {
                "type": "UPDATE",
                "framework_id": {"value": "f"},
                "executor_id": {"value": "e"},
                "update": {
                    "status": {"task_id": {"value": "t"}, "state": "TASK_NOPE", "uuid": "!!"}
                },
            },
            {"type": "MESSAGE", "framework_id": "f", "executor_id": None},
        ]
        gets = [
            "/files/read?path=/etc/passwd&offset=0",
            "/files/browse?path=../../",
            "/files/read?path=x&offset=abc",
            "/files/download?path=/",
            "/files/browse",
            "/state?jsonp=a(b)",
            "/nope",
        ]
        for i in range(300):
            if i % 3 == 0:
                path = gets[i % len(gets)]
                status, _, data = request(agent, "GET", path)
                assert status in (200, 400, 403, 404), (path, status, data)
                if "passwd" in path or "../" in path or "path=/&" in path or "a(b)" in path:
                    assert status in (400, 403, 404), (path, status, data)
            else:
                body = bodies[i % len(bodies)]
                status, _, data = request(agent, "POST", "/api/v1/executor", body)
                assert 400 <= status < 500, (body, status, data)
        state = json.loads(request(agent, "GET", "/state")[2])
        assert state["id"]
        fw = Framework(master)
        fw.launch(fw.offer(), [command_task("after", "echo ok")])
        fw.until(lambda: "TASK_FINISHED" in fw.states("after"), what="a task after the barrage")
        fw.close()
