import json
import math
from pathlib import Path

import numpy as np

from medfed.orchestration.metrics_log import MetricRow
from medfed.report.html import write_report
from medfed.report.plots import SampleImage
from medfed.report.summary import AttackRole, attack_summary, summarize, write_summary


def _rows() -> list[MetricRow]:
    rows = []
    for experiment, scores in {
        "fedavg": (0.8, 0.6, 0.7),
        "centralized": (0.82, 0.64, 0.72),
        "local-a": (0.9, 0.2, 0.1),
        "local-b": (0.3, 0.7, 0.5),
    }.items():
        for round in (1, 2):
            for site, value in zip(("a", "b", "d"), scores, strict=True):
                split = "unseen" if site == "d" else "test"
                rows.append(MetricRow(experiment, round, site, split, "dice", value * round / 2))
    rows.append(MetricRow("fedavg", 2, "a", "privacy", "epsilon", 3.5))
    return rows


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
    sample = SampleImage("a", "case_0", np.zeros((8, 8)), np.eye(8), np.eye(8), "fedavg")
    path = tmp_path / "report.html"
    write_report(
        path,
        title="t",
        rows=_rows(),
        summary=summary,
        metric="dice",
        unseen_site="d",
        samples=[sample],
        config_yaml="seed: 0",
    )
    page = path.read_text()
    assert page.count("data:image/png;base64,") == 3  # curves, one per-site plot, samples
    assert "src='http" not in page and "<link" not in page
    assert "local (mean)" in page and "epsilon" in page
    write_summary(tmp_path / "results.json", summary, metric="dice")
    assert json.loads((tmp_path / "results.json").read_text())["experiments"][0]["experiment"] == "fedavg"


def test_adabn_scores_of_the_unseen_site_get_their_own_column(tmp_path: Path) -> None:
    rows = [*_rows(), MetricRow("fedavg", 2, "d", "unseen-adabn", "dice", 0.5)]
    summary = {row.experiment: row for row in summarize(rows, KINDS, task="segmentation", unseen_site="d")}
    assert math.isclose(summary["fedavg"].unseen_adabn, 0.5)
    assert math.isclose(summary["fedavg"].unseen, 0.7)  # the plain score is unchanged
    assert math.isnan(summary["centralized"].unseen_adabn)
    path = tmp_path / "report.html"
    write_report(
        path,
        title="t",
        rows=rows,
        summary=list(summary.values()),
        metric="dice",
        unseen_site="d",
        samples=[],
        config_yaml="seed: 0",
    )
    assert "dice on unseen site after AdaBN" in path.read_text()


def test_attack_table_shows_clean_attacked_and_defended(tmp_path: Path) -> None:
    rows = [
        MetricRow(name, 2, site, "test", metric, value)
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
    write_report(
        path,
        title="t",
        rows=rows,
        summary=summary,
        metric="dice",
        unseen_site=None,
        samples=[],
        config_yaml="seed: 0",
        attacks=attacks,
    )
    page = path.read_text()
    assert "clean vs attacked vs defended" in page
    assert "<td>krum</td><td>defended</td><td>0.780</td><td>0.100</td>" in page


def test_peer_to_peer_rows_get_a_table_of_each_sites_model_and_of_bytes(tmp_path: Path) -> None:
    rows = [
        *_rows(),
        MetricRow("fedavg", 2, "a", "test@b", "dice", 0.125),
        MetricRow("fedavg", 1, "a", "test@b", "dice", 0.875),
        MetricRow("fedavg", 1, "a", "traffic", "bytes_sent", 1_500_000.0),
        MetricRow("fedavg", 2, "a", "traffic", "bytes_sent", 500_000.0),
    ]
    path = tmp_path / "report.html"
    summary = summarize(rows, KINDS, task="segmentation", unseen_site="d")
    write_report(
        path,
        title="t",
        rows=rows,
        summary=summary,
        metric="dice",
        unseen_site="d",
        samples=[],
        config_yaml="",
    )
    page = path.read_text()
    assert "each site's own model" in page and "<td>0.125</td>" in page and "0.875" not in page
    assert "<td>2.000</td><td>0.000</td>" in page  # 2 MB sent by a over both rounds, none received
    assert {row.experiment: row.per_site for row in summary}["fedavg"] == next(
        row.per_site for row in summarize(_rows(), KINDS, task="segmentation", unseen_site="d")
    )
