"""ROC curves of case-level classification from each case's class probabilities (Fawcett
2006, "An introduction to ROC analysis", Pattern Recognition Letters 27); the confusion-count
scores are in ``medfed.training.class_scores``."""

from __future__ import annotations

import numpy as np


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates of "positive when score >= t" at every distinct threshold
    ``t`` of ``scores`` (N) against the boolean ``positive`` (N), from (0, 0) to (1, 1); tied
    scores make one diagonal step, so the trapezoidal area is the Mann-Whitney AUC.

    Raises:
        ValueError: ``positive`` is all true or all false (no curve exists).
    """
    positives = int(positive.sum())
    if positives in (0, len(positive)):
        raise ValueError("a ROC curve needs positive and negative cases")
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], positive[order].astype(bool)
    ends = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # last case of each threshold
    true_positives = np.cumsum(hits)[ends]
    false_positives = ends + 1 - true_positives
    return (
        np.r_[0.0, false_positives / (len(hits) - positives)],
        np.r_[0.0, true_positives / positives],
    )


def class_roc(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve of N x K ``probabilities`` against ``labels`` (N): of class 1 for two
    classes; for more, the mean of the one-vs-rest curves of every class (macro average,
    linearly interpolated at each curve's false positive rates).

    Raises:
        ValueError: A class is always or never present.
    """
    classes = probabilities.shape[1]
    if classes == 2:
        return roc_curve(probabilities[:, 1], labels == 1)
    curves = [roc_curve(probabilities[:, k], labels == k) for k in range(classes)]
    grid = np.unique(np.concatenate([fpr for fpr, _ in curves]))
    mean = np.mean([np.interp(grid, fpr, tpr) for fpr, tpr in curves], axis=0)
    return np.r_[0.0, grid], np.r_[0.0, mean]
