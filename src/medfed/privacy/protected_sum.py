"""What secure aggregation and CKKS aggregation share on the strategy side: the round loop must
only ever see one protected sum, never an individual site's update.

A connector (``SecureAggregationConnector``, ``CkksAggregationConnector``) turns the sites'
results into one ``TrainResult`` marked as the aggregate; a ``ProtectedAggregation`` subclass
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

SAMPLE_WEIGHTED_STRATEGIES = frozenset(
    {"fedavg", "fedprox", "fedbn", "fedadam", "fedyogi", "fedadagrad"}
)
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


def check_site_results(
    results: Sequence[TrainResult], *, error: type[MedfedError], sum_name: str
) -> None:
    """Raises ``error`` unless ``results`` come from 2+ distinct sites without strategy extras.

    Args:
        results: The sites' results of one round.
        error: The protection's error type.
        sum_name: The protection's sum in messages, e.g. ``"a secure sum"``.
    """
    if len(results) < 2:
        raise error(
            f"only {len(results)} site answered; {sum_name} needs at least 2, "
            "and one site's update is never passed on in the clear"
        )
    if len({r.site for r in results}) != len(results) or any(r.extra for r in results):
        raise error(f"duplicate sites or strategy extras in a round aggregated as {sum_name}")


class ProtectedAggregation(WrappedStrategy):
    """Wraps a sample-weighted strategy so that it only ever aggregates a protected sum.

    Subclasses name the protection (``kind``), the strategy-name ``prefix``, their ``error``
    type and the ``connector`` that produces the sum.

    Args:
        inner: The strategy to protect; its ``name`` must be in ``SAMPLE_WEIGHTED_STRATEGIES``
            (SCAFFOLD's uniform means and control variates are not supported).

    Raises:
        ValueError: If ``inner`` is not a sample-weighted strategy.
    """

    kind: ClassVar[str]
    prefix: ClassVar[str]
    error: ClassVar[type[MedfedError]]
    connector: ClassVar[str]

    def __init__(self, inner: Strategy) -> None:
        if inner.name not in SAMPLE_WEIGHTED_STRATEGIES:
            raise ValueError(
                f"{self.kind} supports {sorted(SAMPLE_WEIGHTED_STRATEGIES)}, got '{inner.name}'"
            )
        super().__init__(inner)
        self.name = f"{self.prefix}+{inner.name}"

    def aggregate(
        self, state: ServerState, results: Sequence[TrainResult], num_sites: int
    ) -> ServerState:
        """The inner strategy's step on the protected mean.

        Raises:
            MedfedError: (the subclass's ``error``) If ``results`` is not exactly one protected
                aggregate, i.e. individual site updates reached the server.
        """
        if len(results) != 1 or not is_protected_aggregate(results[0]):
            raise self.error(
                f"{self.kind} is configured but the server received individual site updates; "
                f"use {self.connector} to reach the sites"
            )
        return self.inner.aggregate(state, results, num_sites)
