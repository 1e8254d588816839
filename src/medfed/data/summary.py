"""What a site's data look like, in numbers a person can check at a glance: the rows of
``medfed check-data``'s table. Computed from the loaded cases; nothing here reads files."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medfed.data.cases import SiteData
from medfed.data.fingerprint import class_fractions
from medfed.types import Task


@dataclass(frozen=True)
class SiteSummary:
    """Counts, sizes and classes of one site's cases.

    Attributes:
        name: The site's name.
        cases: Number of cases.
        patients: Number of patients (DP-SGD's privacy unit; each case its own unless declared).
        channels: Image channels (the same for every case of a site).
        dims: Spatial dimensions, 2 or 3 (the same for every case of a site).
        smallest: Smallest size along each spatial axis, over the cases.
        largest: Largest size along each spatial axis, over the cases.
        spacings: The distinct voxel spacings (mm per axis) of the cases that know theirs.
        orientations: The distinct stored orientations (e.g. ``"LAS"``) of the cases that
            know theirs (every case is reoriented to RAS when loaded).
        classes: Fraction of each class value: of mask voxels (segmentation) or of cases
            (classification); empty when the site has no masks (labels).
    """

    name: str
    cases: int
    patients: int
    channels: int
    dims: int
    smallest: tuple[int, ...]
    largest: tuple[int, ...]
    spacings: tuple[tuple[float, ...], ...]
    orientations: tuple[str, ...]
    classes: dict[int, float]


def summarize_site(site: SiteData, task: Task) -> SiteSummary:
    """The summary of a loaded (hence non-empty and internally consistent) site.

    Args:
        site: The site's cases.
        task: Which target the class balance counts: mask voxels or case labels.
    """
    shapes = np.array([case.image.shape[1:] for case in site.cases])
    first = site.cases[0].image
    spacings = {_rounded(case.spacing) for case in site.cases if case.spacing is not None}
    return SiteSummary(
        name=site.name,
        cases=len(site.cases),
        patients=len({case.patient for case in site.cases}),
        channels=first.shape[0],
        dims=first.ndim - 1,
        smallest=tuple(int(v) for v in shapes.min(axis=0)),
        largest=tuple(int(v) for v in shapes.max(axis=0)),
        spacings=tuple(sorted(spacings)),
        orientations=tuple(sorted({case.orientation for case in site.cases if case.orientation})),
        classes=_present(site, task),
    )


def _present(site: SiteData, task: Task) -> dict[int, float]:
    """``class_fractions`` of the values present; empty when the site has no masks (labels)."""
    if all((case.mask if task == "segmentation" else case.label) is None for case in site.cases):
        return {}
    return {value: fraction for value, fraction in enumerate(class_fractions(site, task)) if fraction > 0}


def _rounded(spacing: tuple[float, ...]) -> tuple[float, ...]:
    """A spacing to 0.01 mm, so that float noise does not make two spacings distinct."""
    return tuple(round(float(value), 2) for value in spacing)
