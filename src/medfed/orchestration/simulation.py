"""Running a simulation's experiments in one process, with a checkpoint after each round so
that a resumed run ends with the weights of an uninterrupted one."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn
from torch.utils.data import Dataset

from medfed.aggregation import consensus
from medfed.config.schema import SimulationConfig
from medfed.data import SiteData, build_dataset
from medfed.data.dataset import CaseDataset
from medfed.errors import CheckpointError
from medfed.models import build_model
from medfed.orchestration.checkpoint import model_metadata
from medfed.orchestration.driver import RoundRecorder, RowSource, RunRecords, privacy_rows, training_rows
from medfed.orchestration.experiments import Experiment
from medfed.orchestration.federation_data import FederationData
from medfed.orchestration.grid import Collect, InMemoryGrid, OpenProtocol, Tamper, train_in_clear
from medfed.orchestration.loop import RoundPlan, run_rounds
from medfed.orchestration.metrics_log import MetricRow, MetricsLog, Split, site_model_run
from medfed.orchestration.site import LocalSite, cpu_weights
from medfed.orchestration.topologies import build_topology
from medfed.orchestration.traffic import MeteredGrid, transfer_rows
from medfed.privacy.plan import CkksSettings
from medfed.privacy.setup import expected_sites, prepare_model, protect, site_protocol, site_trainer
from medfed.topology.peers import PeerRound, PeerState, restored_state, run_topology, saved_states
from medfed.training import LocalTrainer, TrainSettings, adapt_norm_statistics, evaluate
from medfed.training.trainer import Trainer
from medfed.types import ServerState, SiteState, TrainResult, Weights


@dataclass(frozen=True)
class ExperimentResult:
    """The end of one experiment: the global model and each site's private state."""

    experiment: Experiment
    state: ServerState
    sites: Mapping[str, SiteState]

    def weights_for(self, site: str) -> Weights:
        """The model that ``site`` would use: personalised when it trained in this experiment."""
        own = self.sites.get(site)
        if own is None:
            return self.state.weights
        return self.experiment.strategy.site_model(self.state.weights, own)


@dataclass(frozen=True)
class Callbacks:
    """Progress hooks of a simulation (e.g. rich progress bars); all optional."""

    on_experiment: Callable[[Experiment, int], None] | None = None
    on_round: Callable[[int], None] | None = None
    on_site: Callable[[str], None] | None = None


class ExperimentRunner:
    """Runs experiments of one configuration, checkpointing every round under ``run_dir``.

    Args:
        config: The validated configuration.
        data: The prepared data of every site.
        run_dir: The run directory.
        callbacks: Progress hooks.
    """

    def __init__(
        self,
        config: SimulationConfig,
        data: FederationData,
        run_dir: Path,
        callbacks: Callbacks | None = None,
    ) -> None:
        self.config = config
        self.data = data
        self.run_dir = run_dir
        self.callbacks = callbacks or Callbacks()
        self.metrics = MetricsLog(run_dir)
        self.privacy = config.privacy.plan()
        channels, dims = data.spatial_shape()
        self.model_params = {"spatial_dims": dims, "in_channels": channels, **config.model.params}
        if "out_channels" not in self.model_params:
            self.model_params["out_channels"] = data.num_classes(config.task)
        self.trainer = LocalTrainer(task=config.task, settings=TrainSettings(**config.training.model_dump()))
        self.preprocessing = config.preprocessing.settings(config.model)
        self.evaluation_sets = {
            name: self._dataset(site, training=False) for name, site in data.evaluation_sets.items()
        }

    def new_model(self) -> nn.Module:
        """The run's initial model (identical for every experiment; DP-compatible under DP-SGD)."""
        model = build_model(self.config.model.name, self.model_params, seed=self.config.seed)
        return prepare_model(self.privacy, model)

    def run(self, experiment: Experiment) -> ExperimentResult:
        """Runs ``experiment`` from its last checkpoint (or from scratch) to the last round."""
        if experiment.kind == "federated" and self.config.federation.topology.peer_to_peer:
            return self._run_peers(experiment)
        experiment, collect, open_protocol = self._protected(experiment)
        records = self._records(experiment)
        model = self.new_model()
        resumed = records.resume()
        state = experiment.strategy.init(cpu_weights(model)) if resumed is None else resumed.server
        site_states = {} if resumed is None else resumed.sites
        sites = {
            name: self._site(name, data, model, experiment, site_states.get(name))
            for name, data in experiment.sites.items()
        }
        plan = RoundPlan(
            rounds=self.config.federation.rounds,
            sites=sorted(sites),
            fraction=self.config.federation.fraction,
            min_sites=min(self.config.federation.min_sites, len(sites)),
            seed=self.config.seed,
        )
        if self.callbacks.on_experiment is not None:
            self.callbacks.on_experiment(experiment, state.round)

        grid = MeteredGrid(
            InMemoryGrid(
                sites,
                open_protocol=open_protocol,
                on_site_done=self.callbacks.on_site,
                tamper=self._attack(experiment),
            )
        )

        def traffic(state: ServerState, results: list[TrainResult]) -> list[MetricRow]:
            return grid.take_rows(experiment.name, state.round)

        recorder = self.recorder(records, experiment, sites, model, traffic=traffic)
        final = run_rounds(experiment.strategy, state, plan, grid, on_round=recorder, collect=collect)
        return ExperimentResult(experiment, final, _site_states(sites))

    def _records(self, experiment: Experiment) -> RunRecords:
        model_entries = model_metadata(self.config.model.name, self.model_params, self.data.image_shape())
        return RunRecords(
            experiment.name,
            self.metrics,
            self.run_dir / "checkpoints" / experiment.name,
            metadata={"experiment": experiment.name, **model_entries},
            keep_last=self.config.federation.keep_last,
        )

    def recorder(
        self,
        records: RunRecords,
        experiment: Experiment,
        sites: Mapping[str, LocalSite],
        model: nn.Module,
        *,
        traffic: RowSource | None = None,
    ) -> RoundRecorder:
        """Records each round with the sites' private states (sites without any left out); its
        held-out rows scored here, in process; ``traffic``'s rows (bytes per site) too."""

        def evaluation_rows(state: ServerState, results: list[TrainResult]) -> list[MetricRow]:
            if not self.config.federation.evaluates_after(state.round):
                return []
            return self._evaluation_rows(ExperimentResult(experiment, state, _site_states(sites)), model)

        def private_states() -> dict[str, SiteState]:
            private = {name: experiment.strategy.private_state(site.state) for name, site in sites.items()}
            return {name: state for name, state in private.items() if state.weights or state.extra}

        def progress(state: ServerState, results: list[TrainResult], rows: list[MetricRow]) -> None:
            if self.callbacks.on_round is not None:
                self.callbacks.on_round(state.round)

        def trainers() -> dict[str, Trainer]:
            return {name: site.trainer for name, site in sites.items()}

        privacy = privacy_rows(experiment.name, self.privacy, experiment.strategy, trainers)
        sources = [evaluation_rows, privacy, *([] if traffic is None else [traffic])]
        return RoundRecorder(records, sources=sources, sites=private_states, after=[progress])

    def _run_peers(self, experiment: Experiment) -> ExperimentResult:
        """A peer-to-peer experiment (``federation.topology``) from its last checkpoint (the
        sites' ``PeerState``, and the consensus for ``medfed export``) or from scratch. Its model
        is the consensus (plain average) of the sites' models; each site's own model is scored
        too, as run ``<experiment>@<site>`` (``site_model_run``)."""
        records = self._records(experiment)
        model = self.new_model()
        resumed = records.resume()
        sites = {
            name: self._site(name, data, model, experiment, None) for name, data in experiment.sites.items()
        }
        start = PeerState.start(cpu_weights(model), sorted(sites))
        if resumed is not None:
            start = restored_state(resumed.server, resumed.sites)
            if set(start.models) != set(sites):
                raise CheckpointError(f"{experiment.name}: checkpoint of sites {sorted(start.models)}")
        for site in sites:
            self.metrics.discard_after(site_model_run(experiment.name, site), start.round)
        topology = build_topology(self.config.federation.topology, sorted(sites), seed=self.config.seed)
        privacy = privacy_rows(
            experiment.name,
            self.privacy,
            experiment.strategy,
            lambda: {name: site.trainer for name, site in sites.items()},
        )
        if self.callbacks.on_experiment is not None:
            self.callbacks.on_experiment(experiment, start.round)

        def finish_round(record: PeerRound) -> None:
            state, sites_saved = saved_states(record.state, consensus(record.state.models.values()))
            round = record.state.round
            latest = list({result.site: result for result in record.results}.values())
            rows = training_rows(experiment.name, round, latest)
            rows += transfer_rows(experiment.name, round, record.transfers) + privacy(state, latest)
            if self.config.federation.evaluates_after(round):
                rows += self._peer_evaluation_rows(experiment, record.state, model)
            records.record(state, latest, rows, sites_saved)
            if self.callbacks.on_round is not None:
                self.callbacks.on_round(round)

        grid = InMemoryGrid(sites, on_site_done=self.callbacks.on_site)
        final = run_topology(
            topology, start, grid, rounds=self.config.federation.rounds, on_round=finish_round
        )
        return ExperimentResult(experiment, _consensus_state(final), {})

    def _peer_evaluation_rows(
        self, experiment: Experiment, state: PeerState, model: nn.Module
    ) -> list[MetricRow]:
        """The consensus scored as the experiment's model; each site's own model scored into
        the metrics log under its own run name (recorded here, with the round)."""
        rows = self._evaluation_rows(ExperimentResult(experiment, _consensus_state(state), {}), model)
        for site, weights in sorted(state.models.items()):
            own = ExperimentResult(experiment, ServerState(state.round, weights), {})
            run = site_model_run(experiment.name, site)
            scored = [replace(row, experiment=run) for row in self._evaluation_rows(own, model)]
            self.metrics.record_round(run, state.round, scored)
        return rows

    def _site(
        self,
        name: str,
        data: SiteData,
        model: nn.Module,
        experiment: Experiment,
        state: SiteState | None,
    ) -> LocalSite:
        dataset: Dataset = self._dataset(data, training=True)
        attack = self.config.attack
        if experiment.attacked and attack is not None and name in attack.sites:
            from medfed.attacks.poisoning import (
                DATA_ATTACKS,
                PoisonedDataset,
                num_output_classes,
            )

            if attack.kind in DATA_ATTACKS:
                classes = num_output_classes(model, dataset[0])
                dataset = PoisonedDataset(dataset, attack, num_classes=classes, seed=self.config.seed)
        return LocalSite(
            name,
            dataset,
            model=model,
            trainer=self._trainer_for(experiment, data),
            strategy=experiment.strategy,
            seed=self.config.seed,
            state=state,
        )

    def _dataset(self, site: SiteData, *, training: bool) -> CaseDataset:
        """The site's cases, preprocessed; augmented when training and configured."""
        return build_dataset(
            site.cases,
            task=self.config.task,
            augment=training and self.config.data.augment,
            seed=self.config.seed,
            site=site.name,
            preprocessing=self.preprocessing,
            training=training,
            num_classes=int(self.model_params["out_channels"])
            if self.config.task == "segmentation"
            else None,
        )

    def _attack(self, experiment: Experiment) -> Tamper | None:
        """In an attacked experiment, what replaces malicious sites' updates before they are
        aggregated (securely or not); ``None`` otherwise or for data attacks."""
        attack = self.config.attack
        if not experiment.attacked or attack is None:
            return None
        from medfed.attacks.poisoning import UPDATE_ATTACKS, UpdateAttack

        return UpdateAttack(attack, seed=self.config.seed) if attack.kind in UPDATE_ATTACKS else None

    def _protected(self, experiment: Experiment) -> tuple[Experiment, Collect, OpenProtocol | None]:
        """A federated ``experiment`` with its strategy wrapped as the ``privacy:`` section says,
        how its rounds are gathered and how its sites open a protected round (``protect`` and
        ``site_protocol``, as in a deployment). A secure or encrypted round hands the loop one
        result, the aggregate, which counts towards ``min_sites`` as the number of sites in its
        sum. CKKS gets a fresh key pair per experiment."""
        if experiment.kind != "federated":
            return experiment, train_in_clear, None
        privacy, federation = self.privacy, self.config.federation
        site_context, server_context = None, None
        if isinstance(privacy.secure_sum, CkksSettings):
            from medfed.privacy.ckks import new_key_pair  # imports TenSEAL: only when used

            site_context, server_context = new_key_pair()
        expected = expected_sites(
            len(experiment.sites), fraction=federation.fraction, min_sites=federation.min_sites
        )
        strategy, collect = protect(
            privacy,
            experiment.strategy,
            expected_sites=expected,
            seed=self.config.seed,
            ckks_context=server_context,
        )
        open_protocol = site_protocol(privacy, site="simulated", ckks_context=site_context)
        return replace(experiment, strategy=strategy), collect, open_protocol

    def _trainer_for(self, experiment: Experiment, data: SiteData) -> Trainer:
        """The site's trainer (``site_trainer``): DP-SGD with the site's own budget and ledger
        when configured; a simulated experiment spends its own budget (one ledger each)."""
        if self.privacy.dp_sgd is None:
            return self.trainer
        from medfed.privacy.dp.config import check_site_names, simulated_noise

        check_site_names(self.privacy, [*self.data.train, *experiment.sites])
        return site_trainer(
            self.privacy,
            self.trainer,
            data,
            planned_rounds=self.config.federation.rounds,
            ledger_dir=self.run_dir / "privacy" / experiment.name,
            job=experiment.name,
            noise=simulated_noise(self.privacy),
        )

    def _evaluation_rows(self, result: ExperimentResult, model: nn.Module) -> list[MetricRow]:
        """Each evaluation set scored with the model its site would use; the unseen site also
        after AdaBN (split ``unseen-adabn``) when ``data.unseen_site_adabn`` is set."""
        rows = []
        for site, dataset in self.evaluation_sets.items():
            unseen = site == self.config.data.unseen_site
            model.load_state_dict(result.weights_for(site))
            rows += self._scored(result, model, site, Split.UNSEEN if unseen else Split.TEST, backdoor=True)
            if unseen and self.config.data.unseen_site_adabn:
                adapt_norm_statistics(model, dataset, batch_size=self.config.training.batch_size)
                rows += self._scored(result, model, site, Split.UNSEEN_ADABN)
        return rows

    def _scored(
        self, result: ExperimentResult, model: nn.Module, site: str, split: Split, *, backdoor: bool = False
    ) -> list[MetricRow]:
        dataset = self.evaluation_sets[site]
        metrics = evaluate(
            model,
            dataset,
            task=self.config.task,
            batch_size=self.config.training.batch_size,
            surface_distance=result.state.round == self.config.federation.rounds,
        )
        if backdoor:
            metrics.update(self._backdoor_metrics(result.experiment, model, dataset))
        return [
            MetricRow(result.experiment.name, result.state.round, site, split, metric, value)
            for metric, value in metrics.items()
        ]

    def _backdoor_metrics(
        self, experiment: Experiment, model: nn.Module, dataset: Dataset
    ) -> dict[str, float]:
        """``{"backdoor_success": rate}`` for federated experiments under a backdoor attack;
        nothing when no held-out case is eligible (the metrics log cannot store NaN)."""
        attack = self.config.attack
        if attack is None or attack.kind != "backdoor" or experiment.kind != "federated":
            return {}
        from medfed.attacks.poisoning import BACKDOOR_METRIC, backdoor_success

        rate = backdoor_success(
            model,
            dataset,
            task=self.config.task,
            target=attack.target,
            patch=attack.patch,
            batch_size=self.config.training.batch_size,
        )
        return {} if math.isnan(rate) else {BACKDOOR_METRIC: rate}


def _consensus_state(state: PeerState) -> ServerState:
    """A peer-to-peer federation's shared model (the sites' consensus) as a server state."""
    return ServerState(state.round, consensus(state.models.values()))


def _site_states(sites: Mapping[str, LocalSite]) -> dict[str, SiteState]:
    return {name: site.state for name, site in sites.items()}
