"""What ``medfed status`` shows for a ``medfed peer`` site: from its state folder alone, each
job's completed rounds, the model versions it last knew of its peers, its final consensus and
the provenance chains it holds (its own, and its copies of its peers')."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from medfed.deployment.peer import FINAL_FILE, PEER_DIR
from medfed.deployment.provenance import ledger_folder
from medfed.errors import CheckpointError
from medfed.orchestration.checkpoint import latest_checkpoint, load_checkpoint
from medfed.topology.peers import restored_state


@dataclass(frozen=True)
class PeerJobStatus:
    """One ``medfed peer`` job as this site's state folder records it.

    Attributes:
        job: The job's name.
        rounds_done: Rounds this site completed and checkpointed.
        versions: Each site's model version (trainings) as this site last knew it.
        consensus_of: The sites whose final models the final consensus averages (``None``
            before it).
        chain_entries: Entries of each provenance chain this site holds, by owner.
    """

    job: str
    rounds_done: int
    versions: dict[str, int]
    consensus_of: list[str] | None
    chain_entries: dict[str, int]


def peer_jobs(state_dir: Path) -> list[PeerJobStatus]:
    """Every ``medfed peer`` job in ``state_dir``, by name.

    Raises:
        CheckpointError: A job's checkpoint cannot be read (named).
    """
    folder = state_dir / PEER_DIR
    if not folder.is_dir():
        return []
    return [_job(state_dir, run.name, run) for run in sorted(folder.iterdir()) if run.is_dir()]


def _job(state_dir: Path, job: str, run: Path) -> PeerJobStatus:
    latest = latest_checkpoint(run / "checkpoints")
    rounds, versions = 0, {}
    if latest is not None:
        checkpoint = load_checkpoint(latest)
        state = restored_state(checkpoint.server, checkpoint.sites)
        rounds, versions = state.round, dict(state.versions)
    consensus_of = None
    if (run / FINAL_FILE).exists():
        final = load_checkpoint(run / FINAL_FILE)
        try:
            consensus_of = [str(site) for site in json.loads(final.metadata["consensus_of"])]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"'{run / FINAL_FILE}' does not name the sites of its consensus") from None
    chains = ledger_folder(state_dir, job) / "peers"
    entries = {path.stem: len(path.read_bytes().splitlines()) for path in sorted(chains.glob("*.jsonl"))}
    return PeerJobStatus(job, rounds, versions, consensus_of, entries)
