"""Checks across sites and against the model: one DataError line per problem, collected."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medfed.data.cases import Case, SiteData
from medfed.data.consistency import ModelInputs, class_problem, held_out_problem, study_problems
from medfed.data.summary import summarize_site


def _case(name: str, shape: tuple[int, ...], mask_max: int = 1, label: int | None = None) -> Case:
    mask = np.zeros((1, *shape[1:]), np.int64)
    mask.flat[0] = mask_max
    return Case(name, np.ones(shape, np.float32), mask, label, Path(f"/data/{name}.nii.gz"))


def _site(name: str, *cases: Case) -> SiteData:
    return SiteData(name=name, cases=cases)


def test_consistent_sites_have_no_problem() -> None:
    sites = {"a": _site("a", _case("a1", (1, 8, 8))), "b": _site("b", _case("b1", (1, 16, 8)))}
    assert study_problems(sites, task="segmentation", model=ModelInputs(classes=2)) == []


def test_mixed_2d_and_3d_sites_name_the_odd_site_and_file() -> None:
    sites = {"a": _site("a", _case("a1", (1, 8, 8))), "b": _site("b", _case("b1", (1, 8, 8, 8)))}
    [problem] = study_problems(sites, task="segmentation", model=ModelInputs())
    assert str(problem) == (
        "site 'b', file '/data/b1.nii.gz': images are 3D, those of site 'a' 2D; every site needs the same"
    )


def test_channel_mismatch_between_sites() -> None:
    sites = {"a": _site("a", _case("a1", (2, 8, 8))), "b": _site("b", _case("b1", (1, 8, 8)))}
    [problem] = study_problems(sites, task="segmentation", model=ModelInputs())
    assert problem.site == "b"
    assert "images have 1 channels, those of site 'a' 2" in str(problem)


def test_one_value_named_differently_at_two_sites() -> None:
    a = SiteData("a", (_case("a1", (1, 4, 4)),), {0: "background", 1: "Tumour"})
    b = SiteData("b", (_case("b1", (1, 4, 4)),), {0: "background", 1: "oedema", 2: "tumour"})
    c = SiteData("c", (_case("c1", (1, 4, 4)),), {0: "Background ", 1: "tumour"})
    [problem] = study_problems({"a": a, "b": b, "c": c}, task="segmentation", model=ModelInputs())
    assert str(problem) == (
        "site 'b': dataset.json 'labels' call value 1 'oedema', site 'a' calls it 'Tumour'; "
        "one value must mean one class at every site (relabel the masks)"
    )


def test_a_site_without_what_the_task_learns_from() -> None:
    unlabelled = Case("u", np.ones((1, 4, 4), np.float32), None, None, Path("/data/u.png"))
    sites = {"a": _site("a", _case("a1", (1, 4, 4), label=1)), "b": _site("b", unlabelled)}
    [problem] = study_problems(sites, task="segmentation", model=ModelInputs())
    assert str(problem) == (
        "site 'b', file '/data/u.png': site has no masks, which segmentation needs "
        "(for classification, set task: classification)"
    )
    problems = study_problems(sites, task="classification", model=ModelInputs())
    assert [(p.site, p.reason.split(",")[0]) for p in problems] == [("b", "site has no case labels")]


def test_configured_model_inputs_are_checked_on_every_site() -> None:
    sites = {"a": _site("a", _case("a1", (2, 8, 8))), "b": _site("b", _case("b1", (2, 8, 8)))}
    problems = study_problems(sites, task="segmentation", model=ModelInputs(in_channels=1, spatial_dims=3))
    assert [(p.site, p.reason.split(",")[0]) for p in problems] == [
        ("a", "images are 2D"),
        ("a", "images have 2 channels"),
        ("b", "images are 2D"),
        ("b", "images have 2 channels"),
    ]


def test_mask_value_beyond_the_models_classes_names_the_first_case_and_counts_the_rest() -> None:
    site = _site("a", _case("a1", (1, 4, 4), 1), _case("a2", (1, 4, 4), 3), _case("a3", (1, 4, 4), 2))
    problem = class_problem(site, "segmentation", 2)
    assert problem is not None
    assert str(problem) == (
        "site 'a', file '/data/a2.nii.gz': case 'a2' has mask value 3 (and 1 more cases), but the "
        "model outputs 2 classes (0..1); fix the data or set model.params.out_channels"
    )
    assert class_problem(site, "segmentation", 4) is None
    assert class_problem(site, "segmentation", None) is None


def test_case_label_beyond_the_models_classes() -> None:
    site = _site("a", _case("a1", (1, 4, 4), label=0), _case("a2", (1, 4, 4), label=5))
    problem = class_problem(site, "classification", 2)
    assert problem is not None and "case 'a2' has label 5, but the model outputs 2 classes" in str(problem)


def test_a_one_case_site_has_nothing_held_out() -> None:
    problem = held_out_problem(_site("a", _case("only", (1, 4, 4))), "or set --holdout 0")
    assert problem is not None
    assert str(problem) == (
        "site 'a', file '/data/only.nii.gz': site has only 1 case ('only'), so none is held out "
        "to test on; add cases or set --holdout 0"
    )
    assert held_out_problem(_site("a", _case("x", (1, 4, 4)), _case("y", (1, 4, 4))), "") is None


def test_summary_counts_sizes_and_class_balance() -> None:
    first = _case("a1", (1, 4, 2), 1)  # 8 voxels, one of class 1
    second = Case(
        "a2", np.ones((1, 2, 4), np.float32), np.full((1, 2, 4), 2), None, Path("a2"), (1.0, 2.5), "LPS"
    )
    summary = summarize_site(_site("a", first, second), "segmentation")
    assert (summary.cases, summary.channels, summary.dims) == (2, 1, 2)
    assert (summary.smallest, summary.largest) == ((2, 2), (4, 4))
    assert summary.spacings == ((1.0, 2.5),)
    assert summary.orientations == ("LPS",)
    assert summary.classes == {0: 7 / 16, 1: 1 / 16, 2: 8 / 16}


def test_summary_of_case_labels() -> None:
    site = _site(
        "a", *(_case(f"c{i}", (1, 4, 4), label=i % 2) for i in range(4)), _case("c9", (1, 4, 4), label=1)
    )
    assert summarize_site(site, "classification").classes == {0: 0.4, 1: 0.6}
