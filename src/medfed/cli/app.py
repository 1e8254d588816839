"""The typer application: ``medfed simulate`` and friends."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from medfed import __version__
from medfed.cli.attack import attack_app
from medfed.cli.check_data import check_data
from medfed.cli.deploy import client, peer, provision, report, revoke, server, status
from medfed.cli.ledger import ledger_app
from medfed.cli.lines import print_error
from medfed.errors import ConfigError, DataProblems, MedfedError
from medfed.export import ExportFormat

app = typer.Typer(
    help="medfed: federated learning on multi-institutional medical imaging.",
    invoke_without_command=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
app.add_typer(attack_app, name="attack")
app.add_typer(ledger_app, name="ledger")

EXAMPLES = {
    "simulate": """medfed simulate                                   # the built-in demo
medfed simulate -c configs/dp_adaptive.yaml -o runs/dp
medfed simulate --set federation.rounds=3 --set strategies.0.name=fedbn
medfed simulate -c my.yaml --dry-run              # config and data checks, no training
medfed simulate -c my.yaml --threads 4 > run.log   # one log line per round in run.log
medfed simulate --resume runs/demo""",
    "export": """medfed export runs/demo --format monai-bundle -o bundles/fedavg
medfed export runs/demo --experiment fedprox --round 6 --format state_dict -o fedprox.safetensors
medfed export runs/fedbn --site hospital_a --format torchscript -o hospital_a.ts""",
    "predict": """medfed predict -m runs/demo -i patient.nii.gz -o predictions/
medfed predict -m runs/demo -i dicom/series_dir -o predictions/     # NIfTI and DICOM SEG
medfed predict -m runs/fedbn --site hospital_a -i scans/ -o predictions/""",
    "deid": """medfed deid raw/ -o site_data/ --table private/pseudonyms.csv
medfed deid raw/ -o site_data/ --table private/pseudonyms.csv --audit private/audit.csv""",
    "generate": "medfed generate data/ --image-size 64 --dims 2",
    "check-data": """medfed check-data -c my.yaml                      # every site of a study
medfed check-data --data /data/hospital_a          # one site, as medfed client reads it""",
    "provision": "medfed provision project.yaml -o kits",
    "revoke": "medfed revoke hospital_b --kits kits",
    "server": """medfed server --kit kits/server --job job.yaml --state-dir state
medfed server --kit kits/server --job job.yaml --state-dir state --set federation.rounds=30
medfed server --job job.yaml --state-dir state --set strategy.name=fedprox --dry-run""",
    "client": "medfed client --kit kits/hospital_a --data data/hospital_a --epsilon 8",
    "peer": "medfed peer --kit kits/hospital_a --job p2p.yaml --data data/hospital_a --peers peers.yaml",
    "status": "medfed status --state-dir state",
    "report": "medfed report --state-dir state",
}


METRIC_LABELS = {"dice": "Dice", "auc": "AUC"}
"""How the final table names the primary metric."""


def _epilog(command: str) -> str:
    """An "Examples:" block (each line kept as written by rich help)."""
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in EXAMPLES[command].splitlines())


def _show_version(value: bool) -> None:
    if value:
        console.print(f"medfed {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    context: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """medfed: federated learning on multi-institutional medical imaging."""
    if context.invoked_subcommand is None:
        console.print(context.get_help())


@app.command(epilog=_epilog("simulate"))
def simulate(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML configuration; the built-in demo when omitted."),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue the run in this directory after its last completed round."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Run directory (overrides the config's output_dir)."),
    ] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", hidden=True)] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a setting: KEY=VALUE, a dotted path into the YAML (repeatable)."
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Check the configuration and the data, print the resolved YAML; train nothing."
        ),
    ] = False,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch CPU threads (default: torch's choice).")
    ] = None,
) -> None:
    """Simulate several hospitals in one process: federated strategies, the centralized baseline
    and local-only training, evaluated per site and on an unseen site."""
    from medfed.cli.progress import simulation_progress
    from medfed.config.loading import load_config
    from medfed.device import torch_threads
    from medfed.orchestration.round_log import logger as round_logger
    from medfed.orchestration.run_dir import resume_run
    from medfed.report.summary import PRIMARY_METRIC
    from medfed.report.tables import number
    from medfed.simulator import dry_run as check_only
    from medfed.simulator import run_simulation

    output = output or output_dir  # --output-dir: the old spelling, kept hidden
    if resume is not None and (config is not None or output is not None or overrides or dry_run):
        raise typer.BadParameter(
            "--resume takes the run's own config; drop --config/--output/--set/--dry-run"
        )
    settings = resume_run(resume) if resume is not None else load_config(config, overrides or [])
    if output is not None:
        settings = settings.model_copy(update={"output_dir": output})
    if dry_run:
        print(check_only(settings))
        return
    round_logger.setLevel(logging.INFO)  # a line per round: the progress a log file shows
    logging.getLogger("medfed.simulator").setLevel(logging.INFO)  # a line per seed (seeds:)
    metric = PRIMARY_METRIC[settings.task]
    with (
        torch_threads(threads),
        simulation_progress(console, settings.federation.rounds, metric) as callbacks,
    ):
        outcome = run_simulation(settings, resume=resume is not None, callbacks=callbacks)
    label = METRIC_LABELS.get(metric, metric)
    seeds = len(settings.run_seeds())
    over = f", mean ± sd over {seeds} seeds" if seeds > 1 else ""
    table = Table(title=f"{label} at the last round{over}")
    for column in ("experiment", f"{label}, own sites", f"{label}, unseen site"):
        table.add_column(column)
    for row in outcome.summary:
        own, unseen = number(row.own_sites, row.own_sites_sd), number(row.unseen, row.unseen_sd)
        table.add_row(row.experiment, own, unseen)
    console.print(table)
    console.print(f"Report: [bold]{outcome.report}[/bold]")


for _command in (provision, revoke, server, client, peer, status, report):
    app.command(epilog=_epilog(_command.__name__))(_command)
app.command(name="check-data", epilog=_epilog("check-data"))(check_data)


# Which trained model ``export`` and ``predict`` load (``load_trained_model``).
ExperimentOption = Annotated[
    str | None, typer.Option(help="Experiment (checkpoint folder); default: the first strategy.")
]
RoundOption = Annotated[int | None, typer.Option(min=1, help="Round; default: the last one kept.")]
SiteModelOption = Annotated[
    str | None, typer.Option(help="A site's personalised model (e.g. FedBN's own norm layers).")
]


@app.command(epilog=_epilog("export"))
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory of medfed simulate.")],
    format: Annotated[ExportFormat, typer.Option("--format", "-f", help="What to write.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The file (a folder for monai-bundle) to create.")
    ],
    experiment: ExperimentOption = None,
    round: RoundOption = None,
    site: SiteModelOption = None,
) -> None:
    """Export a trained model for use without medfed: a safetensors state dict, TorchScript, or a
    MONAI bundle (configs/metadata.json, configs/inference.json, models/model.pt)."""
    from medfed.export.model import export_model, load_trained_model

    model = load_trained_model(run_dir, experiment=experiment, round=round, site=site)
    written = export_model(model, format, output)
    console.print(f"{model.description}: [bold]{written}[/bold]")


@app.command(epilog=_epilog("predict"))
def predict(
    model: Annotated[
        Path,
        typer.Option("--model", "-m", help="A run directory of medfed simulate, or a server's --state-dir."),
    ],
    input: Annotated[
        Path,
        typer.Option(
            "--input", "-i", help="A NIfTI or PNG file, a DICOM series folder, or a folder of them."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write the predictions to.")],
    experiment: ExperimentOption = None,
    round: RoundOption = None,
    site: SiteModelOption = None,
) -> None:
    """Segment or classify new scans with a trained model: the run's preprocessing, sliding-window
    inference, and each segmentation written in its scan's own geometry (NIfTI with the scan's
    affine; DICOM SEG referencing the source series; PNG); classes and probabilities as CSV."""
    from medfed.export.model import load_trained_model
    from medfed.inference.run import predict_path

    trained = load_trained_model(model, experiment=experiment, round=round, site=site)
    for written in predict_path(trained, input, output):
        console.print(Text(f"{written.scan}: {', '.join(str(file) for file in written.files)}"))


@app.command(epilog=_epilog("deid"))
def deid(
    source: Annotated[Path, typer.Argument(help="Folder of DICOM files (any depth, any extension).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder to write the de-identified series to.")
    ],
    table: Annotated[
        Path,
        typer.Option(help="Pseudonym table (CSV, mode 0600), outside --output; reused when it exists."),
    ],
    audit: Annotated[
        Path | None, typer.Option(help="CSV of every attribute removed or replaced, per file (no values).")
    ] = None,
) -> None:
    """De-identify a site's DICOM before training: names and IDs pseudonymised, UIDs remapped
    consistently, dates shifted per patient, free text and private attributes removed, burned-in
    text flagged. The pseudonym table re-identifies patients: it never leaves the site."""
    from medfed.deid.dicom import deidentify, write_audit

    report = deidentify(source, output, table)
    if audit is not None:
        write_audit(report, audit)
    for path in report.burned_in:
        console.print(
            Text(f"warning: {path}: pixels may carry burned-in text; check it (PatientIdentityRemoved NO)"),
            style="yellow",
        )
    console.print(
        Text(
            f"{len(report.written)} DICOM files of {len(report.patients)} patient(s) written to {output}; "
            f"{len(report.skipped)} other file(s) not copied; pseudonyms in {table}"
        )
    )


@app.command(epilog=_epilog("generate"))
def generate(
    output_dir: Annotated[Path, typer.Argument(help="Folder to write one MSD-layout folder per site into.")],
    family: Annotated[
        str, typer.Option(help="brain_lesion, skin_lesion, kidney_ct or brain_tumour_mpmri.")
    ] = "brain_lesion",
    image_size: Annotated[int, typer.Option(min=16, help="Pixels per side.")] = 64,
    dims: Annotated[int | None, typer.Option(min=2, max=3, help="2 or 3 (default: the family's).")] = None,
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
    """Entry point: runs the app; medfed's own errors and command-line mistakes alike end as one
    ``error: ...`` line with exit status 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        status = app(prog_name="medfed", standalone_mode=False)
    except DataProblems as problems:
        _fail(*(str(problem) for problem in problems.problems))
    except MedfedError as error:
        _fail(str(error))
    except typer.TyperException as error:  # a command-line mistake (click's UsageError and kin)
        context = getattr(error, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        _fail(error.format_message() + hint)
    except typer.Abort:
        _fail("aborted")
    sys.exit(status if isinstance(status, int) else 0)


def _fail(*messages: str) -> None:
    """Prints one ``error: message`` line per message and exits 2."""
    for message in messages:
        print_error(console, message)
    raise SystemExit(2)
