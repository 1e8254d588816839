from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from data_helpers import SMALL_SITE

from medfed.data import (
    DEFAULT_SITES,
    ScannerProfile,
    SiteData,
    SyntheticSite,
    generate_federation,
    generate_site,
    load_site,
)
from medfed.data.scanner import Acquisition, acquire


def arrays(folder: Path) -> list[np.ndarray]:
    return [np.asarray(nib.load(p).dataobj) for p in sorted(folder.rglob("*.nii.gz"))]


def test_same_seed_same_data_other_seed_differs(tmp_path: Path) -> None:
    first = arrays(generate_site(SMALL_SITE, tmp_path / "1", image_size=32, seed=5))
    again = arrays(generate_site(SMALL_SITE, tmp_path / "2", image_size=32, seed=5))
    other = arrays(generate_site(SMALL_SITE, tmp_path / "3", image_size=32, seed=6))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_writes_msd_layout(msd_site: Path) -> None:
    index = json.loads((msd_site / "dataset.json").read_text())
    assert index["modality"] == {"0": "MRI"}
    assert index["labels"] == {"0": "background", "1": "lesion"}
    assert index["numTraining"] == len(index["training"]) == SMALL_SITE.num_cases
    for entry in index["training"]:
        case = Path(entry["image"]).name.removesuffix(".nii.gz")
        image = nib.load(msd_site / "imagesTr" / f"{case}_0000.nii.gz")
        mask = np.asarray(nib.load(msd_site / entry["label"]).dataobj)
        assert image.shape == mask.shape == (32, 32, 1)
        assert set(np.unique(mask)) <= {0, 1}
        assert entry["class"] == int(mask.any())


def load_default(tmp_path: Path, index: int, num_cases: int = 10) -> SiteData:
    site = replace(DEFAULT_SITES[index], num_cases=num_cases)
    return load_site(site.name, generate_site(site, tmp_path))


def head_mean(site: SiteData) -> float:
    return float(np.mean([c.image[c.image > 0].mean() for c in site.cases]))


def relative_noise(profile: ScannerProfile) -> float:
    """Std over mean of a uniform 0.5 signal imaged by the scanner without bias field."""
    flat = np.full((64, 64), 0.5)
    image = acquire(flat, flat > 0, replace(profile.acquisition, bias_field=0.0), np.random.default_rng(0))
    return float(image.std() / image.mean())


def test_default_sites_differ_measurably(tmp_path: Path) -> None:
    a, b, c, d = (load_default(tmp_path, i) for i in range(4))
    means = sorted([head_mean(s) for s in (a, b, c, d)])
    assert all(hi > 1.3 * lo for lo, hi in zip(means, means[1:], strict=False))
    noise = [relative_noise(s.scanner) for s in DEFAULT_SITES]
    assert noise[2] > 2 * noise[0]  # hospital_c is the noisy one
    assert min(noise) > 0.01
    assert [s.name for s in (a, b, c, d)] == [f"hospital_{x}" for x in "abcd"]


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_lesions_are_hyperintense_in_every_contrast(tmp_path: Path, index: int) -> None:
    site = load_default(tmp_path, index, num_cases=16)
    for case in site.cases:
        if case.label:
            lesion = case.image[case.mask == 1].mean()
            brain = case.image[0, 20:44, 20:44][case.mask[0, 20:44, 20:44] == 0].mean()
            assert lesion > 1.2 * brain


def test_lesion_radius_is_a_few_pixels(tmp_path: Path) -> None:
    site = load_default(tmp_path, 0, num_cases=20)
    areas = [int(c.mask.sum()) for c in site.cases if c.label]
    assert areas and 3**2 * np.pi * 0.5 < np.median(areas) < 8**2 * np.pi * 2


@pytest.mark.parametrize("prevalence", [0.0, 0.5, 1.0])
def test_prevalence_roughly_matches(tmp_path: Path, prevalence: float) -> None:
    site = replace(SMALL_SITE, num_cases=60, lesion_prevalence=prevalence)
    data = load_site("p", generate_site(site, tmp_path, image_size=24))
    rate = np.mean([c.label for c in data.cases])
    assert abs(rate - prevalence) <= 0.15
    assert all(c.label == int(c.mask.any()) for c in data.cases)


def test_3d(tmp_path: Path) -> None:
    folder = generate_site(replace(SMALL_SITE, num_cases=2), tmp_path, image_size=20, dims=3)
    data = load_site("small", folder)
    assert [c.image.shape for c in data.cases] == [(1, 20, 20, 20)] * 2
    assert [c.mask.shape for c in data.cases] == [(1, 20, 20, 20)] * 2


def test_federation_is_complete(tmp_path: Path) -> None:
    paths = generate_federation(DEFAULT_SITES, tmp_path)
    assert list(paths) == [s.name for s in DEFAULT_SITES]
    assert all((p / "dataset.json").is_file() for p in paths.values())


def test_rejects_bad_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="contrast"):
        ScannerProfile("pd", Acquisition(1.0, 1.0, 0.0, 0.0, 0.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="noise"):
        ScannerProfile("t1", Acquisition(1.0, 1.0, 0.0, -1.0, 0.0))
    with pytest.raises(ValueError, match="lesion_prevalence"):
        replace(SMALL_SITE, lesion_prevalence=1.5)
    with pytest.raises(ValueError, match="lesion_radius"):
        SyntheticSite("x", SMALL_SITE.scanner, 3, 0.5, (0.2, 0.1))
    with pytest.raises(ValueError, match="dims"):
        generate_site(SMALL_SITE, tmp_path, dims=4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="distinct"):
        generate_federation([SMALL_SITE, SMALL_SITE], tmp_path)
