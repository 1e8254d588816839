"""What secure aggregation and CKKS aggregation share on the strategy side: the round loop must
only ever see one protected sum, never an individual site's update.

A protected round over the grid (``SecureAggregationRound``, ``EncryptedAggregationRound``)
turns the sites' answers into one ``TrainResult`` marked as the aggregate; a ``ProtectedAggregation`` subclass
wraps the strategy and refuses anything else, so a misconfigured run fails instead of silently
aggregating in the clear.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import ClassVar

from medfed.errors import MedfedError
from medfed.strategies.base import Strategy, WrappedStrategy
from medfed.types import AGGREGATE_SITE, AGGREGATE_SITES_METRIC, ServerState, TrainResult, Weights

SAMPLE_WEIGHTED_STRATEGIES = frozenset({"fedavg", "fedprox", "fedbn", "fedadam", "fedyogi", "fedadagrad"})
"""Strategies whose ``aggregate`` needs only the sample-weighted mean of the sites' models."""


def is_protected_aggregate(result: TrainResult) -> bool:
    """Whether ``result`` is a protected round's sum rather than one site's update."""
    return result.site == AGGREGATE_SITE and AGGREGATE_SITES_METRIC in result.metrics


def aggregate_result(round: int, mean: Weights, weight: float, num_sites: int) -> TrainResult:
    """The one result a protected round hands the loop: the sites' mean, their total sample
    count and how many sites are in it (counted towards ``min_sites``)."""
    return TrainResult(
        site=AGGREGATE_SITE,
        round=round,
        weights=mean,
        num_samples=builtins.round(weight),
        metrics={AGGREGATE_SITES_METRIC: float(num_sites)},
    )


class ProtectedAggregation(WrappedStrategy):
    """Wraps a sample-weighted strategy so that it only ever aggregates a protected sum.

    Subclasses name the protection (``kind``), the strategy-name ``prefix``, their ``error``
    type and the ``collector`` (a round over the grid) that produces the sum.

    Args:
        inner: The strategy to protect; its ``name`` must be in ``SAMPLE_WEIGHTED_STRATEGIES``
            (SCAFFOLD's uniform means and control variates are not supported).

    Raises:
        ValueError: If ``inner`` is not a sample-weighted strategy.
    """

    kind: ClassVar[str]
    prefix: ClassVar[str]
    error: ClassVar[type[MedfedError]]
    collector: ClassVar[str]

    def __init__(self, inner: Strategy) -> None:
        if inner.name not in SAMPLE_WEIGHTED_STRATEGIES:
            raise ValueError(f"{self.kind} supports {sorted(SAMPLE_WEIGHTED_STRATEGIES)}, got '{inner.name}'")
        super().__init__(inner)
        self.name = f"{self.prefix}+{inner.name}"

    def aggregate(self, state: ServerState, results: Sequence[TrainResult], num_sites: int) -> ServerState:
        """The inner strategy's step on the protected mean.

        Raises:
            MedfedError: (the subclass's ``error``) If ``results`` is not exactly one protected
                aggregate, i.e. individual site updates reached the server.
        """
        if len(results) != 1 or not is_protected_aggregate(results[0]):
            raise self.error(
                f"{self.kind} is configured but the server received individual site updates; "
                f"use {self.collector} to gather the round"
            )
        return self.inner.aggregate(state, results, num_sites)
