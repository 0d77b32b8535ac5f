"""The master's read endpoints (legacy JSON, reference §6.1) and operator API (§5.1)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from aiohttp import web

from agora.core.master.model import Framework
from agora.master import operator_calls, views
from agora.master.scheduler_api import bad_request, read_json_object, service_of
from agora.master.service import MasterService
from agora.runtime.http import JSON, check_post_json, json_response
from agora.wire.mesos_json import Json, WireError
from agora.wire.scheduler import encode_json


async def version(request: web.Request) -> web.Response:
    return json_response(request, views.BUILD)


async def health(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def redirect(request: web.Request) -> web.Response:
    """To the leading master (Mesos's `/master/redirect`); 503 while none is known."""
    leader = service_of(request).leader
    if leader is None:
        return web.Response(status=503, text="no master is currently leading")
    return web.Response(status=307, headers={"Location": f"//{leader.hostname}:{leader.port}"})


async def state(request: web.Request) -> web.Response:
    service = service_of(request)
    return json_response(request, views.master_state(service.master, service.service_info()))


async def frameworks(request: web.Request) -> web.Response:
    core = service_of(request).master
    wanted = request.query.get("framework_id")

    def pick(items: dict[str, Framework]) -> list[Json]:
        return [views.framework_json(f, core) for i, f in items.items() if wanted in (None, i)]

    return json_response(
        request,
        {
            "frameworks": pick(core.frameworks),
            "completed_frameworks": pick(core.completed_frameworks),
            "unregistered_frameworks": [],
        },
    )


async def agents(request: web.Request) -> web.Response:
    service = service_of(request)
    core = service.master
    wanted = request.query.get("slave_id") or request.query.get("agent_id")
    listed = [
        views.agent_json(a, core, service.agent_ips, True)
        for a in core.agents.values()
        if wanted in (None, a.id)
    ]
    return json_response(request, {"slaves": listed, "recovered_slaves": []})


def _int_query(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise WireError(f"'{name}' must be an integer") from None
    if value < 0:
        raise WireError(f"'{name}' must not be negative")
    return value


async def tasks(request: web.Request) -> web.Response:
    try:
        limit = _int_query(request, "limit", 100)
        offset = _int_query(request, "offset", 0)
    except WireError as error:
        return bad_request(str(error))
    order = request.query.get("order", "des")
    if order not in ("asc", "des"):
        return bad_request("'order' must be 'asc' or 'des'")
    view = views.tasks_view(
        service_of(request).master,
        limit=limit,
        offset=offset,
        descending=order == "des",
        framework_id=request.query.get("framework_id"),
        task_id=request.query.get("task_id"),
    )
    return json_response(request, view)


async def roles(request: web.Request) -> web.Response:
    listed = [
        {
            "name": r["name"],
            "weight": r["weight"],
            "frameworks": r["frameworks"],
            "resources": views.summary(r["resources"]),
            "allocated": views.summary(r["resources"]),
        }
        for r in views.roles_view(service_of(request).master)
    ]
    return json_response(request, {"roles": listed})


async def flags(request: web.Request) -> web.Response:
    return json_response(request, {"flags": service_of(request).config.flags})


async def metrics(request: web.Request) -> web.Response:
    """Every master answers: a standby says it is not elected (Mesos's `master/elected`)."""
    service = service_of(request)
    if not service.leading:
        standby = {"master/elected": 0.0, "master/uptime_secs": time.time() - service.start_time}
        return json_response(request, standby)
    return json_response(request, metrics_snapshot(service))


def metrics_snapshot(service: MasterService) -> dict[str, float]:
    core = service.master
    counts = views.task_counts(core)
    total: dict[str, float] = {}
    used: dict[str, float] = {}
    for agent in core.agents.values():
        for name in ("cpus", "mem", "disk", "gpus"):
            total[name] = total.get(name, 0.0) + agent.info.resources.scalar(name) / 1000
        for resources in agent.used_by().values():
            for name in ("cpus", "mem", "disk", "gpus"):
                used[name] = used.get(name, 0.0) + resources.scalar(name) / 1000
    out: dict[str, float] = {
        "master/elected": 1.0,
        "master/uptime_secs": time.time() - service.start_time,
        "master/slaves_active": float(sum(1 for a in core.agents.values() if a.connected)),
        "master/slaves_connected": float(sum(1 for a in core.agents.values() if a.connected)),
        "master/slaves_disconnected": float(
            sum(1 for a in core.agents.values() if not a.connected)
        ),
        "master/slaves_unreachable": float(len(core.unreachable_agents)),
        "master/frameworks_active": float(sum(1 for f in core.frameworks.values() if f.active)),
        "master/frameworks_connected": float(
            sum(1 for f in core.frameworks.values() if f.connected)
        ),
        "master/outstanding_offers": float(len(core.offers)),
        "system/cpus_total": float(os.cpu_count() or 1),
    }
    for name in ("cpus", "mem", "disk", "gpus"):
        t, u = total.get(name, 0.0), used.get(name, 0.0)
        out[f"master/{name}_total"] = t
        out[f"master/{name}_used"] = u
        out[f"master/{name}_percent"] = u / t if t else 0.0
    for state_, count in counts.items():
        out["master/" + state_.value.lower()] = float(count)
    return out


# ------------------------------------------------------------------ operator API


def _flag_list(service: MasterService) -> Json:
    return {"flags": [{"name": k, "value": v} for k, v in sorted(service.config.flags.items())]}


def _get_master(service: MasterService) -> Json:
    return {
        "master_info": views.master_info_json(service.master),
        "start_time": service.start_time,
        "elected_time": service.start_time,
    }


def _get_roles(service: MasterService) -> Json:
    return {
        "roles": [
            {
                "name": r["name"],
                "weight": r["weight"],
                "frameworks": [{"value": f} for f in r["frameworks"]],
                "resources": views.full(r["resources"]),
            }
            for r in views.roles_view(service.master)
        ]
    }


def _get_metrics(service: MasterService) -> Json:
    snapshot = metrics_snapshot(service)
    return {"metrics": [{"name": k, "value": v} for k, v in sorted(snapshot.items())]}


_SYNC_CALLS: dict[str, Callable[[MasterService], Json]] = {
    "GET_HEALTH": lambda s: {"healthy": True},
    "GET_VERSION": lambda s: {"version_info": views.BUILD},
    "GET_FLAGS": _flag_list,
    "GET_STATE": lambda s: views.state_v1(s.master, s.agent_ips),
    "GET_AGENTS": lambda s: views.agents_v1(s.master, s.agent_ips),
    "GET_FRAMEWORKS": lambda s: views.frameworks_v1(s.master),
    "GET_EXECUTORS": lambda s: views.executors_v1(s.master),
    "GET_TASKS": lambda s: views.tasks_v1(s.master),
    "GET_ROLES": _get_roles,
    "GET_MASTER": _get_master,
    "GET_METRICS": _get_metrics,
    "GET_WEIGHTS": lambda s: {
        "weight_infos": [
            {"role": r["name"], "weight": r["weight"]}
            for r in views.roles_view(s.master)
            if r["weight"] != 1.0
        ]
    },
    "GET_OPERATIONS": lambda s: {},
    **operator_calls.READ_CALLS,
}


async def operator(request: web.Request) -> web.StreamResponse:
    refusal = check_post_json(request)
    if refusal is not None:
        return refusal
    service = service_of(request)
    try:
        body = await read_json_object(request)
        kind = body.get("type")
        if not isinstance(kind, str):
            raise WireError("'type' is required and must be a string")
        change = operator_calls.ASYNC_CALLS.get(kind)
        if change is not None:
            return await change(service, body)
        if kind == "SUBSCRIBE":
            return await _serve_operator_events(request, service)
        produce = _SYNC_CALLS.get(kind)
        if produce is None:
            supported = ", ".join(sorted([*_SYNC_CALLS, *operator_calls.ASYNC_CALLS, "SUBSCRIBE"]))
            raise WireError(f"operator call {kind!r} is not supported (supported: {supported})")
    except WireError as error:
        return bad_request(str(error))
    key = kind.lower()
    return web.Response(body=encode_json({"type": kind, key: produce(service)}), content_type=JSON)


async def _serve_operator_events(
    request: web.Request, service: MasterService
) -> web.StreamResponse:
    events = service.operator_events
    stream = events.subscribe(
        service.master, service.agent_ips, service.master.options.heartbeat_interval_s
    )
    response = web.StreamResponse(status=200)
    response.content_type = JSON
    response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        await stream.drain_into(response)
        await response.write_eof()
    finally:
        events.unsubscribe(stream)
    return response
