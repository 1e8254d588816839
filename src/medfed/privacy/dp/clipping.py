"""L2 clipping and Gaussian noise over ``Weights``: pure functions."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from medfed.privacy.dp.noise import NoiseSource
from medfed.types import Weights


def global_norm(update: Weights) -> float:
    """The L2 norm of all tensors of ``update`` taken together as one vector."""
    if not update:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([t.double().norm() for t in update.values()])))


def clip_to_norm(update: Weights, clip: float) -> tuple[Weights, float]:
    """``update`` scaled by ``min(1, clip / norm)``, and its norm before clipping."""
    norm = global_norm(update)
    factor = min(1.0, clip / norm) if norm > 0 else 1.0
    return {key: tensor * factor for key, tensor in update.items()}, norm


def add_gaussian_noise(total: Weights, std: float, source: NoiseSource) -> Weights:
    """``total`` plus independent ``N(0, std^2)`` noise from ``source`` on every entry (a copy)."""
    if std == 0:
        return {key: tensor.clone() for key, tensor in total.items()}
    return {
        key: tensor + source.normal(std, tensor.shape, dtype=tensor.dtype).to(tensor.device)
        for key, tensor in total.items()
    }


def summed(updates: Iterable[Weights], keys: Iterable[str]) -> Weights:
    """The elementwise sum of ``updates`` over ``keys`` (zeros when there are none)."""
    keys = list(keys)
    total: Weights | None = None
    for update in updates:
        if total is None:
            total = {key: update[key].clone() for key in keys}
        else:
            for key in keys:
                total[key] += update[key]
    if total is None:
        raise ValueError("summed needs at least one update, got none")
    return total
