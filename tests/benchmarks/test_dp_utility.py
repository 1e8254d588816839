"""``python -m benchmarks dp_utility`` at its small size: cells, resume, table, plot, epsilons."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from benchmarks import dp_utility
from benchmarks.dp_paper import laplace_epsilon, percentile_threshold
from medfed.models import build_model
from medfed.orchestration.checkpoint import load_checkpoint
from medfed.privacy.dp.accounting import Accountant, epsilon_spent
from medfed.privacy.dp.ledger import load_ledger

ARGS = ["--size", "small", "--families", "brain_lesion", "--epsilons", "8", "--seeds", "0", "--rounds", "1"]
ARGS += ["--dp-epochs", "1"]  # the smallest recipe, whatever brain_lesion's measured one is


def test_small_run_writes_cells_table_plot_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = dp_utility.main([*ARGS, "--out", str(tmp_path)])

    cells = sorted(path.stem for path in (tmp_path / "cells").glob("*.json"))
    assert cells == sorted(cell.key for cell in dp_utility.plan_cells(["brain_lesion"], [8.0], [0]))
    assert {row["method"] for row in rows} == set(dp_utility.METHODS) - {"public"}  # pretrained only
    summary = json.loads((tmp_path / "dp_utility.json").read_text())
    assert len(summary["rows"]) == 4
    assert (tmp_path / "dp_utility.png").read_bytes()[:4] == b"\x89PNG"

    # the epsilon each DP cell reports is what the accountant says of the site's ledger
    for method in ("fixed", "adaptive"):
        result = json.loads((tmp_path / "cells" / f"brain_lesion-{method}-eps8-seed0.json").read_text())
        ledgers = sorted((tmp_path / "runs" / result_key(method) / "privacy").rglob("*.jsonl"))
        assert ledgers
        for ledger in ledgers:
            history = load_ledger(ledger).history()
            expected = epsilon_spent(history, delta=dp_utility.DELTA, accountant=Accountant.PRV)
            site = next(site for site in result["epsilon_spent"] if site in ledger.stem)
            assert result["epsilon_spent"][site] == pytest.approx(expected)
            assert expected <= 8.0
    paper = json.loads((tmp_path / "cells" / "brain_lesion-paper-eps8-seed0.json").read_text())
    assert math.isinf(paper["real_epsilon"])
    for site in paper["paper_epsilons"].values():
        assert site["laplace_public_threshold_epsilon"] > site["claimed_gaussian_epsilon"]

    # a rerun finds every cell finished and trains nothing
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished cell was run again")

    monkeypatch.setattr(dp_utility, "run_cell", fail)
    assert dp_utility.main([*ARGS, "--out", str(tmp_path)]) == rows


def test_after_pretraining_the_public_model_alone_is_a_row_of_its_own(tmp_path: Path) -> None:
    args = [*ARGS, "--methods", "nonprivate", "public", "fixed", "--out", str(tmp_path)]
    rows = dp_utility.main([*args, "--pretrained"])

    public = json.loads((tmp_path / "cells" / "brain_lesion-public-none-seed0-pretrained.json").read_text())
    assert public["rounds"] == 0 and public["epsilon_spent"] == {}
    weights = load_file(tmp_path / "pretrained" / "brain_lesion-seed0.safetensors")
    runs = tmp_path / "runs"
    checkpoint = next((runs / "brain_lesion-nonprivate-none-seed0-pretrained").rglob("round_*.safetensors"))
    finetuned = load_checkpoint(checkpoint).server.weights
    assert any(not torch.equal(weights[name], finetuned[name]) for name in weights)  # fine-tuning moved it
    (row,) = [row for row in rows if row["method"] == "public"]
    assert (row["start"], row["epsilon"], row["dice_own"]) == ("pretrained", None, public["dice_own"])
    assert row["ratio_own"] == pytest.approx(public["dice_own"] / rows[0]["dice_own"])
    assert "| brain_lesion | pretrained | public | - |" in (tmp_path / "dp_utility.md").read_text()
    assert not [
        cell for cell in dp_utility.plan_cells(["brain_lesion"], [8.0], [0]) if cell.method == "public"
    ]


def result_key(method: str) -> str:
    return dp_utility.Cell("brain_lesion", method, 8.0, 0).key


def test_laplace_epsilon_of_one_dimension_matches_pure_dp() -> None:
    # one step, no subsampling: a Laplace mechanism with sensitivity/scale = sqrt(2)/z is pure DP
    epsilon = laplace_epsilon(dimensions=1, noise_multiplier=1.0, sample_rate=1.0, steps=1, delta=1e-5)
    assert epsilon == pytest.approx(math.sqrt(2.0), rel=1e-2)


def test_laplace_epsilon_grows_with_dimensions() -> None:
    small, large = (
        laplace_epsilon(dimensions=d, noise_multiplier=2.0, sample_rate=0.1, steps=50, delta=1e-5)
        for d in (1, 1000)
    )
    assert large > 10 * small


def test_percentile_threshold() -> None:
    import torch

    assert percentile_threshold(torch.tensor([1.0, 2.0, 3.0]), 50.0) == pytest.approx(2.0)
    assert percentile_threshold(torch.empty(0), 50.0) == 1.0


def _result(method: str, epsilon: float | None, own: float, unseen: float) -> dict[str, object]:
    spent = {} if epsilon is None else {"site_a": epsilon}
    return {
        "family": "skin_lesion",
        "method": method,
        "epsilon": epsilon,
        "dice_own": own,
        "dice_unseen": unseen,
        "epsilon_spent": spent,
        "seconds": 10.0,
        "cpu_seconds": 4.0,
    }


def test_the_table_reports_adaptive_minus_fixed_at_each_epsilon() -> None:
    results = [
        _result("nonprivate", None, 0.8, 0.7),
        _result("fixed", 1.0, 0.50, 0.40),
        _result("adaptive", 1.0, 0.55, 0.38),
        _result("fixed", 8.0, 0.70, 0.60),
        _result("adaptive", 8.0, 0.72, 0.65),
    ]
    rows = dp_utility.table(results)

    adaptive = {r["epsilon"]: r for r in rows if r["method"] == "adaptive"}
    assert adaptive[1.0]["margin_own"] == pytest.approx(0.05)
    assert adaptive[1.0]["margin_unseen"] == pytest.approx(-0.02)
    assert adaptive[8.0]["margin_unseen"] == pytest.approx(0.05)
    assert all(r["margin_own"] is None for r in rows if r["method"] != "adaptive")
    assert [r["cpu_seconds"] for r in rows] == [4.0] * 5
    (verdict,) = dp_utility.adaptive_vs_fixed(rows)
    assert verdict["epsilons"] == [1.0, 8.0] and not verdict["met"]
    assert (verdict["min_margin_own"], verdict["min_margin_unseen"]) == pytest.approx((0.02, -0.02))
    text = dp_utility.format_table(rows)
    assert "+0.050 / -0.020" in text
    assert "adaptive >= fixed at every epsilon (1, 8): MISSED" in text


def test_the_plot_names_the_paper_mechanisms_real_epsilon() -> None:
    rows = dp_utility.table(
        [{**_result("paper", 8.0, 0.7, 0.6), "real_epsilon": math.inf}, _result("fixed", 8.0, 0.7, 0.6)]
    )
    assert dp_utility.legend_label("paper", "scratch", rows) == "paper (real epsilon inf)"
    assert dp_utility.legend_label("fixed", "scratch", rows) == "fixed"
    assert dp_utility.legend_label("paper", "pretrained", rows) == "paper, pretrained"


def test_the_plots_legend_names_every_method_of_every_family(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.figure import Figure

    legends: list[list[str]] = []

    def save(figure: Figure, *args: object, **kwargs: object) -> None:
        legends.append([text.get_text() for text in figure.axes[0].get_legend().get_texts()])

    monkeypatch.setattr(Figure, "savefig", save)
    results = [_result("nonprivate", None, 0.8, 0.7), _result("fixed", 8.0, 0.7, 0.6)]
    paper = {**_result("paper", 8.0, 0.7, 0.6), "family": "zz_family", "real_epsilon": math.inf}
    dp_utility.plot(dp_utility.table([*results, paper]), tmp_path / "plot.png")
    assert legends == [["nonprivate", "fixed", "paper (real epsilon inf)"]]


def test_the_recipe_knobs_are_the_users_config_fields(tmp_path: Path) -> None:
    recipe = dp_utility.Recipe(
        norm="group", weight_standardization=True, augmentation_multiplicity=3, ema=0.9
    )
    size = dp_utility.SIZES["small"]
    dp = dp_utility.cell_config(dp_utility.Cell("skin_lesion", "adaptive", 8.0, 0), size, recipe, tmp_path)
    assert dp.model.params["weight_standardization"] is True and dp.data.augment
    assert dp.privacy.dp_sgd is not None
    assert (dp.privacy.dp_sgd.augmentation_multiplicity, dp.privacy.dp_sgd.ema) == (3, 0.9)
    plain = dp_utility.cell_config(
        dp_utility.Cell("skin_lesion", "nonprivate", None, 0), size, recipe, tmp_path
    )
    assert plain.model.params["weight_standardization"] is True and not plain.data.augment
    build_model(dp.model.name, dp.model.params, seed=0)  # GroupNorm's groups divide every layer (2 outputs)


def test_the_clip_search_scores_on_validation_cases_only_and_keeps_the_best(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[set[str]] = []

    def fake_run(
        cell: dp_utility.Cell, size: object, recipe: dp_utility.Recipe, run_dir: Path, data, initial=None
    ):  # type: ignore[no-untyped-def]
        seen.append({c.case_id for s in data.evaluation_sets.values() for c in s.cases})
        assert data.unseen is None
        dice = 1.0 - abs(recipe.target_quantile - 0.7) - abs(recipe.clip_lr - 0.5)
        return {"dice_own": dice, "seconds": 0.0}

    monkeypatch.setattr(dp_utility, "run_cell", fake_run)
    cell = dp_utility.Cell("skin_lesion", "adaptive", 8.0, 0)
    size = dp_utility.SIZES["small"]
    search = dp_utility.search_clip(cell, size, dp_utility.Recipe(), tmp_path, log=False)
    assert len(search["grid"]) == 9
    assert (search["chosen"]["target_quantile"], search["chosen"]["clip_lr"]) == (0.7, 0.5)
    config = dp_utility.cell_config(cell, size, dp_utility.Recipe(), tmp_path / "runs" / "data")
    data = dp_utility.check_study(config, tmp_path / "data" / "skin_lesion-seed0").passed()
    held_out = {c.case_id for s in data.evaluation_sets.values() for c in s.cases}
    training = {c.case_id for s in data.train.values() for c in s.cases}
    assert all(ids and ids <= training and not ids & held_out for ids in seen)


def test_slices_train_the_3d_family_on_2d_slices_and_leave_2d_families_alone(tmp_path: Path) -> None:
    recipe = dp_utility.Recipe(slices="axial")
    size = dp_utility.SIZES["small"]
    kidney = dp_utility.cell_config(dp_utility.Cell("kidney_ct", "fixed", 8.0, 0), size, recipe, tmp_path)
    skin = dp_utility.cell_config(dp_utility.Cell("skin_lesion", "fixed", 8.0, 0), size, recipe, tmp_path)
    assert kidney.model.slices == "axial" and kidney.model.network_dims(3) == 2
    assert skin.model.slices is None
    assert dp_utility.parse(["--slices", "coronal"]).slices == "coronal"


def test_full_size_gives_brain_lesion_larger_images_and_sites_of_hundreds_of_cases(tmp_path: Path) -> None:
    full = dp_utility.SIZES["full"]
    lesion = dp_utility.cell_config(
        dp_utility.Cell("brain_lesion", "fixed", 8.0, 0), full, dp_utility.Recipe(), tmp_path
    )
    skin = dp_utility.cell_config(
        dp_utility.Cell("skin_lesion", "fixed", 8.0, 0), full, dp_utility.Recipe(), tmp_path
    )
    assert lesion.data.synthetic is not None and skin.data.synthetic is not None
    assert lesion.data.synthetic.cases_scale == full.family_cases_scale["brain_lesion"] > full.cases_scale
    assert lesion.data.synthetic.image_size == full.family_image_size["brain_lesion"] > full.image_size
    assert (skin.data.synthetic.cases_scale, skin.data.synthetic.image_size) == (
        full.cases_scale,
        full.image_size,
    )
    assert dp_utility.SIZES["small"].of("brain_lesion") == dp_utility.SIZES["small"]  # CI stays small


def test_a_family_runs_its_own_recipe_unless_a_flag_says_otherwise() -> None:
    (family, pretrained), recipe = next(iter(dp_utility.RECIPES.items()))
    assert recipe != dp_utility.Recipe()
    args = dp_utility.parse([])
    assert dp_utility.recipe_for(family, dp_utility.recipe_flags(args), pretrained=pretrained) == recipe
    flags = dp_utility.recipe_flags(
        dp_utility.parse(["--dp-batch", "8", "--views", "2", "--local-epochs", "3", "--lr", "0.1"])
    )
    assert flags == {"dp_batch": 8, "augmentation_multiplicity": 2, "local_epochs": 3, "lr": 0.1}
    expected = replace(recipe, dp_batch=8, augmentation_multiplicity=2, local_epochs=3, lr=0.1)
    assert dp_utility.recipe_for(family, flags, pretrained=pretrained) == expected
    assert dp_utility.recipe_for("no_recipe_family", {}) == dp_utility.Recipe()
    assert dp_utility.recipe_for("kidney_ct", {}, pretrained=True) == dp_utility.Recipe()
    skin = dp_utility.recipe_for("skin_lesion", {})  # the recipe that met the target from scratch
    assert (skin.dp_batch, skin.norm, skin.weight_standardization) == (16, "group", True)
