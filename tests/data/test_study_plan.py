"""The study plan from the sites' fingerprints: hand-computed spacing, size, patch, CT window,
classes; sites that disagree in channels or dimensionality refused naming the site."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medfed.config.schema import ModelConfig, PreprocessingConfig
from medfed.data import FAMILIES, Case, SiteData
from medfed.data.fingerprint import ChannelIntensity, Fingerprint, fingerprint_site
from medfed.data.preprocessing import Normalisation
from medfed.data.study_plan import check_sites_agree, patch_size, plan_study, save_plan
from medfed.errors import DataError


def _kidney_site(index: int, shape: tuple[int, int, int], cases: int = 2) -> SiteData:
    """``cases`` cases of the ``index``-th kidney_ct site, drawn at ``shape`` (the site's field
    of view is fixed, so the spacing follows the shape)."""
    spec = FAMILIES.create("kidney_ct").sites[index]
    rng = np.random.default_rng(index)
    drawn = [spec.draw(rng, shape) for _ in range(cases)]
    return SiteData(
        spec.name,
        tuple(
            Case(
                f"c{i}", case.image, case.mask[None].astype(np.int64), case.label, Path(f"c{i}"), case.spacing
            )
            for i, case in enumerate(drawn)
        ),
    )


def test_plan_from_three_sites_of_different_spacing_and_size() -> None:
    # hospital_a: field of view 260 x 260 x 160 mm, hospital_b 240 x 240 x 140, hospital_c 320 x 320 x 200
    sites = [_kidney_site(0, (16, 16, 8)), _kidney_site(1, (24, 24, 12)), _kidney_site(2, (20, 20, 10))]
    fingerprints = [fingerprint_site(site, task="segmentation") for site in sites]
    expected = [(16.25, 16.25, 20.0), (10, 10, 140 / 12), (16, 16, 20)]
    for fingerprint, spacing in zip(fingerprints, expected, strict=True):
        assert fingerprint.spacing == pytest.approx(spacing)
    plan = plan_study(fingerprints, task="segmentation", size_multiple=4, modalities=["CT"])
    assert plan.spacing == pytest.approx((16.0, 16.0, 20.0))  # per axis, the median over sites
    # sizes at 16 x 16 x 20 mm: 260/16, 240/16, 320/16 voxels and 160/20, 140/20, 200/20 voxels
    assert plan.median_size == pytest.approx((16.25, 16.25, 8.0))
    assert plan.patch_size == (20, 20, 8)  # rounded up to a multiple of 4
    lows = sorted(f.intensity[0].percentiles[0] for f in fingerprints)
    highs = sorted(f.intensity[0].percentiles[2] for f in fingerprints)
    assert plan.intensity == (Normalisation("ct_window", (lows[1], highs[1])),)
    assert -300 < lows[1] < highs[1] < 500  # soft tissue and contrast (HU)
    largest = max(int(case.mask.max()) for site in sites for case in site.cases if case.mask is not None)
    assert plan.num_classes == max(2, largest + 1)
    assert (plan.sites, plan.num_cases, plan.channels, plan.spatial_dims) == (
        ("hospital_a", "hospital_b", "hospital_c"),
        6,
        1,
        3,
    )
    smaller = plan_study(fingerprints, task="segmentation", size_multiple=4, max_patch_voxels=1000)
    assert smaller.patch_size == (8, 12, 8)  # 20x20x8 shrunk along the longest side, 4 at a time
    assert smaller.intensity == (Normalisation(),)  # no modality named CT: z-score


def test_patch_size_rounds_up_then_fits_the_budget() -> None:
    assert patch_size((100, 90, 40), multiple=8, max_voxels=128**3) == (104, 96, 40)
    assert patch_size((100, 90, 40), multiple=8, max_voxels=64**3) == (80, 80, 40)
    assert patch_size((2, 3000), multiple=1, max_voxels=10**9) == (4, 512)
    assert patch_size((9, 9), multiple=8, max_voxels=1) == (8, 8)  # never below one stride


def _fingerprint(site: str, channels: int = 1, dims: int = 2, spacing: float | None = 1.0) -> Fingerprint:
    return Fingerprint(
        site=site,
        num_cases=3,
        channels=channels,
        spatial_dims=dims,
        spacing=None if spacing is None else (spacing,) * dims,
        size=(10.0,) * dims,
        extent=None if spacing is None else (10.0 * spacing,) * dims,
        intensity=(ChannelIntensity((-100.0, 0.0, 100.0), 0.0, 50.0),) * channels,
        class_fractions=(0.9, 0.1),
    )


def test_a_site_with_other_channels_is_refused_in_one_line_naming_it() -> None:
    sites = [_fingerprint("a"), _fingerprint("b", channels=3), _fingerprint("c")]
    with pytest.raises(
        DataError, match=r"^site 'b': its images have 3 channel\(s\), site 'a''s 1; "
    ) as caught:
        plan_study(sites, task="segmentation", size_multiple=8)
    assert "\n" not in str(caught.value)


def test_a_site_of_other_dimensionality_is_refused_naming_it() -> None:
    sites = [_fingerprint("a", dims=3), _fingerprint("b", dims=2), _fingerprint("c", dims=3)]
    with pytest.raises(DataError, match=r"^site 'b': its images are 2D, site 'a''s 3D; "):
        check_sites_agree(sites)


def test_classes_come_from_what_sites_hold_or_declare() -> None:
    declares_four = replace(_fingerprint("b"), declared_classes=4)
    assert plan_study([_fingerprint("a")], task="segmentation", size_multiple=1).num_classes == 2
    assert (
        plan_study([_fingerprint("a"), declares_four], task="segmentation", size_multiple=1).num_classes == 4
    )


def test_a_site_without_spacing_keeps_every_grid_and_sizes_stay_in_voxels() -> None:
    plan = plan_study(
        [_fingerprint("a"), _fingerprint("b", spacing=None)], task="classification", size_multiple=1
    )
    assert plan.spacing is None and plan.median_size == (10.0, 10.0) and plan.patch_size is None


def test_explicit_keys_override_the_plan_and_plan_json_is_written(tmp_path: Path) -> None:
    plan = plan_study(
        [_fingerprint("a", spacing=2.0)], task="segmentation", size_multiple=8, modalities=["CT"]
    )
    assert plan.patch_size == (16, 16) and plan.spacing == (2.0, 2.0)  # 10 voxels, up to 16
    auto = PreprocessingConfig.model_validate("auto")
    planned = auto.planned(plan).settings(ModelConfig())
    assert planned.spacing == (2.0, 2.0) and planned.patch_size == (16, 16)
    assert planned.intensity == (Normalisation("ct_window", (-100.0, 100.0)),)
    explicit = PreprocessingConfig.model_validate({"plan": "auto", "spacing": None, "patch_size": [24, 24]})
    kept = explicit.planned(plan).settings(ModelConfig())
    assert kept.spacing is None and kept.patch_size == (24, 24) and kept.intensity == planned.intensity
    assert PreprocessingConfig().planned(plan) == PreprocessingConfig()  # plan: manual
    saved = json.loads(save_plan(plan, tmp_path).read_text())
    assert saved["patch_size"] == [16, 16] and saved["intensity"] == [
        {"mode": "ct_window", "window": [-100.0, 100.0]}
    ]
