"""``medfed attack``: privacy attacks that measure what medfed's defences protect."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from medfed.errors import MedfedError

if TYPE_CHECKING:
    from medfed.attacks import AttackConfig, AttackOutcome

attack_app = typer.Typer(
    help="Privacy attacks against a site's update (to measure the privacy defences).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


class LabelChoice(str, Enum):
    """Where the attacker's labels come from."""

    known = "known"
    idlg = "idlg"


@attack_app.command(
    "gradient-inversion",
    epilog="Examples:\n\n  medfed attack gradient-inversion --model convnet --dp-noise 0.01 --dp-noise 0.1 -o runs/attack",
)
def gradient_inversion(
    model: Annotated[
        str, typer.Option(help="Victim: convnet (no norm), convnet-gn, resnet, densenet (eval BN).")
    ] = "convnet",
    batch_size: Annotated[int, typer.Option(help="Images in the attacked site's batch.")] = 2,
    image_size: Annotated[int, typer.Option(help="Image side (multiple of 4, >= 16).")] = 32,
    iterations: Annotated[int, typer.Option(help="Attack optimisation steps per restart.")] = 500,
    restarts: Annotated[int, typer.Option(help="Random restarts; the best-loss one is kept.")] = 1,
    tv_weight: Annotated[float, typer.Option(help="Weight of the total-variation prior.")] = 0.1,
    learning_rate: Annotated[float, typer.Option(help="Adam step size on signed gradients.")] = 0.1,
    dp_noise: Annotated[
        list[float], typer.Option(help="DP noise multiplier sigma to measure (repeat the option).")
    ] = [0.001, 0.01, 0.1],  # noqa: B006 - typer needs a list default
    clip_norm: Annotated[float, typer.Option(help="DP clipping bound C on the update norm.")] = 1.0,
    secagg_sites: Annotated[int, typer.Option(help="Sites summed by secure aggregation (0 = skip).")] = 4,
    labels: Annotated[
        LabelChoice, typer.Option(help="known: given to the attacker; idlg: inferred (batch 1).")
    ] = LabelChoice.known,
    seed: Annotated[int, typer.Option(help="Seed of data, model, noise and attack.")] = 0,
    threads: Annotated[
        int, typer.Option(help="torch CPU threads; the tensors are tiny, so 1 is fast and robust.")
    ] = 1,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where the PNGs, results.json and report.html go.")
    ] = Path("runs/attack"),
    output_dir: Annotated[Path | None, typer.Option("--output-dir", hidden=True)] = None,
) -> None:
    """Reconstruct a site's training images from its update (Geiping et al. 2020) with no
    protection, with DP noise and with secure aggregation; report PSNR and SSIM."""
    from medfed.attacks import AttackConfig, InversionConfig, write_outputs

    try:
        config = AttackConfig(
            model=model,
            batch_size=batch_size,
            image_size=image_size,
            inversion=InversionConfig(
                iterations=iterations,
                learning_rate=learning_rate,
                tv_weight=tv_weight,
                restarts=restarts,
            ),
            noise_multipliers=tuple(dp_noise),
            clip_norm=clip_norm,
            secagg_sites=secagg_sites,
            labels=labels.value,
            seed=seed,
        )
    except MedfedError as error:
        raise typer.BadParameter(str(error)) from None
    if threads < 1:
        raise typer.BadParameter(f"threads must be >= 1, got {threads}")
    outcome = _run(config, threads=threads)
    files = write_outputs(outcome, output_dir or output)  # --output-dir: the old spelling, hidden
    console.print(results_table(outcome))
    console.print(f"Reconstructions: [bold]{files.images[0].parent}[/bold]")
    console.print(f"Report: [bold]{files.html}[/bold]")


def _run(config: AttackConfig, *, threads: int) -> AttackOutcome:
    """Runs the attack on ``threads`` torch threads, with a status line naming the scenario."""
    from medfed.attacks import Scenario, run_attack
    from medfed.device import torch_threads

    with torch_threads(threads), console.status("preparing the sites' updates") as status:

        def show(scenario: Scenario) -> None:
            status.update(f"attacking: {scenario.name} ({scenario.description})")

        return run_attack(config, on_scenario=show)


def results_table(outcome: AttackOutcome) -> Table:
    """A rich table of PSNR and SSIM per protection, with the random baseline last."""
    table = Table(title=f"Gradient inversion of {outcome.site}'s update ({outcome.config.model})")
    table.add_column("protection")
    table.add_column("attacker sees")
    for column in ("PSNR (dB)", "SSIM", "seconds"):
        table.add_column(column, justify="right")
    for result in outcome.results:
        table.add_row(
            result.scenario.name,
            result.scenario.description,
            f"{result.psnr:.2f}",
            f"{result.ssim:.3f}",
            f"{result.seconds:.1f}",
        )
    psnr, ssim = float(outcome.baseline.psnr.mean()), float(outcome.baseline.ssim.mean())
    table.add_row("random", "baseline: random images", f"{psnr:.2f}", f"{ssim:.3f}", "")
    return table
