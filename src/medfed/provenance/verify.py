"""Finding and verifying the ledgers of a run: every copy checked, copies compared, a model
file matched against the models the ledger records.

Layout (a simulation run, or a deployment's state directory)::

    provenance/signers.json                      who may sign
    provenance/<experiment>/ledger.jsonl         the server's copy
    provenance/<experiment>/sites/<site>.jsonl   each site's copy
    provenance/<job>/peers/<peer>.jsonl          a networked peer's chains (``chains``)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medfed.provenance.chains import PEERS_DIR, ChainSet, check_inputs, load_chains
from medfed.provenance.digests import model_file_digest
from medfed.provenance.entries import Entry
from medfed.provenance.errors import LedgerError
from medfed.provenance.ledger import Ledger, divergence
from medfed.provenance.signers import load_signers

PROVENANCE_DIR, SIGNERS_FILE, LEDGER_FILE, COPIES_DIR = "provenance", "signers.json", "ledger.jsonl", "sites"


@dataclass(frozen=True)
class LedgerSet:
    """One ledger and the parties' copies of it, each loaded and checked."""

    ledger: Ledger
    copies: dict[str, Ledger]


def ledger_files(target: Path) -> list[Path]:
    """The ledger files ``target`` names: a run or state directory, one ledger's folder, or a
    ledger file.

    Raises:
        LedgerError: ``target`` holds no ledger.
    """
    if target.is_file():
        return [target]
    for root in (target / PROVENANCE_DIR, target):
        found = sorted(root.glob(f"*/{LEDGER_FILE}")) or sorted(root.glob(LEDGER_FILE))
        if found:
            return found
    raise LedgerError(str(target), None, "no provenance ledger here (a run directory or a ledger file?)")


def load_set(path: Path, *, signers: Path | None = None, crl: Path | None = None) -> LedgerSet:
    """The ledger at ``path`` and, for a server's ledger, the sites' copies next to it.

    Args:
        signers: The signer list (default: the nearest ``signers.json`` above ``path``).
        crl: A certificate revocation list whose serials are revoked.

    Raises:
        LedgerError: A copy fails a check (naming the copy, the entry and the reason).
    """
    known = load_signers(signers or _nearest_signers(path)).with_revocation_list(crl)
    ledger = Ledger(path, known)
    copies = {}
    if path.name == LEDGER_FILE:
        for copy in sorted((path.parent / COPIES_DIR).glob("*.jsonl")):
            copies[copy.stem] = Ledger(copy, known, name=f"{copy.stem}'s copy {copy}")
    return LedgerSet(ledger, copies)


def verify(target: Path, *, signers: Path | None = None, crl: Path | None = None) -> list[LedgerSet]:
    """Loads and checks every ledger under ``target`` and compares each with its copies.

    Raises:
        LedgerError: The first problem found: an entry that fails a check, or copies that
            diverge (a deleted last entry shows as a copy holding an entry the ledger lacks).
    """
    sets = [load_set(path, signers=signers, crl=crl) for path in ledger_files(target)]
    for found in sets:
        lines = divergence(found.ledger, found.copies)
        if lines:
            raise LedgerError(found.ledger.name, None, f"copies disagree: {'; '.join(lines)}")
    return sets


def chain_folders(target: Path) -> list[Path]:
    """The job ledger folders under ``target`` (a state directory, its ``provenance`` folder or
    one job's folder) that hold networked peers' chains."""
    found = [target] if (target / PEERS_DIR).is_dir() else []
    for root in (target / PROVENANCE_DIR, target):
        found += [folder.parent for folder in sorted(root.glob(f"*/{PEERS_DIR}")) if folder.is_dir()]
    return found


def verify_chains(target: Path, *, signers: Path | None = None, crl: Path | None = None) -> list[ChainSet]:
    """Loads and checks every peer chain under ``target`` (none: an empty list), and that each
    merge's inputs are updates in one of its job's chains (``chains.check_inputs``).

    Raises:
        LedgerError: The first problem found, naming the chain, the entry and the reason.
    """
    sets = []
    for folder in chain_folders(target):
        known = load_signers(signers or _nearest_signers(folder / PEERS_DIR)).with_revocation_list(crl)
        found = load_chains(folder, known)
        check_inputs(found.chains)
        sets.append(found)
    return sets


def recorded_model(sets: list[LedgerSet], model: Path) -> Entry:
    """The aggregate entry that records the model in the file ``model``.

    Raises:
        LedgerError: No ledger records a model with this file's digest.
    """
    digest = model_file_digest(model)
    for found in sets:
        for entry in found.ledger.entries:
            if entry.kind == "aggregate" and entry.digest == digest:
                return entry
    raise LedgerError(str(model), None, f"model digest {digest[:16]}... is not recorded in the ledger")


def _nearest_signers(path: Path) -> Path:
    for folder in list(path.parents)[:4]:
        if (folder / SIGNERS_FILE).is_file():
            return folder / SIGNERS_FILE
    raise LedgerError(str(path), None, f"no {SIGNERS_FILE} found above it: give --signers")
