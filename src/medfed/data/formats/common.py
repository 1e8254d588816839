"""File readers shared by the format loaders; every failure becomes a ``DataError``."""

from __future__ import annotations

import csv
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TypeVar

import nibabel as nib
import numpy as np

from medfed.data.formats.geometry import Volume
from medfed.errors import DataError

T = TypeVar("T")

MAX_PATIENT_ID = 64
"""Longest patient id accepted (DICOM's PatientID is at most 64 characters)."""


def patient_id(text: str) -> str:
    """``text`` if it is a usable patient id: 1 to ``MAX_PATIENT_ID`` printable characters.

    Raises:
        ValueError: It is empty, too long or holds control characters.
    """
    if not 0 < len(text) <= MAX_PATIENT_ID or not text.isprintable():
        raise ValueError(text)
    return text


def require_file(site: str, path: Path, what: str) -> None:
    """Raises ``DataError`` unless ``path`` is an existing file.

    Args:
        site: Site name, for error messages.
        path: The file that must exist.
        what: What the file is for (e.g. ``"label file referenced by dataset.json"``).
    """
    if not path.is_file():
        raise DataError(site, path, f"{what} not found; check the path or remove the reference")


def read_nifti(site: str, path: Path) -> Volume:
    """Reads a NIfTI file as stored (no reorientation); a 2D file becomes ``(X, Y, 1)``.

    A 4D file holds channels along its fourth axis (the MSD convention), never time. Pass the
    result to ``geometry.oriented`` for the RAS closest-canonical, channel-first array.

    Args:
        site: Site name, for error messages.
        path: A ``.nii`` or ``.nii.gz`` file.

    Returns:
        The voxel array in the file's own axis order and dtype, and the file's affine
        (its sform, else its qform, as nibabel chooses).

    Raises:
        DataError: If the file is missing, truncated, not NIfTI, not 2D, 3D or 4D, or its
            affine is singular or not finite.
    """
    require_file(site, path, "NIfTI file")
    try:
        image = nib.load(path)
        if not isinstance(image, nib.Nifti1Pair):  # NIfTI-1 and NIfTI-2 images
            raise TypeError(f"{type(image).__name__} is not NIfTI")
        array, affine = np.asanyarray(image.dataobj), np.asarray(image.affine, dtype=np.float64)
    except Exception as exc:  # nibabel and gzip raise many unrelated types
        raise DataError(
            site,
            path,
            f"cannot read NIfTI file ({type(exc).__name__}: {exc}); it may be truncated "
            "or corrupt, re-export it",
        ) from exc
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataError(site, path, f"NIfTI affine is not a valid voxel-to-world map: {affine[:3]}")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim not in (3, 4):
        reason = f"expected a 2D, 3D or 4D (channels last) NIfTI array, got shape {array.shape}"
        raise DataError(site, path, reason)
    return Volume(array, affine)


def read_labels_csv(site: str, path: Path, key_column: str, known: Collection[str]) -> dict[str, int]:
    """Reads a CSV of case-level integer labels (see ``read_case_csv``).

    Args:
        site: Site name, for error messages.
        path: CSV file with a header holding ``key_column`` and ``label``.
        key_column: Column identifying the case (e.g. ``"case_id"`` or ``"filename"``).
        known: The keys of the site's cases; every row must name one of them.

    Returns:
        Label by key.

    Raises:
        DataError: See ``read_case_csv``; also if a label is not an integer.
    """
    return read_case_csv(site, path, key_column, "label", known, (int, "an integer"))


def read_case_csv(
    site: str,
    path: Path,
    key_column: str,
    value_column: str,
    known: Collection[str],
    parse: tuple[Callable[[str], T], str],
) -> dict[str, T]:
    """Reads a CSV with one value per case (UTF-8, with or without the BOM Excel writes).

    Args:
        site: Site name, for error messages.
        path: CSV file with a header holding ``key_column`` and ``value_column``.
        key_column: Column identifying the case.
        value_column: Column of the values.
        known: The keys of the site's cases; every row must name one of them.
        parse: A function turning a cell into a value (``ValueError`` or ``TypeError``
            means a bad cell), and what a good cell is (e.g. ``"an integer"``).

    Returns:
        Value by key.

    Raises:
        DataError: If the file cannot be read, lacks the columns, a value does not parse, or a
            key repeats or names no case of the site (each naming the line).
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(site, path, f"cannot read CSV: {exc}") from exc
    if rows and not {key_column, value_column} <= rows[0].keys():
        raise DataError(site, path, f"CSV needs the columns '{key_column}' and '{value_column}'")
    values: dict[str, T] = {}
    for line, row in enumerate(rows, start=2):
        key = (row[key_column] or "").strip()
        if key in values:
            raise DataError(site, path, f"line {line}: '{key}' already has a {value_column}")
        if key not in known:
            raise DataError(site, path, f"line {line}: '{key}' is not a case of this site")
        convert, expected = parse
        try:
            values[key] = convert((row[value_column] or "").strip())
        except (TypeError, ValueError):
            reason = f"line {line}: {value_column} '{row[value_column]}' is not {expected}"
            raise DataError(site, path, reason) from None
    return values


def lookup_label(site: str, labels: dict[str, int] | None, key: str, csv_path: Path) -> int | None:
    """The label of ``key``; ``None`` without a labels file; ``DataError`` if ``key`` lacks one."""
    if labels is None:
        return None
    if key not in labels:
        raise DataError(site, csv_path, f"no label for '{key}'; add a row for it")
    return labels[key]
