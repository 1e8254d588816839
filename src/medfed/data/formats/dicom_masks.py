"""Masks of a DICOM case: a NIfTI file, a DICOM SEG or an RTSTRUCT, put on the series' grid.

Each reader returns the mask as a label map on the series' voxel grid, ``(rows, columns,
slices)``, in the same axis order as the image after ``oriented`` (i.e. already reoriented).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from matplotlib.path import Path as Polygon
from pydicom.dataset import Dataset

from medfed.data.formats.common import read_nifti
from medfed.data.formats.geometry import LPS_TO_RAS, Volume, check_same_grid, oriented
from medfed.errors import DataError

CONTOUR_OFF_SLICE_TOLERANCE = 0.1
"""Largest distance of a contour from its slice, as a fraction of the slice step."""


def nifti_mask(site: str, path: Path, image_affine: np.ndarray | None) -> np.ndarray:
    """A NIfTI mask reoriented onto the image's grid, or as stored when the series has no
    geometry (then it must be in ``(rows, columns[, slices])`` order).

    Args:
        site: Site name, for error messages.
        path: The ``mask.nii.gz`` file.
        image_affine: The image's canonical affine, or ``None`` without geometry.

    Raises:
        DataError: If the file is unreadable or its grid is not the image's.
    """
    stored = read_nifti(site, path)
    if image_affine is None:
        return stored.array if stored.array.shape[2] != 1 else stored.array[..., 0]
    mask, affine = oriented(stored)
    check_same_grid(site, path, affine, image_affine, "DICOM series")
    return mask


def seg_mask(site: str, path: Path, uids: Sequence[str], volume: Volume) -> np.ndarray:
    """A DICOM SEG as a label map of segment numbers, frames matched to slices by the SOP
    instances they reference (never by position).

    Args:
        site: Site name, for error messages.
        path: The SEG file.
        uids: SOPInstanceUID of each slice, in slice order.
        volume: The series ``(rows, columns, slices)`` with its RAS affine.

    Raises:
        DataError: If the SEG cannot be read or references images outside the series.
    """
    try:
        seg = hd.seg.segread(path)
        foreign = {str(sop) for _, _, sop in seg.get_source_image_uids()} - set(uids)
        frames = (
            None
            if foreign
            else seg.get_pixels_by_source_instance(
                list(uids), combine_segments=True, assert_missing_frames_are_empty=True
            )
        )
    except Exception as exc:  # highdicom raises ValueError, KeyError, AttributeError...
        reason = f"cannot read the DICOM SEG against this series ({type(exc).__name__}: {exc})"
        raise DataError(site, path, reason) from exc
    if frames is None:
        reason = (
            f"cannot read the DICOM SEG against this series: it references {len(foreign)} "
            "images that are not in the case's series"
        )
        raise DataError(site, path, reason)
    return oriented(Volume(np.moveaxis(np.asarray(frames), 0, -1), volume.affine))[0]


def rtstruct_mask(
    site: str, path: Path, rtstruct: Dataset, frame_of_reference: str, volume: Volume
) -> np.ndarray:
    """An RTSTRUCT rasterised on the series' grid: the i-th ROI in ROINumber order (from 1)
    gets value i; a voxel belongs to a closed planar contour when its centre lies inside it
    (contours on one slice combine even-odd, so an inner contour is a hole); where ROIs overlap,
    the later one wins.

    Args:
        site: Site name, for error messages.
        path: The RTSTRUCT file.
        rtstruct: Its dataset.
        frame_of_reference: The series' FrameOfReferenceUID.
        volume: The series ``(rows, columns, slices)`` with its RAS affine.

    Raises:
        DataError: If an ROI lies in another frame of reference, a contour is not closed
            planar, or a contour does not lie on a slice of the series, or the object is
            malformed.
    """
    try:
        return _rasterised(site, path, rtstruct, frame_of_reference, volume)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # missing or bad values
        reason = f"malformed RTSTRUCT ({type(exc).__name__}: {exc})"
        raise DataError(site, path, reason) from exc


def _rasterised(
    site: str, path: Path, rtstruct: Dataset, frame_of_reference: str, volume: Volume
) -> np.ndarray:
    """The body of ``rtstruct_mask``; Python errors here mean a malformed object."""
    rois = {int(r.ROINumber): r for r in rtstruct.get("StructureSetROISequence", [])}
    for roi in rois.values():
        if str(roi.get("ReferencedFrameOfReferenceUID", frame_of_reference)) != frame_of_reference:
            reason = f"ROI '{roi.get('ROIName', roi.ROINumber)}' lies in another frame of reference"
            raise DataError(site, path, reason)
    contours = {int(r.ReferencedROINumber): r for r in rtstruct.get("ROIContourSequence", [])}
    undeclared = sorted(contours.keys() - rois.keys())
    if undeclared:
        raise DataError(site, path, f"contours of ROI {undeclared[0]}, which is not declared")
    labels = np.zeros(volume.array.shape[:3], np.int32)
    for value, number in enumerate(sorted(rois), start=1):
        if number in contours:
            sequence = contours[number].get("ContourSequence", [])
            labels[_filled(site, path, sequence, volume)] = value
    return oriented(Volume(labels, volume.affine))[0]


def _filled(site: str, path: Path, contours: Sequence[Dataset], volume: Volume) -> np.ndarray:
    """The voxels inside one ROI's contours, boolean ``(rows, columns, slices)``."""
    shape = volume.array.shape[:3]
    inside = np.zeros(shape, bool)
    to_voxels = np.linalg.inv(volume.affine)
    centres = np.stack(np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij"), -1)
    for contour in contours:
        if str(contour.get("ContourGeometricType", "")) != "CLOSED_PLANAR":
            reason = f"contour type '{contour.get('ContourGeometricType')}' is not CLOSED_PLANAR"
            raise DataError(site, path, reason)
        lps = np.asarray(contour.ContourData, float).reshape(-1, 3)
        voxels = (to_voxels @ (LPS_TO_RAS @ np.c_[lps, np.ones(len(lps))].T)).T[:, :3]
        k = round(float(voxels[:, 2].mean()))
        if not 0 <= k < shape[2] or np.abs(voxels[:, 2] - k).max() > CONTOUR_OFF_SLICE_TOLERANCE:
            raise DataError(site, path, "a contour does not lie on a slice of the series")
        polygon = Polygon(voxels[:, :2])
        inside[..., k] ^= polygon.contains_points(centres.reshape(-1, 2)).reshape(shape[:2])
    return inside
