import json
import math
from pathlib import Path

import numpy as np
from builders import score_rows

from medfed.orchestration.metrics_log import MetricRow, Split
from medfed.report.html import DeploymentRun, SimulationRun, write_report
from medfed.report.plots import Prediction, SampleImage
from medfed.report.summary import AttackRole, attack_summary, summarize, write_summary


def _rows() -> list[MetricRow]:
    scores = {
        "fedavg": (0.8, 0.6, 0.7),
        "centralized": (0.82, 0.64, 0.72),
        "local-a": (0.9, 0.2, 0.1),
        "local-b": (0.3, 0.7, 0.5),
    }
    return [*score_rows(scores), MetricRow("fedavg", 2, "a", "privacy", "epsilon", 3.5)]


KINDS = {"fedavg": "federated", "centralized": "centralized", "local-a": "local", "local-b": "local"}


def test_summary_compares_federated_centralized_and_local() -> None:
    summary = {row.experiment: row for row in summarize(_rows(), KINDS, task="segmentation", unseen_site="d")}
    assert math.isclose(summary["fedavg"].own_sites, 0.7)
    assert math.isclose(summary["fedavg"].unseen, 0.7)
    assert math.isclose(summary["local-a"].own_sites, 0.9)  # a local model scores at its own site
    assert math.isclose(summary["local (mean)"].own_sites, (0.9 + 0.7) / 2)
    assert math.isclose(summary["local (mean)"].unseen, (0.1 + 0.5) / 2)


def test_report_is_one_self_contained_html_file(tmp_path: Path) -> None:
    summary = summarize(_rows(), KINDS, task="segmentation", unseen_site="d")
    sample = SampleImage("a", "case_0", np.zeros((8, 8)), np.eye(8), (Prediction("fedavg", np.eye(8), 0.9),))
    path = tmp_path / "report.html"
    run = SimulationRun(title="t", summary=summary, unseen_site="d", samples=[sample], config_yaml="seed: 0")
    write_report(path, rows=_rows(), metric="dice", run=run)
    page = path.read_text()
    assert page.count("data:image/png;base64,") == 3  # curves, one per-site plot, samples
    assert "src='http" not in page and "<link" not in page
    assert "local (mean)" in page and "epsilon" in page
    write_summary(tmp_path / "results.json", summary, metric="dice")
    assert json.loads((tmp_path / "results.json").read_text())["experiments"][0]["experiment"] == "fedavg"


def test_adabn_scores_of_the_unseen_site_get_their_own_column(tmp_path: Path) -> None:
    rows = [*_rows(), MetricRow("fedavg", 2, "d", Split.UNSEEN_ADABN, "dice", 0.5)]
    summary = {row.experiment: row for row in summarize(rows, KINDS, task="segmentation", unseen_site="d")}
    assert math.isclose(summary["fedavg"].unseen_adabn, 0.5)
    assert math.isclose(summary["fedavg"].unseen, 0.7)  # the plain score is unchanged
    assert math.isnan(summary["centralized"].unseen_adabn)
    path = tmp_path / "report.html"
    run = SimulationRun(
        title="t", summary=list(summary.values()), unseen_site="d", samples=[], config_yaml="seed: 0"
    )
    write_report(path, rows=rows, metric="dice", run=run)
    assert "dice on unseen site after AdaBN" in path.read_text()


def test_attack_table_shows_clean_attacked_and_defended(tmp_path: Path) -> None:
    rows = [
        MetricRow(name, 2, site, Split.TEST, metric, value)
        for name, dice, rate in (("fedavg-clean", 0.8, 0.0), ("fedavg", 0.3, 0.9), ("krum", 0.78, 0.1))
        for site in ("a", "b")
        for metric, value in (("dice", dice), ("backdoor_success", rate))
    ]
    kinds = {"fedavg-clean": "federated", "fedavg": "federated", "krum": "federated"}
    summary = summarize(rows, kinds, task="segmentation", unseen_site=None)
    roles: dict[str, AttackRole] = {"fedavg-clean": "clean", "fedavg": "attacked", "krum": "defended"}
    attacks = attack_summary(rows, summary, roles, backdoor_metric="backdoor_success")
    assert [(a.role, round(a.own_sites, 6), round(a.backdoor_success, 6)) for a in attacks] == [
        ("clean", 0.8, 0.0),
        ("attacked", 0.3, 0.9),
        ("defended", 0.78, 0.1),
    ]
    path = tmp_path / "report.html"
    run = SimulationRun(
        title="t", summary=summary, unseen_site=None, samples=[], config_yaml="seed: 0", attacks=attacks
    )
    write_report(path, rows=rows, metric="dice", run=run)
    page = path.read_text()
    assert "clean vs attacked vs defended" in page
    assert "<td>krum</td><td>defended</td><td>0.780</td><td>0.100</td>" in page


def test_one_writer_renders_a_deployed_job_with_its_declines(tmp_path: Path) -> None:
    rows = [
        MetricRow("job", round, site, split, metric, value)
        for round in (1, 2)
        for site in ("a", "b")
        for split, metric, value in ((Split.EVAL, "dice", 0.3 * round), (Split.TRAIN, "loss", 1 / round))
    ]
    rows.append(MetricRow("job", 2, "a", Split.PRIVACY, "epsilon", 1.25))
    path = tmp_path / "report.html"
    declines = {"c": "round 2: policy <script>alert(1)</script> refuses the job"}
    write_report(
        path, rows=rows, metric="dice", run=DeploymentRun(job="job", job_yaml="name: job", declines=declines)
    )
    page = path.read_text()
    assert page.count("data:image/png;base64,") == 2  # held-out dice per site, training loss per site
    assert "held-out cases" in page and "Training loss per site" in page and "1.250" in page
    assert "Declined by sites" in page and "&lt;script&gt;" in page and "<script>" not in page
    assert "name: job" in page and "Federated vs centralized" not in page


def test_a_job_without_scores_declines_or_privacy_shows_only_what_it_has(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    write_report(path, rows=[], metric="dice", run=DeploymentRun(job="job", job_yaml="name: job"))
    page = path.read_text()
    assert "data:image" not in page and "Declined" not in page and "Privacy spent" not in page


def test_privacy_utility_curve_when_sites_spent_different_epsilons(tmp_path: Path) -> None:
    from medfed.report.plots import privacy_utility

    one_budget = _rows()
    assert privacy_utility(one_budget, metric="dice") is None  # one site, one epsilon: no curve
    two_budgets = [*one_budget, MetricRow("fedavg", 2, "b", Split.PRIVACY, "epsilon", 8.0)]
    assert privacy_utility(two_budgets, metric="dice") is not None
    summary = summarize(two_budgets, KINDS, task="segmentation", unseen_site="d")
    path = tmp_path / "report.html"
    run = SimulationRun(title="t", summary=summary, unseen_site="d", samples=[], config_yaml="")
    write_report(path, rows=two_budgets, metric="dice", run=run)
    page = path.read_text()
    assert "Privacy-utility curve" in page and page.count("data:image/png;base64,") == 3


def test_privacy_utility_curve_of_a_deployed_job(tmp_path: Path) -> None:
    rows = [MetricRow("job", 2, site, Split.EVAL, "dice", value) for site, value in (("a", 0.5), ("b", 0.7))]
    rows += [
        MetricRow("job", 2, "a", Split.PRIVACY, "epsilon", 2.0),
        MetricRow("job", 2, "b", Split.PRIVACY, "epsilon", 8.0),
    ]
    path = tmp_path / "report.html"
    write_report(path, rows=rows, metric="dice", run=DeploymentRun(job="job", job_yaml="name: job"))
    assert "Privacy-utility curve" in path.read_text()


def test_peer_to_peer_rows_get_a_table_of_each_sites_model_and_of_bytes(tmp_path: Path) -> None:
    rows = [
        *_rows(),
        MetricRow("fedavg@b", 2, "a", Split.TEST, "dice", 0.125),
        MetricRow("fedavg@b", 1, "a", Split.TEST, "dice", 0.875),
        MetricRow("fedavg", 1, "a", Split.TRAFFIC, "bytes_sent", 1_500_000.0),
        MetricRow("fedavg", 2, "a", Split.TRAFFIC, "bytes_sent", 500_000.0),
    ]
    summary = summarize(rows, KINDS, task="segmentation", unseen_site="d")
    assert summary == summarize(_rows(), KINDS, task="segmentation", unseen_site="d")
    path = tmp_path / "report.html"
    run = SimulationRun(title="t", summary=summary, unseen_site="d", samples=[], config_yaml="")
    write_report(path, rows=rows, metric="dice", run=run)
    page = path.read_text()
    assert "each site's own model" in page and "<td>fedavg</td><td>b</td><td>0.125</td>" in page
    assert "0.875" not in page
    assert "<td>2.000</td><td>0.000</td>" in page  # 2 MB sent by a over both rounds, none received
