"""A simulation with ``tracking:`` on logs its rounds to the log, TensorBoard and MLflow."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from builders import tiny_simulation

import medfed

CONFIG = tiny_simulation(
    data={"synthetic": {"cases_scale": 0.2}},
    model={"params": {"num_res_units": 0}},
    federation={"rounds": 2},
    baselines={"centralized": True},
    tracking={"tensorboard": True, "mlflow": True},
)


def test_every_round_reaches_the_log_and_both_trackers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with caplog.at_level(logging.INFO, logger="medfed.orchestration.round_log"):
        results = medfed.simulate({**CONFIG, "output_dir": str(tmp_path / "run")})
    lines = [line for line in caplog.messages if " round " in line]
    assert [line.split(":")[0] for line in lines] == [
        "fedavg round 1/2",
        "fedavg round 2/2",
        "centralized round 1/2",
        "centralized round 2/2",
    ]
    assert all("loss " in line and "dice " in line and "unseen dice " in line for line in lines)
    assert caplog.messages[0] == "experiment 1/2: fedavg (federated, 3 site(s))"
    assert caplog.messages[3].startswith("experiment 1/2: fedavg done in ")

    metrics = results.metrics
    dice = metrics[
        (metrics.experiment == "fedavg") & (metrics.site == "hospital_a") & (metrics.metric == "dice")
    ]
    events = EventAccumulator(str(results.run_dir / "tensorboard" / "fedavg"))
    events.Reload()
    written = events.Scalars("test/dice/hospital_a")
    assert [event.step for event in written] == list(dice["round"]) == [1, 2]
    assert [event.value for event in written] == pytest.approx(list(dice["value"]))

    client = MlflowClient(tracking_uri=(results.run_dir / "mlflow").as_uri())
    found = client.get_experiment_by_name("run")
    assert found is not None
    runs = {run.info.run_name: run for run in client.search_runs([found.experiment_id])}
    assert sorted(runs) == ["centralized", "fedavg"]
    assert runs["fedavg"].data.params["federation.rounds"] == "2"
    assert runs["fedavg"].data.metrics["test/dice/hospital_a"] == pytest.approx(dice["value"].iloc[-1])
