"""RobustAggregation around FedAvg, FedBN and FedAdam; refused combinations."""

from __future__ import annotations

import pytest
import torch

from medfed.config.loading import build_strategy, parse_config
from medfed.config.schema import PrivacyConfig, StrategyConfig
from medfed.errors import ConfigError, UnknownNameError
from medfed.privacy.setup import protect
from medfed.strategies import STRATEGIES
from medfed.strategies.fedopt import FedAdam
from medfed.strategies.robust import (
    ROBUST_RULES,
    Krum,
    Median,
    RobustAggregation,
    robust_strategy,
)
from medfed.types import TrainResult, Weights


def _model(w: list[float], bn: float = 1.0, count: int = 0) -> Weights:
    return {
        "conv.weight": torch.tensor(w),
        "bn.weight": torch.tensor([bn]),
        "bn.bias": torch.tensor([0.0]),
        "bn.running_mean": torch.tensor([bn]),
        "bn.running_var": torch.tensor([bn]),
        "bn.num_batches_tracked": torch.tensor(count),
    }


def _results(models: list[Weights], samples: list[int] | None = None) -> list[TrainResult]:
    samples = samples or [10] * len(models)
    return [TrainResult(f"s{i}", 1, m, n) for i, (m, n) in enumerate(zip(models, samples, strict=True))]


def test_median_around_fedavg_ignores_one_outlier_and_claimed_sample_counts() -> None:
    strategy = RobustAggregation(STRATEGIES.create("fedavg"), Median())
    state = strategy.init(_model([0.0, 0.0]))
    models = [_model([1.0, 2.0], count=3), _model([2.0, 3.0], count=4), _model([1e6, -1e6], count=10**9)]
    new = strategy.aggregate(state, _results(models, [1, 1, 10**6]), num_sites=3)
    assert new.weights["conv.weight"].tolist() == [2.0, 2.0]
    assert int(new.weights["bn.num_batches_tracked"]) == 4


def test_fedadam_steps_along_the_robust_update() -> None:
    robust = RobustAggregation(STRATEGIES.create("fedadam", lr=0.1), Median())
    plain = STRATEGIES.create("fedadam", lr=0.1)
    start = _model([0.0, 0.0])
    models = [_model([1.0, 2.0]), _model([2.0, 3.0]), _model([-50.0, 40.0])]
    got = robust.aggregate(robust.init(start), _results(models), num_sites=3)
    expected = plain.aggregate(plain.init(start), _results([_model([1.0, 3.0])]), num_sites=1)
    for key, tensor in expected.weights.items():
        torch.testing.assert_close(got.weights[key], tensor, msg=key)
    torch.testing.assert_close(got.extra["m"]["conv.weight"], expected.extra["m"]["conv.weight"])


def test_under_fedbn_the_rule_also_guards_the_global_norm_layers() -> None:
    strategy = RobustAggregation(STRATEGIES.create("fedbn"), Median())
    state = strategy.init(_model([0.0], bn=1.0))
    # the global norm entries score the unseen site: one site's far-off norm layer must not move them
    models = [_model([w], bn=300.0 if i == 1 else 1.0 + i) for i, w in enumerate([0.0, 0.1, 0.2])]
    new = strategy.aggregate(state, _results(models), num_sites=3)
    torch.testing.assert_close(new.weights["conv.weight"], torch.tensor([0.1]))
    for key in ("bn.weight", "bn.running_mean", "bn.running_var"):
        assert new.weights[key].tolist() == [3.0]


def test_a_non_finite_update_is_left_out() -> None:
    strategy = RobustAggregation(STRATEGIES.create("fedavg"), ROBUST_RULES.create("trimmed_mean", beta=0.0))
    state = strategy.init(_model([0.0]))
    models = [_model([1.0]), _model([3.0]), _model([float("nan")])]
    new = strategy.aggregate(state, _results(models), num_sites=3)
    assert new.weights["conv.weight"].tolist() == [2.0]
    with pytest.raises(ValueError, match="non-finite|NaN"):
        strategy.aggregate(state, _results([_model([float("inf")])]), num_sites=1)


@pytest.mark.parametrize("rule", ROBUST_RULES.names())
@pytest.mark.parametrize("inner", ["fedavg", "fedprox", "fedbn", "fedadam", "fedyogi", "fedadagrad"])
def test_identical_updates_leave_the_model_unchanged(rule: str, inner: str) -> None:
    strategy = robust_strategy(STRATEGIES.create(inner), rule)
    start = _model([0.5, -1.5], bn=2.0, count=7)
    new = strategy.aggregate(strategy.init(start), _results([_model([0.5, -1.5], bn=2.0, count=7)] * 4), 4)
    for key, tensor in start.items():
        torch.testing.assert_close(new.weights[key], tensor, msg=key)


def test_unknown_rule_and_unsupported_strategy_are_refused() -> None:
    with pytest.raises(UnknownNameError, match="valid names: geometric_median, krum, median"):
        robust_strategy(STRATEGIES.create("fedavg"), "mean")
    with pytest.raises(TypeError, match="scaffold"):
        robust_strategy(STRATEGIES.create("scaffold"), "median")
    with pytest.raises(ValueError, match="beta"):
        ROBUST_RULES.create("trimmed_mean", beta=0.5)
    with pytest.raises(ValueError, match="integers"):
        ROBUST_RULES.create("krum", f=1.5)


@pytest.mark.parametrize(
    "privacy",
    [
        {"secure_aggregation": {}},
        {"encryption": {"scheme": "ckks"}},
        {"client_dp": {"noise_multiplier": 1.0}},
    ],
)
def test_robust_aggregation_refuses_hidden_or_dp_summed_updates(privacy: dict[str, object]) -> None:
    strategy = robust_strategy(STRATEGIES.create("fedavg"), "krum")
    with pytest.raises(ConfigError, match=f"privacy.{next(iter(privacy))}"):
        protect(PrivacyConfig.model_validate(privacy).plan(), strategy, expected_sites=3, seed=0)


def test_robust_aggregation_composes_with_dp_sgd() -> None:
    strategy = robust_strategy(STRATEGIES.create("fedavg"), "median")
    privacy = PrivacyConfig.model_validate({"dp_sgd": {}})
    assert protect(privacy.plan(), strategy, expected_sites=3, seed=0)[0] is strategy


def test_config_builds_the_robust_wrapper_and_refuses_it_with_secure_aggregation() -> None:
    strategy = build_strategy(
        StrategyConfig.model_validate({"name": "fedadam", "lr": 0.1, "robust": {"rule": "krum", "f": 1}})
    )
    assert isinstance(strategy, RobustAggregation) and strategy.rule == Krum(f=1)
    assert isinstance(strategy.inner, FedAdam) and strategy.inner.lr == 0.1
    raw = {
        "strategies": [{"name": "fedavg", "robust": {"rule": "median"}}],
        "privacy": {"secure_aggregation": {}},
    }
    with pytest.raises(
        ConfigError, match=r"strategies\.0: robust aggregation \('median'\) cannot be combined"
    ):
        parse_config(raw)
    with pytest.raises(ConfigError, match="valid names"):
        parse_config({"strategies": [{"name": "fedavg", "robust": {"rule": "mean"}}]})
