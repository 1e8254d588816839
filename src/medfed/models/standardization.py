"""Weight standardisation (Qiao et al., "Micro-Batch Training with Batch-Channel Normalization
and Weight Standardization", 2019) for the convolutions of a MONAI network.

A standardised convolution convolves with ``(W - mean) / sqrt(var + eps)``, the mean and
variance taken per output channel over its fan-in. Under GroupNorm this is the DP-friendly
architecture of De et al. 2022 (DP-SGD cannot use BatchNorm). MONAI has no such layer: the
convolutions of MONAI's ``Convolution`` blocks that feed a normalisation layer are swapped for
``Standardized`` ones with the same weights and state-dict keys. Folding (``folded_weights``)
turns the weights into those of the plain network that computes the same function.
"""

from __future__ import annotations

from monai.networks.blocks import Convolution
from torch import Tensor, nn

from medfed.types import Weights

EPS = 1e-5
"""Added to the variance: keeps a constant filter finite."""


def standardize(weight: Tensor, eps: float = EPS) -> Tensor:
    """``weight`` ``(out, in, *kernel)`` with zero mean and unit variance per output channel."""
    flat = weight.flatten(1)
    mean = flat.mean(dim=1, keepdim=True)
    var = flat.var(dim=1, unbiased=False, keepdim=True)
    return ((flat - mean) / (var + eps).sqrt()).view_as(weight)


class Standardized:
    """Mixin of a ``nn.ConvNd`` that convolves with its standardised weight."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return super()._conv_forward(input, standardize(weight), bias)  # type: ignore[misc]


class StandardizedConv1d(Standardized, nn.Conv1d):
    """``nn.Conv1d`` with weight standardisation."""


class StandardizedConv2d(Standardized, nn.Conv2d):
    """``nn.Conv2d`` with weight standardisation."""


class StandardizedConv3d(Standardized, nn.Conv3d):
    """``nn.Conv3d`` with weight standardisation."""


STANDARDIZED: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv1d: StandardizedConv1d,
    nn.Conv2d: StandardizedConv2d,
    nn.Conv3d: StandardizedConv3d,
}


def standardize_convs(model: nn.Module) -> list[str]:
    """Replaces, in place, the convolution of every MONAI ``Convolution`` block of ``model``
    that is followed by a normalisation layer with its standardised twin (same weights); the
    others (residual, transposed and output convolutions) stay plain. Returns the names of the
    replaced convolutions."""
    replaced = []
    for name, block in model.named_modules():
        if not isinstance(block, Convolution) or not _normalised(block):
            continue
        conv = block.conv
        standardized = STANDARDIZED.get(type(conv)) if isinstance(conv, nn.Module) else None
        if standardized is not None:
            conv.__class__ = standardized  # same parameters and keys, standardised forward
            replaced.append(f"{name}.conv")
    return replaced


def _normalised(block: Convolution) -> bool:
    adn = getattr(block, "adn", None)
    return adn is not None and hasattr(adn, "N")


def folded_weights(model: nn.Module, weights: Weights) -> Weights:
    """``weights`` of ``model`` with every standardised convolution's weight replaced by its
    standardisation: the weights of the plain network that computes the same function."""
    folded = dict(weights)
    for name, module in model.named_modules():
        if isinstance(module, Standardized):
            key = f"{name}.weight"
            folded[key] = standardize(weights[key])
    return folded
