"""The comparison table of a run: federated vs centralized vs local-only, at the last round."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean, stdev
from typing import Literal

from medfed.files import atomic_write
from medfed.orchestration.metrics_log import HELD_OUT, MetricRow, Split
from medfed.types import Task

PRIMARY_METRIC: dict[str, str] = {"segmentation": "dice", "classification": "auc"}


@dataclass(frozen=True)
class SummaryRow:
    """One experiment's final scores on the primary metric; over several seeds (``seeds``), each
    score is the mean of the seeds' scores.

    Attributes:
        experiment: Experiment name ("fedavg", "centralized", "local-hospital_a", "local (mean)").
        kind: "federated", "centralized" or "local".
        own_sites: Mean over the training sites' held-out splits (a local model: its own site's).
        unseen: Score on the unseen site (``nan`` when there is none).
        per_site: Score on each held-out split, the unseen site included.
        unseen_adabn: Score on the unseen site after AdaBN (``data.unseen_site_adabn``;
            ``nan`` when not measured).
        own_sites_sd: Sample standard deviation of ``own_sites`` over the seeds (``nan`` with
            fewer than two).
        unseen_sd: Sample standard deviation of ``unseen`` over the seeds.
        seeds: How many seeds' runs the scores summarise.
    """

    experiment: str
    kind: str
    own_sites: float
    unseen: float
    per_site: dict[str, float]
    unseen_adabn: float = math.nan
    own_sites_sd: float = math.nan
    unseen_sd: float = math.nan
    seeds: int = 1


def summarize(
    rows: Sequence[MetricRow], kinds: Mapping[str, str], *, task: Task, unseen_site: str | None
) -> list[SummaryRow]:
    """The final-round summary of each experiment in ``kinds`` (name -> kind), in that order,
    followed by the mean of the local-only models when there are any."""
    metric = PRIMARY_METRIC[task]
    summary = []
    for experiment, kind in kinds.items():
        last = max((row.round for row in rows if row.experiment == experiment), default=0)
        per_site = {
            row.site: row.value
            for row in rows
            if row.experiment == experiment
            and row.round == last
            and row.metric == metric
            and row.split in HELD_OUT
        }
        adabn = [
            row.value
            for row in rows
            if row.experiment == experiment
            and row.round == last
            and row.metric == metric
            and row.split == Split.UNSEEN_ADABN
        ]
        own = [v for site, v in per_site.items() if site != unseen_site]
        if kind == "local":
            own = [per_site[site] for site in per_site if experiment == f"local-{site}"]
        unseen = per_site.get(unseen_site or "", math.nan)
        summary.append(SummaryRow(experiment, kind, finite_mean(own), unseen, per_site, finite_mean(adabn)))
    locals_ = [row for row in summary if row.kind == "local"]
    if locals_:
        summary.append(
            SummaryRow(
                "local (mean)",
                "local",
                finite_mean([row.own_sites for row in locals_]),
                finite_mean([row.unseen for row in locals_]),
                {},
                finite_mean([row.unseen_adabn for row in locals_]),
            )
        )
    return summary


def pool_seeds(per_seed: Sequence[Sequence[SummaryRow]]) -> list[SummaryRow]:
    """One summary over several seeds' summaries (``summarize`` of each seed's run, in the
    first's order): each score's mean over the seeds, and the sample standard deviation of the
    own-sites and unseen-site scores; non-finite scores are left out. One seed's summary comes
    back unchanged.

    Raises:
        ValueError: The seeds' summaries name different experiments.
    """
    if len(per_seed) == 1:
        return list(per_seed[0])
    named = [{row.experiment: row for row in rows} for rows in per_seed]
    if any(names.keys() != named[0].keys() for names in named):
        raise ValueError(f"seeds' summaries differ in experiments: {[sorted(names) for names in named]}")
    return [_pooled([names[row.experiment] for names in named]) for row in per_seed[0]]


def _pooled(rows: Sequence[SummaryRow]) -> SummaryRow:
    """One experiment's ``rows``, one per seed, as one row of means and standard deviations."""
    sites = sorted({site for row in rows for site in row.per_site})
    own, unseen = [row.own_sites for row in rows], [row.unseen for row in rows]
    return SummaryRow(
        experiment=rows[0].experiment,
        kind=rows[0].kind,
        own_sites=finite_mean(own),
        unseen=finite_mean(unseen),
        per_site={site: finite_mean([row.per_site.get(site, math.nan) for row in rows]) for site in sites},
        unseen_adabn=finite_mean([row.unseen_adabn for row in rows]),
        own_sites_sd=_sd(own),
        unseen_sd=_sd(unseen),
        seeds=len(rows),
    )


@dataclass(frozen=True)
class BestAndLast:
    """An experiment's own-sites score (as ``SummaryRow.own_sites``), or a deployed site's score,
    at its last and best round.

    Attributes:
        experiment: Experiment name (a deployed job: the site's).
        last_round: The last round scored.
        last: The score at ``last_round``.
        best_round: The round with the highest score (the earliest on a tie).
        best: The score at ``best_round``.
    """

    experiment: str
    last_round: int
    last: float
    best_round: int
    best: float


def best_and_last(rows: Sequence[MetricRow], kinds: Mapping[str, str], *, metric: str) -> list[BestAndLast]:
    """The last and the best round of each experiment in ``kinds`` (name -> kind) on ``metric``,
    higher being better; experiments without a score are left out."""
    picks = (
        pick(experiment, own_site_scores(rows, experiment, kind, metric=metric))
        for experiment, kind in kinds.items()
    )
    return [found for found in picks if found is not None]


def own_site_scores(
    rows: Sequence[MetricRow], experiment: str, kind: str, *, metric: str
) -> dict[int, float]:
    """``experiment``'s mean ``metric`` per round over its own sites' held-out cases (a
    local-only model: its own site's), as ``SummaryRow.own_sites``."""

    def own(row: MetricRow) -> bool:
        at_home = (
            row.site == experiment.removeprefix("local-") if kind == "local" else row.split == Split.TEST
        )
        return row.experiment == experiment and row.metric == metric and row.split in HELD_OUT and at_home

    return round_means(rows, own)


def round_means(rows: Sequence[MetricRow], keep: Callable[[MetricRow], bool]) -> dict[int, float]:
    """The mean value per round of the rows ``keep`` accepts (NaN values left out; NaN for a
    round with none finite), by round."""
    by_round: dict[int, list[float]] = {}
    for row in rows:
        if keep(row):
            by_round.setdefault(row.round, []).append(row.value)
    return {round: finite_mean(values) for round, values in sorted(by_round.items())}


def pick(name: str, scores: Mapping[int, float]) -> BestAndLast | None:
    """The last round of ``scores`` (round -> score) and the best (highest, the earliest on a
    tie); ``None`` without a finite score."""
    finite = {round: score for round, score in scores.items() if math.isfinite(score)}
    if not finite:
        return None
    best = max(finite, key=lambda round: (finite[round], -round))
    last = max(scores)
    return BestAndLast(name, last, scores[last], best, finite[best])


AttackRole = Literal["clean", "attacked", "defended"]


@dataclass(frozen=True)
class AttackRow:
    """One federated experiment of a simulation with an ``attack:`` section.

    Attributes:
        experiment: Experiment name.
        role: ``clean`` (no attack), ``attacked`` (plain aggregation) or ``defended`` (robust).
        own_sites: Mean primary metric over the training sites' held-out splits, last round.
        backdoor_success: Mean backdoor success rate over the held-out sets (``nan`` when the
            attack is not a backdoor).
    """

    experiment: str
    role: AttackRole
    own_sites: float
    backdoor_success: float


def attack_summary(
    rows: Sequence[MetricRow],
    summary: Sequence[SummaryRow],
    roles: dict[str, AttackRole],
    *,
    backdoor_metric: str,
) -> list[AttackRow]:
    """Clean vs attacked vs defended: one row per experiment in ``roles``, in that order."""
    own = {row.experiment: row.own_sites for row in summary}
    out = []
    for experiment, role in roles.items():
        last = max((row.round for row in rows if row.experiment == experiment), default=0)
        rates = [
            row.value
            for row in rows
            if row.experiment == experiment and row.round == last and row.metric == backdoor_metric
        ]
        out.append(AttackRow(experiment, role, own.get(experiment, math.nan), finite_mean(rates)))
    return out


def write_summary(path: Path, summary: Sequence[SummaryRow], *, metric: str) -> None:
    """Writes the summary as JSON (``nan`` as ``null``)."""
    payload = {
        "metric": metric,
        "experiments": [{key: _jsonable(value) for key, value in asdict(row).items()} for row in summary],
    }
    atomic_write(path, json.dumps(payload, indent=2).encode())


def finite_mean(values: Sequence[float]) -> float:
    """The mean of the finite ``values`` (NaN when there are none)."""
    finite = [value for value in values if math.isfinite(value)]
    return fmean(finite) if finite else math.nan


def _sd(values: Sequence[float]) -> float:
    """The sample standard deviation of the finite ``values``; ``nan`` for fewer than two."""
    finite = [value for value in values if math.isfinite(value)]
    return stdev(finite) if len(finite) > 1 else math.nan


def _jsonable(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value
