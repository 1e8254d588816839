"""Matplotlib figures of a run, rendered to PNG bytes (``Figure`` objects: no pyplot, no global backend)."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

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
    figure = Figure(figsize=(11, 4.5), layout="constrained")  # room for the shared legend below
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
        _round_axes(axis, metric)
    _shared_legend(figure, axes[0])
    return _png(figure)


def training_curves(rows: Sequence[MetricRow]) -> bytes:
    """Each experiment's training loss per round, the mean over its sites."""
    figure = Figure(figsize=(5.5, 4))
    axis = figure.subplots()
    curves: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row.split == Split.TRAIN and row.metric == "loss":
            curves[row.experiment][row.round].append(row.value)
    for experiment, by_round in sorted(curves.items()):
        rounds = sorted(by_round)
        axis.plot(rounds, [np.nanmean(by_round[r]) for r in rounds], marker=".", label=experiment)
    axis.set_title("training loss (mean over sites)")
    _round_axes(axis, "loss")
    axis.legend(fontsize=8)
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
    _round_axes(axis, metric)
    axis.legend(fontsize=8)
    return _png(figure)


_OWN_HELD_OUT = frozenset({Split.TEST, Split.EVAL})
"""A training site's own held-out cases, simulated or deployed."""


def privacy_utility(rows: Sequence[MetricRow], *, metric: str) -> bytes | None:
    """Each DP site's final ``metric`` on its own held-out cases (simulated ``test`` or deployed
    ``eval``) against the epsilon it spent, one line per experiment: the privacy-utility curve
    of a run whose sites have different budgets (``privacy.sites``). ``None`` when fewer than two
    distinct epsilons were spent."""
    epsilon = _last_values(rows, lambda row: row.split == Split.PRIVACY and row.metric == "epsilon")
    score = _last_values(rows, lambda row: row.split in _OWN_HELD_OUT and row.metric == metric)
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for (experiment, site), spent in epsilon.items():
        if (experiment, site) in score:
            points[experiment].append((spent, score[experiment, site]))
    if len({round(spent, 3) for curve in points.values() for spent, _ in curve}) < 2:
        return None
    figure = Figure(figsize=(5.5, 4))
    axis = figure.subplots()
    for experiment, curve in sorted(points.items()):
        curve.sort()
        axis.plot([p[0] for p in curve], [p[1] for p in curve], marker="o", label=experiment)
    axis.set_title(f"privacy-utility: {metric} per site vs its epsilon")
    axis.set_xlabel("epsilon spent")
    axis.set_ylabel(f"{metric} (site's held-out cases)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return _png(figure)


def _last_values(
    rows: Sequence[MetricRow], keep: Callable[[MetricRow], bool]
) -> dict[tuple[str, str], float]:
    """``(experiment, site) -> value`` at the last round of the rows ``keep`` accepts."""
    last: dict[tuple[str, str], tuple[int, float]] = {}
    for row in rows:
        key = (row.experiment, row.site)
        if keep(row) and row.round >= last.get(key, (-1, 0.0))[0]:
            last[key] = (row.round, row.value)
    return {key: value for key, (_, value) in last.items()}


def _round_axes(axis: Axes, metric: str) -> None:
    """Rounds on the x axis with integer ticks, ``metric`` on the y axis, a light grid."""
    axis.set_xlabel("round")
    axis.set_ylabel(metric)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)


def _shared_legend(figure: Figure, axes: Sequence[Axes]) -> None:
    """One legend under the panels for every curve drawn in any of them (none without curves)."""
    entries: dict[str, Artist] = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        figure.legend(
            list(entries.values()),
            list(entries),
            loc="outside lower center",
            ncol=min(len(entries), 6),
            fontsize=8,
        )


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
    if figure.get_layout_engine() is None:
        figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()
