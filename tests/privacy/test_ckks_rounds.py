"""The CKKS round and strategy: one aggregate with the weighted mean, refusals otherwise."""

from __future__ import annotations

import pytest
import torch

from medfed.errors import PrivacyBudgetExceeded
from medfed.orchestration.grid import InMemoryGrid
from medfed.privacy.ckks import EncryptionError, new_key_pair
from medfed.privacy.ckks_rounds import CkksSite, EncryptedAggregation, EncryptedAggregationRound
from medfed.strategies import STRATEGIES
from medfed.types import AGGREGATE_SITE, AGGREGATE_SITES_METRIC, TrainResult, TrainTask

TASK = TrainTask(round=1, weights={"w": torch.zeros(3), "n": torch.tensor(0, dtype=torch.int64)})


class _Site:
    """Answers with ``value`` everywhere and ``samples`` cases, or declines (``samples`` 0)."""

    def __init__(self, name: str, value: float, samples: int) -> None:
        self.name, self.value, self.samples = name, value, samples

    def train(self, task: TrainTask) -> TrainResult:
        if self.samples == 0:
            raise PrivacyBudgetExceeded(self.name, spent=1.0, would_spend=2.0, budget=1.5)
        weights = {"w": torch.full((3,), self.value), "n": torch.tensor(self.value, dtype=torch.int64)}
        return TrainResult(site=self.name, round=task.round, weights=weights, num_samples=self.samples)


def _round(*sites: _Site) -> list[TrainResult]:
    site_context, server_context = new_key_pair()
    grid = InMemoryGrid(
        {site.name: site for site in sites},  # type: ignore[misc]
        open_protocol=lambda task, _, result: CkksSite(site_context, task, result),
    )
    return EncryptedAggregationRound(server_context)(grid, {site.name: TASK for site in sites})


def test_round_returns_the_hand_computed_weighted_mean() -> None:
    (aggregate,) = _round(_Site("a", 1.0, 1), _Site("b", 4.0, 3))  # (1*1 + 4*3) / 4 = 3.25
    assert aggregate.site == AGGREGATE_SITE
    assert aggregate.metrics == {AGGREGATE_SITES_METRIC: 2.0}
    assert aggregate.num_samples == 4
    torch.testing.assert_close(aggregate.weights["w"], torch.full((3,), 3.25), atol=1e-6, rtol=0)
    assert aggregate.weights["n"].dtype == torch.int64 and int(aggregate.weights["n"]) == 3


def test_round_refuses_a_single_site_and_passes_no_answer_on() -> None:
    assert _round(_Site("a", 1.0, 1), _Site("b", 4.0, 0)) == []  # b declines: one update left
    assert _round() == []


def test_the_server_half_refuses_a_context_with_the_secret_key() -> None:
    site_context, _ = new_key_pair()
    with pytest.raises(EncryptionError):
        EncryptedAggregationRound(site_context)


def test_strategy_refuses_individual_updates_and_unsupported_strategies() -> None:
    strategy = EncryptedAggregation(STRATEGIES.create("fedavg"))
    assert strategy.name == "ckks+fedavg"
    state = strategy.init({"w": torch.zeros(3), "n": torch.tensor(0)})
    single = [_Site("a", 1.0, 1).train(TASK), _Site("b", 2.0, 1).train(TASK)]
    with pytest.raises(EncryptionError, match="individual site updates"):
        strategy.aggregate(state, single, 2)
    with pytest.raises(ValueError, match="scaffold"):
        EncryptedAggregation(STRATEGIES.create("scaffold"))
