"""Matplotlib figures of a run, rendered to PNG bytes (``Figure`` objects: no pyplot, no global backend)."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from medfed.orchestration.metrics_log import HELD_OUT, MetricRow, Split


@dataclass(frozen=True)
class SampleImage:
    """One held-out case for the report: a 2D slice, its true mask and a predicted mask (HW)."""

    site: str
    case_id: str
    image: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray
    model: str


def learning_curves(rows: Sequence[MetricRow], *, metric: str, unseen_site: str | None) -> bytes:
    """Mean held-out ``metric`` per round for each experiment, and on the unseen site."""
    figure = Figure(figsize=(11, 4))
    axes = figure.subplots(1, 2, squeeze=False)
    for axis, unseen in zip(axes[0], (False, True), strict=True):
        curves: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for row in rows:
            if row.metric == metric and (row.site == unseen_site) == unseen and row.split in HELD_OUT:
                curves[row.experiment][row.round].append(row.value)
        for experiment, by_round in curves.items():
            rounds = sorted(by_round)
            axis.plot(rounds, [np.nanmean(by_round[r]) for r in rounds], marker=".", label=experiment)
        axis.set_title(f"{metric} on {'unseen site' if unseen else 'training sites (held-out)'}")
        axis.set_xlabel("round")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return _png(figure)


def site_curves(
    rows: Sequence[MetricRow], *, experiment: str, metric: str, splits: Collection[Split]
) -> bytes:
    """``metric`` per round at each site for one experiment, from the rows of ``splits``."""
    figure = Figure(figsize=(5.5, 4))
    axis = figure.subplots()
    by_site: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in rows:
        if row.experiment == experiment and row.metric == metric and row.split in splits:
            by_site[row.site].append((row.round, row.value))
    for site, points in sorted(by_site.items()):
        points.sort()
        axis.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=site)
    axis.set_title(f"{experiment}: {metric} per site")
    axis.set_xlabel("round")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return _png(figure)


def sample_grid(samples: Sequence[SampleImage]) -> bytes:
    """Each sample as three panels: image, true mask and predicted mask drawn over the image."""
    figure = Figure(figsize=(8, 2.7 * len(samples)))
    axes = figure.subplots(len(samples), 3, squeeze=False)
    for row, sample in zip(axes, samples, strict=True):
        panels = (("image", None), ("true mask", sample.truth), (f"{sample.model}", sample.prediction))
        for axis, (title, mask) in zip(row, panels, strict=True):
            axis.imshow(sample.image, cmap="gray")
            if mask is not None:
                axis.imshow(np.ma.masked_equal(mask, 0), cmap="autumn", alpha=0.6, vmin=0, vmax=1)
            axis.set_title(f"{sample.site} / {sample.case_id}: {title}", fontsize=8)
            axis.axis("off")
    return _png(figure)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()
