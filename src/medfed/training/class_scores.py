"""Case-level classification scores from confusion counts: accuracy, sensitivity and
specificity (Fawcett 2006, "An introduction to ROC analysis", Pattern Recognition Letters 27),
one definition for the logged evaluation and the report, on per-case counts that can be
resampled case by case (bootstrap intervals)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import get_confusion_matrix

CLASS_METRICS = ("accuracy", "sensitivity", "specificity")
"""The scores ``class_score`` computes."""


def case_confusion(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each case's one-vs-rest counts, N x K x 4 ``(tp, fp, tn, fn)``, of its predicted class
    (the most probable of the N x K ``probabilities``) against its true class in ``labels`` (N),
    as MONAI's ``get_confusion_matrix`` counts them. Summed over any cases (a bootstrap resample
    with repeats) they are that set's K x 4 confusion counts."""
    classes = probabilities.shape[1]
    eye = torch.eye(classes)
    predicted = eye[torch.as_tensor(probabilities.argmax(axis=1))]
    truth = eye[torch.as_tensor(labels.astype(int))]
    return get_confusion_matrix(predicted, truth).numpy().astype(np.int64)


def class_score(metric: str, counts: np.ndarray, scored: Sequence[int]) -> float:
    """``metric`` of summed confusion ``counts`` (K x 4): ``accuracy`` is the fraction of cases
    whose predicted class is their true class; ``sensitivity`` (recall) and ``specificity`` are
    one-vs-rest per class, averaged over the ``scored`` classes (``scored_classes``); NaN when
    there are none or one of them has no case to be counted on (a bootstrap resample without it).

    Raises:
        ValueError: ``metric`` is not one of ``CLASS_METRICS``.
    """
    tp, fp, tn, fn = counts.T.tolist()  # plain numbers: called once per bootstrap resample
    if metric == "accuracy":
        return _ratio(sum(tp), sum(tp) + sum(fn))  # every case is a positive of exactly one class
    if metric == "sensitivity":
        return _macro([(tp[k], tp[k] + fn[k]) for k in scored])
    if metric == "specificity":
        return _macro([(tn[k], tn[k] + fp[k]) for k in scored])
    raise ValueError(f"metric must be one of {list(CLASS_METRICS)}, got {metric!r}")


def scored_classes(metric: str, labels: np.ndarray, classes: int) -> list[int]:
    """The classes other than 0 (the negative, e.g. "no finding") that ``metric`` averages over
    on cases with ``labels``: those with a case for ``sensitivity``, those with a case of
    another class for ``specificity`` (as MONAI's ``ConfusionMatrixMetric`` without the
    background, whose 0 / 0 is NaN); every class for ``accuracy``, which uses none."""
    counts = np.bincount(labels.astype(int), minlength=classes)
    if metric == "sensitivity":
        return [k for k in range(1, classes) if counts[k]]
    if metric == "specificity":
        return [k for k in range(1, classes) if counts.sum() > counts[k]]
    return list(range(classes))


def recall_per_class(counts: np.ndarray) -> tuple[float, ...]:
    """Each class's recall ``tp / (tp + fn)`` from K x 4 ``counts``; NaN for a class without cases."""
    return tuple(_ratio(tp, tp + fn) for tp, _, _, fn in counts.tolist())


def _macro(pairs: Sequence[tuple[float, float]]) -> float:
    """The mean of ``hits / total`` over ``pairs``; NaN when empty or when a total is 0."""
    return sum(_ratio(hits, total) for hits, total in pairs) / len(pairs) if pairs else math.nan


def _ratio(hits: float, total: float) -> float:
    return hits / total if total else math.nan


def class_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Every ``CLASS_METRICS`` score of N x K ``probabilities`` against ``labels`` (N), each
    averaged over its ``scored_classes``."""
    counts = case_confusion(probabilities, labels).sum(axis=0)
    classes = probabilities.shape[1]
    return {
        metric: class_score(metric, counts, scored_classes(metric, labels, classes))
        for metric in CLASS_METRICS
    }
