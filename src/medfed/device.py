"""The one place where medfed chooses the compute device."""

from __future__ import annotations

import os
from functools import cache

import torch


@cache
def default_device() -> torch.device:
    """CUDA when a GPU is present (unless ``MEDFED_DEVICE`` says otherwise), else CPU."""
    requested = os.environ.get("MEDFED_DEVICE")
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
