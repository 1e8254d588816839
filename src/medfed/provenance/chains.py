"""Networked peer-to-peer ledgers: one chain per peer, verified together.

In a networked peer-to-peer federation no party orders one ledger, so each peer keeps its own
chain: the ``update`` entries of the models it trained and the ``aggregate`` entries of its
merges, every entry signed by that peer (``Ledger(..., owner=peer)``). A merge cites the digests
of the models it averaged: the peer's own trained model, in its own chain, and its peers'
models, in theirs. Verifying the chains checks each one on its own and then that every cited
input is an ``update`` in one of them.

Layout (a peer's deployment state directory)::

    provenance/signers.json                      who may sign
    provenance/<job>/peers/<peer>.jsonl          each peer's chain (its own, and copies of others')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from medfed.provenance.errors import LedgerError
from medfed.provenance.ledger import Ledger
from medfed.provenance.signers import Signers

PEERS_DIR = "peers"


@dataclass(frozen=True)
class ChainSet:
    """The peers' chains of one job, each loaded and checked, by peer."""

    folder: Path
    chains: dict[str, Ledger]


def chain_path(folder: Path, peer: str) -> Path:
    """The file of ``peer``'s chain in the job's ledger folder ``folder``."""
    return folder / PEERS_DIR / f"{peer}.jsonl"


def load_chains(folder: Path, signers: Signers) -> ChainSet:
    """Every peer chain in the job's ledger folder ``folder``, each checked on its own (a chain
    is named after its file, and only that peer may sign in it).

    Raises:
        LedgerError: A chain fails a check (naming the chain, the entry and the reason).
    """
    chains = {
        path.stem: Ledger(path, signers, name=f"{path.stem}'s chain {path}", owner=path.stem)
        for path in sorted((folder / PEERS_DIR).glob("*.jsonl"))
    }
    return ChainSet(folder, chains)


def check_inputs(chains: Mapping[str, Ledger]) -> None:
    """Checks that each merge's cited inputs are ``update`` entries in some chain.

    Raises:
        LedgerError: The first merge citing a model that no chain here records, naming the
            chain, the entry and the digest.
    """
    updates = {entry.digest for chain in chains.values() for entry in chain.entries if entry.kind == "update"}
    for chain in chains.values():
        for entry in chain.entries:
            missing = [digest for digest in entry.inputs if digest not in updates]
            if entry.kind == "aggregate" and missing:
                raise LedgerError(
                    chain.name,
                    entry.index,
                    f"round {entry.round} merge cites model {missing[0][:16]}..., an update in none "
                    f"of the {len(chains)} peer chains here ({', '.join(sorted(chains))}): copy the "
                    "other peers' chains next to this one, or the model is not accounted for",
                )
