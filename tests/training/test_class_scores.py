import math

import numpy as np
import pytest
import torch
from monai.metrics import ConfusionMatrixMetric

from medfed.training.class_scores import (
    case_confusion,
    class_metrics,
    class_score,
    recall_per_class,
    scored_classes,
)


def _probabilities(predicted: list[int], classes: int) -> np.ndarray:
    """Cases whose most probable class is ``predicted`` (0.6 on it, the rest shared)."""
    rows = np.full((len(predicted), classes), 0.4 / (classes - 1))
    rows[np.arange(len(predicted)), predicted] = 0.6
    return rows


def test_binary_scores_match_a_confusion_matrix_counted_by_hand() -> None:
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    predicted = [1, 1, 1, 0, 0, 0, 0, 0, 1, 1]  # tp 3, fn 1, tn 4, fp 2
    counts = case_confusion(_probabilities(predicted, 2), labels).sum(axis=0)
    assert counts[1].tolist() == [3, 2, 4, 1]  # class 1: tp, fp, tn, fn
    positive = [1]
    assert scored_classes("sensitivity", labels, 2) == scored_classes("specificity", labels, 2) == positive
    assert math.isclose(class_score("accuracy", counts, positive), 7 / 10)
    assert math.isclose(class_score("sensitivity", counts, positive), 3 / 4)
    assert math.isclose(class_score("specificity", counts, positive), 4 / 6)
    assert recall_per_class(counts) == pytest.approx((4 / 6, 3 / 4))


def test_three_classes_accuracy_is_the_fraction_correct_and_the_rest_is_macro() -> None:
    labels = np.array([0, 1, 2, 2])
    counts = case_confusion(_probabilities([1, 1, 2, 0], 3), labels).sum(axis=0)
    positive = [1, 2]
    assert scored_classes("sensitivity", labels, 3) == scored_classes("specificity", labels, 3) == positive
    assert math.isclose(class_score("accuracy", counts, positive), 2 / 4)  # MONAI's pooled: 0.75
    assert math.isclose(class_score("sensitivity", counts, positive), (1 / 1 + 1 / 2) / 2)
    assert math.isclose(class_score("specificity", counts, positive), (2 / 3 + 2 / 2) / 2)
    assert recall_per_class(counts) == pytest.approx((0.0, 1.0, 0.5))


@pytest.mark.parametrize("labels", ["random", "negatives only", "positives only"])
def test_binary_scores_equal_monai_confusion_matrix_metric(labels: str) -> None:
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet([1, 1], size=40)
    truth = {
        "random": rng.integers(0, 2, size=40),
        "negatives only": np.zeros(40, int),
        "positives only": np.ones(40, int),
    }[labels]
    names = ["accuracy", "sensitivity", "specificity"]
    metric = ConfusionMatrixMetric(include_background=False, metric_name=names)
    eye = torch.eye(2)
    metric(eye[probabilities.argmax(axis=1)], eye[truth])
    expected = [float(value) for value in metric.aggregate()]
    counts = case_confusion(probabilities, truth).sum(axis=0)
    ours = [class_score(name, counts, scored_classes(name, truth, 2)) for name in names]
    assert ours == pytest.approx(expected, rel=1e-6, nan_ok=True)


def test_a_missing_class_gives_nan_and_an_unknown_metric_is_refused() -> None:
    labels = np.array([0, 0, 1])
    counts = case_confusion(_probabilities([0, 1, 1], 3), labels).sum(axis=0)
    assert math.isnan(class_score("sensitivity", counts, [1, 2]))  # no case of class 2
    assert math.isnan(recall_per_class(counts)[2])
    negatives, positives = np.array([0, 0]), np.array([1, 1])
    assert scored_classes("sensitivity", negatives, 2) == [] and scored_classes(
        "specificity", negatives, 2
    ) == [1]
    assert (
        scored_classes("sensitivity", positives, 2) == [1]
        and scored_classes("specificity", positives, 2) == []
    )
    assert math.isnan(class_score("specificity", counts, []))
    with pytest.raises(ValueError, match="accuracy"):
        class_score("dice", counts, [1])


def test_class_metrics_of_three_classes_counted_by_hand() -> None:
    labels = np.array([0, 1, 2, 2])
    metrics = class_metrics(_probabilities([1, 1, 2, 0], 3), labels)
    assert metrics == pytest.approx({"accuracy": 2 / 4, "sensitivity": 3 / 4, "specificity": 5 / 6})
