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
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from builders import one_torch_thread

from medfed.data import DEFAULT_SITES, generate_federation, load_site
from medfed.deployment.evaluation import DEFAULT_HOLDOUT, holdout_split
from medfed.deployment.job import load_job
from medfed.deployment.site_builder import build_local_site
from medfed.models import build_model
from medfed.orchestration.grid import InMemoryGrid
from medfed.orchestration.loop import RoundPlan, run_rounds
from medfed.orchestration.site import cpu_weights
from medfed.provision import ProjectConfig, provision
from medfed.strategies.registry import STRATEGIES
from medfed.types import Weights

SITES = ["hospital_a", "hospital_b", "hospital_c"]


def free_port() -> int:
    """A port that was free a moment ago (bind to port 0, read, close)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_kits(
    directory: Path, port: int, sites: Sequence[str] = SITES, encryption: str | None = None
) -> Path:
    """Provisions a project on loopback under ``directory/kits``."""
    project = ProjectConfig(
        name="test", server={"host": "localhost", "port": port}, sites=list(sites), encryption=encryption
    )
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


@dataclass(frozen=True)
class Deployment:
    """A project provisioned on loopback, its sites' data, a job and the server's state folder."""

    port: int
    kits: Path
    data: dict[str, Path]
    job: Path
    state: Path

    def start_server(self, group: Processes, *, listening: bool = False) -> subprocess.Popen[bytes]:
        """Starts ``medfed server``; with ``listening``, returns once it listens."""
        server = group.start("server", *server_args(self.kits, self.job, self.state, self.port))
        if listening:
            wait_for(lambda: "listening" in group.log("server"), timeout=90, what="server start")
        return server

    def start_site(self, group: Processes, site: str, *flags: str) -> subprocess.Popen[bytes]:
        """Starts ``medfed client`` for ``site`` on its data, with extra ``flags``."""
        return group.start(site, *client_args(self.kits, site, self.data[site], self.port), *flags)

    def start_all(
        self, group: Processes, flags: dict[str, list[str]] | None = None
    ) -> dict[str, subprocess.Popen[bytes]]:
        """Starts the server, then every site that has data (``flags``: extra flags by site)."""
        started = {"server": self.start_server(group)}
        for site in self.data:
            started[site] = self.start_site(group, site, *(flags or {}).get(site, []))
        return started


def deploy(
    directory: Path,
    cases: dict[str, int] | None = None,
    *,
    provisioned: Sequence[str] | None = None,
    encryption: str | None = None,
    **job: object,
) -> Deployment:
    """Provisions ``provisioned`` sites (default: those in ``cases``, else ``SITES``) on a free port, makes
    tiny data with ``cases`` cases per site (none: hand-driven sites) and writes the job with
    ``job`` overrides, all under ``directory``."""
    port = free_port()
    kits = make_kits(directory, port, provisioned or list(cases or SITES), encryption)
    data = make_data(directory, cases) if cases else {}
    return Deployment(port, kits, data, write_job(directory / "job.yaml", **job), directory / "state")


def wait_all(
    group: Processes, started: dict[str, subprocess.Popen[bytes]], *, timeout: float, site_timeout: float = 30
) -> None:
    """Asserts that the server exits 0 within ``timeout`` s, then each site within ``site_timeout`` s."""
    for name, process in started.items():
        assert process.wait(timeout=timeout if name == "server" else site_timeout) == 0, group.log(name)


def in_process_run(job_path: Path, data: dict[str, Path], *, in_the_clear: bool = False) -> Weights:
    """The final global model of the same job run in process with the same ``LocalSite`` and
    ``run_rounds`` code, on the cases the sites train on (held-out cases excluded), without
    evaluation, on one thread like the processes; ``in_the_clear``: without secure aggregation
    or encryption."""
    job = load_job(job_path)
    site_job = job.site_job()
    if in_the_clear:
        plain = job.privacy.model_copy(update={"secure_aggregation": None, "encryption": None})
        site_job = site_job.model_copy(update={"privacy": plain})
    train = {
        name: holdout_split(load_site(name, path), DEFAULT_HOLDOUT, job.seed)[0]
        for name, path in data.items()
    }
    sites = {name: build_local_site(cases, site_job) for name, cases in train.items()}
    strategy = STRATEGIES.create(job.strategy.name, **job.strategy.params)
    state = strategy.init(cpu_weights(build_model(job.model.name, job.model.params, seed=job.seed)))
    plan = RoundPlan(
        rounds=job.federation.rounds, sites=sorted(sites), min_sites=job.federation.min_sites, seed=job.seed
    )
    with one_torch_thread():
        return run_rounds(strategy, state, plan, InMemoryGrid(sites)).weights
