"""New patients' scans as ``medfed predict`` reads them: NIfTI files, DICOM series, PNG images.

A scan keeps its stored voxel order and affine, so that a prediction can be written back onto
exactly the grid it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydicom.dataset import FileDataset

from medfed.data.formats.common import read_nifti
from medfed.data.formats.dicom import is_dicom, read_series
from medfed.data.formats.geometry import Volume
from medfed.data.formats.png import read_png
from medfed.errors import DataError

ScanKind = Literal["nifti", "dicom", "png"]
SOURCE = ""
"""The site that errors name: none, a scan to predict on belongs to no site."""
NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True)
class Scan:
    """One scan to predict on.

    Attributes:
        name: Stem of the output files (the file name without its suffix, or the folder name).
        source: The file or DICOM folder read.
        kind: Its storage format.
        volume: Voxels ``(X, Y, Z[, C])`` in the stored axis order, and the stored affine (RAS mm;
            the identity for PNG and for DICOM without geometry).
        has_geometry: Whether the affine places the voxels in patient space.
        dicom: The source series' datasets in slice order (DICOM only), for a DICOM SEG.
    """

    name: str
    source: Path
    kind: ScanKind
    volume: Volume
    has_geometry: bool = True
    dicom: tuple[FileDataset, ...] = ()


def find_scans(path: Path) -> list[Path]:
    """The scans under ``path``: the file or DICOM folder itself, else every NIfTI, PNG and
    DICOM series folder directly inside it, sorted.

    Raises:
        DataError: ``path`` does not exist or holds no scan.
    """
    if not path.exists():
        raise DataError(SOURCE, path, "no such file or folder")
    if path.is_file() or _holds_dicom(path):
        return [path]
    found = sorted(
        child
        for child in path.iterdir()
        if not child.name.startswith(".")
        and (
            (child.is_file() and _kind_of_file(child) is not None) or (child.is_dir() and _holds_dicom(child))
        )
    )
    if not found:
        reason = "holds no NIfTI (.nii, .nii.gz), PNG or DICOM series (a folder of DICOM files)"
        raise DataError(SOURCE, path, reason)
    return found


def read_scan(path: Path) -> Scan:
    """Reads one scan found by ``find_scans``.

    Raises:
        DataError: The file is unreadable, of an unknown format, or the series inconsistent.
    """
    if path.is_dir():
        series = read_series(SOURCE, path)
        datasets = tuple(dataset for _, dataset in series.slices)
        return Scan(path.name, path, "dicom", series.volume, series.has_geometry, datasets)
    kind = _kind_of_file(path)
    if kind == "nifti":
        return Scan(_stem(path), path, "nifti", read_nifti(SOURCE, path))
    if kind == "png":
        pixels = read_png(SOURCE, path)
        array = pixels[:, :, None] if pixels.ndim == 2 else pixels[:, :, None, :]
        return Scan(path.stem, path, "png", Volume(np.asarray(array, np.float32), np.eye(4)), False)
    reason = "not a NIfTI (.nii, .nii.gz), PNG or DICOM file; give a DICOM series as its folder"
    raise DataError(SOURCE, path, reason)


def _kind_of_file(path: Path) -> ScanKind | None:
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(".png"):
        return "png"
    return None


def _holds_dicom(folder: Path) -> bool:
    return folder.is_dir() and any(child.is_file() and is_dicom(child) for child in folder.iterdir())


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem
