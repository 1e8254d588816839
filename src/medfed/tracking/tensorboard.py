"""TensorBoard event files: one folder per experiment, one scalar per ``split/metric/site``,
the round as the step (``tensorboard --logdir RUN/tensorboard``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from medfed.orchestration.experiments import Experiment
from medfed.orchestration.metrics_log import MetricRow
from medfed.orchestration.simulation import Callbacks
from medfed.tracking.trackers import metric_key


class TensorBoardTracker:
    """Writes each recorded round under ``directory/<experiment>``.

    Args:
        directory: The run's ``tensorboard`` folder.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.writer: SummaryWriter | None = None

    def callbacks(self) -> Callbacks:
        return Callbacks(on_experiment=self.on_experiment, on_recorded=self.on_recorded)

    def on_experiment(self, experiment: Experiment, done: int) -> None:
        self.close()
        self.writer = SummaryWriter(log_dir=str(self.directory / experiment.name))

    def on_recorded(self, experiment: str, round: int, rows: Sequence[MetricRow]) -> None:
        if self.writer is None:
            return
        for row in rows:
            self.writer.add_scalar(metric_key(row), row.value, global_step=round)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
