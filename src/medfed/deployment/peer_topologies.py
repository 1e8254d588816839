"""Cyclic weight transfer and gossip averaging over the network (``medfed peer``), one site's
part of each round run with the simulation's own code (``medfed.topology.cyclic.visit``,
``medfed.topology.gossip``) over a grid of this one site; its peers' models are fetched with
``FetchModel`` (``PeerLinks``, checked as BrainTorrent's are).

Cyclic: the model's path is the job's schedule (``CyclicTransfer.schedule``: every peer draws a
random order from the job's seed, so all agree on it), and a model's version is the step that
trained it. At its step ``s`` a site waits for the model of step ``s - 1``, then trains the newest
model it can fetch and serves it as version ``s``. Missing steps are waited for ``wait_s`` each
from the last progress, so a site that is offline past that wait is skipped (the next site takes
the newest earlier model); a site whose turn already passed (a newer model is out, e.g. after a
restart) skips it and catches up at its next step.

Gossip: in round ``r`` a site trains, records and serves its model as version ``r`` (keeping the
one before, for a neighbour one round behind), waits for its peers to reach round ``r`` (those
that answer, up to ``wait_s``), fetches its neighbours' models of round ``r`` (or newer, from a
neighbour ahead of it) and mixes: the Metropolis weights of the graph among the sites that
trained this round, as in simulation. A neighbour that does not answer is left out. The mixed
model is never served as an update: a restarted site serves nothing until it trained again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from medfed.deployment.peer_ledger import PeerChain
from medfed.orchestration.grid import Grid
from medfed.topology.cyclic import CyclicTransfer, visit
from medfed.topology.gossip import Gossip, live_graph, local_steps, mixing_step
from medfed.topology.peers import PeerRound, PeerState, Topology, as_sent
from medfed.transport.payload import encode_result
from medfed.transport.peer import ModelShelf, PublishedModel
from medfed.types import TrainResult, Weights

logger = logging.getLogger(__name__)


class Links(Protocol):
    """This site's connections to its peers (``medfed.deployment.peer.PeerLinks``)."""

    @property
    def channels(self) -> Mapping[str, object]:
        """The peers, by name."""
        ...

    def fetch(
        self, peer: str, reference: Weights, *, newer_than: int, final: bool = False
    ) -> TrainResult | None:
        """``peer``'s checked model if newer than ``newer_than``, else ``None``."""
        ...

    def version(self, peer: str) -> int | None:
        """The version of ``peer``'s model now; ``None`` when it cannot be reached."""
        ...


@dataclass(frozen=True)
class PeerSite:
    """What a networked site's rounds use.

    Attributes:
        name: This site's name.
        links: Its connections to its peers.
        grid: A grid of this one site (its trainer, strategy, privacy).
        shelf: What it serves to its peers.
        chain: Its provenance chain (``None``: none).
        save: Checkpoints its state after a round.
        await_peers: Waits before round ``done + 1`` (``medfed.deployment.peer``'s rule: first
            for every peer to be reachable, later for the peers that answer to reach ``done``).
        wait_s: Longest wait for a missing model (``wait_for_peers_s``).
        poll_s: Pause between attempts while waiting.
    """

    name: str
    links: Links
    grid: Grid
    shelf: ModelShelf
    chain: PeerChain | None
    save: Callable[[PeerState], None]
    await_peers: Callable[[int], None]
    wait_s: float
    poll_s: float

    def record(self, record: PeerRound, round: int) -> None:
        """Appends this site's entries of ``round`` to its chain (``PeerChain.record``)."""
        if self.chain is not None:
            self.chain.record(record, round)

    def publish(self, state: PeerState) -> None:
        """Serves this site's model in ``state`` under its version."""
        publish_model(self.shelf, state, self.name)


def publish_model(shelf: ModelShelf, state: PeerState, me: str, *, final: bool = False) -> TrainResult:
    """Serves ``me``'s model in ``state`` on ``shelf`` under its version (``final``: as its final
    model); returns it as sent."""
    sent = as_sent(state, me)
    shelf.publish(PublishedModel(sent.round, encode_result(sent), final=final))
    return sent


def opening_shelf(topology: Topology, state: PeerState, me: str) -> ModelShelf:
    """What ``me`` serves when it starts: its model (BrainTorrent, cyclic); nothing for gossip,
    whose models between rounds are mixes, not updates (it keeps two trained models later)."""
    if isinstance(topology, Gossip):
        return ModelShelf(keep=2)
    shelf = ModelShelf()
    publish_model(shelf, state, me)
    return shelf


def run_rounds(topology: Topology, state: PeerState, site: PeerSite, *, rounds: int) -> PeerState:
    """Runs ``site``'s part of rounds ``state.round + 1`` to ``rounds`` of a cyclic or gossip
    federation; the state after the last.

    Raises:
        ValueError: ``topology`` is neither.
    """
    if state.round == 0:
        site.await_peers(0)
    if isinstance(topology, CyclicTransfer):
        return _cyclic(topology, state, site, rounds=rounds)
    if isinstance(topology, Gossip):
        return _gossip(topology, state, site, rounds=rounds)
    raise ValueError(f"topology '{topology.name}' is not run by run_rounds")


def my_step(schedule: Sequence[str], me: str, cycle: int) -> int:
    """The step (from 1) at which ``me`` trains in ``cycle`` (each site once per cycle)."""
    sites = len(set(schedule))
    return schedule.index(me, (cycle - 1) * sites, cycle * sites) + 1


def valid_version(schedule: Sequence[str], peer: str, version: int) -> bool:
    """Whether ``peer`` may hold a model of step ``version``: the initial one (0) or a step of its own."""
    return version == 0 or (1 <= version <= len(schedule) and schedule[version - 1] == peer)


def sources(versions: Mapping[str, int], step: int) -> list[str] | None:
    """The sites holding a trained model of a step before ``step``, newest first: where the model
    for ``step`` comes from; ``None`` when a model of ``step`` or later is out (the step passed)."""
    if max(versions.values(), default=0) >= step:
        return None
    return sorted((site for site, version in versions.items() if version > 0), key=lambda s: -versions[s])


def _cyclic(topology: CyclicTransfer, state: PeerState, site: PeerSite, *, rounds: int) -> PeerState:
    schedule = topology.schedule(sorted(state.models), rounds)
    while state.round < rounds:
        cycle = state.round + 1
        step = my_step(schedule, site.name, cycle)
        versions = _await_step(site, state, schedule, step)
        travelling = _travelling(site, state, schedule, versions, step)
        if travelling is None:
            logger.info(
                "cycle %d: the model already passed step %d: this site's turn is skipped", cycle, step
            )
            state = replace(state, round=cycle)
            site.save(state)
            continue
        record = visit(travelling, site.name, site.grid)
        state = replace(record.state, round=cycle)
        if record.results:
            state = replace(state, versions={**state.versions, site.name: step})
            logger.info("cycle %d: step %d trained %s", cycle, step, _described(travelling))
        else:
            logger.warning(
                "cycle %d: training failed at step %d; %s travels on", cycle, step, _described(travelling)
            )
        site.record(record, cycle)
        site.save(state)
        site.publish(state)
    return state


def _described(travelling: PeerState) -> str:
    """The travelling model, for the log."""
    holder = travelling.holder
    return (
        "the initial model"
        if holder is None
        else f"step {travelling.versions[holder]}'s model from '{holder}'"
    )


def _announced(site: PeerSite, schedule: Sequence[str]) -> dict[str, int]:
    """The step of each reachable peer's model (a version that is not one of its steps is refused)."""
    versions = {}
    for peer in sorted(site.links.channels):
        version = site.links.version(peer)
        if version is not None and not valid_version(schedule, peer, version):
            logger.warning("peer '%s' skipped: it announces step %d, not one of its steps", peer, version)
        elif version is not None:
            versions[peer] = version
    return versions


def _await_step(site: PeerSite, state: PeerState, schedule: Sequence[str], step: int) -> dict[str, int]:
    """Every site's model version once a model of step ``step - 1`` (or later) is out, or once no
    step came for ``wait_s`` per step still missing."""
    newest, deadline = -1, 0.0
    while True:
        versions = {site.name: state.versions[site.name], **_announced(site, schedule)}
        latest = max(versions.values())
        if latest >= step - 1:
            return versions
        if latest > newest:
            newest, deadline = latest, time.monotonic() + site.wait_s * (step - 1 - latest)
        if time.monotonic() >= deadline:
            logger.warning(
                "step %d: no model of step %d from '%s' within wait_for_peers_s: taking step %d's",
                step,
                step - 1,
                schedule[step - 2],
                latest,
            )
            return versions
        time.sleep(site.poll_s)


def _travelling(
    site: PeerSite, state: PeerState, schedule: Sequence[str], versions: Mapping[str, int], step: int
) -> PeerState | None:
    """``state`` holding the newest model of a step before ``step`` that this site can fetch (its
    own, or its initial one, when it cannot fetch a newer one); ``None`` when the step passed."""
    holders = sources(versions, step)
    if holders is None:
        return None
    for holder in holders:
        if holder == site.name:
            return replace(state, holder=holder)
        fetched = site.links.fetch(holder, state.models[site.name], newer_than=versions[holder] - 1)
        if fetched is None or not valid_version(schedule, holder, fetched.round):
            continue
        if fetched.round >= step:
            return None
        return replace(
            state,
            models={**state.models, holder: fetched.weights},
            samples={**state.samples, holder: fetched.num_samples},
            versions={**state.versions, holder: fetched.round},
            holder=holder,
        )
    return replace(state, holder=None)


def _gossip(topology: Gossip, state: PeerState, site: PeerSite, *, rounds: int) -> PeerState:
    me = site.name
    while state.round < rounds:
        round = state.round + 1
        trained, results = local_steps(state, site.grid, [me])
        if results:
            trained = replace(trained, versions={**trained.versions, me: round})
            site.record(PeerRound(trained, list(results.values()), []), round)
            site.publish(trained)
        site.await_peers(round)
        view, answered = _gathered(site, trained, topology.graph[me], round)
        mixed = mixing_step(view, live_graph(topology.graph, answered | set(results)), [me])
        site.record(PeerRound(mixed.state, [], [], mixed.merges), round)
        state = replace(mixed.state, round=round)
        site.save(state)
        if not results:
            logger.warning("round %d: training failed; this site keeps its model", round)
        else:
            mixed_with = {transfer.sender: transfer.model.round for transfer in mixed.transfers}
            logger.info("round %d: trained, mixed with %s", round, mixed_with)
    return state


def _gathered(
    site: PeerSite, state: PeerState, neighbours: Sequence[str], round: int
) -> tuple[PeerState, set[str]]:
    """``state`` with the neighbours' models of ``round`` (or newer) that could be fetched, and
    the peers that trained ``round``: those neighbours, and the other peers whose version says so
    (their degree sets the Metropolis weights)."""
    models, samples, versions = dict(state.models), dict(state.samples), dict(state.versions)
    answered = set()
    for peer in sorted(site.links.channels):
        if peer in neighbours:
            fetched = site.links.fetch(peer, state.models[site.name], newer_than=round - 1)
            if fetched is not None:
                models[peer], samples[peer], versions[peer] = (
                    fetched.weights,
                    fetched.num_samples,
                    fetched.round,
                )
                answered.add(peer)
        elif (site.links.version(peer) or 0) >= round:
            answered.add(peer)
    return replace(state, models=models, samples=samples, versions=versions), answered
