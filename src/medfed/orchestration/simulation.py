"""Running a simulation's experiments in one process, with a checkpoint after each round so
that a resumed run ends with the weights of an uninterrupted one."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, closing, nullcontext
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn
from torch.utils.data import Dataset

from medfed.aggregation import consensus
from medfed.config.schema import SimulationConfig
from medfed.data import SiteData, build_dataset
from medfed.data.dataset import CaseDataset, Transform
from medfed.errors import CheckpointError, ConfigError
from medfed.models import build_model
from medfed.orchestration.attendance import AttendanceGrid
from medfed.orchestration.checkpoint import model_metadata
from medfed.orchestration.driver import (
    RoundRecorder,
    RowSource,
    RunRecords,
    absence_rows,
    privacy_rows,
    training_rows,
)
from medfed.orchestration.experiments import Experiment
from medfed.orchestration.federation_data import FederationData
from medfed.orchestration.grid import AbsenceLog, Collect, InMemoryGrid, OpenProtocol, Tamper, train_in_clear
from medfed.orchestration.hooks import CUSTOM_MODEL, ModelContext, SimulationHooks
from medfed.orchestration.loop import RoundPlan, run_rounds
from medfed.orchestration.metrics_log import (
    MetricRow,
    MetricsLog,
    Split,
    case_metric,
    site_model_run,
    split_case_metric,
)
from medfed.orchestration.recording import SERVER, LedgerRecorder, privacy_spent, run_keys
from medfed.orchestration.site import LocalSite, cpu_weights
from medfed.orchestration.topologies import build_topology
from medfed.orchestration.traffic import MeteredGrid, transfer_rows
from medfed.privacy.plan import CkksSettings
from medfed.privacy.setup import expected_sites, prepare_model, protect, site_protocol, site_trainer
from medfed.provenance.verify import PROVENANCE_DIR
from medfed.strategies.base import Strategy
from medfed.topology.peers import PeerRound, PeerState, restored_state, run_topology, saved_states
from medfed.training import LocalTrainer, TrainSettings, adapt_norm_statistics
from medfed.training.evaluation import evaluate_cases
from medfed.training.trainer import Trainer
from medfed.types import ServerState, SiteState, TrainResult, Weights

if TYPE_CHECKING:
    from medfed.orchestration.ray_grid import RayGrid


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
    """Progress hooks of a simulation (progress bars, log lines, trackers); all optional.

    Attributes:
        on_seed: A seed's run starts, in a run of several seeds (``seeds``): the seed, its
            position (from 1) and the number of seeds.
        on_plan: Before the first experiment, with every experiment of the run in order.
        on_experiment: An experiment starts, with the rounds it has already done (resumed).
        on_round: A round is recorded, with its number.
        on_site: A site finished its local training.
        on_recorded: A round is recorded: the experiment's name, the round and its metric rows
            (per-case rows left out).
        on_experiment_end: An experiment finished its last round.
    """

    on_seed: Callable[[int, int, int], None] | None = None
    on_plan: Callable[[Sequence[Experiment]], None] | None = None
    on_experiment: Callable[[Experiment, int], None] | None = None
    on_round: Callable[[int], None] | None = None
    on_site: Callable[[str], None] | None = None
    on_recorded: Callable[[str, int, Sequence[MetricRow]], None] | None = None
    on_experiment_end: Callable[[Experiment], None] | None = None


def combine(*callbacks: Callbacks) -> Callbacks:
    """Callbacks that call each of ``callbacks``' hooks in turn."""

    def each(name: str) -> Callable[..., None] | None:
        hooks = [getattr(one, name) for one in callbacks if getattr(one, name) is not None]
        if not hooks:
            return None

        def call(*args: Any) -> None:
            for hook in hooks:
                hook(*args)

        return call

    return Callbacks(**{field.name: each(field.name) for field in fields(Callbacks)})


class ExperimentRunner:
    """Runs experiments of one configuration, checkpointing every round under ``run_dir``.

    Args:
        config: The validated configuration.
        data: The prepared data of every site.
        run_dir: The run directory.
        callbacks: Progress hooks.
        hooks: The researcher's own model, loss, augmentation or training step.
    """

    def __init__(
        self,
        config: SimulationConfig,
        data: FederationData,
        run_dir: Path,
        callbacks: Callbacks | None = None,
        hooks: SimulationHooks | None = None,
    ) -> None:
        self.config = config
        self.hooks = hooks or SimulationHooks()
        self.data = data
        self.run_dir = run_dir
        self.callbacks = callbacks or Callbacks()
        self.metrics = MetricsLog(run_dir, seed=config.seed)
        self.privacy = config.privacy.plan()
        channels, dims = data.spatial_shape()
        self.model_params = {
            "spatial_dims": config.model.network_dims(dims),
            "in_channels": channels,
            **config.model.params,
        }
        if "out_channels" not in self.model_params:
            self.model_params["out_channels"] = data.num_classes(config.task)
        self.trainer = local_trainer(config, self.hooks)
        self.evaluation_sets = {
            name: site_dataset(config, self.model_params, site, training=False)
            for name, site in data.evaluation_sets.items()
        }

    def new_model(self) -> nn.Module:
        """The run's initial model (identical for every experiment; DP-compatible under DP-SGD)."""
        return new_model(self.config, self.model_params, self.hooks)

    def run(self, experiment: Experiment) -> ExperimentResult:
        """Runs ``experiment`` from its last checkpoint (or from scratch) to the last round."""
        if experiment.kind == "federated" and self.config.federation.topology.peer_to_peer:
            return self._run_peers(experiment)
        experiment, collect, recipe = self._protected(experiment)
        records = self._records(experiment)
        model = self.new_model()
        resumed = records.resume()
        state = experiment.strategy.init(cpu_weights(model)) if resumed is None else resumed.server
        site_states = {} if resumed is None else resumed.sites
        plan = RoundPlan(
            rounds=self.config.federation.rounds,
            sites=sorted(experiment.sites),
            fraction=self.config.federation.fraction,
            min_sites=min(self.config.federation.min_sites, len(experiment.sites)),
            seed=self.config.seed,
        )
        if self.callbacks.on_experiment is not None:
            self.callbacks.on_experiment(experiment, state.round)
        ledger = self._ledger(experiment)
        absences = AbsenceLog()
        with self._grid(experiment, recipe, model, site_states, ledger, absences) as grid:
            metered = MeteredGrid(grid)

            def traffic(state: ServerState, results: list[TrainResult]) -> list[MetricRow]:
                return metered.take_rows(experiment.name, state.round)

            recorder = self.recorder(records, experiment, grid, model, ledger, traffic=traffic)
            final = run_rounds(
                experiment.strategy,
                state,
                plan,
                metered,
                on_round=recorder,
                collect=collect,
                absences=absences,
            )
            return ExperimentResult(experiment, final, grid.site_states())

    def _records(self, experiment: Experiment) -> RunRecords:
        network = self.config.model.name if self.hooks.model_fn is None else CUSTOM_MODEL
        model_entries = model_metadata(network, self.model_params, self.data.image_shape())
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
        grid: InMemoryGrid | RayGrid,
        model: nn.Module,
        ledger: LedgerRecorder | None = None,
        *,
        traffic: RowSource | None = None,
    ) -> RoundRecorder:
        """Records each round with the sites' private states (sites without any left out); its
        held-out rows scored here, in process; in the provenance ``ledger`` too, when given;
        ``traffic``'s rows (bytes per site) too; the sites that dropped out (the grid's
        ``absences``, where the round loop marks rejected updates too)."""

        def evaluation_rows(state: ServerState, results: list[TrainResult]) -> list[MetricRow]:
            if not self.config.federation.evaluates_after(state.round):
                return []
            return self._evaluation_rows(ExperimentResult(experiment, state, grid.site_states()), model)

        def private_states() -> dict[str, SiteState]:
            return {name: state for name, state in grid.site_states().items() if state.weights or state.extra}

        def progress(state: ServerState, results: list[TrainResult], rows: list[MetricRow]) -> None:
            if self.callbacks.on_round is not None:
                self.callbacks.on_round(state.round)
            if self.callbacks.on_recorded is not None:  # per-case rows stay in the metrics log
                aggregates = [row for row in rows if split_case_metric(row.metric) is None]
                self.callbacks.on_recorded(experiment.name, state.round, aggregates)

        def trainers() -> dict[str, Trainer]:
            # DP-SGD (whose trainers report epsilon) runs in memory only: Ray sites report none
            sites = grid.sites if isinstance(grid, InMemoryGrid) else {}
            return {name: site.trainer for name, site in sites.items()}

        privacy = privacy_rows(experiment.name, self.privacy, experiment.strategy, trainers)
        if ledger is not None:
            privacy = ledger.recording(privacy)
        sources = [evaluation_rows, privacy, *([] if traffic is None else [traffic])]
        sources.append(absence_rows(experiment.name, grid.absences))
        return RoundRecorder(records, sources=sources, sites=private_states, after=[progress])

    def _run_peers(self, experiment: Experiment) -> ExperimentResult:
        """A peer-to-peer experiment (``federation.topology``) from its last checkpoint (the
        sites' ``PeerState``, and the consensus for ``medfed export``) or from scratch, over the
        same grid as client-server (``federation.engine``). Its model is the consensus (plain
        average) of the sites' models; each site's own model is scored too, as run
        ``<experiment>@<site>`` (``site_model_run``)."""
        records = self._records(experiment)
        model = self.new_model()
        resumed = records.resume()
        start = PeerState.start(cpu_weights(model), sorted(experiment.sites))
        if resumed is not None:
            start = restored_state(resumed.server, resumed.sites)
            if set(start.models) != set(experiment.sites):
                raise CheckpointError(f"{experiment.name}: checkpoint of sites {sorted(start.models)}")
        for site in experiment.sites:
            self.metrics.discard_after(site_model_run(experiment.name, site), start.round)
        topology = build_topology(
            self.config.federation.topology, sorted(experiment.sites), seed=self.config.seed
        )
        if self.callbacks.on_experiment is not None:
            self.callbacks.on_experiment(experiment, start.round)
        recipe = SiteRecipe(self.config, self.model_params, experiment.strategy, attacked=experiment.attacked)
        ledger = self._ledger(experiment, server=False)
        with self._grid(experiment, recipe, model, {}) as grid:
            sites = grid.sites if isinstance(grid, InMemoryGrid) else {}
            attendance = AttendanceGrid(grid)
            privacy = privacy_rows(
                experiment.name,
                self.privacy,
                experiment.strategy,
                lambda: {name: site.trainer for name, site in sites.items()},
            )

            def finish_round(record: PeerRound) -> None:
                state, sites_saved = saved_states(record.state, consensus(record.state.models.values()))
                round = record.state.round
                latest = list({result.site: result for result in record.results}.values())
                spent = privacy(state, latest)
                if ledger is not None:  # before the checkpoint, as in client-server
                    ledger.record_peers(record, privacy_spent(spent))
                rows = training_rows(experiment.name, round, latest)
                rows += transfer_rows(experiment.name, round, record.transfers) + spent
                absent = attendance.settle(record.results)
                rows += absence_rows(experiment.name, lambda _: absent)(state, latest)
                if self.config.federation.evaluates_after(round):
                    rows += self._peer_evaluation_rows(experiment, record.state, model)
                records.record(state, latest, rows, sites_saved)
                if self.callbacks.on_round is not None:
                    self.callbacks.on_round(round)
                if self.callbacks.on_recorded is not None:
                    self.callbacks.on_recorded(experiment.name, round, rows)

            final = run_topology(
                topology, start, attendance, rounds=self.config.federation.rounds, on_round=finish_round
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

    def _ledger(self, experiment: Experiment, *, server: bool = True) -> LedgerRecorder | None:
        """The provenance ledger of a federated experiment and its sites' copies (``server``:
        with the server's key; a peer-to-peer experiment has none)."""
        if experiment.kind != "federated":
            return None
        keys, signers = run_keys(self.run_dir, [*sorted(experiment.sites), *([SERVER] if server else [])])
        folder = self.run_dir / PROVENANCE_DIR / experiment.name
        return LedgerRecorder(folder, keys, signers, sorted(experiment.sites))

    def _grid(
        self,
        experiment: Experiment,
        recipe: SiteRecipe,
        model: nn.Module,
        states: Mapping[str, SiteState],
        ledger: LedgerRecorder | None = None,
        absences: AbsenceLog | None = None,
    ) -> AbstractContextManager[InMemoryGrid | RayGrid]:
        """The experiment's sites, in this process or as Ray actors (``federation.engine``): the
        one place the engine is chosen. In process, the ``ledger`` digests what each site sends
        in a protected round (Ray sites' messages are not seen: only the aggregate is recorded)."""
        tamper = self._attack(experiment)
        if self.config.federation.engine == "ray":
            try:
                from medfed.orchestration.ray_grid import RayGrid, RayPlacement
            except ImportError as missing:
                raise ConfigError(
                    f"federation.engine 'ray' needs Ray: pip install 'medfed[ray]' ({missing})"
                ) from None

            settings = self.config.ray
            placement = RayPlacement(
                address=settings.address,
                cpus_per_site=settings.num_cpus_per_site,
                gpus_per_site=settings.num_gpus_per_site,
                max_actors=settings.max_actors,
            )
            grid = RayGrid(
                recipe,
                experiment.sites,
                states,
                placement=placement,
                on_site_done=self.callbacks.on_site,
                tamper=tamper,
                absences=absences,
            )
            return closing(grid)
        sites = {
            name: recipe.site(
                name, data, model=model, trainer=self._trainer_for(experiment, data), state=states.get(name)
            )
            for name, data in experiment.sites.items()
        }
        open_protocol = recipe.open_protocol()
        if ledger is not None and open_protocol is not None:
            open_protocol = ledger.protocol(open_protocol)
        return nullcontext(
            InMemoryGrid(
                sites,
                open_protocol=open_protocol,
                on_site_done=self.callbacks.on_site,
                tamper=tamper,
                absences=absences,
            )
        )

    def _attack(self, experiment: Experiment) -> Tamper | None:
        """In an attacked experiment, what replaces malicious sites' updates before they are
        aggregated (securely or not); ``None`` otherwise or for data attacks."""
        attack = self.config.attack
        if not experiment.attacked or attack is None:
            return None
        from medfed.attacks.poisoning import UPDATE_ATTACKS, UpdateAttack

        return UpdateAttack(attack, seed=self.config.seed) if attack.kind in UPDATE_ATTACKS else None

    def _protected(self, experiment: Experiment) -> tuple[Experiment, Collect, SiteRecipe]:
        """A federated ``experiment`` with its strategy wrapped as the ``privacy:`` section says,
        how its rounds are gathered and how its sites are built, protected rounds included
        (``protect`` and ``site_protocol``, as in a deployment). A secure or encrypted round hands
        the loop one result, the aggregate, which counts towards ``min_sites`` as the number of
        sites in its sum. CKKS gets a fresh key pair per experiment."""
        recipe = SiteRecipe(
            self.config,
            self.model_params,
            experiment.strategy,
            attacked=experiment.attacked,
            hooks=self.hooks,
        )
        if experiment.kind != "federated":
            return experiment, train_in_clear, recipe
        privacy, federation = self.privacy, self.config.federation
        site_context, server_context = None, None
        if isinstance(privacy.secure_sum, CkksSettings):
            from medfed.privacy.ckks import new_key_pair, serialize_context  # imports TenSEAL

            sites_key, server_context = new_key_pair()
            site_context = serialize_context(sites_key, include_secret_key=True)
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
        recipe = replace(recipe, strategy=strategy, protected=True, ckks_context=site_context)
        return replace(experiment, strategy=strategy), collect, recipe

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
        final = result.state.round == self.config.federation.rounds
        metrics, cases = evaluate_cases(
            model,
            dataset,
            task=self.config.task,
            batch_size=self.config.training.batch_size,
            surface_distance=final,
        )
        if backdoor:
            metrics.update(self._backdoor_metrics(result.experiment, model, dataset))
        if final:  # per-case values for case counts and bootstrap intervals in the report
            case_ids = [case.case_id for case in self.data.evaluation_sets[site].cases]
            metrics.update(
                (case_metric(name, case_id), value)
                for name, values in cases.items()
                for case_id, value in zip(case_ids, values, strict=True)
            )
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


@dataclass(frozen=True)
class SiteRecipe:
    """How an experiment's simulated sites are built; it pickles, so that Ray actors build
    their sites from it (``medfed.orchestration.ray_grid.GridRecipe``).

    Attributes:
        config: The validated configuration.
        model_params: The model's constructor arguments (input shape included).
        strategy: The experiment's strategy, protected as configured (its site half runs here).
        attacked: Whether the configured attack applies to this experiment.
        protected: Whether the sites take part in secure aggregation or CKKS rounds.
        ckks_context: The sites' serialized secret-key CKKS context (CKKS rounds only).
        hooks: The researcher's own model, loss, augmentation or training step (pickled with
            cloudpickle for Ray: closures travel, open files and locks do not).
    """

    config: SimulationConfig
    model_params: Mapping[str, Any]
    strategy: Strategy
    attacked: bool = False
    protected: bool = False
    ckks_context: bytes | None = None
    hooks: SimulationHooks = field(default_factory=SimulationHooks)

    def site(
        self, name: str, data: SiteData, *, model: nn.Module, trainer: Trainer, state: SiteState | None
    ) -> LocalSite:
        """Site ``name`` training ``model`` on its ``data`` (poisoned under a data attack)."""
        config = self.config
        dataset: Dataset = site_dataset(
            config, self.model_params, data, training=True, transform=self.hooks.transform
        )
        attack = config.attack
        if self.attacked and attack is not None and name in attack.sites:
            from medfed.attacks.poisoning import DATA_ATTACKS, PoisonedDataset, num_output_classes

            if attack.kind in DATA_ATTACKS:
                classes = num_output_classes(model, dataset[0])
                dataset = PoisonedDataset(dataset, attack, num_classes=classes, seed=config.seed)
        return LocalSite(
            name, dataset, model=model, trainer=trainer, strategy=self.strategy, seed=config.seed, state=state
        )

    def open_protocol(self) -> OpenProtocol | None:
        """How a site opens its half of a protected round (``site_protocol``); ``None``: plain."""
        if not self.protected:
            return None
        context = None
        if self.ckks_context is not None:
            from medfed.privacy.ckks import deserialize_context  # imports TenSEAL: only when used

            context = deserialize_context(self.ckks_context)
        return site_protocol(self.config.privacy.plan(), site="simulated", ckks_context=context)

    def grid(self, sites: Mapping[str, SiteData], states: Mapping[str, SiteState]) -> InMemoryGrid:
        """``sites`` in one ``InMemoryGrid`` sharing one model and trainer (a Ray actor's sites)."""
        model = new_model(self.config, self.model_params, self.hooks)
        trainer = local_trainer(self.config, self.hooks)
        built = {
            name: self.site(name, data, model=model, trainer=trainer, state=states.get(name))
            for name, data in sites.items()
        }
        return InMemoryGrid(built, open_protocol=self.open_protocol())


def site_dataset(
    config: SimulationConfig,
    model_params: Mapping[str, Any],
    site: SiteData,
    *,
    training: bool,
    transform: Transform | None = None,
) -> CaseDataset:
    """The site's cases, preprocessed; augmented when training and configured, or by
    ``transform`` when given."""
    return build_dataset(
        site.cases,
        task=config.task,
        augment=training and (config.data.augment or transform is not None),
        seed=config.seed,
        site=site.name,
        preprocessing=config.preprocessing.settings(config.model),
        training=training,
        num_classes=int(model_params["out_channels"]) if config.task == "segmentation" else None,
        transform=transform,
    )


def new_model(
    config: SimulationConfig, params: Mapping[str, Any], hooks: SimulationHooks | None = None
) -> nn.Module:
    """The run's initial model (identical for every experiment; DP-compatible under DP-SGD),
    from ``hooks.model_fn`` when given."""
    if hooks is None or hooks.model_fn is None:
        model = build_model(config.model.name, dict(params), seed=config.seed)
    else:
        context = ModelContext(
            config.task, int(params["spatial_dims"]), int(params["in_channels"]), int(params["out_channels"])
        )
        model = hooks.build_model(context, seed=config.seed)
    return prepare_model(config.privacy.plan(), model)


def local_trainer(config: SimulationConfig, hooks: SimulationHooks | None = None) -> LocalTrainer:
    """The local trainer of a simulated site, without DP-SGD (with ``hooks``' loss and step)."""
    hooks = hooks or SimulationHooks()
    return LocalTrainer(
        task=config.task,
        settings=TrainSettings(**config.training.model_dump()),
        loss=hooks.loss_fn,
        step=hooks.train_step,
    )


def _consensus_state(state: PeerState) -> ServerState:
    """A peer-to-peer federation's shared model (the sites' consensus) as a server state."""
    return ServerState(state.round, consensus(state.models.values()))
