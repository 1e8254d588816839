from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_helpers import assert_names, refused

from medfed.data import FORMATS
from medfed.errors import DataError

load = FORMATS.get("npz")


def test_round_trip_all_splits(tmp_path: Path) -> None:
    path = tmp_path / "pneumonia.npz"
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    np.savez(
        path,
        train_images=images,
        train_labels=np.array([[0], [1], [1]]),
        test_images=images[:1],
        test_labels=np.array([1]),
    )
    site = load("s", path)
    ids = [c.case_id for c in site.cases]
    assert ids == ["train_00000", "train_00001", "train_00002", "test_00000"]
    assert [c.label for c in site.cases] == [0, 1, 1, 1]
    assert all(c.mask is None and c.image.shape == (1, 4, 5) for c in site.cases)
    np.testing.assert_array_equal(site.cases[1].image[0], images[1])


def test_colour_images_and_folder_path(tmp_path: Path) -> None:
    images = np.zeros((2, 4, 5, 3), np.uint8)
    np.savez(tmp_path / "x.npz", train_images=images, train_labels=np.zeros(2))
    site = load("s", tmp_path)
    assert site.cases[0].image.shape == (3, 4, 5)


def test_missing_arrays(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    np.savez(path, train_images=np.zeros((2, 4, 5), np.uint8))
    with refused("train_labels", "s", path):
        load("s", path)


def test_label_count_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    np.savez(path, train_images=np.zeros((2, 4, 5), np.uint8), train_labels=np.zeros(3))
    with refused("N=2", "s", path):
        load("s", path)


def test_truncated_archive(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    np.savez(path, train_images=np.zeros((20, 28, 28), np.uint8), train_labels=np.zeros(20))
    path.write_bytes(path.read_bytes()[:100])
    with refused("cannot read .npz", "s", path):
        load("s", path)


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    np.savez(path, train_images=np.array([object()]), train_labels=np.zeros(1))
    with pytest.raises(DataError) as info:
        load("s", path)
    assert_names(info.value, "s", path)
