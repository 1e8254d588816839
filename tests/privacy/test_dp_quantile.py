"""Private quantile estimation (Andrew et al. 2021): the noise split and convergence."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from medfed.privacy.dp.noise import GeneratorNoise
from medfed.privacy.dp.quantile import (
    centred_count,
    count_noise_std,
    geometric_update,
    noisy_fraction,
    sum_noise_multiplier,
)


@given(z=st.floats(0.3, 10.0), fraction=st.floats(0.01, 0.5))
def test_the_noise_split_keeps_the_total_mechanism(z: float, fraction: float) -> None:
    sigma_b = count_noise_std(z, fraction)
    z_delta = sum_noise_multiplier(z, sigma_b)
    # Theorem 1: the pair is one Gaussian mechanism with z = (z_delta^-2 + (2 sigma_b)^-2)^-1/2.
    assert (z_delta**-2 + (2 * sigma_b) ** -2) ** -0.5 == pytest.approx(z, rel=1e-9)
    assert z_delta == pytest.approx(z / math.sqrt(1 - fraction), rel=1e-9)


def test_a_count_that_takes_the_whole_budget_is_rejected() -> None:
    with pytest.raises(ValueError, match="count noise std"):
        sum_noise_multiplier(1.0, 0.5)


def test_centred_count_by_hand() -> None:
    assert centred_count(torch.tensor([0.1, 0.5, 2.0, 3.0]), 1.0) == 2 - 2.0


def test_geometric_update_by_hand_and_bounds() -> None:
    assert geometric_update(2.0, 0.9, target_quantile=0.5, lr=0.5, bounds=(0.1, 10)) == pytest.approx(
        2.0 * math.exp(-0.2)
    )
    assert geometric_update(2.0, 0.0, target_quantile=0.5, lr=100, bounds=(0.1, 10)) == 10


@pytest.mark.parametrize("target", [0.3, 0.5, 0.8])
def test_private_estimate_converges_to_the_true_quantile(target: float) -> None:
    source = GeneratorNoise(torch.Generator().manual_seed(0))
    population = torch.distributions.LogNormal(0.0, 0.5)
    true_quantile = float(population.icdf(torch.tensor(target)))
    clip, trail = 10.0, []
    for step in range(600):
        torch.manual_seed(step)
        norms = population.sample((64,))
        fraction = noisy_fraction(centred_count(norms, clip), count_std=4.0, expected_count=64, source=source)
        clip = geometric_update(clip, fraction, target_quantile=target, lr=0.2, bounds=(1e-3, 1e3))
        trail.append(clip)
    estimate = sum(trail[-200:]) / 200
    assert estimate == pytest.approx(true_quantile, rel=0.1)
