"""A researcher's own model, loss, augmentation and training step, plugged into a simulation
(as Flower's ``client_fn`` plugs in a client): every site and experiment uses them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from medfed.data.dataset import Transform
from medfed.errors import ConfigError
from medfed.training.trainer import LossFn, StepFn
from medfed.types import Task

CUSTOM_MODEL = "model_fn"
"""The model name checkpoints record for a ``model_fn`` network (``medfed export`` cannot
rebuild it; take it from the Python results instead)."""


@dataclass(frozen=True)
class ModelContext:
    """What a ``model_fn`` is told about the network to build.

    Attributes:
        task: ``"segmentation"`` (logits B x out_channels x HW[D]) or ``"classification"``
            (logits B x out_channels).
        spatial_dims: 2 or 3.
        in_channels: Channels of an input image.
        out_channels: Classes: labels in the masks (background included), or image classes.
    """

    task: Task
    spatial_dims: int
    in_channels: int
    out_channels: int


ModelFn = Callable[[ModelContext], nn.Module]
"""Builds the network every experiment starts from; called once per experiment under the same
seed, so all experiments start from identical weights."""


@dataclass(frozen=True)
class SimulationHooks:
    """Replacements for medfed's defaults; ``None`` keeps the default.

    Attributes:
        model_fn: Builds the network instead of ``model:`` (the config's model checks are then
            skipped).
        loss_fn: The training loss instead of the task's (Dice + CE, or CE).
        transform: The training augmentation instead of the built-in one (applied even when
            ``data.augment`` is false); held-out data is never augmented.
        train_step: Computes each batch's training loss (see ``StepFn``).
    """

    model_fn: ModelFn | None = None
    loss_fn: LossFn | None = None
    transform: Transform | None = None
    train_step: StepFn | None = None

    def build_model(self, context: ModelContext, *, seed: int) -> nn.Module:
        """``model_fn(context)`` with torch's random generator seeded by ``seed``.

        Raises:
            ConfigError: ``model_fn`` is not set or did not return an ``nn.Module``.
        """
        if self.model_fn is None:
            raise ConfigError("no model_fn to build the model with")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.model_fn(context)
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model_fn must return a torch.nn.Module, got {type(model).__name__}")
        return model
