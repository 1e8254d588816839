"""What happens around the round loop, written once for simulation and deployment: resuming a
run from its last checkpoint, and recording each round (metric rows, then the checkpoint, then
the callbacks) whatever reaches the sites.

``run_rounds`` (``orchestration/loop.py``) is the one loop and owns retries; a ``RoundRecorder``
is its ``on_round``. Only what differs between the rooms is passed in: where a round's held-out
scores come from (scored in process, or sent by the sites) and who hears of a round (a progress
bar, ``status.json``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medfed.orchestration.checkpoint import Checkpoint, latest_checkpoint, load_checkpoint, save_round
from medfed.orchestration.grid import Absence
from medfed.orchestration.metrics_log import MetricRow, MetricsLog, Split
from medfed.privacy.plan import ProtectionPlan
from medfed.strategies.base import Strategy
from medfed.types import ServerState, SiteState, TrainResult

logger = logging.getLogger(__name__)

RowSource = Callable[[ServerState, list[TrainResult]], list[MetricRow]]
"""More rows of a completed round (held-out scores, privacy spent), given its state and results."""

RecordedCallback = Callable[[ServerState, list[TrainResult], list[MetricRow]], None]
"""Told of a round once its rows and checkpoint are written, with the rows."""

PRIVATE_METRICS = frozenset({"epsilon", "delta"})
"""Result metrics that measure privacy spent (DP-SGD's epsilon at its delta), recorded under
``Split.PRIVACY``."""


@dataclass(frozen=True)
class RunRecords:
    """Where one run (a simulated experiment, or a deployed job) keeps its rounds.

    Attributes:
        run: The run's name, the ``experiment`` column of its metric rows.
        metrics: The metrics log.
        checkpoints: The folder of the run's round checkpoints.
        metadata: Strings stored in every checkpoint (e.g. ``{"job": name}`` and the model's
            ``model_metadata``).
        keep_last: How many round checkpoints to keep (all when ``None``).
    """

    run: str
    metrics: MetricsLog
    checkpoints: Path
    metadata: Mapping[str, str] = field(default_factory=dict)
    keep_last: int | None = None

    def resume(self) -> Checkpoint | None:
        """The last checkpoint, or ``None`` for a fresh run; metric rows of rounds after it (left
        by a run killed between its rows and its checkpoint) are dropped."""
        latest = latest_checkpoint(self.checkpoints)
        if latest is None:
            self.metrics.discard_after(self.run, 0)
            return None
        checkpoint = load_checkpoint(latest)
        self.metrics.discard_after(self.run, checkpoint.server.round)
        logger.info("%s: resuming after round %d from %s", self.run, checkpoint.server.round, latest)
        return checkpoint

    def record(
        self,
        state: ServerState,
        results: list[TrainResult],
        rows: list[MetricRow],
        sites: Mapping[str, SiteState],
    ) -> None:
        """Writes the round's ``rows`` (replacing any of a replayed round), then its checkpoint
        (atomically, with the participants; older ones beyond ``keep_last`` deleted after it); a
        crash in between replays the round."""
        self.metrics.record_round(self.run, state.round, rows)
        metadata = {**self.metadata, "participants": ",".join(result.site for result in results)}
        save_round(self.checkpoints, Checkpoint(state, sites, metadata), keep_last=self.keep_last)


@dataclass(frozen=True)
class RoundRecorder:
    """The ``on_round`` of ``run_rounds``: after each round, its training rows plus the rows of
    each of ``sources``, recorded with the checkpoint, then each of ``after`` told.

    Attributes:
        records: Where the rounds go.
        sources: More rows per round, in order (held-out scores, privacy spent).
        sites: The simulated sites' private states to checkpoint with the server's; ``None``
            in deployment, where each site keeps its own.
        after: Callbacks of a recorded round, in order.
    """

    records: RunRecords
    sources: Sequence[RowSource] = ()
    sites: Callable[[], Mapping[str, SiteState]] | None = None
    after: Sequence[RecordedCallback] = ()

    def __call__(self, state: ServerState, results: list[TrainResult]) -> None:
        rows = training_rows(self.records.run, state.round, results)
        for source in self.sources:
            rows += source(state, results)
        self.records.record(state, results, rows, {} if self.sites is None else self.sites())
        for callback in self.after:
            callback(state, results, rows)


def training_rows(run: str, round: int, results: Sequence[TrainResult]) -> list[MetricRow]:
    """Each result's metrics and its ``num_samples`` (``Split.TRAIN``); the privacy a site
    reports spending (``epsilon``) under ``Split.PRIVACY``."""
    return [
        MetricRow(
            run, round, result.site, Split.PRIVACY if name in PRIVATE_METRICS else Split.TRAIN, name, value
        )
        for result in results
        for name, value in {**result.metrics, "num_samples": float(result.num_samples)}.items()
    ]


def absence_rows(run: str, absences: Callable[[int], Mapping[str, Absence]]) -> RowSource:
    """The row source of the sites asked in a round that took no part (``absences(round)``):
    one ``Split.PARTICIPATION`` row (value 1) each, its metric saying why."""

    def rows(state: ServerState, results: list[TrainResult]) -> list[MetricRow]:
        return [
            MetricRow(run, state.round, site, Split.PARTICIPATION, why.value, 1.0)
            for site, why in sorted(absences(state.round).items())
        ]

    return rows


def privacy_rows(
    run: str,
    privacy: ProtectionPlan,
    strategy: Strategy,
    trainers: Callable[[], Mapping[str, object]] = dict,
) -> RowSource:
    """The row source of privacy spent after a round: each in-process DP-SGD trainer's
    ``epsilon`` and, under client-level DP, the server's ``client_epsilon`` (site ``server``);
    no rows when the run uses neither."""

    def rows(state: ServerState, results: list[TrainResult]) -> list[MetricRow]:
        if privacy.dp_sgd is None and privacy.client_dp is None:
            return []
        from medfed.privacy.dp.config import privacy_metrics  # imports Opacus: only when on

        spent = privacy_metrics(privacy, trainers(), strategy, state)
        return [MetricRow(run, state.round, site, Split.PRIVACY, name, value) for site, name, value in spent]

    return rows
