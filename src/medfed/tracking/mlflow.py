"""A local MLflow file store (no server): one MLflow experiment per run directory, one MLflow
run per medfed experiment, one metric per ``split/metric/site`` with the round as the step
(``MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri RUN/mlflow``)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from medfed.orchestration.experiments import Experiment
from medfed.orchestration.metrics_log import MetricRow
from medfed.orchestration.simulation import Callbacks
from medfed.tracking.trackers import metric_key

MAX_PARAM_LENGTH = 500
"""Longest parameter value logged (MLflow refuses longer ones); longer values are cut."""


class MlflowTracker:
    """Logs each medfed experiment as an MLflow run of the MLflow experiment ``experiment``.

    MLflow 3 keeps its file store in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``; this
    tracker sets that variable (unless already set), since it writes nothing else.

    Args:
        directory: The run's ``mlflow`` folder (the file store).
        experiment: The MLflow experiment's name.
        params: Logged as parameters of every MLflow run (the flattened configuration).
    """

    def __init__(self, directory: Path, *, experiment: str, params: Mapping[str, str]) -> None:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=directory.resolve().as_uri())
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (
            found.experiment_id if found is not None else self.client.create_experiment(experiment)
        )
        self.params = params
        self.run_id: str | None = None

    def callbacks(self) -> Callbacks:
        return Callbacks(on_experiment=self.on_experiment, on_recorded=self.on_recorded)

    def on_experiment(self, experiment: Experiment, done: int) -> None:
        from mlflow.entities import Param

        self.close()
        run = self.client.create_run(self.experiment_id, run_name=experiment.name)
        self.run_id = run.info.run_id
        params = [Param(key, value[:MAX_PARAM_LENGTH]) for key, value in self.params.items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters a call
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def on_recorded(self, experiment: str, round: int, rows: Sequence[MetricRow]) -> None:
        from mlflow.entities import Metric

        if self.run_id is None:
            return
        now = int(time.time() * 1000)
        metrics = [Metric(metric_key(row), row.value, now, round) for row in rows]
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics a call
            self.client.log_batch(self.run_id, metrics=metrics[start : start + 1000])

    def close(self) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id)
            self.run_id = None
