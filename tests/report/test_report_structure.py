"""The report's structure (issue #11): built from the packaged template, a configuration without
the privacy settings that are off, and a deployed job's report with the same parts as a
simulation's: status, final table, best and last round, HD95 and loss, drop-outs and rejections."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import yaml

from medfed.config.loading import parse_config
from medfed.deployment.job import JobConfig
from medfed.deployment.report import keep_job, write_job_report
from medfed.deployment.status import ServerStatus, write_status
from medfed.orchestration.metrics_log import MetricRow, MetricsLog, Split
from medfed.report.html import DeploymentRun, SimulationRun, write_report
from medfed.report.settings import settings_yaml
from medfed.report.summary import summarize

ROOT = Path(__file__).resolve().parents[2]


def _table(page: str, heading: str) -> list[list[str]]:
    table = page[page.index(heading) :].split("</table>")[0]
    return [re.findall(r"<td>(.*?)</td>", row) for row in table.split("<tr")[2:]]


def test_the_template_is_package_data_of_a_non_editable_install() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    folder = ROOT / "src" / "medfed" / "report"
    templates = [path.relative_to(folder).as_posix() for path in (folder / "templates").iterdir()]
    assert templates and all(
        any(fnmatch.fnmatch(name, glob) for glob in data["medfed.report"]) for name in templates
    )
    assert any(
        dependency.startswith("jinja2")
        for dependency in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    )


def test_a_run_without_privacy_shows_no_privacy_settings() -> None:
    shown = yaml.safe_load(settings_yaml(parse_config({"federation": {"rounds": 1}})))
    assert "privacy" not in shown and shown["federation"]["rounds"] == 1


def test_privacy_that_is_on_is_shown_and_nothing_that_is_off() -> None:
    dp = yaml.safe_load(settings_yaml(parse_config({"privacy": {"dp_sgd": {}, "epsilon": 3.0}})))["privacy"]
    assert dp["epsilon"] == 3.0 and "accountant" in dp and "max_grad_norm" in dp["dp_sgd"]
    assert not {"client_dp", "secure_aggregation", "encryption", "reproducible_noise", "sites"} & set(dp)
    secure = settings_yaml(JobConfig(name="j", privacy={"secure_aggregation": {}}))  # type: ignore[arg-type]
    assert list(yaml.safe_load(secure)["privacy"]) == ["secure_aggregation"]


def test_a_simulation_report_shows_hd95_and_training_loss(tmp_path: Path) -> None:
    rows = [
        MetricRow("fedavg", round, site, split, metric, value)
        for round in (1, 2, 3)
        for site in ("a", "b")
        for split, metric, value in (
            (Split.TEST, "dice", {1: 0.5, 2: 0.8, 3: 0.7}[round]),
            (Split.TEST, "hd95", 10.0 / round),
            (Split.TRAIN, "loss", 1.0 / round),
        )
    ]
    summary = summarize(rows, {"fedavg": "federated"}, task="segmentation", unseen_site=None)
    run = SimulationRun(title="t", summary=summary, unseen_site=None, samples=[], config_yaml="seed: 0")
    write_report(tmp_path / "report.html", rows=rows, metric="dice", run=run)
    page = (tmp_path / "report.html").read_text()
    assert "<th>hd95 (last round)</th><th>training loss (last round)</th>" in page
    assert _table(page, "Federated vs centralized")[0][:5] == ["fedavg", "0.700", "–", "3.333", "0.333"]
    assert _table(page, "Best and last round")[0] == [
        "fedavg", "3", "0.700", "3.333", "0.333", "2", "0.800", "5.000", "0.500"
    ]  # fmt: skip
    assert "hd95 per round (lower is better)" in page
    assert "Training loss per round (mean over each experiment's sites)" in page
    assert page.count("data:image/png;base64,") == 4  # dice, hd95, loss, fedavg per site


def _state_dir(tmp_path: Path, *, finished: bool) -> Path:
    """A server's state dir after 2 of 3 rounds: site c missed round 1, b's update was refused in
    round 2, c declined round 2."""
    state = tmp_path / "state"
    keep_job(state, JobConfig(name="job", federation={"rounds": 3}))  # type: ignore[arg-type]
    log = MetricsLog(state)
    scores = {("a", 1): 0.4, ("b", 1): 0.6, ("a", 2): 0.8, ("b", 2): 0.5}
    for round in (1, 2):
        rows = [
            MetricRow("job", round, site, split, metric, value)
            for site in ("a", "b")
            for split, metric, value in (
                (Split.EVAL, "dice", scores[site, round]),
                (Split.EVAL, "hd95", 4.0 * round),
                (Split.TRAIN, "loss", 2.0 / round),
            )
        ]
        rows += [MetricRow("job", 1, "c", Split.PARTICIPATION, "no_answer", 1.0)] if round == 1 else []
        rows += (
            [
                MetricRow("job", 2, "b", Split.PARTICIPATION, "rejected", 1.0),
                MetricRow("job", 2, "c", Split.PARTICIPATION, "declined", 1.0),
            ]
            if round == 2
            else []
        )
        log.record_round("job", round, rows)
    status = ServerStatus(
        job="job",
        port=1,
        completed_rounds=3 if finished else 2,
        total_rounds=3,
        finished=finished,
        declined={"c": "round 2: budget spent"},
        rejected={"b": "round 2: <b>NaN</b> in weights"},
    )
    write_status(state, status)
    return state


def test_a_deployed_job_report_has_the_simulations_structure(tmp_path: Path) -> None:
    page = write_job_report(_state_dir(tmp_path, finished=False)).read_text()
    assert "<strong>Status:</strong> unfinished: 2 of 3 rounds done" in page
    final = _table(page, "Final round: the global model")
    assert final == [
        ["mean (own sites)", "", "0.650", "8.000", "1.000"],
        ["a", "2", "0.800", "8.000", "1.000"],
        ["b", "2", "0.500", "8.000", "1.000"],
    ]
    best = {row[0]: row for row in _table(page, "Best and last round")}
    assert best["b"][:3] == ["b", "2", "0.500"] and best["b"][5:7] == ["1", "0.600"]
    assert best["mean (own sites)"][5:7] == ["2", "0.650"]
    assert _table(page, "Drop-outs per round") == [["job", "1", "c", "", ""], ["job", "2", "", "c", "b"]]
    assert _table(page, "Rejected updates") == [["b", "round 2: &lt;b&gt;NaN&lt;/b&gt; in weights"]]
    assert _table(page, "Declined by sites") == [["c", "round 2: budget spent"]]
    assert "hd95 on each site's held-out cases" in page and "Training loss per site" in page
    assert "name: job" in page and "privacy" not in page.split("<h2>Job</h2>")[1]


def test_a_finished_job_says_so(tmp_path: Path) -> None:
    page = write_job_report(_state_dir(tmp_path, finished=True)).read_text()
    assert "<strong>Status:</strong> finished: 3 of 3 rounds done" in page


def test_hd95_of_the_last_round_only_is_a_column_not_a_curve(tmp_path: Path) -> None:
    rows = [
        MetricRow("job", round, site, Split.EVAL, "dice", 0.5 * round)
        for round in (1, 2)
        for site in ("a", "b")
    ]
    rows += [MetricRow("job", 2, site, Split.EVAL, "hd95", 3.0) for site in ("a", "b")]
    write_report(
        tmp_path / "report.html", rows=rows, metric="dice", run=DeploymentRun(job="job", job_yaml="")
    )
    page = (tmp_path / "report.html").read_text()
    assert _table(page, "Final round: the global model")[1] == ["a", "2", "1.000", "3.000", "–"]
    assert "hd95 on each site" not in page and page.count("data:image/png;base64,") == 1
