import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_roc_auc

from medfed.orchestration.metrics_log import MetricRow, Split, case_metric, split_case_metric
from medfed.report.intervals import bootstrap, case_values, macro_auc, payoff, site_interval


def _mean_of(scores: np.ndarray):  # noqa: ANN202
    return lambda indices: float(scores[indices].mean())


def test_interval_contains_the_mean_and_is_deterministic_for_a_seed() -> None:
    scores = np.random.default_rng(1).uniform(0.4, 0.9, size=20)
    first = bootstrap(_mean_of(scores), 20, seed=3)
    assert first.cases == 20
    assert math.isclose(first.estimate, scores.mean())
    assert first.low < first.estimate < first.high
    assert bootstrap(_mean_of(scores), 20, seed=3) == first
    assert bootstrap(_mean_of(scores), 20, seed=4) != first


def test_interval_shrinks_with_more_cases() -> None:
    rng = np.random.default_rng(2)
    few, many = rng.uniform(0.4, 0.9, size=10), rng.uniform(0.4, 0.9, size=200)
    narrow, wide = bootstrap(_mean_of(many), 200), bootstrap(_mean_of(few), 10)
    assert narrow.high - narrow.low < (wide.high - wide.low) / 2


def test_one_case_has_a_score_but_no_interval() -> None:
    one = bootstrap(_mean_of(np.array([0.7])), 1)
    assert one.cases == 1 and math.isclose(one.estimate, 0.7)
    assert math.isnan(one.low) and math.isnan(one.high)


def test_macro_auc_matches_monai() -> None:
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet([1, 1, 1], size=30).round(1)  # rounded: ties
    labels = rng.integers(0, 3, size=30)
    expected = compute_roc_auc(torch.as_tensor(probabilities), torch.eye(3)[labels])
    assert math.isclose(macro_auc(probabilities, labels), float(expected), rel_tol=1e-6)
    assert math.isnan(macro_auc(probabilities, np.zeros(30, dtype=int)))


def test_case_metric_names_round_trip() -> None:
    assert split_case_metric(case_metric("dice", "case@7")) == ("dice", "case@7")
    assert split_case_metric("dice") is None


def _cases(experiment: str, site: str, scores: list[float], split: Split = Split.TEST) -> list[MetricRow]:
    return [
        MetricRow(experiment, 3, site, split, case_metric("dice", f"c{i:02d}"), score)
        for i, score in enumerate(scores)
    ]


def test_cases_without_a_lesion_are_not_counted() -> None:
    rows = _cases("fedavg", "a", [0.5, math.nan, 0.7])
    assert list(case_values(rows, experiment="fedavg", site="a", split=Split.TEST)["dice"]) == [0.5, 0.7]
    interval = site_interval(rows, experiment="fedavg", site="a", split=Split.TEST, metric="dice")
    assert interval is not None and interval.cases == 2 and math.isclose(interval.estimate, 0.6)
    assert site_interval(rows, experiment="fedavg", site="b", split=Split.TEST, metric="dice") is None


def test_classification_auc_interval_from_labels_and_probabilities() -> None:
    rng = np.random.default_rng(5)
    labels = np.tile([0, 1], 15)
    positive = np.clip(labels * 0.3 + rng.uniform(0, 0.7, size=30), 0, 1)
    rows = []
    for i, (label, p) in enumerate(zip(labels, positive, strict=True)):
        for name, value in (("label", label), ("prob0", 1 - p), ("prob1", p)):
            rows.append(MetricRow("fedavg", 2, "a", Split.TEST, case_metric(name, f"c{i:02d}"), float(value)))
    auc = site_interval(rows, experiment="fedavg", site="a", split=Split.TEST, metric="auc")
    assert auc is not None and auc.cases == 30
    expected = compute_roc_auc(torch.as_tensor(np.stack([1 - positive, positive], 1)), torch.eye(2)[labels])
    assert math.isclose(auc.estimate, float(expected), rel_tol=1e-6) and auc.low < auc.estimate < auc.high
    assert site_interval(rows, experiment="fedavg", site="a", split=Split.TEST, metric="loss") is None


@pytest.mark.parametrize(
    ("federated", "local", "verdict"),
    [(0.70, 0.75, "cost"), (0.80, 0.75, "paid off"), (0.75, 0.75, "no clear difference")],
)
def test_payoff_shows_whether_joining_paid_off(federated: float, local: float, verdict: str) -> None:
    noise = np.random.default_rng(0).normal(0, 0.05, size=30)
    rows = _cases("fedavg", "a", list(federated + noise)) + _cases("local-a", "a", list(local + noise[::-1]))
    result = payoff(rows, experiment="fedavg", site="a", scored_on="a", split=Split.TEST, metric="dice")
    assert result is not None
    assert math.isclose(result.difference.estimate, result.federated - result.local)
    assert result.verdict == verdict


def test_payoff_needs_both_models_per_case_scores() -> None:
    rows = _cases("fedavg", "a", [0.7, 0.8])
    assert payoff(rows, experiment="fedavg", site="a", scored_on="a", split=Split.TEST, metric="dice") is None
