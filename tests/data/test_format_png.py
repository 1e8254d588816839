from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_helpers import refused
from PIL import Image

from medfed.data import FORMATS

load = FORMATS.get("png")


def write_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_site(root: Path, *, masks: bool = True, labels: bool = True) -> np.ndarray:
    image = np.arange(48, dtype=np.uint8).reshape(6, 8)
    for name in ("a.png", "b.png"):
        write_png(image, root / "images" / name)
        if masks:
            write_png((image > 20).astype(np.uint8), root / "masks" / name)
    if labels:
        (root / "labels.csv").write_text("filename,label\na.png,1\nb.png,0\n")
    return image


def test_round_trip(tmp_path: Path) -> None:
    image = make_site(tmp_path)
    a, b = load("s", tmp_path).cases
    assert (a.case_id, b.case_id, a.label, b.label) == ("a", "b", 1, 0)
    np.testing.assert_array_equal(a.image[0], image)
    assert a.image.shape == (1, 6, 8) and a.mask is not None and a.mask.shape == (1, 6, 8)
    assert a.mask.sum() == (image > 20).sum()


def test_rgb_becomes_three_channels(tmp_path: Path) -> None:
    write_png(np.zeros((4, 5, 4), np.uint8), tmp_path / "images" / "x.png")  # RGBA
    (case,) = load("s", tmp_path).cases
    assert case.image.shape == (3, 4, 5) and case.mask is None and case.label is None


def test_missing_mask(tmp_path: Path) -> None:
    make_site(tmp_path)
    (tmp_path / "masks" / "b.png").unlink()
    with refused("mask of image 'b.png' not found", "s", tmp_path / "masks" / "b.png"):
        load("s", tmp_path)


def test_missing_label_row(tmp_path: Path) -> None:
    make_site(tmp_path)
    (tmp_path / "labels.csv").write_text("filename,label\na.png,1\n")
    with refused("no label for 'b.png'", "s", tmp_path / "labels.csv"):
        load("s", tmp_path)


def test_bad_label_value(tmp_path: Path) -> None:
    make_site(tmp_path)
    (tmp_path / "labels.csv").write_text("filename,label\na.png,yes\nb.png,0\n")
    with refused("not an integer", "s", tmp_path / "labels.csv"):
        load("s", tmp_path)


def test_truncated_png(tmp_path: Path) -> None:
    make_site(tmp_path, masks=False, labels=False)
    bad = tmp_path / "images" / "a.png"
    bad.write_bytes(bad.read_bytes()[:30])
    with refused("cannot read PNG", "s", bad):
        load("s", tmp_path)


def test_mask_shape_mismatch(tmp_path: Path) -> None:
    make_site(tmp_path)
    bad = tmp_path / "masks" / "a.png"
    write_png(np.zeros((5, 8), np.uint8), bad)
    with refused("does not match", "s", bad):
        load("s", tmp_path)


def test_empty_images_folder(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with refused("no cases", "s", tmp_path):
        load("s", tmp_path)


def test_labels_csv_written_by_excel_with_a_bom(tmp_path: Path) -> None:
    make_site(tmp_path)
    (tmp_path / "labels.csv").write_bytes("filename,label\r\na.png,1\r\nb.png,0\r\n".encode("utf-8-sig"))
    assert [c.label for c in load("s", tmp_path).cases] == [1, 0]


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ("a.png,1\nb.png,0\na.png,0\n", "line 4: 'a.png' already has a label"),
        ("a.png,1\nb.png,0\nc.png,1\n", "line 4: 'c.png' is not a case of this site"),
    ],
)
def test_labels_csv_duplicate_or_unknown_id(tmp_path: Path, rows: str, match: str) -> None:
    make_site(tmp_path)
    (tmp_path / "labels.csv").write_text("filename,label\n" + rows)
    with refused(match, "s", tmp_path / "labels.csv"):
        load("s", tmp_path)
