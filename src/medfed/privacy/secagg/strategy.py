"""Secure aggregation in the round loop: the strategy wrapper that insists on a secure sum.

Bonawitz et al. 2017 (CCS'17). The protocol is interactive (four message rounds after local
training), so it runs where sites are reached: ``SecureAggregationRound``
(``medfed.privacy.secagg.rounds``) gathers a round over any ``Grid`` and hands the round loop
one ``TrainResult`` holding only the sample-weighted mean. ``SecureAggregation`` wraps the
strategy: it passes that single result to the inner strategy and raises if it is ever given
individual site updates, so a misconfigured run fails instead of silently aggregating in the
clear.
"""

from __future__ import annotations

import math

from medfed.privacy.protected_sum import ProtectedAggregation
from medfed.privacy.secagg.errors import SecureAggregationError


def threshold_for(num_sites: int, fraction: float) -> int:
    """Shamir threshold for ``num_sites``: ``floor(fraction * n) + 1``, at most ``n``.

    ``fraction`` in [0.5, 1) keeps ``t > n / 2`` as ``check_config`` requires.
    """
    if not 0.5 <= fraction < 1.0:
        raise ValueError(f"threshold fraction must lie in [0.5, 1), got {fraction}")
    return min(num_sites, math.floor(fraction * num_sites) + 1)


class SecureAggregation(ProtectedAggregation):
    """Wraps a sample-weighted strategy so that it only ever aggregates a secure sum (see
    ``ProtectedAggregation``)."""

    kind = "secure aggregation"
    prefix = "secagg"
    error = SecureAggregationError
    collector = "SecureAggregationRound"
