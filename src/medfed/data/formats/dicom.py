"""Loader for a site folder with one sub-folder per case, each holding one DICOM image series.

Layout::

    <site>/labels.csv             optional, columns case_id,label
    <site>/series.csv             optional, columns case_id,series_instance_uid: the series to
                                  read where a case folder holds several (else refused)
    <site>/<case_id>/<any name>   one image series; a file is DICOM when it has 'DICM' at byte
                                  128 (any extension or none); other files are ignored
    <site>/<case_id>/mask.nii.gz  optional mask, or one DICOM SEG or RTSTRUCT in the folder

Every image file must be a single-frame greyscale image (SOP class "... Image Storage",
PhotometricInterpretation MONOCHROME2, or MONOCHROME1, which is inverted) of one series with one
Modality. Compressed transfer syntaxes (JPEG baseline, extended and lossless, JPEG-LS, JPEG 2000,
RLE) are decoded by the pylibjpeg plugins. Pixel values are converted to modality units with
RescaleSlope/RescaleIntercept. Headers are not kept.

Geometry: when every slice has ImagePositionPatient and ImageOrientationPatient, all
orientations must agree, slice positions (along the normal) must be distinct and evenly spaced
(a gap is a missing slice), and the volume is reoriented to the RAS closest-canonical order, as
NIfTI volumes are; a NIfTI mask must then lie on the same voxel grid (its affine is compared and
it is reoriented the same way). Without those attributes the slices are ordered by
InstanceNumber, the volume stays ``(rows, columns, slices)`` and a NIfTI mask must be stored in
that axis order. A one-slice series is a 2D case.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset
from pydicom.uid import (
    MediaStorageDirectoryStorage,
    RTStructureSetStorage,
    SegmentationStorage,
)

from medfed.data.cases import Case, SiteData
from medfed.data.formats.common import lookup_label, patient_id, read_case_csv, read_labels_csv
from medfed.data.formats.dicom_masks import nifti_mask, rtstruct_mask, seg_mask
from medfed.data.formats.geometry import LPS_TO_RAS, Volume, axis_codes, oriented, voxel_spacing
from medfed.data.formats.identifiers import identifying_attributes
from medfed.data.validation import checked_case, checked_site, loaded_cases
from medfed.errors import DataError

MASK_FILE = "mask.nii.gz"
LABELS_FILE = "labels.csv"
SERIES_FILE = "series.csv"
SERIES_COLUMN = "series_instance_uid"
MAX_UID_LENGTH = 64
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
ORIENTATION_TOLERANCE = 1e-4
"""Largest difference between direction cosines of slices of one series."""
SPACING_TOLERANCE_MM = 0.01
SPACING_TOLERANCE_RELATIVE = 0.01
"""Slice gaps may differ from the series' spacing by the larger of 0.01 mm and 1 %."""

_Slice = tuple[Path, FileDataset]


def is_dicom(path: Path) -> bool:
    """Whether a file is DICOM Part 10: the bytes ``DICM`` after the 128-byte preamble."""
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def load(site: str, path: Path, *, allow_identified: bool = False) -> SiteData:
    """Loads a DICOM site folder.

    Args:
        site: The site's name.
        path: Folder with one sub-folder per case.
        allow_identified: Accept image files that still carry direct identifiers (by default
            they are refused: de-identify the site with ``medfed deid`` first).

    Returns:
        The site's cases, sorted by case id (folder name).

    Raises:
        DataError: If a file is unreadable or not a greyscale image, a series is inconsistent,
            or a label or mask is missing while other cases have one.
    """
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = {folder.name for folder in folders}
    csv_path, series_path = path / LABELS_FILE, path / SERIES_FILE
    labels = read_labels_csv(site, csv_path, "case_id", names) if csv_path.is_file() else None
    chosen = (
        read_case_csv(site, series_path, "case_id", SERIES_COLUMN, names, (_uid, "a valid UID"))
        if series_path.is_file()
        else {}
    )
    cases = loaded_cases(
        folders,
        lambda folder: _load_case(
            site,
            folder,
            lookup_label(site, labels, folder.name, csv_path),
            chosen.get(folder.name),
            allow_identified,
        ),
    )
    return checked_site(site, path, cases)


def _uid(text: str) -> str:
    """``text`` if it is a valid DICOM UID (dot-separated numbers without leading zeros)."""
    if len(text) > MAX_UID_LENGTH or not _UID.fullmatch(text):
        raise ValueError(text)
    return text


@dataclass(frozen=True)
class Series:
    """One DICOM image series, read and checked.

    Attributes:
        slices: The image files and their datasets, in slice order.
        volume: ``(rows, columns, slices)`` in modality units, with its RAS affine (identity
            without geometry).
        has_geometry: Whether every slice has ImagePositionPatient and ImageOrientationPatient.
    """

    slices: tuple[tuple[Path, FileDataset], ...]
    volume: Volume
    has_geometry: bool


def read_series(site: str, folder: Path) -> Series:
    """Reads the one image series of ``folder`` (its masks are ignored).

    Raises:
        DataError: As ``load`` does for a case folder's series.
    """
    return _series(site, folder, _read_folder(site, folder)[0], None)


def _series(site: str, folder: Path, images: list[_Slice], chosen: str | None) -> Series:
    slices = _sorted_slices(site, _one_series(site, folder, images, chosen))
    volume, has_geometry = _volume(site, slices)
    return Series(tuple(slices), volume, has_geometry)


def _load_case(
    site: str, folder: Path, label: int | None, chosen: str | None, allow_identified: bool
) -> Case:
    """Reads one case folder: its series (the one named ``chosen``, when given) and optional
    mask (NIfTI, SEG or RTSTRUCT)."""
    images, masks = _read_folder(site, folder)
    series = _series(site, folder, images, chosen)
    if not allow_identified:
        _refuse_identified(site, series.slices)
    slices, volume, has_geometry = list(series.slices), series.volume, series.has_geometry
    image, affine = oriented(volume)
    spacing = voxel_spacing(volume) if has_geometry else None
    if (folder / MASK_FILE).is_file():
        masks.insert(0, (folder / MASK_FILE, None))
    if len(masks) > 1:
        names = ", ".join(path.name for path, _ in masks)
        raise DataError(site, folder, f"case has {len(masks)} masks ({names}); keep one")
    mask_path, mask = None, None
    if masks:
        mask_path, ds = masks[0]
        mask = _read_mask(site, mask_path, ds, slices, volume, affine if has_geometry else None)
    case = checked_case(site, folder.name, image, mask, label, folder, mask_path, spacing)
    orientation = axis_codes(volume.affine) if has_geometry else None
    return replace(case, orientation=orientation, patient_id=_patient(site, series.slices))


def _patient(site: str, slices: Sequence[_Slice]) -> str | None:
    """The series' ``PatientID`` (a pseudonym after ``medfed deid``), ``None`` when absent;
    every slice must name the same one."""
    found = {str(ds.get("PatientID", "") or "").strip() for _, ds in slices}
    if len(found) > 1:
        raise DataError(
            site, slices[0][0].parent, f"the series' slices name {len(found)} different PatientIDs"
        )
    (patient,) = found
    if not patient:
        return None
    try:
        return patient_id(patient)
    except ValueError:
        raise DataError(
            site, slices[0][0], f"PatientID {patient[:80]!r} is not a usable patient id"
        ) from None


def _read_mask(
    site: str,
    path: Path,
    ds: FileDataset | None,
    slices: list[_Slice],
    volume: Volume,
    affine: np.ndarray | None,
) -> np.ndarray:
    """A case's mask, on its image's grid: NIfTI (``ds`` is ``None``), DICOM SEG or RTSTRUCT.

    ``affine`` is the image's canonical affine, ``None`` for a series without geometry.
    """
    if ds is None:
        return nifti_mask(site, path, affine)
    if affine is None:
        reason = "a DICOM SEG or RTSTRUCT needs slices with ImagePositionPatient/Orientation"
        raise DataError(site, path, reason)
    if _sop_class(ds) == SegmentationStorage:
        return seg_mask(site, path, [str(s.SOPInstanceUID) for _, s in slices], volume)
    frame = str(slices[0][1].get("FrameOfReferenceUID", ""))
    return rtstruct_mask(site, path, ds, frame, volume)


def _refuse_identified(site: str, slices: Sequence[_Slice]) -> None:
    """Raises ``DataError`` for the first image file that still names its patient."""
    for path, ds in slices:
        found = identifying_attributes(ds)
        if found:
            reason = (
                f"still identifies its patient ({', '.join(found)}); de-identify the site with "
                "'medfed deid', or set allow_identified: true for this site"
            )
            raise DataError(site, path, reason)


def _read_folder(site: str, folder: Path) -> tuple[list[_Slice], list[tuple[Path, FileDataset | None]]]:
    """The image files and the SEG/RTSTRUCT files of a case folder, read; other files are
    ignored."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images: list[_Slice] = []
    masks: list[tuple[Path, FileDataset | None]] = []
    for file in filter(is_dicom, files):
        ds = _read(site, file)
        sop_class = _sop_class(ds)
        if sop_class == MediaStorageDirectoryStorage:
            continue
        if sop_class in (SegmentationStorage, RTStructureSetStorage):
            masks.append((file, ds))
        elif sop_class.name.endswith("Image Storage"):
            images.append((file, ds))
        else:
            reason = (
                f"'{sop_class.name}' is not an image; a case folder holds one image series "
                "and optionally one mask (DICOM SEG or RTSTRUCT)"
            )
            raise DataError(site, file, reason)
    if not images:
        reason = "case folder holds no DICOM image files (files with 'DICM' at byte 128)"
        raise DataError(site, folder, reason)
    return images, masks


def _read(site: str, path: Path) -> FileDataset:
    """Reads a whole DICOM file, which must name its SOP class."""
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many unrelated types on bad files
        reason = f"cannot read DICOM file ({type(exc).__name__}: {exc}); it may be truncated"
        raise DataError(site, path, reason) from exc
    if not _sop_class(ds):
        raise DataError(site, path, "cannot read DICOM file: no SOPClassUID; it may be truncated")
    return ds


def _sop_class(ds: FileDataset) -> pydicom.uid.UID:
    """The SOP class of a file: SOPClassUID (a DICOMDIR names its class in the file meta only)."""
    if ds.file_meta.get("MediaStorageSOPClassUID") == MediaStorageDirectoryStorage:
        return MediaStorageDirectoryStorage
    return pydicom.uid.UID(str(ds.get("SOPClassUID", "")))


def _one_series(site: str, folder: Path, images: list[_Slice], chosen: str | None) -> list[_Slice]:
    """The images of series ``chosen`` (``None``: the only series), checked to have one modality."""
    by_series: dict[str, list[_Slice]] = {}
    for path, ds in images:
        by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((path, ds))
    if chosen is not None and chosen not in by_series:
        reason = (
            f"{SERIES_FILE} names series {chosen}, which is not in the case folder ({_listed(by_series)})"
        )
        raise DataError(site, folder, reason)
    if chosen is None and len(by_series) > 1:
        reason = (
            f"case folder holds {len(by_series)} series ({_listed(by_series)}); keep one, or name "
            f"the one to read in {SERIES_FILE} (case_id,{SERIES_COLUMN})"
        )
        raise DataError(site, folder, reason)
    images = by_series[chosen] if chosen is not None else images
    modalities = sorted({str(ds.get("Modality", "")) for _, ds in images})
    if len(modalities) > 1:
        raise DataError(site, folder, f"series mixes modalities {modalities}")
    return images


def _listed(by_series: dict[str, list[_Slice]]) -> str:
    """``SeriesInstanceUID a (3 files, 'T1 axial'), b (...)``: each series, to choose from."""
    described = [
        f"{uid} ({len(files)} files, '{files[0][1].get('SeriesDescription', '')}')"
        for uid, files in sorted(by_series.items())
    ]
    return "SeriesInstanceUID " + ", ".join(described)


def _volume(site: str, slices: list[_Slice]) -> tuple[Volume, bool]:
    """The series as ``(rows, columns, slices)`` float32, with its affine (identity without
    geometry), and whether the series has geometry."""
    pixels = [_pixels(site, path, ds) for path, ds in slices]
    first_path, first = slices[0]
    for (path, _), array in zip(slices, pixels, strict=True):
        if array.shape != pixels[0].shape:
            reason = f"slice is {array.shape}, slice '{first_path.name}' is {pixels[0].shape}"
            raise DataError(site, path, reason)
    array = np.stack(pixels, axis=-1)
    if not _has_geometry(first):
        return Volume(array, np.eye(4)), False
    return Volume(array, LPS_TO_RAS @ _lps_affine(slices)), True


def _pixels(site: str, path: Path, ds: FileDataset) -> np.ndarray:
    """One slice's pixels ``(rows, columns)`` in modality units (MONOCHROME1 inverted first)."""
    photometric = str(ds.get("PhotometricInterpretation", ""))
    samples = _number(site, path, ds, "SamplesPerPixel", 1)
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        reason = (
            f"PhotometricInterpretation '{photometric}' is not greyscale; medfed reads "
            "MONOCHROME1/MONOCHROME2 series only (convert colour images first)"
        )
        raise DataError(site, path, reason)
    if _number(site, path, ds, "NumberOfFrames", 1) != 1:
        raise DataError(site, path, "multi-frame images are not supported; export one slice per file")
    try:
        stored = np.asarray(ds.pixel_array, dtype=np.float64)
    except Exception as exc:  # pydicom and its decoder plugins raise many unrelated types
        syntax = ds.file_meta.get("TransferSyntaxUID")
        name = "no transfer syntax" if syntax is None else syntax.name
        reason = f"cannot decode pixel data ({name}; {type(exc).__name__}: {exc})"
        raise DataError(site, path, reason) from exc
    if photometric == "MONOCHROME1":
        bits = int(_number(site, path, ds, "BitsStored", 16))
        signed = _number(site, path, ds, "PixelRepresentation", 0) == 1
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        stored = low + high - stored
    slope = _number(site, path, ds, "RescaleSlope", 1.0)
    intercept = _number(site, path, ds, "RescaleIntercept", 0.0)
    return (stored * slope + intercept).astype(np.float32)


def _number(site: str, path: Path, ds: FileDataset, keyword: str, default: float) -> float:
    """A finite numeric header value; ``default`` when absent or empty."""
    try:
        value = float(ds.get(keyword) or default)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise DataError(site, path, f"{keyword} {ds.get(keyword)!r} is not a number")
    return value


def _has_geometry(ds: FileDataset) -> bool:
    """Whether a slice has ImagePositionPatient and ImageOrientationPatient."""
    return ds.get("ImagePositionPatient") is not None and ds.get("ImageOrientationPatient") is not None


def _normal(ds: FileDataset) -> np.ndarray:
    """The slice normal: row direction cross column direction."""
    cosines = np.asarray(ds.ImageOrientationPatient, float)
    return np.cross(cosines[:3], cosines[3:])


def _sorted_slices(site: str, slices: list[_Slice]) -> list[_Slice]:
    """The slices in anatomical order, after checking the series' geometry."""
    with_geometry = [_has_geometry(ds) for _, ds in slices]
    if any(with_geometry) and not all(with_geometry):
        path = slices[with_geometry.index(not with_geometry[0])][0]
        reason = "some slices of the series have ImagePositionPatient/ImageOrientationPatient, some not"
        raise DataError(site, path, reason)
    if all(with_geometry):
        _check_orientation(site, slices)
        normal = _normal(slices[0][1])
        ordered = sorted(slices, key=lambda s: float(normal @ np.asarray(s[1].ImagePositionPatient, float)))
        _check_spacing(site, ordered, normal)
        return ordered
    return _by_instance_number(site, slices)


def _check_orientation(site: str, slices: list[_Slice]) -> None:
    """Raises ``DataError`` if a slice's geometry is malformed, or slices differ in orientation
    or pixel spacing."""
    first_path, first = slices[0]
    for path, ds in slices:
        _check_geometry_values(site, path, ds)
        for attribute in ("ImageOrientationPatient", "PixelSpacing"):
            a, b = first.get(attribute), ds.get(attribute)
            if not _same(a, b):
                reason = f"{attribute} {b} differs from {a} of slice '{first_path.name}'"
                raise DataError(site, path, f"{reason} (mixed series)")


def _check_geometry_values(site: str, path: Path, ds: FileDataset) -> None:
    """Raises ``DataError`` unless position (3 numbers), orientation (two unit, orthogonal
    directions) and pixel spacing (2 positive numbers, optional) are well formed."""
    position, cosines = ds.ImagePositionPatient, ds.ImageOrientationPatient
    spacing = ds.get("PixelSpacing", [1.0, 1.0])
    try:
        valid = len(position) == 3 and len(cosines) == 6 and len(spacing) == 2
        if valid:
            row, column = np.asarray(cosines[:3], float), np.asarray(cosines[3:], float)
            unit = np.allclose([row @ row, column @ column, row @ column], [1, 1, 0], atol=1e-3)
            valid = unit and bool(np.all(np.isfinite(np.asarray(position, float))))
            valid = valid and all(float(v) > 0 for v in spacing)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        reason = (
            f"malformed geometry: ImagePositionPatient {position}, ImageOrientationPatient "
            f"{cosines}, PixelSpacing {spacing}"
        )
        raise DataError(site, path, reason)


def _same(a: object, b: object) -> bool:
    """Whether two optional numeric DICOM values agree within ``ORIENTATION_TOLERANCE``."""
    if a is None or b is None:
        return a is b
    return np.allclose(np.asarray(a, float), np.asarray(b, float), atol=ORIENTATION_TOLERANCE)


def _check_spacing(site: str, ordered: list[_Slice], normal: np.ndarray) -> None:
    """Raises ``DataError`` on a repeated slice position or a gap unlike the others."""
    if len(ordered) < 2:
        return
    positions = [float(normal @ np.asarray(ds.ImagePositionPatient, float)) for _, ds in ordered]
    gaps = np.diff(positions)
    step = float(np.median(gaps))
    tolerance = max(SPACING_TOLERANCE_MM, SPACING_TOLERANCE_RELATIVE * step)
    for k, gap in enumerate(gaps):
        before, after = ordered[k][0], ordered[k + 1][0]
        if gap <= SPACING_TOLERANCE_MM:
            reason = f"slice has the same position as '{before.name}' (duplicate slice)"
            raise DataError(site, after, reason)
        if abs(gap - step) > tolerance:
            reason = (
                f"gap of {gap:.3g} mm after slice '{before.name}' where the series is {step:.3g} mm "
                "apart: a slice is missing or the spacing is not uniform"
            )
            raise DataError(site, after, reason)


def _by_instance_number(site: str, slices: list[_Slice]) -> list[_Slice]:
    """Slices without geometry, ordered by InstanceNumber (which must be present and unique)."""
    if len(slices) == 1:
        return slices
    numbers: dict[float, Path] = {}
    for path, ds in slices:
        if ds.get("InstanceNumber") is None:
            reason = (
                "slice has neither ImagePositionPatient/ImageOrientationPatient nor "
                "InstanceNumber, so the series cannot be ordered"
            )
            raise DataError(site, path, reason)
        number = _number(site, path, ds, "InstanceNumber", 0)
        if number in numbers:
            reason = f"InstanceNumber {number:g} repeats that of '{numbers[number].name}'"
            raise DataError(site, path, reason)
        numbers[number] = path
    by_path = {path: number for number, path in numbers.items()}
    return sorted(slices, key=lambda s: by_path[s[0]])


def _lps_affine(ordered: Sequence[_Slice]) -> np.ndarray:
    """Voxel ``(row, column, slice)`` to LPS millimetres, from the sorted slices' headers."""
    first = ordered[0][1]
    cosines = np.asarray(first.ImageOrientationPatient, float)
    row_spacing, column_spacing = (float(v) for v in first.get("PixelSpacing", [1.0, 1.0]))
    origin = np.asarray(first.ImagePositionPatient, float)
    if len(ordered) > 1:
        step = (np.asarray(ordered[-1][1].ImagePositionPatient, float) - origin) / (len(ordered) - 1)
    else:
        step = _normal(first) * float(first.get("SliceThickness", 1.0) or 1.0)
    affine = np.eye(4)
    affine[:3, 0] = cosines[3:] * row_spacing  # down the rows: the column direction
    affine[:3, 1] = cosines[:3] * column_spacing  # along a row: the row direction
    affine[:3, 2], affine[:3, 3] = step, origin
    return affine
