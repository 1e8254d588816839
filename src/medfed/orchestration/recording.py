"""Recording a simulated federation in the provenance ledger (``medfed.provenance``).

After each round every contributing site signs an ``update`` entry (the digest of what it sent:
its weights and extras, or in a secure or encrypted round its protocol messages), the server
signs an ``aggregate`` entry (the digests of those updates and of the new global model), and each
site's copy checks and appends the new entries. Every party gets an Ed25519 key for the run,
kept under ``provenance/keys/`` (mode 0600); the public keys are in ``provenance/signers.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medfed.orchestration.driver import RowSource
from medfed.orchestration.grid import OpenProtocol, SiteProtocol
from medfed.orchestration.metrics_log import MetricRow
from medfed.provenance import (
    Entry,
    Ledger,
    MessageDigest,
    Signers,
    divergence,
    load_signers,
    new_signer,
    replicate,
    save_signers,
    sign,
    weights_digest,
)
from medfed.provenance.entries import EntryKind, finite_numbers
from medfed.provenance.signers import load_key, save_key
from medfed.provenance.verify import COPIES_DIR, LEDGER_FILE, PROVENANCE_DIR, SIGNERS_FILE
from medfed.types import AGGREGATE_SITE, ServerState, TrainResult, TrainTask

logger = logging.getLogger(__name__)

SERVER = "server"
"""The signer of the server's aggregate entries."""


def run_keys(run_dir: Path, parties: Sequence[str]) -> tuple[dict[str, Ed25519PrivateKey], Signers]:
    """The run's signing key of every party (made on first use) and the signer list."""
    folder = run_dir / PROVENANCE_DIR
    listed = folder / SIGNERS_FILE
    signers = load_signers(listed).known if listed.exists() else {}
    keys, known = {}, dict(signers)
    for party in parties:
        path = folder / "keys" / f"{party}.pem"
        if party in known and path.exists():
            keys[party] = load_key(path)
            continue
        keys[party], known[party] = new_signer(party)
        save_key(path, keys[party])
    if known != signers:
        save_signers(listed, known.values())
    return keys, Signers(known)


@dataclass
class _Sent:
    """What one site sent in a protected round so far."""

    messages: MessageDigest
    num_samples: int
    metrics: Mapping[str, float]


class LedgerRecorder:
    """The server's ledger of one experiment and each site's copy.

    Args:
        folder: The experiment's ledger folder.
        keys: Each party's signing key (the sites' and ``SERVER``'s).
        signers: Who may sign.
        sites: The sites that keep a copy.
    """

    def __init__(
        self, folder: Path, keys: Mapping[str, Ed25519PrivateKey], signers: Signers, sites: Sequence[str]
    ) -> None:
        self.keys = keys
        self.ledger = Ledger(folder / LEDGER_FILE, signers)
        self.copies = {
            site: Ledger(folder / COPIES_DIR / f"{site}.jsonl", signers, name=f"{site}'s copy")
            for site in sites
        }
        self._sent: dict[str, _Sent] = {}
        self._share()

    def protocol(self, open_protocol: OpenProtocol) -> OpenProtocol:
        """``open_protocol`` whose site halves digest every message they send."""

        def opened(task: TrainTask, invitation: object, result: TrainResult) -> SiteProtocol:
            sent = _Sent(MessageDigest(), result.num_samples, dict(result.metrics))
            self._sent[result.site] = sent
            return _Recorded(open_protocol(task, invitation, result), sent.messages)

        return opened

    def recording(self, privacy: RowSource) -> RowSource:
        """The ``privacy`` row source, recording each round in the ledger with the privacy its
        rows state (before the checkpoint, so every checkpointed model is in the ledger; a round
        replayed after a crash is recorded again)."""

        def rows(state: ServerState, results: list[TrainResult]) -> list[MetricRow]:
            spent = privacy(state, results)
            self.record_round(state, results, privacy_spent(spent))
            return spent

        return rows

    def record_round(
        self, state: ServerState, results: list[TrainResult], privacy: Mapping[str, Mapping[str, float]]
    ) -> None:
        """Appends the round's updates and aggregate, then shares them with every site."""
        inputs = []
        for result in results:
            if result.site == AGGREGATE_SITE:
                for site, sent in sorted(self._sent.items()):
                    digest = sent.messages.hexdigest()
                    self._append("update", state.round, site, digest, sent.num_samples, sent.metrics, privacy)
                    inputs.append(digest)
                continue
            digest = weights_digest(result.weights, result.extra)
            self._append(
                "update", state.round, result.site, digest, result.num_samples, result.metrics, privacy
            )
            inputs.append(digest)
        self._sent = {}
        self._append("aggregate", state.round, SERVER, weights_digest(state.weights), 0, {}, privacy, inputs)
        self._share()

    def _append(
        self,
        kind: EntryKind,
        round: int,
        signer: str,
        digest: str,
        num_samples: int,
        metrics: Mapping[str, float],
        privacy: Mapping[str, Mapping[str, float]],
        inputs: Sequence[str] = (),
    ) -> None:
        entry = Entry(
            index=len(self.ledger),
            previous=self.ledger.head(),
            kind=kind,
            round=round,
            signer=signer,
            digest=digest,
            num_samples=num_samples,
            metrics=finite_numbers(metrics),
            privacy=finite_numbers(privacy.get(signer, {})),
            inputs=tuple(inputs),
        )
        self.ledger.append(sign(entry, self.keys[signer]))

    def _share(self) -> None:
        """Each site checks and appends the entries it lacks; divergence is logged."""
        for copy in self.copies.values():
            replicate(self.ledger, copy)
        for line in divergence(self.ledger, self.copies):
            logger.warning("provenance ledger: %s", line)


def privacy_spent(rows: Sequence[MetricRow]) -> dict[str, dict[str, float]]:
    """Each party's privacy metrics (e.g. ``epsilon``) from a round's ``privacy`` rows."""
    spent: dict[str, dict[str, float]] = {}
    for row in rows:
        if row.split == "privacy":
            spent.setdefault(row.site, {})[row.metric] = row.value
    return spent


class _Recorded:
    """A ``SiteProtocol`` that digests each message its site sends."""

    def __init__(self, inner: SiteProtocol, messages: MessageDigest) -> None:
        self.inner, self.messages = inner, messages
        self.requests = inner.requests

    def upload(self) -> object:
        message = self.inner.upload()
        self.messages.add(message)
        return message

    def answer(self, step: str, message: object) -> object:
        reply = self.inner.answer(step, message)
        self.messages.add(reply)
        return reply
