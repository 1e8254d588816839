"""Each site's contribution history, read from verified ledgers (for the run's report)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from medfed.provenance.entries import Entry
from medfed.provenance.verify import PROVENANCE_DIR, verify


@dataclass(frozen=True)
class Contribution:
    """What one party contributed to one experiment's models, as its ledger records it.

    Attributes:
        experiment: The experiment (the ledger's folder).
        site: The signer of the updates.
        rounds: The rounds it sent an update in.
        samples: Its declared sample count, summed over those rounds.
        epsilon: The privacy it had spent at its last update (NaN when it reports none).
    """

    experiment: str
    site: str
    rounds: tuple[int, ...]
    samples: int
    epsilon: float


def run_contributions(run_dir: Path) -> list[Contribution]:
    """Every site's contributions in every ledger of the run (none when it kept no ledger).

    Raises:
        LedgerError: A ledger or a site's copy fails verification.
    """
    if not (run_dir / PROVENANCE_DIR).is_dir():
        return []
    rows = []
    for found in verify(run_dir):
        experiment = found.ledger.path.parent.name
        updates: dict[str, list[Entry]] = {}
        for entry in found.ledger.entries:
            if entry.kind == "update":
                updates.setdefault(entry.signer, []).append(entry)
        for site, entries in sorted(updates.items()):
            rows.append(
                Contribution(
                    experiment,
                    site,
                    tuple(entry.round for entry in entries),
                    sum(entry.num_samples for entry in entries),
                    entries[-1].privacy.get("epsilon", math.nan),
                )
            )
    return rows
