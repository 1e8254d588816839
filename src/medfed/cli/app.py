"""The typer application: ``medfed simulate`` and friends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from medfed.cli.attack import attack_app
from medfed.cli.deploy import client, provision, report, revoke, server, status
from medfed.errors import ConfigError, MedfedError

app = typer.Typer(
    help="medfed: federated learning on multi-institutional medical imaging.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
app.add_typer(attack_app, name="attack")


@app.callback()
def _root() -> None:
    """medfed: federated learning on multi-institutional medical imaging."""


@app.command()
def simulate(
    config: Annotated[
        Optional[Path],
        typer.Option("--config", "-c", help="YAML configuration; the built-in demo when omitted."),
    ] = None,
    resume: Annotated[
        Optional[Path],
        typer.Option(help="Continue the run in this directory after its last completed round."),
    ] = None,
    output_dir: Annotated[
        Optional[Path], typer.Option(help="Run directory (overrides the config's output_dir).")
    ] = None,
) -> None:
    """Simulate several hospitals in one process: federated strategies, the centralized baseline
    and local-only training, evaluated per site and on an unseen site."""
    from medfed.config.loading import load_config
    from medfed.orchestration.run_dir import resume_run
    from medfed.cli.progress import simulation_progress
    from medfed.simulate import run_simulation

    if resume is not None and (config is not None or output_dir is not None):
        raise typer.BadParameter("--resume takes the run's own config; drop --config/--output-dir")
    settings = resume_run(resume) if resume is not None else load_config(config)
    if output_dir is not None:
        settings = settings.model_copy(update={"output_dir": output_dir})
    with simulation_progress(console, settings.federation.rounds) as callbacks:
        outcome = run_simulation(settings, resume=resume is not None, callbacks=callbacks)
    table = Table(title="Results at the last round")
    for column in ("experiment", "own sites", "unseen site"):
        table.add_column(column)
    for row in outcome.summary:
        table.add_row(row.experiment, f"{row.own_sites:.3f}", f"{row.unseen:.3f}")
    console.print(table)
    console.print(f"Report: [bold]{outcome.report}[/bold]")


for _command in (provision, revoke, server, client, status, report):
    app.command()(_command)


@app.command()
def generate(
    output_dir: Annotated[Path, typer.Argument(help="Folder to write one MSD-layout folder per site into.")],
    family: Annotated[
        str, typer.Option(help="brain_lesion, skin_lesion, kidney_ct or brain_tumour_mpmri.")
    ] = "brain_lesion",
    image_size: Annotated[int, typer.Option(min=16, help="Pixels per side.")] = 64,
    dims: Annotated[Optional[int], typer.Option(min=2, max=3, help="2 or 3 (default: the family's).")] = None,
    cases_scale: Annotated[float, typer.Option(help="Multiplies every site's cases.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the generator.")] = 0,
) -> None:
    """Write a built-in multi-site data family to disk (brain_lesion: hospital_a..hospital_d),
    e.g. to feed `medfed client --data` in a local deployment."""
    from medfed.data import FAMILIES, family_sites, generate_federation

    try:
        sites = family_sites(family, cases_scale)
        chosen = dims or FAMILIES.create(family).dims[0]
        paths = generate_federation(sites, output_dir, image_size=image_size, dims=chosen, seed=seed)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    for site, path in paths.items():
        console.print(f"{site}: {path}")


def main() -> None:
    """Entry point: runs the app, turning medfed's own errors into one clear line and exit 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except MedfedError as error:
        # plain text on one line: a '[' in a path must not be taken for rich markup
        console.print(Text.assemble(("error:", "red"), f" {error}"), soft_wrap=True, highlight=False)
        raise SystemExit(2) from None
