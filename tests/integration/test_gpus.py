"""GPUs end to end: an agent with (declared) NVIDIA devices offers `gpus` only to
frameworks with the GPU_RESOURCES capability, and each GPU task sees exactly the device
the gpu/nvidia isolator gave it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agora.core.agent.resources import with_gpus
from agora.core.errors import InvalidResource
from tests.integration.agent_kit import Framework, agent_process, command_task
from tests.integration.master_process import get_json, master_process, wait_for

GPU_ISOLATION = "posix/cpu,posix/mem,gpu/nvidia"
SHOW = 'echo "NV=$NVIDIA_VISIBLE_DEVICES CUDA=$CUDA_VISIBLE_DEVICES"; sleep 60'


def scalar(offer: dict[str, Any], name: str) -> float:
    return sum(float(r["scalar"]["value"]) for r in offer["resources"] if r["name"] == name)


def gpu_task(task_id: str, gpus: float) -> dict[str, Any]:
    task = command_task(task_id, SHOW)
    task["resources"].append({"name": "gpus", "type": "SCALAR", "scalar": {"value": gpus}})
    return task


def decline(fw: Framework, offer: dict[str, Any]) -> None:
    fw.call(
        {
            "type": "DECLINE",
            "decline": {"offer_ids": [offer["id"]], "filters": {"refuse_seconds": 0.1}},
        }
    )


def offer_from(fw: Framework, agent_id: str) -> dict[str, Any]:
    """The next offer of `agent_id`, declining the others' briefly."""
    while True:
        offer = fw.offer()
        if offer["agent_id"]["value"] == agent_id:
            return offer
        decline(fw, offer)


def stdout_of(agent: str, task_id: str) -> str:
    state = get_json(agent, "/state")
    for framework in state["frameworks"]:
        for executor in framework["executors"]:
            if executor["id"] == task_id:
                path = Path(executor["directory"]) / "stdout"
                return path.read_text() if path.exists() else ""
    return ""


def test_gpu_agents_are_offered_to_gpu_frameworks_only(tmp_path: Path) -> None:
    with (
        master_process(tmp_path) as master,
        agent_process(
            tmp_path,
            master,
            "--resources",
            "cpus:2;mem:1024;gpus:2",
            "--gpu-devices",
            "0,1",
            "--isolation",
            GPU_ISOLATION,
            name="gpu",
        ) as gpu_agent,
        agent_process(
            tmp_path,
            master,
            "--resources",
            "cpus:1;mem:512",
            "--isolation",
            "posix/cpu,posix/mem",
            name="plain",
        ) as plain_agent,
    ):
        ids = wait_for(
            lambda: (
                {
                    s["pid"].split("@")[1]: s["id"]
                    for s in get_json(master, "/master/state")["slaves"]
                }
                if len(get_json(master, "/master/state")["slaves"]) == 2
                else None
            ),
            20.0,
            "both agents to register",
        )
        gpu_id, plain_id = ids[gpu_agent], ids[plain_agent]
        assert get_json(gpu_agent, "/state")["resources"]["gpus"] == 2

        plain_fw = Framework(master)
        seen: list[str] = []
        for _ in range(3):  # three allocation rounds: the GPU agent is never among them
            offer = plain_fw.offer()
            seen.append(offer["agent_id"]["value"])
            decline(plain_fw, offer)
        assert set(seen) == {plain_id}
        plain_fw.close()

        fw = Framework(master, ("GPU_RESOURCES",))
        offer = offer_from(fw, gpu_id)
        assert scalar(offer, "gpus") == 2
        fw.launch(offer, [gpu_task("g1", 1)])
        fw.until(lambda: "TASK_RUNNING" in fw.states("g1"), what="g1 running")
        offer = offer_from(fw, gpu_id)
        assert scalar(offer, "gpus") == 1
        fw.launch(offer, [gpu_task("g2", 1)])
        fw.until(lambda: "TASK_RUNNING" in fw.states("g2"), what="g2 running")
        lines = {
            t: wait_for(lambda t=t: stdout_of(gpu_agent, t).strip(), 10.0, f"{t} output")
            for t in ("g1", "g2")
        }
        assert lines == {"g1": "NV=0 CUDA=0", "g2": "NV=1 CUDA=1"}

        fw.call({"type": "KILL", "kill": {"task_id": {"value": "g1"}}})
        fw.until(lambda: "TASK_KILLED" in fw.states("g1"), what="g1 killed")
        offer = offer_from(fw, gpu_id)  # the freed device comes back
        assert scalar(offer, "gpus") == 1
        fw.launch(offer, [gpu_task("half", 0.5)])
        fw.until(lambda: "TASK_FAILED" in fw.states("half"), what="a fractional GPU refused")
        assert "whole" in fw.last("half")["message"]
        fw.close()


def test_gpus_resource_follows_the_devices() -> None:
    assert with_gpus("cpus:1", (0, 1)) == "cpus:1;gpus:2"
    assert with_gpus(None, (3,)) == "gpus:1"
    assert with_gpus("cpus:1", ()) == "cpus:1"
    assert with_gpus("cpus:1;gpus:2", (0, 1)) == "cpus:1;gpus:2"
    with pytest.raises(InvalidResource, match="does not match the 2 GPU devices"):
        with_gpus("gpus:1", (0, 1))
    with pytest.raises(InvalidResource, match="whole"):
        with_gpus("gpus:1.5", (0, 1))


def test_agent_refuses_mismatched_gpus(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agora",
            "agent",
            "--port",
            "0",
            "--work-dir",
            str(tmp_path / "work"),
            "--isolation",
            GPU_ISOLATION,
            "--gpu-devices",
            "0,1",
            "--resources",
            "cpus:1;gpus:3",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "PATH": "/usr/bin:/bin"},  # no nvidia-smi either way
    )
    assert result.returncode == 2
    assert "--resources" in result.stderr and "gpus:3 does not match" in result.stderr
