"""Operator API calls that change the cluster (reference §5.1): weights, quota, the
maintenance schedule and MARK_AGENT_GONE. Each is parsed here (400 naming the field),
decided by the core, and answered once the registry has it (the core persists before
it answers), plus the GET calls that read what they set.

Also the legacy `/master/maintenance/schedule` (GET / POST) and `/master/maintenance/status`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from agora.core.master import events as ev
from agora.core.master.maintenance import scheduled_machines
from agora.master.registrar import Answers
from agora.master.scheduler_api import bad_request, read_json_object, service_of
from agora.master.service import MasterService
from agora.runtime.http import JSON, check_post_json, json_response
from agora.wire.mesos_json import Json, WireError
from agora.wire.quota import quota_config_from_json, quota_config_to_json
from agora.wire.scheduler import encode_json

Call = Callable[[MasterService, Mapping[str, Any]], Awaitable[web.Response]]


def _inner(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    inner = body.get(key)
    if not isinstance(inner, Mapping):
        raise WireError(f"'{key}' is required and must be an object")
    return inner


def _answered(answers: Answers) -> web.Response:
    for answer in answers:
        status = getattr(answer, "status", 200)
        if status >= 400:
            return web.Response(status=status, text=getattr(answer, "message", ""))
    return web.Response(status=200)


def _agent_id(inner: Mapping[str, Any], where: str) -> str:
    agent_id = inner.get("agent_id")
    value = agent_id.get("value") if isinstance(agent_id, Mapping) else None
    if not isinstance(value, str) or not value:
        raise WireError(f"'{where}.agent_id.value' is required and must be a string")
    return value


async def update_weights(service: MasterService, body: Mapping[str, Any]) -> web.Response:
    infos = _inner(body, "update_weights").get("weight_infos")
    if not isinstance(infos, list) or not all(isinstance(i, Mapping) for i in infos):
        raise WireError("'update_weights.weight_infos' must be a list of objects")
    weights: dict[str, Any] = {}
    for i, info in enumerate(infos):
        role = info.get("role")
        if not isinstance(role, str):
            raise WireError(f"'update_weights.weight_infos[{i}].role' must be a string")
        weights[role] = info.get("weight")
    request_id = service.next_request_id()
    return _answered(await service.call(ev.UpdateWeights(request_id=request_id, weights=weights)))


async def update_quota(service: MasterService, body: Mapping[str, Any]) -> web.Response:
    inner = _inner(body, "update_quota")
    configs = inner.get("quota_configs")
    if not isinstance(configs, list):
        raise WireError("'update_quota.quota_configs' must be a list")
    parsed = tuple(
        quota_config_from_json(c, f"update_quota.quota_configs[{i}]") for i, c in enumerate(configs)
    )
    force = inner.get("force", False)
    if not isinstance(force, bool):
        raise WireError("'update_quota.force' must be a boolean")
    event = ev.UpdateQuota(request_id=service.next_request_id(), configs=parsed, force=force)
    return _answered(await service.call(event))


async def mark_agent_gone(service: MasterService, body: Mapping[str, Any]) -> web.Response:
    agent_id = _agent_id(_inner(body, "mark_agent_gone"), "mark_agent_gone")
    event = ev.MarkAgentGone(request_id=service.next_request_id(), agent_id=agent_id)
    return _answered(await service.call(event))


async def update_schedule(service: MasterService, body: Mapping[str, Any]) -> web.Response:
    schedule = _inner(body, "update_maintenance_schedule").get("schedule")
    return await _set_schedule(service, schedule)


async def _set_schedule(service: MasterService, schedule: object) -> web.Response:
    if not isinstance(schedule, Mapping):
        raise WireError("'schedule' is required and must be an object")
    event = ev.UpdateMaintenanceSchedule(request_id=service.next_request_id(), schedule=schedule)
    return _answered(await service.call(event))


ASYNC_CALLS: dict[str, Call] = {
    "UPDATE_WEIGHTS": update_weights,
    "UPDATE_QUOTA": update_quota,
    "MARK_AGENT_GONE": mark_agent_gone,
    "UPDATE_MAINTENANCE_SCHEDULE": update_schedule,
}


# ----------------------------------------------------------------------- reads


def get_quota(service: MasterService) -> Json:
    roles = service.master.allocator.roles()
    configs = [quota_config_to_json(role, roles.quota(role)) for role in roles.quota_roles()]
    return {"status": {"configs": configs}}


def get_schedule(service: MasterService) -> Json:
    return {"schedule": dict(service.master.maintenance_schedule)}


def maintenance_status(service: MasterService) -> Json:
    """Machines in the schedule are DRAINING; none is DOWN (START_MAINTENANCE is not
    served), and no inverse offers are sent, so no framework has answered."""
    machines = scheduled_machines(service.master.maintenance_schedule)
    return {"draining_machines": [{"id": m, "statuses": []} for m in machines], "down_machines": []}


READ_CALLS: dict[str, Callable[[MasterService], Json]] = {
    "GET_QUOTA": get_quota,
    "GET_MAINTENANCE_SCHEDULE": get_schedule,
    "GET_MAINTENANCE_STATUS": lambda s: {"status": maintenance_status(s)},
}


async def maintenance_schedule(request: web.Request) -> web.Response:
    """Legacy `/master/maintenance/schedule`: GET the schedule, POST a new one."""
    service = service_of(request)
    if request.method == "GET":
        return json_response(request, dict(service.master.maintenance_schedule))
    refusal = check_post_json(request)
    if refusal is not None:
        return refusal
    try:
        return await _set_schedule(service, await read_json_object(request))
    except WireError as error:
        return bad_request(str(error))


async def maintenance_status_endpoint(request: web.Request) -> web.Response:
    return web.Response(
        body=encode_json(maintenance_status(service_of(request))), content_type=JSON
    )
