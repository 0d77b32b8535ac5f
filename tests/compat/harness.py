"""Helpers for driving the unmodified pymesos drivers from pytest.

pymesos runs every callback on its own IO thread, and that thread also sends implicit
acknowledgements over the driver's single HTTP connection, which has no lock. So the tests
make their driver calls from the callbacks (as pymesos frameworks do), and the test thread only
waits: `Recorder.wait_for` blocks on a condition variable until a predicate over the recorded
events holds, and fails with the IO thread's traceback if the driver died.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pymesos  # type: ignore[import-untyped]

WAIT_S = 30.0


@dataclass
class Event:
    kind: str
    args: tuple[Any, ...]
    at: float = field(default_factory=time.monotonic)


class DriverDiedError(AssertionError):
    pass


class IoThreadFailures:
    """Stands in for `_thread` inside `pymesos.process`: records why an IO thread died.

    Unpatched, pymesos calls `_thread.interrupt_main()` after a failure in its IO thread and
    re-raises the error in whatever the main thread is doing (its own SIGINT handler)."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.changed = threading.Condition()

    def interrupt_main(self) -> None:
        from pymesos import process

        exc_info = process._exc_info
        process._exc_info = None
        text = "".join(traceback.format_exception(*exc_info)) if exc_info else "(unknown)"
        with self.changed:
            self.failures.append(text)
            self.changed.notify_all()

    def check(self) -> None:
        if self.failures:
            raise DriverDiedError("a pymesos IO thread died:\n" + "\n".join(self.failures))


def task_state(event: Event) -> tuple[str, str] | None:
    """(task id, state) of a statusUpdate event."""
    if event.kind != "statusUpdate":
        return None
    status = event.args[0]
    return status["task_id"]["value"], status["state"]


class Recorder(pymesos.Scheduler):  # type: ignore[misc]
    """A pymesos Scheduler that records every callback and runs test-supplied hooks.

    Hooks run on the driver's IO thread: `on_offers(driver, offers)` (default: decline all
    offers with a 1 s filter), `on_update(driver, status)`, `on_message(driver, executor_id,
    agent_id, data)`. An exception in a hook is recorded and fails the next wait."""

    def __init__(self, failures: IoThreadFailures) -> None:
        self.events: list[Event] = []
        self.cond = failures.changed
        self.failures = failures
        self.hook_errors: list[str] = []
        self.on_registered: Callable[[Any], None] | None = None
        self.on_offers: Callable[[Any, list[Any]], None] | None = None
        self.on_update: Callable[[Any, Any], None] | None = None
        self.on_message: Callable[[Any, Any, Any, str], None] | None = None

    # ---------------------------------------------------------------- recording
    def _record(self, kind: str, *args: Any) -> None:
        with self.cond:
            self.events.append(Event(kind, args))
            self.cond.notify_all()

    def _hook(self, hook: Callable[..., None] | None, *args: Any) -> None:
        if hook is None:
            return
        try:
            hook(*args)
        except Exception:
            with self.cond:
                self.hook_errors.append(traceback.format_exc())
                self.cond.notify_all()

    def of_kind(self, kind: str) -> list[Event]:
        with self.cond:
            return [e for e in self.events if e.kind == kind]

    def wait_for(
        self, predicate: Callable[[list[Event]], Any], what: str, timeout_s: float = WAIT_S
    ) -> Any:
        """Block until `predicate(events)` is truthy; return its value."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                self.failures.check()
                if self.hook_errors:
                    raise AssertionError("a scheduler hook failed:\n" + "\n".join(self.hook_errors))
                value = predicate(list(self.events))
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    kinds = [(e.kind, task_state(e)) for e in self.events]
                    raise AssertionError(
                        f"timed out after {timeout_s:g}s waiting for {what}; events so far: {kinds}"
                    )
                self.cond.wait(left)

    def wait_for_kind(self, kind: str, timeout_s: float = WAIT_S) -> Event:
        events: list[Event] = self.wait_for(
            lambda evs: [e for e in evs if e.kind == kind], f"{kind}", timeout_s
        )
        return events[0]

    def wait_for_state(self, task_id: str, state: str, timeout_s: float = WAIT_S) -> Any:
        """Wait for a status update of `task_id` in `state`; returns the status."""
        found = self.wait_for(
            lambda evs: [e for e in evs if task_state(e) == (task_id, state)],
            f"{state} of task {task_id}",
            timeout_s,
        )
        return found[0].args[0]

    def states(self, task_id: str) -> list[str]:
        with self.cond:
            return [
                s for e in self.events if (t := task_state(e)) and (s := t[1]) and t[0] == task_id
            ]

    # ---------------------------------------------------------------- callbacks
    def registered(self, driver: Any, framework_id: Any, master_info: Any) -> None:
        self._record("registered", framework_id, master_info)
        self._hook(self.on_registered, driver)

    def reregistered(self, driver: Any, master_info: Any) -> None:
        self._record("reregistered", master_info)

    def disconnected(self, driver: Any) -> None:
        self._record("disconnected")

    def resourceOffers(self, driver: Any, offers: list[Any]) -> None:
        self._record("resourceOffers", offers)
        if self.on_offers is None:
            self._hook(decline_all, driver, offers)
        else:
            self._hook(self.on_offers, driver, offers)

    def offerRescinded(self, driver: Any, offer_id: Any) -> None:
        self._record("offerRescinded", offer_id)

    def statusUpdate(self, driver: Any, status: Any) -> None:
        self._record("statusUpdate", status)
        self._hook(self.on_update, driver, status)

    def frameworkMessage(self, driver: Any, executor_id: Any, agent_id: Any, data: str) -> None:
        self._record("frameworkMessage", executor_id, agent_id, data)
        self._hook(self.on_message, driver, executor_id, agent_id, data)

    def slaveLost(self, driver: Any, agent_id: Any) -> None:
        self._record("slaveLost", agent_id)

    def executorLost(self, driver: Any, executor_id: Any, agent_id: Any, status: Any) -> None:
        self._record("executorLost", executor_id, agent_id, status)

    def error(self, driver: Any, message: str) -> None:
        self._record("error", message)


def decline_all(driver: Any, offers: list[Any], refuse_seconds: float = 1.0) -> None:
    driver.declineOffer([o["id"] for o in offers], {"refuse_seconds": refuse_seconds})


def scalar(offer: Any, name: str) -> float:
    return float(sum(r["scalar"]["value"] for r in offer["resources"] if r["name"] == name))


def resources(cpus: float, mem: float) -> list[dict[str, Any]]:
    return [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}},
    ]


def command_task(task_id: str, offer: Any, command: str) -> dict[str, Any]:
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": {"value": offer["agent_id"]["value"]},
        "resources": resources(0.1, 32),
        "command": {"shell": True, "value": command},
    }


class LaunchOnce:
    """Offer hook: launch `tasks(offer)` on the first offer that fits, decline the others."""

    def __init__(self, make_tasks: Callable[[Any], list[dict[str, Any]]]) -> None:
        self.make_tasks = make_tasks
        self.launched = threading.Event()

    def __call__(self, driver: Any, offers: list[Any]) -> None:
        rest = list(offers)
        if not self.launched.is_set():
            for offer in offers:
                if scalar(offer, "cpus") >= 0.3 and scalar(offer, "mem") >= 96:
                    driver.launchTasks([offer["id"]], self.make_tasks(offer))
                    self.launched.set()
                    rest.remove(offer)
                    break
        if rest:
            decline_all(driver, rest)
