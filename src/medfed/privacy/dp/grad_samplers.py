"""Opacus per-sample gradients of layers Opacus does not know: standardised convolutions, and
PReLU (MONAI's default activation, which Opacus would otherwise differentiate one sample at a
time with functorch: about a quarter of a DP step of MONAI's U-Net on the CPU).

PReLU is ``y = max(x, 0) + a * min(x, 0)``, so each sample's gradient with respect to the slope
``a`` is ``sum(dL/dy * min(x, 0))`` over its positions (and channels, for one shared slope).

A standardised convolution (``medfed.models.standardization``) convolves with
``W_hat = (W - mean) / s``, ``s = sqrt(var + eps)`` per output channel over its ``n`` fan-in
entries. Opacus's convolution sampler gives each sample's gradient ``g`` with respect to
``W_hat``; the chain rule through the standardisation (as in layer normalisation's backward)
gives the gradient with respect to ``W``:
``(g - mean(g)) / s - W_hat * mean(g * W_hat) / s``, means over the fan-in.
"""

from __future__ import annotations

import copy

import torch
from opacus.grad_sample import register_grad_sampler
from opacus.grad_sample.conv import compute_conv_grad_sample
from torch import nn

from medfed.models.standardization import (
    EPS,
    StandardizedConv1d,
    StandardizedConv2d,
    StandardizedConv3d,
    standardize,
)

_PLAIN: dict[type[nn.Module], type[nn.Module]] = {
    StandardizedConv1d: nn.Conv1d,
    StandardizedConv2d: nn.Conv2d,
    StandardizedConv3d: nn.Conv3d,
}


def standardization_backward(grad: torch.Tensor, weight: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Per-sample gradients ``(B, out, in, *kernel)`` with respect to the standardised weight,
    taken back to the raw ``weight`` ``(out, in, *kernel)``."""
    flat = weight.flatten(1)
    scale = (flat.var(dim=1, unbiased=False, keepdim=True) + eps).sqrt()  # (out, 1)
    standard = standardize(weight, eps).flatten(1)
    g = grad.flatten(2)  # (B, out, n)
    centred = g - g.mean(dim=2, keepdim=True)
    projection = (g * standard).mean(dim=2, keepdim=True) * standard
    return ((centred - projection) / scale).view_as(grad)


@register_grad_sampler([StandardizedConv1d, StandardizedConv2d, StandardizedConv3d])
def standardized_conv_grad_sample(
    layer: nn.Module, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Opacus's convolution per-sample gradients, the weight's taken through the
    standardisation."""
    plain = copy.copy(layer)  # shares the parameters; Opacus's sampler dispatches on the type
    plain.__class__ = _PLAIN[type(layer)]
    samples = compute_conv_grad_sample(plain, activations, backprops)
    weight = plain.weight
    assert isinstance(weight, nn.Parameter)
    if weight in samples and len(samples[weight]) > 0 and activations[0].shape[0] > 0:
        samples[weight] = standardization_backward(samples[weight], weight.detach())
    return samples


@register_grad_sampler(nn.PReLU)
def prelu_grad_sample(
    layer: nn.PReLU, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Each sample's gradient with respect to the PReLU slope(s), ``(B, num_parameters)``."""
    if not layer.weight.requires_grad:
        return {}
    negative = activations[0].clamp(max=0) * backprops
    if layer.num_parameters == 1:
        return {layer.weight: negative.reshape(len(negative), -1).sum(dim=1, keepdim=True)}
    return {layer.weight: negative.reshape(*negative.shape[:2], -1).sum(dim=2)}
