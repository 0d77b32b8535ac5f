"""What the agents of a swarm look like: their AgentInfo and the tasks and frameworks
they report when they re-register.

The defaults are the workload of Mesos's failover benchmark (the performance working
group's "1K agents / 10K tasks ... 40K / 400K" figures): each agent `cpus:20;mem:10240`
with 10 running tasks of `cpus:0.1;mem:5` across 5 frameworks, each task with 10 small
labels, no executors. Agent i is `<prefix>-<i>:5051`, so agents built by different
processes from the same spec never collide, and tasks and frameworks have stable ids
(a test can look them up in the master's state).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from agora.core.master import events as ev
from agora.core.master.info import AgentInfo, FrameworkInfo, framework_info_from_json
from agora.core.resource_text import parse_resources
from agora.core.resources import Resources
from agora.core.roles import DEFAULT_ROLE
from agora.core.task_states import TaskState


@dataclass(frozen=True)
class SwarmSpec:
    tasks_per_agent: int = 10
    frameworks: int = 5
    labels_per_task: int = 10
    agent_resources: str = "cpus:20;mem:10240"
    task_resources: str = "cpus:0.1;mem:5"
    role: str = DEFAULT_ROLE
    hostname_prefix: str = "swarm"
    agent_port: int = 5051

    @cached_property
    def _agent_total(self) -> Resources:
        return parse_resources(self.agent_resources)

    @cached_property
    def _task_total(self) -> Resources:
        return parse_resources(self.task_resources).allocate(self.role)

    @cached_property
    def framework_infos(self) -> tuple[FrameworkInfo, ...]:
        """The frameworks whose tasks the agents run (checkpointing, so that their
        tasks outlive a disconnection, as long-running services' do)."""
        return tuple(
            framework_info_from_json(
                {
                    "user": "swarm",
                    "name": f"{self.hostname_prefix}-framework-{i}",
                    "id": {"value": self.framework_id(i)},
                    "checkpoint": True,
                    "failover_timeout": 7 * 24 * 3600,
                }
            )
            for i in range(self.frameworks)
        )

    def framework_id(self, index: int) -> str:
        return f"{self.hostname_prefix}-framework-{index}"

    def agent_info(self, index: int) -> AgentInfo:
        return AgentInfo(
            hostname=f"{self.hostname_prefix}-{index}",
            port=self.agent_port,
            resources=self._agent_total,
        )

    def task_id(self, agent_index: int, task_index: int) -> str:
        return f"{self.hostname_prefix}-{agent_index}-task-{task_index}"

    def tasks(self, agent_index: int) -> list[ev.AgentTask]:
        """The running tasks agent `agent_index` reports, round-robin over the frameworks."""
        out = []
        for t in range(self.tasks_per_agent):
            framework_id = self.framework_id(t % max(1, self.frameworks))
            task_id = self.task_id(agent_index, t)
            labels = [
                {"key": f"label-{k}", "value": f"value-{k}"} for k in range(self.labels_per_task)
            ]
            raw = {
                "name": task_id,
                "task_id": {"value": task_id},
                "command": {"value": "sleep 1000000"},
                "labels": {"labels": labels},
            }
            out.append(
                ev.AgentTask(
                    framework_id=framework_id,
                    task_id=task_id,
                    name=task_id,
                    state=TaskState.RUNNING,
                    resources=self._task_total,
                    raw=raw,  # every update acknowledged: none is being delivered
                )
            )
        return out
