"""The agent's checkpoint on disk: writes the core's checkpoint records (agora/core/agent/
checkpoint.py) durably and reads them back when an agent starts on the same work dir.

Layout, modelled on Mesos's `meta/` (reference §1.5), under `<work_dir>/meta/`:

    boot_id                                  the host's boot id when the agent last
                                             started (a different one: the host rebooted)
    slaves/latest -> <agent_id>              symlink: the id to re-register under
    slaves/<agent_id>/agent.info             AgentInfo (JSON)
      frameworks/<framework_id>/framework.info       FrameworkInfo (JSON)
        executors/<executor_id>/executor.info        {kind, raw ExecutorInfo, resources}
          runs/latest -> <container_id>               the executor's current run
          runs/<container_id>/tasks/<task_id>/task.info     {launch, proc_id, group}
          runs/<container_id>/tasks/<task_id>/task.updates  append-only update log
    containers/<container_id>/launch.info    the containerizer's LaunchInfo of a
                                             checkpointing framework's container
    supervisor/journal                       the supervisor's own launch/exit journal

(`slaves`, as in Mesos and in the sandbox paths, so the layout reads the same; the code
says agent.) Only frameworks with FrameworkInfo.checkpoint get anything under
`frameworks/`; the agent id, agent info and boot id are always written. A run's
directory goes when the run is over and every update of its tasks is acknowledged (its
sandbox stays under `<work_dir>/slaves/` for the files API); the executor's with its
last run.

Durability. Info files are replaced atomically: written to `<name>.tmp`, fsynced,
renamed over the old one, and the directory fsynced. An update log line is appended
and the file fsynced (fdatasync). New directories get their parent fsynced. The fsyncs
a batch of records needs are made by `sync()`, which the agent calls before it carries
out any command that follows an `urgent` record (an update is forwarded only once it is
durable), so a burst of records in one event costs one fsync per file touched, not one
per record. Acknowledgements and the removal of finished runs are not urgent: nothing
the agent does next depends on them, and losing them in a crash costs only a duplicate
(the update is sent again after recovery and the master, which remembers acknowledged
uuids, acknowledges it again; a run whose removal was lost is found finished and removed
again). They are group-committed by the next sync, which the agent makes at the latest
`LAZY_SYNC_S` later; a finished run removed before that needs no fsync at all.

Update log records are lines `<crc32, 8 hex digits> <JSON>\\n`, the JSON either
`{"type": "UPDATE", "status": TaskStatus}` or `{"type": "ACK", "uuid": base64}`.

Recovery. A torn last line (no newline: the agent died while appending) is dropped and
the file truncated to the last whole record, always (Mesos does the same); so is a tail
that starts with NUL bytes (the unwritten blocks of appends that were never synced). A complete
record that fails its checksum or does not parse, and any info file that does not
parse, is corruption: with `strict` (the default, as Mesos's --strict) recovery stops
with a RecoveryError naming the file, and the agent does not start; without it the
record and everything after it in that log is dropped (the log truncated there), a
corrupt info file drops what it describes, and each is reported as a warning. A
directory whose info file is missing was created by a write that never completed
(nothing was launched for it) and is skipped silently; leftover `.tmp` files likewise.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from agora.core.agent.checkpoint import (
    AckRecord,
    AgentRecord,
    CheckpointRecord,
    ForgetAgent,
    FrameworkRecord,
    LogEntry,
    RecoveredRun,
    RecoveredState,
    RecoveredTask,
    RunCompleted,
    RunPath,
    RunRecord,
    TaskRecord,
    UpdateRecord,
)
from agora.core.agent.model import ExecutorKind
from agora.core.errors import InvalidResource
from agora.core.master.info import AgentInfo, FrameworkInfo
from agora.core.resource_json import resources_from_json, resources_to_json
from agora.wire.agent_channel import (
    agent_info_from_json,
    agent_info_to_json,
    framework_from_json,
    framework_to_json,
    launch_from_json,
    launch_to_json,
)
from agora.wire.mesos_json import WireError, status_from_json, status_to_json

log = logging.getLogger("agora.agent.checkpoint")

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
LAZY_SYNC_S = 1.0  # acknowledgements are durable at most this much later
LATEST = "latest"
Json = dict[str, Any]


class RecoveryError(Exception):
    """A strict recovery found a corrupt checkpoint (the message names the file)."""


class CorruptRecordError(ValueError):
    """One checkpoint record is not what was written (bad checksum, JSON or shape)."""


# ------------------------------------------------------------------ boot id


def read_boot_id(path: str = BOOT_ID_PATH) -> str | None:
    """This boot's id (None where the host has none to read)."""
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None


# ------------------------------------------------------------------ the codec


def encode_entry(entry: LogEntry) -> bytes:
    """One update log line for an update or an acknowledgement."""
    if isinstance(entry, UpdateRecord):
        body: Json = {"type": "UPDATE", "status": status_to_json(entry.status)}
    else:
        body = {"type": "ACK", "uuid": base64.b64encode(entry.uuid).decode()}
    data = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return b"%08x %s\n" % (zlib.crc32(data), data)


def decode_entry(line: bytes, path: RunPath, task_id: str) -> LogEntry:
    """A log line (without its newline) back as a record; CorruptRecordError if it is not one."""
    crc, _, data = line.partition(b" ")
    try:
        if len(crc) != 8 or int(crc, 16) != zlib.crc32(data):
            raise CorruptRecordError("checksum mismatch")
        body = json.loads(data)
        if body.get("type") == "UPDATE":
            status = status_from_json(body.get("status"))
            if status.task_id != task_id or status.uuid is None:
                raise CorruptRecordError(f"not an update of task '{task_id}' with a uuid")
            return UpdateRecord(path, task_id, status)
        if body.get("type") == "ACK":
            return AckRecord(path, task_id, base64.b64decode(body["uuid"], validate=True))
        raise CorruptRecordError(f"unknown record type {body.get('type')!r}")
    except (ValueError, KeyError, TypeError, AttributeError, WireError) as error:
        raise CorruptRecordError(str(error)) from None


@dataclass
class LogRead:
    entries: list[LogEntry] = field(default_factory=list)
    good_bytes: int = 0  # the length of the whole records read
    torn: bool = False  # a partial last line was left out
    corrupt: str | None = None  # why reading stopped early


def read_log(data: bytes, path: RunPath, task_id: str) -> LogRead:
    """Decode an update log up to a torn tail or the first corrupt record."""
    result = LogRead()
    offset = 0
    while offset < len(data):
        end = data.find(b"\n", offset)
        if end < 0 or data[offset] == 0:
            result.torn = True
            break
        try:
            result.entries.append(decode_entry(data[offset:end], path, task_id))
        except CorruptRecordError as error:
            result.corrupt = f"record at byte {offset}: {error}"
            break
        offset = end + 1
        result.good_bytes = offset
    return result


def executor_info_json(record: RunRecord) -> Json:
    return {
        "kind": record.kind.value,
        "raw": dict(record.raw),
        "resources": resources_to_json(record.resources),
    }


def run_record_from_json(data: object, path: RunPath) -> RunRecord:
    if not isinstance(data, Mapping):
        raise CorruptRecordError("executor.info is not a JSON object")
    raw = data.get("raw")
    if not isinstance(raw, Mapping):
        raise CorruptRecordError("executor.info lacks 'raw'")
    try:
        kind = ExecutorKind(data.get("kind"))
    except ValueError:
        raise CorruptRecordError(f"unknown executor kind {data.get('kind')!r}") from None
    try:
        resources = resources_from_json(data.get("resources"), "executor.info resources")
    except InvalidResource as error:
        raise CorruptRecordError(str(error)) from None
    return RunRecord(path, kind, dict(raw), resources)


def task_info_json(record: TaskRecord) -> Json:
    return {
        "launch": launch_to_json(record.launch),
        "proc_id": record.proc_id,
        "group": record.group,
    }


def task_record_from_json(data: object, path: RunPath) -> TaskRecord:
    if not isinstance(data, Mapping) or not isinstance(data.get("launch"), Mapping):
        raise CorruptRecordError("task.info lacks 'launch'")
    proc_id = data.get("proc_id")
    group = data.get("group", 0)
    if proc_id is not None and not isinstance(proc_id, str):
        raise CorruptRecordError("task.info 'proc_id' must be a string")
    if not isinstance(group, int):
        raise CorruptRecordError("task.info 'group' must be an integer")
    try:
        launch = launch_from_json(data["launch"])
    except (KeyError, TypeError, AttributeError) as error:
        raise CorruptRecordError(f"task.info 'launch' is malformed: {error!r}") from None
    return TaskRecord(path, launch, proc_id, group)


# ------------------------------------------------------------------ durable files


def write_all(fd: int, data: bytes) -> None:
    """os.write until all of `data` is written (a regular file may take it in parts)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: str, data: bytes, sync_dir: bool = True) -> None:
    """Replace `path` with `data` atomically: a reader sees the old file or the new one,
    and after a crash the old one or the new one (the directory's fsync, which makes the
    rename durable, is the caller's when `sync_dir` is false)."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync_dir:
        fsync_dir(os.path.dirname(path))


def _component(value: str, what: str) -> str:
    """An id used as a path component (the master refuses such ids; this is a guard)."""
    if not value or value in (".", "..") or "/" in value or "\0" in value:
        raise ValueError(f"cannot checkpoint {what} {value!r}: not a valid path component")
    return value


class CheckpointStore:
    def __init__(self, work_dir: str, strict: bool = True) -> None:
        self.meta = os.path.join(os.path.abspath(work_dir), "meta")
        self.strict = strict
        self.agent_id: str | None = None
        self._appends: dict[str, int] = {}  # update logs written since the last sync
        self._dirs: set[str] = set()  # directories whose entries changed since then
        self.urgent = False  # a record written since the last sync must be durable first

    # ------------------------------------------------------------------ paths

    @property
    def agents_dir(self) -> str:
        return os.path.join(self.meta, "slaves")

    def agent_dir(self, agent_id: str) -> str:
        return os.path.join(self.agents_dir, _component(agent_id, "agent id"))

    def framework_dir(self, framework_id: str) -> str:
        if self.agent_id is None:
            raise ValueError("no agent id to checkpoint under yet")
        frameworks = os.path.join(self.agent_dir(self.agent_id), "frameworks")
        return os.path.join(frameworks, _component(framework_id, "framework id"))

    def executor_dir(self, path: RunPath) -> str:
        executor = _component(path.executor_id, "executor id")
        return os.path.join(self.framework_dir(path.framework_id), "executors", executor)

    def run_dir(self, path: RunPath) -> str:
        container = _component(path.container_id, "container id")
        return os.path.join(self.executor_dir(path), "runs", container)

    def task_dir(self, path: RunPath, task_id: str) -> str:
        return os.path.join(self.run_dir(path), "tasks", _component(task_id, "task id"))

    # ------------------------------------------------------------------ writing

    def write(self, record: CheckpointRecord) -> None:
        """Apply one record; it is durable after the next `sync()`."""
        self.urgent = self.urgent or not isinstance(record, AckRecord | RunCompleted)
        if isinstance(record, UpdateRecord | AckRecord):
            self._append(
                os.path.join(self.task_dir(record.path, record.task_id), "task.updates"),
                encode_entry(record),
            )
        elif isinstance(record, TaskRecord):
            directory = self.task_dir(record.path, record.launch.task_id)
            self._replace(os.path.join(directory, "task.info"), task_info_json(record))
        elif isinstance(record, RunRecord):
            executor = self.executor_dir(record.path)
            self._makedirs(self.run_dir(record.path))
            self._replace(os.path.join(executor, "executor.info"), executor_info_json(record))
            self._link(os.path.join(executor, "runs", LATEST), record.path.container_id)
        elif isinstance(record, FrameworkRecord):
            framework_id = record.info.id or ""
            directory = self.framework_dir(framework_id)
            self._replace(os.path.join(directory, "framework.info"), framework_to_json(record.info))
        elif isinstance(record, RunCompleted):
            self._remove_run(record.path)
        elif isinstance(record, AgentRecord):
            self._write_agent(record)
        elif isinstance(record, ForgetAgent):
            self._forget_agent(record.agent_id)

    def sync(self) -> None:
        """Make every record written since the last sync durable."""
        appends, self._appends = self._appends, {}
        dirs, self._dirs = self._dirs, set()
        self.urgent = False
        for fd in appends.values():
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
        for directory in sorted(dirs, key=len, reverse=True):
            with contextlib.suppress(FileNotFoundError):  # removed again since
                fsync_dir(directory)

    @property
    def pending(self) -> bool:
        return bool(self._appends or self._dirs)

    def _makedirs(self, path: str) -> None:
        missing = []
        head = path
        while not os.path.isdir(head):
            missing.append(head)
            head = os.path.dirname(head)
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory)
            self._dirs.add(os.path.dirname(directory))

    def _replace(self, path: str, value: object) -> None:
        """Replace an info file with `value` as JSON, atomically."""
        self._replace_bytes(path, json.dumps(value, separators=(",", ":"), sort_keys=True).encode())

    def _replace_bytes(self, path: str, data: bytes) -> None:
        directory = os.path.dirname(path)
        self._makedirs(directory)
        replace_file(path, data, sync_dir=False)
        self._dirs.add(directory)

    def _link(self, path: str, target: str) -> None:
        tmp = f"{path}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, path)
        self._dirs.add(os.path.dirname(path))

    def _append(self, path: str, line: bytes) -> None:
        fd = self._appends.get(path)
        if fd is None:
            self._makedirs(os.path.dirname(path))
            if not os.path.exists(path):
                self._dirs.add(os.path.dirname(path))
            fd = self._appends[path] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        write_all(fd, line)

    def _close_under(self, directory: str) -> None:
        prefix = directory + os.sep
        for path in [p for p in self._appends if p.startswith(prefix)]:
            os.close(self._appends.pop(path))

    def _remove_run(self, path: RunPath) -> None:
        run = self.run_dir(path)
        self._close_under(run)
        shutil.rmtree(run, ignore_errors=True)  # not synced: see "Durability" above
        runs = os.path.dirname(run)
        try:
            left = [n for n in os.listdir(runs) if n != LATEST and not n.endswith(".tmp")]
        except FileNotFoundError:
            return
        if not left:  # the executor's last run: its executor.info goes too
            shutil.rmtree(os.path.dirname(runs), ignore_errors=True)

    def _write_agent(self, record: AgentRecord) -> None:
        self.agent_id = record.agent_id
        directory = self.agent_dir(record.agent_id)
        self._replace(os.path.join(directory, "agent.info"), agent_info_to_json(record.info))
        self._link(os.path.join(self.agents_dir, LATEST), record.agent_id)

    def _forget_agent(self, agent_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.agents_dir, LATEST))
        directory = self.agent_dir(agent_id)
        self._close_under(directory)
        shutil.rmtree(directory, ignore_errors=True)
        self._dirs.add(self.agents_dir)
        if self.agent_id == agent_id:
            self.agent_id = None

    def forget_all(self) -> None:
        """`--recover=cleanup`: drop the agent id and everything checkpointed under it."""
        shutil.rmtree(self.agents_dir, ignore_errors=True)
        self.agent_id = None
        if os.path.isdir(self.meta):
            self._dirs.add(self.meta)
        self.sync()

    # ------------------------------------------------------------------ boot id

    def previous_boot_id(self) -> str | None:
        return read_boot_id(os.path.join(self.meta, "boot_id"))

    def save_boot_id(self, boot_id: str | None) -> None:
        if boot_id is not None:
            self._replace_bytes(os.path.join(self.meta, "boot_id"), boot_id.encode() + b"\n")
            self.sync()

    # ------------------------------------------------------------------ recovery

    def recover(self) -> RecoveredState:
        """Everything checkpointed under meta/slaves/latest (an empty state if none)."""
        reader = _Reader(self)
        state = reader.state()
        self.agent_id = state.agent_id
        return state


class _Reader:
    """One recovery pass: reads the tree, collecting warnings (or raising, when strict)."""

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store
        self.warnings: list[str] = []

    def problem(self, message: str) -> None:
        if self.store.strict:
            raise RecoveryError(f"{message} (start with --no-strict to recover what is left)")
        log.warning("checkpoint: %s", message)
        self.warnings.append(message)

    def json_file(self, path: str) -> object | None:
        """An info file's JSON; None when it is missing or (non-strict) corrupt."""
        try:
            with open(path, "rb") as f:
                data: object = json.loads(f.read())
                return data
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            self.problem(f"{path} is unreadable: {error}")
            return None

    def state(self) -> RecoveredState:
        store = self.store
        try:
            agent_id = os.readlink(os.path.join(store.agents_dir, LATEST))
        except OSError:
            return RecoveredState()
        store.agent_id = agent_id
        info_json = self.json_file(os.path.join(store.agent_dir(agent_id), "agent.info"))
        info: AgentInfo | None = None
        if info_json is not None:
            try:
                info = agent_info_from_json(info_json)
            except WireError as error:
                self.problem(f"agent.info of {agent_id}: {error}")
        frameworks: list[FrameworkInfo] = []
        runs: list[RecoveredRun] = []
        base = os.path.join(store.agent_dir(agent_id), "frameworks")
        for framework_id in _entries(base):
            framework = self.framework(os.path.join(base, framework_id), framework_id)
            if framework is not None:
                frameworks.append(framework)
                runs.extend(self.runs(framework_id))
        return RecoveredState(agent_id, info, tuple(frameworks), tuple(runs), tuple(self.warnings))

    def framework(self, directory: str, framework_id: str) -> FrameworkInfo | None:
        data = self.json_file(os.path.join(directory, "framework.info"))
        if data is None:
            return None
        try:
            info = framework_from_json(data)
        except WireError as error:
            self.problem(f"{directory}/framework.info: {error}")
            return None
        return info if info.id == framework_id else info.with_id(framework_id)

    def runs(self, framework_id: str) -> Iterator[RecoveredRun]:
        base = os.path.join(self.store.framework_dir(framework_id), "executors")
        for executor_id in _entries(base):
            runs_dir = os.path.join(base, executor_id, "runs")
            try:
                latest = os.readlink(os.path.join(runs_dir, LATEST))
            except OSError:
                latest = None
            data = self.json_file(os.path.join(base, executor_id, "executor.info"))
            if data is None:
                continue
            for container_id in _entries(runs_dir):
                path = RunPath(framework_id, executor_id, container_id)
                try:
                    record = run_record_from_json(data, path)
                except (CorruptRecordError, WireError) as error:
                    self.problem(f"{base}/{executor_id}/executor.info: {error}")
                    break
                tasks = tuple(self.tasks(path))
                yield RecoveredRun(record, tasks, latest=latest in (None, container_id))

    def tasks(self, path: RunPath) -> Iterator[RecoveredTask]:
        base = os.path.join(self.store.run_dir(path), "tasks")
        for task_id in _entries(base):
            directory = os.path.join(base, task_id)
            data = self.json_file(os.path.join(directory, "task.info"))
            if data is None:
                continue
            try:
                record = task_record_from_json(data, path)
            except (CorruptRecordError, WireError) as error:
                self.problem(f"{directory}/task.info: {error}")
                continue
            yield RecoveredTask(
                record, tuple(self.log(os.path.join(directory, "task.updates"), path, task_id))
            )

    def log(self, file: str, path: RunPath, task_id: str) -> list[LogEntry]:
        try:
            with open(file, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        read = read_log(data, path, task_id)
        if read.corrupt is not None:
            self.problem(f"{file}: {read.corrupt}; dropped it and the rest of the log")
        if read.torn:
            log.info("checkpoint: %s ends in a torn record; dropped it", file)
        if read.good_bytes < len(data):  # later appends must start on a whole record
            os.truncate(file, read.good_bytes)
        return read.entries


def _entries(directory: str) -> list[str]:
    """The subdirectories of `directory` (not `latest` links or `.tmp` leftovers)."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(
        n
        for n in names
        if n != LATEST and not n.endswith(".tmp") and os.path.isdir(os.path.join(directory, n))
    )
