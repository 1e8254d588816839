"""nnU-Net v2 sites: ``channel_names``, ``labels`` name -> value, ``file_ending``, no case list."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from data_helpers import refused

from medfed.data import FORMATS, load_site

load = FORMATS.get("msd")
LABELS = {"background": 0, "edema": 1, "tumour": 2}


def save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)


def make_site(root: Path, cases: tuple[str, ...] = ("b", "a"), **extra: object) -> None:
    """Two-channel cases; channel c of case i holds 10 * c + i, the mask holds class i % 3."""
    for i, case in enumerate(cases):
        for channel in range(2):
            save(
                np.full((6, 6, 2), 10.0 * channel + i, np.float32),
                root / "imagesTr" / f"{case}_{channel:04d}.nii.gz",
            )
        save(np.full((6, 6, 2), i % 3, np.uint8), root / "labelsTr" / f"{case}.nii.gz")
    meta = {
        "channel_names": {"0": "T1", "1": "FLAIR"},
        "labels": LABELS,
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
        **extra,
    }
    (root / "dataset.json").write_text(json.dumps(meta))


def test_cases_come_from_images_tr(tmp_path: Path) -> None:
    make_site(tmp_path)
    a, b = load_site("s", tmp_path).cases
    assert (a.case_id, b.case_id) == ("a", "b")
    assert a.image.shape == (2, 6, 6, 2) and a.image[1].max() == 11.0 and b.image[1].max() == 10.0
    assert a.mask is not None and a.mask.max() == 1 and a.label is None
    assert a.source == tmp_path / "imagesTr" / "a_0000.nii.gz"


def test_classes_are_exposed(tmp_path: Path) -> None:
    make_site(tmp_path)
    assert load("s", tmp_path).classes == {0: "background", 1: "edema", 2: "tumour"}


def test_case_level_labels_from_labels_csv_with_bom(tmp_path: Path) -> None:
    make_site(tmp_path)
    (tmp_path / "labels.csv").write_bytes("case_id,label\r\na,1\r\nb,0\r\n".encode("utf-8-sig"))
    assert [c.label for c in load("s", tmp_path).cases] == [1, 0]


def test_missing_channel_file(tmp_path: Path) -> None:
    make_site(tmp_path)
    missing = tmp_path / "imagesTr" / "a_0001.nii.gz"
    missing.unlink()
    with refused("image of case 'a' not found", "s", missing):
        load("s", tmp_path)


@pytest.mark.parametrize(
    ("name", "array", "message"),
    [
        (
            "imagesTr/a_0002.nii.gz",
            np.ones((6, 6, 2), np.float32),
            "channel 0002 is beyond the 2 of 'channel_names'",
        ),
        ("imagesTr/c.nii.gz", np.ones((6, 6, 2), np.float32), "must be <case>_<XXXX>.nii.gz"),
        ("labelsTr/a.nii.gz", np.full((6, 6, 2), 3, np.uint8), r"mask values \[3\] are not declared"),
    ],
    ids=["channel_beyond_channel_names", "badly_named_image", "undeclared_mask_value"],
)
def test_a_file_that_breaks_the_layout_is_named(
    tmp_path: Path, name: str, array: np.ndarray, message: str
) -> None:
    make_site(tmp_path)
    bad = tmp_path / name
    save(array, bad)
    with refused(message, "s", bad):
        load("s", tmp_path)


def test_region_labels_are_refused(tmp_path: Path) -> None:
    make_site(tmp_path)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    meta["labels"]["whole"] = [1, 2]
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with refused("region-based labels are not supported", "s", tmp_path / "dataset.json"):
        load("s", tmp_path)


def test_other_file_endings_are_refused(tmp_path: Path) -> None:
    make_site(tmp_path, file_ending=".png")
    with refused("file_ending '.png' is not supported", "s", tmp_path / "dataset.json"):
        load("s", tmp_path)


def test_dataset_object_lists_the_files(tmp_path: Path) -> None:
    make_site(
        tmp_path,
        dataset={
            "x": {
                "images": ["imagesTr/a_0000.nii.gz", "imagesTr/b_0001.nii.gz"],
                "label": "labelsTr/b.nii.gz",
            }
        },
    )
    (case,) = load("s", tmp_path).cases
    assert case.case_id == "x" and case.image[:, 0, 0, 0].tolist() == [1.0, 10.0]


def test_dataset_object_paths_stay_inside(tmp_path: Path) -> None:
    make_site(tmp_path, dataset={"x": {"images": ["imagesTr/a_0000.nii.gz", "../b_0001.nii.gz"]}})
    with refused("leads outside the site folder", "s", tmp_path / "dataset.json"):
        load("s", tmp_path)


@pytest.mark.parametrize("names", [{}, "T1", None])
def test_channel_names_must_be_a_non_empty_object(tmp_path: Path, names: object) -> None:
    make_site(tmp_path, channel_names=names)
    with refused("'channel_names' must be a non-empty JSON object", "s", tmp_path / "dataset.json"):
        load("s", tmp_path)


def test_test_only_site_from_images_ts(tmp_path: Path) -> None:
    make_site(tmp_path)
    (tmp_path / "imagesTr").rename(tmp_path / "imagesTs")
    a, b = load("s", tmp_path).cases
    assert a.mask is None and b.mask is None and a.image.shape == (2, 6, 6, 2)


def test_missing_images_folder(tmp_path: Path) -> None:
    make_site(tmp_path)
    for file in (tmp_path / "imagesTr").iterdir():
        file.unlink()
    (tmp_path / "imagesTr").rmdir()
    with refused("need an 'imagesTr/' folder", "s", tmp_path / "imagesTr"):
        load("s", tmp_path)
