"""One site's side of a round: load the global model, train locally, answer with an update.

The same class serves a simulated site and a real site behind the gRPC client.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import nn
from torch.utils.data import Dataset

from medfed.errors import DataError
from medfed.seeding import derive_seed
from medfed.strategies.base import Strategy
from medfed.training.trainer import Trainer
from medfed.types import SiteState, TrainResult, TrainTask, Weights

DP_WEIGHT = 1
"""``num_samples`` of a DP-SGD site's result: its exact case count is not covered by the
privacy accounting, so DP sites are averaged with equal weights."""


@runtime_checkable
class Reseedable(Protocol):
    """A dataset whose random augmentation can be restarted from a seed."""

    def reseed(self, seed: int) -> None: ...


class LocalSite:
    """A site with private data, a model to train and private strategy state.

    Args:
        name: The site's name.
        dataset: The site's training data (never leaves the site).
        model: The network trained in place; simulated sites may share one instance.
        trainer: The local trainer.
        strategy: The federated strategy (its site half is used here).
        seed: The run's seed; each round's randomness derives from (seed, round, site).
        state: Private state carried over from earlier rounds.
    """

    def __init__(
        self,
        name: str,
        dataset: Dataset,
        *,
        model: nn.Module,
        trainer: Trainer,
        strategy: Strategy,
        seed: int,
        state: SiteState | None = None,
    ) -> None:
        self.name = name
        self.dataset = dataset
        self.model = model
        self.trainer = trainer
        self.strategy = strategy
        self.seed = seed
        self.state = state or SiteState()

    @property
    def num_samples(self) -> int:
        """Number of training cases at this site."""
        return len(self.dataset)  # type: ignore[arg-type]

    def train(self, task: TrainTask) -> TrainResult:
        """Runs ``task`` and returns this site's update; updates the private state."""
        self.model.load_state_dict(self.strategy.site_model(task.weights, self.state))
        seed = derive_seed(self.seed, "train", task.round, self.name)
        if isinstance(self.dataset, Reseedable):
            self.dataset.reseed(seed)
        hooks = self.strategy.local_hooks(task, self.state, self.model)
        try:
            report = self.trainer.fit(self.model, self.dataset, seed=seed, hooks=hooks, config=task.config)
        except DataError as error:
            if error.site:
                raise
            raise DataError(self.name, error.path, error.reason) from None
        trained = cpu_weights(self.model)
        extra, self.state = self.strategy.finish(task, self.state, trained, hooks)
        if report.dp_protected:  # only the private model leaves: every DP site weighs 1
            num_samples, metrics = DP_WEIGHT, {}
        else:
            num_samples, metrics = self.num_samples, {"loss": report.loss, "steps": float(report.steps)}
        return TrainResult(
            site=self.name,
            round=task.round,
            weights=trained,
            num_samples=num_samples,
            metrics=metrics,
            extra=extra,
        )


def cpu_weights(model: nn.Module) -> Weights:
    """A detached CPU copy of ``model``'s state dict."""
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}
