"""Robust aggregation ops: hand-computed values, properties, and agreement with Flower."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from medfed.aggregation.robust import (
    coordinate_median,
    geometric_median,
    krum_scores,
    multi_krum,
    norm_bounded,
    stack_updates,
    trimmed_mean,
)
from medfed.types import Weights


def _scalars(*values: float) -> list[Weights]:
    return [{"w": torch.tensor([v])} for v in values]


def _value(weights: Weights) -> float:
    return float(weights["w"][0])


# ----- hand-computed values ---------------------------------------------------------------------
def test_median_odd_and_even() -> None:
    assert _value(coordinate_median(_scalars(1.0, 3.0, 2.0))) == 2.0
    assert _value(coordinate_median(_scalars(1.0, 2.0, 3.0, 10.0))) == 2.5


def test_median_is_coordinate_wise_and_keeps_dtypes() -> None:
    updates = [
        {"a": torch.tensor([1.0, 9.0]), "n": torch.tensor(3)},
        {"a": torch.tensor([2.0, 7.0]), "n": torch.tensor(5)},
        {"a": torch.tensor([3.0, 8.0]), "n": torch.tensor(100)},
    ]
    out = coordinate_median(updates)
    assert out["a"].tolist() == [2.0, 8.0]
    assert out["n"].dtype == torch.int64 and int(out["n"]) == 5


def test_trimmed_mean_drops_the_extremes() -> None:
    assert _value(trimmed_mean(_scalars(1.0, 2.0, 3.0, 100.0), 0.25)) == 2.5
    assert _value(trimmed_mean(_scalars(1.0, 2.0, 3.0, 100.0), 0.0)) == 26.5
    with pytest.raises(ValueError, match="beta"):
        trimmed_mean(_scalars(1.0), 0.5)


def test_krum_scores_and_selection() -> None:
    updates = _scalars(0.0, 1.0, 2.0, 4.0, 100.0)
    # n - f - 2 = 2 nearest: 0 -> 1 + 4; 1 -> 1 + 1; 2 -> 1 + 4; 4 -> 4 + 9; 100 -> 96^2 + 98^2
    scores = krum_scores(stack_updates(updates), f=1)
    assert scores.tolist() == [5.0, 2.0, 5.0, 13.0, 96.0**2 + 98.0**2]
    assert _value(multi_krum(updates, f=1)) == 1.0
    assert _value(multi_krum(updates, f=1, m=3)) == 1.0  # mean of 1, 0 and 2
    assert _value(multi_krum(updates, f=1, m=3, weights=[1, 1, 2, 1, 1])) == 1.25
    with pytest.raises(ValueError, match="Krum"):
        multi_krum(updates, f=1, m=6)


def test_geometric_median_of_a_square_is_its_centre_and_in_1d_the_median() -> None:
    corners = [{"p": torch.tensor(c)} for c in ([0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0])]
    assert geometric_median(corners)["p"].tolist() == [0.5, 0.5]
    line = geometric_median(_scalars(0.0, 1.0, 10.0), max_iter=1000, tol=0.0, nu=1e-9)
    assert _value(line) == pytest.approx(1.0, abs=1e-4)
    far = geometric_median(_scalars(0.0, 1.0, 10.0), weights=[1.0, 1.0, 5.0], max_iter=1000, tol=0.0)
    assert _value(far) == pytest.approx(10.0, abs=1e-4)  # weight 5 > 1 + 1 pulls it onto the point


def test_norm_bounded_fixed_and_median_bound() -> None:
    big, small = {"w": torch.tensor([3.0, 4.0])}, {"w": torch.tensor([0.3, 0.4])}
    clipped = norm_bounded([big, small], 1.0)
    torch.testing.assert_close(clipped[0]["w"], torch.tensor([0.6, 0.8]))
    torch.testing.assert_close(clipped[1]["w"], small["w"])
    by_median = norm_bounded([{"w": torch.tensor([n, 0.0])} for n in (1.0, 2.0, 10.0)])
    assert [float(u["w"][0]) for u in by_median] == [1.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="bound"):
        norm_bounded([big], 0.0)


def test_mismatched_updates_are_refused() -> None:
    with pytest.raises(ValueError, match="update 1"):
        coordinate_median([{"w": torch.zeros(2)}, {"w": torch.zeros(3)}])
    with pytest.raises(ValueError, match="at least one"):
        coordinate_median([])


# ----- properties -------------------------------------------------------------------------------
_floats = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, width=32)
_vectors = st.integers(min_value=1, max_value=4).flatmap(
    lambda d: st.lists(st.lists(_floats, min_size=d, max_size=d), min_size=1, max_size=6)
)
_RULES = {
    "median": coordinate_median,
    "trimmed_mean": lambda u: trimmed_mean(u, 0.2),
    "krum": lambda u: multi_krum(u, f=1),
    "multi_krum": lambda u: multi_krum(u, f=1, m=len(u)),
    "geometric_median": geometric_median,
}


def _as_updates(rows: list[list[float]]) -> list[Weights]:
    return [{"w": torch.tensor(row, dtype=torch.float64)} for row in rows]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(rows=_vectors, name=st.sampled_from(sorted(_RULES)), data=st.data())
def test_order_of_the_updates_does_not_matter(
    rows: list[list[float]], name: str, data: st.DataObject
) -> None:
    if name == "krum":  # with tied scores Krum may pick either update: order-invariant only without ties
        scores = krum_scores(stack_updates(_as_updates(rows)), f=1).tolist()
        assume(len(set(scores)) == len(scores))
    permuted = data.draw(st.permutations(rows))
    a, b = _RULES[name](_as_updates(rows)), _RULES[name](_as_updates(permuted))
    torch.testing.assert_close(a["w"], b["w"], rtol=1e-6, atol=1e-6)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    row=st.lists(_floats, min_size=1, max_size=4), n=st.integers(1, 6), name=st.sampled_from(sorted(_RULES))
)
def test_identical_updates_give_that_update(row: list[float], n: int, name: str) -> None:
    out = _RULES[name](_as_updates([row] * n))
    torch.testing.assert_close(out["w"], torch.tensor(row, dtype=torch.float64))
    clipped = norm_bounded(_as_updates([row] * n))
    torch.testing.assert_close(clipped[0]["w"], torch.tensor(row, dtype=torch.float64))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    rows=st.lists(st.lists(_floats, min_size=2, max_size=2), min_size=4, max_size=6),
    name=st.sampled_from(["median", "trimmed_mean", "krum", "geometric_median"]),
)
def test_one_huge_outlier_stays_out(rows: list[list[float]], name: str) -> None:
    honest = torch.tensor(rows, dtype=torch.float64)
    out = _RULES[name](_as_updates([*rows, [1e30, -1e30]]))["w"]
    assert torch.isfinite(out).all()
    # median, trimmed mean and Krum stay within the honest updates' range; the geometric
    # median within the honest ball around their mean
    spread = float((honest.max(0).values - honest.min(0).values).max()) + 1e-6
    slack = 3 if name == "geometric_median" else 1
    assert float((out - honest.mean(0)).abs().max()) <= slack * spread + 1e-6


# ----- agreement with Flower --------------------------------------------------------------------
# Flower cannot be installed beside medfed (it pins protobuf 6); its outputs on fixed inputs were
# computed by flwr 1.42 with scripts/flower_reference.py and committed.
FLOWER = json.loads((Path(__file__).parent / "flower_reference.json").read_text())


def _flower_weights(flat: list[list[float]]) -> Weights:
    return {
        f"layer{i}": torch.tensor(values, dtype=torch.float64).reshape(shape)
        for i, (values, shape) in enumerate(zip(flat, FLOWER["shapes"], strict=True))
    }


@pytest.mark.parametrize("case", FLOWER["cases"], ids=lambda case: f"seed{case['seed']}")
def test_matches_flower(case: dict) -> None:
    updates = [_flower_weights(flat) for flat in case["updates"]]
    ours = {
        "median": coordinate_median(updates),
        "krum_f1": multi_krum(updates, f=1),
        "multikrum_f1_keep3": multi_krum(updates, f=1, m=3, weights=case["num_examples"]),
        "trimmed_avg_0.2": trimmed_mean(updates, 0.2),
    }
    for name, result in ours.items():
        expected = _flower_weights(case["outputs"][name])
        for key, tensor in expected.items():
            torch.testing.assert_close(result[key].double(), tensor, rtol=0, atol=1e-6, msg=f"{name} {key}")
