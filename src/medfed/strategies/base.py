"""The one interface every federated strategy implements.

A strategy has a server half (``init``, ``configure``, ``aggregate``) and a site half
(``site_model``, ``local_hooks``, ``finish``). It never knows how sites are reached: the same
object runs in ``medfed simulate`` and behind the gRPC server and client.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from medfed.types import Scalar, ServerState, SiteState, TrainResult, TrainTask, Weights


class LocalHooks:
    """How a strategy changes a site's local optimisation; the default changes nothing."""

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """An extra term added to the local loss (e.g. FedProx's proximal term), or ``None``."""
        return None

    def after_backward(self, model: nn.Module) -> None:
        """Adjusts gradients after ``backward()`` and before the optimiser step."""


class Strategy(ABC):
    """Base class of federated strategies. Subclasses set ``name`` and implement ``aggregate``."""

    name: str = ""

    # ----- server half -------------------------------------------------------------------------
    def init(self, weights: Weights) -> ServerState:
        """The server state before round 1, starting from ``weights``."""
        return ServerState(round=0, weights=clone_weights(weights))

    def configure(self, state: ServerState, round: int, config: Mapping[str, Scalar]) -> TrainTask:
        """The task sent to every site taking part in ``round``."""
        return TrainTask(round=round, weights=state.weights, config=dict(config))

    @abstractmethod
    def aggregate(self, state: ServerState, results: Sequence[TrainResult], num_sites: int) -> ServerState:
        """Combines the round's results into the next server state.

        Args:
            state: The server state the round started from.
            results: One result per site that completed the round (at least one).
            num_sites: Number of sites in the federation, taking part or not.
        """

    def result_extras(self, reference: Weights) -> dict[str, Weights]:
        """The extra tensors every site result must carry (``TrainResult.extra``), by group.

        Each group maps names to template tensors whose shapes and dtypes the received ones
        must have; the round loop rejects a result with any other group, name, shape or dtype
        before ``aggregate`` sees it. The default is none.

        Args:
            reference: The global model the sites were sent.
        """
        return {}

    # ----- site half ---------------------------------------------------------------------------
    def site_model(self, global_weights: Weights, site: SiteState) -> Weights:
        """The weights a site trains from and evaluates with, given the global model."""
        return global_weights

    def local_hooks(self, task: TrainTask, site: SiteState, model: nn.Module) -> LocalHooks:
        """Hooks applied by the local trainer while it trains ``model`` on this task."""
        return LocalHooks()

    def finish(
        self, task: TrainTask, site: SiteState, trained: Weights, hooks: LocalHooks
    ) -> tuple[dict[str, Weights], SiteState]:
        """After local training: the extra tensors to send and the site's new state.

        Args:
            task: The task that was trained.
            site: The site's state before training.
            trained: The site's weights after training.
            hooks: The hooks ``local_hooks`` gave for this task, after training with them
                (e.g. SCAFFOLD's record of the local gradients).
        """
        return {}, SiteState(weights=trained, extra=site.extra)

    def private_state(self, site: SiteState) -> SiteState:
        """The part of ``site``'s state that later rounds read: what a checkpoint keeps.

        By default the strategy's ``extra`` groups (SCAFFOLD's ``c_i``, FedBN's own norm
        entries) and no weights: a site trains from the global model. Empty for FedAvg,
        FedProx and FedOpt.
        """
        return SiteState(extra=site.extra)


def clone_weights(weights: Weights) -> Weights:
    """A deep copy of ``weights`` (detached, contiguous)."""
    return {name: tensor.detach().clone() for name, tensor in weights.items()}


class WrappedStrategy(Strategy):
    """A strategy around another one (privacy, robustness): every method defaults to the inner
    strategy's, so a wrapper overrides only what it changes.

    Args:
        inner: The wrapped strategy.
    """

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner

    def init(self, weights: Weights) -> ServerState:
        return self.inner.init(weights)

    def configure(self, state: ServerState, round: int, config: Mapping[str, Scalar]) -> TrainTask:
        return self.inner.configure(state, round, config)

    def aggregate(self, state: ServerState, results: Sequence[TrainResult], num_sites: int) -> ServerState:
        return self.inner.aggregate(state, results, num_sites)

    def result_extras(self, reference: Weights) -> dict[str, Weights]:
        return self.inner.result_extras(reference)

    def site_model(self, global_weights: Weights, site: SiteState) -> Weights:
        return self.inner.site_model(global_weights, site)

    def local_hooks(self, task: TrainTask, site: SiteState, model: nn.Module) -> LocalHooks:
        return self.inner.local_hooks(task, site, model)

    def finish(
        self, task: TrainTask, site: SiteState, trained: Weights, hooks: LocalHooks
    ) -> tuple[dict[str, Weights], SiteState]:
        return self.inner.finish(task, site, trained, hooks)

    def private_state(self, site: SiteState) -> SiteState:
        return self.inner.private_state(site)
