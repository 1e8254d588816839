"""Cyclic weight transfer and gossip averaging as ``medfed peer`` runs them, without processes:
sites in threads, each serving a ``ModelShelf`` that the others read through in-memory links. With
every site online they end with the simulation's models bit for bit; an offline site is skipped
as the simulation skips a site that fails."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection
from dataclasses import replace

import pytest
import torch
from topology.peer_fakes import FakeGrid

from medfed.deployment.peer import _await_peers
from medfed.deployment.peer_topologies import (
    PeerSite,
    my_step,
    opening_shelf,
    run_rounds,
    sources,
    valid_version,
)
from medfed.topology.cyclic import CyclicTransfer
from medfed.topology.gossip import Gossip
from medfed.topology.graphs import build_graph
from medfed.topology.peers import PeerState, Topology, run_topology
from medfed.transport.payload import decode_result, encode_result
from medfed.transport.peer import NONCE_BYTES, ModelRequest, ModelShelf, PublishedModel
from medfed.types import TrainResult, Weights

OFFSETS = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
SAMPLES = {"a": 10, "b": 20, "c": 30, "d": 40}
START = {"w": torch.zeros(2)}


class ShelfLinks:
    """A site's links to its peers' shelves in this process; ``offline`` peers never answer."""

    def __init__(self, me: str, shelves: dict[str, ModelShelf], offline: Collection[str]) -> None:
        self.me, self.offline = me, set(offline)
        self.channels = {peer: shelf for peer, shelf in shelves.items() if peer != me}
        self.unreachable: set[str] = set()

    def fetch(
        self, peer: str, reference: Weights, *, newer_than: int, final: bool = False
    ) -> TrainResult | None:
        if peer in self.offline:
            return None
        model, send = self.channels[peer].answer(
            self.me, ModelRequest(os.urandom(NONCE_BYTES), newer_than, final)
        )
        return decode_result(model.payload, site=peer) if send and model is not None else None

    def version(self, peer: str) -> int | None:
        if peer in self.offline:
            self.unreachable.add(peer)
            return None
        model, _ = self.channels[peer].answer(self.me, ModelRequest(os.urandom(NONCE_BYTES), 10**9))
        return 0 if model is None else model.version


def _network(
    topology: Topology, sites: list[str], *, rounds: int, offline: Collection[str] = (), wait_s: float = 30
) -> tuple[dict[str, PeerState], dict[str, list[int]]]:
    """Every site that is not ``offline`` running ``run_rounds`` in its own thread: each one's
    final state and the rounds it checkpointed."""
    start = PeerState.start(START, sites)
    shelves = {site: opening_shelf(topology, start, site) for site in sites}
    finals: dict[str, PeerState] = {}
    saved: dict[str, list[int]] = {site: [] for site in sites}

    def run(me: str) -> None:
        links = ShelfLinks(me, shelves, offline)
        site = PeerSite(
            name=me,
            links=links,
            grid=FakeGrid({me: OFFSETS[me]}, {me: SAMPLES[me]}, set()),
            shelf=shelves[me],
            chain=None,
            save=lambda state: saved[me].append(state.round),
            await_peers=lambda done: _await_peers(links, done, wait_s, 0.01),  # type: ignore[arg-type]
            wait_s=wait_s,
            poll_s=0.01,
        )
        finals[me] = run_rounds(topology, start, site, rounds=rounds)

    threads = [threading.Thread(target=run, args=(site,)) for site in sites if site not in offline]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return finals, saved


def _simulated(topology: Topology, sites: list[str], *, rounds: int, failing: set[str]) -> PeerState:
    grid = FakeGrid({site: OFFSETS[site] for site in sites}, {site: SAMPLES[site] for site in sites}, failing)
    return run_topology(topology, PeerState.start(START, sites), grid, rounds=rounds)


@pytest.mark.parametrize("order", ["fixed", "random"])
def test_cyclic_over_the_network_passes_the_models_the_simulation_passes(order: str) -> None:
    topology = CyclicTransfer(seed=3, order=order)  # type: ignore[arg-type]
    finals, saved = _network(topology, ["a", "b", "c"], rounds=3)
    simulated = _simulated(topology, ["a", "b", "c"], rounds=3, failing=set())
    for site, state in finals.items():
        assert torch.equal(state.models[site]["w"], simulated.models[site]["w"]), site
        assert saved[site] == [1, 2, 3]
    assert float(simulated.models[simulated.holder or ""]["w"][0]) == 3 * (1 + 3 + 2)


def test_cyclic_skips_a_site_that_stays_offline_as_the_simulation_skips_one_that_fails() -> None:
    topology = CyclicTransfer(seed=0)
    finals, _ = _network(topology, ["a", "b", "c"], rounds=2, offline={"b"}, wait_s=1.0)
    simulated = _simulated(topology, ["a", "b", "c"], rounds=2, failing={"b"})
    assert [float(finals[site].models[site]["w"][0]) for site in ("a", "c")] == [5.0, 8.0]
    for site in ("a", "c"):
        assert torch.equal(finals[site].models[site]["w"], simulated.models[site]["w"])
        assert finals[site].versions[site] == my_step(topology.schedule(["a", "b", "c"], 2), site, 2)


def test_gossip_over_the_network_mixes_as_the_simulation_mixes() -> None:
    sites = ["a", "b", "c"]
    topology = Gossip(graph=build_graph("ring", sites))
    finals, saved = _network(topology, sites, rounds=2)
    simulated = _simulated(topology, sites, rounds=2, failing=set())
    for site in sites:
        assert torch.equal(finals[site].models[site]["w"], simulated.models[site]["w"]), site
        assert finals[site].versions[site] == 2 and saved[site] == [1, 2]


def test_gossip_leaves_out_an_offline_neighbour_with_the_simulation_s_weights() -> None:
    """On the ring a-b-c-d, without b, a and c each mix with d only; d's degree (2) sets their
    weights, which a and c learn from the versions of their peers (c is not a's neighbour)."""
    sites = ["a", "b", "c", "d"]
    topology = Gossip(graph=build_graph("ring", sites))
    finals, _ = _network(topology, sites, rounds=1, offline={"b"}, wait_s=1.0)
    simulated = _simulated(topology, sites, rounds=1, failing={"b"})
    assert float(finals["a"].models["a"]["w"][0]) == pytest.approx((2 * 1.0 + 4.0) / 3)
    for site in ("a", "c", "d"):
        assert torch.equal(finals[site].models[site]["w"], simulated.models[site]["w"]), site


def test_a_cyclic_site_s_step_and_the_versions_a_peer_may_announce() -> None:
    schedule = ["b", "a", "c", "c", "b", "a"]  # cycle 1: b a c; cycle 2: c b a
    assert [my_step(schedule, "a", cycle) for cycle in (1, 2)] == [2, 6]
    assert [my_step(schedule, "c", cycle) for cycle in (1, 2)] == [3, 4]
    assert valid_version(schedule, "c", 0) and valid_version(schedule, "c", 4)
    assert not valid_version(schedule, "c", 5)  # b's step: c cannot hold its model
    assert not valid_version(schedule, "c", 7) and not valid_version(schedule, "c", -1)


def test_the_model_for_a_step_is_the_newest_one_before_it_or_none_when_the_step_passed() -> None:
    assert sources({"a": 0, "b": 0, "c": 0}, 1) == []
    assert sources({"a": 4, "b": 2, "c": 0}, 6) == ["a", "b"]
    assert sources({"a": 4, "b": 6, "c": 0}, 6) is None


def _shelf(site: str, version: int, value: float) -> ModelShelf:
    shelf = ModelShelf()
    weights = {"w": torch.full((2,), value)}
    shelf.publish(PublishedModel(version, encode_result(TrainResult(site, version, weights, SAMPLES[site]))))
    return shelf


def _site_b(shelves: dict[str, ModelShelf], *, save: Callable[[PeerState], None]) -> PeerSite:
    """Site b over in-memory links to the ``shelves`` (peers that answer at once)."""
    return PeerSite(
        name="b",
        links=ShelfLinks("b", shelves, ()),
        grid=FakeGrid({"b": OFFSETS["b"]}, {"b": SAMPLES["b"]}, set()),
        shelf=shelves["b"],
        chain=None,
        save=save,
        await_peers=lambda done: None,
        wait_s=30,
        poll_s=0.01,
    )


def test_a_cyclic_site_whose_turn_passed_skips_it_and_ignores_a_peer_announcing_another_s_step() -> None:
    """b comes back after a trained step 4 (fixed order a b c: b's steps are 2 and 5). It skips
    step 2 and trains a's model at step 5; c announces step 5, b's own, and is ignored (else b
    would believe its step 5 passed too)."""
    shelves = {"a": _shelf("a", 4, 7.0), "b": ModelShelf(), "c": _shelf("c", 5, 100.0)}
    saved: list[int] = []
    site = _site_b(shelves, save=lambda state: saved.append(state.round))
    final = run_rounds(CyclicTransfer(seed=0), PeerState.start(START, ["a", "b", "c"]), site, rounds=2)
    assert saved == [1, 2] and final.versions["b"] == 5 and final.holder == "b"
    assert torch.equal(final.models["b"]["w"], torch.full((2,), 7.0 + OFFSETS["b"]))
    assert shelves["b"].answer("a", ModelRequest(os.urandom(NONCE_BYTES), newer_than=4))[0].version == 5  # type: ignore[union-attr]


def test_a_restarted_gossip_site_mixes_with_its_neighbours_rounds_and_serves_only_its_updates() -> None:
    """b resumes after round 1 (its model 1.0) while a and c serve their models of rounds 2 and 3:
    it trains (+2) and mixes with both in each round (a ring of three: weights 1/3)."""
    topology = Gossip(graph=build_graph("ring", ["a", "b", "c"]))
    start = PeerState.start(START, ["a", "b", "c"])
    models, versions = {**start.models, "b": {"w": torch.ones(2)}}, {**start.versions, "b": 1}
    resumed = replace(start, round=1, models=models, versions=versions)
    shelves = {"a": ModelShelf(keep=2), "b": opening_shelf(topology, resumed, "b"), "c": ModelShelf(keep=2)}
    assert shelves["b"].answer("a", ModelRequest(os.urandom(NONCE_BYTES), newer_than=0)) == (None, False)
    for peer, values in {"a": (10.0, 20.0), "c": (30.0, 40.0)}.items():
        for version, value in zip((2, 3), values, strict=True):
            result = TrainResult(peer, version, {"w": torch.full((2,), value)}, SAMPLES[peer])
            shelves[peer].publish(PublishedModel(version, encode_result(result)))
    site = _site_b(shelves, save=lambda state: None)
    final = run_rounds(topology, resumed, site, rounds=3)
    # round 2: (1 + 2 + 10 + 30) / 3 = 43 / 3; round 3: (43 / 3 + 2 + 20 + 40) / 3 = 229 / 9
    assert final.round == 3 and float(final.models["b"]["w"][0]) == pytest.approx(229 / 9)
    model, sent = shelves["b"].answer("a", ModelRequest(os.urandom(NONCE_BYTES), newer_than=1))
    assert sent and model is not None and model.version == 2
    assert float(decode_result(model.payload, site="b").weights["w"][0]) == 3.0  # its update, not a mix
