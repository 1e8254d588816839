import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_roc_auc

from medfed.report.confusion import class_roc, roc_curve
from medfed.report.intervals import macro_auc


def test_roc_curve_counted_by_hand_with_a_tie() -> None:
    fpr, tpr = roc_curve(np.array([0.9, 0.8, 0.8, 0.3]), np.array([True, False, True, False]))
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert math.isclose(np.trapezoid(tpr, fpr), 0.875)  # 3.5 of 4 pairs ranked right
    with pytest.raises(ValueError, match="positive and negative"):
        roc_curve(np.array([0.1, 0.2]), np.array([True, True]))


@pytest.mark.parametrize("seed", range(5))
def test_area_under_the_binary_curve_is_the_auc(seed: int) -> None:
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet([1, 1], size=25).round(1)  # rounded: ties
    labels = np.r_[0, 1, rng.integers(0, 2, size=23)]
    fpr, tpr = class_roc(probabilities, labels)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert math.isclose(np.trapezoid(tpr, fpr), macro_auc(probabilities, labels), rel_tol=1e-9)


def test_three_class_curve_is_the_mean_of_one_vs_rest_curves() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2])
    perfect = np.eye(3)[labels] * 0.8 + 0.2 / 3
    fpr, tpr = class_roc(perfect, labels)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert math.isclose(np.trapezoid(tpr, fpr), 1.0)


@pytest.mark.parametrize(("seed", "classes"), [(0, 2), (1, 3), (2, 4), (3, 2)])
def test_macro_auc_by_binary_search_equals_monai_with_ties(seed: int, classes: int) -> None:
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet([1] * classes, size=60).round(1)
    labels = np.r_[np.arange(classes), rng.integers(0, classes, size=60 - classes)]
    expected = compute_roc_auc(torch.as_tensor(probabilities), torch.eye(classes)[labels])
    assert math.isclose(macro_auc(probabilities, labels), float(expected), rel_tol=1e-6)  # MONAI: float32
