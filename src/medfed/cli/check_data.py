"""``medfed check-data``: each site's data in a table, and every problem as one plain line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from medfed.cli.lines import print_error

if TYPE_CHECKING:
    from medfed.data.summary import SiteSummary
    from medfed.errors import MedfedError
    from medfed.types import Task

console = Console()

COLUMNS = (
    "site",
    "cases",
    "patients",
    "channels",
    "dims",
    "size",
    "spacing (mm)",
    "stored as",
    "classes (fraction)",
)

SHOWN_SPACINGS = 3
"""Distinct spacings listed per site before the rest is counted."""


def check_data(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="The study's YAML (as for medfed simulate): every site."),
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a setting: KEY=VALUE (repeatable).")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="One site's folder (or .npz), as medfed client --data reads it.")
    ] = None,
    format: Annotated[
        str | None, typer.Option(help="With --data: msd, dicom, png or npz (default: detect).")
    ] = None,
    allow_identified: Annotated[
        bool,
        typer.Option(help="With --data: accept DICOM that still names its patient, as medfed client does."),
    ] = False,
    holdout: Annotated[
        float,
        typer.Option(min=0.0, max=0.95, help="With --data: the fraction medfed client --holdout keeps."),
    ] = 0.2,
) -> None:
    """Check a study's data (or one site's) before training: counts, sizes, spacings, channels and
    classes per site, and every problem as one line naming the site and the file. Exits 1 when a
    problem is found. medfed simulate and medfed client run the same checks first."""
    if data is not None and (config is not None or overrides):
        raise typer.BadParameter("give --config (a whole study) or --data (one site), not both")
    summaries, problems = (
        _check_site(data, format, holdout, allow_identified)
        if data is not None
        else _check_study(config, overrides)
    )
    if summaries:
        console.print(site_table(summaries))
    for problem in problems:
        print_error(console, str(problem))
    if problems:
        console.print(f"{len(problems)} problem(s) found", highlight=False)
        raise typer.Exit(1)
    console.print("no problems found", highlight=False)


def _check_study(
    config: Path | None, overrides: list[str] | None
) -> tuple[list[SiteSummary], list[MedfedError]]:
    """The summaries and problems of every site of the study (the built-in data generated in a
    temporary folder)."""
    import tempfile

    from medfed.config.loading import load_config
    from medfed.orchestration.data_checks import check_study
    from medfed.orchestration.preconditions import check_config

    settings = load_config(config, overrides or [])
    check_config(settings)
    with tempfile.TemporaryDirectory(prefix="medfed-check-data-") as folder:
        found = check_study(settings, Path(folder))
    return found.summaries, found.problems


def _check_site(
    path: Path, format: str | None, holdout: float, allow_identified: bool
) -> tuple[list[SiteSummary], list[MedfedError]]:
    """The summary and problems of one site's folder, as ``medfed client`` would load it."""
    from medfed.data.consistency import client_problems
    from medfed.data.loading import load_site
    from medfed.data.summary import summarize_site
    from medfed.errors import DataError, DataProblems

    try:
        site = load_site(path.name, path, format, allow_identified=allow_identified)
    except DataProblems as errors:  # one per bad case
        return [], errors.problems
    except DataError as error:
        return [], [error]
    task: Task = "segmentation" if site.cases[0].mask is not None else "classification"
    return [summarize_site(site, task)], [*client_problems(site, holdout)]


def site_table(summaries: Sequence[SiteSummary]) -> Table:
    """One row per site; every cell plain text (no rich markup from names or values)."""
    table = Table(title="Data per site")
    for column in COLUMNS:
        table.add_column(column)
    for summary in summaries:
        cells = (
            summary.name,
            str(summary.cases),
            str(summary.patients),
            str(summary.channels),
            f"{summary.dims}D",
            _sizes(summary.smallest, summary.largest),
            _spacings(summary.spacings),
            ", ".join(summary.orientations) or "-",
            ", ".join(f"{value}: {fraction:.1%}" for value, fraction in summary.classes.items()) or "-",
        )
        table.add_row(*(Text(cell) for cell in cells))
    return table


def _sizes(smallest: tuple[int, ...], largest: tuple[int, ...]) -> str:
    """``64x64`` when every case has that size, else ``48x40 .. 64x64`` (per-axis extremes)."""
    low, high = "x".join(map(str, smallest)), "x".join(map(str, largest))
    return low if low == high else f"{low} .. {high}"


def _spacings(spacings: tuple[tuple[float, ...], ...]) -> str:
    """The first distinct spacings, and how many there are in all; ``-`` when unknown."""
    if not spacings:
        return "-"
    shown = ", ".join("x".join(f"{value:g}" for value in spacing) for spacing in spacings[:SHOWN_SPACINGS])
    return shown if len(spacings) <= SHOWN_SPACINGS else f"{shown} ({len(spacings)} distinct)"
