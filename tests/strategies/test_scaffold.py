"""SCAFFOLD: option-II control variates, the server update and the gradient correction."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medfed.strategies import Scaffold
from medfed.types import ServerState, SiteState, TrainResult, TrainTask, Weights


def _vec(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _result(site: str, weights: Weights, delta_control: Weights, num_samples: int) -> TrainResult:
    extra = {"delta_control": delta_control}
    return TrainResult(site=site, round=1, weights=weights, num_samples=num_samples, extra=extra)


def test_configure_sends_the_server_control() -> None:
    strategy = Scaffold()
    state = strategy.init({"w": _vec(1.0, 2.0), "bn.running_mean": _vec(0.0)})
    assert set(state.extra["control"]) == {"w"}
    task = strategy.configure(state, 1, {"local_epochs": 1})
    assert torch.equal(task.extra["control"]["w"], _vec(0.0, 0.0))


def test_site_control_variate_option_two() -> None:
    x = {"w": _vec(1.0, 2.0)}
    task = TrainTask(round=1, weights=x, extra={"control": {"w": _vec(0.5, -0.5)}})
    site = SiteState(extra={"control": {"w": _vec(0.1, 0.2)}})
    trained = {"w": _vec(0.5, 3.0)}
    extra, new_site = Scaffold().finish(task, site, trained, steps=2, lr=0.25)
    # c_i+ = c_i - c + (x - y)/(K*lr), K*lr = 0.5:
    #   [0.1 - 0.5 + (1 - 0.5)/0.5, 0.2 + 0.5 + (2 - 3)/0.5] = [0.6, -1.3]
    torch.testing.assert_close(new_site.extra["control"]["w"], _vec(0.6, -1.3))
    # delta c_i = c_i+ - c_i = [0.5, -1.5]
    torch.testing.assert_close(extra["delta_control"]["w"], _vec(0.5, -1.5))
    assert new_site.weights is trained


def test_site_control_starts_at_zero() -> None:
    task = TrainTask(round=1, weights={"w": _vec(1.0)}, extra={"control": {"w": _vec(0.5)}})
    extra, _ = Scaffold().finish(task, SiteState(), {"w": _vec(0.0)}, steps=1, lr=1.0)
    # c_i+ = 0 - 0.5 + (1 - 0)/1 = 0.5
    torch.testing.assert_close(extra["delta_control"]["w"], _vec(0.5))


def test_server_update_uses_uniform_means() -> None:
    strategy = Scaffold(server_lr=0.5)
    control = {"w": _vec(0.5, -0.5)}
    state = ServerState(round=3, weights={"w": _vec(1.0, 2.0)}, extra={"control": control})
    results = [
        _result("a", {"w": _vec(0.5, 3.0)}, {"w": _vec(0.5, -1.5)}, num_samples=10),
        _result("b", {"w": _vec(2.5, 3.0)}, {"w": _vec(-0.1, 0.3)}, num_samples=30),
    ]
    new = strategy.aggregate(state, results, num_sites=4)
    # mean y = [1.5, 3.0] (uniform, not by samples); x + 0.5*(mean - x) = [1.25, 2.5]
    torch.testing.assert_close(new.weights["w"], _vec(1.25, 2.5))
    # mean delta c = [0.2, -0.6]; c + (2/4)*[0.2, -0.6] = [0.6, -0.8]
    torch.testing.assert_close(new.extra["control"]["w"], _vec(0.6, -0.8))
    assert new.round == 4


def test_missing_delta_control_is_rejected_naming_the_site() -> None:
    strategy = Scaffold()
    state = strategy.init({"w": _vec(1.0)})
    results = [TrainResult(site="a", round=1, weights={"w": _vec(1.0)}, num_samples=1)]
    with pytest.raises(ValueError, match="site 'a'"):
        strategy.aggregate(state, results, num_sites=1)


def test_after_backward_adds_the_control_correction() -> None:
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -1.0]]))
        model.bias.fill_(0.5)
    x = torch.tensor([[2.0, 3.0]])
    model(x).sum().backward()
    # d(w.x + b)/dw = x = [2, 3]; d/db = 1
    c = {"weight": torch.tensor([[0.5, 0.25]]), "bias": torch.tensor([1.0])}
    c_i = {"weight": torch.tensor([[0.25, 1.0]]), "bias": torch.tensor([-1.0])}
    task = TrainTask(round=1, weights=model.state_dict(), extra={"control": c})
    hooks = Scaffold().local_hooks(task, SiteState(extra={"control": c_i}))
    hooks.after_backward(model)
    # grad + c - c_i = [2 + 0.25, 3 - 0.75], 1 + 2
    torch.testing.assert_close(model.weight.grad, torch.tensor([[2.25, 2.25]]))
    torch.testing.assert_close(model.bias.grad, torch.tensor([3.0]))


def test_finish_rejects_bad_steps_and_lr() -> None:
    task = TrainTask(round=1, weights={"w": _vec(1.0)}, extra={"control": {"w": _vec(0.0)}})
    with pytest.raises(ValueError, match="steps"):
        Scaffold().finish(task, SiteState(), {"w": _vec(0.0)}, steps=0, lr=1.0)
    with pytest.raises(ValueError, match="lr"):
        Scaffold().finish(task, SiteState(), {"w": _vec(0.0)}, steps=1, lr=0.0)
