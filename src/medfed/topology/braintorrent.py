"""BrainTorrent: a serverless federation where a random site pulls its peers' newer models.

Roy, Siddiqui, Pölsterl, Navab and Wachinger, "BrainTorrent: A Peer-to-Peer Environment for
Decentralized Federated Learning", arXiv:1905.06731, 2019.

Every site keeps its model's version (how often it trained) and a version vector: the version of
each peer's model it last merged. In each pull a randomly chosen site asks every peer for its
version, pulls each model newer than the one it last merged, averages them with its own weighted
by samples (its own counts 0 before it trained: the initial model holds no data), records the
versions it merged, and trains.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import replace

from medfed.aggregation import weighted_mean
from medfed.orchestration.grid import Grid
from medfed.seeding import derive_seed
from medfed.topology.peers import Merge, PeerRound, PeerState, Transfer, as_sent, task, train
from medfed.types import TrainResult


def newer_peers(site: str, versions: Mapping[str, int], seen: Mapping[str, int]) -> list[str]:
    """The peers of ``site`` whose model is newer than the one ``site`` last merged, sorted."""
    return sorted(peer for peer, version in versions.items() if peer != site and version > seen.get(peer, 0))


def merged(state: PeerState, site: str, peers: Sequence[str]) -> Merge | None:
    """``site``'s model averaged with ``peers``' models, weighted by their samples (``None``
    without peers: ``site`` starts from its own model)."""
    if not peers:
        return None
    members = [member for member in (site, *peers) if state.samples[member] > 0]
    inputs = tuple(state.models[member] for member in members)
    output = weighted_mean((state.models[member], float(state.samples[member])) for member in members)
    return Merge(site, inputs, output)


class BrainTorrent:
    """BrainTorrent (Roy et al. 2019); see the module docstring.

    Args:
        seed: The simulation seed; which site pulls is drawn from it.
        pulls_per_round: Pulls (each one site merging and training) per round; ``None``: as
            many as there are sites, so a round trains as often as a client-server round.
    """

    name = "braintorrent"

    def __init__(self, *, seed: int, pulls_per_round: int | None = None) -> None:
        if pulls_per_round is not None and pulls_per_round < 1:
            raise ValueError(f"pulls_per_round must be >= 1, got {pulls_per_round}")
        self.seed = seed
        self.pulls_per_round = pulls_per_round

    def run_round(self, state: PeerState, grid: Grid) -> PeerRound:
        round = state.round + 1
        sites = sorted(state.models)
        rng = random.Random(derive_seed(self.seed, self.name, round))
        results: list[TrainResult] = []
        transfers: list[Transfer] = []
        merges: list[Merge] = []
        for _ in range(self.pulls_per_round or len(sites)):
            pulled = self.pull(state, rng.choice(sites), grid)
            state = pulled.state
            results += pulled.results
            transfers += pulled.transfers
            merges += pulled.merges
        return PeerRound(replace(state, round=round), results, transfers, merges)

    def pull(self, state: PeerState, site: str, grid: Grid) -> PeerRound:
        """``site`` pulls its peers' newer models, merges and trains: the record of the pull.
        When it fails to train, the state is as before and no merge is recorded (its merge is
        lost with it), but the pulls were sent."""
        peers = newer_peers(site, state.versions, state.seen[site])
        transfers = [Transfer(peer, site, as_sent(state, peer)) for peer in peers]
        merge = merged(state, site, peers)
        start = state.models[site] if merge is None else merge.output
        result = train(grid, {site: task(state, start)}).get(site)
        state = replace(state, trainings=state.trainings + 1)
        if result is None:
            return PeerRound(state, [], transfers)
        seen = {**state.seen[site], **{peer: state.versions[peer] for peer in peers}}
        state = state.trained(result)
        seen[site] = state.versions[site]
        state = replace(state, seen={**state.seen, site: seen})
        return PeerRound(state, [result], transfers, [] if merge is None else [merge])
