"""Torch datasets over cases: intensity normalisation once, MONAI augmentation on the fly."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    NormalizeIntensity,
    RandAdjustContrastd,
    RandFlipd,
    RandGaussianNoised,
    Randomizable,
    RandScaleIntensityd,
    RandShiftIntensityd,
)
from torch.utils.data import Dataset

from medfed.data.cases import Case
from medfed.errors import DataError

Task = Literal["segmentation", "classification"]
Sample = dict[str, torch.Tensor]

Transform = Callable[[Sample], dict[str, Any]]
"""A dictionary transform of a training sample ``{"image": (C, H, W[, D]), "label": ...}``, e.g. a
MONAI ``Compose`` of ``*d`` transforms; a ``Randomizable`` one is reseeded for reproducibility."""


class CaseDataset(Dataset[Sample]):
    """Normalised images with their targets, optionally augmented at each access.

    Args:
        images: float32 tensors ``(C, H, W[, D])``, already normalised.
        targets: Masks ``(1, H, W[, D])`` (int64) or 0-dim int64 class tensors.
        augment: Random dict transform over ``{"image", "label"}``, or ``None``.
    """

    def __init__(
        self, images: list[torch.Tensor], targets: list[torch.Tensor], augment: Transform | None
    ) -> None:
        self.images, self.targets, self.augment = images, targets, augment

    def __len__(self) -> int:
        return len(self.images)

    def reseed(self, seed: int) -> None:
        """Restarts the augmentation's random sequence from ``seed`` (no-op without one), so a
        round replayed after a resume sees the same augmented samples."""
        if isinstance(self.augment, Randomizable):
            self.augment.set_random_state(seed=seed)

    def __getitem__(self, index: int) -> Sample:
        """``{"image": float32 (C, H, W[, D]), "label": int64 (1, H, W[, D]) or ()}``.

        Without augmentation the cached tensors themselves are returned: do not modify them
        in place.
        """
        sample = {"image": self.images[index], "label": self.targets[index]}
        if self.augment is not None:
            sample = self.augment(sample)
        return {
            "image": _plain(sample["image"]).to(torch.float32),
            "label": _plain(sample["label"]).to(torch.int64),
        }


def build_dataset(
    cases: Sequence[Case],
    *,
    task: Task,
    augment: bool,
    seed: int,
    site: str = "unnamed",
    transform: Transform | None = None,
) -> CaseDataset:
    """Builds a dataset yielding ``{"image", "label"}`` dicts for training or evaluation.

    Images are normalised once, up front, to zero mean and unit variance per channel over
    their non-zero voxels (MONAI ``NormalizeIntensity(nonzero=True, channel_wise=True)``).
    With ``augment``, each access applies random flips, intensity scale and shift, gamma-like
    contrast change and light Gaussian noise; the random sequence is fixed by ``seed``.

    Args:
        cases: The cases.
        task: ``"segmentation"`` (label = mask ``(1, H, W[, D])``) or ``"classification"``
            (label = 0-dim class tensor).
        augment: Whether to augment on the fly (for training).
        seed: Seed of the augmentation's random state.
        site: The cases' site, named in error messages.
        transform: With ``augment``, applied at each access in place of the built-in
            augmentation (reseeded from ``seed`` when ``Randomizable``).

    Returns:
        The dataset.

    Raises:
        ValueError: If ``task`` is unknown.
        DataError: If a case lacks the mask (segmentation) or label (classification).
    """
    if task not in ("segmentation", "classification"):
        raise ValueError(f"task must be 'segmentation' or 'classification', got {task!r}")
    targets = [_target(site, case, task) for case in cases]
    images = [_normalised(case.image) for case in cases]
    augmentation = None
    if augment:  # a copy per dataset: each keeps its own random state
        augmentation = _augmentation(task) if transform is None else copy.deepcopy(transform)
    if isinstance(augmentation, Randomizable):
        augmentation.set_random_state(seed=seed)
    return CaseDataset(images, targets, augmentation)


def _target(site: str, case: Case, task: Task) -> torch.Tensor:
    """The mask or the class of a case as an int64 tensor."""
    if task == "segmentation":
        if case.mask is None:
            reason = f"case '{case.case_id}' has no mask, which segmentation needs"
            raise DataError(site, case.source, reason)
        return torch.from_numpy(np.ascontiguousarray(case.mask, dtype=np.int64))
    if case.label is None:
        reason = f"case '{case.case_id}' has no label, which classification needs"
        raise DataError(site, case.source, reason)
    return torch.tensor(case.label, dtype=torch.int64)


def _normalised(image: np.ndarray) -> torch.Tensor:
    """Zero mean, unit variance per channel over non-zero voxels; float32 ``(C, H, W[, D])``."""
    normalise = NormalizeIntensity(nonzero=True, channel_wise=True)
    # a copy: NormalizeIntensity works in place and must not change the site's Case
    return _plain(normalise(torch.from_numpy(np.array(image, dtype=np.float32))))


def _augmentation(task: Task) -> Compose:
    """Random flips (image and mask together) and intensity changes (image only)."""
    spatial_keys = ["image", "label"] if task == "segmentation" else ["image"]
    return Compose(
        [
            RandFlipd(spatial_keys, prob=0.5, spatial_axis=0),
            RandFlipd(spatial_keys, prob=0.5, spatial_axis=1),
            RandScaleIntensityd("image", factors=0.1, prob=0.5),
            RandShiftIntensityd("image", offsets=0.1, prob=0.5),
            RandAdjustContrastd("image", gamma=(0.8, 1.25), prob=0.3, retain_stats=True),
            RandGaussianNoised("image", std=0.05, prob=0.3),
        ]
    )


def _plain(tensor: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A plain ``torch.Tensor`` (MONAI may return ``MetaTensor``s or arrays)."""
    if isinstance(tensor, MetaTensor):
        return tensor.as_tensor()
    return torch.as_tensor(tensor)
