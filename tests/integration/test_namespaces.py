"""namespaces/pid through a real agent: the task is pid 1 of its own pid namespace and
sees only its own processes in /proc; killing it still works (pid 1 ignores signals it
has no handler for, so the kill escalates to SIGKILL)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.agent_kit import Framework, agent_process, command_task
from tests.integration.master_process import master_process
from tests.integration.test_run_as_user import finished, sandbox_of

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pid namespaces need root")


def test_a_task_sees_itself_as_pid_1_and_only_its_own_processes(tmp_path: Path) -> None:
    with (
        master_process(tmp_path) as master,
        agent_process(
            tmp_path,
            master,
            "--resources",
            "cpus:2;mem:1024",
            "--isolation",
            "posix/cpu,namespaces/pid",
        ) as agent,
    ):
        fw = Framework(master, ("TASK_KILLING_STATE",))
        fw.launch(
            fw.offer(),
            [
                command_task("pid1", "echo $$; ls /proc | grep -c '^[0-9]'"),
                command_task(
                    "long",
                    "sleep 100",
                    kill_policy={"grace_period": {"nanoseconds": 300_000_000}},
                ),
            ],
        )
        finished(fw, "pid1")
        fw.until(lambda: "TASK_RUNNING" in fw.states("long"), what="long running")
        assert fw.last("pid1")["state"] == "TASK_FINISHED", fw.last("pid1")
        # sh (pid 1), ls and grep: none of the host's (or the other task's) processes.
        assert (sandbox_of(agent, "pid1") / "stdout").read_text().split() == ["1", "3"]
        fw.call({"type": "KILL", "kill": {"task_id": {"value": "long"}}})
        fw.until(lambda: "TASK_KILLED" in fw.states("long"), what="long killed")
