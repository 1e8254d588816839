"""Rich progress bars for experiments, rounds and sites."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from medfed.orchestration.experiments import Experiment
from medfed.orchestration.simulation import Callbacks


@contextmanager
def simulation_progress(console: Console, rounds: int) -> Iterator[Callbacks]:
    """Callbacks that drive one bar for the current experiment's rounds and one for its sites."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    round_bar = progress.add_task("rounds", total=rounds)
    site_bar = progress.add_task("sites", total=1)

    def on_experiment(experiment: Experiment, done: int) -> None:
        progress.update(round_bar, description=f"{experiment.name}: rounds", completed=done)
        progress.update(site_bar, total=len(experiment.sites), completed=0)

    def on_round(round: int) -> None:
        progress.update(round_bar, completed=round)
        progress.update(site_bar, completed=0)

    def on_site(site: str) -> None:
        progress.update(site_bar, advance=1, description=f"sites ({site} done)")

    with progress:
        yield Callbacks(on_experiment=on_experiment, on_round=on_round, on_site=on_site)
