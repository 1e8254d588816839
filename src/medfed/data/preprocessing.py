"""Preprocessing to a common grid, as MONAI dictionary transforms over ``{"image", "label"}``.

Cases arrive in RAS closest-canonical order (the loaders reorient NIfTI and DICOM). Once per
case: optional resampling to a target spacing (``Spacingd``), intensity normalisation of every
channel alike or of each channel on its own (z-score over the foreground,
``NormalizeIntensityd``, or a CT window, ``ScaleIntensityRanged``; ``SplitDimd`` and
``ConcatItemsd`` per channel) and an optional crop to the foreground (``CropForegroundd``).
Training then sees fixed-size random patches (``SpatialPadd``, then ``RandCropByPosNegLabeld``
for masks, ``RandSpatialCropd`` otherwise) or, without a patch size, every case padded to the
site's largest size and to a multiple of the network's total stride (``SpatialPadd`` +
``DivisiblePadd``). Evaluation runs whole images through ``SlidingWindowInferer`` (patch size
set) or ``PaddedInferer``, and both return logits on the image's own grid.

With ``slices`` (``model.slices``), a 2D network trains on the 2D slices of 3D volumes along one
anatomical axis (after the once-per-case transforms: patches and padding are then 2D), and
evaluation runs each volume slice by slice (``SliceWiseInferer``) back to a 3D prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import EllipsisType
from typing import Any, Literal

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer, SlidingWindowInferer
from monai.transforms import (
    ConcatItemsd,
    CropForegroundd,
    DeleteItemsd,
    DivisiblePadd,
    MapTransform,
    NormalizeIntensityd,
    RandCropByPosNegLabeld,
    RandSpatialCropd,
    ScaleIntensityRanged,
    Spacingd,
    SpatialPadd,
    SplitDimd,
)
from torch.nn.functional import pad

IntensityMode = Literal["zscore_foreground", "ct_window"]
SliceAxis = Literal["sagittal", "coronal", "axial"]

SLICE_AXES: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}
"""The spatial axis each slice direction cuts, in the RAS order every loader gives (x: towards
the patient's right-left, y: anterior, z: superior)."""


@dataclass(frozen=True)
class Normalisation:
    """Intensity normalisation of one channel (or of every channel alike).

    Attributes:
        mode: ``"zscore_foreground"`` (zero mean, unit variance over the channel's non-zero
            voxels; MRI) or ``"ct_window"`` (clip to ``window`` and scale it to ``[0, 1]``; CT).
        window: ``(lo, hi)`` of the CT window, in the image's units (HU).
    """

    mode: IntensityMode = "zscore_foreground"
    window: tuple[float, float] = (-1000.0, 1000.0)

    def __post_init__(self) -> None:
        if self.mode not in ("zscore_foreground", "ct_window"):
            raise ValueError(f"intensity mode must be 'zscore_foreground' or 'ct_window', got {self.mode!r}")
        if not self.window[0] < self.window[1]:
            raise ValueError(f"window must be (lo, hi) with lo < hi, got {self.window}")


@dataclass(frozen=True)
class Preprocessing:
    """How a site's cases are brought to a common grid.

    Attributes:
        spacing: Target voxel spacing in mm, one value per spatial axis, or ``None`` to keep
            each case's grid.
        intensity: One ``Normalisation`` for every channel, or one per channel (per modality,
            e.g. a CT window for a CT channel and a z-score for a PET channel).
        crop_foreground: Crop each case to the bounding box of its non-zero voxels after
            normalisation.
        patch_size: Training patch size (voxels per spatial axis), also the sliding-window size
            at evaluation; ``None`` trains and evaluates on whole images.
        divisible_by: Whole images are padded to a multiple of this (the network's total
            stride) for training and inference.
        slices: Train a 2D network on the slices of 3D volumes cut along this direction
            (``patch_size`` is then 2D), and infer slice by slice; ``None``: whole images.
    """

    spacing: tuple[float, ...] | None = None
    intensity: tuple[Normalisation, ...] = (Normalisation(),)
    crop_foreground: bool = False
    patch_size: tuple[int, ...] | None = None
    divisible_by: int = 1
    slices: SliceAxis | None = None

    def __post_init__(self) -> None:
        if not self.intensity:
            raise ValueError("intensity needs at least one Normalisation")
        if self.spacing is not None and not all(s > 0 for s in self.spacing):
            raise ValueError(f"spacing must be positive, got {self.spacing}")
        if self.patch_size is not None and not all(s >= 1 for s in self.patch_size):
            raise ValueError(f"patch_size must be positive, got {self.patch_size}")
        if self.divisible_by < 1:
            raise ValueError(f"divisible_by must be >= 1, got {self.divisible_by}")
        if self.slices is not None and self.slices not in SLICE_AXES:
            raise ValueError(f"slices must be one of {sorted(SLICE_AXES)}, got {self.slices!r}")


DEFAULT_PREPROCESSING = Preprocessing()
"""Today's behaviour: z-score over the foreground, whole images, no padding."""


def case_transforms(settings: Preprocessing, spatial_keys: Sequence[str]) -> list[MapTransform]:
    """The once-per-case transforms: spacing, intensity, foreground crop (in that order).

    Args:
        settings: The preprocessing.
        spatial_keys: Keys resampled and cropped with the image (``["image", "label"]`` for
            segmentation, ``["image"]`` for classification).
    """
    keys = list(spatial_keys)
    transforms: list[MapTransform] = []
    if settings.spacing is not None:
        modes = ["bilinear" if key == "image" else "nearest" for key in keys]
        transforms.append(Spacingd(keys, pixdim=settings.spacing, mode=modes))
    transforms += _intensity(settings.intensity)
    if settings.crop_foreground:
        transforms.append(CropForegroundd(keys, source_key="image", select_fn=_nonzero, allow_smaller=True))
    return transforms


def training_padding(
    settings: Preprocessing, spatial_keys: Sequence[str], largest: Sequence[int]
) -> list[MapTransform]:
    """Deterministic zero padding (at the far end of each axis, as ``PaddedInferer`` pads) of
    whole training images (no patch size) to one shape per site.

    Args:
        settings: The preprocessing (``divisible_by`` is used).
        spatial_keys: Keys padded with the image.
        largest: The site's largest size along each spatial axis.
    """
    keys = list(spatial_keys)
    return [
        SpatialPadd(keys, spatial_size=list(largest), method="end"),
        DivisiblePadd(keys, k=settings.divisible_by, method="end"),
    ]


FOREGROUND_PATCHES = (1, 2)
"""``(pos, neg)`` of ``RandCropByPosNegLabeld``: a third of the segmentation patches are centred
on a labelled voxel (nnU-Net's foreground oversampling), the rest on background."""


def training_crop(settings: Preprocessing, spatial_keys: Sequence[str]) -> list[MapTransform]:
    """Random fixed-size patches (images smaller than the patch are zero-padded first): with a
    mask (``"label"`` among ``spatial_keys``) balanced between foreground and background
    (``RandCropByPosNegLabeld``, one patch per access), otherwise uniform (``RandSpatialCropd``)."""
    if settings.patch_size is None:
        return []
    keys, size = list(spatial_keys), list(settings.patch_size)
    if "label" not in keys:
        return [
            SpatialPadd(keys, spatial_size=size),
            RandSpatialCropd(keys, roi_size=size, random_size=False),
        ]
    pos, neg = FOREGROUND_PATCHES
    crop = RandCropByPosNegLabeld(keys, label_key="label", spatial_size=size, pos=pos, neg=neg, num_samples=1)
    return [SpatialPadd(keys, spatial_size=size), crop]


def inferer(settings: Preprocessing) -> Inferer:
    """Whole-image inference: sliding windows of ``patch_size`` when set, else one padded pass;
    with ``slices``, either of those on every 2D slice of a volume."""
    if settings.patch_size is None:
        plane: Inferer = PaddedInferer(settings.divisible_by)
    else:
        plane = SlidingWindowInferer(roi_size=settings.patch_size, sw_batch_size=4, overlap=0.25)
    return plane if settings.slices is None else SliceWiseInferer(plane, SLICE_AXES[settings.slices])


def volume_slices(volume: torch.Tensor, axis: int) -> list[torch.Tensor]:
    """The 2D slices ``(C, ., .)`` of a channel-first volume ``(C, X, Y, Z)`` across spatial
    ``axis`` (0, 1 or 2), in order."""
    return list(torch.unbind(volume, dim=axis + 1))


class SliceWiseInferer(Inferer):
    """Runs a 2D network on every slice of 3D inputs across one spatial axis (through a 2D
    ``inner`` inferer, a few slices at a time) and stacks the logits back into a volume.

    Args:
        inner: The 2D inferer (``PaddedInferer`` or ``SlidingWindowInferer``).
        axis: The spatial axis the slices cut (0, 1 or 2).
        slices_per_pass: Slices run through the network at once (bounds the memory).
    """

    def __init__(self, inner: Inferer, axis: int, *, slices_per_pass: int = 32) -> None:
        super().__init__()
        self.inner, self.axis, self.slices_per_pass = inner, axis, slices_per_pass

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """Logits ``(B, K, X, Y, Z)`` of ``network`` for ``inputs`` ``(B, C, X, Y, Z)``."""
        batch, dim = inputs.shape[0], self.axis + 2
        planes = inputs.movedim(dim, 1).flatten(0, 1)  # (B * S, C, ., .)
        logits = torch.cat(
            [self.inner(chunk, network, *args, **kwargs) for chunk in planes.split(self.slices_per_pass)]
        )
        return logits.unflatten(0, (batch, -1)).movedim(1, dim)


class PaddedInferer(Inferer):
    """Runs a network once on inputs zero-padded (at the far end of each spatial axis) to a
    multiple of ``divisible_by``, and crops the output back to the input's spatial size.

    Args:
        divisible_by: The network's total stride.
    """

    def __init__(self, divisible_by: int) -> None:
        super().__init__()
        self.divisible_by = divisible_by

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """Logits ``(B, K, *spatial)`` of ``network`` for ``inputs`` ``(B, C, *spatial)``."""
        spatial = inputs.shape[2:]
        extra = [(-size) % self.divisible_by for size in spatial]
        padded = pad(inputs, [side for amount in reversed(extra) for side in (0, amount)])
        crop: tuple[EllipsisType | slice, ...] = (..., *(slice(0, size) for size in spatial))
        return network(padded, *args, **kwargs)[crop]


def as_meta(image: np.ndarray, spacing: Sequence[float] | None) -> MetaTensor:
    """A float32 copy of ``image`` with an affine holding ``spacing`` (identity when unknown)."""
    dims = image.ndim - 1
    affine = torch.eye(4, dtype=torch.float64)
    if spacing is not None:
        affine[:dims, :dims] = torch.diag(torch.tensor(list(spacing), dtype=torch.float64))
    return MetaTensor(torch.from_numpy(np.array(image, dtype=np.float32)), affine=affine)


def _intensity(normalisations: Sequence[Normalisation]) -> list[MapTransform]:
    """One normalisation of the whole image, or each channel split off, normalised on its own
    and concatenated back (``SplitDimd``, ``ConcatItemsd``)."""
    if len(normalisations) == 1:
        return [_normalise("image", normalisations[0])]
    keys = [f"image_{index}" for index in range(len(normalisations))]
    postfixes = [str(index) for index in range(len(normalisations))]
    return [
        SplitDimd("image", output_postfixes=postfixes, dim=0, keepdim=True),
        *(_normalise(key, normalisation) for key, normalisation in zip(keys, normalisations, strict=True)),
        ConcatItemsd(keys, "image", dim=0),
        DeleteItemsd(keys),
    ]


def _normalise(key: str, normalisation: Normalisation) -> MapTransform:
    if normalisation.mode == "ct_window":
        lo, hi = normalisation.window
        return ScaleIntensityRanged(key, a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)
    return NormalizeIntensityd(key, nonzero=True, channel_wise=True)


def _nonzero(image: torch.Tensor) -> torch.Tensor:
    """Foreground for ``CropForegroundd``: every non-zero voxel (of any channel)."""
    return image != 0
