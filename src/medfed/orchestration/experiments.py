"""The experiments of a simulation: each federated strategy, the centralized baseline (all data
pooled, only possible in simulation) and local-only training at each site."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from medfed.config.loading import build_strategy
from medfed.config.schema import SimulationConfig
from medfed.data import SiteData
from medfed.orchestration.federation_data import FederationData
from medfed.strategies.base import Strategy
from medfed.strategies.registry import STRATEGIES

ExperimentKind = Literal["federated", "centralized", "local"]


@dataclass(frozen=True)
class Experiment:
    """One training run of a simulation.

    Attributes:
        name: Unique name, used for its checkpoint folder and in the report.
        kind: Federated, centralized or local-only.
        strategy: The strategy (FedAvg over one site for the baselines).
        sites: The training data of each participating site.
    """

    name: str
    kind: ExperimentKind
    strategy: Strategy
    sites: dict[str, SiteData]


POOLED_SITE = "pooled"


def plan_experiments(config: SimulationConfig, data: FederationData) -> list[Experiment]:
    """Federated strategies first, then the centralized baseline, then one local run per site."""
    experiments = [
        Experiment(
            name=strategy.display_name,
            kind="federated",
            strategy=build_strategy(strategy),
            sites=data.train,
        )
        for strategy in config.strategies
    ]
    if config.baselines.centralized:
        pooled = tuple(case for site in data.train.values() for case in site.cases)
        experiments.append(
            Experiment(
                name="centralized",
                kind="centralized",
                strategy=STRATEGIES.create("fedavg"),
                sites={POOLED_SITE: SiteData(name=POOLED_SITE, cases=pooled)},
            )
        )
    if config.baselines.local:
        experiments.extend(
            Experiment(
                name=f"local-{name}",
                kind="local",
                strategy=STRATEGIES.create("fedavg"),
                sites={name: site},
            )
            for name, site in data.train.items()
        )
    return experiments
