"""The local trainer: a plain PyTorch loop with the strategy's hooks, deterministic by seed."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medfed.device import default_device
from medfed.errors import ConfigError, DataError
from medfed.models.norms import has_batch_norm
from medfed.strategies.base import LocalHooks
from medfed.training.losses import loss_for
from medfed.types import Scalar, Task


@dataclass(frozen=True)
class TrainSettings:
    """Local-training hyperparameters; a round's ``TrainTask.config`` may override any of them."""

    local_epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"

    def __post_init__(self) -> None:
        for name, (low, high) in _INTEGER_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(
                    f"training setting {name} must be an integer in [{low}, {high}], got {value!r}"
                )
        if isinstance(self.lr, bool) or not isinstance(self.lr, int | float) or not 0 < self.lr <= MAX_LR:
            raise ConfigError(f"training setting lr must be a number in (0, {MAX_LR}], got {self.lr!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"training setting optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")

    def overridden(self, config: Mapping[str, Scalar]) -> TrainSettings:
        """These settings with the entries of ``config`` that name a setting replaced.

        Raises:
            ConfigError: A value has the wrong type or lies outside its range (a task comes from
                another party, so every value is checked).
        """
        names = {field.name for field in fields(self)}
        changes: dict[str, Any] = {key: value for key, value in config.items() if key in names}
        return replace(self, **changes)


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A training loss: ``(outputs, labels) -> scalar``; outputs are the model's logits (BCHW[D] or
BC), labels the batch's ``label`` (B1HW[D] masks or B classes). An ``nn.Module`` such as
``monai.losses.DiceCELoss(to_onehot_y=True, softmax=True)`` fits."""

StepFn = Callable[[nn.Module, Mapping[str, torch.Tensor], LossFn], torch.Tensor]
"""A training step's loss: ``(model, batch, loss) -> scalar``, given the batch (``image``,
``label``, on the training device) and the trainer's loss; medfed then adds the strategy's
penalty, back-propagates and steps the optimiser (so FedProx, SCAFFOLD and DP-SGD still apply)."""

_INTEGER_RANGES = {"local_epochs": (1, 1000), "batch_size": (1, 65536)}
MAX_LR = 10.0


@dataclass(frozen=True)
class FitReport:
    """What one call of ``LocalTrainer.fit`` did.

    Attributes:
        steps: Optimiser steps taken.
        loss: Mean training loss over the steps (stays at the site under DP).
        lr: The learning rate used.
        dp_protected: The training data is protected by differential privacy: the site sends
            its model only, not the loss, the steps or its case count, which the privacy
            accounting does not cover.
    """

    steps: int
    loss: float
    lr: float
    dp_protected: bool = False


class Trainer(Protocol):
    """What a site needs of a trainer: ``LocalTrainer`` and the DP-SGD trainer that wraps it."""

    def fit(
        self,
        model: nn.Module,
        dataset: Dataset,
        *,
        seed: int,
        hooks: LocalHooks | None = None,
        config: Mapping[str, Scalar] | None = None,
    ) -> FitReport:
        """Trains ``model`` in place on ``dataset``."""
        ...


class LocalTrainer:
    """Trains a model on one site's dataset.

    Args:
        task: ``"segmentation"`` (Dice + CE) or ``"classification"`` (CE).
        settings: Default hyperparameters.
        device: Where to train; ``default_device()`` when ``None``.
        loss: The training loss; the task's (``loss_for``) when ``None``.
        step: Computes a batch's loss in place of ``model(image)`` scored by ``loss``.
    """

    def __init__(
        self,
        *,
        task: Task,
        settings: TrainSettings,
        device: torch.device | None = None,
        loss: LossFn | None = None,
        step: StepFn | None = None,
    ):
        self.task = task
        self.settings = settings
        self.device = device or default_device()
        self.loss: LossFn = loss if loss is not None else loss_for(task)
        self.step = step

    def fit(
        self,
        model: nn.Module,
        dataset: Dataset,
        *,
        seed: int,
        hooks: LocalHooks | None = None,
        config: Mapping[str, Scalar] | None = None,
    ) -> FitReport:
        """Trains ``model`` in place for the configured epochs; batches are shuffled by ``seed``."""
        settings = self.settings.overridden(config or {})
        hooks = hooks or LocalHooks()
        model.to(self.device).train()
        optimizer = make_optimizer(model, settings)
        loader = training_loader(dataset, settings.batch_size, seed, batch_norm=has_batch_norm(model))
        losses = run_epochs(
            loader, settings.local_epochs, seed, lambda batch: self._step(model, optimizer, batch, hooks)
        )
        return FitReport(steps=len(losses), loss=sum(losses) / max(len(losses), 1), lr=settings.lr)

    def batch_loss(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The training loss of ``model`` on ``batch`` (its tensors moved to this trainer's
        device), from ``step`` when given."""
        if self.step is not None:
            return self.step(model, {key: value.to(self.device) for key, value in batch.items()}, self.loss)
        images = batch["image"].to(self.device)
        labels = batch["label"].to(self.device)
        return self.loss(model(images), labels)

    def _step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        batch: Mapping[str, torch.Tensor],
        hooks: LocalHooks,
    ) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = self.batch_loss(model, batch)
        penalty = hooks.penalty(model)
        objective = loss if penalty is None else loss + penalty
        objective.backward()
        hooks.after_backward(model)
        optimizer.step()
        return finite_value(loss)


def training_loader(dataset: Dataset, batch_size: int, seed: int, *, batch_norm: bool) -> DataLoader:
    """Shuffled (by ``seed``) batches of ``batch_size`` cases of ``dataset``.

    With ``batch_norm`` (the model has BatchNorm layers, which raise in training on a batch of
    one 1x1 map), a last batch of one case is dropped; every other case is kept, and the
    shuffle drops a different case each epoch. Without BatchNorm, no case is dropped.

    Raises:
        DataError: ``batch_norm`` and ``dataset`` holds one case (no batch of two can be built);
            the site is named by ``LocalSite``, which knows it.
    """
    cases = len(dataset)  # type: ignore[arg-type]
    if batch_norm and cases == 1:
        raise DataError(
            "",
            None,
            "one training case: the model's BatchNorm layers need at least two per batch; "
            "add cases or use a model without BatchNorm",
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=batch_norm and cases % batch_size == 1,
        generator=torch.Generator().manual_seed(seed),
    )


def run_epochs(
    loader: DataLoader, epochs: int, seed: int, step: Callable[[Mapping[str, torch.Tensor]], float]
) -> list[float]:
    """The values ``step`` returns for every batch of ``epochs`` passes over ``loader``, with
    torch's random state seeded by ``seed`` during the passes and restored after them."""
    losses = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(epochs):
            for batch in loader:
                losses.append(step(batch))
    return losses


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """The optimiser ``settings`` name over ``model``'s parameters: SGD (momentum 0.9) or Adam."""
    if settings.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9)
    return torch.optim.Adam(model.parameters(), lr=settings.lr)


def finite_value(loss: torch.Tensor) -> float:
    """``loss`` as a float.

    Raises:
        FloatingPointError: The loss is NaN or infinite (local training diverged).
    """
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError("local training diverged: the loss is not finite; lower lr")
    return value
