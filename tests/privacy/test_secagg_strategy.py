"""Secure aggregation in the round loop: the connector sums securely, the wrapper insists."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch

from medfed.orchestration.loop import QuorumNotReached, RoundPlan, run_round
from medfed.privacy.secagg import (
    SecureAggregation,
    SecureAggregationConnector,
    SecureAggregationError,
    secure_weighted_mean,
    threshold_for,
)
from medfed.strategies import FedAvg
from medfed.strategies.registry import STRATEGIES
from medfed.types import TrainResult, TrainTask, Weights

SITES = ["s1", "s2", "s3", "s4", "s5"]


def _model(seed: int) -> Weights:
    generator = torch.Generator().manual_seed(seed)
    return {
        "conv.weight": torch.randn(4, 3, generator=generator),
        "bn.num_batches_tracked": torch.tensor(10 + seed),
    }


class _FakeSites:
    """Answers every task with a fixed model per site (stands in for trained sites)."""

    def __init__(self) -> None:
        self.samples = {site: 10 * (i + 1) for i, site in enumerate(SITES)}

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        return [
            TrainResult(site, task.round, _model(i), self.samples[site])
            for i, (site, task) in enumerate(sorted(tasks.items()))
        ]


def test_secure_weighted_mean_equals_plain_fedavg() -> None:
    sites = _FakeSites()
    results = sites.train({s: TrainTask(round=1, weights=_model(0)) for s in SITES})
    plain = FedAvg().aggregate(FedAvg().init(_model(0)), results, num_sites=5).weights
    updates = {r.site: (r.weights, float(r.num_samples)) for r in results}
    mean, total, contributors = secure_weighted_mean(updates, threshold=3)
    assert total == pytest.approx(150.0) and contributors == tuple(SITES)
    torch.testing.assert_close(mean["conv.weight"], plain["conv.weight"], atol=1e-6, rtol=0)
    assert mean["bn.num_batches_tracked"].dtype == torch.int64  # rounded weighted mean
    expected = round((10 * 10 + 20 * 11 + 30 * 12 + 40 * 13 + 50 * 14) / 150)
    assert mean["bn.num_batches_tracked"].item() == expected


def test_one_round_of_the_loop_matches_plain_fedavg() -> None:
    plan = RoundPlan(rounds=1, sites=SITES, min_sites=1)
    strategy = SecureAggregation(FedAvg())
    connector = SecureAggregationConnector(_FakeSites())
    state, results = run_round(strategy, strategy.init(_model(0)), plan, connector)
    assert len(results) == 1 and results[0].metrics["secagg.num_sites"] == 5
    plain_results = _FakeSites().train({s: TrainTask(round=1, weights=_model(0)) for s in SITES})
    plain = FedAvg().aggregate(FedAvg().init(_model(0)), plain_results, num_sites=5)
    torch.testing.assert_close(
        state.weights["conv.weight"], plain.weights["conv.weight"], atol=1e-6, rtol=0
    )
    assert state.round == 1


def test_the_secure_aggregate_counts_as_its_sites_towards_the_quorum() -> None:
    strategy = SecureAggregation(FedAvg())
    connector = SecureAggregationConnector(_FakeSites())
    state, _ = run_round(strategy, strategy.init(_model(0)), RoundPlan(1, SITES, min_sites=5), connector)
    assert state.round == 1
    three = RoundPlan(1, SITES, fraction=0.5, min_sites=3)  # 3 sites sampled, 3 needed
    assert run_round(strategy, strategy.init(_model(0)), three, connector)[0].round == 1


def test_a_secure_aggregate_of_too_few_sites_misses_the_quorum() -> None:
    class _TwoAnswer(_FakeSites):
        def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
            return super().train(dict(sorted(tasks.items())[:2]))

    strategy = SecureAggregation(FedAvg())
    connector = SecureAggregationConnector(_TwoAnswer())
    with pytest.raises(QuorumNotReached, match="updates of 2 sites, at least 3"):
        run_round(strategy, strategy.init(_model(0)), RoundPlan(1, SITES, min_sites=3), connector)


def test_wrapper_refuses_individual_updates() -> None:
    strategy = SecureAggregation(FedAvg())
    results = _FakeSites().train({s: TrainTask(round=1, weights=_model(0)) for s in SITES})
    with pytest.raises(SecureAggregationError, match="individual site updates"):
        strategy.aggregate(strategy.init(_model(0)), results, num_sites=5)


def test_wrapper_rejects_strategies_that_need_more_than_the_weighted_mean() -> None:
    with pytest.raises(ValueError, match="scaffold"):
        SecureAggregation(STRATEGIES.create("scaffold"))


def test_threshold_is_an_honest_majority() -> None:
    assert [threshold_for(n, 0.5) for n in (2, 3, 5, 10)] == [2, 2, 3, 6]
    assert threshold_for(10, 0.7) == 8
    with pytest.raises(ValueError, match="fraction"):
        threshold_for(5, 0.4)


def test_a_single_answering_site_is_never_passed_on() -> None:
    connector = SecureAggregationConnector(_FakeSites())
    with pytest.raises(SecureAggregationError, match="at least 2"):
        connector.train({"s1": TrainTask(round=1, weights=_model(0))})
