"""A reliable status update stream per task (Mesos's task status update manager).

Updates of one task reach the master strictly in order: only the head of the queue is in
flight, retried every 10 s, doubling up to 10 min, until an acknowledgement carrying its
uuid arrives; later updates wait behind it. While the master connection is down the
stream is paused (no retries); on reconnection the head goes out at once.

A checkpointing framework's streams are rebuilt after an agent restart by `replay`:
the updates the stream accepted and the acknowledgements it matched, in their order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from agora.core.master.info import TaskStatus

RETRY_MIN_S = 10.0
RETRY_MAX_S = 600.0


class StatusStream:
    __slots__ = (
        "framework_id",
        "task_id",
        "pending",
        "interval_s",
        "retry_deadline",
        "seen",
        "closed",
    )

    def __init__(self, framework_id: str, task_id: str) -> None:
        self.framework_id = framework_id
        self.task_id = task_id
        self.pending: deque[TaskStatus] = deque()
        self.interval_s = RETRY_MIN_S
        self.retry_deadline: float | None = None  # set while the head is in flight
        self.seen: set[bytes] = set()  # uuids received (duplicates are dropped)
        self.closed = False  # the terminal update was acknowledged

    @classmethod
    def replay(
        cls, framework_id: str, task_id: str, entries: Iterable[TaskStatus | bytes]
    ) -> StatusStream:
        """The stream that saw these updates (TaskStatus) and acknowledgements (a uuid),
        paused: nothing is in flight until `resume`."""
        stream = cls(framework_id, task_id)
        for entry in entries:
            if isinstance(entry, TaskStatus):
                stream.push(entry, 0.0, connected=False)
            else:
                stream.acknowledge(entry, 0.0, connected=False)
        return stream

    @property
    def head(self) -> TaskStatus | None:
        return self.pending[0] if self.pending else None

    def push(self, status: TaskStatus, now: float, connected: bool) -> TaskStatus | None:
        """Queue an update; return it when it should be sent now (it is the new head)."""
        if status.uuid is None:
            raise ValueError("a reliable status update needs a uuid")
        if self.closed or status.uuid in self.seen:
            return None
        self.seen.add(status.uuid)
        self.pending.append(status)
        if len(self.pending) == 1 and connected:
            return self._send(now, reset=True)
        return None

    def acknowledge(
        self, uuid: bytes, now: float, connected: bool
    ) -> tuple[bool, TaskStatus | None]:
        """Match an acknowledgement against the head. Returns (matched, next update to
        send now); an unexpected uuid is ignored."""
        head = self.head
        if head is None or head.uuid != uuid:
            return False, None
        self.pending.popleft()
        self.retry_deadline = None
        if head.state.is_terminal:
            self.closed = True
            self.pending.clear()
            return True, None
        if self.pending and connected:
            return True, self._send(now, reset=True)
        return True, None

    def due(self, now: float) -> TaskStatus | None:
        """The head again if its retry deadline has passed (the interval doubles)."""
        if self.retry_deadline is None or self.retry_deadline > now or not self.pending:
            return None
        self.interval_s = min(self.interval_s * 2, RETRY_MAX_S)
        return self._send(now, reset=False)

    def pause(self) -> None:
        self.retry_deadline = None

    def resume(self, now: float) -> TaskStatus | None:
        """The connection is back: the head, if any, goes out at once."""
        if not self.pending:
            return None
        return self._send(now, reset=True)

    def _send(self, now: float, reset: bool) -> TaskStatus:
        if reset:
            self.interval_s = RETRY_MIN_S
        self.retry_deadline = now + self.interval_s
        return self.pending[0]
