"""The ADP-FL paper's mechanism as the paper states it, and the epsilon it really satisfies.

Saha and Ukwatta, "ADP-FL", SPIE Medical Imaging 2026 (arXiv 2604.06518), as the issue quotes
it: each step clips the per-sample gradients at a percentile of their norms and adds Laplace
noise scaled to that threshold. It is a *comparison baseline* for ``benchmarks/dp_utility.py``,
not a medfed mechanism, and it lives here for that reason.

Here the Laplace noise per coordinate has scale ``b = z C / sqrt(2)``, the variance of the
Gaussian noise ``N(0, z^2 C^2)`` that medfed's calibrator gives for the same (epsilon, delta),
so the paper's run gets the noise its nominal budget would pay for.

What it really satisfies:

* The threshold is a percentile of the batch's own gradient norms, used without noise: one
  case can move it, so the released sum has no finite L1 or L2 sensitivity bound that holds for
  all neighbouring data sets. Formally the mechanism is not (epsilon, delta)-DP for any finite
  epsilon (``REAL_EPSILON = inf``).
* Even granting the threshold as public, a per-sample gradient clipped to L2 norm ``C`` in ``d``
  dimensions has L1 norm up to ``sqrt(d) C``, and Laplace noise calibrates to L1 sensitivity:
  each step is a Laplace mechanism of ``epsilon_0 = sqrt(d) C / b = sqrt(2 d) / z``.
  ``laplace_epsilon`` composes that, Poisson-subsampled at rate ``q``, over the run's steps with
  dp-accounting's privacy-loss distributions (Meiser and Mohammadi 2018; Koskela et al. 2020).
  The worst case of a d-dimensional Laplace mechanism over an L1 ball is the shift along one axis,
  so the one-dimensional PLD with sensitivity ``sqrt(d) C`` is exact for it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from dp_accounting.pld import privacy_loss_distribution as pld
from opacus import PrivacyEngine
from opacus.optimizers import DPOptimizer
from torch import nn

from medfed.privacy.dp.accounting import Mechanism
from medfed.privacy.dp.noise import NoiseSource
from medfed.privacy.dp.optimizer import SourcedDPOptimizer
from medfed.privacy.dp.trainer import DPTrainer
from medfed.seeding import derive_seed

REAL_EPSILON = math.inf
"""Epsilon of the mechanism as stated: the unreleased, data-dependent threshold breaks any bound."""


def percentile_threshold(norms: torch.Tensor, percentile: float) -> float:
    """The ``percentile`` (0-100) of the per-sample gradient norms ``norms`` (1-D); 1.0 when the
    batch is empty. Not private: it is the paper's threshold."""
    if norms.numel() == 0:
        return 1.0
    return max(float(torch.quantile(norms.double(), percentile / 100.0)), 1e-12)


def laplace_epsilon(
    *, dimensions: int, noise_multiplier: float, sample_rate: float, steps: int, delta: float
) -> float:
    """Epsilon at ``delta`` of ``steps`` Poisson-subsampled (rate ``sample_rate``) Laplace
    mechanisms of L1 sensitivity ``sqrt(dimensions) C`` and scale ``noise_multiplier C / sqrt 2``,
    with the threshold ``C`` treated as public (see the module docstring)."""
    scale = noise_multiplier / math.sqrt(2.0)
    sensitivity = math.sqrt(dimensions)
    interval = max(1e-4, sensitivity / scale / 2000.0)
    step = pld.from_laplace_mechanism(
        scale, sensitivity=sensitivity, sampling_prob=sample_rate, value_discretization_interval=interval
    )
    return float(step.self_compose(steps).get_epsilon_for_delta(delta))


class PercentileLaplaceOptimizer(SourcedDPOptimizer):
    """Opacus's DP step with the paper's threshold (a percentile of this batch's norms) and
    Laplace noise of scale ``z C / sqrt(2)`` drawn from a seeded torch generator.

    Args:
        optimizer: The wrapped optimiser.
        percentile: The percentile (0-100) of per-sample norms to clip at.
        seed: Seeds the Laplace noise (the mechanism is not private anyway).
        kwargs: ``SourcedDPOptimizer`` arguments.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, percentile: float, seed: int, **kwargs: Any
    ) -> None:
        super().__init__(optimizer, **kwargs)
        self.percentile = percentile
        self.generator = torch.Generator().manual_seed(seed)

    def clip_and_accumulate(self) -> None:
        """Sets ``max_grad_norm`` to the batch's percentile of norms, then clips and sums."""
        if self.grad_samples and len(self.grad_samples[0]) > 0:
            norms = torch.stack([g.flatten(start_dim=1).norm(2, dim=-1) for g in self.grad_samples], dim=1)
            self.max_grad_norm = percentile_threshold(norms.norm(2, dim=1), self.percentile)
        super().clip_and_accumulate()

    def add_noise(self) -> None:
        """``p.grad = p.summed_grad + Laplace(0, z C / sqrt 2)`` per coordinate."""
        scale = self.noise_multiplier * self.max_grad_norm / math.sqrt(2.0)
        for parameter in self.params:
            total = parameter.summed_grad
            uniform = torch.rand(total.shape, generator=self.generator, dtype=total.dtype) - 0.5
            noise = -scale * uniform.sign() * torch.log1p(-2 * uniform.abs())  # inverse CDF
            parameter.grad = (total + noise.to(total.device)).view_as(parameter)


class PercentileLaplaceTrainer(DPTrainer):
    """``DPTrainer`` whose optimiser is the paper's (``PercentileLaplaceOptimizer``).

    The ledger charges the Gaussian mechanism of the same ``z`` (what the paper claims); the
    benchmark reports ``REAL_EPSILON`` and ``laplace_epsilon`` next to it.

    Args:
        percentile: The clipping percentile (0-100).
        args: ``DPTrainer`` arguments.
        kwargs: ``DPTrainer`` keyword arguments.
    """

    def __init__(self, *args: Any, percentile: float = 50.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.percentile = percentile
        self.calls = 0

    def _sourced(
        self, optimizer: DPOptimizer, engine: PrivacyEngine, planned: Mechanism, source: NoiseSource
    ) -> DPOptimizer:
        self.calls += 1
        paper = PercentileLaplaceOptimizer(
            optimizer.original_optimizer,
            percentile=self.percentile,
            seed=derive_seed(self.calls, f"paper_noise/{self.site}"),
            noise_multiplier=planned.noise_multiplier,
            max_grad_norm=optimizer.max_grad_norm,
            expected_batch_size=optimizer.expected_batch_size,
            source=source,
        )
        paper.attach_step_hook(engine.accountant.get_optimizer_hook_fn(sample_rate=planned.sample_rate))
        return paper


def trainable_dimensions(model: nn.Module) -> int:
    """``d``: the number of trainable parameters."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
