"""The agent channel's encoding, master side: a (re)registration round-trips into the
core event it describes, repeated parts decode to shared values, TaskInfos stay
packed until read, and what cannot be read is refused with a message that says why.
Also the multiplexed framing (agent_mux) and the decoding helpers (packed)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from agora.core.master import events as ev
from agora.core.master.info import AgentInfo
from agora.core.resource_text import parse_resources
from agora.core.task_states import TaskState
from agora.testing.swarm import SwarmSpec
from agora.wire import agent_channel as channel
from agora.wire import agent_mux as mux
from agora.wire.mesos_json import WireError
from agora.wire.packed import PackedJson, ParseCache

SPEC = SwarmSpec(tasks_per_agent=4, frameworks=2)


def reregistration(index: int, **changes: Any) -> dict[str, Any]:
    info = SPEC.agent_info(index)
    tasks = SPEC.tasks(index)
    tasks[0] = ev.AgentTask(
        framework_id=tasks[0].framework_id,
        task_id=tasks[0].task_id,
        name="staging one",
        state=TaskState.STAGING,
        resources=tasks[0].resources,
        executor_id="e1",
        status_update_state=TaskState.STAGING,
        status_update_uuid=b"\x01" * 16,
        raw=tasks[0].raw,
    )
    executors = [
        ev.AgentExecutor(
            framework_id=SPEC.framework_id(0),
            executor_id="e1",
            resources=parse_resources("cpus:0.1;mem:32").allocate("*"),
            raw={"executor_id": {"value": "e1"}},
        )
    ]
    message = channel.reregister(
        f"agent-{index}",
        info,
        frozenset({"MULTI_ROLE"}),
        "1.0",
        tasks,
        executors,
        list(SPEC.framework_infos),
    )
    message.update(changes)
    return message


def decode(message: dict[str, Any]) -> ev.MasterEvent | None:
    return channel.master_event(channel.encode_message(message), "c1", None)


def test_a_reregistration_round_trips_into_its_core_event():
    event = decode(reregistration(3))
    assert isinstance(event, ev.ReregisterAgent)
    assert event.agent_id == "agent-3" and event.connection_id == "c1"
    assert event.info == SPEC.agent_info(3)
    assert event.capabilities == frozenset({"MULTI_ROLE"}) and event.version == "1.0"
    sent = SPEC.tasks(3)
    assert [t.task_id for t in event.tasks] == [t.task_id for t in sent]
    first = event.tasks[0]
    assert (first.name, first.state, first.executor_id) == ("staging one", TaskState.STAGING, "e1")
    assert (first.status_update_state, first.status_update_uuid) == (
        TaskState.STAGING,
        b"\x01" * 16,
    )
    assert all(t.resources == sent[1].resources for t in event.tasks)
    assert dict(event.tasks[1].raw) == dict(sent[1].raw)
    assert [f.id for f in event.frameworks] == [SPEC.framework_id(0), SPEC.framework_id(1)]
    (executor,) = event.executors
    assert executor.resources == parse_resources("cpus:0.1;mem:32").allocate("*")
    assert executor.raw == {"executor_id": {"value": "e1"}}


def test_a_registration_round_trips_too():
    info = AgentInfo(
        hostname="h",
        port=5051,
        resources=parse_resources("cpus:2;mem:64;ports:[1-5]"),
        attributes=SPEC.agent_info(0).attributes,
        region="r",
        zone="z",
    )
    event = decode(channel.register(info, frozenset({"GPU_RESOURCES"}), "v"))
    assert isinstance(event, ev.RegisterAgent)
    assert event.info == info and event.capabilities == frozenset({"GPU_RESOURCES"})


def test_what_repeats_across_agents_decodes_to_one_shared_value():
    one, two = decode(reregistration(1)), decode(reregistration(2))
    assert isinstance(one, ev.ReregisterAgent) and isinstance(two, ev.ReregisterAgent)
    assert one.tasks[1].resources is two.tasks[2].resources
    assert one.info.resources is two.info.resources
    assert one.frameworks[0] is two.frameworks[0]


def test_task_infos_stay_packed_until_read():
    event = decode(reregistration(1))
    assert isinstance(event, ev.ReregisterAgent)
    raw = event.tasks[1].raw
    assert isinstance(raw, PackedJson)
    assert "labels" in raw and raw["task_id"] == {"value": SPEC.task_id(1, 1)}
    assert len(raw["labels"]["labels"]) == SPEC.labels_per_task


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"agent_id": 7}, "agent_id"),
        ({"tasks": [{"framework_id": "f", "task_id": "t", "state": "TASK_RUNNING"}]}, "resources"),
        ({"agent_info": {"hostname": "h", "port": 0, "resources": []}}, "port"),
        ({"agent_info": {"hostname": "h", "port": 1, "resources": [{"name": 3}]}}, "resources"),
        ({"agent_info": {"hostname": "h", "port": 1, "resources": [], "attributes": "x"}}, "x"),
        ({"frameworks": [{"name": "no user"}]}, "user"),
    ],
)
def test_an_unreadable_reregistration_is_refused_naming_the_field(changes: Any, named: str):
    with pytest.raises(WireError, match=named):
        decode(reregistration(1, **changes))


def test_unknown_task_states_and_raw_infos_that_are_not_maps_are_refused():
    message = reregistration(1)
    message["tasks"][0]["state"] = "TASK_NAPPING"
    with pytest.raises(WireError, match="TASK_NAPPING"):
        decode(message)
    message = reregistration(1)
    message["tasks"][0]["raw"] = [1, 2]
    with pytest.raises(WireError, match=r"task\.raw"):
        decode(message)


def test_other_messages_need_a_bound_connection_and_are_decoded_as_before():
    assert decode({"type": "PONG"}) is None
    pong = channel.master_event(channel.encode_message({"type": "PONG"}), "c1", "a1")
    assert pong == ev.AgentPong(agent_id="a1", connection_id="c1")
    with pytest.raises(WireError, match="unknown message type"):
        channel.master_event(channel.encode_message({"type": "NAP"}), "c1", "a1")
    with pytest.raises(WireError):
        channel.master_event(msgspec.msgpack.encode([1, 2]), "c1", "a1")


def test_a_message_type_is_found_first_or_anywhere():
    encode = msgspec.msgpack.encode
    assert channel.message_type(encode({"type": "PONG", "x": 1})) == "PONG"
    assert channel.message_type(encode({"x": 1, "type": "PONG"})) == "PONG"
    assert channel.message_type(encode({f"k{i}": i for i in range(20)} | {"type": "T"})) == "T"
    assert channel.message_type(encode({"type": 5})) == 5
    assert channel.message_type(encode({})) is None
    assert channel.message_type(encode([1])) is None
    assert channel.message_type(b"\xc1") is None  # not msgpack


def test_a_frame_is_a_list_of_messages():
    frame = channel.encode_frame([{"type": "PONG"}, {"type": "PONG"}])
    assert [channel.message_type(m) for m in channel.decode_master_frame(frame)] == ["PONG"] * 2
    with pytest.raises(WireError, match="list"):
        channel.decode_master_frame(msgspec.msgpack.encode({"type": "PONG"}))
    with pytest.raises(WireError, match="msgpack"):
        channel.decode_master_frame(b"\xc1")


def test_registry_records_decode_with_shared_resources():
    record = msgspec.json.encode(channel.agent_info_to_json(SPEC.agent_info(5)))
    info = channel.agent_info_from_json_bytes(record)
    assert info == SPEC.agent_info(5)
    assert channel.agent_info_from_json_bytes(record).resources is info.resources
    with pytest.raises(WireError):
        channel.agent_info_from_json_bytes(b'{"hostname": "h"}')


# ------------------------------------------------------------------ multiplexed


def test_multiplexed_frames_are_key_message_pairs():
    pong = channel.encode_message({"type": "PONG"})
    frame = mux.encode_mux_frame([(0, {"type": "PING"}), (7, msgspec.Raw(pong))])
    assert mux.decode_mux_frame(frame) == [(0, {"type": "PING"}), (7, {"type": "PONG"})]
    pairs = mux.decode_mux_pairs(frame)
    assert [(key, channel.message_type(m)) for key, m in pairs] == [(0, "PING"), (7, "PONG")]
    assert mux.is_detach(mux.detach("gone")) and mux.detach("gone")["message"] == "gone"


@pytest.mark.parametrize(
    "items",
    [{"type": "PING"}, [[1]], [[1, {"type": "PING"}, 3]], [[-1, {}]], [[2**32, {}]], [["k", {}]]],
)
def test_a_frame_that_is_not_pairs_with_good_keys_is_refused(items: Any):
    data = msgspec.msgpack.encode(items)
    with pytest.raises(WireError):
        mux.decode_mux_frame(data)
    with pytest.raises(WireError):
        mux.decode_mux_pairs(data)


def test_a_pair_must_carry_a_map():
    with pytest.raises(WireError, match="map"):
        mux.decode_mux_frame(msgspec.msgpack.encode([[1, [2]]]))


# ------------------------------------------------------------------ helpers


def test_packed_json_reads_like_the_map_it_holds():
    value = {"a": 1, "b": {"c": [1, 2]}}
    packed = PackedJson(msgspec.msgpack.encode(value))
    assert dict(packed) == value and packed == value
    assert "a" in packed and "z" not in packed and len(packed) == 2
    assert packed.get("z") is None and packed["b"]["c"] == [1, 2]
    with pytest.raises(WireError):
        PackedJson(msgspec.msgpack.encode([1]))


def test_parse_cache_remembers_values_not_failures_and_is_bounded():
    calls: list[bytes] = []

    def parse(key: bytes) -> int:
        calls.append(key)
        if key == b"bad":
            raise ValueError(key)
        return len(key)

    cache = ParseCache(parse, limit=2)
    assert cache(b"aa") == 2 and cache(b"aa") == 2 and calls == [b"aa"]
    with pytest.raises(ValueError):
        cache(b"bad")
    with pytest.raises(ValueError):
        cache(b"bad")
    assert calls.count(b"bad") == 2
    cache(b"bbb")
    cache(b"c")  # full: starts afresh
    assert len(cache) == 1
    cache(b"aa")
    assert calls.count(b"aa") == 2
