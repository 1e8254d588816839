"""Federated evaluation over the gRPC deployment: real processes, mutual TLS."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from deploy_procs import SITES, deploy, processes, wait_all

from medfed.deployment.status import read_status

pytestmark = pytest.mark.integration  # starts real medfed processes

ROUNDS = 2
CASES = {"hospital_a": 8, "hospital_b": 6, "hospital_c": 5}
HOLDOUT = {"hospital_c": ["--holdout", "0.4"]}  # the others keep the default, 0.2
# Training cases: 8 - round(1.6) = 6, 6 - round(1.2) = 5, 5 - round(2.0) = 3.
TRAINING_CASES = {"hospital_a": 6, "hospital_b": 5, "hospital_c": 3}


def test_every_site_evaluates_each_global_model_on_held_out_cases_that_never_train(tmp_path: Path) -> None:
    federation = deploy(tmp_path, CASES, federation={"rounds": ROUNDS, "min_sites": 2, "evaluate_every": 1})
    state = federation.state
    with processes(tmp_path / "logs") as group:
        wait_all(group, federation.start_all(group, HOLDOUT), timeout=180)  # 2 ledger steps a round too
    with sqlite3.connect(state / "metrics.sqlite") as db:
        dice = db.execute(
            "SELECT round, site, value FROM metrics WHERE split = 'eval' AND metric = 'dice'"
        ).fetchall()
        samples = db.execute(
            "SELECT round, site, value FROM metrics WHERE split = 'train' AND metric = 'num_samples'"
        ).fetchall()
    assert sorted((round, site) for round, site, _ in dice) == [
        (r, s) for r in range(1, ROUNDS + 1) for s in SITES
    ]
    assert all(0.0 <= value <= 1.0 for _, _, value in dice), dice
    assert {(round, site): value for round, site, value in samples} == {
        (r, s): TRAINING_CASES[s] for r in range(1, ROUNDS + 1) for s in SITES
    }
    assert "training on 3 cases, 2 held out for evaluation" in group.log("hospital_c")
    history = read_status(state).history
    assert [row.round for row in history] == [1, 2] and all(
        0 <= row.metrics["eval_dice"] <= 1 for row in history
    )
    assert "metrics refused" not in "".join(group.log(site) for site in SITES)
    report = (state / "report.html").read_text()
    assert "<h1>test</h1>" in report and "on each site's held-out cases" in report
    assert report.count("data:image/png;base64,") == 2  # held-out dice, training loss per site
    assert "<th>hd95</th>" in report  # after the last round only: a column, no curve
    assert "<strong>Status:</strong> finished: 2 of 2 rounds done" in report
    assert "Final round: the global model on each site's held-out cases" in report
    assert "name: test" in (state / "job.yaml").read_text()
