"""The one federated round loop, written once for simulation and deployment."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from medfed.errors import MedfedError, UpdateRejected
from medfed.orchestration.grid import Absence, AbsenceLog, Collect, Grid, train_in_clear
from medfed.orchestration.sampling import sample_sites
from medfed.orchestration.validation import (
    CheckedResult,
    check_declared_extras,
    non_finite_keys,
    validate_result,
)
from medfed.strategies.base import Strategy
from medfed.text import printable
from medfed.types import (
    AGGREGATE_SITE,
    AGGREGATE_SITES_METRIC,
    Scalar,
    ServerState,
    TrainResult,
)

logger = logging.getLogger(__name__)


class RoundFailed(MedfedError):
    """A round produced no new state; the previous state stands and the round may be run again."""


class QuorumNotReached(RoundFailed):
    """Fewer valid results than ``min_sites`` arrived in a round."""


class AggregationFailed(RoundFailed):
    """The strategy could not aggregate a round's results, or its new model is not finite."""


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
    strategy: Strategy,
    state: ServerState,
    plan: RoundPlan,
    grid: Grid,
    collect: Collect = train_in_clear,
    absences: AbsenceLog | None = None,
) -> tuple[ServerState, list[TrainResult]]:
    """Runs round ``state.round + 1``: sample, send tasks over ``grid`` and gather the results
    with ``collect`` (in the clear, or as one protected aggregate), validate, aggregate.

    Invalid updates (see ``validate_result``, with the strategy's declared extras) are logged
    and left out; a ``CheckedResult`` (checked where it arrived) is checked for the declared
    extras' layout only; each is marked ``rejected`` in ``absences`` (started afresh for the
    round), where the grid marks the sites that dropped out. ``state`` is unchanged when the
    round fails.

    Raises:
        QuorumNotReached: The valid results hold the updates of fewer than ``plan.min_sites``
            sites (a secure aggregate counts as the sites in its sum; a protected round that
            could not be completed gives no result).
        AggregationFailed: ``strategy.aggregate`` raised on the results, or its new state holds
            a NaN or an infinity.
    """
    round = state.round + 1
    chosen = sample_sites(
        plan.sites, fraction=plan.fraction, min_sites=plan.min_sites, seed=plan.seed, round=round
    )
    task = strategy.configure(state, round, plan.config or {})
    if absences is None:
        absences = AbsenceLog()
    absences.start(round)
    results = _valid(collect(grid, {site: task for site in chosen}), strategy, state, round, absences)
    contributing = sum(_sites_in(result) for result in results)
    if contributing < plan.min_sites:
        raise QuorumNotReached(
            f"round {round}: updates of {contributing} sites, at least {plan.min_sites} needed"
        )
    return _aggregate(strategy, state, results, len(plan.sites)), results


def run_rounds(
    strategy: Strategy,
    state: ServerState,
    plan: RoundPlan,
    grid: Grid,
    on_round: RoundCallback | None = None,
    *,
    max_attempts: int = 1,
    collect: Collect = train_in_clear,
    absences: AbsenceLog | None = None,
) -> ServerState:
    """Runs rounds from ``state.round + 1`` to ``plan.rounds``; ``on_round`` sees each new state
    (to checkpoint it) before the next round starts.

    Args:
        collect: How each round's results are gathered over ``grid`` (see ``run_round``).
        absences: Who dropped out of each round and why (see ``run_round``), for ``on_round``.
        max_attempts: Tries of a round that fails (``RoundFailed``) before its error is raised;
            each failure is logged and leaves the state as it was.
    """
    attempts = 0
    while state.round < plan.rounds:
        try:
            state, results = run_round(strategy, state, plan, grid, collect, absences)
        except RoundFailed as error:
            attempts += 1
            logger.warning("%s (attempt %d of %d)", error, attempts, max_attempts)
            if attempts >= max_attempts:
                raise
            continue
        attempts = 0
        if on_round is not None:
            on_round(state, results)
    return state


def _aggregate(
    strategy: Strategy, state: ServerState, results: list[TrainResult], num_sites: int
) -> ServerState:
    """``strategy.aggregate``, refused (``AggregationFailed``) when it raises on the sites'
    input or returns a non-finite model or strategy state."""
    round = state.round + 1
    try:
        new = strategy.aggregate(state, results, num_sites)
    except MedfedError:
        raise
    except Exception as error:  # a site's input that slipped past validation ends the round only
        reason = printable(f"{type(error).__name__}: {error}", 300)
        raise AggregationFailed(f"round {round}: aggregation failed: {reason}") from error
    bad = non_finite_keys(new.weights, new.extra)
    if bad:
        raise AggregationFailed(f"round {round}: the aggregated state is not finite in {bad[:5]}; discarded")
    return new


def _sites_in(result: TrainResult) -> int:
    """How many sites' updates ``result`` holds: 1, or the count an aggregate result declares."""
    if result.site != AGGREGATE_SITE:
        return 1
    return int(result.metrics.get(AGGREGATE_SITES_METRIC, 1))


def _valid(
    results: list[TrainResult], strategy: Strategy, state: ServerState, round: int, absences: AbsenceLog
) -> list[TrainResult]:
    extras = strategy.result_extras(state.weights)
    accepted, seen = [], set()
    for result in results:
        try:
            if result.site in seen:
                raise UpdateRejected(result.site, f"second update in round {round}")
            if isinstance(result, CheckedResult):
                check_declared_extras(result, extras)
            else:
                validate_result(result, state.weights, round=round, extras=extras)
        except UpdateRejected as rejection:
            logger.warning("%s", rejection)
            absences.mark(round, result.site, Absence.REJECTED)
            continue
        seen.add(result.site)
        accepted.append(result)
    return accepted
