"""Gossip averaging (decentralised SGD): every site trains, then averages with its neighbours.

Lian, Zhang, Zhang, Hsieh, Zhang and Liu, "Can Decentralized Algorithms Outperform Centralized
Algorithms? A Case Study for Decentralized Parallel Stochastic Gradient Descent", NeurIPS 2017.

Each round every site trains its own model, sends it to its neighbours on the communication graph
(``medfed.topology.graphs``) and replaces it by the Metropolis-weighted average of its closed
neighbourhood (``medfed.aggregation.mix``). A site that fails keeps its model and is left out of
that round's graph: the others mix over the sites that answered.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import replace

from medfed.aggregation import metropolis_weights, mix
from medfed.orchestration.grid import Grid
from medfed.topology.graphs import Neighbours
from medfed.topology.peers import Merge, PeerRound, PeerState, Transfer, as_sent, task, train
from medfed.types import TrainResult


class Gossip:
    """Gossip averaging over a fixed graph (Lian et al. 2017); see the module docstring.

    Args:
        graph: Each site's neighbours (``build_graph``).
    """

    name = "gossip"

    def __init__(self, *, graph: Neighbours) -> None:
        self.graph = graph

    def run_round(self, state: PeerState, grid: Grid) -> PeerRound:
        if set(self.graph) != set(state.models):
            raise ValueError(f"the graph's sites {sorted(self.graph)} are not the federation's")
        state, results = local_steps(state, grid, list(state.models))
        state = replace(state, round=state.round + 1)
        mixed = mixing_step(state, live_graph(self.graph, results), list(state.models))
        return PeerRound(mixed.state, list(results.values()), mixed.transfers, mixed.merges)


def local_steps(
    state: PeerState, grid: Grid, sites: Iterable[str]
) -> tuple[PeerState, dict[str, TrainResult]]:
    """``sites`` train from their own models (one training): the state with their new models,
    and their valid results by site."""
    results = train(grid, {site: task(state, state.models[site]) for site in sites})
    state = replace(state, trainings=state.trainings + 1)
    for result in results.values():
        state = state.trained(result)
    return state, results


def live_graph(graph: Neighbours, answered: Collection[str]) -> Neighbours:
    """The graph among the sites that trained this round (``answered``): the others are left out."""
    return {
        site: tuple(peer for peer in graph[site] if peer in answered) for site in graph if site in answered
    }


def mixing_step(state: PeerState, live: Neighbours, sites: Iterable[str]) -> PeerRound:
    """Each of ``sites`` with a neighbour in ``live`` replaces its model by the Metropolis-weighted
    average of its closed neighbourhood in ``live`` (``metropolis_weights``, ``mix``): the state
    with the mixed models, the neighbours' models each received, and the merges."""
    matrix = metropolis_weights(live)
    transfers: list[Transfer] = []
    merges: list[Merge] = []
    for site in sorted(site for site in sites if live.get(site)):
        transfers += [Transfer(peer, site, as_sent(state, peer)) for peer in live[site]]
        output = mix(state.models, {site: matrix[site]})[site]
        merges.append(Merge(site, tuple(state.models[member] for member in (site, *live[site])), output))
    models = {**state.models, **{merge.site: merge.output for merge in merges}}
    return PeerRound(replace(state, models=models), [], transfers, merges)
