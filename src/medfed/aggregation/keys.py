"""Which entries of a state dict play which role, and whether two state dicts line up."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from medfed.types import Weights

_RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


def running_stat_keys(weights: Weights) -> frozenset[str]:
    """Keys of running statistics: ``running_mean``, ``running_var``, ``num_batches_tracked``.

    These are buffers estimated from data, not parameters: they are averaged, never stepped.
    """
    return frozenset(key for key in weights if key.rsplit(".", 1)[-1] in _RUNNING_STATS)


def steppable_keys(weights: Weights) -> list[str]:
    """Keys an optimiser may step: floating tensors other than running statistics.

    Running statistics are averaged instead: a step could, for instance, make a variance negative.
    """
    stats = running_stat_keys(weights)
    return [key for key, t in weights.items() if t.is_floating_point() and key not in stats]


def check_compatible(reference: Weights, candidate: Weights, label: str) -> None:
    """Raises ``ValueError`` unless ``candidate`` has ``reference``'s keys, shapes and dtypes.

    Args:
        reference: The weights ``candidate`` must line up with.
        candidate: The weights being checked.
        label: Names ``candidate`` in the error message (e.g. ``"update 3"`` or ``"site 'a'"``).
    """
    missing, unexpected = key_differences(reference, candidate)
    if missing:
        raise ValueError(f"{label}: missing key '{missing[0]}'")
    if unexpected:
        raise ValueError(f"{label}: unexpected key '{unexpected[0]}'")
    for key, expected in reference.items():
        problem = layout_mismatch(candidate[key], expected)
        if problem:
            raise ValueError(f"{label}: key '{key}' {problem}")


def key_differences(
    reference: Mapping[str, object], candidate: Mapping[str, object]
) -> tuple[list[str], list[str]]:
    """The keys of ``reference`` that ``candidate`` lacks and those it adds, each sorted."""
    return sorted(reference.keys() - candidate.keys()), sorted(candidate.keys() - reference.keys())


def layout_mismatch(found: torch.Tensor, expected: torch.Tensor) -> str | None:
    """How ``found`` differs from ``expected`` in shape or dtype (``"has shape (3,), expected
    (2,)"``), or ``None`` when they line up."""
    if found.shape != expected.shape:
        return f"has shape {tuple(found.shape)}, expected {tuple(expected.shape)}"
    if found.dtype != expected.dtype:
        return f"has dtype {found.dtype}, expected {expected.dtype}"
    return None
