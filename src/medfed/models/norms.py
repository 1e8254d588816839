"""Normalisation layers of a network, found by module type (not by guessing key names)."""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase

NORM_LAYER_TYPES: tuple[type[nn.Module], ...] = (_NormBase, nn.GroupNorm, nn.LayerNorm)
"""BatchNorm*, SyncBatchNorm and InstanceNorm* (all ``_NormBase``), GroupNorm and LayerNorm."""


def norm_layer_keys(model: nn.Module) -> frozenset[str]:
    """The state-dict keys of every normalisation layer of ``model``: affine weight and bias,
    and running statistics where the layer tracks them.

    A layer without either (MONAI's default ``InstanceNorm``: no affine, no running
    statistics) contributes no key.
    """
    return frozenset(
        f"{name}.{key}" if name else key
        for name, module in model.named_modules()
        if isinstance(module, NORM_LAYER_TYPES)
        for key in module.state_dict()
    )


def has_batch_norm(model: nn.Module) -> bool:
    """Whether ``model`` has a BatchNorm layer (``BatchNorm*``, ``SyncBatchNorm``): one that, in
    training, needs more than one value per channel, so a batch of one 1x1 map raises."""
    return any(isinstance(module, _BatchNorm) for module in model.modules())
