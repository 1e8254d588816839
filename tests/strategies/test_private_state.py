"""``Strategy.private_state``: what a checkpoint keeps of a site is exactly what later rounds read."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medfed.strategies import STRATEGIES
from medfed.types import SiteState, Weights


def _weights(seed: int) -> Weights:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    weights = {key: tensor.clone() for key, tensor in model.state_dict().items()}
    weights["1.running_mean"] = torch.randn(4)
    return weights


def _site() -> SiteState:
    control = {key: torch.full_like(t, 0.5) for key, t in _weights(1).items() if t.is_floating_point()}
    return SiteState(weights=_weights(1), extra={"control": control})


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_the_kept_state_gives_the_same_site_model(name: str) -> None:
    strategy = STRATEGIES.create(name)
    site, global_weights = _site(), _weights(0)
    kept = strategy.private_state(site)
    expected = strategy.site_model(global_weights, site)
    assert all(torch.equal(t, expected[k]) for k, t in strategy.site_model(global_weights, kept).items())
    assert kept.extra == site.extra  # e.g. SCAFFOLD's c_i


@pytest.mark.parametrize("name", ["fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad", "scaffold"])
def test_strategies_that_train_from_the_global_model_keep_no_site_weights(name: str) -> None:
    assert STRATEGIES.create(name).private_state(_site()).weights == {}
