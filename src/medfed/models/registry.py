"""Model registry: MONAI U-Nets for segmentation, DenseNet and ResNet for classification.

Each registered factory returns a ``NetworkSpec``: the MONAI class and its own constructor
arguments. ``build_model`` instantiates it; ``medfed export`` writes the same spec into a MONAI
bundle's ``network_def``, so the exported network is exactly the trained one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from monai.networks.nets import DenseNet, ResNet, UNet
from torch import nn

from medfed.errors import ConfigError
from medfed.models.standardization import standardize_convs
from medfed.registry import Registry


@dataclass(frozen=True)
class NetworkSpec:
    """A MONAI network as a class and its constructor arguments.

    Attributes:
        network: The MONAI network class.
        args: Its keyword arguments (JSON-compatible values).
        task: What the network's output is for.
        spatial_dims: 2 or 3.
        in_channels: Channels of an input image.
        out_channels: Output channels (segmentation) or classes (classification).
        size_multiple: Every spatial size of an input must be a multiple of this (the product
            of a U-Net's strides; 1 when any size works).
        weight_standardization: The convolutions that feed a normalisation layer standardise
            their weights (``medfed.models.standardization``); not one of ``args``.
    """

    network: type[nn.Module]
    args: Mapping[str, Any]
    task: Literal["segmentation", "classification"]
    spatial_dims: int
    in_channels: int
    out_channels: int
    size_multiple: int = 1
    weight_standardization: bool = False

    @property
    def target(self) -> str:
        """The class's import path, as a MONAI bundle's ``_target_`` names it."""
        return f"{self.network.__module__}.{self.network.__qualname__}"

    def build(self) -> nn.Module:
        """A new instance of the network."""
        network = self.network(**self.args)
        if self.weight_standardization:
            standardize_convs(network)
        return network


MODELS: Registry[NetworkSpec] = Registry("model")


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
    weight_standardization: bool = False,
) -> NetworkSpec:
    """MONAI U-Net (Kerfoot et al. 2018): input BCHW[D], output B x out_channels x HW[D] logits.

    ``weight_standardization`` standardises the weights of every convolution followed by a
    normalisation layer (a DP-friendly architecture with ``norm`` ``group``, De et al. 2022).
    """
    args = {
        "spatial_dims": spatial_dims,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "channels": list(channels),
        "strides": list(strides),
        "num_res_units": num_res_units,
        "norm": norm,
        "dropout": dropout,
    }
    if not isinstance(weight_standardization, bool):
        raise ConfigError(
            f"model 'unet': weight_standardization must be true or false, got {weight_standardization!r}"
        )
    return NetworkSpec(
        UNet,
        args,
        "segmentation",
        spatial_dims,
        in_channels,
        out_channels,
        size_multiple=math.prod(strides),
        weight_standardization=weight_standardization,
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
) -> NetworkSpec:
    """MONAI DenseNet classifier: input BCHW[D], output B x out_channels logits."""
    args = {
        "spatial_dims": spatial_dims,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "init_features": init_features,
        "growth_rate": growth_rate,
        "block_config": list(block_config),
        "dropout_prob": dropout,
    }
    return NetworkSpec(DenseNet, args, "classification", spatial_dims, in_channels, out_channels)


@MODELS.register("resnet")
def resnet(
    *,
    spatial_dims: int = 2,
    in_channels: int = 1,
    out_channels: int = 2,
    layers: Sequence[int] = (1, 1, 1, 1),
    block_inplanes: Sequence[int] = (16, 32, 64, 128),
) -> NetworkSpec:
    """MONAI ResNet classifier with basic blocks: input BCHW[D], output B x out_channels logits."""
    args = {
        "block": "basic",
        "layers": list(layers),
        "block_inplanes": list(block_inplanes),
        "spatial_dims": spatial_dims,
        "n_input_channels": in_channels,
        "num_classes": out_channels,
    }
    return NetworkSpec(ResNet, args, "classification", spatial_dims, in_channels, out_channels)


def network_spec(name: str, params: Mapping[str, Any]) -> NetworkSpec:
    """The spec of model ``name`` with ``params``.

    Raises:
        UnknownNameError: ``name`` is not registered.
        ConfigError: ``params`` has an unknown entry.
    """
    try:
        return MODELS.create(name, **params)
    except TypeError as error:
        raise ConfigError(f"model '{name}': invalid parameters {dict(params)}: {error}") from error


def build_model(name: str, params: Mapping[str, Any], *, seed: int) -> nn.Module:
    """Builds model ``name`` with ``params``, initialised deterministically from ``seed``.

    Raises:
        UnknownNameError: ``name`` is not registered.
        ConfigError: ``params`` has an unknown or invalid entry.
    """
    spec = network_spec(name, params)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return spec.build()
        except (TypeError, ValueError, AssertionError) as error:
            raise ConfigError(f"model '{name}': invalid parameters {dict(params)}: {error}") from error
