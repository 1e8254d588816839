"""Augmentation multiplicity for DP-SGD (De et al., "Unlocking High-Accuracy Differentially
Private Image Classification through Scale", 2022).

Each sampled case is augmented ``K`` times; the ``K`` per-view gradients are averaged into the
case's one per-sample gradient *before* it is clipped. A case still contributes one vector of
norm at most ``C`` to the noisy sum, so the sensitivity (and the privacy accounting) is that of
plain DP-SGD; the average has less augmentation variance than one view.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.utils.data import Dataset

Sample = dict[str, torch.Tensor]


class MultiViewDataset(Dataset[Sample]):
    """``dataset`` whose every access stacks ``views`` accesses of the same index: with a
    randomly augmenting ``dataset``, ``views`` independent augmentations of one case.

    Args:
        dataset: Yields ``{"image": (C, H, W[, D]), "label": ...}`` (augmented per access).
        views: ``K >= 1``, accesses per item.

    Raises:
        ValueError: ``views`` is below 1.
    """

    def __init__(self, dataset: Dataset[Sample], views: int) -> None:
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        self.dataset, self.views = dataset, views

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Sample:
        """Every key of the dataset's sample stacked over a new leading axis of size ``K``."""
        samples = [self.dataset[index] for _ in range(self.views)]
        return {key: torch.stack([sample[key] for sample in samples]) for key in samples[0]}


def flatten_views(batch: Mapping[str, torch.Tensor]) -> Sample:
    """A batch of ``B`` multi-view items ``(B, K, ...)`` as one batch of ``B * K`` views, each
    case's ``K`` views consecutive."""
    return {key: value.flatten(0, 1) for key, value in batch.items()}


def average_views(grad_sample: torch.Tensor, views: int) -> torch.Tensor:
    """Per-view gradients ``(B * K, ...)`` (each case's ``K`` views consecutive) averaged into
    per-case gradients ``(B, ...)``.

    Raises:
        ValueError: The leading size is not a multiple of ``views``.
    """
    if views < 1 or grad_sample.shape[0] % views:
        raise ValueError(f"{grad_sample.shape[0]} per-view gradients are not a multiple of {views} views")
    return grad_sample.unflatten(0, (-1, views)).mean(dim=1)
