"""Evaluation with MONAI metrics: Dice and HD95 for masks; accuracy, AUC, sensitivity and
specificity for case-level classes."""

from __future__ import annotations

import math
import warnings

import torch
from monai.inferers import Inferer
from monai.metrics import DiceMetric, HausdorffDistanceMetric, ROCAUCMetric
from torch import nn
from torch.nn.functional import one_hot
from torch.utils.data import DataLoader, Dataset

from medfed.data.dataset import CaseDataset
from medfed.device import default_device
from medfed.training.class_scores import class_metrics
from medfed.types import Task


def whole_image_inferer(dataset: Dataset) -> Inferer | None:
    """The inferer a ``CaseDataset`` carries (sliding windows or padding), else ``None``."""
    return dataset.inferer if isinstance(dataset, CaseDataset) else None


@torch.no_grad()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    device: torch.device | None = None,
    inferer: Inferer | None = None,
) -> torch.Tensor:
    """Class probabilities (softmax) of ``model`` for ``images`` (BCHW[D]), returned on the CPU.

    With an ``inferer`` (e.g. MONAI ``SlidingWindowInferer``) the model runs through it; the
    probabilities then have the spatial size the inferer returns (the images' own).
    """
    device = device or default_device()
    model.to(device).eval()
    inputs = images.to(device)
    logits = model(inputs) if inferer is None else inferer(inputs, model)
    return torch.softmax(logits, dim=1).cpu()


CaseScores = dict[str, list[float]]
"""Per-case values in the dataset's order: ``{"dice": [...]}`` for segmentation (NaN for a case
without a lesion); ``{"label": [...], "prob0": [...], "prob1": [...], ...}`` (the true class and
each class's probability) for classification."""


def evaluate_cases(
    model: nn.Module,
    dataset: Dataset,
    *,
    task: Task,
    batch_size: int = 16,
    surface_distance: bool = True,
    device: torch.device | None = None,
) -> tuple[dict[str, float], CaseScores]:
    """Metrics of ``model`` on ``dataset``, and the per-case values they are computed from
    (``CaseScores``), for case counts and bootstrap intervals.

    For segmentation, Dice and HD95 (in voxels, skipped when ``surface_distance`` is false) are
    averaged over the cases that have a lesion, as MONAI does by default (``ignore_empty``).
    For classification: AUC (MONAI's, macro one-vs-rest), and accuracy (the fraction of cases
    whose most probable class is their true class), sensitivity and specificity (averaged over
    the classes other than 0) as the report scores them (``medfed.training.class_scores``).
    Masks are predicted through the dataset's ``inferer`` when it has one (a ``CaseDataset``:
    sliding windows or padding, cropped back), so metrics are on each image's own grid.
    Consecutive images of one size are batched together; images of other sizes start a new
    batch.
    """
    loader = DataLoader(dataset, batch_sampler=same_size_batches(dataset, batch_size))
    if task == "segmentation":
        return _segmentation_metrics(model, loader, device, surface_distance, whole_image_inferer(dataset))
    return _classification_metrics(model, loader, device)


def same_size_batches(dataset: Dataset, batch_size: int) -> list[list[int]]:
    """For a ``DataLoader``'s ``batch_sampler``: consecutive indices in batches of at most ``batch_size`` images of one shape (any
    dataset other than a ``CaseDataset`` is taken to hold images of one shape)."""
    count = len(dataset)  # type: ignore[arg-type]
    shapes = [image.shape for image in dataset.images] if isinstance(dataset, CaseDataset) else [None] * count
    batches: list[list[int]] = []
    for index, shape in enumerate(shapes):
        if index == 0 or shape != shapes[index - 1] or len(batches[-1]) == batch_size:
            batches.append([])
        batches[-1].append(index)
    return batches


def _segmentation_metrics(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | None,
    surface_distance: bool,
    inferer: Inferer | None,
) -> tuple[dict[str, float], CaseScores]:
    dice = DiceMetric(include_background=False)
    hd95 = HausdorffDistanceMetric(include_background=False, percentile=95.0)
    for batch in loader:
        probabilities = predict(model, batch["image"], device, inferer)
        num_classes = probabilities.shape[1]
        predicted = _one_hot(probabilities.argmax(dim=1), num_classes)
        truth = _one_hot(batch["label"][:, 0].long(), num_classes)
        dice(predicted, truth)
        if surface_distance:
            with warnings.catch_warnings():  # MONAI warns on every empty mask and on deprecations
                warnings.simplefilter("ignore")
                hd95(predicted, truth)
    per_case = dice.get_buffer()
    metrics = {"dice": _nanmean(per_case)}
    if surface_distance:
        metrics["hd95"] = _nanmean(hd95.get_buffer())
    return metrics, {"dice": _case_means(per_case)}


def _case_means(buffer: torch.Tensor) -> list[float]:
    """Each case's Dice averaged over the foreground classes it holds (a row of ``buffer``,
    ``(cases, classes)``); NaN for a case that holds none."""
    values = buffer.reshape(buffer.shape[0], -1)
    finite = torch.isfinite(values)
    sums = torch.where(finite, values, torch.zeros_like(values)).sum(dim=1)
    counts = finite.sum(dim=1)
    return [float(total / count) if count else math.nan for total, count in zip(sums, counts, strict=True)]


def _classification_metrics(
    model: nn.Module, loader: DataLoader, device: torch.device | None
) -> tuple[dict[str, float], CaseScores]:
    auc = ROCAUCMetric()
    for batch in loader:
        probabilities = predict(model, batch["image"], device)
        auc(probabilities, _one_hot(batch["label"].long().reshape(-1), probabilities.shape[1]))
    probabilities, truth = auc.get_buffer()
    metrics = class_metrics(probabilities.numpy(), truth.argmax(dim=1).numpy())
    try:
        metrics["auc"] = float(torch.as_tensor(auc.aggregate()))
    except (AssertionError, ValueError):  # a single class present: AUC undefined
        metrics["auc"] = math.nan
    return dict(sorted(metrics.items())), _class_cases(auc)  # accuracy, auc, sensitivity, ...


def _class_cases(auc: ROCAUCMetric) -> CaseScores:
    """The true class and each class's probability of every case the ``auc`` metric holds."""
    probabilities, truth = auc.get_buffer()
    cases: CaseScores = {"label": [float(label) for label in truth.argmax(dim=1)]}
    for k in range(probabilities.shape[1]):
        cases[f"prob{k}"] = [float(p) for p in probabilities[:, k]]
    return cases


def _one_hot(indices: torch.Tensor, num_classes: int) -> torch.Tensor:
    """B[spatial] class indices -> B x num_classes x [spatial] one-hot floats."""
    return one_hot(indices, num_classes).movedim(-1, 1).float()


def _nanmean(values: torch.Tensor) -> float:
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else math.nan
