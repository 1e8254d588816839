"""Robust aggregation around a strategy: no single site's update can move the global model far.

The wrapper replaces the sites' results by one pseudo-result, the global model plus a robust
aggregate of the sites' updates (see ``medfed.aggregation.robust`` for the rules and their
papers), and lets the wrapped strategy aggregate that: FedAvg and FedProx take it as the new
model, FedAdam steps along it as the pseudo-gradient, and under FedBN the robust aggregate of
the norm entries becomes the global norm layers (each site still trains with its own). Robust rules ignore the sites' reported sample counts, which a malicious site
could inflate.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from medfed.aggregation import subtract
from medfed.aggregation.robust import (
    coordinate_median,
    geometric_median,
    multi_krum,
    norm_bounded,
    stack_updates,
    trimmed_mean,
)
from medfed.registry import Registry
from medfed.strategies.base import Strategy, WrappedStrategy
from medfed.strategies.common import check_results
from medfed.strategies.fedavg import FedAvg
from medfed.strategies.fedbn import FedBN
from medfed.strategies.fedopt import FedOpt
from medfed.types import ServerState, TrainResult, Weights

logger = logging.getLogger(__name__)

ROBUST_SITE = "<robust-aggregate>"
"""The ``site`` of the pseudo-result handed to the wrapped strategy."""


class RobustRule(ABC):
    """A robust aggregation rule: many updates in, one update out."""

    name: str = ""

    @abstractmethod
    def __call__(self, updates: Sequence[Weights]) -> Weights:
        """The robust aggregate of ``updates`` (same keys, shapes and dtypes)."""


ROBUST_RULES: Registry[RobustRule] = Registry("robust aggregation rule")


@ROBUST_RULES.register("median")
@dataclass(frozen=True)
class Median(RobustRule):
    """Coordinate-wise median (Yin et al. 2018)."""

    name = "median"

    def __call__(self, updates: Sequence[Weights]) -> Weights:
        return coordinate_median(updates)


@ROBUST_RULES.register("trimmed_mean")
@dataclass(frozen=True)
class TrimmedMean(RobustRule):
    """Coordinate-wise trimmed mean (Yin et al. 2018).

    Args:
        beta: Fraction of values dropped at each end of every coordinate, in [0, 0.5).
    """

    beta: float = 0.2
    name = "trimmed_mean"

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta < 0.5:
            raise ValueError(f"trimmed_mean: beta must lie in [0, 0.5), got {self.beta}")

    def __call__(self, updates: Sequence[Weights]) -> Weights:
        return trimmed_mean(updates, self.beta)


@ROBUST_RULES.register("krum")
@dataclass(frozen=True)
class Krum(RobustRule):
    """Krum, or Multi-Krum with ``m > 1`` (Blanchard et al. 2017).

    Args:
        f: Number of Byzantine sites tolerated (>= 0); the guarantee needs ``n > 2f + 2``.
        m: Number of lowest-scored updates averaged (>= 1; capped at the number of updates).
    """

    f: int = 1
    m: int = 1
    name = "krum"

    def __post_init__(self) -> None:
        if not (_is_int(self.f) and _is_int(self.m) and self.f >= 0 and self.m >= 1):
            raise ValueError(f"krum: need integers f >= 0 and m >= 1, got f={self.f!r}, m={self.m!r}")

    def __call__(self, updates: Sequence[Weights]) -> Weights:
        return multi_krum(updates, f=self.f, m=min(self.m, len(updates)))


@ROBUST_RULES.register("geometric_median")
@dataclass(frozen=True)
class GeometricMedian(RobustRule):
    """Geometric median by smoothed Weiszfeld, RFA (Pillutla et al. 2022).

    Args:
        nu: Smoothing distance (> 0).
        max_iter: Most Weiszfeld iterations (>= 1).
        tol: Relative objective improvement that stops the iteration (>= 0).
    """

    nu: float = 1e-6
    max_iter: int = 100
    tol: float = 1e-6
    name = "geometric_median"

    def __post_init__(self) -> None:
        if not (self.nu > 0 and _is_int(self.max_iter) and self.max_iter >= 1 and self.tol >= 0):
            raise ValueError(
                f"geometric_median: need nu > 0, max_iter >= 1, tol >= 0, got {self.nu}, {self.max_iter}, {self.tol}"
            )

    def __call__(self, updates: Sequence[Weights]) -> Weights:
        return geometric_median(updates, nu=self.nu, max_iter=self.max_iter, tol=self.tol)


@ROBUST_RULES.register("norm_bound")
@dataclass(frozen=True)
class NormBound(RobustRule):
    """The mean of the updates after clipping each to a norm bound (Sun et al. 2019).

    Args:
        bound: The largest update norm kept (> 0); ``None``: the median of the round's norms.
    """

    bound: float | None = None
    name = "norm_bound"

    def __post_init__(self) -> None:
        if self.bound is not None and not (math.isfinite(self.bound) and self.bound > 0):
            raise ValueError(f"norm_bound: bound must be a finite number > 0, got {self.bound}")

    def __call__(self, updates: Sequence[Weights]) -> Weights:
        clipped = norm_bounded(updates, self.bound)
        return {key: torch.stack([u[key] for u in clipped]).mean(dim=0) for key in clipped[0]}


ROBUST_INNER = (FedAvg, FedBN, FedOpt)
"""Strategies a robust rule can wrap: those that aggregate only the sites' models (FedAvg,
FedProx, FedBN, FedAdam, FedYogi, FedAdagrad; not SCAFFOLD's control variates)."""


class RobustAggregation(WrappedStrategy):
    """``inner`` aggregating a robust combination of the sites' updates instead of their mean.

    Floating entries are combined by ``rule`` as updates
    from the global model; integer buffers (``num_batches_tracked``) take the coordinate-wise
    median. Results with a non-finite entry are left out with a warning.

    Args:
        inner: The strategy to protect (see ``ROBUST_INNER``).
        rule: The robust rule.

    Raises:
        TypeError: If ``inner`` is not one of ``ROBUST_INNER``.
    """

    def __init__(self, inner: Strategy, rule: RobustRule) -> None:
        if not isinstance(inner, ROBUST_INNER):
            raise TypeError(
                f"robust aggregation supports fedavg, fedprox, fedbn, fedadam, fedyogi and "
                f"fedadagrad, got '{inner.name}'"
            )
        super().__init__(inner)
        self.rule = rule
        self.name = inner.name

    def aggregate(self, state: ServerState, results: Sequence[TrainResult], num_sites: int) -> ServerState:
        """``inner``'s aggregate of one pseudo-result: the global model plus the robust update."""
        check_results(state.weights, results)
        if any(result.extra for result in results):
            raise ValueError("robust aggregation does not support strategy extras in results")
        results = _finite(results)
        robust_keys = [k for k, t in state.weights.items() if t.is_floating_point()]
        update = self.rule([subtract(r.weights, state.weights, robust_keys) for r in results])
        counters = [k for k, t in state.weights.items() if not t.is_floating_point()]
        counts = coordinate_median([{k: r.weights[k] for k in counters} for r in results]) if counters else {}
        weights = {
            key: state.weights[key] + update[key] if key in update else counts.get(key, tensor)
            for key, tensor in state.weights.items()
        }
        pseudo = TrainResult(
            site=ROBUST_SITE,
            round=state.round + 1,
            weights=weights,
            num_samples=max(1, sum(result.num_samples for result in results)),
        )
        return self.inner.aggregate(state, [pseudo], num_sites)


def robust_strategy(inner: Strategy, rule: str, **params: object) -> RobustAggregation:
    """``inner`` wrapped in the robust rule registered as ``rule``, built with ``params``.

    Raises:
        UnknownNameError: If ``rule`` is not registered (the message lists the valid names).
        ValueError, TypeError: If ``params`` do not fit the rule, or (TypeError) ``inner`` is
            not supported.
    """
    return RobustAggregation(inner, ROBUST_RULES.create(rule, **params))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(results: Sequence[TrainResult]) -> list[TrainResult]:
    """``results`` without those holding a NaN or infinity (at least one must remain)."""
    finite = stack_updates([r.weights for r in results]).isfinite().all(dim=1).tolist()
    for result, ok in zip(results, finite, strict=True):
        if not ok:
            logger.warning("round: site '%s' sent a non-finite update; left out", result.site)
    kept = [result for result, ok in zip(results, finite, strict=True) if ok]
    if not kept:
        raise ValueError("every site's update holds a NaN or infinity; nothing to aggregate")
    return kept
