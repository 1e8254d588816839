"""Voxel grids in patient space: one axis convention (RAS, closest canonical) for every format.

A volume read from NIfTI or DICOM carries a 4x4 affine from voxel indices to RAS millimetres.
``canonical`` flips and permutes its spatial axes so that they run, as closely as the grid
allows, towards the patient's Right, Anterior and Superior (as nibabel's
``as_closest_canonical`` does; nothing is resampled). The same scan stored LAS or RAS, or as a
DICOM series, therefore gives the same array.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nibabel.orientations import (
    aff2axcodes,
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)

from medfed.errors import DataError

AFFINE_TOLERANCE_MM = 0.01
"""Largest difference (mm, or mm per voxel) between two affines that describe the same grid."""

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""DICOM patient coordinates (LPS) to NIfTI world coordinates (RAS)."""


@dataclass(frozen=True)
class Volume:
    """Voxels and where they are.

    Attributes:
        array: ``(X, Y, Z)`` or ``(X, Y, Z, C)``: three spatial axes, then optional channels.
        affine: ``(4, 4)`` map from voxel indices ``(i, j, k, 1)`` to RAS millimetres.
    """

    array: np.ndarray
    affine: np.ndarray


def canonical(volume: Volume) -> tuple[Volume, int]:
    """Reorients the spatial axes to the closest RAS order (channels, if any, stay last).

    Args:
        volume: A volume with three spatial axes.

    Returns:
        The reoriented volume, and the new position of the original third spatial axis
        (the axis to drop when that axis had length 1, i.e. the volume is one 2D slice).
    """
    ornt = io_orientation(volume.affine)
    array = apply_orientation(volume.array, ornt)
    affine = volume.affine @ inv_ornt_aff(ornt, volume.array.shape[:3])
    return Volume(array, affine), int(ornt[2, 0])


def channel_first(volume: Volume, slice_axis: int, is_2d: bool) -> np.ndarray:
    """The array as ``(C, X, Y[, Z])``: channels first, the slice axis dropped for a 2D volume.

    Args:
        volume: A canonical volume ``(X, Y, Z[, C])``.
        slice_axis: Spatial axis holding the original third axis (from ``canonical``).
        is_2d: Whether the original third axis had length 1.
    """
    array = volume.array if volume.array.ndim == 4 else volume.array[..., None]
    if is_2d:
        array = np.take(array, 0, axis=slice_axis)
    return np.ascontiguousarray(np.moveaxis(array, -1, 0))


def oriented(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """A volume in RAS closest-canonical order as ``(C, X, Y[, Z])``, and its canonical affine.

    A volume whose third spatial axis has length 1 is one 2D slice and loses that axis.
    """
    reoriented, slice_axis = canonical(volume)
    array = channel_first(reoriented, slice_axis, volume.array.shape[2] == 1)
    return array, reoriented.affine


def stored_order(array: np.ndarray, stored: Volume) -> np.ndarray:
    """The inverse of ``oriented`` for one map on its grid: ``array`` ``(X, Y[, Z])`` in the
    canonical order of ``stored`` back in ``stored``'s own axis order ``(X, Y, Z)`` (a 2D map
    regains its slice axis), so that it lies voxel for voxel on the stored scan.
    """
    ornt = io_orientation(stored.affine)
    if array.ndim == 2:
        array = np.expand_dims(array, int(ornt[2, 0]))
    return apply_orientation(array, ornt_transform(axcodes2ornt(("R", "A", "S")), ornt))


def voxel_spacing(volume: Volume) -> tuple[float, ...]:
    """Voxel spacing in mm along each spatial axis of ``oriented(volume)``'s array: the lengths
    of the stored affine's columns, in canonical axis order, without the slice axis of a 2D
    slice (a stored third axis of length 1)."""
    ornt = io_orientation(volume.affine)
    lengths = np.linalg.norm(volume.affine[:3, :3], axis=0)
    kept = [0, 1] if volume.array.shape[2] == 1 else [0, 1, 2]
    return tuple(float(lengths[axis]) for axis in sorted(kept, key=lambda axis: ornt[axis, 0]))


def axis_codes(affine: np.ndarray) -> str:
    """Where a stored grid's axes point, e.g. ``"LAS"`` (nibabel ``aff2axcodes``)."""
    return "".join(str(code) for code in aff2axcodes(affine))


def check_same_grid(
    site: str, path: Path, affine: np.ndarray, reference: np.ndarray, reference_name: str
) -> None:
    """Raises ``DataError`` unless two affines agree within ``AFFINE_TOLERANCE_MM``.

    Args:
        site: Site name, for error messages.
        path: The file whose affine is checked (named in the error).
        affine: Its affine.
        reference: The affine it must match.
        reference_name: What the reference is (e.g. ``"image 'a_0000.nii.gz'"``).
    """
    difference = float(np.max(np.abs(affine - reference)))
    if difference > AFFINE_TOLERANCE_MM:
        raise DataError(
            site,
            path,
            f"voxel grid does not match the {reference_name} (affines differ by up to "
            f"{difference:.3g} mm, tolerance {AFFINE_TOLERANCE_MM} mm): "
            f"{_compact(affine)} vs {_compact(reference)}; resample it onto the image grid",
        )


def _compact(affine: np.ndarray) -> str:
    """The top three rows of an affine on one line."""
    return "[" + "; ".join(" ".join(f"{v:.4g}" for v in row) for row in affine[:3]) + "]"
