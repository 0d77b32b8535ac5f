"""The peer for bench/throughput.py: tuned Slurm on this host, run side by side.

    python bench/slurm_peer.py [--jobs 500] [--repeat 3] [--json]

Starts slurmctld and slurmd (Debian's slurm-wlm; `--install` apt-installs it) with a
private config in a temporary directory, tuned as far as Slurm allows for short jobs
(`batch_sched_delay=0,sched_min_interval=0`, 32 CPUs declared so jobs are not held back by
the 2 real cores), submits one job array of `true` jobs and times submission to the last
job leaving the queue. Prints jobs/s (median of `--repeat` runs); with `--json` the last
line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PACKAGES = ["slurmctld", "slurmd", "slurm-client"]

CONFIG = """\
ClusterName=agorabench
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=300
MaxArraySize=100001
MaxJobCount=200000
NodeName={host} NodeAddr=127.0.0.1 CPUs=32 RealMemory=20000 State=UNKNOWN
PartitionName=bench Nodes={host} Default=YES MaxTime=INFINITE State=UP
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SlurmdParameters=config_overrides
"""


class SlurmUnavailableError(RuntimeError):
    pass


def ensure_installed(install: bool) -> None:
    if all(shutil.which(b) for b in ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo")):
        return
    if not install:
        raise SlurmUnavailableError(
            "Slurm is not installed: apt-get install slurmctld slurmd slurm-client "
            "(or pass --install)"
        )
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SlurmUnavailableError(f"timed out waiting for {what}")
        time.sleep(0.1)


@contextmanager
def slurm_cluster() -> Iterator[dict[str, str]]:
    """slurmctld + slurmd on 127.0.0.1 with a private config; yields the environment."""
    directory = Path(tempfile.mkdtemp(prefix="agora-slurm-"))
    for sub in ("state", "spool"):
        (directory / sub).mkdir()
    conf = directory / "slurm.conf"
    conf.write_text(
        CONFIG.format(
            host=socket.gethostname(),
            dir=directory,
            ctld_port=_free_port(),
            slurmd_port=_free_port(),
        )
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    daemons = [
        subprocess.Popen(
            [daemon, "-D", "-f", str(conf), *(["-i"] if daemon == "slurmctld" else [])],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for daemon in ("slurmctld", "slurmd")
    ]
    try:

        def idle() -> bool:
            out = subprocess.run(
                ["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True, check=False
            ).stdout
            return out.strip().startswith("idle")

        _wait(idle, 30.0, "the Slurm node to be idle")
        yield env
    finally:
        for process in daemons:
            os.killpg(process.pid, signal.SIGTERM)
        for process in daemons:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def run_jobs(env: dict[str, str], jobs: int) -> float:
    """Seconds from submitting a `true` job array of `jobs` to an empty queue."""
    start = time.perf_counter()
    subprocess.run(
        ["sbatch", "-Q", "-o", "/dev/null", f"--array=1-{jobs}", "--wrap", "true"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )

    def drained() -> bool:
        out = subprocess.run(
            ["squeue", "-h"], env=env, capture_output=True, text=True, check=False
        ).stdout
        return not out.strip()

    _wait(drained, max(120.0, jobs), "the Slurm queue to drain")
    return time.perf_counter() - start


def measure(jobs: int, repeat: int, install: bool = False) -> dict[str, Any]:
    ensure_installed(install)
    with slurm_cluster() as env:
        rates = [jobs / run_jobs(env, jobs) for _ in range(repeat)]
    return {
        "slurm_jobs_per_s": statistics.median(rates),
        "slurm_runs": rates,
        "slurm_jobs": jobs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--install", action="store_true", help="apt-get install Slurm")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.jobs, args.repeat, args.install)
    if args.json:
        print(json.dumps(result))
    else:
        runs = ", ".join(f"{r:.1f}" for r in result["slurm_runs"])
        print(
            f"Slurm: {result['slurm_jobs_per_s']:.1f} jobs/s median "
            f"({args.jobs} x true as one array; runs {runs})"
        )


if __name__ == "__main__":
    main()
