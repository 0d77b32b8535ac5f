"""Pure launch helpers: sandbox paths, argv and environment of command tasks and
executors (reference §3.4 and §4.4), wait statuses, kill grace periods."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Json = Mapping[str, Any]

DEFAULT_KILL_GRACE_S = 3.0
DEFAULT_EXECUTOR_SHUTDOWN_GRACE_S = 5.0

_SIGNAL_NAMES = {
    1: "SIGHUP",
    2: "SIGINT",
    3: "SIGQUIT",
    4: "SIGILL",
    5: "SIGTRAP",
    6: "SIGABRT",
    7: "SIGBUS",
    8: "SIGFPE",
    9: "SIGKILL",
    10: "SIGUSR1",
    11: "SIGSEGV",
    12: "SIGUSR2",
    13: "SIGPIPE",
    14: "SIGALRM",
    15: "SIGTERM",
    24: "SIGXCPU",
    25: "SIGXFSZ",
}


class InvalidCommandError(ValueError):
    pass


# A command the shell would only split on blanks: no quoting, expansion, globbing,
# redirection, operators or comments.
_PLAIN_WORDS = re.compile(r"[A-Za-z0-9_./=:,+@%-]+(?:[ \t]+[A-Za-z0-9_./=:,+@%-]+)*[ \t]*")


@dataclass(frozen=True)
class Argv:
    argv: tuple[str, ...]
    executable: str


def sandbox_path(
    work_dir: str, agent_id: str, framework_id: str, executor_id: str, cid: str
) -> str:
    return (
        f"{work_dir}/slaves/{agent_id}/frameworks/{framework_id}/executors/{executor_id}/runs/{cid}"
    )


def command_argv(command: object, what: str = "TaskInfo.command") -> Argv:
    """CommandInfo -> argv: shell=true (default) runs `/bin/sh -c value`; shell=false
    execs `value` with argv = `arguments`."""
    if not isinstance(command, Mapping):
        raise InvalidCommandError(f"'{what}' is required and must be an object")
    shell = command.get("shell", True)
    value = command.get("value")
    if shell is True or shell == "true":
        if not isinstance(value, str):
            raise InvalidCommandError(f"'{what}.value' is required when shell is true")
        words = value.split()
        if words and words[0].startswith("/") and _PLAIN_WORDS.fullmatch(value):
            # What the shell would run anyway, without the shell: one exec, not two.
            return Argv(tuple(words), words[0])
        return Argv(("/bin/sh", "-c", value), "/bin/sh")
    if not isinstance(value, str) or not value:
        raise InvalidCommandError(f"'{what}.value' must name the program to run")
    arguments = command.get("arguments", [])
    if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
        raise InvalidCommandError(f"'{what}.arguments' must be a list of strings")
    return Argv(tuple(arguments) if arguments else (value,), value)


def command_environment(command: object) -> dict[str, str]:
    """CommandInfo.environment.variables (VALUE, and SECRET with an inline value)."""
    if not isinstance(command, Mapping):
        return {}
    environment = command.get("environment")
    variables = environment.get("variables", []) if isinstance(environment, Mapping) else []
    out: dict[str, str] = {}
    for variable in variables if isinstance(variables, list) else []:
        if not isinstance(variable, Mapping) or not isinstance(variable.get("name"), str):
            continue
        value = variable.get("value")
        secret = variable.get("secret")
        if isinstance(value, str):
            out[variable["name"]] = value
        elif isinstance(secret, Mapping) and isinstance(secret.get("value"), Mapping):
            try:
                data = base64.b64decode(str(secret["value"].get("data", "")), validate=True)
                out[variable["name"]] = data.decode("utf-8", "replace")
            except ValueError:  # binascii.Error is a ValueError
                continue
    return out


def duration_s(value: object) -> float | None:
    """A DurationInfo `{"nanoseconds": N}` in seconds (None if absent or malformed)."""
    if not isinstance(value, Mapping):
        return None
    nanos = value.get("nanoseconds")
    try:
        seconds = float(nanos) / 1e9  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def kill_grace_s(task_raw: Json, override: Json | None) -> float:
    for policy in (override, task_raw.get("kill_policy")):
        if isinstance(policy, Mapping):
            grace = duration_s(policy.get("grace_period"))
            if grace is not None:
                return grace
    return DEFAULT_KILL_GRACE_S


def signal_name(number: int) -> str:
    return _SIGNAL_NAMES.get(number, f"signal {number}")


def exit_code(wait_status: int) -> int | None:
    """The exit code of a normally exited process (None when a signal ended it)."""
    return (wait_status >> 8) & 0xFF if wait_status & 0x7F == 0 else None


def term_signal(wait_status: int) -> int | None:
    signal = wait_status & 0x7F
    return signal if signal not in (0, 0x7F) else None


def describe_exit(wait_status: int) -> str:
    code = exit_code(wait_status)
    if code is not None:
        return f"Command exited with status {code}"
    signal = term_signal(wait_status)
    return f"Command terminated with signal {signal_name(signal or 0)}"
