"""Loader for a site folder with one sub-folder per case, each holding one DICOM series.

Layout::

    <site>/labels.csv          optional, columns case_id,label
    <site>/<case_id>/*.dcm     one series (any file name; hidden files are skipped)
    <site>/<case_id>/mask.nii.gz  optional, voxel order (rows, columns[, sorted slices])

Pixel values are converted to modality units with RescaleSlope/RescaleIntercept. Slices are
ordered by ImagePositionPatient projected on the slice normal (from ImageOrientationPatient),
else by InstanceNumber. A one-slice series is a 2D case. Headers are not kept.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom

from medfed.data.cases import Case, SiteData
from medfed.data.formats.common import (
    lookup_label,
    read_labels_csv,
    read_nifti,
    spatial_to_channel_first,
)
from medfed.data.validation import checked_case, checked_site
from medfed.errors import DataError

MASK_FILE = "mask.nii.gz"
LABELS_FILE = "labels.csv"


def load(site: str, path: Path) -> SiteData:
    """Loads a DICOM site folder.

    Args:
        site: The site's name.
        path: Folder with one sub-folder per case.

    Returns:
        The site's cases, sorted by case id (folder name).

    Raises:
        DataError: If a file is unreadable, a series is inconsistent, or a label or mask is
            missing while other cases have one.
    """
    csv_path = path / LABELS_FILE
    labels = read_labels_csv(site, csv_path, "case_id") if csv_path.is_file() else None
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    cases = [
        _load_case(site, folder, lookup_label(site, labels, folder.name, csv_path))
        for folder in folders
    ]
    return checked_site(site, path, cases)


def _load_case(site: str, folder: Path, label: int | None) -> Case:
    """Reads one case folder: its series and optional mask."""
    files = sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.name != MASK_FILE and not p.name.startswith(".")
    )
    if not files:
        raise DataError(site, folder, "case folder holds no DICOM files")
    slices = _sorted_slices(site, [_read_slice(site, f) for f in files])
    shapes = {pixels.shape for _, pixels, _ in slices}
    if len(shapes) > 1:
        raise DataError(site, folder, f"slices of the series differ in size: {sorted(shapes)}")
    volume = np.stack([pixels for _, pixels, _ in slices], axis=-1)
    image = volume[None, ..., 0] if volume.shape[-1] == 1 else volume[None]
    mask_path = folder / MASK_FILE
    mask = spatial_to_channel_first(read_nifti(site, mask_path)) if mask_path.is_file() else None
    return checked_case(site, folder.name, image, mask, label, folder, mask_path)


_Slice = tuple[float, np.ndarray, Path]
"""(sort key: position along the slice normal, else InstanceNumber, else NaN;
pixels (rows, columns); file)."""


def _read_slice(site: str, path: Path) -> _Slice:
    """Reads one DICOM file into its sort key and rescaled float32 pixels ``(rows, columns)``."""
    try:
        ds = pydicom.dcmread(path)
        pixels = np.asarray(ds.pixel_array, dtype=np.float32)
    except Exception as exc:  # pydicom raises many unrelated types on bad files
        raise DataError(
            site,
            path,
            f"cannot read DICOM file ({type(exc).__name__}: {exc}); it may be truncated, "
            "compressed with an unsupported codec, or not DICOM",
        ) from exc
    if pixels.ndim != 2:
        raise DataError(site, path, f"expected a single-frame greyscale slice, got {pixels.shape}")
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return _sort_key(ds), pixels * slope + intercept, path


def _sort_key(ds: pydicom.Dataset) -> float:
    """Position along the slice normal, else InstanceNumber, else NaN."""
    position, orientation = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
    if position is not None and orientation is not None and len(orientation) == 6:
        row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
        return float(np.dot(np.cross(row, col), np.asarray(position, float)))
    number = ds.get("InstanceNumber")
    return math.nan if number is None else float(number)


def _sorted_slices(site: str, slices: list[_Slice]) -> list[_Slice]:
    """The slices in anatomical order; ``DataError`` if a multi-slice series cannot be ordered."""
    if len(slices) == 1:
        return slices
    missing = [path for key, _, path in slices if math.isnan(key)]
    if missing:
        raise DataError(
            site,
            missing[0],
            "slice has neither ImagePositionPatient/ImageOrientationPatient "
            "nor InstanceNumber, so the series cannot be ordered",
        )
    return sorted(slices, key=lambda s: s[0])
