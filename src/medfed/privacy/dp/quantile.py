"""Private quantile estimation for adaptive clipping: pure functions.

Andrew, Thakkar, McMahan and Ramaswamy, "Differentially Private Learning with Adaptive
Clipping", NeurIPS 2021 (arXiv 1905.03871). The clipping threshold ``C`` follows the geometric
update ``C <- C * exp(-lr * (b - gamma))``, where ``b`` is a noisy estimate of the fraction of
norms at most ``C`` and ``gamma`` the target quantile; at the fixed point ``b = gamma``, so
``C`` converges to the ``gamma``-quantile of the norms.

The count is made private by adding ``N(0, sigma_b^2)`` to the sum of the centred bits
``b_i - 1/2`` (L2 sensitivity 1/2). Theorem 1 of the paper: releasing that count together with
a clipped sum noised with multiplier ``z_delta`` is as private as one Gaussian mechanism with
multiplier ``z = (z_delta^-2 + (2 sigma_b)^-2)^(-1/2)``; so the accountant keeps ``z`` and the
sum's noise is raised to ``z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2)``.
"""

from __future__ import annotations

import math

import torch

from medfed.privacy.dp.noise import NoiseSource


def count_noise_std(noise_multiplier: float, budget_fraction: float) -> float:
    """The count's noise ``sigma_b`` that takes ``budget_fraction`` of ``z^-2`` (the mechanism's
    "precision"): ``(2 sigma_b)^-2 = f z^-2``, i.e. ``sigma_b = z / (2 sqrt(f))``."""
    if not 0.0 < budget_fraction < 1.0:
        raise ValueError(f"count_budget_fraction must lie in (0, 1), got {budget_fraction}")
    return noise_multiplier / (2.0 * math.sqrt(budget_fraction))


def sum_noise_multiplier(noise_multiplier: float, count_std: float) -> float:
    """``z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2)``: the clipped sum's noise multiplier when a
    count with noise ``count_std`` shares the mechanism of multiplier ``noise_multiplier``.

    Raises:
        ValueError: ``2 * count_std <= noise_multiplier`` (the count would take the whole budget).
    """
    if 2.0 * count_std <= noise_multiplier:
        raise ValueError(
            f"count noise std {count_std} must exceed noise_multiplier / 2 = {noise_multiplier / 2}"
        )
    return (noise_multiplier**-2 - (2.0 * count_std) ** -2) ** -0.5


def centred_count(norms: torch.Tensor, clip: float) -> float:
    """``sum_i (1[norm_i <= clip] - 1/2)`` over a 1-D tensor of norms (sensitivity 1/2)."""
    return float((norms <= clip).sum()) - 0.5 * norms.numel()


def noisy_fraction(
    centred_sum: float, *, count_std: float, expected_count: float, source: NoiseSource
) -> float:
    """The private estimate ``(centred_sum + N(0, count_std^2)) / expected_count + 1/2`` of the
    fraction of norms at most the threshold; ``expected_count`` must not depend on the data."""
    noise = float(source.normal(count_std, (), dtype=torch.float64)) if count_std > 0 else 0.0
    return (centred_sum + noise) / expected_count + 0.5


def geometric_update(
    clip: float, fraction: float, *, target_quantile: float, lr: float, bounds: tuple[float, float]
) -> float:
    """``clip * exp(-lr * (fraction - target_quantile))`` kept within ``bounds`` = (min, max)."""
    updated = clip * math.exp(-lr * (fraction - target_quantile))
    return min(max(updated, bounds[0]), bounds[1])
