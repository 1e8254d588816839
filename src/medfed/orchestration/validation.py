"""Checks every incoming update before it may reach aggregation, and every new global model
before it is accepted.

Every number a site sends is bounded here once, before aggregation: a value no honest site
sends can otherwise overflow or raise inside shared code. Where an update arrives over gRPC, the
server's board runs ``checked_result`` on the decoded answer (so the site is told at once why it
was refused); the round loop then checks only the layout of the strategy's declared extras
(``check_declared_extras``), which the board does not know. Results made in process are checked
in full by the round loop (``validate_result``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch

from medfed.aggregation.keys import key_differences, layout_mismatch
from medfed.errors import UpdateRejected
from medfed.types import SCHEMA_VERSION, TrainResult, Weights

MAX_SAMPLES = 10**9
"""Largest ``num_samples`` of a result (1 to this many training cases)."""

MAX_STEPS = 10**9
"""Largest ``steps`` metric (local optimiser steps) of a result."""

MAX_ABS_METRIC = 1e12
"""Largest magnitude of any other metric of a result."""

MAX_METRICS = 64
"""Most metrics one result may carry."""

METRIC_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")
"""What a metric name may look like."""

MAX_ABS_VALUE = 1e12
"""Largest magnitude of a floating entry of a result's weights or extras: with ``MAX_SAMPLES``
it keeps every sample-weighted sum far from float32's limit (3.4e38)."""

_METRIC_RANGES = {"steps": (0, MAX_STEPS)}


def validate_result(
    result: TrainResult, reference: Weights, *, round: int, extras: Mapping[str, Weights] | None = None
) -> None:
    """Raises ``UpdateRejected`` unless ``result`` fits the global model ``reference``.

    Checks the schema version and the round; that ``num_samples`` is an integer in
    ``[1, MAX_SAMPLES]``; that there are at most ``MAX_METRICS`` metrics, each named after
    ``METRIC_NAME`` and a finite number within its range (``steps`` in ``[0, MAX_STEPS]``,
    others within ``±MAX_ABS_METRIC``); that the parameter names, shapes and dtypes equal the
    reference's and every floating value is finite and within ``±MAX_ABS_VALUE``; the same for
    the extras.

    Args:
        result: The site's result.
        reference: The global model the site was sent.
        round: The running round.
        extras: The strategy's declared extras (``Strategy.result_extras``): exactly these
            groups, names, shapes and dtypes are accepted. ``None`` (where the strategy is not
            known) checks only that the extras' values are finite and bounded.
    """
    try:
        if result.schema_version != SCHEMA_VERSION:
            raise ValueError(f"schema version {_shown(result.schema_version)}, expected {SCHEMA_VERSION}")
        if result.round != round:
            raise ValueError(f"answers round {_shown(result.round)}, but round {round} is running")
        _check_number("num_samples", result.num_samples, 1, MAX_SAMPLES, integer=True)
        _check_metrics(result.metrics)
        _check_tensors("parameter", result.weights, reference)
        _check_extras(result.extra, extras)
    except ValueError as error:
        raise UpdateRejected(result.site, str(error)) from None


@dataclass(frozen=True)
class CheckedResult(TrainResult):
    """A ``TrainResult`` that ``validate_result`` passed, without declared extras, where it
    arrived (made by ``checked_result`` only)."""


def checked_result(result: TrainResult, reference: Weights, *, round: int) -> CheckedResult:
    """``result`` marked as checked, once ``validate_result`` (without declared extras) passes.

    Raises:
        UpdateRejected: See ``validate_result``.
    """
    validate_result(result, reference, round=round)
    return CheckedResult(**{field.name: getattr(result, field.name) for field in fields(result)})


def check_declared_extras(result: TrainResult, extras: Mapping[str, Weights]) -> None:
    """Raises ``UpdateRejected`` unless ``result``'s extras have exactly the groups, names, shapes
    and dtypes of the strategy's declared ``extras`` (their values are ``validate_result``'s)."""
    try:
        _check_extras_layout(result.extra, extras)
    except ValueError as error:
        raise UpdateRejected(result.site, str(error)) from None


def non_finite_keys(weights: Weights, extra: Mapping[str, Weights] | None = None) -> list[str]:
    """The names of the floating tensors of ``weights`` and ``extra`` (as ``group/name``) that
    hold a NaN or an infinity."""
    tensors = {**weights, **{f"{g}/{n}": t for g, group in (extra or {}).items() for n, t in group.items()}}
    return [name for name, tensor in tensors.items() if not _finite(tensor)]


def _check_metrics(metrics: Mapping[str, object]) -> None:
    """Raises ``ValueError`` unless ``metrics`` holds at most ``MAX_METRICS`` well-named,
    finite, bounded numbers (see ``validate_result``)."""
    if len(metrics) > MAX_METRICS:
        raise ValueError(f"{len(metrics)} metrics, at most {MAX_METRICS} allowed")
    for name, value in metrics.items():
        if not isinstance(name, str) or not METRIC_NAME.fullmatch(name):
            raise ValueError(f"metric name {_shown(name)} is not 1-64 of A-Z a-z 0-9 _ . : / -")
        low, high = _METRIC_RANGES.get(name, (-MAX_ABS_METRIC, MAX_ABS_METRIC))
        _check_number(f"metric '{name}'", value, low, high)


def _check_tensors(what: str, tensors: Mapping[str, torch.Tensor], reference: Weights) -> None:
    """Raises ``ValueError`` unless ``tensors`` has exactly the names, shapes and dtypes of
    ``reference`` and its floating values are finite and within ``±MAX_ABS_VALUE``.

    Args:
        what: Names the tensors in the message (e.g. ``"parameter"``).
        tensors: The tensors received.
        reference: What they must look like.
    """
    _check_layout(what, tensors, reference)
    _check_values(what, tensors)


def _check_layout(what: str, tensors: Mapping[str, torch.Tensor], reference: Weights) -> None:
    missing, unexpected = key_differences(reference, tensors)
    if missing or unexpected:
        raise ValueError(f"{what} names differ: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, expected in reference.items():
        problem = layout_mismatch(tensors[name], expected)
        if problem:
            raise ValueError(f"{what} '{name}' {problem}")


def _check_extras(received: Mapping[str, Weights], declared: Mapping[str, Weights] | None) -> None:
    if declared is not None:
        _check_extras_layout(received, declared)
    for group, tensors in received.items():
        _check_values(f"extra '{group}'", tensors)


def _check_extras_layout(received: Mapping[str, Weights], declared: Mapping[str, Weights]) -> None:
    missing, unexpected = key_differences(declared, received)
    if missing or unexpected:
        raise ValueError(f"extras differ: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for group, tensors in received.items():
        _check_layout(f"extra '{group}'", tensors, declared[group])


def _check_values(what: str, tensors: Mapping[str, torch.Tensor]) -> None:
    for name, tensor in tensors.items():
        if not tensor.is_floating_point() or bool((tensor.abs() <= MAX_ABS_VALUE).all()):
            continue
        if not _finite(tensor):
            raise ValueError(f"{what} '{name}' contains NaN or infinite values")
        raise ValueError(f"{what} '{name}' has values of magnitude above {MAX_ABS_VALUE:g}")


def _check_number(name: str, value: object, low: float, high: float, *, integer: bool = False) -> None:
    """``value`` must be a number (an ``int`` if ``integer``) in ``[low, high]``; compared
    exactly, so a huge integer never goes through ``float()`` (which overflows)."""
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}, got {_shown(value)}")
    if not low <= value <= high:  # type: ignore[operator]  # False for NaN
        raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}], got {_shown(value)}")


def _shown(value: object) -> str:
    """``value`` for a message, short (``UpdateRejected`` escapes it); a huge integer by its
    size only."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    return f"'{value[:60]}'" if isinstance(value, str) else repr(value)[:60]


def _finite(tensor: torch.Tensor) -> bool:
    return not tensor.is_floating_point() or bool(torch.isfinite(tensor).all())
