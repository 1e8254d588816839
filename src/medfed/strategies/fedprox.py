"""FedProx: FedAvg with a proximal term pulling local training towards the global model.

Li, Sahu, Zaheer, Sanjabi, Talwalkar and Smith, "Federated Optimization in Heterogeneous
Networks", MLSys 2020.
"""

from __future__ import annotations

import torch
from torch import nn

from medfed.strategies.base import LocalHooks
from medfed.strategies.common import DeviceCache, require_non_negative
from medfed.strategies.fedavg import FedAvg
from medfed.types import SiteState, TrainTask, Weights


class FedProx(FedAvg):
    """FedProx (Li et al. 2020): the server averages as FedAvg; sites minimise
    ``loss + mu/2 * ||w - w_global||^2``.

    Args:
        mu: Strength of the proximal term (>= 0; 0 is FedAvg).
    """

    name = "fedprox"

    def __init__(self, *, mu: float = 0.01) -> None:
        self.mu = require_non_negative("mu", mu)

    def local_hooks(self, task: TrainTask, site: SiteState, model: nn.Module) -> LocalHooks:
        """Hooks adding the proximal term around ``task.weights`` to the local loss."""
        return ProximalHooks(mu=self.mu, anchor=task.weights)


class ProximalHooks(LocalHooks):
    """Adds ``mu/2 * sum_p ||p - anchor[p]||^2`` over the model's named parameters to the loss.

    Args:
        mu: Strength of the proximal term.
        anchor: The global weights the parameters are pulled towards.
    """

    def __init__(self, *, mu: float, anchor: Weights) -> None:
        self.mu = mu
        self._anchor = DeviceCache(anchor, "global weights")

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """The proximal term (a scalar tensor), or ``None`` for a model without parameters."""
        terms = [
            (param - self._anchor.like(name, param)).pow(2).sum() for name, param in model.named_parameters()
        ]
        if not terms:
            return None
        return self.mu / 2 * torch.stack(terms).sum()
