"""FedAvg: the sample-weighted mean of the sites' models.

McMahan, Moore, Ramage, Hampson and Agüera y Arcas, "Communication-Efficient Learning of Deep
Networks from Decentralized Data", AISTATS 2017.
"""

from __future__ import annotations

from collections.abc import Sequence

from medfed.aggregation import weighted_mean
from medfed.strategies.base import Strategy
from medfed.strategies.common import check_results, sample_weighted
from medfed.types import ServerState, TrainResult


class FedAvg(Strategy):
    """Federated averaging (McMahan et al. 2017).

    The new global model is the mean of the sites' models weighted by their number of
    training samples; integer buffers (``num_batches_tracked``) take the maximum.
    """

    name = "fedavg"

    def aggregate(self, state: ServerState, results: Sequence[TrainResult], num_sites: int) -> ServerState:
        """The sample-weighted mean of ``results``' weights as the next global model."""
        check_results(state.weights, results)
        return ServerState(round=state.round + 1, weights=weighted_mean(sample_weighted(results)))
