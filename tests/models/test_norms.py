"""norm_layer_keys: every normalisation layer's entries, found by module type."""

from __future__ import annotations

from torch import nn

from medfed.models import build_model
from medfed.models.norms import norm_layer_keys


def test_every_kind_of_norm_layer_is_found() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.InstanceNorm2d(4, affine=True),
        nn.GroupNorm(2, 4),
        nn.LayerNorm([4, 1, 1]),
        nn.BatchNorm2d(4, affine=False),
        nn.InstanceNorm2d(4),  # neither affine nor running statistics: no entry
    )
    bn = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
    assert norm_layer_keys(model) == {
        *(f"1.{key}" for key in bn),
        "2.weight",
        "2.bias",
        "3.weight",
        "3.bias",
        "4.weight",
        "4.bias",
        "5.running_mean",
        "5.running_var",
        "5.num_batches_tracked",
    }


def test_a_bare_layer_has_no_prefix() -> None:
    assert norm_layer_keys(nn.GroupNorm(1, 3)) == {"weight", "bias"}


def test_the_default_unet_has_no_norm_entries_and_batch_norm_has_some() -> None:
    params = {"channels": [4, 8], "strides": [2], "num_res_units": 0}
    assert norm_layer_keys(build_model("unet", params, seed=0)) == frozenset()
    batch = norm_layer_keys(build_model("unet", {**params, "norm": "batch"}, seed=0))
    assert "model.0.adn.N.running_mean" in batch and len(batch) == 10
