"""A server and sites as real processes over mutual TLS on loopback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch
from deploy_procs import deploy, in_process_run, processes, wait_all, wait_for

from medfed.orchestration.checkpoint import checkpoint_path, load_checkpoint

pytestmark = pytest.mark.integration  # starts real medfed processes


def test_three_sites_over_mtls_match_an_in_process_run(tmp_path: Path) -> None:
    federation = deploy(
        tmp_path,
        {"hospital_a": 8, "hospital_b": 6, "hospital_c": 5},
        strategy={"name": "fedprox", "mu": 0.01},
    )
    with processes(tmp_path / "logs") as group:
        started = federation.start_all(group)
        expected = in_process_run(federation.job, federation.data)  # while the processes run
        wait_all(group, started, timeout=180)
    final = load_checkpoint(checkpoint_path(federation.state / "checkpoints", 3)).server
    assert final.round == 3
    assert sorted(final.weights) == sorted(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(final.weights[name], tensor, rtol=0, atol=1e-6, msg=name)
    assert "3 rounds trained here" in group.log("hospital_a")


def test_client_and_server_killed_mid_run(tmp_path: Path) -> None:
    federation = deploy(
        tmp_path,
        {"hospital_a": 4, "hospital_b": 4, "hospital_c": 64},
        federation={"rounds": 5, "min_sites": 2, "keep_last": None},
        round_timeout_s=8,
    )
    state = federation.state
    done = lambda round: checkpoint_path(state / "checkpoints", round).exists()  # noqa: E731
    with processes(tmp_path / "logs") as group:
        started = federation.start_all(group)
        # hospital_c (64 cases, slow) is killed while it trains round 2.
        wait_for(
            lambda: "round 2: training" in group.log("hospital_c"), timeout=120, interval=0.01, what="round 2"
        )
        group.kill(started["hospital_c"])
        wait_for(lambda: done(2), timeout=60, what="round 2 on quorum")
        started["hospital_c"] = federation.start_site(group, "hospital_c")
        wait_for(lambda: done(3), timeout=60, what="round 3")
        group.kill(started["server"])
        killed_after = max(round for round in range(3, 6) if done(round))
        started["server"] = federation.start_server(group)
        wait_all(group, started, timeout=150)
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
