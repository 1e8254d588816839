"""Loader for MedMNIST-style ``.npz`` archives (classification only).

The archive holds ``train_images`` and ``train_labels`` and optionally ``val_*`` and ``test_*``
pairs; all splits become cases with ids ``<split>_<index>``. Images are ``(N, H, W)``,
``(N, H, W, C)`` with ``C <= 4`` channels, or ``(N, H, W, D)`` volumes when the last axis is
longer; labels are ``(N,)`` or ``(N, 1)``. The archive is read without pickle.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from medfed.data.cases import Case, SiteData
from medfed.data.validation import checked_case, checked_site
from medfed.errors import DataError

SPLITS = ("train", "val", "test")
MAX_CHANNELS = 4


def load(site: str, path: Path) -> SiteData:
    """Loads a MedMNIST-style archive.

    Args:
        site: The site's name.
        path: The ``.npz`` file, or a folder holding exactly one.

    Returns:
        The site's cases, train then val then test.

    Raises:
        DataError: If the archive is unreadable, lacks ``train_images``/``train_labels``,
            or has arrays of unexpected shape.
    """
    path = _archive(site, path)
    arrays = _read_archive(site, path)
    if "train_images" not in arrays or "train_labels" not in arrays:
        reason = f"archive needs 'train_images' and 'train_labels', has {sorted(arrays)}"
        raise DataError(site, path, reason)
    cases: list[Case] = []
    for split in SPLITS:
        if f"{split}_images" in arrays:
            cases += _split_cases(site, path, split, arrays)
    return checked_site(site, path, cases)


def _archive(site: str, path: Path) -> Path:
    """``path`` itself, or the single ``.npz`` inside folder ``path``."""
    if path.is_dir():
        found = sorted(path.glob("*.npz"))
        if len(found) != 1:
            reason = f"expected exactly one .npz file in the folder, found {len(found)}"
            raise DataError(site, path, reason)
        return found[0]
    return path


def _read_archive(site: str, path: Path) -> dict[str, np.ndarray]:
    """All arrays of the archive by name, refusing pickled objects."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        reason = f"cannot read .npz archive ({type(exc).__name__}: {exc})"
        raise DataError(site, path, reason) from exc


def _split_cases(site: str, path: Path, split: str, arrays: dict[str, np.ndarray]) -> list[Case]:
    """The cases of one split (``train``, ``val`` or ``test``)."""
    images, labels = arrays[f"{split}_images"], arrays.get(f"{split}_labels")
    if labels is None:
        raise DataError(site, path, f"'{split}_images' has no matching '{split}_labels'")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != len(images):
        reason = f"'{split}_labels' must be (N,) or (N, 1) with N={len(images)}, got {labels.shape}"
        raise DataError(site, path, reason)
    if not np.issubdtype(labels.dtype, np.number) or np.any(labels != np.round(labels)):
        raise DataError(site, path, f"'{split}_labels' must hold integer classes")
    if images.ndim not in (3, 4):
        raise DataError(site, path, f"'{split}_images' must be (N, H, W[, C]), got {images.shape}")
    channel_last = images.ndim == 4 and images.shape[-1] <= MAX_CHANNELS
    images = np.moveaxis(images, -1, 1) if channel_last else images[:, None]
    return [
        checked_case(site, f"{split}_{i:05d}", image, None, int(label), path)
        for i, (image, label) in enumerate(zip(images, labels, strict=True))
    ]
