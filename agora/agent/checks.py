"""Runs the agent core's health check and check probes (commands.RunCheck) and reports
each as events.CheckResult: HTTP GET on 127.0.0.1 (redirects followed), a TCP connect
to 127.0.0.1, or a command run as a subprocess of the agent, inside the container's
mount namespace when it has one (Mesos runs COMMAND checks in the task's mount
namespace). Every probe is bounded by its timeout; a timed-out command is killed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Mapping
from typing import Protocol

import aiohttp

from agora.agent.containerizer.model import Container
from agora.core.agent import commands as cmd
from agora.core.agent import events as ev
from agora.core.agent.health import CheckSpec, Probe
from agora.core.agent.launch import InvalidCommandError, command_argv

log = logging.getLogger("agora.agent.checks")

HOST = "127.0.0.1"


class Containers(Protocol):
    """What the runner needs of the containerizer: its live containers by id."""

    containers: dict[str, Container]


class CheckRunner:
    def __init__(
        self, containerizer: Containers, report: Callable[[ev.AgentEvent], object]
    ) -> None:
        self.containerizer = containerizer
        self.report = report
        self._running: set[asyncio.Task[None]] = set()

    def run(self, command: cmd.RunCheck) -> None:
        task = asyncio.get_running_loop().create_task(self._run(command))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def stop(self) -> None:
        for task in list(self._running):
            task.cancel()
        for task in list(self._running):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self, command: cmd.RunCheck) -> None:
        spec = command.spec
        try:
            probe = await asyncio.wait_for(self._probe(command), spec.timeout_s)
        except TimeoutError:
            probe = Probe(error=f"{spec.type} probe timed out after {spec.timeout_s:g} s")
        except (OSError, ValueError, aiohttp.ClientError) as error:
            probe = Probe(error=f"{spec.type} probe failed: {error}")
        self.report(
            ev.CheckResult(
                command.check_id, command.framework_id, command.task_id, spec.kind, probe
            )
        )

    async def _probe(self, command: cmd.RunCheck) -> Probe:
        spec = command.spec
        if spec.type == "HTTP":
            return await http_probe(spec)
        if spec.type == "TCP":
            return await tcp_probe(spec.port)
        return await self._command_probe(command)

    async def _command_probe(self, command: cmd.RunCheck) -> Probe:
        try:
            argv = command_argv(command.spec.command, f"{command.spec.what}.command")
        except InvalidCommandError as error:
            return Probe(error=str(error))
        program, args = argv.executable, argv.argv[1:]
        leader = self._mount_namespace_leader(command.container_id)
        if leader is not None:  # its own root and working directory, as the task sees them
            program, args = (
                "nsenter",
                (
                    f"--target={leader}",
                    "--mount",
                    "--root",
                    "--wd",
                    "--",
                    argv.executable,
                    *args,
                ),
            )
        return Probe(exit_code=await run_command(program, args, command.env, command.sandbox))

    def _mount_namespace_leader(self, container_id: str) -> int | None:
        container = self.containerizer.containers.get(container_id)
        if container is None or "mount" not in container.launch_info.namespaces:
            return None
        return container.leader_pid


async def run_command(program: str, args: tuple[str, ...], env: Mapping[str, str], cwd: str) -> int:
    """Run to completion in its own session; its process group dies if we are cancelled
    (the probe's timeout). A signal death reads as 128 + signal, as a shell reports it."""
    process = await asyncio.create_subprocess_exec(
        program,
        *args,
        env=dict(env),
        cwd=cwd if os.path.isdir(cwd) else None,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        code = await process.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.shield(process.wait())
        raise
    return code if code >= 0 else 128 - code


async def http_probe(spec: CheckSpec) -> Probe:
    url = f"{spec.scheme}://{HOST}:{spec.port}{spec.path}"
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, allow_redirects=True, ssl=False) as response,
    ):
        return Probe(status_code=response.status)


async def tcp_probe(port: int) -> Probe:
    try:
        _, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        return Probe(connected=False)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Probe(connected=True)
