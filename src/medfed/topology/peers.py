"""What every peer-to-peer topology shares: the federation's explicit state, one round's record,
the interface, the loop over rounds and how a training is sent to sites over a ``Grid``.

A topology decides who trains, from which model, and whose model travels to whom; the sites
train as in client-server (same ``LocalSite``, strategy site half, trainer and privacy). In a
simulation the topology hands each training site the model it would have assembled from its
peers; the peer-to-peer traffic this stands for is listed as ``Transfer`` records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import torch

from medfed.errors import CheckpointError, UpdateRejected
from medfed.orchestration.grid import Grid
from medfed.orchestration.validation import validate_result
from medfed.types import ServerState, SiteState, TrainResult, TrainTask, Weights

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeerState:
    """A serverless federation between rounds; resuming is loading this.

    Attributes:
        round: Completed rounds.
        trainings: Local trainings run so far; each task carries its number as ``round``.
        models: Each site's current model (the initial model before it trained or merged).
        samples: Each site's weight in sample-weighted averages, from its last result (0
            before it trained).
        versions: How many times each site trained: the version of its model.
        seen: BrainTorrent's version vectors: per site, the version of each peer's model it
            last merged.
        holder: Cyclic weight transfer: the site that trained the travelling model last.
    """

    round: int
    trainings: int
    models: Mapping[str, Weights]
    samples: Mapping[str, int]
    versions: Mapping[str, int]
    seen: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    holder: str | None = None

    @classmethod
    def start(cls, weights: Weights, sites: Sequence[str]) -> PeerState:
        """Every site holding ``weights`` (the shared initial model), nothing trained."""
        if len(set(sites)) != len(sites) or not sites:
            raise ValueError(f"a federation needs distinct sites, got {list(sites)}")
        return cls(
            round=0,
            trainings=0,
            models={site: weights for site in sites},
            samples={site: 0 for site in sites},
            versions={site: 0 for site in sites},
            seen={site: {peer: 0 for peer in sites} for site in sites},
        )

    def trained(self, result: TrainResult) -> PeerState:
        """This state with ``result`` as its site's new model (one version newer)."""
        site = result.site
        return replace(
            self,
            models={**self.models, site: result.weights},
            samples={**self.samples, site: result.num_samples},
            versions={**self.versions, site: self.versions[site] + 1},
        )


PEER_GROUP = "peer"
"""The ``extra`` group of a checkpoint's site and server states that holds a ``PeerState``."""


def saved_states(state: PeerState, shared: Weights) -> tuple[ServerState, dict[str, SiteState]]:
    """``state`` as a checkpoint's server state (``shared``, the consensus, and the trainings
    count) and one state per site (its model, sample count, version, version vector in sorted
    site order, and whether it holds the travelling model)."""
    sites = sorted(state.models)
    server = ServerState(state.round, shared, {PEER_GROUP: {"trainings": torch.tensor([state.trainings])}})
    return server, {
        site: SiteState(
            weights=state.models[site],
            extra={
                PEER_GROUP: {
                    "samples": torch.tensor([state.samples[site]]),
                    "version": torch.tensor([state.versions[site]]),
                    "seen": torch.tensor([state.seen[site][peer] for peer in sites]),
                    "holder": torch.tensor([int(state.holder == site)]),
                }
            },
        )
        for site in sites
    }


def restored_state(server: ServerState, sites: Mapping[str, SiteState]) -> PeerState:
    """The ``PeerState`` that ``saved_states`` wrote.

    Raises:
        CheckpointError: The states are not those of a peer-to-peer run.
    """
    names = sorted(sites)
    try:
        groups = {site: sites[site].extra[PEER_GROUP] for site in names}
        seen = {site: dict(zip(names, groups[site]["seen"].tolist(), strict=True)) for site in names}
        holders = [site for site in names if int(groups[site]["holder"][0])]
        return PeerState(
            round=server.round,
            trainings=int(server.extra[PEER_GROUP]["trainings"][0]),
            models={site: sites[site].weights for site in names},
            samples={site: int(groups[site]["samples"][0]) for site in names},
            versions={site: int(groups[site]["version"][0]) for site in names},
            seen=seen,
            holder=holders[0] if holders else None,
        )
    except (KeyError, IndexError, ValueError) as error:
        raise CheckpointError(f"not the checkpoint of a peer-to-peer run: {error}") from None


@dataclass(frozen=True)
class Transfer:
    """A model sent from one site to another (in a deployment: a safetensors payload).

    Attributes:
        sender: The site whose model travels.
        receiver: The site that receives it.
        model: The model as its sender sends it.
    """

    sender: str
    receiver: str
    model: TrainResult


@dataclass(frozen=True)
class Merge:
    """A site's average of the models it holds and received from peers.

    Attributes:
        site: The site that merged.
        inputs: The models it averaged with a positive weight (a model that weighs nothing,
            e.g. the initial model of a site that never trained, is not among them).
        output: The merged model.
    """

    site: str
    inputs: tuple[Weights, ...]
    output: Weights


@dataclass(frozen=True)
class PeerRound:
    """The record of one round (or of one BrainTorrent pull): the new state, the trainings'
    results, the traffic and the merges, each in the order they happened."""

    state: PeerState
    results: list[TrainResult]
    transfers: list[Transfer]
    merges: list[Merge] = field(default_factory=list)


class Topology(Protocol):
    """A peer-to-peer scheme: runs one round from an explicit state over a ``Grid``."""

    name: str

    def run_round(self, state: PeerState, grid: Grid) -> PeerRound:
        """Round ``state.round + 1``; a site that fails or answers invalidly is skipped."""
        ...


def run_topology(
    topology: Topology,
    state: PeerState,
    grid: Grid,
    *,
    rounds: int,
    on_round: Callable[[PeerRound], None] | None = None,
) -> PeerState:
    """Runs rounds ``state.round + 1`` to ``rounds``; ``on_round`` sees each round's record."""
    while state.round < rounds:
        record = topology.run_round(state, grid)
        state = record.state
        if on_round is not None:
            on_round(record)
    return state


def train(grid: Grid, tasks: Mapping[str, TrainTask]) -> dict[str, TrainResult]:
    """Each site's valid answer to its task, by site. A site that does not answer (offline,
    declined, out of privacy budget) is absent; an answer that is not a valid update of the
    model it was sent (``validate_result``: shapes, finite values, bounds, no extras) is logged
    and left out, as is a second answer or one from a site that was sent no task."""
    accepted: dict[str, TrainResult] = {}
    for result in grid.train(tasks):
        task = tasks.get(result.site)
        try:
            if task is None or result.site in accepted:
                raise UpdateRejected(result.site, "answer to no task, or a second answer")
            validate_result(result, task.weights, round=task.round, extras={})
        except UpdateRejected as rejection:
            logger.warning("%s", rejection)
            continue
        accepted[result.site] = result
    return accepted


def task(state: PeerState, weights: Weights) -> TrainTask:
    """The next training, from ``weights``."""
    return TrainTask(round=state.trainings + 1, weights=weights)


def as_sent(state: PeerState, site: str) -> TrainResult:
    """``site``'s current model as it travels to a peer."""
    return TrainResult(
        site=site,
        round=state.versions[site],
        weights=state.models[site],
        num_samples=max(state.samples[site], 1),
    )
