"""The study plan: one preprocessing for every site, combined from the sites' fingerprints.

nnU-Net plans from one pooled dataset (Isensee et al., Nature Methods 2021); here the server
sees only each site's ``Fingerprint`` and combines them:

- every site must have the same channels and spatial dimensionality;
- target spacing: per axis, the median over sites of each site's median spacing (when every
  site knows its spacing; otherwise each case keeps its grid);
- patch size (segmentation): the median over sites of the median case size in voxels after
  resampling, rounded up to a multiple of the network's total stride, then shrunk along its
  longest side, one stride at a time, until it fits the voxel budget;
- intensity, per channel: a CT channel is clipped to the median over sites of their 0.5th and
  99.5th foreground percentiles and scaled to [0, 1]; any other channel is z-scored over its
  foreground;
- classes: one more than the largest class any site has or declares (``dataset.json``
  ``labels``; at least 2).

Medians over sites rather than means, so one site's numbers cannot drag the plan far while most
sites agree.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medfed.data.fingerprint import Fingerprint, Task
from medfed.data.preprocessing import Normalisation
from medfed.errors import ConfigError, DataError
from medfed.files import atomic_write

PLAN_VERSION = 1
PLAN_FILE = "plan.json"
MAX_PATCH_SIDE = 512
MIN_PATCH_SIDE = 4
DEFAULT_PATCH_VOXELS = {2: 512 * 512, 3: 128 * 128 * 128}
"""Voxel budget of one training patch by spatial dimensionality (about nnU-Net's defaults)."""


@dataclass(frozen=True)
class StudyPlan:
    """How every site preprocesses its cases, and what the model outputs.

    Attributes:
        sites: The sites whose fingerprints were combined.
        num_cases: Their cases, in total.
        channels: Image channels.
        spatial_dims: 2 or 3.
        modalities: One name per channel (``"CT"`` gets a CT window).
        num_classes: Model output channels (segmentation) or classes (classification): one
            more than the largest class any site has or declares.
        class_fractions: Voxel (segmentation) or case (classification) fraction of each class,
            over all sites (weighted by cases).
        spacing: Target voxel spacing in mm, or ``None`` to keep each case's grid.
        median_size: Median case size in voxels after resampling.
        patch_size: Training patch and sliding-window size, or ``None`` (classification: whole
            images).
        intensity: Normalisation of each channel.
    """

    sites: tuple[str, ...]
    num_cases: int
    channels: int
    spatial_dims: int
    modalities: tuple[str, ...]
    num_classes: int
    class_fractions: tuple[float, ...]
    spacing: tuple[float, ...] | None
    median_size: tuple[float, ...]
    patch_size: tuple[int, ...] | None
    intensity: tuple[Normalisation, ...]

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-compatible values (``plan.json``)."""
        return {
            "version": PLAN_VERSION,
            "sites": list(self.sites),
            "num_cases": self.num_cases,
            "channels": self.channels,
            "spatial_dims": self.spatial_dims,
            "modalities": list(self.modalities),
            "num_classes": self.num_classes,
            "class_fractions": list(self.class_fractions),
            "spacing": None if self.spacing is None else list(self.spacing),
            "median_size": list(self.median_size),
            "patch_size": None if self.patch_size is None else list(self.patch_size),
            "intensity": [{"mode": n.mode, "window": list(n.window)} for n in self.intensity],
        }

    def rows(self) -> list[tuple[str, str]]:
        """``(what, value)`` lines for a report."""
        intensity = [
            f"{name}: CT window [{n.window[0]:.0f}, {n.window[1]:.0f}]"
            if n.mode == "ct_window"
            else f"{name}: z-score over the foreground"
            for name, n in zip(self.modalities, self.intensity, strict=True)
        ]
        return [
            ("sites", f"{', '.join(self.sites)} ({self.num_cases} cases)"),
            ("images", f"{self.channels} channel(s), {self.spatial_dims}D"),
            ("target spacing (mm)", "each case's own" if self.spacing is None else _list(self.spacing, 2)),
            ("median size after resampling (voxels)", _list(self.median_size, 0)),
            ("patch size", "whole images" if self.patch_size is None else _list(self.patch_size, 0)),
            ("intensity", "; ".join(intensity)),
            ("classes", f"{self.num_classes} (fractions {_list(self.class_fractions, 4)})"),
        ]


def save_plan(plan: StudyPlan, run_dir: Path) -> Path:
    """Writes ``plan`` to ``run_dir/plan.json`` atomically and returns the path."""
    path = run_dir / PLAN_FILE
    atomic_write(path, (json.dumps(plan.to_dict(), indent=2) + "\n").encode())
    return path


def check_sites_agree(fingerprints: Sequence[Fingerprint]) -> None:
    """Raises ``DataError`` naming the first site whose channels or dimensionality differ from
    what most sites have (ties: the first site's)."""
    shapes = Counter((f.channels, f.spatial_dims) for f in fingerprints)
    channels, dims = max(shapes, key=lambda shape: shapes[shape])
    reference = next(f.site for f in fingerprints if (f.channels, f.spatial_dims) == (channels, dims))
    for fingerprint in fingerprints:
        if fingerprint.spatial_dims != dims:
            reason = (
                f"its images are {fingerprint.spatial_dims}D, site '{reference}''s {dims}D; "
                "every site of a study needs the same dimensionality"
            )
            raise DataError(fingerprint.site, None, reason)
        if fingerprint.channels != channels:
            reason = (
                f"its images have {fingerprint.channels} channel(s), site '{reference}''s {channels}; "
                "every site of a study needs the same channels in the same order"
            )
            raise DataError(fingerprint.site, None, reason)


def plan_study(
    fingerprints: Sequence[Fingerprint],
    *,
    task: Task,
    size_multiple: int,
    modalities: Sequence[str] | None = None,
    max_patch_voxels: int | None = None,
) -> StudyPlan:
    """Combines the sites' fingerprints into the study's plan (see the module docstring).

    Args:
        fingerprints: One per site, as received (``Fingerprint.from_dict``), at least one.
        task: ``"segmentation"`` (a patch size is planned) or ``"classification"``.
        size_multiple: The network's total stride; patch sides are multiples of it.
        modalities: One name per channel; ``None``: none is CT.
        max_patch_voxels: Voxel budget of a patch; ``None``: ``DEFAULT_PATCH_VOXELS``.

    Raises:
        DataError: Sites disagree in channels or dimensionality (naming the site).
        ConfigError: ``modalities`` does not name every channel.
        ValueError: ``fingerprints`` is empty.
    """
    if not fingerprints:
        raise ValueError("a study plan needs at least one site's fingerprint")
    check_sites_agree(fingerprints)
    first = fingerprints[0]
    names = tuple(modalities) if modalities is not None else ("unknown",) * first.channels
    if len(names) != first.channels:
        raise ConfigError(
            f"preprocessing.modalities {list(names)} names {len(names)} channel(s), the images have "
            f"{first.channels}"
        )
    spacing = _median_spacing(fingerprints)
    size = _median_size(fingerprints, spacing)
    budget = max_patch_voxels or DEFAULT_PATCH_VOXELS[first.spatial_dims]
    return StudyPlan(
        sites=tuple(f.site for f in fingerprints),
        num_cases=sum(f.num_cases for f in fingerprints),
        channels=first.channels,
        spatial_dims=first.spatial_dims,
        modalities=names,
        num_classes=max(2, *(max(len(f.class_fractions), f.declared_classes or 0) for f in fingerprints)),
        class_fractions=_pooled_fractions(fingerprints),
        spacing=spacing,
        median_size=size,
        patch_size=patch_size(size, multiple=size_multiple, max_voxels=budget)
        if task == "segmentation"
        else None,
        intensity=tuple(_normalisation(fingerprints, channel, name) for channel, name in enumerate(names)),
    )


def patch_size(median_size: Sequence[float], *, multiple: int, max_voxels: int) -> tuple[int, ...]:
    """The median size rounded up to a multiple of ``multiple`` (at least ``MIN_PATCH_SIDE``, at
    most ``MAX_PATCH_SIDE``), then shrunk by ``multiple`` along its longest side until it holds
    at most ``max_voxels`` voxels or every side is one ``multiple`` long."""
    smallest = math.ceil(MIN_PATCH_SIDE / multiple) * multiple
    largest = max(smallest, MAX_PATCH_SIDE // multiple * multiple)
    patch = [min(largest, max(smallest, math.ceil(size / multiple) * multiple)) for size in median_size]
    while math.prod(patch) > max_voxels and max(patch) > smallest:
        patch[patch.index(max(patch))] -= multiple
    return tuple(patch)


def _median_spacing(fingerprints: Sequence[Fingerprint]) -> tuple[float, ...] | None:
    spacings = [f.spacing for f in fingerprints]
    if any(spacing is None for spacing in spacings):
        return None
    return tuple(float(value) for value in np.median(np.array(spacings), axis=0))


def _median_size(fingerprints: Sequence[Fingerprint], spacing: tuple[float, ...] | None) -> tuple[float, ...]:
    if spacing is None:
        sizes = np.array([f.size for f in fingerprints])
    else:
        sizes = np.array([f.extent for f in fingerprints]) / np.array(spacing)
    return tuple(float(value) for value in np.median(sizes, axis=0))


def _pooled_fractions(fingerprints: Sequence[Fingerprint]) -> tuple[float, ...]:
    classes = max(len(f.class_fractions) for f in fingerprints)
    total = np.zeros(classes)
    for f in fingerprints:
        total[: len(f.class_fractions)] += np.array(f.class_fractions) * f.num_cases
    return tuple(float(value) for value in total / total.sum())


def _normalisation(fingerprints: Sequence[Fingerprint], channel: int, modality: str) -> Normalisation:
    """A CT window from the sites' median foreground percentiles for a CT channel (z-score when
    they give no range); a z-score over the foreground otherwise."""
    if modality.upper() != "CT":
        return Normalisation()
    low = float(np.median([f.intensity[channel].percentiles[0] for f in fingerprints]))
    high = float(np.median([f.intensity[channel].percentiles[2] for f in fingerprints]))
    return Normalisation("ct_window", (low, high)) if low < high else Normalisation()


def _list(values: Sequence[float], digits: int) -> str:
    return "[" + ", ".join(f"{value:.{digits}f}" for value in values) + "]"
