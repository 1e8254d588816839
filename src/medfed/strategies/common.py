"""Checks and helpers shared by the strategies: argument validation and result validation."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

from medfed.aggregation import check_compatible
from medfed.types import TrainResult, Weights


def require_positive(name: str, value: float) -> float:
    """``value`` if it is finite and > 0; otherwise ``ValueError`` naming ``name``."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def require_non_negative(name: str, value: float) -> float:
    """``value`` if it is finite and >= 0; otherwise ``ValueError`` naming ``name``."""
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def require_unit_interval(name: str, value: float) -> float:
    """``value`` if it lies in [0, 1); otherwise ``ValueError`` naming ``name``."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")
    return float(value)


def check_results(global_weights: Weights, results: Sequence[TrainResult]) -> None:
    """Raises ``ValueError`` if ``results`` is empty or a result's weights do not match the model.

    The message names the site and the key at fault.
    """
    if not results:
        raise ValueError("aggregate needs at least one result, got none")
    for result in results:
        check_compatible(global_weights, result.weights, f"site '{result.site}'")


def sample_weighted(results: Sequence[TrainResult]) -> Iterator[tuple[Weights, float]]:
    """Each result's weights paired with its number of samples, for ``weighted_mean``."""
    return ((result.weights, float(result.num_samples)) for result in results)


def uniform(results: Sequence[TrainResult]) -> Iterator[tuple[Weights, float]]:
    """Each result's weights paired with weight 1, for an unweighted ``weighted_mean``."""
    return ((result.weights, 1.0) for result in results)


class DeviceCache:
    """Tensors of ``source`` copied once to whichever device (and dtype) they are asked for on.

    Local hooks run every optimiser step; this keeps them from copying the global model to
    the accelerator at each step.

    Args:
        source: The tensors to serve, by parameter name.
        what: Names ``source`` in the error raised for an unknown parameter.
    """

    def __init__(self, source: Weights, what: str) -> None:
        self._source = source
        self._what = what
        self._copies: Weights = {}

    def like(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """``source[name]`` on ``tensor``'s device and dtype."""
        copy = self._copies.get(name)
        if copy is None or copy.device != tensor.device or copy.dtype != tensor.dtype:
            if name not in self._source:
                raise ValueError(f"parameter '{name}' has no entry in the {self._what}")
            copy = self._source[name].detach().to(device=tensor.device, dtype=tensor.dtype)
            self._copies[name] = copy
        return copy
