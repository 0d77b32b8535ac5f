"""Agent recovery with real processes: an agent SIGKILLed with tasks running and started
again on the same work dir (the same port) picks them up, re-registers under its old id,
reports what happened while it was away, and cleans up what it may not keep."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agora.testing.cluster import LocalCluster, get_json
from tests.integration.agent_kit import Framework, command_task, kill_supervisor
from tests.integration.conftest import MASTER_ARGS
from tests.integration.master_process import wait_for

EXECUTOR = Path(__file__).with_name("recovery_executor.py")


@contextmanager
def recovery_cluster(tmp_path: Path, *agent_args: str) -> Iterator[LocalCluster]:
    """One agent whose boot id is read from `<tmp_path>/boot_id` (a test can fake a
    reboot by changing it)."""
    (tmp_path / "boot_id").write_text("boot-1\n")
    cluster = LocalCluster(
        agents=1,
        work_dir=tmp_path / "cluster",
        agent_resources=["cpus:2;mem:1024;disk:1024"],
        agent_args=["--boot-id-file", str(tmp_path / "boot_id"), *agent_args],
        master_args=MASTER_ARGS,
        start_timeout_s=60.0,
    )
    with cluster:
        try:
            yield cluster
        except BaseException:
            print(f"\n===== cluster logs =====\n{cluster.logs(120)}")
            raise


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def born(pid: int) -> str:
    """The process's start time (field 22 of /proc/<pid>/stat): same pid, same process."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


def sandbox(agent: str, framework_id: str, executor_id: str) -> Path:
    state = get_json(agent, "/state")
    for framework in state["frameworks"]:
        if framework["id"] == framework_id:
            for executor in framework["executors"]:
                if executor["id"] == executor_id:
                    return Path(executor["directory"])
    raise AssertionError(f"no executor {executor_id} on {agent}")


def pid_in(directory: Path, name: str = "pid") -> int:
    text = wait_for(lambda: (directory / name).exists() and (directory / name).read_text(), 10.0)
    return int(text)


def agent_work_dir(cluster: LocalCluster) -> Path:
    return cluster.agent_processes[0].work_dir


def master_tasks(cluster: LocalCluster) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for f in cluster.master_state()["frameworks"] for t in f["tasks"]}


def kill(fw: Framework, task_id: str) -> None:
    fw.call({"type": "KILL", "kill": {"task_id": {"value": task_id}}})


def test_a_killed_agent_recovers_checkpointed_tasks_and_cleans_up_the_rest(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    wait_gate = f"echo $$ > pid; while [ ! -e {gate} ]; do sleep 0.05; done"
    with recovery_cluster(tmp_path) as cluster:
        agent = cluster.agents[0]
        fw = Framework(cluster.master_address, checkpoint=True)
        fw.held.add("held")
        fw.launch(
            fw.offer(),
            [
                command_task("long", "echo $$ > pid; exec sleep 300"),
                command_task("finishes", f"{wait_gate}; exit 0"),
                command_task("fails", f"{wait_gate}; exit 3"),
                command_task("held", "sleep 300"),
            ],
        )
        fw.until(
            lambda: (
                all(fw.states(t)[-1:] == ["TASK_RUNNING"] for t in ("long", "finishes", "fails"))
                and fw.states("held")
            ),
            what="the tasks to run",
        )
        plain = Framework(cluster.master_address)  # does not checkpoint
        plain.launch(plain.offer(), [command_task("plain", "echo $$ > pid; exec sleep 300")])
        plain.until(lambda: "TASK_RUNNING" in plain.states("plain"), what="plain to run")
        pids = {t: pid_in(sandbox(agent, fw.id, t)) for t in ("long", "finishes", "fails")}
        plain_pid = pid_in(sandbox(agent, plain.id, "plain"))
        long_born = born(pids["long"])
        agent_id = cluster.registered_agents()[agent]
        held_copies = len(fw.states("held"))

        cluster.kill_agent(0)
        gate.touch()  # two tasks end while the agent is away
        wait_for(lambda: not alive(pids["finishes"]) and not alive(pids["fails"]), 10.0)
        plain.until(lambda: "TASK_LOST" in plain.states("plain"), what="the master's TASK_LOST")
        assert cluster.restart_agent(0) == agent

        assert cluster.registered_agents()[agent] == agent_id
        assert alive(pids["long"]) and born(pids["long"]) == long_born  # untouched
        fw.until(
            lambda: (
                fw.states("finishes")[-1:] == ["TASK_FINISHED"]
                and fw.states("fails")[-1:] == ["TASK_FAILED"]
            ),
            what="the exits that happened while the agent was away",
        )
        assert fw.last("fails")["message"] == "Command exited with status 3"
        assert fw.last("finishes")["message"] == "Command exited with status 0"

        # The update the framework never acknowledged comes again, the same update.
        fw.until(lambda: len(fw.states("held")) > held_copies, what="the update again")
        held = [u for u in fw.updates if u["task_id"]["value"] == "held"]
        assert {u["state"] for u in held} == {"TASK_STARTING"}
        assert len({u["uuid"] for u in held}) == 1
        fw.release("held")
        fw.until(lambda: "TASK_RUNNING" in fw.states("held"), what="the next update")

        tasks = master_tasks(cluster)
        assert tasks["long"]["state"] == "TASK_RUNNING" and tasks["long"]["slave_id"] == agent_id

        # The framework that does not checkpoint: its task is killed, not reported again.
        wait_for(lambda: not alive(plain_pid), 10.0, "the leftover task to be killed")
        plain.launch(plain.offer(), [command_task("after", "sleep 300")])
        plain.until(lambda: "TASK_RUNNING" in plain.states("after"), what="a later task")
        assert plain.states("plain") == ["TASK_STARTING", "TASK_RUNNING", "TASK_LOST"]
        assert plain.last("plain")["reason"] == "REASON_AGENT_DISCONNECTED"
        frameworks = agent_work_dir(cluster) / "meta" / "slaves" / agent_id / "frameworks"
        assert (frameworks / fw.id / "framework.info").exists()
        assert not (frameworks / plain.id).exists()

        # A recovered task is still this agent's to kill.
        kill(fw, "long")
        fw.until(lambda: "TASK_KILLED" in fw.states("long"), what="the kill")
        wait_for(lambda: not alive(pids["long"]), 10.0, "the recovered task to die")
        fw.close()
        plain.close()


def custom_task(task_id: str, *arguments: str) -> dict[str, Any]:
    task = command_task(task_id, "")
    del task["command"]
    task["executor"] = {
        "executor_id": {"value": f"ex-{task_id}"},
        "command": {
            "shell": False,
            "value": sys.executable,
            "arguments": [sys.executable, str(EXECUTOR), *arguments],
        },
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}},
        ],
    }
    return task


def test_custom_executors_resubscribe_after_a_restart_or_are_destroyed(tmp_path: Path) -> None:
    with recovery_cluster(tmp_path) as cluster:
        agent = cluster.agents[0]
        fw = Framework(cluster.master_address, checkpoint=True)
        fw.launch(fw.offer(), [custom_task("stays"), custom_task("leaves", "--give-up")])
        fw.until(
            lambda: all("TASK_RUNNING" in fw.states(t) for t in ("stays", "leaves")),
            timeout_s=60.0,
            what="both executors' tasks to run",
        )
        stays = pid_in(sandbox(agent, fw.id, "ex-stays"), "executor.pid")
        leaves = pid_in(sandbox(agent, fw.id, "ex-leaves"), "executor.pid")
        stays_born = born(stays)

        cluster.kill_agent(0)
        cluster.restart_agent(0)

        fw.until(lambda: fw.states("leaves")[-1:] == ["TASK_FAILED"], what="the timeout")
        assert fw.last("leaves")["reason"] == "REASON_EXECUTOR_REREGISTRATION_TIMEOUT"
        assert fw.last("leaves")["source"] == "SOURCE_AGENT"
        wait_for(lambda: not alive(leaves), 10.0, "the executor that did not come back to die")
        assert alive(stays) and born(stays) == stays_born
        assert fw.states("stays") == ["TASK_RUNNING"]
        # It re-subscribed: the kill reaches it and its answer comes back.
        kill(fw, "stays")
        fw.until(lambda: "TASK_KILLED" in fw.states("stays"), what="the re-subscribed executor")
        fw.close()


def test_after_a_reboot_the_agent_keeps_its_id_and_its_tasks_are_gone(tmp_path: Path) -> None:
    with recovery_cluster(tmp_path) as cluster:
        agent = cluster.agents[0]
        fw = Framework(cluster.master_address, ("PARTITION_AWARE",), checkpoint=True)
        fw.held.add("unacked")
        fw.launch(
            fw.offer(),
            [
                command_task("long", "echo $$ > pid; exec sleep 300"),
                command_task("unacked", "sleep 300"),
            ],
        )
        fw.until(
            lambda: "TASK_RUNNING" in fw.states("long") and fw.states("unacked"),
            what="the tasks to run",
        )
        pid = pid_in(sandbox(agent, fw.id, "long"))
        agent_id = cluster.registered_agents()[agent]

        # A reboot: the agent, the supervisor and every task are gone; a new boot id.
        cluster.kill_agent(0)
        kill_supervisor(agent_work_dir(cluster))
        wait_for(lambda: not alive(pid), 10.0, "the task to die with the supervisor")
        (tmp_path / "boot_id").write_text("boot-2\n")
        cluster.restart_agent(0)

        assert cluster.registered_agents()[agent] == agent_id
        fw.until(lambda: "TASK_GONE" in fw.states("long"), what="the task to be gone")
        assert fw.last("long")["reason"] == "REASON_EXECUTOR_TERMINATED"
        assert "rebooted" in fw.last("long")["message"]
        fw.until(lambda: len(fw.states("unacked")) > 1, what="the unacknowledged update again")
        fw.release("unacked")
        fw.until(lambda: "TASK_GONE" in fw.states("unacked"), what="its terminal update")
        meta = agent_work_dir(cluster) / "meta"
        assert (meta / "boot_id").read_text().strip() == "boot-2"
        fw.close()


def test_a_corrupt_checkpoint_stops_the_agent_and_recover_cleanup_wipes_it(
    tmp_path: Path,
) -> None:
    import subprocess

    with recovery_cluster(tmp_path) as cluster:
        fw = Framework(cluster.master_address, checkpoint=True)
        fw.launch(fw.offer(), [command_task("long", "echo $$ > pid; exec sleep 300")])
        fw.until(lambda: "TASK_RUNNING" in fw.states("long"), what="the task to run")
        pid = pid_in(sandbox(cluster.agents[0], fw.id, "long"))
        agent_id = cluster.registered_agents()[cluster.agents[0]]
        cluster.kill_agent(0)
        work = agent_work_dir(cluster)
        info = work / "meta" / "slaves" / agent_id / "frameworks" / fw.id / "framework.info"
        info.write_text('{"user": ')

        def agent(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "agora", "agent", "--port", "0"]
            command += ["--master", cluster.master_address, "--work-dir", str(work), *args]
            return subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)

        refused = agent()
        assert refused.returncode != 0
        assert "framework.info" in refused.stderr and "--no-strict" in refused.stderr
        assert alive(pid)  # a refused recovery touches nothing

        cleaned = agent("--recover", "cleanup")
        assert cleaned.returncode == 0, cleaned.stderr
        wait_for(lambda: not alive(pid), 10.0, "the leftover task to be killed")
        assert not (work / "meta" / "slaves").exists()
        assert cluster.restart_agent(0) == cluster.agents[0]
        assert cluster.registered_agents()[cluster.agents[0]] != agent_id  # a new agent
        fw.close()


def test_an_agent_that_cannot_checkpoint_stops_rather_than_go_on(tmp_path: Path) -> None:
    with recovery_cluster(tmp_path) as cluster:
        agent_id = cluster.registered_agents()[cluster.agents[0]]
        frameworks = agent_work_dir(cluster) / "meta" / "slaves" / agent_id / "frameworks"
        frameworks.write_text("not a directory")  # every framework record will fail
        fw = Framework(cluster.master_address, checkpoint=True)
        fw.launch(fw.offer(), [command_task("t1", "sleep 300")])
        process = cluster.agent_processes[0]
        wait_for(lambda: not process.alive, 30.0, "the agent to stop")
        log = process.log_path.read_text()
        assert "checkpointing failed, stopping without killing tasks" in log
        # Nothing that depended on the record happened: no launch, no TASK_STARTING.
        assert master_tasks(cluster)["t1"]["state"] == "TASK_STAGING"
        fw.close()
