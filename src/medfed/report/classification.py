"""A classification run's case-level scores for the report: per experiment and site, accuracy,
sensitivity and specificity with case counts and 95 % bootstrap intervals, and ROC curves on
the training sites' held-out cases and on the unseen site; all from the per-case rows (each
case's class and probabilities) that a simulation keeps at its final round."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medfed.orchestration.metrics_log import MetricRow, Split
from medfed.report.confusion import class_roc
from medfed.report.intervals import (
    CaseValues,
    Interval,
    bootstrap,
    case_values,
    class_probabilities,
    class_statistic,
    macro_auc,
)
from medfed.report.summary import SummaryRow
from medfed.report.tables import Row, Table, interval, number, split_of
from medfed.training.class_scores import CLASS_METRICS, case_confusion, recall_per_class


@dataclass(frozen=True)
class ClassScores:
    """One model's case-level scores on one site's held-out cases, at the final round.

    Attributes:
        experiment: The experiment.
        kind: ``federated``, ``centralized`` or ``local``.
        site: The site whose held-out cases were scored.
        split: ``test`` (a training site) or ``unseen``.
        class_cases: Cases of each true class (class 0 first).
        accuracy: Fraction of cases whose most probable class is their true class.
        sensitivity: One-vs-rest recall, averaged over the positive classes (class 1 for two).
        specificity: One-vs-rest specificity, averaged over the positive classes.
        recall: Each class's recall (NaN for a class without cases).
    """

    experiment: str
    kind: str
    site: str
    split: Split
    class_cases: tuple[int, ...]
    accuracy: Interval
    sensitivity: Interval
    specificity: Interval
    recall: tuple[float, ...]


def class_scores(
    rows: Sequence[MetricRow], summary: Sequence[SummaryRow], *, unseen_site: str | None, seed: int = 0
) -> list[ClassScores]:
    """The scores of every experiment in ``summary`` at each site it was scored on (the unseen
    site last), in the summary's order; none for a site without per-case class rows."""
    found = []
    for row in summary:
        for site in sorted(row.per_site, key=lambda name: (name == unseen_site, name)):
            split = split_of(site, unseen_site)
            values = case_values(rows, experiment=row.experiment, site=site, split=split)
            scores = _scores(values, seed)
            if scores is not None:
                found.append(ClassScores(row.experiment, row.kind, site, split, *scores))
    return found


def _scores(
    values: CaseValues, seed: int
) -> tuple[tuple[int, ...], Interval, Interval, Interval, tuple[float, ...]] | None:
    probabilities = class_probabilities(values)
    if probabilities is None:
        return None
    labels = values["label"].astype(int)
    counts = case_confusion(probabilities, labels).sum(axis=0)
    accuracy, sensitivity, specificity = (
        bootstrap(class_statistic(metric, probabilities, labels), len(labels), seed=seed)
        for metric in CLASS_METRICS
    )
    class_cases = tuple(int(n) for n in np.bincount(labels, minlength=probabilities.shape[1]))
    return class_cases, accuracy, sensitivity, specificity, recall_per_class(counts)


def classification_table(scores: Sequence[ClassScores]) -> Table | None:
    """``scores`` as the report's table (a score with its interval per cell); ``None`` when empty."""
    if not scores:
        return None
    header = ("experiment", "site", "split", "cases per class", *CLASS_METRICS, "recall per class")
    lines = []
    for found in scores:
        cells = [found.experiment, found.site, found.split.value, " / ".join(map(str, found.class_cases))]
        cells += [_with_interval(i) for i in (found.accuracy, found.sensitivity, found.specificity)]
        cells.append(" / ".join(number(recall) for recall in found.recall))
        lines.append(Row(tuple(cells), found.kind))
    return Table(header, tuple(lines))


def _with_interval(found: Interval) -> str:
    """``0.700 [0.400, 0.900]``, its spaces non-breaking (one line per cell); ``–`` without a score."""
    if not math.isfinite(found.estimate):
        return "–"
    return f"{number(found.estimate)} {interval(found)}".replace(" ", "\u00a0")


@dataclass(frozen=True)
class RocCurve:
    """One experiment's ROC curve (class 1 vs the rest for two classes, else the macro average).

    Attributes:
        experiment: The experiment.
        false_positive_rate: The curve's x values, from 0 to 1.
        true_positive_rate: The curve's y values, from 0 to 1.
        auc: Macro one-vs-rest AUC of the same cases (``macro_auc``).
        cases: Cases the curve is drawn from.
    """

    experiment: str
    false_positive_rate: np.ndarray
    true_positive_rate: np.ndarray
    auc: float
    cases: int


def roc_curves(
    rows: Sequence[MetricRow], summary: Sequence[SummaryRow], *, unseen_site: str | None
) -> tuple[list[RocCurve], list[RocCurve]]:
    """Each experiment's ROC curve on the held-out cases of its own sites pooled (a local-only
    model: its site's only; every model scored as its site would use it) and on the unseen
    site's; an experiment whose cases hold a single class has no curve."""
    own, unseen = [], []
    for row in summary:
        sites = [site for site in row.per_site if site != unseen_site]
        if row.kind == "local":
            sites = [site for site in sites if row.experiment == f"local-{site}"]
        own += _curve(
            row.experiment,
            [case_values(rows, experiment=row.experiment, site=s, split=Split.TEST) for s in sites],
        )
        if unseen_site in row.per_site:
            held = case_values(rows, experiment=row.experiment, site=unseen_site, split=Split.UNSEEN)
            unseen += _curve(row.experiment, [held])
    return own, unseen


def _curve(experiment: str, per_site: Sequence[CaseValues]) -> list[RocCurve]:
    """The curve of the cases of ``per_site`` pooled, or none without two classes among them."""
    pairs = [
        (p, values["label"].astype(int))
        for values in per_site
        if (p := class_probabilities(values)) is not None
    ]
    if not pairs:
        return []
    probabilities = np.concatenate([p for p, _ in pairs])
    labels = np.concatenate([label for _, label in pairs])
    try:
        fpr, tpr = class_roc(probabilities, labels)
    except ValueError:  # one class only: no curve
        return []
    return [RocCurve(experiment, fpr, tpr, macro_auc(probabilities, labels), len(labels))]
