"""The one place where medfed chooses the compute device."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import torch


@cache
def default_device() -> torch.device:
    """CUDA when a GPU is present (unless ``MEDFED_DEVICE`` says otherwise), else CPU."""
    requested = os.environ.get("MEDFED_DEVICE")
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Runs the block on ``threads`` torch CPU threads (torch's own choice when ``None``), then
    restores the previous number."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
