"""Everything safetensors: tasks, results and saved states as tensors plus string metadata,
never pickle.

Weights and extras are flattened to keys ``<prefix>weights/<name>`` and
``<prefix>extra/<group>/<name>`` (``flatten``, ``unflatten``), read back with their metadata by
``read_safetensors``. Tasks and results use the empty prefix, and their metadata holds the
schema version, the round and the small fields (config, metrics, sample count); checkpoints
(``medfed.orchestration.checkpoint``) put several states in one file under per-owner prefixes.
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
from medfed.types import SiteState, TrainResult, TrainTask, Weights

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


def encode_site_state(state: SiteState) -> bytes:
    """A site's private ``state`` as safetensors bytes (to move it between the processes of one
    simulated site, e.g. into a Ray actor); its tensors may share memory."""
    tensors = flatten(state.weights, state.extra, copy=True)
    return save_bytes(tensors, metadata={"schema_version": str(state.schema_version)})


def decode_site_state(data: bytes) -> SiteState:
    """The state encoded by ``encode_site_state``; raises ``PayloadError`` on any inconsistency."""
    weights, extra, metadata = _decode(data)
    return SiteState(weights=weights, extra=extra, schema_version=_int_field(metadata, "schema_version"))


def flatten(
    weights: Weights, extra: Mapping[str, Weights], prefix: str = "", *, copy: bool = False
) -> dict[str, torch.Tensor]:
    """``weights`` and ``extra`` as one flat mapping that safetensors can save.

    Args:
        weights: Stored under ``<prefix>weights/<name>``.
        extra: Stored under ``<prefix>extra/<group>/<name>``; group names may not contain ``/``.
        prefix: Put before every key (empty, or ending in ``/``).
        copy: Clone every tensor (safetensors refuses tensors that share memory, as the states
            of simulated sites and the server may).
    """
    flat = {f"{prefix}{_WEIGHTS}{name}": _plain(tensor, copy) for name, tensor in weights.items()}
    for group, tensors in extra.items():
        if "/" in group:
            raise ValueError(f"extra group names may not contain '/', got '{group}'")
        flat.update({f"{prefix}{_EXTRA}{group}/{name}": _plain(t, copy) for name, t in tensors.items()})
    return flat


def unflatten(tensors: Mapping[str, torch.Tensor], prefix: str = "") -> tuple[Weights, dict[str, Weights]]:
    """The weights and extras that ``flatten`` stored under ``prefix``; other keys are skipped.

    Raises:
        ValueError: A key under ``prefix`` is neither ``weights/<name>`` nor
            ``extra/<group>/<name>``.
    """
    weights: Weights = {}
    extra: dict[str, Weights] = {}
    for key, tensor in tensors.items():
        if not key.startswith(prefix):
            continue
        local = key.removeprefix(prefix)
        if local.startswith(_WEIGHTS):
            weights[local.removeprefix(_WEIGHTS)] = tensor
        elif local.startswith(_EXTRA) and local.count("/") >= 2:
            group, name = local.removeprefix(_EXTRA).split("/", 1)
            extra.setdefault(group, {})[name] = tensor
        else:
            raise ValueError(f"unexpected tensor key '{key}'")
    return weights, extra


def read_safetensors(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the string metadata of safetensors ``data``.

    Raises:
        SafetensorError: ``data`` is not safetensors.
        ValueError: Its header's metadata is not a mapping.
    """
    tensors = load_bytes(data)  # validates the header before it is read again below
    size = int.from_bytes(data[:8], "little")
    metadata = json.loads(bytes(data[8 : 8 + size])).get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise ValueError("metadata is not a mapping")
    return tensors, metadata


def _encode(
    weights: Weights, extra: Mapping[str, Weights], metadata: dict[str, str], schema_version: int
) -> bytes:
    tensors = flatten(weights, extra)
    return save_bytes(tensors, metadata={**metadata, "schema_version": str(schema_version)})


def _decode(data: bytes) -> tuple[Weights, dict[str, Weights], dict[str, str]]:
    try:
        tensors, metadata = read_safetensors(data)
    except (SafetensorError, ValueError) as error:
        raise PayloadError(f"not a valid safetensors payload: {error}") from None
    try:
        weights, extra = unflatten(tensors)
    except ValueError as error:
        raise PayloadError(str(error)) from None
    return weights, extra, metadata


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


def _plain(tensor: torch.Tensor, copy: bool) -> torch.Tensor:
    """Safetensors wants contiguous CPU tensors (that share no memory)."""
    plain = tensor.detach().to("cpu").contiguous()
    return plain.clone() if copy else plain
