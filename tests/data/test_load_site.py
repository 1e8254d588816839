from __future__ import annotations

from pathlib import Path

import numpy as np
from data_helpers import refused
from PIL import Image

from medfed.data import FORMATS, load_site


def test_known_formats() -> None:
    assert FORMATS.names() == ["dicom", "msd", "npz", "png"]


def test_detects_msd(msd_site: Path) -> None:
    assert len(load_site("small", msd_site).cases) == 6


def test_detects_npz_file_and_folder(tmp_path: Path) -> None:
    images = np.zeros((2, 4, 4), np.uint8)
    np.savez(tmp_path / "x.npz", train_images=images, train_labels=np.zeros(2))
    assert len(load_site("s", tmp_path / "x.npz").cases) == 2
    assert len(load_site("s", tmp_path).cases) == 2


def test_detects_png(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "images" / "a.png")
    assert load_site("s", tmp_path).cases[0].case_id == "a"


def test_detects_dicom(tmp_path: Path) -> None:
    from dicom_helpers import write_series

    write_series(tmp_path / "case", depth=2)
    (tmp_path / "case" / "000.dcm").rename(tmp_path / "case" / "IM0001")  # no extension
    (tmp_path / "case" / "001.dcm").rename(tmp_path / "case" / "IM0002")
    assert load_site("s", tmp_path).cases[0].image.shape == (1, 5, 6, 2)


def test_explicit_format(msd_site: Path) -> None:
    assert load_site("small", msd_site, format="msd").name == "small"


def test_unknown_format(msd_site: Path) -> None:
    with refused("unknown data format 'tiff'.*dicom, msd, npz, png", "small", msd_site):
        load_site("small", msd_site, format="tiff")


def test_undetectable_format(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with refused("cannot detect.*dicom, msd, npz, png", "s", tmp_path):
        load_site("s", tmp_path)


def test_missing_path(tmp_path: Path) -> None:
    with refused("does not exist", "s", tmp_path / "nope"):
        load_site("s", tmp_path / "nope")


def test_declared_classes_come_with_the_site(msd_site: Path, tmp_path: Path) -> None:
    assert load_site("small", msd_site).classes == {0: "background", 1: "lesion"}
    npz = tmp_path / "x.npz"
    np.savez(npz, train_images=np.zeros((2, 4, 4)), train_labels=np.zeros(2))
    assert load_site("s", npz).classes is None
