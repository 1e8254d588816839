"""SHA-256 digests of what a party sent: weights, and protected rounds' protocol messages.

A digest covers every tensor's name, dtype, shape and bytes in name order, so it does not depend
on the container (a checkpoint, an exported state dict or a message) the tensors travel in.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from medfed.provenance.errors import LedgerError
from medfed.types import Weights

_CHECKPOINT_WEIGHTS = "server/weights/"


def weights_digest(weights: Weights, extra: Mapping[str, Weights] | None = None) -> str:
    """Hex SHA-256 of ``weights`` and, when given, the strategy ``extra`` groups."""
    hasher = hashlib.sha256(b"medfed/weights/v1")
    _feed_weights(hasher, weights)
    for group in sorted(extra or {}):
        hasher.update(_framed(group.encode()))
        _feed_weights(hasher, (extra or {})[group])
    return hasher.hexdigest()


def model_file_digest(path: Path) -> str:
    """``weights_digest`` of the model in a safetensors file: a round checkpoint (its
    ``server/weights/``) or a plain state dict (``medfed export --format state_dict``).

    Raises:
        LedgerError: The file cannot be read as safetensors.
    """
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as error:
        raise LedgerError(str(path), None, f"cannot read the model file: {error}") from None
    inner = {
        name.removeprefix(_CHECKPOINT_WEIGHTS): tensor
        for name, tensor in tensors.items()
        if name.startswith(_CHECKPOINT_WEIGHTS)
    }
    return weights_digest(inner or tensors)


class MessageDigest:
    """A running SHA-256 over the protocol messages one party sent in a round (secure
    aggregation's keys, shares and masked input; a CKKS ciphertext), in the order sent."""

    def __init__(self) -> None:
        self._hasher = hashlib.sha256(b"medfed/messages/v1")

    def add(self, message: object) -> None:
        """Adds ``message`` (a frozen dataclass of bytes, numbers, strings and tuples)."""
        _feed(self._hasher, message)

    def hexdigest(self) -> str:
        """The digest of the messages added so far."""
        return self._hasher.hexdigest()


def _feed_weights(hasher: Any, weights: Weights) -> None:
    for name in sorted(weights):
        tensor = weights[name].detach().to("cpu").contiguous()
        header = f"{name}|{tensor.dtype}|{list(tensor.shape)}".encode()
        hasher.update(_framed(header))
        hasher.update(_framed(tensor.reshape(-1).view(torch.uint8).numpy().tobytes()))


def _feed(hasher: Any, value: object) -> None:
    """Feeds ``value``, tagged by type and length-framed, so distinct values never collide."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        hasher.update(_framed(type(value).__name__.encode()))
        for field in dataclasses.fields(value):
            hasher.update(_framed(field.name.encode()))
            _feed(hasher, getattr(value, field.name))
    elif isinstance(value, bytes | bytearray):
        hasher.update(b"b" + _framed(bytes(value)))
    elif isinstance(value, tuple | list):
        hasher.update(b"l" + len(value).to_bytes(8, "big"))
        for item in value:
            _feed(hasher, item)
    elif isinstance(value, Mapping):
        hasher.update(b"m" + len(value).to_bytes(8, "big"))
        for key in sorted(value):
            _feed(hasher, key)
            _feed(hasher, value[key])
    elif isinstance(value, torch.Tensor):
        hasher.update(b"t" + bytes.fromhex(weights_digest({"": value})))
    elif isinstance(value, bool | int | float | str) or value is None:
        hasher.update(b"s" + _framed(f"{type(value).__name__}:{value!r}".encode()))
    else:
        raise TypeError(f"cannot digest a {type(value).__name__}")


def _framed(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data
