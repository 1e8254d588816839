"""Loader for site folders indexed by ``dataset.json``: MSD (nnU-Net v1) and nnU-Net v2.

**MSD / nnU-Net v1** (``training`` and ``test`` lists): each entry names an ``image`` and
optionally a ``label`` (test-only sites omit it) and an integer ``class`` (medfed's case-level
label). The image is one NIfTI per case, whose fourth axis holds channels (as in the MSD), or
one file per channel, ``<case>_0000.nii.gz``, ``<case>_0001.nii.gz``..., next to the path the
entry names. When ``training`` is empty, the ``test`` entries are loaded. ``modality``, when
present, fixes the number of channels.

**nnU-Net v2** (``channel_names`` and ``file_ending``, no case list): the cases are the files
``imagesTr/<case>_<XXXX><file_ending>``, channel ``XXXX`` of ``len(channel_names)``; masks are
``labelsTr/<case><file_ending>`` (a site with only ``imagesTs/`` is loaded unlabelled); a
``dataset`` object, when present, lists each case's ``images`` and ``label`` instead.
Case-level labels come from an optional ``labels.csv`` (``case_id,label``) at the site root.

Both: every path stays inside the site folder; every volume is reoriented to the RAS
closest-canonical axis order; the channels and the mask of a case must share one voxel grid
(affines within ``AFFINE_TOLERANCE_MM``); mask values must be declared in ``labels``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from medfed.data.cases import Case, SiteData
from medfed.data.formats.common import (
    lookup_label,
    read_labels_csv,
    read_nifti,
    require_file,
)
from medfed.data.formats.geometry import axis_codes, check_same_grid, oriented, voxel_spacing
from medfed.data.validation import checked_case, checked_site, loaded_cases
from medfed.errors import DataError

INDEX_FILE = "dataset.json"
LABELS_FILE = "labels.csv"
NIFTI_ENDINGS = (".nii.gz", ".nii")


@dataclass(frozen=True)
class _Entry:
    """The files of one case: per-channel images (or one 4D image), optional mask and class."""

    case_id: str
    source: Path
    images: tuple[Path, ...]
    mask: Path | None
    label: int | None


def load(site: str, path: Path) -> SiteData:
    """Loads an MSD or nnU-Net v2 site folder.

    Args:
        site: The site's name.
        path: Folder holding ``dataset.json``.

    Returns:
        The site's cases, in ``dataset.json`` order (v1) or sorted by case id (v2), and the
        classes ``labels`` declares.

    Raises:
        DataError: If the index or a file it references is missing, invalid, outside the site
            folder, or on a different voxel grid than its image.
    """
    index = path / INDEX_FILE
    meta = _read_index(site, index)
    channels = _declared_channels(site, index, meta)
    if is_nnunet_v2(meta):
        entries = _v2_entries(site, path, meta, channels or 0)
    else:
        entries = _v1_entries(site, path, meta)
    classes = _declared_classes(site, index, meta)
    cases = loaded_cases(entries, lambda entry: _load_case(site, entry, classes))
    if channels is not None and cases and cases[0].image.shape[0] != channels:
        found = cases[0].image.shape[0]
        reason = f"images have {found} channels, {INDEX_FILE} declares {channels}"
        raise DataError(site, cases[0].source, reason)
    return replace(checked_site(site, path, cases), classes=classes)


def is_nnunet_v2(meta: dict[str, Any]) -> bool:
    """Whether a parsed ``dataset.json`` is in the nnU-Net v2 form."""
    return "channel_names" in meta and "file_ending" in meta


def _read_index(site: str, index: Path) -> dict[str, Any]:
    """The parsed ``dataset.json``."""
    require_file(site, index, INDEX_FILE)
    try:
        meta = json.loads(index.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(site, index, f"cannot parse {INDEX_FILE}: {exc}") from exc
    if not isinstance(meta, dict):
        raise DataError(site, index, f"{INDEX_FILE} must hold a JSON object")
    return meta


def _declared_channels(site: str, index: Path, meta: dict[str, Any]) -> int | None:
    """How many channels ``channel_names`` (v2) or ``modality`` (v1) declares, if present."""
    key = "channel_names" if is_nnunet_v2(meta) else "modality"
    if key not in meta:
        return None
    if not isinstance(meta[key], dict) or not meta[key]:
        raise DataError(site, index, f"'{key}' must be a non-empty JSON object")
    return len(meta[key])


def _declared_classes(site: str, index: Path, meta: dict[str, Any]) -> dict[int, str] | None:
    """``labels`` as value -> name: v1 maps ``"0"`` -> name, v2 maps name -> value."""
    labels = meta.get("labels")
    if labels is None:
        return None
    if not isinstance(labels, dict):
        raise DataError(site, index, f"'labels' must be a JSON object, got {labels!r}")
    pairs = [(v, k) for k, v in labels.items()] if is_nnunet_v2(meta) else list(labels.items())
    classes: dict[int, str] = {}
    for value, name in pairs:
        if isinstance(value, list):
            reason = f"label '{name}' is a region ({value}); region-based labels are not supported"
            raise DataError(site, index, reason)
        try:
            classes[int(value)] = str(name)
        except (TypeError, ValueError):
            raise DataError(site, index, f"label value {value!r} is not an integer") from None
    return dict(sorted(classes.items()))


def _v1_entries(site: str, root: Path, meta: dict[str, Any]) -> list[_Entry]:
    """The cases of an MSD ``training`` (else ``test``) list."""
    index = root / INDEX_FILE
    raw = meta.get("training") or [{"image": item} for item in meta.get("test") or []]
    entries = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("image"), str):
            raise DataError(site, index, f"entry {item!r} lacks an 'image' path")
        image = _inside(site, root, item["image"], index)
        case_id = _split_ending(image.name)[0]
        label = item.get("class")
        if label is not None and not isinstance(label, int):
            raise DataError(site, index, f"'class' of case '{case_id}' must be an integer: {label!r}")
        mask = None if item.get("label") is None else _inside(site, root, item["label"], index)
        entries.append(_Entry(case_id, image, _v1_images(site, image), mask, label))
    return entries


def _v1_images(site: str, path: Path) -> tuple[Path, ...]:
    """The file itself, else the existing ``<case>_0000.nii.gz``, ``_0001``... files."""
    if path.is_file():
        return (path,)
    stem, ending = _split_ending(path.name)
    files: list[Path] = []
    while (candidate := path.with_name(f"{stem}_{len(files):04d}{ending}")).is_file():
        files.append(candidate)
    if not files:
        reason = f"image not found (neither the file nor {stem}_0000{ending})"
        raise DataError(site, path, reason)
    return tuple(files)


def _v2_entries(site: str, root: Path, meta: dict[str, Any], channels: int) -> list[_Entry]:
    """The cases of an nnU-Net v2 site: ``dataset`` if given, else ``imagesTr``/``labelsTr``."""
    index = root / INDEX_FILE
    ending = meta["file_ending"]
    if ending not in NIFTI_ENDINGS:
        reason = f"file_ending {ending!r} is not supported; medfed reads {', '.join(NIFTI_ENDINGS)}"
        raise DataError(site, index, reason)
    csv_path = root / LABELS_FILE
    if "dataset" in meta:
        entries = _listed_entries(site, root, meta["dataset"], channels)
    else:
        entries = _scanned_entries(site, root, ending, channels)
    if csv_path.is_file():
        labels = read_labels_csv(site, csv_path, "case_id", {e.case_id for e in entries})
        entries = [
            _Entry(
                e.case_id,
                e.source,
                e.images,
                e.mask,
                lookup_label(site, labels, e.case_id, csv_path),
            )
            for e in entries
        ]
    return entries


def _scanned_entries(site: str, root: Path, ending: str, channels: int) -> list[_Entry]:
    """Cases from the files ``imagesTr/<case>_<XXXX><ending>`` (else ``imagesTs/``, unlabelled)."""
    images_dir = root / "imagesTr"
    if not images_dir.is_dir() and (root / "imagesTs").is_dir():
        images_dir = root / "imagesTs"
    if not images_dir.is_dir():
        raise DataError(site, images_dir, "nnU-Net v2 sites need an 'imagesTr/' folder")
    pattern = re.compile(rf"(.+)_(\d{{4}}){re.escape(ending)}")
    found: dict[str, set[int]] = {}
    for file in images_dir.iterdir():
        if file.name.startswith(".") or not file.name.endswith(ending):
            continue
        match = pattern.fullmatch(file.name)
        if match is None:
            reason = f"image file name must be <case>_<XXXX>{ending} (XXXX = channel)"
            raise DataError(site, file, reason)
        found.setdefault(match[1], set()).add(int(match[2]))
    entries = []
    for case_id in sorted(found):
        images = tuple(images_dir / f"{case_id}_{c:04d}{ending}" for c in range(channels))
        extra = sorted(found[case_id] - set(range(channels)))
        if extra:
            reason = f"channel {extra[0]:04d} is beyond the {channels} of 'channel_names'"
            raise DataError(site, images_dir / f"{case_id}_{extra[0]:04d}{ending}", reason)
        mask = root / "labelsTr" / f"{case_id}{ending}"
        labelled = images_dir.name == "imagesTr" and mask.is_file()
        entries.append(_Entry(case_id, images[0], images, mask if labelled else None, None))
    return entries


def _listed_entries(site: str, root: Path, listed: Any, channels: int) -> list[_Entry]:
    """Cases from the v2 ``dataset`` object: ``{case: {"images": [...], "label": ...}}``."""
    index = root / INDEX_FILE
    if not isinstance(listed, dict):
        raise DataError(site, index, "'dataset' must map case ids to {images, label}")
    entries = []
    for case_id, item in listed.items():
        images = item.get("images") if isinstance(item, dict) else None
        if not isinstance(images, list) or len(images) != channels:
            reason = f"case '{case_id}' needs 'images': a list of {channels} paths"
            raise DataError(site, index, reason)
        label = item.get("label")
        mask = None if label is None else _inside(site, root, label, index)
        paths = tuple(_inside(site, root, image, index) for image in images)
        entries.append(_Entry(str(case_id), paths[0], paths, mask, None))
    return entries


def _inside(site: str, root: Path, relative: Any, index: Path) -> Path:
    """``root / relative``, refusing absolute paths and paths that lead out of ``root``."""
    if not isinstance(relative, str) or Path(relative).is_absolute():
        reason = f"path {relative!r} must be relative to the site folder"
        raise DataError(site, index, reason)
    path = root / relative
    if not path.resolve().is_relative_to(root.resolve()):
        raise DataError(site, index, f"path {relative!r} leads outside the site folder")
    return path


def _load_case(site: str, entry: _Entry, classes: dict[int, str] | None) -> Case:
    """Reads one case's channels and mask, checking they share one voxel grid."""
    for file in entry.images:
        require_file(site, file, f"image of case '{entry.case_id}'")
    stored = [read_nifti(site, file) for file in entry.images]
    volumes = [oriented(volume) for volume in stored]
    first, first_affine = volumes[0]
    for file, (array, affine) in zip(entry.images[1:], volumes[1:], strict=True):
        if array.shape[1:] != first.shape[1:]:
            reason = f"channel shape {array.shape[1:]} differs from {first.shape[1:]} of channel 0"
            raise DataError(site, file, reason)
        check_same_grid(site, file, affine, first_affine, f"image '{entry.images[0].name}'")
    image = np.concatenate([array for array, _ in volumes])
    mask = None
    if entry.mask is not None:
        require_file(site, entry.mask, f"label file of case '{entry.case_id}'")
        mask, mask_affine = oriented(read_nifti(site, entry.mask))
        check_same_grid(site, entry.mask, mask_affine, first_affine, f"image '{entry.images[0].name}'")
    spacing = voxel_spacing(stored[0])
    case = checked_case(site, entry.case_id, image, mask, entry.label, entry.source, entry.mask, spacing)
    case = replace(case, orientation=axis_codes(stored[0].affine))
    _check_declared(site, entry.mask, case.mask, classes)
    return case


def _check_declared(
    site: str, path: Path | None, mask: np.ndarray | None, classes: dict[int, str] | None
) -> None:
    """Raises ``DataError`` if the mask holds a value ``labels`` does not declare."""
    if mask is None or classes is None:
        return
    undeclared = sorted(set(np.unique(mask).tolist()) - classes.keys())
    if undeclared:
        reason = f"mask values {undeclared} are not declared in {INDEX_FILE} 'labels' {classes}"
        raise DataError(site, path, reason)


def _split_ending(name: str) -> tuple[str, str]:
    """Splits ``"x.nii.gz"`` into ``("x", ".nii.gz")`` (likewise ``.nii``)."""
    for ending in NIFTI_ENDINGS:
        if name.endswith(ending):
            return name[: -len(ending)], ending
    return Path(name).stem, Path(name).suffix
