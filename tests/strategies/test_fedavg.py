"""FedAvg: sample-weighted mean, round counter, result validation."""

from __future__ import annotations

import pytest
import torch

from medfed.strategies import FedAvg
from medfed.types import TrainResult, Weights


def _result(site: str, weights: Weights, num_samples: int = 1) -> TrainResult:
    return TrainResult(site=site, round=1, weights=weights, num_samples=num_samples)


def test_fedavg_is_the_sample_weighted_mean() -> None:
    strategy = FedAvg()
    state = strategy.init({"w": torch.tensor([0.0, 0.0])})
    results = [
        _result("a", {"w": torch.tensor([1.0, 4.0])}, num_samples=10),
        _result("b", {"w": torch.tensor([3.0, 0.0])}, num_samples=30),
    ]
    new = strategy.aggregate(state, results, num_sites=2)
    # (10*1 + 30*3) / 40 = 2.5; (10*4 + 30*0) / 40 = 1.0
    torch.testing.assert_close(new.weights["w"], torch.tensor([2.5, 1.0]))
    assert new.round == 1


def test_results_with_other_keys_are_rejected_naming_site_and_key() -> None:
    strategy = FedAvg()
    state = strategy.init({"w": torch.zeros(2), "b": torch.zeros(1)})
    results = [
        _result("a", {"w": torch.zeros(2), "b": torch.zeros(1)}),
        _result("b", {"w": torch.zeros(2)}),
    ]
    with pytest.raises(ValueError, match="site 'b': missing key 'b'"):
        strategy.aggregate(state, results, num_sites=2)


def test_no_results_is_rejected() -> None:
    strategy = FedAvg()
    with pytest.raises(ValueError, match="at least one result"):
        strategy.aggregate(strategy.init({"w": torch.zeros(1)}), [], num_sites=2)
