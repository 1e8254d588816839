"""BrainTorrent: a site merges only peers' models newer than those it last merged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from peer_fakes import SITES, FakeGrid

from medfed.topology.braintorrent import BrainTorrent, newer_peers
from medfed.topology.peers import PeerState, run_topology


def test_newer_peers_are_those_past_the_version_vector() -> None:
    versions = {"a": 2, "b": 1, "c": 0, "d": 3}
    assert newer_peers("a", versions, {"a": 2, "b": 1, "c": 0, "d": 1}) == ["d"]
    assert newer_peers("c", versions, {"a": 0, "b": 0, "c": 0, "d": 0}) == ["a", "b", "d"]


def test_a_pull_merges_only_newer_models_weighted_by_samples(
    fake_grid: Callable[..., FakeGrid], start: dict[str, torch.Tensor]
) -> None:
    state = PeerState.start(start, SITES)
    state = replace(
        state,
        models={
            "a": {"w": torch.full((2,), 1.0)},
            "b": {"w": torch.full((2,), 5.0)},
            **{s: start for s in "cd"},
        },
        samples={"a": 10, "b": 30, "c": 0, "d": 40},
        versions={"a": 2, "b": 1, "c": 0, "d": 3},
        seen={**state.seen, "a": {"a": 2, "b": 0, "c": 0, "d": 3}},
    )
    grid = fake_grid()
    pulled = BrainTorrent(seed=0).pull(state, "a", grid)
    after, [result], transfers = pulled.state, pulled.results, pulled.transfers
    ((site, _, sent),) = grid.calls
    assert site == "a" and torch.allclose(sent, torch.full((2,), (10 * 1.0 + 30 * 5.0) / 40))
    assert [(t.sender, t.receiver) for t in transfers] == [("b", "a")]
    assert after.seen["a"] == {"a": 3, "b": 1, "c": 0, "d": 3}
    assert after.versions["a"] == 3 and after.samples["a"] == 10
    assert torch.equal(after.models["a"]["w"], result.weights["w"])
    [merge] = pulled.merges  # a's own model and b's, the models it averaged, and what came out
    assert merge.site == "a" and [m["w"][0].item() for m in merge.inputs] == [1.0, 5.0]
    assert torch.equal(merge.output["w"], sent)


def test_a_site_that_never_trained_merges_only_its_peers_models(
    fake_grid: Callable[..., FakeGrid], start: dict[str, torch.Tensor]
) -> None:
    state = PeerState.start(start, SITES)
    trained = {"w": torch.full((2,), 3.0)}
    state = replace(
        state,
        models={**state.models, "b": trained},
        samples={**state.samples, "b": 7},
        versions={**state.versions, "b": 1},
    )
    [merge] = BrainTorrent(seed=0).pull(state, "a", fake_grid()).merges
    assert merge.inputs == (trained,) and torch.equal(merge.output["w"], trained["w"])


def test_the_first_pull_trains_the_initial_model(
    fake_grid: Callable[..., FakeGrid], start: dict[str, torch.Tensor]
) -> None:
    grid = fake_grid()
    run_topology(BrainTorrent(seed=3, pulls_per_round=1), PeerState.start(start, SITES), grid, rounds=1)
    assert torch.equal(grid.calls[0][2], start["w"])


def test_the_same_seed_gives_the_same_pulls(
    fake_grid: Callable[..., FakeGrid], start: dict[str, torch.Tensor]
) -> None:
    def run(seed: int) -> tuple[list[str], PeerState]:
        grid = fake_grid()
        final = run_topology(BrainTorrent(seed=seed), PeerState.start(start, SITES), grid, rounds=3)
        return [site for site, _, _ in grid.calls], final

    (order, final), (again, final_again) = run(7), run(7)
    assert order == again and final.versions == final_again.versions
    assert all(torch.equal(final.models[s]["w"], final_again.models[s]["w"]) for s in SITES)
    assert any(run(seed)[0] != order for seed in range(8, 12))
    assert sum(final.versions.values()) == 3 * len(SITES)


def test_a_failing_site_is_skipped_and_never_pulled(
    fake_grid: Callable[..., FakeGrid], start: dict[str, torch.Tensor]
) -> None:
    grid = fake_grid(failing={"b"})
    final = run_topology(BrainTorrent(seed=1), PeerState.start(start, SITES), grid, rounds=4)
    assert "b" in [site for site, _, _ in grid.calls]
    assert final.versions["b"] == 0 and torch.equal(final.models["b"]["w"], start["w"])
    assert all(final.seen[site]["b"] == 0 for site in SITES)
    assert sum(final.versions.values()) > 0
