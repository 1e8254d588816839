"""The one federated round loop, written once for simulation and deployment."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from medfed.errors import MedfedError, UpdateRejected
from medfed.orchestration.connector import SiteConnector
from medfed.orchestration.sampling import sample_sites
from medfed.orchestration.validation import validate_result
from medfed.strategies.base import Strategy
from medfed.types import (
    AGGREGATE_SITE,
    AGGREGATE_SITES_METRIC,
    Scalar,
    ServerState,
    TrainResult,
)

logger = logging.getLogger(__name__)


class QuorumNotReached(MedfedError):
    """Fewer valid results than ``min_sites`` arrived in a round."""


@dataclass(frozen=True)
class RoundPlan:
    """How rounds are run.

    Attributes:
        rounds: Total number of rounds of the run.
        sites: Every site in the federation.
        fraction: Fraction of sites sampled each round.
        min_sites: Fewest sites whose valid updates a round needs to be aggregated.
        seed: Seed of the site sampling.
        config: Local-training settings sent with every task.
    """

    rounds: int
    sites: Sequence[str]
    fraction: float = 1.0
    min_sites: int = 1
    seed: int = 0
    config: Mapping[str, Scalar] | None = None


RoundCallback = Callable[[ServerState, list[TrainResult]], None]


def run_round(
    strategy: Strategy, state: ServerState, plan: RoundPlan, connector: SiteConnector
) -> tuple[ServerState, list[TrainResult]]:
    """Runs round ``state.round + 1``: sample, send tasks, validate results, aggregate.

    Invalid updates are logged and left out. Raises ``QuorumNotReached`` when the valid results
    hold the updates of fewer than ``plan.min_sites`` sites (a secure aggregate counts as the
    sites in its sum); ``state`` is then unchanged.
    """
    round = state.round + 1
    chosen = sample_sites(
        plan.sites, fraction=plan.fraction, min_sites=plan.min_sites, seed=plan.seed, round=round
    )
    task = strategy.configure(state, round, plan.config or {})
    results = _valid(connector.train({site: task for site in chosen}), state, round)
    contributing = sum(_sites_in(result) for result in results)
    if contributing < plan.min_sites:
        raise QuorumNotReached(
            f"round {round}: updates of {contributing} sites, at least {plan.min_sites} needed"
        )
    return strategy.aggregate(state, results, len(plan.sites)), results


def run_rounds(
    strategy: Strategy,
    state: ServerState,
    plan: RoundPlan,
    connector: SiteConnector,
    on_round: RoundCallback | None = None,
) -> ServerState:
    """Runs rounds from ``state.round + 1`` to ``plan.rounds``; ``on_round`` sees each new state
    (to checkpoint it) before the next round starts."""
    while state.round < plan.rounds:
        state, results = run_round(strategy, state, plan, connector)
        if on_round is not None:
            on_round(state, results)
    return state


def _sites_in(result: TrainResult) -> int:
    """How many sites' updates ``result`` holds: 1, or the count an aggregate result declares."""
    if result.site != AGGREGATE_SITE:
        return 1
    return int(result.metrics.get(AGGREGATE_SITES_METRIC, 1))


def _valid(results: list[TrainResult], state: ServerState, round: int) -> list[TrainResult]:
    accepted, seen = [], set()
    for result in results:
        try:
            if result.site in seen:
                raise UpdateRejected(result.site, f"second update in round {round}")
            validate_result(result, state.weights, round=round)
        except UpdateRejected as rejection:
            logger.warning("%s", rejection)
            continue
        seen.add(result.site)
        accepted.append(result)
    return accepted
