"""Secure aggregation: Bonawitz et al. 2017, "Practical Secure Aggregation for
Privacy-Preserving Machine Learning" (CCS'17), semi-honest server variant.

Pure pieces (``shamir``, ``encoding``, ``crypto``, ``vectors``), the protocol's two halves
(``SecAggClient``, ``SecAggServer``) exchanging the messages of ``messages``, an in-process
driver (``secure_sum``, ``secure_weighted_mean``) and the round-loop integration over any grid
(``SecureAggregationRound``, ``SecureAggregationSite``, ``SecureAggregation``).
"""

from medfed.privacy.secagg.config import new_config
from medfed.privacy.secagg.driver import (
    SecureSum,
    secure_sum,
    secure_weighted_mean,
)
from medfed.privacy.secagg.encoding import FixedPoint
from medfed.privacy.secagg.errors import SecureAggregationError
from medfed.privacy.secagg.rounds import SecureAggregationRound, SecureAggregationSite
from medfed.privacy.secagg.server_machine import SecAggServer
from medfed.privacy.secagg.site_machine import SecAggClient
from medfed.privacy.secagg.strategy import SecureAggregation, threshold_for

__all__ = [
    "FixedPoint",
    "SecAggClient",
    "SecAggServer",
    "SecureAggregation",
    "SecureAggregationRound",
    "SecureAggregationSite",
    "SecureAggregationError",
    "SecureSum",
    "new_config",
    "secure_sum",
    "secure_weighted_mean",
    "threshold_for",
]
