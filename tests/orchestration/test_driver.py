"""The driver around the round loop: the same rows in simulation and deployment, splits that
round-trip through ``metrics.sqlite``, and one resume for both."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch
from builders import tiny_simulation

from medfed.config.loading import parse_config
from medfed.deployment.job import JobConfig
from medfed.deployment.server import initial_state, round_recorder
from medfed.errors import CheckpointError
from medfed.orchestration.driver import RoundRecorder, RunRecords, training_rows
from medfed.orchestration.experiments import plan_experiments
from medfed.orchestration.federation_data import prepare_data
from medfed.orchestration.grid import InMemoryGrid
from medfed.orchestration.metrics_log import MetricRow, MetricsLog, Split
from medfed.orchestration.simulation import ExperimentRunner
from medfed.strategies import FedAvg
from medfed.types import ServerState, SiteState, TrainResult

TINY = tiny_simulation(
    data={"synthetic": {"image_size": 32, "cases_scale": 0.3}},
    training={"local_epochs": 2, "batch_size": 8},
    federation={"rounds": 3, "evaluate_every": 0},
)
WEIGHTS = {"w": torch.ones(2)}


def _results() -> list[TrainResult]:
    """Round 1 of two sites; the second reports the epsilon a DP-SGD site spent."""
    return [
        TrainResult("hospital_a", 1, WEIGHTS, num_samples=7, metrics={"loss": 0.5, "steps": 3.0}),
        TrainResult("hospital_b", 1, WEIGHTS, num_samples=4, metrics={"loss": 0.25, "epsilon": 1.5}),
    ]


def _stored(directory: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(directory / "metrics.sqlite") as db:
        return db.execute("SELECT site, split, metric, value FROM metrics ORDER BY site, metric").fetchall()


def test_training_rows_hold_num_samples_and_put_epsilon_under_privacy() -> None:
    rows = {(row.site, row.metric): row for row in training_rows("fedavg", 1, _results())}
    assert (
        rows["hospital_a", "num_samples"].value == 7.0
        and rows["hospital_a", "num_samples"].split is Split.TRAIN
    )
    assert (
        rows["hospital_b", "epsilon"].split is Split.PRIVACY
        and rows["hospital_b", "loss"].split is Split.TRAIN
    )
    assert len(rows) == 6


def test_the_same_results_give_the_same_rows_in_simulation_and_deployment(tmp_path: Path) -> None:
    config = parse_config({**TINY, "output_dir": str(tmp_path / "sim")})
    data = prepare_data(config.data, tmp_path / "data", seed=config.seed)
    runner = ExperimentRunner(config, data, tmp_path / "sim")
    experiment = plan_experiments(config, data)[0]
    simulated = RunRecords("run", runner.metrics, tmp_path / "sim" / "checkpoints")
    no_sites = InMemoryGrid({})
    runner.recorder(simulated, experiment, no_sites, runner.new_model())(ServerState(1, WEIGHTS), _results())

    job = JobConfig(name="run", federation={"rounds": 3, "evaluate_every": 0})  # type: ignore[arg-type]
    deployed = RunRecords("run", MetricsLog(tmp_path / "dep"), tmp_path / "dep" / "checkpoints")
    round_recorder(job, FedAvg(), deployed, evaluate=lambda state: {})(ServerState(1, WEIGHTS), _results())

    assert _stored(tmp_path / "sim") == _stored(tmp_path / "dep")
    assert ("hospital_b", "privacy", "epsilon", 1.5) in _stored(tmp_path / "dep")
    assert ("hospital_a", "train", "num_samples", 7.0) in _stored(tmp_path / "sim")


def test_every_split_round_trips_through_metrics_sqlite(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    log.record_round("run", 1, [MetricRow("run", 1, "a", split, "m", 1.0) for split in Split])
    assert [row.split for row in log.rows()] == sorted(Split, key=lambda split: split.value)
    assert all(type(row.split) is Split for row in log.rows())
    with sqlite3.connect(tmp_path / "metrics.sqlite") as db:
        db.execute(
            "INSERT INTO metrics (experiment, round, site, split, metric, value) "
            "VALUES ('run', 2, 'a', 'bogus', 'm', 1.0)"
        )
    with pytest.raises(CheckpointError, match="bogus"):
        log.rows()


def _recorded_run(directory: Path) -> RunRecords:
    """A run killed after writing round 3's rows but before its checkpoint."""
    records = RunRecords("run", MetricsLog(directory), directory / "checkpoints", metadata={"job": "run"})
    recorder = RoundRecorder(records, sites=lambda: {"a": SiteState(weights={"bn": torch.zeros(1)})})
    for round in (1, 2):
        recorder(ServerState(round, {"w": torch.full((2,), float(round))}), _results())
    records.metrics.record_round("run", 3, [MetricRow("run", 3, "a", Split.TRAIN, "loss", 0.1)])
    return records


def test_resume_returns_the_last_checkpoint_and_drops_later_rows(tmp_path: Path) -> None:
    records = _recorded_run(tmp_path)
    resumed = records.resume()
    assert resumed is not None and resumed.server.round == 2
    assert torch.equal(resumed.server.weights["w"], torch.full((2,), 2.0))
    assert torch.equal(resumed.sites["a"].weights["bn"], torch.zeros(1))
    assert resumed.metadata["participants"] == "hospital_a,hospital_b" and resumed.metadata["job"] == "run"
    assert max(row.round for row in records.metrics.rows()) == 2


def test_a_server_and_a_simulation_resume_the_same_way(tmp_path: Path) -> None:
    records = _recorded_run(tmp_path)
    job = JobConfig(name="run", model={"params": {"channels": [4, 8], "strides": [2]}})  # type: ignore[arg-type]
    state = initial_state(job, FedAvg(), records)
    assert state.round == 2 and torch.equal(state.weights["w"], torch.full((2,), 2.0))
    assert max(row.round for row in records.metrics.rows()) == 2
    fresh = RunRecords("run", MetricsLog(tmp_path / "fresh"), tmp_path / "fresh" / "checkpoints")
    assert initial_state(job, FedAvg(), fresh).round == 0


def test_no_checkpoint_is_written_for_a_round_whose_rows_failed(tmp_path: Path) -> None:
    def broken(state: ServerState, results: list[TrainResult]) -> list[MetricRow]:
        raise RuntimeError("evaluation crashed")

    records = RunRecords("run", MetricsLog(tmp_path), tmp_path / "checkpoints")
    with pytest.raises(RuntimeError):
        RoundRecorder(records, sources=[broken])(ServerState(1, WEIGHTS), _results())
    assert records.resume() is None and records.metrics.rows() == []


def test_only_the_newest_keep_last_checkpoints_are_kept(tmp_path: Path) -> None:
    records = RunRecords("run", MetricsLog(tmp_path), tmp_path / "checkpoints", keep_last=2)
    for round in (1, 2, 3):
        RoundRecorder(records)(ServerState(round, WEIGHTS), _results())
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == [
        "round_0002.safetensors",
        "round_0003.safetensors",
    ]
