"""An Opacus ``DPOptimizer`` that also releases a private count of unclipped samples.

Used for adaptive clipping (Andrew et al., NeurIPS 2021): every step releases the noisy centred
count of per-sample gradient norms at most the threshold, and the clipped gradient sum gets the
raised noise ``z_delta`` so that the step as a whole stays one Gaussian mechanism of multiplier
``z`` (see ``medfed.privacy.dp.quantile``). ``noise_multiplier`` keeps ``z`` for the accountant.
"""

from __future__ import annotations

from typing import Any

import torch
from opacus.optimizers import DPOptimizer

from medfed.privacy.dp.quantile import centred_count, noisy_fraction, sum_noise_multiplier


class QuantileCountingDPOptimizer(DPOptimizer):
    """DP-SGD with a private estimate of the fraction of unclipped samples per step.

    Args:
        optimizer: The wrapped optimiser.
        noise_multiplier: ``z`` of the whole step (what the accountant composes).
        max_grad_norm: The clipping threshold ``C`` for this round.
        expected_batch_size: ``q * N``; the count is normalised by it, never by the real size.
        count_std: Noise standard deviation ``sigma_b`` of the centred count.
        generator: Source of the noise (``None``: torch's global generator).
        kwargs: Other ``DPOptimizer`` arguments.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        noise_multiplier: float,
        max_grad_norm: float,
        expected_batch_size: int,
        count_std: float,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            optimizer,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            expected_batch_size=expected_batch_size,
            generator=generator,
            **kwargs,
        )
        self.count_std = count_std
        self.sum_noise_multiplier = sum_noise_multiplier(noise_multiplier, count_std)
        self.fractions: list[float] = []
        self._centred = 0.0

    def clip_and_accumulate(self) -> None:
        norms = torch.stack(
            [g.flatten(start_dim=1).norm(2, dim=-1) for g in self.grad_samples], dim=1
        ).norm(2, dim=1)
        self._centred = centred_count(norms, self.max_grad_norm)
        super().clip_and_accumulate()

    def add_noise(self) -> None:
        total = self.noise_multiplier
        self.noise_multiplier = self.sum_noise_multiplier
        try:
            super().add_noise()
        finally:
            self.noise_multiplier = total
        generator = self.generator if self.generator is not None else torch.default_generator
        self.fractions.append(
            noisy_fraction(
                self._centred,
                count_std=self.count_std,
                expected_count=float(self.expected_batch_size),
                generator=generator,
            )
        )
