"""Writers of small, complete DICOM series for the DICOM loader tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    MRImageStorage,
    RTStructureSetStorage,
    generate_uid,
)

SLOPE, INTERCEPT = 2.0, -100.0
ROW_SPACING, COLUMN_SPACING, SLICE_STEP, FIRST_Z = 0.5, 0.8, 2.5, -10.0
AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
STUDY, FRAME_OF_REFERENCE = generate_uid(), generate_uid()

RAS_AFFINE = np.array(
    [
        [0.0, -COLUMN_SPACING, 0.0, 0.0],
        [-ROW_SPACING, 0.0, 0.0, 0.0],
        [0.0, 0.0, SLICE_STEP, FIRST_Z],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
"""RAS affine of a ``write_series`` volume in ``(row, column, slice)`` order, by hand: rows run
along +P (DICOM's column direction (0, 1, 0) in LPS), columns along +L, slices along +S."""


def pydicom_file(name: str) -> Path:
    """A test file that pydicom ships inside its package (never downloaded)."""
    path = Path(pydicom.data.__file__).parent / "test_files" / name
    assert path.is_file(), f"{name} is not shipped with the installed pydicom"
    return path


def copy_pydicom_file(name: str, folder: Path, target: str | None = None) -> Path:
    """Copies a pydicom test file into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(pydicom_file(name), folder / (target or name)))


def slice_dataset(
    pixels: np.ndarray,
    z: float | None,
    number: int | None,
    *,
    series: str,
    orientation: list[float] = AXIAL,
    photometric: str = "MONOCHROME2",
    identified: bool = False,
) -> Dataset:
    """One MR slice whose stored values map to ``pixels * SLOPE + INTERCEPT``; de-identified
    (a pseudonym, PatientIdentityRemoved YES) unless ``identified``."""
    ds = _new_dataset(MRImageStorage)
    ds.PatientName, ds.PatientID, ds.PatientSex, ds.PatientBirthDate = "Doe^Jane", "P1", "F", ""
    if not identified:
        ds.PatientName, ds.PatientID, ds.PatientIdentityRemoved = "Anon^1", "ANON1", "YES"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, series
    ds.FrameOfReferenceUID, ds.StudyID, ds.AccessionNumber = FRAME_OF_REFERENCE, "1", ""
    ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName = "20260101", "120000", ""
    ds.Modality, ds.SeriesNumber = "MR", 1
    ds.PixelSpacing, ds.SliceThickness = [ROW_SPACING, COLUMN_SPACING], SLICE_STEP
    if z is not None:
        ds.ImageOrientationPatient = orientation
        ds.ImagePositionPatient = [0.0, 0.0, z]
    if number is not None:
        ds.InstanceNumber = number
    ds.RescaleSlope, ds.RescaleIntercept = SLOPE, INTERCEPT
    ds.set_pixel_data(pixels.astype(np.uint16), photometric_interpretation=photometric, bits_stored=16)
    return ds


def write_slice(path: Path, ds: Dataset) -> None:
    """Saves a dataset as a DICOM Part 10 file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_series(
    folder: Path, depth: int, *, positions: bool = True, series: str | None = None, identified: bool = False
) -> np.ndarray:
    """Writes slice k (value k + 1, plus the row index) under shuffled file names.

    Returns:
        The expected volume in modality units, ``(rows, columns, slices)`` = ``(6, 5, depth)``.
    """
    stored = np.stack([np.full((6, 5), k + 1) + np.arange(6)[:, None] for k in range(depth)], -1)
    order = np.random.default_rng(0).permutation(depth)
    series = series or generate_uid()
    for name, k in enumerate(order):
        z = FIRST_Z + SLICE_STEP * k if positions else None
        ds = slice_dataset(
            stored[..., k], z, None if positions else k + 1, series=series, identified=identified
        )
        write_slice(folder / f"{name:03d}.dcm", ds)
    return stored * SLOPE + INTERCEPT


def to_ras(volume: np.ndarray) -> np.ndarray:
    """A ``write_series`` volume ``(rows, columns, slices)`` in RAS canonical order, by hand:
    columns (towards L) flipped become the first axis, rows (towards P) flipped the second."""
    return volume.transpose(1, 0, 2)[::-1, ::-1]


def write_seg(folder: Path, sources: list[Path], frames: np.ndarray) -> Path:
    """Writes a binary DICOM SEG (one segment) over ``sources``; ``frames`` is
    ``(len(sources), rows, columns)``, frame i on source i."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="lesion",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=[pydicom.dcmread(path) for path in sources],
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=hd.UID(),
        series_number=2,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medfed",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
    )
    path = folder / "segmentation"
    seg.save_as(path)
    return path


def slice_index(path: Path) -> int:
    """The position of a ``write_series`` file in the series (0 = lowest z)."""
    z = float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2])
    return round((z - FIRST_Z) / SLICE_STEP)


def write_rtstruct(folder: Path, source: Path, rois: dict[int, list[list[float]]]) -> Path:
    """Writes an RTSTRUCT with one CLOSED_PLANAR contour per ROI, all on the slice ``source``;
    each contour is a list of (x, y) points in LPS millimetres."""
    image = pydicom.dcmread(source)
    ds = _new_dataset(RTStructureSetStorage)
    ds.Modality, ds.SeriesInstanceUID = "RTSTRUCT", generate_uid()
    ds.StructureSetROISequence, ds.ROIContourSequence = [], []
    for number, points in rois.items():
        roi = Dataset()
        roi.ROINumber, roi.ROIName = number, f"roi{number}"
        roi.ReferencedFrameOfReferenceUID = FRAME_OF_REFERENCE
        ds.StructureSetROISequence.append(roi)
        contour = Dataset()
        contour.ContourGeometricType = "CLOSED_PLANAR"
        z = float(image.ImagePositionPatient[2])
        contour.ContourData = [v for x, y in points for v in (x, y, z)]
        contour.NumberOfContourPoints = len(points)
        item = Dataset()
        item.ReferencedROINumber, item.ContourSequence = number, [contour]
        ds.ROIContourSequence.append(item)
    path = folder / "rtstruct.dcm"
    write_slice(path, ds)
    return path


def _new_dataset(sop_class: str) -> Dataset:
    """An empty instance of ``sop_class`` with a new SOPInstanceUID and its file meta
    (explicit VR little endian)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    return ds
