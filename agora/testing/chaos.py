"""A framework that keeps tasks starting and finishing through faults, and the ground
truth to judge what it was told against (the chaos tests' framework).

`ChaosFramework` runs on `agora.client` (so it follows the leader through ZooKeeper):
checkpointing, PARTITION_AWARE, a long failover timeout. It launches `total` short tasks
(never reusing a task id), at most `in_flight` at a time, records every update it is
given, and reconciles the tasks it has no final word on every `reconcile_s`, as Mesos
advises schedulers to do after failovers.

Each task appends `start <task id> <pid>` to a shared log when it starts and `end <task
id>` when it finishes, so `Truth` knows what really ran. `judge(framework, truth,
killed)` returns every way the framework's view breaks the promises: a task it was never
told the end of, a task id that ran twice, a finished task not reported FINISHED (a lost
update), a task that never ran reported as if it had, an update that went back from a
terminal state.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agora.client import SchedulerDriver
from agora.client.types import (
    TERMINAL_STATES,
    Event,
    FrameworkInfo,
    command_info,
    offer_scalars,
    scalar_resources,
    status_agent_id,
    status_task_id,
    task_info,
)

log = logging.getLogger("agora.chaos")

# What a framework may be told about a task that never started.
NEVER_RAN = {"TASK_LOST", "TASK_DROPPED", "TASK_GONE", "TASK_ERROR", "TASK_KILLED", "TASK_UNKNOWN"}
CPUS, MEM = 0.1, 32.0


@dataclass
class TaskRecord:
    agent_id: str
    states: list[str] = field(default_factory=list)
    uuids: set[str] = field(default_factory=set)

    @property
    def final(self) -> str | None:
        """The last word the framework has: a terminal state, or UNKNOWN (the master
        knows nothing of it although every agent is back)."""
        for state in reversed(self.states):
            if state in TERMINAL_STATES or state == "TASK_UNKNOWN":
                return state
        return None


class ChaosFramework:
    def __init__(
        self,
        master: str,
        log_path: Path,
        total: int = 300,
        in_flight: int = 40,
        sleep_s: tuple[float, float] = (1.0, 4.0),
        reconcile_s: float = 2.0,
    ) -> None:
        self.log_path = log_path
        self.total = total
        self.in_flight = in_flight
        self.sleep_s = sleep_s
        self.reconcile_s = reconcile_s
        self.tasks: dict[str, TaskRecord] = {}
        self.driver = SchedulerDriver(
            master,
            FrameworkInfo(
                name="chaos",
                user="root",
                checkpoint=True,
                failover_timeout_s=3600.0,
                capabilities=["PARTITION_AWARE"],
            ),
            on_event=self._on_event,
            subscribe_timeout_s=10.0,
            call_timeout_s=20.0,
        )
        self.done = asyncio.Event()
        self._next = 0

    # ------------------------------------------------------------------ running

    async def run(self, timeout_s: float) -> None:
        """Until every task has a final word (TimeoutError after `timeout_s`)."""
        self.driver.start()
        reconciler = asyncio.ensure_future(self._reconcile_forever())
        try:
            await asyncio.wait_for(self.done.wait(), timeout_s)
        finally:
            reconciler.cancel()
            await self.driver.stop()

    def count(self, state: str) -> int:
        """Tasks that were told `state` at least once."""
        return sum(1 for record in self.tasks.values() if state in record.states)

    def open_tasks(self) -> list[str]:
        return [t for t, record in self.tasks.items() if record.final is None]

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reconcile_s)
            pending = [(t, self.tasks[t].agent_id) for t in self.open_tasks()]
            if pending and self.driver.connected:
                try:
                    await self.driver.reconcile(pending)
                except Exception as error:  # the next round tries again
                    log.info("reconcile failed: %s", error)

    async def _on_event(self, event: Event) -> None:
        if event.type == "OFFERS":
            await self._on_offers(event.offers)
        elif event.type == "UPDATE":
            self._on_update(event.status)

    def _on_update(self, status: Mapping[str, Any]) -> None:
        record = self.tasks.get(status_task_id(status))
        if record is None:
            return
        uuid = status.get("uuid")
        if uuid is not None:
            if uuid in record.uuids:
                return  # a duplicate delivery of the same update
            record.uuids.add(uuid)
        record.states.append(str(status["state"]))
        agent = status_agent_id(status)
        if agent is not None:
            record.agent_id = agent
        if self._next >= self.total and not self.open_tasks():
            self.done.set()

    async def _on_offers(self, offers: Iterable[Mapping[str, Any]]) -> None:
        for offer in offers:
            room = self.in_flight - len(self.open_tasks())
            scalars = offer_scalars(offer)
            fits = int(min(scalars.get("cpus", 0) / CPUS, scalars.get("mem", 0) / MEM))
            count = max(0, min(room, fits, self.total - self._next))
            offer_id = str(offer["id"]["value"])
            try:
                if count == 0:
                    await self.driver.decline([offer_id], refuse_seconds=1.0)
                    continue
                agent_id = str(offer["agent_id"]["value"])
                infos = [self._task(agent_id) for _ in range(count)]
                await self.driver.launch([offer_id], infos, refuse_seconds=0.2)
            except Exception as error:  # a failover mid-call: the tasks reconcile
                log.info("offer %s not used: %s", offer_id, error)

    def _task(self, agent_id: str) -> dict[str, Any]:
        index = self._next
        self._next += 1
        task_id = f"chaos-{index:04d}"
        self.tasks[task_id] = TaskRecord(agent_id)
        low, high = self.sleep_s
        sleep_s = low + (high - low) * ((index * 7919) % 100) / 100
        log_file = shlex.quote(str(self.log_path))
        script = (
            f"echo start {task_id} $$ >> {log_file}; sleep {sleep_s:.2f}; "
            f"echo end {task_id} >> {log_file}"
        )
        return task_info(
            task_id,
            agent_id,
            command=command_info(script),
            resources=scalar_resources(cpus=CPUS, mem=MEM),
        )


@dataclass
class Truth:
    starts: dict[str, list[int]]  # task id -> pids that started it
    ended: set[str]

    @classmethod
    def read(cls, log_path: Path) -> Truth:
        starts: dict[str, list[int]] = {}
        ended: set[str] = set()
        text = log_path.read_text() if log_path.exists() else ""
        for line in text.splitlines():
            if match := re.fullmatch(r"start (\S+) (\d+)", line):
                starts.setdefault(match[1], []).append(int(match[2]))
            elif match := re.fullmatch(r"end (\S+)", line):
                ended.add(match[1])
        return cls(starts, ended)

    def running(self) -> dict[str, int]:
        """Tasks that started and have not ended: task id -> pid."""
        return {t: pids[-1] for t, pids in self.starts.items() if t not in self.ended}


def judge(framework: ChaosFramework, truth: Truth, killed: set[str]) -> list[str]:
    """Every broken promise (empty when the framework was told the truth)."""
    problems: list[str] = []
    for task_id, pids in truth.starts.items():
        if len(pids) > 1:
            problems.append(f"{task_id} ran {len(pids)} times (pids {pids})")
    for task_id, record in sorted(framework.tasks.items()):
        final = record.final
        seen = [s for i, s in enumerate(record.states) if i == 0 or record.states[i - 1] != s]
        if final is None:
            problems.append(f"{task_id}: never told how it ended (saw {seen})")
            continue
        first_terminal = next((i for i, s in enumerate(seen) if s in TERMINAL_STATES), None)
        if first_terminal is not None and any(
            s != seen[first_terminal] for s in seen[first_terminal + 1 :] if s in TERMINAL_STATES
        ):
            problems.append(f"{task_id}: two different ends {seen}")
        if task_id in truth.ended and final != "TASK_FINISHED":
            problems.append(f"{task_id} finished, but the framework was told {final} ({seen})")
        elif task_id in killed and final != "TASK_FAILED":
            problems.append(f"{task_id} was killed, but the framework was told {final} ({seen})")
        elif task_id not in truth.starts and final not in NEVER_RAN:
            problems.append(f"{task_id} never started, but the framework was told {final}")
        elif task_id in truth.starts and task_id not in truth.ended | killed:
            problems.append(f"{task_id} started and neither ended nor was killed ({seen})")
    return problems
