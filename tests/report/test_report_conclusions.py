"""The report's numbers a reader can trust: case counts, bootstrap intervals, and whether joining
the federation paid off for each site, from constructed rows and from a tiny simulation."""

import re
from pathlib import Path

import numpy as np
from builders import tiny_simulation

from medfed.config.loading import parse_config
from medfed.orchestration.metrics_log import MetricRow, MetricsLog, Split, case_metric, split_case_metric
from medfed.orchestration.simulation import Callbacks
from medfed.report.html import SimulationRun, write_report
from medfed.report.summary import best_and_last, summarize
from medfed.simulator import run_simulation

KINDS = {"fedavg": "federated", "local-a": "local", "local-b": "local"}
MEANS = {  # experiment -> (site a, site b, unseen site d): FedAvg loses at home, wins on d
    "fedavg": (0.713, 0.70, 0.60),
    "local-a": (0.755, 0.50, 0.40),
    "local-b": (0.40, 0.75, 0.45),
}


def _rows() -> list[MetricRow]:
    rng = np.random.default_rng(0)  # each model's own per-case noise
    rows = []
    for experiment, means in MEANS.items():
        for site, mean in zip(("a", "b", "d"), means, strict=True):
            split = Split.UNSEEN if site == "d" else Split.TEST
            noise = rng.normal(0, 0.02, size=40)
            values = mean + noise - noise.mean()  # the mean is exactly the one in MEANS
            rows.append(MetricRow(experiment, 2, site, split, "dice", float(values.mean())))
            rows += [
                MetricRow(experiment, 2, site, split, case_metric("dice", f"c{i:02d}"), float(v))
                for i, v in enumerate(values)
            ]
    return rows


def _page(tmp_path: Path, rows: list[MetricRow]) -> str:
    summary = summarize(rows, KINDS, task="segmentation", unseen_site="d")
    run = SimulationRun(title="t", summary=summary, unseen_site="d", samples=[], config_yaml="seed: 0")
    write_report(tmp_path / "report.html", rows=rows, metric="dice", run=run)
    return (tmp_path / "report.html").read_text()


def _table_rows(page: str, heading: str) -> list[list[str]]:
    table = page[page.index(heading) :].split("</table>")[0]
    return [re.findall(r"<td>(.*?)</td>", row) for row in table.split("<tr")[2:]]


def test_final_table_shows_case_counts_and_intervals(tmp_path: Path) -> None:
    rows = _table_rows(_page(tmp_path, _rows()), "cases and 95 % intervals")
    fedavg_a = next(row for row in rows if row[:2] == ["fedavg", "a"])
    assert fedavg_a[2:4] == ["test", "40"]
    low, high = (float(x) for x in fedavg_a[5].strip("[]").split(", "))
    assert low < float(fedavg_a[4]) < high
    assert [row[2] for row in rows if row[1] == "d"] == ["unseen"] * 3


def test_a_site_with_one_case_shows_no_interval(tmp_path: Path) -> None:
    one = [
        row
        for row in _rows()
        if not (row.site == "b" and (parsed := split_case_metric(row.metric)) and parsed[1] != "c00")
    ]
    rows = _table_rows(_page(tmp_path, one), "cases and 95 % intervals")
    assert {tuple(row[3:6:2]) for row in rows if row[1] == "b"} == {("1", "–")}


def test_payoff_makes_a_losing_federation_visible(tmp_path: Path) -> None:
    page = _page(tmp_path, _rows())
    rows = {(row[1], row[2]): row for row in _table_rows(page, "Did joining the federation pay off?")}
    at_home = rows[("a", "own held-out cases")]
    assert at_home[3:6] == ["0.713", "0.755", "-0.042"] and at_home[7] == "cost"
    assert rows[("b", "own held-out cases")][7] == "cost"
    assert rows[("a", "unseen site d")][7] == "paid off"  # FedAvg generalises better than local-a
    assert "tr class='worse'" in page and "tr class='better'" in page


def test_without_per_case_rows_the_new_sections_are_absent(tmp_path: Path) -> None:
    page = _page(tmp_path, [row for row in _rows() if split_case_metric(row.metric) is None])
    assert "95 % intervals" not in page and "pay off" not in page
    assert "Mean dice (own sites): a federated" in page and "Best and last round" in page


def test_a_simulation_keeps_per_case_scores_of_its_final_round(tmp_path: Path) -> None:
    config = tiny_simulation(tmp_path / "run", federation={"rounds": 2}, baselines={"local": True})
    told: list[MetricRow] = []
    run_simulation(
        parse_config(config), callbacks=Callbacks(on_recorded=lambda _, __, rows: told.extend(rows))
    )
    assert told and not [
        row for row in told if split_case_metric(row.metric)
    ]  # trackers get no per-case rows
    rows = MetricsLog(tmp_path / "run").rows()
    per_case = [row for row in rows if split_case_metric(row.metric)]
    assert per_case and {row.round for row in per_case} == {2}
    page = (tmp_path / "run" / "report.html").read_text()
    assert "cases and 95 % intervals" in page and "Did joining the federation pay off?" in page


def test_best_and_last_round_of_each_experiment() -> None:
    rows = [
        MetricRow("fedavg", round, site, Split.TEST, "dice", value)
        for round, scores in {1: (0.5, 0.7), 2: (0.8, 0.8), 3: (0.7, 0.7)}.items()
        for site, value in zip(("a", "b"), scores, strict=True)
    ]
    rows += [MetricRow("fedavg", 3, "d", Split.UNSEEN, "dice", 1.0)]  # the unseen site is not "own"
    rows += [
        MetricRow("local-a", r, s, Split.TEST, "dice", v)
        for r, s, v in ((1, "a", 0.6), (2, "a", 0.5), (2, "b", 0.9))
    ]
    picks = {pick.experiment: pick for pick in best_and_last(rows, KINDS, metric="dice")}
    assert (picks["fedavg"].last_round, picks["fedavg"].best_round) == (3, 2)
    assert abs(picks["fedavg"].last - 0.7) < 1e-12 and abs(picks["fedavg"].best - 0.8) < 1e-12
    assert (picks["local-a"].best_round, picks["local-a"].best, picks["local-a"].last) == (1, 0.6, 0.5)
    assert "local-b" not in picks
