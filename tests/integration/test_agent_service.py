"""A real agent (and its real supervisor and task processes) driven by a real master."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from tests.integration.agent_kit import (
    Framework,
    agent_process,
    alive,
    command_task,
    supervisor_pid,
)
from tests.integration.master_process import get_json, master_process, request, wait_for


def test_command_tasks_finish_fail_and_get_killed(tmp_path: Path) -> None:
    with (
        master_process(tmp_path) as master,
        agent_process(tmp_path, master, "--resources", "cpus:2;mem:1024") as agent,
    ):
        fw = Framework(master, ("TASK_KILLING_STATE",))
        env_task = command_task("t1", "echo out; echo err >&2; env")
        env_task["command"]["environment"] = {"variables": [{"name": "GREETING", "value": "hi"}]}
        fw.launch(
            fw.offer(),
            [
                env_task,
                command_task("t2", "exit 3"),
                command_task(
                    "t3",
                    "trap '' TERM; sleep 100",
                    kill_policy={"grace_period": {"nanoseconds": 500_000_000}},
                ),
                {
                    **command_task("t4", ""),
                    "command": {"shell": False, "value": "/no/such/binary", "arguments": ["x"]},
                },
            ],
        )
        fw.until(lambda: "TASK_RUNNING" in fw.states("t3"), what="t3 running")
        fw.call({"type": "KILL", "kill": {"task_id": {"value": "t3"}}})
        fw.until(
            lambda: (
                all(fw.states(t) and fw.states(t)[-1] != "TASK_RUNNING" for t in ("t1", "t2", "t4"))
                and "TASK_KILLED" in fw.states("t3")
            ),
            what="all tasks to end",
        )
        assert fw.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
        assert fw.states("t2")[-1] == "TASK_FAILED"
        assert fw.last("t2")["message"] == "Command exited with status 3"
        assert fw.states("t3")[-2:] == ["TASK_KILLING", "TASK_KILLED"]
        assert fw.last("t3")["message"] == "Command terminated with signal SIGKILL"
        assert fw.last("t4")["state"] == "TASK_FAILED"
        assert "/no/such/binary" in fw.last("t4")["message"]
        for status in fw.updates:
            assert status["source"] == "SOURCE_EXECUTOR" and "uuid" in status

        state = get_json(agent, "/state")
        assert state["pid"] == f"slave(1)@{agent}" and state["resources"]["cpus"] == 2
        runs = [
            e
            for f in state["frameworks"] + state["completed_frameworks"]
            for e in f["executors"] + f["completed_executors"]
            if e["id"] == "t1"
        ]
        sandbox = Path(runs[0]["directory"])
        agent_id = state["id"]
        assert str(sandbox).startswith(
            f"{tmp_path}/agent-work/slaves/{agent_id}/frameworks/{fw.id}/executors/t1/runs/"
        )
        assert (sandbox / "stdout").read_text().startswith("out\n")
        assert (sandbox / "stderr").read_text() == "err\n"
        env = dict(
            line.split("=", 1)
            for line in (sandbox / "stdout").read_text().splitlines()[1:]
            if "=" in line
        )
        assert env["MESOS_SANDBOX"] == str(sandbox) == env["MESOS_DIRECTORY"]
        assert env["MESOS_TASK_ID"] == "t1" and env["MESOS_EXECUTOR_ID"] == "t1"
        assert env["MESOS_FRAMEWORK_ID"] == fw.id and env["MESOS_AGENT_ID"] == agent_id
        assert env["GREETING"] == "hi" and env["PATH"]

        # files API: virtual and real paths, confined to the sandbox
        virtual = f"/frameworks/{fw.id}/executors/t1/runs/latest"
        listing = get_json(agent, f"/files/browse?path={virtual}")
        assert {Path(e["path"]).name for e in listing} >= {"stdout", "stderr"}
        read = get_json(agent, f"/files/read?path={virtual}/stderr&offset=0")
        assert read == {"offset": 0, "data": "err\n"}
        assert get_json(agent, f"/files/read?path={sandbox}/stderr&offset=-1") == {
            "offset": 4,
            "data": "",
        }
        code, headers, body = request(agent, "GET", f"/files/download?path={virtual}/stderr")
        assert code == 200 and body == b"err\n" and "attachment" in headers["Content-Disposition"]
        (sandbox / "escape").symlink_to("/etc")
        for bad in (
            f"{virtual}/../../../../../../../etc/passwd",
            f"{virtual}/escape/passwd",
            "/etc/passwd",
            f"{sandbox}/../../../../../../../../etc/passwd",
        ):
            code, _, body = request(agent, "GET", f"/files/read?path={bad}")
            assert code in (403, 404), (bad, code, body)
        fw.close()


def test_tasks_outlive_a_killed_agent(tmp_path: Path) -> None:
    work = tmp_path / "agent-work"
    with master_process(tmp_path) as master:
        with agent_process(tmp_path, master) as agent:
            fw = Framework(master)
            fw.launch(fw.offer(), [command_task("long", "sleep 300")])
            fw.until(lambda: "TASK_RUNNING" in fw.states("long"), what="the task to run")
            journal = (work / "meta" / "supervisor" / "journal").read_text().splitlines()
            task_pid = next(json.loads(line)["pid"] for line in journal if '"launched"' in line)
            agent_pid = json.loads((tmp_path / "agent.ready").read_text())["pid"]
            os.kill(agent_pid, signal.SIGKILL)
            wait_for(lambda: not alive(agent_pid) or _zombie(agent_pid), 10.0, "the agent to die")
            assert alive(task_pid)
            sup = supervisor_pid(work)
            assert sup is not None and alive(sup)
            del agent
            fw.close()
        # the fixture's cleanup stops the supervisor, which kills the task's group
        wait_for(lambda: not alive(task_pid) or _zombie(task_pid), 10.0, "the task to be killed")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_clean_stop_kills_tasks_and_the_supervisor(tmp_path: Path) -> None:
    work = tmp_path / "agent-work"
    with master_process(tmp_path) as master:
        with agent_process(tmp_path, master):
            fw = Framework(master)
            fw.launch(fw.offer(), [command_task("long", "sleep 300")])
            fw.until(lambda: "TASK_RUNNING" in fw.states("long"), what="the task to run")
            sup = supervisor_pid(work)
            fw.close()
        assert sup is not None
        wait_for(lambda: not alive(sup) or _zombie(sup), 10.0, "the supervisor to exit")


def test_executor_registration_timeout_and_api_errors(tmp_path: Path) -> None:
    with (
        master_process(tmp_path) as master,
        agent_process(tmp_path, master, "--executor-registration-timeout-s", "1") as agent,
    ):
        fw = Framework(master)
        task = command_task("t1", "")
        del task["command"]
        task["executor"] = {
            "executor_id": {"value": "ex1"},
            "command": {"value": "sleep 100"},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}],
        }
        fw.launch(fw.offer(), [task])
        fw.until(lambda: fw.states("t1"), what="the task to fail")
        assert fw.last("t1")["state"] == "TASK_FAILED"
        assert fw.last("t1")["reason"] == "REASON_EXECUTOR_REGISTRATION_TIMEOUT"

        call = {
            "type": "UPDATE",
            "framework_id": {"value": fw.id},
            "executor_id": {"value": "nope"},
        }
        path = "/api/v1/executor"
        assert request(agent, "GET", path)[0] == 405
        assert request(agent, "POST", path, "{}", {"Content-Type": "text/plain"})[0] == 415
        assert request(agent, "POST", path, "{not json")[0] == 400
        assert request(agent, "POST", path, call)[0] == 400
        assert request(agent, "POST", f"/slave(1){path}", {**call, "type": "HEARTBEAT"})[0] == 202
        fw.close()


def test_custom_executor_subscribes_and_updates(tmp_path: Path) -> None:
    import base64
    import http.client
    import uuid

    with (
        master_process(tmp_path) as master,
        agent_process(tmp_path, master) as agent,
    ):
        fw = Framework(master)
        task = command_task("t1", "")
        del task["command"]
        task["executor"] = {
            "executor_id": {"value": "ex1"},
            "command": {"value": "env > env.txt; sleep 100"},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}],
        }
        fw.launch(fw.offer(), [task])
        # This test plays the executor: subscribe on its behalf.
        host, port = agent.split(":")
        ids = {"framework_id": {"value": fw.id}, "executor_id": {"value": "ex1"}}

        def subscribe() -> tuple[int, http.client.HTTPResponse]:
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            body = json.dumps({"type": "SUBSCRIBE", **ids, "subscribe": {}})
            connection.request(
                "POST", "/api/v1/executor", body, {"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            return response.status, response

        update = {"type": "UPDATE", **ids, "update": {"status": {}}}
        assert request(agent, "POST", "/api/v1/executor", update)[0] in (400, 403)
        _, response = wait_for(lambda: (s := subscribe()) and s[0] == 200 and s, 10.0, "sub")
        assert response.getheader("Mesos-Stream-Id") is None
        buffer = b""
        events: list[dict[str, Any]] = []
        while len(events) < 2:
            buffer += response.read1(65536)
            while b"\n" in buffer:
                length, rest = buffer.split(b"\n", 1)
                if len(rest) < int(length):
                    break
                events.append(json.loads(rest[: int(length)]))
                buffer = rest[int(length) :]
        assert [e["type"] for e in events] == ["SUBSCRIBED", "LAUNCH"]
        assert events[0]["subscribed"]["executor_info"]["executor_id"] == {"value": "ex1"}
        assert events[1]["launch"]["task"]["task_id"] == {"value": "t1"}
        for state in ("TASK_RUNNING", "TASK_FINISHED"):
            status_json = {
                "task_id": {"value": "t1"},
                "state": state,
                "source": "SOURCE_EXECUTOR",
                "uuid": base64.b64encode(uuid.uuid4().bytes).decode(),
            }
            call = {"type": "UPDATE", **ids, "update": {"status": status_json}}
            assert request(agent, "POST", "/api/v1/executor", call)[0] == 202
        fw.until(lambda: "TASK_FINISHED" in fw.states("t1"), what="the executor's updates")
        assert fw.states("t1") == ["TASK_RUNNING", "TASK_FINISHED"]
        state = get_json(agent, "/state")
        directory = state["frameworks"][0]["executors"][0]["directory"]
        env_file = Path(directory, "env.txt")

        def written() -> str | None:  # the executor's shell may not have run yet
            text = env_file.read_text() if env_file.exists() else ""
            return text if "MESOS_SLAVE_PID" in text else None

        text = wait_for(written, 10.0, "the executor to write env.txt")
        env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        assert env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"] == "5secs"
        assert env["MESOS_SLAVE_PID"] == f"slave(1)@{agent}" and env["MESOS_CHECKPOINT"] == "0"
        response.close()
        fw.close()


def test_the_executor_api_answers_503_until_the_agent_has_recovered(tmp_path: Path) -> None:
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from agora.agent.http import make_app
    from agora.agent.service import AgentService, ServiceOptions
    from agora.core.agent.model import AgentConfig
    from agora.core.master.info import AgentInfo
    from agora.core.resource_text import parse_resources

    async def main() -> None:
        info = AgentInfo("127.0.0.1", 5051, parse_resources("cpus:1;mem:64"))
        config = AgentConfig(work_dir=str(tmp_path), info=info, ip="127.0.0.1", port=5051)
        service = AgentService(config, ServiceOptions(master="127.0.0.1:9"))
        call = {"type": "SUBSCRIBE", "framework_id": {"value": "f"}, "executor_id": {"value": "e"}}
        async with TestClient(TestServer(make_app(service))) as client:
            response = await client.post("/api/v1/executor", json=call)
            assert response.status == 503 and "recovery" in await response.text()
            response = await client.post("/api/v1/executor", json={**call, "type": "HEARTBEAT"})
            assert response.status == 202
            service.recovered = True
            response = await client.post("/api/v1/executor", json=call)
            assert response.status == 400 and "Unknown framework f" in await response.text()

    asyncio.run(main())
