"""Deterministic synthetic multi-site brain-MRI data with lesions, written in the MSD layout.

Each site has its own scanner signature (contrast, scale, gamma, bias field, noise, blur),
its own lesion prevalence and size (label shift) and its own number of cases (quantity skew),
so that models trained on some sites meet a real domain shift at the others.

Layout of each site folder (Medical Segmentation Decathlon / nnU-Net v1)::

    <out>/<site>/dataset.json
    <out>/<site>/imagesTr/<case>_0000.nii.gz    2D cases stored as (H, W, 1)
    <out>/<site>/labelsTr/<case>.nii.gz         uint8 lesion mask (1 = lesion)

``dataset.json`` names images as ``./imagesTr/<case>.nii.gz`` (the nnU-Net convention for
channel files) and adds an integer ``class`` per entry: 1 when the case has a lesion.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np

from medfed.data.phantom import make_phantom, render
from medfed.data.scanner import ScannerProfile, acquire

__all__ = [
    "DEFAULT_SITES",
    "ScannerProfile",
    "SyntheticSite",
    "generate_federation",
    "generate_site",
]


@dataclass(frozen=True)
class SyntheticSite:
    """One synthetic hospital.

    Attributes:
        name: Site name, also its folder name.
        scanner: The site's scanner signature.
        num_cases: Number of cases to generate.
        lesion_prevalence: Probability that a case has lesions, in ``[0, 1]``.
        lesion_radius: ``(min, max)`` lesion radius as fractions of the image size.
    """

    name: str
    scanner: ScannerProfile
    num_cases: int
    lesion_prevalence: float
    lesion_radius: tuple[float, float]

    def __post_init__(self) -> None:
        if self.num_cases < 1:
            raise ValueError(f"num_cases must be >= 1, got {self.num_cases}")
        if not 0.0 <= self.lesion_prevalence <= 1.0:
            raise ValueError(f"lesion_prevalence must be in [0, 1], got {self.lesion_prevalence}")
        low, high = self.lesion_radius
        if not 0.0 < low <= high < 0.5:
            raise ValueError(
                f"lesion_radius must satisfy 0 < min <= max < 0.5, got {self.lesion_radius}"
            )


DEFAULT_SITES: tuple[SyntheticSite, ...] = (
    # 1.5T-like T1: low noise, mild bias, the largest site.
    SyntheticSite(
        "hospital_a", ScannerProfile("t1", 1000.0, 1.0, 0.10, 0.02, 0.5), 60, 0.6, (0.06, 0.11)
    ),
    # T2 with strong gamma and bias field.
    SyntheticSite(
        "hospital_b", ScannerProfile("t2", 600.0, 1.6, 0.45, 0.04, 0.6), 40, 0.5, (0.06, 0.12)
    ),
    # Old T1 scanner: noisy and blurred, small site with small lesions.
    SyntheticSite(
        "hospital_c", ScannerProfile("t1", 250.0, 0.85, 0.20, 0.07, 1.0), 24, 0.4, (0.05, 0.08)
    ),
    # The unseen site: T2 with its own scale, gamma, bias and noise.
    SyntheticSite(
        "hospital_d", ScannerProfile("t2", 2500.0, 0.7, 0.30, 0.05, 0.8), 30, 0.5, (0.06, 0.11)
    ),
)
"""Four sites with clearly different signatures; ``hospital_d`` is meant to stay unseen."""


def generate_site(
    site: SyntheticSite,
    out_dir: Path,
    *,
    image_size: int = 64,
    dims: Literal[2, 3] = 2,
    seed: int = 0,
) -> Path:
    """Generates one site and writes it in the MSD layout.

    The result depends only on ``site``, ``image_size``, ``dims`` and ``seed``.

    Args:
        site: What to generate.
        out_dir: Parent folder; the site goes to ``out_dir / site.name``.
        image_size: Side ``S`` of the ``(S, S)`` or ``(S, S, S)`` images.
        dims: 2 or 3.
        seed: Seed shared by all sites of a federation.

    Returns:
        The site folder.
    """
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    folder = Path(out_dir) / site.name
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    entries = [
        _write_case(site, folder, index, (image_size,) * dims, seed)
        for index in range(site.num_cases)
    ]
    (folder / "dataset.json").write_text(json.dumps(_index(site, dims, entries), indent=2))
    return folder


def generate_federation(
    sites: Sequence[SyntheticSite],
    out_dir: Path,
    *,
    image_size: int = 64,
    dims: Literal[2, 3] = 2,
    seed: int = 0,
) -> dict[str, Path]:
    """Generates several sites (see ``generate_site``).

    Args:
        sites: The sites, with distinct names.
        out_dir: Parent folder of all site folders.
        image_size: Side of the images.
        dims: 2 or 3.
        seed: Seed of the federation.

    Returns:
        Site folder by site name, in the order of ``sites``.
    """
    names = [s.name for s in sites]
    if len(set(names)) != len(names):
        raise ValueError(f"site names must be distinct, got {names}")
    return {
        s.name: generate_site(s, out_dir, image_size=image_size, dims=dims, seed=seed)
        for s in sites
    }


def _write_case(
    site: SyntheticSite, folder: Path, index: int, shape: tuple[int, ...], seed: int
) -> dict[str, Any]:
    """Generates and writes one case; returns its ``dataset.json`` entry."""
    rng = np.random.default_rng([seed, zlib.crc32(site.name.encode()), index])
    phantom = make_phantom(rng, shape, site.lesion_prevalence, site.lesion_radius)
    image = acquire(render(phantom, site.scanner.contrast, rng), phantom.head, site.scanner, rng)
    mask = phantom.lesion.astype(np.uint8)
    case = f"{site.name}_{index:03d}"
    _save_nifti(image, folder / "imagesTr" / f"{case}_0000.nii.gz")
    _save_nifti(mask, folder / "labelsTr" / f"{case}.nii.gz")
    return {
        "image": f"./imagesTr/{case}.nii.gz",
        "label": f"./labelsTr/{case}.nii.gz",
        "class": int(mask.any()),
    }


def _save_nifti(array: np.ndarray, path: Path) -> None:
    """Writes an array with 1 mm isotropic voxels; 2D arrays become ``(H, W, 1)``."""
    volume = array[..., None] if array.ndim == 2 else array
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)


def _index(site: SyntheticSite, dims: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The MSD ``dataset.json`` content of a site."""
    return {
        "name": site.name,
        "description": f"medfed synthetic brain MRI ({site.scanner.contrast.upper()})",
        "tensorImageSize": f"{dims}D",
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "lesion"},
        "numTraining": len(entries),
        "numTest": 0,
        "training": entries,
        "test": [],
    }
