"""Opacus per-sample gradients of layers Opacus does not know: standardised convolutions, and
PReLU and transposed convolutions (MONAI's U-Net uses both; Opacus would otherwise
differentiate them one sample at a time with functorch: about a quarter of a DP step of that
U-Net on the CPU).

PReLU is ``y = max(x, 0) + a * min(x, 0)``, so each sample's gradient with respect to the slope
``a`` is ``sum(dL/dy * min(x, 0))`` over its positions (and channels, for one shared slope).

A transposed convolution sends input position ``i`` through kernel offset ``k`` to output
position ``i * stride + k * dilation - padding``, so the gradient of weight ``W[c_in, c_out, k]``
is ``sum_i x[c_in, i] * dL/dy[c_out, i * stride + k * dilation - padding]``: the input against
the patches of ``dL/dy`` unfolded with the layer's own kernel, stride, padding and dilation (one
patch per input position; output padding adds positions no input reaches).

A standardised convolution (``medfed.models.standardization``) convolves with
``W_hat = (W - mean) / s``, ``s = sqrt(var + eps)`` per output channel over its ``n`` fan-in
entries. Opacus's convolution sampler gives each sample's gradient ``g`` with respect to
``W_hat``; the chain rule through the standardisation (as in layer normalisation's backward)
gives the gradient with respect to ``W``:
``(g - mean(g)) / s - W_hat * mean(g * W_hat) / s``, means over the fan-in.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
from opacus.grad_sample import register_grad_sampler
from opacus.grad_sample.conv import compute_conv_grad_sample
from opacus.utils.tensor_utils import unfold2d, unfold3d
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


@register_grad_sampler([nn.ConvTranspose2d, nn.ConvTranspose3d])
def conv_transpose_grad_sample(
    layer: nn.ConvTranspose2d | nn.ConvTranspose3d, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Each sample's gradients with respect to the weight ``(B, in, out / groups, *kernel)``
    and the bias ``(B, out)``."""
    inputs = activations[0]
    batch, positions = len(inputs), inputs[0, 0].numel()
    padding = cast(tuple[int, ...], layer.padding)
    samples: dict[nn.Parameter, torch.Tensor] = {}
    if isinstance(layer.weight, nn.Parameter) and layer.weight.requires_grad:
        unfold = unfold2d if isinstance(layer, nn.ConvTranspose2d) else unfold3d
        patches = unfold(
            backprops,
            kernel_size=layer.kernel_size,
            padding=padding,
            stride=layer.stride,
            dilation=layer.dilation,
        )
        # one patch per position of a grid that output padding can make longer than the input
        sizes = zip(
            backprops.shape[2:], padding, layer.dilation, layer.kernel_size, layer.stride, strict=True
        )
        grid = [
            (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
            for size, pad, dilation, kernel, stride in sizes
        ]
        patches = patches.reshape(batch, -1, *grid)[(..., *(slice(0, size) for size in inputs.shape[2:]))]
        patches = patches.reshape(batch, layer.groups, -1, positions)
        grouped = inputs.reshape(batch, layer.groups, -1, positions)
        weight = torch.einsum("bgil,bgjl->bgij", grouped, patches)
        samples[layer.weight] = weight.reshape(batch, *layer.weight.shape)
    if isinstance(layer.bias, nn.Parameter) and layer.bias.requires_grad:
        samples[layer.bias] = backprops.flatten(2).sum(dim=2)
    return samples
