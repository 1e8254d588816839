"""Gossip mixing: Metropolis weights are doubly stochastic; one ring step is the closed form."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from medfed.aggregation import consensus, metropolis_weights, mix
from medfed.topology.graphs import build_graph


def _ring(n: int) -> dict[str, tuple[str, ...]]:
    names = [f"s{i}" for i in range(n)]
    return {names[i]: (names[i - 1], names[(i + 1) % n]) for i in range(n)}


def test_a_ring_step_is_the_average_of_each_site_and_its_two_neighbours() -> None:
    n = 5
    graph = _ring(n)
    models = {f"s{i}": {"w": torch.tensor([float(i**2), -float(i)])} for i in range(n)}
    mixed = mix(models, metropolis_weights(graph))
    for i in range(n):
        expected = (
            models[f"s{(i - 1) % n}"]["w"] + models[f"s{i}"]["w"] + models[f"s{(i + 1) % n}"]["w"]
        ) / 3
        assert torch.allclose(mixed[f"s{i}"]["w"], expected)


def test_metropolis_weights_of_a_path_by_hand() -> None:
    matrix = metropolis_weights({"a": ("b",), "b": ("a", "c"), "c": ("b",)})
    assert matrix == {
        "a": {"b": pytest.approx(1 / 3), "a": pytest.approx(2 / 3)},
        "b": {"a": pytest.approx(1 / 3), "c": pytest.approx(1 / 3), "b": pytest.approx(1 / 3)},
        "c": {"b": pytest.approx(1 / 3), "c": pytest.approx(2 / 3)},
    }


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 9), degree=st.integers(1, 4), seed=st.integers(0, 1000))
def test_mixing_keeps_the_average_and_rows_sum_to_one(n: int, degree: int, seed: int) -> None:
    if degree >= n or (degree * n) % 2:
        return
    graph = build_graph("random_regular", [f"s{i}" for i in range(n)], degree=degree, seed=seed)
    matrix = metropolis_weights(graph)
    for site, row in matrix.items():
        assert sum(row.values()) == pytest.approx(1.0)
        assert all(matrix[peer][site] == pytest.approx(weight) for peer, weight in row.items())
    generator = torch.Generator().manual_seed(seed)
    models = {site: {"w": torch.randn(3, generator=generator, dtype=torch.float64)} for site in graph}
    mixed = mix(models, matrix)
    assert torch.allclose(consensus(mixed.values())["w"], consensus(models.values())["w"])


def test_a_one_way_edge_is_refused() -> None:
    with pytest.raises(ValueError, match="'a' - 'b'"):
        metropolis_weights({"a": ("b",), "b": ()})


def test_consensus_is_the_plain_mean() -> None:
    models = [
        {"w": torch.tensor([1.0]), "n": torch.tensor(3)},
        {"w": torch.tensor([3.0]), "n": torch.tensor(5)},
    ]
    mean = consensus(models)
    assert torch.equal(mean["w"], torch.tensor([2.0])) and int(mean["n"]) == 5
