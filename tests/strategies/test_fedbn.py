"""FedBN: batch-norm entries stay local; the rest is FedAvg."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from medfed.aggregation import batchnorm_keys
from medfed.strategies import FedAvg, FedBN
from medfed.types import SiteState, TrainResult, Weights


def _result(site: str, weights: Weights, num_samples: int = 1) -> TrainResult:
    return TrainResult(site=site, round=1, weights=weights, num_samples=num_samples)


def _weights(seed: int) -> Weights:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    weights = model.state_dict()
    weights["1.running_mean"] = torch.randn(4)
    weights["1.running_var"] = torch.rand(4) + 0.5
    weights["1.num_batches_tracked"] = torch.tensor(seed)
    return weights


def test_batchnorm_entries_never_change_globally() -> None:
    strategy = FedBN()
    state = strategy.init(_weights(0))
    results = [_result("a", _weights(1), 3), _result("b", _weights(2), 5)]
    new = strategy.aggregate(state, results, num_sites=2)
    fedavg = FedAvg().aggregate(state, results, num_sites=2)
    bn = batchnorm_keys(state.weights)
    assert bn == {"1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"}
    for key, tensor in new.weights.items():
        expected = state.weights[key] if key in bn else fedavg.weights[key]
        assert torch.equal(tensor, expected), key
    assert new.round == 1


def test_site_model_keeps_the_sites_batchnorm() -> None:
    global_weights, site_weights = _weights(0), _weights(1)
    local = FedBN().site_model(global_weights, SiteState(weights=site_weights))
    for key, tensor in local.items():
        bn = key in batchnorm_keys(global_weights)
        expected = site_weights[key] if bn else global_weights[key]
        assert torch.equal(tensor, expected), key


def test_site_model_before_the_first_round_is_the_global_model() -> None:
    global_weights = _weights(0)
    local = FedBN().site_model(global_weights, SiteState())
    assert all(torch.equal(local[k], v) for k, v in global_weights.items())


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    seeds=st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=4),
    samples=st.lists(st.integers(min_value=1, max_value=1000), min_size=4, max_size=4),
)
def test_fedbn_never_changes_batchnorm_globally(seeds: list[int], samples: list[int]) -> None:
    strategy = FedBN()
    state = strategy.init(_weights(0))
    results = [_result(f"s{i}", _weights(seed), samples[i]) for i, seed in enumerate(seeds)]
    new = strategy.aggregate(state, results, num_sites=len(results))
    for key in batchnorm_keys(state.weights):
        assert torch.equal(new.weights[key], state.weights[key]), key

