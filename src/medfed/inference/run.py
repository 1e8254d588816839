"""``medfed predict`` over one scan or a folder of scans: each prediction written next to the
others in the output folder, named after its scan."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medfed.data.consistency import ModelInputs, input_problems
from medfed.errors import DataError
from medfed.export.model import TrainedModel
from medfed.inference.scans import SOURCE, Scan, find_scans, read_scan
from medfed.inference.segment import predict_scan
from medfed.inference.writers import write_dicom_seg, write_nifti, write_png, write_probabilities

PROBABILITIES_FILE = "predictions.csv"


@dataclass(frozen=True)
class Written:
    """The files written for one scan."""

    scan: Path
    files: tuple[Path, ...]


def predict_path(model: TrainedModel, path: Path, output: Path) -> list[Written]:
    """Predicts every scan under ``path`` with ``model`` and writes the results to ``output``.

    Segmentations are written in the scan's own geometry: ``<name>_seg.nii.gz`` (the scan's
    affine) for NIfTI and DICOM input, ``<name>_seg.dcm`` (DICOM SEG over the source series)
    for DICOM input with geometry, ``<name>_seg.png`` for PNG input. Classifications go to one
    ``predictions.csv``.

    Raises:
        DataError: A scan cannot be read, or does not fit the model (channels, dimensions).
    """
    scans = [read_scan(found) for found in find_scans(path)]
    for scan in scans:
        _check_fits(model, scan)
    predictions = [
        (scan, predict_scan(model.network, scan, task=model.task, preprocessing=model.preprocessing))
        for scan in scans
    ]
    if model.task == "classification":
        rows = [(scan.name, prediction.probabilities) for scan, prediction in predictions]
        written = write_probabilities(rows, output / PROBABILITIES_FILE)
        return [Written(scan.source, (written,)) for scan, _ in predictions]
    classes = model.spec.out_channels
    return [
        Written(scan.source, _write_segmentation(prediction.labels, scan, classes, output))
        for scan, prediction in predictions
        if prediction.labels is not None
    ]


def _write_segmentation(labels: np.ndarray, scan: Scan, classes: int, output: Path) -> tuple[Path, ...]:
    if scan.kind == "png":
        return (write_png(labels, output / f"{scan.name}_seg.png"),)
    files = [write_nifti(labels, scan, output / f"{scan.name}_seg.nii.gz")]
    if scan.kind == "dicom" and scan.has_geometry:
        files.append(write_dicom_seg(labels, scan, classes, output / f"{scan.name}_seg.dcm"))
    return tuple(files)


def _check_fits(model: TrainedModel, scan: Scan) -> None:
    """Raises ``DataError`` unless the scan has the channels and dimensions the model takes."""
    array = scan.volume.array  # (X, Y, Z[, C]); Z is 1 for a 2D scan
    channels = array.shape[3] if array.ndim == 4 else 1
    dims = 2 if array.shape[2] == 1 else 3
    inputs = ModelInputs(in_channels=model.spec.in_channels, spatial_dims=model.spec.spatial_dims)
    reasons = input_problems(channels, dims, inputs)
    if reasons:
        raise DataError(SOURCE, scan.source, "; ".join(reasons))
