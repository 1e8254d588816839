"""Checks that turn raw arrays into valid cases and sites, or raise a precise ``DataError``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from medfed.data.cases import Case, SiteData
from medfed.errors import DataError, MedfedError, raise_problems

T = TypeVar("T")


def checked_image(site: str, path: Path, image: np.ndarray) -> np.ndarray:
    """Validates a channel-first image and returns it as float32.

    Args:
        site: Site name, for error messages.
        path: File the image came from, for error messages.
        image: Array ``(C, H, W)`` or ``(C, H, W, D)`` of any real dtype.

    Returns:
        The image as a float32 array of the same shape.

    Raises:
        DataError: If the image is not 3D/4D, is empty, or holds NaN or infinite voxels.
    """
    if image.ndim not in (3, 4) or image.size == 0:
        raise DataError(site, path, f"expected a 2D or 3D image, got array of shape {image.shape}")
    if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
        raise DataError(site, path, f"image must hold real numbers, got dtype {image.dtype}")
    image = image.astype(np.float32, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(image)))
    if bad:
        raise DataError(site, path, f"image has {bad} NaN or infinite voxels; fix or drop the case")
    return image


def checked_mask(site: str, path: Path, mask: np.ndarray, spatial_shape: tuple[int, ...]) -> np.ndarray:
    """Validates a segmentation mask against its image and returns it as int64 ``(1, H, W[, D])``.

    Args:
        site: Site name, for error messages.
        path: File the mask came from, for error messages.
        mask: Array ``(H, W[, D])`` or ``(1, H, W[, D])`` of integer class values.
        spatial_shape: The image's spatial shape ``(H, W[, D])``.

    Returns:
        The mask as int64 with a leading channel axis.

    Raises:
        DataError: On a shape mismatch, non-finite, negative or non-integer values.
    """
    if mask.shape == spatial_shape:
        mask = mask[None]
    if mask.shape != (1, *spatial_shape):
        reason = f"mask shape {mask.shape} does not match image spatial shape {spatial_shape}"
        raise DataError(site, path, reason)
    if not np.issubdtype(mask.dtype, np.integer) and not np.issubdtype(mask.dtype, np.bool_):
        if not np.all(np.isfinite(mask)) or np.any(mask != np.round(mask)):
            reason = "mask has non-integer values; masks must hold class ids 0..K"
            raise DataError(site, path, reason)
    if np.any(mask < 0):
        raise DataError(site, path, "mask has negative values; masks must hold class ids 0..K")
    return mask.astype(np.int64)


def checked_case(
    site: str,
    case_id: str,
    image: np.ndarray,
    mask: np.ndarray | None,
    label: int | None,
    source: Path,
    mask_path: Path | None = None,
    spacing: tuple[float, ...] | None = None,
) -> Case:
    """Builds a validated ``Case`` (see ``checked_image`` and ``checked_mask``).

    Args:
        site: Site name, for error messages.
        case_id: Identifier of the case.
        image: Channel-first image ``(C, H, W[, D])``.
        mask: Mask ``(H, W[, D])`` or ``(1, H, W[, D])``, or ``None``.
        label: Case-level class, or ``None``.
        source: File or folder of the image.
        mask_path: File of the mask, for error messages (defaults to ``source``).
        spacing: Voxel spacing in mm per spatial axis, when known.

    Returns:
        The validated case.
    """
    image = checked_image(site, source, image)
    if mask is not None:
        mask = checked_mask(site, mask_path or source, mask, image.shape[1:])
    return Case(case_id=case_id, image=image, mask=mask, label=label, source=source, spacing=spacing)


def loaded_cases(items: Iterable[T], load: Callable[[T], Case]) -> list[Case]:
    """Loads (or checks) every case, so that one pass reports every bad case, not only the first.

    Args:
        items: What identifies each case (an index entry, a folder, a file).
        load: Reads one case; raises ``DataError`` naming the site and the file.

    Returns:
        The cases, in the order of ``items``.

    Raises:
        DataError: The one case that could not be loaded.
        DataProblems: Several, one line each.
    """
    cases: list[Case] = []
    problems: list[MedfedError] = []
    for item in items:
        try:
            cases.append(load(item))
        except DataError as error:
            if str(error) not in map(str, problems):  # e.g. the same case lacking a mask
                problems.append(error)
    raise_problems(problems)
    return cases


def checked_site(site: str, path: Path, cases: Sequence[Case]) -> SiteData:
    """Builds a ``SiteData`` after checking the cases agree with each other.

    Args:
        site: Site name.
        path: The site's folder or file, for error messages.
        cases: The site's cases.

    Returns:
        The site.

    Raises:
        DataError: If the site is empty, case ids repeat, or cases differ in channels,
            dimensionality, or in whether they have a mask or a label.
        DataProblems: Several such cases, one line each.
    """
    if not cases:
        raise DataError(site, path, "site has no cases; check the folder and its index files")
    first, seen = cases[0], set[str]()

    def check(case: Case) -> Case:
        if case.case_id in seen:
            raise DataError(site, case.source, f"case id '{case.case_id}' appears twice")
        seen.add(case.case_id)
        _check_like(site, first, case)
        return case

    return SiteData(name=site, cases=tuple(loaded_cases(cases, check)))


def _check_like(site: str, first: Case, case: Case) -> None:
    """Raises ``DataError`` naming ``case`` if it differs in kind from ``first``."""
    targets: tuple[tuple[str, object, object], ...] = (
        ("mask", case.mask, first.mask),
        ("label", case.label, first.label),
    )
    for what, mine, reference in targets:
        if (mine is None) != (reference is None):
            lacks, others = (case, f"'{first.case_id}' has") if mine is None else (first, "other cases have")
            raise DataError(site, lacks.source, f"case '{lacks.case_id}' has no {what} but {others} one")
    if case.image.ndim != first.image.ndim or case.image.shape[0] != first.image.shape[0]:
        raise DataError(
            site,
            case.source,
            f"image shape {case.image.shape} is not compatible with {first.image.shape} "
            f"of case '{first.case_id}' (channels and dimensionality must agree)",
        )
