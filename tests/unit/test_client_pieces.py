"""Pure pieces of agora.client: backoff, durations, builders, event parsing, addresses,
and the exit status `agora run` derives from a terminal update."""

from __future__ import annotations

import random

import pytest

from agora.cli.run import exit_status
from agora.client import Backoff, Event, FrameworkInfo, parse_duration_s
from agora.client.http import redirect_target, split_address
from agora.client.types import (
    command_info,
    offer_attributes,
    offer_role,
    offer_scalars,
    scalar_resources,
    task_info,
)


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(initial_s=0.1, max_s=1.0, jitter=False)
    assert [backoff.next_delay_s() for _ in range(6)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    )
    backoff.reset()
    assert backoff.next_delay_s() == pytest.approx(0.1)


def test_backoff_jitter_stays_within_half_and_full_delay() -> None:
    backoff = Backoff(initial_s=1.0, max_s=8.0, rng=random.Random(7))
    for expected in (1.0, 2.0, 4.0, 8.0, 8.0):
        delay = backoff.next_delay_s()
        assert expected / 2 <= delay <= expected


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(initial_s=0)
    with pytest.raises(ValueError):
        Backoff(initial_s=2, max_s=1)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5secs", 5.0), ("15mins", 900.0), ("250ms", 0.25), ("2weeks", 1209600.0), ("1.5", 1.5)],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


def test_bad_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration_s("5 parsecs")


def test_framework_info_is_multi_role_and_carries_its_fields() -> None:
    info = FrameworkInfo(
        name="f",
        user="bob",
        roles=["a", "b"],
        failover_timeout_s=60,
        checkpoint=True,
        capabilities=["PARTITION_AWARE"],
        labels={"k": "v"},
        framework_id="fw-1",
    ).to_json()
    assert info["name"] == "f" and info["user"] == "bob"
    assert info["roles"] == ["a", "b"]
    assert info["failover_timeout"] == 60 and info["checkpoint"] is True
    assert info["capabilities"] == [{"type": "MULTI_ROLE"}, {"type": "PARTITION_AWARE"}]
    assert info["labels"] == {"labels": [{"key": "k", "value": "v"}]}
    assert info["id"] == {"value": "fw-1"}
    assert "role" not in info


def test_command_info_shell_and_argv() -> None:
    assert command_info("echo hi") == {"shell": True, "value": "echo hi"}
    argv = command_info(["/bin/echo", "a b"], shell=False, environment={"X": "1"})
    assert argv["shell"] is False and argv["value"] == "/bin/echo"
    assert argv["arguments"] == ["/bin/echo", "a b"]
    assert argv["environment"]["variables"] == [{"name": "X", "type": "VALUE", "value": "1"}]
    with pytest.raises(ValueError):
        command_info([], shell=False)


def test_task_info_needs_exactly_one_of_command_and_executor() -> None:
    task = task_info(
        "t1",
        "a1",
        command=command_info("true"),
        resources=scalar_resources(0.5, 64, role="r"),
        data=b"\x00\x01",
    )
    assert task["task_id"] == {"value": "t1"} and task["agent_id"] == {"value": "a1"}
    assert task["name"] == "t1" and task["data"] == "AAE="
    assert [r["name"] for r in task["resources"]] == ["cpus", "mem"]
    assert all(r["allocation_info"] == {"role": "r"} for r in task["resources"])
    with pytest.raises(ValueError):
        task_info("t", "a")
    with pytest.raises(ValueError):
        task_info("t", "a", command={}, executor={})


def test_offer_views() -> None:
    offer = {
        "allocation_info": {"role": "eng"},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.5}},
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
            {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 2}]}},
        ],
        "attributes": [
            {"name": "rack", "type": "TEXT", "text": {"value": "r1"}},
            {"name": "level", "type": "SCALAR", "scalar": {"value": 3}},
            {"name": "tags", "type": "SET", "set": {"item": ["a", "b"]}},
            {"name": "span", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 5}]}},
        ],
    }
    assert offer_scalars(offer) == {"cpus": 2.0}
    assert offer_role(offer) == "eng"
    assert offer_attributes(offer) == {"rack": "r1", "level": "3", "tags": "a,b", "span": "1-5"}


def test_event_parsing() -> None:
    event = Event.from_json({"type": "UPDATE", "update": {"status": {"state": "TASK_RUNNING"}}})
    assert event.type == "UPDATE" and event.status["state"] == "TASK_RUNNING"
    heartbeat = Event.from_json({"type": "HEARTBEAT"})
    assert heartbeat.data == {}
    error = Event.from_json({"type": "ERROR", "error": {"message": "gone"}})
    assert error.message == "gone"
    with pytest.raises(ValueError):
        Event.from_json({"no": "type"})


def test_addresses_and_redirects() -> None:
    assert split_address("127.0.0.1:5050") == ("127.0.0.1", 5050)
    assert split_address("http://m1:5051/x") == ("m1", 5051)
    assert split_address("m2") == ("m2", 5050)
    assert redirect_target("//m3:5052/api/v1/scheduler", ("m1", 5050)) == ("m3", 5052)
    assert redirect_target("/relative", ("m1", 5050)) == ("m1", 5050)
    with pytest.raises(ValueError):
        split_address("m1:notaport")


@pytest.mark.parametrize(
    ("state", "message", "code"),
    [
        ("TASK_FINISHED", "", 0),
        ("TASK_FAILED", "Command exited with status 3", 3),
        ("TASK_FAILED", "Command terminated with signal Killed", 137),
        ("TASK_FAILED", "killed by signal 15", 143),
        ("TASK_FAILED", "Command terminated with signal SIGTERM", 143),
        ("TASK_FAILED", "something else", 1),
        ("TASK_KILLED", "", 137),
        ("TASK_LOST", "agent gone", 1),
    ],
)
def test_run_exit_status(state: str, message: str, code: int) -> None:
    assert exit_status(state, message) == code
