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
import pytest

from agora.testing.cluster import wait_until
from agora.testing.zookeeper import missing_zookeeper


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


@pytest.mark.skipif(missing_zookeeper() is not None, reason=str(missing_zookeeper()))
def test_local_ha_runs_three_masters_and_zookeeper(tmp_path: Path) -> None:
    work_dir = str(tmp_path / "local")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agora",
            "local",
            "--ha",
            "--port",
            "0",
            "--agents",
            "1",
            "--work-dir",
            work_dir,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        wait_until(
            lambda: any("press Ctrl-C" in line for line in lines) or process.poll() is not None,
            120.0,
            "agora local --ha to start",
        )
        text = "".join(lines)
        assert process.poll() is None, text
        masters = re.findall(r"master\s+(\S+:\d+)", text)
        zk = re.search(r"zookeeper\s+(zk://\S+)", text)
        assert len(masters) == 3 and zk, text
        run = [sys.executable, "-m", "agora", "run", "--master", zk.group(1), "--", "echo", "ha"]
        result = subprocess.run(run, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0 and "ha" in result.stdout, result
        children = psutil.Process(process.pid).children(recursive=True)
        assert any("zookeeper" in " ".join(c.cmdline()) for c in children)
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0, "".join(lines)
        _gone, alive = psutil.wait_procs(children, timeout=15)
        assert alive == [], alive
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
