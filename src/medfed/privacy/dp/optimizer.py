"""Opacus ``DPOptimizer``s whose noise comes from a medfed ``NoiseSource``; one of them also
releases a private count of unclipped samples.

The count is used for adaptive clipping (Andrew et al., NeurIPS 2021): every step releases the
noisy centred count of the per-sample gradient norms (per patient: ``DPTrainer`` sums each
patient's rows first) at most the threshold, and the clipped gradient sum gets the raised noise
``z_delta`` so that the step as a whole stays one Gaussian mechanism of multiplier ``z`` (see
``medfed.privacy.dp.quantile``). ``noise_multiplier`` keeps ``z`` for the accountant.
"""

from __future__ import annotations

from typing import Any

import torch
from opacus.optimizers import DPOptimizer
from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed

from medfed.privacy.dp.noise import NoiseSource
from medfed.privacy.dp.quantile import centred_count, noisy_fraction, sum_noise_multiplier


class SourcedDPOptimizer(DPOptimizer):
    """Opacus's DP-SGD step with ``N(0, z^2 C^2)`` noise drawn from ``source``.

    Args:
        optimizer: The wrapped optimiser.
        source: Where the noise comes from (the site's own randomness).
        kwargs: ``DPOptimizer`` arguments (``noise_multiplier``, ``max_grad_norm``...).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, source: NoiseSource, **kwargs: Any) -> None:
        super().__init__(optimizer, **kwargs)
        self.source = source

    def add_noise(self) -> None:
        """``p.grad = p.summed_grad + N(0, (z C)^2)`` for every parameter (Opacus's ``add_noise``
        with its guard against noising the same sum twice), the noise of all parameters drawn
        in one call (rounded once to the parameters' dtype, float64 when they mix dtypes)."""
        std = self.noise_multiplier * self.max_grad_norm
        totals = [parameter.summed_grad for parameter in self.params]
        for total in totals:
            _check_processed_flag(total)
        dtypes = {total.dtype for total in totals}
        dtype = dtypes.pop() if len(dtypes) == 1 else torch.float64
        sizes = [total.numel() for total in totals]
        noise = self.source.normal(std, (sum(sizes),), dtype=dtype)
        for parameter, total, part in zip(self.params, totals, noise.split(sizes), strict=True):
            parameter.grad = (total + part.to(total.device, total.dtype).view_as(total)).view_as(parameter)
            _mark_as_processed(total)


class QuantileCountingDPOptimizer(SourcedDPOptimizer):
    """DP-SGD with a private estimate of the fraction of unclipped samples per step.

    Args:
        optimizer: The wrapped optimiser.
        noise_multiplier: ``z`` of the whole step (what the accountant composes).
        max_grad_norm: The clipping threshold ``C`` for this round.
        expected_batch_size: ``q * N``; the count is normalised by it, never by the real size.
        count_std: Noise standard deviation ``sigma_b`` of the centred count.
        source: Where the noise of the sum and of the count comes from.
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
        source: NoiseSource,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            optimizer,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            expected_batch_size=expected_batch_size,
            source=source,
            **kwargs,
        )
        self.count_std = count_std
        self.sum_noise_multiplier = sum_noise_multiplier(noise_multiplier, count_std)
        self.fractions: list[float] = []
        self._centred = 0.0

    def clip_and_accumulate(self) -> None:
        norms = torch.stack([g.flatten(start_dim=1).norm(2, dim=-1) for g in self.grad_samples], dim=1).norm(
            2, dim=1
        )
        self._centred = centred_count(norms, self.max_grad_norm)
        super().clip_and_accumulate()

    def add_noise(self) -> None:
        total: float = self.noise_multiplier  # type: ignore[has-type]  # Opacus leaves it unannotated
        self.noise_multiplier = self.sum_noise_multiplier
        try:
            super().add_noise()
        finally:
            self.noise_multiplier = total
        self.fractions.append(
            noisy_fraction(
                self._centred,
                count_std=self.count_std,
                expected_count=float(self.expected_batch_size),
                source=self.source,
            )
        )
