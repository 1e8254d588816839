"""File readers shared by the format loaders; every failure becomes a ``DataError``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from monai.data import NibabelReader

from medfed.errors import DataError


def require_file(site: str, path: Path, what: str) -> None:
    """Raises ``DataError`` unless ``path`` is an existing file.

    Args:
        site: Site name, for error messages.
        path: The file that must exist.
        what: What the file is for (e.g. ``"label file referenced by dataset.json"``).
    """
    if not path.is_file():
        raise DataError(site, path, f"{what} not found; check the path or remove the reference")


def read_nifti(site: str, path: Path) -> np.ndarray:
    """Reads a NIfTI file's voxel array as stored (no reorientation), via MONAI's reader.

    Args:
        site: Site name, for error messages.
        path: A ``.nii`` or ``.nii.gz`` file.

    Returns:
        The voxel array in the file's own axis order and dtype.

    Raises:
        DataError: If the file is missing, truncated or not NIfTI.
    """
    require_file(site, path, "NIfTI file")
    reader = NibabelReader()
    try:
        array, _ = reader.get_data(reader.read(str(path)))
        return np.asarray(array)
    except Exception as exc:  # nibabel, gzip and MONAI raise many unrelated types
        raise DataError(
            site,
            path,
            f"cannot read NIfTI file ({type(exc).__name__}: {exc}); it may be truncated "
            "or corrupt, re-export it",
        ) from exc


def spatial_to_channel_first(array: np.ndarray) -> np.ndarray:
    """Adds a channel axis to a single-channel volume, treating ``(H, W, 1)`` as 2D.

    Args:
        array: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, D)``.

    Returns:
        ``(1, H, W)`` or ``(1, H, W, D)``.
    """
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return array[None]


def read_labels_csv(site: str, path: Path, key_column: str) -> dict[str, int]:
    """Reads a CSV of case-level integer labels.

    Args:
        site: Site name, for error messages.
        path: CSV file with a header holding ``key_column`` and ``label``.
        key_column: Column identifying the case (e.g. ``"case_id"`` or ``"filename"``).

    Returns:
        Label by key.

    Raises:
        DataError: If the file cannot be read, lacks the columns, or a label is not an integer.
    """
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(site, path, f"cannot read labels CSV: {exc}") from exc
    if rows and not {key_column, "label"} <= rows[0].keys():
        raise DataError(site, path, f"labels CSV needs the columns '{key_column}' and 'label'")
    labels: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        try:
            labels[row[key_column].strip()] = int(row["label"])
        except (TypeError, ValueError):
            raise DataError(
                site, path, f"line {line}: label '{row['label']}' is not an integer"
            ) from None
    return labels


def lookup_label(
    site: str, labels: dict[str, int] | None, key: str, csv_path: Path
) -> int | None:
    """The label of ``key``; ``None`` without a labels file; ``DataError`` if ``key`` lacks one."""
    if labels is None:
        return None
    if key not in labels:
        raise DataError(site, csv_path, f"no label for '{key}'; add a row for it")
    return labels[key]
