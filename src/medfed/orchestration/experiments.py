"""The experiments of a simulation: each federated strategy, the centralized baseline (all data
pooled, only possible in simulation) and local-only training at each site."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from medfed.config.loading import build_strategy
from medfed.config.schema import CLEAN_SUFFIX, SimulationConfig
from medfed.data import SiteData
from medfed.errors import ConfigError
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
        attacked: Whether the configured ``attack:`` runs in this experiment.
    """

    name: str
    kind: ExperimentKind
    strategy: Strategy
    sites: dict[str, SiteData]
    attacked: bool = False


POOLED_SITE = "pooled"


def plan_experiments(config: SimulationConfig, data: FederationData) -> list[Experiment]:
    """Federated strategies first (under ``attack:``, each attacked and then, with
    ``clean_runs``, clean; under a peer-to-peer topology named ``<topology>-<strategy>`` unless
    labelled), then the centralized baseline, then one local run per site.

    Raises:
        ConfigError: If an attacked site is not a training site.
    """
    attack = config.attack
    if attack is not None:
        unknown = sorted(set(attack.sites) - set(data.train))
        if unknown:
            raise ConfigError(f"attack.sites {unknown} are not training sites: {sorted(data.train)}")
    experiments = []
    topology = config.federation.topology
    for strategy in config.strategies:
        name = strategy.display_name
        if topology.peer_to_peer and strategy.label is None:
            name = f"{topology.name}-{name}"
        experiments.append(
            Experiment(name, "federated", build_strategy(strategy), data.train, attacked=attack is not None)
        )
        if attack is not None and attack.clean_runs:
            experiments.append(
                Experiment(f"{name}{CLEAN_SUFFIX}", "federated", build_strategy(strategy), data.train)
            )
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
