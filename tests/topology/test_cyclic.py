"""Cyclic weight transfer: one model visits every site once per cycle, in order."""

from __future__ import annotations

from collections.abc import Callable

import torch
from peer_fakes import SITES, FakeGrid

from medfed.topology.cyclic import CyclicTransfer
from medfed.topology.peers import PeerState, run_topology


def test_a_fixed_order_visits_the_sites_in_sorted_order_each_cycle(
    fake_grid: Callable[..., FakeGrid], start: dict[str, torch.Tensor]
) -> None:
    grid, records = fake_grid(), []
    final = run_topology(
        CyclicTransfer(seed=0), PeerState.start(start, SITES), grid, rounds=2, on_round=records.append
    )
    assert [site for site, _, _ in grid.calls] == [*SITES, *SITES]
    # each site starts from the model the previous one trained: offsets 1, 2, 3, 4 accumulate
    assert [float(w[0]) for _, _, w in grid.calls] == [0, 1, 3, 6, 10, 11, 13, 16]
    assert [task_round for _, task_round, _ in grid.calls] == list(range(1, 9))
    assert final.holder == "d" and torch.equal(final.models["d"]["w"], torch.full((2,), 20.0))
    hops = [[(t.sender, t.receiver) for t in record.transfers] for record in records]
    assert hops == [[("a", "b"), ("b", "c"), ("c", "d")], [("d", "a"), ("a", "b"), ("b", "c"), ("c", "d")]]


def test_a_random_order_is_a_new_permutation_each_cycle_drawn_from_the_seed() -> None:
    topology = CyclicTransfer(seed=5, order="random")
    orders = [topology.visits(list(SITES), round) for round in range(1, 7)]
    assert all(sorted(order) == list(SITES) for order in orders)
    assert len({tuple(order) for order in orders}) > 1
    assert orders == [CyclicTransfer(seed=5, order="random").visits(list(SITES), r) for r in range(1, 7)]


def test_a_failing_site_is_skipped_and_the_model_travels_on(
    fake_grid: Callable[..., FakeGrid], start: dict[str, torch.Tensor]
) -> None:
    grid, records = fake_grid(failing={"c"}), []
    final = run_topology(
        CyclicTransfer(seed=0), PeerState.start(start, SITES), grid, rounds=1, on_round=records.append
    )
    assert [float(w[0]) for _, _, w in grid.calls] == [0, 1, 3, 3]
    assert torch.equal(final.models["d"]["w"], torch.full((2,), 7.0)) and final.versions["c"] == 0
    assert [(t.sender, t.receiver) for t in records[0].transfers] == [("a", "b"), ("b", "c"), ("b", "d")]
    assert [result.site for result in records[0].results] == ["a", "b", "d"]
