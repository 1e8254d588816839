"""FedAdagrad, FedAdam, FedYogi: two rounds against hand arithmetic; running statistics."""

from __future__ import annotations

import math

import pytest
import torch

from medfed.strategies import FedAdagrad, FedAdam, FedYogi
from medfed.strategies.fedopt import FedOpt
from medfed.types import ServerState, TrainResult, Weights

LR, BETA1, BETA2, TAU = 0.1, 0.5, 0.75, 0.5


def _result(site: str, weights: Weights, num_samples: int = 1) -> TrainResult:
    return TrainResult(site=site, round=1, weights=weights, num_samples=num_samples)


def _vec(a: float, b: float) -> torch.Tensor:
    return torch.tensor([a, b], dtype=torch.float64)


# Second moments by hand, with v0 = tau^2 = 0.25, delta1 = [2, 0], delta2 = [-1, 1]:
SECOND_MOMENTS = {
    # v1 = v0 + d1^2 = [0.25 + 4, 0.25 + 0];  v2 = v1 + d2^2 = [4.25 + 1, 0.25 + 1]
    "adagrad": ([4.25, 0.25], [5.25, 1.25]),
    # v1 = 0.75*0.25 + 0.25*[4, 0] = [1.1875, 0.1875]
    # v2 = 0.75*v1 + 0.25*[1, 1] = [1.140625, 0.390625]
    "adam": ([1.1875, 0.1875], [1.140625, 0.390625]),
    # v1 = 0.25 - 0.25*[4, 0]*sign(0.25 - [4, 0]) = [0.25 + 1, 0.25 - 0] = [1.25, 0.25]
    # v2 = v1 - 0.25*[1, 1]*sign(v1 - [1, 1]) = [1.25 - 0.25, 0.25 + 0.25] = [1.0, 0.5]
    "yogi": ([1.25, 0.25], [1.0, 0.5]),
}


def _make(variant: str) -> FedOpt:
    if variant == "adagrad":
        return FedAdagrad(lr=LR, beta1=BETA1, tau=TAU)
    cls = FedAdam if variant == "adam" else FedYogi
    return cls(lr=LR, beta1=BETA1, beta2=BETA2, tau=TAU)


@pytest.mark.parametrize("variant", ["adagrad", "adam", "yogi"])
def test_two_rounds_match_hand_arithmetic(variant: str) -> None:
    (v1a, v1b), (v2a, v2b) = SECOND_MOMENTS[variant]
    strategy = _make(variant)
    state = strategy.init({"w": _vec(1.0, -2.0)})

    # Round 1: sites send [3, -1] and [3, -3] (1 sample each): mean [3, -2], delta1 = [2, 0]
    results = [_result("a", {"w": _vec(3.0, -1.0)}, 1), _result("b", {"w": _vec(3.0, -3.0)}, 1)]
    state = strategy.aggregate(state, results, num_sites=2)
    # m1 = 0.5*0 + 0.5*[2, 0] = [1, 0]
    x1a = 1.0 + LR * 1.0 / (math.sqrt(v1a) + TAU)
    x1b = -2.0 + LR * 0.0 / (math.sqrt(v1b) + TAU)
    torch.testing.assert_close(state.extra["m"]["w"], _vec(1.0, 0.0))
    torch.testing.assert_close(state.extra["v"]["w"], _vec(v1a, v1b))
    torch.testing.assert_close(state.weights["w"], _vec(x1a, x1b))
    assert state.round == 1

    # Round 2: both sites send x1 + [-1, 1] -> delta2 = [-1, 1]
    results = [_result(s, {"w": _vec(x1a - 1.0, x1b + 1.0)}, 2) for s in ("a", "b")]
    state = strategy.aggregate(state, results, num_sites=2)
    # m2 = 0.5*[1, 0] + 0.5*[-1, 1] = [0, 0.5]
    x2a = x1a + LR * 0.0 / (math.sqrt(v2a) + TAU)
    x2b = x1b + LR * 0.5 / (math.sqrt(v2b) + TAU)
    torch.testing.assert_close(state.extra["m"]["w"], _vec(0.0, 0.5))
    torch.testing.assert_close(state.extra["v"]["w"], _vec(v2a, v2b))
    torch.testing.assert_close(state.weights["w"], _vec(x2a, x2b))
    assert state.round == 2


def test_running_statistics_are_averaged_not_stepped() -> None:
    strategy = FedAdam(lr=1.0)
    start = {
        "w": torch.zeros(2),
        "bn.running_var": torch.ones(2),
        "bn.num_batches_tracked": torch.tensor(0),
    }
    state = strategy.init(start)
    assert set(state.extra["m"]) == {"w"} and set(state.extra["v"]) == {"w"}
    results = [
        _result(
            "a",
            {
                "w": torch.ones(2),
                "bn.running_var": torch.tensor([0.1, 0.2]),
                "bn.num_batches_tracked": torch.tensor(4),
            },
            1,
        ),
        _result(
            "b",
            {
                "w": torch.ones(2),
                "bn.running_var": torch.tensor([0.3, 0.6]),
                "bn.num_batches_tracked": torch.tensor(7),
            },
            3,
        ),
    ]
    new = strategy.aggregate(state, results, num_sites=2)
    # (1*0.1 + 3*0.3)/4 = 0.25; (1*0.2 + 3*0.6)/4 = 0.5; max(4, 7) = 7
    torch.testing.assert_close(new.weights["bn.running_var"], torch.tensor([0.25, 0.5]))
    assert new.weights["bn.num_batches_tracked"].item() == 7


def test_state_without_moments_is_rejected() -> None:
    state = ServerState(round=0, weights={"w": torch.zeros(1)})
    with pytest.raises(ValueError, match="'m' and 'v'"):
        FedAdam().aggregate(state, [_result("a", {"w": torch.ones(1)})], num_sites=1)
