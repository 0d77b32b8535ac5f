"""Shared sums of resources (SumCache) and what the master derives from them: the same
values as plain sums, one object per distinct sum of the same parts, and the scalar
and role queries that are now memoised on a value."""

from __future__ import annotations

from agora.core.master.info import AgentInfo
from agora.core.master.model import Agent, Executor, Task
from agora.core.resource_text import parse_resources
from agora.core.resources import EMPTY, Resources, SumCache
from agora.core.task_states import TaskState

TASK = parse_resources("cpus:0.1;mem:5").allocate("eng")
OTHER = parse_resources("cpus:1;mem:64;ports:[31000-31001]").allocate("eng")


def test_a_sum_is_the_plain_sum_and_one_object_per_distinct_parts():
    sums = SumCache()
    twice = sums.total((TASK, TASK))
    assert twice == TASK + TASK
    assert sums.total((TASK, TASK)) is twice
    assert sums.total((TASK, OTHER)) == TASK + OTHER
    assert sums.total((TASK, OTHER)) is not sums.total((OTHER, TASK))
    assert sums.total((TASK,)) is TASK


def test_equal_but_distinct_parts_are_summed_anew():
    sums = SumCache()
    copy = parse_resources("cpus:0.1;mem:5").allocate("eng")
    first = sums.total((TASK, TASK))
    again = sums.total((copy, copy))
    assert again == first and again is not first


def test_a_full_cache_starts_afresh():
    sums = SumCache(limit=2)
    first = sums.total((TASK, TASK))
    sums.total((TASK, OTHER))
    sums.total((OTHER, TASK))  # over the limit: forgets the first two
    assert sums.total((TASK, TASK)) == first
    assert sums.total((TASK, TASK)) is not first


def _agent() -> Agent:
    agent = Agent(
        id="a1",
        info=AgentInfo(hostname="h", resources=parse_resources("cpus:8;mem:1024")),
        capabilities=frozenset(),
        version="",
        connection_id="c1",
        registered_time=0.0,
    )
    for n, (framework_id, resources, state) in enumerate(
        [
            ("f1", TASK, TaskState.RUNNING),
            ("f1", TASK, TaskState.RUNNING),
            ("f1", OTHER, TaskState.FINISHED),  # terminal: holds nothing
            ("f2", OTHER, TaskState.STAGING),
        ]
    ):
        task = Task(f"t{n}", framework_id, agent.id, "t", "eng", resources, state=state)
        agent.tasks.setdefault(framework_id, {})[task.task_id] = task
    executor = Executor("e1", "f2", agent.id, "eng", TASK)
    agent.executors["f2"] = {"e1": executor}
    return agent


def test_used_by_with_shared_sums_is_used_by_without():
    agent = _agent()
    sums = SumCache()
    plain = agent.used_by()
    shared = agent.used_by(sums)
    assert plain == shared == {"f1": TASK + TASK, "f2": OTHER + TASK}
    assert agent.used_by(sums)["f1"] is shared["f1"]


def test_role_and_scalar_queries_survive_memoisation():
    mixed = Resources.sum([TASK, parse_resources("mem:1").allocate("ops")])
    assert TASK.allocation_role() == "eng" and TASK.allocation_role() == "eng"
    assert mixed.allocation_role() is None and mixed.allocation_role() is None
    assert EMPTY.allocation_role() is None
    assert TASK.scalar_quantities().as_dict() == {"cpus": 100, "mem": 5000}
    disk = parse_resources("disk(eng):100")
    assert disk.scalar_quantities(unreserved_only=True).as_dict() == {}
    assert disk.scalar_quantities().as_dict() == {"disk": 100_000}
