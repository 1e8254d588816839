"""``medfed simulate``: every experiment of a configuration, then the summary and the report."""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from medfed.config.schema import SimulationConfig
from medfed.data.study_plan import StudyPlan, save_plan
from medfed.orchestration.data_checks import check_study
from medfed.orchestration.experiments import Experiment, plan_experiments
from medfed.orchestration.federation_data import FederationData
from medfed.orchestration.hooks import SimulationHooks
from medfed.orchestration.metrics_log import HELD_OUT, MetricRow, split_case_metric, write_csv
from medfed.orchestration.planning import study_plan
from medfed.orchestration.preconditions import check_config
from medfed.orchestration.round_log import RoundLog
from medfed.orchestration.run_dir import (
    CONFIG_FILE,
    check_new_run,
    clear_run,
    config_yaml,
    seed_dir,
    start_run,
)
from medfed.orchestration.simulation import Callbacks, ExperimentResult, ExperimentRunner, combine
from medfed.privacy.setup import privacy_warning
from medfed.provenance.history import run_contributions
from medfed.report.html import SimulationRun, write_report
from medfed.report.plots import Prediction, SampleImage
from medfed.report.settings import settings_yaml
from medfed.report.summary import (
    PRIMARY_METRIC,
    AttackRole,
    AttackRow,
    SummaryRow,
    attack_summary,
    pool_seeds,
    summarize,
    write_summary,
)
from medfed.strategies.robust import RobustAggregation
from medfed.tracking.trackers import check_trackers, flat_settings, open_trackers
from medfed.training import predict

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationOutcome:
    """Where a finished simulation left its results.

    Attributes:
        run_dir: The run directory.
        report: The HTML report.
        summary: The last round's primary metric per experiment (mean ± sd over seeds).
        attacks: Clean vs attacked vs defended, with an ``attack:`` section.
        rows: Every metric recorded, of every seed.
        experiments: Each experiment's final state (the lowest seed's, over several seeds).
        new_model: Builds the run's network (untrained), to load an experiment's weights into.
    """

    run_dir: Path
    report: Path
    summary: list[SummaryRow]
    attacks: list[AttackRow]
    rows: list[MetricRow]
    experiments: list[ExperimentResult]
    new_model: Callable[[], nn.Module]


def run_simulation(
    config: SimulationConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Callbacks | None = None,
    hooks: SimulationHooks | None = None,
) -> SimulationOutcome:
    """Runs (or, with ``resume``, continues) every experiment of ``config``, once per seed of
    ``seeds``, and writes the summary (mean ± sd over seeds) and the HTML report into
    ``config.output_dir`` (replacing a run there, once the preconditions hold, with
    ``overwrite``); ``hooks`` replace the model, loss, augmentation or training step."""
    warning = privacy_warning(config.privacy.plan())
    if warning is not None:
        logger.warning("%s", warning)
    runs = run_seeds(config, resume=resume, overwrite=overwrite, callbacks=callbacks, hooks=hooks)
    reference = next(run for run in runs if run.config.seed == config.seed)  # the lowest seed
    run_dir = config.output_dir
    metric = PRIMARY_METRIC[config.task]
    rows, summary = _summaries(config, runs, reference)
    attacks = _attack_rows(config, reference.results, rows, summary)
    samples = (
        sample_predictions(reference.runner, reference.results, reference.data, reference.rows())
        if config.task == "segmentation"
        else []
    )
    report = run_dir / "report.html"
    shown = reference.config if len(runs) == 1 else reference.config.model_copy(update=_seeds_of(config))
    run = SimulationRun(
        title=f"medfed simulation: {run_dir.name}",
        summary=summary,
        unseen_site=config.data.unseen_site,
        samples=samples,
        config_yaml=settings_yaml(shown),
        warning=warning,
        attacks=attacks,
        plan=_plan_rows(reference.config, reference.plan),
        contributions=run_contributions(reference.runner.run_dir),
    )
    write_report(report, rows=rows, metric=metric, run=run)
    return SimulationOutcome(
        run_dir=run_dir,
        report=report,
        summary=summary,
        attacks=attacks,
        rows=rows,
        experiments=reference.results,
        new_model=reference.runner.new_model,
    )


def _summaries(
    config: SimulationConfig, runs: list[SeedRun], reference: SeedRun
) -> tuple[list[MetricRow], list[SummaryRow]]:
    """Every seed's metric rows and the summary pooled over the seeds (``pool_seeds``), written
    to ``results.json``; over several seeds, each seed's own summary too, into its run
    directory, and every row into ``metrics.csv``."""
    metric = PRIMARY_METRIC[config.task]
    kinds = {result.experiment.name: result.experiment.kind for result in reference.results}
    per_seed = [run.rows() for run in runs]
    rows = [row for seed_rows in per_seed for row in seed_rows]
    summaries = [
        summarize(seed_rows, kinds, task=config.task, unseen_site=config.data.unseen_site)
        for seed_rows in per_seed
    ]
    summary = pool_seeds(summaries)
    write_summary(config.output_dir / "results.json", summary, metric=metric)
    if len(runs) > 1:
        for run, seed_summary in zip(runs, summaries, strict=True):
            write_summary(run.runner.run_dir / "results.json", seed_summary, metric=metric)
        write_csv(config.output_dir / "metrics.csv", rows)
    return rows, summary


@dataclass(frozen=True)
class SeedRun:
    """Every experiment of a configuration run under one seed.

    Attributes:
        config: The configuration of this seed's run (``seed`` set, study plan applied).
        data: Its data, split under its seed.
        plan: Its study plan.
        runner: The runner, with the run's directory and metrics log.
        results: Each experiment's final state, in order.
    """

    config: SimulationConfig
    data: FederationData
    plan: StudyPlan
    runner: ExperimentRunner
    results: list[ExperimentResult]

    def rows(self) -> list[MetricRow]:
        """Every metric row of the run (each with the run's seed)."""
        return self.runner.metrics.rows()


def run_seeds(
    config: SimulationConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Callbacks | None = None,
    hooks: SimulationHooks | None = None,
) -> list[SeedRun]:
    """Every experiment of ``config`` once per seed (``run_seeds()``): one seed in
    ``config.output_dir`` itself; several each in their own run directory (``seed_dir``), after
    the output directory's ``config.yaml`` (written once the first seed's data pass their
    checks). With ``resume``, a seed's run already started continues after its last round (its
    finished experiments are not run again) and the others start."""
    hooks = hooks or SimulationHooks()
    seeds = config.run_seeds()
    if config.seeds is None:
        checked = checked_data(
            config,
            config.output_dir / "data",
            resume=resume,
            overwrite=overwrite,
            own_model=hooks.model_fn is not None,
        )
        return [_run_seed(*checked, resume=resume, callbacks=callbacks, hooks=hooks)]
    if hooks.model_fn is None:
        check_config(config)
    check_trackers(config.tracking)
    if overwrite:
        clear_run(config.output_dir)
    elif not resume:
        check_new_run(config.output_dir)
    runs = []
    for index, seed in enumerate(seeds):
        folder = seed_dir(config.output_dir, seed)
        started = resume and (folder / CONFIG_FILE).is_file()
        logger.info("seed %d (%d/%d): %s", seed, index + 1, len(seeds), folder)
        if callbacks is not None and callbacks.on_seed is not None:
            callbacks.on_seed(seed, index + 1, len(seeds))
        one = config.model_copy(update={"seed": seed, "seeds": None, "output_dir": folder})
        checked = checked_data(one, folder / "data", resume=started, own_model=hooks.model_fn is not None)
        if index == 0 and not resume:
            start_run(config)
        runs.append(_run_seed(*checked, resume=started, callbacks=callbacks, hooks=hooks))
    return runs


def _run_seed(
    config: SimulationConfig,
    data: FederationData,
    plan: StudyPlan,
    *,
    resume: bool,
    callbacks: Callbacks | None,
    hooks: SimulationHooks,
) -> SeedRun:
    """Every experiment of ``config`` (one seed, checked by ``checked_data``) in its
    ``output_dir``, started afresh or, with ``resume``, continued."""
    run_dir = config.output_dir if resume else start_run(config)
    save_plan(plan, run_dir)
    metric = PRIMARY_METRIC[config.task]
    trackers = open_trackers(config.tracking, run_dir, flat_settings(config.model_dump(mode="json")))
    told = combine(
        callbacks or Callbacks(),
        RoundLog(metric, config.federation.rounds).callbacks(),
        *[tracker.callbacks() for tracker in trackers],
    )
    runner = ExperimentRunner(config, data, run_dir, told, hooks)
    try:
        results = run_experiments(runner, plan_experiments(config, data), told)
    finally:
        for tracker in trackers:
            tracker.close()
    return SeedRun(config, data, plan, runner, results)


def _seeds_of(config: SimulationConfig) -> dict[str, object]:
    """What a seed's configuration takes back from a run of several seeds, to be shown as it."""
    return {"seed": config.seed, "seeds": config.seeds, "output_dir": config.output_dir}


def run_experiments(
    runner: ExperimentRunner, experiments: list[Experiment], callbacks: Callbacks
) -> list[ExperimentResult]:
    """Runs ``experiments`` in order, telling ``callbacks`` of the plan and of each end."""
    if callbacks.on_plan is not None:
        callbacks.on_plan(experiments)
    results = []
    for experiment in experiments:
        results.append(runner.run(experiment))
        if callbacks.on_experiment_end is not None:
            callbacks.on_experiment_end(experiment)
    return results


def _attack_rows(
    config: SimulationConfig,
    results: list[ExperimentResult],
    rows: list[MetricRow],
    summary: list[SummaryRow],
) -> list[AttackRow]:
    """Clean vs attacked vs defended, when the configuration has an ``attack:`` section."""
    if config.attack is None:
        return []
    from medfed.attacks.poisoning import BACKDOOR_METRIC

    roles: dict[str, AttackRole] = {}
    for result in results:
        experiment = result.experiment
        if experiment.kind == "federated":
            robust = isinstance(experiment.strategy, RobustAggregation)
            roles[experiment.name] = (
                "clean" if not experiment.attacked else "defended" if robust else "attacked"
            )
    return attack_summary(rows, summary, roles, backdoor_metric=BACKDOOR_METRIC)


def checked_data(
    config: SimulationConfig,
    data_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    own_model: bool = False,
) -> tuple[SimulationConfig, FederationData, StudyPlan]:
    """The run's data, loaded and checked, its study plan, and ``config`` with the plan applied
    (``preprocessing.plan: auto``), all before anything is written (``check_study``;
    ``data_dir`` receives the built-in data when configured). A run already in the output
    directory is refused, or deleted with ``overwrite``; with ``own_model`` (a ``model_fn``) the
    checks of the configured network are skipped.

    Raises:
        ConfigError: A precondition fails.
        MedfedError: The data have one problem (``DataProblems``: several, one line each), or
            sites disagree in channels or dimensionality.
    """
    if not own_model:
        check_config(config)
    check_trackers(config.tracking)
    if overwrite:
        clear_run(config.output_dir)
    elif not resume:
        check_new_run(config.output_dir)
    data = check_study(config, data_dir).passed()
    plan = study_plan(config, data)
    planned = config.model_copy(update={"preprocessing": config.preprocessing.planned(plan)})
    planned.preprocessing.settings(planned.model)
    return planned, data, plan


def _plan_rows(config: SimulationConfig, plan: StudyPlan) -> list[tuple[str, str]]:
    """The plan's report lines, and whether it was applied."""
    applied = (
        "yes (preprocessing.plan: auto; explicit preprocessing keys override it)"
        if config.preprocessing.plan == "auto"
        else "no (preprocessing.plan: manual; the preprocessing section applies)"
    )
    return [("applied", applied), *plan.rows()]


def dry_run(config: SimulationConfig) -> str:
    """What ``medfed simulate --dry-run`` prints: the preconditions and data checked (the
    built-in data generated in a temporary folder), the sites' cases and the resolved YAML.
    Nothing is trained and no run directory is created.

    Raises:
        ConfigError: A precondition fails.
        DataError: A site's data cannot be used.
    """
    with tempfile.TemporaryDirectory(prefix="medfed-dry-run-") as folder:
        config, data, plan = checked_data(config, Path(folder))
    lines = [f"# {name}: {len(site.cases)} training cases" for name, site in data.train.items()]
    lines += [f"# {name}: {len(site.cases)} held-out cases" for name, site in data.evaluation_sets.items()]
    channels, dims = data.spatial_shape()
    lines.append(f"# images: {channels} channel(s), {dims}D, first {list(data.image_shape())}")
    lines.append(f"# experiments: {[experiment.name for experiment in plan_experiments(config, data)]}")
    if config.seeds is not None:
        folders = [str(seed_dir(config.output_dir, seed)) for seed in config.seeds]
        lines.append(f"# seeds: {config.seeds}, run in {folders} (the cases above: seed {config.seed})")
    lines += [f"# study plan, {what}: {value}" for what, value in _plan_rows(config, plan)]
    return "\n".join([*lines, config_yaml(config)])


def sample_predictions(
    runner: ExperimentRunner, results: list[ExperimentResult], data: FederationData, rows: list[MetricRow]
) -> list[SampleImage]:
    """For each held-out set, the case with the largest lesion, predicted by every model the
    site would compare (``_compared_at``), each with the case's Dice from the final-round
    per-case ``rows``; for 3D, on the axial slice with the most foreground."""
    model = runner.new_model()
    dice = _final_case_scores(rows, "dice")
    samples = []
    for site, site_data in data.evaluation_sets.items():
        case = max(site_data.cases, key=lambda c: 0 if c.mask is None else int(c.mask.sum()))
        if case.mask is None:
            continue
        dataset = runner.evaluation_sets[site]
        item = dataset[site_data.cases.index(case)]
        mask = item["label"][0].numpy()  # on the preprocessed grid, like the image
        index = _largest_slice(mask)
        predictions = []
        for result in _compared_at(results, site, unseen=site == runner.config.data.unseen_site):
            model.load_state_dict(result.weights_for(site))
            probabilities = predict(model, item["image"][None], inferer=dataset.inferer)[0]
            name = result.experiment.name
            score = dice.get((name, site, case.case_id), math.nan)
            predicted = _slice(probabilities.argmax(dim=0).numpy(), index)
            predictions.append(Prediction(name, predicted, score, result.experiment.kind))
        image = _slice(item["image"][0].numpy(), index)
        samples.append(SampleImage(site, case.case_id, image, _slice(mask, index), tuple(predictions), index))
    return samples


def _compared_at(results: list[ExperimentResult], site: str, *, unseen: bool) -> list[ExperimentResult]:
    """The models ``site`` would compare: every federated and centralized one, and the
    local-only one trained at ``site`` (at the unseen site, every local-only one)."""
    return [
        result
        for result in results
        if result.experiment.kind != "local" or unseen or site in result.experiment.sites
    ]


def _final_case_scores(rows: list[MetricRow], metric: str) -> dict[tuple[str, str, str], float]:
    """``(experiment, site, case_id) -> value`` of the per-case ``metric`` rows on held-out
    splits, at the latest round that has them."""
    latest: dict[tuple[str, str, str], tuple[int, float]] = {}
    for row in rows:
        parsed = split_case_metric(row.metric)
        if parsed is not None and parsed[0] == metric and row.split in HELD_OUT:
            key = (row.experiment, row.site, parsed[1])
            if row.round >= latest.get(key, (-1, 0.0))[0]:
                latest[key] = (row.round, row.value)
    return {key: value for key, (_, value) in latest.items()}


def _largest_slice(mask: np.ndarray) -> int | None:
    """For a 3D mask (HWD), the depth index with the most foreground; ``None`` for 2D."""
    return None if mask.ndim == 2 else int(mask.reshape(-1, mask.shape[-1]).sum(axis=0).argmax())


def _slice(volume: np.ndarray, index: int | None) -> np.ndarray:
    return volume if index is None else volume[..., index]
