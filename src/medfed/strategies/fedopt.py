"""Adaptive server optimisers: FedAdagrad, FedAdam and FedYogi.

Reddi, Charles, Zaheer, Garrett, Rush, Konečný, Kumar and McMahan, "Adaptive Federated
Optimization", ICLR 2021, Algorithm 2. The three variants differ only in the second-moment
update; each is one pure function below.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import torch

from medfed.aggregation import steppable_keys, weighted_mean
from medfed.strategies.base import Strategy, clone_weights
from medfed.strategies.common import (
    check_results,
    require_positive,
    require_unit_interval,
    sample_weighted,
)
from medfed.types import ServerState, TrainResult, Weights


def adagrad_second_moment(v: torch.Tensor, delta_sq: torch.Tensor) -> torch.Tensor:
    """Adagrad: ``v + delta^2``."""
    return v + delta_sq


def adam_second_moment(v: torch.Tensor, delta_sq: torch.Tensor, beta2: float) -> torch.Tensor:
    """Adam: ``beta2 * v + (1 - beta2) * delta^2``."""
    return torch.lerp(delta_sq, v, beta2)


def yogi_second_moment(v: torch.Tensor, delta_sq: torch.Tensor, beta2: float) -> torch.Tensor:
    """Yogi: ``v - (1 - beta2) * delta^2 * sign(v - delta^2)``."""
    return v - (1.0 - beta2) * delta_sq * torch.sign(v - delta_sq)


class FedOpt(Strategy):
    """Server-side adaptive optimisation of the pseudo-gradient (Reddi et al. 2021, Algorithm 2).

    Each round, with ``x`` the global model and ``Δ = weighted_mean(results) - x``::

        m = beta1 * m + (1 - beta1) * Δ
        v = second_moment(v, Δ²)
        x = x + lr * m / (sqrt(v) + tau)

    starting from ``m = 0`` and ``v = tau²``. ``m`` and ``v`` live in ``ServerState.extra`` as
    ``{"m": ..., "v": ...}``. Running statistics are the sample-weighted mean and integer buffers
    the maximum, without a step (see ``steppable_keys``).

    Args:
        lr: Server learning rate η (> 0).
        beta1: First-moment decay (in [0, 1)).
        tau: Adaptivity τ (> 0); also sets the initial second moment τ².
    """

    def __init__(self, *, lr: float = 1e-2, beta1: float = 0.9, tau: float = 1e-3) -> None:
        self.lr = require_positive("lr", lr)
        self.beta1 = require_unit_interval("beta1", beta1)
        self.tau = require_positive("tau", tau)

    @abstractmethod
    def second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> torch.Tensor:
        """The new second moment from the previous one and the squared pseudo-gradient."""

    def init(self, weights: Weights) -> ServerState:
        """The initial model with ``m = 0`` and ``v = tau²`` for every optimised key."""
        keys = steppable_keys(weights)
        m = {k: torch.zeros_like(weights[k]) for k in keys}
        v = {k: torch.full_like(weights[k], self.tau**2) for k in keys}
        return ServerState(round=0, weights=clone_weights(weights), extra={"m": m, "v": v})

    def aggregate(self, state: ServerState, results: Sequence[TrainResult], num_sites: int) -> ServerState:
        """One adaptive server step along the pseudo-gradient of ``results``."""
        check_results(state.weights, results)
        mean = weighted_mean(sample_weighted(results))
        m, v = self._moments(state)
        weights: Weights = dict(mean)
        new_m: Weights = {}
        new_v: Weights = {}
        for key in steppable_keys(state.weights):
            x = state.weights[key]
            delta = mean[key] - x
            new_m[key] = torch.lerp(delta, m[key], self.beta1)
            new_v[key] = self.second_moment(v[key], delta * delta)
            weights[key] = x + self.lr * new_m[key] / (new_v[key].sqrt() + self.tau)
        return ServerState(round=state.round + 1, weights=weights, extra={"m": new_m, "v": new_v})

    def _moments(self, state: ServerState) -> tuple[Weights, Weights]:
        if "m" not in state.extra or "v" not in state.extra:
            raise ValueError(f"{self.name}: server state lacks 'm' and 'v'; create it with init()")
        return state.extra["m"], state.extra["v"]


class FedAdagrad(FedOpt):
    """FedAdagrad (Reddi et al. 2021): ``v = v + Δ²``.

    Args:
        lr: Server learning rate η (> 0).
        beta1: First-moment decay (in [0, 1)).
        tau: Adaptivity τ (> 0).
    """

    name = "fedadagrad"

    def second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> torch.Tensor:
        """Adagrad's accumulated squared pseudo-gradients."""
        return adagrad_second_moment(v, delta_sq)


class FedAdam(FedOpt):
    """FedAdam (Reddi et al. 2021): ``v = beta2 * v + (1 - beta2) * Δ²``.

    Args:
        lr: Server learning rate η (> 0).
        beta1: First-moment decay (in [0, 1)).
        beta2: Second-moment decay (in [0, 1)).
        tau: Adaptivity τ (> 0).
    """

    name = "fedadam"

    def __init__(
        self, *, lr: float = 1e-2, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3
    ) -> None:
        super().__init__(lr=lr, beta1=beta1, tau=tau)
        self.beta2 = require_unit_interval("beta2", beta2)

    def second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> torch.Tensor:
        """Adam's exponential moving average of squared pseudo-gradients."""
        return adam_second_moment(v, delta_sq, self.beta2)


class FedYogi(FedAdam):
    """FedYogi (Reddi et al. 2021): ``v = v - (1 - beta2) * Δ² * sign(v - Δ²)``.

    Takes FedAdam's arguments; only the second-moment update differs.
    """

    name = "fedyogi"

    def second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> torch.Tensor:
        """Yogi's sign-controlled additive second-moment update."""
        return yogi_second_moment(v, delta_sq, self.beta2)
