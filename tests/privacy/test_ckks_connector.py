"""The CKKS connector and strategy: one aggregate with the weighted mean, refusals otherwise."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch

from medfed.privacy.ckks import EncryptionError
from medfed.privacy.ckks_connector import CkksAggregationConnector, EncryptedAggregation
from medfed.strategies import STRATEGIES
from medfed.types import AGGREGATE_SITE, AGGREGATE_SITES_METRIC, TrainResult, TrainTask


class _Fixed:
    def __init__(self, results: list[TrainResult]) -> None:
        self.results = results

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        return self.results


def _result(site: str, value: float, samples: int) -> TrainResult:
    weights = {"w": torch.full((3,), value), "n": torch.tensor(value, dtype=torch.int64)}
    return TrainResult(site=site, round=1, weights=weights, num_samples=samples)


def test_connector_returns_the_hand_computed_weighted_mean() -> None:
    results = [_result("a", 1.0, 1), _result("b", 4.0, 3)]  # (1*1 + 4*3) / 4 = 3.25
    (aggregate,) = CkksAggregationConnector(_Fixed(results)).train({})
    assert aggregate.site == AGGREGATE_SITE
    assert aggregate.metrics == {AGGREGATE_SITES_METRIC: 2.0}
    assert aggregate.num_samples == 4
    torch.testing.assert_close(aggregate.weights["w"], torch.full((3,), 3.25), atol=1e-6, rtol=0)
    assert aggregate.weights["n"].dtype == torch.int64 and int(aggregate.weights["n"]) == 3


def test_connector_refuses_a_single_site_and_passes_no_answer_on() -> None:
    with pytest.raises(EncryptionError, match="at least 2"):
        CkksAggregationConnector(_Fixed([_result("a", 1.0, 1)])).train({})
    assert CkksAggregationConnector(_Fixed([])).train({}) == []


def test_strategy_refuses_individual_updates_and_unsupported_strategies() -> None:
    strategy = EncryptedAggregation(STRATEGIES.create("fedavg"))
    assert strategy.name == "ckks+fedavg"
    state = strategy.init({"w": torch.zeros(3), "n": torch.tensor(0)})
    with pytest.raises(EncryptionError, match="individual site updates"):
        strategy.aggregate(state, [_result("a", 1.0, 1), _result("b", 2.0, 1)], 2)
    with pytest.raises(ValueError, match="scaffold"):
        EncryptedAggregation(STRATEGIES.create("scaffold"))
