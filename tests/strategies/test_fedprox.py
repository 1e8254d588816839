"""FedProx: the proximal term's value and gradient."""

from __future__ import annotations

import torch
from torch import nn

from medfed.strategies import FedProx
from medfed.types import SiteState, TrainTask


def test_penalty_value_and_gradient_match_hand_values() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    anchor = {k: v + torch.randn_like(v) for k, v in model.state_dict().items()}
    mu = 0.3
    hooks = FedProx(mu=mu).local_hooks(TrainTask(round=1, weights=anchor), SiteState(), model)

    penalty = hooks.penalty(model)
    assert penalty is not None
    squares = [((p.detach() - anchor[n]) ** 2).sum() for n, p in model.named_parameters()]
    expected = mu / 2 * torch.stack(squares).sum()
    torch.testing.assert_close(penalty.detach(), expected)

    penalty.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None
        torch.testing.assert_close(param.grad, mu * (param.detach() - anchor[name]))


def test_penalty_is_zero_at_the_global_model() -> None:
    model = nn.Linear(2, 1)
    task = TrainTask(round=1, weights={k: v.clone() for k, v in model.state_dict().items()})
    penalty = FedProx(mu=1.0).local_hooks(task, SiteState(), model).penalty(model)
    assert penalty is not None and penalty.item() == 0.0
