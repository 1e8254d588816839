"""Predictions written in the input's own format and geometry: NIfTI with the input's affine,
DICOM SEG (highdicom) referencing the source series, PNG masks, and a CSV of class
probabilities."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
from PIL import Image
from pydicom.dataset import FileDataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

import medfed
from medfed.files import atomic_write
from medfed.inference.scans import Scan

ALGORITHM = "medfed federated model"


def write_nifti(labels: np.ndarray, scan: Scan, path: Path) -> Path:
    """Writes ``labels`` ``(X, Y, Z)`` as NIfTI with the scan's own affine (sform and qform)."""
    image = nib.Nifti1Image(labels.astype(np.uint8), scan.volume.affine)
    image.set_sform(scan.volume.affine, code=1)
    image.set_qform(scan.volume.affine, code=1)
    atomic_write(
        path, image.to_bytes() if path.suffix == ".nii" else gzip.compress(image.to_bytes(), mtime=0)
    )
    return path


def write_png(labels: np.ndarray, path: Path) -> Path:
    """Writes the class map of a 2D scan ``(H, W, 1)`` as an 8-bit greyscale PNG."""
    buffer = io.BytesIO()
    Image.fromarray(labels[:, :, 0].astype(np.uint8)).save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue())
    return path


def write_dicom_seg(labels: np.ndarray, scan: Scan, classes: int, path: Path) -> Path:
    """Writes ``labels`` ``(rows, columns, slices)`` as a DICOM SEG over the source series: one
    segment per foreground class, each frame referencing its source SOP instance.
    """
    frames = np.ascontiguousarray(np.moveaxis(labels, -1, 0))  # (slices, rows, columns)
    segmentation = hd.seg.Segmentation(
        source_images=list(scan.dicom),
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_segments(classes),
        series_instance_uid=generate_uid(),
        series_number=_series_number(scan.dicom),
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="medfed",
        manufacturer_model_name=ALGORITHM,
        software_versions=medfed.__version__,
        device_serial_number="0",
        omit_empty_frames=False,
    )
    buffer = io.BytesIO()
    segmentation.save_as(buffer)
    atomic_write(path, buffer.getvalue())
    return path


def write_probabilities(rows: Sequence[tuple[str, np.ndarray]], path: Path) -> Path:
    """Writes one CSV row per scan: its name, the predicted class and each class's probability."""
    classes = len(rows[0][1]) if rows else 0
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["scan", "predicted_class", *(f"p{index}" for index in range(classes))])
    for name, probabilities in rows:
        writer.writerow([name, int(np.argmax(probabilities)), *(f"{float(p):.6f}" for p in probabilities)])
    atomic_write(path, buffer.getvalue().encode())
    return path


def _segments(classes: int) -> list[hd.seg.SegmentDescription]:
    algorithm = hd.AlgorithmIdentificationSequence(
        name=ALGORITHM, version=medfed.__version__, family=codes.cid7162.ArtificialIntelligence
    )
    return [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=f"class {number}",
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for number in range(1, classes)
    ]


def _series_number(datasets: Sequence[FileDataset]) -> int:
    number = datasets[0].get("SeriesNumber") if datasets else None
    return (int(number) + 1000) if number not in (None, "") else 1000
