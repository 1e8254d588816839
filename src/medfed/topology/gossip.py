"""Gossip averaging (decentralised SGD): every site trains, then averages with its neighbours.

Lian, Zhang, Zhang, Hsieh, Zhang and Liu, "Can Decentralized Algorithms Outperform Centralized
Algorithms? A Case Study for Decentralized Parallel Stochastic Gradient Descent", NeurIPS 2017.

Each round every site trains its own model, sends it to its neighbours on the communication graph
(``medfed.topology.graphs``) and replaces it by the Metropolis-weighted average of its closed
neighbourhood (``medfed.aggregation.mix``). A site that fails keeps its model and is left out of
that round's graph: the others mix over the sites that answered.
"""

from __future__ import annotations

from dataclasses import replace

from medfed.aggregation import metropolis_weights, mix
from medfed.orchestration.grid import Grid
from medfed.topology.graphs import Neighbours
from medfed.topology.peers import Merge, PeerRound, PeerState, Transfer, as_sent, task, train


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
        tasks = {site: task(state, model) for site, model in state.models.items()}
        results = train(grid, tasks)
        state = replace(state, trainings=state.trainings + 1, round=state.round + 1)
        for result in results.values():
            state = state.trained(result)
        live = {site: tuple(p for p in self.graph[site] if p in results) for site in results}
        transfers = [Transfer(site, peer, as_sent(state, site)) for site in live for peer in live[site]]
        mixed = mix(state.models, metropolis_weights(live)) if live else {}
        merges = [
            Merge(site, tuple(state.models[member] for member in (site, *peers)), mixed[site])
            for site, peers in sorted(live.items())
            if peers
        ]
        models = {**state.models, **mixed}
        return PeerRound(replace(state, models=models), list(results.values()), transfers, merges)
