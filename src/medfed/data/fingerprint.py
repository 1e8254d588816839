"""A site's data fingerprint: the few summary numbers the study plan needs, never an image.

Like nnU-Net's dataset fingerprint (Isensee et al., Nature Methods 2021), but computed by each
site over its own cases and sent on its own: channels, spatial dimensionality, median voxel
spacing, median size in voxels and in millimetres, foreground intensity percentiles per
channel, and class frequencies. ``Fingerprint.to_dict`` is what leaves the site;
``Fingerprint.from_dict`` is how the receiver reads it, treating every value as hostile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

import numpy as np

from medfed.data.cases import Case, SiteData
from medfed.errors import DataError
from medfed.text import printable

FINGERPRINT_VERSION = 1
PERCENTILES = (0.5, 50.0, 99.5)
"""Foreground intensity percentiles each channel reports (nnU-Net's CT clipping bounds and median)."""
SAMPLES_PER_CASE = 10_000
"""Foreground voxels drawn per case and channel for the intensity statistics (as nnU-Net)."""
MAX_CLASSES = 256
MAX_CHANNELS = 16
MAX_CASES = 1_000_000
MAX_SIZE = 8192
"""Voxels along one axis."""
MAX_SPACING_MM = 100.0
MAX_EXTENT_MM = 10_000.0
MAX_INTENSITY = 1e7
"""Largest absolute intensity (any unit: HU, MRI signal, 8-bit colour)."""

Task = Literal["segmentation", "classification"]


@dataclass(frozen=True)
class ChannelIntensity:
    """Foreground intensities of one channel at one site.

    Attributes:
        percentiles: The 0.5th, 50th and 99.5th percentiles (``PERCENTILES``).
        mean: Mean.
        std: Standard deviation.
    """

    percentiles: tuple[float, float, float]
    mean: float
    std: float


@dataclass(frozen=True)
class Fingerprint:
    """Summary statistics of one site's cases.

    Attributes:
        site: The site (set by the receiver from who sent it, never read from the record).
        num_cases: How many cases were summarised.
        channels: Image channels.
        spatial_dims: 2 or 3.
        spacing: Median voxel spacing per spatial axis in mm, or ``None`` when a case has none.
        size: Median size per spatial axis in voxels.
        extent: Median size per spatial axis in mm (size times spacing), or ``None``.
        intensity: Foreground intensities, one entry per channel.
        class_fractions: Segmentation: the fraction of voxels of each mask value ``0..K``;
            classification: the fraction of cases of each label ``0..K``.
        declared_classes: Classes the site declares (one more than the largest value of its
            ``dataset.json`` ``labels``), or ``None`` when it declares none.
    """

    site: str
    num_cases: int
    channels: int
    spatial_dims: int
    spacing: tuple[float, ...] | None
    size: tuple[float, ...]
    extent: tuple[float, ...] | None
    intensity: tuple[ChannelIntensity, ...]
    class_fractions: tuple[float, ...]
    declared_classes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-compatible values (what leaves the site), without the site name."""
        return {
            "version": FINGERPRINT_VERSION,
            "num_cases": self.num_cases,
            "channels": self.channels,
            "spatial_dims": self.spatial_dims,
            "spacing": None if self.spacing is None else list(self.spacing),
            "size": list(self.size),
            "extent": None if self.extent is None else list(self.extent),
            "intensity": [
                {"percentiles": list(entry.percentiles), "mean": entry.mean, "std": entry.std}
                for entry in self.intensity
            ],
            "class_fractions": list(self.class_fractions),
            "declared_classes": self.declared_classes,
        }

    @classmethod
    def from_dict(cls, payload: object, *, site: str) -> Fingerprint:
        """Reads a record that ``site`` sent, checking every key, type and bound.

        Raises:
            DataError: Naming ``site`` and the first field at fault.
        """
        return _Reader(site).fingerprint(payload)


def fingerprint_site(site: SiteData, *, task: Task, seed: int = 0) -> Fingerprint:
    """The fingerprint of ``site``'s cases (computed at the site).

    Intensities are taken over the foreground: a case's mask > 0 when it has a labelled voxel,
    otherwise its voxels that are non-zero in some channel; ``SAMPLES_PER_CASE`` of them per
    case, drawn with ``seed``.

    Raises:
        DataError: If the site has no case, or its cases differ in channels or dimensionality.
    """
    cases = site.cases
    if not cases:
        raise DataError(site.name, None, "the site has no case to summarise")
    channels, dims = cases[0].image.shape[0], cases[0].image.ndim - 1
    for case in cases:
        if case.image.shape[0] != channels or case.image.ndim - 1 != dims:
            reason = (
                f"case '{case.case_id}' has {case.image.shape[0]} channels and {case.image.ndim - 1} "
                f"spatial axes, case '{cases[0].case_id}' {channels} and {dims}"
            )
            raise DataError(site.name, case.source, reason)
    sizes = np.array([case.image.shape[1:] for case in cases], dtype=np.float64)
    known = [case.spacing for case in cases]
    spacings = None if any(s is None for s in known) else np.array(known, dtype=np.float64)
    return Fingerprint(
        site=site.name,
        num_cases=len(cases),
        channels=channels,
        spatial_dims=dims,
        spacing=None if spacings is None else _floats(np.median(spacings, axis=0)),
        size=_floats(np.median(sizes, axis=0)),
        extent=None if spacings is None else _floats(np.median(sizes * spacings, axis=0)),
        intensity=_intensities(site, channels, seed),
        class_fractions=class_fractions(site, task),
        declared_classes=_declared_classes(site, task),
    )


def _declared_classes(site: SiteData, task: Task) -> int | None:
    """One more than the largest mask value ``site`` declares (segmentation), else ``None``."""
    if task != "segmentation" or not site.classes:
        return None
    largest = max(site.classes)
    if not 0 <= largest < MAX_CLASSES:
        raise DataError(site.name, None, f"declared label {largest} is outside 0..{MAX_CLASSES - 1}")
    return largest + 1


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(value) for value in values)


def _intensities(site: SiteData, channels: int, seed: int) -> tuple[ChannelIntensity, ...]:
    rng = np.random.default_rng(seed)
    samples: list[list[np.ndarray]] = [[] for _ in range(channels)]
    for case in site.cases:
        where = np.flatnonzero(_foreground(case))
        chosen = rng.choice(where, size=min(SAMPLES_PER_CASE, where.size), replace=False)
        for channel in range(channels):
            samples[channel].append(case.image[channel].reshape(-1)[chosen].astype(np.float64))
    return tuple(_summary(np.concatenate(values)) for values in samples)


def _foreground(case: Case) -> np.ndarray:
    """Labelled voxels, else voxels non-zero in some channel, else every voxel ``(H, W[, D])``."""
    for candidate in (None if case.mask is None else case.mask[0] > 0, (case.image != 0).any(axis=0)):
        if candidate is not None and candidate.any():
            return candidate
    return np.ones(case.image.shape[1:], dtype=bool)


def _summary(values: np.ndarray) -> ChannelIntensity:
    low, median, high = (float(p) for p in np.percentile(values, PERCENTILES))
    return ChannelIntensity((low, median, high), float(values.mean()), float(values.std()))


def class_fractions(site: SiteData, task: Task) -> tuple[float, ...]:
    """Fraction of each value ``0..K``: of mask voxels (segmentation) or of case labels
    (classification); ``(1.0,)`` when the site has none.

    Raises:
        DataError: A value outside ``0..MAX_CLASSES - 1``.
    """
    if task == "segmentation":
        arrays = [case.mask for case in site.cases if case.mask is not None]
    else:
        arrays = [np.array([case.label]) for case in site.cases if case.label is not None]
    counts = np.zeros(MAX_CLASSES, dtype=np.int64)
    for values in arrays or [np.zeros(1, dtype=np.int64)]:
        if int(values.min()) < 0 or int(values.max()) >= MAX_CLASSES:
            raise DataError(site.name, None, f"class values must lie in 0..{MAX_CLASSES - 1}")
        counts += np.bincount(values.reshape(-1).astype(np.int64), minlength=MAX_CLASSES)
    counts = counts[: int(np.flatnonzero(counts).max()) + 1]
    return _floats(counts / counts.sum())


class _Reader:
    """Reads one untrusted fingerprint record, naming ``site`` and the field in every error."""

    def __init__(self, site: str) -> None:
        self.site = site

    def fingerprint(self, payload: object) -> Fingerprint:
        record = self._record(payload, "fingerprint", _KEYS)
        if record["version"] != FINGERPRINT_VERSION or isinstance(record["version"], bool):
            self._fail("version", f"must be {FINGERPRINT_VERSION}")
        channels = self._int(record["channels"], "channels", 1, MAX_CHANNELS)
        dims = self._int(record["spatial_dims"], "spatial_dims", 2, 3)
        spacing = self._optional(record["spacing"], "spacing", dims, 1e-3, MAX_SPACING_MM)
        extent = self._optional(record["extent"], "extent", dims, 1e-3, MAX_EXTENT_MM)
        if (spacing is None) != (extent is None):
            self._fail("extent", "must be given exactly when spacing is")
        entries = self._list(record["intensity"], "intensity", channels, channels)
        return Fingerprint(
            site=self.site,
            num_cases=self._int(record["num_cases"], "num_cases", 1, MAX_CASES),
            channels=channels,
            spatial_dims=dims,
            spacing=spacing,
            size=self._numbers(record["size"], "size", dims, dims, 1.0, MAX_SIZE),
            extent=extent,
            intensity=tuple(self._intensity(entry, f"intensity[{i}]") for i, entry in enumerate(entries)),
            class_fractions=self._fractions(record["class_fractions"]),
            declared_classes=None
            if record["declared_classes"] is None
            else self._int(record["declared_classes"], "declared_classes", 1, MAX_CLASSES),
        )

    def _intensity(self, payload: object, field: str) -> ChannelIntensity:
        record = self._record(payload, field, ("percentiles", "mean", "std"))
        low, median, high = self._numbers(record["percentiles"], f"{field}.percentiles", 3, 3)
        if not low <= median <= high:
            self._fail(f"{field}.percentiles", "must be in increasing order")
        mean = self._number(record["mean"], f"{field}.mean", -MAX_INTENSITY, MAX_INTENSITY)
        std = self._number(record["std"], f"{field}.std", 0.0, MAX_INTENSITY)
        return ChannelIntensity((low, median, high), mean, std)

    def _fractions(self, payload: object) -> tuple[float, ...]:
        fractions = self._numbers(payload, "class_fractions", 1, MAX_CLASSES, 0.0, 1.0)
        if abs(sum(fractions) - 1.0) > 1e-6:
            self._fail("class_fractions", "must sum to 1")
        return fractions

    def _record(self, payload: object, field: str, keys: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(payload, Mapping):
            self._fail(field, "must be a mapping")
        if set(payload) != set(keys):
            names = sorted(printable(str(key), 40) for key in set(payload) ^ set(keys))[:5]
            self._fail(field, f"must have exactly the keys {sorted(keys)}; differs in {names}")
        return payload

    def _optional(
        self, payload: object, field: str, length: int, low: float, high: float
    ) -> tuple[float, ...] | None:
        return None if payload is None else self._numbers(payload, field, length, length, low, high)

    def _numbers(
        self,
        payload: object,
        field: str,
        shortest: int,
        longest: int,
        low: float = -MAX_INTENSITY,
        high: float = MAX_INTENSITY,
    ) -> tuple[float, ...]:
        values = self._list(payload, field, shortest, longest)
        return tuple(self._number(value, f"{field}[{i}]", low, high) for i, value in enumerate(values))

    def _list(self, payload: object, field: str, shortest: int, longest: int) -> list[Any]:
        if not isinstance(payload, list) or not shortest <= len(payload) <= longest:
            count = f"{shortest}" if shortest == longest else f"{shortest} to {longest}"
            self._fail(field, f"must be a list of {count} entries")
        return payload

    def _number(self, payload: object, field: str, low: float, high: float) -> float:
        if isinstance(payload, bool) or not isinstance(payload, int | float):
            self._fail(field, "must be a number")
        value = float(payload) if abs(payload) < 1e300 else math.inf  # float() overflows on huge ints
        if not (math.isfinite(value) and low <= value <= high):
            self._fail(field, f"must be a finite number in [{low:g}, {high:g}]")
        return value

    def _int(self, payload: object, field: str, low: int, high: int) -> int:
        if isinstance(payload, bool) or not isinstance(payload, int) or not low <= payload <= high:
            self._fail(field, f"must be an integer in [{low}, {high}]")
        return payload

    def _fail(self, field: str, reason: str) -> NoReturn:
        raise DataError(self.site, None, f"fingerprint field '{field}' {reason}")


_KEYS = (
    "version",
    "num_cases",
    "channels",
    "spatial_dims",
    "spacing",
    "size",
    "extent",
    "intensity",
    "class_fractions",
    "declared_classes",
)
