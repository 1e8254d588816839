from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from data_helpers import assert_names, refused
from dicom_helpers import (
    INTERCEPT,
    RAS_AFFINE,
    SLOPE,
    copy_pydicom_file,
    pydicom_file,
    slice_dataset,
    slice_index,
    to_ras,
    write_rtstruct,
    write_seg,
    write_series,
    write_slice,
)
from pydicom.uid import generate_uid

from medfed.data import FORMATS
from medfed.errors import DataError

load = FORMATS.get("dicom")


def test_series_sorted_rescaled_and_reoriented_to_ras(tmp_path: Path) -> None:
    expected = write_series(tmp_path / "case1", depth=5)
    (case,) = load("s", tmp_path).cases
    assert case.case_id == "case1" and case.image.dtype == np.float32
    np.testing.assert_array_equal(case.image[0], to_ras(expected))
    assert case.mask is None and case.label is None
    assert case.orientation == "".join(nib.aff2axcodes(RAS_AFFINE))  # the stored grid's


def test_dicom_and_nifti_of_the_same_scan_give_the_same_array(tmp_path: Path) -> None:
    expected = write_series(tmp_path / "dicom" / "a", depth=3)
    nib.save(nib.Nifti1Image(expected, RAS_AFFINE), tmp_path / "scan.nii.gz")
    from_nifti = nib.as_closest_canonical(nib.load(tmp_path / "scan.nii.gz")).get_fdata()
    np.testing.assert_array_equal(load("s", tmp_path / "dicom").cases[0].image[0], from_nifti)


def test_instance_number_fallback_keeps_array_order(tmp_path: Path) -> None:
    expected = write_series(tmp_path / "c", depth=4, positions=False)
    np.testing.assert_array_equal(load("s", tmp_path).cases[0].image[0], expected)


def test_single_slice_is_2d_with_mask_and_label(tmp_path: Path) -> None:
    expected = write_series(tmp_path / "a", depth=1)
    mask = np.zeros((6, 5, 1), np.uint8)
    mask[2, 3] = 1
    nib.save(nib.Nifti1Image(mask, RAS_AFFINE), tmp_path / "a" / "mask.nii.gz")
    (tmp_path / "labels.csv").write_text("case_id,label\na,1\n")
    (case,) = load("s", tmp_path).cases
    assert case.image.shape == (1, 5, 6)
    np.testing.assert_array_equal(case.image[0], to_ras(expected)[..., 0])
    assert case.mask is not None and case.label == 1
    np.testing.assert_array_equal(case.mask[0], to_ras(mask)[..., 0])


def test_nifti_mask_in_any_orientation_lands_on_the_same_voxels(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=3)
    mask = np.zeros((6, 5, 3), np.uint8)
    mask[1, 4, 2] = 1  # row 1, column 4, slice 2 of the series
    image = nib.Nifti1Image(mask, RAS_AFFINE)
    canonical = nib.as_closest_canonical(image)
    nib.save(canonical, tmp_path / "a" / "mask.nii.gz")  # stored RAS, not in DICOM order
    (case,) = load("s", tmp_path).cases
    assert case.mask is not None
    np.testing.assert_array_equal(case.mask[0], to_ras(mask))


@pytest.mark.parametrize(
    ("series", "message"),
    [
        ({"depth": 3}, "voxel grid does not match the DICOM series"),
        ({"depth": 2, "positions": False}, "does not match"),
    ],
    ids=["another_grid", "another_shape"],
)
def test_nifti_mask_off_the_series_grid_is_refused(
    tmp_path: Path, series: dict[str, Any], message: str
) -> None:
    write_series(tmp_path / "a", **series)
    bad = tmp_path / "a" / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 3), np.uint8), np.eye(4)), bad)
    with refused(message, "s", bad):
        load("s", tmp_path)


def test_headers_are_not_kept(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=2)
    case = load("s", tmp_path).cases[0]
    assert "Doe" not in repr(case) and isinstance(case.image, np.ndarray)


def test_truncated_dicom(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=3)
    bad = tmp_path / "a" / "001.dcm"
    bad.write_bytes(bad.read_bytes()[:200])
    with refused("cannot read DICOM", "s", bad):
        load("s", tmp_path)


def test_pydicoms_truncated_file(tmp_path: Path) -> None:
    bad = copy_pydicom_file("MR_truncated.dcm", tmp_path / "a")
    with refused("cannot decode pixel data", "s", bad):
        load("s", tmp_path)


def test_case_missing_from_labels_csv(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=1)
    write_series(tmp_path / "b", depth=1)
    (tmp_path / "labels.csv").write_text("case_id,label\na,0\n")
    with refused("no label for 'b'", "s", tmp_path / "labels.csv"):
        load("s", tmp_path)


def test_mask_missing_while_other_case_has_one(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=1)
    write_series(tmp_path / "b", depth=1)
    mask = np.zeros((6, 5, 1), np.uint8)
    nib.save(nib.Nifti1Image(mask, RAS_AFFINE), tmp_path / "a" / "mask.nii.gz")
    with refused("has no mask", "s", tmp_path / "b"):
        load("s", tmp_path)


def test_dicom_seg_mask_is_aligned_by_referenced_instances(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=3)
    sources = sorted((tmp_path / "a").glob("*.dcm"))
    frames = np.zeros((3, 6, 5), np.uint8)
    frames[1, 2, 3] = 1  # on the second file (whose slice position is shuffled), row 2, column 4
    write_seg(tmp_path / "a", sources, frames)
    expected = np.zeros((6, 5, 3), np.uint8)
    expected[2, 3, slice_index(sources[1])] = 1
    (case,) = load("s", tmp_path).cases
    assert case.mask is not None
    np.testing.assert_array_equal(case.mask[0], to_ras(expected))


def test_dicom_seg_of_another_series_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=2)
    write_series(tmp_path / "b", depth=2)
    seg = write_seg(tmp_path / "b", sorted((tmp_path / "b").glob("*.dcm")), np.ones((2, 6, 5), np.uint8))
    seg = seg.rename(tmp_path / "a" / seg.name)
    for file in (tmp_path / "b").iterdir():
        file.unlink()
    (tmp_path / "b").rmdir()
    with refused("cannot read the DICOM SEG against this series", "s", seg):
        load("s", tmp_path)


def test_pydicoms_seg_in_a_foreign_case_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=2)
    seg = copy_pydicom_file("liver_1frame.dcm", tmp_path / "a")
    with refused("cannot read the DICOM SEG against this series", "s", seg):
        load("s", tmp_path)


def test_seg_and_nifti_mask_together_are_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=2)
    write_seg(tmp_path / "a", sorted((tmp_path / "a").glob("*.dcm")), np.ones((2, 6, 5), np.uint8))
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 2), np.uint8), RAS_AFFINE), tmp_path / "a" / "mask.nii.gz")
    with refused(r"case has 2 masks \(mask.nii.gz, segmentation\); keep one", "s", tmp_path / "a"):
        load("s", tmp_path)


def test_rtstruct_is_rasterised_on_the_series_grid(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=3)
    source = tmp_path / "a" / "001.dcm"
    # pixel (row r, column c) has its centre at x = 0.8 c, y = 0.5 r (LPS): this square holds
    # the centres of rows 1..3 and columns 1..2; the second ROI, later, covers row 3, column 2
    square = [[0.4, 0.25], [2.0, 0.25], [2.0, 1.75], [0.4, 1.75]]
    corner = [[1.3, 1.3], [1.9, 1.3], [1.9, 1.7], [1.3, 1.7]]
    write_rtstruct(tmp_path / "a", source, {5: square, 9: corner})
    expected = np.zeros((6, 5, 3), np.uint8)
    expected[1:4, 1:3, slice_index(source)] = 1
    expected[3, 2, slice_index(source)] = 2
    (case,) = load("s", tmp_path).cases
    assert case.mask is not None
    np.testing.assert_array_equal(case.mask[0], to_ras(expected))


def test_rtstruct_contour_off_the_slices_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=2)
    bad = write_rtstruct(tmp_path / "a", tmp_path / "a" / "000.dcm", {1: [[0, 0], [1, 0], [1, 1]]})
    ds = pydicom.dcmread(bad)
    ds.ROIContourSequence[0].ContourSequence[0].ContourData[2] = 100.0
    ds.save_as(bad)
    with refused("does not lie on a slice of the series", "s", bad):
        load("s", tmp_path)


@pytest.mark.parametrize("cut", ["points", "number"])
def test_malformed_rtstruct_is_one_clear_error(tmp_path: Path, cut: str) -> None:
    write_series(tmp_path / "a", depth=2)
    bad = write_rtstruct(tmp_path / "a", tmp_path / "a" / "000.dcm", {1: [[0, 0], [1, 0], [1, 1]]})
    ds = pydicom.dcmread(bad)
    if cut == "points":
        ds.ROIContourSequence[0].ContourSequence[0].ContourData = [0.0, 1.0]
    else:
        del ds.StructureSetROISequence[0].ROINumber
    ds.save_as(bad)
    with refused("malformed RTSTRUCT", "s", bad):
        load("s", tmp_path)


# --- which files are read -------------------------------------------------------------------


def test_non_dicom_files_are_ignored_and_extension_does_not_matter(tmp_path: Path) -> None:
    expected = write_series(tmp_path / "a", depth=3)
    for name in ("000.dcm", "001.dcm", "002.dcm"):
        (tmp_path / "a" / name).rename(tmp_path / "a" / name.replace(".dcm", ""))
    (tmp_path / "a" / "Thumbs.db").write_bytes(b"\x00" * 300)
    (tmp_path / "a" / "notes.txt").write_text("scanned on Monday")
    copy_pydicom_file("ExplVR_LitEndNoMeta.dcm", tmp_path / "a")  # no preamble: not Part 10
    np.testing.assert_array_equal(load("s", tmp_path).cases[0].image[0], to_ras(expected))


def test_dicomdir_is_ignored(tmp_path: Path) -> None:
    expected = write_series(tmp_path / "a", depth=2)
    copy_pydicom_file("dicomdirtests/DICOMDIR", tmp_path / "a", "DICOMDIR")
    np.testing.assert_array_equal(load("s", tmp_path).cases[0].image[0], to_ras(expected))


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("rtdose_1frame.dcm", "'RT Dose Storage' is not an image"),
        ("rtplan.dcm", "'RT Plan Storage' is not an image"),
        ("test-SR.dcm", "'Comprehensive SR Storage' is not an image"),
    ],
)
def test_non_image_objects_are_refused(tmp_path: Path, name: str, match: str) -> None:
    write_series(tmp_path / "a", depth=2)
    bad = copy_pydicom_file(name, tmp_path / "a")
    with refused(match, "s", bad):
        load("s", tmp_path)


@pytest.mark.parametrize(
    ("name", "photometric"),
    [
        ("examples_palette.dcm", "PALETTE COLOR"),
        ("examples_rgb_color.dcm", "RGB"),
        ("SC_rgb_rle.dcm", "RGB"),
        ("SC_rgb_jpeg_dcmtk.dcm", "YBR_FULL"),
    ],
)
def test_colour_images_are_refused(tmp_path: Path, name: str, photometric: str) -> None:
    bad = copy_pydicom_file(name, tmp_path / "a")
    with refused(f"PhotometricInterpretation '{photometric}'", "s", bad):
        load("s", tmp_path)


def test_multi_frame_is_refused(tmp_path: Path) -> None:
    bad = copy_pydicom_file("examples_ybr_color.dcm", tmp_path / "a")
    ds = pydicom.dcmread(bad)
    ds.PhotometricInterpretation, ds.SamplesPerPixel = "MONOCHROME2", 1  # only frames differ
    ds.save_as(bad)
    with refused("multi-frame", "s", bad):
        load("s", tmp_path)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    stored = np.arange(30).reshape(6, 5)
    ds = slice_dataset(stored, None, 1, series="1.2.3", photometric="MONOCHROME1")
    write_slice(tmp_path / "a" / "x.dcm", ds)
    expected = (65535 - stored) * SLOPE + INTERCEPT
    np.testing.assert_array_equal(load("s", tmp_path).cases[0].image[0], expected)


# --- series consistency ---------------------------------------------------------------------


def _two_series(root: Path) -> np.ndarray:
    """Case 'a' with series 1.2.3.1 (3 slices) and one slice of series 1.2.3.2; the first's volume."""
    expected = write_series(root / "a", depth=3, series="1.2.3.1")
    write_series(root / "b", depth=2, series="1.2.3.2")
    (root / "b" / "000.dcm").rename(root / "a" / "other.dcm")
    shutil.rmtree(root / "b")
    return expected


def test_two_series_in_one_folder_are_refused_with_a_list_to_choose_from(tmp_path: Path) -> None:
    _two_series(tmp_path)
    with pytest.raises(DataError) as info:
        load("s", tmp_path)
    assert info.value.reason == (
        "case folder holds 2 series (SeriesInstanceUID 1.2.3.1 (3 files, ''), 1.2.3.2 (1 files, '')); "
        "keep one, or name the one to read in series.csv (case_id,series_instance_uid)"
    )
    assert_names(info.value, "s", tmp_path / "a")


def test_series_csv_chooses_the_series_of_a_case(tmp_path: Path) -> None:
    expected = _two_series(tmp_path)
    (tmp_path / "series.csv").write_text("\ufeffcase_id,series_instance_uid\na,1.2.3.1\n", encoding="utf-8")
    [case] = load("s", tmp_path).cases
    np.testing.assert_array_equal(case.image[0], to_ras(expected))


@pytest.mark.parametrize(
    ("rows", "where", "reason"),
    [
        (
            "a,1.2.3.9\n",
            "a",
            "series.csv names series 1.2.3.9, which is not in the case folder (SeriesInstanceUID 1.2.3.1",
        ),
        ("a,1.2.x\n", "series.csv", "line 2: series_instance_uid '1.2.x' is not a valid UID"),
        ("a,1.2.3.1\nz,1.2.3.1\n", "series.csv", "line 3: 'z' is not a case of this site"),
        ("a,1.2.3.1\na,1.2.3.2\n", "series.csv", "line 3: 'a' already has a series_instance_uid"),
    ],
)
def test_series_csv_errors_name_the_line_or_the_case(
    tmp_path: Path, rows: str, where: str, reason: str
) -> None:
    _two_series(tmp_path)
    (tmp_path / "series.csv").write_text("case_id,series_instance_uid\n" + rows)
    with pytest.raises(DataError) as info:
        load("s", tmp_path)
    assert info.value.reason.startswith(reason)
    assert_names(info.value, "s", tmp_path / where)


def test_mixed_modalities_are_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=2, series="1.2.3")
    ds = pydicom.dcmread(tmp_path / "a" / "001.dcm")
    ds.Modality = "CT"
    ds.save_as(tmp_path / "a" / "001.dcm")
    with refused(r"series mixes modalities \['CT', 'MR'\]", "s", tmp_path / "a"):
        load("s", tmp_path)


def test_slices_with_and_without_position_are_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=3)
    bad = tmp_path / "a" / "002.dcm"
    ds = pydicom.dcmread(bad)
    del ds.ImagePositionPatient
    ds.save_as(bad)
    with refused("some slices of the series have ImagePositionPatient", "s", bad):
        load("s", tmp_path)


def test_mixed_orientations_are_refused(tmp_path: Path) -> None:
    series = generate_uid()
    pixels = np.ones((6, 5))
    write_slice(tmp_path / "a" / "0.dcm", slice_dataset(pixels, 0.0, None, series=series))
    sagittal = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
    bad = tmp_path / "a" / "1.dcm"
    write_slice(bad, slice_dataset(pixels, 2.0, None, series=series, orientation=sagittal))
    with refused(r"ImageOrientationPatient .* \(mixed series\)", "s", bad):
        load("s", tmp_path)


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("ImageOrientationPatient", [1.0, 0.0, 0.0]),
        ("ImageOrientationPatient", [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]),
        ("ImagePositionPatient", [0.0, 1.0]),
        ("PixelSpacing", [0.0, 0.5]),
    ],
)
def test_malformed_geometry_is_refused(tmp_path: Path, attribute: str, value: list[float]) -> None:
    write_series(tmp_path / "a", depth=2)
    bad = tmp_path / "a" / "001.dcm"
    ds = pydicom.dcmread(bad)
    setattr(ds, attribute, value)
    ds.save_as(bad)
    with refused("malformed geometry", "s", bad):
        load("s", tmp_path)


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
def test_non_numeric_header_value_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=2)
    bad = tmp_path / "a" / "001.dcm"
    ds = pydicom.dcmread(bad)
    ds.RescaleSlope = "nan"
    ds.save_as(bad)
    with refused("RescaleSlope .* is not a number", "s", bad):
        load("s", tmp_path)


def test_duplicate_slice_positions_are_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=3)
    ds = pydicom.dcmread(tmp_path / "a" / "000.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(tmp_path / "a" / "copy.dcm")
    with pytest.raises(DataError, match=r"same position .* \(duplicate slice\)") as info:
        load("s", tmp_path)
    assert info.value.site == "s" and info.value.path is not None
    assert info.value.path.name in ("000.dcm", "copy.dcm")


def test_missing_slice_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "a", depth=5)
    order = list(np.random.default_rng(0).permutation(5))  # file name index -> slice k
    (tmp_path / "a" / f"{order.index(2):03d}.dcm").unlink()
    with refused("gap of 5 mm .* a slice is missing", "s", tmp_path / "a" / f"{order.index(3):03d}.dcm"):
        load("s", tmp_path)


def test_duplicate_instance_numbers_are_refused(tmp_path: Path) -> None:
    series = generate_uid()
    write_slice(tmp_path / "a" / "0.dcm", slice_dataset(np.ones((6, 5)), None, 1, series=series))
    write_slice(tmp_path / "a" / "1.dcm", slice_dataset(np.ones((6, 5)), None, 1, series=series))
    with refused("InstanceNumber 1 repeats", "s", tmp_path / "a" / "1.dcm"):
        load("s", tmp_path)


# --- files pydicom ships, compressed transfer syntaxes ---------------------------------------


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_pydicom_files_load_rescaled(tmp_path: Path, name: str) -> None:
    copy_pydicom_file(name, tmp_path / "a")
    ds = pydicom.dcmread(pydicom_file(name))
    stored = ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    volume = nib.Nifti1Image(stored[..., None].astype(np.float32), np.eye(4))
    (case,) = load("s", tmp_path, allow_identified=True).cases
    assert case.image.shape == (1, *stored.shape[::-1])
    assert sorted(case.image.ravel()) == sorted(np.asarray(volume.dataobj).ravel())


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"]
)
def test_lossless_compressed_files_equal_their_uncompressed_twin(tmp_path: Path, name: str) -> None:
    copy_pydicom_file("MR_small.dcm", tmp_path / "plain")
    copy_pydicom_file(name, tmp_path / "compressed")
    (plain, compressed) = load("s", tmp_path, allow_identified=True).cases
    np.testing.assert_array_equal(compressed.image, plain.image)


@pytest.mark.parametrize(
    "name",
    ["JPGExtended.dcm", "JPEG2000.dcm", "JPEGLSNearLossless_16.dcm", "693_J2KI.dcm"],
)
def test_lossy_compressed_greyscale_files_decode(tmp_path: Path, name: str) -> None:
    copy_pydicom_file(name, tmp_path / "a")
    (case,) = load("s", tmp_path, allow_identified=True).cases
    assert case.image.ndim == 3 and case.image.std() > 0


def test_malformed_jpeg_stream_is_one_clear_error(tmp_path: Path) -> None:
    bad = copy_pydicom_file("JPEG-lossy.dcm", tmp_path / "a")  # pydicom's known-bad stream
    with refused(r"cannot decode pixel data \(JPEG Extended", "s", bad):
        load("s", tmp_path)


@pytest.mark.parametrize(
    ("compressed", "max_error"),
    [
        ("SC_rgb_jpeg_gdcm.dcm", 0),  # JPEG lossless
        ("SC_rgb_gdcm_KY.dcm", 0),  # JPEG 2000 (reversible)
        ("SC_rgb_dcmtk_+eb+cr.dcm", 2),  # JPEG baseline, lossy: measured max 1, mean 0.14
    ],
)
def test_compressed_transfer_syntaxes_decode_out_of_the_box(compressed: str, max_error: int) -> None:
    """The pylibjpeg plugins medfed depends on decode every compressed syntax pydicom ships;
    each file holds the same RGB picture as the RLE one."""
    decoded = pydicom.dcmread(pydicom_file(compressed)).pixel_array.astype(int)
    expected = pydicom.dcmread(pydicom_file("SC_rgb_rle.dcm")).pixel_array.astype(int)
    assert decoded.shape == expected.shape
    assert np.abs(decoded - expected).max() <= max_error


def test_a_file_that_still_names_its_patient_is_refused_unless_allowed(tmp_path: Path) -> None:
    copy_pydicom_file("CT_small.dcm", tmp_path / "case1")
    with pytest.raises(
        DataError, match=r"CT_small\.dcm': still identifies its patient \(PatientName, PatientID"
    ):
        load("s", tmp_path)
    assert load("s", tmp_path, allow_identified=True).cases[0].case_id == "case1"
