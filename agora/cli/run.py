"""`agora run -- CMD...`: run one command as a task, like mesos-execute.

A short-lived framework waits for a fitting offer, launches one command task, shows its state
changes on stderr, streams the task's stdout and stderr live from the agent's sandbox
(`/state` for the sandbox directory, `/files/read` for the bytes), and exits with the task's
exit status. Ctrl-C kills the task and exits 130. The framework is torn down at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console

from agora.cli.common import CliError, master_option, number
from agora.client import (
    TERMINAL_STATES,
    Event,
    FrameworkInfo,
    SchedulerDriver,
    SchedulerError,
    StateClient,
    UnreachableError,
    agent_address,
    command_info,
    new_task_id,
    offer_attributes,
    offer_role,
    offer_scalars,
    scalar_resources,
    task_info,
)
from agora.client.http import HttpError

POLL_S = 0.2
_STATE_STYLE = {
    "TASK_FINISHED": "green",
    "TASK_RUNNING": "cyan",
    "TASK_FAILED": "red",
    "TASK_KILLED": "yellow",
    "TASK_ERROR": "red",
    "TASK_LOST": "red",
}


def exit_status(state: str, message: str) -> int:
    """The exit status `agora run` returns for a terminal task state and its message."""
    if state == "TASK_FINISHED":
        return 0
    text = message or ""
    if match := re.search(r"exited with status (\d+)", text):
        return int(match.group(1)) or 1
    if match := re.search(r"signal (\d+)", text):
        return 128 + int(match.group(1))
    if match := re.search(r"(?:terminated|killed) (?:with|by) signal ([A-Za-z ]+)", text):
        name = match.group(1).strip().lower()
        for sig in signal.Signals:
            described = signal.strsignal(sig) or ""
            if name in (described.lower(), sig.name.lower(), sig.name[3:].lower()):
                return 128 + sig.value
    if state == "TASK_KILLED":
        return 128 + signal.SIGKILL.value
    return 1


@dataclass(slots=True)
class Request:
    command: list[str]
    shell: bool
    cpus: float
    mem: float
    disk: float
    name: str
    role: str
    environment: dict[str, str]
    constraints: dict[str, str]
    offer_timeout_s: float


@dataclass(slots=True)
class RunState:
    task_id: str
    agent_id: str | None = None
    agent_address: str | None = None
    launched: asyncio.Event = field(default_factory=asyncio.Event)
    terminal: asyncio.Event = field(default_factory=asyncio.Event)
    final_state: str = ""
    final_message: str = ""


def fits(offer: Mapping[str, Any], request: Request) -> bool:
    have = offer_scalars(offer)
    for name, want in (("cpus", request.cpus), ("mem", request.mem), ("disk", request.disk)):
        if want > 0 and have.get(name, 0.0) + 1e-9 < want:
            return False
    attributes = offer_attributes(offer)
    return all(attributes.get(k) == v for k, v in request.constraints.items())


def _offer_agent_address(offer: Mapping[str, Any]) -> str | None:
    address = offer.get("url", {}).get("address", {})
    host = address.get("ip") or address.get("hostname")
    port = address.get("port")
    return f"{host}:{port}" if host and port else None


class Runner:
    def __init__(self, master: str, request: Request, console: Console) -> None:
        self.request = request
        self.console = console
        self.state = RunState(task_id=new_task_id("run"))
        self.driver = SchedulerDriver(
            master,
            FrameworkInfo(name=f"agora run {request.name}", roles=[request.role]),
            subscribe_timeout_s=15.0,
        )
        self.driver.on("OFFERS", self._offers)
        self.driver.on("UPDATE", self._update)
        self.driver.on("ERROR", lambda e: self.console.print(f"[red]master error:[/] {e.message}"))

    async def _offers(self, event: Event) -> None:
        if self.state.launched.is_set():
            await self.driver.decline([o["id"]["value"] for o in event.offers], refuse_seconds=60)
            return
        chosen = next((o for o in event.offers if fits(o, self.request)), None)
        others = [o["id"]["value"] for o in event.offers if o is not chosen]
        if chosen is not None:
            request = self.request
            command = (
                request.command[0]
                if request.shell and len(request.command) == 1
                else shlex.join(request.command)
                if request.shell
                else request.command
            )
            task = task_info(
                self.state.task_id,
                chosen["agent_id"]["value"],
                name=request.name,
                command=command_info(command, shell=request.shell, environment=request.environment),
                resources=scalar_resources(
                    request.cpus, request.mem, request.disk, role=offer_role(chosen)
                ),
            )
            self.state.agent_id = chosen["agent_id"]["value"]
            self.state.agent_address = _offer_agent_address(chosen)
            self.state.launched.set()
            self.console.print(
                f"launching [bold]{self.state.task_id}[/] on {chosen.get('hostname', '?')} "
                f"(cpus {number(request.cpus)}, mem {number(request.mem)})"
            )
            await self.driver.launch([chosen["id"]["value"]], [task])
        if others:
            await self.driver.decline(others)

    def _update(self, event: Event) -> None:
        status = event.status
        if status.get("task_id", {}).get("value") != self.state.task_id:
            return
        state = str(status.get("state", ""))
        message = str(status.get("message", ""))
        style = _STATE_STYLE.get(state, "white")
        suffix = f": {message}" if message else ""
        self.console.print(f"[{style}]{state}[/]{suffix}")
        if status.get("agent_id"):
            self.state.agent_id = status["agent_id"]["value"]
        if state in TERMINAL_STATES:
            self.state.final_state = state
            self.state.final_message = message
            self.state.terminal.set()

    async def run(self) -> int:
        interrupted = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, interrupted.set)
        try:
            try:
                framework_id = await self.driver.wait_subscribed(15.0)
            except (TimeoutError, SchedulerError, HttpError) as error:
                raise CliError(
                    f"cannot subscribe to master {self.driver.master}: {error}"
                ) from None
            self.console.print(f"subscribed as framework {framework_id}")
            code = await self._until_done(interrupted)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.driver.stop(teardown=self.driver.connected)
        return code

    async def _until_done(self, interrupted: asyncio.Event) -> int:
        state = self.state
        async with StateClient(timeout_s=5.0) as files:
            output = asyncio.create_task(self._stream_output(files))
            try:
                launched = await _first(state.launched, interrupted, self.request.offer_timeout_s)
                if not launched:
                    if interrupted.is_set():
                        return 130
                    raise CliError(
                        f"no offer fits cpus {number(self.request.cpus)}, mem "
                        f"{number(self.request.mem)}, disk {number(self.request.disk)} within "
                        f"{self.request.offer_timeout_s:g}s"
                    )
                await _first(state.terminal, interrupted, None)
                if interrupted.is_set() and not state.terminal.is_set():
                    self.console.print("interrupted: killing the task")
                    with contextlib.suppress(Exception):
                        await self.driver.kill(state.task_id, state.agent_id)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(state.terminal.wait(), 15.0)
                    return 130
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(output), 5.0)
                return exit_status(state.final_state, state.final_message)
            finally:
                output.cancel()
                await asyncio.gather(output, return_exceptions=True)

    async def _sandbox(self, files: StateClient) -> str | None:
        """The task's sandbox directory, from the agent's /state."""
        if self.state.agent_address is None and self.state.agent_id is not None:
            master_state = await files.master_state(self.driver.master)
            for agent in master_state.get("slaves", []):
                if agent.get("id") == self.state.agent_id:
                    self.state.agent_address = agent_address(agent)
        address = self.state.agent_address
        if address is None:
            return None
        state = await files.agent_state(address)
        framework_id = self.driver.framework_id
        for framework in state.get("frameworks", []) + state.get("completed_frameworks", []):
            if framework.get("id") != framework_id:
                continue
            for executor in framework.get("executors", []) + framework.get(
                "completed_executors", []
            ):
                tasks = [
                    *executor.get("tasks", []),
                    *executor.get("queued_tasks", []),
                    *executor.get("completed_tasks", []),
                ]
                mine = executor.get("id") == self.state.task_id or any(
                    t.get("id") == self.state.task_id for t in tasks
                )
                if mine and executor.get("directory"):
                    return str(executor["directory"])
        return None

    async def _stream_output(self, files: StateClient) -> None:
        """Copy the sandbox's stdout and stderr to ours until the task is over."""
        await self.state.launched.wait()
        directory: str | None = None
        while directory is None:
            with contextlib.suppress(UnreachableError):
                directory = await self._sandbox(files)
            if directory is None:
                if self.state.terminal.is_set():
                    # One more look: the agent may list it under completed executors by now.
                    await asyncio.sleep(POLL_S)
                    with contextlib.suppress(UnreachableError):
                        directory = await self._sandbox(files)
                    if directory is None:
                        return
                else:
                    await asyncio.sleep(POLL_S)
        offsets = {"stdout": 0, "stderr": 0}
        sinks = {"stdout": sys.stdout, "stderr": sys.stderr}
        address = self.state.agent_address
        assert address is not None
        while True:
            done = self.state.terminal.is_set()
            got = False
            for name, sink in sinks.items():
                while True:
                    try:
                        _, data = await files.read_file(
                            address, f"{directory}/{name}", offsets[name]
                        )
                    except UnreachableError:
                        break
                    if not data:
                        break
                    got = True
                    offsets[name] += len(data.encode())
                    sink.write(data)
                    sink.flush()
            if done and not got:
                return
            if not got:
                await asyncio.sleep(POLL_S)


async def _first(event: asyncio.Event, interrupted: asyncio.Event, timeout_s: float | None) -> bool:
    """Wait for `event` or `interrupted`; True if `event` happened."""
    waits = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(interrupted.wait())}
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when="FIRST_COMPLETED")
    finally:
        for wait in waits:
            wait.cancel()
    return event.is_set()


def _pairs(values: Sequence[str], what: str, separator: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, rest = value.partition(separator)
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not {what}")
        out[key] = rest
    return out


@click.command(context_settings={"ignore_unknown_options": False})
@master_option
@click.option("--cpus", default=0.1, show_default=True, type=float, help="CPUs for the task")
@click.option("--mem", default=32.0, show_default=True, type=float, help="memory (MB)")
@click.option("--disk", default=0.0, show_default=True, type=float, help="disk (MB)")
@click.option("--name", default=None, help="task name (default: the command's first word)")
@click.option("--role", default="*", show_default=True, help="role to run under")
@click.option("--env", "env", multiple=True, metavar="K=V", help="environment variable")
@click.option(
    "--constraint", "constraints", multiple=True, metavar="ATTR:VALUE", help="agent attribute"
)
@click.option("--shell/--no-shell", default=True, show_default=True, help="run via /bin/sh -c")
@click.option(
    "--offer-timeout-s", default=60.0, show_default=True, help="give up without a fitting offer"
)
@click.argument("command", nargs=-1, required=True)
def run(
    master: str,
    cpus: float,
    mem: float,
    disk: float,
    name: str | None,
    role: str,
    env: tuple[str, ...],
    constraints: tuple[str, ...],
    shell: bool,
    offer_timeout_s: float,
    command: tuple[str, ...],
) -> None:
    """Run CMD as a task on the cluster and exit with its exit status."""
    request = Request(
        command=list(command),
        shell=shell,
        cpus=cpus,
        mem=mem,
        disk=disk,
        name=name or command[0].split()[0].rsplit("/", 1)[-1],
        role=role,
        environment=_pairs(env, "K=V", "="),
        constraints=_pairs(constraints, "ATTR:VALUE", ":"),
        offer_timeout_s=offer_timeout_s,
    )
    console = Console(stderr=True, highlight=False)
    try:
        runner = Runner(master, request, console)
    except ValueError as error:
        raise CliError(str(error)) from None
    code = asyncio.run(_run_checked(runner))
    raise SystemExit(code)


async def _run_checked(runner: Runner) -> int:
    """Refuse quickly, with one line, when the master cannot be reached at all."""
    try:
        async with StateClient(timeout_s=5.0) as client:
            await client.get_json(runner.driver.master, "/version")
    except UnreachableError as error:
        await runner.driver.stop()
        raise CliError(f"master {runner.driver.master}: {error}") from None
    return await runner.run()
