"""Flattening ``Weights`` into one real vector and back, for protocols that work on vectors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medfed.types import Weights


@dataclass(frozen=True)
class Entry:
    """Where one tensor lives in the flat vector.

    Attributes:
        key: The tensor's name.
        shape: Its shape.
        dtype: Its dtype (restored by ``unflatten``; integer tensors are rounded).
    """

    key: str
    shape: tuple[int, ...]
    dtype: torch.dtype


Layout = tuple[Entry, ...]
"""The order, shapes and dtypes of the tensors in a flat vector (keys sorted)."""


def layout_of(weights: Weights) -> Layout:
    """The layout of ``weights``: entries sorted by key."""
    return tuple(Entry(key, tuple(weights[key].shape), weights[key].dtype) for key in sorted(weights))


def size_of(layout: Layout) -> int:
    """Number of elements of a vector with ``layout``."""
    return sum(int(np.prod(entry.shape, dtype=np.int64)) for entry in layout)


def flatten(weights: Weights, layout: Layout) -> np.ndarray:
    """The tensors of ``weights`` in ``layout`` order as one float64 vector, shape ``(d,)``.

    Raises:
        ValueError: If ``weights`` does not have exactly ``layout``'s keys and shapes.
    """
    if sorted(weights) != [entry.key for entry in layout]:
        raise ValueError("weights do not have the keys of the layout")
    parts = []
    for entry in layout:
        tensor = weights[entry.key].detach().cpu()
        if tuple(tensor.shape) != entry.shape:
            raise ValueError(f"'{entry.key}' has shape {tuple(tensor.shape)}, expected {entry.shape}")
        parts.append(tensor.to(torch.float64).reshape(-1).numpy())
    return np.concatenate(parts) if parts else np.zeros(0)


def unflatten(vector: np.ndarray, layout: Layout) -> Weights:
    """The ``Weights`` a flat vector holds; integer tensors are rounded to the nearest integer.

    Raises:
        ValueError: If ``vector`` does not have ``size_of(layout)`` elements.
    """
    if vector.shape != (size_of(layout),):
        raise ValueError(f"vector has shape {vector.shape}, expected ({size_of(layout)},)")
    weights: Weights = {}
    offset = 0
    for entry in layout:
        count = int(np.prod(entry.shape, dtype=np.int64))
        part = torch.from_numpy(np.array(vector[offset : offset + count])).reshape(entry.shape)
        if not entry.dtype.is_floating_point:
            part = part.round()
        weights[entry.key] = part.to(entry.dtype)
        offset += count
    return weights


def weighted_vector(weights: Weights, weight: float, layout: Layout) -> np.ndarray:
    """A site's input to a protected sum: ``[weight * flatten(weights), weight]``, float64.

    Raises:
        ValueError: If ``weight`` is not finite and positive, or ``weights`` misses ``layout``.
    """
    if not (np.isfinite(weight) and weight > 0):
        raise ValueError(f"weight must be finite and > 0, got {weight}")
    return np.append(flatten(weights, layout) * weight, weight)


def mean_of_weighted_sum(
    total: np.ndarray, layout: Layout, *, error: type[Exception] = ValueError
) -> tuple[Weights, float]:
    """The weighted mean and the total weight from a sum of ``weighted_vector`` inputs.

    Raises:
        Exception: ``error``, if the summed weight is not positive.
    """
    weight = float(total[-1])
    if not weight > 0:
        raise error(f"the summed weight is {weight}, not positive")
    return unflatten(total[:-1] / weight, layout), weight
