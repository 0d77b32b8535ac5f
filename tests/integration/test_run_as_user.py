"""Tasks run as CommandInfo.user (Mesos --switch_user): a real master, agent, supervisor
and task process; the launcher drops to the user after setting the container up."""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agent_kit import Framework, agent_process, command_task
from tests.integration.master_process import get_json, master_process

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")

ISOLATION = ("--isolation", "posix/cpu,posix/mem")


def sandbox_of(agent: str, task_id: str) -> Path:
    state = get_json(agent, "/state")
    for framework in state["frameworks"] + state["completed_frameworks"]:
        for executor in framework["executors"] + framework["completed_executors"]:
            if executor["id"] == task_id:
                return Path(executor["directory"])
    raise AssertionError(f"no sandbox for {task_id}")


def as_user(task: dict[str, Any], user: str) -> dict[str, Any]:
    task["command"]["user"] = user
    return task


def finished(fw: Framework, *task_ids: str) -> None:
    fw.until(
        lambda: all(
            fw.states(t) and fw.states(t)[-1] not in ("TASK_STARTING", "TASK_RUNNING")
            for t in task_ids
        ),
        what="the tasks to end",
    )


def test_a_task_runs_as_its_user_and_an_unknown_user_fails_it(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    with (
        master_process(tmp_path) as master,
        agent_process(tmp_path, master, "--resources", "cpus:2;mem:1024", *ISOLATION) as agent,
    ):
        fw = Framework(master)
        fw.launch(
            fw.offer(),
            [
                as_user(command_task("nobody", "id -u; id -g; touch mine"), "nobody"),
                as_user(command_task("ghost", "true"), "no-such-user-here"),
                command_task("root", "id -u"),
            ],
        )
        finished(fw, "nobody", "ghost", "root")
        assert fw.last("nobody")["state"] == "TASK_FINISHED", fw.last("nobody")
        sandbox = sandbox_of(agent, "nobody")
        assert (sandbox / "stdout").read_text().split() == [str(nobody.pw_uid), str(nobody.pw_gid)]
        assert sandbox.stat().st_uid == nobody.pw_uid
        assert (sandbox / "mine").stat().st_uid == nobody.pw_uid
        ghost = fw.last("ghost")
        assert ghost["state"] == "TASK_FAILED"
        assert ghost["reason"] == "REASON_CONTAINER_LAUNCH_FAILED"
        assert "no-such-user-here" in ghost["message"]
        assert (sandbox_of(agent, "root") / "stdout").read_text() == "0\n"


def test_without_switch_user_tasks_run_as_the_agent(tmp_path: Path) -> None:
    with (
        master_process(tmp_path) as master,
        agent_process(
            tmp_path, master, "--resources", "cpus:2;mem:1024", "--no-switch-user", *ISOLATION
        ) as agent,
    ):
        fw = Framework(master)
        fw.launch(fw.offer(), [as_user(command_task("t", "id -u"), "nobody")])
        finished(fw, "t")
        assert fw.last("t")["state"] == "TASK_FINISHED"
        assert (sandbox_of(agent, "t") / "stdout").read_text() == "0\n"
