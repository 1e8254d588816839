"""Hypothesis properties shared by strategies: aggregating identical updates is the identity."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from medfed.strategies import STRATEGIES
from medfed.types import TrainResult, Weights

_floats = st.floats(min_value=-100.0, max_value=100.0, allow_nan=False, width=32)


def _model(values: list[float], count: int) -> Weights:
    n = len(values)
    return {
        "layer.weight": torch.tensor(values),
        "bn.weight": torch.tensor(values[::-1]),
        "bn.bias": torch.tensor(values) * 0.5,
        "bn.running_mean": torch.tensor(values) * 2.0,
        "bn.running_var": torch.tensor(values).abs() + 1.0,
        "bn.num_batches_tracked": torch.tensor(count),
        "head.bias": torch.full((n,), values[0]),
    }


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    name=st.sampled_from(STRATEGIES.names()),
    values=st.lists(_floats, min_size=1, max_size=5),
    count=st.integers(min_value=0, max_value=100),
    samples=st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=5),
)
def test_identical_updates_leave_the_model_unchanged(
    name: str, values: list[float], count: int, samples: list[int]
) -> None:
    strategy = STRATEGIES.create(name)
    state = strategy.init(_model(values, count))
    task = strategy.configure(state, 1, {})
    # SCAFFOLD with zero controls: a site that did not move returns a zero control delta.
    extra = {"delta_control": dict(task.extra["control"])} if name == "scaffold" else {}
    results = [
        TrainResult(f"s{i}", round=1, weights=_model(values, count), num_samples=n, extra=extra)
        for i, n in enumerate(samples)
    ]
    new = strategy.aggregate(state, results, num_sites=len(results))
    assert new.round == 1
    for key, tensor in state.weights.items():
        torch.testing.assert_close(new.weights[key], tensor, rtol=1e-5, atol=1e-5, msg=key)
