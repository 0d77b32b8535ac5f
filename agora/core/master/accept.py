"""ACCEPT and DECLINE: validate offers, apply operations in order, launch tasks.

Following Mesos (§1.2 of the internals reference): invalid offers turn every task of
the call into TASK_LOST (TASK_DROPPED for PARTITION_AWARE) with REASON_INVALID_OFFERS;
then operations run in order against the remaining resources: RESERVE, UNRESERVE,
CREATE and DESTROY convert them speculatively (later operations see the result), and
LAUNCH / LAUNCH_GROUP consume them. An invalid task becomes TASK_ERROR, a failed
speculative operation is dropped. Unused converted resources return without a
filter, untouched ones as an implicit decline with the call's filter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agora.core.errors import AgoraError, InvalidResource, OperationError
from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.master.core import MasterCore, handles
from agora.core.master.frameworks import accepted_call
from agora.core.master.model import Agent, Executor, Framework, Offer, Task
from agora.core.master.task_validation import (
    ParsedTask,
    TaskInvalid,
    parse_executor,
    parse_task,
    same_executor,
    tagged_resources,
)
from agora.core.operations import (
    Conversion,
    Create,
    Destroy,
    Operation,
    Reserve,
    Unreserve,
    apply_operation,
    conversion,
)
from agora.core.resources import Resources
from agora.core.task_states import Reason, TaskState

Json = Mapping[str, Any]


def _validate_offers(
    master: MasterCore, framework: Framework, offer_ids: Sequence[str]
) -> tuple[list[Offer], str | None]:
    """The framework's valid offers among `offer_ids`, and the first problem, if any."""
    valid: list[Offer] = []
    problem = None if offer_ids else "No offers specified"
    seen: set[str] = set()
    for offer_id in offer_ids:
        offer = master.offers.get(offer_id)
        if offer_id in seen:
            problem = problem or f"Offer {offer_id} appears more than once in the call"
            continue
        seen.add(offer_id)
        if offer is None:
            problem = problem or f"Offer {offer_id} is no longer valid"
        elif offer.framework_id != framework.id:
            problem = problem or f"Offer {offer_id} has invalid framework"
        else:
            valid.append(offer)
    if valid and problem is None:
        if len({o.agent_id for o in valid}) > 1:
            problem = "Aggregated offers must belong to one single agent"
        elif len({o.role for o in valid}) > 1:
            problem = "Aggregated offers must be allocated to the same role"
        else:
            agent = master.agents.get(valid[0].agent_id)
            if agent is None or not agent.connected:
                problem = f"Agent {valid[0].agent_id} is not connected"
    return valid, problem


def _launch_task_ids(operations: Sequence[object]) -> list[str]:
    ids = []
    for op in operations:
        if not isinstance(op, Mapping):
            continue
        if op.get("type") == "LAUNCH":
            tasks = (op.get("launch") or {}).get("task_infos") or []
        elif op.get("type") == "LAUNCH_GROUP":
            tasks = ((op.get("launch_group") or {}).get("task_group") or {}).get("tasks") or []
        else:
            continue
        for task in tasks:
            task_id = task.get("task_id") if isinstance(task, Mapping) else None
            if isinstance(task_id, Mapping) and isinstance(task_id.get("value"), str):
                ids.append(task_id["value"])
    return ids


class _Accept:
    """The running state of one ACCEPT: what is left of the offers, and what changed."""

    def __init__(self, master: MasterCore, framework: Framework, agent: Agent, role: str) -> None:
        self.master = master
        self.framework = framework
        self.agent = agent
        self.role = role
        self.remaining = Resources()
        self.conversions: list[Conversion] = []
        self.executors: dict[str, cmd.ExecutorSpec] = {}  # launched in this call

    def error(self, task_id: str, message: str, reason: Reason = Reason.TASK_INVALID) -> None:
        status = self.master.master_status(task_id, TaskState.ERROR, reason, message, self.agent.id)
        self.master.send_status(self.framework, status)

    # ----------------------------------------------------------- speculative operations

    def speculate(self, op_type: str, body: Json) -> None:
        try:
            operation = self._operation(op_type, body)
            self._authorize(operation)
            converted = apply_operation(self.remaining, operation)
        except (OperationError, InvalidResource, TaskInvalid) as error:
            # Mesos drops a failed operation (it reports OPERATION_ERROR only to
            # frameworks that asked for operation feedback).
            del error
            return
        self.conversions.append(conversion(operation))
        self.remaining = converted

    def _operation(self, op_type: str, body: Json) -> Operation:
        if not isinstance(body, Mapping):
            raise OperationError(f"{op_type}: missing '{op_type.lower()}' body")
        if op_type == "RESERVE":
            source = body.get("source")
            return Reserve(
                tagged_resources(body.get("resources"), self.role, "reserve.resources"),
                None if not source else tagged_resources(source, self.role, "reserve.source"),
            )
        if op_type == "UNRESERVE":
            return Unreserve(
                tagged_resources(body.get("resources"), self.role, "unreserve.resources")
            )
        if op_type == "CREATE":
            return Create(tagged_resources(body.get("volumes"), self.role, "create.volumes"))
        return Destroy(tagged_resources(body.get("volumes"), self.role, "destroy.volumes"))

    def _authorize(self, operation: Operation) -> None:
        principal = self.framework.info.principal
        if isinstance(operation, Reserve):
            for entry in operation.resources:
                top = entry.meta.reservations[-1] if entry.meta.reservations else None
                if top is not None and top.role != self.role:
                    raise OperationError(
                        f"RESERVE: cannot reserve for role {top.role!r}: "
                        f"the offer is for {self.role!r}"
                    )
                if top is not None and top.principal is not None and top.principal != principal:
                    raise OperationError("RESERVE: reservation principal must be the framework's")
        elif isinstance(operation, Create):
            existing = {
                (e.meta.reservation_role, e.meta.disk.persistence_id)  # type: ignore[union-attr]
                for e in self.master.allocator.total(self.agent.id).persistent_volumes()
            }
            for entry in operation.volumes:
                disk = entry.meta.disk
                assert disk is not None
                if (entry.meta.reservation_role, disk.persistence_id) in existing:
                    raise OperationError(
                        f"CREATE: persistence id {disk.persistence_id!r} is in use"
                    )
                if disk.persistence_principal not in (None, principal):
                    raise OperationError("CREATE: volume principal must be the framework's")
        elif isinstance(operation, Destroy):
            in_use = Resources.sum(
                t.resources for t in self.agent.all_tasks() if not t.state.is_terminal
            )
            for entry in operation.volumes:
                if in_use.persistent_volumes().contains(Resources([entry])):
                    raise OperationError("DESTROY: the persistent volume is in use by a task")

    # --------------------------------------------------------------------- launches

    def _check_unique(self, task_id: str) -> None:
        if task_id in self.framework.tasks or task_id in self.framework.unreachable_tasks:
            raise TaskInvalid(f"Task has duplicate ID: {task_id}")

    def _executor_need(self, executor: cmd.ExecutorSpec | None) -> Resources:
        """Resources a new executor needs; a known one must be identical and needs none."""
        if executor is None:
            return Resources()
        known = self.framework.executor(self.agent.id, executor.executor_id)
        existing = self.executors.get(executor.executor_id)
        if known is not None:
            existing = cmd.ExecutorSpec(
                known.executor_id, known.framework_id, known.resources, known.raw
            )
        if existing is not None:
            if not same_executor(existing, executor):
                raise TaskInvalid(
                    f"ExecutorInfo {executor.executor_id!r} is not compatible "
                    "with the existing executor"
                )
            return Resources()
        return executor.resources

    def _consume(self, need: Resources, what: str) -> None:
        if not self.remaining.contains(need):
            raise TaskInvalid(
                f"{what} uses more resources ({need}) than available in the offers "
                f"({self.remaining})"
            )
        self.remaining = self.remaining - need

    def _record(self, parsed: ParsedTask, executor: cmd.ExecutorSpec | None) -> cmd.TaskLaunch:
        if (
            executor is not None
            and self.framework.executor(self.agent.id, executor.executor_id) is None
        ):
            self.executors[executor.executor_id] = executor
            self.master.add_executor(
                self.framework,
                self.agent,
                Executor(
                    executor.executor_id,
                    self.framework.id,
                    self.agent.id,
                    self.role,
                    executor.resources,
                    executor.raw,
                ),
            )
        task = Task(
            task_id=parsed.task_id,
            framework_id=self.framework.id,
            agent_id=self.agent.id,
            name=parsed.name,
            role=self.role,
            resources=parsed.resources,
            executor_id=None if executor is None else executor.executor_id,
            raw=parsed.raw,
        )
        self.master.add_task(self.framework, self.agent, task)
        return cmd.TaskLaunch(
            parsed.task_id, parsed.name, self.agent.id, parsed.resources, executor, parsed.raw
        )

    def launch(self, body: Json) -> None:
        tasks = body.get("task_infos") if isinstance(body, Mapping) else None
        for data in tasks if isinstance(tasks, list) else []:
            task_id = _task_id_of(data)
            try:
                parsed = parse_task(data, self.framework.id, self.agent.id, self.role)
                self._check_unique(parsed.task_id)
                need = parsed.resources + self._executor_need(parsed.executor)
                self._consume(need, f"Task {parsed.task_id}")
            except (TaskInvalid, AgoraError) as error:
                self.error(task_id, str(error))
                continue
            launch = self._record(parsed, parsed.executor)
            self.master.to_agent(self.agent, cmd.RunTask(self.framework.info, launch))

    def launch_group(self, body: Json) -> None:
        body = body if isinstance(body, Mapping) else {}
        group = body.get("task_group")
        tasks = group.get("tasks") if isinstance(group, Mapping) else None
        tasks = tasks if isinstance(tasks, list) else []
        ids = [_task_id_of(t) for t in tasks]
        try:
            if not tasks:
                raise TaskInvalid("The task group must contain at least one task")
            executor = parse_executor(
                body.get("executor"), self.framework.id, self.role, "executor"
            )
            parsed = [
                parse_task(t, self.framework.id, self.agent.id, self.role, in_group=True)
                for t in tasks
            ]
            if len({p.task_id for p in parsed}) != len(parsed):
                raise TaskInvalid("The task group has duplicate task IDs")
            for p in parsed:
                self._check_unique(p.task_id)
            need = Resources.sum(p.resources for p in parsed) + self._executor_need(executor)
            self._consume(need, "Task group")
        except (TaskInvalid, AgoraError) as error:
            for task_id in ids:
                self.error(task_id, str(error), Reason.TASK_GROUP_INVALID)
            return
        launches = tuple(self._record(p, executor) for p in parsed)
        self.master.to_agent(self.agent, cmd.RunTaskGroup(self.framework.info, executor, launches))


def _task_id_of(data: object) -> str:
    if isinstance(data, Mapping):
        task_id = data.get("task_id")
        if isinstance(task_id, Mapping) and isinstance(task_id.get("value"), str):
            return str(task_id["value"])
    return ""


@handles(ev.Accept)
def on_accept(master: MasterCore, event: ev.Accept, now: float) -> None:
    framework = accepted_call(master, event)
    if framework is None:
        return
    offers, problem = _validate_offers(master, framework, event.offer_ids)
    if problem is not None:
        for offer in offers:
            master.remove_offer(offer, rescind=False)
        state = TaskState.DROPPED if framework.partition_aware else TaskState.LOST
        for task_id in _launch_task_ids(event.operations):
            status = master.master_status(task_id, state, Reason.INVALID_OFFERS, problem)
            master.send_status(framework, status)
        return
    agent = master.agents[offers[0].agent_id]
    run = _Accept(master, framework, agent, offers[0].role)
    for offer in offers:
        master.offers.pop(offer.id, None)
        framework.offers.discard(offer.id)
        agent.offers.discard(offer.id)
        run.remaining = run.remaining + offer.resources
    offered = run.remaining
    for op in event.operations:
        op_type = op.get("type") if isinstance(op, Mapping) else None
        if op_type == "LAUNCH":
            run.launch(op.get("launch") or {})
        elif op_type == "LAUNCH_GROUP":
            run.launch_group(op.get("launch_group") or {})
        elif op_type in ("RESERVE", "UNRESERVE", "CREATE", "DESTROY"):
            run.speculate(op_type, op.get(op_type.lower()) or {})
        # Other operation types (GROW_VOLUME, CREATE_DISK...) are not supported: dropped.
    if run.conversions:
        master.allocator.update_allocation(framework.id, agent.id, run.conversions)
        master.to_agent(agent, cmd.CheckpointResources(master.allocator.total(agent.id)))
    leftover = run.remaining
    if leftover:
        converted = leftover.saturating_sub(offered)
        untouched = leftover - converted
        if converted:
            master.allocator.recover_resources(framework.id, agent.id, converted, 0, now)
        if untouched:
            master.allocator.recover_resources(
                framework.id, agent.id, untouched, event.refuse_seconds, now
            )


@handles(ev.Decline)
def on_decline(master: MasterCore, event: ev.Decline, now: float) -> None:
    framework = accepted_call(master, event)
    if framework is None:
        return
    for offer_id in event.offer_ids:
        offer = master.offers.get(offer_id)
        if offer is not None and offer.framework_id == framework.id:
            master.remove_offer(offer, rescind=False, refuse_seconds=event.refuse_seconds)
