"""Matplotlib figures of a run, rendered to PNG bytes (``Figure`` objects: no pyplot, no global backend)."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from medfed.orchestration.metrics_log import HELD_OUT, MetricRow, Split
from medfed.report.classification import RocCurve


@dataclass(frozen=True)
class Prediction:
    """One model's predicted mask of a sample (HW, on the sample's slice), the case's Dice and
    the model's kind (``federated``, ``centralized`` or ``local``)."""

    model: str
    mask: np.ndarray
    dice: float
    kind: str = "federated"


MAX_SAMPLE_MODELS = 6
"""Predictions shown in a row of the sample figure (7 panels of 1.7 in: the report's width)."""

_KIND_ORDER = ("federated", "centralized", "local")


@dataclass(frozen=True)
class SampleImage:
    """One held-out case for the report: a 2D slice (HW) of its image and true mask, and each
    compared model's predicted mask on that slice.

    Attributes:
        site: The site holding the case.
        case_id: The case.
        image: The slice's first channel.
        truth: The true mask on the slice.
        predictions: Each model's prediction, in the order shown.
        slice_index: For a 3D case, the axial (last-axis) index of the slice shown.
    """

    site: str
    case_id: str
    image: np.ndarray
    truth: np.ndarray
    predictions: tuple[Prediction, ...]
    slice_index: int | None = None


def learning_curves(rows: Sequence[MetricRow], *, metric: str, unseen_site: str | None) -> bytes:
    """Mean held-out ``metric`` per round for each experiment, and on the unseen site; over
    several seeds, the mean of the seeds' curves with a band of ±1 sample standard deviation."""
    figure = Figure(figsize=(11, 4.5), layout="constrained")  # room for the shared legend below
    axes = figure.subplots(1, 2, squeeze=False)
    for axis, unseen in zip(axes[0], (False, True), strict=True):
        curves: dict[str, dict[int, dict[int, list[float]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(list))
        )
        for row in rows:
            if row.metric == metric and (row.site == unseen_site) == unseen and row.split in HELD_OUT:
                curves[row.experiment][row.round][row.seed].append(row.value)
        for experiment, by_round in curves.items():
            rounds = sorted(by_round)
            mean, sd = seed_band([by_round[r] for r in rounds])
            (line,) = axis.plot(rounds, mean, marker=".", label=experiment)
            if np.isfinite(sd).any():
                axis.fill_between(rounds, mean - sd, mean + sd, color=line.get_color(), alpha=0.2, lw=0)
        axis.set_title(f"{metric} on {'unseen site' if unseen else 'training sites (held-out)'}")
        _round_axes(axis, metric)
    _shared_legend(figure, axes[0])
    return _png(figure)


def seed_band(points: Sequence[Mapping[int, Sequence[float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Per point (a round), the mean over seeds of each seed's mean value, and the sample
    standard deviation of those means (``nan`` where fewer than two seeds have a finite mean)."""
    means = [[float(np.nanmean(values)) for values in by_seed.values()] for by_seed in points]
    finite = [[value for value in point if np.isfinite(value)] for point in means]
    mean = np.array([np.mean(point) if point else np.nan for point in finite])
    sd = np.array([np.std(point, ddof=1) if len(point) > 1 else np.nan for point in finite])
    return mean, sd


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
    """Rounds on the x axis with integer ticks (a round either side of a single one, which
    would otherwise get fractional ticks), ``metric`` on the y axis, a light grid."""
    axis.set_xlabel("round")
    axis.set_ylabel(metric)
    low, high = axis.get_xlim()
    if high - low < 2:
        middle = round((low + high) / 2)
        axis.set_xlim(middle - 1, middle + 1)
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
    """``sample_figure`` as PNG."""
    return _png(sample_figure(samples))


def sample_figure(samples: Sequence[SampleImage]) -> Figure:
    """A row per sample: the image with the true mask outlined (titled with the slice index
    of a 3D case), then the first ``MAX_SAMPLE_MODELS`` of its ``ranked_predictions``, each
    filled over the image (the true mask outlined again) and titled with the model and the
    case's Dice; the models left out are named below the figure."""
    ranked = [ranked_predictions(sample.predictions) for sample in samples]
    shown = [predictions[:MAX_SAMPLE_MODELS] for predictions in ranked]
    columns = 1 + max(len(predictions) for predictions in shown)
    figure = Figure(figsize=(1.7 * columns, 2.0 * len(samples)), layout="constrained")
    axes = figure.subplots(len(samples), columns, squeeze=False)
    for row, sample, predictions in zip(axes, samples, shown, strict=True):
        where = "" if sample.slice_index is None else f", axial slice {sample.slice_index}"
        _mask_panel(row[0], sample, None, f"{sample.site} / {sample.case_id}\ntrue mask{where}")
        for axis, prediction in zip(row[1:], predictions, strict=False):
            dice = "–" if not np.isfinite(prediction.dice) else f"{prediction.dice:.3f}"
            _mask_panel(axis, sample, prediction.mask, f"{prediction.model}\nDice {dice}")
        for axis in row:
            axis.axis("off")
    dropped = [
        f"{sample.site}: {', '.join(p.model for p in predictions[MAX_SAMPLE_MODELS:])}"
        for sample, predictions in zip(samples, ranked, strict=True)
        if len(predictions) > MAX_SAMPLE_MODELS
    ]
    if dropped:
        figure.supxlabel(
            f"not shown (at most {MAX_SAMPLE_MODELS} models a row, federated first): {'; '.join(dropped)}",
            fontsize=7,
        )
    return figure


def ranked_predictions(predictions: Sequence[Prediction]) -> list[Prediction]:
    """``predictions`` with federated models first, then centralized, then local-only ones
    (each kind in its given order); a row shows the first ``MAX_SAMPLE_MODELS``."""
    rank = {kind: index for index, kind in enumerate(_KIND_ORDER)}
    return sorted(predictions, key=lambda prediction: rank.get(prediction.kind, len(rank)))


def _mask_panel(axis: Axes, sample: SampleImage, filled: np.ndarray | None, title: str) -> None:
    """``sample``'s image with ``filled`` (a mask, if any) over it and its true mask outlined."""
    axis.imshow(sample.image, cmap="gray", interpolation="nearest")
    if filled is not None:
        top = max(1, int(sample.truth.max()), int(filled.max()))
        axis.imshow(
            np.ma.masked_equal(filled, 0),
            cmap="autumn",
            alpha=0.55,
            vmin=0,
            vmax=top,
            interpolation="nearest",
        )
    if sample.truth.any():
        axis.contour(sample.truth > 0, levels=[0.5], colors="cyan", linewidths=0.8)
    axis.set_title(title, fontsize=7)


def roc_figure(own: Sequence[RocCurve], unseen: Sequence[RocCurve]) -> bytes:
    """The ROC curves of each experiment on its own sites' held-out cases and on the unseen
    site (a panel each, the second only with curves), each labelled with its AUC and cases."""
    panels = [("training sites (held-out, pooled)", own), ("unseen site", unseen)]
    panels = [panel for panel in panels if panel[1]] or panels[:1]
    figure = Figure(figsize=(4.4 * len(panels), 4.4), layout="constrained")
    for axis, (where, curves) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        axis.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
        for curve in curves:
            label = f"{curve.experiment} (AUC {curve.auc:.3f}, n={curve.cases})"
            axis.plot(curve.false_positive_rate, curve.true_positive_rate, label=label)
        axis.set_title(f"ROC on {where}", fontsize=10)
        axis.set_xlabel("false positive rate (1 - specificity)")
        axis.set_ylabel("true positive rate (sensitivity)")
        axis.set_aspect("equal")
        axis.grid(alpha=0.3)
        if curves:
            axis.legend(fontsize=7, loc="lower right")
    return _png(figure)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    if figure.get_layout_engine() is None:
        figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()
