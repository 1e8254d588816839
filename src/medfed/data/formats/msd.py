"""Loader for the Medical Segmentation Decathlon / nnU-Net layout indexed by ``dataset.json``.

Images are either one NIfTI per case (4D ``(H, W, D, C)`` files hold channels last, as in the
MSD) or one file per channel, ``<case>_0000.nii.gz``, ``<case>_0001.nii.gz``... next to the path
``dataset.json`` names (the nnU-Net convention). Entries of ``training`` may omit ``label``
(test-only sites) and may carry an integer ``class``. When ``training`` is empty, the
unlabelled ``test`` entries are loaded instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from medfed.data.cases import Case, SiteData
from medfed.data.formats.common import read_nifti, require_file, spatial_to_channel_first
from medfed.data.validation import checked_case, checked_site
from medfed.errors import DataError

INDEX_FILE = "dataset.json"


def load(site: str, path: Path) -> SiteData:
    """Loads an MSD / nnU-Net site folder.

    Args:
        site: The site's name.
        path: Folder holding ``dataset.json``.

    Returns:
        The site's cases in ``dataset.json`` order.

    Raises:
        DataError: If the index or a file it references is missing or invalid.
    """
    entries = _read_entries(site, path / INDEX_FILE)
    cases = [_load_case(site, path, entry, path / INDEX_FILE) for entry in entries]
    return checked_site(site, path, cases)


def _read_entries(site: str, index: Path) -> list[dict[str, Any]]:
    """The case entries of ``dataset.json`` as dicts with at least an ``image`` key."""
    require_file(site, index, INDEX_FILE)
    try:
        meta = json.loads(index.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(site, index, f"cannot parse {INDEX_FILE}: {exc}") from exc
    if not isinstance(meta, dict):
        raise DataError(site, index, f"{INDEX_FILE} must hold a JSON object")
    raw = meta.get("training") or [{"image": item} for item in meta.get("test") or []]
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            raise DataError(site, index, f"entry {entry!r} lacks an 'image' path")
    return list(raw)


def _load_case(site: str, root: Path, entry: dict[str, Any], index: Path) -> Case:
    """Reads the image, optional mask and optional class of one ``dataset.json`` entry."""
    image_path = root / entry["image"]
    case_id = _case_id(image_path)
    mask, mask_path = None, None
    if entry.get("label") is not None:
        mask_path = root / entry["label"]
        require_file(site, mask_path, f"label file of case '{case_id}' referenced by {INDEX_FILE}")
        mask = spatial_to_channel_first(read_nifti(site, mask_path))
    label = entry.get("class")
    if label is not None and not isinstance(label, int):
        raise DataError(site, index, f"'class' of case '{case_id}' must be an integer: {label!r}")
    image = _read_image(site, image_path)
    return checked_case(site, case_id, image, mask, label, image_path, mask_path)


def _read_image(site: str, path: Path) -> np.ndarray:
    """Reads a case image as ``(C, H, W[, D])`` from one file or from per-channel files."""
    if path.is_file():
        array = read_nifti(site, path)
        return np.moveaxis(array, -1, 0) if array.ndim == 4 else spatial_to_channel_first(array)
    channels = _channel_files(path)
    if not channels:
        raise DataError(
            site, path, f"image not found (neither the file nor {path.name} with _0000 suffix)"
        )
    arrays = [spatial_to_channel_first(read_nifti(site, file))[0] for file in channels]
    if len({a.shape for a in arrays}) > 1:
        raise DataError(site, path, f"channel files differ in shape: {[a.shape for a in arrays]}")
    return np.stack(arrays)


def _channel_files(path: Path) -> list[Path]:
    """The existing ``<case>_0000.nii.gz``, ``<case>_0001.nii.gz``... files, in order."""
    stem, suffix = _split_suffix(path.name)
    files: list[Path] = []
    while (candidate := path.with_name(f"{stem}_{len(files):04d}{suffix}")).is_file():
        files.append(candidate)
    return files


def _case_id(path: Path) -> str:
    """The case id of an image path (its name without NIfTI suffix)."""
    return _split_suffix(path.name)[0]


def _split_suffix(name: str) -> tuple[str, str]:
    """Splits ``"x.nii.gz"`` into ``("x", ".nii.gz")`` (likewise ``.nii``)."""
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return Path(name).stem, Path(name).suffix
