"""SCAFFOLD: the site control variate is the mean local gradient; the server update; the
gradient correction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.data import Dataset

from medfed.orchestration.site import LocalSite, cpu_weights
from medfed.privacy.dp import Budget, DPTrainer, SitePrivacy
from medfed.strategies import LocalHooks, Scaffold
from medfed.training import LocalTrainer, TrainSettings
from medfed.training.trainer import Trainer
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


class _Cases(Dataset):
    """Twelve 1x4x4 images in three classes."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(12, 1, 4, 4, generator=generator)
        self.labels = torch.randint(0, 3, (12,), generator=generator)

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "label": self.labels[index]}


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def _controls(model: nn.Module, scale: float) -> Weights:
    generator = torch.Generator().manual_seed(int(scale * 100))
    return {k: scale * torch.randn(v.shape, generator=generator) for k, v in model.state_dict().items()}


@contextmanager
def _gradients_at_each_step() -> Iterator[list[Weights]]:
    """Every optimiser step's gradients (what the optimiser steps with), recorded independently."""
    seen: list[Weights] = []

    def record(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        seen.append(
            {str(i): p.grad.detach().clone() for i, p in enumerate(optimizer.param_groups[0]["params"])}
        )

    handle = register_optimizer_step_pre_hook(record)
    try:
        yield seen
    finally:
        handle.remove()


def _train_one_round(trainer: Trainer, model: nn.Module) -> tuple[Weights, Weights, list[Weights]]:
    """One SCAFFOLD round at a site with non-zero ``c`` and ``c_i``: (c - c_i, new c_i, steps)."""
    strategy = Scaffold()
    c, c_i = _controls(model, 0.5), _controls(model, 0.2)
    site = LocalSite("a", _Cases(), model=model, trainer=trainer, strategy=strategy, seed=1)
    site.state = SiteState(extra={"control": c_i})
    task = TrainTask(round=1, weights=cpu_weights(model), extra={"control": c}, config={"local_epochs": 2})
    with _gradients_at_each_step() as steps:
        result = site.train(task)
    new = site.state.extra["control"]
    torch.testing.assert_close(result.extra["delta_control"], {k: new[k] - c_i[k] for k in c})
    return {k: c[k] - c_i[k] for k in c}, new, steps


def _assert_mean_gradient(correction: Weights, new: Weights, steps: list[Weights]) -> None:
    """``c_i+`` is the mean over steps of the gradient before the ``c - c_i`` correction."""
    assert len(steps) == 6  # 12 cases, batches of 4, 2 epochs
    for index, key in enumerate(["1.weight", "1.bias"]):
        stepped = torch.stack([step[str(index)] for step in steps]).mean(0)
        torch.testing.assert_close(new[key], stepped - correction[key], atol=1e-6, rtol=0.0)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_site_control_variate_is_the_mean_local_gradient_whatever_the_optimiser(optimizer: str) -> None:
    settings = TrainSettings(batch_size=4, lr=0.05, optimizer=optimizer)  # type: ignore[arg-type]
    trainer = LocalTrainer(task="classification", settings=settings, device=torch.device("cpu"))
    _assert_mean_gradient(*_train_one_round(trainer, _linear()))


def test_under_dp_sgd_the_control_variate_is_the_mean_privatised_gradient() -> None:
    inner = LocalTrainer(
        task="classification", settings=TrainSettings(batch_size=4, lr=0.05), device=torch.device("cpu")
    )
    policy = SitePrivacy(budget=Budget(1e3, 1e-5), noise_multiplier=1.0, max_grad_norm=0.1)
    correction, new, steps = _train_one_round(DPTrainer(inner, site="a", policy=policy), _linear())
    _assert_mean_gradient(correction, new, steps)


def test_mean_gradient_of_recorded_steps_by_hand() -> None:
    model = nn.Linear(2, 1, bias=False)
    task = TrainTask(
        round=1, weights=model.state_dict(), extra={"control": {"weight": torch.tensor([[1.0, 1.0]])}}
    )
    hooks = Scaffold().local_hooks(task, SiteState(), model)
    for x in ([[2.0, 0.0]], [[0.0, 4.0]]):
        model.zero_grad()
        model(torch.tensor(x)).sum().backward()
        hooks.after_backward(model)
    extra, site = Scaffold().finish(task, SiteState(), model.state_dict(), hooks)
    # c_i+ = mean([2, 0], [0, 4]) = [1, 2]; the correction c - c_i = [1, 1] is not part of it;
    # c_i starts at zero, so delta c_i = c_i+
    torch.testing.assert_close(site.extra["control"]["weight"], torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(extra["delta_control"]["weight"], torch.tensor([[1.0, 2.0]]))


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
    hooks = Scaffold().local_hooks(task, SiteState(extra={"control": c_i}), model)
    hooks.after_backward(model)
    # grad + c - c_i = [2 + 0.25, 3 - 0.75], 1 + 2
    torch.testing.assert_close(model.weight.grad, torch.tensor([[2.25, 2.25]]))
    torch.testing.assert_close(model.bias.grad, torch.tensor([3.0]))


def test_finish_needs_the_hooks_and_a_step() -> None:
    task = TrainTask(round=1, weights={"w": _vec(1.0)}, extra={"control": {"w": _vec(0.0)}})
    with pytest.raises(ValueError, match="hooks of local_hooks"):
        Scaffold().finish(task, SiteState(), {"w": _vec(0.0)}, LocalHooks())
    with pytest.raises(ValueError, match="no step"):
        hooks = Scaffold().local_hooks(task, SiteState(), nn.Linear(1, 1))
        Scaffold().finish(task, SiteState(), {"w": _vec(0.0)}, hooks)
