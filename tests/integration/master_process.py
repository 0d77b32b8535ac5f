"""A real `agora master` process on 127.0.0.1 with a dynamic port, for tests of the
master's own APIs, plus small raw-HTTP helpers that see exactly what clients see."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def wait_for(predicate: Any, timeout_s: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")


@contextmanager
def master_process(tmp: Path, *args: str) -> Iterator[str]:
    ready = tmp / "master.ready"
    log = (tmp / "master.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agora",
            "master",
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--work-dir",
            str(tmp / "master"),
            *args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:

        def ready_address() -> str | None:
            if process.poll() is not None:
                raise RuntimeError(f"master exited: {(tmp / 'master.log').read_text()}")
            if ready.exists():
                return str(json.loads(ready.read_text())["address"])
            return None

        yield wait_for(ready_address, 20.0, "the master to serve")
        assert process.poll() is None, (tmp / "master.log").read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def request(
    address: str,
    method: str,
    path: str,
    body: bytes | str | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    if isinstance(body, dict):
        body = json.dumps(body)
    all_headers = {"Content-Type": "application/json"} if body is not None else {}
    all_headers.update(headers or {})
    connection.request(method, path, body=body, headers=all_headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), data


def get_json(address: str, path: str) -> Any:
    status, _, data = request(address, "GET", path)
    assert status == 200, (status, data)
    return json.loads(data)


class RawStream:
    """A SUBSCRIBE stream read off the socket, de-chunked, records split by hand."""

    def __init__(self, address: str, body: dict[str, Any]) -> None:
        host, port = address.split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=10)
        self.connection.request(
            "POST",
            "/api/v1/scheduler",
            body=json.dumps(body),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.stream_id = self.response.getheader("Mesos-Stream-Id")
        self.chunked = self.response.getheader("Transfer-Encoding") == "chunked"
        self.buffer = b""

    def next_record(self, timeout_s: float = 10.0) -> bytes:
        """One raw record: asserts the exact framing `<length>\\n<payload>`."""
        deadline = time.monotonic() + timeout_s
        while True:
            newline = self.buffer.find(b"\n")
            if newline > 0:
                length = int(self.buffer[:newline])
                end = newline + 1 + length
                if len(self.buffer) >= end:
                    record, self.buffer = self.buffer[newline + 1 : end], self.buffer[end:]
                    return record
            if time.monotonic() > deadline:
                raise TimeoutError("no complete record")
            chunk = self.response.read1(65536)
            if not chunk:
                raise EOFError("stream closed")
            self.buffer += chunk

    def next_event(self, skip_heartbeats: bool = True, timeout_s: float = 10.0) -> Any:
        while True:
            event = json.loads(self.next_record(timeout_s))
            if not (skip_heartbeats and event["type"] == "HEARTBEAT"):
                return event

    def wait_event(self, kind: str, timeout_s: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            event = self.next_event(timeout_s=max(0.1, deadline - time.monotonic()))
            if event["type"] == kind:
                return event

    def close(self) -> None:
        self.connection.close()


def call(
    address: str, stream: RawStream, framework_id: str, body: dict[str, Any]
) -> tuple[int, bytes]:
    body = {"framework_id": {"value": framework_id}, **body}
    status, _, data = request(
        address,
        "POST",
        "/api/v1/scheduler",
        body,
        {"Mesos-Stream-Id": stream.stream_id or ""},
    )
    return status, data
