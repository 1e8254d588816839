"""TensorBoard and MLflow trackers: what they write is read back with the trackers' own readers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from medfed.config.schema import TrackingConfig
from medfed.errors import ConfigError
from medfed.orchestration.experiments import Experiment
from medfed.orchestration.metrics_log import MetricRow
from medfed.strategies.fedavg import FedAvg
from medfed.tracking.trackers import check_trackers, flat_settings, metric_key, open_trackers

EXPERIMENTS = [
    Experiment("fedavg", "federated", FedAvg(), {}),
    Experiment("fedbn", "federated", FedAvg(), {}),
]


def _rows(experiment: str, round: int) -> list[MetricRow]:
    return [
        MetricRow(experiment, round, "hospital_a", "test", "dice", 0.1 * round),
        MetricRow(experiment, round, "hospital_a", "train", "loss", 1.0 / round),
    ]


def _track(directory: Path, config: TrackingConfig) -> None:
    trackers = open_trackers(config, directory, {"federation.rounds": "2"})
    for experiment in EXPERIMENTS:
        for tracker in trackers:
            tracker.callbacks().on_experiment(experiment, 0)  # type: ignore[misc]
        for round in (1, 2):
            for tracker in trackers:
                tracker.callbacks().on_recorded(experiment.name, round, _rows(experiment.name, round))  # type: ignore[misc]
    for tracker in trackers:
        tracker.close()


def test_tensorboard_writes_a_scalar_per_row_and_round(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _track(tmp_path, TrackingConfig(tensorboard=True))
    for experiment in ("fedavg", "fedbn"):
        events = EventAccumulator(str(tmp_path / "tensorboard" / experiment))
        events.Reload()
        scalars = events.Scalars("test/dice/hospital_a")
        assert [(event.step, round(event.value, 6)) for event in scalars] == [(1, 0.1), (2, 0.2)]
        assert [event.value for event in events.Scalars("train/loss/hospital_a")] == [1.0, 0.5]
    assert not (tmp_path / "mlflow").exists()


def test_mlflow_writes_a_run_per_experiment_to_a_local_file_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # the tracker opts in itself

    _track(tmp_path, TrackingConfig(mlflow=True))
    client = MlflowClient(tracking_uri=(tmp_path / "mlflow").as_uri())
    found = client.get_experiment_by_name(tmp_path.name)
    assert found is not None
    runs = {run.info.run_name: run for run in client.search_runs([found.experiment_id])}
    assert sorted(runs) == ["fedavg", "fedbn"]
    run = runs["fedbn"]
    assert run.info.status == "FINISHED" and run.data.params == {"federation.rounds": "2"}
    history = client.get_metric_history(run.info.run_id, "test/dice/hospital_a")
    assert [(metric.step, round(metric.value, 6)) for metric in history] == [(1, 0.1), (2, 0.2)]
    assert not (tmp_path / "tensorboard").exists()


def test_a_tracker_without_its_package_is_one_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "mlflow" else real(name))
    check_trackers(TrackingConfig(tensorboard=True))
    with pytest.raises(
        ConfigError, match=r"tracking.mlflow needs the 'mlflow' package: pip install 'medfed\[mlflow\]'"
    ):
        check_trackers(TrackingConfig(mlflow=True))


def test_names_and_settings_for_the_trackers() -> None:
    assert metric_key(MetricRow("x", 1, "site_b", "unseen-adabn", "dice", 0.5)) == "unseen-adabn/dice/site_b"
    assert flat_settings({"seed": 0, "federation": {"rounds": 3}, "strategies": [{"name": "fedavg"}]}) == {
        "seed": "0",
        "federation.rounds": "3",
        "strategies": "[{'name': 'fedavg'}]",
    }
