"""Victim classifiers for the gradient-inversion harness, by name.

Gradient inversion needs a model whose gradient is a deterministic function of each image.
BatchNorm in train mode mixes the images of a batch through the batch statistics, which makes
inversion harder (Geiping et al. 2020) and ties results to the batch composition. So:

* ``"convnet"`` (the default) is a small ReLU CNN **without normalisation layers**;
* ``"convnet-gn"`` is the same CNN with GroupNorm, which normalises per image;
* ``"resnet"`` and ``"densenet"`` are the medfed registry's MONAI classifiers, whose BatchNorm
  layers are put in **eval mode** (running statistics, not batch statistics) by ``build_victim``.
"""

from __future__ import annotations

import torch
from torch import nn

from medfed.models.registry import build_model
from medfed.registry import Registry

VICTIMS: Registry[nn.Module] = Registry("attack model")


def _conv_block(in_channels: int, out_channels: int, *, stride: int, groups: int) -> nn.Sequential:
    """3x3 convolution, optional GroupNorm (``groups > 0``), ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)]
    if groups > 0:
        layers.append(nn.GroupNorm(groups, out_channels))
    layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def small_convnet(
    *, image_size: int, in_channels: int = 1, num_classes: int = 2, width: int = 16, groups: int = 0
) -> nn.Module:
    """A 3-layer ReLU CNN and a linear head: input B x C x S x S, output B x num_classes logits.

    Args:
        image_size: Side ``S`` of the square input; must be divisible by 4.
        in_channels: Image channels.
        num_classes: Output classes.
        width: Channels of the first layer (the others have ``2 * width``).
        groups: GroupNorm groups after each convolution (``0`` = no normalisation).

    Raises:
        ValueError: If ``image_size`` is not a positive multiple of 4.
    """
    if image_size <= 0 or image_size % 4:
        raise ValueError(f"image_size must be a positive multiple of 4, got {image_size}")
    return nn.Sequential(
        _conv_block(in_channels, width, stride=1, groups=groups),
        _conv_block(width, 2 * width, stride=2, groups=groups),
        _conv_block(2 * width, 2 * width, stride=2, groups=groups),
        nn.Flatten(),
        nn.Linear(2 * width * (image_size // 4) ** 2, num_classes),
    )


@VICTIMS.register("convnet")
def convnet(*, image_size: int, num_classes: int, seed: int) -> nn.Module:
    """``small_convnet`` without normalisation layers, initialised from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return small_convnet(image_size=image_size, num_classes=num_classes)


@VICTIMS.register("convnet-gn")
def convnet_gn(*, image_size: int, num_classes: int, seed: int) -> nn.Module:
    """``small_convnet`` with GroupNorm (4 groups) after each convolution."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return small_convnet(image_size=image_size, num_classes=num_classes, groups=4)


@VICTIMS.register("resnet")
def resnet(*, image_size: int, num_classes: int, seed: int) -> nn.Module:
    """The medfed registry's MONAI ResNet (BatchNorm; put in eval mode by ``build_victim``)."""
    del image_size
    return build_model("resnet", {"out_channels": num_classes}, seed=seed)


@VICTIMS.register("densenet")
def densenet(*, image_size: int, num_classes: int, seed: int) -> nn.Module:
    """The medfed registry's MONAI DenseNet (BatchNorm; put in eval mode by ``build_victim``)."""
    del image_size
    return build_model("densenet", {"out_channels": num_classes}, seed=seed)


def build_victim(name: str, *, image_size: int, seed: int, num_classes: int = 2) -> nn.Module:
    """Builds victim ``name``, initialised from ``seed``, with every BatchNorm in eval mode.

    The model stays in train mode otherwise (dropout is 0 in all victims), so its gradient is
    what a site would send after one local step (FedSGD) with eval-mode BatchNorm.

    Raises:
        UnknownNameError: ``name`` is not a victim; the message lists the valid names.
    """
    model = VICTIMS.get(name)(image_size=image_size, num_classes=num_classes, seed=seed)
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    return model
