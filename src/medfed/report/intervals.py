"""How far a final score can be trusted: case counts and 95 % percentile bootstrap intervals
(Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13) from the per-case rows a
simulation keeps at its final round, and whether joining the federation paid off for each site
(a paired bootstrap of the federated minus the local-only score on the same cases)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from medfed.orchestration.metrics_log import MetricRow, split_case_metric
from medfed.training.class_scores import CLASS_METRICS, case_confusion, class_score, scored_classes

RESAMPLES = 1000
"""Bootstrap resamples per interval."""

Statistic = Callable[[np.ndarray], float]
"""A score computed on the cases at the given indices (a resample, with repeats)."""


@dataclass(frozen=True)
class Interval:
    """A score on ``cases`` cases and its 95 % bootstrap interval (``nan`` bounds with fewer
    than two cases, or when no resample gives a finite score)."""

    estimate: float
    low: float
    high: float
    cases: int


def bootstrap(
    statistic: Statistic, cases: int, *, resamples: int = RESAMPLES, seed: int = 0, level: float = 0.95
) -> Interval:
    """``statistic`` on all ``cases`` and its percentile interval over ``resamples`` resamples of
    the cases with replacement, drawn from ``seed``; resamples scoring NaN (e.g. AUC of a
    resample holding one class) are left out."""
    estimate = statistic(np.arange(cases)) if cases else math.nan
    if cases < 2:
        return Interval(estimate, math.nan, math.nan, cases)
    draws = np.random.default_rng(seed).integers(0, cases, size=(resamples, cases))
    values = np.array([statistic(indices) for indices in draws])
    values = values[np.isfinite(values)]
    if not values.size:
        return Interval(estimate, math.nan, math.nan, cases)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high), cases)


CaseValues = dict[str, np.ndarray]
"""One model's per-case values at one site, aligned by case: ``dice``, or ``label`` and ``prob<k>``."""


def case_values(rows: Sequence[MetricRow], *, experiment: str, site: str, split: str) -> CaseValues:
    """The per-case values of ``experiment`` at ``site`` on ``split`` at its last round with any,
    cases sorted by id; a case with a NaN value (a Dice score without a lesion) is left out."""
    by_round: dict[int, dict[str, dict[str, float]]] = {}
    for row in rows:
        parsed = split_case_metric(row.metric)
        if parsed and row.experiment == experiment and row.site == site and row.split == split:
            by_round.setdefault(row.round, {}).setdefault(parsed[1], {})[parsed[0]] = row.value
    if not by_round:
        return {}
    cases = by_round[max(by_round)]
    names = sorted({name for values in cases.values() for name in values})
    kept = [
        case
        for case, values in sorted(cases.items())
        if all(math.isfinite(values.get(name, math.nan)) for name in names)
    ]
    return {name: np.array([cases[case][name] for case in kept]) for name in names}


def statistic(metric: str, values: CaseValues) -> Statistic | None:
    """How ``metric`` is computed from a resample of ``values``; ``None`` when they cannot give it."""
    if metric in values:  # a per-case score such as Dice: its mean
        scores = values[metric]
        return lambda indices: float(scores[indices].mean())
    probabilities = class_probabilities(values)
    if probabilities is None:
        return None
    labels = values["label"].astype(int)
    if metric == "auc":
        return lambda indices: macro_auc(probabilities[indices], labels[indices])
    if metric in CLASS_METRICS:
        return class_statistic(metric, probabilities, labels)
    return None


def class_statistic(metric: str, probabilities: np.ndarray, labels: np.ndarray) -> Statistic:
    """``metric`` (one of ``CLASS_METRICS``) of N x K ``probabilities`` against ``labels`` (N)
    on a resample of the cases, averaged over the classes ``scored_classes`` finds in all N
    cases; NaN on a resample missing one of them."""
    confusion = case_confusion(probabilities, labels)
    scored = scored_classes(metric, labels, probabilities.shape[1])
    flat = confusion.reshape(len(labels), -1)

    def resampled(indices: np.ndarray) -> float:
        counts = np.bincount(indices, minlength=len(flat)) @ flat  # each case times it was drawn
        return class_score(metric, counts.reshape(confusion.shape[1:]), scored)

    return resampled


def macro_auc(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean one-vs-rest ROC AUC over the classes (N x K probabilities, N labels), as MONAI's
    ``ROCAUCMetric`` computes it; NaN when a class is always or never present. Each class's AUC
    is the Mann-Whitney statistic with ties counted as one half: for each positive case, the
    negatives scored below it plus half those scored the same (a binary search in the sorted
    negatives, so a bootstrap resample costs O(N log N))."""
    aucs = []
    for k in range(probabilities.shape[1]):
        positive = labels == k
        hits, negatives = probabilities[positive, k], np.sort(probabilities[~positive, k])
        if not hits.size or not negatives.size:
            return math.nan
        below = np.searchsorted(negatives, hits, side="left")
        ties = np.searchsorted(negatives, hits, side="right") - below
        aucs.append((below.sum() + ties.sum() / 2) / (hits.size * negatives.size))
    return float(np.mean(aucs))


def class_probabilities(values: CaseValues) -> np.ndarray | None:
    """The N x K class probabilities of classification cases, or ``None``."""
    columns = sorted((name for name in values if name.startswith("prob")), key=lambda n: int(n[4:] or 0))
    if "label" not in values or not columns:
        return None
    return np.stack([values[name] for name in columns], axis=1)


def site_interval(
    rows: Sequence[MetricRow], *, experiment: str, site: str, split: str, metric: str, seed: int = 0
) -> Interval | None:
    """``metric`` of ``experiment`` at ``site`` with its interval, or ``None`` without per-case rows."""
    values = case_values(rows, experiment=experiment, site=site, split=split)
    computed = statistic(metric, values)
    if computed is None:
        return None
    return bootstrap(computed, len(next(iter(values.values()))), seed=seed)


Verdict = Literal["paid off", "cost", "no clear difference", "too few cases"]


@dataclass(frozen=True)
class Payoff:
    """A federated model vs one site's local-only model, on one site's held-out cases.

    Attributes:
        experiment: The federated experiment (its model as the site would use it: personalised
            when the strategy personalises).
        site: The site that chose between joining and training alone.
        scored_on: Where both models were scored: the site's own held-out cases or the unseen site.
        federated: The federated model's score.
        local: The local-only model's score.
        difference: Federated minus local, with its paired bootstrap interval.
        verdict: ``paid off`` / ``cost`` when the interval excludes 0, else ``no clear difference``.
    """

    experiment: str
    site: str
    scored_on: str
    federated: float
    local: float
    difference: Interval
    verdict: Verdict


def payoff(
    rows: Sequence[MetricRow],
    *,
    experiment: str,
    site: str,
    scored_on: str,
    split: str,
    metric: str,
    seed: int = 0,
) -> Payoff | None:
    """``experiment`` vs ``local-<site>`` on the held-out cases of ``scored_on`` (paired: the
    same resampled cases score both models), or ``None`` without per-case rows of both."""
    ours = case_values(rows, experiment=experiment, site=scored_on, split=split)
    alone = case_values(rows, experiment=f"local-{site}", site=scored_on, split=split)
    federated, local = statistic(metric, ours), statistic(metric, alone)
    cases = len(next(iter(ours.values()), ()))
    if federated is None or local is None or cases != len(next(iter(alone.values()), ())):
        return None
    difference = bootstrap(lambda indices: federated(indices) - local(indices), cases, seed=seed)
    everything = np.arange(cases)
    return Payoff(
        experiment,
        site,
        scored_on,
        federated(everything),
        local(everything),
        difference,
        _verdict(difference),
    )


def _verdict(difference: Interval) -> Verdict:
    if not math.isfinite(difference.low):
        return "too few cases"
    if difference.low > 0:
        return "paid off"
    if difference.high < 0:
        return "cost"
    return "no clear difference"
