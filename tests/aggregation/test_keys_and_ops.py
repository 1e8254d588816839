"""running_stat_keys, check_compatible and the small ops."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medfed.aggregation import (
    add_scaled,
    check_compatible,
    running_stat_keys,
    steppable_keys,
    subtract,
    zeros_like,
)


def _model_weights() -> dict[str, torch.Tensor]:
    model = nn.Sequential(
        nn.Linear(2, 2), nn.BatchNorm1d(2), nn.LayerNorm(2), nn.BatchNorm1d(2, affine=False)
    )
    return model.state_dict()


def test_running_stat_keys() -> None:
    assert running_stat_keys(_model_weights()) == {
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
        "3.running_mean",
        "3.running_var",
        "3.num_batches_tracked",
    }


def test_steppable_keys_are_floating_and_not_running_statistics() -> None:
    expected = ["0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias"]
    assert steppable_keys(_model_weights()) == expected


def test_check_compatible_names_the_label_and_key() -> None:
    with pytest.raises(ValueError, match="site 'a': missing key 'b'"):
        check_compatible({"a": torch.ones(1), "b": torch.ones(1)}, {"a": torch.ones(1)}, "site 'a'")


def test_small_ops() -> None:
    a = {"x": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"x": torch.tensor([0.5, -1.0])}
    assert subtract(a, b, ["x"])["x"].tolist() == [0.5, 3.0]
    scaled = add_scaled(a, b, 2.0)
    assert scaled["x"].tolist() == [2.0, 0.0] and scaled["n"].item() == 3
    assert zeros_like(a, ["x"])["x"].tolist() == [0.0, 0.0]
