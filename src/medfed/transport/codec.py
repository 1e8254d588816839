"""Tasks and results as safetensors bytes: tensors plus JSON metadata, never pickle.

Tensor keys are ``weights/<name>`` and ``extra/<group>/<name>``; the metadata holds the schema
version, the round and the small fields (config, metrics, sample count).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from medfed.transport.errors import PayloadError
from medfed.types import TrainResult, TrainTask, Weights

_WEIGHTS, _EXTRA = "weights/", "extra/"


def encode_task(task: TrainTask) -> bytes:
    """``task`` as safetensors bytes."""
    metadata = {"round": str(task.round), "config": json.dumps(dict(task.config))}
    return _encode(task.weights, task.extra, metadata, task.schema_version)


def decode_task(data: bytes) -> TrainTask:
    """The task encoded by ``encode_task``; raises ``PayloadError`` on any inconsistency."""
    weights, extra, metadata = _decode(data)
    config = _json_field(metadata, "config", dict)
    for key, value in config.items():
        if not isinstance(value, bool | int | float | str):
            raise PayloadError(f"config '{key}' is not a scalar: {value!r}")
    return TrainTask(
        round=_int_field(metadata, "round"),
        weights=weights,
        config=config,
        extra=extra,
        schema_version=_int_field(metadata, "schema_version"),
    )


def encode_result(result: TrainResult) -> bytes:
    """``result`` as safetensors bytes (the site name travels in the certificate, not here)."""
    metadata = {
        "round": str(result.round),
        "num_samples": str(result.num_samples),
        "metrics": json.dumps({key: float(value) for key, value in result.metrics.items()}),
    }
    return _encode(result.weights, result.extra, metadata, result.schema_version)


def decode_result(data: bytes, *, site: str) -> TrainResult:
    """The result encoded by ``encode_result``, attributed to the authenticated ``site``.

    Numbers are passed on as decoded, never through ``float()`` (a 400-digit integer would
    overflow it): ``validate_result`` bounds them.

    Raises:
        PayloadError: The bytes are not a well-formed result.
    """
    weights, extra, metadata = _decode(data)
    metrics = _json_field(metadata, "metrics", dict)
    if not all(isinstance(value, int | float) and not isinstance(value, bool) for value in metrics.values()):
        raise PayloadError("metrics must map names to numbers")
    return TrainResult(
        site=site,
        round=_int_field(metadata, "round"),
        weights=weights,
        num_samples=_int_field(metadata, "num_samples"),
        metrics=metrics,
        extra=extra,
        schema_version=_int_field(metadata, "schema_version"),
    )


def _encode(
    weights: Weights, extra: Mapping[str, Weights], metadata: dict[str, str], schema_version: int
) -> bytes:
    tensors = {_WEIGHTS + name: _plain(tensor) for name, tensor in weights.items()}
    for group, groups_tensors in extra.items():
        if "/" in group:
            raise ValueError(f"extra group names may not contain '/', got '{group}'")
        tensors.update({f"{_EXTRA}{group}/{name}": _plain(t) for name, t in groups_tensors.items()})
    return save_bytes(tensors, metadata={**metadata, "schema_version": str(schema_version)})


def _decode(data: bytes) -> tuple[Weights, dict[str, Weights], dict[str, str]]:
    try:
        tensors = load_bytes(data)
        metadata = _metadata(data)
    except (SafetensorError, ValueError, UnicodeDecodeError) as error:
        raise PayloadError(f"not a valid safetensors payload: {error}") from None
    weights: Weights = {}
    extra: dict[str, Weights] = {}
    for key, tensor in tensors.items():
        if key.startswith(_WEIGHTS):
            weights[key.removeprefix(_WEIGHTS)] = tensor
        elif key.startswith(_EXTRA) and key.count("/") >= 2:
            group, name = key.removeprefix(_EXTRA).split("/", 1)
            extra.setdefault(group, {})[name] = tensor
        else:
            raise PayloadError(f"unexpected tensor key '{key}'")
    return weights, extra, metadata


def _metadata(data: bytes) -> dict[str, str]:
    size = int.from_bytes(data[:8], "little")
    header = json.loads(bytes(data[8 : 8 + size]))
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise ValueError("metadata is not a mapping")
    return metadata


def _int_field(metadata: Mapping[str, str], key: str) -> int:
    try:
        return int(metadata[key])
    except (KeyError, ValueError):
        raise PayloadError(f"metadata '{key}' is missing or not an integer") from None


def _json_field(metadata: Mapping[str, str], key: str, kind: type) -> Any:
    try:
        value = json.loads(metadata[key])
    except (KeyError, ValueError):
        raise PayloadError(f"metadata '{key}' is missing or not JSON") from None
    if not isinstance(value, kind):
        raise PayloadError(f"metadata '{key}' must be a {kind.__name__}")
    return value


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """safetensors wants contiguous CPU tensors."""
    return tensor.detach().to("cpu").contiguous()

