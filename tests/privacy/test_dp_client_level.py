"""Client-level DP-FedAvg with adaptive clipping (ClientDP) around another strategy."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from medfed.privacy.dp.accounting import Mechanism, epsilon_spent
from medfed.privacy.dp.client_level import GROUP, ClientDP
from medfed.privacy.dp.noise import NoiseMode
from medfed.strategies import FedAvg
from medfed.strategies.registry import STRATEGIES
from medfed.types import ServerState, TrainResult, Weights


def _result(site: str, weights: Weights, num_samples: int = 1) -> TrainResult:
    return TrainResult(site=site, round=1, weights=weights, num_samples=num_samples)


def _start(strategy: ClientDP, size: int = 3) -> ServerState:
    return strategy.init({"w": torch.zeros(size), "steps": torch.tensor(0)})


def test_each_update_is_clipped_to_the_bound() -> None:
    strategy = ClientDP(FedAvg(), noise_multiplier=0.0, clip=1.0, target_quantile=None)
    state = _start(strategy, size=2)
    results = [
        _result("a", {"w": torch.tensor([3.0, 4.0]), "steps": torch.tensor(1)}),  # norm 5 -> 1
        _result("b", {"w": torch.tensor([0.3, 0.4]), "steps": torch.tensor(1)}),  # norm 0.5 kept
    ]
    new = strategy.aggregate(state, results, num_sites=2)
    # ([0.6, 0.8] + [0.3, 0.4]) / 2 expected sites
    torch.testing.assert_close(new.weights["w"], torch.tensor([0.45, 0.6]))
    assert int(new.weights["steps"]) == 0  # integer buffers are not released


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(
        st.lists(st.floats(-100, 100, allow_nan=False), min_size=3, max_size=3), min_size=1, max_size=5
    ),
    samples=st.integers(1, 50),
)
def test_zero_noise_and_huge_clip_equal_plain_inner_aggregation(
    values: list[list[float]], samples: int
) -> None:
    strategy = ClientDP(FedAvg(), noise_multiplier=0.0, clip=1e9, target_quantile=0.5)
    results = [
        _result(f"s{i}", {"w": torch.tensor(v), "steps": torch.tensor(0)}, num_samples=samples)
        for i, v in enumerate(values)
    ]
    start = _start(strategy)
    private = strategy.aggregate(start, results, num_sites=len(results))
    plain = FedAvg().aggregate(FedAvg().init(start.weights), results, num_sites=len(results))
    torch.testing.assert_close(private.weights["w"], plain.weights["w"], rtol=1e-5, atol=1e-4)
    assert private.round == plain.round == 1


def test_noise_has_the_stated_scale() -> None:
    strategy = ClientDP(FedAvg(), noise_multiplier=2.0, clip=0.5, target_quantile=None)
    state = strategy.init({"w": torch.zeros(20000)})
    new = strategy.aggregate(state, [_result("a", {"w": torch.zeros(20000)})], num_sites=4)
    # N(0, (z C)^2) on the sum, divided by the 4 expected sites: std 2 * 0.5 / 4 = 0.25.
    assert float(new.weights["w"].std()) == pytest.approx(0.25, rel=0.03)


def test_adaptive_clip_moves_toward_the_target_quantile() -> None:
    strategy = ClientDP(
        FedAvg(),
        noise_multiplier=0.5,
        clip=0.01,
        target_quantile=0.5,
        clip_lr=0.5,
        noise=NoiseMode.REPRODUCIBLE,
    )
    state = _start(strategy, size=1)
    norms = torch.linspace(1.0, 3.0, 21)  # median 2.0
    trail = []
    for _ in range(80):
        results = [
            _result(f"s{i}", {"w": torch.tensor([float(n)]), "steps": torch.tensor(0)})
            for i, n in enumerate(norms)
        ]
        state = strategy.aggregate(state, results, num_sites=len(norms))
        state = ServerState(
            round=state.round, weights={"w": torch.zeros(1), "steps": torch.tensor(0)}, extra=state.extra
        )
        trail.append(strategy.clip(state))
    assert trail[0] > 0.01
    assert sum(trail[-20:]) / 20 == pytest.approx(2.0, rel=0.15)


def test_state_carries_clip_and_account_for_resume() -> None:
    strategy = ClientDP(FedAvg(), noise_multiplier=1.0, clip=1.0, expected_sites=2)
    state = _start(strategy)
    for _ in range(3):
        state = strategy.aggregate(
            state, [_result("a", {"w": torch.ones(3), "steps": torch.tensor(0)})], num_sites=4
        )
    assert int(state.extra[GROUP]["rounds"]) == 3
    expected = epsilon_spent([Mechanism(1.0, 0.5, 3)], delta=1e-5, accountant="rdp")
    assert strategy.epsilon(state, delta=1e-5) == pytest.approx(expected)
    resumed = ClientDP(FedAvg(), noise_multiplier=1.0, clip=7.0, expected_sites=2)
    assert resumed.clip(state) == strategy.clip(state) != 7.0


def test_no_noise_means_no_guarantee() -> None:
    strategy = ClientDP(FedAvg(), noise_multiplier=0.0)
    state = strategy.aggregate(
        _start(strategy), [_result("a", {"w": torch.ones(3), "steps": torch.tensor(0)})], num_sites=1
    )
    assert math.isinf(strategy.epsilon(state, delta=1e-5))


def test_strategies_that_send_extra_tensors_are_refused() -> None:
    strategy = ClientDP(STRATEGIES.create("scaffold"), noise_multiplier=1.0)
    state = strategy.init({"w": torch.zeros(1)})
    result = TrainResult(
        site="a",
        round=1,
        weights={"w": torch.ones(1)},
        num_samples=1,
        extra={"delta_control": {"w": torch.ones(1)}},
    )
    with pytest.raises(ValueError, match="extra tensors"):
        strategy.aggregate(state, [result], num_sites=1)


def test_inner_state_is_kept_apart() -> None:
    strategy = ClientDP(STRATEGIES.create("fedadam", lr=0.1), noise_multiplier=0.0, clip=1e9)
    state = strategy.init({"w": torch.zeros(2)})
    new = strategy.aggregate(state, [_result("a", {"w": torch.ones(2)})], num_sites=1)
    assert GROUP in new.extra and len(new.extra) > 1  # FedAdam's moments next to ClientDP's group


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"noise_multiplier": -1.0}, "noise_multiplier"),
        ({"noise_multiplier": 1.0, "clip": 0.0}, "clip"),
        ({"noise_multiplier": 1.0, "target_quantile": 1.0}, "target_quantile"),
        ({"noise_multiplier": 1.0, "expected_sites": 0}, "expected_sites"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClientDP(FedAvg(), **kwargs)
