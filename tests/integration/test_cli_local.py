"""`agora local` starts a real master and agents, serves until Ctrl-C, and leaves nothing."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from agora.testing.cluster import wait_until


def test_local_serves_until_ctrl_c_and_leaves_no_processes(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agora",
            "local",
            "--port",
            "0",
            "--agents",
            "2",
            "--work-dir",
            str(tmp_path / "local"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(
            lambda: any("press Ctrl-C" in line for line in lines) or process.poll() is not None,
            90.0,
            "agora local to start",
        )
        assert process.poll() is None, "".join(lines)
        text = "".join(lines)
        master = re.search(r"master\s+(\S+:\d+)", text)
        assert master, text
        address = master.group(1)
        with urllib.request.urlopen(f"http://{address}/master/state", timeout=5) as response:
            state = json.loads(response.read())
        assert len(state["slaves"]) == 2
        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) >= 3
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0, "".join(lines)
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], alive
        assert "stopped" in "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
