"""Validation of TaskInfo and ExecutorInfo in an ACCEPT (Mesos master/validation.cpp).

Each check raises TaskInvalid with a message naming the field, which becomes the
message of a TASK_ERROR (REASON_TASK_INVALID) update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agora.core.errors import AgoraError, InvalidResource, ResourceArithmeticError
from agora.core.master.commands import ExecutorSpec
from agora.core.resource_json import resources_from_json
from agora.core.resources import Resources

MAX_ID_LENGTH = 255
MAX_PORT = 65535


class TaskInvalid(AgoraError, ValueError):  # noqa: N818
    pass


@dataclass(frozen=True)
class ParsedTask:
    task_id: str
    name: str
    resources: Resources  # tagged with the offer's role
    executor: ExecutorSpec | None
    raw: Mapping[str, Any]


def validate_id(value: object, what: str) -> str:
    if isinstance(value, Mapping):
        value = value.get("value")
    if not isinstance(value, str) or not value:
        raise TaskInvalid(f"'{what}' must be a non-empty string id")
    if len(value) > MAX_ID_LENGTH:
        raise TaskInvalid(f"'{what}' must not be longer than {MAX_ID_LENGTH} characters")
    if value in (".", ".."):
        raise TaskInvalid(f"'{what}' must not be '.' or '..'")
    if "/" in value:
        raise TaskInvalid(f"'{what}' must not contain '/'")
    if not value.isprintable():
        raise TaskInvalid(f"'{what}' must not contain control characters")
    return value


def tagged_resources(data: object, role: str, what: str) -> Resources:
    """Parse resources and tag them with the offer's allocation role (Mesos injects it
    for frameworks that do not set allocation_info); a different role is refused."""
    if data is None:
        return Resources()
    try:
        resources = resources_from_json(data, what)
    except (InvalidResource, ResourceArithmeticError) as error:
        raise TaskInvalid(f"invalid resources in '{what}': {error}") from None
    for entry in resources:
        allocated = entry.meta.allocation_role
        if allocated is not None and allocated != role:
            raise TaskInvalid(
                f"'{what}' are allocated to role {allocated!r} but the offer is for role {role!r}"
            )
    return resources.allocate(role)


def _non_negative(container: Mapping[str, Any], key: str, what: str) -> None:
    value = container.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise TaskInvalid(f"Expecting '{what}.{key}' to be non-negative")


def _duration_ns(value: object, what: str) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping) or not isinstance(value.get("nanoseconds"), int):
        raise TaskInvalid(f"'{what}' must look like {{\"nanoseconds\": N}}")
    if value["nanoseconds"] < 0:
        raise TaskInvalid(f"Expecting '{what}' to be non-negative")


def _port(container: object, what: str) -> None:
    if not isinstance(container, Mapping):
        raise TaskInvalid(f"Expecting '{what}' to be set")
    port = container.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= MAX_PORT:
        raise TaskInvalid(f"Expecting '{what}.port' to be a port number in 1-{MAX_PORT}")


def validate_health_check(check: object, what: str = "health_check") -> None:
    if not isinstance(check, Mapping):
        raise TaskInvalid(f"'{what}' must be an object")
    kind = check.get("type")
    if kind is None:
        raise TaskInvalid(f"'{what}' must specify 'type'")
    if kind == "COMMAND":
        command, field = check.get("command"), f"{what}.command"
        if what == "check" and isinstance(command, Mapping):  # CheckInfo: {command: CommandInfo}
            command, field = command.get("command"), "check.command.command"
        if not isinstance(command, Mapping) or not isinstance(command.get("value"), str):
            raise TaskInvalid(f"Expecting '{field}' with a 'value' for a COMMAND check")
    elif kind == "HTTP":
        _port(check.get("http"), f"{what}.http")
        http = check["http"]
        scheme = http.get("scheme")
        if scheme is not None and scheme not in ("http", "https"):
            raise TaskInvalid(f"'{what}.http.scheme' must be 'http' or 'https', got {scheme!r}")
        path = http.get("path")
        if path is not None and (not isinstance(path, str) or not path.startswith("/")):
            raise TaskInvalid(f"'{what}.http.path' must start with '/'")
    elif kind == "TCP":
        _port(check.get("tcp"), f"{what}.tcp")
    else:
        raise TaskInvalid(f"'{what}.type' must be COMMAND, HTTP or TCP, got {kind!r}")
    for key in ("delay_seconds", "interval_seconds", "timeout_seconds", "grace_period_seconds"):
        _non_negative(check, key, what)
    failures = check.get("consecutive_failures")
    if failures is not None and (
        isinstance(failures, bool) or not isinstance(failures, int) or failures < 0
    ):
        raise TaskInvalid(f"Expecting '{what}.consecutive_failures' to be a non-negative integer")


def _validate_command(command: object, what: str, has_container: bool) -> None:
    if not isinstance(command, Mapping):
        raise TaskInvalid(f"'{what}' must be an object")
    value = command.get("value")
    if value is None and not has_container:
        raise TaskInvalid(f"'{what}.value' is required")
    if value is not None and not isinstance(value, str):
        raise TaskInvalid(f"'{what}.value' must be a string")
    arguments = command.get("arguments", [])
    if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
        raise TaskInvalid(f"'{what}.arguments' must be a list of strings")
    uris = command.get("uris", [])
    if not isinstance(uris, list) or not all(
        isinstance(u, Mapping) and isinstance(u.get("value"), str) and u["value"] for u in uris
    ):
        raise TaskInvalid(f"'{what}.uris' must be a list of objects with a 'value'")


def parse_executor(data: object, framework_id: str, role: str, what: str) -> ExecutorSpec:
    if not isinstance(data, Mapping):
        raise TaskInvalid(f"'{what}' must be an object")
    executor_id = validate_id(data.get("executor_id"), f"{what}.executor_id")
    if data.get("framework_id") is not None:
        given = validate_id(data["framework_id"], f"{what}.framework_id")
        if given != framework_id:
            raise TaskInvalid(f"'{what}.framework_id' {given!r} is not the framework's id")
    kind = data.get("type", "CUSTOM" if data.get("command") is not None else None)
    if kind not in ("CUSTOM", "DEFAULT"):
        raise TaskInvalid(f"'{what}.type' must be CUSTOM or DEFAULT")
    if kind == "CUSTOM":
        if data.get("command") is None:
            raise TaskInvalid(f"'{what}.command' is required for a CUSTOM executor")
        _validate_command(data["command"], f"{what}.command", data.get("container") is not None)
    elif data.get("command") is not None:
        raise TaskInvalid(f"'{what}': a DEFAULT executor must not have a command")
    _duration_ns(data.get("shutdown_grace_period"), f"{what}.shutdown_grace_period")
    resources = tagged_resources(data.get("resources"), role, f"{what}.resources")
    raw = {**data, "framework_id": {"value": framework_id}}
    return ExecutorSpec(executor_id, framework_id, resources, raw)


def same_executor(a: ExecutorSpec, b: ExecutorSpec) -> bool:
    """Mesos refuses a task whose ExecutorInfo differs from the running executor's."""
    strip = ("resources", "framework_id")
    raw_a = {k: v for k, v in a.raw.items() if k not in strip}
    raw_b = {k: v for k, v in b.raw.items() if k not in strip}
    return raw_a == raw_b and a.resources == b.resources


def parse_task(
    data: object,
    framework_id: str,
    agent_id: str,
    role: str,
    in_group: bool = False,
) -> ParsedTask:
    """Check one TaskInfo; return it with tagged resources and a parsed executor."""
    if not isinstance(data, Mapping):
        raise TaskInvalid("a TaskInfo must be a JSON object")
    task_id = validate_id(data.get("task_id"), "task_id")
    name = data.get("name")
    if not isinstance(name, str):
        raise TaskInvalid(f"task {task_id}: 'name' is required and must be a string")
    given_agent = data.get("agent_id", data.get("slave_id"))
    if given_agent is not None and validate_id(given_agent, "agent_id") != agent_id:
        raise TaskInvalid(
            f"task {task_id}: 'agent_id' {given_agent!r} is not the offer's agent {agent_id}"
        )
    has_command = data.get("command") is not None
    has_executor = data.get("executor") is not None
    if in_group:
        if has_executor:
            raise TaskInvalid(f"task {task_id}: a task in a group must not set 'executor'")
    elif has_command == has_executor:
        raise TaskInvalid(
            f"task {task_id}: Task should have at least one (but not both) of CommandInfo "
            "or ExecutorInfo present"
        )
    if has_command:
        _validate_command(data["command"], "command", data.get("container") is not None)
    resources = tagged_resources(data.get("resources"), role, "resources")
    if not resources:
        raise TaskInvalid(f"task {task_id}: Task uses no resources")
    executor = None
    if has_executor:
        executor = parse_executor(data["executor"], framework_id, role, "executor")
    if data.get("health_check") is not None:
        validate_health_check(data["health_check"])
    if data.get("check") is not None:
        validate_health_check(data["check"], "check")
    kill_policy = data.get("kill_policy")
    if kill_policy is not None:
        if not isinstance(kill_policy, Mapping):
            raise TaskInvalid("'kill_policy' must be an object")
        _duration_ns(kill_policy.get("grace_period"), "kill_policy.grace_period")
    _duration_ns(data.get("max_completion_time"), "max_completion_time")
    raw = {**data, "agent_id": {"value": agent_id}}
    return ParsedTask(task_id, name, resources, executor, raw)
