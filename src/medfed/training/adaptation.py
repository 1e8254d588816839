"""AdaBN: test-time re-estimation of normalisation statistics on a new site's images.

Li, Wang, Shi, Hou and Liu, "Adaptive Batch Normalization for practical domain adaptation",
Pattern Recognition 80, 2018. Only layers with running statistics (BatchNorm, InstanceNorm
with ``track_running_stats``) change; learned weights never do and labels are not used.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.utils.data import DataLoader, Dataset

from medfed.device import default_device
from medfed.training.evaluation import same_size_batches, whole_image_inferer


@torch.no_grad()
def adapt_norm_statistics(
    model: nn.Module, dataset: Dataset, *, batch_size: int = 16, device: torch.device | None = None
) -> int:
    """Replaces ``model``'s running statistics with those of ``dataset``'s images, in place.

    Each statistic becomes the mean over batches (in order, unshuffled) of the batch
    statistic (PyTorch's cumulative average, ``momentum=None``); the other layers run in eval
    mode (no dropout). The model is left in eval mode.

    Args:
        model: The network to adapt.
        dataset: Cases with an ``"image"`` (CHW[D]); labels are ignored. Images of one size
            are batched together, through the dataset's whole-image inferer when it has one.
        batch_size: Cases per forward pass.
        device: Where to run; ``default_device()`` when ``None``.

    Returns:
        The number of layers whose statistics were re-estimated (0: nothing to adapt).
    """
    device = device or default_device()
    layers = [m for m in model.modules() if isinstance(m, _NormBase) and m.track_running_stats]
    model.to(device).eval()
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
        layer.train()
    try:
        inferer = whole_image_inferer(dataset)
        for batch in DataLoader(dataset, batch_sampler=same_size_batches(dataset, batch_size)):
            images = batch["image"].to(device)
            if inferer is None:
                model(images)
            else:
                inferer(images, model)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        model.eval()
    return len(layers)
