"""SCAFFOLD: control variates correcting the client drift of local training.

Karimireddy, Kale, Mohri, Reddi, Stich and Suresh, "SCAFFOLD: Stochastic Controlled Averaging
for Federated Learning", ICML 2020, Algorithm 1, with the site control variate taken as the
mean of the local gradients (see ``Scaffold``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from medfed.aggregation import (
    add_scaled,
    check_compatible,
    steppable_keys,
    subtract,
    weighted_mean,
    zeros_like,
)
from medfed.strategies.base import LocalHooks, Strategy, clone_weights
from medfed.strategies.common import DeviceCache, check_results, require_positive, uniform
from medfed.types import Scalar, ServerState, SiteState, TrainResult, TrainTask, Weights


class Scaffold(Strategy):
    """SCAFFOLD (Karimireddy et al. 2020).

    The server holds a control variate ``c`` (``ServerState.extra["control"]``) and sends it
    with every task; site ``i`` keeps its own ``c_i`` (``SiteState.extra["control"]``) and adds
    ``c - c_i`` to its gradients. Over its ``K`` local steps the site records the gradient
    ``g_k`` of its loss at the weights of step ``k``, *before* the correction, and sets::

        c_i+ = (1 / K) * sum_k g_k                           (mean local gradient)

    Under plain SGD this equals the paper's option II, ``c_i - c + (x - y_i) / (K * lr)``; under
    Adam or momentum option II is no gradient at all (76x the mean gradient with Adam, 3x with
    momentum 0.9, on a small U-Net), while the mean gradient does not depend on the optimiser
    (docs/strategies-notes.md). Under DP-SGD ``g_k``
    is the privatised (clipped and noised) gradient the optimiser steps with, so ``c_i`` is
    post-processing and spends no budget. The site returns ``Δc_i = c_i+ - c_i`` as
    ``extra["delta_control"]``. The server, with ``S`` the participating sites and ``N`` all
    sites::

        x = x + server_lr * mean_S(y_i - x)
        c = c + |S| / N * mean_S(Δc_i)

    Both means are uniform over the participating sites, as in the paper (not sample-weighted).
    Control variates cover the floating entries other than running statistics; running
    statistics are the uniform mean and integer buffers the maximum.

    Args:
        server_lr: Global step size η_g (> 0; 1 takes the mean of the sites' models).
    """

    name = "scaffold"

    def __init__(self, *, server_lr: float = 1.0) -> None:
        self.server_lr = require_positive("server_lr", server_lr)

    # ----- server half -------------------------------------------------------------------------
    def init(self, weights: Weights) -> ServerState:
        """The initial model with a zero server control variate."""
        control = zeros_like(weights, steppable_keys(weights))
        return ServerState(round=0, weights=clone_weights(weights), extra={"control": control})

    def configure(self, state: ServerState, round: int, config: Mapping[str, Scalar]) -> TrainTask:
        """The task carrying the global model and the server control variate ``c``."""
        extra = {"control": _control(state.extra, "server state")}
        return TrainTask(round=round, weights=state.weights, config=dict(config), extra=extra)

    def result_extras(self, reference: Weights) -> dict[str, Weights]:
        """``delta_control``: one tensor like the model's for each controlled entry."""
        return {"delta_control": {key: reference[key] for key in steppable_keys(reference)}}

    def aggregate(self, state: ServerState, results: Sequence[TrainResult], num_sites: int) -> ServerState:
        """Steps the model and the server control variate by the sites' uniform means."""
        check_results(state.weights, results)
        if num_sites < len(results):
            raise ValueError(f"num_sites ({num_sites}) is smaller than the {len(results)} results")
        control = _control(state.extra, "server state")
        for result in results:
            delta = _control(result.extra, f"result of site '{result.site}'", "delta_control")
            check_compatible(control, delta, f"site '{result.site}' delta_control")
        mean = weighted_mean(uniform(results))
        step = subtract(mean, state.weights, control.keys())
        mean_delta_c = weighted_mean((r.extra["delta_control"], 1.0) for r in results)
        # x + server_lr * (mean - x) == mean + (server_lr - 1) * (mean - x) on the control keys;
        # the other keys (running statistics, integer buffers) are the mean as it is.
        return ServerState(
            round=state.round + 1,
            weights=add_scaled(mean, step, self.server_lr - 1.0),
            extra={"control": add_scaled(control, mean_delta_c, len(results) / num_sites)},
        )

    # ----- site half ---------------------------------------------------------------------------
    def local_hooks(self, task: TrainTask, site: SiteState, model: nn.Module) -> LocalHooks:
        """Hooks recording each gradient, then adding ``c - c_i`` to it."""
        control = _control(task.extra, "task")
        correction = subtract(control, _site_control(site, control))
        return ControlVariateHooks(correction)

    def finish(
        self, task: TrainTask, site: SiteState, trained: Weights, hooks: LocalHooks
    ) -> tuple[dict[str, Weights], SiteState]:
        """``c_i+``, the mean gradient ``hooks`` recorded; sends ``Δc_i`` and keeps ``c_i+``.

        Raises:
            ValueError: If ``hooks`` are not this strategy's or recorded no step, or
                ``trained`` does not match the task's model.
        """
        if not isinstance(hooks, ControlVariateHooks):
            raise ValueError(f"scaffold: finish needs the hooks of local_hooks, got {type(hooks).__name__}")
        check_compatible(task.weights, trained, "trained weights")
        control = _control(task.extra, "task")
        old = _site_control(site, control)
        new = hooks.mean_gradient(control)
        extra = {"delta_control": subtract(new, old)}
        return extra, SiteState(weights=trained, extra={"control": new})


class ControlVariateHooks(LocalHooks):
    """Records each step's gradient, then adds a fixed correction to it, after ``backward()``.

    Args:
        correction: ``c - c_i`` by parameter name.
    """

    def __init__(self, correction: Weights) -> None:
        self._correction = DeviceCache(correction, "control variate")
        self._sums: Weights = {}
        self.steps = 0

    def after_backward(self, model: nn.Module) -> None:
        """Adds ``param.grad`` to the running sums, then ``param.grad += c - c_i``."""
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.grad is not None:
                    if name in self._sums:
                        self._sums[name].add_(param.grad)
                    else:
                        self._sums[name] = param.grad.clone()
                    param.grad.add_(self._correction.like(name, param.grad))
        self.steps += 1

    def mean_gradient(self, like: Weights) -> Weights:
        """The mean recorded gradient for each key of ``like`` (its dtype, on the CPU); zero
        for a key that never had a gradient.

        Raises:
            ValueError: If no step was recorded.
        """
        if self.steps == 0:
            raise ValueError("scaffold: local training took no step, so there is no mean gradient")
        zeros = zeros_like(like, like.keys())
        return {
            key: (self._sums[key].cpu() / self.steps).to(zero.dtype) if key in self._sums else zero
            for key, zero in zeros.items()
        }


def _control(extra: Mapping[str, Weights], where: str, group: str = "control") -> Weights:
    if group not in extra:
        raise ValueError(f"scaffold: the {where} has no '{group}' tensors")
    return extra[group]


def _site_control(site: SiteState, control: Weights) -> Weights:
    """The site's ``c_i``, zeros before its first round."""
    if "control" not in site.extra:
        return zeros_like(control, control.keys())
    check_compatible(control, site.extra["control"], "site control variate")
    return site.extra["control"]
