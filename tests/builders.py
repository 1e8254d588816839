"""Builders shared across the test folders (``tests`` is on ``sys.path``: ``pythonpath`` in
``pyproject.toml``)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from medfed.data import ScannerProfile, SyntheticSite
from medfed.data.scanner import Acquisition
from medfed.orchestration.metrics_log import MetricRow, Split

TINY_SIMULATION: dict[str, Any] = {
    "data": {"synthetic": {"image_size": 16, "cases_scale": 0.15}},
    "model": {"params": {"channels": [4, 8], "strides": [2]}},
    "training": {"local_epochs": 1, "batch_size": 4},
    "federation": {"rounds": 1},
    "strategies": [{"name": "fedavg"}],
    "baselines": {"centralized": False, "local": False},
}
"""A simulation that runs in seconds on a CPU: 16x16 synthetic sites at 15 % of their cases, a
two-level U-Net, one round of FedAvg with one local epoch of batch 4, no baselines."""


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Runs the block on one torch thread (tiny tensors: as fast, and immune to a busy shared
    machine), then restores the thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def synthetic_site(
    name: str = "x", num_cases: int = 3, lesion_radius: tuple[float, float] = (0.1, 0.2)
) -> SyntheticSite:
    """A brain-lesion site of a clean T1 scanner, half its cases with a lesion."""
    scanner = ScannerProfile("t1", Acquisition(100.0, 1.0, 0.1, 0.02, 0.5))
    return SyntheticSite(
        name=name, scanner=scanner, num_cases=num_cases, lesion_prevalence=0.5, lesion_radius=lesion_radius
    )


def tiny_simulation(output_dir: Path | None = None, **changes: Any) -> dict[str, Any]:
    """The raw settings of ``TINY_SIMULATION`` with ``changes`` merged in.

    Args:
        output_dir: Where the run writes (``None``: the schema's default).
        **changes: Settings by section; a dictionary is merged into the section's (recursively),
            anything else (a list, a number, ``None``) replaces it.

    Returns:
        A new dictionary for ``parse_config`` or ``medfed.simulate``.
    """
    settings = _merged(TINY_SIMULATION, changes)
    if output_dir is not None:
        settings["output_dir"] = str(output_dir)
    return settings


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def score_rows(
    scores: dict[str, tuple[float, float, float]], *, scale: float = 1.0, seed: int = 0
) -> list[MetricRow]:
    """Dice rows of two rounds per experiment: own sites ``a`` and ``b`` (test split) and
    unseen site ``d``, each ``scores`` value times ``scale``, halved in round 1."""
    return [
        MetricRow(
            experiment,
            round,
            site,
            Split.UNSEEN if site == "d" else Split.TEST,
            "dice",
            value * scale * round / 2,
            seed,
        )
        for experiment, values in scores.items()
        for round in (1, 2)
        for site, value in zip(("a", "b", "d"), values, strict=True)
    ]
