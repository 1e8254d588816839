"""Exponential moving average of the parameters over a round's DP-SGD steps (De et al. 2022).

The iterates of DP-SGD are already private, so any function of them (here their average) is
post-processing and costs no privacy. The average starts at zero and is debiased as Adam's
moments are, so it weighs only the round's iterates: after ``t`` steps with decay ``d``,
``sum_i (1 - d) d^(t - i) theta_i / (1 - d^t)``.
"""

from __future__ import annotations

import torch
from torch import nn

from medfed.types import Weights


def ema_step(average: Weights, current: Weights, decay: float) -> Weights:
    """``decay * average + (1 - decay) * current`` per tensor (a new dictionary)."""
    return {key: decay * average[key] + (1.0 - decay) * current[key] for key in average}


class ParameterEMA:
    """The debiased moving average of ``model``'s trainable parameters.

    Args:
        model: The model being trained.
        decay: ``d`` in ``(0, 1)``; larger remembers more iterates.

    Raises:
        ValueError: ``decay`` is not in ``(0, 1)``.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must lie in (0, 1), got {decay}")
        self.model, self.decay, self.steps = model, decay, 0
        self.average: Weights = {name: torch.zeros_like(p) for name, p in self._parameters().items()}

    def _parameters(self) -> dict[str, torch.Tensor]:
        return {name: p.detach() for name, p in self.model.named_parameters() if p.requires_grad}

    def update(self) -> None:
        """Folds the model's current parameters into the average (after a step)."""
        self.average = ema_step(self.average, self._parameters(), self.decay)
        self.steps += 1

    def debiased(self) -> Weights:
        """The average divided by ``1 - d^t`` (empty before the first update)."""
        if self.steps == 0:
            return {}
        scale = 1.0 - self.decay**self.steps
        return {name: tensor / scale for name, tensor in self.average.items()}

    def load_into_model(self) -> None:
        """Replaces the model's parameters by the debiased average (no-op before any update)."""
        averaged = self.debiased()
        with torch.no_grad():
            for name, parameter in self.model.named_parameters():
                if name in averaged:
                    parameter.copy_(averaged[name])
