"""Which entries of a state dict play which role, and whether two state dicts line up."""

from __future__ import annotations

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
    missing = reference.keys() - candidate.keys()
    if missing:
        raise ValueError(f"{label}: missing key '{min(missing)}'")
    unexpected = candidate.keys() - reference.keys()
    if unexpected:
        raise ValueError(f"{label}: unexpected key '{min(unexpected)}'")
    for key, expected in reference.items():
        found = candidate[key]
        if found.shape != expected.shape:
            raise ValueError(
                f"{label}: key '{key}' has shape {tuple(found.shape)}, "
                f"expected {tuple(expected.shape)}"
            )
        if found.dtype != expected.dtype:
            raise ValueError(
                f"{label}: key '{key}' has dtype {found.dtype}, expected {expected.dtype}"
            )

