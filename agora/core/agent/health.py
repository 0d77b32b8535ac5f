"""Health checks and generalized checks as Mesos's built-in executors run them
(reference §9.1): when each check is due, what its result means, and which status
update (or kill) follows. Pure: the agent core asks `CheckBook` and the shell runs the
probes (agora/agent/checks.py).

Health checks (TaskInfo.health_check): the first check after `delay`, the next one
`interval` after the previous one ended. A failure inside the grace period (counted
from the launch, ending at the first success) is ignored; otherwise every failure is
reported as healthy=false, and `consecutive_failures` of them in a row kill the task.
A success is reported only when it is the first one or follows failures.

Checks (TaskInfo.check): same timing, no interpretation; a check_status update goes out
only when the status changes, and a probe that could not complete (timed out, refused
HTTP connection) reports the type with an empty result.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

Json = Mapping[str, Any]
Key = tuple[str, str, str]  # (framework id, task id, kind)

HEALTH = "health"
CHECK = "check"
TYPES = ("COMMAND", "HTTP", "TCP")

DEFAULT_DELAY_S = 15.0
DEFAULT_INTERVAL_S = 10.0
DEFAULT_TIMEOUT_S = 20.0
DEFAULT_CONSECUTIVE_FAILURES = 3
DEFAULT_GRACE_PERIOD_S = 10.0


class InvalidCheck(ValueError):  # noqa: N818
    """A health_check or check the built-in executors cannot run; names the field."""


@dataclass(frozen=True)
class CheckSpec:
    """One parsed HealthCheck or CheckInfo."""

    kind: str  # HEALTH | CHECK
    type: str  # COMMAND | HTTP | TCP
    command: Json | None = None  # the CommandInfo of a COMMAND probe
    port: int = 0
    path: str = ""
    scheme: str = "http"
    delay_s: float = DEFAULT_DELAY_S
    interval_s: float = DEFAULT_INTERVAL_S
    timeout_s: float | None = DEFAULT_TIMEOUT_S  # None: no timeout
    consecutive_failures: int = DEFAULT_CONSECUTIVE_FAILURES
    grace_period_s: float = DEFAULT_GRACE_PERIOD_S

    @property
    def what(self) -> str:
        return "health_check" if self.kind == HEALTH else "check"


@dataclass(frozen=True)
class Probe:
    """What a probe found: exactly one of exit_code / status_code / connected is set, or
    `error` says why it could not complete (a timeout, a refused HTTP connection)."""

    exit_code: int | None = None
    status_code: int | None = None
    connected: bool | None = None
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    """A status update to send: healthy for health checks, check_status for checks."""

    healthy: bool | None = None
    check_status: Json | None = None
    kill: bool = False
    message: str | None = None


def _number(data: Json, key: str, what: str, default: float) -> float:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidCheck(f"'{what}.{key}' must be a number")
    if value < 0:
        raise InvalidCheck(f"Expecting '{what}.{key}' to be non-negative")
    return float(value)


def _port(data: object, what: str) -> int:
    port = data.get("port") if isinstance(data, Mapping) else None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
        raise InvalidCheck(f"Expecting '{what}.port' to be a port number in 1-65535")
    return port


def _command(command: object, what: str) -> Json:
    if not isinstance(command, Mapping) or not isinstance(command.get("value"), str):
        raise InvalidCheck(f"Expecting '{what}' with a 'value' for a COMMAND check")
    return command


def parse_spec(raw: object, kind: str) -> CheckSpec:
    """TaskInfo.health_check (kind HEALTH) or TaskInfo.check (kind CHECK) -> CheckSpec.
    A health check without a type but with a command is a legacy COMMAND check."""
    what = "health_check" if kind == HEALTH else "check"
    if not isinstance(raw, Mapping):
        raise InvalidCheck(f"'{what}' must be an object")
    kind_type = raw.get("type")
    if kind_type is None and kind == HEALTH and raw.get("command") is not None:
        kind_type = "COMMAND"
    if kind_type not in TYPES:
        raise InvalidCheck(f"'{what}.type' must be COMMAND, HTTP or TCP, got {kind_type!r}")
    command = None
    port, path, scheme = 0, "", "http"
    if kind_type == "COMMAND":
        inner = raw.get("command")
        if kind == CHECK:  # CheckInfo.Command wraps the CommandInfo
            inner = inner.get("command") if isinstance(inner, Mapping) else None
            command = _command(inner, f"{what}.command.command")
        else:
            command = _command(inner, f"{what}.command")
    elif kind_type == "HTTP":
        http = raw.get("http")
        port = _port(http, f"{what}.http")
        assert isinstance(http, Mapping)
        path = http.get("path", "")
        if not isinstance(path, str) or (path and not path.startswith("/")):
            raise InvalidCheck(f"'{what}.http.path' must start with '/'")
        scheme = http.get("scheme", "http") if kind == HEALTH else "http"
        if scheme not in ("http", "https"):
            raise InvalidCheck(f"'{what}.http.scheme' must be 'http' or 'https', got {scheme!r}")
    else:
        port = _port(raw.get("tcp"), f"{what}.tcp")
    timeout = _number(raw, "timeout_seconds", what, DEFAULT_TIMEOUT_S)
    failures = raw.get("consecutive_failures", DEFAULT_CONSECUTIVE_FAILURES)
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
        raise InvalidCheck(f"Expecting '{what}.consecutive_failures' to be a non-negative integer")
    return CheckSpec(
        kind=kind,
        type=kind_type,
        command=command,
        port=port,
        path=path,
        scheme=scheme,
        delay_s=_number(raw, "delay_seconds", what, DEFAULT_DELAY_S),
        interval_s=_number(raw, "interval_seconds", what, DEFAULT_INTERVAL_S),
        timeout_s=timeout if timeout > 0 else None,
        consecutive_failures=failures,
        grace_period_s=_number(raw, "grace_period_seconds", what, DEFAULT_GRACE_PERIOD_S),
    )


def task_specs(task_raw: Json) -> list[CheckSpec]:
    """The health check and the check of a TaskInfo (either may be absent)."""
    specs = []
    for key, kind in (("health_check", HEALTH), ("check", CHECK)):
        if task_raw.get(key) is not None:
            specs.append(parse_spec(task_raw[key], kind))
    return specs


def empty_check_status(check_type: str) -> Json:
    """A CheckStatusInfo with its type and no result (no result yet, or none possible)."""
    return {"type": check_type, check_type.lower(): {}}


def check_status(spec: CheckSpec, probe: Probe) -> Json:
    if spec.type == "COMMAND" and probe.exit_code is not None:
        return {"type": "COMMAND", "command": {"exit_code": probe.exit_code}}
    if spec.type == "HTTP" and probe.status_code is not None:
        return {"type": "HTTP", "http": {"status_code": probe.status_code}}
    if spec.type == "TCP" and probe.connected is not None:
        return {"type": "TCP", "tcp": {"succeeded": probe.connected}}
    return empty_check_status(spec.type)


def healthy(spec: CheckSpec, probe: Probe) -> bool:
    if spec.type == "COMMAND":
        return probe.exit_code == 0
    if spec.type == "HTTP":
        return probe.status_code is not None and 200 <= probe.status_code < 400
    return probe.connected is True


def describe(spec: CheckSpec, probe: Probe) -> str:
    if probe.error is not None:
        detail = probe.error
    elif spec.type == "COMMAND":
        detail = f"Command returned exit status {probe.exit_code}"
    elif spec.type == "HTTP":
        detail = f"Unexpected HTTP response code: {probe.status_code}"
    else:
        detail = f"Failed to connect to 127.0.0.1:{spec.port}"
    return f"{spec.type} health check failed: {detail}"


@dataclass
class Checker:
    """One task's health check or check."""

    spec: CheckSpec
    started_at: float  # the task's launch: the grace period counts from here
    next_due: float | None  # None while a probe is in flight
    in_flight: str | None = None  # the running probe's id
    failures: int = 0
    initializing: bool = True  # no success yet
    last_status: Json | None = None  # checks: the check_status last reported
    last_healthy: bool | None = None  # health checks: the health last reported
    probes: int = 0

    def begin(self, check_id: str) -> None:
        self.in_flight = check_id
        self.next_due = None
        self.probes += 1

    def finish(self, probe: Probe, now: float) -> Verdict | None:
        """A probe ended at `now`: the next one is due an interval later."""
        self.in_flight = None
        self.next_due = now + self.spec.interval_s
        if self.spec.kind == CHECK:
            status = check_status(self.spec, probe)
            if status == self.last_status:
                return None
            self.last_status = status
            return Verdict(check_status=status)
        if healthy(self.spec, probe):
            report = self.initializing or self.failures > 0
            self.initializing = False
            self.failures = 0
            if not report:
                return None
            self.last_healthy = True
            return Verdict(healthy=True)
        grace = self.spec.grace_period_s
        if self.initializing and grace > 0 and now - self.started_at <= grace:
            return None  # still in the grace period: ignored
        self.failures += 1
        self.last_healthy = False
        kill = self.failures >= self.spec.consecutive_failures
        return Verdict(healthy=False, kill=kill, message=describe(self.spec, probe))


@dataclass
class CheckBook:
    """Every checked task's checkers, and the tasks a failing health check killed."""

    checkers: dict[Key, Checker] = field(default_factory=dict)
    killed_unhealthy: set[tuple[str, str]] = field(default_factory=set)

    def start(self, framework_id: str, task_id: str, specs: list[CheckSpec], now: float) -> None:
        for spec in specs:
            due = now + spec.delay_s
            self.checkers[(framework_id, task_id, spec.kind)] = Checker(spec, now, due)

    def deadlines(self, framework_id: str, task_id: str) -> Iterator[tuple[Key, float]]:
        """(key, due time) of the task's idle checkers: the timers to arm."""
        for kind in (HEALTH, CHECK):
            checker = self.checkers.get((framework_id, task_id, kind))
            if checker is not None and checker.next_due is not None:
                yield (framework_id, task_id, kind), checker.next_due

    def due(self, key: Key, now: float) -> Checker | None:
        """The checker to probe now, if its time has come and no probe is in flight."""
        checker = self.checkers.get(key)
        if checker is None or checker.next_due is None or checker.next_due > now:
            return None
        return checker

    def finish(self, key: Key, check_id: str, probe: Probe, now: float) -> Verdict | None:
        checker = self.checkers.get(key)
        if checker is None or checker.in_flight != check_id:
            return None  # stopped meanwhile, or a stale probe
        return checker.finish(probe, now)

    def stop(self, framework_id: str, task_id: str) -> None:
        for kind in (HEALTH, CHECK):
            self.checkers.pop((framework_id, task_id, kind), None)

    def last_check_status(self, framework_id: str, task_id: str) -> Json | None:
        """What a health update carries over from the task's last update: the check
        status last reported, else the empty one of the check's type."""
        checker = self.checkers.get((framework_id, task_id, CHECK))
        if checker is None:
            return None
        return checker.last_status or empty_check_status(checker.spec.type)

    def last_healthy(self, framework_id: str, task_id: str) -> bool | None:
        """What a check update carries over: the health last reported."""
        checker = self.checkers.get((framework_id, task_id, HEALTH))
        return checker.last_healthy if checker is not None else None


def fresh_check_status(task_raw: Json) -> Json | None:
    """The check_status of an update made from scratch (STARTING, RUNNING, terminal):
    Mesos's command executor sets the empty status of the check's type on each."""
    check = task_raw.get("check")
    kind = check.get("type") if isinstance(check, Mapping) else None
    return empty_check_status(kind) if kind in TYPES else None
