"""Deterministic synthetic multi-site data sets, written in the MSD layout.

A *family* (``medfed.data.families``) says what is imaged: ``brain_lesion`` (the default),
``skin_lesion``, ``kidney_ct`` or ``brain_tumour_mpmri``. Each of its sites has its own scanner
or camera signature, population and number of cases, so that models trained on some sites meet a
real domain shift at the others.

Layout of each site folder (Medical Segmentation Decathlon / nnU-Net)::

    <out>/<site>/dataset.json
    <out>/<site>/imagesTr/<case>_0000.nii.gz    one file per channel (_0000, _0001...);
                                                2D cases stored as (H, W, 1)
    <out>/<site>/labelsTr/<case>.nii.gz         uint8 label map (0 = background)
    <out>/<site>/patients.csv                   with several studies per patient only:
                                                case_id,patient_id

The NIfTI affine holds the voxel spacing in mm. ``dataset.json`` names images as
``./imagesTr/<case>.nii.gz`` (the nnU-Net convention for channel files), lists the channels under
``modality`` and the label names under ``labels``, and adds an integer ``class`` per entry.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medfed.data.families import DEFAULT_SITES, FAMILIES, Family, SiteSpec, SyntheticSite
from medfed.data.patients import PATIENTS_FILE, patients_csv
from medfed.data.scanner import ScannerProfile

__all__ = [
    "DEFAULT_SITES",
    "FAMILIES",
    "ScannerProfile",
    "SyntheticSite",
    "family_sites",
    "generate_federation",
    "generate_site",
    "public_sites",
]


def family_sites(name: str, cases_scale: float = 1.0) -> tuple[SiteSpec, ...]:
    """The default sites of family ``name``, each with ``round(num_cases * cases_scale)`` cases
    (at least 2).

    Raises:
        UnknownNameError: ``name`` is not a registered family; the message lists them.
        ValueError: If ``cases_scale`` is not positive.
    """
    if cases_scale <= 0:
        raise ValueError(f"cases_scale must be > 0, got {cases_scale}")
    sites = FAMILIES.create(name).sites
    return tuple(
        replace(site, num_cases=max(2, round(site.num_cases * cases_scale)))  # type: ignore[type-var]
        for site in sites
    )


def public_sites(name: str, cases_scale: float = 1.0) -> tuple[SiteSpec, ...]:
    """Sites of family ``name`` whose scanners no default site uses, for public pretraining.

    ``public_k`` blends the scanner/camera profile and population of the default training sites
    ``k`` and ``k + 1`` (every number the midpoint of the two, every flag and name from the
    first); the family's unseen site is never blended in. Each has the cases of the first site of
    its pair, scaled by ``cases_scale``.

    Raises:
        UnknownNameError: ``name`` is not a registered family.
    """
    family = FAMILIES.create(name)
    training = [site for site in family_sites(name, cases_scale) if site.name != family.unseen_site]
    return tuple(
        replace(_blend(first, second), name=f"public_{index + 1}")
        for index, (first, second) in enumerate(zip(training, training[1:], strict=False))
    )


def _blend(first: Any, second: Any) -> Any:
    """The midpoint of two values of the same shape: floats averaged, tuples and dataclasses
    field by field, everything else (names, counts, flags) from ``first``."""
    if is_dataclass(first) and not isinstance(first, type):
        changes = {f.name: _blend(getattr(first, f.name), getattr(second, f.name)) for f in fields(first)}
        return replace(first, **changes)
    if isinstance(first, tuple):
        return tuple(_blend(a, b) for a, b in zip(first, second, strict=True))
    if isinstance(first, float) and not isinstance(first, bool):
        return (first + second) / 2.0
    return first


def generate_site(
    site: SiteSpec,
    out_dir: Path,
    *,
    image_size: int = 64,
    dims: int = 2,
    seed: int = 0,
    binary: bool = False,
    studies_per_patient: int = 1,
) -> Path:
    """Generates one site and writes it in the MSD layout.

    The result depends only on ``site``, ``image_size``, ``dims``, ``seed``, ``binary`` and
    ``studies_per_patient``.

    Args:
        site: What to generate (a site of any family).
        out_dir: Parent folder; the site goes to ``out_dir / site.name``.
        image_size: Side ``S`` of the ``(S, S)`` or ``(S, S, S)`` images.
        dims: 2 or 3, among those the site's family supports.
        seed: Seed shared by all sites of a federation.
        binary: Merge every foreground label into label 1 (e.g. whole tumour).
        studies_per_patient: Consecutive cases of one patient (``patients.csv``; the studies
            are independent draws: the grouping, not the anatomy, is simulated).

    Returns:
        The site folder.

    Raises:
        ValueError: If ``dims``, ``image_size`` or ``studies_per_patient`` does not suit.
    """
    family = FAMILIES.create(site.family)
    if dims not in family.dims:
        raise ValueError(f"dims must be one of {family.dims} for family '{family.name}', got {dims}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    if studies_per_patient < 1:
        raise ValueError(f"studies_per_patient must be >= 1, got {studies_per_patient}")
    folder = Path(out_dir) / site.name
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    entries = [
        _write_case(site, folder, index, (image_size,) * dims, seed, binary)
        for index in range(site.num_cases)
    ]
    index = _index(site, family, dims, entries, binary)
    (folder / "dataset.json").write_text(json.dumps(index, indent=2))
    if studies_per_patient > 1:
        cases = [_case_name(site, index) for index in range(site.num_cases)]
        patients = [f"{site.name}_p{index // studies_per_patient:03d}" for index in range(site.num_cases)]
        (folder / PATIENTS_FILE).write_text(patients_csv(cases, patients))
    else:
        (folder / PATIENTS_FILE).unlink(missing_ok=True)  # a folder generated again
    return folder


def generate_federation(
    sites: Sequence[SiteSpec],
    out_dir: Path,
    *,
    image_size: int = 64,
    dims: int = 2,
    seed: int = 0,
    binary: bool = False,
    studies_per_patient: int = 1,
) -> dict[str, Path]:
    """Generates several sites (see ``generate_site``).

    Args:
        sites: The sites, with distinct names.
        out_dir: Parent folder of all site folders.
        image_size: Side of the images.
        dims: 2 or 3.
        seed: Seed of the federation.
        binary: Merge every foreground label into label 1.
        studies_per_patient: Consecutive cases of one patient.

    Returns:
        Site folder by site name, in the order of ``sites``.
    """
    names = [s.name for s in sites]
    if len(set(names)) != len(names):
        raise ValueError(f"site names must be distinct, got {names}")
    return {
        s.name: generate_site(
            s,
            out_dir,
            image_size=image_size,
            dims=dims,
            seed=seed,
            binary=binary,
            studies_per_patient=studies_per_patient,
        )
        for s in sites
    }


def _write_case(
    site: SiteSpec, folder: Path, index: int, shape: tuple[int, ...], seed: int, binary: bool
) -> dict[str, Any]:
    """Generates and writes one case; returns its ``dataset.json`` entry."""
    rng = np.random.default_rng([seed, zlib.crc32(site.name.encode()), index])
    case = site.draw(rng, shape)
    mask = np.minimum(case.mask, 1) if binary else case.mask
    name = _case_name(site, index)
    for channel, image in enumerate(case.image):
        _save_nifti(image, case.spacing, folder / "imagesTr" / f"{name}_{channel:04d}.nii.gz")
    _save_nifti(mask, case.spacing, folder / "labelsTr" / f"{name}.nii.gz")
    return {
        "image": f"./imagesTr/{name}.nii.gz",
        "label": f"./labelsTr/{name}.nii.gz",
        "class": case.label,
    }


def _case_name(site: SiteSpec, index: int) -> str:
    return f"{site.name}_{index:03d}"


def _save_nifti(array: np.ndarray, spacing: tuple[float, ...], path: Path) -> None:
    """Writes an array with ``spacing`` mm voxels on the affine's diagonal; 2D arrays become
    ``(H, W, 1)`` with a 1 mm third axis."""
    volume = array[..., None] if array.ndim == 2 else array
    affine = np.diag([*spacing, *[1.0] * (4 - len(spacing))])
    nib.save(nib.Nifti1Image(volume, affine), path)


def _index(
    site: SiteSpec, family: Family, dims: int, entries: list[dict[str, Any]], binary: bool
) -> dict[str, Any]:
    """The MSD ``dataset.json`` content of a site."""
    return {
        "name": site.name,
        "description": site.description,
        "tensorImageSize": f"{dims}D",
        "modality": dict(enumerate(family.channels)),
        "labels": dict(enumerate(family.label_names(binary=binary))),
        "numTraining": len(entries),
        "numTest": 0,
        "training": entries,
        "test": [],
    }
