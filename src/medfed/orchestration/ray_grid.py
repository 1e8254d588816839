"""``RayGrid``: the round loop's ``Grid`` for simulated sites run as Ray actors.

Each actor (a ``SiteHost``) holds the resources of one site (``RayPlacement``) and hosts a fixed
group of sites for a whole experiment, dealt in name order, so a site's private state stays in
one process across rounds. Inside, the actor runs an ``InMemoryGrid`` over its sites: training,
the site half of secure aggregation and CKKS, and what counts as a drop-out are those of the
in-memory engine by construction. There are as many actors as the cluster holds (at most one
per site, at most ``max_actors``); an actor trains its sites one after another.

Tasks, results and site states cross between driver and actors as safetensors bytes
(``medfed.transport.payload``); the site recipe, the sites' case lists and the protocol messages
are pickled by Ray, inside one simulation started by one user, never between parties.

Torch in an actor uses as many threads as the site's whole CPUs; the results equal the in-memory
engine's bit for bit when the driver uses as many (``torch.set_num_threads``): another thread
count sums in another order. A site whose actor died (e.g. its node was lost) has dropped out;
any other error of a site propagates, as in memory.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import ray
import torch
from ray.exceptions import RayActorError, RayTaskError

from medfed.data import SiteData
from medfed.errors import ConfigError, MedfedError
from medfed.orchestration.grid import Absence, AbsenceLog, InMemoryGrid, Reply, Tamper, checked_answer
from medfed.transport.payload import (
    decode_result,
    decode_site_state,
    decode_task,
    encode_result,
    encode_site_state,
    encode_task,
)
from medfed.types import SiteState, TrainResult, TrainTask

logger = logging.getLogger(__name__)


class GridRecipe(Protocol):
    """Builds, inside an actor, the ``InMemoryGrid`` of the sites it hosts; must pickle."""

    def grid(self, sites: Mapping[str, SiteData], states: Mapping[str, SiteState]) -> InMemoryGrid:
        """The grid of ``sites`` (their data), resuming from ``states`` where given."""
        ...


@dataclass(frozen=True)
class RayPlacement:
    """Where site actors run and with what.

    Attributes:
        address: The Ray cluster to join (``"auto"``, ``"ray://head:10001"``); ``None`` starts a
            local Ray unless one is running in this process.
        cpus_per_site: CPUs of each actor (torch threads: the whole CPUs, at least 1).
        gpus_per_site: GPUs of each actor.
        max_actors: Most actors; ``None``: as many as the cluster's resources hold.
    """

    address: str | None = None
    cpus_per_site: float = 1.0
    gpus_per_site: float = 0.0
    max_actors: int | None = None


class SiteHost:
    """The sites of one Ray actor: an ``InMemoryGrid`` fed with encoded tasks.

    Args:
        recipe: Builds the grid of the hosted sites.
        sites: The data of each hosted site.
        states: Encoded private state of hosted sites resuming from a checkpoint.
        threads: Torch threads of this actor.
    """

    def __init__(
        self, recipe: GridRecipe, sites: Mapping[str, SiteData], states: Mapping[str, bytes], threads: int
    ) -> None:
        torch.set_num_threads(threads)
        self.grid = recipe.grid(sites, {name: decode_site_state(data) for name, data in states.items()})
        self.tasks: dict[str, TrainTask] = {}
        self.results: dict[str, TrainResult] = {}

    def train(self, names: list[str], task: bytes) -> dict[str, bytes]:
        """Trains each of ``names`` on ``task``; the encoded results of the sites that answered.
        In protected rounds each site's task and result are kept for ``open_protocols``."""
        decoded = decode_task(task)
        results = self.grid.train(dict.fromkeys(names, decoded))
        if self.grid.open_protocol is not None:
            self.tasks.update(dict.fromkeys(names, decoded))
            self.results.update({result.site: result for result in results})
        return {result.site: encode_result(result) for result in results}

    def open_protocols(
        self, names: list[str], invitations: Mapping[str, object], replaced: Mapping[str, bytes], kind: type
    ) -> dict[str, object]:
        """Each of ``names`` opens its half of the protected round with the result it trained
        (or its ``replaced`` one: a tampered update); the uploads, by site."""
        results = [
            decode_result(replaced[name], site=name) if name in replaced else self.results[name]
            for name in names
        ]
        tasks = {name: self.tasks[name] for name in names}
        self.tasks, self.results = {}, {}
        return self.grid.open_protocols(tasks, invitations, results, Reply(kind))

    def step(self, round: int, step: str, messages: Mapping[str, object], kind: type) -> dict[str, object]:
        """The hosted sites' replies to protocol ``step`` (see ``InMemoryGrid.step``)."""
        return self.grid.step(round, step, messages, Reply(kind))

    def states(self) -> dict[str, bytes]:
        """Each hosted site's private state, encoded."""
        return {name: encode_site_state(state) for name, state in self.grid.site_states().items()}


class RayGrid:
    """Simulated sites as Ray actors (see the module docstring); ``close()`` ends the actors.

    Args:
        recipe: Builds each actor's grid (pickled to every actor).
        sites: The training data of each site.
        states: Private state of sites resuming from a checkpoint.
        placement: Where the actors run and with what resources.
        on_site_done: Called with each site's name after its actor answered for it.
        tamper: Replaces some sites' results, as ``InMemoryGrid``'s (applied here, to all of a
            round's results at once; a protected round sends replaced results back to their
            actors before the sites upload).
        absences: Where the sites that drop out are marked (``None``: a log of its own): declined
            (left out by its live actor), no answer (its actor died), or a refused protocol reply.

    Raises:
        ConfigError: The cluster cannot hold one actor.
    """

    def __init__(
        self,
        recipe: GridRecipe,
        sites: Mapping[str, SiteData],
        states: Mapping[str, SiteState],
        *,
        placement: RayPlacement,
        on_site_done: Callable[[str], None] | None = None,
        tamper: Tamper | None = None,
        absences: AbsenceLog | None = None,
    ) -> None:
        connect(placement.address)
        names = sorted(sites)
        count = actor_count(placement, ray.cluster_resources(), len(names))
        host = ray.remote(SiteHost).options(
            num_cpus=placement.cpus_per_site, num_gpus=placement.gpus_per_site
        )
        shared, threads = ray.put(recipe), max(1, int(placement.cpus_per_site))
        self.hosts: list[Any] = []
        self.host_of: dict[str, int] = {}
        for index in range(count):
            group = names[index::count]
            encoded = {name: encode_site_state(states[name]) for name in group if name in states}
            self.hosts.append(host.remote(shared, {name: sites[name] for name in group}, encoded, threads))
            self.host_of.update(dict.fromkeys(group, index))
        self.on_site_done, self.tamper = on_site_done, tamper
        self.absences = AbsenceLog() if absences is None else absences

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        results = self._train(tasks)
        return results if self.tamper is None else self.tamper(tasks, results)

    def train_protected(
        self, tasks: Mapping[str, TrainTask], invitations: Mapping[str, object], reply: Reply
    ) -> dict[str, object]:
        if not tasks:
            return {}
        trained = self._train(tasks)
        results = trained if self.tamper is None else self.tamper(tasks, trained)
        own = {id(result) for result in trained}
        replaced = {result.site: encode_result(result) for result in results if id(result) not in own}
        calls = {
            self.hosts[host].open_protocols.remote(
                names,
                {name: invitations[name] for name in names if name in invitations},
                {name: replaced[name] for name in names if name in replaced},
                reply.kind,
            ): names
            for host, names in self._by_host(result.site for result in results).items()
        }
        round = next(iter(tasks.values())).round
        return self._gathered(round, calls, reply, [result.site for result in results])

    def step(self, round: int, step: str, messages: Mapping[str, object], reply: Reply) -> dict[str, object]:
        calls = {
            self.hosts[host].step.remote(
                round, step, {name: messages[name] for name in names}, reply.kind
            ): names
            for host, names in self._by_host(messages).items()
        }
        return self._gathered(round, calls, reply, list(messages))

    def site_states(self) -> dict[str, SiteState]:
        """Each site's private state (``Strategy.private_state``), fetched from its actor; none
        for the sites of an actor that died."""
        encoded: dict[str, bytes] = {}
        for host, names in self._by_host(self.host_of).items():
            encoded.update(_answers(self.hosts[host].states.remote(), names, "site states") or {})
        return {name: decode_site_state(encoded[name]) for name in sorted(encoded)}

    def close(self) -> None:
        """Ends the actors (their sites' state is lost: fetch it first)."""
        for host in self.hosts:
            ray.kill(host)
        self.hosts, self.host_of = [], {}

    def _train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        """Sends each task to its site's actor (one encoding per distinct task) and gathers the
        results in the order of ``tasks``."""
        encoded: dict[int, Any] = {}
        groups: dict[tuple[int, int], list[str]] = {}
        for name, task in tasks.items():
            if id(task) not in encoded:
                encoded[id(task)] = ray.put(encode_task(task))
            groups.setdefault((self.host_of[name], id(task)), []).append(name)
        calls = {
            self.hosts[host].train.remote(names, encoded[task]): names
            for (host, task), names in groups.items()
        }
        arrived: dict[str, TrainResult] = {}
        for call, names in calls.items():
            round = tasks[names[0]].round
            answers = _answers(call, names, f"round {round}")
            # a live actor leaves out the sites that declined (out of privacy budget)
            why = Absence.NO_ANSWER if answers is None else Absence.DECLINED
            for name in names:
                if answers is not None and name in answers:
                    arrived[name] = decode_result(answers[name], site=name)
                else:
                    self.absences.mark(round, name, why)
                if self.on_site_done is not None:
                    self.on_site_done(name)
        return [arrived[name] for name in tasks if name in arrived]

    def _gathered(
        self, round: int, calls: Mapping[Any, list[str]], reply: Reply, order: list[str]
    ) -> dict[str, object]:
        """The actors' answers to ``calls`` that ``reply`` accepts, in the order of ``order``."""
        accepted = {}
        for call, names in calls.items():
            answers = _answers(call, names, f"round {round}") or {}
            for name in names:
                if name not in answers:
                    self.absences.mark(round, name, Absence.NO_ANSWER)
                elif (checked := checked_answer(name, answers[name], reply)) is not None:
                    accepted[name] = checked
                else:
                    self.absences.mark(round, name, Absence.REJECTED)
        return {name: accepted[name] for name in order if name in accepted}

    def _by_host(self, names: Iterable[str]) -> dict[int, list[str]]:
        groups: dict[int, list[str]] = {}
        for name in names:
            groups.setdefault(self.host_of[name], []).append(name)
        return groups


def connect(address: str | None) -> None:
    """Joins the Ray cluster at ``address``, or starts a local Ray, unless Ray is running here."""
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False)


def actor_count(placement: RayPlacement, resources: Mapping[str, float], num_sites: int) -> int:
    """How many site actors the cluster's ``resources`` hold (at most one per site).

    Raises:
        ConfigError: Not even one actor fits.
    """
    fits = [_fits(resources.get("CPU", 0.0), placement.cpus_per_site)]
    if placement.gpus_per_site > 0:
        fits.append(_fits(resources.get("GPU", 0.0), placement.gpus_per_site))
    count = min(*fits, num_sites, placement.max_actors or num_sites)
    if count < 1:
        raise ConfigError(
            f"the Ray cluster has {dict(resources)}, less than one site needs "
            f"(ray.num_cpus_per_site {placement.cpus_per_site}, ray.num_gpus_per_site {placement.gpus_per_site})"
        )
    return count


def _fits(available: float, per_actor: float) -> int:
    return math.floor(available / per_actor + 1e-9)


def _answers(call: Any, names: list[str], what: str) -> dict[str, Any] | None:
    """``ray.get(call)``; ``None`` when the actor of ``names`` died (its sites dropped out). A
    site's ``MedfedError`` is raised here as it was raised there (one clear line, as in memory);
    any other error arrives with the actor's traceback."""
    try:
        answers: dict[str, Any] = ray.get(call)
    except RayActorError as lost:
        logger.warning("%s: sites %s lost their Ray actor: %s", what, names, lost)
        return None
    except RayTaskError as failed:
        if isinstance(failed.cause, MedfedError):
            raise failed.cause from None
        raise
    return answers
