"""A server and sites as real processes over mutual TLS on loopback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch
from deploy_procs import (
    SITES,
    client_args,
    free_port,
    make_data,
    make_kits,
    processes,
    server_args,
    wait_for,
    write_job,
)

from medfed.data import load_site
from medfed.deployment.evaluation import DEFAULT_HOLDOUT, holdout_split
from medfed.deployment.job import load_job
from medfed.deployment.site_builder import build_local_site
from medfed.models import build_model
from medfed.orchestration.checkpoint import checkpoint_path, load_checkpoint
from medfed.orchestration.grid import InMemoryGrid
from medfed.orchestration.loop import RoundPlan, run_rounds
from medfed.orchestration.site import cpu_weights
from medfed.strategies.registry import STRATEGIES

pytestmark = pytest.mark.integration  # starts real medfed processes


def _reference(job_path: Path, data: dict[str, Path]) -> dict[str, torch.Tensor]:
    """The same job run in process with the same LocalSite and run_rounds code, on the cases
    the sites train on (held-out cases excluded), without evaluation."""
    job = load_job(job_path)
    train = {
        name: holdout_split(load_site(name, path), DEFAULT_HOLDOUT, job.seed)[0]
        for name, path in data.items()
    }
    sites = {name: build_local_site(cases, job.site_job()) for name, cases in train.items()}
    strategy = STRATEGIES.create(job.strategy.name, **job.strategy.params)
    state = strategy.init(cpu_weights(build_model(job.model.name, job.model.params, seed=job.seed)))
    plan = RoundPlan(
        rounds=job.federation.rounds, sites=sorted(sites), min_sites=job.federation.min_sites, seed=job.seed
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_rounds(strategy, state, plan, InMemoryGrid(sites)).weights
    finally:
        torch.set_num_threads(threads)


def test_three_sites_over_mtls_match_an_in_process_run(tmp_path: Path) -> None:
    port = free_port()
    kits = make_kits(tmp_path, port)
    data = make_data(tmp_path, {"hospital_a": 8, "hospital_b": 6, "hospital_c": 5})
    job = write_job(tmp_path / "job.yaml", strategy={"name": "fedprox", "mu": 0.01})
    state = tmp_path / "state"
    with processes(tmp_path / "logs") as group:
        server = group.start("server", *server_args(kits, job, state, port))
        clients = [group.start(site, *client_args(kits, site, data[site], port)) for site in SITES]
        expected = _reference(job, data)
        assert server.wait(timeout=180) == 0, group.log("server")
        for site, client in zip(SITES, clients, strict=False):
            assert client.wait(timeout=30) == 0, group.log(site)
    final = load_checkpoint(checkpoint_path(state / "checkpoints", 3)).server
    assert final.round == 3
    assert sorted(final.weights) == sorted(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(final.weights[name], tensor, rtol=0, atol=1e-6, msg=name)
    assert "3 rounds trained here" in group.log("hospital_a")


def test_client_and_server_killed_mid_run(tmp_path: Path) -> None:
    port = free_port()
    kits = make_kits(tmp_path, port)
    data = make_data(tmp_path, {"hospital_a": 4, "hospital_b": 4, "hospital_c": 64})
    job = write_job(
        tmp_path / "job.yaml", federation={"rounds": 5, "min_sites": 2, "keep_last": None}, round_timeout_s=8
    )
    state = tmp_path / "state"
    done = lambda round: checkpoint_path(state / "checkpoints", round).exists()  # noqa: E731
    with processes(tmp_path / "logs") as group:
        server = group.start("server", *server_args(kits, job, state, port))
        clients = {site: group.start(site, *client_args(kits, site, data[site], port)) for site in SITES}
        # hospital_c (64 cases, slow) is killed while it trains round 2.
        wait_for(
            lambda: "round 2: training" in group.log("hospital_c"), timeout=120, interval=0.01, what="round 2"
        )
        group.kill(clients["hospital_c"])
        wait_for(lambda: done(2), timeout=60, what="round 2 on quorum")
        clients["hospital_c"] = group.start(
            "hospital_c", *client_args(kits, "hospital_c", data["hospital_c"], port)
        )
        wait_for(lambda: done(3), timeout=60, what="round 3")
        group.kill(server)
        killed_after = max(round for round in range(3, 6) if done(round))
        server = group.start("server", *server_args(kits, job, state, port))
        assert server.wait(timeout=150) == 0, group.log("server")
        for site, client in clients.items():
            assert client.wait(timeout=30) == 0, group.log(site)
    participants = {
        round: load_checkpoint(checkpoint_path(state / "checkpoints", round))
        .metadata["participants"]
        .split(",")
        for round in range(1, 6)
    }
    assert "hospital_c" not in participants[2]
    assert sorted(participants[2]) == ["hospital_a", "hospital_b"]
    assert any("hospital_c" in participants[round] for round in (3, 4, 5)), participants
    with sqlite3.connect(state / "metrics.sqlite") as db:
        rows = db.execute(
            "SELECT round, site, COUNT(*) FROM metrics WHERE metric = 'loss' GROUP BY round, site"
        ).fetchall()
    assert {round for round, _, _ in rows} == {1, 2, 3, 4, 5}
    assert all(count == 1 for _, _, count in rows)
    assert {(round, site) for round, site, _ in rows} == {
        (r, s) for r, sites in participants.items() for s in sites
    }
    assert f"resuming after round {killed_after}" in group.log("server")
