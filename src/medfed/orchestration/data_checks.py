"""The data checks of a study: run by ``medfed check-data``, and by ``medfed simulate`` before
its run directory exists. Every problem found is one line naming the site and the file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medfed.config.schema import SimulationConfig
from medfed.data.consistency import ModelInputs, held_out_problem, study_problems
from medfed.data.summary import SiteSummary, summarize_site
from medfed.errors import ConfigError, MedfedError, raise_problems
from medfed.orchestration.federation_data import FederationData, load_sites, split_sites

ONE_CASE_REMEDY = "or make it the unseen site (data.unseen_site)"


@dataclass(frozen=True)
class DataCheck:
    """What the checks found.

    Attributes:
        summaries: One per site that loaded, in configuration order.
        problems: Every problem, one line each; empty when the data can be used.
        data: The sites split for the run, or ``None`` when a problem stood in the way.
    """

    summaries: list[SiteSummary]
    problems: list[MedfedError]
    data: FederationData | None

    def passed(self) -> FederationData:
        """The split data, once no problem was found.

        Raises:
            MedfedError: The one problem found, or ``DataProblems`` listing several.
        """
        raise_problems(self.problems)
        assert self.data is not None  # no problem means the split was made
        return self.data


def check_study(config: SimulationConfig, data_dir: Path) -> DataCheck:
    """Loads every site of ``config`` and checks the sites against each other and the model.

    Args:
        config: The study.
        data_dir: Where the built-in data are generated, when configured.
    """
    sites, load_problems = load_sites(config.data, data_dir, seed=config.seed)
    problems: list[MedfedError] = [*load_problems]
    problems += study_problems(sites, task=config.task, model=model_inputs(config))
    for name, site in sites.items():
        problem = None if name == config.data.unseen_site else held_out_problem(site, ONE_CASE_REMEDY)
        if problem is not None:
            problems.append(problem)
    summaries = [summarize_site(site, config.task) for site in sites.values()]
    if problems:
        return DataCheck(summaries, problems, None)
    try:
        data = split_sites(config.data, sites, seed=config.seed)
    except ConfigError as error:
        return DataCheck(summaries, [error], None)
    return DataCheck(summaries, [], data)


def model_inputs(config: SimulationConfig) -> ModelInputs:
    """What ``model.params`` fixes of the model's input and output."""
    params = config.model.params
    dims = _integer(params.get("spatial_dims"))
    return ModelInputs(
        in_channels=_integer(params.get("in_channels")),
        spatial_dims=None if dims is None else dims + (config.model.slices is not None),  # of the images
        classes=_integer(params.get("out_channels")),
    )


def _integer(value: object) -> int | None:
    """``value`` when it is an integer (others are the model's own errors to report)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
