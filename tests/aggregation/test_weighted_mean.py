"""weighted_mean: hand-computed values, buffer maxima, laziness, bad input, order invariance."""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from medfed.aggregation import weighted_mean
from medfed.types import Weights


def test_weighted_mean_matches_hand_computed_values() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor(4.0)}
    b = {"w": torch.tensor([3.0, -2.0]), "b": torch.tensor(0.0)}
    mean = weighted_mean([(a, 1.0), (b, 3.0)])
    # w: (1*1 + 3*3) / 4 = 2.5, (1*2 + 3*-2) / 4 = -1.0; b: (1*4 + 3*0) / 4 = 1.0
    torch.testing.assert_close(mean["w"], torch.tensor([2.5, -1.0]))
    torch.testing.assert_close(mean["b"], torch.tensor(1.0))


def test_integer_buffers_take_the_elementwise_max() -> None:
    updates = [
        ({"n": torch.tensor([3, 9]), "w": torch.tensor([0.0])}, 5.0),
        ({"n": torch.tensor([7, 2]), "w": torch.tensor([1.0])}, 1.0),
    ]
    mean = weighted_mean(updates)
    assert mean["n"].dtype == torch.int64
    assert mean["n"].tolist() == [7, 9]


def test_inputs_are_not_modified() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(1)}
    b = {"w": torch.tensor([3.0, 4.0]), "n": torch.tensor(2)}
    weighted_mean([(a, 2.0), (b, 1.0)])
    assert a["w"].tolist() == [1.0, 2.0] and a["n"].item() == 1
    assert b["w"].tolist() == [3.0, 4.0] and b["n"].item() == 2


def test_previous_update_is_released_before_the_next_is_produced() -> None:
    previous: list[weakref.ref[torch.Tensor]] = []

    def lazy() -> Iterator[tuple[Weights, float]]:
        for i in range(5):
            assert all(ref() is None for ref in previous), "an earlier update is still alive"
            tensor = torch.full((3,), float(i))
            previous.append(weakref.ref(tensor))
            yield {"w": tensor}, 1.0
            del tensor

    torch.testing.assert_close(weighted_mean(lazy())["w"], torch.full((3,), 2.0))


def test_empty_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one update"):
        weighted_mean([])


def test_zero_total_weight_is_rejected() -> None:
    with pytest.raises(ValueError, match="total weight"):
        weighted_mean([({"w": torch.ones(2)}, 0.0), ({"w": torch.ones(2)}, 0.0)])


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf")])
def test_bad_weights_are_rejected_with_their_index(weight: float) -> None:
    with pytest.raises(ValueError, match="update 1: weight"):
        weighted_mean([({"w": torch.ones(2)}, 1.0), ({"w": torch.ones(2)}, weight)])


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ({"w": torch.ones(2)}, "update 1: missing key 'v'"),
        (
            {"w": torch.ones(2), "v": torch.ones(1), "x": torch.ones(1)},
            "update 1: unexpected key 'x'",
        ),
        ({"w": torch.ones(3), "v": torch.ones(1)}, r"update 1: key 'w' has shape \(3,\)"),
        (
            {"w": torch.ones(2), "v": torch.ones(1, dtype=torch.float64)},
            "update 1: key 'v' has dtype",
        ),
    ],
)
def test_mismatched_updates_are_rejected_naming_key_and_index(second: Weights, message: str) -> None:
    first = {"w": torch.ones(2), "v": torch.ones(1)}
    with pytest.raises(ValueError, match=message):
        weighted_mean([(first, 1.0), (second, 1.0)])


_values = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, width=32)
_updates = st.lists(
    st.tuples(
        st.lists(_values, min_size=3, max_size=3),
        st.integers(min_value=-5, max_value=5),
        st.floats(min_value=0.1, max_value=100.0),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(updates=_updates, data=st.data())
def test_weighted_mean_is_order_invariant(
    updates: list[tuple[list[float], int, float]], data: st.DataObject
) -> None:
    def as_pairs(items: list[tuple[list[float], int, float]]) -> list[tuple[Weights, float]]:
        return [
            ({"w": torch.tensor(values, dtype=torch.float64), "n": torch.tensor(count)}, weight)
            for values, count, weight in items
        ]

    shuffled = data.draw(st.permutations(updates))
    expected = weighted_mean(as_pairs(updates))
    actual = weighted_mean(as_pairs(shuffled))
    torch.testing.assert_close(actual["w"], expected["w"], rtol=1e-9, atol=1e-9)
    assert torch.equal(actual["n"], expected["n"])
