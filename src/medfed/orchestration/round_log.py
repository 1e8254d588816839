"""One ``logging`` line per round and per experiment: the progress a run shows when its output
goes to a file (SLURM, nohup), where no progress bar is drawn."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from statistics import fmean

from medfed.orchestration.experiments import Experiment
from medfed.orchestration.metrics_log import MetricRow
from medfed.orchestration.simulation import Callbacks

logger = logging.getLogger(__name__)

PRIVACY_SPENT = ("epsilon", "client_epsilon")
"""Metrics of the ``privacy`` split that measure the budget spent."""


def round_figures(rows: Sequence[MetricRow], metric: str) -> dict[str, float]:
    """The figures of a round's line, each only when the round has it: ``loss`` (mean over the
    sites' training), ``metric`` (mean over the held-out ``test`` splits), ``unseen <metric>``
    and ``epsilon`` (the most any site or the server has spent)."""
    selections = {
        "loss": [row.value for row in rows if row.split == "train" and row.metric == "loss"],
        metric: [row.value for row in rows if row.split == "test" and row.metric == metric],
        f"unseen {metric}": [row.value for row in rows if row.split == "unseen" and row.metric == metric],
    }
    figures = {name: fmean(values) for name, values in selections.items() if values}
    spent = [row.value for row in rows if row.split == "privacy" and row.metric in PRIVACY_SPENT]
    if spent:
        figures["epsilon"] = max(spent)
    return figures


def describe(figures: dict[str, float]) -> str:
    """``"loss 0.512, dice 0.734, epsilon 2.31"`` (``"no metrics"`` when empty)."""
    return ", ".join(f"{name} {_number(value)}" for name, value in figures.items()) or "no metrics"


def _number(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else str(value)


class RoundLog:
    """Logs each experiment's start and end and each recorded round, with wall times.

    Args:
        metric: The primary metric (``"dice"`` or ``"auc"``).
        rounds: Rounds per experiment.
        clock: Seconds, monotonic (a fake one in tests).
    """

    def __init__(self, metric: str, rounds: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.metric = metric
        self.rounds = rounds
        self.clock = clock
        self.names: list[str] = []
        self.started = self.last = clock()
        self.figures: dict[str, float] = {}

    def callbacks(self) -> Callbacks:
        """The hooks that write the lines."""
        return Callbacks(
            on_plan=self.on_plan,
            on_experiment=self.on_experiment,
            on_recorded=self.on_recorded,
            on_experiment_end=self.on_experiment_end,
        )

    def on_plan(self, experiments: Sequence[Experiment]) -> None:
        self.names = [experiment.name for experiment in experiments]

    def on_experiment(self, experiment: Experiment, done: int) -> None:
        self.started = self.last = self.clock()
        self.figures = {}
        resumed = f", resuming after round {done}" if done else ""
        logger.info(
            "%s: %s (%s, %d site(s)%s)",
            self._position(experiment.name),
            experiment.name,
            experiment.kind,
            len(experiment.sites),
            resumed,
        )

    def on_recorded(self, experiment: str, round: int, rows: Sequence[MetricRow]) -> None:
        now = self.clock()
        self.figures = round_figures(rows, self.metric)
        logger.info(
            "%s round %d/%d: %s (%.1f s)",
            experiment,
            round,
            self.rounds,
            describe(self.figures),
            now - self.last,
        )
        self.last = now

    def on_experiment_end(self, experiment: Experiment) -> None:
        logger.info(
            "%s: %s done in %.1f s: %s",
            self._position(experiment.name),
            experiment.name,
            self.clock() - self.started,
            describe(self.figures),
        )

    def _position(self, name: str) -> str:
        """``"experiment 2/6"`` (``"experiment"`` when ``name`` is not in the plan)."""
        if name not in self.names:
            return "experiment"
        return f"experiment {self.names.index(name) + 1}/{len(self.names)}"
