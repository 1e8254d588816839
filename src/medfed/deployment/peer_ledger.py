"""A networked peer's provenance chain (``medfed.provenance.chains``): after each round the
peer appends, signed with its kit's ledger key, the ``update`` of the model it trained and the
``aggregate`` of its merge, which cites the digests of the models it averaged (its peers' are
updates in their chains). Each entry is written whole and fsynced before the round's checkpoint,
so a restarted peer continues its chain; a round it redoes after a crash between the two is
recorded again, never lost."""

from __future__ import annotations

from pathlib import Path

from medfed.deployment.provenance import LedgerKeys
from medfed.orchestration.recording import peer_entries
from medfed.provenance import Ledger, LedgerError, append_signed
from medfed.provenance.chains import chain_path
from medfed.provenance.signers import public_bytes
from medfed.topology.peers import PeerRound


class PeerChain:
    """This peer's chain in the job's ledger folder.

    Args:
        folder: The job's ledger folder (``ledger_folder(state_dir, job name)``).
        name: This peer's name (its kit's).
        keys: Its ledger key and the project's signer list.

    Raises:
        LedgerError: The key or signer list is unusable, the signer list does not hold this
            key under ``name``, or the chain on disk fails a check.
    """

    def __init__(self, folder: Path, name: str, keys: LedgerKeys) -> None:
        self.key, signers = keys.load()
        listed = signers.known.get(name)
        if listed is None or listed.public_key != public_bytes(self.key):
            raise LedgerError(
                str(keys.signers),
                None,
                f"does not list the kit's ledger key under '{name}': use the kit's own",
            )
        self.chain = Ledger(chain_path(folder, name), signers, name=f"{name}'s chain", owner=name)

    def record(self, pulled: PeerRound, round: int) -> None:
        """Appends this peer's entries of ``round`` (``peer_entries`` of its pull)."""
        for entry in peer_entries(pulled, round, {}):
            append_signed(self.chain, entry, self.key)
