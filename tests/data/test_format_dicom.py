from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from data_helpers import assert_names
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from medfed.data import FORMATS
from medfed.errors import DataError

load = FORMATS.get("dicom")
SLOPE, INTERCEPT = 2.0, -100.0


def write_slice(path: Path, pixels: np.ndarray, z: float | None, number: int | None) -> None:
    """Writes one MR slice whose stored values map to ``pixels * SLOPE + INTERCEPT``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Doe^Jane"
    ds.Modality = "MR"
    if z is not None:
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, z]
    if number is not None:
        ds.InstanceNumber = number
    ds.RescaleSlope, ds.RescaleIntercept = SLOPE, INTERCEPT
    ds.set_pixel_data(
        pixels.astype(np.uint16), photometric_interpretation="MONOCHROME2", bits_stored=16
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_series(folder: Path, depth: int, *, positions: bool = True) -> np.ndarray:
    """Writes slice k (value k + 1 everywhere, row index added) under shuffled file names."""
    stored = np.stack([np.full((6, 5), k + 1) + np.arange(6)[:, None] for k in range(depth)], -1)
    order = np.random.default_rng(0).permutation(depth)
    for name, k in enumerate(order):
        z = -10.0 + 2.5 * k if positions else None
        write_slice(folder / f"{name:03d}.dcm", stored[..., k], z, None if positions else k + 1)
    return stored * SLOPE + INTERCEPT


def test_series_sorted_and_rescaled(tmp_path: Path) -> None:
    expected = write_series(tmp_path / "case1", depth=5)
    (case,) = load("s", tmp_path).cases
    assert case.case_id == "case1" and case.image.dtype == np.float32
    np.testing.assert_array_equal(case.image[0], expected)
    assert case.mask is None and case.label is None


def test_instance_number_fallback(tmp_path: Path) -> None:
    expected = write_series(tmp_path / "c", depth=4, positions=False)
    np.testing.assert_array_equal(load("s", tmp_path).cases[0].image[0], expected)


def test_single_slice_is_2d_with_mask_and_label(tmp_path: Path) -> None:
    expected = write_series(tmp_path / "a", depth=1)
    mask = np.zeros((6, 5), np.uint8)
    mask[2, 2] = 1
    nib.save(nib.Nifti1Image(mask, np.eye(4)), tmp_path / "a" / "mask.nii.gz")
    (tmp_path / "labels.csv").write_text("case_id,label\na,1\n")
    (case,) = load("s", tmp_path).cases
    assert case.image.shape == (1, 6, 5)
    np.testing.assert_array_equal(case.image[0], expected[..., 0])
    assert case.mask is not None and case.mask.sum() == 1 and case.label == 1


def test_headers_are_not_kept(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=2)
    case = load("s", tmp_path).cases[0]
    assert "Doe" not in repr(case) and isinstance(case.image, np.ndarray)


def test_truncated_dicom(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=3)
    bad = tmp_path / "a" / "001.dcm"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataError, match="cannot read DICOM") as info:
        load("s", tmp_path)
    assert_names(info.value, "s", bad)


def test_case_missing_from_labels_csv(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=1)
    write_series(tmp_path / "b", depth=1)
    (tmp_path / "labels.csv").write_text("case_id,label\na,0\n")
    with pytest.raises(DataError, match="no label for 'b'") as info:
        load("s", tmp_path)
    assert_names(info.value, "s", tmp_path / "labels.csv")


def test_mask_missing_while_other_case_has_one(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=1)
    write_series(tmp_path / "b", depth=1)
    nib.save(nib.Nifti1Image(np.zeros((6, 5), np.uint8), np.eye(4)), tmp_path / "a" / "mask.nii.gz")
    with pytest.raises(DataError, match="has no mask") as info:
        load("s", tmp_path)
    assert_names(info.value, "s", tmp_path / "b")


def test_mask_shape_mismatch(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=2)
    bad = tmp_path / "a" / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 3), np.uint8), np.eye(4)), bad)
    with pytest.raises(DataError, match="does not match") as info:
        load("s", tmp_path)
    assert_names(info.value, "s", bad)
