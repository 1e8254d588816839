from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from data_helpers import SMALL_SITE, assert_names, refused

from medfed.data import FORMATS, Case
from medfed.errors import DataError, DataProblems

load = FORMATS.get("msd")


def save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)


def index(folder: Path) -> dict:
    return json.loads((folder / "dataset.json").read_text())


def write_index(folder: Path, training: list, test: list | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text(json.dumps({"training": training, "test": test or []}))


def test_round_trip_generated_site(msd_site: Path) -> None:
    site = load("small", msd_site)
    assert site.name == "small" and len(site.cases) == SMALL_SITE.num_cases
    for case, entry in zip(site.cases, index(msd_site)["training"], strict=True):
        stored = np.asarray(nib.load(msd_site / "imagesTr" / f"{case.case_id}_0000.nii.gz").dataobj)
        assert case.image.dtype == np.float32 and case.image.shape == (1, 32, 32)
        np.testing.assert_array_equal(case.image[0], stored[..., 0])
        assert case.mask is not None and case.mask.dtype == np.int64
        assert case.mask.shape == (1, 32, 32)
        assert case.label == entry["class"]


def test_channel_files_and_4d_files(tmp_path: Path) -> None:
    save(np.ones((8, 8, 3), np.float32), tmp_path / "imagesTr" / "a_0000.nii.gz")
    save(np.full((8, 8, 3), 2, np.float32), tmp_path / "imagesTr" / "a_0001.nii.gz")
    save(np.ones((8, 8, 3, 2), np.float32), tmp_path / "imagesTr" / "b.nii.gz")
    write_index(tmp_path, [{"image": "./imagesTr/a.nii.gz"}, {"image": "./imagesTr/b.nii.gz"}])
    a, b = load("s", tmp_path).cases
    assert a.image.shape == b.image.shape == (2, 8, 8, 3)
    assert a.image[1].max() == 2 and a.mask is None and a.label is None


def test_test_only_site_without_labels(tmp_path: Path) -> None:
    save(np.ones((8, 8), np.float32), tmp_path / "imagesTs" / "x_0000.nii.gz")
    write_index(tmp_path, [], test=["./imagesTs/x.nii.gz"])
    (case,) = load("s", tmp_path).cases
    assert case.case_id == "x" and case.mask is None and case.image.shape == (1, 8, 8)


def test_missing_label_file(msd_site: Path) -> None:
    missing = msd_site / "labelsTr" / "small_002.nii.gz"
    missing.unlink()
    with refused("label file", "small", missing):
        load("small", msd_site)


def test_image_without_label_when_others_have_one(msd_site: Path) -> None:
    meta = index(msd_site)
    del meta["training"][3]["label"]
    (msd_site / "dataset.json").write_text(json.dumps(meta))
    with refused("has no mask", "small", msd_site / "imagesTr" / "small_003.nii.gz"):
        load("small", msd_site)


def test_missing_image(msd_site: Path) -> None:
    (msd_site / "imagesTr" / "small_001_0000.nii.gz").unlink()
    with refused("image not found", "small", msd_site / "imagesTr" / "small_001.nii.gz"):
        load("small", msd_site)


@pytest.mark.parametrize("keep", [0.5, 0.0])
def test_truncated_file(msd_site: Path, keep: float) -> None:
    bad = msd_site / "imagesTr" / "small_004_0000.nii.gz"
    data = bad.read_bytes()
    bad.write_bytes(data[: int(len(data) * keep)] if keep else b"not a nifti")
    with refused("cannot read NIfTI", "small", bad):
        load("small", msd_site)


def test_shape_mismatch(msd_site: Path) -> None:
    bad = msd_site / "labelsTr" / "small_000.nii.gz"
    save(np.zeros((30, 32, 1), np.uint8), bad)
    with refused("does not match", "small", bad):
        load("small", msd_site)


def test_non_integer_mask(msd_site: Path) -> None:
    bad = msd_site / "labelsTr" / "small_000.nii.gz"
    save(np.full((32, 32, 1), 0.5, np.float32), bad)
    with refused("non-integer", "small", bad):
        load("small", msd_site)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_voxels(msd_site: Path, value: float) -> None:
    bad = msd_site / "imagesTr" / "small_005_0000.nii.gz"
    image = np.ones((32, 32, 1), np.float32)
    image[3, 4] = value
    save(image, bad)
    with refused("NaN or infinite", "small", msd_site / "imagesTr" / "small_005.nii.gz"):
        load("small", msd_site)


def test_empty_site(tmp_path: Path) -> None:
    write_index(tmp_path, [])
    with refused("no cases", "empty", tmp_path):
        load("empty", tmp_path)


def test_unparsable_index(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text("{not json")
    with refused("cannot parse", "s", tmp_path / "dataset.json"):
        load("s", tmp_path)


def test_gzip_error_is_not_leaked(msd_site: Path) -> None:
    bad = msd_site / "labelsTr" / "small_001.nii.gz"
    bad.write_bytes(gzip.compress(b"\x00" * 10))
    with pytest.raises(DataError) as info:
        load("small", msd_site)
    assert_names(info.value, "small", bad)


# --- geometry ---------------------------------------------------------------------------------

LAS = np.diag([-1.0, 1.0, 1.0, 1.0])
LAS[0, 3] = 7.0  # voxel i = 7 is at x = 0, as voxel 0 of the RAS twin


def test_a_scan_stored_las_or_ras_gives_the_same_array(tmp_path: Path) -> None:
    volume = np.arange(8 * 4 * 3, dtype=np.float32).reshape(8, 4, 3)
    mask = (volume % 5 == 0).astype(np.uint8)
    save(volume, tmp_path / "ras" / "imagesTr" / "a_0000.nii.gz")
    save(mask, tmp_path / "ras" / "labelsTr" / "a.nii.gz")
    for name, array in (("imagesTr/a_0000.nii.gz", volume), ("labelsTr/a.nii.gz", mask)):
        path = tmp_path / "las" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(array[::-1], LAS), path)
    entry = {"image": "./imagesTr/a.nii.gz", "label": "./labelsTr/a.nii.gz"}
    write_index(tmp_path / "ras", [entry])
    write_index(tmp_path / "las", [entry])
    (ras,), (las,) = load("s", tmp_path / "ras").cases, load("s", tmp_path / "las").cases
    np.testing.assert_array_equal(las.image, ras.image)
    np.testing.assert_array_equal(las.mask, ras.mask)
    np.testing.assert_array_equal(ras.image[0], volume)
    assert (ras.orientation, las.orientation) == ("RAS", "LAS")  # as stored, shown by check-data


def test_label_on_another_grid_is_refused(tmp_path: Path) -> None:
    save(np.ones((8, 8, 3), np.float32), tmp_path / "imagesTr" / "a_0000.nii.gz")
    bad = tmp_path / "labelsTr" / "a.nii.gz"
    bad.parent.mkdir()
    shifted = np.eye(4)
    shifted[:3, 3] = [0.0, 0.5, 0.0]  # half a voxel
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.uint8), shifted), bad)
    write_index(tmp_path, [{"image": "imagesTr/a.nii.gz", "label": "labelsTr/a.nii.gz"}])
    with refused("voxel grid does not match .* differ by up to 0.5 mm", "s", bad):
        load("s", tmp_path)


def test_channel_on_another_grid_is_refused(tmp_path: Path) -> None:
    save(np.ones((8, 8, 3), np.float32), tmp_path / "imagesTr" / "a_0000.nii.gz")
    bad = tmp_path / "imagesTr" / "a_0001.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 3), np.float32), np.diag([2.0, 1, 1, 1])), bad)
    write_index(tmp_path, [{"image": "imagesTr/a.nii.gz"}])
    with refused("voxel grid does not match the image 'a_0000.nii.gz'", "s", bad):
        load("s", tmp_path)


def test_singular_affine_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "imagesTr" / "a_0000.nii.gz"
    bad.parent.mkdir()
    header = nib.Nifti1Header()
    header.set_sform(np.eye(4), code=2)
    header["srow_y"] = [0.0, 0.0, 0.0, 0.0]  # a collapsed axis, as a broken exporter writes
    nib.save(nib.Nifti1Image(np.ones((8, 8, 3), np.float32), None, header=header), bad)
    write_index(tmp_path, [{"image": "imagesTr/a.nii.gz"}])
    with refused("affine is not a valid voxel-to-world map", "s", bad):
        load("s", tmp_path)


def _load_nibabel_file(folder: Path, name: str) -> tuple[Case, np.ndarray]:
    """The one case of a site holding nibabel's test file ``name``, and that file's voxels as
    nibabel reads them in canonical (RAS) order."""
    source = Path(nib.__file__).parent / "tests" / "data" / name
    (folder / "imagesTr").mkdir()
    shutil.copy(source, folder / "imagesTr" / name)
    write_index(folder, [{"image": f"imagesTr/{name}"}])
    (case,) = load("s", folder).cases
    return case, nib.as_closest_canonical(nib.load(source)).get_fdata()


def test_nibabels_4d_file_is_channels_last_and_reoriented(tmp_path: Path) -> None:
    case, expected = _load_nibabel_file(tmp_path, "example4d.nii.gz")
    assert case.image.shape == (expected.shape[3], *expected.shape[:3])
    np.testing.assert_allclose(case.image, np.moveaxis(expected, -1, 0), rtol=1e-6)


def test_nibabels_anatomical_file_loads_canonical(tmp_path: Path) -> None:
    case, expected = _load_nibabel_file(tmp_path, "anatomical.nii")
    np.testing.assert_allclose(case.image[0], expected, rtol=1e-6)


# --- dataset.json content ---------------------------------------------------------------------


@pytest.mark.parametrize("escape", ["../outside.nii.gz", "imagesTr/../../outside.nii.gz", "/etc/passwd"])
def test_paths_must_stay_inside_the_site_folder(tmp_path: Path, escape: str) -> None:
    site = tmp_path / "site"
    save(np.ones((8, 8), np.float32), tmp_path / "outside.nii.gz")
    save(np.ones((8, 8), np.float32), site / "imagesTr" / "a_0000.nii.gz")
    write_index(site, [{"image": "imagesTr/a.nii.gz", "label": escape}])
    with refused("must be relative|leads outside the site folder", "s", site / "dataset.json"):
        load("s", site)


def test_symlink_out_of_the_site_folder_is_refused(tmp_path: Path) -> None:
    site = tmp_path / "site"
    save(np.ones((8, 8), np.float32), tmp_path / "elsewhere" / "a_0000.nii.gz")
    site.mkdir()
    (site / "imagesTr").symlink_to(tmp_path / "elsewhere")
    write_index(site, [{"image": "imagesTr/a_0000.nii.gz"}])
    with pytest.raises(DataError, match="leads outside the site folder"):
        load("s", site)


def test_mask_value_not_declared_in_labels(msd_site: Path) -> None:
    bad = msd_site / "labelsTr" / "small_002.nii.gz"
    save(np.full((32, 32, 1), 2, np.uint8), bad)
    with refused(r"mask values \[2\] are not declared", "small", bad):
        load("small", msd_site)


def test_modality_fixes_the_number_of_channels(msd_site: Path) -> None:
    meta = index(msd_site)
    meta["modality"] = {"0": "T1", "1": "T2"}
    (msd_site / "dataset.json").write_text(json.dumps(meta))
    with refused(
        "images have 1 channels, dataset.json declares 2", "small", msd_site / "imagesTr" / "small_000.nii.gz"
    ):
        load("small", msd_site)


def test_the_site_carries_its_declared_classes(msd_site: Path) -> None:
    assert load("small", msd_site).classes == {0: "background", 1: "lesion"}


def test_a_sagittal_slice_stays_2d(tmp_path: Path) -> None:
    sagittal = np.array([[0.0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]])  # k -> x
    image = np.arange(12, dtype=np.float32).reshape(4, 3, 1)
    path = tmp_path / "imagesTr" / "a_0000.nii.gz"
    path.parent.mkdir()
    nib.save(nib.Nifti1Image(image, sagittal), path)
    write_index(tmp_path, [{"image": "imagesTr/a.nii.gz"}])
    (case,) = load("s", tmp_path).cases
    np.testing.assert_array_equal(case.image[0], image[..., 0])  # (y, z) is already canonical


def test_every_bad_case_is_reported_in_one_pass(msd_site: Path) -> None:
    missing = msd_site / "labelsTr" / "small_002.nii.gz"
    missing.unlink()
    shifted = msd_site / "labelsTr" / "small_004.nii.gz"
    save(np.zeros((30, 32, 1), np.uint8), shifted)
    with pytest.raises(DataProblems) as info:
        load("small", msd_site)
    assert [(p.site, p.path) for p in info.value.problems if isinstance(p, DataError)] == [
        ("small", missing),
        ("small", shifted),
    ]
    lines = str(info.value).splitlines()
    assert lines[0] == "2 problems with the data:"
    assert lines[1].startswith(f"site 'small', file '{missing}': label file of case 'small_002' not found")
    assert lines[2].startswith(f"site 'small', file '{shifted}': mask shape (1, 30, 32) does not match")
