"""Small elementwise operations over ``Weights``; none modifies its inputs."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from medfed.types import Weights


def subtract(a: Weights, b: Weights, keys: Iterable[str] | None = None) -> Weights:
    """``a - b`` for ``keys`` (all of ``a``'s keys by default)."""
    return {key: a[key] - b[key] for key in (a if keys is None else keys)}


def add_scaled(a: Weights, b: Weights, alpha: float) -> Weights:
    """``a + alpha * b`` for every key of ``b``; ``a``'s other keys are copied as they are."""
    return {key: torch.add(a[key], b[key], alpha=alpha) if key in b else a[key] for key in a}


def zeros_like(weights: Weights, keys: Iterable[str]) -> Weights:
    """Zero tensors shaped like ``weights[key]`` for each of ``keys``."""
    return {key: torch.zeros_like(weights[key]) for key in keys}
