"""Torch datasets over cases: preprocessing once, patches and MONAI augmentation on the fly."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.transforms import (
    Compose,
    MapTransform,
    RandAdjustContrastd,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandShiftIntensityd,
)
from torch.utils.data import Dataset

from medfed.data.cases import Case
from medfed.data.preprocessing import (
    DEFAULT_PREPROCESSING,
    SLICE_AXES,
    Preprocessing,
    as_meta,
    case_transforms,
    inferer,
    training_crop,
    training_padding,
    volume_slices,
)
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
        inferer: Whole-image inference for evaluation (logits on the image's own grid).
        patients: The patient of each sample (DP-SGD's privacy unit); ``None``: each sample is
            its own patient.
    """

    def __init__(
        self,
        images: list[torch.Tensor],
        targets: list[torch.Tensor],
        augment: Compose | None,
        *,
        inferer: Inferer,
        patients: Sequence[str] | None = None,
    ) -> None:
        self.images, self.targets, self.augment = images, targets, augment
        self.inferer = inferer
        self.patients = [str(index) for index in range(len(images))] if patients is None else list(patients)
        if len(self.patients) != len(images):
            raise ValueError(f"{len(self.patients)} patients for {len(images)} samples")

    def __len__(self) -> int:
        return len(self.images)

    def reseed(self, seed: int) -> None:
        """Restarts the augmentation's random sequence from ``seed`` (no-op without one), so a
        round replayed after a resume sees the same augmented samples."""
        if self.augment is not None:
            self.augment.set_random_state(seed=seed)

    def __getitem__(self, index: int) -> Sample:
        """``{"image": float32 (C, H, W[, D]), "label": int64 (1, H, W[, D]) or ()}``.

        Without augmentation the cached tensors themselves are returned: do not modify them
        in place.
        """
        sample = {"image": self.images[index], "label": self.targets[index]}
        if self.augment is not None:
            sample = self.augment(sample)
            if isinstance(sample, list):  # RandCropByPosNegLabeld's one patch
                (sample,) = sample
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
    preprocessing: Preprocessing = DEFAULT_PREPROCESSING,
    training: bool = False,
    num_classes: int | None = None,
    transform: Transform | None = None,
) -> CaseDataset:
    """Builds a dataset yielding ``{"image", "label"}`` dicts for training or evaluation.

    Each case is preprocessed once, up front (``medfed.data.preprocessing``; by default:
    zero mean and unit variance per channel over non-zero voxels, MONAI
    ``NormalizeIntensityd(nonzero=True, channel_wise=True)``). A training dataset then yields
    random patches of ``preprocessing.patch_size`` or, without one, whole images padded to the
    site's largest size and to a multiple of ``preprocessing.divisible_by``; an evaluation
    dataset yields whole images and carries the ``inferer`` that returns logits on their grid.
    With ``preprocessing.slices`` a training dataset's samples are the 2D slices of the
    (preprocessed) volumes. Each sample keeps its case's patient (``patients``).
    With ``augment``, each access applies random flips, intensity scale and shift, gamma-like
    contrast change and light Gaussian noise; the random sequence is fixed by ``seed``.

    Args:
        cases: The cases.
        task: ``"segmentation"`` (label = mask ``(1, H, W[, D])``) or ``"classification"``
            (label = 0-dim class tensor).
        augment: Whether to augment on the fly (for training).
        seed: Seed of the random state of patches and augmentation.
        site: The cases' site, named in error messages.
        preprocessing: How cases are brought to a common grid.
        training: Whether the dataset feeds training (patches or padding to one shape).
        num_classes: Classes the model outputs; a mask value at or above it is an error.
        transform: With ``augment``, applied at each access in place of the built-in
            augmentation (a copy per dataset, reseeded from ``seed`` when ``Randomizable``).

    Returns:
        The dataset.

    Raises:
        ValueError: If ``task`` is unknown.
        DataError: If a case lacks the mask (segmentation) or label (classification), has a
            mask value the model cannot output, or has no spacing while one is asked for.
    """
    if task not in ("segmentation", "classification"):
        raise ValueError(f"task must be 'segmentation' or 'classification', got {task!r}")
    keys = ["image", "label"] if task == "segmentation" else ["image"]
    prepare = Compose(case_transforms(preprocessing, keys))
    samples = [_prepared(site, case, task, prepare, preprocessing, num_classes) for case in cases]
    patients = [case.patient for case in cases]
    if training and preprocessing.slices is not None:
        samples, patients = _sliced(samples, patients, SLICE_AXES[preprocessing.slices], task)
    if training and preprocessing.patch_size is None and samples:
        largest = np.max([sample["image"].shape[1:] for sample in samples], axis=0).tolist()
        pad = Compose(training_padding(preprocessing, keys, largest))
        samples = [pad(sample) for sample in samples]
    random: list[Callable[..., Any]] = [*training_crop(preprocessing, keys)] if training else []
    if augment:
        random += _augmentation(task) if transform is None else [copy.deepcopy(transform)]
    augmentation = Compose(random) if random else None
    if augmentation is not None:
        augmentation.set_random_state(seed=seed)
    images = [_plain(sample["image"]).to(torch.float32) for sample in samples]
    targets = [_plain(sample["label"]).to(torch.int64) for sample in samples]
    return CaseDataset(images, targets, augmentation, inferer=inferer(preprocessing), patients=patients)


def _sliced(
    samples: list[dict[str, torch.Tensor]], patients: list[str], axis: int, task: Task
) -> tuple[list[dict[str, torch.Tensor]], list[str]]:
    """Each 3D sample replaced by its 2D slices across ``axis`` (the mask sliced alike; a case
    label kept), each slice keeping its case's patient."""
    sliced: list[dict[str, torch.Tensor]] = []
    owners: list[str] = []
    for sample, patient in zip(samples, patients, strict=True):
        images = volume_slices(_plain(sample["image"]), axis)
        label = _plain(sample["label"])
        labels = volume_slices(label, axis) if task == "segmentation" else [label] * len(images)
        sliced += [{"image": image, "label": label} for image, label in zip(images, labels, strict=True)]
        owners += [patient] * len(images)
    return sliced, owners


def _prepared(
    site: str,
    case: Case,
    task: Task,
    prepare: Compose,
    preprocessing: Preprocessing,
    num_classes: int | None,
) -> dict[str, torch.Tensor]:
    """One case after the once-per-case transforms, as ``{"image", "label"}``."""
    _check_fits(site, case, preprocessing)
    target = _target(site, case, task)
    if task == "segmentation" and num_classes is not None and int(target.max()) >= num_classes:
        reason = (
            f"case '{case.case_id}' has mask value {int(target.max())}, but the model outputs "
            f"{num_classes} classes (0..{num_classes - 1}); set model.params.out_channels"
        )
        raise DataError(site, case.source, reason)
    image = as_meta(case.image, case.spacing)
    if task == "segmentation":
        label: torch.Tensor = MetaTensor(target, affine=image.affine.clone())
    else:
        label = target
    return prepare({"image": image, "label": label})


def _check_fits(site: str, case: Case, preprocessing: Preprocessing) -> None:
    """Raises ``DataError`` unless ``case`` has the axes, channels and spacing ``preprocessing``
    needs."""
    axes, channels = case.image.ndim - 1, case.image.shape[0]
    if preprocessing.slices is not None and axes != 3:
        reason = f"case '{case.case_id}' has {axes} spatial axes; model.slices cuts 3D volumes"
        raise DataError(site, case.source, reason)
    trained = axes - (preprocessing.slices is not None)  # a patch of a slice is 2D
    for name, sizes, wanted in (
        ("spacing", preprocessing.spacing, axes),
        ("patch_size", preprocessing.patch_size, trained),
    ):
        if sizes is not None and len(sizes) != wanted:
            where = " per slice" if wanted < axes else ""
            reason = (
                f"case '{case.case_id}' has {wanted} spatial axes{where}, preprocessing.{name} {len(sizes)}"
            )
            raise DataError(site, case.source, reason)
    if len(preprocessing.intensity) not in (1, channels):
        reason = (
            f"case '{case.case_id}' has {channels} channels, preprocessing.intensity "
            f"{len(preprocessing.intensity)} entries (give one, or one per channel)"
        )
        raise DataError(site, case.source, reason)
    if preprocessing.spacing is not None and case.spacing is None:
        reason = f"case '{case.case_id}' has no known voxel spacing, so it cannot be resampled"
        raise DataError(site, case.source, reason)


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


def _augmentation(task: Task) -> list[MapTransform]:
    """Random flips (image and mask together) and intensity changes (image only)."""
    spatial_keys = ["image", "label"] if task == "segmentation" else ["image"]
    return [
        RandFlipd(spatial_keys, prob=0.5, spatial_axis=0),
        RandFlipd(spatial_keys, prob=0.5, spatial_axis=1),
        RandScaleIntensityd("image", factors=0.1, prob=0.5),
        RandShiftIntensityd("image", offsets=0.1, prob=0.5),
        RandAdjustContrastd("image", gamma=(0.8, 1.25), prob=0.3, retain_stats=True),
        RandGaussianNoised("image", std=0.05, prob=0.3),
    ]


def _plain(tensor: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A plain ``torch.Tensor`` (MONAI may return ``MetaTensor``s or arrays)."""
    if isinstance(tensor, MetaTensor):
        return tensor.as_tensor()
    return torch.as_tensor(tensor)
