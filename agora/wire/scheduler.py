"""The Mesos v1 scheduler API on the wire: call bodies -> core events, core scheduler
events -> JSON records (reference §2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from agora.core.master import commands as cmd
from agora.core.master import events as ev
from agora.core.resource_json import ResourceFormat
from agora.wire.mesos_json import (
    Json,
    WireError,
    decode_bytes,
    encode_bytes,
    id_value,
    list_of,
    master_info_to_json,
    obj,
    offer_to_json,
    opt_id,
    opt_obj,
    status_to_json,
)

NO_EFFECT_CALLS = frozenset(
    {
        "ACCEPT_INVERSE_OFFERS",
        "DECLINE_INVERSE_OFFERS",
        "ACKNOWLEDGE_OPERATION_STATUS",
        "RECONCILE_OPERATIONS",
        "REQUEST",
    }
)
CALL_TYPES = frozenset(
    {
        "SUBSCRIBE",
        "TEARDOWN",
        "ACCEPT",
        "DECLINE",
        "REVIVE",
        "SUPPRESS",
        "KILL",
        "SHUTDOWN",
        "ACKNOWLEDGE",
        "RECONCILE",
        "MESSAGE",
        "UPDATE_FRAMEWORK",
    }
    | NO_EFFECT_CALLS
)

_json_decoder = msgspec.json.Decoder()
_json_encoder = msgspec.json.Encoder()


def decode_json(body: bytes, what: str = "request body") -> Any:
    try:
        return _json_decoder.decode(body)
    except msgspec.DecodeError as error:
        raise WireError(f"{what} is not valid JSON: {error}") from None


def encode_json(value: Any) -> bytes:
    return _json_encoder.encode(value)


def call_type(body: Mapping[str, Any]) -> str:
    kind = body.get("type")
    if not isinstance(kind, str):
        raise WireError("'type' is required and must be a string")
    if kind not in CALL_TYPES:
        raise WireError(f"'type' {kind!r} is not a scheduler call type")
    return kind


def _roles(body: Mapping[str, Any], key: str) -> tuple[str, ...]:
    inner = opt_obj(body, key, key)
    roles = list_of(inner.get("roles"), f"{key}.roles")
    if not all(isinstance(r, str) for r in roles):
        raise WireError(f"'{key}.roles' must be a list of strings")
    return tuple(roles)


def _offer_ids(inner: Mapping[str, Any], what: str) -> tuple[str, ...]:
    items = list_of(inner.get("offer_ids"), f"{what}.offer_ids")
    return tuple(id_value(item, f"{what}.offer_ids[{i}]") for i, item in enumerate(items))


def _refuse_seconds(inner: Mapping[str, Any], what: str) -> object:
    filters = opt_obj(inner, "filters", f"{what}.filters")
    return filters.get("refuse_seconds")


def _suppressed(inner: Mapping[str, Any], what: str) -> tuple[str, ...]:
    roles = list_of(inner.get("suppressed_roles"), f"{what}.suppressed_roles")
    if not all(isinstance(r, str) for r in roles):
        raise WireError(f"'{what}.suppressed_roles' must be a list of strings")
    return tuple(roles)


def parse_subscribe(body: Mapping[str, Any], request_id: str) -> ev.Subscribe:
    inner = obj(body.get("subscribe"), "subscribe")
    info = obj(inner.get("framework_info"), "subscribe.framework_info")
    constraints = inner.get("offer_constraints")
    return ev.Subscribe(
        request_id=request_id,
        framework_info=info,
        suppressed_roles=_suppressed(inner, "subscribe"),
        offer_constraints=None if constraints is None else obj(constraints, "offer_constraints"),
        framework_id=opt_id(body, "framework_id", "framework_id"),
    )


def parse_call(body: Mapping[str, Any], request_id: str, stream_id: str | None) -> ev.MasterEvent:
    """A decoded call body -> the core event; WireError (a 400) names what is wrong."""
    kind = call_type(body)
    if kind == "SUBSCRIBE":
        return parse_subscribe(body, request_id)
    framework_id = id_value(body.get("framework_id"), "framework_id")
    base: dict[str, Any] = {
        "request_id": request_id,
        "framework_id": framework_id,
        "stream_id": stream_id,
    }
    if kind in NO_EFFECT_CALLS:
        return ev.NoEffectCall(**base, call_type=kind)
    if kind == "TEARDOWN":
        return ev.Teardown(**base)
    if kind == "ACCEPT":
        inner = obj(body.get("accept"), "accept")
        operations = list_of(inner.get("operations"), "accept.operations")
        for i, op in enumerate(operations):
            obj(op, f"accept.operations[{i}]")
        return ev.Accept(
            **base,
            offer_ids=_offer_ids(inner, "accept"),
            operations=tuple(operations),
            refuse_seconds=_refuse_seconds(inner, "accept"),
        )
    if kind == "DECLINE":
        inner = obj(body.get("decline"), "decline")
        return ev.Decline(
            **base,
            offer_ids=_offer_ids(inner, "decline"),
            refuse_seconds=_refuse_seconds(inner, "decline"),
        )
    if kind == "REVIVE":
        return ev.Revive(**base, roles=_roles(body, "revive"))
    if kind == "SUPPRESS":
        return ev.Suppress(**base, roles=_roles(body, "suppress"))
    if kind == "KILL":
        inner = obj(body.get("kill"), "kill")
        policy = inner.get("kill_policy")
        return ev.Kill(
            **base,
            task_id=id_value(inner.get("task_id"), "kill.task_id"),
            agent_id=opt_id(inner, "agent_id", "kill.agent_id"),
            kill_policy=None if policy is None else obj(policy, "kill.kill_policy"),
        )
    if kind == "SHUTDOWN":
        inner = obj(body.get("shutdown"), "shutdown")
        return ev.Shutdown(
            **base,
            executor_id=id_value(inner.get("executor_id"), "shutdown.executor_id"),
            agent_id=id_value(inner.get("agent_id"), "shutdown.agent_id"),
        )
    if kind == "ACKNOWLEDGE":
        inner = obj(body.get("acknowledge"), "acknowledge")
        uuid = decode_bytes(inner.get("uuid"), "acknowledge.uuid")
        if len(uuid) != 16:
            raise WireError("'acknowledge.uuid' must be the 16 bytes of a UUID")
        return ev.Acknowledge(
            **base,
            agent_id=id_value(inner.get("agent_id"), "acknowledge.agent_id"),
            task_id=id_value(inner.get("task_id"), "acknowledge.task_id"),
            uuid=uuid,
        )
    if kind == "RECONCILE":
        inner = opt_obj(body, "reconcile", "reconcile")
        tasks = []
        for i, item in enumerate(list_of(inner.get("tasks"), "reconcile.tasks")):
            entry = obj(item, f"reconcile.tasks[{i}]")
            tasks.append(
                (
                    id_value(entry.get("task_id"), f"reconcile.tasks[{i}].task_id"),
                    opt_id(entry, "agent_id", f"reconcile.tasks[{i}].agent_id"),
                )
            )
        return ev.Reconcile(**base, tasks=tuple(tasks))
    if kind == "MESSAGE":
        inner = obj(body.get("message"), "message")
        return ev.Message(
            **base,
            agent_id=id_value(inner.get("agent_id"), "message.agent_id"),
            executor_id=id_value(inner.get("executor_id"), "message.executor_id"),
            data=decode_bytes(inner.get("data", ""), "message.data"),
        )
    # UPDATE_FRAMEWORK
    inner = obj(body.get("update_framework"), "update_framework")
    constraints = inner.get("offer_constraints")
    return ev.UpdateFramework(
        **base,
        framework_info=obj(inner.get("framework_info"), "update_framework.framework_info"),
        suppressed_roles=_suppressed(inner, "update_framework"),
        offer_constraints=None
        if constraints is None
        else obj(constraints, "update_framework.offer_constraints"),
    )


# ------------------------------------------------------------------------ events


def event_to_json(
    event: cmd.SchedulerEvent,
    fmt: ResourceFormat,
    agent_ips: Mapping[str, str] | None = None,
) -> Json:
    """A scheduler event as its stream record (before encoding)."""
    if isinstance(event, cmd.Update):
        return {"type": "UPDATE", "update": {"status": status_to_json(event.status)}}
    if isinstance(event, cmd.Offers):
        ips = agent_ips or {}
        offers = [offer_to_json(o, fmt, ips.get(o.agent_id, "")) for o in event.offers]
        return {"type": "OFFERS", "offers": {"offers": offers}}
    if isinstance(event, cmd.Rescind):
        return {"type": "RESCIND", "rescind": {"offer_id": {"value": event.offer_id}}}
    if isinstance(event, cmd.Subscribed):
        return {
            "type": "SUBSCRIBED",
            "subscribed": {
                "framework_id": {"value": event.framework_id},
                "heartbeat_interval_seconds": event.heartbeat_interval_s,
                "master_info": master_info_to_json(event.master_info),
            },
        }
    if isinstance(event, cmd.FrameworkMessage):
        return {
            "type": "MESSAGE",
            "message": {
                "agent_id": {"value": event.agent_id},
                "executor_id": {"value": event.executor_id},
                "data": encode_bytes(event.data),
            },
        }
    if isinstance(event, cmd.Failure):
        failure: Json = {}
        if event.agent_id is not None:
            failure["agent_id"] = {"value": event.agent_id}
        if event.executor_id is not None:
            failure["executor_id"] = {"value": event.executor_id}
            failure["status"] = event.status if event.status is not None else 0
        return {"type": "FAILURE", "failure": failure}
    return {"type": "ERROR", "error": {"message": event.message}}


HEARTBEAT: Json = {"type": "HEARTBEAT"}


def error_record(message: str) -> Json:
    return {"type": "ERROR", "error": {"message": message}}
