"""Gossip averaging: every site trains, then mixes with its neighbours on the graph."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from peer_fakes import SITES, FakeGrid

from medfed.topology.gossip import Gossip
from medfed.topology.graphs import build_graph
from medfed.topology.peers import PeerRound, PeerState, run_topology


def _one_round(grid: FakeGrid, start: dict[str, torch.Tensor]) -> PeerRound:
    records: list[PeerRound] = []
    run_topology(
        Gossip(graph=build_graph("ring", SITES)),
        PeerState.start(start, SITES),
        grid,
        rounds=1,
        on_round=records.append,
    )
    return records[0]


def test_one_ring_step_is_the_closed_form_mixing(
    fake_grid: Callable[..., FakeGrid], start: dict[str, torch.Tensor]
) -> None:
    record = _one_round(fake_grid(), start)
    trained = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}  # the offsets added by training
    ring = {"a": "db", "b": "ac", "c": "bd", "d": "ca"}
    for site, (left, right) in ring.items():
        expected = (trained[left] + trained[site] + trained[right]) / 3
        assert torch.allclose(record.state.models[site]["w"], torch.full((2,), expected))
    assert len(record.transfers) == 8 and {t.model.site for t in record.transfers} == set(SITES)
    assert [merge.site for merge in record.merges] == list(SITES)
    for merge in record.merges:  # each site's own trained model and its two neighbours'
        left, right = ring[merge.site]
        offsets = [trained[merge.site], trained[left], trained[right]]
        assert [m["w"][0].item() for m in merge.inputs] == sorted(offsets[:1]) + sorted(offsets[1:])
        assert torch.equal(merge.output["w"], record.state.models[merge.site]["w"])


def test_a_failing_site_keeps_its_model_and_the_others_mix_without_it(
    fake_grid: Callable[..., FakeGrid], start: dict[str, torch.Tensor]
) -> None:
    record = _one_round(fake_grid(failing={"b"}), start)
    models = {site: float(record.state.models[site]["w"][0]) for site in SITES}
    # without b the ring is the path a - d - c: Metropolis weights 1/3 on each edge
    assert models["b"] == 0.0
    assert models["a"] == pytest.approx((2 * 1.0 + 4.0) / 3)
    assert models["c"] == pytest.approx((2 * 3.0 + 4.0) / 3)
    assert models["d"] == pytest.approx((1.0 + 3.0 + 4.0) / 3)
    assert all("b" not in (t.sender, t.receiver) for t in record.transfers)
