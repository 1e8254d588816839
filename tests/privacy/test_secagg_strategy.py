"""Secure aggregation in the round loop: the secure round sums over the grid, the wrapper insists."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch

from medfed.errors import PrivacyBudgetExceeded
from medfed.orchestration.grid import InMemoryGrid
from medfed.orchestration.loop import QuorumNotReached, RoundPlan, run_round, run_rounds
from medfed.privacy.secagg import (
    SecureAggregation,
    SecureAggregationError,
    SecureAggregationRound,
    SecureAggregationSite,
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


class _FakeSite:
    """One site that answers with ``_model(index)``; it declines the first ``declines`` tasks."""

    def __init__(self, name: str, declines: int = 0) -> None:
        self.name, self.index, self.declines = name, SITES.index(name), declines

    def train(self, task: TrainTask) -> TrainResult:
        if self.declines > 0:
            self.declines -= 1
            raise PrivacyBudgetExceeded(self.name, spent=1.0, would_spend=2.0, budget=1.5)
        return TrainResult(self.name, task.round, _model(self.index), 10 * (self.index + 1))


def _grid(declines: Mapping[str, int] | None = None) -> InMemoryGrid:
    sites = {name: _FakeSite(name, (declines or {}).get(name, 0)) for name in SITES}
    return InMemoryGrid(sites, open_protocol=SecureAggregationSite)  # type: ignore[arg-type]


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
    state, results = run_round(strategy, strategy.init(_model(0)), plan, _grid(), SecureAggregationRound())
    assert len(results) == 1 and results[0].metrics["secagg.num_sites"] == 5
    plain_results = _FakeSites().train({s: TrainTask(round=1, weights=_model(0)) for s in SITES})
    plain = FedAvg().aggregate(FedAvg().init(_model(0)), plain_results, num_sites=5)
    torch.testing.assert_close(state.weights["conv.weight"], plain.weights["conv.weight"], atol=1e-6, rtol=0)
    assert state.round == 1


def test_the_secure_aggregate_counts_as_its_sites_towards_the_quorum() -> None:
    strategy = SecureAggregation(FedAvg())
    secure = SecureAggregationRound()
    state, _ = run_round(
        strategy, strategy.init(_model(0)), RoundPlan(1, SITES, min_sites=5), _grid(), secure
    )
    assert state.round == 1
    three = RoundPlan(1, SITES, fraction=0.5, min_sites=3)  # 3 sites sampled, 3 needed
    assert run_round(strategy, strategy.init(_model(0)), three, _grid(), secure)[0].round == 1


def test_a_secure_aggregate_of_too_few_sites_misses_the_quorum() -> None:
    strategy = SecureAggregation(FedAvg())
    grid = _grid({"s3": 1})  # of the 3 asked sites, s3 declines: threshold 2 of 3, 2 in the sum
    with pytest.raises(QuorumNotReached, match="updates of 2 sites, at least 3"):
        run_round(
            strategy,
            strategy.init(_model(0)),
            RoundPlan(1, SITES[:3], min_sites=3),
            grid,
            SecureAggregationRound(),
        )


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


def test_a_single_answering_site_is_never_passed_on(caplog: pytest.LogCaptureFixture) -> None:
    assert SecureAggregationRound()(_grid(), {"s1": TrainTask(round=1, weights=_model(0))}) == []
    assert "at least 2" in caplog.text
    alone = _grid({name: 1 for name in SITES if name != "s1"})  # only s1 answers of the 5 asked
    assert SecureAggregationRound()(alone, {s: TrainTask(round=1, weights=_model(0)) for s in SITES}) == []


def test_a_round_with_fewer_survivors_than_the_threshold_is_retried_from_the_same_state() -> None:
    """The failure semantics of a deployment, in memory too: no result, a missed quorum, retried."""
    strategy = SecureAggregation(FedAvg())
    grid = _grid({"s1": 1, "s2": 1, "s3": 1})  # first attempt: 2 of 5 answer, threshold 3
    plan = RoundPlan(rounds=1, sites=SITES, min_sites=1)
    with pytest.raises(QuorumNotReached, match="updates of 0 sites"):
        run_rounds(
            strategy,
            strategy.init(_model(0)),
            plan,
            _grid({"s1": 1, "s2": 1, "s3": 1}),
            collect=SecureAggregationRound(),
        )
    final = run_rounds(
        strategy, strategy.init(_model(0)), plan, grid, max_attempts=2, collect=SecureAggregationRound()
    )
    plain = FedAvg().aggregate(
        FedAvg().init(_model(0)), _FakeSites().train({s: TrainTask(1, _model(0)) for s in SITES}), 5
    )
    assert final.round == 1
    torch.testing.assert_close(final.weights["conv.weight"], plain.weights["conv.weight"], atol=1e-6, rtol=0)
