"""The Python API, for notebooks and scripts: ``medfed.simulate(config)`` runs what ``medfed
simulate`` runs and hands back the metrics as a pandas DataFrame and the models as plain
``nn.Module``s."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from medfed.config.loading import apply_override, load_config, parse_config
from medfed.config.schema import SimulationConfig
from medfed.data.dataset import Transform
from medfed.errors import ConfigError
from medfed.orchestration.hooks import ModelFn, SimulationHooks
from medfed.orchestration.metrics_log import MetricRow
from medfed.orchestration.simulation import Callbacks, ExperimentResult
from medfed.report.summary import PRIMARY_METRIC
from medfed.simulator import SimulationOutcome, run_simulation
from medfed.training.trainer import LossFn, StepFn

if TYPE_CHECKING:
    import pandas as pd

ConfigSource = SimulationConfig | Mapping[str, Any] | str | Path | None
"""A configuration: validated, a mapping of settings as in the YAML, a YAML file, or ``None``
for the built-in demo."""


@dataclass(frozen=True)
class SimulationResults:
    """What ``simulate`` hands back.

    Attributes:
        config: The resolved configuration (every default filled in).
        run_dir: The run directory (checkpoints, ``metrics.sqlite``, ``report.html``).
        report: The HTML report.
        metric: The primary metric: ``"dice"`` (segmentation) or ``"auc"`` (classification).
        metrics: One row per round, experiment, site, split, metric and seed; columns
            ``experiment, round, site, split, metric, value, seed``.
        summary: The last round's ``metric`` per experiment: columns ``experiment, kind,
            own_sites, unseen, unseen_adabn, own_sites_sd, unseen_sd, seeds`` and one per
            held-out site; over several seeds (``seeds:``) the scores are means over the seeds
            and ``*_sd`` their sample standard deviations (NaN with one seed).
        models: Each experiment's final global model, in eval mode on the CPU (the lowest
            seed's, over several seeds).
        site_models: Per experiment, each site's personalised model, for strategies whose
            sites keep part of the model (e.g. FedBN's normalisation layers); empty otherwise.
    """

    config: SimulationConfig
    run_dir: Path
    report: Path
    metric: str
    metrics: pd.DataFrame
    summary: pd.DataFrame
    models: dict[str, nn.Module]
    site_models: dict[str, dict[str, nn.Module]]


def simulate(
    config: ConfigSource = None,
    *,
    overwrite: bool = False,
    output_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    model_fn: ModelFn | None = None,
    loss_fn: LossFn | None = None,
    transform: Transform | None = None,
    train_step: StepFn | None = None,
    callbacks: Callbacks | None = None,
) -> SimulationResults:
    """Runs every experiment of ``config`` (federated strategies and baselines), once per seed
    of ``seeds`` when given, and writes the run directory, exactly as ``medfed simulate`` does.

    Args:
        config: A ``SimulationConfig``, a mapping of settings as in the YAML (e.g.
            ``{"federation": {"rounds": 3}}``), a YAML file, or ``None`` for the built-in demo.
        overwrite: Replace a run already in the output directory (its files only; anything
            else in the folder stays); without it such a run is refused.
        output_dir: The run directory, in place of the config's ``output_dir``.
        overrides: ``KEY=VALUE`` settings applied on top, as ``medfed simulate --set``.
        model_fn: Builds your network from a ``ModelContext`` (task, dims, channels, classes);
            called once per experiment under the run's seed.
        loss_fn: Your training loss ``(logits, labels) -> scalar``.
        transform: Your training augmentation, a dict transform over ``{"image", "label"}``
            (e.g. a MONAI ``Compose`` of ``*d`` transforms).
        train_step: Your batch loss ``(model, batch, loss_fn) -> scalar``; medfed still adds
            the strategy's terms, back-propagates and steps the optimiser.
        callbacks: Progress hooks (experiment started, round done, site done).

    Returns:
        The metrics, summary and models of the run.

    Raises:
        ConfigError: A setting or precondition is invalid (the previous run is then kept).
        CheckpointError: The output directory holds a run and ``overwrite`` is false.
        DataError: A site's data cannot be used.
    """
    settings = resolve_config(config, overrides)
    if output_dir is not None:
        settings = settings.model_copy(update={"output_dir": Path(output_dir)})
    hooks = SimulationHooks(model_fn=model_fn, loss_fn=loss_fn, transform=transform, train_step=train_step)
    outcome = run_simulation(settings, overwrite=overwrite, callbacks=callbacks, hooks=hooks)
    return _results(settings, outcome)


def resolve_config(config: ConfigSource, overrides: Sequence[str] = ()) -> SimulationConfig:
    """``config`` validated, with ``overrides`` applied.

    Raises:
        ConfigError: ``config`` has another type, or a setting is invalid (named).
    """
    if config is None or isinstance(config, str | Path):
        return load_config(None if config is None else Path(config), overrides)
    if isinstance(config, SimulationConfig):
        if not overrides:
            return config
        config = config.model_dump(mode="json")
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"config must be a SimulationConfig, a mapping, a YAML path or None, got {type(config).__name__}"
        )
    raw = copy.deepcopy(dict(config))  # the overrides edit a copy
    for override in overrides:
        apply_override(raw, override)
    return parse_config(raw, source="<mapping>")


def _results(config: SimulationConfig, outcome: SimulationOutcome) -> SimulationResults:
    import pandas as pd  # a runtime dependency, imported only when results are made

    columns = [field.name for field in fields(MetricRow)]
    summary = [
        {**{key: value for key, value in asdict(row).items() if key != "per_site"}, **row.per_site}
        for row in outcome.summary
    ]
    return SimulationResults(
        config=config,
        run_dir=outcome.run_dir,
        report=outcome.report,
        metric=PRIMARY_METRIC[config.task],
        metrics=pd.DataFrame([asdict(row) for row in outcome.rows], columns=columns),
        summary=pd.DataFrame(summary),
        models={
            result.experiment.name: _model(outcome, result.state.weights) for result in outcome.experiments
        },
        site_models={
            result.experiment.name: personalised
            for result in outcome.experiments
            if (personalised := _site_models(outcome, result))
        },
    )


def _site_models(outcome: SimulationOutcome, result: ExperimentResult) -> dict[str, nn.Module]:
    """Each site's model where it differs from the global one (the strategy personalises it)."""
    models = {}
    for site in result.sites:
        weights = result.weights_for(site)
        if any(not torch.equal(weights[key], value) for key, value in result.state.weights.items()):
            models[site] = _model(outcome, weights)
    return models


def _model(outcome: SimulationOutcome, weights: Mapping[str, torch.Tensor]) -> nn.Module:
    model = outcome.new_model()
    model.load_state_dict(weights)
    return model.cpu().eval()
