"""A run over several seeds in the summary, the learning curves and the report page."""

import html
import math
from pathlib import Path

import pytest
from builders import score_rows

from medfed.orchestration.metrics_log import MetricRow
from medfed.report.html import SimulationRun, write_report
from medfed.report.plots import seed_band
from medfed.report.seeds import reference_rows, seeds_note
from medfed.report.summary import SummaryRow, pool_seeds, summarize
from medfed.report.tables import number

KINDS = {"fedavg": "federated", "local-a": "local", "local-b": "local"}


def _rows(seed: int, scale: float) -> list[MetricRow]:
    """Own sites a and b, unseen site d; the final round's scores times ``scale``."""
    scores = {"fedavg": (0.8, 0.6, 0.7), "local-a": (0.9, 0.2, 0.1), "local-b": (0.3, 0.7, 0.5)}
    return score_rows(scores, scale=scale, seed=seed)


def _summary(rows: list[MetricRow]) -> list[SummaryRow]:
    return summarize(rows, KINDS, task="segmentation", unseen_site="d")


def test_pooled_scores_are_the_mean_and_sample_sd_of_the_seeds_scores() -> None:
    pooled = {row.experiment: row for row in pool_seeds([_summary(_rows(0, 1.0)), _summary(_rows(1, 0.5))])}
    fedavg = pooled["fedavg"]
    assert fedavg.seeds == 2
    assert math.isclose(fedavg.own_sites, (0.7 + 0.35) / 2)  # own sites a, b: (0.8 + 0.6) / 2 at scale 1
    assert math.isclose(fedavg.own_sites_sd, 0.35 / math.sqrt(2))  # |0.7 - 0.35| / sqrt(2)
    assert math.isclose(fedavg.unseen, (0.7 + 0.35) / 2)
    assert math.isclose(fedavg.unseen_sd, 0.35 / math.sqrt(2))
    assert math.isclose(fedavg.per_site["a"], (0.8 + 0.4) / 2)
    local = pooled["local (mean)"]  # each seed's mean of the local models, then over seeds
    assert math.isclose(local.own_sites, (0.8 + 0.4) / 2)
    assert math.isclose(local.own_sites_sd, 0.4 / math.sqrt(2))
    assert list(pooled) == ["fedavg", "local-a", "local-b", "local (mean)"]


def test_one_seeds_summary_is_unchanged_and_experiments_must_match() -> None:
    one = _summary(_rows(0, 1.0))
    assert pool_seeds([one]) == one
    assert math.isnan(one[0].own_sites_sd) and one[0].seeds == 1
    with pytest.raises(ValueError, match="differ in experiments"):
        pool_seeds([one, one[:1]])


def test_a_score_shows_its_sd_only_when_there_is_one() -> None:
    assert number(0.7) == "0.700"
    assert number(0.525, 0.2475) == "0.525 ± 0.247"
    assert number(math.nan, 0.1) == "–"


def test_the_curve_band_is_the_sd_of_each_seeds_mean_over_sites() -> None:
    mean, sd = seed_band([{0: [0.2, 0.4], 1: [0.5]}, {0: [0.6]}])
    assert mean[0] == pytest.approx(0.4) and sd[0] == pytest.approx(math.sqrt(0.02))  # seeds 0.3, 0.5
    assert mean[1] == pytest.approx(0.6) and math.isnan(sd[1])  # one seed: no band


def test_the_page_shows_mean_sd_and_says_which_seed_the_per_site_sections_show(tmp_path: Path) -> None:
    rows = _rows(3, 1.0) + _rows(5, 0.5)
    assert {row.seed for row in reference_rows(rows)} == {3}
    summary = pool_seeds([_summary(_rows(3, 1.0)), _summary(_rows(5, 0.5))])
    path = tmp_path / "report.html"
    run = SimulationRun(title="t", summary=summary, unseen_site="d", samples=[], config_yaml="seeds: [3, 5]")
    write_report(path, rows=rows, metric="dice", run=run)
    page = html.unescape(path.read_text())
    assert "0.525 ± 0.247" in page  # fedavg, own sites
    assert "(3, 5; n = 2)" in page and "seed 3's run only" in page
    single = tmp_path / "single.html"
    one = SimulationRun(
        title="t", summary=_summary(_rows(3, 1.0)), unseen_site="d", samples=[], config_yaml=""
    )
    write_report(single, rows=_rows(3, 1.0), metric="dice", run=one)
    assert "±" not in single.read_text() and seeds_note(_rows(3, 1.0)) == ""
