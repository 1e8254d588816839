"""FedBN: batch-norm layers stay local; everything else is averaged as in FedAvg.

Li, Jiang, Zhang, Kamp and Dou, "FedBN: Federated Learning on Non-IID Features via Local Batch
Normalization", ICLR 2021.
"""

from __future__ import annotations

from collections.abc import Sequence

from medfed.aggregation import batchnorm_keys, weighted_mean
from medfed.strategies.base import Strategy
from medfed.strategies.common import check_results
from medfed.types import ServerState, SiteState, TrainResult, Weights


class FedBN(Strategy):
    """FedBN (Li et al. 2021).

    Batch-norm entries (see ``batchnorm_keys``: affine weight and bias and running statistics)
    never change in the global model; each site trains and evaluates with its own. All other
    entries are the sample-weighted mean of the sites' models.
    """

    name = "fedbn"

    def aggregate(
        self, state: ServerState, results: Sequence[TrainResult], num_sites: int
    ) -> ServerState:
        """FedAvg on the non-batch-norm entries; batch-norm entries keep their previous values."""
        check_results(state.weights, results)
        local = batchnorm_keys(state.weights)
        shared = weighted_mean(
            ({k: v for k, v in r.weights.items() if k not in local}, float(r.num_samples))
            for r in results
        )
        weights = {k: shared[k] if k not in local else v.clone() for k, v in state.weights.items()}
        return ServerState(round=state.round + 1, weights=weights)

    def site_model(self, global_weights: Weights, site: SiteState) -> Weights:
        """The global model with the site's own batch-norm entries wherever the site has them."""
        local = batchnorm_keys(global_weights)
        return {
            key: site.weights[key] if key in local and key in site.weights else tensor
            for key, tensor in global_weights.items()
        }

    def private_state(self, site: SiteState) -> SiteState:
        """The site's own batch-norm entries (what ``site_model`` reads)."""
        local = batchnorm_keys(site.weights)
        return SiteState(weights={key: site.weights[key] for key in local}, extra=site.extra)
