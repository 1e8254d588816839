"""Cyclic weight transfer: one model travels from site to site.

Chang, Balachandar, Lam, Yi, Brown, Beers, Rosen, Rubin and Kalpathy-Cramer, "Distributed deep
learning networks among institutions for medical imaging", JAMIA 25(8), 2018.

Each round is one cycle: the travelling model visits every site once, in a fixed order (sorted
site names) or in a random order drawn from the seed for each cycle; each site trains it and
passes it on. A site that fails is skipped: the model travels on unchanged. With the ``fedprox``
strategy each site's local loss carries FedProx's proximal term around the model it received.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Literal

from medfed.orchestration.grid import Grid
from medfed.seeding import derive_seed
from medfed.topology.peers import PeerRound, PeerState, Transfer, as_sent, task, train
from medfed.types import TrainResult

Order = Literal["fixed", "random"]


class CyclicTransfer:
    """Cyclic weight transfer (Chang et al. 2018); see the module docstring.

    Args:
        seed: The simulation seed; a random order is drawn from it.
        order: ``fixed`` (sorted site names every cycle) or ``random`` (a new order each cycle).
    """

    name = "cyclic"

    def __init__(self, *, seed: int, order: Order = "fixed") -> None:
        if order not in ("fixed", "random"):
            raise ValueError(f"order must be 'fixed' or 'random', got {order!r}")
        self.seed = seed
        self.order = order

    def visits(self, sites: list[str], round: int) -> list[str]:
        """The sites in the order the model visits them in cycle ``round``."""
        ordered = sorted(sites)
        if self.order == "random":
            random.Random(derive_seed(self.seed, self.name, round)).shuffle(ordered)
        return ordered

    def schedule(self, sites: list[str], rounds: int) -> list[str]:
        """The site of each step of cycles 1 to ``rounds``: step ``k`` (from 1) is entry ``k - 1``."""
        return [site for round in range(1, rounds + 1) for site in self.visits(sites, round)]

    def run_round(self, state: PeerState, grid: Grid) -> PeerRound:
        round = state.round + 1
        results: list[TrainResult] = []
        transfers: list[Transfer] = []
        for site in self.visits(list(state.models), round):
            visited = visit(state, site, grid)
            state = visited.state
            results += visited.results
            transfers += visited.transfers
        return PeerRound(replace(state, round=round), results, transfers)


def visit(state: PeerState, site: str, grid: Grid) -> PeerRound:
    """``site`` trains the travelling model (its holder's, or its own before any site trained)
    and holds it: the record of the visit. When it fails, the model travels on unchanged."""
    holder = state.holder
    travelling = state.models[site] if holder is None else state.models[holder]
    transfers: list[Transfer] = []
    if holder is not None and holder != site:
        transfers.append(Transfer(holder, site, as_sent(state, holder)))
    result = train(grid, {site: task(state, travelling)}).get(site)
    state = replace(state, trainings=state.trainings + 1)
    if result is None:
        return PeerRound(state, [], transfers)
    return PeerRound(replace(state.trained(result), holder=site), [result], transfers)
