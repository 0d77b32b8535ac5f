"""Health checks and checks as the built-in executors run them: the pure state machine
(agora/core/agent/health.py) and the agent core driving it with timers and results."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agora.core.agent import commands as cmd
from agora.core.agent import events as ev
from agora.core.agent import health
from agora.core.agent.core import AgentCore
from agora.core.agent.health import CHECK, HEALTH, Checker, InvalidCheck, Probe, parse_spec
from agora.core.master import commands as mcmd
from agora.core.master.info import TaskStatus
from agora.core.task_states import Reason, TaskState
from tests.unit.test_agent_core import ack, framework, make_core, of, run_task, updates

OK = Probe(exit_code=0)
BAD = Probe(exit_code=1)


def command_health(**fields: Any) -> dict[str, Any]:
    return {"type": "COMMAND", "command": {"value": "test -f ok"}, **fields}


# ------------------------------------------------------------------ parsing


def test_defaults_follow_mesos() -> None:
    spec = parse_spec(command_health(), HEALTH)
    assert (spec.delay_s, spec.interval_s, spec.timeout_s) == (15.0, 10.0, 20.0)
    assert (spec.consecutive_failures, spec.grace_period_s) == (3, 10.0)
    assert parse_spec(command_health(timeout_seconds=0), HEALTH).timeout_s is None


def test_shapes_of_health_checks_and_checks() -> None:
    legacy = parse_spec({"command": {"value": "true"}}, HEALTH)
    assert legacy.type == "COMMAND" and legacy.command == {"value": "true"}
    http = parse_spec({"type": "HTTP", "http": {"port": 80, "path": "/h"}}, HEALTH)
    assert (http.port, http.path, http.scheme) == (80, "/h", "http")
    check = parse_spec({"type": "COMMAND", "command": {"command": {"value": "exit 2"}}}, CHECK)
    assert check.command == {"value": "exit 2"} and check.kind == CHECK
    assert parse_spec({"type": "TCP", "tcp": {"port": 9}}, CHECK).port == 9


@pytest.mark.parametrize(
    ("raw", "kind", "field"),
    [
        ({"type": "COMMAND"}, HEALTH, "'health_check.command'"),
        ({"type": "COMMAND", "command": {"value": "x"}}, CHECK, "'check.command.command'"),
        ({"type": "HTTP", "http": {"port": 0}}, HEALTH, "'health_check.http.port'"),
        ({"type": "HTTP", "http": {"port": 1, "path": "x"}}, CHECK, "'check.http.path'"),
        ({"type": "TCP"}, CHECK, "'check.tcp.port'"),
        ({"type": "UDP"}, HEALTH, "'health_check.type'"),
        (command_health(interval_seconds=-1), HEALTH, "'health_check.interval_seconds'"),
        (command_health(consecutive_failures=-1), HEALTH, "'health_check.consecutive_failures'"),
    ],
)
def test_invalid_specs_name_the_field(raw: dict[str, Any], kind: str, field: str) -> None:
    with pytest.raises(InvalidCheck, match=field):
        parse_spec(raw, kind)


# ------------------------------------------------------------------ state machine


def checker(kind: str = HEALTH, **fields: Any) -> Checker:
    raw = command_health(**fields)
    if kind == CHECK:
        raw = {**raw, "command": {"command": raw["command"]}}
    spec = parse_spec(raw, kind)
    return Checker(spec, started_at=0.0, next_due=spec.delay_s)


def probe(c: Checker, result: Probe, at: float) -> health.Verdict | None:
    c.begin(f"p{c.probes + 1}")
    return c.finish(result, at)


def due(c: Checker) -> float | None:
    """Reads next_due afresh: mypy would keep an attribute narrowed across method calls."""
    return c.next_due


def test_interval_counts_from_the_end_of_the_previous_probe() -> None:
    c = checker(delay_seconds=5, interval_seconds=2)
    assert due(c) == 5.0
    c.begin("p1")
    assert due(c) is None  # nothing more is due while a probe runs
    c.finish(OK, 8.5)
    assert due(c) == 10.5


def test_healthy_is_reported_first_and_after_failures_only() -> None:
    c = checker(grace_period_seconds=0, consecutive_failures=10)
    assert probe(c, OK, 1) == health.Verdict(healthy=True)
    assert probe(c, OK, 2) is None
    bad = probe(c, BAD, 3)
    assert bad is not None and bad.healthy is False and not bad.kill
    assert "exit status 1" in (bad.message or "")
    assert probe(c, BAD, 4) == health.Verdict(healthy=False, message=bad.message)
    assert probe(c, OK, 5) == health.Verdict(healthy=True)
    assert probe(c, OK, 6) is None


def test_grace_period_ignores_failures_until_the_first_success() -> None:
    c = checker(grace_period_seconds=10, consecutive_failures=1)
    assert probe(c, BAD, 4) is None
    assert probe(c, BAD, 10) is None  # the window includes its end
    late = probe(c, BAD, 10.5)
    assert late is not None and late.healthy is False and late.kill
    c = checker(grace_period_seconds=10, consecutive_failures=1)
    assert probe(c, OK, 1) == health.Verdict(healthy=True)
    early = probe(c, BAD, 2)  # after a success the grace period no longer applies
    assert early is not None and early.kill


def test_consecutive_failures_kill_and_a_success_resets_the_count() -> None:
    c = checker(grace_period_seconds=0, consecutive_failures=3)
    kills = [v.kill for v in (probe(c, BAD, t) for t in (1, 2)) if v is not None]
    assert kills == [False, False]
    probe(c, OK, 3)
    kills = [v.kill for v in (probe(c, BAD, t) for t in (4, 5, 6)) if v is not None]
    assert kills == [False, False, True]


def test_timeouts_are_failures_for_health_and_empty_results_for_checks() -> None:
    timed_out = Probe(error="COMMAND probe timed out after 1 s")
    c = checker(grace_period_seconds=0)
    verdict = probe(c, timed_out, 1)
    assert verdict is not None and verdict.healthy is False and "timed out" in str(verdict.message)
    k = checker(CHECK)
    assert probe(k, timed_out, 1) == health.Verdict(check_status={"type": "COMMAND", "command": {}})


def test_checks_report_only_changes() -> None:
    k = checker(CHECK)
    first = probe(k, Probe(exit_code=1), 1)
    assert first == health.Verdict(check_status={"type": "COMMAND", "command": {"exit_code": 1}})
    assert probe(k, Probe(exit_code=1), 2) is None
    second = probe(k, Probe(exit_code=0), 3)
    assert second is not None and second.check_status == {
        "type": "COMMAND",
        "command": {"exit_code": 0},
    }
    assert not second.kill and second.healthy is None


def test_check_status_shapes() -> None:
    http = parse_spec({"type": "HTTP", "http": {"port": 80}}, CHECK)
    tcp = parse_spec({"type": "TCP", "tcp": {"port": 80}}, CHECK)
    assert health.check_status(http, Probe(status_code=503)) == {
        "type": "HTTP",
        "http": {"status_code": 503},
    }
    assert health.check_status(tcp, Probe(connected=False)) == {
        "type": "TCP",
        "tcp": {"succeeded": False},
    }
    assert health.healthy(http, Probe(status_code=302)) and not health.healthy(
        http, Probe(status_code=404)
    )


@given(st.lists(st.booleans(), max_size=40), st.integers(1, 5))
def test_health_reports_match_the_mesos_rules(results: list[bool], limit: int) -> None:
    """Without a grace period: every failure is reported, a success only when it is the
    first or follows failures, and a kill exactly when `limit` failures are in a row."""
    c = checker(grace_period_seconds=0, consecutive_failures=limit)
    streak, seen_success, previous_failed = 0, False, False
    for t, ok in enumerate(results):
        verdict = probe(c, OK if ok else BAD, float(t))
        if ok:
            expect_report = not seen_success or previous_failed
            assert (verdict is not None) == expect_report
            streak, seen_success = 0, True
        else:
            streak += 1
            assert verdict is not None and verdict.healthy is False
            assert verdict.kill == (streak >= limit)
        previous_failed = not ok


# ------------------------------------------------------------------ the agent core


def launch_checked(core: AgentCore, raw: dict[str, Any]) -> tuple[str, TaskStatus]:
    """Launch t1 with `raw`, let it run and acknowledge STARTING and RUNNING."""
    out = run_task(core, "t1", {"command": {"value": "sleep 100"}, **raw})
    (launch,) = of(out, cmd.LaunchProcess)
    (starting,) = updates(out)
    core.handle(ev.ProcessLaunched(launch.proc_id, 42), 0.0)
    (running,) = updates(ack(core, starting))
    assert running.state is TaskState.RUNNING
    ack(core, running)
    return launch.proc_id, running


def tick(core: AgentCore, now: float) -> list[cmd.AgentCommand]:
    return core.handle(ev.Tick(), now)


def answer(
    core: AgentCore, check: cmd.RunCheck, result: Probe, now: float
) -> list[cmd.AgentCommand]:
    event = ev.CheckResult(
        check.check_id, check.framework_id, check.task_id, check.spec.kind, result
    )
    out = core.handle(event, now)
    for status in updates(out):
        ack(core, status, now)
    return out


def test_core_probes_when_due_and_kills_after_consecutive_failures() -> None:
    core = make_core()
    spec = command_health(
        delay_seconds=1,
        interval_seconds=2,
        grace_period_seconds=0,
        consecutive_failures=2,
        command={
            "value": "test -f ok",
            "environment": {"variables": [{"name": "X", "value": "1"}]},
        },
    )
    proc_id, _ = launch_checked(core, {"health_check": spec})
    assert core.next_deadline() == 1.0
    assert of(tick(core, 0.5), cmd.RunCheck) == []
    (check,) = of(tick(core, 1.0), cmd.RunCheck)
    assert check.spec.type == "COMMAND" and check.env["X"] == "1"
    assert check.env["MESOS_TASK_ID"] == "t1" and check.sandbox == check.env["MESOS_SANDBOX"]
    assert of(tick(core, 5.0), cmd.RunCheck) == []  # one probe at a time
    (healthy,) = updates(answer(core, check, OK, 6.0))
    assert healthy.state is TaskState.RUNNING and healthy.healthy is True
    assert healthy.reason is Reason.TASK_HEALTH_CHECK_STATUS_UPDATED
    assert of(tick(core, 7.9), cmd.RunCheck) == []  # 2 s after the probe ended
    (check,) = of(tick(core, 8.0), cmd.RunCheck)
    (unhealthy,) = updates(answer(core, check, BAD, 8.0))
    assert unhealthy.healthy is False
    (check,) = of(tick(core, 10.0), cmd.RunCheck)
    out = answer(core, check, BAD, 10.0)
    assert [u.healthy for u in updates(out)] == [False]
    assert of(out, cmd.SignalProcess) == [cmd.SignalProcess(proc_id, cmd.SIGTERM)]
    assert of(tick(core, 20.0), cmd.RunCheck) == []  # checking stopped with the kill
    (killed,) = updates(core.handle(ev.ProcessExited(proc_id, 15), 20.0))
    assert killed.state is TaskState.KILLED and killed.healthy is False


def test_core_sends_check_updates_on_change_and_check_status_on_every_update() -> None:
    core = make_core()
    raw = {
        "check": {
            "type": "COMMAND",
            "command": {"command": {"value": "exit 1"}},
            "delay_seconds": 0,
            "interval_seconds": 1,
        }
    }
    proc_id, running = launch_checked(core, raw)
    assert running.extra["check_status"] == {"type": "COMMAND", "command": {}}
    codes = []
    for t, code in enumerate((1, 1, 0, 0, 1)):
        (check,) = of(tick(core, 2.0 * t), cmd.RunCheck)
        for status in updates(answer(core, check, Probe(exit_code=code), 2.0 * t)):
            assert status.reason is Reason.TASK_CHECK_STATUS_UPDATED and status.healthy is None
            codes.append(status.extra["check_status"]["command"]["exit_code"])
    assert codes == [1, 0, 1]
    (finished,) = updates(core.handle(ev.ProcessExited(proc_id, 0), 20.0))
    assert finished.state is TaskState.FINISHED
    assert finished.extra["check_status"] == {"type": "COMMAND", "command": {}}
    assert of(tick(core, 30.0), cmd.RunCheck) == []


def test_health_updates_carry_the_last_check_status_and_checks_the_last_health() -> None:
    core = make_core()
    raw = {
        "health_check": command_health(delay_seconds=0, grace_period_seconds=0),
        "check": {"type": "TCP", "tcp": {"port": 9}, "delay_seconds": 0},
    }
    launch_checked(core, raw)
    checks = {c.spec.kind: c for c in of(tick(core, 0.0), cmd.RunCheck)}
    (status,) = updates(answer(core, checks[CHECK], Probe(connected=True), 0.1))
    assert status.extra["check_status"] == {"type": "TCP", "tcp": {"succeeded": True}}
    (status,) = updates(answer(core, checks[HEALTH], OK, 0.2))
    assert status.healthy is True
    assert status.extra["check_status"] == {"type": "TCP", "tcp": {"succeeded": True}}
    (check,) = of(tick(core, 10.1), cmd.RunCheck)
    (status,) = updates(answer(core, check, Probe(connected=False), 10.1))
    assert status.healthy is True and status.extra["check_status"]["tcp"] == {"succeeded": False}


def test_results_after_a_kill_or_stale_probes_are_ignored() -> None:
    core = make_core()
    launch_checked(core, {"health_check": command_health(delay_seconds=0)})
    (check,) = of(tick(core, 0.0), cmd.RunCheck)
    core.handle(ev.FromMaster(kill_message()), 0.5)
    assert updates(answer(core, check, OK, 1.0)) == []
    stale = ev.CheckResult("nope", check.framework_id, "t1", HEALTH, OK)
    assert updates(core.handle(stale, 1.0)) == []


def test_invalid_spec_at_the_agent_is_logged_and_the_task_runs_unchecked() -> None:
    core = make_core()
    out = run_task(core, "t1", {"command": {"value": "x"}, "health_check": {"type": "UDP"}})
    (launch,) = of(out, cmd.LaunchProcess)
    logs = of(core.handle(ev.ProcessLaunched(launch.proc_id, 1), 0.0), cmd.Log)
    assert any("'health_check.type'" in log.message for log in logs)
    assert core.health.checkers == {}


def kill_message() -> mcmd.KillTask:
    return mcmd.KillTask(framework().id or "", "t1")
