import math
from pathlib import Path

import numpy as np
import pytest

from medfed.config.loading import parse_config
from medfed.orchestration.metrics_log import MetricRow, Split, case_metric
from medfed.report.classification import class_scores, roc_curves
from medfed.report.html import SimulationRun, write_report
from medfed.report.intervals import site_interval
from medfed.report.summary import summarize
from medfed.simulator import run_simulation

KINDS = {"fedavg": "federated", "local-a": "local"}


def _case_rows(experiment: str, site: str, labels: list[int], predicted: list[int]) -> list[MetricRow]:
    """Final-round per-case rows of a two-class model: 0.7 on the predicted class (0.2 + 0.1 *
    case index for class 1 when predicting 0, so the cases rank) and the case's aggregate AUC."""
    split = Split.UNSEEN if site == "u" else Split.TEST
    rows = [MetricRow(experiment, 2, site, split, "auc", 0.5)]
    for i, (label, guess) in enumerate(zip(labels, predicted, strict=True)):
        positive = 0.7 if guess == 1 else 0.1 + 0.02 * i
        for name, value in (("label", label), ("prob0", 1 - positive), ("prob1", positive)):
            rows.append(
                MetricRow(experiment, 2, site, split, case_metric(name, f"{site}{i:02d}"), float(value))
            )
    return rows


def _rows() -> list[MetricRow]:
    rows = []
    for experiment in KINDS:
        # site a: tp 3, fn 1, tn 4, fp 2 (hand-counted); site b: all right; unseen u: all called 1
        rows += _case_rows(experiment, "a", [1, 1, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0, 1, 1])
        rows += _case_rows(experiment, "b", [0, 1, 0, 1], [0, 1, 0, 1])
        rows += _case_rows(experiment, "u", [0, 0, 1], [1, 1, 1])
    return rows


def test_scores_per_site_from_hand_counted_confusion_matrices() -> None:
    summary = summarize(_rows(), KINDS, task="classification", unseen_site="u")
    found = {(s.experiment, s.site): s for s in class_scores(_rows(), summary, unseen_site="u")}
    assert [key for key in found if key[0] == "fedavg"] == [("fedavg", "a"), ("fedavg", "b"), ("fedavg", "u")]
    a = found["fedavg", "a"]
    assert (a.split, a.class_cases, a.kind) == (Split.TEST, (6, 4), "federated")
    assert math.isclose(a.accuracy.estimate, 0.7) and a.accuracy.cases == 10
    assert math.isclose(a.sensitivity.estimate, 0.75) and math.isclose(a.specificity.estimate, 4 / 6)
    assert a.recall == pytest.approx((4 / 6, 0.75))
    assert a.accuracy.low <= 0.7 <= a.accuracy.high and a.accuracy.high - a.accuracy.low > 0.1
    u = found["fedavg", "u"]
    assert (u.split, u.class_cases) == (Split.UNSEEN, (2, 1))
    assert (u.accuracy.estimate, u.sensitivity.estimate, u.specificity.estimate) == pytest.approx(
        (1 / 3, 1, 0)
    )
    assert found["local-a", "b"].accuracy.estimate == 1.0


def test_class_metrics_have_bootstrap_intervals_like_auc() -> None:
    interval = site_interval(_rows(), experiment="fedavg", site="a", split=Split.TEST, metric="sensitivity")
    assert interval is not None and interval.cases == 10 and math.isclose(interval.estimate, 0.75)
    assert interval.low < interval.estimate <= interval.high


def test_roc_pools_own_sites_and_a_local_model_keeps_to_its_site() -> None:
    summary = summarize(_rows(), KINDS, task="classification", unseen_site="u")
    own, unseen = roc_curves(_rows(), summary, unseen_site="u")
    cases = {curve.experiment: curve.cases for curve in own}
    assert cases == {"fedavg": 14, "local-a": 10}
    assert [curve.experiment for curve in unseen] == ["fedavg", "local-a"]
    for curve in own:
        area = np.trapezoid(curve.true_positive_rate, curve.false_positive_rate)
        assert math.isclose(area, curve.auc)


def test_report_shows_the_classification_section(tmp_path: Path) -> None:
    summary = summarize(_rows(), KINDS, task="classification", unseen_site="u")
    run = SimulationRun(title="t", summary=summary, unseen_site="u", samples=[], config_yaml="")
    write_report(tmp_path / "report.html", rows=_rows(), metric="auc", run=run)
    page = (tmp_path / "report.html").read_text()
    assert "Classification: accuracy, sensitivity, specificity, ROC" in page
    assert "<td>6 / 4</td><td>0.700\u00a0[" in page and "<td>0.667 / 0.750</td>" in page
    assert page.count("data:image/png;base64,") == 3  # learning curves, per-site, ROC


def test_segmentation_rows_have_no_classification_section(tmp_path: Path) -> None:
    rows = [MetricRow("fedavg", 1, "a", Split.TEST, case_metric("dice", "c0"), 0.5)]
    summary = summarize(rows, {"fedavg": "federated"}, task="segmentation", unseen_site=None)
    assert class_scores(rows, summary, unseen_site=None) == []
    assert roc_curves(rows, summary, unseen_site=None) == ([], [])


def test_a_classification_simulation_reports_what_its_evaluation_measured(tmp_path: Path) -> None:
    config = {
        "task": "classification",
        "output_dir": str(tmp_path / "run"),
        "data": {"synthetic": {"image_size": 16, "cases_scale": 0.15}, "augment": False},
        "model": {"name": "resnet"},
        "training": {"local_epochs": 1, "batch_size": 4},
        "federation": {"rounds": 1},
        "strategies": [{"name": "fedavg"}],
        "baselines": {"centralized": False, "local": False},
    }
    settings = parse_config(config)
    outcome = run_simulation(settings)
    found = class_scores(outcome.rows, outcome.summary, unseen_site=settings.data.unseen_site)
    measured = {
        (row.experiment, row.site, row.metric): row.value
        for row in outcome.rows
        if row.round == 1 and row.metric in ("accuracy", "sensitivity", "specificity")
    }
    sites = {score.site for score in found}
    assert settings.data.unseen_site in sites and len(sites) >= 3
    assert {score.experiment for score in found} == {"fedavg"}
    for score in found:
        assert len(score.class_cases) == 2 and score.accuracy.cases == sum(score.class_cases)
        for name in ("accuracy", "sensitivity", "specificity"):  # MONAI's, for two classes
            estimate = getattr(score, name).estimate
            expected = measured[score.experiment, score.site, name]
            assert estimate == pytest.approx(expected, rel=1e-6, nan_ok=True)
    page = outcome.report.read_text()
    assert "Classification: accuracy, sensitivity, specificity, ROC" in page


def test_a_site_without_positive_cases_has_a_specificity_but_no_sensitivity() -> None:
    rows = _case_rows("fedavg", "a", [0, 0, 0, 0], [0, 1, 0, 0])
    summary = summarize(rows, {"fedavg": "federated"}, task="classification", unseen_site=None)
    (found,) = class_scores(rows, summary, unseen_site=None)
    assert found.class_cases == (4, 0)
    assert math.isnan(found.sensitivity.estimate)  # as MONAI's ConfusionMatrixMetric: 0 / 0
    assert math.isclose(found.specificity.estimate, 3 / 4) and math.isclose(found.accuracy.estimate, 3 / 4)
