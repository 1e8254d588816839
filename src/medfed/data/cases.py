"""In-memory cases and sites, and the deterministic train/test split of a site."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Case:
    """One imaging case of one site.

    Attributes:
        case_id: Identifier unique within the site.
        image: float32 array, channel-first: ``(C, H, W)`` for 2D or ``(C, H, W, D)`` for 3D.
        mask: int64 array ``(1, H, W[, D])`` with values ``0..K`` (0 = background), or ``None``.
        label: Case-level class (e.g. 1 = lesion present), or ``None`` when unknown.
        source: The file or folder the case was read from (for error messages).
        spacing: Voxel spacing in mm along each spatial axis, or ``None`` when unknown.
        orientation: Where the stored grid's axes pointed before the image was reoriented to
            RAS (e.g. ``"LAS"``), or ``None`` when unknown (PNG, npz, DICOM without geometry).
        patient_id: The (pseudonymised) patient the case belongs to, or ``None``: the case is
            its own patient. DP-SGD protects every case (and slice) of one patient together.
    """

    case_id: str
    image: np.ndarray
    mask: np.ndarray | None
    label: int | None
    source: Path
    spacing: tuple[float, ...] | None = None
    orientation: str | None = None
    patient_id: str | None = None

    @property
    def patient(self) -> str:
        """The case's patient: ``patient_id``, else the case itself."""
        return self.case_id if self.patient_id is None else self.patient_id


@dataclass(frozen=True)
class SiteData:
    """All cases of one site.

    Attributes:
        name: The site's name.
        cases: The site's cases, in a stable order.
        classes: Class name by mask value as the site declares them (``dataset.json``
            ``labels``; ``0`` is background), or ``None`` when it declares none.
    """

    name: str
    cases: tuple[Case, ...]
    classes: dict[int, str] | None = None


def split_cases(site: SiteData, test_fraction: float, seed: int) -> tuple[SiteData, SiteData]:
    """Splits a site into train and test cases, deterministically.

    The split is stratified by ``label`` when every case has one, and keeps every patient's cases
    on one side (the test side takes whole patients, in the stratified order, until it holds
    ``test_fraction`` of the cases). A site with at least two patients gets at least one case on
    each side. Both halves keep the site's original case order.

    Args:
        site: The site to split.
        test_fraction: Fraction of cases in the test half, in ``(0, 1)``.
        seed: Seed of the shuffle; the same seed gives the same split.

    Returns:
        ``(train, test)``, both named like ``site``.

    Raises:
        ValueError: If ``test_fraction`` is not in ``(0, 1)``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n = len(site.cases)
    n_test = min(max(round(n * test_fraction), 1), n - 1) if n >= 2 else 0
    test_idx = _whole_patients(site.cases, _stratified_order(site.cases, seed), n_test)
    train = tuple(c for i, c in enumerate(site.cases) if i not in test_idx)
    test = tuple(c for i, c in enumerate(site.cases) if i in test_idx)
    return replace(site, cases=train), replace(site, cases=test)


def _whole_patients(cases: tuple[Case, ...], order: list[int], wanted: int) -> set[int]:
    """Indices of the first patients met in ``order`` (all of their cases) until at least
    ``wanted`` cases are taken, never every case."""
    members: dict[str, list[int]] = {}
    for index, case in enumerate(cases):
        members.setdefault(case.patient, []).append(index)
    taken: set[int] = set()
    for index in order:
        if len(taken) >= wanted:
            break
        group = members[cases[index].patient]
        if len(taken) + len(group) < len(cases):
            taken.update(group)
    return taken


def _stratified_order(cases: tuple[Case, ...], seed: int) -> list[int]:
    """Case indices in an order whose every prefix holds each label in proportion.

    Each label group is shuffled, and its i-th member of n is placed at position
    ``(i + 0.5) / n``; sorting by position interleaves the groups proportionally.
    """
    rng = np.random.default_rng(seed)
    known = [c.label for c in cases if c.label is not None]
    keys = known if len(known) == len(cases) else [0] * len(cases)
    tie_break = rng.permutation(len(cases))
    position = np.empty(len(cases))
    for value in sorted(set(keys)):
        members = rng.permutation([i for i, k in enumerate(keys) if k == value])
        position[members] = (np.arange(len(members)) + 0.5) / len(members)
    return sorted(range(len(cases)), key=lambda i: (position[i], tie_break[i]))
