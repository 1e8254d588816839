"""Weight-standardised convolutions in MONAI's U-Net: standardised weights, the swap, folding."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from medfed.errors import ConfigError
from medfed.models import build_model, network_spec
from medfed.models.standardization import (
    Standardized,
    StandardizedConv2d,
    folded_weights,
    standardize,
    standardize_convs,
)

PARAMS = {"channels": (4, 8), "strides": (2,), "norm": ["group", {"num_groups": 2}]}


def test_a_standardised_convolution_convolves_with_zero_mean_unit_variance_filters() -> None:
    torch.manual_seed(0)
    conv = StandardizedConv2d(3, 5, kernel_size=3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(7.0).add_(2.0)  # far from standardised
    x = torch.randn(2, 3, 8, 8)
    used = standardize(conv.weight)
    per_filter = used.flatten(1)
    assert torch.allclose(per_filter.mean(dim=1), torch.zeros(5), atol=1e-6)
    assert torch.allclose(per_filter.var(dim=1, unbiased=False), torch.ones(5), atol=1e-4)
    assert torch.allclose(conv(x), F.conv2d(x, used, conv.bias, padding=1), atol=1e-5)
    assert not torch.allclose(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1), atol=1e-2)


def test_only_the_convolutions_that_feed_a_norm_are_standardised() -> None:
    plain = build_model("unet", PARAMS, seed=0)
    model = build_model("unet", {**PARAMS, "weight_standardization": True}, seed=0)
    replaced = [name for name, module in model.named_modules() if isinstance(module, Standardized)]
    assert replaced and all(name.endswith(".conv") for name in replaced)
    for name, module in model.named_modules():  # residual convs and transposed convs stay plain
        if name.endswith("residual") or isinstance(module, nn.ConvTranspose2d):
            assert not isinstance(module, Standardized)
    assert model.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(2, 1, 16, 16)
    assert not torch.allclose(model(x), plain(x), atol=1e-3)


def test_standardize_convs_reports_what_it_replaced() -> None:
    model = build_model("unet", PARAMS, seed=0)
    replaced = standardize_convs(model)
    assert replaced == [n for n, m in model.named_modules() if isinstance(m, Standardized)]


def test_folded_weights_make_the_plain_network_compute_the_same_function() -> None:
    model = build_model("unet", {**PARAMS, "weight_standardization": True}, seed=0).eval()
    plain = build_model("unet", PARAMS, seed=1).eval()
    plain.load_state_dict(folded_weights(model, model.state_dict()))
    x = torch.randn(2, 1, 16, 16)
    assert torch.allclose(plain(x), model(x), atol=1e-5)


def test_the_spec_carries_the_flag_outside_monai_arguments() -> None:
    spec = network_spec("unet", {**PARAMS, "weight_standardization": True})
    assert spec.weight_standardization and "weight_standardization" not in spec.args


def test_a_non_boolean_flag_is_refused() -> None:
    with pytest.raises(ConfigError, match="weight_standardization"):
        network_spec("unet", {"weight_standardization": "yes"})
