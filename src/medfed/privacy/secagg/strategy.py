"""Secure aggregation in the round loop: a connector that sums securely, a strategy that insists.

Bonawitz et al. 2017 (CCS'17). The protocol is interactive (four message rounds after local
training), so it sits where sites are reached: ``SecureAggregationConnector`` wraps the
connector that delivers the sites' trained models, runs the protocol on them and hands the
round loop one ``TrainResult`` holding only the sample-weighted mean. ``SecureAggregation``
wraps the strategy: it passes that single result to the inner strategy and raises if it is
ever given individual site updates, so a misconfigured run fails instead of silently
aggregating in the clear.

In simulation the connector holds each site's trained model in memory (it plays the site
halves too); the ``SecAggServer`` inside it only ever receives protocol messages. In a
deployment the site half (``SecAggClient``) runs in the site process after training and the
connector's server half exchanges the messages of ``medfed.privacy.secagg.messages``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

from medfed.privacy.protected_sum import (
    ProtectedAggregation,
    aggregate_result,
    check_site_results,
    is_protected_aggregate,
)
from medfed.privacy.secagg.driver import secure_weighted_mean
from medfed.privacy.secagg.encoding import DEFAULT_CODE, FixedPoint
from medfed.privacy.secagg.errors import SecureAggregationError
from medfed.types import AGGREGATE_SITE, AGGREGATE_SITES_METRIC, TrainResult, TrainTask

SECURE_AGGREGATE_SITE = AGGREGATE_SITE
"""The ``site`` of the one result a secure round produces."""

NUM_SITES_METRIC = AGGREGATE_SITES_METRIC
"""Metric of the secure result: how many sites' updates are in the mean (the round loop counts
them towards ``min_sites``)."""

class _Connector(Protocol):
    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]: ...


def threshold_for(num_sites: int, fraction: float) -> int:
    """Shamir threshold for ``num_sites``: ``floor(fraction * n) + 1``, at most ``n``.

    ``fraction`` in [0.5, 1) keeps ``t > n / 2`` as ``check_config`` requires.
    """
    if not 0.5 <= fraction < 1.0:
        raise ValueError(f"threshold fraction must lie in [0.5, 1), got {fraction}")
    return min(num_sites, math.floor(fraction * num_sites) + 1)


is_secure_aggregate = is_protected_aggregate
"""Whether a result is the output of a secure round rather than one site's update."""


class SecureAggregationConnector:
    """Runs the sites through ``inner`` and returns only their securely aggregated mean.

    Args:
        inner: Delivers tasks to the sites (e.g. ``InProcessConnector``).
        threshold_fraction: Sets the threshold ``t = floor(fraction * n) + 1`` for the ``n``
            sites that return a model; up to ``n - t`` may then drop out during the protocol.
        code: The fixed-point code (``|n_u * x_u|`` must stay below ``code.max_abs(n)``).

    Raises:
        SecureAggregationError: From ``train`` when the protocol cannot finish; the round then
            fails as a whole (the loop keeps the previous state).
    """

    def __init__(
        self, inner: _Connector, *, threshold_fraction: float = 0.5, code: FixedPoint = DEFAULT_CODE
    ) -> None:
        threshold_for(2, threshold_fraction)  # validates the fraction
        self.inner = inner
        self.threshold_fraction = threshold_fraction
        self.code = code

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        """Trains the sites, then returns ``[secure mean]`` (or ``[]`` when no site answered)."""
        results = self.inner.train(tasks)
        if not results:
            return []
        check_site_results(results, error=SecureAggregationError, sum_name="a secure sum")
        threshold = threshold_for(len(results), self.threshold_fraction)
        updates = {r.site: (r.weights, float(r.num_samples)) for r in results}
        mean, total, contributors = secure_weighted_mean(updates, threshold, code=self.code)
        return [aggregate_result(results[0].round, mean, total, len(contributors))]


class SecureAggregation(ProtectedAggregation):
    """Wraps a sample-weighted strategy so that it only ever aggregates a secure sum (see
    ``ProtectedAggregation``)."""

    kind = "secure aggregation"
    prefix = "secagg"
    error = SecureAggregationError
    connector = "SecureAggregationConnector"
