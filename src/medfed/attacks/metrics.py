"""Image-similarity scores of reconstructions, after optimal matching to the true images.

A batch's gradient does not reveal which reconstruction is which image, so each true image is
paired with one reconstruction by the assignment that maximises the total PSNR (Hungarian
algorithm, ``scipy.optimize.linear_sum_assignment``), as in Geiping et al. 2020's evaluation.
PSNR and SSIM (Wang et al. 2004, "Image quality assessment: from error visibility to structural
similarity", IEEE TIP) are MONAI's, on images mapped to ``[0, 1]`` by the true image's range.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.metrics import PSNRMetric, SSIMMetric
from scipy.optimize import linear_sum_assignment

_MAX_PSNR = 100.0


@dataclass(frozen=True)
class Match:
    """Reconstructions paired with the true images.

    Attributes:
        targets: ``(B, C, H, W)`` true images in ``[0, 1]``.
        reconstructions: ``(B, C, H, W)`` matched reconstructions in ``[0, 1]``; row ``i`` is
            the reconstruction paired with true image ``i``.
        psnr: ``(B,)`` PSNR in dB of each pair.
        ssim: ``(B,)`` SSIM of each pair, in ``[-1, 1]``.
    """

    targets: torch.Tensor
    reconstructions: torch.Tensor
    psnr: torch.Tensor
    ssim: torch.Tensor


def to_unit_range(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Maps ``images`` affinely so that ``reference``'s min and max become 0 and 1, clamped.

    Args:
        images: ``(N, C, H, W)``.
        reference: ``(N, C, H, W)`` or ``(1, C, H, W)``; its range is taken per image.
    """
    low = reference.amin(dim=(1, 2, 3), keepdim=True)
    high = reference.amax(dim=(1, 2, 3), keepdim=True)
    return ((images - low) / (high - low).clamp_min(1e-12)).clamp(0.0, 1.0)


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(N,)`` PSNR in dB of images in ``[0, 1]`` with shape ``(N, C, H, W)``."""
    scores = PSNRMetric(max_val=1.0, reduction="none")(prediction, target)
    return torch.as_tensor(scores).reshape(-1)


def ssim(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(N,)`` SSIM (11x11 Gaussian window) of images in ``[0, 1]``; needs H, W >= 11."""
    metric = SSIMMetric(spatial_dims=2, data_range=1.0, reduction="none")
    return torch.as_tensor(metric(prediction, target)).reshape(-1)


def match_reconstructions(reconstructions: torch.Tensor, targets: torch.Tensor) -> Match:
    """Pairs each true image with a distinct reconstruction, maximising the total PSNR.

    Args:
        reconstructions: ``(R, C, H, W)`` in the model's input units, ``R >= B``.
        targets: ``(B, C, H, W)`` true images in the same units.

    Raises:
        ValueError: If there are fewer reconstructions than true images.
    """
    if len(reconstructions) < len(targets):
        raise ValueError(f"{len(reconstructions)} reconstructions for {len(targets)} images")
    scores = torch.stack([_pairwise_psnr(reconstructions, target) for target in targets])
    # Identical images have infinite PSNR, which the assignment solver rejects.
    rows, cols = linear_sum_assignment(scores.clamp(max=_MAX_PSNR).numpy(), maximize=True)
    pairs = zip(rows.tolist(), cols.tolist(), strict=True)
    matched = torch.cat([to_unit_range(reconstructions[c : c + 1], targets[r : r + 1]) for r, c in pairs])
    unit_targets = to_unit_range(targets, targets)
    return Match(unit_targets, matched, psnr(matched, unit_targets), ssim(matched, unit_targets))


def _pairwise_psnr(reconstructions: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(R,)`` PSNR of every reconstruction against one true image ``(C, H, W)``."""
    reference = target.unsqueeze(0)
    unit_target = to_unit_range(reference, reference).expand_as(reconstructions)
    return psnr(to_unit_range(reconstructions, reference), unit_target)
