"""``medfed simulate``: every experiment of a configuration, then the summary and the report."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medfed.config.schema import SimulationConfig
from medfed.orchestration.experiments import plan_experiments
from medfed.orchestration.federation_data import FederationData, prepare_data
from medfed.orchestration.run_dir import config_yaml, start_run
from medfed.orchestration.simulation import Callbacks, ExperimentResult, ExperimentRunner
from medfed.privacy.setup import privacy_warning
from medfed.report.html import write_report
from medfed.report.plots import SampleImage
from medfed.report.summary import PRIMARY_METRIC, SummaryRow, summarize, write_summary
from medfed.training import predict

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class SimulationOutcome:
    """Where a finished simulation left its results."""

    run_dir: Path
    report: Path
    summary: list[SummaryRow]


def run_simulation(
    config: SimulationConfig, *, resume: bool = False, callbacks: Callbacks | None = None
) -> SimulationOutcome:
    """Runs (or, with ``resume``, continues) every experiment of ``config`` and writes the
    summary and the HTML report into ``config.output_dir``."""
    warning = privacy_warning(config.privacy.plan())
    if warning is not None:
        logger.warning("%s", warning)
    run_dir = config.output_dir if resume else start_run(config)
    data = prepare_data(config.data, run_dir / "data", seed=config.seed)
    runner = ExperimentRunner(config, data, run_dir, callbacks)
    results = [runner.run(experiment) for experiment in plan_experiments(config, data)]
    kinds = {result.experiment.name: result.experiment.kind for result in results}
    metric = PRIMARY_METRIC[config.task]
    rows = runner.metrics.rows()
    summary = summarize(rows, kinds, task=config.task, unseen_site=config.data.unseen_site)
    write_summary(run_dir / "results.json", summary, metric=metric)
    samples = sample_predictions(runner, results[0], data) if config.task == "segmentation" else []
    report = run_dir / "report.html"
    write_report(
        report,
        title=f"medfed simulation: {run_dir.name}",
        rows=rows,
        summary=summary,
        metric=metric,
        unseen_site=config.data.unseen_site,
        samples=samples,
        config_yaml=config_yaml(config),
        warning=warning,
    )
    return SimulationOutcome(run_dir=run_dir, report=report, summary=summary)


def sample_predictions(
    runner: ExperimentRunner, result: ExperimentResult, data: FederationData
) -> list[SampleImage]:
    """For each held-out set, the case with the largest lesion, predicted by ``result``'s model."""
    model = runner.new_model()
    samples = []
    for site, site_data in data.evaluation_sets.items():
        case = max(site_data.cases, key=lambda c: 0 if c.mask is None else int(c.mask.sum()))
        if case.mask is None:
            continue
        model.load_state_dict(result.weights_for(site))
        item = runner.evaluation_sets[site][site_data.cases.index(case)]
        probabilities = predict(model, item["image"][None])[0]
        prediction = probabilities.argmax(dim=0).numpy()
        index = _largest_slice(case.mask[0])
        samples.append(
            SampleImage(
                site=site,
                case_id=case.case_id,
                image=_slice(item["image"][0].numpy(), index),
                truth=_slice(case.mask[0], index),
                prediction=_slice(prediction, index),
                model=result.experiment.name,
            )
        )
    return samples


def _largest_slice(mask: np.ndarray) -> int | None:
    """For a 3D mask (HWD), the depth index with the most foreground; ``None`` for 2D."""
    return None if mask.ndim == 2 else int(mask.reshape(-1, mask.shape[-1]).sum(axis=0).argmax())


def _slice(volume: np.ndarray, index: int | None) -> np.ndarray:
    return volume if index is None else volume[..., index]
