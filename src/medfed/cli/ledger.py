"""``medfed ledger``: verify and list the provenance ledger of a run (docs/provenance.md)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

ledger_app = typer.Typer(
    help="The provenance ledger: who contributed what to each model, signed and hash-chained.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()

if TYPE_CHECKING:
    from medfed.provenance import Ledger

Target = Annotated[
    Path, typer.Argument(help="A run (or deployment state) directory, a ledger folder or a ledger file.")
]
SignersOption = Annotated[
    Path | None, typer.Option(help="The signer list (default: the nearest signers.json above the ledger).")
]
CrlOption = Annotated[
    Path | None, typer.Option(help="A certificate revocation list (crl.pem): its serials are revoked.")
]


@ledger_app.command(
    epilog="Examples:\n\n  medfed ledger verify runs/demo\n\n"
    "  medfed ledger verify runs/demo --model runs/demo/checkpoints/fedavg/round_0006.safetensors\n\n"
    "  medfed ledger verify state/provenance/job/ledger.jsonl --crl kits/ca/crl.pem"
)
def verify(
    target: Target,
    model: Annotated[
        Path | None,
        typer.Option(help="A model file (checkpoint or state dict) whose digest must be recorded."),
    ] = None,
    signers: SignersOption = None,
    crl: CrlOption = None,
) -> None:
    """Check every entry (chain, position, signer, signature, inputs), compare the sites' copies
    (a networked peer's state: check every peer's chain, and that each merge's inputs are in one),
    and with --model check that the ledger records that model. A failure is one error line naming
    the entry and the reason, and exit status 2."""
    from medfed.provenance.verify import recorded_model, verify_chains
    from medfed.provenance.verify import verify as verify_ledgers

    chain_sets = verify_chains(target, signers=signers, crl=crl)
    for found_chains in chain_sets:
        console.print(
            f"ok: {found_chains.folder}: peer chains "
            + ", ".join(f"{peer} ({len(chain)} entries)" for peer, chain in found_chains.chains.items())
            + "; every merge's inputs are recorded",
            highlight=False,
            soft_wrap=True,
        )
    sets = [] if chain_sets else verify_ledgers(target, signers=signers, crl=crl)
    for found in sets:
        ledger = found.ledger
        console.print(
            f"ok: {ledger.name}: {len(ledger)} entries, head {ledger.head()[:16]}, "
            f"{len(found.copies)} site copies agree",
            highlight=False,
            soft_wrap=True,
        )
    if model is not None:
        entry = recorded_model(sets, model)
        console.print(
            f"ok: {model} is the model of round {entry.round} (entry {entry.index})",
            highlight=False,
            soft_wrap=True,
        )


@ledger_app.command(
    epilog="Examples:\n\n  medfed ledger show runs/demo\n\n  medfed ledger show runs/demo/provenance/fedavg/sites/hospital_a.jsonl"
)
def show(target: Target, signers: SignersOption = None, crl: CrlOption = None) -> None:
    """List the history: one row per entry (checked as by verify); a networked peer's state
    lists each peer chain."""
    from medfed.provenance.verify import ledger_files, load_set, verify_chains

    chain_sets = verify_chains(target, signers=signers, crl=crl)
    for found in chain_sets:
        for chain in found.chains.values():
            _print_entries(chain)
    if not chain_sets:
        for path in ledger_files(target):
            _print_entries(load_set(path, signers=signers, crl=crl).ledger)


def _print_entries(ledger: Ledger) -> None:
    table = Table(title=ledger.name, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in ("#", "round", "signer", "kind", "digest", "samples"):
        table.add_column(column, no_wrap=True)
    for column in ("privacy", "metrics"):
        table.add_column(column, overflow="fold")
    for entry in ledger.entries:
        kind = f"aggregate ({len(entry.inputs)})" if entry.kind == "aggregate" else entry.kind
        table.add_row(
            str(entry.index),
            str(entry.round),
            entry.signer,
            kind,
            entry.digest[:8],
            str(entry.num_samples),
            _numbers(entry.privacy),
            _numbers(entry.metrics),
        )
    console.print(table)


def _numbers(values: Mapping[str, float]) -> str:
    return "\n".join(f"{name}={value:.3g}" for name, value in sorted(values.items()))
