"""Model registry: MONAI U-Nets for segmentation, DenseNet and ResNet for classification."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.networks.nets import DenseNet, ResNet, UNet
from torch import nn

from medfed.errors import ConfigError
from medfed.registry import Registry

MODELS: Registry[nn.Module] = Registry("model")


@MODELS.register("unet")
def unet(
    *,
    spatial_dims: int = 2,
    in_channels: int = 1,
    out_channels: int = 2,
    channels: Sequence[int] = (8, 16, 32, 64),
    strides: Sequence[int] = (2, 2, 2),
    num_res_units: int = 1,
    norm: str = "instance",
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI U-Net (Kerfoot et al. 2018): input BCHW[D], output B x out_channels x HW[D] logits."""
    return UNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=tuple(channels),
        strides=tuple(strides),
        num_res_units=num_res_units,
        norm=norm,
        dropout=dropout,
    )


@MODELS.register("densenet")
def densenet(
    *,
    spatial_dims: int = 2,
    in_channels: int = 1,
    out_channels: int = 2,
    init_features: int = 16,
    growth_rate: int = 8,
    block_config: Sequence[int] = (2, 2, 2),
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI DenseNet classifier: input BCHW[D], output B x out_channels logits."""
    return DenseNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        init_features=init_features,
        growth_rate=growth_rate,
        block_config=tuple(block_config),
        dropout_prob=dropout,
    )


@MODELS.register("resnet")
def resnet(
    *,
    spatial_dims: int = 2,
    in_channels: int = 1,
    out_channels: int = 2,
    layers: Sequence[int] = (1, 1, 1, 1),
    block_inplanes: Sequence[int] = (16, 32, 64, 128),
) -> nn.Module:
    """MONAI ResNet classifier with basic blocks: input BCHW[D], output B x out_channels logits."""
    return ResNet(
        block="basic",
        layers=list(layers),
        block_inplanes=list(block_inplanes),
        spatial_dims=spatial_dims,
        n_input_channels=in_channels,
        num_classes=out_channels,
    )


def build_model(name: str, params: Mapping[str, Any], *, seed: int) -> nn.Module:
    """Builds model ``name`` with ``params``, initialised deterministically from ``seed``.

    Raises:
        UnknownNameError: ``name`` is not registered.
        ConfigError: ``params`` has an unknown or invalid entry.
    """
    factory = MODELS.get(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return factory(**params)
        except (TypeError, ValueError, AssertionError) as error:
            raise ConfigError(f"model '{name}': invalid parameters {dict(params)}: {error}") from error
