"""Rich progress bars for experiments, rounds and sites."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from medfed.orchestration.experiments import Experiment
from medfed.orchestration.metrics_log import MetricRow
from medfed.orchestration.round_log import describe, round_figures
from medfed.orchestration.simulation import Callbacks


@contextmanager
def simulation_progress(
    console: Console, rounds: int, metric: str, clock: Callable[[], float] | None = None
) -> Iterator[Callbacks]:
    """Callbacks that drive one bar for the current experiment's rounds ("experiment k/N",
    after "seed s (k of n)" in a run of several seeds; elapsed time and ETA restarting with
    each experiment; the last round's figures) and one for its sites; ``clock`` (seconds) is
    rich's own when ``None``."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[last]}"),
        console=console,
        get_time=clock,
    )
    round_bar = progress.add_task("rounds", total=rounds, last="")
    site_bar = progress.add_task("sites", total=1, last="")
    names: list[str] = []
    seed_position = [""]

    def on_seed(seed: int, position: int, count: int) -> None:
        seed_position[0] = f"seed {seed} ({position} of {count}), "

    def on_plan(experiments: Sequence[Experiment]) -> None:
        names[:] = [experiment.name for experiment in experiments]

    def on_experiment(experiment: Experiment, done: int) -> None:
        position = (
            f"experiment {names.index(experiment.name) + 1}/{len(names)} " if experiment.name in names else ""
        )
        progress.reset(round_bar, total=rounds, completed=done, last="")  # restarts the timer
        progress.update(round_bar, description=f"{seed_position[0]}{position}{experiment.name}: rounds")
        progress.reset(site_bar, total=len(experiment.sites), completed=0)

    def on_recorded(experiment: str, round: int, rows: Sequence[MetricRow]) -> None:
        progress.update(round_bar, completed=round, last=describe(round_figures(rows, metric)))
        progress.reset(site_bar, completed=0, description="sites")

    def on_site(site: str) -> None:
        progress.update(site_bar, advance=1, description=f"sites ({site} done)")

    with progress:
        yield Callbacks(
            on_seed=on_seed,
            on_plan=on_plan,
            on_experiment=on_experiment,
            on_recorded=on_recorded,
            on_site=on_site,
        )
