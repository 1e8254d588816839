"""Pure aggregation operations over ``Weights``; strategies are built from these."""

from medfed.aggregation.keys import (
    check_compatible,
    running_stat_keys,
    steppable_keys,
)
from medfed.aggregation.mean import weighted_mean
from medfed.aggregation.mixing import consensus, metropolis_weights, mix
from medfed.aggregation.ops import add_scaled, subtract, zeros_like

__all__ = [
    "add_scaled",
    "check_compatible",
    "consensus",
    "metropolis_weights",
    "mix",
    "running_stat_keys",
    "steppable_keys",
    "subtract",
    "weighted_mean",
    "zeros_like",
]
