"""The checkpoint on disk (agora/agent/checkpoint.py): the update log's codec, torn and
corrupt tails, strict and non-strict recovery, and the law that what the store recovers
replays into the status streams the agent had."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.agent.checkpoint import (
    CheckpointStore,
    RecoveryError,
    decode_entry,
    encode_entry,
    read_boot_id,
    read_log,
)
from agora.core.agent import commands as cmd
from agora.core.agent import events as ev
from agora.core.agent.checkpoint import (
    AckRecord,
    AgentRecord,
    ForgetAgent,
    FrameworkRecord,
    LogEntry,
    RecoveredTask,
    RunCompleted,
    RunPath,
    RunRecord,
    TaskRecord,
    UpdateRecord,
)
from agora.core.agent.model import ExecutorKind
from agora.core.agent.stream import StatusStream
from agora.core.master import commands as mcmd
from agora.core.master.info import AgentInfo, TaskStatus
from agora.core.resource_text import parse_resources
from agora.core.task_states import Reason, Source, TaskState
from tests.unit.agent_kit import FW, CheckpointedAgent, framework, of

PATH = RunPath(FW, "ex", "c-1")
INFO = AgentInfo("host", 5051, parse_resources("cpus:4;mem:4096"))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def statuses(draw: st.DrawFn, task_id: str = "t1") -> TaskStatus:
    return TaskStatus(
        task_id=task_id,
        state=draw(st.sampled_from(TaskState)),
        source=draw(st.none() | st.sampled_from(Source)),
        reason=draw(st.none() | st.sampled_from(Reason)),
        message=draw(st.none() | st.text()),
        agent_id=draw(st.none() | st.just("A1")),
        executor_id=draw(st.none() | st.just("ex")),
        timestamp=draw(st.none() | st.floats(allow_nan=False, allow_infinity=False)),
        uuid=draw(st.binary(min_size=16, max_size=16)),
        healthy=draw(st.none() | st.booleans()),
        data=draw(st.none() | st.binary()),
        # unreachable_time is the master's (in nanoseconds on the wire): agents never set it
        extra=draw(st.dictionaries(st.sampled_from(["check_status", "labels"]), json_values)),
    )


entries = st.one_of(
    statuses().map(lambda s: UpdateRecord(PATH, "t1", s)),
    st.binary(min_size=16, max_size=16).map(lambda u: AckRecord(PATH, "t1", u)),
)


def same(a: LogEntry, b: LogEntry) -> bool:
    """Equal records (TaskStatus.extra does not take part in TaskStatus equality)."""
    if isinstance(a, UpdateRecord) and isinstance(b, UpdateRecord):
        return a == b and dict(a.status.extra) == dict(b.status.extra)
    return a == b


@settings(max_examples=300)
@given(entries)
def test_an_update_log_record_decodes_to_what_was_encoded(entry: LogEntry) -> None:
    line = encode_entry(entry)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert same(decode_entry(line[:-1], PATH, "t1"), entry)


@given(st.lists(entries, max_size=6), st.binary(max_size=40).filter(lambda b: b"\n" not in b))
def test_a_torn_tail_is_left_out_and_the_rest_is_read(log: list[LogEntry], tail: bytes) -> None:
    data = b"".join(encode_entry(e) for e in log)
    read = read_log(data + tail, PATH, "t1")
    assert read.good_bytes == len(data) and read.corrupt is None
    assert read.torn == bool(tail)
    assert all(same(a, b) for a, b in zip(read.entries, log, strict=True))


@given(st.lists(entries, min_size=2, max_size=6), st.data())
def test_reading_stops_at_a_corrupt_record(log: list[LogEntry], data: st.DataObject) -> None:
    lines = [encode_entry(e) for e in log]
    bad = data.draw(st.integers(0, len(lines) - 1))
    spot = data.draw(st.integers(9, len(lines[bad]) - 2))  # inside the JSON, not the newline
    flipped = bytearray(lines[bad])
    flipped[spot] ^= 0x01
    lines[bad] = bytes(flipped)
    read = read_log(b"".join(lines), PATH, "t1")
    assert read.corrupt is not None and not read.torn
    assert len(read.entries) == bad and read.good_bytes == sum(len(x) for x in lines[:bad])


# ------------------------------------------------------------------ the store


def written(tmp_path: Path, strict: bool = True) -> CheckpointStore:
    store = CheckpointStore(str(tmp_path), strict)
    launch = mcmd.TaskLaunch("t1", "t1", "A1", parse_resources("cpus:1"), raw={"x": [1]})
    for record in (
        AgentRecord("A1", INFO),
        FrameworkRecord(framework()),
        RunRecord(PATH, ExecutorKind.CUSTOM, {"executor_id": {"value": "ex"}}, launch.resources),
        TaskRecord(PATH, launch),
        UpdateRecord(PATH, "t1", TaskStatus("t1", TaskState.RUNNING, uuid=b"a" * 16)),
        AckRecord(PATH, "t1", b"a" * 16),
        UpdateRecord(PATH, "t1", TaskStatus("t1", TaskState.FINISHED, uuid=b"b" * 16)),
    ):
        store.write(record)
    assert pending(store)
    store.sync()
    assert not pending(store)
    return store


def pending(store: CheckpointStore) -> bool:
    return store.pending  # through a call: mypy would keep `store.pending` narrowed


def urgent(store: CheckpointStore) -> bool:
    return store.urgent


def updates_file(tmp_path: Path) -> Path:
    frameworks = tmp_path / "meta" / "slaves" / "A1" / "frameworks"
    return frameworks / FW / "executors" / "ex" / "runs" / "c-1" / "tasks" / "t1" / "task.updates"


def test_what_is_written_is_recovered(tmp_path: Path) -> None:
    written(tmp_path)
    meta = tmp_path / "meta" / "slaves"
    assert os.readlink(meta / "latest") == "A1"
    assert (
        os.readlink(meta / "A1" / "frameworks" / FW / "executors" / "ex" / "runs" / "latest")
        == "c-1"
    )
    state = CheckpointStore(str(tmp_path)).recover()
    assert state.agent_id == "A1" and state.info == INFO and state.warnings == ()
    assert [f.id for f in state.frameworks] == [FW] and state.frameworks[0].checkpoint
    (run,) = state.runs
    assert run.latest and run.record.kind is ExecutorKind.CUSTOM and run.record.path == PATH
    (task,) = run.tasks
    assert task.record.launch.raw == {"x": [1]} and task.state() is TaskState.FINISHED
    stream = task.stream()
    assert [s.uuid for s in stream.pending] == [b"b" * 16] and not stream.closed


def test_a_torn_tail_is_truncated_so_later_records_append_cleanly(tmp_path: Path) -> None:
    written(tmp_path)
    log = updates_file(tmp_path)
    whole = log.read_bytes()
    log.write_bytes(whole + b'0000abcd {"type": "UPD')  # the agent died mid-append
    store = CheckpointStore(str(tmp_path))  # strict: a torn tail is no corruption
    (run,) = store.recover().runs
    assert len(run.tasks[0].log) == 3 and log.read_bytes() == whole
    store.write(AckRecord(PATH, "t1", b"b" * 16))
    store.sync()
    (run,) = CheckpointStore(str(tmp_path)).recover().runs
    assert run.tasks[0].stream().closed


def test_a_tail_of_unwritten_blocks_counts_as_torn(tmp_path: Path) -> None:
    written(tmp_path)
    log = updates_file(tmp_path)
    whole = log.read_bytes()
    log.write_bytes(whole + b"\0" * 300 + b"\n")  # appends whose blocks never reached disk
    (run,) = CheckpointStore(str(tmp_path)).recover().runs
    assert len(run.tasks[0].log) == 3 and log.read_bytes() == whole


def test_only_acknowledgements_and_removals_may_wait_for_a_later_sync(tmp_path: Path) -> None:
    store = written(tmp_path)
    store.write(AckRecord(PATH, "t1", b"b" * 16))
    assert pending(store) and not urgent(store)
    store.write(RunCompleted(PATH))
    assert not urgent(store)
    store.write(
        UpdateRecord(
            RunPath(FW, "ex", "c-2"), "t2", TaskStatus("t2", TaskState.RUNNING, uuid=b"c" * 16)
        )
    )
    assert urgent(store)
    store.sync()
    assert not urgent(store) and not pending(store)


def test_a_corrupt_record_stops_a_strict_recovery_and_is_dropped_otherwise(
    tmp_path: Path,
) -> None:
    written(tmp_path)
    log = updates_file(tmp_path)
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(lines[0] + lines[1].replace(b"ACK", b"ACX") + lines[2])
    with pytest.raises(RecoveryError, match=r"task\.updates: record at byte"):
        CheckpointStore(str(tmp_path)).recover()
    assert len(log.read_bytes().splitlines()) == 3  # strict recovery changed nothing
    state = CheckpointStore(str(tmp_path), strict=False).recover()
    assert len(state.warnings) == 1 and "task.updates" in state.warnings[0]
    assert [type(e) for e in state.runs[0].tasks[0].log] == [UpdateRecord]
    assert log.read_bytes() == lines[0]


def test_a_corrupt_info_file_stops_a_strict_recovery(tmp_path: Path) -> None:
    written(tmp_path)
    info = tmp_path / "meta" / "slaves" / "A1" / "frameworks" / FW / "framework.info"
    info.write_text('{"user": ')
    with pytest.raises(RecoveryError, match=r"framework\.info"):
        CheckpointStore(str(tmp_path)).recover()
    state = CheckpointStore(str(tmp_path), strict=False).recover()
    assert state.frameworks == () and state.runs == () and len(state.warnings) == 1


def test_half_written_directories_and_leftover_temp_files_are_skipped(tmp_path: Path) -> None:
    written(tmp_path)
    executors = tmp_path / "meta" / "slaves" / "A1" / "frameworks" / FW / "executors"
    (executors / "ex" / "runs" / "c-1" / "tasks" / "t2").mkdir()  # no task.info yet
    (executors / "ex2" / "runs" / "c-2").mkdir(parents=True)  # no executor.info yet
    (executors / "ex" / "executor.info.tmp").write_text("{")
    state = CheckpointStore(str(tmp_path)).recover()
    assert [r.record.path.container_id for r in state.runs] == ["c-1"]
    assert len(state.runs[0].tasks) == 1 and state.warnings == ()


def test_forgetting_the_agent_removes_its_checkpoint(tmp_path: Path) -> None:
    store = written(tmp_path)
    store.write(ForgetAgent("A1"))
    store.sync()
    assert not (tmp_path / "meta" / "slaves" / "A1").exists()
    assert CheckpointStore(str(tmp_path)).recover().agent_id is None


def test_boot_ids_and_ids_that_cannot_be_paths(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path))
    assert store.previous_boot_id() is None and read_boot_id(str(tmp_path / "none")) is None
    store.save_boot_id("b-1")
    assert store.previous_boot_id() == "b-1"
    assert read_boot_id() is not None  # this host's /proc/sys/kernel/random/boot_id
    store.write(AgentRecord("A1", INFO))
    for bad in ("..", "a/b", ""):
        with pytest.raises(ValueError, match="not a valid path component"):
            store.write(RunRecord(RunPath(FW, bad, "c"), ExecutorKind.COMMAND, {}, INFO.resources))


# ------------------------------------------------------------------ replay law

steps = st.lists(
    st.tuples(
        st.sampled_from(["update", "ack", "ack-stale", "restart"]),
        st.integers(0, 2),  # which task
        st.sampled_from(TaskState).filter(lambda s: s is not TaskState.STAGING),
        st.integers(0, 4),  # which uuid (duplicates happen)
    ),
    max_size=25,
)


@settings(max_examples=60)
@given(steps)
def test_replaying_the_recovered_log_gives_the_same_streams(plan: list[Any]) -> None:
    """Whatever an executor sends and the master acknowledges, and however often the
    agent restarts in between, a recovered agent's status streams are the ones it had."""
    with tempfile.TemporaryDirectory() as work_dir:
        agent = CheckpointedAgent(Path(work_dir))
        agent.start()
        proc = ""
        for task in ("t0", "t1", "t2"):
            out = agent.custom(task)
            proc = proc or of(out, cmd.LaunchProcess)[0].proc_id
        agent.handle(ev.ExecutorSubscribe("s", FW, "ex"))
        for step, (kind, index, state, uuid_index) in enumerate(plan):
            key = (FW, f"t{index}")
            stream = agent.core.streams.get(key)
            if kind == "update":
                status = TaskStatus(key[1], state, uuid=bytes([index, uuid_index]) * 8)
                agent.handle(ev.ExecutorUpdate(f"u{step}", FW, "ex", status))
            elif kind == "ack" and stream is not None and stream.head is not None:
                agent.ack(stream.head)
            elif kind == "ack-stale":
                agent.ack(TaskStatus(key[1], state, uuid=bytes([9, uuid_index]) * 8))
            elif kind == "restart":
                before = {
                    k: _view(s) for k, s in agent.core.streams.items() if k in agent.core.tasks
                }
                agent.restart((ev.SupervisedProcess(proc, 1),))
                after = {k: _view(s) for k, s in agent.core.streams.items()}
                assert before == after
                known = tuple(t for _, t in agent.core.tasks)  # it got every task
                agent.handle(ev.ExecutorSubscribe(f"s{step}", FW, "ex", (), known))
        live = {k: _view(s) for k, s in agent.core.streams.items() if k in agent.core.tasks}
        state_on_disk = CheckpointStore(work_dir).recover()
        replayed = {
            (FW, t.record.launch.task_id): _view(t.stream())
            for run in state_on_disk.runs
            for t in run.tasks
            if not t.stream().closed and t.stream().seen
        }
        assert replayed == live


def _view(stream: StatusStream) -> tuple[object, ...]:
    return (tuple(s.uuid for s in stream.pending), frozenset(stream.seen), stream.closed)


def test_recovered_task_state_never_leaves_a_terminal_state() -> None:
    launch = mcmd.TaskLaunch("t1", "t1", "A1", parse_resources("cpus:1"))
    log = tuple(
        UpdateRecord(PATH, "t1", TaskStatus("t1", s, uuid=bytes([i]) * 16))
        for i, s in enumerate((TaskState.RUNNING, TaskState.FAILED, TaskState.RUNNING))
    )
    assert RecoveredTask(TaskRecord(PATH, launch), log).state() is TaskState.FAILED
