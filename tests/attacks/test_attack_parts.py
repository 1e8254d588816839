"""Unit tests of the gradient-inversion harness's parts: losses, defences, labels, matching."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from medfed.attacks import (
    AttackConfig,
    InversionConfig,
    build_victim,
    clip_by_norm,
    cosine_distance,
    gaussian_mechanism,
    infer_label_idlg,
    match_reconstructions,
    model_gradients,
    secure_sum,
    total_variation,
)
from medfed.attacks.labels import last_linear_weight_gradient
from medfed.errors import ConfigError, UnknownNameError


def test_cosine_distance_is_zero_for_same_direction_and_two_for_opposite() -> None:
    grads = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    scaled = [5 * g for g in grads]
    assert float(cosine_distance(scaled, grads)) == pytest.approx(0.0, abs=1e-6)
    assert float(cosine_distance([-g for g in grads], grads)) == pytest.approx(2.0, abs=1e-6)
    # Orthogonal: [1, 0] vs [0, 1] -> 1.
    assert float(cosine_distance([torch.tensor([1.0, 0.0])], [torch.tensor([0.0, 1.0])])) == 1.0


def test_total_variation_by_hand() -> None:
    image = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).reshape(1, 1, 2, 2)
    # Horizontal |1-0|, |4-2| -> mean 1.5; vertical |2-0|, |4-1| -> mean 2.5.
    assert float(total_variation(image)) == pytest.approx(4.0)


def test_clip_by_norm_scales_down_only_above_the_bound() -> None:
    clipped = clip_by_norm([torch.tensor([3.0]), torch.tensor([4.0])], 1.0)
    assert [float(t) for t in clipped] == pytest.approx([0.6, 0.8])
    small = clip_by_norm([torch.tensor([0.3, 0.4])], 1.0)
    assert small[0].tolist() == pytest.approx([0.3, 0.4])
    with pytest.raises(ValueError, match="max_norm"):
        clip_by_norm([torch.ones(1)], 0.0)


def test_gaussian_mechanism_without_noise_is_clipping_and_noise_has_the_stated_std() -> None:
    update = [torch.full((100_000,), 0.01)]
    generator = torch.Generator().manual_seed(0)
    quiet = gaussian_mechanism(update, clip_norm=1.0, noise_multiplier=0.0, generator=generator)
    assert torch.equal(quiet[0], clip_by_norm(update, 1.0)[0])
    noisy = gaussian_mechanism(update, clip_norm=2.0, noise_multiplier=0.5, generator=generator)
    noise = noisy[0] - clip_by_norm(update, 2.0)[0]
    assert float(noise.std()) == pytest.approx(1.0, rel=0.02)  # sigma * C = 0.5 * 2


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.floats(-10, 10), min_size=3, max_size=3), min_size=1, max_size=5))
def test_secure_sum_is_the_order_invariant_element_wise_sum(rows: list[list[float]]) -> None:
    updates = [[torch.tensor(row[:2]), torch.tensor(row[2:])] for row in rows]
    total = secure_sum(updates)
    assert torch.allclose(total[0], sum(u[0] for u in updates))
    reversed_total = secure_sum(updates[::-1])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(total, reversed_total, strict=True))


def test_idlg_infers_the_label_of_a_single_image() -> None:
    model = build_victim("convnet", image_size=16, seed=0)
    generator = torch.Generator().manual_seed(0)
    for label in (0, 1):
        image = torch.randn((1, 1, 16, 16), generator=generator)
        grads = model_gradients(model, torch.nn.CrossEntropyLoss(), image, torch.tensor([label]))
        assert infer_label_idlg(last_linear_weight_gradient(model, grads)) == label


def test_matching_pairs_each_image_with_its_own_reconstruction() -> None:
    generator = torch.Generator().manual_seed(0)
    targets = torch.rand((3, 1, 16, 16), generator=generator)
    decoy = torch.rand((1, 1, 16, 16), generator=generator)
    noisy = targets + 0.01 * torch.randn(targets.shape, generator=generator)
    match = match_reconstructions(torch.cat([decoy, noisy.flip(0)]), targets)
    assert torch.all(match.psnr > 35)  # 0.01 noise on [0, 1] images: about 40 dB
    assert torch.all(match.ssim > 0.95)
    with pytest.raises(ValueError, match="reconstructions"):
        match_reconstructions(targets[:1], targets)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"image_size": 18}, "image_size must be a multiple of 4"),
        ({"clip_norm": 0.0}, "clip_norm must be > 0"),
        ({"secagg_sites": 1}, "secagg_sites must be 0"),
        ({"noise_multipliers": (-1.0,)}, "noise multipliers must be >= 0"),
        ({"noise_multipliers": (0.1, 0.1)}, "noise multipliers must be distinct"),
        ({"labels": "idlg", "batch_size": 2}, "iDLG label inference needs batch_size 1"),
    ],
)
def test_bad_configurations_are_rejected_with_a_clear_message(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AttackConfig(**kwargs)


def test_unknown_model_lists_the_valid_names() -> None:
    with pytest.raises(UnknownNameError, match="convnet, convnet-gn, densenet, resnet"):
        AttackConfig(model="vgg")


def test_bad_inversion_settings_are_rejected() -> None:
    with pytest.raises(ConfigError, match="iterations must be >= 1"):
        InversionConfig(iterations=0)
    with pytest.raises(ConfigError, match="restarts must be >= 1"):
        InversionConfig(restarts=0)
    assert math.isclose(InversionConfig().tv_weight, 0.1)
