"""The synthetic data families: determinism, layout read back by the loaders, label semantics and
a measurable shift between sites."""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields, is_dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medfed.data import (
    DEFAULT_SITES,
    FAMILIES,
    Case,
    SiteData,
    family_sites,
    generate_federation,
    generate_site,
    load_site,
)
from medfed.data.synthetic import public_sites
from medfed.errors import UnknownNameError

# family -> (dims, image size, channels, label values)
SHAPES = {
    "brain_lesion": (2, 24, 1, {0, 1}),
    "skin_lesion": (2, 24, 3, {0, 1}),
    "kidney_ct": (3, 16, 1, {0, 1, 2}),
    "brain_tumour_mpmri": (2, 32, 4, {0, 1, 2, 3}),
}


def _site(
    family: str, index: int, num_cases: int, tmp_path: Path, seed: int = 0, **kwargs: object
) -> SiteData:
    dims, size, _, _ = SHAPES[family]
    spec = replace(FAMILIES.create(family).sites[index], num_cases=num_cases)
    folder = generate_site(
        spec, tmp_path / f"{family}-{seed}", image_size=size, dims=dims, seed=seed, **kwargs
    )  # type: ignore[arg-type]
    return load_site(spec.name, folder)


def test_brain_lesion_output_is_that_of_the_generator_before_families(tmp_path: Path) -> None:
    """Same seed, same bytes as the single-family generator of commit b7f4adc (numpy 2 FFT)."""
    sites = [replace(s, num_cases=5) for s in DEFAULT_SITES]
    generate_federation(sites, tmp_path, image_size=32, dims=2, seed=3)
    digest = hashlib.sha256()
    for path in sorted(tmp_path.rglob("*")):
        if path.suffix == ".gz":
            image = nib.load(path)
            digest.update(np.asarray(image.dataobj).tobytes())
            digest.update(image.affine.tobytes())
            digest.update(str(image.get_data_dtype()).encode())
        elif path.name == "dataset.json":
            digest.update(path.read_bytes())
    assert digest.hexdigest() == "6a8c815baaa5c9079113936593ecd5b8725e26f420a3aaa27dcd10b7a29cdfbc"


def test_registry_lists_the_families() -> None:
    assert FAMILIES.names() == sorted(SHAPES)
    with pytest.raises(UnknownNameError, match="brain_tumour_mpmri, kidney_ct"):
        FAMILIES.create("ct_liver")


@pytest.mark.parametrize("family", list(SHAPES))
def test_same_seed_same_case_other_seed_differs(family: str, tmp_path: Path) -> None:
    first, again, other = (_site(family, 0, 2, tmp_path / str(i), seed=s) for i, s in enumerate((4, 4, 5)))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first.cases, again.cases, strict=True))
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(first.cases, again.cases, strict=True))
    assert not np.array_equal(first.cases[0].image, other.cases[0].image)


@pytest.mark.parametrize("family", list(SHAPES))
def test_layout_read_back_by_the_msd_loader(family: str, tmp_path: Path) -> None:
    dims, size, channels, labels = SHAPES[family]
    spec = family_sites(family, 0.01)[1]
    folder = generate_site(spec, tmp_path, image_size=size, dims=dims, seed=2)
    site = load_site(spec.name, folder)
    index = json.loads((folder / "dataset.json").read_text())
    assert len(index["modality"]) == channels and len(index["labels"]) == len(labels)
    assert all(case.image.shape == (channels, *(size,) * dims) for case in site.cases)
    assert set().union(*(np.unique(c.mask).tolist() for c in site.cases)) <= labels
    assert all(c.label in (0, 1) for c in site.cases)
    first = nib.load(next((folder / "imagesTr").glob(f"*_{channels - 1:04d}.nii.gz")))
    assert first.header.get_zooms()[:dims] == pytest.approx(_spacing(family, spec, size))


def _spacing(family: str, spec: object, size: int) -> tuple[float, ...]:
    if family == "skin_lesion":
        return (spec.field_mm / size,) * 2  # type: ignore[attr-defined]
    if family == "kidney_ct":
        protocol = spec.protocol  # type: ignore[attr-defined]
        return (protocol.fov_mm / size, protocol.fov_mm / size, protocol.coverage_mm / size)
    return (1.0,) * SHAPES[family][0]


def test_default_sites_are_realistic_in_size() -> None:
    for family in ("skin_lesion", "kidney_ct", "brain_tumour_mpmri"):
        sites = FAMILIES.create(family).sites
        assert len(sites) == 5 and min(s.num_cases for s in sites) >= 150
        assert FAMILIES.create(family).unseen_site == sites[-1].name
    assert [s.num_cases for s in family_sites("kidney_ct", 0.01)] == [3, 2, 2, 2, 2]


def test_binary_merges_the_foreground(tmp_path: Path) -> None:
    site = _site("brain_tumour_mpmri", 0, 3, tmp_path, binary=True)
    assert set().union(*(np.unique(c.mask).tolist() for c in site.cases)) == {0, 1}
    index = json.loads((tmp_path / "brain_tumour_mpmri-0" / "hospital_a" / "dataset.json").read_text())
    assert index["labels"] == {"0": "background", "1": "whole tumour"}


def test_dims_outside_the_family_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dims must be one of"):
        generate_site(family_sites("kidney_ct", 0.01)[0], tmp_path, image_size=16, dims=2)
    with pytest.raises(ValueError, match="dims must be one of"):
        generate_site(family_sites("skin_lesion", 0.01)[0], tmp_path, image_size=16, dims=3)


def test_skin_lesions_are_darker_and_cameras_differ(tmp_path: Path) -> None:
    sites = [_site("skin_lesion", i, 4, tmp_path) for i in range(5)]
    for site in sites:
        for case in site.cases:
            lesion, skin = case.mask[0] == 1, (case.mask[0] == 0) & (case.image.min(axis=0) > 0)
            ratio = case.image[:, lesion].mean(axis=1) / case.image[:, skin].mean(axis=1)
            assert ratio[0] < 0.97 and ratio[1:].max() < 0.85  # melanin absorbs blue most
    red_over_blue = [np.mean([c.image[0].sum() / c.image[2].sum() for c in s.cases]) for s in sites]
    assert red_over_blue[1] > 1.5 * red_over_blue[2]  # warm clinic_b against cool clinic_c
    black_corner = [np.mean([c.image[:, 0, 0].max() == 0 for c in s.cases]) for s in sites]
    assert black_corner == [0, 1, 0, 1, 0]  # circular dermoscope fields at clinic_b and clinic_d


def test_kidney_ct_values_and_protocols_differ(tmp_path: Path) -> None:
    sites = [_site("kidney_ct", i, 3, tmp_path) for i in range(5)]
    air = [np.mean([(c.image < -900).mean() for c in s.cases]) for s in sites]
    assert air[2] > air[1] + 0.1  # 320 mm against 240 mm field of view
    for site in sites:
        for case in site.cases:
            kidney = case.image[case.mask == 1].mean()
            assert 80 < kidney < 220 and case.image.min() >= -1024 and case.image.max() > 200  # bone, aorta
            assert kidney > case.image[(case.mask == 0) & (case.image > -200)].mean() + 40
    assert sites[0].cases[0].image.shape == (1, 16, 16, 16)


def test_mpmri_tumour_contrasts(tmp_path: Path) -> None:
    site = _site("brain_tumour_mpmri", 0, 12, tmp_path)
    for case in site.cases:
        t1, t1ce, _, flair = case.image
        mask = case.mask[0]
        white = (mask == 0) & (t1 > np.percentile(t1[t1 > 0], 80))
        assert flair[mask == 1].mean() > 1.3 * flair[white].mean()  # edema bright in FLAIR
        if (mask == 3).sum() >= 4:
            assert t1ce[mask == 3].mean() > 1.2 * t1[mask == 3].mean()  # the rim enhances
    assert {c.label for c in site.cases} == {0, 1}
    assert all(c.label == int((c.mask == 3).any()) for c in site.cases if (c.mask > 0).sum() > 40)


def _edema_in_flair(case: Case) -> float:
    """Mean FLAIR of the edema in standard deviations above the head's mean (z-scored)."""
    flair = case.image[3][case.image[3] > 0]
    return float((case.image[3][case.mask[0] == 1].mean() - flair.mean()) / flair.std())


def test_mpmri_sites_differ_measurably(tmp_path: Path) -> None:
    """Even after per-case z-scoring (what training sees), the sites' contrasts differ."""
    sites = [_site("brain_tumour_mpmri", i, 6, tmp_path) for i in range(5)]
    edema = [np.mean([_edema_in_flair(c) for c in s.cases]) for s in sites]
    assert max(edema) - min(edema) > 0.4  # measured 1.32 (hospital_c) to 1.97 (hospital_e)
    scale = [np.mean([c.image[c.image > 0].mean() for c in s.cases]) for s in sites]
    assert max(scale) > 5 * min(scale)


@pytest.mark.parametrize("name", ["brain_lesion", "skin_lesion", "kidney_ct", "brain_tumour_mpmri"])
def test_public_sites_use_scanners_no_default_site_uses(name: str) -> None:
    family = FAMILIES.create(name)
    public = public_sites(name)
    assert public and all(site.name.startswith("public_") for site in public)
    anonymous = [replace(site, name="", num_cases=1) for site in family.sites]  # type: ignore[type-var]
    for site in public:
        assert replace(site, name="", num_cases=1) not in anonymous  # type: ignore[type-var]
        assert type(site).family == name


def _numbers(value: object) -> list[float]:
    """Every float and int of a site spec's profile (its case count excluded), depth first."""
    if is_dataclass(value) and not isinstance(value, type):
        return [x for f in fields(value) if f.name != "num_cases" for x in _numbers(getattr(value, f.name))]
    if isinstance(value, tuple):
        return [x for item in value for x in _numbers(item)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    return []


@pytest.mark.parametrize("name", ["brain_lesion", "skin_lesion", "kidney_ct", "brain_tumour_mpmri"])
def test_public_site_numbers_are_midpoints_of_their_pair(name: str) -> None:
    """Every number of ``public_k``'s profile (geometry too: kidney_ct's field of view and
    coverage) is the midpoint of training sites ``k`` and ``k + 1``: none is copied from a
    private site."""
    family = FAMILIES.create(name)
    training = [site for site in family.sites if site.name != family.unseen_site]
    for index, public in enumerate(public_sites(name)):
        first, second = _numbers(training[index]), _numbers(training[index + 1])
        expected = [(a + b) / 2 for a, b in zip(first, second, strict=True)]
        assert _numbers(public) == pytest.approx(expected)


def test_public_site_is_the_midpoint_of_two_training_sites() -> None:
    first = public_sites("brain_lesion")[0]
    a, b = (site.scanner for site in FAMILIES.create("brain_lesion").sites[:2])  # type: ignore[attr-defined]
    assert (
        first.scanner.acquisition.intensity_scale
        == (a.acquisition.intensity_scale + b.acquisition.intensity_scale) / 2
    )  # type: ignore[attr-defined]
    assert first.scanner.contrast == a.contrast  # type: ignore[attr-defined]
