"""A small recorded federation for the provenance tests (the fixture is in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medfed.provenance import Signers
from medfed.types import Weights

SITES = ["hospital_a", "hospital_b"]


@dataclass(frozen=True)
class Recorded:
    run_dir: Path
    ledger: Path
    keys: dict[str, Ed25519PrivateKey]
    signers: Signers
    model: Path
    """The round-2 global model as a safetensors state dict."""


def weights(value: float) -> Weights:
    return {"layer.weight": torch.full((2, 3), value), "layer.bias": torch.tensor([value, -value])}
