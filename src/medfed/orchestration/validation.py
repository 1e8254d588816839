"""Checks every incoming update before it may reach aggregation."""

from __future__ import annotations

import torch

from medfed.errors import UpdateRejected
from medfed.types import SCHEMA_VERSION, TrainResult, Weights


def validate_result(result: TrainResult, reference: Weights, *, round: int) -> None:
    """Raises ``UpdateRejected`` unless ``result`` fits the global model ``reference``.

    Checks the schema version, the round, the declared sample count, and that the parameter
    names, shapes and dtypes equal the reference's and every value is finite.
    """
    site = result.site

    def reject(reason: str) -> UpdateRejected:
        return UpdateRejected(site, reason)

    if result.schema_version != SCHEMA_VERSION:
        raise reject(f"schema version {result.schema_version}, expected {SCHEMA_VERSION}")
    if result.round != round:
        raise reject(f"answers round {result.round}, but round {round} is running")
    if isinstance(result.num_samples, bool) or not isinstance(result.num_samples, int):
        raise reject(f"num_samples must be an integer, got {result.num_samples!r}")
    if result.num_samples <= 0:
        raise reject(f"num_samples must be positive, got {result.num_samples}")
    missing = sorted(set(reference) - set(result.weights))
    unexpected = sorted(set(result.weights) - set(reference))
    if missing or unexpected:
        raise reject(f"parameter names differ: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, expected in reference.items():
        tensor = result.weights[name]
        if tensor.shape != expected.shape:
            raise reject(f"'{name}' has shape {tuple(tensor.shape)}, expected {tuple(expected.shape)}")
        if tensor.dtype != expected.dtype:
            raise reject(f"'{name}' has dtype {tensor.dtype}, expected {expected.dtype}")
        if not _finite(tensor):
            raise reject(f"'{name}' contains NaN or infinite values")
    for group, tensors in result.extra.items():
        for name, tensor in tensors.items():
            if not _finite(tensor):
                raise reject(f"extra '{group}/{name}' contains NaN or infinite values")


def _finite(tensor: torch.Tensor) -> bool:
    return not tensor.is_floating_point() or bool(torch.isfinite(tensor).all())
