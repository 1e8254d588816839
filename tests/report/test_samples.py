"""Sample predictions: the same held-out case per site, predicted by every model the site would
compare, with the case's Dice; for 3D, the axial slice with the most foreground."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from builders import one_torch_thread, tiny_simulation
from PIL import Image

from medfed.config.loading import parse_config
from medfed.orchestration.metrics_log import MetricRow, Split, case_metric
from medfed.report.plots import MAX_SAMPLE_MODELS, Prediction, SampleImage, sample_figure, sample_grid
from medfed.simulator import _final_case_scores, _largest_slice, run_simulation


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def test_every_model_predicts_the_same_case_at_each_site_on_the_fullest_slice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[Any] = []
    monkeypatch.setattr("medfed.simulator.write_report", lambda path, *, rows, metric, run: shown.append(run))
    config = parse_config(
        tiny_simulation(
            tmp_path,
            data={"synthetic": {"family": "kidney_ct", "cases_scale": 0.02}, "augment": False},
            baselines={"centralized": True, "local": True},
        )
    )
    outcome = run_simulation(config)
    (run,) = shown
    unseen = config.data.unseen_site
    training = sorted(
        result.experiment.name for result in outcome.experiments if result.experiment.kind == "local"
    )
    dice = _final_case_scores(outcome.rows, "dice")
    assert {sample.site for sample in run.samples} == {
        *[name.removeprefix("local-") for name in training],
        unseen,
    }
    for sample in run.samples:
        models = [prediction.model for prediction in sample.predictions]
        expected = training if sample.site == unseen else [f"local-{sample.site}"]
        assert models == ["fedavg", "centralized", *expected]
        for prediction in sample.predictions:
            assert prediction.dice == dice[prediction.model, sample.site, sample.case_id]
            assert prediction.mask.shape == sample.truth.shape == sample.image.shape
        assert sample.slice_index is not None and sample.truth.ndim == 2
    assert all(sample.truth.any() for sample in run.samples)  # the slice with the most foreground


def test_final_case_scores_take_the_latest_round_of_held_out_rows() -> None:
    rows = [
        MetricRow("fedavg", 2, "a", Split.TEST, case_metric("dice", "c1"), 0.8),
        MetricRow("fedavg", 1, "a", Split.TEST, case_metric("dice", "c1"), 0.3),
        MetricRow("fedavg", 2, "u", Split.UNSEEN_ADABN, case_metric("dice", "c1"), 0.1),
        MetricRow("fedavg", 2, "a", Split.TEST, "dice", 0.8),
    ]
    assert _final_case_scores(rows, "dice") == {("fedavg", "a", "c1"): 0.8}


def test_grid_has_a_panel_per_model_and_stays_small() -> None:
    truth = np.zeros((16, 16), np.int64)
    truth[4:9, 4:9] = 1
    predictions = tuple(
        Prediction(name, truth, 0.75) for name in ("fedavg", "fedprox", "centralized", "local-a")
    )
    samples = [
        SampleImage("a", "c1", np.random.default_rng(0).random((16, 16)), truth, predictions[:3], 7),
        SampleImage(
            "u", "c2", np.zeros((16, 16)), truth, (*predictions, Prediction("local-b", truth, np.nan))
        ),
    ]
    panels = [axis.get_title() for axis in sample_figure(samples).axes]
    titles = [panels[:6], panels[6:]]
    assert titles[0][:4] == [
        "a / c1\ntrue mask, axial slice 7",
        "fedavg\nDice 0.750",
        "fedprox\nDice 0.750",
        "centralized\nDice 0.750",
    ]
    assert titles[0][4:] == ["", ""]  # unused panels
    assert titles[1][0] == "u / c2\ntrue mask" and titles[1][5] == "local-b\nDice –"
    png = sample_grid(samples)
    width, height = Image.open(io.BytesIO(png)).size
    assert width == pytest.approx(1.7 * 6 * 90, abs=2) and height == pytest.approx(2.0 * 2 * 90, abs=2)
    assert len(png) < 120_000


def test_the_slice_shown_of_a_volume_has_the_most_foreground() -> None:
    mask = np.zeros((6, 6, 5), np.int64)
    mask[1:3, 1:3, 1] = 1  # 4 voxels
    mask[0:4, 0:3, 3] = 2  # 12 voxels
    assert _largest_slice(mask) == 3
    assert _largest_slice(mask[..., 0]) is None  # 2D: no slice


def test_a_row_shows_at_most_the_cap_federated_first_and_names_what_is_dropped() -> None:
    truth = np.zeros((16, 16), np.int64)
    truth[4:9, 4:9] = 1
    kinds = {"local-a": "local", "fedavg": "federated", "local-b": "local", "centralized": "centralized"}
    kinds |= {f"local-{c}": "local" for c in "cdef"} | {"fedprox": "federated", "scaffold": "federated"}
    predictions = tuple(Prediction(name, truth, 0.5, kind) for name, kind in kinds.items())  # 10 models
    figure = sample_figure([SampleImage("u", "c1", np.zeros((16, 16)), truth, predictions)])
    titles = [axis.get_title().split("\n")[0] for axis in figure.axes]
    assert len(titles) == 1 + MAX_SAMPLE_MODELS == 7
    assert titles[1:] == ["fedavg", "fedprox", "scaffold", "centralized", "local-a", "local-b"]
    assert (
        figure.get_supxlabel()
        == "not shown (at most 6 models a row, federated first): u: local-c, local-d, local-e, local-f"
    )
    width, _ = Image.open(io.BytesIO(sample_grid([SampleImage("u", "c1", truth, truth, predictions)]))).size
    assert width == pytest.approx(1.7 * 7 * 90, abs=2)
