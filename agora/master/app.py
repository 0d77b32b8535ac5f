"""The master's aiohttp application and its process entry point.

Routes follow libprocess (reference §0.1): the master is the default process, so
`/state` is `/master/state`; `/api/v1/<anything>` other than scheduler and agent is the
operator API (pymesos posts to `/api/v1/operator`); `.json` aliases and a trailing `/`
are accepted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from agora.core.master.info import MasterInfo
from agora.master import endpoints, operator_calls
from agora.master.agent_server import FrontDoor
from agora.master.candidate import Candidate
from agora.master.registry.memory_store import MemoryStore
from agora.master.registry.sqlite_store import SqliteStore
from agora.master.registry.store import Store
from agora.master.scheduler_api import SERVICE_KEY, scheduler
from agora.master.service import MasterConfig, MasterService, NotLeading
from agora.runtime.gc_tuning import tune_for_service
from agora.runtime.limits import listen_backlog, raise_open_file_limit
from agora.wire import agent_channel
from agora.zookeeper.url import parse_zk_url

log = logging.getLogger("agora.master")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_READ_VIEWS: dict[str, Handler] = {
    "state": endpoints.state,
    "frameworks": endpoints.frameworks,
    "slaves": endpoints.agents,
    "agents": endpoints.agents,
    "tasks": endpoints.tasks,
    "roles": endpoints.roles,
    "flags": endpoints.flags,
    "health": endpoints.health,
    "redirect": endpoints.redirect,
}


def _paths(*paths: str) -> list[str]:
    out = []
    for path in paths:
        out.extend([path, path + "/"])
    return out


# Answered by every master, leading or not.
_ANY_MASTER = frozenset(
    p
    for path in (
        "/health",
        "/master/health",
        "/version",
        "/master/redirect",
        "/redirect",
        "/metrics/snapshot",
    )
    for p in (path, path + "/", path + ".json")
)


@web.middleware
async def leader_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A master that does not lead sends callers to the leader (307, same path and
    query) or answers 503 while no leader is known, as Mesos masters do."""
    service = request.app[SERVICE_KEY]
    if service.leading or request.path in _ANY_MASTER:
        try:
            return await handler(request)
        except NotLeading as error:  # the leadership ended while the call was served
            return not_leading(request, error.leader)
    return not_leading(request, service.leader)


def not_leading(request: web.Request, leader: MasterInfo | None) -> web.Response:
    if leader is None:
        return web.Response(status=503, text="no master is currently leading")
    location = f"http://{leader.hostname}:{leader.port}{request.path_qs}"
    return web.Response(status=307, headers={"Location": location})


def build_app(service: MasterService) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[leader_only])
    app[SERVICE_KEY] = service
    add = app.router.add_route
    for path in _paths("/api/v1/scheduler", "/master/api/v1/scheduler"):
        add("*", path, scheduler)
    add("GET", agent_channel.PATH, agent_upgrade_too_late)
    for path in _paths("/api/v1", "/master/api/v1"):
        add("*", path, endpoints.operator)
    add("*", r"/api/v1/{tail:(?!scheduler|agent).*}", endpoints.operator)
    add("*", r"/master/api/v1/{tail:(?!scheduler).*}", endpoints.operator)
    for name, handler in _READ_VIEWS.items():
        for path in _paths(f"/master/{name}", f"/{name}", f"/master/{name}.json", f"/{name}.json"):
            add("GET", path, handler)
    for path in _paths("/version", "/metrics/snapshot"):
        add("GET", path, endpoints.version if "version" in path else endpoints.metrics)
    for path in _paths("/master/maintenance/schedule", "/maintenance/schedule"):
        add("GET", path, operator_calls.maintenance_schedule)
        add("POST", path, operator_calls.maintenance_schedule)
    for path in _paths("/master/maintenance/status", "/maintenance/status"):
        add("GET", path, operator_calls.maintenance_status_endpoint)
    return app


async def agent_upgrade_too_late(request: web.Request) -> web.Response:
    """The agent channel is served by FrontDoor, which sees only a connection's first
    request (agent_server.py): an upgrade on a kept-alive connection lands here."""
    return web.Response(
        status=400, text="open the agent channel as the first request of a new connection"
    )


def write_ready_file(path: str, address: str) -> None:
    """Atomically announce where this process serves (test harnesses wait on it)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps({"address": address, "pid": os.getpid()}))
    temporary.replace(target)


def open_store(config: MasterConfig) -> Store:
    """The registry store a single master uses (`--registry`)."""
    if config.registry == "in_memory":
        return MemoryStore()
    if config.registry == "sqlite":
        return SqliteStore(Path(config.work_dir or ".") / "registry.sqlite")
    raise ValueError(f"unknown registry {config.registry!r} (sqlite or in_memory)")


async def serve(config: MasterConfig, ready_file: str | None = None) -> None:
    """Run the master until SIGTERM or SIGINT."""
    tune_for_service()
    raise_open_file_limit()
    service = MasterService(config)
    runner = web.AppRunner(build_app(service), handler_cancellation=True, access_log=None)
    await runner.setup()
    http = runner.server
    assert http is not None
    loop = asyncio.get_running_loop()
    # Agent-channel upgrades are served by FrontDoor itself, the rest by aiohttp.
    server = await loop.create_server(
        lambda: FrontDoor(service, http),
        config.ip,
        config.port,
        reuse_address=True,
        backlog=listen_backlog(),
    )
    port = server.sockets[0].getsockname()[1] if server.sockets else config.port
    service.start(port)
    address = f"{config.ip}:{port}"
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    candidate: asyncio.Task[None] | None = None
    failures: list[str] = []
    if config.zk is None:
        # A single master that loses its registry cannot go on (Mesos exits too).
        def fail(why: str) -> None:
            failures.append(why)
            stop.set()

        service.on_abdicate.append(fail)
        await service.lead(open_store(config))
    else:
        url = parse_zk_url(config.zk)
        elections = Candidate(service, url, config.zk_session_timeout_s)
        candidate = loop.create_task(elections.run(stop))
        candidate.add_done_callback(lambda _: stop.set())
    log.info("agora master %s listening on %s", service.master_id, address)
    if ready_file:
        write_ready_file(ready_file, address)
    try:
        await stop.wait()
    finally:
        log.info("agora master stopping")
        server.close()
        if candidate is not None:
            await _finish(candidate)
        await service.stop()
        await runner.cleanup()
    if failures:
        raise SystemExit(f"agora master: {failures[0]}")


async def _finish(candidate: asyncio.Task[None]) -> None:
    """Let the candidacy withdraw (so a standby leads at once), and say why it ended."""
    try:
        await asyncio.wait_for(candidate, 10.0)
    except TimeoutError:
        log.warning("the ZooKeeper candidacy did not end in time")
    except Exception:
        log.exception("the ZooKeeper candidacy failed")
