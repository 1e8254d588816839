"""The weighted mean of model updates, computed as a running sum.

The running sum is what keeps federated averaging cheap at scale (fedjax's FedAvg does the
same): whatever the number of sites, only the sum and the update being added are alive.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from medfed.aggregation.keys import check_compatible
from medfed.types import Weights


def weighted_mean(updates: Iterable[tuple[Weights, float]]) -> Weights:
    """The weighted mean of ``updates``, consuming them one at a time.

    Floating tensors are averaged as ``sum(w_i * x_i) / sum(w_i)``; other tensors (e.g.
    batch-norm's ``num_batches_tracked``) are the elementwise maximum. Peak memory is about two
    models (the running sum and the current update) when ``updates`` is a lazy generator. The
    inputs are never modified.

    Args:
        updates: Pairs of (weights, non-negative weight), all with the same keys, shapes and dtypes.

    Returns:
        New tensors with the keys of the updates.

    Raises:
        ValueError: If ``updates`` is empty, a weight is negative or not finite, the total weight
            is not positive, or an update's keys, shapes or dtypes differ from the first update's
            (the message names the key and the 0-based index of the update).
    """
    total = 0.0
    acc: Weights | None = None
    index = 0
    for weights, weight in updates:
        weight = _checked_weight(index, weight)
        if acc is None:
            acc = _start(weights, weight)
        else:
            check_compatible(acc, weights, f"update {index}")
            _accumulate(acc, weights, weight)
        total += weight
        index += 1
        del weights  # hold only the running sum while the next update is produced
    if acc is None:
        raise ValueError("weighted_mean needs at least one update, got none")
    if total <= 0.0:
        raise ValueError(f"the total weight of the updates must be positive, got {total}")
    for tensor in acc.values():
        if tensor.is_floating_point():
            tensor.div_(total)
    return acc


def _checked_weight(index: int, weight: float) -> float:
    weight = float(weight)
    if not math.isfinite(weight) or weight < 0.0:
        raise ValueError(f"update {index}: weight must be finite and non-negative, got {weight}")
    return weight


def _start(weights: Weights, weight: float) -> Weights:
    return {
        key: tensor.detach().mul(weight) if tensor.is_floating_point() else tensor.detach().clone()
        for key, tensor in weights.items()
    }


def _accumulate(acc: Weights, weights: Weights, weight: float) -> None:
    for key, total in acc.items():
        update = weights[key].detach()
        if total.is_floating_point():
            total.add_(update, alpha=weight)
        else:
            torch.maximum(total, update, out=total)
