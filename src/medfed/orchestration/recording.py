"""Recording a simulated federation in the provenance ledger (``medfed.provenance``).

After each round every contributing site signs an ``update`` entry (the digest of what it sent:
its weights and extras, or in a secure or encrypted round its protocol messages), the server
signs an ``aggregate`` entry (the digests of those updates and of the new global model), and each
site's copy checks and appends the new entries. In a peer-to-peer round each site signs an
``update`` per model it trained and an ``aggregate`` per merge (``peer_entries``). Every party
gets an Ed25519 key for the run, kept under ``provenance/keys/`` (mode 0600); the public keys are
in ``provenance/signers.json``.

The entries of results sent in the clear (``result_entry``) and the digests of protocol messages
(``DigestingProtocol`` at a site, ``DigestingGrid`` at the server) serve deployments too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medfed.orchestration.driver import PRIVATE_METRICS, RowSource
from medfed.orchestration.grid import Grid, OpenProtocol, Reply, SiteProtocol
from medfed.orchestration.metrics_log import MetricRow
from medfed.provenance import (
    Entry,
    Ledger,
    MessageDigest,
    Signers,
    append_signed,
    divergence,
    load_signers,
    new_signer,
    replicate,
    save_signers,
    weights_digest,
)
from medfed.provenance.entries import draft
from medfed.provenance.signers import load_key, save_key
from medfed.provenance.verify import COPIES_DIR, LEDGER_FILE, PROVENANCE_DIR, SIGNERS_FILE
from medfed.topology.peers import Merge, PeerRound
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
            return DigestingProtocol(open_protocol(task, invitation, result), sent.messages)

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
        updates = []
        for result in results:
            if result.site == AGGREGATE_SITE:
                updates += [
                    draft(
                        "update",
                        state.round,
                        site,
                        sent.messages.hexdigest(),
                        num_samples=sent.num_samples,
                        metrics=sent.metrics,
                        privacy=privacy.get(site),
                    )
                    for site, sent in sorted(self._sent.items())
                ]
                continue
            updates.append(result_entry(result, state.round, privacy.get(result.site, {})))
        self._sent = {}
        inputs = tuple(entry.digest for entry in updates)
        aggregate = draft(
            "aggregate",
            state.round,
            SERVER,
            weights_digest(state.weights),
            privacy=privacy.get(SERVER),
            inputs=inputs,
        )
        self._append([*updates, aggregate])

    def record_peers(self, record: PeerRound, privacy: Mapping[str, Mapping[str, float]]) -> None:
        """Appends a peer-to-peer round's entries (``peer_entries``), each signed by its site,
        then shares them with every site."""
        self._append(peer_entries(record, record.state.round, privacy))

    def _append(self, drafts: Sequence[Entry]) -> None:
        for entry in drafts:
            append_signed(self.ledger, entry, self.keys[entry.signer])
        self._share()

    def _share(self) -> None:
        """Each site checks and appends the entries it lacks; divergence is logged."""
        for copy in self.copies.values():
            replicate(self.ledger, copy)
        for line in divergence(self.ledger, self.copies):
            logger.warning("provenance ledger: %s", line)


def result_entry(result: TrainResult, round: int, privacy: Mapping[str, float] | None = None) -> Entry:
    """The unsigned ``update`` entry of ``result`` sent in the clear in ``round``: the digest
    of its weights and extras, its sample count, its metrics; the privacy it reports spending
    (``epsilon``, ``delta`` among its metrics) and ``privacy`` under ``privacy``."""
    metrics = {name: value for name, value in result.metrics.items() if name not in PRIVATE_METRICS}
    spent = {name: value for name, value in result.metrics.items() if name in PRIVATE_METRICS}
    return draft(
        "update",
        round,
        result.site,
        weights_digest(result.weights, result.extra),
        num_samples=result.num_samples,
        metrics=metrics,
        privacy={**spent, **(privacy or {})},
    )


def peer_entries(record: PeerRound, round: int, privacy: Mapping[str, Mapping[str, float]]) -> list[Entry]:
    """The unsigned entries of a peer-to-peer round, each to be signed by its site
    (``append_signed``): an ``update`` per training (the model the site trained, which its peers
    may receive), then an ``aggregate`` per merge (``merge_entry``), each in the order it
    happened. A networked peer passes the record of its own part of the round (e.g. its
    ``BrainTorrent.pull``) and signs the entries with its own key.

    Args:
        record: The round, or one site's part of it.
        round: The round the entries belong to.
        privacy: Each site's privacy spent by the end of the round (``epsilon``, ``delta``).
    """
    updates = [result_entry(result, round, privacy.get(result.site, {})) for result in record.results]
    return updates + [merge_entry(merge, round) for merge in record.merges]


def merge_entry(merge: Merge, round: int) -> Entry:
    """The unsigned ``aggregate`` entry of a site's merge in ``round``: the digests of the
    models it averaged (each a peer's or its own trained model, an ``update`` in the ledger)
    and of the merged model."""
    inputs = tuple(weights_digest(model) for model in merge.inputs)
    return draft("aggregate", round, merge.site, weights_digest(merge.output), inputs=inputs)


def privacy_spent(rows: Sequence[MetricRow]) -> dict[str, dict[str, float]]:
    """Each party's privacy metrics (e.g. ``epsilon``) from a round's ``privacy`` rows."""
    spent: dict[str, dict[str, float]] = {}
    for row in rows:
        if row.split == "privacy":
            spent.setdefault(row.site, {})[row.metric] = row.value
    return spent


class DigestingProtocol:
    """A site's ``SiteProtocol`` that digests each message it sends, in order (what the site
    signs for in a protected round).

    Args:
        inner: The site's half of the protected round.
        messages: The digest the messages are added to.
    """

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


class DigestingGrid:
    """A grid that digests, per site, the protocol messages the server accepted from it in the
    latest protected round (its upload, then its replies in order): the server's view of what
    each site sent, for the ledger.

    Args:
        inner: The grid that reaches the sites.
    """

    def __init__(self, inner: Grid) -> None:
        self.inner = inner
        self.sent: dict[str, MessageDigest] = {}

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        self.sent = {}
        return self.inner.train(tasks)

    def train_protected(
        self, tasks: Mapping[str, TrainTask], invitations: Mapping[str, object], reply: Reply
    ) -> dict[str, object]:
        self.sent = {}
        return self._digested(self.inner.train_protected(tasks, invitations, reply))

    def step(self, round: int, step: str, messages: Mapping[str, object], reply: Reply) -> dict[str, object]:
        return self._digested(self.inner.step(round, step, messages, reply))

    def take(self) -> dict[str, str]:
        """Each site's digest of the latest protected round, by site; forgets them."""
        digests = {site: messages.hexdigest() for site, messages in sorted(self.sent.items())}
        self.sent = {}
        return digests

    def _digested(self, answers: dict[str, object]) -> dict[str, object]:
        for site, answer in answers.items():
            self.sent.setdefault(site, MessageDigest()).add(answer)
        return answers
