"""The agent's HTTP server: the executor v1 API, `/state`, `/health`, `/version`,
`/flags`, `/monitor/statistics`, `/containers` and the files API, plus `serve()` that
runs the whole agent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from dataclasses import replace
from typing import Any

from aiohttp import web

from agora.agent import files
from agora.agent.service import AgentService, ServiceOptions
from agora.agent.views import state_view, usage_entries
from agora.core.agent import commands as cmd
from agora.core.agent import events as ev
from agora.core.agent.model import AgentConfig
from agora.runtime.gc_tuning import tune_for_service
from agora.runtime.http import check_post_json, json_response
from agora.wire.mesos_json import WireError, decode_bytes, id_value, status_from_json

log = logging.getLogger("agora.agent")

SERVICE_KEY = web.AppKey("service", AgentService)


def _service(request: web.Request) -> AgentService:
    return request.app[SERVICE_KEY]


# ------------------------------------------------------------------ executor API


def _reply(commands: list[cmd.AgentCommand], request_id: str) -> web.Response | None:
    for command in commands:
        if isinstance(command, cmd.Reply) and command.request_id == request_id:
            return web.Response(status=command.status, text=command.message)
    return None


async def executor_api(request: web.Request) -> web.StreamResponse:
    refusal = check_post_json(request)
    if refusal is not None:
        return refusal
    try:
        call = json.loads(await request.read())
    except ValueError as error:
        return web.Response(status=400, text=f"Failed to parse body into JSON: {error}")
    if not isinstance(call, dict):
        return web.Response(status=400, text="Expecting a JSON object")
    kind = call.get("type")
    try:
        framework_id = id_value(call.get("framework_id"), "framework_id")
        executor_id = id_value(call.get("executor_id"), "executor_id")
    except WireError as error:
        return web.Response(status=400, text=str(error))
    service = _service(request)
    rid = service.next_request_id()
    if kind == "HEARTBEAT":
        return web.Response(status=202)
    if not service.recovered:
        return web.Response(status=503, text="Agent has not finished recovery")
    if kind == "SUBSCRIBE":
        return await _subscribe(request, service, rid, framework_id, executor_id, call)
    try:
        event: ev.AgentEvent
        if kind == "UPDATE":
            update = call.get("update")
            if not isinstance(update, dict):
                raise WireError("Expecting 'update' to be present")
            status = status_from_json(update.get("status"), "update.status")
            event = ev.ExecutorUpdate(rid, framework_id, executor_id, status)
        elif kind == "MESSAGE":
            message = call.get("message")
            if not isinstance(message, dict):
                raise WireError("Expecting 'message' to be present")
            data = decode_bytes(message.get("data"), "message.data")
            event = ev.ExecutorMessage(rid, framework_id, executor_id, data)
        elif kind == "UNKNOWN":
            return web.Response(status=501, text="Unknown call type")
        else:
            raise WireError(f"'type' must be a known executor call, not {kind!r}")
    except WireError as error:
        return web.Response(status=400, text=str(error))
    response = _reply(service.dispatch(event), rid)
    return response or web.Response(status=202)


async def _subscribe(
    request: web.Request,
    service: AgentService,
    rid: str,
    framework_id: str,
    executor_id: str,
    call: dict[str, Any],
) -> web.StreamResponse:
    body = call.get("subscribe") or {}
    updates = []
    tasks = []
    try:
        for item in body.get("unacknowledged_updates", []) if isinstance(body, dict) else []:
            updates.append(status_from_json(item.get("status"), "unacknowledged_updates.status"))
        for task in body.get("unacknowledged_tasks", []) if isinstance(body, dict) else []:
            if not isinstance(task, dict):
                raise WireError("'unacknowledged_tasks' must hold TaskInfo objects")
            tasks.append(id_value(task.get("task_id"), "unacknowledged_tasks.task_id"))
    except (WireError, AttributeError) as error:
        return web.Response(status=400, text=str(error))
    commands = service.dispatch(
        ev.ExecutorSubscribe(rid, framework_id, executor_id, tuple(updates), tuple(tasks))
    )
    refused = _reply(commands, rid)
    if refused is not None:
        return refused
    stream = service.opened.pop(rid, None)
    if stream is None:
        return web.Response(status=500, text="No stream was opened")
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        await stream.drain_into(response)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        key = (framework_id, executor_id)
        if service.streams.get(key) is stream:
            del service.streams[key]
            service.dispatch(ev.ExecutorStreamClosed(framework_id, executor_id))
    return response


# ------------------------------------------------------------------ views


async def state(request: web.Request) -> web.Response:
    return json_response(request, state_view(_service(request)))


async def statistics(request: web.Request) -> web.Response:
    return json_response(request, await usage_entries(_service(request)))


async def containers(request: web.Request) -> web.Response:
    return json_response(request, await usage_entries(_service(request), with_status=True))


async def health(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def version(request: web.Request) -> web.Response:
    config = _service(request).config
    return json_response(
        request,
        {"version": config.version, "build_date": "", "build_time": 0, "build_user": "agora"},
    )


async def flags(request: web.Request) -> web.Response:
    return json_response(request, {"flags": dict(_service(request).options.flags)})


def _runs(service: AgentService) -> list[Any]:
    return [*service.core.completed_executors, *service.core.runs.values()]


def _resolve(request: web.Request) -> str:
    service = _service(request)
    return files.resolve(request.query.get("path", ""), service.config.work_dir, _runs(service))


async def files_browse(request: web.Request) -> web.Response:
    try:
        target = _resolve(request)
    except files.FilesError as error:
        return files.error_response(error)
    return json_response(request, files.browse(target, request.query["path"]))


async def files_read(request: web.Request) -> web.Response:
    try:
        target = _resolve(request)
        offset = int(request.query.get("offset", "0"))
        length_text = request.query.get("length")
        length = int(length_text) if length_text is not None else None
        return json_response(request, files.read(target, offset, length))
    except files.FilesError as error:
        return files.error_response(error)
    except ValueError:
        return web.Response(status=400, text="'offset' and 'length' must be integers")


async def files_download(request: web.Request) -> web.StreamResponse:
    try:
        target = _resolve(request)
    except files.FilesError as error:
        return files.error_response(error)
    if os.path.isdir(target):
        return web.Response(status=400, text="Cannot download a directory")
    name = os.path.basename(target)
    return web.FileResponse(target, headers={"Content-Disposition": f"attachment; filename={name}"})


def make_app(service: AgentService) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[SERVICE_KEY] = service
    for prefix in ("", "/slave(1)"):
        app.router.add_route("*", f"{prefix}/api/v1/executor", executor_api)
        for suffix in ("", ".json"):
            app.router.add_get(f"{prefix}/state{suffix}", state)
            app.router.add_get(f"{prefix}/flags{suffix}", flags)
            app.router.add_get(f"{prefix}/monitor/statistics{suffix}", statistics)
            app.router.add_get(f"{prefix}/containers{suffix}", containers)
        app.router.add_get(f"{prefix}/health", health)
    app.router.add_get("/version", version)
    app.router.add_get("/version/", version)
    for suffix in ("", ".json"):
        app.router.add_get(f"/files/browse{suffix}", files_browse)
        app.router.add_get(f"/files/read{suffix}", files_read)
        app.router.add_get(f"/files/download{suffix}", files_download)
    return app


def write_ready_file(path: str, address: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as out:
        json.dump({"address": address, "pid": os.getpid()}, out)
    os.replace(tmp, path)


async def serve(
    config: AgentConfig, options: ServiceOptions, ready_file: str | None = None
) -> AgentConfig:
    """Run an agent until SIGTERM/SIGINT or a master's shutdown order. `config.port` 0
    picks a free port; the config actually used is returned."""
    tune_for_service()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Bind first so the advertised port (and MESOS_AGENT_ENDPOINT) is the real one.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.ip, config.port))
    port = sock.getsockname()[1]
    config = replace(config, port=port, info=replace(config.info, port=port))
    service = AgentService(config, options)
    app = make_app(service)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        await service.start()
    except BaseException:  # e.g. checkpoint.RecoveryError: leave no server behind
        await service.supervisor.close()
        await runner.cleanup()
        raise
    if ready_file:
        write_ready_file(ready_file, config.endpoint)
    log.info("agent serving on %s, master %s", config.endpoint, options.master)
    waiter = loop.create_task(service.stopping.wait())
    stopper = loop.create_task(stop.wait())
    await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    stopper.cancel()
    await service.stop()
    with contextlib.suppress(Exception):
        await runner.cleanup()
    return config
