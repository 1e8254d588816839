"""Helpers for tests that run real ``medfed`` processes on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import yaml

from medfed.data import DEFAULT_SITES, generate_federation
from medfed.provision import ProjectConfig, provision

SITES = ["hospital_a", "hospital_b", "hospital_c"]


def free_port() -> int:
    """A port that was free a moment ago (bind to port 0, read, close)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_kits(directory: Path, port: int, sites: Sequence[str] = SITES) -> Path:
    """Provisions a project on loopback under ``directory/kits``."""
    project = ProjectConfig(name="test", server={"host": "localhost", "port": port}, sites=list(sites))
    provision(project, directory / "kits")
    return directory / "kits"


def make_data(directory: Path, cases: dict[str, int]) -> dict[str, Path]:
    """Tiny synthetic sites (16x16, 2-D) with the given number of cases."""
    sites = [replace(site, num_cases=cases[site.name]) for site in DEFAULT_SITES if site.name in cases]
    return generate_federation(sites, directory / "data", image_size=16, dims=2, seed=0)


def write_job(path: Path, **overrides: object) -> Path:
    job = {
        "name": "test",
        "seed": 5,
        "model": {"name": "unet", "params": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
        "training": {"local_epochs": 1, "batch_size": 4, "lr": 0.01},
        "federation": {"rounds": 3, "min_sites": 2},
        "round_timeout_s": 120,
        "poll_s": 1,
        "max_round_attempts": 100,
    }
    job.update(overrides)
    path.write_text(yaml.safe_dump(job))
    return path


class Processes:
    """Starts ``medfed`` commands with their output in log files; kills them all at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-c", "from medfed.cli.app import main; main()", *args]
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.running.append(process)
        return process

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def kill_all(self) -> None:
        for process in self.running:
            self.kill(process)


@contextmanager
def processes(logs: Path) -> Iterator[Processes]:
    group = Processes(logs)
    try:
        yield group
    finally:
        group.kill_all()


def wait_for(
    condition: Callable[[], object], *, timeout: float, interval: float = 0.05, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


def server_args(kits: Path, job: Path, state: Path, port: int) -> list[str]:
    return [
        "server",
        "--kit",
        str(kits / "server"),
        "--job",
        str(job),
        "--state-dir",
        str(state),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def client_args(kits: Path, site: str, data: Path, port: int) -> list[str]:
    """A site's command; its own files go to ``<kits>/../site-state/<site>``."""
    return [
        "client",
        "--kit",
        str(kits / site),
        "--data",
        str(data),
        "--server",
        f"127.0.0.1:{port}",
        "--max-backoff",
        "1",
        "--max-failures",
        "200",
        "--state-dir",
        str(site_state_dir(kits, site)),
    ]


def site_state_dir(kits: Path, site: str) -> Path:
    return kits.parent / "site-state" / site
